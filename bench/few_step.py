"""Few-step receivers (flow_lt, pnp_flow, daps) at 1, 2, 4 and 10 network evaluations, next to the references.

Setup: the first ``--images`` (64) Fashion-MNIST *test* images; two links at CBR 1/16 —
``pipeline.build_link("deepjscc", (1, 28, 28), "1/16", "awgn", snr)`` and the ``downsample`` link —
at AWGN 10 and 0 dB, perfect CSI; one channel draw per (link, SNR) (seed 0), one receiver generator
per run (seed 1), decoded through ``pipeline.decode`` as ``eval/runner.py`` does, one torch thread.
Priors: the shipped ``fmnist-prior`` (EDM) and, when ``runs/fmnist-flow/checkpoint.safetensors``
exists, the in-training rectified-flow prior's EMA weights (read from a temporary copy; nothing is
written under ``runs/``), both through the same denoiser interface.

Rows: each few-step receiver with its registered defaults except the number of evaluations
(flow_lt: ``steps`` = NFE with Euler; pnp_flow: ``steps`` = NFE; daps: ``steps`` = NFE with one ODE
step per level), and the references: ``hifi`` at 10 steps (DeepJSCC link only), ``dps`` at 20 steps,
the ``deepjscc`` decoder and the ``pinv`` pseudo-inverse (no prior). PSNR/SSIM are means over the
images; ``seconds`` is the receiver's wall time for the batch of 64 on this machine.

Usage:
    .venv/bin/python bench/few_step.py                       # -> bench/results/few_step.json
    .venv/bin/python bench/few_step.py --tune flow_lt         # the training-split search behind a default
    .venv/bin/python bench/few_step.py --calibrate            # the DeepJSCC error-level constants

``--tune`` and ``--calibrate`` use the *last* 64 (512) images of the Fashion-MNIST train split only,
as the receivers' docstrings state; they print and write nothing else.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from diffcomm import zoo
from diffcomm.data import get_dataset
from diffcomm.eval.runner import machine_info
from diffcomm.metrics import psnr, ssim
from diffcomm.pipeline import build_link, decode
from diffcomm.utils import atomic_write_json, git_revision

ROOT = Path(__file__).resolve().parents[1]
FLOW_CHECKPOINT = ROOT / "runs" / "fmnist-flow" / "checkpoint.safetensors"
FLOW_RECIPE = ROOT / "src" / "diffcomm" / "zoo" / "recipes" / "fmnist-flow.toml"
SHAPE, CBR = (1, 28, 28), "1/16"
NFES = (1, 2, 4, 10)

# few-step receivers: name -> options for a given NFE (everything else at the registered defaults)
FEW_STEP = {
    "flow_lt": lambda nfe: {"steps": nfe},
    "pnp_flow": lambda nfe: {"steps": nfe},
    "daps": lambda nfe: {"steps": nfe, "ode_steps": 1},
}
# references: (name, options, links it runs on)
REFERENCES = [
    ("hifi", {"steps": 10}, ("deepjscc",)),
    ("dps", {"steps": 20}, ("deepjscc", "downsample")),
    ("deepjscc", {}, ("deepjscc",)),
    ("pinv", {}, ("downsample",)),
]
# the training-split searches behind the defaults (the receivers' docstrings)
TUNE_GRIDS = {
    "flow_lt": {"steps": [1, 2, 4], "start_scale": [0.5, 1.0, 1.5, 2.0], "renoise": [0.0, 0.5, 1.0, 1.5],
                "dc": [0.0, 0.3, 1.0]},
    "pnp_flow": {"steps": [4], "gamma": [0.5, 1.0, 1.5], "alpha": [0.0, 0.5, 1.0],
                 "t_start": [0.3, 0.45, 0.6, 0.9, 1.0]},
    "daps": {"steps": [4], "start_scale": [1.0, 1.5, 2.0, 3.0, 4.0], "lr": [0.5, 1.0], "langevin_steps": [10, 20]},
    "pnp_cm": {"steps": [2], "start_scale": [0.5, 1.0, 1.5, 2.0, 3.0], "renoise": [0.0, 0.5, 1.0],
               "dc": [0.3, 1.0, 3.0]},
}


def load_flow_prior(checkpoint: Path = FLOW_CHECKPOINT):
    """The EMA weights of the in-training flow run as a FlowDenoiser (from a temporary copy), and its step."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from diffcomm.diffusion.flow import FlowDenoiser
    from diffcomm.diffusion.unet import UNet, UNetConfig
    from diffcomm.training import load_config_file

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "checkpoint.safetensors"
        shutil.copyfile(checkpoint, copy)
        with safe_open(str(copy), "pt") as f:
            meta = json.loads((f.metadata() or {}).get("diffcomm", "{}"))
        state = load_file(str(copy))
    recipe = load_config_file(FLOW_RECIPE)
    model = FlowDenoiser(UNet(UNetConfig.from_dict(recipe["model"])))
    model.load_state_dict({k[len("ema."):]: v for k, v in state.items() if k.startswith("ema.")})
    model.eval().requires_grad_(False)
    return model, int(meta.get("step", -1))


def links(snr_db: float) -> dict:
    return {enc: build_link(enc, SHAPE, CBR, "awgn", snr_db) for enc in ("deepjscc", "downsample")}


