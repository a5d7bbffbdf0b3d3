"""``diffcomm zoo list``: the shipped models, their recipes and measured metrics."""

from __future__ import annotations

import argparse
import json

from diffcomm.zoo import PRIOR_KINDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="list the shipped pretrained models")
    zsub = p.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND", required=True)
    lp = zsub.add_parser("list", help="table of shipped models")
    lp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lp.set_defaults(func=run_list)
    sp = zsub.add_parser("ship", help="evaluate a finished training run and add it to the zoo")
    sp.add_argument("run", help="training run folder (with model.safetensors)")
    sp.add_argument("--name", required=True, help="zoo name, e.g. fmnist-prior")
    sp.add_argument("--recipe", required=True, help="the recipe the run was trained with")
    sp.add_argument("--cfg-weight", type=float, default=1.0, help="CFG weight for the prior's conditional samples")
    sp.add_argument("--ema-step", type=int, default=None,
                    help="ship the EMA weights the run kept at this step (keep_ema_at) instead of its final ones")
    sp.set_defaults(func=run_ship)


def quality_summary(cfg: dict) -> str:
    """The model's own headline quality figure(s), first; reference values after, labelled as such."""
    kind, m = cfg.get("kind"), cfg.get("metrics") or {}

    def num(key: str, fmt: str = ".4g") -> str | None:
        v = m.get(key)
        return format(v, fmt) if isinstance(v, int | float) and not isinstance(v, bool) else None

    parts: list[str] = []
    if kind in PRIOR_KINDS or kind == "latent-prior":
        latent = kind == "latent-prior"  # decoded samples; the floor is the autoencoder's reconstructions
        if num("fd_cls_uncond_vs_test", ".2f"):
            parts.append(f"FD-cls {num('fd_cls_uncond_vs_test', '.2f')} ({m.get('samples', '?')} "
                         f"{'decoded ' if latent else ''}samples vs test)")
        if num("conditional_accuracy", ".1%"):
            parts.append(f"cond. accuracy {num('conditional_accuracy', '.1%')} at CFG w={m.get('cfg_weight', '?')}")
        if num("kid_cls_uncond_vs_test", ".3f") and not latent:
            parts.append(f"KID-cls {num('kid_cls_uncond_vs_test', '.3f')}")
        prefix = "fd_cls_reconstructed" if latent else "fd_cls_real"
        floor = next((k for k in m if k.startswith(prefix) and k.endswith("_vs_rest_of_test")), None)
        if floor and num(floor, ".2f"):
            parts.append(f"reference: {'FD-cls of autoencoder reconstructions' if latent else 'real-data FD-cls floor'}"
                         f" {num(floor, '.2f')}")
    elif kind == "classifier" and num("test_accuracy", ".1%"):
        parts.append(f"test accuracy {num('test_accuracy', '.1%')}")
    elif kind == "autoencoder" and num("test_reconstruction_psnr", ".2f"):
        parts.append(f"test reconstruction PSNR {num('test_reconstruction_psnr', '.2f')} dB, latent "
                     f"{'x'.join(map(str, m.get('latent_shape', [])))}")
    elif kind == "jscc":
        snrs = sorted({int(k[5:-2]) for k in m if k.startswith("psnr_") and k.endswith("dB")
                       and k[5:-2].lstrip("-").isdigit()})
        if snrs:
            psnrs = "/".join(f"{m[f'psnr_{s}dB']:.1f}" for s in snrs)
            parts.append(f"PSNR {psnrs} dB at {'/'.join(map(str, snrs))} dB SNR ({m.get('channel', '?')})")
    if not parts:  # an unknown kind: its first metrics, as recorded
        parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(m.items())[:3]]
    return "; ".join(parts) or "-"


def _parameters(name: str) -> int | None:
    from diffcomm import zoo
    from diffcomm.errors import DiffcommError

    try:
        return zoo.num_parameters(zoo.load(name))
    except DiffcommError:
        return None


def _count(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def run_list(args: argparse.Namespace) -> int:
    from diffcomm import zoo
    from diffcomm.utils import format_table

    models = zoo.list_models()
    params = {name: _parameters(name) for name in models}
    if args.json:
        print(json.dumps({name: {**cfg, "parameters": params[name], "quality": quality_summary(cfg)}
                          for name, cfg in models.items()}, indent=2))
        return 0
    rows = []
    for name, cfg in models.items():
        tr = cfg.get("training", {})
        seconds = tr.get("seconds")
        rows.append([name, cfg.get("kind", "?"), _count(params[name]), f"{tr.get('steps', '?'):,}"
                     if isinstance(tr.get("steps"), int) else "?",
                     f"{seconds / 60:.0f} min" if isinstance(seconds, int | float) else "?", quality_summary(cfg)])
    print(format_table(["name", "kind", "params", "steps", "train time", "quality (own figures first)"], rows,
                       wrap={5: 64}))
    print("\nall metrics, recipes and training records: diffcomm zoo list --json")
    return 0


def run_ship(args: argparse.Namespace) -> int:
    from diffcomm.zoo.evaluate import ship

    options = {"guidance": args.cfg_weight} if args.cfg_weight not in (None, 1.0) else {}
    config = ship(args.run, args.name, args.recipe, ema_step=args.ema_step, **options) if _is_prior(args.run) \
        else ship(args.run, args.name, args.recipe, ema_step=args.ema_step)
    print(json.dumps(config["metrics"], indent=2))
    return 0


def _is_prior(run: str) -> bool:
    from pathlib import Path

    from diffcomm.zoo.evaluate import run_model_config

    return run_model_config(Path(run)).get("kind") in PRIOR_KINDS
