"""Training recipe for diffusion priors: ``diffcomm train prior --config FILE``.

``diffcomm train flow --config FILE`` trains a flow-matching (rectified flow) prior on the same
config schema and U-Net instead (:class:`FlowTask`, :mod:`diffcomm.diffusion.flow`); its weights
have ``kind = "flow"`` and rebuild as a :class:`~diffcomm.diffusion.flow.FlowDenoiser`.

Denoising score matching with the EDM weighting (:mod:`diffcomm.diffusion.loss`) on a U-Net
(:mod:`diffcomm.diffusion.unet`) wrapped in EDM preconditioning. With ``num_classes > 0`` the
labels are dropped to the null class with probability ``cond_dropout``, so one network serves
unconditional use and classifier-free guidance (Ho & Salimans 2022).

Config (TOML)::

    [model]            # UNetConfig fields
    base_channels = 32
    channel_mults = [1, 2, 3]
    num_classes = 10
    [data]
    dataset = "fashion-mnist"
    cond_dropout = 0.1
    [train]            # diffcomm.training.TrainConfig fields
    steps = 8000
    batch_size = 64
    [snapshot]         # optional: quality at every [train] snapshot_every steps
    quality_samples = 1000   # FD-cls / accuracy of this many samples (0 = sample grid only)
    keep_ema_at = [10000]    # also export the EMA weights at these steps (ema_<step>.safetensors)
    [init]             # optional (prior only): fine-tune a shipped EDM prior (domain adaptation);
    model = "fmnist-prior-long"   # [model] may then be left out (it is copied from that model)

``[data] limit = N`` takes the first N images; with ``subset_seed`` a random subset of N drawn with that
seed instead (mnist-subset is sorted by class: its first 100 images are all zeros).

With ``quality_samples`` the log records, at each snapshot, the conditional accuracy of
class-conditional samples (CFG w = 1) under the shipped classifier and FD-cls / KID-cls of
unconditional samples against the test set, beside the real-data floor at the same sample size
(:func:`diffcomm.zoo.evaluate.evaluate_prior`): the quality-versus-steps curve of the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from diffcomm.diffusion.loss import edm_loss
from diffcomm.diffusion.precond import EDMDenoiser
from diffcomm.diffusion.unet import UNet, UNetConfig
from diffcomm.errors import DiffcommError
from diffcomm.training import TrainConfig, batch_indices, seeded_init, train


class PriorTask:
    """EDM denoising score matching on an in-memory image tensor (pixels in [0, 1])."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, model_cfg: UNetConfig,
                 batch_size: int, seed: int, cond_dropout: float = 0.1, sample_steps: int = 18,
                 quality_samples: int = 0, keep_ema_at: tuple[int, ...] = ()):
        self.images = images
        self.labels = labels
        with seeded_init(seed):
            self.model = self.build_model(model_cfg)
        self.batch_size = batch_size
        self.seed = seed
        self.cond_dropout = cond_dropout
        self.sample_steps = sample_steps
        self.num_classes = model_cfg.num_classes
        self.quality_samples = int(quality_samples)
        self.keep_ema_at = {int(s) for s in keep_ema_at}
        self.model_config = model_cfg

    @staticmethod
    def build_model(model_cfg: UNetConfig) -> torch.nn.Module:
        return EDMDenoiser(UNet(model_cfg))

    def batch(self, step: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Step ``step``'s images in model space and labels (dropped to the null class at ``cond_dropout``)."""
        idx = batch_indices(len(self.images), self.batch_size, self.seed, step)
        x0 = EDMDenoiser.to_model(self.images[idx])
        labels = None
        if self.num_classes:
            labels = self.labels[idx].clone()
            drop = torch.rand(len(idx), generator=generator) < self.cond_dropout
            labels[drop] = self.num_classes
        return x0, labels

    def loss(self, model: EDMDenoiser, step: int, generator: torch.Generator) -> torch.Tensor:
        x0, labels = self.batch(step, generator)
        return edm_loss(model, x0, labels, generator=generator).mean()


    @torch.no_grad()
    def snapshot(self, ema: EDMDenoiser, step: int, out_dir: Path) -> dict[str, Any]:
        from diffcomm.data import save_grid
        from diffcomm.diffusion.samplers import sample_heun
        from diffcomm.diffusion.schedules import karras_sigmas

        gen = torch.Generator().manual_seed(1234)
        n = 10 * max(self.num_classes, 1) if self.num_classes else 64
        labels = torch.arange(n) % self.num_classes if self.num_classes else None
        sigmas = karras_sigmas(self.sample_steps, ema.sigma_min, ema.sigma_max)
        x = torch.randn((n, *self.images.shape[1:]), generator=gen) * sigmas[0]
        extra = {"class_labels": labels} if labels is not None else {}
        x0 = sample_heun(ema, x, sigmas, generator=gen, extra_args=extra)
        save_grid(out_dir / f"samples_{step:07d}.png", EDMDenoiser.to_pixels(x0).clamp(0, 1), nrow=10)
        if step in self.keep_ema_at:
            from diffcomm.utils import atomic_save_safetensors

            atomic_save_safetensors(out_dir / f"ema_{step:07d}.safetensors", ema.state_dict(),
                                    metadata={"format": "pt", "step": str(step)})
        if not self.quality_samples:
            return {}
        return self.quality(ema)

    def quality(self, ema: EDMDenoiser) -> dict[str, Any]:
        """FD-cls / KID-cls / accuracy of samples, with the real floor at the same sample size."""
        from diffcomm import zoo
        from diffcomm.zoo.evaluate import evaluate_prior

        was_training = ema.training
        ema.eval()
        m = evaluate_prior(ema, zoo.load("fmnist-classifier"), n=self.quality_samples, steps=self.sample_steps)
        ema.train(was_training)
        n = self.quality_samples
        keep = ("conditional_accuracy", "fd_cls_uncond_vs_test", f"fd_cls_real{n}_vs_rest_of_test",
                "kid_cls_uncond_vs_test", f"kid_cls_real{n}_vs_rest_of_test", "nn_l2_to_train_samples_median",
                "sampling_seconds")
        return {k: m[k] for k in keep}



class FlowTask(PriorTask):
    """Flow matching (rectified flow, :mod:`diffcomm.diffusion.flow`) on the same data and U-Net.

    Snapshots and quality samples go through the denoiser interface (Heun on the Karras σ grid),
    exactly as for the EDM prior.
    """

    t_sampling = "uniform"

    @staticmethod
    def build_model(model_cfg: UNetConfig) -> torch.nn.Module:
        from diffcomm.diffusion.flow import FlowDenoiser

        return FlowDenoiser(UNet(model_cfg))

    def loss(self, model, step: int, generator: torch.Generator) -> torch.Tensor:
        from diffcomm.diffusion.flow import flow_loss

        x0, labels = self.batch(step, generator)
        return flow_loss(model, x0, labels, t_sampling=self.t_sampling, generator=generator).mean()

def data_cfg_dataset(config: dict[str, Any]) -> str:
    return str(dict(config.get("data", {})).get("dataset", "fashion-mnist"))


def init_model_name(config: dict[str, Any]) -> str | None:
    """The ``[init] model`` of a prior recipe (a shipped EDM prior to fine-tune from), or None."""
    init = config.get("init")
    if init is None:
        return None
    bad = sorted(set(init) - {"model"})
    if bad or not isinstance(init.get("model"), str):
        raise DiffcommError("[init] takes one key, model = the name of a shipped EDM prior to start from")
    from diffcomm import zoo

    if zoo.model_config(init["model"]).get("kind") != "prior":
        raise DiffcommError(f"[init] model {init['model']!r} is not a shipped EDM prior (kind 'prior')")
    return init["model"]


def run_prior_training(config: dict[str, Any], out_dir: str | Path, progress: bool = True,
                       kind: str = "prior") -> dict:
    """Build the task from a parsed config and train it (resumable).

    ``kind="flow"`` trains a flow-matching prior (:class:`FlowTask`) from the same config schema;
    its weights rebuild through ``zoo.BUILDERS["flow"]``.
    """
    from diffcomm.data import get_dataset
    from diffcomm.training import validate_training_config

    if kind not in ("prior", "flow"):
        raise DiffcommError(f"run_prior_training: kind must be 'prior' or 'flow', got {kind!r}")
    validate_training_config(kind, config)
    unknown = sorted(set(config) - {"model", "data", "train", "snapshot", "name", "description", "init"})
    if unknown:
        raise DiffcommError(f"unknown config sections {unknown}; expected [model], [data], [train], [snapshot], [init]")
    init = init_model_name(config) if kind == "prior" else None
    snap = dict(config.get("snapshot", {}))
    bad = sorted(set(snap) - {"quality_samples", "keep_ema_at"})
    if bad:
        raise DiffcommError(f"unknown [snapshot] keys {bad}; valid keys: ['keep_ema_at', 'quality_samples']")
    quality_samples = snap.get("quality_samples", 0)
    keep_ema_at = snap.get("keep_ema_at", [])
    if not isinstance(quality_samples, int) or isinstance(quality_samples, bool) or quality_samples < 0 \
            or 0 < quality_samples < 100:
        raise DiffcommError(f"[snapshot] quality_samples must be 0 or an integer >= 100, got {quality_samples!r}")
    if not isinstance(keep_ema_at, list) or not all(isinstance(v, int) and v > 0 for v in keep_ema_at):
        raise DiffcommError(f"[snapshot] keep_ema_at must be a list of positive step counts, got {keep_ema_at!r}")
    if quality_samples and data_cfg_dataset(config) != "fashion-mnist":
        raise DiffcommError("[snapshot] quality_samples needs dataset = 'fashion-mnist' (the shipped classifier)")
    try:
        model_cfg = UNetConfig.from_dict(config.get("model", {}))
    except TypeError as exc:
        raise DiffcommError(f"bad [model] section: {exc}") from None
    if init is not None:
        from diffcomm import zoo

        init_cfg = UNetConfig.from_dict(zoo.model_config(init)["model"])
        if "model" in config and model_cfg != init_cfg:
            raise DiffcommError(f"[model] differs from the [init] model {init!r}'s architecture; "
                                f"leave [model] out to copy it")
        model_cfg = init_cfg
    data_cfg = dict(config.get("data", {}))
    train_cfg = TrainConfig.from_dict(config.get("train", {}))
    dataset = data_cfg.get("dataset", "fashion-mnist")
    images, labels = get_dataset(dataset, data_cfg.get("split", "train"))[:2]
    if model_cfg.in_channels != images.shape[1]:
        raise DiffcommError(f"[model] in_channels={model_cfg.in_channels} but {dataset} has "
                            f"{images.shape[1]} channels")
    limit = data_cfg.get("limit")
    if limit and data_cfg.get("subset_seed") is not None:     # a random subset (class-balanced in expectation)
        keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(int(data_cfg["subset_seed"])))
        keep = keep[:limit].sort().values
        images, labels = images[keep], labels[keep]
    elif limit:
        images, labels = images[:limit], labels[:limit]
    task_cls = FlowTask if kind == "flow" else PriorTask
    task = task_cls(images, labels if model_cfg.num_classes else None, model_cfg,
                     train_cfg.batch_size, train_cfg.seed, float(data_cfg.get("cond_dropout", 0.1)),
                     quality_samples=quality_samples, keep_ema_at=tuple(keep_ema_at))
    if init is not None:
        from diffcomm import zoo

        task.model.load_state_dict(zoo.load(init).state_dict())   # fine-tuning starts from the shipped prior
    if kind == "flow":
        precond = {"type": "rectified-flow", "path": "x_t = (1 - t) x0 + t eps", "target": "eps - x0",
                   "t_sampling": FlowTask.t_sampling, "net_time_input": "t", "sigma_min": 0.002,
                   "sigma_max": 80.0, "data_space": "[-1, 1]"}
    else:
        precond = {"type": "edm", "sigma_data": 0.5, "data_space": "[-1, 1]"}
    run_config = {"kind": kind, "name": config.get("name", kind), "model": model_cfg.to_dict(),
                  "data": {"dataset": dataset, "n": len(images), **data_cfg}, "preconditioning": precond,
                  **({"init": {"model": init}} if init is not None else {})}
    return train(task, train_cfg, out_dir, run_config=run_config, progress=progress)


def run_flow_training(config: dict[str, Any], out_dir: str | Path, progress: bool = True) -> dict:
    """``diffcomm train flow``: a flow-matching prior from a prior-style config (resumable)."""
    return run_prior_training(config, out_dir, progress=progress, kind="flow")
