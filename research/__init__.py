"""Research diagnostics behind the dated studies in docs/experiments/: lab code beside the library.

It imports the library (``envs``, ``world_model``, ``planners``, ``agent``) and is never imported by
it (``tests/test_layering.py`` checks, lazy imports included). A repo-only package: it is not in the
wheel (pyproject's ``packages.find`` leaves it out, ``tests/test_packaging.py`` checks), so run it
from a checkout's root, e.g. ``python -m research.heldout ...``.

* ``research.heldout``: held-out velocity error of several pipelines on the same inputs, paired
  gains (releases, retrained ablations), the instruction control.
* ``research.release``: turn a training run's exported pipeline into the shipped checkpoint.
* ``research.latent_spaces``: pixel space against the small autoencoder (reconstruction, box recall).
* ``research.ssg.heldout``: the SSG adapter's held-out loss against its backbone, prompt dependence.
* ``research.ssg.localisation``: does CLIP's relevance find the instructed object? (true masks).
* ``research.ssg.controls``: ``eval-wm`` with the oracle or the shuffled SSG prompt (controls).
"""
