#!/usr/bin/env bash
# Make (once) the separate environment the peer benchmark needs and print its python.
#
# deepinv 0.5 needs torchvision, which does not install beside the project's CPU torch, so it lives
# in its own venv (default /work/deepinv-env; override with DEEPINV_ENV). diffcomm goes in with
# --no-deps (it pins torch==2.13.0) plus its pure dependencies from pyproject.toml. Idempotent: an
# env whose python already imports deepinv and diffcomm is left as it is.
#
#   ENV_PY=$(bench/peers_env.sh) && PYTHONPATH=src "$ENV_PY" bench/peers.py
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV="${DEEPINV_ENV:-/work/deepinv-env}"
PY="$ENV/bin/python"
if [ -x "$PY" ] && PYTHONPATH="$ROOT/src" "$PY" -c "import deepinv, diffcomm" >/dev/null 2>&1; then
  echo "$PY"; exit 0
fi
[ -x "$PY" ] || python3 -m venv "$ENV" >&2
"$PY" -m pip install -q torch==2.14.1 torchvision==0.29.1 deepinv==0.5.0 >&2
"$PY" -m pip install -q numpy safetensors torchmetrics pytorch-msssim "pillow>=11" matplotlib tqdm \
  scikit-image scikit-learn mlxtend pyyaml scipy >&2
"$PY" -m pip install -q -e "$ROOT" --no-deps >&2
echo "$PY"
