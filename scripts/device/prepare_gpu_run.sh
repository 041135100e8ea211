#!/usr/bin/env bash
# Here, before a lent GPU machine is used (issue 19 section 4): what scripts/device/train_wm_gpu.sh needs
# there and the machine lacks.
#   .whl/      wheels of the training's imports missing there (cuda image: torch, accelerate, transformers,
#              numpy, pyyaml present; diffusers, omegaconf, antlr4 not), downloaded for its Python 3.12
#   .gpu/data  a transfer-sized copy of the collected training split (scripts/device/slim_data.py): frames at
#              32 px, the 4 path frames the loader takes, SHARDS shards, + text_states.pt (MiniLM states)
# Both are git-ignored; the device call carries them: carry=[".whl", ".gpu"]. The whole call may move 64 MiB
# (tracked files ~17 MB + wheels ~6.5 MB + data): the script prints the total and fails above LIMIT_MB.
# Environment: SRC (runs/wm/data/train), DST (.gpu/data), SHARDS (8), SIZE (32), T (4), WHEELS (1), LIMIT_MB (62),
#              PY (.venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
SRC=${SRC:-runs/wm/data/train}
DST=${DST:-.gpu/data}
if [ "${WHEELS:-1}" = 1 ]; then
  mkdir -p .whl
  v() { $PY -c "import importlib.metadata as m; print(m.version('$1'))"; }
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "diffusers==$(v diffusers)" "omegaconf==$(v omegaconf)"
  # antlr4-python3-runtime 4.9.3 (omegaconf's parser) is an sdist on PyPI: build its pure-Python wheel
  $PY -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==$(v antlr4-python3-runtime)"
  ls -la .whl
fi
rm -rf "$DST"
$PY scripts/device/slim_data.py "$SRC" "$DST" "${SIZE:-32}" "${T:-4}" "${SHARDS:-8}"
travel=$( { git ls-files -z; git ls-files -z -o --exclude-standard; } | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
extra=$(du -cb .whl "$DST" 2>/dev/null | tail -1 | cut -f1)
mb=$(( (travel + extra) / 1048576 ))
echo "travels: $(( travel / 1048576 )) MiB of the tree + $(( extra / 1048576 )) MiB carried = $mb MiB (limit 64)"
if [ "$DST" = .gpu/data ] && [ "$mb" -gt "${LIMIT_MB:-62}" ]; then
  echo "over ${LIMIT_MB:-62} MiB: use fewer shards (SHARDS=...)" >&2; exit 1
fi
