#!/usr/bin/env bash
# The test suite: set up (idempotent), lint, then pytest on 2 workers.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check src tests bench scripts examples docs
exec .venv/bin/python -m pytest -n 2 "$@"
