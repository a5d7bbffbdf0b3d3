"""Pilots, channel estimation (LS, LMMSE) and equalisation (ZF, MMSE) for flat fading.

Block fading: within one coherence block the receiver sees ``n_p`` pilots ``p`` (unit power,
``|p_i| = 1``) through the same gain h: ``y_p = h p + n``, ``n ~ CN(0, N0 I)``. With
``r = p^H y_p`` (matched filter over the block):

* LS (= ML): ``ĥ = r / ||p||²``, unbiased, error variance ``N0 / n_p``.
* LMMSE for the prior ``h ~ CN(m, v)``: ``ĥ = m + v (r - m ||p||²) / (v ||p||² + N0)``,
  error variance ``v N0 / (v n_p + N0)`` (``N0 / (n_p + N0)`` for Rayleigh, v = 1).

See Kay, *Fundamentals of Statistical Signal Processing: Estimation Theory* (1993), §4.5 (LS / BLUE)
and §12.5 (Bayesian Gauss-Markov / LMMSE).

Equalisation of ``y = h s + n`` with unit-power symbols s:

* ZF: ``ŝ = y / h``; ``E|ŝ - s|² = N0 / |h|²``.
* MMSE: ``ŝ = h* y / (|h|² + N0)``; ``E|ŝ - s|² = N0 / (|h|² + N0)``.

Both equalisers return ``(ŝ, E|ŝ - s|² per symbol)``.

Example:
    >>> p = pilot_sequence(4)
    >>> h = torch.tensor([[0.5 + 0.5j]])
    >>> estimate_ls(h[..., None] * p, p)
    tensor([[0.5000+0.5000j]])
"""

from __future__ import annotations

import math

import torch

from diffcomm.errors import DiffcommError

PILOT_ESTIMATORS = ("ls", "lmmse")  # pilot-based channel estimators (per coherence block / subcarrier)

