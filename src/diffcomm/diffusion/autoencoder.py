"""Latent diffusion: a small convolutional autoencoder and an EDM prior on its latent.

Rombach, Blattmann, Lorenz, Esser, Ommer, "High-Resolution Image Synthesis with Latent Diffusion
Models", CVPR 2022 (LDM). A first-stage autoencoder maps an image to a latent ``f = 4`` times
smaller per side (Fashion-MNIST 1×28×28 → 4×7×7, 196 values instead of 784), trained for
reconstruction with a small KL term towards N(0, I) ("KL-reg", LDM §3.1 / Appendix G), and a diffusion
model is trained on the latents of the training set *rescaled to unit standard deviation* (LDM
§4.3.2 / Appendix G: ``z ← z / σ̂_z``, their scale factor 0.18215): the scale factor is measured on
the encoded training set, rounded to four significant digits and stored with the weights.

- :class:`AutoEncoder` (:class:`AutoEncoderConfig`): ``encode(x_pixels) -> z`` (the posterior mean),
  ``decode(z) -> pixels`` in [0, 1]. Internally the decoder predicts the image in the model space
  [-1, 1] (``decode(z, clamp=False)`` returns those values mapped to pixels, unclamped).
- :class:`LatentPrior`: the autoencoder, the latent scale factor and an
  :class:`~diffcomm.diffusion.precond.EDMDenoiser` (σ_d = 1, the latents' unit std) on the scaled
  latent. It *is* a prior in the denoiser interface whose model space is the scaled latent:
  ``prior(z, σ, class_labels) -> ẑ0``, ``to_model(x) = encode(x)``, ``to_pixels(z) = decode(z)``,
  ``sigma_min``, ``sigma_max``; ``latent_shape`` is the shape the samplers run in. Every sampler runs
  on it unchanged; a receiver runs in ``latent_shape`` and decodes at the end
  (:mod:`diffcomm.receivers.latent_dps`: latent DPS through ``A ∘ D``).

**Latent denoiser network.** The U-Net (:mod:`diffcomm.diffusion.unet`) downsamples by 2 per
``channel_mults`` level; a 7×7 latent is not divisible by 2, so the latent prior's recipe uses one
level (``channel_mults = [1]``, no downsampling: the autoencoder already did the f = 4 reduction)
with attention at that level (49 tokens, global context). More levels are refused with a one-line
error unless the latent side is divisible by ``2^(levels - 1)``.

Training (resumable through :func:`diffcomm.training.train`):
``diffcomm train autoencoder --config src/diffcomm/zoo/recipes/fmnist-autoencoder.toml`` and
``diffcomm train latent-prior --config src/diffcomm/zoo/recipes/fmnist-latent-prior.toml``, whose
``[autoencoder] source`` names the autoencoder (a zoo name or a finished run folder); the training
set is encoded once (posterior means) at the start of the run.

Example:
    >>> ae = AutoEncoder(AutoEncoderConfig(base_channels=8))
    >>> z = ae.encode(torch.rand(2, 1, 28, 28))
    >>> tuple(z.shape), tuple(ae.decode(z).shape)
    ((2, 4, 7, 7), (2, 1, 28, 28))
    >>> net = {"base_channels": 8, "channel_mults": [1], "attention_levels": [0], "emb_dim": 16}
    >>> prior = LatentPrior(ae, latent_denoiser(ae, net), scale=1.0)
    >>> tuple(prior(torch.randn(2, *prior.latent_shape), torch.tensor(1.0)).shape)
    (2, 4, 7, 7)
    >>> # prior = diffcomm.zoo.load("fmnist-latent-prior"); x = prior.decode(sample_in_latent)   # pixels
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffcomm.checks import bounds, dataclass_from_dict
from diffcomm.diffusion.precond import EDMDenoiser
from diffcomm.diffusion.unet import _groups
from diffcomm.errors import DiffcommError

DOWNSAMPLING = 4  # the autoencoder's factor f per side (two stride-2 stages)
LATENT_SIGMA_DATA = 1.0  # the scaled latents have unit std (LDM §4.3.2)
# EDM's training noise distribution ln σ ~ N(P_mean, P_std²) was set for σ_d = 0.5 (P_mean = −1.2);
# on unit-std latents the same σ/σ_d distribution has P_mean = −1.2 + ln 2.
LATENT_P_MEAN = -1.2 + math.log(LATENT_SIGMA_DATA / 0.5)


# ---------------------------------------------------------------------------------------------
# the autoencoder


@dataclass
class AutoEncoderConfig:
    """Architecture of :class:`AutoEncoder` (the ``[model]`` section; :meth:`from_dict` checks names,
    types and ranges with one-line errors)."""

    in_channels: int = field(default=1, metadata=bounds(choices=(1, 3)))
    image_size: int = field(default=28, metadata=bounds(4, 4096))
    latent_channels: int = field(default=4, metadata=bounds(1, 64))
    base_channels: int = field(default=24, metadata=bounds(1, 512))
    num_res_blocks: int = field(default=1, metadata=bounds(0, 8))

    def __post_init__(self) -> None:
        if self.image_size % DOWNSAMPLING:
            raise DiffcommError(f"[model] image_size must be divisible by {DOWNSAMPLING} (the autoencoder halves "
                                f"it twice), got {self.image_size}")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        side = self.image_size // DOWNSAMPLING
        return (self.latent_channels, side, side)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.image_size, self.image_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AutoEncoderConfig:
        return dataclass_from_dict(cls, d, "[model]")


class _Block(nn.Module):
    """Residual block GroupNorm–SiLU–conv ×2 (no noise embedding: the autoencoder is not a denoiser)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


