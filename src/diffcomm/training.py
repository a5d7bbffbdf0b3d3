"""One training harness for every model diffcomm ships (prior, classifier, DeepJSCC).

What it guarantees, for every task:

- **Determinism**: the data order of epoch ``e`` and the noise of step ``s`` come from generators
  seeded by ``(seed, e)`` and ``(seed, s)``, so the same seed and the same number of steps give
  the same weights, with or without an interruption in between.
- **Resume after kill -9**: a checkpoint (weights, EMA, optimiser state, step) is written
  atomically in safetensors every ``checkpoint_every`` steps; rerunning the same command resumes
  from it, losing at most one checkpoint interval.
- **EMA** of the weights (the exported model), optional **bf16 autocast**, **gradient clipping**,
  linear learning-rate warm-up, a **progress bar** with the loss, and periodic snapshots (sample
  grids, evaluation) through the task's ``snapshot`` hook.

A task is a small object with ``model``, ``loss(model, step, generator) -> Tensor`` (scalar) and
optionally ``snapshot(ema_model, step, out_dir) -> dict`` (metrics to log) and ``config_dict()``.

Example:
    >>> cfg = TrainConfig(steps=2, batch_size=4, checkpoint_every=1)
    >>> # train(my_task, cfg, "runs/x")  -> writes runs/x/checkpoint.safetensors, model.safetensors
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from diffcomm.errors import DiffcommError
from diffcomm.utils import atomic_save_safetensors, atomic_write_json, git_revision


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    bf16: bool = False
    seed: int = 0
    checkpoint_every: int = 250
    snapshot_every: int = 1000
    log_every: int = 50
    threads: int = 0  # 0 = leave torch's default

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise DiffcommError(f"unknown [train] keys {unknown}; valid keys: {sorted(names)}")
        cfg = cls(**d)
        if cfg.steps < 1 or cfg.batch_size < 1 or cfg.checkpoint_every < 1:
            raise DiffcommError("[train] steps, batch_size and checkpoint_every must be positive integers")
        if not (0.0 <= cfg.ema_decay < 1.0):
            raise DiffcommError(f"[train] ema_decay must be in [0, 1), got {cfg.ema_decay}")
        return cfg


class Task(Protocol):
    model: nn.Module

    def loss(self, model: nn.Module, step: int, generator: torch.Generator) -> torch.Tensor: ...


@contextlib.contextmanager
def seeded_init(seed: int):
    """Build models inside this context so their initial weights depend only on ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator for the randomness of one training step (order-independent, resumable)."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) * 7_919 + int(epoch) + 1))


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """Indices of the examples of ``step``: epochs of shuffled data, drop-last, deterministic."""
    per_epoch = max(n // batch_size, 1)
    epoch, pos = divmod(step, per_epoch)
    perm = epoch_permutation(n, seed, epoch)
    return perm[pos * batch_size:(pos + 1) * batch_size]


def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm, 1.0 - decay)
        for be, bm in zip(ema.buffers(), model.buffers()):
            be.copy_(bm)


def _optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for i, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            out[f"opt.{i}.{key}"] = torch.as_tensor(value)
    return out


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if not name.startswith("opt."):
            continue
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    sd["state"] = state
    opt.load_state_dict(sd)


def _read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["diffcomm"])
        return load_file(path), meta
    except Exception as exc:  # noqa: BLE001 - a corrupt checkpoint is a user-facing condition
        raise DiffcommError(f"checkpoint {path} is unreadable ({type(exc).__name__}); "
                            f"delete it to restart training from scratch") from None


def save_model(path: str | Path, model: nn.Module, config: dict[str, Any]) -> None:
    """Export weights (safetensors) and their config (JSON beside them, same stem)."""
    path = Path(path)
    atomic_save_safetensors(path, model.state_dict(), metadata={"format": "pt"})
    atomic_write_json(path.with_suffix(".json"), config)


def train(task: Task, cfg: TrainConfig, out_dir: str | Path, run_config: dict[str, Any] | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Train ``task.model``; resumable; returns the final log record. See the module docstring."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model = task.model
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ckpt = out / "checkpoint.safetensors"
    log_path = out / "log.jsonl"
    start = 0
    elapsed_before = 0.0
    run_config = dict(run_config or {})
    if ckpt.exists():
        tensors, meta = _read_checkpoint(ckpt)
        if meta.get("run_config", {}).get("model") != run_config.get("model"):
            raise DiffcommError(f"{ckpt} was written for another model configuration; "
                                f"use a new --out folder or delete {out}")
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        _load_optimizer(opt, tensors)
        start = int(meta["step"])
        elapsed_before = float(meta.get("seconds", 0.0))
        print(f"resuming from step {start} ({ckpt})")
    model.train()
    t0 = time.time()
    bar = tqdm(total=cfg.steps, initial=start, disable=not progress, desc="train", dynamic_ncols=True)
    running = None
    record: dict[str, Any] = {}
    for step in range(start, cfg.steps):
        lr = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
        for group in opt.param_groups:
            group["lr"] = lr
        gen = step_generator(cfg.seed, step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = task.loss(model, step, gen)
        if not torch.isfinite(loss):
            raise DiffcommError(f"loss became {loss.item()} at step {step}; "
                                "lower [train] lr or enable grad_clip")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        _ema_update(ema, model, cfg.ema_decay if step >= cfg.warmup_steps else 0.0)
        value = loss.item()
        running = value if running is None else 0.98 * running + 0.02 * value
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}")
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            record = {"step": done, "loss": running, "lr": lr,
                      "seconds": elapsed_before + time.time() - t0}
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        if getattr(task, "snapshot", None) and (done % cfg.snapshot_every == 0 or done == cfg.steps):
            metrics = task.snapshot(ema, done, out) or {}
            if metrics:
                record = {**record, **metrics, "step": done}
                with open(log_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                bar.write(f"step {done}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                                                        if isinstance(v, float | int)))
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
            tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
            tensors.update(_optimizer_tensors(opt))
            seconds = elapsed_before + time.time() - t0
            # One atomic file holds the weights and the step they belong to (in its metadata), so a
            # kill at any moment leaves either the previous or the new checkpoint, never a mix.
            meta = {"step": done, "seconds": seconds, "run_config": run_config}
            atomic_save_safetensors(ckpt, tensors, metadata={"diffcomm": json.dumps(meta)})
    bar.close()
    if running is None and log_path.exists():  # resumed at the last step: report the logged loss
        lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
        losses = [r["loss"] for r in lines if "loss" in r]
        running = losses[-1] if losses else None
    seconds = elapsed_before + time.time() - t0
    final = {"steps": cfg.steps, "seconds": round(seconds, 1), "final_loss": running,
             "git_revision": git_revision(), **{k: v for k, v in record.items() if k not in ("step", "lr")}}
    final["seconds"] = round(seconds, 1)
    export = {**run_config, "training": final, "train_config": asdict(cfg)}
    save_model(out / "model.safetensors", ema, export)
    return final


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or YAML config into a dict; one-line DiffcommError on a missing or bad file."""
    path = Path(path)
    if not path.is_file():
        raise DiffcommError(f"config file {path} not found")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parser error is a user error here
        raise DiffcommError(f"cannot parse {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise DiffcommError(f"{path} must contain a table/mapping at the top level")
    return data
