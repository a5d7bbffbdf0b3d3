"""Domain adaptation (issue 17): how much of the out-of-distribution loss on MNIST digits fine-tuning recovers.

The shipped priors are trained on Fashion-MNIST; on digits DPS pulls reconstructions towards clothes. The
priors compared (all the same U-Net):

* ``fmnist-prior`` — the package's default prior (what DPS and HiFi use unless told otherwise);
* ``fmnist-prior-long`` — the longer-trained Fashion prior the adapted ones start from;
* ``fmnist-prior-mnist100`` / ``fmnist-prior-mnist1000`` — that prior fine-tuned (all weights) on 100 / 1,000
  digits of the mnist-subset *training* split (recipes in src/diffcomm/zoo/recipes).

Receivers: DPS and HiFi on the DeepJSCC link (CBR 1/16, the shipped AWGN / Rayleigh DeepJSCC, perfect CSI),
beside the DeepJSCC decoder; 256 digits of the mnist-subset *test* split, balanced over the ten classes
(:func:`balanced_indices`: 26 each of 0-5, 25 each of 6-9; the first results used the split's first 256 items,
which are only 0, 1 and 2); the strength options are the
calibrated ones of the default prior at that link and SNR (the same values for every prior, so only the prior
changes). Metrics: PSNR, SSIM (mean, 95 % t interval) and the accuracy of the shipped digit classifier
``mnist-classifier`` (0.977 on the test split) on the reconstructions (Wilson interval). Same images, channel
seed 0 and receiver seed 1 in every cell. Resumable: one JSON per cell under results/adaptation/cells.

Usage:
    .venv/bin/python scripts/domain_adaptation.py [--n 256] [--snr 5] [--channels awgn,rayleigh]
    .venv/bin/python scripts/domain_adaptation.py --assemble
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

OUT = Path("results/adaptation")
PRIORS = ("fmnist-prior", "fmnist-prior-long", "fmnist-prior-mnist100", "fmnist-prior-mnist1000")
RECEIVERS = ("dps", "hifi")
STEPS = {"dps": 20, "hifi": 10}


def balanced_indices(labels: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` test items taken round-robin over the classes (the split is sorted by label, so its first
    256 items are only the digits 0, 1 and 2): ⌈n/10⌉ or ⌊n/10⌋ of each class, each class's earliest items."""
    rank = torch.zeros_like(labels)
    for c in labels.unique():
        members = (labels == c).nonzero().flatten()
        rank[members] = torch.arange(len(members))
    order = sorted(range(len(labels)), key=lambda i: (int(rank[i]), int(labels[i])))
    return torch.tensor(order[:n])


def cell(receiver: str, prior_name: str | None, channel: str, snr: float, n: int) -> dict:
    from diffcomm import zoo
    from diffcomm.data import get_dataset
    from diffcomm.metrics import psnr, ssim, summarize
    from diffcomm.metrics.classifier import predict
    from diffcomm.pipeline import build_link, decode
    from diffcomm.scenarios.machine import wilson_interval

    data = get_dataset("mnist-subset", "test")
    idx = balanced_indices(data.labels, n)
    x, labels = data.images[idx], data.labels[idx]
    link = build_link("deepjscc", (1, 28, 28), "1/16", channel, snr, csi="perfect", seed=0)
    g_channel, g_receiver = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    options = {"steps": STEPS[receiver]} if receiver in STEPS else {}
    if prior_name not in (None, "fmnist-prior"):   # the default prior's calibrated strengths, for every prior
        probe_rx = link.transmit(x[:1], generator=torch.Generator().manual_seed(0))
        used = decode(receiver, link, probe_rx, generator=torch.Generator().manual_seed(0), **options)
        options = {k: v for k, v in used.extras["options_used"].items() if v is not None}
    prior = zoo.load(prior_name) if prior_name not in (None, "fmnist-prior") else None
    outs, seconds, nfe = [], 0.0, 0.0
    for i in range(0, n, 64):
        rx = link.transmit(x[i:i + 64], generator=g_channel)
        res = decode(receiver, link, rx, prior=prior, generator=g_receiver, **options)
        outs.append(res.x_hat.float().clamp(0, 1))
        seconds += res.seconds
        nfe += res.nfe * len(rx.y)
        options_used = res.extras.get("options_used", options)
    x_hat = torch.cat(outs)
    net = zoo.load("mnist-classifier")
    correct = int((predict(net, x_hat)[0].argmax(1) == labels).sum())
    correct_orig = int((predict(net, x)[0].argmax(1) == labels).sum())
    m = summarize({"psnr": psnr(x_hat, x), "ssim": ssim(x_hat, x)})
    return {"receiver": receiver, "prior": prior_name, "channel": channel, "snr_db": snr, "n": n,
            "dataset": "mnist-subset", "split": "test",
            "digits_per_class": torch.bincount(labels, minlength=10).tolist(), "psnr": m["psnr"], "ssim": m["ssim"],
            "accuracy": correct / n, "accuracy_ci95": list(wilson_interval(correct, n)),
            "accuracy_original": correct_orig / n, "nfe": nfe / n, "seconds_per_image": seconds / n,
            "options_used": {k: v for k, v in options_used.items() if not callable(v)},
            "models": {"prior": prior_name, "classifier": "mnist-classifier",
                       "weights": {p: zoo.weights_digest(p) for p in filter(None, [prior_name, "mnist-classifier"])}}}


