"""``diffcomm report``: one self-contained HTML page (setup, table, curves, image grids).

Example:
    diffcomm report results.jsonl --out report            # writes report/report.html
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report of eval results",
                       description="Write OUT/report.html: the setup, a results table, metric-versus-SNR curves "
                                   "and image grids of the saved reconstructions, with every image embedded "
                                   "(no external files or links).")
    p.add_argument("results", help="results file written by diffcomm eval (JSONL)")
    p.add_argument("--out", required=True, help="folder for report.html")
    p.add_argument("--title", default="diffcomm evaluation report", help="page title")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from diffcomm.eval.report import write_report

    path = write_report(args.results, args.out, args.title)
    print(f"wrote {path}")
    return 0
