"""Training recipe for consistency models: ``diffcomm train consistency --config FILE``.

Consistency distillation (:mod:`diffcomm.diffusion.consistency`) of a shipped EDM diffusion prior
(the *teacher*, a zoo name) into a :class:`~diffcomm.diffusion.consistency.ConsistencyDenoiser` of
the same U-Net, initialised from the teacher's weights (Song et al. 2023, §5 and App. C). Resumable
through :func:`diffcomm.training.train` like every other recipe; the exported weights (the training
loop's EMA) rebuild through ``zoo.BUILDERS["consistency"]`` and sample with
``sampler="consistency"`` (recorded in the model's ``sampling`` entry, which ``zoo ship`` uses).

Config (TOML)::

    [distill]
    teacher = "fmnist-prior"   # a shipped EDM prior; the student copies its [model]
    num_scales = 18            # N of the Karras distillation grid
    [data]
    dataset = "fashion-mnist"
    cond_dropout = 0.1         # labels dropped to the null class, as the teacher was trained
    [train]                    # diffcomm.training.TrainConfig fields
    steps = 3000
    [snapshot]
    quality_samples = 500      # FD-cls / accuracy of 2-step samples at every snapshot (0 = grid only)

Example:
    >>> cfg = {"distill": {"teacher": "fmnist-prior"}, "train": {"steps": 2}}
    >>> validate_consistency_config(cfg) is cfg
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diffcomm.checks import bounds, check_section_keys, dataclass_from_dict
from diffcomm.diffusion.consistency import ConsistencyDenoiser, consistency_distillation_loss
from diffcomm.diffusion.precond import EDMDenoiser
from diffcomm.diffusion.train_prior import PriorTask
from diffcomm.errors import DiffcommError
from diffcomm.training import DataSection, SnapshotSection, TrainConfig, train

QUALITY_STEPS = 2  # consistency-sampling steps of the logged quality snapshot


@dataclass
class DistillSection:
    """The ``[distill]`` section: the teacher (a shipped EDM prior) and the distillation grid size N."""

    teacher: str = "fmnist-prior"
    num_scales: int = field(default=18, metadata=bounds(2, 10_000))


def validate_consistency_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check a consistency recipe's sections and keys before any work; return it unchanged."""
    check_section_keys(config, {"name": str, "description": str, "distill": dict, "data": dict, "train": dict,
                                "snapshot": dict}, "config section")
    dataclass_from_dict(DistillSection, config.get("distill", {}), "[distill]")
    data = config.get("data", {})
    bad = sorted(set(data) - {"dataset", "split", "limit", "cond_dropout"})
    if bad:
        raise DiffcommError(f"unknown [data] keys {', '.join(bad)}; valid keys for consistency: "
                            "cond_dropout, dataset, limit, split")
    dataclass_from_dict(DataSection, data, "[data]")
    TrainConfig.from_dict(config.get("train", {}))
    snap = dataclass_from_dict(SnapshotSection, config.get("snapshot", {}), "[snapshot]")
    if snap.keep_ema_at:
        raise DiffcommError("[snapshot] keep_ema_at is not supported for consistency distillation")
    if 0 < snap.quality_samples < 100:
        raise DiffcommError(f"[snapshot] quality_samples must be 0 or >= 100, got {snap.quality_samples}")
    return config


def load_teacher(name: str) -> EDMDenoiser:
    """The shipped EDM prior ``name`` (one-line error for other kinds)."""
    from diffcomm import zoo

    config = zoo.model_config(name)
    if config.get("kind") != "prior":
        raise DiffcommError(f"[distill] teacher must be a shipped EDM diffusion prior (kind 'prior'); "
                            f"{name} is kind {config.get('kind')!r}")
    return zoo.load(name)


