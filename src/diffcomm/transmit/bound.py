"""Ideal separation bound: the best codec stream that a capacity-achieving channel code could carry.

For each coded unit (a mosaic of images, or one image: same packing as the digital baseline,
:mod:`diffcomm.transmit.digital.codecs`) with a budget of ``K = n_images · k`` channel uses, the
transmitter picks the (codec, quality) whose bitstream of ``8·bytes`` bits (headers included, no
framing or CRC) fits what the channel can carry:

* AWGN: ``K · log2(1 + SNR)`` bits (Shannon capacity with Gaussian inputs).
* Fading with receiver CSI and **no transmitter CSI** (``variant="outage"``, default): the stream
  of b bits arrives iff the mutual information of this realisation,
  ``Σ_j log2(1 + |h_j|² SNR)`` over the unit's K symbols, is ≥ b; otherwise the unit is lost
  and its images are the fallback. The transmitter does not know h, so it picks the quality
  that maximises the *expected* PSNR ``P(arrive)·PSNR + (1 − P(arrive))·PSNR_fallback``,
  with ``P`` estimated from ``n_draws`` channel draws (the same draws for every candidate). The
  gains are laid out like the digital system's: ``channel.sample_gains(n_images, k)``, one
  coherence block per image slot for block fading, so a mosaic of many images averages over
  many blocks (close to the ergodic value) while one image per unit sees one block (outage).
* ``variant="ergodic"``: capacity ``K · E[log2(1 + |h|² SNR)]`` (coding over infinitely many
  fades), estimated from the same draws; AWGN gives the same as ``"outage"``.

The PSNR/SSIM of a delivered stream are those of the clean decode. This bounds every separate
source-channel scheme that uses these codecs (finite-length coding loses more; see
Polyanskiy, Poor & Verdú, IEEE T-IT 2010), not joint source-channel schemes.

Example:
    >>> x = torch.rand(16, 1, 28, 28)
    >>> r = ideal_bound(x, 1 / 16, 20.0, "awgn", codecs=["jpeg"])
    >>> r.psnr == r.fallback_psnr  # 16 x 49 x 6.66 bits cannot carry a JPEG mosaic of noise
    True

References: Shannon 1948 (capacity, separation); Ozarow, Shamai & Wyner, IEEE T-VT 1994
(outage capacity of block fading); Tse & Viswanath, Fundamentals of Wireless Communication, ch. 5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffcomm.channels import snr_db_to_n0
from diffcomm.errors import DiffcommError
from diffcomm.transmit.digital.system import channel_name, resolve_channel, symbols_per_image
from diffcomm.transmit.digital.table import CodecTable, build_codec_table

VARIANTS = ("outage", "ergodic")


@dataclass
class BoundResult:
    """Ideal-bound metrics at one SNR: means over images (and channel draws)."""

    snr_db: float
    channel: str
    variant: str
    psnr: float
    ssim: float
    psnr_per_image: torch.Tensor
    ssim_per_image: torch.Tensor
    arrive_prob: float
    fallback_psnr: float
    units: list[dict]
    note: str

    def describe(self) -> dict:
        return {"snr_db": self.snr_db, "channel": self.channel, "variant": self.variant, "psnr": self.psnr,
                "ssim": self.ssim, "arrive_prob": self.arrive_prob, "fallback_psnr": self.fallback_psnr,
                "units": self.units, "note": self.note}


def unit_capacity_bits(channel, n_images: int, k_image: int, snr_db: float, n_draws: int,
                       generator: torch.Generator | None, variant: str = "outage") -> torch.Tensor:
    """Bits a unit of ``n_images`` images (``k_image`` symbols each) can carry, per channel draw.

    Returns ``(n_draws,)`` for ``"outage"`` (mutual information of each draw) or ``(1,)`` for
    ``"ergodic"`` (mean over the draws), in bits.
    """
    snr = 1.0 / float(snr_db_to_n0(float(snr_db)))
    h = torch.stack([channel.sample_gains(n_images, k_image, generator).reshape(-1) for _ in range(n_draws)])
    info = torch.log2(1.0 + h.abs().square().double() * snr)  # (draws, K)
    if variant == "outage":
        return info.sum(1)
    return info.sum(1).mean().reshape(1)


def ideal_bound(images: torch.Tensor, cbr: float, snr_db: float, channel, *, variant: str = "outage",
                codecs: list[str] | None = None, qualities: dict[str, tuple[float, ...]] | None = None,
                packing: str = "mosaic", images_per_unit: int = 256, fallback: float | torch.Tensor = 0.5,
                n_draws: int = 256, generator: torch.Generator | None = None,
                table: CodecTable | None = None) -> BoundResult:
    """Ideal separation bound at ``snr_db`` (see module doc). AWGN needs no draws (one is used)."""
    if variant not in VARIANTS:
        raise DiffcommError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if table is None:
        table = build_codec_table(images, codecs, qualities, packing, images_per_unit, fallback)
    channel = resolve_channel(channel)
    k_img = symbols_per_image(cbr, table.shape)
    if k_img is None:
        raise DiffcommError("ideal_bound needs a cbr (symbol budget); e.g. cbr=1/16")
    draws = 1 if channel_name(channel) == "awgn" else int(n_draws)
    if draws < 1:
        raise DiffcommError(f"n_draws must be >= 1, got {n_draws}")
    psnr_img = table.fallback_psnr.clone()
    ssim_img = table.fallback_ssim.clone()
    units, arrive = [], []
    cap_cache: dict[int, torch.Tensor] = {}
    for u, idx in enumerate(table.units):
        n = len(idx)
        if n not in cap_cache:
            cap_cache[n] = unit_capacity_bits(channel, n, k_img, snr_db, draws, generator, variant)
        cap = cap_cache[n]
        sel = list(idx)
        best = (table.fallback_psnr[sel].mean().item(), None, 0.0)
        for e in table.entries:
            p = (cap >= 8 * e.n_bytes[u]).double().mean().item()
            if p == 0.0:
                continue
            exp = p * e.psnr[sel].mean().item() + (1 - p) * table.fallback_psnr[sel].mean().item()
            if exp > best[0]:
                best = (exp, e, p)
        _, e, p = best
        if e is None:
            units.append({"n_images": n, "codec": None, "quality": None, "bytes": 0, "arrive_prob": 0.0,
                          "capacity_bits_mean": cap.mean().item()})
            arrive += [0.0] * n
            continue
        psnr_img[sel] = p * e.psnr[sel] + (1 - p) * table.fallback_psnr[sel]
        ssim_img[sel] = p * e.ssim[sel] + (1 - p) * table.fallback_ssim[sel]
        units.append({"n_images": n, "codec": e.codec, "quality": e.quality, "bytes": e.n_bytes[u],
                      "arrive_prob": p, "capacity_bits_mean": cap.mean().item()})
        arrive += [p] * n
    nothing = all(u["codec"] is None for u in units)
    note = (f"{variant} bound over {draws} channel draw(s); {table.describe()['packing']}"
            + ("; nothing fits: every stream is larger than the capacity, fallback for all" if nothing else ""))
    return BoundResult(float(snr_db), channel_name(channel), variant, psnr_img.mean().item(), ssim_img.mean().item(),
                       psnr_img, ssim_img, float(sum(arrive) / len(arrive)), table.fallback_psnr.mean().item(),
                       units, note)
