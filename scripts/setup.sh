#!/usr/bin/env bash
# Idempotent set-up for a fresh Linux machine: system packages, .venv, torch (CPU) first, then the project.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP=$VENV/.spatialnav-installed
PY=${PYTHON:-python3}

# open3d needs libusb at import time.
if ! ldconfig -p 2>/dev/null | grep -q libusb-1.0.so.0; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null
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
  "$VENV/bin/python" -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
fi
"$VENV/bin/python" -m pip install -q -e ".[dev]"
touch "$STAMP"
