#!/usr/bin/env python
"""Issue-4 figure: DeepJSCC quality next to the number of training steps.

Reads the training snapshots that ``diffcomm zoo ship`` recorded beside each shipped DeepJSCC model
(PSNR of the EMA model on the first 1,000 Fashion-MNIST test images at 0/10/20 dB, logged every
``snapshot_every`` steps) and writes ``results/jscc/training_curve.{png,json}``: PSNR vs steps per
model and SNR, with the gain of the last 1,000 steps (how much more training would still help).

Usage: python scripts/plot_jscc_training.py [--out results/jscc/training_curve]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from diffcomm import zoo  # noqa: E402
from diffcomm.utils import atomic_write_json  # noqa: E402

SNRS = ("0", "10", "20")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/jscc/training_curve", help="output path without suffix")
    args = parser.parse_args()
    models = {name: cfg for name, cfg in sorted(zoo.list_models().items())
              if cfg.get("kind") == "jscc" and cfg.get("snapshots")}
    if not models:
        raise SystemExit("no shipped DeepJSCC model has training snapshots; reship with `diffcomm zoo ship`")
    summary: dict[str, dict] = {}
    fig, axes = plt.subplots(1, len(SNRS), figsize=(4.2 * len(SNRS), 3.6), sharex=True)
    for name, cfg in models.items():
        snaps = cfg["snapshots"]
        steps = [s["step"] for s in snaps]
        entry = {"steps": steps}
        for ax, snr in zip(axes, SNRS):
            values = [s[f"psnr_{snr}dB"] for s in snaps]
            entry[f"psnr_{snr}dB"] = values
            if len(values) >= 2 and steps[-1] - steps[-2] == 1000:
                entry[f"gain_last_1000_steps_{snr}dB"] = values[-1] - values[-2]
            ax.plot(steps, values, marker="o", label=name.removeprefix("fmnist-deepjscc-"))
            ax.set_title(f"SNR {snr} dB")
            ax.set_xlabel("training steps (batch 64)")
            ax.grid(alpha=0.3)
        summary[name] = entry
    axes[0].set_ylabel("PSNR (dB), 1,000 test images")
    axes[0].legend(fontsize=8)
    fig.suptitle("DeepJSCC on Fashion-MNIST: test PSNR vs training steps (EMA weights)")
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out.with_suffix(".png"), dpi=120)
    atomic_write_json(out.with_suffix(".json"), summary)
    for name, entry in summary.items():
        gains = " / ".join(f"{entry.get(f'gain_last_1000_steps_{s}dB', float('nan')):+.2f}" for s in SNRS)
        print(f"{name}: {entry['steps'][-1]} steps, PSNR@10dB {entry['psnr_10dB'][-1]:.2f}, "
              f"last 1k steps gained {gains} dB at 0/10/20 dB")


if __name__ == "__main__":
    main()
