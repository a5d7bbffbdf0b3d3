"""HiFi-DiffCom receiver: DPS plus a "confirming" constraint and a channel-matched start.

Following HiFi-DiffCom (Wang et al., "DiffCom: Channel Received Signal is a Natural Condition to
Guide Diffusion Posterior Sampling", 2024, §IV), on top of the DPS likelihood term (see
:mod:`diffcomm.receivers.dps`):

1. **Confirming term**: re-encode x̂0, pass it through the *noiseless* link and the DeepJSCC
   decoder, and match the decoder's deterministic reconstruction from the received signal:

       L = ‖y − A(x̂0)‖² + λ N0 ‖Dec(Enc(x̂0)) − Dec(EQ(y))‖²,

   so the sample stays where the JSCC decoder "agrees" with what was received.
2. **Channel-matched start**: instead of pure noise at σ_max, start at
   x_{σ*} = x_jscc + σ* ε with σ* = c · 10^(−SNR/20) (the schedule level whose SNR matches the
   channel SNR, as in CDDM; the SNR capped at 25 dB like the likelihood's N0, :func:`start_sigma`),
   and run ``steps`` levels from σ* (:func:`~diffcomm.diffusion.schedules.sigma_grid`: a start at or
   below the prior's σ_min is a single denoising step, never repeated levels).

Both terms form one conditional denoiser (:func:`~diffcomm.receivers.guidance.gradient_guided`)
that any sampler runs (default Euler, as DiffCom).

**Step bound.** The weight is DPS's, with N0/``|ĥ|²`` floored at 10^-2.5 (25 dB), so at most ζ σ²(1 + σ²)/κ;
the confirming term's weight λ·max(N0, N0_floor) shrinks with the noise down to the floor.

Example:
    >>> import torch
    >>> from diffcomm import zoo
    >>> from diffcomm.pipeline import build_link
    >>> link = build_link("deepjscc", (1, 28, 28), "1/16", "awgn", snr_db=10.0)
    >>> gen = torch.Generator().manual_seed(0)
    >>> rx = link.transmit(torch.rand(2, 1, 28, 28), generator=gen)
    >>> res = hifi_receiver(link, rx, zoo.load("fmnist-prior"), steps=4, generator=gen)
    >>> res.nfe, round(res.extras["sigma_start"], 3)     # σ* = 10^(−10/20) at 10 dB
    (4, 0.316)
"""

from __future__ import annotations

import torch

from diffcomm.receivers.base import (
    Option,
    ReceiverResult,
    Timer,
    complex_sq_norm,
    decoder_snr,
    jscc_model,
    jscc_reconstruction,
    register_receiver,
)
from diffcomm.receivers.guidance import (
    N0_FLOOR,
    SAMPLERS,
    CountingPrior,
    dps_weight,
    gain_power,
    gradient_guided,
    run_sampler,
    sampler_options,
)
from diffcomm.receivers.semantic import SEMANTIC_OPTION, semantic_loss


def start_sigma(snr_db: float, scale: float, sigma_max: float) -> float:
    """σ* = c·10^(−min(SNR, SNR_floor)/20) = c·sqrt(max(N0, N0_floor)) in model space, at most σ_max.

    The SNR is capped where the likelihood's N0 is floored (:data:`~diffcomm.receivers.guidance.N0_FLOOR`,
    25 dB): a start far below that leaves the sampler nothing to refine (at 60 dB σ* would be 10⁻³,
    under the prior's σ_min, and the output fell back towards the DeepJSCC decoder's).
    """
    n0 = max(10 ** (-snr_db / 10), N0_FLOOR)
    return float(min(scale * n0 ** 0.5, sigma_max))


@register_receiver(
    "hifi", description="HiFi-DiffCom: DPS + confirming term + SNR-matched start", link="jscc", prior="denoiser",
    paper="Wang et al. 2024 (DiffCom / HiFi-DiffCom)",
    options={"steps": Option(int, 1, 1000),
             "zeta": Option(float, 0, 100, open_low=True, tune=(0.5, 1.0, 2.0, 3.0, 5.0, 8.0)),
             "kappa": Option(float, 0, 100, open_low=True),
             "lam_confirm": Option(float, 0, 1000, tune=(0.0, 1.0, 3.0, 10.0, 30.0, 100.0)),
             "start_scale": Option(float, 0, 100, open_low=True), "sampler": Option(str, choices=SAMPLERS),
             "eta": Option(float, 0, 1), "semantic": SEMANTIC_OPTION})
def hifi_receiver(link, rx, prior, *, steps: int = 20, zeta: float = 1.0, kappa: float = 1.0,
                  lam_confirm: float = 1.0, start_scale: float = 1.0, sampler: str = "euler", eta: float = 1.0,
                  class_labels: torch.Tensor | None = None, semantic=None,
                  generator: torch.Generator | None = None) -> ReceiverResult:
    """HiFi-DiffCom: DPS + confirming term + channel-matched start; see the module docstring."""
    from diffcomm.diffusion.schedules import sigma_grid

    model = jscc_model(link)
    with Timer() as t:
        counted = CountingPrior(prior)
        op = link.operator(rx)
        with torch.no_grad():
            x_jscc = jscc_reconstruction(link, rx)
        snr = decoder_snr(model, link, rx)
        sigma_star = start_sigma(float(getattr(link, "receiver_snr_db", link.snr_db)), start_scale, prior.sigma_max)
        sigmas = sigma_grid(steps, prior.sigma_min, sigma_star)
        x = prior.to_model(x_jscc) + float(sigmas[0]) * torch.randn(x_jscc.shape, generator=generator)

        def data_fit(x0: torch.Tensor) -> torch.Tensor:
            x0_pix = prior.to_pixels(x0).clamp(0, 1)
            data = complex_sq_norm(rx.y - op(x0_pix))
            z = model.encode(x0_pix, snr)
            z = z / z.abs().pow(2).mean(1, keepdim=True).sqrt()
            confirm = (model.decode(z, snr) - x_jscc).pow(2).flatten(1).sum(1)
            return data + lam_confirm * max(rx.n0, N0_FLOOR) * confirm

        weight = dps_weight(rx.n0, zeta, kappa, gain_power(rx))
        denoiser = gradient_guided(counted, data_fit, weight, class_labels,
                                   extra_loss=semantic_loss(semantic, prior))
        x0 = run_sampler(sampler, denoiser, x, sigmas, generator, **sampler_options(sampler, eta=eta))
    return ReceiverResult(prior.to_pixels(x0).clamp(0, 1), nfe=counted.nfe, seconds=t.seconds,
                          extras={"sigma_start": float(sigmas[0]), "steps": len(sigmas) - 1, "sampler": sampler})
