#!/usr/bin/env bash
# The main job: set up (idempotent), then run the demo on the shipped data and weights.
# Usage: bash scripts/demo.sh [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/diffcomm demo "$@"
