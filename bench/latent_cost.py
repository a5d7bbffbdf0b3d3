"""Latent DPS against pixel DPS: seconds (and FLOPs) per guided network evaluation, and PSNR/SSIM.

Setup: the first ``--images`` (64) Fashion-MNIST *test* images; the DeepJSCC link at CBR 1/16,
``pipeline.build_link("deepjscc", (1, 28, 28), "1/16", "awgn", 10)``, perfect CSI, one channel draw
(seed 0) and one receiver generator (seed 1); one torch thread.

- **Cost per evaluation** (with gradient, batch ``--images``): one call of each receiver's conditional
  denoiser (:func:`diffcomm.receivers.guidance.gradient_guided`) at σ = 1 — the prior network forward,
  the data term (pixel DPS: the link on the clamped x̂0; latent DPS: decoder then link, A ∘ D) and the
  backward pass through all of it — the median of ``--repeats`` timed calls after one warm-up, each
  receiver's calls interleaved with the other's so both see the same machine load. FLOPs of the forward
  parts (network; data term = link, or decoder then link) are counted with
  ``torch.utils.flop_counter.FlopCounterMode``; a guided evaluation is estimated as 3 × their sum
  (backward ≈ 2 × forward; the counter cannot follow ``torch.autograd.grad``). The parts are
  timed the same way: network forward only, network forward + backward, decoder forward + backward.
- **Quality** at ``--steps`` (20) steps: ``pipeline.decode("dps", ...)`` on the shipped ``fmnist-prior``
  (its calibrated options for this link and SNR, as decode fills them) and ``decode("latent_dps", ...)``
  on the shipped ``fmnist-latent-prior`` (registered defaults), mean PSNR/SSIM and the receivers' own
  seconds per evaluation (wall time / NFE of the whole run); for reference the DeepJSCC decoder and
  the autoencoder's reconstruction of the clean images (the ceiling the decoder sets on latent DPS).

Usage:
    .venv/bin/python bench/latent_cost.py              # -> bench/results/latent_cost.json
    .venv/bin/python bench/latent_cost.py --tune       # the training-split search behind latent_dps's defaults

``--tune`` uses the *last* 64 images of the Fashion-MNIST train split only (AWGN 10 dB, the DeepJSCC
link, 30 steps), as the receiver's docstring states; it prints and writes nothing else.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from diffcomm import zoo
from diffcomm.data import get_dataset
from diffcomm.eval.runner import machine_info
from diffcomm.metrics import psnr, ssim
from diffcomm.pipeline import build_link, decode
from diffcomm.receivers.base import complex_sq_norm
from diffcomm.receivers.guidance import CountingPrior, dps_weight, gain_power, gradient_guided
from diffcomm.receivers.latent_dps import latent_operator
from diffcomm.utils import atomic_write_json, git_revision

SHAPE, CBR, SNR = (1, 28, 28), "1/16", 10.0


def guided_denoisers(link, rx, pixel_prior, latent_prior) -> dict:
    """name -> (conditional denoiser, state shape): exactly the terms the two receivers build."""
    op = link.operator(rx)
    latent_forward = latent_operator(link, rx, latent_prior)
    weight = dps_weight(rx.n0, 1.0, 1.0, gain_power(rx))
    pixel = gradient_guided(CountingPrior(pixel_prior),
                            lambda x0: complex_sq_norm(rx.y - op(pixel_prior.to_pixels(x0).clamp(0, 1))), weight)
    latent = gradient_guided(CountingPrior(latent_prior), lambda z0: complex_sq_norm(rx.y - latent_forward(z0)),
                             weight)
    return {"dps": (pixel, SHAPE), "latent_dps": (latent, tuple(latent_prior.latent_shape))}


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def cost(link, rx, pixel_prior, latent_prior, batch: int, repeats: int) -> dict:
    gen = torch.Generator().manual_seed(2)
    sigma = torch.ones(batch)
    calls = {}
    for name, (den, shape) in guided_denoisers(link, rx, pixel_prior, latent_prior).items():
        x = torch.randn((batch, *shape), generator=gen)
        net = pixel_prior if name == "dps" else latent_prior

        def net_forward(net=net, x=x):
            with torch.no_grad():
                net(x, sigma)

        def net_backward(net=net, x=x):
            xr = x.clone().requires_grad_(True)
            torch.autograd.grad(net(xr, sigma).sum(), xr)

        calls[name] = {"guided_evaluation": lambda den=den, x=x: den(x, sigma), "network_forward": net_forward,
                       "network_forward_backward": net_backward}
        if name == "latent_dps":
            def decoder(x=x):
                xr = x.clone().requires_grad_(True)
                torch.autograd.grad(latent_prior.decode(xr).sum(), xr)
            calls[name]["decoder_forward_backward"] = decoder
    op, latent_forward = link.operator(rx), latent_operator(link, rx, latent_prior)
    x_pix = torch.rand((batch, *SHAPE), generator=gen)
    z_lat = torch.randn((batch, *latent_prior.latent_shape), generator=gen)
    data_terms = {"dps": lambda: op(x_pix), "latent_dps": lambda: latent_forward(z_lat)}
    times: dict = {name: {part: [] for part in parts} for name, parts in calls.items()}
    for parts in calls.values():
        for fn in parts.values():
            fn()  # warm-up
    for _ in range(repeats):  # interleaved: both receivers see the same load
        for name, parts in calls.items():
            for part, fn in parts.items():
                times[name][part] += timed(fn, 1)
    out = {}
    for name, parts in calls.items():
        out[name] = {f"{part}_seconds": statistics.median(times[name][part]) for part in parts}
        out[name]["network_forward_gflop"] = flops(parts["network_forward"]) / 1e9
        out[name]["data_term_forward_gflop"] = flops(data_terms[name]) / 1e9
        # FlopCounterMode cannot follow torch.autograd.grad: a backward pass costs about twice its forward
        out[name]["guided_evaluation_gflop_estimate"] = 3 * (out[name]["network_forward_gflop"]
                                                             + out[name]["data_term_forward_gflop"])
        net = pixel_prior.net if name == "dps" else latent_prior.net
        out[name]["network_parameters"] = sum(p.numel() for p in net.parameters())
    out["latent_dps"]["decoder_parameters"] = sum(p.numel() for p in latent_prior.autoencoder.decoder.parameters())
    out["ratio_latent_over_pixel"] = {
        "seconds_per_guided_evaluation": out["latent_dps"]["guided_evaluation_seconds"]
        / out["dps"]["guided_evaluation_seconds"],
        "gflop_per_guided_evaluation_estimate": out["latent_dps"]["guided_evaluation_gflop_estimate"]
        / out["dps"]["guided_evaluation_gflop_estimate"],
    }
    return out


def quality(link, rx, x: torch.Tensor, steps: int, latent_prior) -> dict:
    rows = {}
    for name in ("dps", "latent_dps"):
        res = decode(name, link, rx, generator=torch.Generator().manual_seed(1), steps=steps)
        rows[name] = {"psnr": float(psnr(res.x_hat, x).mean()), "ssim": float(ssim(res.x_hat, x).mean()),
                      "nfe": res.nfe, "seconds": res.seconds, "seconds_per_evaluation": res.seconds / res.nfe,
                      "options_used": res.extras["options_used"],
                      "options_source": res.extras["options_source"]}
        print(f"{name:10s} psnr {rows[name]['psnr']:.2f} ssim {rows[name]['ssim']:.3f} nfe {res.nfe} "
              f"{res.seconds:.1f}s", flush=True)
    res = decode("deepjscc", link, rx)
    rows["deepjscc"] = {"psnr": float(psnr(res.x_hat, x).mean()), "ssim": float(ssim(res.x_hat, x).mean()), "nfe": 0}
    with torch.no_grad():
        rec = latent_prior.autoencoder(x)
    rows["autoencoder_reconstruction_of_clean_images"] = {"psnr": float(psnr(rec, x).mean()),
                                                          "ssim": float(ssim(rec, x).mean())}
    return rows


def measure(n_images: int, steps: int, repeats: int, out: Path) -> None:
    x = get_dataset("fashion-mnist", "test").images[:n_images]
    link = build_link("deepjscc", SHAPE, CBR, "awgn", SNR)
    rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
    pixel_prior, latent_prior = zoo.load("fmnist-prior"), zoo.load("fmnist-latent-prior")
    c = cost(link, rx, pixel_prior, latent_prior, n_images, repeats)
    print({k: (round(v["guided_evaluation_seconds"], 4) if "guided_evaluation_seconds" in v else v)
           for k, v in c.items()}, flush=True)
    q = quality(link, rx, x, steps, latent_prior)
    record = {
        "setup": {"images": n_images, "split": "test", "dataset": "fashion-mnist", "link": "deepjscc", "cbr": CBR,
                  "channel": "awgn", "snr_db": SNR, "csi": "perfect", "channel_seed": 0, "receiver_seed": 1,
                  "steps": steps, "cost_batch": n_images, "cost_sigma": 1.0, "cost_repeats": repeats,
                  "priors": {"dps": "fmnist-prior", "latent_dps": "fmnist-latent-prior"},
                  "weights_sha256_16": {n: zoo.weights_digest(n) for n in ("fmnist-prior", "fmnist-latent-prior")}},
        "cost_per_evaluation": c,
        "quality": q,
        "machine": {**machine_info(torch.get_num_threads()), "load_average": list(os.getloadavg())},
        "git_revision": git_revision(),
        "command": f"python bench/latent_cost.py --images {n_images} --steps {steps} --repeats {repeats}",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(out, record)
    print(f"wrote {out}")


def tune() -> None:
    """latent_dps's ζ (κ = 1), then κ, then γ: last 64 train images, DeepJSCC link, AWGN 10 dB, 30 steps."""
    x = get_dataset("fashion-mnist", "train").images[-64:]
    link = build_link("deepjscc", SHAPE, CBR, "awgn", SNR)
    rx = link.transmit(x, generator=torch.Generator().manual_seed(0))

    def score(**opts) -> float:
        res = decode("latent_dps", link, rx, generator=torch.Generator().manual_seed(1), steps=30, **opts)
        value = float(psnr(res.x_hat, x).mean())
        print(opts, f"psnr={value:.2f}", flush=True)
        return value

    zetas = {z: score(zeta=z) for z in (0.25, 0.5, 1.0, 2.0, 3.0, 5.0)}
    best = max(zetas, key=zetas.get)
    kappas = {k: score(zeta=best, kappa=k) for k in (0.3, 1.0, 3.0)}
    kappa = max(kappas, key=kappas.get)
    gammas = {g: score(zeta=best, kappa=kappa, gamma=g) for g in (0.0, 0.1, 0.3, 1.0)}
    print(f"best zeta {best}; kappa {kappa}; gamma {max(gammas, key=gammas.get)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "latent_cost.json"))
    ap.add_argument("--tune", action="store_true", help="the training-split search behind latent_dps's defaults")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.tune:
        tune()
    else:
        measure(args.images, args.steps, args.repeats, Path(args.out))


if __name__ == "__main__":
    main()
