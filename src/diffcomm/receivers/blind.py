"""Blind receiver: pilot-free decoding that estimates the block-fading gain jointly with the image.

In the spirit of Blind-DiffCom (Wang et al., DiffCom 2024, §V) and BlindDPS (Chung et al., "Parallel
Diffusion Models of Operator and Image for Blind Inverse Problems", CVPR 2023): the channel gain h
of a block-fading frame (one complex h per image, prior CN(0, 1)) and the noise level N0 are
unknown; they are estimated jointly with the image while the sampler runs.

Algorithm (per image):

1. **Initialisation**. |ĥ|² = max(mean|y|² − N̂0, 0.05) from the received power (unit-power symbols).
   The phase is ambiguous from power alone: for each of ``n_phase`` candidate phases φ_j, equalise
   with ĥ_j = |ĥ|e^{iφ_j}, reconstruct deterministically (DeepJSCC decoder, or the pseudo-inverse for
   linear links), re-encode and keep the candidate with the smallest residual ‖y − ĥ_j A₁(x_j)‖²
   (A₁: the link with h = 1), then refine ĥ by a few alternations of reconstruction and the
   conditional MAP of step 2.
2. **Joint sampling**. DPS's conditional denoiser (:mod:`diffcomm.receivers.dps`) with the
   likelihood ‖y − ĥ A₁(x̂0)‖², run by any sampler; once the noise level has fallen below
   ``sigma_update`` (so that x̂0 carries information), after every evaluation the exact conditional
   MAP update of h under its CN(0, 1) prior given s = A₁(x̂0) (an EM-style step, instead of
   BlindDPS's gradient step):

       ĥ = ⟨s, y⟩ / (‖s‖² + N̂0),     N̂0 = max(mean|y − ĥ s|², N0_floor)  (if ``estimate_noise``).

   By default the receiver knows its own noise power N0 (thermal noise is measured at the
   receiver); ``estimate_noise=True`` also estimates it from the residual.

It decodes without CSI (registered with ``csi="none"``); given a link with CSI it refuses rather
than silently ignore it. **Step bound**: DPS's weight with N0/|ĥ|² floored at 10^-2.5 (25 dB).

Example:
    >>> res = blind_receiver(link, rx, zoo.load("fmnist-prior"))   # doctest: +SKIP
    >>> res.extras["h_hat"]                                          # doctest: +SKIP
"""

from __future__ import annotations

import math

import torch

from diffcomm.errors import DiffcommError
from diffcomm.receivers.base import (
    Option,
    ReceiverResult,
    Timer,
    complex_sq_norm,
    jscc_reconstruction,
    register_receiver,
)
from diffcomm.receivers.guidance import SAMPLERS, dps_weight, gradient_guided, posterior_from_noise


@torch.no_grad()
def _deterministic_reconstruction(link, rx, h: torch.Tensor, n0: torch.Tensor) -> torch.Tensor:
    hk = h.reshape(-1, 1).expand_as(rx.y)
    if link.kind == "jscc":
        return jscc_reconstruction(link, rx, h=hk, n0=n0)
    if link.is_linear:
        return link.operator(rx, h=hk).pinv(rx.y).clamp(0, 1)
    raise DiffcommError("blind receiver needs a DeepJSCC or linear link for its initial estimate")


def initial_channel_estimate(link, rx, n_phase: int = 16, n0: float | None = None, refine: int = 3):
    """Step 1 of the module docstring: (ĥ (B,), N̂0 (B,)) from the received block alone."""
    unit = link.operator(rx, h=torch.ones(rx.y.shape, dtype=rx.y.dtype))
    power = rx.y.abs().pow(2).mean(1)
    n0_hat = torch.full_like(power, float(n0 if n0 is not None else rx.n0))
    mag = (power - n0_hat).clamp_min(0.05).sqrt()
    best_h, best_res = None, None
    for j in range(n_phase):
        h = mag * complex(math.cos(2 * math.pi * j / n_phase), math.sin(2 * math.pi * j / n_phase))
        x = _deterministic_reconstruction(link, rx, h, n0_hat)
        with torch.no_grad():
            res = complex_sq_norm(rx.y - h.reshape(-1, 1) * unit(x))
        if best_res is None:
            best_h, best_res = h, res
        else:
            better = res < best_res
            best_h = torch.where(better, h, best_h)
            best_res = torch.where(better, res, best_res)
    for _ in range(refine):  # alternate: reconstruct with ĥ, then the conditional MAP of h given s = A₁(x)
        x = _deterministic_reconstruction(link, rx, best_h, n0_hat)
        with torch.no_grad():
            s = unit(x)
            best_h = (s.conj() * rx.y).sum(1) / (complex_sq_norm(s) + n0_hat)
    return best_h, n0_hat


