"""Each training recipe of this package's priors (and the conditional and bridge decoders, and a fine-tuned
prior) resumes after kill -9 to the weights of an uninterrupted run.

The child process trains a tiny config and SIGKILLs itself right after its first checkpoint; rerunning the
same call resumes from it. The exported weights then equal, bitwise, those of a run never interrupted."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TINY_UNET = {"base_channels": 8, "channel_mults": [1, 2], "attention_levels": [], "num_classes": 10, "emb_dim": 32}
TRAIN = {"steps": 4, "batch_size": 4, "checkpoint_every": 2, "snapshot_every": 1000, "threads": 1, "log_every": 1}
RECIPES = {
    "flow": ("diffcomm.diffusion.train_prior", "run_flow_training",
             {"name": "tiny-flow", "model": TINY_UNET, "data": {"dataset": "digits8", "limit": 32}, "train": TRAIN}),
    "consistency": ("diffcomm.diffusion.train_consistency", "run_consistency_training",
                    {"name": "tiny-cm", "distill": {"teacher": "fmnist-prior", "num_scales": 6},
                     "data": {"limit": 32}, "train": TRAIN}),
    # domain adaptation: a shipped prior fine-tuned on a random subset of digits
    "prior-init": ("diffcomm.diffusion.train_prior", "run_prior_training",
                   {"name": "tiny-adapt", "init": {"model": "fmnist-prior"},
                    "data": {"dataset": "mnist-subset", "limit": 16, "subset_seed": 0}, "train": TRAIN}),
    "conditional": ("diffcomm.diffusion.conditional", "run_conditional_training",
                    {"name": "tiny-cdm", "condition": {"init": "fmnist-prior"}, "data": {"limit": 16}, "train": TRAIN}),
    "bridge": ("diffcomm.diffusion.bridge", "run_bridge_training",
               {"name": "tiny-i2sb", "condition": {"init": "fmnist-prior", "channels": ["rayleigh"]},
                "bridge": {"beta": 0.2}, "data": {"limit": 16}, "train": TRAIN}),
}

KILL_SCRIPT = r"""
import importlib, json, os, signal, sys, torch
torch.set_num_threads(1)
import diffcomm.training as T
module, func, config, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
real = T.atomic_save_safetensors
def save(path, tensors, metadata=None):
    real(path, tensors, metadata)
    os.kill(os.getpid(), signal.SIGKILL)   # right after the first checkpoint
T.atomic_save_safetensors = save
getattr(importlib.import_module(module), func)(config, out, progress=False)
"""


def _run(module: str, func: str, config: dict, out: Path):
    import importlib

    torch.set_num_threads(1)
    return getattr(importlib.import_module(module), func)(config, out, progress=False)


@pytest.mark.parametrize("kind", sorted(RECIPES))
def test_recipe_resumes_after_kill_minus_9(tmp_path, kind):
    module, func, config = RECIPES[kind]
    ref = tmp_path / "ref"
    _run(module, func, config, ref)
    out = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, module, func, json.dumps(config), str(out)],
                          capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert not (out / "model.safetensors").exists()
    assert json.loads((out / "log.jsonl").read_text().splitlines()[-1])["step"] == 2
    _run(module, func, config, out)
    a, b = load_file(ref / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), kind
