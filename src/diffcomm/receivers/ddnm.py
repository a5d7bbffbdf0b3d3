"""DDNM+ receiver for linear links: range-null-space decomposition with noise-aware range correction.

Wang, Yu, Zhang, "Zero-Shot Image Restoration Using Denoising Diffusion Null-Space Model", ICLR 2023,
§3.3, eq. (13)-(17) ("DDNM+", noisy measurements). Each evaluation denoises, x̂0 = D(x_σ; σ), and
replaces the range-space content of x̂0 by the measurement's, scaled per singular direction:

    D_y(x, σ) = x̂0 − V diag(λ_i) Vᵀ A⁺(A x̂0 − y),

with A = U diag(s_i) Vᵀ the exact model-space link matrix (:func:`diffcomm.receivers.base.model_space`;
its SVD is factorised once per batch by the link operator). The correction A⁺y carries noise of
std σ_y / s_i along v_i, which the step multiplies by a, the weight of x̂0 in the step's mean.
DDNM+ (eq. 17) spends the step's noise budget σ_up on it:

    λ_i = 1,                  γ_i = σ_up² − (a σ_y / s_i)²      if σ_up ≥ a σ_y / s_i,
    λ_i = σ_up s_i / (a σ_y),  γ_i = 0                           otherwise,

with the step's fresh noise cut to sqrt(γ_i) along v_i (the null space keeps σ_up), so the range
correction never injects more noise than the step allows. On its native sampler, DDPM ancestral
(``sampler="ddpm"``, the default; in σ form x' = x̂0' + (σ'²/σ²)(x − x̂0') + σ_up z, a = 1 − σ'²/σ²,
σ_up = σ' sqrt(σ² − σ'²)/σ), this is the paper's algorithm exactly: the term reads σ' from the grid
and reshapes the step noise through the sampler's ``noise_fn`` hook. On any other sampler (Euler,
Heun, DDIM, DPM-Solver++) the same term runs with the sampler-agnostic budget λ_i = min(1, σ s_i/σ_y)
(the correction injects at most the noise level the sample already carries) and no noise
reshaping — measured 0.6–1.1 dB below the native DDPM version at 5–10 dB with 20 steps. The
optional "time-travel" resampling (Alg. 2) is not implemented.

**Step bound.** λ_i ≤ 1, so the data step is at most the pseudo-inverse's projection; it does not
grow as σ_y → 0. NFE = ``steps`` for the first-order samplers.

Example:
    >>> res = ddnm_receiver(link, rx, zoo.load("fmnist-prior"), steps=100)   # doctest: +SKIP
    >>> res.nfe                                                               # doctest: +SKIP
    100
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from diffcomm.linalg import bmv
from diffcomm.receivers.base import Option, ReceiverResult, Timer, model_space, register_receiver
from diffcomm.receivers.guidance import SAMPLERS, CountingPrior, posterior_from_noise

F64 = torch.float64


def ddnm_denoiser(prior: CountingPrior, system, class_labels: torch.Tensor | None = None,
                  sigmas: torch.Tensor | None = None) -> Callable[..., torch.Tensor]:
    """DDNM+'s conditional denoiser (see the module docstring).

    With the sampler's 1-D grid ``sigmas`` (the DDPM ancestral step of the paper), λ_i is eq. 17's
    for the step from σ to the grid's next level; without it, the sampler-agnostic λ_i = min(1, σ s_i/σ_y).
    """
    f = system.svd
    y_coef = f.s_inv * bmv(f.u.transpose(-1, -2), system.y)                 # (A⁺y) in the basis v_i
    sigma_y = math.sqrt(system.noise_var)
    grid = None if sigmas is None else sigmas.to(F64)

    def denoise(x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = class_labels,
                **_) -> torch.Tensor:
        with torch.no_grad():
            x0 = prior(x, sigma, class_labels)
        x0f = x0.flatten(1).to(F64)
        coef = bmv(f.vh, x0f) - y_coef                                       # A⁺(A x̂0 − y) in the basis v_i
        s = torch.as_tensor(sigma, dtype=F64).reshape(-1, 1)
        if grid is not None:
            s_up, a = ddpm_step(grid, float(s[0]))
            noise_std = a * sigma_y * f.s_inv                                # std of a·A⁺n along v_i
            full = f.keep & (noise_std <= s_up)
            lam = torch.where(full, torch.ones_like(f.s), s_up / noise_std.clamp_min(1e-300))
        else:
            lam = (s * f.s / sigma_y).clamp(max=1.0) if sigma_y > 0 else torch.ones_like(f.s)
        lam = torch.where(f.keep, lam, torch.zeros_like(f.s))
        return (x0f - bmv(f.vh.transpose(-1, -2), lam * coef)).to(x.dtype).reshape(x.shape)
    return denoise


def ddpm_step(grid: torch.Tensor, sigma: float) -> tuple[float, float]:
    """(σ_up, a) of the DDPM posterior step from the grid level nearest ``sigma`` to the next one:
    σ_up = σ' sqrt(σ² − σ'²)/σ and a = 1 − σ'²/σ², the weight of x̂0 in the step's mean."""
    i = int((grid - sigma).abs().argmin())
    sig, sig_next = float(grid[i]), float(grid[min(i + 1, len(grid) - 1)])
    if sig_next == sig:
        return 0.0, 1.0
    return sig_next * math.sqrt(sig * sig - sig_next * sig_next) / sig, 1 - (sig_next / sig) ** 2


def range_noise_budget(system, grid: torch.Tensor) -> Callable[..., torch.Tensor]:
    """DDNM+'s reshaped step noise (eq. 17): along kept v_i the fresh noise is cut to
    sqrt(γ_i) = sqrt(σ_up² − (a σ_y/s_i)²) where the measurement's noise fits the budget (else to 0),
    so the range correction plus the fresh noise carry exactly σ_up; the null space keeps σ_up."""
    f = system.svd
    sigma_y = math.sqrt(system.noise_var)
    grid = grid.to(F64)

    def shape_noise(z: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        s_up, a = ddpm_step(grid, float(torch.as_tensor(sigma).reshape(-1)[0]))
        if s_up <= 0:
            return z
        noise_std = a * sigma_y * f.s_inv
        full = f.keep & (noise_std <= s_up)
        gam = torch.where(full, s_up ** 2 - noise_std ** 2, torch.zeros_like(f.s))
        shrink = torch.where(f.keep, 1 - gam.sqrt() / s_up, torch.zeros_like(f.s))    # fraction removed along v_i
        zf = z.flatten(1).to(F64)
        return (zf - bmv(f.vh.transpose(-1, -2), shrink * bmv(f.vh, zf))).to(z.dtype).reshape(z.shape)
    return shape_noise


@register_receiver(
    "ddnm", description="DDNM+ null-space refinement (linear links)", link="linear", prior="denoiser",
    paper="Wang et al., ICLR 2023 (DDNM+)",
    options={"steps": Option(int, 1, 1000), "sigma_max": Option(float, 0, 1000, open_low=True, optional=True),
             "sampler": Option(str, choices=SAMPLERS), "eta": Option(float, 0, 1)})
def ddnm_receiver(link, rx, prior, *, steps: int = 100, sigma_max: float | None = None, sampler: str = "ddpm",
                  eta: float = 1.0, class_labels: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> ReceiverResult:
    """DDNM+ posterior sampling for a linear link; see the module docstring.

    Returns pixels in [0, 1]. ``extras["rank"]`` is the numerical rank of A per image.

    Example:
        >>> gen = torch.Generator().manual_seed(0)
        >>> res = ddnm_receiver(link, rx, prior, steps=100, generator=gen)   # doctest: +SKIP
    """
    from diffcomm.diffusion.schedules import sigma_grid

    with Timer() as t:
        system = model_space(link, rx, prior)
        native = sampler == "ddpm"        # the paper's step: exact eq. 17 with the reshaped step noise
        grid = sigma_grid(steps, prior.sigma_min, prior.sigma_max if sigma_max is None else sigma_max, dtype=F64)
        grid32 = grid.to(torch.float32)                                      # the levels the sampler passes

        def make_denoiser(counted):
            return ddnm_denoiser(counted, system, class_labels, sigmas=grid32 if native else None)

        extra = {"noise_fn": range_noise_budget(system, grid32)} if native else {}
        x_hat, nfe = posterior_from_noise(prior, make_denoiser, rx.batch, link.shape, steps, sampler, generator,
                                          receiver="ddnm",
                                          sigma_max=sigma_max, dtype=F64, eta=eta, **extra)
    return ReceiverResult(x_hat, nfe=nfe, seconds=t.seconds,
                          extras={"steps": steps, "sampler": sampler, "rank": system.svd.rank.tolist()})
