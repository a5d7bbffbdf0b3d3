"""``diffcomm train KIND --config FILE [--out DIR]``: resumable training of every model kind (see KINDS)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffcomm.errors import DiffcommError

KINDS = {
    "prior": ("diffcomm.diffusion.train_prior", "run_prior_training"),
    "flow": ("diffcomm.diffusion.train_prior", "run_flow_training"),
    "consistency": ("diffcomm.diffusion.train_consistency", "run_consistency_training"),
    "classifier": ("diffcomm.metrics.classifier", "run_classifier_training"),
    "jscc": ("diffcomm.transmit.deepjscc", "run_jscc_training"),
    "taskjscc": ("diffcomm.scenarios.taskjscc", "run_taskjscc_training"),
    "autoencoder": ("diffcomm.diffusion.autoencoder", "run_autoencoder_training"),
    "latent-prior": ("diffcomm.diffusion.autoencoder", "run_latent_prior_training"),
    "conditional": ("diffcomm.diffusion.conditional", "run_conditional_training"),
    "bridge": ("diffcomm.diffusion.bridge", "run_bridge_training"),
}
# Kinds whose recipe schema lives beside their code (the rest: diffcomm.training.validate_training_config).
VALIDATORS = {"taskjscc": ("diffcomm.scenarios.taskjscc", "validate_taskjscc_config"),
              "consistency": ("diffcomm.diffusion.train_consistency", "validate_consistency_config")}
VALIDATORS.update({"autoencoder": ("diffcomm.diffusion.autoencoder", "validate_autoencoder_config"),
                   "latent-prior": ("diffcomm.diffusion.autoencoder", "validate_latent_prior_config"),
                   "conditional": ("diffcomm.diffusion.conditional", "validate_condition_config"),
                   "bridge": ("diffcomm.diffusion.bridge", "validate_bridge_config")})


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a prior (EDM or flow matching), classifier, DeepJSCC or task-JSCC "
                                     "model from a config",
                       description="Train a model from a TOML/YAML recipe. Rerunning the same command "
                                   "resumes from the last checkpoint in --out.")
    p.add_argument("kind", choices=sorted(KINDS), help="what to train")
    p.add_argument("--config", required=True, help="TOML or YAML recipe (see src/diffcomm/zoo/recipes)")
    p.add_argument("--out", help="run folder (checkpoints, logs, samples); default runs/<name>")
    p.add_argument("--steps", type=int, help="override [train] steps")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import importlib

    from diffcomm.checks import check_output_path
    from diffcomm.training import load_config_file, validate_training_config

    config = load_config_file(args.config)
    if args.steps is not None:
        if args.steps < 1:
            raise DiffcommError(f"--steps must be a positive integer, got {args.steps}")
        if not isinstance(config.get("train", {}), dict):
            raise DiffcommError("config section train must be a table")
        config.setdefault("train", {})["steps"] = args.steps
    if args.kind in VALIDATORS:  # unknown keys, types and ranges, before any work
        vmod, vfunc = VALIDATORS[args.kind]
        getattr(importlib.import_module(vmod), vfunc)(config)
    else:
        validate_training_config(args.kind, config)
    out = Path(args.out or Path("runs") / str(config.get("name", args.kind)))
    check_output_path(out, "dir")
    module, func = KINDS[args.kind]
    try:
        runner = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError):
        raise DiffcommError(f"training '{args.kind}' is not available in this build") from None
    final = runner(config, out, progress=not args.no_progress)
    if "rank" in final:  # a data-parallel rank other than 0 (under torchrun): rank 0 reports
        return 0
    print(json.dumps(final, indent=2), file=sys.stdout)
    print(f"weights: {out / 'model.safetensors'}", file=sys.stderr)
    return 0
