"""Complex channel symbols: real <-> complex packing and per-image power normalisation.

Real vectors are packed into complex symbols as *interleaved pairs*: ``v = (v0, v1, v2, v3, ...)``
becomes ``z = (v0 + i v1, v2 + i v3, ...)`` (the layout of :func:`torch.view_as_complex`).

Example:
    >>> z, g = normalize_power(torch.tensor([[2 + 0j, 0j]]))
    >>> z, g
    (tensor([[1.4142+0.j, 0.0000+0.j]]), tensor([0.7071]))
"""

from __future__ import annotations

import torch

from diffcomm.errors import DiffcommError


def real_to_complex(v: torch.Tensor) -> torch.Tensor:
    """Real ``(..., 2k)`` -> complex ``(..., k)``, pairing consecutive reals (differentiable)."""
    if not torch.is_tensor(v) or v.is_complex() or not v.is_floating_point():
        raise DiffcommError(f"real_to_complex needs a real floating tensor, got "
                            f"{v.dtype if torch.is_tensor(v) else type(v).__name__}")
    if v.ndim == 0 or v.shape[-1] % 2:
        raise DiffcommError(f"real_to_complex needs an even last dimension (pairs of reals), "
                            f"got shape {tuple(v.shape)}")
    if v.dtype not in (torch.float32, torch.float64):
        v = v.float()
    return torch.view_as_complex(v.reshape(*v.shape[:-1], v.shape[-1] // 2, 2).contiguous())


def complex_to_real(z: torch.Tensor) -> torch.Tensor:
    """Complex ``(..., k)`` -> real ``(..., 2k)`` as interleaved (Re, Im) pairs (differentiable)."""
    if not torch.is_tensor(z) or not z.is_complex():
        raise DiffcommError(f"complex_to_real needs a complex tensor, got "
                            f"{z.dtype if torch.is_tensor(z) else type(z).__name__}")
    return torch.view_as_real(z).reshape(*z.shape[:-1], 2 * z.shape[-1])


def normalize_power(z: torch.Tensor, eps: float = 1e-20) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale each sample to unit mean symbol power: ``z_n = g z``, ``g = sqrt(k) / ||z||`` per sample.

    ``z`` is complex ``(B, ...)``; the mean of ``|z_n|^2`` over all non-batch dims is 1. Returns
    ``(z_n, g)`` with ``g`` real ``(B,)``. An all-zero sample stays zero (its squared norm is floored
    at ``eps``, so ``g`` is large but finite). Differentiable.
    """
    if not torch.is_tensor(z) or not z.is_complex() or z.ndim < 2:
        raise DiffcommError(f"normalize_power needs complex symbols shaped (B, k), got "
                            f"{(z.dtype, tuple(z.shape)) if torch.is_tensor(z) else type(z).__name__}")
    k = z[0].numel()
    energy = torch.view_as_real(z).pow(2).flatten(1).sum(1)
    gain = torch.sqrt(k / energy.clamp_min(eps))
    return z * gain.reshape(-1, *([1] * (z.ndim - 1))), gain
