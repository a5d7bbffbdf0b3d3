"""Task-oriented JSCC: an encoder and a classifier head trained end to end through the channel.

No image is reconstructed. The transmitter maps an image straight to ``k`` complex channel
symbols; the receiver maps the (equalised) received symbols straight to class logits. Both halves
are told the SNR, so one model serves a range of SNRs (trained with the SNR drawn uniformly from
``[snr_min_db, snr_max_db]``, by default −5…20 dB). This is the machine-centric counterpart of
DeepJSCC (Bourtsoulatze et al., IEEE TCCN 2019), in the spirit of task-oriented / "deep joint
source-channel coding for classification" systems (e.g. Shao, Mao, Zhang, "Learning task-oriented
communication for edge inference: an information bottleneck approach", IEEE JSAC 2022).

**The channel is the project's**: the encoder output is power-normalised per image exactly like
every diffcomm link (:func:`diffcomm.channels.normalize_power`: mean ``|z|² = 1`` over the k
symbols), the noise is CN(0, N0) with N0 = 10^(−SNR/10), and fading is block Rayleigh (one
``h ~ CN(0, 1)`` per image) with perfect receiver CSI and MMSE equalisation, the head being told the
post-equalisation SNR ``SNR + 10·log10|h|²`` (the convention of
:func:`diffcomm.transmit.deepjscc.simulate`). With k = 1 the per-image normalisation puts the single
symbol on the unit circle, so only its phase carries the class.

**Architecture** (small on purpose: the shipped models are 0.1–0.9 MB): three convolutions (5×5
stride 2, 5×5 stride 2, 3×3) with PReLU and ADJSCC attention-feature SNR modulation
(:class:`diffcomm.transmit.deepjscc.AFModule`), a linear layer to 2k reals = k complex symbols; the
head is an MLP on ``(Re ŝ, Im ŝ, SNR/20)`` with two hidden layers.

Training is the project's harness (:func:`diffcomm.training.train`: deterministic, resumable after
kill -9, EMA, progress bar) through the *differentiable* channel :func:`simulate`;
``diffcomm train taskjscc --config src/diffcomm/zoo/recipes/fmnist-taskjscc-awgn-k8.toml``.

Example:
    >>> model = TaskJSCC(TaskJSCCConfig(symbols=8))
    >>> logits = simulate(model, torch.rand(2, 1, 28, 28), torch.tensor([0.0, 10.0]), "awgn",
    ...                   torch.Generator().manual_seed(0))
    >>> tuple(logits.shape)
    (2, 10)
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffcomm.checks import bounds, dataclass_from_dict
from diffcomm.errors import DiffcommError
from diffcomm.transmit.deepjscc import DeepJSCCEncoder

TASK_CHANNELS = ("awgn", "rayleigh")
EVAL_SNRS = (-5.0, 0.0, 5.0, 10.0, 20.0)  # SNRs of the shipped models' recorded test accuracy


@dataclass
class TaskJSCCConfig:
    """The ``[model]`` section of a task-JSCC recipe."""

    in_channels: int = field(default=1, metadata=bounds(choices=(1, 3)))
    image_size: int = field(default=28, metadata=bounds(4, 4096))
    symbols: int = field(default=8, metadata=bounds(1, 65536))  # complex channel uses per image
    width: int = field(default=32, metadata=bounds(2, 1024))
    hidden: int = field(default=128, metadata=bounds(1, 16384))
    num_classes: int = field(default=10, metadata=bounds(2, 100_000))
    channel: str = field(default="awgn", metadata=bounds(choices=TASK_CHANNELS))  # block fading, perfect CSI
    snr_min_db: float = field(default=-5.0, metadata=bounds(-50, 100))
    snr_max_db: float = field(default=20.0, metadata=bounds(-50, 100))

    def __post_init__(self) -> None:
        if self.snr_min_db > self.snr_max_db:
            raise DiffcommError(f"[model] snr_min_db ({self.snr_min_db}) is above snr_max_db ({self.snr_max_db})")
        if self.image_size % 4:
            raise DiffcommError(f"[model] image_size must be a multiple of 4 (two stride-2 stages), "
                                f"got {self.image_size}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TaskJSCCConfig:
        return dataclass_from_dict(cls, d, "[model]")


def _conv(cin: int, cout: int, size: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, size, stride, padding=size // 2), nn.PReLU(cout))


class TaskJSCC(nn.Module):
    """Encoder (pixels -> k complex symbols) and head (equalised symbols -> logits); see the module docstring."""

    def __init__(self, config: TaskJSCCConfig | None = None, **kwargs):
        super().__init__()
        from diffcomm.transmit.deepjscc import AFModule

        cfg = config or TaskJSCCConfig(**kwargs)
        self.config = cfg
        w, side = cfg.width, cfg.image_size // 4
        self.enc = nn.ModuleList([_conv(cfg.in_channels, w, 5, 2), _conv(w, w, 5, 2), _conv(w, w, 3, 1)])
        self.enc_af = nn.ModuleList([AFModule(w) for _ in self.enc])
        self.enc_out = nn.Linear(w * side * side, 2 * cfg.symbols)
        h = cfg.hidden
        self.head = nn.Sequential(nn.Linear(2 * cfg.symbols + 1, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                                  nn.Linear(h, cfg.num_classes))

    @property
    def k(self) -> int:
        return self.config.symbols

    def encode(self, x: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        """Pixels (B, C, H, W) in [0, 1] -> complex symbols (B, k) *before* power normalisation."""
        h = x * 2 - 1
        snr_db = snr_db.to(h.dtype)
        for layer, af in zip(self.enc, self.enc_af):
            h = af(layer(h), snr_db)
        v = self.enc_out(h.flatten(1))
        return torch.complex(v[:, 0::2], v[:, 1::2])

    def classify(self, s_hat: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        """Equalised symbols (B, k) and the (post-equalisation) SNR in dB (B,) -> logits (B, classes)."""
        dtype = next((p.dtype for p in self.head.parameters()), torch.float32)  # float32 once int8-quantised
        v = torch.stack([s_hat.real, s_hat.imag], dim=-1).flatten(1).to(dtype)
        return self.head(torch.cat([v, snr_db.reshape(-1, 1).to(dtype) / 20.0], dim=1))


def post_equalisation_snr(snr_db: torch.Tensor, h: torch.Tensor, channel: str) -> torch.Tensor:
    """What the head is told: the SNR for AWGN, ``SNR + 10·log10 mean|h|²`` per image under fading."""
    if channel == "awgn":
        return snr_db
    return snr_db + 10 * torch.log10(h.abs().pow(2).reshape(h.shape[0], -1).mean(1).clamp_min(1e-6)).to(snr_db.dtype)


def simulate(model: TaskJSCC, x: torch.Tensor, snr_db: torch.Tensor, channel: str,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Differentiable end-to-end pass (training): encode -> power-normalise -> channel -> MMSE -> logits.

    ``channel``: ``"awgn"`` or ``"rayleigh"`` (block fading, one h per image, perfect CSI). The
    randomness (gains, then noise) comes from ``generator`` in that order, so a fixed generator gives
    a fixed channel realisation (the finite-difference gradient check relies on it).
    """
    from diffcomm.channels import awgn, equalize_mmse, make_channel, normalize_power, snr_db_to_n0

    if channel not in TASK_CHANNELS:
        raise DiffcommError(f"task JSCC channel must be one of {', '.join(TASK_CHANNELS)}, got {channel!r}")
    z, _ = normalize_power(model.encode(x, snr_db))
    n0 = snr_db_to_n0(snr_db).reshape(-1, 1).to(z.real.dtype)
    h = make_channel(channel).sample_gains(z.shape[0], z.shape[1], generator=generator).to(z.dtype)
    y = awgn(h * z, n0, generator=generator)
    s_hat, _ = equalize_mmse(y, h, n0)
    return model.classify(s_hat, post_equalisation_snr(snr_db, h, channel))


