"""Training-time conditional diffusion: a denoiser conditioned on the received signal (CDM-JSCC style).

Where the inference-time receivers (DPS, ΠGDM, HiFi, ...) guide an *unconditional* prior with the
likelihood of y, a conditional diffusion decoder learns ``p(x | c)`` directly, with the condition
``c`` computed from the channel output at training time (Yang & Mandt 2023, "Lossy image
compression with conditional diffusion models"; Yilmaz et al. 2024, "High Perceptual Quality
Wireless Image Delivery with Denoising Diffusion Models" (CDM-JSCC); Yang et al. 2024,
"DiffJSCC"; the source tutorial §III-B and §IV-B's first solution family). Here ::

    c = (x_jscc, SNR, G),     x_jscc = Dec(EQ_MMSE(h z + n)),  G = 10·log10 mean |ĥ|²,

the DeepJSCC decoder's reconstruction (channel-concatenated with the noisy image, the U-Net's
``conv_in`` taking ``C + C`` channels), the link SNR and the fading gain in dB (0 dB over AWGN),
both fed through a sinusoidal embedding added to the noise-level one (FiLM,
:class:`~diffcomm.diffusion.unet.UNet` ``emb_extra``). Training draws fresh channel outputs every
step: each image goes through the shipped DeepJSCC for its channel (AWGN or Rayleigh block fading,
chosen per image) at an SNR uniform in ``[snr_min_db, snr_max_db]`` (:func:`simulate_condition`),
and the EDM denoising loss (:func:`~diffcomm.diffusion.loss.edm_loss`'s weighting) is taken on the
clean image given that condition. With probability ``cond_dropout`` the condition is dropped (the
image channels zeroed and the embedding switched off: ``keep = 0``), so the same network is the
unconditional model too and classifier-free guidance (Ho & Salimans 2022, eq. 6, the project's
convention ``D̃ = (1 + w) D(x | c) − w D(x | ∅)``, :func:`diffcomm.diffusion.guidance.cfg_denoiser`)
applies.

**Initialisation.** The network starts from a shipped unconditional-capable prior (``[condition]
init``): every weight is copied, the extra ``conv_in`` input channels and the condition
embedding's last layer are zero, so at step 0 the conditional model *is* the prior, for any
condition (checked by the tests), and training only has to learn to use the condition.

Config (TOML), ``diffcomm train conditional --config FILE``::

    [condition]
    init = "fmnist-prior-long"          # the shipped EDM prior the network starts from
    jscc_awgn = "fmnist-deepjscc-awgn-cbr16"
    jscc_rayleigh = "fmnist-deepjscc-rayleigh-cbr16"
    channels = ["awgn", "rayleigh"]
    snr_min_db = 0.0
    snr_max_db = 20.0
    cond_dropout = 0.1
    [data]
    dataset = "fashion-mnist"
    [train]                              # diffcomm.training.TrainConfig

Example:
    >>> from diffcomm.diffusion.unet import UNetConfig
    >>> D = ConditionalDenoiser(ConditionedUNet(UNetConfig(base_channels=8, channel_mults=(1,), attention_levels=())))
    >>> c = ChannelCondition(torch.zeros(2, 1, 28, 28), torch.tensor([5.0, 10.0]), torch.zeros(2))
    >>> D(torch.zeros(2, 1, 28, 28), torch.tensor(1.0), condition=c).shape
    torch.Size([2, 1, 28, 28])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffcomm.checks import bounds, check_section_keys, dataclass_from_dict
from diffcomm.diffusion.precond import ModelSpacePrior
from diffcomm.diffusion.unet import UNet, UNetConfig, sinusoidal_embedding
from diffcomm.errors import DiffcommError

GAIN_RANGE_DB = (-30.0, 10.0)   # the fading gain fed to the embedding is clamped to this range
SCALAR_DIM = 64                 # sinusoidal features per condition scalar


@dataclass
class ChannelCondition:
    """The condition of one batch: the decoder's reconstruction (model space) and the channel scalars."""

    image: torch.Tensor      # (B, C, H, W) in model space [-1, 1]
    snr_db: torch.Tensor     # (B,) link SNR in dB
    gain_db: torch.Tensor    # (B,) 10·log10 mean |ĥ|² (0 over AWGN)

    def repeat(self, times: int) -> ChannelCondition:
        """The condition tiled ``times`` times along the batch (CFG batches the conditional and null calls)."""
        return ChannelCondition(self.image.repeat(times, *([1] * (self.image.ndim - 1))),
                                self.snr_db.repeat(times), self.gain_db.repeat(times))

    def scalars(self) -> torch.Tensor:
        """(B, 2): the SNR over 20 dB and the clamped gain over 10 dB (the embedding's inputs)."""
        gain = self.gain_db.clamp(*GAIN_RANGE_DB)
        return torch.stack([self.snr_db / 20.0, gain / 10.0], dim=1).to(self.image.dtype)


