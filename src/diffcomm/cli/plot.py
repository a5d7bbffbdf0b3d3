"""``diffcomm plot``: metric-versus-SNR curves (PNG and SVG) from a results file.

Example:
    diffcomm plot results.jsonl --out plots                # every metric present
    diffcomm plot results.jsonl --out plots --metrics psnr --format svg
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffcomm.errors import DiffcommError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="plot metric-versus-SNR curves from eval results",
                       description="One figure per metric and (channel, CSI, CBR) setting; one line per "
                                   "receiver@encoder with its 95% confidence band. Writes PNG and SVG.")
    p.add_argument("results", help="results file written by diffcomm eval (JSONL)")
    p.add_argument("--out", required=True, help="folder for the figures")
    p.add_argument("--metrics", help="comma-separated metrics (default: all present: psnr, ssim, accuracy, "
                                     "fd_cls, kid_cls)")
    p.add_argument("--format", default="png,svg", help="comma-separated formats: png, svg (default both)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from diffcomm.eval.plots import FORMATS, plot_results
    from diffcomm.eval.store import RECORD_FIELDS, load_records

    formats = tuple(f.strip().lower() for f in args.format.split(",") if f.strip())
    for fmt in formats or ("",):
        if fmt not in FORMATS:
            raise DiffcommError(f"--format must list png and/or svg, got {args.format!r}")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    path = Path(args.results)
    if not path.is_file():
        raise DiffcommError(f"results file {path} not found")
    records = load_records(path, repair=False, required=RECORD_FIELDS)
    if not records:
        raise DiffcommError(f"no records in {path}; run diffcomm eval first")
    paths = plot_results(records, args.out, metrics, formats)
    print(f"wrote {len(paths)} figures to {args.out}")
    return 0
