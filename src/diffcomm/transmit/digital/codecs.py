"""Image codecs for the digital separation baseline (Pillow and pillow-heif; nothing hand-written).

Codecs and the meaning of their ``quality`` parameter (higher always means more bytes):

=============  ==========================================  ==================================
name           library call                                 ``quality``
=============  ==========================================  ==================================
``jpeg``       Pillow ``JPEG`` (baseline, libjpeg)          Pillow quality, 1..95
``webp``       Pillow ``WEBP`` (lossy VP8, libwebp)         0..100
``jpeg2000``   Pillow ``JPEG2000`` (OpenJPEG)               percent of the raw size:
                                                            ``quality_mode="rates"``,
                                                            compression ratio ``100 / quality``
``avif``       Pillow ``AVIF`` (AV1 intra, libavif)         0..100
``hevc``       pillow-heif HEIF (HEVC intra, x265), the     0..100
               nearest available thing to BPG
=============  ==========================================  ==================================

Grayscale images are coded as 8-bit ``L`` images, RGB as ``RGB``; pixels are quantised to 8 bits
(``round(255 x)``) before coding.

Packing small images: a 28×28 image at CBR 1/16 has 49 channel uses (at most ~300 coded bits),
while a single-image JPEG/AVIF/HEIF file needs hundreds of bytes of headers alone. Two packings
are supported and every result records which one was used:

* ``"mosaic"`` (default): up to ``images_per_unit`` images are tiled row-major into ONE mosaic
  image (``cols = ceil(sqrt(n))``, unused tiles black) and coded as one bitstream; headers are
  paid once per mosaic and the mosaic's symbol budget is the sum of its images' budgets. A
  transmission error loses the whole mosaic.
* ``"per-image"``: every image is its own bitstream, all headers counted.

Decoding never raises: any decoder exception, or a decoded image of the wrong size, gives
the caller's *fallback* image and ``ok=False``.

Example:
    >>> x = torch.rand(4, 1, 28, 28)
    >>> units = encode_batch(x, "jpeg", 50, packing="mosaic")
    >>> len(units), units[0].indices
    (1, (0, 1, 2, 3))
    >>> x_hat, ok = decode_batch(units, x.shape, fallback=0.5)
    >>> x_hat.shape, bool(ok.all())
    (torch.Size([4, 1, 28, 28]), True)

References: ITU-T T.81 (JPEG); ISO/IEC 15444-1 (JPEG 2000); WebP (Google, VP8 intra);
AV1 Image File Format (AOMedia); ISO/IEC 23008-12 HEIF with ITU-T H.265 intra (as in BPG).
"""

from __future__ import annotations

import functools
import io
import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image

from diffcomm.errors import DiffcommError

CodecName = Literal["jpeg", "webp", "jpeg2000", "avif", "hevc"]
Packing = Literal["mosaic", "per-image"]

CODECS: tuple[str, ...] = ("jpeg", "webp", "jpeg2000", "avif", "hevc")

#: Default quality grids searched by :func:`diffcomm.transmit.digital.system.best_config`.
QUALITY_GRIDS: dict[str, tuple[float, ...]] = {
    "jpeg": (1, 2, 3, 5, 8, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95),
    "webp": (0, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 100),
    # roughly geometric (x1.25) at the low rates that matter for tiny budgets
    "jpeg2000": (0.1, 0.125, 0.16, 0.2, 0.25, 0.32, 0.4, 0.5, 0.63, 0.8, 1, 1.25, 1.6, 2, 2.5, 3.2, 4, 5, 6.3,
                 8, 10, 15, 25, 50),
    "avif": (0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 25, 30, 40, 50, 60, 70, 80, 90),
    "hevc": (*range(0, 21), 25, 30, 40, 50, 60, 70, 80, 90),
}

_QUALITY_RANGE: dict[str, tuple[float, float]] = {
    "jpeg": (1, 95), "webp": (0, 100), "jpeg2000": (0.01, 100), "avif": (0, 100), "hevc": (0, 100),
}

_PIL_FORMAT = {"jpeg": "JPEG", "webp": "WEBP", "jpeg2000": "JPEG2000", "avif": "AVIF"}

PACKING_DESCRIPTIONS: dict[str, str] = {
    "mosaic": "mosaic: images tiled into one bitstream per unit, headers paid once per unit, "
              "budget = sum of the unit's per-image budgets",
    "per-image": "per-image, headers counted",
}


def check_quality(codec: str, quality: float) -> None:
    """Raise :class:`DiffcommError` if ``quality`` is outside the codec's range."""
    lo, hi = _QUALITY_RANGE[codec]
    if not (isinstance(quality, (int, float)) and math.isfinite(quality) and lo <= quality <= hi):
        raise DiffcommError(f"quality {quality!r} is outside [{lo}, {hi}] for codec {codec!r}; "
                            "pick a value in that range")


