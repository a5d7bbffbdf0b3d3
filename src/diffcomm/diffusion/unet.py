"""A small U-Net denoiser backbone sized for CPUs.

The architecture follows the DDPM / ADM family (Ho et al. 2020; Dhariwal & Nichol 2021):
residual blocks with GroupNorm and SiLU, a sinusoidal noise-level embedding injected as
per-channel scale and shift (FiLM), self-attention at the lowest resolution, and optional class
conditioning by a learned embedding with an extra "null" class used for classifier-free guidance
(Ho & Salimans 2022). The network is the raw ``F`` of EDM; wrap it in
:class:`diffcomm.diffusion.precond.EDMDenoiser` to get ``denoiser(x, sigma) -> x0_hat``.

Example:
    >>> net = UNet(in_channels=1, base_channels=32, channel_mults=(1, 2, 2), num_classes=10)
    >>> out = net(torch.zeros(2, 1, 28, 28), torch.zeros(2), torch.tensor([3, 10]))
    >>> tuple(out.shape)
    (2, 1, 28, 28)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from diffcomm.checks import bounds, dataclass_from_dict
from diffcomm.errors import DiffcommError


@dataclass
class UNetConfig:
    """Architecture hyper-parameters (stored beside the weights as JSON).

    :meth:`from_dict` checks names, types and the ranges in each field's metadata
    (:func:`diffcomm.checks.dataclass_from_dict`).
    """

    in_channels: int = field(default=1, metadata=bounds(choices=(1, 3)))
    base_channels: int = field(default=32, metadata=bounds(1, 1024))
    channel_mults: tuple[int, ...] = field(default=(1, 2, 2), metadata=bounds(1, 64))
    num_res_blocks: int = field(default=1, metadata=bounds(1, 64))
    attention_levels: tuple[int, ...] = field(default=(2,), metadata=bounds(0, 64))
    num_classes: int = field(default=0, metadata=bounds(0, 100_000))  # 0 = unconditional; else num_classes = null
    dropout: float = field(default=0.0, metadata=bounds(0, 1, high_open=True))
    emb_dim: int = field(default=128, metadata=bounds(1, 16384))

    def __post_init__(self) -> None:
        self.channel_mults = tuple(self.channel_mults)
        self.attention_levels = tuple(self.attention_levels)
        if not self.channel_mults:
            raise DiffcommError("[model] channel_mults must list at least one multiplier")
        bad = [level for level in self.attention_levels if not 0 <= level < len(self.channel_mults)]
        if bad:
            raise DiffcommError(f"[model] attention_levels {bad} are not levels of channel_mults "
                                f"(0..{len(self.channel_mults) - 1})")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channel_mults"] = list(self.channel_mults)
        d["attention_levels"] = list(self.attention_levels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        return dataclass_from_dict(cls, d, "[model]")


def _groups(channels: int) -> int:
    for g in (8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style sinusoidal embedding of a real scalar per sample (Vaswani et al. 2017).

    float32, or float64 for a float64 ``t`` (a model converted with ``.double()``, e.g. for reference solutions).
    """
    half = dim // 2
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=dtype) / half)
    args = t.to(dtype)[:, None] * freqs[None] * 1000.0 / 4.0
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, ch: int, heads: int = 4):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """U-Net ``F(x, c_noise, class_labels)``; see the module docstring."""

    def __init__(self, config: UNetConfig | None = None, **kwargs):
        super().__init__()
        cfg = config or UNetConfig(**kwargs)
        self.config = cfg
        ch = cfg.base_channels
        self.emb_mlp = nn.Sequential(nn.Linear(cfg.emb_dim, cfg.emb_dim), nn.SiLU(),
                                     nn.Linear(cfg.emb_dim, cfg.emb_dim))
        self.class_emb = nn.Embedding(cfg.num_classes + 1, cfg.emb_dim) if cfg.num_classes else None
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        self.down = nn.ModuleList()
        skip_channels = [ch]
        cur = ch
        for level, mult in enumerate(cfg.channel_mults):
            out = cfg.base_channels * mult
            for _ in range(cfg.num_res_blocks):
                blocks = nn.ModuleList([ResBlock(cur, out, cfg.emb_dim, cfg.dropout)])
                if level in cfg.attention_levels:
                    blocks.append(Attention(out))
                self.down.append(blocks)
                cur = out
                skip_channels.append(cur)
            if level < len(cfg.channel_mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(cur, cur, 3, stride=2, padding=1)]))
                skip_channels.append(cur)

        self.mid1 = ResBlock(cur, cur, cfg.emb_dim, cfg.dropout)
        self.mid_attn = Attention(cur)
        self.mid2 = ResBlock(cur, cur, cfg.emb_dim, cfg.dropout)

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mults))):
            out = cfg.base_channels * mult
            for _ in range(cfg.num_res_blocks + 1):
                blocks = nn.ModuleList([ResBlock(cur + skip_channels.pop(), out, cfg.emb_dim, cfg.dropout)])
                if level in cfg.attention_levels:
                    blocks.append(Attention(out))
                self.up.append(blocks)
                cur = out
            if level > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"),
                                              nn.Conv2d(cur, cur, 3, padding=1)]))
        self.norm_out = nn.GroupNorm(_groups(cur), cur)
        self.conv_out = nn.Conv2d(cur, cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor,
                class_labels: torch.Tensor | None = None, emb_extra: torch.Tensor | None = None) -> torch.Tensor:
        """``emb_extra`` (B, emb_dim): an extra conditioning embedding added to the noise-level one
        (:mod:`diffcomm.diffusion.conditional` feeds the channel SNR and fading gain through it)."""
        emb = self.emb_mlp(sinusoidal_embedding(c_noise.reshape(-1).expand(x.shape[0]), self.config.emb_dim))
        if emb_extra is not None:
            emb = emb + emb_extra
        if self.class_emb is not None:
            if class_labels is None:  # unconditional use of a conditional net: the null class
                class_labels = torch.full((x.shape[0],), self.config.num_classes, dtype=torch.long,
                                          device=x.device)
            emb = emb + self.class_emb(class_labels.long())
        cache = getattr(self, "deep_cache", None)  # set only inside diffcomm.diffusion.deepcache.DeepCachePrior calls
        shallow = self.config.num_res_blocks  # the level-0 down blocks (after conv_in)
        top = self.config.num_res_blocks + 1  # the level-0 up blocks, at the end of self.up
        h = self.conv_in(x)
        skips = [h]
        for i, blocks in enumerate(self.down):
            if cache is not None and cache.reuse and i >= shallow:
                break  # DeepCache: the deeper path is replaced by the cached feature below
            h = self._block(blocks, h, emb)
            skips.append(h)
        if cache is not None and cache.reuse:
            h = cache.feature
            up = self.up[len(self.up) - top:]
        else:
            h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
            up = self.up
        for j, blocks in enumerate(up):
            if cache is not None and not cache.reuse and j == len(up) - top:
                cache.feature = h.detach()  # the deep feature entering the level-0 up blocks
            if isinstance(blocks[0], ResBlock):
                h = self._block(blocks, torch.cat([h, skips.pop()], dim=1), emb)
            else:
                h = blocks[1](blocks[0](h))
        return self.conv_out(F.silu(self.norm_out(h)))

    @staticmethod
    def _block(blocks: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """A down/up entry: a ResBlock (+ attention) or a resampling layer."""
        if isinstance(blocks[0], ResBlock):
            h = blocks[0](h, emb)
            for extra in blocks[1:]:
                h = extra(h)
            return h
        return blocks[0](h)
