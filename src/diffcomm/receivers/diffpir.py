"""DiffPIR receiver for linear links: plug-and-play half-quadratic splitting with a diffusion denoiser.

Zhu, Zhang, Liang, Cao, Wen, Timofte, Van Gool, "Denoising Diffusion Models for Plug-and-Play Image
Restoration", CVPR Workshops (NTIRE) 2023, Alg. 1. Each step (σ = σ̄_t = sqrt((1 − ᾱ_t)/ᾱ_t), the EDM
noise level of the paper's eq. (6)):

1. prior step: x0 = D(x_σ; σ) (Tweedie's estimate);
2. data step, eq. (11)-(13): x̂0 = argmin_x ‖y − A x‖² + ρ_σ ‖x − x0‖²,  ρ_σ = λ σ_y² / σ²,
   solved exactly for the linear model-space system y_m = A_m x_m + n
   (:func:`diffcomm.receivers.pigdm.model_space_system`) by the push-through (Woodbury) form
   x̂0 = x0 + Aᵀ (A Aᵀ + ρ_σ I)⁻¹ (y − A x0), an m×m Cholesky solve per image (m = 2k).
   (Dividing the objective by σ_y²: ‖y − Ax‖²/σ_y² + (λ/σ²)‖x − x0‖², i.e. λ = 1 treats x0 as
   N(x̂0, σ² I) information, the paper's choice of ρ.)
3. re-noise, Alg. 1 lines 5-7: ε̂ = (x_σ − x̂0)/σ, x_σ' = x̂0 + σ' (sqrt(1 − ζ) ε̂ + sqrt(ζ) z).

ζ = 1 draws fresh noise every step, ζ = 0 is deterministic (DDIM-like). The paper tunes λ and ζ per
task (e.g. λ ≈ 1-8, ζ ≈ 0.3-1); the defaults here are λ = 1, ζ = 1. NFE = ``steps``.

Example:
    >>> res = diffpir_receiver(link, rx, zoo.load("fmnist-prior"), steps=100)   # doctest: +SKIP
    >>> res.nfe                                                                  # doctest: +SKIP
    100
"""

from __future__ import annotations

import math

import torch

from diffcomm.receivers.base import ReceiverResult, Timer, check_received
from diffcomm.receivers.pigdm import (
    F64,
    ModelSpaceSystem,
    check_positive,
    check_prior,
    check_steps,
    check_unit,
    model_space_system,
    sigma_grid,
)


def data_proximal(system: ModelSpaceSystem, x0: torch.Tensor, rho: float) -> torch.Tensor:
    """argmin_x ‖y − A x‖² + ρ ‖x − x0‖² per image = x0 + Aᵀ(AAᵀ + ρI)⁻¹(y − A x0); float64 (B, n).

    Example:
        >>> data_proximal(model_space_system(link, rx), x0, rho=0.1).shape   # doctest: +SKIP
        torch.Size([4, 784])
    """
    a = system.a
    gram = a @ a.transpose(-1, -2) + rho * torch.eye(a.shape[1], dtype=F64, device=a.device)
    resid = system.y - system.apply(x0)
    w = torch.cholesky_solve(resid[..., None], torch.linalg.cholesky(gram)).squeeze(-1)
    return x0.flatten(1).to(F64) + system.adjoint(w)


def diffpir_receiver(link, rx, prior, *, steps: int = 100, lam: float = 1.0, zeta: float = 1.0,
                     sigma_max: float | None = None, class_labels: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> ReceiverResult:
    """DiffPIR for a linear link; see the module docstring. ``lam`` is λ, ``zeta`` is ζ in [0, 1].

    Returns pixels in [0, 1]; ``nfe = steps``.

    Example:
        >>> gen = torch.Generator().manual_seed(0)
        >>> res = diffpir_receiver(link, rx, prior, lam=1.0, zeta=1.0, generator=gen)   # doctest: +SKIP
    """
    check_received(link, rx, need_linear=True, receiver="diffpir")
    check_prior(prior, "diffpir")
    check_steps(steps, "diffpir")
    check_positive(lam, "lam", "diffpir")
    check_unit(zeta, "zeta", "diffpir")
    with Timer() as t:
        system = model_space_system(link, rx)
        sigmas = sigma_grid(prior, steps, sigma_max, "diffpir")
        b = rx.y.shape[0]
        x = torch.randn((b, *link.shape), generator=generator) * float(sigmas[0])
        for i in range(steps):
            sig, sig_next = float(sigmas[i]), float(sigmas[i + 1])
            with torch.no_grad():
                x0 = prior(x, torch.full((b,), sig, dtype=x.dtype), class_labels)
            x0c = data_proximal(system, x0, lam * system.noise_var / sig ** 2).to(x.dtype).reshape(x.shape)
            if sig_next == 0:
                x = x0c
                break
            eps = (x - x0c) / sig
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype) if zeta > 0 else torch.zeros_like(x)
            x = x0c + sig_next * (math.sqrt(1 - zeta) * eps + math.sqrt(zeta) * z)
    return ReceiverResult(prior.to_pixels(x).clamp(0, 1), nfe=steps, seconds=t.seconds,
                          extras={"steps": steps, "lam": lam, "zeta": zeta})