def _stage(in_ch: int, out_ch: int, blocks: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i in range(blocks):
        layers.append(_Block(in_ch if i == 0 else out_ch, out_ch))
    if not blocks and in_ch != out_ch:
        layers.append(nn.Conv2d(in_ch, out_ch, 1))
    return layers


class AutoEncoder(nn.Module):
    """Convolutional autoencoder, ``f = 4``: pixels (B, C, H, W) in [0, 1] ↔ latent (B, c, H/4, W/4).

    Encoder: conv → [blocks, stride-2 conv] ×2 → blocks → GroupNorm–SiLU–conv to ``2c`` channels, the
    mean and log-variance of a diagonal Gaussian q(z | x) (the KL-reg first stage of LDM). Decoder:
    conv → blocks → [nearest ×2 upsampling, conv, blocks] ×2 → GroupNorm–SiLU–conv to the image in the
    model space [-1, 1]. ``encode`` returns the mean (deterministic; the latent prior is trained on it).
    """

    def __init__(self, config: AutoEncoderConfig | None = None, **kwargs: Any):
        super().__init__()
        cfg = config or AutoEncoderConfig(**kwargs)
        self.config = cfg
        c, n = cfg.base_channels, cfg.num_res_blocks
        enc: list[nn.Module] = [nn.Conv2d(cfg.in_channels, c, 3, padding=1), *_stage(c, c, n),
                                nn.Conv2d(c, c, 3, stride=2, padding=1), *_stage(c, 2 * c, n),
                                nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1), *_stage(2 * c, 2 * c, n),
                                nn.GroupNorm(_groups(2 * c), 2 * c), nn.SiLU(),
                                nn.Conv2d(2 * c, 2 * cfg.latent_channels, 3, padding=1)]
        dec: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, 2 * c, 3, padding=1), *_stage(2 * c, 2 * c, n),
                                nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * c, 2 * c, 3, padding=1),
                                *_stage(2 * c, c, n),
                                nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1),
                                *_stage(c, c, n), nn.GroupNorm(_groups(c), c), nn.SiLU(),
                                nn.Conv2d(c, cfg.in_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return self.config.latent_shape

    def _check(self, x: torch.Tensor, shape: tuple[int, ...], what: str) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
            raise DiffcommError(f"autoencoder: {what} must have shape (B, {', '.join(map(str, shape))}), "
                                f"got {tuple(x.shape)}")

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x) for pixels ``x`` in [0, 1] (log-variance clamped to [-30, 20])."""
        self._check(x, self.config.image_shape, "images")
        mean, logvar = self.encoder(x * 2 - 1).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent (posterior mean, unscaled) of pixels ``x`` in [0, 1]."""
        return self.moments(x)[0]

    def decode(self, z: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Pixels of latent ``z``: the decoder's model-space output mapped to [0, 1] (clamped unless ``clamp``
        is False)."""
        self._check(z, self.latent_shape, "latents")
        x = (self.decoder(z) + 1) / 2
        return x.clamp(0, 1) if clamp else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``decode(encode(x))`` (pixels in [0, 1])."""
        return self.decode(self.encode(x))


