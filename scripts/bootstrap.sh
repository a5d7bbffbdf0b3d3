#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian/Ubuntu machine (or a re-run on a prepared one):
#   - the Debian package dataset-fashion-mnist when its IDX files are missing,
#   - a virtual environment in .venv (reused when present),
#   - torch 2.13.0 CPU *before* anything else, so no dependency pulls a CUDA build,
#   - diffcomm itself (editable) with the digital-baseline, diffusers-adapter and dev extras
#     (the diffusers extra needs no torchvision and leaves the pinned CPU torch in place),
#     and the docs extra (Sphinx + sphinx-gallery), since the test suite builds the site.
# Usage: bash scripts/bootstrap.sh   (called by scripts/demo.sh and scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}

if [ ! -e /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] && [ -z "${DIFFCOMM_FASHION_MNIST:-}" ]; then
  echo "[bootstrap] installing Debian package dataset-fashion-mnist"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

if [ ! -x "$ROOT/.venv/bin/python" ]; then
  echo "[bootstrap] creating virtual environment .venv"
  if ! $PY -m venv "$ROOT/.venv" 2>/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-venv >/dev/null
    $PY -m venv "$ROOT/.venv"
  fi
fi
VPY="$ROOT/.venv/bin/python"

stamp="$ROOT/.venv/.diffcomm-installed"
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VPY" -c "import diffcomm, torch" 2>/dev/null; then
  exit 0
fi
if ! "$VPY" -c "import torch" 2>/dev/null; then
  echo "[bootstrap] installing torch 2.13.0 (CPU build)"
  "$VPY" -m pip install -q --upgrade pip
  # On this project's machines pip takes the local CPU wheel of torch 2.13.0. Elsewhere, point
  # DIFFCOMM_TORCH_INDEX at a CPU-only wheel index so that no CUDA build is pulled.
  if [ -n "${DIFFCOMM_TORCH_INDEX:-}" ]; then
    "$VPY" -m pip install -q "torch==2.13.0" --index-url "$DIFFCOMM_TORCH_INDEX"
  else
    "$VPY" -m pip install -q "torch==2.13.0"
  fi
fi
echo "[bootstrap] installing diffcomm and its dependencies"
"$VPY" -m pip install -q -e ".[digital,diffusers,dev,docs]"
echo "$want" > "$stamp"
