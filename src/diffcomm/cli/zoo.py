"""``diffcomm zoo list``: the shipped models, their recipes and measured metrics."""

from __future__ import annotations

import argparse
import json


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
    sp.set_defaults(func=run_ship)


def run_list(args: argparse.Namespace) -> int:
    from diffcomm import zoo
    from diffcomm.utils import format_table

    models = zoo.list_models()
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    rows = []
    for name, cfg in models.items():
        tr = cfg.get("training", {})
        metrics = cfg.get("metrics", {})
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in list(metrics.items())[:4])
        rows.append([name, cfg.get("kind", "?"), str(tr.get("steps", "?")),
                     f"{tr.get('seconds', 0) / 60:.0f} min", shown])
    print(format_table(["name", "kind", "steps", "train time", "metrics"], rows))
    return 0


def run_ship(args: argparse.Namespace) -> int:
    from diffcomm.zoo.evaluate import ship

    options = {"guidance": args.cfg_weight} if args.cfg_weight is not None else {}
    config = ship(args.run, args.name, args.recipe, **options) if _is_prior(args.run) else ship(
        args.run, args.name, args.recipe)
    print(json.dumps(config["metrics"], indent=2))
    return 0


def _is_prior(run: str) -> bool:
    from pathlib import Path

    cfg = Path(run) / "model.json"
    return cfg.is_file() and json.loads(cfg.read_text()).get("kind") == "prior"
