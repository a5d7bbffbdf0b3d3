"""Units of the link budget: SNR to noise variance, channel bandwidth ratio (CBR) to symbol count.

Conventions (docs/interfaces.md): SNR is Es/N0 per complex symbol with unit symbol power, so
``N0 = 10 ** (-snr_db / 10)``; CBR = k / (C·H·W) complex channel uses per real source dimension.

Example:
    >>> snr_db_to_n0(10.0)
    0.1
    >>> parse_cbr("1/16"), symbols_for_cbr(1 / 16, (1, 28, 28))
    (0.0625, 49)
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch

from diffcomm.errors import DiffcommError

SNR_DB_RANGE = (-50.0, 100.0)


def snr_db_to_n0(snr_db: float | torch.Tensor) -> float | torch.Tensor:
    """Noise variance per complex symbol, ``N0 = 10 ** (-snr_db / 10)`` (unit symbol power).

    Accepts a float (returns a float) or a tensor of SNRs (returns a tensor of the same shape).
    Raises :class:`DiffcommError` unless every SNR is finite and in [-50, 100] dB.
    """
    if torch.is_tensor(snr_db):
        s = snr_db.detach()
        if s.is_complex() or not torch.isfinite(s).all() or (s < SNR_DB_RANGE[0]).any() or (s > SNR_DB_RANGE[1]).any():
            raise DiffcommError(f"SNR must be finite and in [{SNR_DB_RANGE[0]:g}, {SNR_DB_RANGE[1]:g}] dB, "
                                f"got values in [{float(s.real.min()):g}, {float(s.real.max()):g}]")
        return torch.pow(10.0, -snr_db.to(torch.promote_types(snr_db.dtype, torch.float32)) / 10)
    try:
        s = float(snr_db)
    except (TypeError, ValueError):
        raise DiffcommError(f"SNR must be a number in dB, got {snr_db!r}") from None
    if not math.isfinite(s) or not SNR_DB_RANGE[0] <= s <= SNR_DB_RANGE[1]:
        raise DiffcommError(f"SNR must be finite and in [{SNR_DB_RANGE[0]:g}, {SNR_DB_RANGE[1]:g}] dB, got {s:g}")
    return 10.0 ** (-s / 10.0)


def parse_cbr(cbr: str | float | Fraction) -> float:
    """Parse a channel bandwidth ratio: ``"1/16"``, ``"0.0625"``, or a number; must be in (0, 1].

    Raises :class:`DiffcommError` on anything else (junk, zero, negative, > 1, NaN, inf).
    """
    text = str(cbr).strip()
    try:
        value = float(Fraction(text)) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise DiffcommError(f"CBR must be a fraction like '1/16' or a number like '0.0625', got {cbr!r}") from None
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise DiffcommError(f"CBR must be in (0, 1] (channel uses per real source dimension), got {cbr!r}")
    return value


def check_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Validate an image shape (C, H, W) of positive ints and return it as a tuple."""
    try:
        out = tuple(int(s) for s in shape)
        ok = len(out) == 3 and all(s >= 1 and s == t for s, t in zip(out, shape))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DiffcommError(f"image shape must be three positive ints (C, H, W), got {shape!r}")
    return out  # type: ignore[return-value]


def symbols_for_cbr(cbr: float | str, shape: tuple[int, int, int]) -> int:
    """Complex channel uses per image: ``k = round(cbr * C * H * W)``, at least 1.

    Example: ``symbols_for_cbr(1/16, (1, 28, 28)) == 49``.
    """
    c, h, w = check_shape(shape)
    return max(1, round(parse_cbr(cbr) * c * h * w))