class TaskJSCCEncoder(DeepJSCCEncoder):
    """The transmitter half as a diffcomm encoder at a fixed SNR (``x -> complex (B, k)``), for a
    :class:`diffcomm.link.Link` (which normalises the power, applies the channel and the CSI mode); the SNR
    is held inside the training range like :class:`~diffcomm.transmit.deepjscc.DeepJSCCEncoder`'s."""

    def __init__(self, model: TaskJSCC, snr_db: float, name: str = "taskjscc"):
        super().__init__(model, snr_db, name)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "k": self.k, "design_snr_db": self.snr_db}


@torch.no_grad()
def head_logits(model: TaskJSCC, link, rx) -> torch.Tensor:
    """The receiver half on a :class:`~diffcomm.link.Received` record: MMSE-equalise with ĥ, classify.

    The head is told the link SNR held inside the training range plus the fading gain of ĥ.
    """
    from diffcomm.channels import equalize_mmse

    if rx.h_hat is None:
        raise DiffcommError("task JSCC needs receiver CSI (csi perfect or estimated)")
    cfg = model.config
    snr = torch.full((rx.batch,), float(link.snr_db)).clamp(cfg.snr_min_db, cfg.snr_max_db)
    s_hat, _ = equalize_mmse(rx.y, rx.h_hat, rx.n0)
    fading = getattr(link.channel, "name", "awgn") != "awgn"
    return model.classify(s_hat, post_equalisation_snr(snr, rx.h_hat, "rayleigh" if fading else "awgn"))