def run_one(name: str, link, rx, x: torch.Tensor, prior, options: dict) -> dict:
    res = decode(name, link, rx, prior=prior, generator=torch.Generator().manual_seed(1), **options)
    return {"psnr": float(psnr(res.x_hat, x).mean()), "ssim": float(ssim(res.x_hat, x).mean()),
            "nfe": int(res.nfe), "seconds": float(res.seconds)}


def measure(n_images: int, out: Path, with_flow: bool) -> None:
    x = get_dataset("fashion-mnist", "test").images[:n_images]
    priors = {"fmnist-prior": (zoo.load("fmnist-prior"), None)}
    if with_flow and FLOW_CHECKPOINT.is_file():
        flow, step = load_flow_prior()
        priors[f"fmnist-flow@{step}"] = (flow, step)
    rows = []
    for snr in (10.0, 0.0):
        for enc, link in links(snr).items():
            rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
            for prior_name, (prior, _) in priors.items():
                jobs = [(name, make(nfe)) for name, make in FEW_STEP.items() for nfe in NFES]
                jobs += [(name, opts) for name, opts, encs in REFERENCES if enc in encs]
                for name, opts in jobs:
                    if name in ("deepjscc", "pinv") and prior_name != "fmnist-prior":
                        continue                      # no prior: measured once
                    r = run_one(name, link, rx, x, prior, opts)
                    row = {"prior": prior_name if name not in ("deepjscc", "pinv") else None, "link": enc,
                           "snr_db": snr, "receiver": name, "options": opts, **r}
                    rows.append(row)
                    print(f"{snr:4.0f} dB {enc:10s} {str(row['prior']):18s} {name:9s} nfe {r['nfe']:3d} "
                          f"psnr {r['psnr']:6.2f} ssim {r['ssim']:.3f} {r['seconds']:7.2f}s", flush=True)
    record = {
        "setup": {"images": n_images, "split": "test", "dataset": "fashion-mnist", "cbr": CBR, "channel": "awgn",
                  "csi": "perfect", "channel_seed": 0, "receiver_seed": 1, "nfe": list(NFES)},
        "priors": {k: ({"kind": "flow", "checkpoint": str(FLOW_CHECKPOINT.relative_to(ROOT)), "ema_step": s}
                       if s is not None else {"kind": "edm", "zoo": k}) for k, (_, s) in priors.items()},
        "rows": rows,
        "machine": {**machine_info(torch.get_num_threads()), "load_average": list(os.getloadavg())},
        "git_revision": git_revision(),
        "command": f"python bench/few_step.py --images {n_images}",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(out, record)
    print(f"wrote {out}")


def tune(name: str) -> None:
    """The training-split search of one receiver's defaults (last 64 train images, AWGN 0/10 dB, both links),
    on the prior the receiver gets by default (the consistency model for pnp_cm, else fmnist-prior)."""
    from diffcomm.pipeline import default_prior
    from diffcomm.receivers import get_spec

    prior = default_prior(get_spec(name), SHAPE)
    x = get_dataset("fashion-mnist", "train").images[-64:]
    grid = TUNE_GRIDS[name]
    cells = []
    for snr in (10.0, 0.0):
        for enc, link in links(snr).items():
            cells.append((f"{enc}@{snr:g}dB", link, link.transmit(x, generator=torch.Generator().manual_seed(0))))
    for values in itertools.product(*grid.values()):
        opts = dict(zip(grid, values))
        scores = [run_one(name, link, rx, x, prior, opts)["psnr"] for _, link, rx in cells]
        print(opts, " ".join(f"{c}={s:.2f}" for (c, _, _), s in zip(cells, scores)),
              f"mean={sum(scores) / len(scores):.2f}", flush=True)


def calibrate() -> None:
    """The DeepJSCC decoder's model-space RMS error against ε (receivers.fidelity.JSCC_FLOOR / JSCC_ERROR_GAIN)."""
    from diffcomm.receivers.fidelity import DataTerm

    prior = zoo.load("fmnist-prior")
    x = get_dataset("fashion-mnist", "train").images[-512:]
    for channel, snrs in (("awgn", (0, 5, 10, 20)), ("rayleigh", (0, 10))):
        for snr in snrs:
            link = build_link("deepjscc", SHAPE, CBR, channel, float(snr))
            rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
            term = DataTerm(link, rx, prior)
            x_hat, predicted = term.estimate()
            err = (x_hat - prior.to_model(x)).pow(2).flatten(1).mean(1).sqrt()
            eps = float(term.symbol_error().sqrt().mean())
            print(f"{channel:8s} {snr:3d} dB  rms error {float(err.mean()):.3f}  eps {eps:.3f}"
                  f"  predicted {float(predicted.mean()):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "few_step.json"))
    ap.add_argument("--no-flow", action="store_true", help="skip the in-training flow prior")
    ap.add_argument("--tune", choices=sorted(TUNE_GRIDS), help="run a default's training-split search instead")
    ap.add_argument("--calibrate", action="store_true", help="print the DeepJSCC error-level calibration instead")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.tune:
        tune(args.tune)
    elif args.calibrate:
        calibrate()
    else:
        measure(args.images, Path(args.out), not args.no_flow)


if __name__ == "__main__":
    main()
