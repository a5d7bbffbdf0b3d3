"""Crash recovery of the training harness: kill -9 at several points (inside a log write, inside a
checkpoint write, between the log and the checkpoint), then resume. The resumed run has bitwise-equal
weights, the same log (apart from wall-clock fields) without duplicated or merged lines, the same
final loss, and no temporary file left behind. Two runs on one folder are locked against each
other; resuming with another config is refused; checkpoints of the older format stay resumable."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from diffcomm.errors import DiffcommError
from diffcomm.training import TrainConfig, run_lock, train

sys.path.insert(0, str(Path(__file__).parent))
from test_training import TINY, _task  # noqa: E402

STEPS = 12
CFG = dict(steps=STEPS, batch_size=8, checkpoint_every=3, snapshot_every=10 ** 9, warmup_steps=2, log_every=1)
RUN_CONFIG = {"model": TINY.to_dict(), "name": "tiny"}

# The child trains and SIGKILLs itself at a chosen point: exactly reproducible, no timing.
SCRIPT = r"""
import os, signal, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
import diffcomm.training as T
from test_training import _task
from test_training_resume import CFG, RUN_CONFIG
out, where, at = sys.argv[1], sys.argv[2], int(sys.argv[3])
real_save, real_open = T.atomic_save_safetensors, open
calls = {{"ckpt": 0, "log": 0}}

def save(path, tensors, metadata=None):
    calls["ckpt"] += 1
    if where == "checkpoint-write" and calls["ckpt"] == at:
        from safetensors.torch import save
        data = save({{k: v.contiguous() for k, v in tensors.items()}}, metadata=metadata)
        tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".abcd1234.tmp")
        with real_open(tmp, "wb") as f:   # half of the temporary file, as a kill mid-write leaves it
            f.write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(path, tensors, metadata)
    if where == "after-checkpoint" and calls["ckpt"] == at:
        os.kill(os.getpid(), signal.SIGKILL)

