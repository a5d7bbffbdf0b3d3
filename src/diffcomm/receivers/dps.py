"""DPS receiver (DiffCom): posterior sampling guided by the raw received signal.

Chung, Kim, Mccann, Klasky, Ye, "Diffusion Posterior Sampling for General Noisy Inverse
Problems", ICLR 2023 (Alg. 1), as used for semantic decoding by DiffCom (Wang et al., "DiffCom:
Channel Received Signal is a Natural Condition to Guide Diffusion Posterior Sampling", 2024):
the likelihood of the *received symbols* is approximated through Tweedie's denoised estimate, ::

    p(y | x_σ) ≈ N(y; A(x̂0(x_σ)), (N0 + ρ_σ²) I),     x̂0 = D(x_σ; σ),

with A = h ∘ g ∘ E the *nonlinear* link (DeepJSCC encoder, power normalisation, fading; any
link's :meth:`~diffcomm.link.Link.operator`) and the gradient taken through the denoiser and the
encoder. As a conditional denoiser (:func:`diffcomm.receivers.guidance.gradient_guided`) ::

    D_y(x, σ) = x̂0 − w(σ) ∇_x ‖y − A(x̂0)‖²,   w(σ) = ζ σ² / (max(N0, N0_floor) + κ σ²/(1 + σ²)),

which any sampler runs; with the default Euler sampler on an EDM σ grid (Karras et al. 2022) this
is DiffCom's CSI-adaptive, annealed step γ_i = ζ (σ_i − σ_{i+1}) σ_i / (N0 + ρ_i²). ζ = 1 is the
plain posterior ODE; ζ > 1 sharpens data consistency, as DPS's tuned step does; κ scales ρ.

**Step bound.** N0/``|ĥ|²`` is floored at N0_floor = 10^-2.5 (25 dB; :func:`~diffcomm.receivers.guidance.dps_weight`),
so the step is at most ζ σ²(1 + σ²)/κ at every SNR and does not overshoot as N0 → 0.

Example:
    >>> import torch
    >>> from diffcomm import zoo
    >>> from diffcomm.pipeline import build_link
    >>> link = build_link("gaussian", (1, 28, 28), "1/16", "awgn", snr_db=10.0)
    >>> gen = torch.Generator().manual_seed(0)
    >>> rx = link.transmit(torch.rand(2, 1, 28, 28), generator=gen)
    >>> res = dps_receiver(link, rx, zoo.load("fmnist-prior"), steps=5, generator=gen)
    >>> res.x_hat.shape, res.nfe
    (torch.Size([2, 1, 28, 28]), 5)
    >>> bool(res.x_hat.min() >= 0 and res.x_hat.max() <= 1)
    True
"""

from __future__ import annotations

import torch

from diffcomm.receivers.base import Option, ReceiverResult, Timer, complex_sq_norm, register_receiver
from diffcomm.receivers.guidance import SAMPLERS, dps_weight, gain_power, gradient_guided, posterior_from_noise
from diffcomm.receivers.semantic import SEMANTIC_OPTION, semantic_loss


@register_receiver(
    "dps", description="DiffCom: DPS through the (nonlinear) link", link="any", prior="denoiser",
    paper="Chung et al., ICLR 2023 (DPS); Wang et al. 2024 (DiffCom)",
    options={"steps": Option(int, 1, 1000),
             "zeta": Option(float, 0, 100, open_low=True, tune=(0.5, 1.0, 2.0, 3.0, 5.0, 8.0)),
             "kappa": Option(float, 0, 100, open_low=True), "churn": Option(float, 0, 100),
             "sampler": Option(str, choices=SAMPLERS), "eta": Option(float, 0, 1), "semantic": SEMANTIC_OPTION})
def dps_receiver(link, rx, prior, *, steps: int = 30, zeta: float = 1.0, kappa: float = 1.0, churn: float = 0.0,
                 sampler: str = "euler", eta: float = 1.0, class_labels: torch.Tensor | None = None,
                 semantic=None, generator: torch.Generator | None = None) -> ReceiverResult:
    """DiffCom-style DPS: guidance by ‖y − A(x̂0)‖² through the (nonlinear) link; see the module docstring.

    ``sampler`` is any of :data:`~diffcomm.receivers.guidance.SAMPLERS`; ``churn`` (Euler/Heun) and
    ``eta`` (DDIM) set their stochasticity; ``semantic`` adds classifier guidance
    (:class:`diffcomm.receivers.semantic.SemanticGuidance`). NFE = network evaluations per image.
    """
    with Timer() as t:
        op = link.operator(rx)

        def data_fit(x0: torch.Tensor) -> torch.Tensor:
            return complex_sq_norm(rx.y - op(prior.to_pixels(x0).clamp(0, 1)))

        def make_denoiser(counted):
            return gradient_guided(counted, data_fit, dps_weight(rx.n0, zeta, kappa, gain_power(rx)), class_labels,
                                   extra_loss=semantic_loss(semantic, prior))

        x_hat, nfe = posterior_from_noise(prior, make_denoiser, rx.batch, link.shape, steps, sampler, generator,
                                          receiver="dps",
                                          eta=eta, s_churn=churn)
    return ReceiverResult(x_hat, nfe=nfe, seconds=t.seconds,
                          extras={"steps": steps, "zeta": zeta, "kappa": kappa, "sampler": sampler})
