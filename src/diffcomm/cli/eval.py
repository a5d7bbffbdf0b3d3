"""``diffcomm eval``: run a grid of receivers x encoders x channels x SNRs x CBRs x seeds.

Example::

    diffcomm eval --dataset fashion-mnist --split test --n 256 --receivers pinv,lmmse,dps \\
        --encoders gaussian,deepjscc --channel awgn,rayleigh --snr -5,0,5,10,20 --cbr 1/16 \\
        --seeds 0 --batch-size 64 --workers 2 --out results.jsonl
    diffcomm eval --config grid.toml --out results.jsonl      # same settings from a file

Re-running the same command resumes: finished points are read back from ``--out`` and skipped.
"""

from __future__ import annotations

import argparse
import re
import sys

SETTINGS = ("dataset", "split", "n", "receivers", "encoders", "channel", "csi", "snr", "cbr", "seeds",
            "batch_size", "pilots", "steps", "save_images", "threads", "posterior_samples")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate receivers over a grid of channels, SNRs and CBRs",
                       description="Run a grid of (receiver@encoder, channel, CSI, SNR, CBR, seed) points on a "
                                   "dataset split and append one JSON record per point to --out (resumable). "
                                   "Settings come from the options below and/or --config (TOML/YAML); options "
                                   "given on the command line win.",
                       epilog="Receivers: pinv, lmmse, deepjscc, dps, hifi, blind, pigdm, ddnm, diffpir, cddm, "
                              "digital; write receiver@encoder to fix the pair. Records: see "
                              "diffcomm.eval.runner; results layout and resume: diffcomm.eval.store.")
    p.add_argument("--config", help="grid settings file (.toml, .yaml or .json) with the option names below")
    p.add_argument("--dataset", help="dataset name (default fashion-mnist)")
    p.add_argument("--split", help="dataset split (default test)")
    p.add_argument("--n", help="images: the first N of the split (default 256)")
    p.add_argument("--receivers", help="comma-separated receivers or receiver@encoder pairs")
    p.add_argument("--encoders", help="comma-separated encoders for bare receivers (gaussian, downsample, "
                                      "deepjscc, deepjscc-awgn, deepjscc-rayleigh); pairs a receiver cannot "
                                      "decode are skipped with a note")
    p.add_argument("--channel", help="comma-separated channels: awgn, rayleigh, rician (default awgn)")
    p.add_argument("--csi", help="comma-separated CSI modes: perfect, estimated, none (default perfect)")
    p.add_argument("--snr", help="SNRs in dB: -5,0,5 or start:stop:step")
    p.add_argument("--cbr", help="comma-separated CBRs, e.g. 1/16,1/8 (default 1/16)")
    p.add_argument("--seeds", help="comma-separated seeds (default 0)")
    p.add_argument("--batch-size", dest="batch_size", help="images per receiver call (default 64)")
    p.add_argument("--pilots", help="pilots per coherence block with --csi estimated (default 4)")
    p.add_argument("--steps", help="diffusion steps for the diffusion receivers")
    p.add_argument("--save-images", dest="save_images",
                   help="originals/reconstructions saved per point for the report (default 8)")
    p.add_argument("--per-image", action="store_true", default=None, help="store per-image PSNR/SSIM lists")
    p.add_argument("--posterior-samples", dest="posterior_samples",
                   help="posterior samples per image for the uncertainty metrics (spread, semantic agreement, "
                        "wrong-class AUROC); default 1 = off")
    p.add_argument("--threads", help="torch threads per worker (default 1; records match only for equal values)")
    p.add_argument("--workers", type=int, default=1, help="points computed in parallel (default 1)")
    p.add_argument("--backend", default="local", choices=["local", "ray"],
                   help="local processes (default) or a Ray cluster")
    p.add_argument("--address", help="address of an existing Ray cluster (default: start a local one)")
    p.add_argument("--out", required=True, help="results file (JSONL); resumed if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    allow_negative_lists(p)
    p.set_defaults(func=run)


def allow_negative_lists(parser: argparse.ArgumentParser) -> None:
    """Let values such as ``--snr -5,0,5`` or ``--snr -10:20:5`` through (argparse would take them for options)."""
    parser._negative_number_matcher = re.compile(r"^-\d*\.?\d+([,:]-?\d*\.?\d+)*$")


def spec_from_args(args: argparse.Namespace):
    """The grid from ``--config`` plus command-line settings (command line wins)."""
    from diffcomm.eval.grid import grid_from_mapping, load_config

    config = load_config(args.config) if args.config else {}
    config = {str(k).replace("-", "_"): v for k, v in config.items()}
    for name in (*SETTINGS, "per_image"):
        value = getattr(args, name, None)
        if value is not None:
            config[name] = value
    return grid_from_mapping(config)


def run(args: argparse.Namespace) -> int:
    from diffcomm.eval.grid import plan
    from diffcomm.eval.runner import check_backend, run_grid
    from diffcomm.eval.summary import results_table
    from diffcomm.utils import format_table

    check_backend(args.backend, args.workers, args.address)
    grid = plan(spec_from_args(args))
    for note in grid.notes:
        print(f"note: {note}", file=sys.stderr)
    summary = run_grid(grid, args.out, workers=args.workers, backend=args.backend, address=args.address,
                       progress=not args.quiet)
    if not args.quiet:
        print(format_table(*results_table(summary.records)))
    print(f"{len(grid.points)} points: {summary.computed} computed, {summary.reused} already in {args.out}; "
          f"{summary.seconds:.1f} s")
    return 0