class CutLog:
    def __init__(self, f): self.f = f
    def __enter__(self): return self
    def __exit__(self, *a): self.f.close()
    def write(self, text):
        calls["log"] += 1
        if where == "log-write" and calls["log"] == at:
            self.f.write(text[: len(text) // 2]); self.f.flush()   # a partial line
            os.kill(os.getpid(), signal.SIGKILL)
        return self.f.write(text)

def hooked_open(path, mode="r", *args, **kw):
    f = real_open(path, mode, *args, **kw)
    return CutLog(f) if str(path).endswith("log.jsonl") and "a" in mode else f

T.atomic_save_safetensors = save
T.open = hooked_open
T.train(_task(), T.TrainConfig(**CFG), out, run_config=RUN_CONFIG, progress=False)
"""


def _train(out: Path, **changes):
    return train(_task(), TrainConfig(**{**CFG, **changes}), out, run_config=RUN_CONFIG, progress=False)


def _log(out: Path) -> list[dict]:
    text = (out / "log.jsonl").read_text()
    assert text.endswith("\n")
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in text.splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    final = _train(out)
    return out, final, load_file(out / "model.safetensors"), _log(out)


@pytest.mark.parametrize("where, at", [
    ("log-write", 5),          # a partial line in the log, after checkpoint 1 (step 3)
    ("checkpoint-write", 2),   # half a temporary checkpoint at step 6; the log is already at step 6
    ("after-checkpoint", 3),   # right after checkpoint 3 (step 9)
    ("checkpoint-write", 1),   # before any checkpoint exists: the run starts over
    ("checkpoint-write", 4),   # in the final checkpoint, after the last log line
])
def test_kill_minus_9_then_resume_is_exact(tmp_path, reference, where, at):
    ref_out, ref_final, ref_weights, ref_log = reference
    out = tmp_path / "run"
    code = SCRIPT.format(tests=str(Path(__file__).parent))
    proc = subprocess.run([sys.executable, "-c", code, str(out), where, str(at)], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    final = _train(out)
    weights = load_file(out / "model.safetensors")
    assert weights.keys() == ref_weights.keys()
    for k in ref_weights:
        assert torch.equal(weights[k], ref_weights[k]), k
    log = _log(out)
    assert log == ref_log  # no duplicated, missing or merged lines
    steps = [r["step"] for r in log if "loss" in r and set(r) <= {"step", "loss", "lr"}]
    assert steps == sorted(set(steps))
    assert final["final_loss"] == ref_final["final_loss"]
    assert {k: v for k, v in final.items() if k != "seconds"} == {k: v for k, v in ref_final.items() if k != "seconds"}
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_rerun_of_a_finished_run_reports_the_same_final_loss(tmp_path, reference):
    out = tmp_path / "run"
    first = _train(out)
    again = _train(out)
    assert again["final_loss"] == first["final_loss"] == reference[1]["final_loss"]
    assert _log(out) == reference[3]


def test_two_runs_on_one_folder_are_locked(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with run_lock(out):
        with pytest.raises(DiffcommError, match="another training run is using"):
            _train(out)
    link = tmp_path / "link"
    link.symlink_to(out)
    with run_lock(link):  # the lock is on the resolved folder
        with pytest.raises(DiffcommError, match="another training run"):
            _train(out)


@pytest.mark.parametrize("change, message", [
    ({"lr": 1e-3}, "other \\[train\\] lr"),
    ({"seed": 1}, "other \\[train\\] seed"),
    ({"batch_size": 4}, "other \\[train\\] batch_size"),
    ({"steps": 2}, "beyond \\[train\\] steps"),
])
def test_resume_with_another_config_is_refused(tmp_path, change, message):
    out = tmp_path / "run"
    _train(out, steps=3)
    before = (out / "checkpoint.safetensors").read_bytes()
    with pytest.raises(DiffcommError, match=message):
        _train(out, **change)
    assert (out / "checkpoint.safetensors").read_bytes() == before
    with pytest.raises(DiffcommError, match="another configuration"):
        train(_task(), TrainConfig(**CFG), out, run_config={**RUN_CONFIG, "name": "other"}, progress=False)
    _train(out, threads=1, checkpoint_every=5)  # settings that do not change the weights may differ


def test_old_checkpoints_without_train_config_stay_resumable(tmp_path, reference):
    """Checkpoints written before this change (metadata: step, seconds, run_config) resume."""
    out = tmp_path / "run"
    _train(out, steps=6)
    ckpt = out / "checkpoint.safetensors"
    from safetensors import safe_open

    with safe_open(str(ckpt), framework="pt") as f:
        meta = json.loads(f.metadata()["diffcomm"])
    old = {"step": meta["step"], "seconds": meta["seconds"], "run_config": meta["run_config"]}
    save_file(load_file(ckpt), ckpt, metadata={"diffcomm": json.dumps(old)})
    _train(out)
    weights = load_file(out / "model.safetensors")
    for k, v in reference[2].items():
        assert torch.equal(weights[k], v), k


def test_resume_on_another_machine_from_only_the_committed_state(tmp_path):
    """What a long run commits (checkpoint.safetensors + log.jsonl, as runs/fmnist-prior-long does) is
    enough: copied alone into a fresh folder, the run resumes to bitwise the weights of an uninterrupted run."""
    import shutil

    whole = tmp_path / "whole"
    _train(whole)
    first = tmp_path / "machine-a"
    _train(first, steps=6)                       # the session that stopped at step 6 (a checkpoint step)
    fresh = tmp_path / "machine-b"
    fresh.mkdir()
    for name in ("checkpoint.safetensors", "log.jsonl"):
        shutil.copy2(first / name, fresh / name)
    _train(fresh)                                # the same command on the new machine
    a, b = load_file(whole / "model.safetensors"), load_file(fresh / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _log(fresh) == _log(whole)
