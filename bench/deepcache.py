"""DeepCache (Ma et al., CVPR 2024) on the shipped Fashion-MNIST prior: time and quality against no caching.

First the cost of one full and one cached network call (batch 64, interleaved medians: robust to the
machine's load changing). Then two measurements, each at cache intervals 1 (off), 2, 3 and 5, one
torch thread, in one run so the ratios compare like with like on this (noisy, shared) machine:

* **Unconditional sampling**: ``--samples`` (500) Heun samples, 18 steps (35 evaluations), the shipped
  ``fmnist-prior-long``; FD-cls of the samples against the test set (the shipped classifier's
  features; :func:`diffcomm.metrics.distribution.frechet_distance`), wall time.
* **A receiver**: ``dps`` at 50 steps (gradients through the network: the cached feature is a
  constant, so only the shallow path is differentiated) on the DeepJSCC link (CBR 1/16, AWGN 10 dB,
  perfect CSI) with the first ``--images`` (64) test images; PSNR/SSIM and wall time.

Usage:
    .venv/bin/python bench/deepcache.py          # -> bench/results/deepcache.json
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from diffcomm import zoo
from diffcomm.data import get_dataset
from diffcomm.diffusion.deepcache import DeepCachePrior
from diffcomm.diffusion.sampling import sample_prior
from diffcomm.eval.runner import machine_info
from diffcomm.metrics import psnr, ssim
from diffcomm.metrics.classifier import predict
from diffcomm.metrics.distribution import frechet_distance
from diffcomm.pipeline import build_link, decode
from diffcomm.utils import atomic_write_json, git_revision

INTERVALS = (1, 2, 3, 5)
PRIOR = "fmnist-prior-long"


def call_costs(prior, batch: int = 64, repeats: int = 20) -> dict:
    """Seconds per full and per cached network call, measured interleaved (full, cached, full, …) so that a
    change of machine load hits both alike; the ratio is the per-call saving behind every interval."""
    cached = DeepCachePrior(prior, interval=2)
    x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    full, reuse = [], []
    with torch.no_grad():
        cached(x, torch.tensor(80.0))                       # warm-up (fills the cache)
        for _ in range(2 * repeats):
            t0 = time.perf_counter()
            cached(x, torch.tensor(1.0))
            (reuse if cached.cache.reuse else full).append(time.perf_counter() - t0)
    full_s, cached_s = sorted(full)[len(full) // 2], sorted(reuse)[len(reuse) // 2]
    return {"batch": batch, "repeats": repeats, "full_call_seconds_median": full_s,
            "cached_call_seconds_median": cached_s, "cached_over_full": cached_s / full_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "deepcache.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    prior = zoo.load(PRIOR)
    classifier = zoo.load("fmnist-classifier")
    test = get_dataset("fashion-mnist", "test")
    _, f_test = predict(classifier, test.images)
    x = test.images[:args.images]
    link = build_link("deepjscc", (1, 28, 28), "1/16", "awgn", 10.0)
    rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
    costs = call_costs(prior)
    print(f"per call: full {costs['full_call_seconds_median'] * 1000:.1f} ms, cached "
          f"{costs['cached_call_seconds_median'] * 1000:.1f} ms (ratio {costs['cached_over_full']:.2f})", flush=True)
    rows = []
    for interval in INTERVALS:
        cached = DeepCachePrior(prior, interval)
        t0 = time.perf_counter()
        samples, nfe = sample_prior(cached, args.samples, steps=18, seed=1)
        seconds = time.perf_counter() - t0
        _, f = predict(classifier, samples)
        row = {"interval": interval, "sampling": {"samples": args.samples, "nfe": nfe, "seconds": seconds,
                                                  "full_calls": cached.full_calls, "cached_calls": cached.cached_calls,
                                                  "fd_cls_vs_test": frechet_distance(f, f_test)}}
        cached = DeepCachePrior(prior, interval)
        res = decode("dps", link, rx, prior=cached, generator=torch.Generator().manual_seed(1), steps=50)
        row["dps_deepjscc_awgn10"] = {"images": len(x), "nfe": res.nfe, "seconds": res.seconds,
                                      "psnr": float(psnr(res.x_hat, x).mean()),
                                      "ssim": float(ssim(res.x_hat, x).mean())}
        rows.append(row)
        print(f"interval {interval}: sampling {seconds:6.1f}s FD-cls {row['sampling']['fd_cls_vs_test']:.2f} | "
              f"dps {res.seconds:6.1f}s PSNR {row['dps_deepjscc_awgn10']['psnr']:.2f}", flush=True)
    base = rows[0]
    for row in rows:
        row["sampling"]["speedup_vs_no_cache"] = base["sampling"]["seconds"] / row["sampling"]["seconds"]
        row["dps_deepjscc_awgn10"]["speedup_vs_no_cache"] = (base["dps_deepjscc_awgn10"]["seconds"]
                                                             / row["dps_deepjscc_awgn10"]["seconds"])
    atomic_write_json(args.out, {
        "prior": PRIOR, "call_costs": costs, "rows": rows,
        "machine": {**machine_info(1), "load_average": list(os.getloadavg())},
        "git_revision": git_revision(), "command": "python bench/deepcache.py",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
