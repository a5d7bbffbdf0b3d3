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
- **Data-parallel training** under ``torchrun`` (``torch.distributed``, gloo on CPU): every rank
  builds the same model, draws the same global batch (``batch_indices``) and the same step
  randomness, and evaluates the network only on its contiguous slice (:func:`shard`, called by the
  tasks' losses before the forward pass); gradients are averaged over ranks with one all-reduce per
  step (a flat buffer), so the update is that of one process on the global batch up to float
  summation order. Rank 0 alone reads the checkpoint (and sends it to the others), writes the
  checkpoint, log, snapshots and the exported model, and holds the run lock. A task whose loss does
  not call :func:`shard` (DeepJSCC) still trains correctly under DDP — each rank computes the whole
  batch, the averaged gradient is the same — just without the speed-up. ``batch_size`` is the
  global batch and must be divisible by the number of ranks.

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
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from diffcomm.checks import SEED_LIMIT, bounds, check_output_path, dataclass_from_dict, read_config_file
from diffcomm.errors import DiffcommError
from diffcomm.utils import atomic_save_safetensors, atomic_write_json, atomic_write_text, git_revision


@dataclass
class TrainConfig:
    """The ``[train]`` section. Types and ranges are checked by :meth:`from_dict` (one schema,
    :func:`diffcomm.checks.dataclass_from_dict`); the upper bounds only stop values that cannot be
    meant (and would otherwise run out of memory after minutes of work)."""

    steps: int = field(default=1000, metadata=bounds(1, 10 ** 9))
    batch_size: int = field(default=64, metadata=bounds(1, 65536))
    lr: float = field(default=2e-4, metadata=bounds(0, 10, low_open=True))
    weight_decay: float = field(default=0.0, metadata=bounds(0, 10))
    warmup_steps: int = field(default=100, metadata=bounds(0, 10 ** 9))
    ema_decay: float = field(default=0.999, metadata=bounds(0, 1, high_open=True))
    grad_clip: float = field(default=1.0, metadata=bounds(0, 1e6))
    bf16: bool = False
    seed: int = field(default=0, metadata=bounds(0, SEED_LIMIT, high_open=True))
    checkpoint_every: int = field(default=250, metadata=bounds(1, 10 ** 9))
    snapshot_every: int = field(default=1000, metadata=bounds(1, 10 ** 12))
    log_every: int = field(default=50, metadata=bounds(1, 10 ** 9))
    threads: int = field(default=0, metadata=bounds(0, 1024))  # 0 = leave torch's default

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return dataclass_from_dict(cls, d, "[train]")


# [train] fields that change the weights: a checkpoint is resumed only with the same values.
# (steps may grow; threads and the checkpoint/snapshot/log intervals do not change the weights.)
RESULT_FIELDS = ("batch_size", "lr", "weight_decay", "warmup_steps", "ema_decay", "grad_clip", "bf16", "seed")


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


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the active ``torch.distributed`` group, ``(0, 1)`` without one."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(*tensors: torch.Tensor | None):
    """This rank's contiguous slice (dim 0) of each global-batch tensor (identity in one process).

    A task's loss draws everything random for the *global* batch, then shards the network's inputs,
    so rank r evaluates examples ``[r·B/W, (r+1)·B/W)`` exactly as one process would. ``None``
    passes through. Returns one tensor for one argument, else a tuple.
    """
    rank, size = world()
    out = []
    for t in tensors:
        if t is None or size == 1:
            out.append(t)
            continue
        if t.shape[0] % size:
            raise DiffcommError(f"the global batch ({t.shape[0]}) must be divisible by the number of "
                                f"training processes ({size}); change [train] batch_size or --nproc_per_node")
        b = t.shape[0] // size
        out.append(t[rank * b:(rank + 1) * b])
    return out[0] if len(out) == 1 else tuple(out)


def _init_distributed() -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1; gloo); True when this call made it."""
    import os

    dist = torch.distributed
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    dist.init_process_group("gloo")
    return True


def _average_gradients(params: list[nn.Parameter], size: int) -> None:
    """All-reduce the gradients of ``params`` (one flat buffer) and divide by the number of ranks."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def _broadcast_module(module: nn.Module) -> None:
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            torch.distributed.broadcast(t.data, 0)


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


