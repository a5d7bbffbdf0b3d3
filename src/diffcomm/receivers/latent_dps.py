"""Latent DPS receiver: posterior sampling in a latent diffusion prior, guided through A ∘ D.

Rout, Raoof, Daras, Caramanis, Dimakis, Shakkottai, "Solving Linear Inverse Problems Provably via
Posterior Sampling with Latent Diffusion Models" (PSLD), NeurIPS 2023; Song, Kwon, Zhang, Hu, Qu,
Shen, "Solving Inverse Problems with Latent Diffusion Models via Hard Data Consistency" (ReSample),
ICLR 2024. Both start from *latent DPS*: the reverse process runs in the latent of an autoencoder
(:class:`~diffcomm.diffusion.autoencoder.LatentPrior`, Rombach et al. 2022) and the likelihood of the
received symbols is approximated through the decoded Tweedie estimate,

    p(y | z_σ) ≈ N(y; A(D(ẑ0(z_σ))), (N0 + ρ_σ²) I),    ẑ0 = D_θ(z_σ; σ),

with A = link.operator(rx) (any link: DeepJSCC encoder, power normalisation, fading) and D the
decoder, so the gradient flows through the latent denoiser, the decoder and the encoder of the link.
As a conditional denoiser (:func:`~diffcomm.receivers.guidance.gradient_guided`)

    D_y(z, σ) = ẑ0 − w(σ) ∇_z [‖y − A(D(ẑ0))‖² + γ ‖ẑ0 − E(D(ẑ0))‖²],

w(σ) the CSI-adaptive annealed weight of DPS (:func:`~diffcomm.receivers.guidance.dps_weight`, with
its N0 floor), run by any sampler from pure noise in ``prior.latent_shape``; the final latent is
decoded. γ (default 0: plain latent DPS) adds PSLD's "gluing" idea in the form that needs no
adjoint of A: it pulls ẑ0 towards a fixed point of E ∘ D, i.e. towards latents the autoencoder
reproduces (PSLD's own gluing term uses Aᵀ, which a nonlinear DeepJSCC link does not have).
ReSample's hard data-consistency optimisation is not implemented.

**Cost.** One evaluation is a latent U-Net pass on a 4×7×7 latent plus the decoder, each with its
backward pass, against a U-Net pass on 1×28×28 for pixel DPS: ``extras["seconds_per_evaluation"]``
(the batch's wall time / NFE) and ``bench/latent_cost.py`` measure both.

**Defaults** (ζ, κ, γ) were chosen on training images only: the last 64 images of the Fashion-MNIST
*train* split, the DeepJSCC link (``pipeline.build_link("deepjscc", (1, 28, 28), "1/16", "awgn", 10)``,
channel seed 0, receiver seed 1), 30 Euler steps, the shipped ``fmnist-latent-prior``; mean PSNR over
ζ ∈ {0.25, 0.5, 1, 2, 3, 5} at κ = 1: 17.07 / 19.09 / 20.52 / 21.56 / 21.79 / 21.62 dB, so ζ = 3;
κ ∈ {0.3, 1, 3} at ζ = 3: 20.81 / 21.79 / 21.23 dB, so κ = 1; γ ∈ {0, 0.1, 0.3, 1} at ζ = 3:
21.79 / 21.58 / 21.68 / 21.11 dB, so γ = 0 (``bench/latent_cost.py --tune`` reruns it). On the same
images the DeepJSCC decoder alone gives 22.96 dB: with this 26.4 dB autoencoder the latent receiver
does not beat the plain decoder at 10 dB.

Example:
    >>> import torch
    >>> from diffcomm import zoo
    >>> from diffcomm.pipeline import build_link
    >>> link = build_link("deepjscc", (1, 28, 28), "1/16", "awgn", snr_db=10.0)
    >>> gen = torch.Generator().manual_seed(0)
    >>> rx = link.transmit(torch.rand(2, 1, 28, 28), generator=gen)
    >>> res = latent_dps_receiver(link, rx, zoo.load("fmnist-latent-prior"), steps=4, generator=gen)
    >>> res.x_hat.shape, res.nfe, res.extras["latent_shape"]
    (torch.Size([2, 1, 28, 28]), 4, [4, 7, 7])
    >>> res.extras["seconds_per_evaluation"] > 0
    True
"""

from __future__ import annotations

from typing import Any

import torch

