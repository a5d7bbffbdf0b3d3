"""Quality against SNR from −10 to 60 dB for every receiver, with the options of the committed grid.

The stability check of the architecture issue: every receiver on AWGN and Rayleigh block fading,
CBR 1/16, the options of ``results/receivers/grid.toml`` (defaults for receivers it does not
list), on the first ``--n`` Fashion-MNIST test images. Writes ``sweep.json`` (mean PSNR, its 95 %
interval and NFE per point) and ``sweep.png`` under ``--out``; resumable (points already in the
JSON are kept).

    python scripts/snr_sweep.py --n 64 --out results/receivers/snr_sweep
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import tomllib
import torch
from tqdm.auto import tqdm

from diffcomm import zoo
from diffcomm.data import get_dataset
from diffcomm.metrics import psnr, summarize
from diffcomm.pipeline import build_link, decode
from diffcomm.receivers.base import get_spec, receiver_names
from diffcomm.utils import atomic_write_json

SNRS = [-10.0, 0.0, 10.0, 20.0, 30.0, 40.0, 60.0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--out", default="results/receivers/snr_sweep")
    ap.add_argument("--grid", default="results/receivers/grid.toml")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "sweep.json"
    done = json.loads(path.read_text()) if path.is_file() else {"n": args.n, "points": []}
    have = {(p["receiver"], p["channel"], p["snr_db"]) for p in done["points"]}
    options = tomllib.loads(Path(args.grid).read_text()).get("options", {})
    x = get_dataset("fashion-mnist", "test").images[:args.n]
    prior = zoo.load("fmnist-prior")
    names = [n for n in receiver_names() if get_spec(n).csi == "required"]
    todo = [(r, c, s) for r in names for c in ("awgn", "rayleigh") for s in SNRS if (r, c, s) not in have]
    for receiver, channel, snr in tqdm(todo, desc="snr sweep"):
        spec = get_spec(receiver)
        encoder = "downsample" if spec.link == "linear" else "deepjscc"
        link = build_link(encoder, (1, 28, 28), "1/16", channel, snr)
        rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
        opts = {k: v for k, v in options.get(receiver, {}).items() if k in spec.options}
        res = decode(receiver, link, rx, prior=prior if spec.prior == "denoiser" else None,
                     generator=torch.Generator().manual_seed(1), **opts)
        summary = summarize({"psnr": psnr(res.x_hat, x)})["psnr"]
        done["points"].append({"receiver": receiver, "encoder": encoder, "channel": channel, "snr_db": snr,
                               "options": opts, "psnr": summary, "nfe": res.nfe})
        atomic_write_json(path, done)
    plot(done, out / "sweep.png")


def plot(done: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, channel in zip(axes, ("awgn", "rayleigh")):
        for receiver in dict.fromkeys(p["receiver"] for p in done["points"]):
            pts = sorted((p for p in done["points"] if p["receiver"] == receiver and p["channel"] == channel),
                         key=lambda p: p["snr_db"])
            s = [p["snr_db"] for p in pts]
            m = [p["psnr"]["mean"] for p in pts]
            ax.plot(s, m, marker="o", ms=3, label=receiver)
            ax.fill_between(s, [p["psnr"]["ci_low"] for p in pts], [p["psnr"]["ci_high"] for p in pts], alpha=0.15)
        ax.set_title(f"{channel}, CBR 1/16, {done['n']} test images")
        ax.set_xlabel("SNR (dB)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("PSNR (dB)")
    axes[1].legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