def _normalized(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists), for comparing configs."""
    return json.loads(json.dumps(obj, sort_keys=True))


@contextlib.contextmanager
def run_lock(out: Path):
    """Hold an exclusive ``flock`` on ``OUT/.lock`` (the resolved folder) for one training run."""
    import fcntl

    lock_path = out.resolve() / ".lock"
    handle = open(lock_path, "a")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise DiffcommError(f"another training run is using {out}; wait for it or use another --out") from None
    try:
        yield
    finally:
        handle.close()  # releases the flock


# Temporary files of atomic writes into a run folder (utils.atomic_write_bytes: .NAME.XXXXXXXX.tmp)
_STALE_TEMP = re.compile(r"^\.(checkpoint\.safetensors|model\.safetensors|model\.json|log\.jsonl|"
                         r"samples_\d+\.png|ema_\d+\.safetensors)\.[A-Za-z0-9_]+\.tmp$")


def _remove_stale_temps(out: Path) -> None:
    """Delete temporary files a kill -9 left in the middle of an atomic write (we hold the lock)."""
    for path in out.iterdir():
        if _STALE_TEMP.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)


def read_log(log_path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The complete JSON records of a training log and whether anything else was in it.

    A line cut by a kill (no newline, or not JSON) counts as "anything else".
    """
    if not log_path.is_file():
        return [], False
    data = log_path.read_bytes()
    rows, dirty = [], False
    for i, line in enumerate(data.split(b"\n")):
        last = i == data.count(b"\n")
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if last or not isinstance(row, dict) or not isinstance(row.get("step"), int):
            dirty = True  # a partial last line, or a line that is not a log record
            continue
        rows.append(row)
    return rows, dirty


def _repair_log(log_path: Path, step: int) -> list[dict[str, Any]]:
    """Keep the log records of steps <= ``step`` (the checkpoint's): a resumed run rewrites the rest."""
    rows, dirty = read_log(log_path)
    keep = [r for r in rows if r["step"] <= step]
    if dirty or len(keep) != len(rows):
        atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in keep))
    return keep


def _check_resumable(ckpt: Path, meta: dict[str, Any], run_config: dict[str, Any], cfg: TrainConfig) -> None:
    """Refuse a checkpoint written by another configuration (one line naming what differs)."""
    out = ckpt.parent
    old = _normalized(meta.get("run_config", {}))
    new = _normalized(run_config)
    if old.get("model") != new.get("model"):
        raise DiffcommError(f"{ckpt} was written for another model configuration; "
                            f"use a new --out folder or delete {out}")
    # A checkpoint of the older format (no stored train config) may lack run_config entries that
    # newer code records (a new section): those are not a difference; every shared entry must match.
    legacy = "train_config" not in meta
    differs = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and not (legacy and k not in old))
    if differs:
        raise DiffcommError(f"{ckpt} was written with another configuration ({', '.join(differs)} differ); "
                            f"resume with the same config, or use a new --out folder or delete {out}")
    # Checkpoints written before the train config was stored are resumed on their run_config alone.
    stored = meta.get("train_config")
    if stored is not None:
        now = {k: getattr(cfg, k) for k in RESULT_FIELDS}
        changed = [k for k in RESULT_FIELDS if k in stored and _normalized(stored[k]) != _normalized(now[k])]
        if changed:
            raise DiffcommError(f"{ckpt} was trained with other [train] {', '.join(changed)} "
                                f"({', '.join(f'{k}={stored[k]!r}' for k in changed)}); resume with the same "
                                f"values, or use a new --out folder or delete {out}")
    step = int(meta.get("step", 0))
    if step > cfg.steps:
        raise DiffcommError(f"{ckpt} is at step {step}, beyond [train] steps = {cfg.steps}; "
                            f"raise steps (or --steps) to at least {step}")


