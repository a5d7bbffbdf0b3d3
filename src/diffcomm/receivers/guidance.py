"""The shared sampler layer of the posterior receivers: conditional denoisers run by any sampler.

A posterior method is written as a **conditional denoiser** ``D_y(x, σ) ≈ E[x0 | x_σ, y]``: the
prior's Tweedie estimate x̂0 = D(x; σ) corrected by a data-fidelity term. Since the score of the
posterior is (D_y − x)/σ², any sampler of :mod:`diffcomm.diffusion.samplers` (Euler, Heun,
DDIM(η), DDPM ancestral, DPM-Solver++(2M), DiffPIR re-noising) then samples p(x | y) — the design
of azula's ``DiffPIRDenoiser`` and deepinv's ``PosteriorDiffusion(sde, denoiser, data_fidelity,
solver)``. A receiver is a data term, a start rule (noise at σ_max, or a channel-matched σ* from a
deterministic estimate) and a sampler name::

    x = run_sampler(sampler, posterior_denoiser, x_start, sigmas, generator, **sampler_options)

This module holds what several receivers share; each method's own term lives in its own module.

- :class:`CountingPrior`: the prior with its network evaluations counted (NFE).
- :func:`gradient_guided`: D_y = x̂0 − w(σ) ∇_{x_σ} L(x̂0) — the DPS family (Chung et al. 2023,
  Alg. 1; DiffCom; HiFi-DiffCom; blind), the gradient taken through the denoiser.
- :func:`dps_weight`: the CSI-adaptive, annealed weight w(σ) of that family, with its bound.
- :data:`SAMPLERS`, :func:`run_sampler`: samplers by name.

Example:
    >>> import torch
    >>> from diffcomm import zoo
    >>> from diffcomm.diffusion.schedules import sigma_grid
    >>> prior = CountingPrior(zoo.load("fmnist-prior"))
    >>> d = gradient_guided(prior, lambda x0: (x0 - 1).pow(2).flatten(1).sum(1), lambda s: 0.1)
    >>> x = run_sampler("heun", d, torch.randn(2, 1, 28, 28) * 80, sigma_grid(3, 0.002, 80.0))
    >>> x.shape, prior.nfe
    (torch.Size([2, 1, 28, 28]), 5)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from diffcomm.errors import DiffcommError

SAMPLERS = ("euler", "heun", "ddim", "ddpm", "dpmpp_2m", "renoise")
# Options a receiver forwards to its sampler when the sampler takes them (stochasticity knobs).
SAMPLER_OPTIONS = ("eta", "zeta")

# The likelihood's noise variance is floored at this model-mismatch level (per complex symbol):
# above ≈ 25 dB the prior/encoder mismatch, not the channel noise, limits what the data term can
# trust, and a step ∝ 1/N0 would overshoot (DPS fell from ≈21 dB at 20 dB SNR to ≈13 dB at 60 dB).
# Chosen on training images (the last 64 of the Fashion-MNIST train split, DeepJSCC link, AWGN,
# the committed grid's options): PSNR at 20 -> 30 dB was DPS 21.70 -> 21.12 / 21.88 / 21.81 and
# HiFi 24.93 -> 25.53 / 25.21 / 24.90 with floors 1e-3 / 10^-2.5 / 1e-2; only 10^-2.5 rises for both.
N0_FLOOR = 10 ** -2.5


class CountingPrior:
    """A model-space denoiser ``prior(x, σ, class_labels)`` with its calls counted (``nfe``, per batch call).

    Attributes not found here (``sigma_min``, ``to_pixels``, ...) are read from the prior.
    """

    def __init__(self, prior: Any):
        self.prior = prior
        self.nfe = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None,
                 **kwargs: Any) -> torch.Tensor:
        self.nfe += 1        # kwargs: a conditional model's condition (diffcomm.diffusion.conditional)
        return self.prior(x, sigma, class_labels, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name == "prior":
            raise AttributeError(name)
        return getattr(self.prior, name)


def batch_shape(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """σ as a tensor broadcastable against ``x`` (``(B, 1, ...)`` for per-row σ)."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return s.reshape(-1, *([1] * (x.ndim - 1))) if s.ndim else s