def _encode_pil(img: Image.Image, codec: str, quality: float) -> bytes:
    buf = io.BytesIO()
    if codec == "hevc":
        import pillow_heif

        pillow_heif.from_pillow(img).save(buf, quality=int(round(quality)))
    elif codec == "jpeg2000":
        img.save(buf, "JPEG2000", quality_mode="rates", quality_layers=[100.0 / float(quality)])
    elif codec == "jpeg":
        img.save(buf, "JPEG", quality=int(round(quality)))
    else:
        img.save(buf, _PIL_FORMAT[codec], quality=int(round(quality)))
    return buf.getvalue()


def _decode_pil(data: bytes, codec: str, size: tuple[int, int], mode: str) -> Image.Image:
    """Decode; raises on anything unexpected (the caller turns that into the fallback)."""
    if codec == "hevc":
        import pillow_heif

        heif = pillow_heif.open_heif(data, convert_hdr_to_8bit=True)
        if tuple(heif.size) != size:
            raise ValueError(f"decoded size {heif.size} != expected {size}")
        img = heif.to_pillow()
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[codec]])
            if img.size != size:  # checked before the pixels are decoded
                raise ValueError(f"decoded size {img.size} != expected {size}")
            img.load()
    if img.size != size:
        raise ValueError(f"decoded size {img.size} != expected {size}")
    return img.convert(mode)


@functools.cache
def _probe(codec: str) -> str | None:
    """None if ``codec`` encodes and decodes a test image on this machine, else the reason."""
    try:
        arr = (np.arange(32 * 32, dtype=np.int64).reshape(32, 32) * 7 % 256).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
        data = _encode_pil(img, codec, QUALITY_GRIDS[codec][len(QUALITY_GRIDS[codec]) // 2])
        out = _decode_pil(data, codec, img.size, "L")
        if out.size != img.size:
            return "round trip returned the wrong size"
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return f"{type(exc).__name__}: {exc}".splitlines()[0]


def unavailable_codecs() -> dict[str, str]:
    """Codecs that do not work on this machine, with the reason (probe: encode + decode 32×32)."""
    return {c: r for c in CODECS if (r := _probe(c)) is not None}


def available_codecs() -> list[str]:
    """Names of the codecs that encode and decode on this machine, in :data:`CODECS` order.

    >>> "jpeg" in available_codecs()
    True
    """
    return [c for c in CODECS if _probe(c) is None]


def check_codec(codec: str) -> None:
    """Raise :class:`DiffcommError` if ``codec`` is unknown or unavailable here (never substitute)."""
    if codec not in CODECS:
        raise DiffcommError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
    reason = _probe(codec)
    if reason is not None:
        raise DiffcommError(f"codec {codec!r} is not available on this machine ({reason}); "
                            f"install its library or choose one of {', '.join(available_codecs())}")


# ---------------------------------------------------------------------------------------------
# tensors <-> PIL images, mosaics


def _to_pil(img: torch.Tensor) -> Image.Image:
    """(C, H, W) float in [0, 1] -> 8-bit PIL image (``L`` or ``RGB``)."""
    arr = (img.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    if arr.shape[0] == 1:
        return Image.fromarray(arr[0], mode="L")
    return Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)), mode="RGB")


def _from_pil(img: Image.Image, channels: int) -> torch.Tensor:
    arr = np.asarray(img, dtype=np.uint8)
    t = torch.from_numpy(arr.copy()).float() / 255.0
    return t.unsqueeze(0) if channels == 1 else t.permute(2, 0, 1).contiguous()


def mosaic_grid(n: int) -> tuple[int, int]:
    """(rows, cols) of the mosaic for ``n`` tiles: ``cols = ceil(sqrt(n))``, ``rows = ceil(n / cols)``."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / cols), cols


def make_mosaic(x: torch.Tensor) -> torch.Tensor:
    """Tile ``(n, C, H, W)`` row-major into ``(C, rows*H, cols*W)``; unused tiles are 0 (black)."""
    n, c, h, w = x.shape
    rows, cols = mosaic_grid(n)
    out = torch.zeros(c, rows * h, cols * w, dtype=x.dtype)
    for i in range(n):
        r, q = divmod(i, cols)
        out[:, r * h:(r + 1) * h, q * w:(q + 1) * w] = x[i]
    return out


def split_mosaic(m: torch.Tensor, n: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`make_mosaic`: ``(C, rows*H, cols*W)`` -> ``(n, C, H, W)``."""
    _, cols = mosaic_grid(n)
    tiles = []
    for i in range(n):
        r, q = divmod(i, cols)
        tiles.append(m[:, r * h:(r + 1) * h, q * w:(q + 1) * w])
    return torch.stack(tiles)


