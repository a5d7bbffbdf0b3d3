"""DiffPIR receiver for linear links: plug-and-play half-quadratic splitting with a diffusion denoiser.

Zhu, Zhang, Liang, Cao, Wen, Timofte, Van Gool, "Denoising Diffusion Models for Plug-and-Play Image
Restoration", CVPR Workshops (NTIRE) 2023, Alg. 1. Each step (σ = σ̄_t = sqrt((1 − ᾱ_t)/ᾱ_t), the EDM
noise level of the paper's eq. (6)):

1. prior step: x0 = D(x_σ; σ) (Tweedie's estimate);
2. data step, eq. (11)-(13): x̂0 = argmin_x ‖y − A x‖² + ρ_σ ‖x − x0‖²,  ρ_σ = λ σ_y² / σ²,
   solved exactly for the linear model-space system y_m = A_m x_m + n
   (:func:`diffcomm.receivers.base.model_space`) through the link operator's SVD, factorised once per
   batch: x̂0 = x0 + V diag(s_i/(s_i² + ρ)) Uᵀ (y − A x0) (:meth:`diffcomm.link.ModelSpaceSystem.prox`).
   (Dividing the objective by σ_y²: ‖y − Ax‖²/σ_y² + (λ/σ²)‖x − x0‖², i.e. λ = 1 treats x0 as
   N(x̂0, σ² I) information, the paper's choice of ρ.)
3. re-noise, Alg. 1 lines 5-7: ε̂ = (x_σ − x̂0)/σ, x_σ' = x̂0 + σ' (sqrt(1 − ζ) ε̂ + sqrt(ζ) z)
   (:func:`diffcomm.diffusion.samplers.sample_renoise`, the default sampler).

Steps 1-2 form a conditional denoiser D_y = prox(D(x; σ)) (as azula's ``DiffPIRDenoiser``), so any
sampler runs it. ζ = 1 draws fresh noise every step, ζ = 0 is deterministic (DDIM-like). The paper
tunes λ and ζ per task (e.g. λ ≈ 1-8, ζ ≈ 0.3-1); the defaults here are λ = 1, ζ = 1.

**Step bound.** The proximal step moves x0 at most to the least-squares solution (s_i/(s_i² + ρ) ≤ 1/s_i),
whatever σ_y. NFE = ``steps``.

Example:
    >>> import torch
    >>> from diffcomm import zoo
    >>> from diffcomm.pipeline import build_link
    >>> link = build_link("gaussian", (1, 28, 28), "1/16", "awgn", snr_db=10.0)
    >>> gen = torch.Generator().manual_seed(0)
    >>> rx = link.transmit(torch.rand(2, 1, 28, 28), generator=gen)
    >>> res = diffpir_receiver(link, rx, zoo.load("fmnist-prior"), steps=5, generator=gen)
    >>> res.x_hat.shape, res.nfe
    (torch.Size([2, 1, 28, 28]), 5)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffcomm.receivers.base import Option, ReceiverResult, Timer, model_space, register_receiver
from diffcomm.receivers.guidance import SAMPLERS, CountingPrior, posterior_from_noise


def diffpir_denoiser(prior: CountingPrior, system, lam: float,
                     class_labels: torch.Tensor | None = None) -> Callable[..., torch.Tensor]:
    """DiffPIR's conditional denoiser: the proximal data step (eq. 13) applied to x̂0 = D(x; σ)."""
    def denoise(x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = class_labels,
                **_) -> torch.Tensor:
        with torch.no_grad():
            x0 = prior(x, sigma, class_labels)
        rho = lam * system.noise_var / torch.as_tensor(sigma, dtype=torch.float64) ** 2
        return system.prox(x0, rho).to(x.dtype).reshape(x.shape)
    return denoise


@register_receiver(
    "diffpir", description="DiffPIR proximal data step (linear links)", link="linear", prior="denoiser",
    paper="Zhu et al., CVPRW 2023 (DiffPIR)",
    options={"steps": Option(int, 1, 1000),
             "lam": Option(float, 0, 1000, open_low=True, tune=(0.125, 0.25, 0.5, 1.0, 2.0, 4.0)),
             "zeta": Option(float, 0, 1, tune=(0.0, 0.3, 0.6, 1.0)),
             "sigma_max": Option(float, 0, 1000, open_low=True, optional=True),
             "sampler": Option(str, choices=SAMPLERS), "eta": Option(float, 0, 1)})
def diffpir_receiver(link, rx, prior, *, steps: int = 100, lam: float = 1.0, zeta: float = 1.0,
                     sigma_max: float | None = None, sampler: str = "renoise", eta: float = 1.0,
                     class_labels: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> ReceiverResult:
    """DiffPIR for a linear link; see the module docstring. ``lam`` is λ, ``zeta`` is ζ in [0, 1].

    Returns pixels in [0, 1]; ``nfe = steps`` with the default sampler.

    Example:
        >>> import torch
        >>> from diffcomm import zoo
        >>> from diffcomm.pipeline import build_link
        >>> link = build_link("gaussian", (1, 28, 28), "1/16", "awgn", snr_db=10.0)
        >>> gen = torch.Generator().manual_seed(0)
        >>> rx = link.transmit(torch.rand(2, 1, 28, 28), generator=gen)
        >>> res = diffpir_receiver(link, rx, zoo.load("fmnist-prior"), steps=4, lam=1.0, zeta=0.0, generator=gen)
        >>> res.nfe
        4
    """
    with Timer() as t:
        system = model_space(link, rx, prior)
        def make_denoiser(counted):
            return diffpir_denoiser(counted, system, lam, class_labels)

        x_hat, nfe = posterior_from_noise(prior, make_denoiser, rx.batch, link.shape, steps, sampler, generator,
                                          receiver="diffpir",
                                          sigma_max=sigma_max, dtype=torch.float64, zeta=zeta, eta=eta)
    return ReceiverResult(x_hat, nfe=nfe, seconds=t.seconds,
                          extras={"steps": steps, "lam": lam, "zeta": zeta, "sampler": sampler})
