"""``diffcomm demo``: the main job — a small end-to-end evaluation on shipped data and weights.

Runs the preset grid ``diffcomm/eval/presets/demo.toml`` (8 Fashion-MNIST test images, AWGN and
Rayleigh at 0/10/20 dB, CBR 1/16; the digital baseline, the DeepJSCC decoder, DPS and HiFi-DiffCom)
with the same runner as ``diffcomm eval``, prints a table and writes the report.

Example:
    diffcomm demo --out demo-report
"""

from __future__ import annotations

import argparse

from diffcomm.cli.eval import allow_negative_lists


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run a small end-to-end evaluation and write its report",
                       description="Transmit a few Fashion-MNIST test images over AWGN and Rayleigh channels, "
                                   "reconstruct them with the digital baseline, DeepJSCC and two diffusion "
                                   "receivers, print a table and write OUT/report.html (plus OUT/results.jsonl "
                                   "and OUT/plots). Re-running with the same --out reuses finished points.")
    p.add_argument("--out", default="demo-report", help="output folder (default demo-report)")
    p.add_argument("--n", type=int, help="images (default from the preset: 8)")
    p.add_argument("--snr", help="SNRs in dB instead of the preset's 0,10,20")
    p.add_argument("--steps", type=int, help="diffusion steps instead of the preset's")
    p.add_argument("--workers", type=int, default=1, help="points computed in parallel (default 1)")
    p.add_argument("--preset", help="another grid config to run instead of the built-in preset")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    allow_negative_lists(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from diffcomm.eval.demo import run_demo

    run_demo(args.out, preset=args.preset, n=args.n, snr=args.snr, steps=args.steps, workers=args.workers,
             progress=not args.quiet)
    return 0
