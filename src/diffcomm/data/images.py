"""Image files <-> pixel tensors, and image grids.

Pixels follow the package convention: float32 in [0, 1], shape ``(B, C, H, W)`` with C = 1
(grayscale) or 3 (RGB). Decoding and encoding are Pillow's (any format Pillow reads; HEIF/HEIC
too when ``pillow-heif`` is installed). Writes are atomic (temp file + rename).

Example:
    >>> import torch, tempfile, os
    >>> x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> path = os.path.join(tempfile.mkdtemp(), "x.png")
    >>> write_image(path, x)
    >>> y = read_image(path)
    >>> bool((y - x).abs().max() <= 0.5 / 255 + 1e-6)
    True
"""

from __future__ import annotations

import io
import math
import os
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from diffcomm.errors import DiffcommError
from diffcomm.utils import atomic_write_bytes

_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_heif_registered = False


def _register_heif() -> None:
    """Let Pillow open HEIF/HEIC files when pillow-heif is installed (optional)."""
    global _heif_registered
    if _heif_registered:
        return
    _heif_registered = True
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return
    register_heif_opener()


def pil_to_tensor(image: Image.Image, mode: str | None = None) -> torch.Tensor:
    """A Pillow image as a ``(1, C, H, W)`` float32 tensor in [0, 1].

    ``mode``: ``"L"`` (1 channel), ``"RGB"`` (3 channels), or ``None`` to keep grayscale images
    grayscale and turn everything else (palette, RGBA, CMYK, ...) into RGB. 16-bit grayscale
    images keep their precision (divided by 65535).
    """
    if mode not in (None, "L", "RGB"):
        raise DiffcommError(f"image mode must be 'L', 'RGB' or None, got {mode!r}")
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I") and mode != "RGB":
        arr = np.asarray(image, dtype=np.float64)
        if arr.min() < 0 or arr.max() > 65535:
            raise DiffcommError(f"{image.mode} image has values outside [0, 65535]; convert it to 8 or 16 bit")
        arr = (arr / 65535.0).astype(np.float32)[None]
    else:
        if mode is None:
            mode = "L" if image.mode in _GRAY_MODES else "RGB"
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            # Composite on white rather than dropping alpha (fully transparent pixels are often black).
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        try:
            converted = image.convert(mode)
        except (ValueError, OSError) as exc:
            raise DiffcommError(f"cannot convert a {image.mode} image to {mode} ({exc}); save it as RGB or "
                                f"grayscale") from None
        arr = np.asarray(converted, dtype=np.uint8)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        arr = arr.astype(np.float32) / np.float32(255.0)
    return torch.from_numpy(np.ascontiguousarray(arr))[None]


