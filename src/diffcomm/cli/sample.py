"""``diffcomm sample --model NAME --n N [--label L] [--sampler S] [--steps K] [--deep-cache N] --out DIR [--json]``."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from diffcomm.errors import DiffcommError

SAMPLER_NAMES = ["heun", "euler", "ddim", "ddpm", "dpmpp_2m", "pc", "langevin", "consistency"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="draw samples from a shipped diffusion prior",
                       description="Sample a zoo prior, write a grid (and the samples), report NFE and time.")
    p.add_argument("--model", default="fmnist-prior", help="zoo prior name (see `diffcomm zoo list`)")
    p.add_argument("--n", type=int, default=64, help="number of samples")
    p.add_argument("--label", type=int, help="class label (class-conditional priors); enables CFG")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance weight w (with --label)")
    p.add_argument("--sampler", choices=SAMPLER_NAMES,
                   help="default: the model's own (consistency for a consistency model), else heun")
    p.add_argument("--steps", type=int, help="number of noise levels (default: the model's own, else 18)")
    p.add_argument("--deep-cache", type=int, default=1, metavar="N",
                   help="DeepCache: run the whole U-Net every N-th evaluation, reuse its deep features between "
                        "(1 = off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder (grid.png, samples.safetensors)")
    p.add_argument("--json", action="store_true", help="print one JSON object with nfe, seconds, accuracy")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from diffcomm import zoo
    from diffcomm.data import save_grid
    from diffcomm.diffusion.sampling import sample_prior
    from diffcomm.utils import atomic_save_safetensors

    if not 1 <= args.n <= 10000:
        raise DiffcommError(f"--n must be between 1 and 10000, got {args.n}")
    own = dict(zoo.model_config(args.model).get("sampling", {})) if args.model in zoo.list_models() else {}
    args.sampler = args.sampler or own.get("sampler", "heun")
    args.steps = args.steps if args.steps is not None else int(own.get("steps", 18))
    if not 1 <= args.steps <= 1000:
        raise DiffcommError(f"--steps must be between 1 and 1000, got {args.steps}")
    if not math.isfinite(args.guidance) or not 0 <= args.guidance <= 100:
        raise DiffcommError(f"--guidance must be a finite weight in [0, 100], got {args.guidance}")
    prior = zoo.load(args.model)
    if zoo.model_config(args.model).get("kind") not in zoo.PRIOR_KINDS:
        raise DiffcommError(f"'{args.model}' is not a diffusion, flow or consistency prior; see `diffcomm zoo list`")
    if args.label is not None and not 0 <= args.label < max(prior.num_classes, 1):
        raise DiffcommError(f"--label must be in [0, {prior.num_classes - 1}] for {args.model}"
                            if prior.num_classes else f"{args.model} is unconditional; drop --label")
    labels = torch.full((args.n,), args.label) if args.label is not None else None
    if args.deep_cache != 1:
        from diffcomm.diffusion.deepcache import DeepCachePrior

        prior = DeepCachePrior(prior, args.deep_cache)
    t0 = time.time()
    x, nfe = sample_prior(prior, args.n, sampler=args.sampler, steps=args.steps, labels=labels,
                          guidance=args.guidance if labels is not None else 0.0, seed=args.seed)
    seconds = time.time() - t0
    out = Path(args.out)
    save_grid(out / "grid.png", x, nrow=min(args.n, 10))
    atomic_save_safetensors(out / "samples.safetensors", {"samples": x})
    record = {"model": args.model, "n": args.n, "sampler": args.sampler, "steps": args.steps, "nfe": nfe,
              "deep_cache": args.deep_cache,
              "seconds": round(seconds, 3), "seconds_per_image": round(seconds / args.n, 4), "label": args.label,
              "guidance": args.guidance if labels is not None else None, "grid": str(out / "grid.png")}
    if args.label is not None:
        from diffcomm.metrics.classifier import accuracy

        record["accuracy"] = accuracy(zoo.load("fmnist-classifier"), x, labels)
    if args.json:
        print(json.dumps(record))
    else:
        print(f"wrote {out / 'grid.png'}: {args.n} samples, {nfe} NFE, {seconds:.1f} s"
              + (f", classifier accuracy {record['accuracy']:.3f}" if "accuracy" in record else ""))
    return 0