def gradient_guided(prior: CountingPrior, loss_fn: Callable[[torch.Tensor], torch.Tensor],
                    weight: Callable[[torch.Tensor], torch.Tensor | float], class_labels: torch.Tensor | None = None,
                    extra_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                    after: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> Callable[..., torch.Tensor]:
    """Conditional denoiser D_y(x, σ) = x̂0 − w(σ) ∇_x [L(x̂0) + L_extra(x̂0, x)], x̂0 = D(x; σ).

    ``loss_fn(x0_model) -> (B,)`` (e.g. ‖y − A(x̂0)‖²) is differentiated through the denoiser;
    ``weight(σ)`` gives w as a scalar or ``(B,)`` (σ is the ``(B,)`` level the sampler passes);
    ``extra_loss(x0, x)`` adds a further term with the same weight (semantic guidance);
    ``after(x0, σ)`` is called with the detached x̂0 after each evaluation (blind receivers update
    their channel estimate there). With Euler steps this is DPS's update
    x' = x + (σ' − σ)(x − x̂0)/σ − γ ∇L with γ = (σ − σ')·w/σ.
    """
    def denoise(x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = class_labels,
                **_: Any) -> torch.Tensor:
        x_req = x.detach().requires_grad_(True)
        with torch.enable_grad():
            x0 = prior(x_req, sigma, class_labels)
            total = loss_fn(x0).sum()
            if extra_loss is not None:
                total = total + extra_loss(x0, x_req).sum()
            grad = torch.autograd.grad(total, x_req)[0]
        x0 = x0.detach()
        if after is not None:
            after(x0, sigma)
        return x0 - batch_shape(weight(sigma), x) * grad
    return denoise


Scalar = float | torch.Tensor | Callable[[], float | torch.Tensor]


def dps_weight(n0: Scalar, zeta: float, kappa: float, gain2: Scalar = 1.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """w(σ) = ζ σ max(σ, 10⁻³) / (max(N0, N0_floor·``|ĥ|²``) + κ σ²/(1 + σ²)) for :func:`gradient_guided`.

    This is σ² times the score weight of p(y | x_σ) ≈ N(y; A(x̂0), (N0 + ρ_σ²) I) with
    ρ_σ² = κ σ²/(1 + σ²) the prior's uncertainty about A(x̂0) (DiffCom's CSI-adaptive, annealed step:
    ∝ 1/N0 once ρ_σ² < N0, ∝ 1/ρ_σ² early on). **Bound**: the post-equalisation noise N0/``|ĥ|²`` is
    floored at :data:`N0_FLOOR` (25 dB) per image (``gain2`` = mean ``|ĥ|²`` per image, 1 for AWGN), so
    the step relative to the curvature ``|ĥ|²`` of the data term never grows without limit as N0 → 0
    or on a strong fading gain. ``n0`` and ``gain2`` may be floats, ``(B,)`` tensors or callables
    returning either (blind receivers re-estimate them).
    """
    def weight(sigma: torch.Tensor) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=torch.float64)
        noise = torch.as_tensor(n0() if callable(n0) else n0, dtype=torch.float64)
        g2 = torch.as_tensor(gain2() if callable(gain2) else gain2, dtype=torch.float64)
        noise = torch.maximum(noise, N0_FLOOR * g2)
        rho2 = kappa * s * s / (1 + s * s)
        return (zeta * s * s.clamp_min(1e-3) / (noise + rho2)).to(torch.float32)
    return weight


def gain_power(rx, h: torch.Tensor | None = None) -> torch.Tensor | float:
    """Mean ``|ĥ|²`` per image ``(B,)`` (1.0 without CSI): the curvature scale of the data term."""
    h = rx.h_hat if h is None else h
    if h is None:
        return 1.0
    return h.abs().pow(2).reshape(rx.batch, -1).mean(1).double()


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """The sampler function of :mod:`diffcomm.diffusion.samplers` for one of :data:`SAMPLERS`."""
    from diffcomm.diffusion.sampling import get_sampler as by_name

    if name not in SAMPLERS:
        raise DiffcommError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return by_name(name)


def sampler_options(name: str, **candidates: Any) -> dict[str, Any]:
    """The subset of ``candidates`` (e.g. ``eta``, ``zeta``) that sampler ``name`` takes."""
    params = inspect.signature(get_sampler(name)).parameters
    return {k: v for k, v in candidates.items() if k in params}


def posterior_from_noise(prior: Any, make_denoiser: Callable[[CountingPrior], Callable[..., torch.Tensor]],
                         batch: int, shape: tuple[int, ...], steps: int, sampler: str,
                         generator: torch.Generator | None = None, sigma_max: float | None = None,
                         dtype: torch.dtype = torch.float32, receiver: str = "receiver",
                         **sampler_candidates: Any) -> tuple[torch.Tensor, int]:
    """The loop of every receiver that starts from pure noise: returns (pixels in [0, 1], NFE per image).

    A :func:`~diffcomm.diffusion.schedules.sigma_grid` of ``steps`` levels from ``sigma_max``
    (default the prior's) to the prior's σ_min, ``x = σ_max ε``, then sampler ``name`` on the
    conditional denoiser ``make_denoiser(counted_prior)``; ``sampler_candidates`` (``eta``, ``zeta``,
    ``s_churn``) are passed where the sampler takes them.
    """
    from diffcomm.diffusion.schedules import sigma_grid

    top = prior.sigma_max if sigma_max is None else sigma_max
    if not prior.sigma_min <= top <= prior.sigma_max * 10:
        raise DiffcommError(f"{receiver}: sigma_max must lie between the prior's sigma_min ({prior.sigma_min:g}) "
                            f"and about its sigma_max ({prior.sigma_max:g}); got {sigma_max!r}")
    counted = CountingPrior(prior)
    sigmas = sigma_grid(steps, prior.sigma_min, top, dtype=dtype)
    x = torch.randn((batch, *shape), generator=generator) * float(sigmas[0])
    x = run_sampler(sampler, make_denoiser(counted), x, sigmas, generator,
                    **sampler_options(sampler, **sampler_candidates))
    return prior.to_pixels(x).clamp(0, 1), counted.nfe


def run_sampler(name: str, denoiser: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor,
                generator: torch.Generator | None = None, **options: Any) -> torch.Tensor:
    """Run sampler ``name`` on a (conditional) denoiser from state ``x`` at ``sigmas[..., 0]``."""
    return get_sampler(name)(denoiser, x, sigmas, generator=generator, **options)
