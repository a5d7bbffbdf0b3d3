#!/usr/bin/env bash
# Build the documentation site (offline, warnings are errors) into docs/_build/html.
#   bash scripts/docs.sh                 the full site: pages, API reference, and the example gallery
#                                        run on the shipped models (re-runs only changed examples)
#   bash scripts/docs.sh --no-gallery    pages and API reference; the gallery's code without running it
#   bash scripts/docs.sh --out DIR       build into DIR instead of docs/_build/html
# Set-up is the idempotent scripts/bootstrap.sh (the docs extra: Sphinx, sphinx-gallery, furo, MyST).
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/_build/html
gallery=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-gallery) gallery=0 ;;
    --out) out="${2:?--out needs a folder}"; shift ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "docs.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
bash scripts/bootstrap.sh
export MPLBACKEND=Agg OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec .venv/bin/sphinx-build -W --keep-going -q -b html -d "$out/../doctrees" -D plot_gallery="$gallery" docs "$out"