class ConditionedUNet(nn.Module):
    """A :class:`UNet` whose input also carries ``cond_channels`` condition channels and whose
    embedding gets the condition scalars; ``keep`` (B,) in {0, 1} switches the condition off per row."""

    def __init__(self, config: UNetConfig, cond_channels: int | None = None, num_scalars: int = 2):
        super().__init__()
        self.config = config
        self.cond_channels = int(config.in_channels if cond_channels is None else cond_channels)
        self.unet = UNet(config)
        conv = self.unet.conv_in
        self.unet.conv_in = nn.Conv2d(config.in_channels + self.cond_channels, conv.out_channels, 3, padding=1)
        with torch.no_grad():
            self.unet.conv_in.weight.zero_()
            self.unet.conv_in.weight[:, :config.in_channels] = conv.weight
            self.unet.conv_in.bias.copy_(conv.bias)
        self.num_scalars = num_scalars
        self.scalar_mlp = nn.Sequential(nn.Linear(num_scalars * SCALAR_DIM, config.emb_dim), nn.SiLU(),
                                        nn.Linear(config.emb_dim, config.emb_dim))
        nn.init.zeros_(self.scalar_mlp[2].weight)
        nn.init.zeros_(self.scalar_mlp[2].bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond_image: torch.Tensor, scalars: torch.Tensor,
                keep: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        k = keep.to(x.dtype).reshape(-1, 1)
        feats = torch.cat([sinusoidal_embedding(scalars[:, i], SCALAR_DIM) for i in range(scalars.shape[1])], 1)
        emb_extra = self.scalar_mlp(feats.to(x.dtype)) * k
        inp = torch.cat([x, cond_image.to(x.dtype) * k.reshape(-1, 1, 1, 1)], dim=1)
        return self.unet(inp, c_noise, class_labels, emb_extra=emb_extra)

    def load_prior(self, prior_state: dict[str, torch.Tensor]) -> None:
        """Copy an unconditional prior's U-Net weights (``net.*`` of an EDMDenoiser state): the extra
        input channels and the condition embedding stay zero, so the result equals the prior."""
        own = self.unet.state_dict()
        theirs = {k[len("net."):]: v for k, v in prior_state.items() if k.startswith("net.")}
        if set(theirs) != set(own):
            raise DiffcommError("[condition] init: the prior's U-Net does not match [model]; "
                                "use the init model's architecture")
        for key, value in theirs.items():
            if key == "conv_in.weight":
                own[key].zero_()
                own[key][:, :value.shape[1]] = value
            elif own[key].shape != value.shape:
                raise DiffcommError(f"[condition] init: {key} has shape {tuple(value.shape)} in the prior, "
                                    f"{tuple(own[key].shape)} here; use the init model's [model]")
            else:
                own[key] = value
        self.unet.load_state_dict(own)


class ConditionalDenoiser(ModelSpacePrior):
    """EDM-preconditioned conditional denoiser ``D(x; σ, c)`` (:mod:`diffcomm.diffusion.precond`'s
    c_skip/c_out/c_in/c_noise); ``condition=None`` or ``keep=0`` is the unconditional model."""

    model_kind = "conditional"

    def __init__(self, net: ConditionedUNet, sigma_data: float = 0.5, sigma_min: float = 0.002,
                 sigma_max: float = 80.0):
        super().__init__(net, sigma_min, sigma_max)
        self.sigma_data = sigma_data

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, class_labels: torch.Tensor | None = None,
                condition: ChannelCondition | None = None, keep: torch.Tensor | None = None) -> torch.Tensor:
        sigma, s = self.per_row_sigma(sigma, x)
        b = x.shape[0]
        if condition is None:
            cond_image = torch.zeros((b, self.net.cond_channels, *x.shape[2:]), dtype=x.dtype, device=x.device)
            scalars = torch.zeros(b, self.net.num_scalars, dtype=x.dtype, device=x.device)
            keep = torch.zeros(b, device=x.device)
        else:
            if condition.image.shape[0] != b:
                raise DiffcommError(f"the condition has {condition.image.shape[0]} rows for a batch of {b}")
            cond_image, scalars = condition.image, condition.scalars()
            keep = torch.ones(b, device=x.device) if keep is None else keep
        sd2 = self.sigma_data ** 2
        c_skip = sd2 / (s ** 2 + sd2)
        c_out = s * self.sigma_data / (s ** 2 + sd2).sqrt()
        c_in = 1 / (s ** 2 + sd2).sqrt()
        f = self.net(c_in * x, sigma.log() / 4, cond_image, scalars, keep, class_labels)
        return c_skip * x + c_out * f.to(x.dtype)


