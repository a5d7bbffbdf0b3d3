#!/usr/bin/env python
"""Issue-4 figure and summary: DeepJSCC vs the practical digital envelope vs the ideal bound.

Reads the DeepJSCC records written by ``diffcomm eval --config results/jscc/grid.toml`` and the
digital sweep ``results/digital/fmnist_cbr1-16.json`` (scripts/sweep_digital.py), writes
``results/jscc/jscc_vs_digital.{png,svg,json}`` with PSNR/SSIM vs SNR per channel and the SNRs at
which DeepJSCC crosses the practical and the ideal digital curves (linear interpolation).

Usage: python scripts/plot_jscc_vs_digital.py [--jscc results/jscc/deepjscc.jsonl]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from diffcomm.eval.store import load_records  # noqa: E402
from diffcomm.utils import atomic_write_json  # noqa: E402


def crossings(snr: np.ndarray, a: np.ndarray, b: np.ndarray) -> list[float]:
    """SNRs where curve a − b changes sign (linear interpolation between grid points)."""
    d = a - b
    out = []
    for i in range(len(d) - 1):
        if d[i] == 0:
            out.append(float(snr[i]))
        elif d[i] * d[i + 1] < 0:
            out.append(float(snr[i] + (snr[i + 1] - snr[i]) * d[i] / (d[i] - d[i + 1])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jscc", default="results/jscc/deepjscc.jsonl")
    ap.add_argument("--digital", default="results/digital/fmnist_cbr1-16.json")
    ap.add_argument("--out", default="results/jscc/jscc_vs_digital")
    args = ap.parse_args()
    records = load_records(args.jscc)
    digital = json.loads(Path(args.digital).read_text())
    summary: dict = {"jscc_records": args.jscc, "digital": args.digital, "channels": {}}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for col, channel in enumerate(("awgn", "rayleigh")):
        rec = sorted((r for r in records if r["channel"] == channel), key=lambda r: r["snr_db"])
        if not rec:
            continue
        snr = np.array([r["snr_db"] for r in rec])
        res = digital["results"][channel]
        entry: dict = {"n_images_jscc": rec[0]["n"], "n_images_digital": digital["n_images"]}
        for row, metric in enumerate(("psnr", "ssim")):
            ax = axes[row, col]
            m = np.array([r["metrics"][metric]["mean"] for r in rec])
            lo = np.array([r["metrics"][metric]["ci_low"] for r in rec])
            hi = np.array([r["metrics"][metric]["ci_high"] for r in rec])
            ax.plot(snr, m, "o-", label=f"DeepJSCC ({rec[0]['n']} images)")
            ax.fill_between(snr, lo, hi, alpha=0.2)
            curves = {"digital envelope": "digital", "ideal bound (outage)": "bound_outage"}
            for label, key in curves.items():
                pts = {p["snr_db"]: p[metric] for p in res.get(key, [])}
                ds = np.array([pts.get(float(s), np.nan) for s in snr])
                ax.plot(snr, ds, "s--" if key == "digital" else "^:", label=label)
                if metric == "psnr":
                    ok = ~np.isnan(ds)
                    entry[f"jscc_crosses_{key}_at_snr_db"] = crossings(snr[ok], m[ok], ds[ok])
                    entry[f"{key}_psnr"] = dict(zip(map(float, snr[ok]), map(float, ds[ok])))
            if metric == "psnr":
                entry["jscc_psnr"] = dict(zip(map(float, snr), map(float, m)))
            ax.set_title(f"{channel.upper()} — CBR 1/16, Fashion-MNIST test")
            ax.set_xlabel("SNR (dB)")
            ax.set_ylabel(metric.upper())
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        summary["channels"][channel] = entry
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(f"{args.out}.{ext}", dpi=120)
    atomic_write_json(f"{args.out}.json", summary)
    print(json.dumps({c: {k: v for k, v in e.items() if "crosses" in k} for c, e in summary["channels"].items()},
                     indent=2))


if __name__ == "__main__":
    main()