def build_autoencoder(config: dict[str, Any]) -> AutoEncoder:
    """Zoo builder (kind ``autoencoder``): the architecture of a config's ``model`` table."""
    return AutoEncoder(AutoEncoderConfig.from_dict(config["model"]))


# ---------------------------------------------------------------------------------------------
# the latent prior


def _latent_unet_config(model: dict[str, Any], latent_shape: tuple[int, int, int]):
    """The U-Net config of a latent denoiser: ``model`` (UNetConfig fields, ``in_channels`` = the latent's)."""
    from diffcomm.diffusion.unet import UNetConfig

    model = dict(model)
    c = model.pop("in_channels", latent_shape[0])
    if c != latent_shape[0]:
        raise DiffcommError(f"[model] in_channels = {c!r} but the autoencoder's latent has {latent_shape[0]} "
                            f"channels; leave in_channels out of the latent prior's [model]")
    cfg = UNetConfig.from_dict(model)
    cfg.in_channels = latent_shape[0]  # UNetConfig's choices are image channel counts; a latent has its own
    levels = len(cfg.channel_mults)
    side = min(latent_shape[1:])
    if any(s % 2 ** (levels - 1) for s in latent_shape[1:]):
        raise DiffcommError(f"[model] channel_mults has {levels} levels, but the {latent_shape[1]}x{latent_shape[2]} "
                            f"latent is not divisible by {2 ** (levels - 1)}; use channel_mults = [1] (one level)")
    if side < 2 ** (levels - 1):
        raise DiffcommError(f"[model] channel_mults has too many levels for a {side}-wide latent")
    return cfg


def latent_denoiser(autoencoder: AutoEncoder, model: dict[str, Any]) -> EDMDenoiser:
    """An EDM denoiser (σ_d = 1) with a U-Net on ``autoencoder``'s latent; ``model``: UNetConfig fields."""
    from diffcomm.diffusion.unet import UNet

    return EDMDenoiser(UNet(_latent_unet_config(model, autoencoder.latent_shape)), sigma_data=LATENT_SIGMA_DATA)