def build_taskjscc(config: dict[str, Any]) -> TaskJSCC:
    """Zoo builder: the architecture of a config's ``[model]`` table."""
    return TaskJSCC(TaskJSCCConfig.from_dict(config["model"]))


# ---------------------------------------------------------------------------------------------
# training


@torch.no_grad()
def accuracy_through_channel(model: TaskJSCC, images: torch.Tensor, labels: torch.Tensor, snr_db: float, channel: str,
                  seed: int = 0, batch_size: int = 1000) -> float:
    """Accuracy through the channel at one SNR (fixed channel seed), batched."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    hits = 0
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size]
        logits = simulate(model, x, torch.full((len(x),), float(snr_db)), channel, gen)
        hits += int((logits.argmax(1) == labels[i:i + batch_size]).sum())
    return hits / max(len(images), 1)


class TaskJSCCTask:
    """Cross-entropy through the channel, the SNR uniform in [snr_min_db, snr_max_db] per image."""

    def __init__(self, images, labels, test_images, test_labels, cfg: TaskJSCCConfig, batch_size: int, seed: int,
                 snapshot_images: int = 2000):
        from diffcomm.training import seeded_init

        with seeded_init(seed):
            self.model = TaskJSCC(cfg)
        self.cfg = cfg
        self.images, self.labels = images, labels
        self.test_images, self.test_labels = test_images[:snapshot_images], test_labels[:snapshot_images]
        self.batch_size, self.seed = batch_size, seed

    def loss(self, model: TaskJSCC, step: int, generator: torch.Generator) -> torch.Tensor:
        from diffcomm.training import batch_indices

        idx = batch_indices(len(self.images), self.batch_size, self.seed, step)
        x, y = self.images[idx], self.labels[idx]
        span = self.cfg.snr_max_db - self.cfg.snr_min_db
        snr = self.cfg.snr_min_db + span * torch.rand(len(x), generator=generator)
        return F.cross_entropy(simulate(model, x, snr, self.cfg.channel, generator), y)

    def snapshot(self, ema: TaskJSCC, step: int, out_dir: Path) -> dict[str, Any]:
        return {f"acc_{snr:g}dB": accuracy_through_channel(ema, self.test_images, self.test_labels, snr,
                                                           self.cfg.channel) for snr in (-5.0, 0.0, 10.0)}


_DATA_KEYS = ("dataset", "limit")


def validate_taskjscc_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check a task-JSCC recipe before any work (sections, keys, types, ranges); return it unchanged."""
    from diffcomm.checks import check_section_keys
    from diffcomm.training import DataSection, TrainConfig

    check_section_keys(config, {"name": str, "description": str, "model": dict, "data": dict, "train": dict},
                       "config section")
    TaskJSCCConfig.from_dict(config.get("model", {}))
    data = config.get("data", {})
    bad = sorted(set(data) - set(_DATA_KEYS))
    if bad:
        raise DiffcommError(f"unknown [data] key{'s' if len(bad) > 1 else ''} {', '.join(bad)}; "
                            f"valid keys for taskjscc: {', '.join(_DATA_KEYS)}")
    dataclass_from_dict(DataSection, data, "[data]")
    TrainConfig.from_dict(config.get("train", {}))
    return config


