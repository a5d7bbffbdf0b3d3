#!/usr/bin/env bash
# Regenerate every committed result that depends on the shipped weights (results/jscc,
# results/receivers), after a model is retrained and reshipped. The digital sweep
# (results/digital, scripts/sweep_digital.py) does not use the zoo and is left as it is.
#
# Usage: bash scripts/reproduce_results.sh [jscc|receivers|all]   (default: all)
#
# Each results file is deleted first: a results file records the digests of the weights it used
# and `diffcomm eval` refuses to resume one computed with other weights. Every step is resumable
# if this script is killed, *except* that rerunning it deletes the files again; to resume an
# interrupted run, rerun the single `diffcomm eval` command it printed.
# Measured on a 2-core machine (2026-11-29): jscc ~2 min (eval 65 s), receivers ~23 min (grid 1,213 s
# on 2 workers, blind 115 s).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source .venv/bin/activate
what="${1:-all}"

fresh() { rm -rf "$1" "$1.d"; }
run() { echo "+ $*"; "$@"; }

if [[ "$what" == jscc || "$what" == all ]]; then
    fresh results/jscc/deepjscc.jsonl
    run diffcomm eval --config results/jscc/grid.toml --out results/jscc/deepjscc.jsonl --workers 2 --quiet
    run python scripts/plot_jscc_vs_digital.py
    run python scripts/plot_jscc_training.py
fi

if [[ "$what" == receivers || "$what" == all ]]; then
    fresh results/receivers/receivers.jsonl
    fresh results/receivers/blind.jsonl
    run diffcomm eval --config results/receivers/grid.toml --out results/receivers/receivers.jsonl --workers 2
    run diffcomm eval --config results/receivers/blind.toml --out results/receivers/blind.jsonl --workers 2 --quiet
    run diffcomm eval --config results/receivers/blind_none.toml --out results/receivers/blind.jsonl --quiet
    rm -rf results/receivers/plots
    run diffcomm plot results/receivers/receivers.jsonl --out results/receivers/plots --format png \
        --metrics psnr,ssim,accuracy,fd_cls
    run diffcomm report results/receivers/receivers.jsonl --out results/receivers
    run python scripts/receiver_grid_image.py results/receivers/receivers.jsonl --channel awgn --snr 5 \
        --out results/receivers/grid_awgn_5dB.png
fi
