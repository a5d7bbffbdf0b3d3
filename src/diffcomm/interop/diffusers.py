"""diffusers models as diffcomm priors, and diffcomm EDM priors saved in diffusers' format.

Needs the optional extra ``pip install -e ".[diffusers]"`` (diffusers 0.42; no torchvision).

**In** — :class:`DiffusersPrior` turns a diffusers ``UNet2DModel`` (or any diffusers model called as
``unet(sample, timestep, class_labels=...).sample``) and its scheduler into the denoiser every
receiver and sampler takes, ``prior(x, sigma, class_labels) -> x0_hat`` for ``x = x0 + σ ε`` in the
model's data space (diffusers image models: [-1, 1]), with ``to_model``, ``to_pixels``,
``sigma_min`` and ``sigma_max``:

- **VP schedulers** (``DDPMScheduler``, ``DDIMScheduler``, … — anything with ``alphas_cumprod``):
  the scheduler's ᾱ table and ``config.prediction_type`` pick the wrapper of
  :mod:`diffcomm.diffusion.wrappers` — ``"epsilon"``: :class:`~diffcomm.diffusion.wrappers.EpsDenoiser`,
  ``"v_prediction"``: :class:`~diffcomm.diffusion.wrappers.VDenoiser`, ``"sample"``:
  :class:`~diffcomm.diffusion.wrappers.X0Denoiser`. The network gets ``x_t = x / sqrt(1 + σ²)`` and
  the fractional timestep whose σ_t = σ (log-σ interpolation over the table, k-diffusion's
  ``DiscreteSchedule``; ``quantize=True`` rounds it to the integer steps the model was trained on).
  σ range: ``[σ_0, σ_{T-1}]`` of the table (DDPM's linear betas: 0.010 to 157).
- **EDM schedulers** (``EDMEulerScheduler``, ``EDMDPMSolverMultistepScheduler``): Karras et al.
  preconditioning with the scheduler's ``sigma_data`` and σ range
  (:class:`~diffcomm.diffusion.precond.EDMDenoiser`; ``c_noise = ln σ / 4`` as diffusers'
  ``precondition_noise``; ``"v_prediction"`` flips the sign of ``c_out`` as diffusers does).

**Out** — :func:`export_prior` writes our EDM prior (an :class:`~diffcomm.diffusion.precond.EDMDenoiser`
around the diffcomm :class:`~diffcomm.diffusion.unet.UNet`) as a diffusers pipeline folder:
``model_index.json``, ``unet/`` (:class:`DiffcommUNet`: ``config.json`` + safetensors weights,
the raw network F called with ``timestep = c_noise``) and ``scheduler/`` (an ``EDMEulerScheduler``
with the prior's σ range, ``sigma_data`` and ``prediction_type = "epsilon"``, whose
preconditioning is exactly ours). Our U-Net is not a ``UNet2DModel`` architecture, so the folder
names its own model class; diffusers loads it with ``DiffcommEDMPipeline.from_pretrained(path)``
once this module is imported (diffusers resolves non-diffusers classes only from imported modules),
and the pipeline's ``__call__`` samples with diffusers' own ``EDMEulerScheduler``.
:func:`load_prior` reloads any such folder — ours or a diffusers ``DDPMPipeline``/``DDIMPipeline``
saved with ``save_pretrained`` — offline as a :class:`DiffusersPrior`.

Example:
    >>> from diffusers import DDPMScheduler, UNet2DModel
    >>> unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 8),
    ...                    down_block_types=("DownBlock2D", "DownBlock2D"),
    ...                    up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4, layers_per_block=1)
    >>> prior = DiffusersPrior(unet, DDPMScheduler())
    >>> prior(torch.zeros(2, 1, 8, 8), torch.tensor(1.0)).shape
    torch.Size([2, 1, 8, 8])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffcomm.errors import DiffcommError

try:
    import diffusers
    from diffusers import ConfigMixin, DiffusionPipeline, EDMEulerScheduler, ModelMixin, SchedulerMixin  # noqa: F401
    from diffusers.configuration_utils import register_to_config
    from diffusers.models.unets.unet_2d import UNet2DOutput
    from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("diffcomm.interop.diffusers needs diffusers: pip install -e '.[diffusers]'") from exc

from diffcomm.diffusion.precond import EDMDenoiser
from diffcomm.diffusion.unet import UNet, UNetConfig
from diffcomm.diffusion.wrappers import EpsDenoiser, VDenoiser, X0Denoiser

VP_WRAPPERS = {"epsilon": EpsDenoiser, "v_prediction": VDenoiser, "sample": X0Denoiser}


def _accepts_labels(unet: nn.Module) -> bool:
    if isinstance(unet, DiffcommUNet):
        return True
    cfg = getattr(unet, "config", {})
    get = cfg.get if hasattr(cfg, "get") else lambda k, d=None: getattr(cfg, k, d)
    return bool(get("num_class_embeds", None) or get("class_embed_type", None))


class _UNetCall(nn.Module):
    """``F(x, t, class_labels) = sign · unet(x, t, class_labels=...).sample`` (labels only where the
    network takes them; a registered submodule, so ``.to``, ``.eval`` and ``parameters`` reach it)."""

    def __init__(self, unet: nn.Module, sign: float = 1.0):
        super().__init__()
        self.unet, self.sign, self.labels = unet, sign, _accepts_labels(unet)

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        kwargs = {"class_labels": class_labels} if self.labels and class_labels is not None else {}
        if class_labels is not None and not self.labels:
            raise DiffcommError("this diffusers model is unconditional; call the prior without class_labels")
        out = self.unet(x, t, **kwargs, return_dict=False)[0]
        return out if self.sign == 1.0 else self.sign * out


class DiffusersPrior(nn.Module):
    """A diffusers network + scheduler as a diffcomm prior (see the module docstring).

    ``pixel_range`` is the model-space value of pixel 0 and of pixel 1 (diffusers image models:
    ``(-1, 1)``); ``quantize`` rounds VP timesteps to integers.
    """

    def __init__(self, unet: nn.Module, scheduler: Any, *, pixel_range: tuple[float, float] = (-1.0, 1.0),
                 quantize: bool = False):
        super().__init__()
        cfg = scheduler.config
        pred = cfg.get("prediction_type", "epsilon")
        self.scheduler = scheduler
        self.prediction_type = pred
        lo, hi = (float(v) for v in pixel_range)
        if not hi > lo:
            raise DiffcommError(f"pixel_range must be increasing (model value of pixel 0, of pixel 1), "
                                f"got {pixel_range}")
        self._scale, self._offset = hi - lo, lo
        if hasattr(scheduler, "precondition_outputs") and "sigma_data" in cfg:   # EDM schedulers
            if pred not in ("epsilon", "v_prediction"):
                raise DiffcommError(f"EDM scheduler prediction_type {pred!r} is not supported; "
                                    f"use epsilon or v_prediction")
            self.kind = "edm"
            self.denoiser = EDMDenoiser(_UNetCall(unet, -1.0 if pred == "v_prediction" else 1.0),
                                        sigma_data=float(cfg["sigma_data"]), sigma_min=float(cfg["sigma_min"]),
                                        sigma_max=float(cfg["sigma_max"]))
            self.sigma_min, self.sigma_max = float(cfg["sigma_min"]), float(cfg["sigma_max"])
        elif getattr(scheduler, "alphas_cumprod", None) is not None:                  # VP: DDPM, DDIM, ...
            if pred not in VP_WRAPPERS:
                raise DiffcommError(f"scheduler prediction_type {pred!r} is not supported; "
                                    f"use one of {', '.join(VP_WRAPPERS)}")
            self.kind = "vp"
            self.denoiser = VP_WRAPPERS[pred](_UNetCall(unet), scheduler.alphas_cumprod, quantize=quantize)
            table = self.denoiser.sigma_table
            self.sigma_min, self.sigma_max = float(table[0]), float(table[-1])
        else:
            raise DiffcommError(f"{type(scheduler).__name__} is neither a VP scheduler (alphas_cumprod) nor an EDM "
                                f"scheduler (sigma_data); use DDPMScheduler, DDIMScheduler or EDMEulerScheduler")
        self.unet = unet

    @property
    def num_classes(self) -> int:
        if isinstance(self.unet, DiffcommUNet):
            return int(self.unet.config.num_classes)
        return int(self.unet.config.get("num_class_embeds") or 0)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "edm":
            return self.denoiser(x, sigma, class_labels)
        kwargs = {} if class_labels is None else {"class_labels": class_labels}
        return self.denoiser(x, sigma, **kwargs)

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] -> the model's data space."""
        return x * self._scale + self._offset

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """The model's data space -> pixels in [0, 1] (not clamped)."""
        return (x - self._offset) / self._scale


