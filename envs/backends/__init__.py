"""Renderer back-ends behind one interface: ``render(poses, pitch, outputs) -> dict``.

``open3d`` (default) is the embedded CPU ray caster in ``envs.renderer``; ``habitat``
wraps habitat-sim where ``import habitat_sim`` works (see ``envs.backends.habitat``).
"""

from __future__ import annotations

from envs.scene import Scene

BACKENDS = ("open3d", "habitat")


def make_renderer(scene_or_path, backend: str = "open3d", **kw):
    """Build a renderer for a Scene or a scene id/path (``envs.scenes.load_scene`` resolves it).

    Keyword arguments go to the backend's constructor (width, height, hfov_deg,
    sensor_height, max_depth, ...; see ``envs.renderer.Renderer``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown renderer backend {backend!r}; choose one of {BACKENDS}")
    if backend == "habitat":
        # Import first: a missing habitat-sim is reported before any scene work.
        from envs.backends.habitat import HabitatRenderer as cls
    else:
        from envs.renderer import Renderer as cls
    if isinstance(scene_or_path, Scene):
        scene = scene_or_path
    elif isinstance(scene_or_path, str):
        from envs.scenes import load_scene  # lazy: scenes pulls in procgen and mesh I/O

        scene = load_scene(scene_or_path)
    else:
        raise TypeError(
            f"make_renderer needs a Scene or a scene id/path string, got {type(scene_or_path).__name__}"
        )
    return cls(scene, **kw)
