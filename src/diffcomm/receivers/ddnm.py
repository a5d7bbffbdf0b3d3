"""DDNM+ receiver for linear links: range-null-space decomposition with noise-aware range correction.

Wang, Yu, Zhang, "Zero-Shot Image Restoration Using Denoising Diffusion Null-Space Model", ICLR 2023,
§3.3, eq. (13)-(17) ("DDNM+", noisy measurements). Each step denoises, x̂0 = D(x_σ; σ), replaces
the range-space content of x̂0 by the measurement's, scaled per singular direction,

    x̂0' = x̂0 − Σ_σ A⁺(A x̂0 − y),    Σ_σ = V diag(λ_i) Vᵀ,

and then takes the DDPM posterior step p(x_σ' | x_σ, x̂0') with a reduced, direction-dependent noise
covariance Φ_σ = V diag(γ_i) Vᵀ (+ the full step noise in the null space). With A = U diag(s_i) Vᵀ
(SVD of the exact per-image model-space matrix A_m, see :func:`diffcomm.receivers.pigdm.model_space_system`)
the correction A⁺y carries noise of std σ_y / s_i along v_i, which the step multiplies by a, the
weight of x̂0 in the posterior mean. DDNM+ (eq. 17) spends the step's noise budget σ_up on it:

    λ_i = 1,                  γ_i = σ_up² − (a σ_y / s_i)²      if σ_up ≥ a σ_y / s_i,
    λ_i = σ_up s_i / (a σ_y),  γ_i = 0                           otherwise,

so the range correction never injects more noise than the step allows. In σ form (x = x0 + σ ε,
EDM grid) the DDPM posterior step from σ to σ' is ``x' = x̂0' + (σ'²/σ²)(x − x̂0') + σ_up z`` with
a = 1 − σ'²/σ² and σ_up = σ' sqrt(σ² − σ'²)/σ (DDIM η = 1, Song et al. 2021, eq. 16). At the last
step (σ' = 0) σ_up = 0 and hence λ = 0: the output is the final denoised estimate. The paper's
optional "time-travel" resampling (Alg. 2) is not implemented. NFE = ``steps``.

Example:
    >>> res = ddnm_receiver(link, rx, zoo.load("fmnist-prior"), steps=100)   # doctest: +SKIP
    >>> res.nfe                                                               # doctest: +SKIP
    100
"""

from __future__ import annotations

import math

import torch

from diffcomm.receivers.base import ReceiverResult, Timer, check_received
from diffcomm.receivers.pigdm import F64, bmv, check_prior, check_steps, model_space_system, sigma_grid


def ddnm_receiver(link, rx, prior, *, steps: int = 100, sigma_max: float | None = None,
                  class_labels: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> ReceiverResult:
    """DDNM+ posterior sampling for a linear link; see the module docstring.

    Returns pixels in [0, 1]; ``nfe = steps``. ``extras["rank"]`` is the numerical rank of A per image.

    Example:
        >>> gen = torch.Generator().manual_seed(0)
        >>> res = ddnm_receiver(link, rx, prior, steps=100, generator=gen)   # doctest: +SKIP
    """
    check_received(link, rx, need_linear=True, receiver="ddnm")
    check_prior(prior, "ddnm")
    check_steps(steps, "ddnm")
    with Timer() as t:
        system = model_space_system(link, rx)
        u, s, vh = torch.linalg.svd(system.a, full_matrices=False)          # (B,m,m), (B,m), (B,m,n)
        tol = max(system.a.shape[-2:]) * torch.finfo(F64).eps * s[:, :1]
        keep = s > tol
        s_inv = torch.where(keep, 1 / s.clamp_min(1e-300), torch.zeros_like(s))
        y_coef = s_inv * bmv(u.transpose(-1, -2), system.y)                  # (A⁺y) in the basis v_i
        sigma_y = math.sqrt(system.noise_var)
        sigmas = sigma_grid(prior, steps, sigma_max, "ddnm")
        b = rx.y.shape[0]
        x = torch.randn((b, *link.shape), generator=generator) * float(sigmas[0])
        for i in range(steps):
            sig, sig_next = float(sigmas[i]), float(sigmas[i + 1])
            with torch.no_grad():
                x0 = prior(x, torch.full((b,), sig, dtype=x.dtype), class_labels)
            x0f = x0.flatten(1).to(F64)
            coef = bmv(vh, x0f) - y_coef                                      # A⁺(A x̂0 − y) in the basis v_i
            s_up = sig_next * math.sqrt(sig * sig - sig_next * sig_next) / sig
            a = 1 - (sig_next / sig) ** 2
            noise_std = a * sigma_y * s_inv                                   # std of a·A⁺n along v_i
            full = keep & (noise_std <= s_up)
            lam = torch.where(full, torch.ones_like(s), s_up / noise_std.clamp_min(1e-300))
            lam = torch.where(keep, lam, torch.zeros_like(s))
            gam = torch.where(full, s_up ** 2 - noise_std ** 2, torch.zeros_like(s))
            x0c = x0f - bmv(vh.transpose(-1, -2), lam * coef)
            xf = x0c + (sig_next / sig) ** 2 * (x.flatten(1).to(F64) - x0c)
            if s_up > 0:
                z = torch.randn(x.shape, generator=generator, dtype=x.dtype).flatten(1).to(F64)
                zc = bmv(vh, z)                                               # range components of z
                shrink = torch.where(keep, s_up - gam.sqrt(), torch.zeros_like(s))
                xf = xf + s_up * z - bmv(vh.transpose(-1, -2), shrink * zc)
            x = xf.to(x.dtype).reshape(x.shape)
    return ReceiverResult(prior.to_pixels(x).clamp(0, 1), nfe=steps, seconds=t.seconds,
                          extras={"steps": steps, "rank": keep.sum(1).tolist()})