class LatentPrior(nn.Module):
    """A latent diffusion prior in the denoiser interface (model space = the scaled latent); see the module docstring.

    ``scale`` is the latent scale factor: the prior's latent is ``scale · encode(x)`` (unit std on the
    training set). ``prior(z, σ, class_labels)`` is the latent EDM denoiser; ``encode``/``decode`` map
    pixels ↔ scaled latents; ``to_model``/``to_pixels`` are the same maps under the names samplers and
    receivers use (``to_pixels`` unclamped).
    """

    def __init__(self, autoencoder: AutoEncoder, denoiser: EDMDenoiser, scale: float = 1.0):
        super().__init__()
        if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
            raise DiffcommError(f"LatentPrior: scale must be a positive number, got {scale!r}")
        self.autoencoder = autoencoder
        self.denoiser = denoiser
        self.register_buffer("scale", torch.tensor(float(scale)))

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return self.autoencoder.latent_shape

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.autoencoder.config.image_shape

    @property
    def net(self) -> nn.Module:
        """The latent U-Net (``net.config`` as for pixel priors)."""
        return self.denoiser.net

    @property
    def num_classes(self) -> int:
        return self.denoiser.num_classes

    @property
    def sigma_min(self) -> float:
        return self.denoiser.sigma_min

    @property
    def sigma_max(self) -> float:
        return self.denoiser.sigma_max

    @property
    def sigma_data(self) -> float:
        return self.denoiser.sigma_data

    def forward(self, z: torch.Tensor, sigma: torch.Tensor | float,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """ẑ0 = D(z; σ) for ``z = z0 + σ ε`` in the scaled latent space."""
        return self.denoiser(z, sigma, class_labels)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled latent of pixels ``x`` in [0, 1]."""
        return self.autoencoder.encode(x) * self.scale

    def decode(self, z: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Pixels of scaled latent ``z`` (in [0, 1] unless ``clamp=False``)."""
        return self.autoencoder.decode(z / self.scale, clamp=clamp)

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    def to_pixels(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z, clamp=False)


def build_latent_prior(config: dict[str, Any]) -> LatentPrior:
    """Zoo builder (kind ``latent-prior``): ``config["autoencoder"]["model"]`` (its architecture),
    ``config["model"]`` (the latent U-Net) and ``config["latent_scale"]``; the weights hold all three."""
    ae_section = config.get("autoencoder")
    if not isinstance(ae_section, dict) or not isinstance(ae_section.get("model"), dict):
        raise DiffcommError("latent-prior config has no autoencoder.model table; it was not written by "
                            "diffcomm train latent-prior")
    ae = AutoEncoder(AutoEncoderConfig.from_dict(ae_section["model"]))
    return LatentPrior(ae, latent_denoiser(ae, config["model"]), scale=float(config.get("latent_scale", 1.0)))


# ---------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def reconstruction_metrics(autoencoder: AutoEncoder, images: torch.Tensor, batch_size: int = 100) -> dict[str, float]:
    """Mean PSNR / SSIM (pixels in [0, 1]) of ``decode(encode(x))`` over ``images``."""
    from diffcomm.metrics import psnr, ssim

    was = autoencoder.training
    autoencoder.eval()
    rec = torch.cat([autoencoder(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    autoencoder.train(was)
    return {"psnr": float(psnr(rec, images).mean()), "ssim": float(ssim(rec, images).mean())}


def evaluate_autoencoder(autoencoder: AutoEncoder, n: int | None = None, dataset: str = "fashion-mnist"
                         ) -> dict[str, Any]:
    """Test-split reconstruction PSNR/SSIM of ``autoencoder`` (all test images unless ``n``)."""
    from diffcomm.data import get_dataset

    test = get_dataset(dataset, "test").images
    test = test[:n] if n else test
    m = reconstruction_metrics(autoencoder, test)
    return {"test_reconstruction_psnr": m["psnr"], "test_reconstruction_ssim": m["ssim"], "test_images": len(test),
            "dataset": dataset, "latent_shape": list(autoencoder.latent_shape),
            "compression": math.prod(autoencoder.config.image_shape) / math.prod(autoencoder.latent_shape)}


@torch.no_grad()
def sample_latent_prior(prior: LatentPrior, n: int, labels: torch.Tensor | None = None, guidance: float = 0.0,
                        steps: int = 18, seed: int = 0) -> tuple[torch.Tensor, int]:
    """Decoded samples (pixels in [0, 1]) of ``n`` Heun runs in the latent, and the NFE per image."""
    from diffcomm.diffusion.sampling import sample_prior

    z_pixels, nfe = sample_prior(prior, n, labels=labels, guidance=guidance, steps=steps, seed=seed,
                                 shape=prior.latent_shape)
    return z_pixels, nfe  # sample_prior maps the latent through prior.to_pixels (= decode) and clamps


def evaluate_latent_prior(prior: LatentPrior, classifier, n: int = 1000, guidance: float = 1.0, steps: int = 18,
                          seed: int = 0, grid_path: str | Path | None = None) -> dict[str, Any]:
    """The measurements of :func:`diffcomm.zoo.evaluate.evaluate_prior` for decoded latent samples.

    Class-conditional samples (CFG ``guidance``) classified by the shipped classifier; FD-cls / KID-cls
    of unconditional samples against the test set beside the real-data floor at the same size; the
    test images' *autoencoder reconstructions* against the test set (the ceiling the decoder sets on
    any latent prior); nearest-neighbour L2 distances of samples to the training set.
    """
    from diffcomm.data import get_dataset
    from diffcomm.metrics.classifier import predict
    from diffcomm.metrics.distribution import frechet_distance
    from diffcomm.zoo.evaluate import evaluate_prior

    was = prior.training
    prior.eval()
    m = evaluate_prior(prior, classifier, n=n, guidance=guidance, steps=steps, seed=seed, grid_path=grid_path,
                       sample_fn=lambda count, **kw: sample_latent_prior(prior, count, **kw))
    test = get_dataset("fashion-mnist", "test")
    _, f_test = predict(classifier, test.images)
    perm = torch.randperm(len(f_test), generator=torch.Generator().manual_seed(seed))  # evaluate_prior's split
    with torch.no_grad():
        rec = torch.cat([prior.autoencoder(test.images[perm[:n]][i:i + 500]) for i in range(0, n, 500)])
    _, f_rec = predict(classifier, rec)
    prior.train(was)
    m[f"fd_cls_reconstructed{n}_vs_rest_of_test"] = frechet_distance(f_rec, f_test[perm[n:]])
    return m


# ---------------------------------------------------------------------------------------------
# training: diffcomm train autoencoder / latent-prior


@dataclass
class LossSection:
    """The ``[loss]`` section of an autoencoder recipe: loss = MSE(pixels) + kl_weight · KL / pixels."""

    kl_weight: float = field(default=1e-3, metadata=bounds(0, 1e3))


@dataclass
class AutoEncoderSource:
    """The ``[autoencoder]`` section of a latent-prior recipe: a zoo name or a finished run folder."""

    source: str = "fmnist-autoencoder"


@dataclass
class LatentSnapshotSection:
    """The optional ``[snapshot]`` section of a latent-prior recipe."""

    quality_samples: int = field(default=0, metadata=bounds(0, 100_000))


_AE_DATA_KEYS = ("dataset", "split", "limit")
_LATENT_DATA_KEYS = ("dataset", "split", "limit", "cond_dropout")


def _check_data(data: dict[str, Any], allowed: tuple[str, ...], kind: str) -> None:
    from diffcomm.training import DataSection

    bad = sorted(set(data) - set(allowed))
    if bad:
        raise DiffcommError(f"unknown [data] key{'s' if len(bad) > 1 else ''} {', '.join(bad)}; "
                            f"valid keys for {kind}: {', '.join(allowed)}")
    dataclass_from_dict(DataSection, data, "[data]")


def validate_autoencoder_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check an autoencoder recipe before any work (sections, keys, types, ranges); return it unchanged."""
    from diffcomm.checks import check_section_keys
    from diffcomm.training import TrainConfig

    check_section_keys(config, {"name": str, "description": str, "model": dict, "data": dict, "train": dict,
                                "loss": dict}, "config section")
    AutoEncoderConfig.from_dict(config.get("model", {}))
    _check_data(config.get("data", {}), _AE_DATA_KEYS, "autoencoder")
    dataclass_from_dict(LossSection, config.get("loss", {}), "[loss]")
    TrainConfig.from_dict(config.get("train", {}))
    return config


def validate_latent_prior_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check a latent-prior recipe before any work (the autoencoder is resolved later); return it unchanged."""
    from diffcomm.checks import check_section_keys
    from diffcomm.diffusion.unet import UNetConfig
    from diffcomm.training import TrainConfig

    check_section_keys(config, {"name": str, "description": str, "model": dict, "data": dict, "train": dict,
                                "autoencoder": dict, "snapshot": dict}, "config section")
    model = dict(config.get("model", {}))
    if "in_channels" in model:
        raise DiffcommError("[model] in_channels is set by the autoencoder's latent; leave it out of the "
                            "latent prior's [model]")
    UNetConfig.from_dict(model)
    _check_data(config.get("data", {}), _LATENT_DATA_KEYS, "latent-prior")
    dataclass_from_dict(AutoEncoderSource, config.get("autoencoder", {}), "[autoencoder]")
    snap = dataclass_from_dict(LatentSnapshotSection, config.get("snapshot", {}), "[snapshot]")
    if 0 < snap.quality_samples < 100:
        raise DiffcommError(f"[snapshot] quality_samples must be 0 or an integer >= 100, got {snap.quality_samples}")
    TrainConfig.from_dict(config.get("train", {}))
    return config


def _train_images(data: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, str]:
    from diffcomm.data import get_dataset

    dataset = data.get("dataset", "fashion-mnist")
    images, labels = get_dataset(dataset, data.get("split", "train"))[:2]
    limit = data.get("limit")
    if limit:
        images, labels = images[:limit], labels[:limit]
    return images, labels, dataset


class AutoEncoderTask:
    """Reconstruction MSE (pixels) + ``kl_weight`` · KL(q(z|x) ‖ N(0, I)) / pixels, with a reparameterised
    latent sample (its noise drawn from the step's generator, so training stays deterministic)."""

    def __init__(self, images: torch.Tensor, cfg: AutoEncoderConfig, batch_size: int, seed: int,
                 kl_weight: float, test_images: torch.Tensor | None = None):
        from diffcomm.training import seeded_init

        with seeded_init(seed):
            self.model = AutoEncoder(cfg)
        self.images, self.batch_size, self.seed, self.kl_weight = images, batch_size, seed, float(kl_weight)
        self.test_images = test_images

    def loss(self, model: AutoEncoder, step: int, generator: torch.Generator) -> torch.Tensor:
        from diffcomm.training import batch_indices, shard

        idx = batch_indices(len(self.images), self.batch_size, self.seed, step)
        x = self.images[idx]
        noise = torch.randn((len(idx), *model.latent_shape), generator=generator)
        x, noise = shard(x, noise)
        mean, logvar = model.moments(x)
        z = mean + (0.5 * logvar).exp() * noise
        rec = model.decode(z, clamp=False)
        pixels = x[0].numel()
        mse = (rec - x).pow(2).flatten(1).mean(1)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1) / pixels
        return (mse + self.kl_weight * kl).mean()

    @torch.no_grad()
    def snapshot(self, ema: AutoEncoder, step: int, out_dir: Path) -> dict[str, Any]:
        from diffcomm.data import save_grid

        if self.test_images is None:
            return {}
        x = self.test_images[:1000]
        m = reconstruction_metrics(ema, x)
        save_grid(out_dir / f"samples_{step:07d}.png", torch.cat([x[:32], ema(x[:32])]), nrow=16)
        return {"test1000_psnr": m["psnr"], "test1000_ssim": m["ssim"]}


def run_autoencoder_training(config: dict[str, Any], out_dir: str | Path, progress: bool = True) -> dict:
    """``diffcomm train autoencoder --config FILE [--out DIR]`` (resumable; the project's harness)."""
    from diffcomm.data import get_dataset
    from diffcomm.training import TrainConfig, train

    validate_autoencoder_config(config)
    model_cfg = AutoEncoderConfig.from_dict(config.get("model", {}))
    train_cfg = TrainConfig.from_dict(config.get("train", {}))
    loss_cfg = dataclass_from_dict(LossSection, config.get("loss", {}), "[loss]")
    data = dict(config.get("data", {}))
    images, _, dataset = _train_images(data)
    if tuple(images.shape[1:]) != model_cfg.image_shape:
        raise DiffcommError(f"{dataset} images are {'x'.join(map(str, images.shape[1:]))}; set [model] in_channels "
                            f"and image_size to match")
    test = get_dataset(dataset, "test").images
    task = AutoEncoderTask(images, model_cfg, train_cfg.batch_size, train_cfg.seed, loss_cfg.kl_weight, test)
    run_config = {"kind": "autoencoder", "name": config.get("name", "autoencoder"), "model": model_cfg.to_dict(),
                  "loss": asdict(loss_cfg), "data": {"dataset": dataset, "n": len(images), **data}}
    return train(task, train_cfg, out_dir, run_config=run_config, progress=progress)


def file_digest(path: str | Path) -> str:
    """First 16 hex digits of a file's SHA-256."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def resolve_autoencoder(source: str) -> tuple[AutoEncoder, dict[str, Any]]:
    """The autoencoder named by ``source`` (a finished run folder, or a zoo name) and a record of it.

    The module is a fresh copy (never the zoo's cached one); the record holds its architecture and
    the digest of its weights file, so a latent-prior run refuses to resume on other autoencoder weights.
    """
    from diffcomm import zoo

    path = Path(source)
    if path.is_dir():
        from diffcomm.zoo.evaluate import run_model_config

        cfg = run_model_config(path)
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise DiffcommError(f"{weights} not found; finish the autoencoder run first")
    elif source in zoo.list_models():
        cfg, weights = zoo.model_config(source), zoo.WEIGHTS_DIR / f"{source}.safetensors"
    else:
        raise DiffcommError(f"[autoencoder] source {source!r} is neither a finished run folder nor a shipped model; "
                            f"train one with diffcomm train autoencoder")
    if cfg.get("kind") != "autoencoder":
        raise DiffcommError(f"[autoencoder] source {source!r} is a {cfg.get('kind')!r} model, not an autoencoder")
    ae = zoo.load_weights(weights, cfg)
    ae = copy.deepcopy(ae).requires_grad_(False)
    return ae, {"source": str(source), "model": AutoEncoderConfig.from_dict(cfg["model"]).to_dict(),
                "weights_sha256": file_digest(weights), "metrics": cfg.get("metrics", {})}


@torch.no_grad()
def encode_all(autoencoder: AutoEncoder, images: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """Unscaled latents (posterior means) of ``images``, batched."""
    autoencoder.eval()
    return torch.cat([autoencoder.encode(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def latent_scale_factor(latents: torch.Tensor) -> float:
    """1 / std of all latent values (LDM §4.3.2), rounded to four significant digits (a stable constant)."""
    std = float(latents.double().std())
    if not math.isfinite(std) or std <= 0:
        raise DiffcommError("the autoencoder's latents have zero or non-finite spread; retrain the autoencoder")
    return float(f"{1.0 / std:.4g}")


class LatentPriorTask:
    """EDM denoising score matching on the scaled latents (σ_d = 1), with CFG label dropout.

    ``model`` is the whole :class:`LatentPrior` (the frozen autoencoder travels with it, so the exported
    EMA weights are a complete prior); only the latent denoiser is trained.
    """

    def __init__(self, latents: torch.Tensor, labels: torch.Tensor | None, prior: LatentPrior, batch_size: int,
                 seed: int, cond_dropout: float = 0.1, quality_samples: int = 0):
        self.latents, self.labels, self.model = latents, labels, prior
        self.batch_size, self.seed, self.cond_dropout = batch_size, seed, cond_dropout
        self.num_classes = prior.num_classes
        self.quality_samples = int(quality_samples)

    def loss(self, model: LatentPrior, step: int, generator: torch.Generator) -> torch.Tensor:
        from diffcomm.diffusion.loss import edm_loss
        from diffcomm.training import batch_indices

        idx = batch_indices(len(self.latents), self.batch_size, self.seed, step)
        z0 = self.latents[idx]
        labels = None
        if self.num_classes:
            labels = self.labels[idx].clone()
            drop = torch.rand(len(idx), generator=generator) < self.cond_dropout
            labels[drop] = self.num_classes
        return edm_loss(model, z0, labels, p_mean=LATENT_P_MEAN, sigma_data=LATENT_SIGMA_DATA,
                        generator=generator).mean()

    @torch.no_grad()
    def snapshot(self, ema: LatentPrior, step: int, out_dir: Path) -> dict[str, Any]:
        from diffcomm.data import save_grid

        n = 10 * self.num_classes if self.num_classes else 64
        labels = torch.arange(n) % self.num_classes if self.num_classes else None
        x, _ = sample_latent_prior(ema, n, labels=labels, guidance=1.0 if labels is not None else 0.0, seed=1234)
        save_grid(out_dir / f"samples_{step:07d}.png", x, nrow=10)
        if not self.quality_samples:
            return {}
        from diffcomm import zoo

        m = evaluate_latent_prior(ema, zoo.load("fmnist-classifier"), n=self.quality_samples)
        n = self.quality_samples
        keep = ("conditional_accuracy", "fd_cls_uncond_vs_test", f"fd_cls_real{n}_vs_rest_of_test",
                "kid_cls_uncond_vs_test", "sampling_seconds")
        return {k: m[k] for k in keep}


def run_latent_prior_training(config: dict[str, Any], out_dir: str | Path, progress: bool = True) -> dict:
    """``diffcomm train latent-prior --config FILE [--out DIR]`` (resumable; the project's harness)."""
    from diffcomm.training import TrainConfig, seeded_init, train

    validate_latent_prior_config(config)
    train_cfg = TrainConfig.from_dict(config.get("train", {}))
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)  # the encoding pass below runs before train() sets it
    source = dataclass_from_dict(AutoEncoderSource, config.get("autoencoder", {}), "[autoencoder]").source
    snap = dataclass_from_dict(LatentSnapshotSection, config.get("snapshot", {}), "[snapshot]")
    data = dict(config.get("data", {}))
    images, labels, dataset = _train_images(data)
    if snap.quality_samples and dataset != "fashion-mnist":
        raise DiffcommError("[snapshot] quality_samples needs dataset = 'fashion-mnist' (the shipped classifier)")
    ae, ae_record = resolve_autoencoder(source)
    if tuple(images.shape[1:]) != ae.config.image_shape:
        raise DiffcommError(f"{dataset} images are {'x'.join(map(str, images.shape[1:]))} but the autoencoder codes "
                            f"{'x'.join(map(str, ae.config.image_shape))} images")
    latents = encode_all(ae, images)
    scale = latent_scale_factor(latents)
    latents = latents * scale
    with seeded_init(train_cfg.seed):
        denoiser = latent_denoiser(ae, dict(config.get("model", {})))
    prior = LatentPrior(ae, denoiser, scale=scale)
    num_classes = prior.num_classes
    task = LatentPriorTask(latents, labels if num_classes else None, prior, train_cfg.batch_size, train_cfg.seed,
                           float(data.get("cond_dropout", 0.1)), quality_samples=snap.quality_samples)
    run_config = {"kind": "latent-prior", "name": config.get("name", "latent-prior"),
                  "model": denoiser.net.config.to_dict(), "autoencoder": ae_record, "latent_scale": scale,
                  "latent_shape": list(ae.latent_shape),
                  "data": {"dataset": dataset, "n": len(images), **data},
                  "preconditioning": {"type": "edm", "sigma_data": LATENT_SIGMA_DATA, "p_mean": LATENT_P_MEAN,
                                      "data_space": "autoencoder latent x latent_scale (unit std)"}}
    return train(task, train_cfg, out_dir, run_config=run_config, progress=progress)


# ---------------------------------------------------------------------------------------------
# shipping: diffcomm zoo ship RUN --name N --recipe R


def latent_metrics(model: nn.Module, config: dict[str, Any], name: str, docs_dir: str | Path) -> dict[str, Any]:
    """What ``diffcomm zoo ship`` measures for an autoencoder or latent-prior run (it does the rest).

    autoencoder: test-split reconstruction PSNR/SSIM (all 10,000 images). latent-prior: FD-cls,
    KID-cls and conditional accuracy (CFG 1) of 1,000 decoded samples each (Heun, 18 steps;
    :func:`evaluate_latent_prior`) and a sample grid ``docs_dir/NAME-samples.png``.
    """
    from diffcomm import zoo

    dataset = str(config.get("data", {}).get("dataset", "fashion-mnist"))
    if config["kind"] == "autoencoder":
        return evaluate_autoencoder(model, dataset=dataset)
    if dataset != "fashion-mnist":
        raise DiffcommError("shipping a latent prior measures it with the Fashion-MNIST classifier; "
                            f"this run was trained on {dataset}")
    Path(docs_dir).mkdir(parents=True, exist_ok=True)
    grid = Path(docs_dir) / f"{name}-samples.png"
    return {**evaluate_latent_prior(model, zoo.load("fmnist-classifier"), grid_path=grid),
            "sample_grid": str(grid),
            "autoencoder_test_reconstruction_psnr":
                config.get("autoencoder", {}).get("metrics", {}).get("test_reconstruction_psnr")}


__all__ = ["AutoEncoder", "AutoEncoderConfig", "LatentPrior", "build_autoencoder", "build_latent_prior",
           "encode_all", "evaluate_autoencoder", "evaluate_latent_prior", "latent_denoiser", "latent_scale_factor",
           "resolve_autoencoder", "run_autoencoder_training", "run_latent_prior_training", "sample_latent_prior",
           "latent_metrics", "validate_autoencoder_config", "validate_latent_prior_config"]
