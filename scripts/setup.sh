#!/usr/bin/env bash
# Idempotent set-up for a fresh Linux machine: system packages, .venv, torch (CPU) first, then the project.
#   scripts/setup.sh              the project with its dev extra
#   scripts/setup.sh miniworld    ... plus the [miniworld] extra and the EGL/GL libraries it renders with
#   scripts/setup.sh docs         ... plus the [docs] extra (mkdocs; `make docs`)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
EXTRAS="dev"
case "${1:-}" in
  "") ;;
  miniworld) EXTRAS="dev,miniworld" ;;
  docs) EXTRAS="dev,docs" ;;
  *) echo "setup.sh: unknown argument '$1' (expected nothing, 'miniworld' or 'docs')" >&2; exit 2 ;;
esac
STAMP=$VENV/.spatialnav-installed${1:+-$1}
PY=${PYTHON:-python3}
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
APT_UPDATED=""
apt_install() {  # apt_install <lib.so name> <debian packages...>: only when the library is missing
  local lib=$1; shift
  if ! ldconfig -p 2>/dev/null | grep -q "$lib"; then
    [ -n "$APT_UPDATED" ] || { $SUDO apt-get update -qq; APT_UPDATED=1; }
    $SUDO apt-get install -y -qq "$@" >/dev/null
  fi
}

# open3d needs libusb at import time.
apt_install libusb-1.0.so.0 libusb-1.0-0
# MiniWorld renders headless (PYGLET_HEADLESS=True) through EGL and OpenGL/GLU (Mesa's software rasteriser).
if [ "${1:-}" = miniworld ]; then
  apt_install libEGL.so.1 libegl1 libegl-mesa0
  apt_install libGL.so.1 libgl1
  apt_install libGLU.so.1 libglu1-mesa
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi

# Fast path: nothing changed since the last install.
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ]; then
  exit 0
fi

"$VENV/bin/python" -m pip install -q --upgrade pip
# Torch first, CPU wheel: a bare "torch" requirement would otherwise pull a multi-GB CUDA build.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  # keep the default inside pyproject.toml's torch range (tests/test_packaging.py checks it)
  "$VENV/bin/python" -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
fi
"$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"
touch "$STAMP"