class ConsistencyTask(PriorTask):
    """Consistency distillation of ``teacher`` on an in-memory image tensor (pixels in [0, 1])."""

    sample_sampler = "consistency"

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, teacher: EDMDenoiser, batch_size: int,
                 seed: int, cond_dropout: float = 0.1, num_scales: int = 18, quality_samples: int = 0):
        self.teacher = teacher.eval().requires_grad_(False)
        super().__init__(images, labels, teacher.net.config, batch_size, seed, cond_dropout,
                         sample_steps=QUALITY_STEPS, quality_samples=quality_samples)
        self.model.load_state_dict(teacher.state_dict())  # student starts as the teacher (Song et al. 2023, §5)
        self.num_scales = num_scales

    @staticmethod
    def build_model(model_cfg) -> torch.nn.Module:
        from diffcomm.diffusion.unet import UNet

        return ConsistencyDenoiser(UNet(model_cfg))

    def loss(self, model: ConsistencyDenoiser, step: int, generator: torch.Generator) -> torch.Tensor:
        x0, labels = self.batch(step, generator)
        return consistency_distillation_loss(model, self.teacher, x0, labels, self.num_scales, generator).mean()

    @torch.no_grad()
    def snapshot(self, ema: ConsistencyDenoiser, step: int, out_dir: Path) -> dict[str, Any]:
        from diffcomm.data import save_grid
        from diffcomm.diffusion.sampling import sample_prior

        labels = torch.arange(100) // 10
        for steps in (1, QUALITY_STEPS):
            x, _ = sample_prior(ema, 100, sampler="consistency", steps=steps, labels=labels, seed=1234)
            save_grid(out_dir / f"samples_{step:07d}_{steps}step.png", x, nrow=10)
        if not self.quality_samples:
            return {}
        return self.quality(ema)

    def quality(self, ema: ConsistencyDenoiser) -> dict[str, Any]:
        """FD-cls / KID-cls / accuracy of 2-step consistency samples, and the FD-cls of 1-step samples."""
        from diffcomm import zoo
        from diffcomm.zoo.evaluate import evaluate_prior

        was_training = ema.training
        ema.eval()
        classifier = zoo.load("fmnist-classifier")
        n = self.quality_samples
        m = evaluate_prior(ema, classifier, n=n, steps=QUALITY_STEPS, sampler="consistency")
        one = evaluate_prior(ema, classifier, n=n, steps=1, sampler="consistency")
        ema.train(was_training)
        keep = ("conditional_accuracy", "fd_cls_uncond_vs_test", f"fd_cls_real{n}_vs_rest_of_test",
                "kid_cls_uncond_vs_test", f"kid_cls_real{n}_vs_rest_of_test", "nn_l2_to_train_samples_median",
                "sampling_seconds")
        return {**{k: m[k] for k in keep}, "fd_cls_uncond_vs_test_1step": one["fd_cls_uncond_vs_test"],
                "conditional_accuracy_1step": one["conditional_accuracy"]}


def run_consistency_training(config: dict[str, Any], out_dir: str | Path, progress: bool = True) -> dict:
    """``diffcomm train consistency``: distil the ``[distill] teacher`` into a consistency model (resumable)."""
    from diffcomm.data import get_dataset

    validate_consistency_config(config)
    distill = dataclass_from_dict(DistillSection, config.get("distill", {}), "[distill]")
    data = dataclass_from_dict(DataSection, config.get("data", {}), "[data]")
    snap = dataclass_from_dict(SnapshotSection, config.get("snapshot", {}), "[snapshot]")
    train_cfg = TrainConfig.from_dict(config.get("train", {}))
    if snap.quality_samples and data.dataset != "fashion-mnist":
        raise DiffcommError("[snapshot] quality_samples needs dataset = 'fashion-mnist' (the shipped classifier)")
    teacher = load_teacher(distill.teacher)
    images, labels = get_dataset(data.dataset, data.split)[:2]
    if images.shape[1] != teacher.net.config.in_channels:
        raise DiffcommError(f"teacher {distill.teacher} has {teacher.net.config.in_channels} channels but "
                            f"{data.dataset} has {images.shape[1]}")
    if data.limit:
        images, labels = images[:data.limit], labels[:data.limit]
    num_classes = teacher.net.config.num_classes
    task = ConsistencyTask(images, labels if num_classes else None, teacher, train_cfg.batch_size, train_cfg.seed,
                           data.cond_dropout, distill.num_scales, snap.quality_samples)
    precond = {"type": "consistency", "sigma_data": 0.5, "sigma_min": 0.002, "sigma_max": 80.0,
               "data_space": "[-1, 1]", "teacher": distill.teacher, "num_scales": distill.num_scales,
               "loss": "pseudo-huber, lambda = 1/(sigma_n+1 - sigma_n), stop-gradient target"}
    run_config = {"kind": "consistency", "name": config.get("name", "consistency"),
                  "model": teacher.net.config.to_dict(),
                  "data": {"dataset": data.dataset, "n": len(images), "split": data.split,
                           "cond_dropout": data.cond_dropout},
                  "preconditioning": precond, "sampling": {"sampler": "consistency", "steps": QUALITY_STEPS}}
    return train(task, train_cfg, out_dir, run_config=run_config, progress=progress)


__all__ = ["ConsistencyTask", "DistillSection", "load_teacher", "run_consistency_training",
           "validate_consistency_config"]