@register_receiver(
    "blind", description="pilot-free joint channel/image estimation", link="any", csi="none", prior="denoiser",
    paper="Wang et al. 2024 (Blind-DiffCom); Chung et al., CVPR 2023 (BlindDPS)",
    options={"steps": Option(int, 1, 1000),
             "zeta": Option(float, 0, 100, open_low=True, tune=(0.5, 1.0, 2.0, 3.0, 5.0, 8.0)),
             "kappa": Option(float, 0, 100, open_low=True), "n_phase": Option(int, 1, 360),
             "estimate_noise": Option(bool), "sigma_update": Option(float, 0, 1000),
             "n0_floor": Option(float, 0, 10, open_low=True), "sampler": Option(str, choices=SAMPLERS),
             "eta": Option(float, 0, 1)})
def blind_receiver(link, rx, prior, *, steps: int = 30, zeta: float = 1.0, kappa: float = 1.0, n_phase: int = 16,
                   estimate_noise: bool = False, sigma_update: float = 1.0, n0_floor: float = 1e-4,
                   sampler: str = "euler", eta: float = 1.0, semantic=None,
                   generator: torch.Generator | None = None) -> ReceiverResult:
    """Joint image / channel-gain posterior sampling without pilots; see the module docstring."""
    if not getattr(link.channel, "block", True) or link.blocks != 1:
        raise DiffcommError("blind receiver needs block fading with one gain per frame; fast fading or several "
                            "coherence blocks are not identifiable without pilots, use --csi estimated")
    with Timer() as t:
        unit = link.operator(rx, h=torch.ones(rx.y.shape, dtype=rx.y.dtype))
        h, n0_hat = initial_channel_estimate(link, rx, n_phase=n_phase)
        state = {"h": h, "n0": n0_hat}

        def data_fit(x0: torch.Tensor) -> torch.Tensor:
            s = unit(prior.to_pixels(x0).clamp(0, 1))
            return complex_sq_norm(rx.y - state["h"].reshape(-1, 1) * s)

        def update_channel(x0: torch.Tensor, sigma: torch.Tensor) -> None:
            if float(torch.as_tensor(sigma).max()) > sigma_update:  # x̂0 not informative yet: keep the estimate
                return
            with torch.no_grad():
                s = unit(prior.to_pixels(x0).clamp(0, 1))
                state["h"] = (s.conj() * rx.y).sum(1) / (complex_sq_norm(s) + state["n0"])
                if estimate_noise:
                    resid = rx.y - state["h"].reshape(-1, 1) * s
                    state["n0"] = resid.abs().pow(2).mean(1).clamp_min(n0_floor)

        def make_denoiser(counted):
            weight = dps_weight(lambda: state["n0"], zeta, kappa, lambda: state["h"].abs().pow(2))
            return gradient_guided(counted, data_fit, weight, after=update_channel,
                                   extra_loss=semantic.term(prior) if semantic is not None else None)

        x_hat, nfe = posterior_from_noise(prior, make_denoiser, rx.batch, link.shape, steps, sampler, generator,
                                          receiver="blind",
                                          eta=eta)
    return ReceiverResult(x_hat, nfe=nfe, seconds=t.seconds,
                          extras={"h_hat": state["h"], "n0_hat": state["n0"], "steps": steps, "sampler": sampler})