# ---------------------------------------------------------------------------------------------
# batch encode / decode


@dataclass(frozen=True)
class EncodedUnit:
    """One codec bitstream: the images ``indices`` of the batch, coded together."""

    codec: str
    quality: float
    indices: tuple[int, ...]
    data: bytes
    packing: str

    @property
    def n_bytes(self) -> int:
        return len(self.data)


def _check_batch(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] not in (1, 3):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise DiffcommError(f"images must be a (B, C, H, W) tensor with C = 1 or 3, got {shape}")
    if x.shape[0] == 0:
        raise DiffcommError("images is an empty batch; pass at least one image")


def unit_indices(batch: int, packing: str, images_per_unit: int = 256) -> list[tuple[int, ...]]:
    """How a batch of ``batch`` images is split into coded units.

    >>> unit_indices(5, "mosaic", images_per_unit=2)
    [(0, 1), (2, 3), (4,)]
    """
    if packing == "per-image":
        return [(i,) for i in range(batch)]
    if packing != "mosaic":
        raise DiffcommError(f"unknown packing {packing!r}; use 'mosaic' or 'per-image'")
    if images_per_unit < 1:
        raise DiffcommError(f"images_per_unit must be >= 1, got {images_per_unit}")
    return [tuple(range(s, min(s + images_per_unit, batch))) for s in range(0, batch, images_per_unit)]


def encode_unit(x: torch.Tensor, codec: str, quality: float) -> bytes:
    """Code ``(n, C, H, W)`` images as one bitstream (a mosaic when ``n > 1``)."""
    img = x[0] if x.shape[0] == 1 else make_mosaic(x)
    return _encode_pil(_to_pil(img), codec, quality)


def decode_unit(data: bytes, codec: str, n: int, shape: tuple[int, int, int]) -> torch.Tensor | None:
    """Decode one unit's bitstream into ``(n, C, H, W)``, or ``None`` if it cannot be decoded.

    Never raises: every decoder exception is caught.
    """
    c, h, w = shape
    rows, cols = mosaic_grid(n)
    size = (cols * w, rows * h)
    try:
        img = _decode_pil(data, codec, size, "L" if c == 1 else "RGB")
        return split_mosaic(_from_pil(img, c), n, h, w)
    except Exception:  # noqa: BLE001 - corrupted input must never crash the receiver
        return None


def encode_batch(x: torch.Tensor, codec: str, quality: float, packing: str = "mosaic",
                 images_per_unit: int = 256) -> list[EncodedUnit]:
    """Code a batch of images (pixels in [0, 1], ``(B, C, H, W)``) into units (see module doc)."""
    _check_batch(x)
    check_codec(codec)
    check_quality(codec, quality)
    units = []
    for idx in unit_indices(x.shape[0], packing, images_per_unit):
        data = encode_unit(x[list(idx)], codec, quality)
        units.append(EncodedUnit(codec, float(quality), idx, data, packing))
    return units


def fallback_images(fallback: float | torch.Tensor, n: int, shape: tuple[int, int, int]) -> torch.Tensor:
    """``n`` copies of the fallback image: a grey level in [0, 1] or a ``(C, H, W)`` image."""
    if isinstance(fallback, torch.Tensor):
        if tuple(fallback.shape) != tuple(shape):
            raise DiffcommError(f"fallback image has shape {tuple(fallback.shape)}, expected {tuple(shape)}")
        return fallback.float().clamp(0, 1).expand(n, *shape).clone()
    if not (0.0 <= float(fallback) <= 1.0):
        raise DiffcommError(f"fallback grey level must be in [0, 1], got {fallback}")
    return torch.full((n, *shape), float(fallback))


def decode_batch(units: list[EncodedUnit], shape: tuple[int, int, int, int],
                 fallback: float | torch.Tensor = 0.5,
                 payloads: list[bytes | None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode units back into a ``(B, C, H, W)`` batch.

    ``payloads`` (optional) replaces each unit's bytes with what the receiver got (``None`` = lost).
    A unit that is lost or fails to decode yields the fallback image for all its images.
    Returns ``(x_hat, ok)``, ``ok`` a bool tensor ``(B,)``.
    """
    b, c, h, w = shape
    x_hat = fallback_images(fallback, b, (c, h, w))
    ok = torch.zeros(b, dtype=torch.bool)
    for i, u in enumerate(units):
        data = u.data if payloads is None else payloads[i]
        if data is None:
            continue
        dec = decode_unit(data, u.codec, len(u.indices), (c, h, w))
        if dec is not None:
            x_hat[list(u.indices)] = dec
            ok[list(u.indices)] = True
    return x_hat, ok
