#!/usr/bin/env python
"""Image grid for the README: originals, then each system's reconstruction at one channel and SNR.

Usage: python scripts/receiver_grid_image.py results/receivers/receivers.jsonl --channel awgn --snr 5 \
           --out results/receivers/grid_awgn_5dB.png
Rows (top to bottom): original, then one row per system in the order of the results file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import load_file

from diffcomm.data import save_grid
from diffcomm.eval.store import load_records


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--channel", default="awgn")
    ap.add_argument("--snr", type=float, default=5.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    side = Path(args.results + ".d")
    rows, names = [], []
    for r in load_records(args.results):
        if r["channel"] != args.channel or r["snr_db"] != args.snr or not r.get("images"):
            continue
        t = load_file(side / r["images"])
        if not rows:
            rows.append(t["x"])
            names.append("original")
        rows.append(t["x_hat"])
        names.append(r["system"])
    save_grid(args.out, torch.cat(rows), nrow=rows[0].shape[0])
    print(f"wrote {args.out}; rows: {', '.join(names)}")


if __name__ == "__main__":
    main()
