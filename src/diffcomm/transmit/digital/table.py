"""Rate–distortion table of a batch under every (codec, quality): bytes per unit, PSNR/SSIM per image.

Coding is deterministic, so the configuration search (:func:`~diffcomm.transmit.digital.system.best_config`)
and the ideal bound (:mod:`diffcomm.transmit.bound`) code each unit once per (codec, quality) and
then only ask "does it fit / does it arrive". Codecs missing on this machine are skipped *and
reported* in :attr:`CodecTable.skipped` when the caller did not name them; a named missing codec
raises :class:`~diffcomm.errors.DiffcommError`.

Example:
    >>> x = torch.rand(4, 1, 28, 28)
    >>> t = build_codec_table(x, codecs=["jpeg"], qualities={"jpeg": (10, 90)})
    >>> [e.quality for e in t.entries], len(t.entries[0].n_bytes)
    ([10.0, 90.0], 1)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from diffcomm.errors import DiffcommError
from diffcomm.transmit.digital.codecs import (
    CODECS,
    PACKING_DESCRIPTIONS,
    QUALITY_GRIDS,
    check_codec,
    check_quality,
    decode_unit,
    encode_unit,
    fallback_images,
    unavailable_codecs,
    unit_indices,
)


def psnr_per_image(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image, peak 1 (:func:`diffcomm.metrics.psnr`, capped at 100 dB)."""
    from diffcomm.metrics.fidelity import psnr

    return psnr(x_hat.float(), x.float())


def ssim_per_image(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """SSIM per image (Wang et al. 2004) via :func:`diffcomm.metrics.ssim` (Gaussian 11, sigma 1.5)."""
    from diffcomm.metrics.fidelity import ssim

    return ssim(x_hat.float(), x.float())


def check_images(x: torch.Tensor) -> None:
    """Pixels convention: float (B, C, H, W), C in {1, 3}, finite values in [0, 1]."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] not in (1, 3) or x.shape[0] == 0:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise DiffcommError(f"images must be a non-empty (B, C, H, W) tensor with C = 1 or 3, got {shape}")
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise DiffcommError("images must be finite pixels in [0, 1]; rescale them first (e.g. x / 255)")


@dataclass
class TableEntry:
    """One (codec, quality): ``n_bytes[u]`` per unit; ``psnr``/``ssim`` per image when decoded clean."""

    codec: str
    quality: float
    n_bytes: list[int]
    psnr: torch.Tensor
    ssim: torch.Tensor


@dataclass
class CodecTable:
    """Codec rate–distortion table of one image batch (see module doc)."""

    shape: tuple[int, int, int]
    n_images: int
    packing: str
    images_per_unit: int
    units: list[tuple[int, ...]]
    entries: list[TableEntry]
    fallback_psnr: torch.Tensor
    fallback_ssim: torch.Tensor
    fallback: str
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def unit_of_image(self) -> torch.Tensor:
        """Index of the unit each image belongs to, ``(B,)`` long."""
        out = torch.empty(self.n_images, dtype=torch.long)
        for u, idx in enumerate(self.units):
            out[list(idx)] = u
        return out

    @property
    def unit_sizes(self) -> list[int]:
        return [len(u) for u in self.units]

    def describe(self) -> dict:
        return {"packing": PACKING_DESCRIPTIONS[self.packing], "images_per_unit": self.images_per_unit,
                "n_units": len(self.units), "fallback": self.fallback, "skipped_codecs": dict(self.skipped),
                "codecs": sorted({e.codec for e in self.entries})}


def describe_fallback(fallback: float | torch.Tensor) -> str:
    if isinstance(fallback, torch.Tensor):
        return "given (C, H, W) image"
    return f"constant grey {float(fallback):g}"


def resolve_codecs(codecs: list[str] | tuple[str, ...] | None) -> tuple[list[str], dict[str, str]]:
    """Named codecs must all exist (else DiffcommError); ``None`` = all available, missing reported."""
    if codecs is None:
        skipped = unavailable_codecs()
        return [c for c in CODECS if c not in skipped], skipped
    for c in codecs:
        check_codec(c)
    return list(codecs), {}


def build_codec_table(images: torch.Tensor, codecs: list[str] | tuple[str, ...] | None = None,
                      qualities: dict[str, tuple[float, ...]] | None = None, packing: str = "mosaic",
                      images_per_unit: int = 256, fallback: float | torch.Tensor = 0.5) -> CodecTable:
    """Code every unit of ``images`` at every (codec, quality) and measure the clean decode.

    An entry whose bitstream does not decode (should not happen for a clean stream) gets the
    fallback metrics for that unit's images.
    """
    check_images(images)
    names, skipped = resolve_codecs(codecs)
    if not names:
        raise DiffcommError("no image codec is available on this machine; install Pillow with JPEG support")
    b, c, h, w = images.shape
    units = unit_indices(b, packing, images_per_unit)
    fb = fallback_images(fallback, b, (c, h, w))
    fb_psnr, fb_ssim = psnr_per_image(fb, images), ssim_per_image(fb, images)
    entries = []
    for codec in names:
        grid = (qualities or {}).get(codec, QUALITY_GRIDS[codec])
        for q in grid:
            check_quality(codec, q)
            x_hat = fb.clone()
            sizes = []
            for idx in units:
                data = encode_unit(images[list(idx)], codec, q)
                sizes.append(len(data))
                dec = decode_unit(data, codec, len(idx), (c, h, w))
                if dec is not None:
                    x_hat[list(idx)] = dec
            entries.append(TableEntry(codec, float(q), sizes, psnr_per_image(x_hat, images),
                                      ssim_per_image(x_hat, images)))
    return CodecTable((c, h, w), b, packing, images_per_unit, units, entries, fb_psnr, fb_ssim,
                      describe_fallback(fallback), skipped)
