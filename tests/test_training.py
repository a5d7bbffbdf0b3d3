"""The training harness: determinism, exact resume (also after kill -9), config validation."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffcomm.diffusion.train_prior import PriorTask
from diffcomm.diffusion.unet import UNetConfig
from diffcomm.errors import DiffcommError
from diffcomm.training import TrainConfig, batch_indices, load_config_file, train

TINY = UNetConfig(in_channels=1, base_channels=8, channel_mults=(1, 2), attention_levels=(), num_classes=3,
                  emb_dim=16)


class NoSnapshotPriorTask(PriorTask):
    snapshot = None  # sample grids are tested elsewhere; here only the weights matter


def _task(seed=0):
    g = torch.Generator().manual_seed(123)
    images = torch.rand(40, 1, 8, 8, generator=g)
    labels = torch.randint(0, 3, (40,), generator=g)
    return NoSnapshotPriorTask(images, labels, TINY, batch_size=8, seed=seed)


def _run(out, steps, seed=0):
    cfg = TrainConfig(steps=steps, batch_size=8, checkpoint_every=2, snapshot_every=10**9, warmup_steps=2,
                      seed=seed)
    train(_task(seed), cfg, out, run_config={"model": TINY.to_dict()}, progress=False)
    return load_file(Path(out) / "model.safetensors")


def test_same_seed_same_weights_and_resume_is_exact(tmp_path):
    straight = _run(tmp_path / "a", 6)
    again = _run(tmp_path / "b", 6)
    _run(tmp_path / "c", 3)            # stop early (step 3: last checkpoint at step 3 = final)
    resumed = _run(tmp_path / "c", 6)  # same folder: resumes
    other_seed = _run(tmp_path / "d", 6, seed=1)
    for k in straight:
        assert torch.equal(straight[k], again[k]), k
        assert torch.equal(straight[k], resumed[k]), k
    assert any(not torch.equal(straight[k], other_seed[k]) for k in straight)


def test_batches_cover_each_epoch_once():
    seen = torch.cat([batch_indices(40, 8, seed=0, step=s) for s in range(5)])
    assert sorted(seen.tolist()) == list(range(40))


def test_resume_refuses_other_architecture(tmp_path):
    _run(tmp_path / "a", 2)
    cfg = TrainConfig(steps=4, batch_size=8, checkpoint_every=2, snapshot_every=10**9)
    with pytest.raises(DiffcommError, match="another model configuration"):
        train(_task(), cfg, tmp_path / "a", run_config={"model": {"other": 1}}, progress=False)


def test_bad_train_config_is_a_user_error(tmp_path):
    with pytest.raises(DiffcommError, match="unknown"):
        TrainConfig.from_dict({"stepz": 3})
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps = ")
    with pytest.raises(DiffcommError, match="cannot parse"):
        load_config_file(bad)


SCRIPT = """
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from test_training import _run
_run(sys.argv[1], int(sys.argv[2]))
"""


def test_kill_minus_9_then_resume_gives_the_same_weights(tmp_path):
    ref = _run(tmp_path / "ref", 40)
    out = tmp_path / "killed"
    code = SCRIPT.format(tests=str(Path(__file__).parent))
    proc = subprocess.Popen([sys.executable, "-c", code, str(out), "40"])
    ckpt = out / "checkpoint.safetensors"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists()
    resumed = _run(out, 40)
    for k in ref:
        assert torch.equal(ref[k], resumed[k]), k
