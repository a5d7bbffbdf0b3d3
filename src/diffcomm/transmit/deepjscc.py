"""DeepJSCC: learned analog joint source-channel coding with SNR adaptation.

Bourtsoulatze, Kurka, Gündüz, "Deep Joint Source-Channel Coding for Wireless Image
Transmission", IEEE TCCN 2019: a convolutional encoder maps the image straight to complex channel
symbols (power-normalised, eq. 2), the channel adds noise (and fading), and a convolutional
decoder reconstructs the image. SNR adaptation follows the attention-feature (AF) modules of
ADJSCC (Xu, Ai, Chen, Li, "Wireless Image Transmission Using Deep Source Channel Coding With
Attention Modules", IEEE TCSVT 2021): after each stage, channel-wise gains predicted from
(pooled features, SNR) rescale the features, so one model serves 0–20 dB.

Fading: with perfect CSI the receiver equalises (MMSE, :func:`diffcomm.channels.equalize_mmse`)
before the decoder, and the AF modules see the post-equalisation SNR (``|h|²``·SNR for block fading).

The encoder half is a ``diffcomm`` encoder (``encoder(x) -> complex (B, k)`` before power
normalisation); the decoder half maps equalised symbols (and the SNR) back to pixels.

Example:
    >>> model = DeepJSCC(DeepJSCCConfig(cbr=1 / 16))
    >>> z = model.encode(torch.rand(2, 1, 28, 28), snr_db=torch.tensor([10.0, 10.0]))
    >>> z.shape, z.dtype
    (torch.Size([2, 49]), torch.complex64)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffcomm.checks import bounds, dataclass_from_dict
from diffcomm.errors import DiffcommError

# Channels a DeepJSCC can be trained over: flat AWGN / Rayleigh block fading, OFDM multipath and MIMO
# (diffcomm.channels), always with perfect receiver CSI and per-symbol MMSE equalisation.
TRAIN_CHANNELS = ("awgn", "rayleigh", "ofdm", "mimo")
LINK_KEYS = ("channel", "impairments")


@dataclass
class DeepJSCCConfig:
    in_channels: int = field(default=1, metadata=bounds(choices=(1, 3)))
    image_size: int = field(default=28, metadata=bounds(4, 4096))
    cbr: float = field(default=1 / 16, metadata=bounds(0, 1, low_open=True))
    width: int = field(default=32, metadata=bounds(1, 1024))
    # the training channel (perfect CSI); its options and impairment stages: the recipe's [link] table
    channel: str = field(default="awgn", metadata=bounds(choices=TRAIN_CHANNELS))
    snr_min_db: float = field(default=0.0, metadata=bounds(-50, 100))
    snr_max_db: float = field(default=20.0, metadata=bounds(-50, 100))

    def __post_init__(self) -> None:
        if self.snr_min_db > self.snr_max_db:
            raise DiffcommError(f"[model] snr_min_db ({self.snr_min_db}) is above snr_max_db ({self.snr_max_db})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DeepJSCCConfig:
        return dataclass_from_dict(cls, d, "[model]")

    @property
    def latent_channels(self) -> int:
        """Real channels of the 7×7 latent: 2k = latent_channels · (H/4)²."""
        n = self.in_channels * self.image_size ** 2
        k = round(self.cbr * n)
        cells = (self.image_size // 4) ** 2
        if (2 * k) % cells:
            raise DiffcommError(f"DeepJSCC needs 2k divisible by {cells} latent cells; CBR {self.cbr} gives k={k}")
        return 2 * k // cells


class AFModule(nn.Module):
    """Attention-feature module (ADJSCC): channel gains from pooled features and the SNR."""

    def __init__(self, channels: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(channels + 1, channels // 2), nn.ReLU(inplace=True),
                                 nn.Linear(channels // 2, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        ctx = torch.cat([x.mean((2, 3)), snr_db.reshape(-1, 1) / 20.0], dim=1)
        return x * self.mlp(ctx)[:, :, None, None]


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 5 if stride == 2 else 3, stride, padding=2 if stride == 2 else 1),
                         nn.PReLU(cout))


def _deconv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 5, 2, padding=2, output_padding=1), nn.PReLU(cout))


class DeepJSCC(nn.Module):
    """Encoder + decoder of SNR-adaptive DeepJSCC; the channel sits between them."""

    def __init__(self, config: DeepJSCCConfig | None = None, **kwargs):
        super().__init__()
        cfg = config or DeepJSCCConfig(**kwargs)
        self.config = cfg
        w, c = cfg.width, cfg.latent_channels
        self.enc = nn.ModuleList([_conv(cfg.in_channels, w, 2), _conv(w, w, 2), _conv(w, w), _conv(w, w)])
        self.enc_af = nn.ModuleList([AFModule(w) for _ in self.enc])
        self.enc_out = nn.Conv2d(w, c, 3, padding=1)
        self.dec_in = _conv(c, w)
        self.dec = nn.ModuleList([_conv(w, w), _conv(w, w), _deconv(w, w), _deconv(w, w)])
        self.dec_af = nn.ModuleList([AFModule(w) for _ in self.dec])
        self.dec_out = nn.Conv2d(w, cfg.in_channels, 3, padding=1)

    @property
    def k(self) -> int:
        return round(self.config.cbr * self.config.in_channels * self.config.image_size ** 2)

    def encode(self, x: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        """Pixels (B, C, H, W) -> complex symbols (B, k) *before* power normalisation."""
        h = x * 2 - 1
        for layer, af in zip(self.enc, self.enc_af):
            h = af(layer(h), snr_db)
        v = self.enc_out(h).flatten(1)
        return torch.complex(v[:, 0::2], v[:, 1::2])

    def decode(self, s_hat: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        """Equalised symbols (B, k) -> pixels in [0, 1]."""
        cfg = self.config
        side = cfg.image_size // 4
        v = torch.stack([s_hat.real, s_hat.imag], dim=-1).flatten(1).float()
        h = self.dec_in(v.reshape(-1, cfg.latent_channels, side, side))
        for layer, af in zip(self.dec, self.dec_af):
            h = af(layer(h), snr_db)
        return torch.sigmoid(self.dec_out(h))


class DeepJSCCEncoder(nn.Module):
    """The transmitter half as a diffcomm encoder (fixed design SNR): ``x -> complex (B, k)``.

    Any SNR-conditioned JSCC model with ``.config`` (``snr_min_db``, ``snr_max_db``, ``in_channels``,
    ``image_size``), ``.k`` and ``.encode(x, snr)`` fits (the task JSCC of the machine scenario too).
    """

    is_linear = False

    def __init__(self, model: DeepJSCC, snr_db: float, name: str = "deepjscc"):
        super().__init__()
        self.model = model
        # The encoder's SNR modulation was trained on [snr_min_db, snr_max_db]; outside it, hold the
        # design SNR at the nearest end rather than extrapolate.
        cfg = model.config
        self.snr_db = float(min(max(float(snr_db), cfg.snr_min_db), cfg.snr_max_db))
        self.name = name
        self.shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
        self.k = model.k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        snr = torch.full((x.shape[0],), self.snr_db, device=x.device)
        return self.model.encode(x, snr)


def training_link(channel: str, link: dict[str, Any] | None = None) -> tuple[Any, tuple]:
    """The training channel and transmitter impairment stages of a recipe's ``[link]`` table.

    ``[link] channel = {...}``: keyword options of :func:`diffcomm.channels.make_channel` for the model's
    ``channel`` (e.g. ``{profile = "A", fft_size = 16, cp_length = 10}`` for OFDM, ``{n_t = 2, n_r = 2}``
    for MIMO); ``[link] impairments = [{kind = "clip", ratio = 0.8}]``: transmitter stages of
    :func:`diffcomm.channels.impairments.impairment` applied to the power-normalised symbols. One-line
    errors for unknown keys or bad values.

    Example:
        >>> ch, stages = training_link("rayleigh", {"impairments": [{"kind": "clip", "ratio": 0.8}]})
        >>> ch.name, [st.kind for st in stages]
        ('rayleigh', ['clip'])
    """
    from diffcomm.channels import make_channel
    from diffcomm.channels.impairments import impairment

    link = {} if link is None else link
    if not isinstance(link, dict):
        raise DiffcommError(f"[link] must be a table, got {type(link).__name__}")
    unknown = sorted(set(map(str, link)) - set(LINK_KEYS))
    if unknown:
        raise DiffcommError(f"unknown [link] key {unknown[0]!r}; valid keys: {', '.join(LINK_KEYS)}")
    options = link.get("channel", {})
    if not isinstance(options, dict):
        raise DiffcommError(f"[link] channel must be a table of {channel} options, got {options!r}")
    try:
        ch = make_channel(channel, **options)
    except TypeError as exc:
        raise DiffcommError(f"[link] channel: bad option for {channel}: {exc}") from None
    stages = []
    items = link.get("impairments", [])
    if not isinstance(items, list) or not all(isinstance(d, dict) and "kind" in d for d in items):
        raise DiffcommError("[link] impairments must be a list of tables with a kind, e.g. [{kind = \"clip\", "
                            "ratio = 0.8}]")
    for d in items:
        st = impairment(str(d["kind"]), **{k: v for k, v in d.items() if k != "kind"})
        if st.side != "tx":
            raise DiffcommError(f"[link] impairments: training supports transmitter stages (clip, rapp, limiter), "
                                f"got {st.kind!r}")
        stages.append(st)
    return ch, tuple(stages)


def simulate(model: DeepJSCC, x: torch.Tensor, snr_db: torch.Tensor, channel: Any,
             generator: torch.Generator | None = None, stages: tuple = (),
             return_gain: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """End-to-end pass: encode → power normalise → [tx stages] → channel → MMSE equalise → decode.

    ``channel`` is "awgn", "rayleigh" (block fading, one h per image) or a
    :class:`diffcomm.channels.Channel` (e.g. from :func:`training_link`: OFDM, MIMO with its detector),
    always with perfect CSI; ``stages``: transmitter impairments. The decoder sees the MMSE-equalised
    symbols and the post-equalisation SNR ``SNR + 10 log10 mean |ĥ|²`` (ĥ: the per-symbol gains the
    receiver equalises with; a MIMO front end's stream gains), as the link's DeepJSCC receiver does
    (:func:`diffcomm.receivers.base.jscc_reconstruction`). Differentiable (used for training).
    ``return_gain=True`` also returns the fading gain 10 log10 mean ``|ĥ|²`` per image (B,), 0 over AWGN.
    """
    from diffcomm.channels import equalize_mmse, make_channel, normalize_power, snr_db_to_n0
    from diffcomm.channels.impairments import transmit_stages

    ch = make_channel(channel) if isinstance(channel, str) else channel
    z, _ = normalize_power(model.encode(x, snr_db))
    if stages:
        z = transmit_stages(stages, z)
    n0 = snr_db_to_n0(snr_db).reshape(-1, 1).to(z.real.dtype)
    h = ch.generate(z.shape[0], z.shape[1], generator=generator, device=z.device)
    if callable(getattr(ch, "detect", None)):                     # MIMO: raw antennas, then the front end
        y, h_rx, _ = ch.detect(ch.propagate(z, h, n0, generator), h, n0, z.shape[1])
    else:
        y, h_rx = ch.apply(z, h, n0, generator), h
    s_hat, _ = equalize_mmse(y, h_rx, n0)
    gain_db = 10 * torch.log10(h_rx.abs().pow(2).mean(1).clamp_min(1e-6)) if ch.name != "awgn" \
        else torch.zeros_like(snr_db)
    x_hat = model.decode(s_hat, snr_db + gain_db)
    return (x_hat, gain_db) if return_gain else x_hat


def build_deepjscc(config: dict[str, Any]) -> DeepJSCC:
    return DeepJSCC(DeepJSCCConfig.from_dict(config["model"]))


def init_from_zoo(model: DeepJSCC, name: str) -> None:
    """Start ``model`` from the weights of the shipped DeepJSCC ``name`` (the recipe's ``[init] model``;
    fine-tuning for a new link). The architecture must match (training channel aside); one-line error otherwise."""
    from diffcomm import zoo

    if not isinstance(name, str) or not name:
        raise DiffcommError(f"[init] model must be the name of a shipped DeepJSCC, got {name!r}")
    base = zoo.load(name)
    if not isinstance(base, DeepJSCC):
        raise DiffcommError(f"[init] model {name!r} is not a DeepJSCC ({type(base).__name__})")
    mine = {k: v for k, v in model.config.to_dict().items() if k not in ("channel",)}
    theirs = {k: v for k, v in base.config.to_dict().items() if k not in ("channel",)}
    if mine != theirs:
        differs = ", ".join(sorted(k for k in mine if mine[k] != theirs.get(k)))
        raise DiffcommError(f"[init] model {name!r} has another architecture ({differs} differ from [model])")
    model.load_state_dict(base.state_dict())


class JSCCTask:
    """MSE training over SNRs drawn uniformly from [snr_min_db, snr_max_db], over the recipe's link."""

    def __init__(self, images, test_images, cfg: DeepJSCCConfig, batch_size: int, seed: int,
                 link: dict[str, Any] | None = None, init: str | None = None):
        from diffcomm.training import seeded_init

        with seeded_init(seed):
            self.model = DeepJSCC(cfg)
        if init:
            init_from_zoo(self.model, init)
        self.cfg = cfg
        self.channel, self.stages = training_link(cfg.channel, link)
        self.images, self.test_images = images, test_images
        self.batch_size, self.seed = batch_size, seed

    def loss(self, model: DeepJSCC, step: int, generator: torch.Generator) -> torch.Tensor:
        from diffcomm.training import batch_indices

        x = self.images[batch_indices(len(self.images), self.batch_size, self.seed, step)]
        snr = self.cfg.snr_min_db + (self.cfg.snr_max_db - self.cfg.snr_min_db) * torch.rand(
            len(x), generator=generator)
        return F.mse_loss(simulate(model, x, snr, self.channel, generator, self.stages), x)

    @torch.no_grad()
    def snapshot(self, ema: DeepJSCC, step: int, out_dir: Path) -> dict[str, Any]:
        x = self.test_images[:1000]
        out = {}
        for snr in (0.0, 10.0, 20.0):
            gen = torch.Generator().manual_seed(0)
            x_hat = simulate(ema, x, torch.full((len(x),), snr), self.channel, gen, self.stages)
            mse = (x_hat - x).pow(2).flatten(1).mean(1)
            out[f"psnr_{snr:g}dB"] = float((10 * torch.log10(1 / mse.clamp_min(1e-10))).mean())
        return out


def run_jscc_training(config: dict[str, Any], out_dir: str | Path, progress: bool = True) -> dict:
    """``diffcomm train jscc --config FILE``.

    Optional tables besides ``[model]``, ``[data]`` and ``[train]``: ``[link]`` (the training channel's
    options and transmitter impairments, :func:`training_link`) and ``[init] model = "NAME"`` (start from a
    shipped DeepJSCC, :func:`init_from_zoo`).
    """
    from diffcomm.data import get_dataset
    from diffcomm.training import TrainConfig, train, validate_training_config

    validate_training_config("jscc", config)  # the one schema, before any work
    model_cfg = DeepJSCCConfig.from_dict(config.get("model", {}))
    link = config.get("link")
    training_link(model_cfg.channel, link)     # the link's options checked before any data is read
    init = config.get("init", {})
    if set(init) - {"model"}:
        raise DiffcommError(f"unknown [init] key {sorted(set(init) - {'model'})[0]!r}; valid keys: model")
    train_cfg = TrainConfig.from_dict(config.get("train", {}))
    dataset = config.get("data", {}).get("dataset", "fashion-mnist")
    x = get_dataset(dataset, "train")[0]
    xt = get_dataset(dataset, "test")[0]
    task = JSCCTask(x, xt, model_cfg, train_cfg.batch_size, train_cfg.seed, link=link, init=init.get("model"))
    run_config = {"kind": "jscc", "name": config.get("name", "deepjscc"), "model": model_cfg.to_dict(),
                  "data": {"dataset": dataset, "n_train": len(x)},
                  **({"link": link} if link else {}), **({"init": init} if init else {})}
    return train(task, train_cfg, out_dir, run_config=run_config, progress=progress)