def run_taskjscc_training(config: dict[str, Any], out_dir: str | Path, progress: bool = True) -> dict:
    """``diffcomm train taskjscc --config FILE [--out DIR]``: resumable training (the project's harness)."""
    from diffcomm.data import get_dataset
    from diffcomm.training import TrainConfig, train

    validate_taskjscc_config(config)
    model_cfg = TaskJSCCConfig.from_dict(config.get("model", {}))
    train_cfg = TrainConfig.from_dict(config.get("train", {}))
    data = config.get("data", {})
    dataset = data.get("dataset", "fashion-mnist")
    x, y = get_dataset(dataset, "train")[:2]
    limit = data.get("limit")
    if limit:
        x, y = x[:limit], y[:limit]
    xt, yt = get_dataset(dataset, "test")[:2]
    shape = tuple(x.shape[1:])
    if shape != (model_cfg.in_channels, model_cfg.image_size, model_cfg.image_size):
        raise DiffcommError(f"{dataset} images are {'x'.join(map(str, shape))}; set [model] in_channels and "
                            f"image_size to match")
    if int(y.max()) >= model_cfg.num_classes:
        raise DiffcommError(f"{dataset} has labels up to {int(y.max())}; raise [model] num_classes")
    task = TaskJSCCTask(x, y, xt, yt, model_cfg, train_cfg.batch_size, train_cfg.seed)
    run_config = {"kind": "taskjscc", "name": config.get("name", "taskjscc"), "model": model_cfg.to_dict(),
                  "data": {"dataset": dataset, "n_train": len(x)}}
    return train(task, train_cfg, out_dir, run_config=run_config, progress=progress)


def evaluate_taskjscc(model: TaskJSCC, dataset: str = "fashion-mnist", snrs=EVAL_SNRS) -> dict[str, Any]:
    """Test accuracy of a trained model over its training channel at :data:`EVAL_SNRS` (whole test split)."""
    from diffcomm.data import get_dataset

    xt, yt = get_dataset(dataset, "test")[:2]
    out: dict[str, Any] = {"test_images": len(xt), "channel": model.config.channel, "symbols": model.k}
    for snr in snrs:
        out[f"accuracy_{snr:g}dB"] = accuracy_through_channel(model, xt, yt, snr, model.config.channel)
    return out


def ship_taskjscc(run_dir: str | Path, name: str, recipe: str | Path, weights_dir: str | Path | None = None
                  ) -> dict[str, Any]:
    """Evaluate a finished task-JSCC run and copy it into the zoo with its record (command, data,
    steps, training snapshots, final test accuracies)."""
    from diffcomm import zoo
    from diffcomm.checks import check_output_path
    from diffcomm.training import save_model
    from diffcomm.zoo.evaluate import run_model_config, training_snapshots

    run = Path(run_dir)
    config = run_model_config(run)
    if config.get("kind") != "taskjscc":
        raise DiffcommError(f"{run} is a {config.get('kind')!r} run, not taskjscc; ship it with diffcomm zoo ship")
    if not name or "/" in name or name.startswith("."):
        raise DiffcommError(f"--name must be a plain model name like fmnist-taskjscc-awgn-k8, got {name!r}")
    out = Path(weights_dir) if weights_dir else zoo.WEIGHTS_DIR
    check_output_path(out, "dir", what="zoo folder")
    model = zoo.load_weights(run / "model.safetensors", config)
    config["metrics"] = evaluate_taskjscc(model, config.get("data", {}).get("dataset", "fashion-mnist"))
    config["snapshots"] = training_snapshots(run / "log.jsonl")
    config["recipe"] = str(recipe)
    config["command"] = (f"diffcomm train taskjscc --config {shlex.quote(str(recipe))} "
                         f"--out {shlex.quote(str(run))}")
    config["parameters"] = sum(p.numel() for p in model.parameters())
    save_model(out / f"{name}.safetensors", model, json.loads(json.dumps(config)))
    zoo._CACHE.pop(name, None)
    return config
