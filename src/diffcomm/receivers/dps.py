"""DPS receiver (DiffCom): posterior sampling guided by the raw received signal.

Chung, Kim, Mccann, Klasky, Ye, "Diffusion Posterior Sampling for General Noisy Inverse
Problems", ICLR 2023 (Alg. 1), as used for semantic decoding by DiffCom (Wang et al., "DiffCom:
Channel Received Signal is a Natural Condition to Guide Diffusion Posterior Sampling", 2024):
the likelihood of the *received symbols* is approximated through Tweedie's denoised estimate,

    p(y | x_σ) ≈ N(y; A(x̂0(x_σ)), (N0 + ρ_σ²) I),     x̂0 = D(x_σ; σ),

with A = h ∘ g ∘ E the *nonlinear* link (DeepJSCC encoder, power normalisation, fading) and the
gradient taken through the denoiser and the encoder.

Sampler and step size (documented schedule). We integrate the reverse process on an EDM σ grid
(Karras et al. 2022) with Euler steps of the probability-flow ODE, optionally with churn, and add
the likelihood score in the same units, which gives the CSI-adaptive, annealed step

    x_{i+1} = x_i + (σ_{i+1} − σ_i)(x_i − x̂0)/σ_i − γ_i ∇_{x_i} ‖y − A(x̂0)‖²,
    γ_i = ζ · (σ_i − σ_{i+1}) σ_i / (N0 + ρ_i²),      ρ_i² = κ σ_i² / (1 + σ_i²),

i.e. γ ∝ 1/σ_n² once the prior's uncertainty ρ_i² about A(x̂0) has fallen below the channel noise,
and ∝ 1/ρ_i² early on (annealing). ζ = 1 is the plain posterior ODE; ζ > 1 sharpens data
consistency, as DPS's tuned step does. κ (default 1) scales ρ.

Example:
    >>> res = dps_receiver(link, rx, zoo.load("fmnist-prior"), steps=30)   # doctest: +SKIP
    >>> res.x_hat.shape, res.nfe                                             # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffcomm.receivers.base import ReceiverResult, Timer, check_received, complex_sq_norm


def karras_grid(prior, steps: int, sigma_max: float | None = None) -> torch.Tensor:
    from diffcomm.diffusion.schedules import karras_sigmas

    return karras_sigmas(steps, prior.sigma_min, sigma_max or prior.sigma_max)


def guided_sampling(prior, x: torch.Tensor, sigmas: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor],
                    step_scale: Callable[[int], torch.Tensor | float], class_labels: torch.Tensor | None = None,
                    guidance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                    churn: float = 0.0, generator: torch.Generator | None = None,
                    callback: Callable[[dict], None] | None = None) -> tuple[torch.Tensor, int]:
    """Euler probability-flow steps with a gradient correction −γ_i ∇_{x_i} loss(x̂0) per step.

    ``loss_fn(x0_model) -> (B,)`` is differentiated through the denoiser; ``step_scale(i)``
    gives γ_i (scalar or (B,)). ``guidance(x0, x)`` may add a further gradient term (semantic
    guidance) that is *subtracted* like the loss gradient. ``churn`` > 0 re-injects noise
    (Karras et al. 2022, Alg. 2 S_churn) for a stochastic sampler. Returns (x0, NFE).
    """
    nfe = 0
    n = len(sigmas) - 1
    for i in range(n):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        if churn > 0 and sigma_next > 0:
            gamma = min(churn / n, 2 ** 0.5 - 1)
            sigma_hat = sigma * (1 + gamma)
            noise = torch.randn(x.shape, generator=generator)
            x = x + (sigma_hat ** 2 - sigma ** 2).sqrt() * noise
            sigma = sigma_hat
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            x0 = prior(x, sigma, class_labels)
            nfe += 1
            loss = loss_fn(x0)
            total = loss.sum()
            if guidance is not None:
                total = total + guidance(x0, x).sum()
            grad = torch.autograd.grad(total, x)[0]
        x0 = x0.detach()
        scale = torch.as_tensor(step_scale(i), dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        if sigma_next > 0:
            x = x.detach() + (sigma_next - sigma) * (x.detach() - x0) / sigma - scale * grad
        else:
            x = x0 - scale * grad
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma, "denoised": x0, "loss": loss.detach()})
    return x.detach(), nfe


def likelihood_step(sigmas: torch.Tensor, n0, zeta: float, kappa: float) -> Callable[[int], torch.Tensor | float]:
    """γ_i = ζ (σ_i − σ_{i+1}) σ_i / (N0 + κ σ_i²/(1+σ_i²)); see the module docstring.

    ``n0`` is a float, a (B,) tensor, or a callable returning either (for receivers that
    re-estimate the noise level while sampling).
    """
    def scale(i: int):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        rho2 = kappa * s * s / (1 + s * s)
        noise = n0() if callable(n0) else n0
        return zeta * (s - s_next) * max(s, 1e-3) / (noise + rho2)
    return scale


def dps_receiver(link, rx, prior, *, steps: int = 30, zeta: float = 1.0, kappa: float = 1.0, churn: float = 0.0,
                 class_labels: torch.Tensor | None = None, semantic=None,
                 generator: torch.Generator | None = None) -> ReceiverResult:
    """DiffCom-style DPS: guidance by ‖y − A(x̂0)‖² through the (nonlinear) link."""
    check_received(link, rx, receiver="dps")
    with Timer() as t:
        b = rx.y.shape[0]
        shape = (b, *link.encoder.shape)
        sigmas = karras_grid(prior, steps)
        x = torch.randn(shape, generator=generator) * sigmas[0]

        def loss_fn(x0: torch.Tensor) -> torch.Tensor:
            return complex_sq_norm(rx.y - link.forward(prior.to_pixels(x0).clamp(0, 1), rx))

        guidance = semantic.term(prior) if semantic is not None else None
        x0, nfe = guided_sampling(prior, x, sigmas, loss_fn, likelihood_step(sigmas, rx.n0, zeta, kappa),
                                  class_labels=class_labels, guidance=guidance, churn=churn, generator=generator)
    return ReceiverResult(prior.to_pixels(x0).clamp(0, 1), nfe=nfe, seconds=t.seconds,
                          extras={"steps": steps, "zeta": zeta, "kappa": kappa})
