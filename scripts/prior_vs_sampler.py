"""Prior quality against sampler steps: HiFi and DPS with priors from one training run at several step counts.

The source's theory (§IV-A): prior mismatch adds semantic distortion ΔD ≤ KL(p‖p_θ)/λ*, so a better
prior should buy more than more sampler steps. This runs ``hifi`` and ``dps`` on the DeepJSCC link
(CBR 1/16, AWGN, 0 and 10 dB, perfect CSI) with each prior in ``--priors`` (``NAME=PATH``: the
shipped ``fmnist-prior`` at 3,400 steps, and EMA weights kept by ``runs/fmnist-prior-long`` at later
steps; the architecture comes from the long run's recipe, the same as the shipped prior's) and each
step count in ``--steps-hifi`` / ``--steps-dps``, on the first ``--n`` Fashion-MNIST test images.
Strength options are the shipped prior's calibrated ones (``src/diffcomm/zoo/calibration.json``),
given explicitly so that every prior runs with the same ones; the same
channel noise and sampler seed for every prior. Per point: mean PSNR (95 % interval), SSIM,
classifier accuracy of the reconstructions, FD-cls (Fréchet distance on the shipped classifier's
features, reconstructions vs originals; not FID), NFE and seconds. Resumable: points already in the
JSON are kept. Writes ``prior_vs_sampler.json`` and ``prior_vs_sampler.png`` under ``--out``.

    python scripts/prior_vs_sampler.py --n 256 --out results/prior \
        --priors 3.4k=zoo:fmnist-prior 10k=runs/fmnist-prior-long/ema_0010000.safetensors
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from diffcomm import zoo
from diffcomm.calibration import link_calibration
from diffcomm.data import get_dataset
from diffcomm.metrics import psnr, ssim, summarize
from diffcomm.metrics.classifier import predict
from diffcomm.metrics.distribution import frechet_distance
from diffcomm.pipeline import build_link, decode
from diffcomm.receivers.base import get_spec
from diffcomm.training import load_config_file
from diffcomm.utils import atomic_write_json, git_revision

RECIPE = "src/diffcomm/zoo/recipes/fmnist-prior-long.toml"


def load_prior(spec: str) -> tuple[torch.nn.Module, str]:
    """``zoo:NAME`` (a shipped prior) or a path to EMA weights of the long run's architecture."""
    if spec.startswith("zoo:"):
        name = spec[4:]
        return zoo.load(name), f"{name} ({zoo.weights_digest(name)})"
    recipe = load_config_file(RECIPE)
    config = {"kind": "prior", "model": recipe["model"], "name": Path(spec).stem}
    return zoo.load_weights(spec, config), spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--out", default="results/prior")
    ap.add_argument("--priors", nargs="+", required=True, help="LABEL=zoo:NAME or LABEL=PATH.safetensors")
    ap.add_argument("--snr", type=float, nargs="+", default=[0.0, 10.0])
    ap.add_argument("--steps-hifi", type=int, nargs="+", default=[5, 10, 20, 40])
    ap.add_argument("--steps-dps", type=int, nargs="+", default=[10, 20, 50, 100])
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "prior_vs_sampler.json"
    done = json.loads(path.read_text()) if path.is_file() else {"n": args.n, "points": []}
    if done["n"] != args.n:
        raise SystemExit(f"{path} holds points on {done['n']} images; use --n {done['n']} or another --out")
    have = {(p["prior"], p["receiver"], p["snr_db"], p["steps"]) for p in done["points"]}
    data = get_dataset("fashion-mnist", "test")
    x, labels = data.images[:args.n], data.labels[:args.n]
    classifier = zoo.load("fmnist-classifier")
    logits, feats = predict(classifier, x)
    priors = dict(p.split("=", 1) for p in args.priors)
    todo = [(label, r, s, k) for label in priors for r, ks in (("hifi", args.steps_hifi), ("dps", args.steps_dps))
            for s in args.snr for k in ks if (label, r, s, k) not in have]
    loaded: dict[str, tuple[torch.nn.Module, str]] = {}
    for label, receiver, snr, steps in tqdm(todo, desc="prior vs sampler"):
        if label not in loaded:
            loaded[label] = load_prior(priors[label])
        prior, source = loaded[label]
        link = build_link("deepjscc", (1, 28, 28), "1/16", "awgn", snr)
        # the shipped prior's calibrated strength options, given explicitly so every prior gets the same ones
        calibrated = link_calibration(get_spec(receiver), link, {"steps": steps})
        options = {name: c["value"] for name, c in calibrated.items()}
        parts, nfe, t0 = [], 0, time.perf_counter()
        for i in range(0, args.n, args.batch):
            rx = link.transmit(x[i:i + args.batch], generator=torch.Generator().manual_seed(i))
            res = decode(receiver, link, rx, prior=prior, generator=torch.Generator().manual_seed(10_000 + i),
                         steps=steps, **options)
            parts.append(res.x_hat)
            nfe = res.nfe
        seconds = time.perf_counter() - t0
        x_hat = torch.cat(parts)
        logits_hat, feats_hat = predict(classifier, x_hat)
        m = summarize({"psnr": psnr(x_hat, x), "ssim": ssim(x_hat, x),
                       "accuracy": (logits_hat.argmax(1) == labels).float()})
        done["points"].append({"prior": label, "prior_source": source, "receiver": receiver, "encoder": "deepjscc",
                               "channel": "awgn", "cbr": "1/16", "snr_db": snr, "steps": steps, "nfe": nfe,
                               "options": options, "psnr": m["psnr"], "ssim": m["ssim"], "accuracy": m["accuracy"],
                               "fd_cls": frechet_distance(feats, feats_hat),
                               "accuracy_original": float((logits.argmax(1) == labels).float().mean()),
                               "seconds_per_image": seconds / args.n, "git": git_revision()})
        atomic_write_json(path, done)
    plot(done, out / "prior_vs_sampler.png")


def plot(done: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    receivers = list(dict.fromkeys(p["receiver"] for p in done["points"]))
    snrs = sorted({p["snr_db"] for p in done["points"]})
    metrics = (("psnr", "PSNR (dB)"), ("fd_cls", "FD-cls (lower is better)"), ("accuracy", "accuracy"))
    fig, axes = plt.subplots(len(metrics), len(receivers) * len(snrs), figsize=(4 * len(receivers) * len(snrs), 9),
                             squeeze=False)
    for col, (receiver, snr) in enumerate((r, s) for r in receivers for s in snrs):
        for row, (key, name) in enumerate(metrics):
            ax = axes[row][col]
            for label in dict.fromkeys(p["prior"] for p in done["points"]):
                pts = sorted((p for p in done["points"] if p["prior"] == label and p["receiver"] == receiver
                              and p["snr_db"] == snr), key=lambda p: p["nfe"])
                if not pts:
                    continue
                vals = [p[key]["mean"] if isinstance(p[key], dict) else p[key] for p in pts]
                ax.plot([p["nfe"] for p in pts], vals, marker="o", label=f"prior {label}")
            ax.set_xscale("log")
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"{receiver}, AWGN {snr:g} dB")
            if row == len(metrics) - 1:
                ax.set_xlabel("network evaluations")
            if col == 0:
                ax.set_ylabel(name)
    axes[0][0].legend()
    fig.suptitle(f"Prior training steps vs sampler steps (DeepJSCC link, CBR 1/16, {done['n']} test images)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