def pilot_sequence(n: int, kind: str = "zc", root: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Unit-modulus pilot sequence of length ``n``, complex64 ``(n,)``.

    * ``"zc"``: Zadoff-Chu, ``exp(-jπ u m (m + c) / n)`` with ``c = n mod 2`` and root ``u`` coprime
      with ``n`` (Chu, IEEE Trans. Inf. Theory 18(4), 1972); constant amplitude, ideal periodic
      autocorrelation.
    * ``"qpsk"``: i.i.d. QPSK symbols ``(±1 ± j)/√2`` drawn from ``generator``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DiffcommError(f"pilot length must be a positive int, got {n!r}")
    if kind == "zc":
        if isinstance(root, bool) or not isinstance(root, int) or root < 1 or math.gcd(root, n) != 1:
            raise DiffcommError(f"Zadoff-Chu root must be a positive int coprime with the length {n}, got {root!r}")
        m = torch.arange(n, dtype=torch.float64)
        phase = -math.pi * root * m * (m + (n % 2)) / n
        return torch.polar(torch.ones_like(phase), phase).to(torch.complex64)
    if kind == "qpsk":
        bits = torch.randint(0, 2, (n, 2), generator=generator).to(torch.float32)
        return torch.complex(1 - 2 * bits[:, 0], 1 - 2 * bits[:, 1]) / math.sqrt(2)
    raise DiffcommError(f"unknown pilot kind {kind!r}; choose 'zc' or 'qpsk'")


def _check_pilots(y_pilot: torch.Tensor, pilots: torch.Tensor, who: str) -> None:
    for name, t in (("y_pilot", y_pilot), ("pilots", pilots)):
        if not torch.is_tensor(t) or not t.is_complex():
            raise DiffcommError(f"{who}: {name} must be a complex tensor, got "
                                f"{t.dtype if torch.is_tensor(t) else type(t).__name__}")
    if y_pilot.ndim < 1 or pilots.shape[-1] != y_pilot.shape[-1]:
        raise DiffcommError(f"{who}: the last dim of y_pilot {tuple(y_pilot.shape)} must be the pilot count "
                            f"{pilots.shape[-1] if pilots.ndim else '?'}")


def _matched(y_pilot: torch.Tensor, pilots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r = (pilots.conj() * y_pilot).sum(-1)
    energy = pilots.abs().pow(2).sum(-1)
    return r, energy


def estimate_ls(y_pilot: torch.Tensor, pilots: torch.Tensor) -> torch.Tensor:
    """Least-squares estimate of a block's gain: ``ĥ = p^H y_p / ||p||²``.

    ``y_pilot`` is complex ``(..., n_p)`` (the pilots received in one coherence block), ``pilots`` is
    ``(n_p,)`` or broadcastable to it; returns ``(...)``. Error variance ``N0 / ||p||²``
    (``N0 / n_p`` for unit-power pilots).
    """
    _check_pilots(y_pilot, pilots, "estimate_ls")
    r, energy = _matched(y_pilot, pilots)
    return r / energy


def estimate_lmmse(y_pilot: torch.Tensor, pilots: torch.Tensor, n0: float | torch.Tensor, prior_var: float = 1.0,
                   prior_mean: complex = 0j) -> torch.Tensor:
    """LMMSE estimate of a block's gain under the prior ``h ~ CN(prior_mean, prior_var)``.

    ``ĥ = m + v p^H (y_p - m p) / (v ||p||² + N0)``; error variance ``v N0 / (v ||p||² + N0)``
    (``N0 / (n_p + N0)`` for Rayleigh, unit-power pilots). ``n0`` is a float or a tensor broadcastable
    to the output ``(...)``. Shapes as in :func:`estimate_ls`.
    """
    _check_pilots(y_pilot, pilots, "estimate_lmmse")
    if not math.isfinite(prior_var) or prior_var < 0:
        raise DiffcommError(f"estimate_lmmse: prior_var must be finite and >= 0, got {prior_var!r}")
    n0_t = torch.as_tensor(n0, dtype=y_pilot.real.dtype, device=y_pilot.device)
    if not torch.isfinite(n0_t).all() or (n0_t < 0).any() or (prior_var == 0 and (n0_t == 0).any()):
        raise DiffcommError(f"estimate_lmmse: n0 must be finite and > 0, got {n0}")
    r, energy = _matched(y_pilot, pilots)
    return prior_mean + prior_var * (r - prior_mean * energy) / (prior_var * energy + n0_t)


def _check_eq(y: torch.Tensor, h: torch.Tensor, who: str) -> None:
    if not torch.is_tensor(y) or not y.is_complex():
        got = y.dtype if torch.is_tensor(y) else type(y).__name__
        raise DiffcommError(f"{who}: y must be a complex tensor, got {got}")
    if not torch.is_tensor(h):
        raise DiffcommError(f"{who}: h must be a tensor of channel gains (did you pass h_hat=None with csi='none'?)")
    try:
        torch.broadcast_shapes(y.shape, h.shape)
    except RuntimeError:
        raise DiffcommError(f"{who}: h {tuple(h.shape)} does not broadcast to y {tuple(y.shape)}") from None


def equalize_zf(y: torch.Tensor, h: torch.Tensor, n0: float | torch.Tensor = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-forcing equalisation ``ŝ = y / h``; returns ``(ŝ, N0 / |h|²)``.

    With the default ``n0 = 1`` the second output is the noise amplification ``1 / |h|²``.
    """
    _check_eq(y, h, "equalize_zf")
    power = h.abs().pow(2).clamp_min(torch.finfo(y.real.dtype).tiny)
    return y * h.conj() / power, n0 / power


def equalize_mmse(y: torch.Tensor, h: torch.Tensor, n0: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MMSE equalisation for unit-power symbols ``ŝ = h* y / (|h|² + N0)``; returns ``(ŝ, N0 / (|h|² + N0))``.

    ``ŝ`` is biased towards 0 (``E[ŝ | s] = |h|²/(|h|² + N0) s``); the second output is the error
    variance ``E|ŝ - s|²``. ``n0`` is a float or a tensor broadcastable to ``y``.
    """
    _check_eq(y, h, "equalize_mmse")
    power = h.abs().pow(2)
    denom = (power + n0).clamp_min(torch.finfo(y.real.dtype).tiny)
    return y * h.conj() / denom, n0 / denom