from diffcomm.errors import DiffcommError
from diffcomm.receivers.base import Option, ReceiverResult, Timer, complex_sq_norm, register_receiver
from diffcomm.receivers.guidance import SAMPLERS, dps_weight, gain_power, gradient_guided, posterior_from_noise


def check_latent_prior(prior: Any, shape: tuple[int, ...], receiver: str = "latent_dps") -> None:
    """One-line error unless ``prior`` is a latent prior (denoiser on ``latent_shape`` + ``decode``) for ``shape``."""
    missing = [n for n in ("latent_shape", "image_shape", "decode", "encode", "sigma_min", "sigma_max")
               if not hasattr(prior, n)]
    if not callable(prior) or missing:
        raise DiffcommError(f"{receiver}: prior must be a latent diffusion prior (diffcomm.zoo.load('fmnist-latent-"
                            f"prior'), a LatentPrior); missing {', '.join(missing) or 'a __call__'}")
    if tuple(prior.image_shape) != tuple(shape):
        raise DiffcommError(f"{receiver}: the latent prior decodes {'x'.join(map(str, prior.image_shape))} images but "
                            f"the link codes {'x'.join(map(str, shape))} images")


def latent_operator(link, rx, prior, clamp: bool = True):
    """The composed operator z ↦ A(D(z)) (complex ``(B, k)``) for scaled latents ``z``; differentiable in z.

    ``A = link.operator(rx)`` (the noiseless link the receiver sees), ``D = prior.decode`` (pixels,
    clamped to [0, 1] unless ``clamp=False``, as pixel DPS clamps its x̂0).
    """
    op = link.operator(rx)

    def apply(z: torch.Tensor) -> torch.Tensor:
        return op(prior.decode(z, clamp=clamp))
    return apply


@register_receiver(
    "latent_dps", description="latent DPS: guidance through the decoder and the link (A ∘ D)", link="any",
    prior="latent",
    paper="Rout et al., NeurIPS 2023 (PSLD); Song et al., ICLR 2024 (ReSample); Rombach et al., CVPR 2022 (LDM)",
    options={"steps": Option(int, 1, 1000),
             "zeta": Option(float, 0, 100, open_low=True, tune=(0.25, 0.5, 1.0, 2.0, 3.0, 5.0)),
             "kappa": Option(float, 0, 100, open_low=True),
             "gamma": Option(float, 0, 100, help="weight of the autoencoder-consistency term ‖ẑ0 − E(D(ẑ0))‖²"),
             "churn": Option(float, 0, 100), "sampler": Option(str, choices=SAMPLERS), "eta": Option(float, 0, 1)})
def latent_dps_receiver(link, rx, prior, *, steps: int = 30, zeta: float = 3.0, kappa: float = 1.0,
                        gamma: float = 0.0, churn: float = 0.0, sampler: str = "euler", eta: float = 1.0,
                        class_labels: torch.Tensor | None = None,
                        generator: torch.Generator | None = None) -> ReceiverResult:
    """Latent DPS through ``A ∘ D``; see the module docstring. Output: decoded pixels in [0, 1].

    NFE = latent-denoiser evaluations per image; ``extras["seconds_per_evaluation"]`` is the batch's
    wall time divided by the NFE (denoiser, decoder, link and their gradients).
    """
    check_latent_prior(prior, link.shape)
    with Timer() as t:
        forward = latent_operator(link, rx, prior)

        def data_fit(z0: torch.Tensor) -> torch.Tensor:
            return complex_sq_norm(rx.y - forward(z0))

        def gluing(z0: torch.Tensor, _z: torch.Tensor) -> torch.Tensor:
            return gamma * (z0 - prior.encode(prior.decode(z0))).pow(2).flatten(1).sum(1)

        def make_denoiser(counted):
            return gradient_guided(counted, data_fit, dps_weight(rx.n0, zeta, kappa, gain_power(rx)), class_labels,
                                   extra_loss=gluing if gamma > 0 else None)

        x_hat, nfe = posterior_from_noise(prior, make_denoiser, rx.batch, tuple(prior.latent_shape), steps, sampler,
                                          generator, receiver="latent_dps", eta=eta, s_churn=churn)
    return ReceiverResult(x_hat, nfe=nfe, seconds=t.seconds,
                          extras={"steps": steps, "zeta": zeta, "kappa": kappa, "gamma": gamma, "sampler": sampler,
                                  "latent_shape": list(prior.latent_shape),
                                  "seconds_per_evaluation": t.seconds / max(nfe, 1)})