class DiffcommUNet(ModelMixin, ConfigMixin):
    """The diffcomm :class:`~diffcomm.diffusion.unet.UNet` (EDM's raw F) as a diffusers model.

    ``forward(sample, timestep, class_labels=None)`` returns ``UNet2DOutput(sample=F(sample, timestep))``
    with ``timestep = c_noise = ln σ / 4`` (what ``EDMEulerScheduler`` passes); ``sample_size`` is the
    image side the pipeline samples at. Saved by ``save_pretrained`` as ``config.json`` + safetensors.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, in_channels: int = 1, base_channels: int = 32, channel_mults: tuple = (1, 2, 2),
                 num_res_blocks: int = 1, attention_levels: tuple = (2,), num_classes: int = 0,
                 dropout: float = 0.0, emb_dim: int = 128, sample_size: int = 28):
        super().__init__()
        self.net = UNet(UNetConfig(in_channels=in_channels, base_channels=base_channels,
                                   channel_mults=tuple(channel_mults), num_res_blocks=num_res_blocks,
                                   attention_levels=tuple(attention_levels), num_classes=num_classes,
                                   dropout=dropout, emb_dim=emb_dim))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float, class_labels: torch.Tensor | None = None,
                return_dict: bool = True):
        t = torch.as_tensor(timestep, dtype=sample.dtype, device=sample.device).reshape(-1)
        out = self.net(sample, t, class_labels)
        return UNet2DOutput(sample=out) if return_dict else (out,)


class DiffcommEDMPipeline(DiffusionPipeline):
    """Unconditional (or class-conditional) EDM sampling with diffusers' ``EDMEulerScheduler``.

    ``pipe(batch_size=4, num_inference_steps=18, generator=g)`` returns ``ImagePipelineOutput`` whose
    ``images`` are float32 pixels in [0, 1], shape ``(B, C, H, W)`` (``output_type="pt"``, the
    default) or a NumPy array ``(B, H, W, C)`` (``output_type="np"``).
    """

    def __init__(self, unet: DiffcommUNet, scheduler: EDMEulerScheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @torch.no_grad()
    def __call__(self, batch_size: int = 1, num_inference_steps: int = 18, generator: torch.Generator | None = None,
                 class_labels: torch.Tensor | None = None, output_type: str = "pt", return_dict: bool = True):
        cfg = self.unet.config
        shape = (batch_size, cfg.in_channels, cfg.sample_size, cfg.sample_size)
        self.scheduler.set_timesteps(num_inference_steps)
        x = torch.randn(shape, generator=generator) * self.scheduler.init_noise_sigma
        for t in self.scheduler.timesteps:
            model_in = self.scheduler.scale_model_input(x, t)
            out = self.unet(model_in, t, class_labels).sample
            x = self.scheduler.step(out, t, x, return_dict=False)[0]
        images = ((x + 1) / 2).clamp(0, 1)
        if output_type == "np":
            images = images.permute(0, 2, 3, 1).cpu().numpy()
        return ImagePipelineOutput(images=images) if return_dict else (images,)


def export_prior(prior: nn.Module, path: str | Path, *, image_size: int = 28) -> Path:
    """Save an EDM prior (``EDMDenoiser`` around a diffcomm ``UNet``) as a diffusers pipeline folder.

    ``image_size``: the side of the images the pipeline samples (28 for the shipped Fashion-MNIST
    prior). The prior must be in the shipped model space [-1, 1] (``to_model(x) = 2x − 1``).
    Returns the folder; :func:`load_prior` turns it back into a denoiser with the same output.
    """
    if not isinstance(prior, EDMDenoiser) or not isinstance(prior.net, UNet):
        raise DiffcommError(f"export_prior: only EDM priors around the diffcomm UNet can be exported "
                            f"(got {type(prior).__name__} / {type(getattr(prior, 'net', None)).__name__})")
    ends = prior.to_model(torch.tensor([0.0, 1.0]))
    if not torch.allclose(ends, torch.tensor([-1.0, 1.0])):
        raise DiffcommError("export_prior: the prior's model space must be [-1, 1] (to_model(x) = 2x - 1)")
    cfg = prior.net.config.to_dict()
    unet = DiffcommUNet(**cfg, sample_size=int(image_size))
    unet.net.load_state_dict(prior.net.state_dict())
    scheduler = EDMEulerScheduler(sigma_min=float(prior.sigma_min), sigma_max=float(prior.sigma_max),
                                  sigma_data=float(prior.sigma_data), prediction_type="epsilon")
    out = Path(path)
    DiffcommEDMPipeline(unet=unet.eval(), scheduler=scheduler).save_pretrained(out, safe_serialization=True)
    return out


def load_pipeline(path: str | Path) -> DiffusionPipeline:
    """A diffusers pipeline folder (ours or a diffusers one with ``unet`` and ``scheduler``), offline."""
    path = Path(path)
    index = path / "model_index.json"
    if not index.is_file():
        raise DiffcommError(f"{path} is not a diffusers pipeline folder (no model_index.json)")
    name = json.loads(index.read_text()).get("_class_name")
    cls = DiffcommEDMPipeline if name == DiffcommEDMPipeline.__name__ else DiffusionPipeline
    try:
        return cls.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise DiffcommError(f"cannot load the diffusers pipeline {path}: {str(exc).splitlines()[0]}") from None


def load_prior(path: str | Path, **options: Any) -> DiffusersPrior:
    """:class:`DiffusersPrior` of a saved pipeline folder (``options``: ``pixel_range``, ``quantize``)."""
    pipe = load_pipeline(path)
    unet, scheduler = getattr(pipe, "unet", None), getattr(pipe, "scheduler", None)
    if unet is None or scheduler is None:
        raise DiffcommError(f"{path}: the pipeline has no unet and scheduler components")
    return DiffusersPrior(unet.eval(), scheduler, **options).requires_grad_(False)


__all__ = ["DiffcommEDMPipeline", "DiffcommUNet", "DiffusersPrior", "export_prior", "load_pipeline", "load_prior",
           "diffusers"]
