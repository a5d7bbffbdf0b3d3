"""Several linear observations of one image as one linear link: the fusion centre's exact likelihood.

Agent ``k`` sends its view through its own linear link, so the receiver sees

    y_k = c_k ⊙ (E_k x) + n_k,    n_k ~ CN(0, N0_k I),    c_k = ĥ_k g_k (its CSI times its power gain),

with its own matrix ``E_k`` (``(2k_k, n)``), fading, power normalisation and noise level. The observations
are independent given ``x``, so the joint likelihood is the product of the K likelihoods and its
log is the **sum of the K data terms** Σ_k ‖y_k − c_k ⊙ E_k x‖² / N0_k. :func:`fuse` writes that sum as
*one* linear link with a single noise level: each observation is whitened to the smallest noise level
N0 = min_k N0_k by the factor ``w_k = sqrt(N0 / N0_k)``,

    w_k y_k = (w_k c_k) ⊙ (E_k x) + w_k n_k,    w_k n_k ~ CN(0, N0 I),

and the rows are stacked: ``E = [E_1; …; E_K]``, ``ĥ = [w_1 c_1, …, w_K c_K]``, gain 1. The fused
``(Link, Received)`` has exactly the joint likelihood (``‖y − ĥ ⊙ E x‖² / N0`` is the sum above), so
every receiver that takes a linear link — the exact Gaussian posterior (``lmmse``), ΠGDM, DDNM+,
DiffPIR, DPS — becomes a multi-observation posterior sampler without a line of its own
(``diffcomm.pipeline.decode(name, link, rx)``). This is the centralised decoder of
:mod:`diffcomm.scenarios.agents`; the exact-moment test checks ΠGDM on the fused link against
:func:`diffcomm.receivers.linear.gaussian_posterior` of the stacked system with per-row noise.

Example:
    >>> import torch
    >>> from diffcomm.link import make_link
    >>> a = make_link("gaussian", (1, 4, 4), "1/4", snr_db=10.0, seed=1)
    >>> b = make_link("gaussian", (1, 4, 4), "1/4", "rayleigh", snr_db=0.0, seed=2)
    >>> x, g = torch.rand(2, 1, 4, 4), torch.Generator().manual_seed(0)
    >>> link, rx = fuse([observation(a, a.transmit(x, generator=g)), observation(b, b.transmit(x, generator=g))])
    >>> link.k, rx.y.shape, round(rx.n0, 3)
    (8, torch.Size([2, 8]), 0.1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from diffcomm.errors import DiffcommError


@dataclass
class Observation:
    """One linear observation ``y = coef ⊙ (E x) + n``, ``n ~ CN(0, n0)`` per complex symbol (receiver's view)."""

    matrix: torch.Tensor      # real (2k, n): the encoder E
    y: torch.Tensor           # complex (B, k)
    coef: torch.Tensor        # complex (B, k): ĥ·g, what the receiver believes multiplies E x
    n0: float                 # noise variance per complex symbol
    shape: tuple[int, int, int]
    name: str = "observation"

    @property
    def k(self) -> int:
        return self.matrix.shape[0] // 2


def observation(link, rx, name: str | None = None) -> Observation:
    """The :class:`Observation` of a received batch of a linear link with a dense matrix (perfect or estimated CSI)."""
    enc = link.encoder
    if not link.is_linear or not torch.is_tensor(getattr(enc, "matrix", None)):
        raise DiffcommError(f"fusion needs linear links with a dense matrix (e.g. 'gaussian'), got "
                            f"{getattr(enc, 'name', type(enc).__name__)!r}")
    if getattr(rx, "mixing", None) is not None:
        raise DiffcommError("fusion takes per-symbol links (flat or block fading); MIMO/ISI mixing is not supported")
    if rx.h_hat is None:
        raise DiffcommError("fusion needs receiver CSI (csi 'perfect' or 'estimated'), got csi='none'")
    coef = rx.h_hat.to(torch.complex64) * rx.gain.reshape(-1, 1).to(torch.float32)
    return Observation(matrix=enc.matrix, y=rx.y, coef=coef, n0=float(rx.n0), shape=tuple(link.shape),
                       name=name or getattr(enc, "name", "observation"))


def pixel_observation(x: torch.Tensor, mask: torch.Tensor, noise_std: float,
                      generator: torch.Generator | None = None, name: str = "own view") -> Observation:
    """An agent's direct look at its own pixels: ``x[mask] + N(0, noise_std²)`` as an :class:`Observation`.

    Consecutive pairs of observed pixels form one complex "symbol" with coefficient 1, so the noise per
    complex symbol is ``2·noise_std²`` (``noise_std²`` per real). An odd count gets one zero row.
    """
    if not torch.is_tensor(mask) or mask.dtype != torch.bool or tuple(mask.shape) != tuple(x.shape[1:]):
        raise DiffcommError(f"pixel_observation: mask must be a bool tensor of shape {tuple(x.shape[1:])}")
    if not (isinstance(noise_std, (int, float)) and math.isfinite(noise_std) and noise_std > 0):
        raise DiffcommError(f"pixel_observation: noise_std must be a positive number, got {noise_std!r}")
    idx = mask.flatten().nonzero().flatten()
    if idx.numel() == 0:
        raise DiffcommError("pixel_observation: the mask selects no pixel")
    n = mask.numel()
    rows = idx.numel() + idx.numel() % 2
    matrix = torch.zeros(rows, n)
    matrix[torch.arange(idx.numel()), idx] = 1.0
    values = x.flatten(1).float() @ matrix.T
    values = values + noise_std * torch.randn(values.shape, generator=generator)
    y = torch.complex(values[:, 0::2], values[:, 1::2])
    coef = torch.ones_like(y)
    return Observation(matrix=matrix, y=y, coef=coef, n0=2.0 * noise_std ** 2, shape=tuple(x.shape[1:]), name=name)


def fuse(observations: list[Observation]):
    """The K observations as one whitened linear ``(Link, Received)`` with the joint likelihood (module docstring)."""
    from diffcomm.link import Link, Received
    from diffcomm.transmit.linear import LinearEncoder

    if not observations:
        raise DiffcommError("fuse: no observation to fuse")
    shape, batch = observations[0].shape, observations[0].y.shape[0]
    for o in observations:
        if o.shape != shape or o.y.shape[0] != batch:
            raise DiffcommError(f"fuse: observations disagree on the image shape or batch ({o.name}: {o.shape}, "
                                f"{o.y.shape[0]} vs {shape}, {batch})")
        if not (math.isfinite(o.n0) and o.n0 > 0):
            raise DiffcommError(f"fuse: {o.name} has noise variance {o.n0!r}; it must be positive")
    n0 = min(o.n0 for o in observations)
    weights = [math.sqrt(n0 / o.n0) for o in observations]
    matrix = torch.cat([o.matrix.to(torch.float32) for o in observations])
    y = torch.cat([w * o.y for w, o in zip(weights, observations)], dim=1).to(torch.complex64)
    h = torch.cat([w * o.coef for w, o in zip(weights, observations)], dim=1).to(torch.complex64)
    snr_db = -10.0 * math.log10(n0)
    link = Link(LinearEncoder(matrix, shape, "fused"), "awgn", snr_db)
    rx = Received(y=y, h_hat=h, n0=n0, gain=torch.ones(batch), pilots_used=0)
    return link, rx