def guided_denoiser(model: ConditionalDenoiser, condition: ChannelCondition, cfg_weight: float):
    """``D(x, σ)`` with classifier-free guidance on the channel condition (project convention,
    :func:`~diffcomm.diffusion.guidance.cfg_denoiser`): ``w = 0`` is the conditional model alone
    (one call), ``w > 0`` is ``(1 + w) D(x | c) − w D(x | ∅)`` (one batched call of 2B)."""
    from diffcomm.diffusion.guidance import cfg_denoiser

    b = condition.image.shape[0]
    if cfg_weight == 0:
        def conditional(x: torch.Tensor, sigma, class_labels=None, **_: Any) -> torch.Tensor:
            return model(x, sigma, condition=condition)
        return conditional

    def by_flag(x: torch.Tensor, sigma, class_labels=None, **_: Any) -> torch.Tensor:
        # class_labels is CFG's switch here: 1 = with the channel condition, 0 = the null condition
        return model(x, sigma, condition=condition.repeat(x.shape[0] // b), keep=class_labels)

    guided = cfg_denoiser(by_flag, cfg_weight, null_label=0.0)
    flags = torch.ones(b)

    def call(x: torch.Tensor, sigma, class_labels=None, **_: Any) -> torch.Tensor:
        return guided(x, sigma, class_labels=flags)
    return call


# ---- training ---------------------------------------------------------------------------------------

@dataclass
class ConditionSection:
    """The ``[condition]`` section (see the module docstring)."""

    init: str = "fmnist-prior-long"
    jscc_awgn: str = "fmnist-deepjscc-awgn-cbr16"
    jscc_rayleigh: str = "fmnist-deepjscc-rayleigh-cbr16"
    channels: list[str] = field(default_factory=lambda: ["awgn", "rayleigh"])
    snr_min_db: float = field(default=0.0, metadata=bounds(-30, 60))
    snr_max_db: float = field(default=20.0, metadata=bounds(-30, 60))
    cond_dropout: float = field(default=0.1, metadata=bounds(0, 1, high_open=True))
    # what x1 is: the DeepJSCC decoder's output, or the pseudo-inverse A⁺y of the pixel-domain downsampling
    # link at CBR 1/16 (a linear link; the jscc_* models are then unused)
    source: str = field(default="deepjscc", metadata=bounds(choices=("deepjscc", "pinv-downsample")))

    def __post_init__(self) -> None:
        bad = [c for c in self.channels if c not in ("awgn", "rayleigh")]
        if not self.channels or bad:
            raise DiffcommError(f"[condition] channels must list awgn and/or rayleigh, got {self.channels!r}")
        if self.snr_max_db < self.snr_min_db:
            raise DiffcommError(f"[condition] snr_max_db ({self.snr_max_db}) is below snr_min_db ({self.snr_min_db})")

    def jscc_name(self, channel: str) -> str:
        return self.jscc_awgn if channel == "awgn" else self.jscc_rayleigh


def validate_condition_config(config: dict[str, Any], extra: dict[str, type] | None = None) -> dict[str, Any]:
    """Check a conditional (or bridge) recipe before any work; return it unchanged."""
    from diffcomm.training import DataSection, TrainConfig

    check_section_keys(config, {"name": str, "description": str, "condition": dict, "data": dict, "train": dict,
                                **(extra or {})}, "config section")
    dataclass_from_dict(ConditionSection, config.get("condition", {}), "[condition]")
    data = config.get("data", {})
    bad = sorted(set(data) - {"dataset", "split", "limit"})
    if bad:
        raise DiffcommError(f"unknown [data] keys {', '.join(bad)}; valid keys: dataset, limit, split")
    dataclass_from_dict(DataSection, data, "[data]")
    TrainConfig.from_dict(config.get("train", {}))
    return config


def load_jscc_models(section: ConditionSection) -> dict[str, nn.Module]:
    """The shipped DeepJSCC of each training channel (one-line error for a missing or wrong kind)."""
    from diffcomm import zoo

    models = {}
    for channel in () if section.source == "pinv-downsample" else section.channels:
        name = section.jscc_name(channel)
        if zoo.model_config(name).get("kind") != "jscc":
            raise DiffcommError(f"[condition] jscc_{channel} = {name!r} is not a DeepJSCC model")
        models[channel] = zoo.load(name)
    return models


def load_init_prior(name: str) -> nn.Module:
    """The shipped EDM prior a conditional network starts from."""
    from diffcomm import zoo

    if zoo.model_config(name).get("kind") != "prior":
        raise DiffcommError(f"[condition] init must be a shipped EDM prior (kind 'prior'); {name} is "
                            f"kind {zoo.model_config(name).get('kind')!r}")
    return zoo.load(name)


@torch.no_grad()
def simulate_condition(jscc: dict[str, nn.Module], x: torch.Tensor, section: ConditionSection,
                       generator: torch.Generator) -> ChannelCondition:
    """Fresh channel outputs for a batch of clean images ``x`` (pixels): per image a channel from
    ``section.channels`` and an SNR uniform in ``[snr_min_db, snr_max_db]``, through that channel's
    DeepJSCC (:func:`diffcomm.transmit.deepjscc.simulate`, perfect CSI); returns the condition."""
    from diffcomm.transmit.deepjscc import simulate

    b = x.shape[0]
    which = torch.randint(len(section.channels), (b,), generator=generator)
    snr = section.snr_min_db + (section.snr_max_db - section.snr_min_db) * torch.rand(b, generator=generator)
    image = torch.empty_like(x)
    gain = torch.zeros(b)
    for i, channel in enumerate(section.channels):
        rows = (which == i).nonzero().flatten()
        if not len(rows):
            continue
        if section.source == "pinv-downsample":
            level = snr[rows]
            x_hat, g = pinv_downsample(x[rows], level, channel, generator)
            snr[rows] = level                                   # the 0.5 dB grid it was simulated on
        else:
            x_hat, g = simulate(jscc[channel], x[rows], snr[rows], channel, generator, return_gain=True)
        image[rows] = x_hat.clamp(0, 1)
        gain[rows] = g
    return ChannelCondition(image * 2 - 1, snr, gain)


def pinv_downsample(x: torch.Tensor, snr_db: torch.Tensor, channel: str,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A⁺y over the pixel-domain downsampling link (CBR 1/16, perfect CSI) and the fading gain 10·log10
    mean ``|ĥ|²`` (0 over AWGN): the receiver side of the ``pinv-downsample`` source. ``snr_db`` is used on a
    0.5 dB grid (rounded in place, so the condition reports the SNR simulated), one cached link per level."""
    from diffcomm.pipeline import build_link

    snr_db.copy_((snr_db * 2).round() / 2)
    out, gain = torch.empty_like(x), torch.zeros(len(x))
    for level in snr_db.unique():
        rows = (snr_db == level).nonzero().flatten()
        key = (channel, tuple(x.shape[1:]), float(level))
        if key not in _PINV_LINKS:
            _PINV_LINKS[key] = build_link("downsample", key[1], "1/16", channel, float(level), csi="perfect")
        link = _PINV_LINKS[key]
        rx = link.transmit(x[rows], generator=generator)
        out[rows] = link.operator(rx).pinv(rx.y).clamp(0, 1)
        if channel != "awgn":
            gain[rows] = 10 * torch.log10(rx.h_hat.abs().pow(2).reshape(len(rows), -1).mean(1).clamp_min(1e-6))
    return out, gain


_PINV_LINKS: dict = {}


class ConditionalTask:
    """EDM denoising loss of the conditional denoiser on fresh channel conditions (resumable, seeded)."""

    def __init__(self, images: torch.Tensor, section: ConditionSection, batch_size: int, seed: int):
        from diffcomm.training import seeded_init

        prior = load_init_prior(section.init)
        self.model_config = prior.net.config
        with seeded_init(seed):
            self.model = ConditionalDenoiser(ConditionedUNet(self.model_config))
        self.model.net.load_prior(prior.state_dict())
        self.jscc = load_jscc_models(section)
        self.section = section
        self.images, self.batch_size, self.seed = images, batch_size, seed

    def condition_batch(self, step: int, generator: torch.Generator) -> tuple[torch.Tensor, ChannelCondition,
                                                                             torch.Tensor]:
        from diffcomm.training import batch_indices

        x = self.images[batch_indices(len(self.images), self.batch_size, self.seed, step)]
        cond = simulate_condition(self.jscc, x, self.section, generator)
        keep = (torch.rand(len(x), generator=generator) >= self.section.cond_dropout).float()
        return x * 2 - 1, cond, keep

    def loss(self, model: ConditionalDenoiser, step: int, generator: torch.Generator) -> torch.Tensor:
        x0, cond, keep = self.condition_batch(step, generator)
        ln_sigma = -1.2 + 1.2 * torch.randn(len(x0), generator=generator)
        s = ln_sigma.exp().reshape(-1, 1, 1, 1)
        noise = torch.randn(x0.shape, generator=generator)
        weight = (s ** 2 + 0.25) / (s * 0.5) ** 2
        denoised = model(x0 + s * noise, s.flatten(), condition=cond, keep=keep)
        return (weight * (denoised - x0) ** 2).flatten(1).mean(1).mean()

    def snapshot_conditions(self) -> tuple[torch.Tensor, list[tuple[str, ChannelCondition, torch.Generator]]]:
        """The snapshots' test case: 64 test images and, per training channel, their condition at 5 dB
        (fixed seed) with the generator that drew it (the sampler continues from it)."""
        import dataclasses

        from diffcomm.data import get_dataset

        x = get_dataset("fashion-mnist", "test").images[:64]
        out = []
        for channel in self.section.channels:
            g = torch.Generator().manual_seed(99)
            one = dataclasses.replace(self.section, channels=[channel], snr_min_db=5.0, snr_max_db=5.0)
            out.append((channel, simulate_condition(self.jscc, x, one, g), g))
        return x, out

    @torch.no_grad()
    def snapshot(self, ema: ConditionalDenoiser, step: int, out_dir: Path) -> dict[str, Any]:
        """PSNR of the conditional model's 10-step Heun reconstructions of 64 test images at 5 dB (per
        training channel) beside the DeepJSCC decoder's, and a grid (originals, decoder, CDM)."""
        from diffcomm.data import save_grid
        from diffcomm.metrics import psnr

        x, conditions = self.snapshot_conditions()
        out: dict[str, Any] = {}
        rows = [x[:8]]
        for channel, cond, g in conditions:
            x_hat = sample_conditional(ema, cond, steps=10, cfg_weight=0.0, generator=g)
            out[f"psnr_{channel}_5dB"] = float(psnr(x_hat, x).mean())
            out[f"psnr_{channel}_5dB_decoder"] = float(psnr((cond.image + 1) / 2, x).mean())
            rows += [(cond.image[:8] + 1) / 2, x_hat[:8]]
        save_grid(out_dir / f"samples_{step:07d}.png", torch.cat(rows), nrow=8)
        return out


@torch.no_grad()
def sample_conditional(model: ConditionalDenoiser, condition: ChannelCondition, steps: int = 10,
                       cfg_weight: float = 0.0, sampler: str = "heun",
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample ``x ~ p(x | c)`` from noise at σ_max over the Karras grid; pixels in [0, 1]."""
    from diffcomm.diffusion.sampling import get_sampler
    from diffcomm.diffusion.schedules import karras_sigmas

    sigmas = karras_sigmas(steps, model.sigma_min, model.sigma_max)
    x = torch.randn(condition.image.shape, generator=generator) * sigmas[0]
    x0 = get_sampler(sampler)(guided_denoiser(model, condition, cfg_weight), x, sigmas, generator=generator)
    return model.to_pixels(x0).clamp(0, 1)


def read_condition_recipe(config: dict[str, Any]):
    """The parsed ``[condition]``, ``[data]`` and ``[train]`` sections of a validated conditional or bridge
    recipe, and its training images (one-line error when they do not match the init prior's channels)."""
    from diffcomm.data import get_dataset
    from diffcomm.training import DataSection, TrainConfig

    section = dataclass_from_dict(ConditionSection, config.get("condition", {}), "[condition]")
    data = dataclass_from_dict(DataSection, config.get("data", {}), "[data]")
    train_cfg = TrainConfig.from_dict(config.get("train", {}))
    images = get_dataset(data.dataset, data.split).images
    if data.limit:
        images = images[:data.limit]
    channels = load_init_prior(section.init).net.config.in_channels     # one-line error for a non-prior
    if images.shape[1] != channels:
        raise DiffcommError(f"[condition] init {section.init} has {channels} channels but {data.dataset} has "
                            f"{images.shape[1]}")
    return section, data, train_cfg, images


def run_conditional_training(config: dict[str, Any], out_dir: str | Path, progress: bool = True) -> dict:
    """``diffcomm train conditional``: the CDM-JSCC decoder from a recipe (resumable)."""

    from diffcomm.training import train

    validate_condition_config(config)
    section, data, train_cfg, images = read_condition_recipe(config)
    task = ConditionalTask(images, section, train_cfg.batch_size, train_cfg.seed)
    run_config = {"kind": "conditional", "name": config.get("name", "conditional"),
                  "model": task.model_config.to_dict(),
                  "condition": {**section.__dict__, "inputs": "x1 (model space), snr_db, gain_db"},
                  "data": {"dataset": data.dataset, "split": data.split, "n": len(images)},
                  "preconditioning": {"type": "edm", "sigma_data": 0.5, "data_space": "[-1, 1]"}}
    return train(task, train_cfg, out_dir, run_config=run_config, progress=progress)


def build_conditional(config: dict[str, Any]) -> ConditionalDenoiser:
    """The zoo builder: a :class:`ConditionalDenoiser` of the config's [model]."""
    return ConditionalDenoiser(ConditionedUNet(UNetConfig.from_dict(config["model"])))


__all__ = ["ChannelCondition", "ConditionSection", "ConditionalDenoiser", "ConditionalTask", "ConditionedUNet",
           "build_conditional", "guided_denoiser", "run_conditional_training",
           "sample_conditional", "simulate_condition", "validate_condition_config"]
