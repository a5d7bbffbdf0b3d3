"""Summary statistics for per-image metrics: mean with a Student-t confidence interval.

For n values with sample mean m and sample standard deviation s (ddof = 1), the two-sided
interval at confidence c is ``m ± t_{(1+c)/2, n-1} · s / sqrt(n)`` (the standard t interval for
the mean of i.i.d. normal data; asymptotically valid for any finite-variance data by the CLT).

Example:
    >>> mean, low, high = mean_ci([1.0, 2.0, 3.0])
    >>> round(mean, 3), round(low, 3), round(high, 3)
    (2.0, -0.484, 4.484)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from diffcomm.errors import DiffcommError


def _as_array(values: torch.Tensor | Sequence[float] | np.ndarray, name: str = "values") -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DiffcommError(f"{name} must be numbers (a tensor or list), got {type(values).__name__}") from None
    if arr.size == 0:
        raise DiffcommError(f"{name} is empty; need at least one value to summarise")
    if not np.isfinite(arr).all():
        raise DiffcommError(f"{name} contains NaN or infinite values; cap or drop them first")
    return arr


def mean_ci(values: torch.Tensor | Sequence[float] | np.ndarray,
            confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the sample mean and its two-sided Student-t confidence interval.

    With a single value the interval is undefined and ``low``/``high`` are NaN.
    """
    from scipy import stats

    if not 0.0 < confidence < 1.0:
        raise DiffcommError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence}")
    arr = _as_array(values)
    n = arr.size
    mean = float(arr.mean())
    if n < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2.0, df=n - 1)) * float(arr.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half


def summarize(metrics: Mapping[str, torch.Tensor | Sequence[float] | np.ndarray],
              confidence: float = 0.95) -> dict[str, dict[str, float | int | None]]:
    """Summarise per-image metric values: ``{metric: {mean, std, n, ci_low, ci_high, confidence}}``.

    ``std`` is the sample standard deviation (ddof = 1); with one value ``std``, ``ci_low`` and
    ``ci_high`` are ``None`` (JSON null). Values are plain Python numbers, ready for JSON.

    >>> summarize({"psnr": [30.0, 32.0]})["psnr"]["mean"]
    31.0
    """
    if not isinstance(metrics, Mapping):
        raise DiffcommError(f"summarize expects a dict of metric name -> per-image values, got "
                            f"{type(metrics).__name__}")
    out: dict[str, dict[str, float | int | None]] = {}
    for name, values in metrics.items():
        arr = _as_array(values, f"metric {name!r}")
        mean, low, high = mean_ci(arr, confidence)
        several = arr.size > 1
        out[name] = {"mean": mean, "std": float(arr.std(ddof=1)) if several else None, "n": int(arr.size),
                     "ci_low": low if several else None, "ci_high": high if several else None,
                     "confidence": confidence}
    return out