def key(receiver, prior, channel, snr):
    return f"{receiver}_{prior or 'none'}_{channel}_{snr:g}dB"


def assemble() -> None:
    cells = [json.loads(p.read_text()) for p in sorted((OUT / "cells").glob("*.json"))]
    (OUT / "adaptation.json").write_text(json.dumps(cells, indent=1))
    lines = ["| channel | SNR | receiver | prior | PSNR (dB) | SSIM | digit accuracy | NFE |",
             "|---|---|---|---|---|---|---|---|"]
    order = {p: i for i, p in enumerate((None, *PRIORS))}
    for c in sorted(cells, key=lambda c: (c["channel"], c["snr_db"], c["receiver"] != "deepjscc", c["receiver"],
                                          order.get(c["prior"], 9))):
        p, s = c["psnr"], c["ssim"]
        lo, hi = c["accuracy_ci95"]
        lines.append(f"| {c['channel']} | {c['snr_db']:g} | {c['receiver']} | {c['prior'] or '—'} | "
                     f"{p['mean']:.2f} [{p['ci_low']:.2f}, {p['ci_high']:.2f}] | {s['mean']:.3f} | "
                     f"{c['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] | {c['nfe']:.0f} |")
    orig = cells[0]["accuracy_original"] if cells else None
    text = ["# Domain adaptation: Fashion-MNIST priors on MNIST digits", "",
            f"256 mnist-subset test digits, balanced over the ten classes (26 each of 0-5, 25 each of 6-9); digit "
            f"classifier accuracy on the originals: {orig}.",
            "Command: `.venv/bin/python scripts/domain_adaptation.py` then `--assemble`.", "", *lines, ""]
    (OUT / "adaptation.md").write_text("\n".join(text))
    print("\n".join(text))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--snr", type=float, default=5.0)
    ap.add_argument("--channels", default="awgn")
    ap.add_argument("--priors", default=",".join(PRIORS))
    ap.add_argument("--assemble", action="store_true")
    args = ap.parse_args()
    if args.assemble:
        assemble()
        return 0
    torch.set_num_threads(1)
    (OUT / "cells").mkdir(parents=True, exist_ok=True)
    jobs = []
    for channel in args.channels.split(","):
        jobs.append(("deepjscc", None, channel))
        jobs += [(r, p, channel) for r in RECEIVERS for p in args.priors.split(",")]
    from tqdm.auto import tqdm

    for receiver, prior, channel in tqdm(jobs, desc="adaptation cells"):
        path = OUT / "cells" / f"{key(receiver, prior, channel, args.snr)}.json"
        if path.exists():
            continue
        record = cell(receiver, prior, channel, args.snr, args.n)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(path)
        print(f"{path.name}: psnr {record['psnr']['mean']:.2f} acc {record['accuracy']:.3f}", file=sys.stderr)
    assemble()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
