"""The consistency–realism trade-off (issue 17): distortion (PSNR) against realism (FD-cls) at 0 and 10 dB.

Each receiver is swept along its strength knob on the DeepJSCC link (CBR 1/16, AWGN, perfect CSI, the shipped
fmnist-deepjscc-awgn-cbr16), 256 Fashion-MNIST test images, channel seed 0 and receiver seed 1 in every cell:

* ``dps`` — the likelihood step ζ (20 steps);
* ``hifi`` — the confirming weight λ_confirm (10 steps, ζ calibrated);
* ``i2sb`` — the bridge's steps (1 step is close to the posterior mean, more steps add detail);
* ``cdm`` — the classifier-free guidance weight w and the start level (from noise, or SDEdit from the
  decoder's output at σ_start) of the conditional decoder (10 Heun steps);

beside two reference points: the DeepJSCC decoder, and the digital separation envelope (the best of the
Sionna LDPC/QAM + codec configurations per point, from results/receivers/receivers.jsonl). FD-cls is the
Fréchet distance of the shipped Fashion-MNIST classifier's penultimate features of the reconstructions to
those of the originals (not an Inception FID), with a 95 % bootstrap interval over images.

Resumable (one JSON per cell under results/tradeoff/cells); ``--only dps,i2sb`` runs a subset;
``--assemble`` writes results/tradeoff/tradeoff.json, tradeoff.md and tradeoff.png.

Usage:
    .venv/bin/python scripts/tradeoff.py [--only i2sb,cdm]
    .venv/bin/python scripts/tradeoff.py --assemble
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

OUT = Path("results/tradeoff")
SNRS = (0.0, 10.0)
SWEEPS: dict[str, tuple[str, list[dict]]] = {
    "dps": ("zeta", [{"steps": 20, "zeta": z} for z in (0.5, 1.0, 2.0, 4.0)]),
    "hifi": ("lam_confirm", [{"steps": 10, "lam_confirm": v} for v in (0.0, 3.0, 30.0)]),
    "i2sb": ("steps", [{"steps": s} for s in (1, 2, 4, 10, 30)]),
    "cdm": ("start_sigma, CFG w", [{"cfg_weight": 1.0, "start_sigma": s} for s in (0.2, 0.3, 0.5, 1.0)]
            + [{"cfg_weight": w, "start_sigma": None} for w in (0.0, 1.0, 3.0)]),
}


def label(options: dict) -> str:
    def fmt(k, v):
        return f"{k}=noise" if v is None else f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
    return ",".join(fmt(k, v) for k, v in sorted(options.items()) if k != "steps" or len(options) == 1)


def cell(receiver: str, options: dict, snr: float, n: int, x, labels, feats, classifier) -> dict:
    from robustness_matrix import bootstrap_fd

    from diffcomm.metrics import psnr, ssim, summarize
    from diffcomm.metrics.classifier import predict
    from diffcomm.pipeline import build_link, decode

    link = build_link("deepjscc", (1, 28, 28), "1/16", "awgn", snr, csi="perfect", seed=0)
    g_channel, g_receiver = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    outs, seconds, nfe, used = [], 0.0, 0.0, dict(options)
    for i in range(0, n, 64):
        rx = link.transmit(x[i:i + 64], generator=g_channel)
        res = decode(receiver, link, rx, generator=g_receiver, **options)
        outs.append(res.x_hat.float().clamp(0, 1))
        seconds += res.seconds
        nfe += res.nfe * len(rx.y)
        used = res.extras.get("options_used", used)
    x_hat = torch.cat(outs)
    logits, f_hat = predict(classifier, x_hat)
    fd, lo, hi = bootstrap_fd(feats, f_hat)
    m = summarize({"psnr": psnr(x_hat, x), "ssim": ssim(x_hat, x), "acc": (logits.argmax(1) == labels).float()})
    return {"receiver": receiver, "options": options, "options_used": {k: v for k, v in used.items()},
            "snr_db": snr, "channel": "awgn", "n": n, "psnr": m["psnr"], "ssim": m["ssim"], "accuracy": m["acc"],
            "fd_cls": fd, "fd_cls_ci95": [lo, hi], "nfe": nfe / n, "seconds_per_image": seconds / n}


def references() -> list[dict]:
    """The DeepJSCC decoder and the digital envelope at the sweep's SNRs, from the committed grid."""
    rows = []
    for line in Path("results/receivers/receivers.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["channel"] == "awgn" and r["snr_db"] in SNRS and r["receiver"] in ("deepjscc", "digital") \
                and r.get("csi") == "perfect":
            m = r["metrics"]
            rows.append({"receiver": r["receiver"], "snr_db": r["snr_db"], "psnr": m["psnr"]["mean"],
                         "fd_cls": m["fd_cls"], "ssim": m["ssim"]["mean"], "accuracy": m["accuracy"]["mean"]})
    return rows


def assemble() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [json.loads(p.read_text()) for p in sorted((OUT / "cells").glob("*.json"))]
    refs = references()
    (OUT / "tradeoff.json").write_text(json.dumps({"cells": cells, "references": refs}, indent=1))
    fig, axes = plt.subplots(1, len(SNRS), figsize=(6 * len(SNRS), 4.6))
    colours = {"dps": "tab:blue", "hifi": "tab:orange", "i2sb": "tab:green", "cdm": "tab:red"}
    lines = ["| SNR | receiver | setting | PSNR (dB) | SSIM | FD-cls [95 % CI] | accuracy | NFE | s/image |",
             "|---|---|---|---|---|---|---|---|---|"]
    for ax, snr in zip(axes, SNRS):
        for r in [r for r in refs if r["snr_db"] == snr]:
            marker = "*" if r["receiver"] == "deepjscc" else "s"
            ax.scatter(r["psnr"], r["fd_cls"], marker=marker, s=140, c="k", zorder=5,
                       label=f"{r['receiver']} (reference)")
            lines.append(f"| {snr:g} | {r['receiver']} | reference | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                         f"{r['fd_cls']:.2f} | {r['accuracy']:.3f} | — | — |")
        for receiver in SWEEPS:
            order = [json.dumps(o, sort_keys=True) for o in SWEEPS[receiver][1]]
            rows = sorted((c for c in cells if c["receiver"] == receiver and c["snr_db"] == snr
                           and json.dumps(c["options"], sort_keys=True) in order),
                          key=lambda c: order.index(json.dumps(c["options"], sort_keys=True)))
            if not rows:
                continue
            ax.plot([c["psnr"]["mean"] for c in rows], [c["fd_cls"] for c in rows], "o-", c=colours[receiver],
                    label=f"{receiver} ({SWEEPS[receiver][0]})")
            for c in rows:
                short = label(c["options"])
                for long_name, sym in (("cfg_weight", "w"), ("start_sigma", "σ0"), ("lam_confirm", "λ"),
                                       ("zeta", "ζ"), ("steps", "N")):
                    short = short.replace(long_name, sym)
                ax.annotate(short, (c["psnr"]["mean"], c["fd_cls"]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
                lo, hi = c["fd_cls_ci95"]
                lines.append(f"| {snr:g} | {receiver} | {label(c['options'])} | {c['psnr']['mean']:.2f} | "
                             f"{c['ssim']['mean']:.3f} | {c['fd_cls']:.2f} [{lo:.2f}, {hi:.2f}] | "
                             f"{c['accuracy']['mean']:.3f} | {c['nfe']:.0f} | {c['seconds_per_image']:.3f} |")
        ax.set_yscale("log")
        ax.set_xlabel("PSNR (dB)  — distortion, higher is better →")
        ax.set_ylabel("FD-cls (log)  — realism, lower is better")
        ax.set_title(f"AWGN {snr:g} dB, CBR 1/16, 256 test images")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "tradeoff.png", dpi=120)
    text = ["# Consistency–realism trade-off (AWGN, CBR 1/16, 256 Fashion-MNIST test images)", "",
            "Command: `.venv/bin/python scripts/tradeoff.py` then `--assemble`. FD-cls: Fréchet distance of the",
            "shipped classifier's features (not an Inception FID), with a 95 % percentile bootstrap over images",
            "(FD is biased upward under resampling, so the interval can sit above the point estimate). From",
            "results/receivers/receivers.jsonl (their own channel draws).",
            "", *lines, ""]
    (OUT / "tradeoff.md").write_text("\n".join(text))
    print("\n".join(text))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--only", default=",".join(SWEEPS))
    ap.add_argument("--assemble", action="store_true")
    args = ap.parse_args()
    if args.assemble:
        assemble()
        return 0
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).parent))
    from tqdm.auto import tqdm

    from diffcomm import zoo
    from diffcomm.data import get_dataset
    from diffcomm.metrics.classifier import predict

    data = get_dataset("fashion-mnist", "test")
    x, labels = data.images[:args.n], data.labels[:args.n]
    classifier = zoo.load("fmnist-classifier")
    feats = predict(classifier, x)[1]
    (OUT / "cells").mkdir(parents=True, exist_ok=True)
    jobs = [(r, o, s) for r in args.only.split(",") for o in SWEEPS[r][1] for s in SNRS]
    for receiver, options, snr in tqdm(jobs, desc="trade-off cells"):
        path = OUT / "cells" / f"{receiver}_{label(options) or 'default'}_{snr:g}dB.json".replace("=", "")
        if path.exists():
            continue
        record = cell(receiver, options, snr, args.n, x, labels, feats, classifier)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(path)
        print(f"{path.name}: psnr {record['psnr']['mean']:.2f} fd {record['fd_cls']:.2f}", file=sys.stderr)
    assemble()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
