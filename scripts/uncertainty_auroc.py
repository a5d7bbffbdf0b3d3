"""Does the posterior uncertainty flag made-up reconstructions? (issue 16, deliverable 6)

Posterior receivers over the shipped DeepJSCC link (Fashion-MNIST, CBR 1/16, AWGN, perfect CSI, calibrated
default strengths) draw S samples per image through ``pipeline.decode(..., posterior_samples=S)`` (one batched
call on the frames repeated S times; x_hat = the first sample). A reconstruction — the first sample — is
*wrong-class* when the shipped classifier's label for it differs from the image's true label. For each
receiver and SNR the script reports how often that happens and the AUROC of predicting it from
``1 − semantic agreement`` and from the rms pixel spread (0.5 = chance), with Hanley–McNeil standard errors,
beside the one-sample baseline ``1 − max softmax`` of the classifier on the first sample (no extra samples:
``--samples 1`` measures it alone).
Every receiver sees the same channel realisations (the channel generator is seeded by seed and SNR).
Rows are written after each (receiver, SNR) and reused on a rerun with the same settings (resume);
``--figure`` draws AUROC vs SNR per receiver and score with ±1 s.e. error bars.

Usage: .venv/bin/python scripts/uncertainty_auroc.py [--receivers dps:20,hifi:10] [--n 128] [--samples 8]
       [--snr -10 -5 0 5 10] [--batch 16] [--out results/uncertainty/auroc.json]
       [--figure results/uncertainty/auroc.png]
       .venv/bin/python scripts/uncertainty_auroc.py --samples 1 --out results/uncertainty/parts/baseline.json
       .venv/bin/python scripts/uncertainty_auroc.py --plot-only --baseline results/uncertainty/parts/baseline.json
           --figure results/uncertainty/auroc.png
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch


def _num(v: float, digits: int = 4) -> float | None:
    """Rounded, or None (JSON null) when undefined (no wrong-class or no right-class image)."""
    return None if math.isnan(v) else round(v, digits)


def _receivers(text: str) -> list[tuple[str, int]]:
    out = []
    for item in text.split(","):
        name, _, steps = item.strip().partition(":")
        out.append((name, int(steps) if steps else 20))
    return out


def measure(receiver: str, steps: int, snr: float, x, labels, args) -> dict:
    """One (receiver, SNR) row: wrong-class rate and AUROCs with Hanley–McNeil standard errors."""
    from diffcomm import zoo
    from diffcomm.metrics import psnr
    from diffcomm.metrics.classifier import predict
    from diffcomm.metrics.uncertainty import auroc, auroc_se
    from diffcomm.pipeline import build_link, decode

    t0 = time.perf_counter()
    link = build_link("deepjscc", (1, 28, 28), "1/16", args.channel, snr)
    g_channel = torch.Generator().manual_seed(args.seed * 1000 + int(round(snr * 10)) + 10_000)
    g_receiver = torch.Generator().manual_seed(args.seed + 1)
    spread, agreement, first, psnrs, conf, nfe, used = [], [], [], [], [], 0, {}
    net = zoo.load("fmnist-classifier")
    for i in range(0, len(x), args.batch):
        rx = link.transmit(x[i:i + args.batch], generator=g_channel)
        res = decode(receiver, link, rx, generator=g_receiver, steps=steps,
                     posterior_samples=args.samples if args.samples > 1 else None)
        logits = predict(net, res.x_hat)[0]
        u = res.uncertainty or {}                 # None with --samples 1: the one-sample baseline only
        spread.append(u.get("spread", torch.zeros(len(logits))))
        agreement.append(u.get("agreement", torch.ones(len(logits))))
        first.append(u["classes"][:, 0] if u else logits.argmax(1))
        psnrs.append(psnr(res.x_hat, x[i:i + args.batch]).double())
        conf.append(logits.softmax(1).amax(1))
        nfe, used = res.nfe, res.extras.get("options_used", {})
    spread, agreement, first = torch.cat(spread), torch.cat(agreement), torch.cat(first)
    wrong = first != labels
    k, n = int(wrong.sum()), len(wrong)
    a_conf = auroc(1 - torch.cat(conf), wrong)
    a_dis, a_spr = (auroc(1 - agreement, wrong), auroc(spread, wrong)) if args.samples > 1 else (math.nan, math.nan)
    return {"receiver": receiver, "steps": steps, "snr_db": snr, "n": n, "samples": args.samples, "nfe": nfe,
            "options_used": used, "wrong_class": k, "wrong_class_rate": round(k / n, 4),
            "auroc_disagreement": _num(a_dis), "auroc_disagreement_se": _num(auroc_se(a_dis, k, n - k)),
            "auroc_spread": _num(a_spr), "auroc_spread_se": _num(auroc_se(a_spr, k, n - k)),
            "auroc_confidence": _num(a_conf), "auroc_confidence_se": _num(auroc_se(a_conf, k, n - k)),
            "mean_agreement": round(float(agreement.mean()), 4), "mean_spread": round(float(spread.mean()), 5),
            "psnr_first_sample": round(float(torch.cat(psnrs).mean()), 3),
            "seconds": round(time.perf_counter() - t0, 1)}


def plot(record: dict, path: str) -> None:
    """AUROC vs SNR per receiver and score, ±1 Hanley–McNeil s.e. (written atomically)."""
    from matplotlib.figure import Figure

    from diffcomm.utils import atomic_write_bytes

    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    ax = fig.add_subplot()
    styles = {"auroc_disagreement": ("-", "o", "1 − agreement"), "auroc_spread": ("--", "s", "pixel spread"),
              "auroc_confidence": (":", "^", "1 − max softmax (one sample)")}
    for j, receiver in enumerate(dict.fromkeys(r["receiver"] for r in record["rows"])):
        rows = sorted((r for r in record["rows"] if r["receiver"] == receiver), key=lambda r: r["snr_db"])
        for key, (ls, marker, label) in styles.items():
            pts = [(r["snr_db"], r[key], r[key + "_se"] or 0.0) for r in rows if r.get(key) is not None
                   and not (key != "auroc_confidence" and r["samples"] < 2)]
            if pts:
                snr, a, se = zip(*pts)
                ax.errorbar([s + (0.15 if key == "auroc_spread" else -0.15) + 0.3 * j for s in snr], a, yerr=se,
                            ls=ls, marker=marker, color=f"C{j}", capsize=3,
                            label=f"{receiver} ({rows[0]['steps']} steps): {label}")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("channel SNR (dB)")
    ax.set_ylabel("AUROC for a wrong-class first sample (±1 s.e.)")
    ax.set_ylim(0.3, 1.0)
    ax.set_title(f"{record['encoder']}, {record['channel']}, S = {record['samples']}, {record['dataset']}", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receivers", default="dps:20,hifi:10", help="receiver:steps, comma-separated")
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--snr", type=float, nargs="+", default=[-10.0, -5.0, 0.0, 5.0, 10.0])
    parser.add_argument("--channel", default="awgn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=16, help="images per decode call (x samples rows)")
    parser.add_argument("--out", default="results/uncertainty/auroc.json")
    parser.add_argument("--figure", default=None, help="also draw AUROC vs SNR here (PNG)")
    parser.add_argument("--plot-only", action="store_true", help="redraw --figure from --out, compute nothing")
    parser.add_argument("--baseline", help="with --plot-only: also draw the one-sample rows of this file "
                                           "(a --samples 1 run)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    import json
    from pathlib import Path

    import diffcomm
    from diffcomm.data import get_dataset
    from diffcomm.pipeline import jscc_model_name
    from diffcomm.utils import atomic_write_json, git_revision

    if args.plot_only:
        record = json.loads(Path(args.out).read_text())
        if args.baseline:
            record["rows"] += json.loads(Path(args.baseline).read_text())["rows"]
        plot(record, args.figure)
        print(f"wrote {args.figure}")
        return 0
    data = get_dataset("fashion-mnist", "test")
    x, labels = data.images[:args.n], data.labels[:args.n]
    settings = {"n": args.n, "samples": args.samples, "channel": args.channel, "seed": args.seed, "batch": args.batch}
    old = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    rows = [r for r in old.get("rows", []) if old.get("settings") == settings]
    record = {"command": " ".join(["python scripts/uncertainty_auroc.py",
                                   *(argv if argv is not None else sys.argv[1:])]).strip(),
              "settings": settings, "encoder": jscc_model_name(args.channel, 1 / 16),
              "dataset": f"fashion-mnist test[:{args.n}]", "cbr": "1/16", "channel": args.channel, "csi": "perfect",
              "samples": args.samples, "seed": args.seed,
              "wrong_class": "the shipped classifier's label of the first sample differs from the true label",
              "auroc_se": "Hanley & McNeil (1982) standard error",
              "version": diffcomm.__version__, "git": git_revision(), "rows": rows}
    for receiver, steps in _receivers(args.receivers):
        for snr in args.snr:
            if any(r["receiver"] == receiver and r["steps"] == steps and r["snr_db"] == snr for r in rows):
                continue
            rows.append(measure(receiver, steps, snr, x, labels, args))
            print(rows[-1], flush=True)
            atomic_write_json(args.out, record)
    atomic_write_json(args.out, record)
    print(f"wrote {args.out}")
    if args.figure:
        plot(record, args.figure)
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
