"""Benchmark the shipped prior's network: training steps/s and ms per network evaluation.

Measures, for fp32 and bf16 autocast:
- training steps/s through diffcomm's harness (``diffcomm.training.train``, EMA, clipping,
  progress bar off) and through a plain PyTorch loop over the same network, loss and batch;
  their ratio (harness time / plain time) shows the harness overhead;
- ms per denoiser evaluation at batch 1 and 16.

Usage: python bench/bench_prior.py [--steps 20] [--out bench/results/prior.json]
Writes JSON with the machine description. Numbers are noisy on shared machines: compare the
ratio, measured in the same run, not the absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from diffcomm.diffusion.loss import edm_loss
from diffcomm.diffusion.train_prior import PriorTask
from diffcomm.diffusion.unet import UNetConfig
from diffcomm.training import TrainConfig, load_config_file, train
from diffcomm.utils import atomic_write_json, git_revision

RECIPE = Path(__file__).resolve().parents[1] / "src/diffcomm/zoo/recipes/fmnist-prior.toml"


class NoSnapshot(PriorTask):
    snapshot = None


def plain_loop(task: PriorTask, steps: int, batch: int, bf16: bool) -> float:
    model = task.model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = task.images[:batch] * 2 - 1
    labels = task.labels[:batch]
    t0 = time.perf_counter()
    for step in range(steps):
        gen = torch.Generator().manual_seed(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = edm_loss(model, x, labels, generator=gen).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return steps / (time.perf_counter() - t0)


def harness_loop(task: PriorTask, steps: int, batch: int, bf16: bool) -> float:
    cfg = TrainConfig(steps=steps, batch_size=batch, checkpoint_every=10**9, snapshot_every=10**9,
                      log_every=10**9, bf16=bf16, warmup_steps=1)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(task, cfg, tmp, run_config={"model": "bench"}, progress=False)
        return steps / (time.perf_counter() - t0)


@torch.no_grad()
def ms_per_eval(model, batch: int, bf16: bool, repeats: int) -> float:
    model.eval()
    x = torch.randn(batch, 1, 28, 28)
    sigma = torch.full((batch,), 1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model(x, sigma)
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(x, sigma)
    return 1000 * (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "prior.json"))
    args = ap.parse_args()
    recipe = load_config_file(RECIPE)
    model_cfg = UNetConfig.from_dict(recipe["model"])
    batch = recipe["train"]["batch_size"]
    images = torch.rand(batch * 4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 10, (batch * 4,), generator=torch.Generator().manual_seed(1))
    results = {"network": model_cfg.to_dict(), "batch_size": batch, "steps_timed": args.steps, "modes": {}}
    for bf16 in (False, True):
        mode = "bf16" if bf16 else "fp32"
        # Alternate the two loops twice and keep the best of each, to damp machine noise.
        plain, harness = [], []
        for _ in range(2):
            plain.append(plain_loop(NoSnapshot(images, labels, model_cfg, batch, 0), args.steps, batch, bf16))
            harness.append(harness_loop(NoSnapshot(images, labels, model_cfg, batch, 0), args.steps, batch, bf16))
        net = NoSnapshot(images, labels, model_cfg, batch, 0).model
        results["modes"][mode] = {
            "plain_steps_per_s": max(plain), "harness_steps_per_s": max(harness),
            "harness_time_over_plain": max(plain) / max(harness),
            "ms_per_eval_batch1": ms_per_eval(net, 1, bf16, 50),
            "ms_per_eval_batch16": ms_per_eval(net, 16, bf16, 20),
        }
        print(mode, json.dumps(results["modes"][mode], indent=1))
    results["machine"] = {"platform": platform.platform(), "processor": platform.processor(),
                          "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    results["git_revision"] = git_revision()
    atomic_write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