def _final_record(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The records logged at the last step, merged in order (the loss line, then its snapshot)."""
    if not rows:
        return {}
    last = rows[-1]["step"]
    merged: dict[str, Any] = {}
    for r in rows:
        if r["step"] == last:
            merged.update(r)
    return merged


def train(task: Task, cfg: TrainConfig, out_dir: str | Path, run_config: dict[str, Any] | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Train ``task.model``; resumable; returns the final log record. See the module docstring.

    The run folder is locked (``OUT/.lock``) for the run. On resume the log is cut back to the
    checkpoint's step (a kill leaves at most lines the resumed run writes again, or a partial
    line) and leftover temporary files of an interrupted checkpoint write are removed, so a run
    killed at any point and resumed has the same weights, log (up to wall-clock fields) and
    final loss as one that was never interrupted.
    """
    out = Path(out_dir)
    check_output_path(out, "dir")
    made_group = _init_distributed()
    try:
        rank, _ = world()
        if rank > 0:  # only rank 0 touches the run folder
            return _train_locked(task, cfg, out, dict(run_config or {}), False)
        out.mkdir(parents=True, exist_ok=True)
        with run_lock(out):
            return _train_locked(task, cfg, out, dict(run_config or {}), progress)
    finally:
        if made_group:
            torch.distributed.destroy_process_group()


def _train_locked(task: Task, cfg: TrainConfig, out: Path, run_config: dict[str, Any],
                  progress: bool) -> dict[str, Any]:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rank, size = world()
    lead = rank == 0
    if size > 1 and cfg.batch_size % size:
        raise DiffcommError(f"[train] batch_size = {cfg.batch_size} (the global batch) must be divisible by the "
                            f"number of training processes ({size})")
    if lead:
        _remove_stale_temps(out)
    model = task.model
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ckpt = out / "checkpoint.safetensors"
    log_path = out / "log.jsonl"
    start = 0
    elapsed_before = 0.0
    running = None
    loaded = None
    if lead and ckpt.exists():
        try:
            loaded = _read_checkpoint(ckpt)
            _check_resumable(ckpt, loaded[1], run_config, cfg)
        except DiffcommError as exc:
            if size == 1:
                raise
            loaded = exc  # every rank raises it, none waits for the others
    if size > 1:  # rank 0's checkpoint (or None, or its error) for every rank; the ranks are our own processes
        box = [loaded]
        torch.distributed.broadcast_object_list(box, 0)
        loaded = box[0]
        if isinstance(loaded, DiffcommError):
            raise loaded
    if loaded is not None:
        tensors, meta = loaded
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        _load_optimizer(opt, tensors)
        start = int(meta["step"])
        elapsed_before = float(meta.get("seconds", 0.0))
        rows = _repair_log(log_path, start) if lead else []
        running = meta.get("running_loss")
        if running is None:  # checkpoints before the running loss was stored: the last logged value
            losses = [r["loss"] for r in rows if isinstance(r.get("loss"), float | int)]
            running = losses[-1] if losses else None
        if lead:
            print(f"resuming from step {start} ({ckpt})")
    elif lead:
        _repair_log(log_path, 0)  # no checkpoint: the run starts over, so does its log
    if size > 1:  # identical starting weights on every rank, whatever each built
        _broadcast_module(model)
        _broadcast_module(ema)
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    t0 = time.time()
    bar = tqdm(total=cfg.steps, initial=start, disable=not (progress and lead), desc="train", dynamic_ncols=True)
    record: dict[str, Any] = {}

    def log(row: dict[str, Any]) -> None:
        with open(log_path, "a") as f:
            f.write(json.dumps(row) + "\n")

    for step in range(start, cfg.steps):
        lr = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
        for group in opt.param_groups:
            group["lr"] = lr
        gen = step_generator(cfg.seed, step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = task.loss(model, step, gen)
        if size > 1:  # the global-batch loss (mean of the ranks' slice means), the same on every rank
            global_loss = loss.detach().float().clone()
            torch.distributed.all_reduce(global_loss)
            global_loss /= size
        else:
            global_loss = loss
        if not torch.isfinite(global_loss):
            raise DiffcommError(f"loss became {global_loss.item()} at step {step}; "
                                "lower [train] lr or enable grad_clip")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if size > 1:
            _average_gradients(params, size)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        _ema_update(ema, model, cfg.ema_decay if step >= cfg.warmup_steps else 0.0)
        value = global_loss.item()
        running = value if running is None else 0.98 * running + 0.02 * value
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}")
        done = step + 1
        if not lead:
            continue
        if done % cfg.log_every == 0 or done == cfg.steps:
            record = {"step": done, "loss": running, "lr": lr,
                      "seconds": elapsed_before + time.time() - t0}
            log(record)
        if getattr(task, "snapshot", None) and (done % cfg.snapshot_every == 0 or done == cfg.steps):
            metrics = task.snapshot(ema, done, out) or {}
            if metrics:
                record = {**record, **metrics, "step": done}
                log(record)
                bar.write(f"step {done}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                                                        if isinstance(v, float | int)))
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
            tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
            tensors.update(_optimizer_tensors(opt))
            seconds = elapsed_before + time.time() - t0
            # One atomic file holds the weights and the step they belong to (in its metadata), so a
            # kill at any moment leaves either the previous or the new checkpoint, never a mix.
            meta = {"step": done, "seconds": seconds, "run_config": run_config, "running_loss": running,
                    "train_config": {k: getattr(cfg, k) for k in RESULT_FIELDS}}
            atomic_save_safetensors(ckpt, tensors, metadata={"diffcomm": json.dumps(meta)})
    bar.close()
    if size > 1:
        torch.distributed.barrier()  # every rank has finished its last step
    if not lead:
        return {"steps": cfg.steps, "final_loss": running, "rank": rank}
    rows, _ = read_log(log_path)
    record = _final_record(rows) or record
    seconds = elapsed_before + time.time() - t0
    final = {"steps": cfg.steps, "seconds": round(seconds, 1), "final_loss": running,
             "git_revision": git_revision(), **{k: v for k, v in record.items() if k not in ("step", "lr")}}
    final["seconds"] = round(seconds, 1)
    export = {**run_config, "training": final, "train_config": asdict(cfg)}
    save_model(out / "model.safetensors", ema, export)
    return final


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or YAML config into a dict; one-line DiffcommError on a missing, binary or bad file."""
    return read_config_file(path, formats=(".toml", ".yaml", ".yml"), what="config")


# ---------------------------------------------------------------------------------------------
# the schema of training configs


@dataclass
class DataSection:
    """The ``[data]`` section of a training config (``limit``, ``split``, ``cond_dropout``: priors only)."""

    dataset: str = "fashion-mnist"
    split: str = "train"
    limit: int | None = field(default=None, metadata=bounds(1, 10 ** 9))
    # priors: with limit, a random subset of that many images drawn with this seed (else the first N;
    # mnist-subset is sorted by class, so its first 100 are all zeros)
    subset_seed: int | None = field(default=None, metadata=bounds(0, SEED_LIMIT, high_open=True))
    cond_dropout: float = field(default=0.1, metadata=bounds(0, 1, high_open=True))


@dataclass
class SnapshotSection:
    """The optional ``[snapshot]`` section of a prior's config."""

    quality_samples: int = field(default=0, metadata=bounds(0, 100_000))
    keep_ema_at: list[int] = field(default_factory=list, metadata=bounds(1, 10 ** 9))


def _model_section(kind: str) -> type:
    if kind in ("prior", "flow"):
        from diffcomm.diffusion.unet import UNetConfig

        return UNetConfig
    if kind == "classifier":
        from diffcomm.metrics.classifier import ClassifierConfig

        return ClassifierConfig
    if kind == "jscc":
        from diffcomm.transmit.deepjscc import DeepJSCCConfig

        return DeepJSCCConfig
    raise DiffcommError(f"unknown training kind {kind!r}; choose from prior, classifier, jscc")


# Keys of [data] per kind (a key another kind uses is unknown here, not silently ignored).
_DATA_KEYS = {"prior": ("dataset", "split", "limit", "subset_seed", "cond_dropout"),
              "flow": ("dataset", "split", "limit", "cond_dropout"), "classifier": ("dataset",),
              "jscc": ("dataset",)}


def validate_training_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """Check a parsed training config against its schema before any work; return it unchanged.

    Top level: ``name``, ``description`` (strings) and the sections ``[model]`` (the kind's model
    dataclass), ``[data]`` (:class:`DataSection`, keys per kind), ``[train]`` (:class:`TrainConfig`)
    and, for priors (``prior``, ``flow``), ``[snapshot]`` (:class:`SnapshotSection`). Unknown keys, wrong types,
    non-finite numbers and out-of-range values raise one-line :class:`DiffcommError` s.
    """
    from diffcomm.checks import check_section_keys

    sections: dict[str, Any] = {"name": str, "description": str, "model": dict, "data": dict, "train": dict}
    if kind in ("prior", "flow"):
        sections["snapshot"] = dict
    if kind == "prior":                      # fine-tuning a shipped prior (domain adaptation)
        sections["init"] = dict
    if kind == "jscc":                       # the training link and a shipped model to start from
        sections["link"] = dict
        sections["init"] = dict
    model_cls = _model_section(kind)
    check_section_keys(config, sections, "config section")
    dataclass_from_dict(model_cls, config.get("model", {}), "[model]")
    data = config.get("data", {})
    allowed = _DATA_KEYS[kind]
    bad = sorted(set(data) - set(allowed))
    if bad:
        raise DiffcommError(f"unknown [data] key{'s' if len(bad) > 1 else ''} {', '.join(bad)}; "
                            f"valid keys for {kind}: {', '.join(allowed)}")
    dataclass_from_dict(DataSection, data, "[data]")
    TrainConfig.from_dict(config.get("train", {}))
    if kind in ("prior", "flow"):
        dataclass_from_dict(SnapshotSection, config.get("snapshot", {}), "[snapshot]")
    return config
