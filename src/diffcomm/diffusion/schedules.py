"""Noise schedules and conversions between noise level σ, ᾱ, log-SNR, SNR in dB and time t.

One convention (k-diffusion / EDM): a noisy sample is ``x = x0 + σ ε``. A variance-preserving
(VP) sample ``x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε`` is the same thing scaled by ``sqrt(ᾱ_t)``:

    x_t / sqrt(ᾱ_t) = x0 + σ_t ε,    σ_t² = (1 - ᾱ_t) / ᾱ_t,    ᾱ_t = 1 / (1 + σ_t²).

The log-SNR is λ = log(ᾱ / (1 - ᾱ)) = -2 log σ, and the schedule SNR in dB is -10 log10 σ²
(the ``snr_t`` that CDDM matches to the channel SNR).

Sampling schedules (``karras_sigmas``, ``ve_sigmas``, ``vp_discrete_sigmas``, ``sigma_grid``)
return a strictly decreasing 1-D tensor with a final 0 appended, as in k-diffusion: ``n`` steps
go through ``n + 1`` noise levels. They are ``float32`` unless ``dtype`` says otherwise.

Tables of ᾱ (``linear_alpha_bars``, ``cosine_alpha_bars``) are ``float64``, indexed by the
discrete timestep ``t = 0 .. T-1`` as in DDPM code (index 0 is ᾱ after one noising step).

Example:
    >>> s = karras_sigmas(4, 0.002, 80.0)
    >>> len(s), float(s[0]), float(s[-2]), float(s[-1])
    (5, 80.0, 0.0020000000949949026, 0.0)
    >>> round(snr_db_of_sigma(1.0), 6)
    -0.0
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from diffcomm.errors import DiffcommError

Scalar = float | torch.Tensor


def _t(x: Scalar) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64) if not torch.is_tensor(x) else x


def _like(x_in: Scalar, out: torch.Tensor) -> Scalar:
    """Python number in, Python float out; tensor in, tensor out."""
    return float(out) if not torch.is_tensor(x_in) else out


def _check_sigma(sigma: torch.Tensor, name: str = "sigma") -> None:
    if torch.isnan(sigma).any() or (sigma < 0).any():
        raise DiffcommError(f"{name} must be >= 0 and not NaN; got min {float(sigma.min()):.4g}")


def _append_zero(s: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.cat([s, s.new_zeros(1)]).to(dtype)


def _check_n(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise DiffcommError(f"number of steps must be an integer >= 1; got {n!r}")


# --------------------------------------------------------------------------------------------
# Conversions
# --------------------------------------------------------------------------------------------

def alpha_bar_of_sigma(sigma: Scalar) -> Scalar:
    """ᾱ = 1 / (1 + σ²) (Karras et al. 2022, Table 1, VP column with s(t) = sqrt(ᾱ)).

    Example:
        >>> alpha_bar_of_sigma(1.0)
        0.5
    """
    s = _t(sigma)
    _check_sigma(s)
    return _like(sigma, 1.0 / (1.0 + s * s))


def sigma_of_alpha_bar(alpha_bar: Scalar) -> Scalar:
    """σ = sqrt((1 - ᾱ) / ᾱ), the VE noise level of a VP sample divided by sqrt(ᾱ).

    Example:
        >>> sigma_of_alpha_bar(0.5)
        1.0
    """
    a = _t(alpha_bar)
    if torch.isnan(a).any() or (a <= 0).any() or (a > 1).any():
        raise DiffcommError("alpha_bar must lie in (0, 1]; got values outside that range")
    return _like(alpha_bar, ((1.0 - a) / a).sqrt())


def log_snr_of_sigma(sigma: Scalar) -> Scalar:
    """Log signal-to-noise ratio λ = log(ᾱ / (1 - ᾱ)) = -2 log σ (Kingma et al. 2021, VDM).

    Example:
        >>> log_snr_of_sigma(1.0)
        -0.0
    """
    s = _t(sigma)
    _check_sigma(s)
    return _like(sigma, -2.0 * s.log())


def sigma_of_log_snr(log_snr: Scalar) -> Scalar:
    """σ = exp(-λ / 2), the inverse of :func:`log_snr_of_sigma`.

    Example:
        >>> sigma_of_log_snr(0.0)
        1.0
    """
    lam = _t(log_snr)
    if torch.isnan(lam).any():
        raise DiffcommError("log_snr must not be NaN")
    return _like(log_snr, (-0.5 * lam).exp())


def snr_db_of_sigma(sigma: Scalar) -> Scalar:
    """Schedule SNR in dB: -10 log10 σ² = 10 log10(ᾱ / (1 - ᾱ)) (CDDM's snr_t).

    Signal power is taken as 1 (the ``x0`` term's coefficient), so this is the SNR of a
    unit-power signal observed with noise std σ.

    Example:
        >>> snr_db_of_sigma(0.1)
        20.0
    """
    s = _t(sigma)
    _check_sigma(s)
    return _like(sigma, -20.0 * s.log10())


def sigma_of_snr_db(snr_db: Scalar) -> Scalar:
    """σ = 10^(-snr_db / 20), the inverse of :func:`snr_db_of_sigma`.

    Example:
        >>> round(sigma_of_snr_db(20.0), 12)
        0.1
    """
    d = _t(snr_db)
    if torch.isnan(d).any():
        raise DiffcommError("snr_db must not be NaN")
    return _like(snr_db, torch.pow(10.0, -d / 20.0))


# --------------------------------------------------------------------------------------------
# Continuous-time schedules: t in [0, 1] <-> σ
# --------------------------------------------------------------------------------------------

def _check_ve(sigma_min: float, sigma_max: float) -> None:
    if not 0 < sigma_min < sigma_max:
        raise DiffcommError(f"need 0 < sigma_min < sigma_max; got {sigma_min}, {sigma_max}")


def ve_sigma_of_t(t: Scalar, sigma_min: float = 0.01, sigma_max: float = 50.0) -> Scalar:
    """VE SDE noise level σ(t) = σ_min (σ_max / σ_min)^t, t in [0, 1] (Song et al. 2021, eq. 31).

    Example:
        >>> round(ve_sigma_of_t(1.0, 0.01, 50.0), 9)
        50.0
    """
    _check_ve(sigma_min, sigma_max)
    tt = _t(t)
    return _like(t, sigma_min * (sigma_max / sigma_min) ** tt)


def ve_t_of_sigma(sigma: Scalar, sigma_min: float = 0.01, sigma_max: float = 50.0) -> Scalar:
    """Inverse of :func:`ve_sigma_of_t`: t = log(σ / σ_min) / log(σ_max / σ_min).

    Example:
        >>> round(ve_t_of_sigma(0.01, 0.01, 50.0), 12)
        0.0
    """
    _check_ve(sigma_min, sigma_max)
    s = _t(sigma)
    if (s <= 0).any() or torch.isnan(s).any():
        raise DiffcommError("sigma must be > 0 to map it to VE time")
    return _like(sigma, (s / sigma_min).log() / math.log(sigma_max / sigma_min))


def vp_sigma_of_t(t: Scalar, beta_min: float = 0.1, beta_max: float = 20.0) -> Scalar:
    """VP SDE (linear β(t) = β_min + t (β_max - β_min)) noise level at time t in [0, 1].

    Song et al. 2021, eq. 33: ᾱ(t) = exp(-β_min t - (β_max - β_min) t² / 2), so
    σ(t) = sqrt(exp(β_min t + (β_max - β_min) t² / 2) - 1) (Karras et al. 2022, Table 1).

    Example:
        >>> round(vp_sigma_of_t(1.0))   # EDM's sigma_max for VP, "about 152"
        152
    """
    tt = _t(t)
    d = beta_max - beta_min
    return _like(t, torch.expm1(beta_min * tt + 0.5 * d * tt * tt).sqrt())


def vp_t_of_sigma(sigma: Scalar, beta_min: float = 0.1, beta_max: float = 20.0) -> Scalar:
    """Inverse of :func:`vp_sigma_of_t`: t = (sqrt(β_min² + 2 Δβ log(1 + σ²)) - β_min) / Δβ.

    Example:
        >>> round(vp_t_of_sigma(vp_sigma_of_t(0.3)), 9)
        0.3
    """
    s = _t(sigma)
    _check_sigma(s)
    d = beta_max - beta_min
    return _like(sigma, ((beta_min ** 2 + 2 * d * torch.log1p(s * s)).sqrt() - beta_min) / d)


def _cosine_f(t: torch.Tensor, s: float) -> torch.Tensor:
    return torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2


def cosine_sigma_of_t(t: Scalar, s: float = 0.008) -> Scalar:
    """Cosine schedule in continuous time t in [0, 1) (Nichol & Dhariwal 2021, eq. 17).

    ᾱ(t) = f(t) / f(0), f(t) = cos²(((t + s) / (1 + s)) π / 2); σ = sqrt((1 - ᾱ) / ᾱ).
    (No β clipping here; σ(1) is infinite.)

    Example:
        >>> round(cosine_sigma_of_t(0.5), 4)
        1.0124
    """
    tt = _t(t)
    ab = _cosine_f(tt, s) / _cosine_f(torch.zeros((), dtype=tt.dtype), s)
    return _like(t, ((1 - ab) / ab).sqrt())


def cosine_t_of_sigma(sigma: Scalar, s: float = 0.008) -> Scalar:
    """Inverse of :func:`cosine_sigma_of_t`: t = (1 + s) (2/π) arccos(sqrt(ᾱ f(0))) - s.

    Example:
        >>> round(cosine_t_of_sigma(cosine_sigma_of_t(0.25)), 9)
        0.25
    """
    sg = _t(sigma)
    _check_sigma(sg)
    ab = 1.0 / (1.0 + sg * sg)
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    return _like(sigma, (1 + s) * (2 / math.pi) * torch.arccos((ab * f0).sqrt()) - s)


# --------------------------------------------------------------------------------------------
# Discrete VP tables (DDPM / improved DDPM)
# --------------------------------------------------------------------------------------------

def linear_alpha_bars(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """ᾱ_t = Π_{s<=t} (1 - β_s) for DDPM's linear β schedule (Ho et al. 2020, §4), float64 (T,).

    Example:
        >>> ab = linear_alpha_bars()
        >>> round(float(ab[0]), 6), f"{float(ab[-1]):.3e}"
        (0.9999, '4.036e-05')
    """
    _check_n(T)
    if not 0 < beta_start <= beta_end < 1:
        raise DiffcommError(f"need 0 < beta_start <= beta_end < 1; got {beta_start}, {beta_end}")
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def cosine_alpha_bars(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """ᾱ_t of the cosine schedule (Nichol & Dhariwal 2021, eq. 17), β_t clipped at ``max_beta``.

    ᾱ_t = f(t / T) / f(0) for t = 1 .. T, with β_t = 1 - ᾱ_t / ᾱ_{t-1} clipped at 0.999 to
    avoid the singularity at t = T (as in the paper). Returns float64 (T,).

    Example:
        >>> ab = cosine_alpha_bars(1000)
        >>> bool((ab[1:] < ab[:-1]).all())
        True
    """
    _check_n(T)
    t = torch.arange(T + 1, dtype=torch.float64) / T
    f = _cosine_f(t, s)
    betas = (1.0 - f[1:] / f[:-1]).clamp(max=max_beta)
    return torch.cumprod(1.0 - betas, dim=0)


def vp_sigmas(alpha_bars: torch.Tensor) -> torch.Tensor:
    """σ_t = sqrt((1 - ᾱ_t) / ᾱ_t) for every entry of a ᾱ table (increasing in t, no zero).

    Example:
        >>> vp_sigmas(torch.tensor([0.5, 0.2], dtype=torch.float64))
        tensor([1., 2.], dtype=torch.float64)
    """
    ab = torch.as_tensor(alpha_bars, dtype=torch.float64)
    if ab.ndim != 1 or len(ab) < 1:
        raise DiffcommError("alpha_bars must be a non-empty 1-D table")
    return sigma_of_alpha_bar(ab)


def vp_discrete_sigmas(alpha_bars: torch.Tensor, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A sampling schedule for a discrete VP model: n timesteps evenly spaced from T-1 to 0.

    Timesteps ``round(linspace(T-1, 0, n))`` (DDIM's "trailing" spacing that includes t = T-1),
    their σ, then a final 0. These σ land exactly on the table, so :class:`EpsDenoiser` feeds
    the model integer timesteps.

    Example:
        >>> s = vp_discrete_sigmas(linear_alpha_bars(), 10)
        >>> len(s), round(float(s[0]), 1)
        (11, 157.4)
    """
    _check_n(n)
    sig = vp_sigmas(alpha_bars)
    if n > len(sig):
        raise DiffcommError(f"asked for {n} steps but the table has only {len(sig)} timesteps")
    idx = torch.linspace(len(sig) - 1, 0, n, dtype=torch.float64).round().long()
    return _append_zero(sig[idx], dtype)


def discrete_sigma_to_t(sigma: torch.Tensor, sigma_table: torch.Tensor) -> torch.Tensor:
    """Fractional timestep of σ by linear interpolation of log σ over an increasing σ table.

    Returns t in [0, T-1] (clamped at the ends), as k-diffusion's ``DiscreteSchedule``. Exact
    on table entries: ``discrete_sigma_to_t(table[k], table) == k``.

    Example:
        >>> tab = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
        >>> discrete_sigma_to_t(torch.tensor([0.1, 10 ** -0.5, 10.0], dtype=torch.float64), tab)
        tensor([0.0000, 0.5000, 2.0000], dtype=torch.float64)
    """
    log_tab = sigma_table.to(torch.float64).log()
    ls = torch.as_tensor(sigma, dtype=torch.float64, device=log_tab.device).log()
    hi = torch.searchsorted(log_tab, ls.reshape(-1)).clamp(1, len(log_tab) - 1).reshape(ls.shape)
    lo = hi - 1
    w = ((ls - log_tab[lo]) / (log_tab[hi] - log_tab[lo])).clamp(0, 1)
    return lo + w


def discrete_t_to_sigma(t: torch.Tensor, sigma_table: torch.Tensor) -> torch.Tensor:
    """σ at a fractional timestep t in [0, T-1]: log σ interpolated linearly (inverse of the above).

    Example:
        >>> tab = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
        >>> discrete_t_to_sigma(torch.tensor(1.5), tab)
        tensor(3.1623, dtype=torch.float64)
    """
    log_tab = sigma_table.to(torch.float64).log()
    tt = torch.as_tensor(t, dtype=torch.float64, device=log_tab.device).clamp(0, len(log_tab) - 1)
    lo = tt.floor().long().clamp(max=len(log_tab) - 2) if len(log_tab) > 1 else tt.floor().long()
    if len(log_tab) == 1:
        return log_tab[lo].exp()
    w = tt - lo
    return ((1 - w) * log_tab[lo] + w * log_tab[lo + 1]).exp()


# --------------------------------------------------------------------------------------------
# Sampling schedules
# --------------------------------------------------------------------------------------------

def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Karras et al. 2022, eq. (5): σ_i = (σ_max^(1/ρ) + i/(n-1) (σ_min^(1/ρ) - σ_max^(1/ρ)))^ρ.

    ``n`` noise levels from σ_max down to σ_min, then 0 appended (length n + 1). With n = 1 the
    schedule is [σ_max, 0].

    Example:
        >>> karras_sigmas(3, 0.002, 80.0, dtype=torch.float64)[[0, 2, 3]]
        tensor([8.0000e+01, 2.0000e-03, 0.0000e+00], dtype=torch.float64)
    """
    _check_n(n)
    if not (0 < sigma_min <= sigma_max and math.isfinite(sigma_max)):
        raise DiffcommError(f"need 0 < sigma_min <= sigma_max < inf; got {sigma_min}, {sigma_max}")
    if rho <= 0:
        raise DiffcommError(f"rho must be > 0; got {rho}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((hi + ramp * (lo - hi)) ** rho, dtype)


def sigma_grid(steps: int, sigma_min: float | torch.Tensor, sigma_max: float | torch.Tensor, rho: float = 7.0,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The σ grid every receiver uses: ``steps`` Karras levels (eq. 5) from ``sigma_max`` to ``sigma_min``, then 0.

    It never repeats a level: when ``sigma_max <= sigma_min`` (a start below the prior's smallest
    level, e.g. HiFi's channel-matched start at 60 dB), the grid is the single level
    ``[sigma_max, 0]`` — one denoising step, one NFE — rather than ``steps`` copies of σ_min.
    With tensors ``sigma_max`` (and optionally ``sigma_min``) of shape ``(B,)`` it returns one grid
    per batch row, ``(B, steps + 1)``, for per-image starts (each row's end is lowered to
    ``sigma_max/2`` where it would not lie below the start); the samplers take such grids.

    Example:
        >>> sigma_grid(10, 0.002, 0.001).tolist()
        [0.0010000000474974513, 0.0]
        >>> sigma_grid(3, 0.002, torch.tensor([1.0, 0.5])).shape
        torch.Size([2, 4])
    """
    _check_n(steps)
    if torch.is_tensor(sigma_max) and sigma_max.ndim == 1:
        top = sigma_max.to(torch.float64)
        low = torch.as_tensor(sigma_min, dtype=torch.float64).expand_as(top)
        low = torch.minimum(low, top / 2)
        if not (torch.isfinite(top).all() and (low > 0).all()):
            raise DiffcommError("sigma_grid: per-row sigma_max must be finite and > 0")
        return torch.stack([karras_sigmas(steps, float(lo), float(hi), rho, torch.float64)
                            for lo, hi in zip(low, top)]).to(dtype)
    top, low = float(sigma_max), float(sigma_min)
    if not (math.isfinite(top) and top > 0 and low > 0):
        raise DiffcommError(f"sigma_grid: need finite sigma_max > 0 and sigma_min > 0; got {sigma_max}, {sigma_min}")
    if top <= low:
        return _append_zero(torch.tensor([top], dtype=torch.float64), dtype)
    grid = karras_sigmas(steps, low, top, rho, dtype)
    levels = torch.unique_consecutive(grid[:-1])       # levels that coincide after the cast to dtype
    return grid if len(levels) == steps else torch.cat([levels, grid[-1:]])


def ve_sigmas(n: int, sigma_min: float = 0.01, sigma_max: float = 50.0,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Geometric noise levels σ_1 > ... > σ_n of NCSN (Song & Ermon 2019, §4.2), then 0.

    Example:
        >>> ve_sigmas(3, 0.01, 1.0, dtype=torch.float64)
        tensor([1.0000, 0.1000, 0.0100, 0.0000], dtype=torch.float64)
    """
    _check_n(n)
    if n == 1:
        return _append_zero(torch.tensor([float(sigma_max)], dtype=torch.float64), dtype)
    _check_ve(sigma_min, sigma_max)
    s = torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64))
    return _append_zero(s, dtype)


def sigma_index_for(sigmas: torch.Tensor, target_sigma: float,
                    mode: Literal["at_or_below", "nearest"] = "at_or_below") -> int:
    """Index of the step at which to start a reverse process for a given noise level.

    ``mode="at_or_below"``: the first index i with ``sigmas[i] <= target_sigma`` (so the start
    level never exceeds the target; 0 if the target is above ``sigmas[0]``; the index of the
    final 0 if the target is below every positive level; the last index if the schedule has no
    final 0 and every level is above the target). ``mode="nearest"``: the positive level
    nearest in log σ (the final 0 only when ``target_sigma == 0``). Start with
    ``sigmas[i:]`` (CDDM: the step whose schedule SNR matches the channel SNR).

    Example:
        >>> s = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.0])
        >>> sigma_index_for(s, 1.5), sigma_index_for(s, 1.5, "nearest"), sigma_index_for(s, 9.0)
        (2, 1, 0)
    """
    s = torch.as_tensor(sigmas, dtype=torch.float64)
    if s.ndim != 1 or len(s) < 1:
        raise DiffcommError("sigmas must be a non-empty 1-D tensor")
    if len(s) > 1 and not (s[1:] < s[:-1]).all():
        raise DiffcommError("sigmas must be strictly decreasing")
    if not target_sigma >= 0 or math.isinf(target_sigma):
        raise DiffcommError(f"target_sigma must be finite and >= 0; got {target_sigma}")
    if mode == "at_or_below":
        below = torch.nonzero(s <= target_sigma)
        return int(below[0]) if len(below) else len(s) - 1
    if mode == "nearest":
        pos = s > 0
        if target_sigma == 0 or not pos.any():
            return int(torch.argmin(s))
        dist = (s[pos].log() - math.log(target_sigma)).abs()
        return int(torch.argmin(dist))
    raise DiffcommError(f"mode must be 'at_or_below' or 'nearest'; got {mode!r}")