# Largest image decoded (pixels): Pillow's own decompression-bomb limit (about 89 M pixels) is
# an error from twice that; here a warning is an error too, so no image larger than this is decoded.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image with Pillow; unreadable files raise a one-line DiffcommError.

    Refused: missing files, files Pillow cannot identify, corrupt or truncated files, and images
    of more than :data:`MAX_PIXELS` pixels (decompression bombs: a small file that decodes to
    gigabytes), which are refused from their header, before decoding.
    """
    import warnings

    _register_heif()
    path = Path(path)
    if not path.is_file():
        raise DiffcommError(f"image file {path} does not exist; check the path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise Image.DecompressionBombError(f"{w}x{h}")
                im.load()
                return im
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DiffcommError(f"{path} is too large to decode (more than {MAX_PIXELS:,} pixels; a possible "
                            f"decompression bomb); resize it first") from None
    except UnidentifiedImageError:
        raise DiffcommError(f"{path} is not an image Pillow can read; pass a PNG, JPEG, WebP, ... file") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, MemoryError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DiffcommError(f"{path} is a corrupt or truncated image ({reason}); re-create the file") from None


def read_image(path: str | os.PathLike, mode: str | None = None) -> torch.Tensor:
    """Read an image file as a ``(1, C, H, W)`` float32 tensor in [0, 1].

    ``mode``: ``"L"``, ``"RGB"`` or ``None`` (keep grayscale, else RGB); see :func:`pil_to_tensor`.
    """
    return pil_to_tensor(open_image(path), mode)


def check_pixels(x: torch.Tensor, what: str = "images") -> torch.Tensor:
    """Validate pixels: a finite (B, C, H, W) or (C, H, W) tensor, C in {1, 3}, values in [0, 1].

    Returns the tensor as 4-D float32 on the CPU.
    """
    if not isinstance(x, torch.Tensor):
        raise DiffcommError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[1] not in (1, 3) or x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise DiffcommError(f"{what} must be (B, C, H, W) or (C, H, W) with C = 1 or 3, got shape "
                            f"{tuple(x.shape)}")
    if x.is_complex():
        raise DiffcommError(f"{what} must be real pixels, got a complex tensor")
    x = x.detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all():
        raise DiffcommError(f"{what} contain NaN or infinite values; fix the model output before saving")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise DiffcommError(f"{what} must be in [0, 1] but range over [{lo:.4g}, {hi:.4g}]; "
                            f"clamp or rescale them (e.g. (x + 1) / 2 for [-1, 1] data)")
    return x.clamp(0, 1)


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """One image ``(1, C, H, W)`` or ``(C, H, W)`` in [0, 1] as an 8-bit Pillow image (L or RGB)."""
    x = check_pixels(x, "image")
    if x.shape[0] != 1:
        raise DiffcommError(f"expected one image, got a batch of {x.shape[0]}; use save_grid or index it")
    arr = (x[0] * 255.0).round().to(torch.uint8).numpy()
    if arr.shape[0] == 1:
        return Image.fromarray(arr[0])
    return Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)))


def encode_image(x: torch.Tensor, fmt: str, **options) -> bytes:
    """Encode one image with Pillow into ``fmt`` (``"PNG"``, ``"JPEG"``, ``"WEBP"``, ...) bytes."""
    buf = io.BytesIO()
    try:
        tensor_to_pil(x).save(buf, format=fmt, **options)
    except KeyError:
        raise DiffcommError(f"Pillow cannot write format {fmt!r}; use PNG, JPEG, WEBP, TIFF or BMP") from None
    except (OSError, ValueError) as exc:
        raise DiffcommError(f"Pillow could not encode the image as {fmt}: {exc}") from None
    return buf.getvalue()


def write_image(path: str | os.PathLike, x: torch.Tensor, **options) -> None:
    """Write one image ``(1, C, H, W)`` or ``(C, H, W)`` in [0, 1] to ``path`` atomically.

    The format comes from the file extension (Pillow's table); pixels are rounded to 8 bits, so
    PNG round-trips the 8-bit values exactly. ``options`` go to ``PIL.Image.save`` (e.g.
    ``quality=90``). NaN, infinite or out-of-range pixels raise :class:`DiffcommError`.
    """
    _register_heif()
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise DiffcommError(f"unknown image extension {path.suffix!r} in {path}; use .png, .jpg, .webp, ...")
    atomic_write_bytes(path, encode_image(x, fmt, **options))


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile a batch ``(B, C, H, W)`` into one image ``(C, H', W')`` with ``nrow`` images per row.

    Images are separated (and surrounded) by ``padding`` pixels of ``pad_value``; missing cells
    in the last row are filled with ``pad_value``.

    >>> make_grid(torch.zeros(5, 1, 4, 4), nrow=2, padding=1).shape
    torch.Size([1, 16, 11])
    """
    x = check_pixels(images)
    if nrow < 1:
        raise DiffcommError(f"nrow must be >= 1, got {nrow}")
    if padding < 0:
        raise DiffcommError(f"padding must be >= 0, got {padding}")
    b, c, h, w = x.shape
    ncol = min(nrow, b)
    nrows = math.ceil(b / ncol)
    grid = torch.full((c, nrows * (h + padding) + padding, ncol * (w + padding) + padding), float(pad_value))
    for i in range(b):
        r, col = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, top:top + h, left:left + w] = x[i]
    return grid


def save_grid(path: str | os.PathLike, images: torch.Tensor, nrow: int = 8, padding: int = 2,
              pad_value: float = 1.0) -> None:
    """Write :func:`make_grid` of ``images`` to ``path`` (format from the extension, atomic)."""
    write_image(path, make_grid(images, nrow=nrow, padding=padding, pad_value=pad_value))
