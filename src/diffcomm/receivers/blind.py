"""Blind receiver: pilot-free decoding that estimates the block-fading gain jointly with the image.

In the spirit of Blind-DiffCom (Wang et al., DiffCom 2024, §V) and BlindDPS (Chung et al., "Parallel
Diffusion Models of Operator and Image for Blind Inverse Problems", CVPR 2023): the channel gain h
of a block-fading frame (one complex h per image, prior CN(0, 1)) and the noise level N0 are
unknown; they are estimated jointly with the image while the DPS sampler runs.

Algorithm (per image):

1. **Initialisation**. |ĥ|² = max(mean|y|² − N̂0, 0.05) from the received power (unit-power symbols).
   The phase is ambiguous from power alone: for each of ``n_phase`` candidate phases φ_j, equalise
   with ĥ_j = |ĥ|e^{iφ_j}, reconstruct deterministically (DeepJSCC decoder, or the pseudo-inverse for
   linear links), re-encode and keep the candidate with the smallest residual ‖y − ĥ_j A₁(x_j)‖²
   (A₁: the link with h = 1), then refine ĥ by a few alternations of reconstruction and the
   conditional MAP of step 2.
2. **Joint sampling**. DPS steps on x with the likelihood ‖y − ĥ A₁(x̂0)‖² (see
   :mod:`diffcomm.receivers.dps`); once the noise level has fallen below ``sigma_update`` (so that
   x̂0 carries information), after every step the exact conditional MAP update of h under its
   CN(0, 1) prior given s = A₁(x̂0) (an EM-style step, instead of BlindDPS's gradient step):

       ĥ = ⟨s, y⟩ / (‖s‖² + N̂0),     N̂0 = max(mean|y − ĥ s|², N0_floor)  (if ``estimate_noise``).

   By default the receiver knows its own noise power N0 (thermal noise is measured at the
   receiver); ``estimate_noise=True`` also estimates it from the residual.

Example:
    >>> res = blind_receiver(link, rx, zoo.load("fmnist-prior"))   # doctest: +SKIP
    >>> res.extras["h_hat"]                                          # doctest: +SKIP
"""

from __future__ import annotations

import math

import torch

from diffcomm.errors import DiffcommError
from diffcomm.receivers.base import ReceiverResult, Timer, check_received, complex_sq_norm
from diffcomm.receivers.dps import guided_sampling, karras_grid, likelihood_step


def _forward_h1(link, x: torch.Tensor, rx) -> torch.Tensor:
    ones = torch.ones(rx.y.shape, dtype=rx.y.dtype)
    return link.forward(x, rx, h=ones)


@torch.no_grad()
def _deterministic_reconstruction(link, rx, h: torch.Tensor, n0: torch.Tensor) -> torch.Tensor:
    from diffcomm.channels import equalize_mmse

    hk = h.reshape(-1, 1).expand_as(rx.y)
    model = getattr(link.encoder, "model", None)
    if model is not None and hasattr(model, "decode"):
        s_hat, _ = equalize_mmse(rx.y, hk, n0.reshape(-1, 1))
        snr = float(link.snr_db) + 10 * torch.log10(h.abs().pow(2).clamp_min(1e-6))
        return model.decode(s_hat, snr)
    if link.is_linear:
        return link.pinv(rx.y / hk, _with_gain(rx, hk)).clamp(0, 1)
    raise DiffcommError("blind receiver needs a DeepJSCC or linear link for its initial estimate")


def _with_gain(rx, h):
    import dataclasses

    return dataclasses.replace(rx, h_hat=torch.ones_like(h))


def initial_channel_estimate(link, rx, n_phase: int = 16, n0: float | None = None, refine: int = 3):
    """Step 1 of the module docstring: (ĥ (B,), N̂0 (B,)) from the received block alone."""
    power = rx.y.abs().pow(2).mean(1)
    n0_hat = torch.full_like(power, float(n0 if n0 is not None else rx.n0))
    mag = (power - n0_hat).clamp_min(0.05).sqrt()
    best_h, best_res = None, None
    for j in range(n_phase):
        h = mag * complex(math.cos(2 * math.pi * j / n_phase), math.sin(2 * math.pi * j / n_phase))
        x = _deterministic_reconstruction(link, rx, h, n0_hat)
        with torch.no_grad():
            res = complex_sq_norm(rx.y - h.reshape(-1, 1) * _forward_h1(link, x, rx))
        if best_res is None:
            best_h, best_res = h, res
        else:
            better = res < best_res
            best_h = torch.where(better, h, best_h)
            best_res = torch.where(better, res, best_res)
    for _ in range(refine):  # alternate: reconstruct with ĥ, then the conditional MAP of h given s = A₁(x)
        x = _deterministic_reconstruction(link, rx, best_h, n0_hat)
        with torch.no_grad():
            s = _forward_h1(link, x, rx)
            best_h = (s.conj() * rx.y).sum(1) / (complex_sq_norm(s) + n0_hat)
    return best_h, n0_hat


def blind_receiver(link, rx, prior, *, steps: int = 30, zeta: float = 1.0, kappa: float = 1.0, n_phase: int = 16,
                   estimate_noise: bool = False, sigma_update: float = 1.0, n0_floor: float = 1e-4, semantic=None,
                   generator: torch.Generator | None = None) -> ReceiverResult:
    """Joint image / channel-gain posterior sampling without pilots; see the module docstring."""
    check_received(link, rx, need_csi=False, receiver="blind")
    if not getattr(link.channel, "block", True):
        raise DiffcommError("blind receiver needs block fading (one h per frame); per-symbol fast fading is "
                            "not identifiable without pilots, use --csi estimated")
    with Timer() as t:
        h, n0_hat = initial_channel_estimate(link, rx, n_phase=n_phase)
        state = {"h": h, "n0": n0_hat}
        sigmas = karras_grid(prior, steps)
        x = torch.randn((rx.y.shape[0], *link.encoder.shape), generator=generator) * sigmas[0]

        def loss_fn(x0: torch.Tensor) -> torch.Tensor:
            s = _forward_h1(link, prior.to_pixels(x0).clamp(0, 1), rx)
            return complex_sq_norm(rx.y - state["h"].reshape(-1, 1) * s)

        def update_channel(info: dict) -> None:
            if float(info["sigma"]) > sigma_update:  # x̂0 is not informative yet: keep the initial estimate
                return
            with torch.no_grad():
                s = _forward_h1(link, prior.to_pixels(info["denoised"]).clamp(0, 1), rx)
                num = (s.conj() * rx.y).sum(1)
                state["h"] = num / (complex_sq_norm(s) + state["n0"])
                if estimate_noise:
                    resid = rx.y - state["h"].reshape(-1, 1) * s
                    state["n0"] = resid.abs().pow(2).mean(1).clamp_min(n0_floor)

        step_scale = likelihood_step(sigmas, lambda: state["n0"], zeta, kappa)
        guidance = semantic.term(prior) if semantic is not None else None
        x0, nfe = guided_sampling(prior, x, sigmas, loss_fn, step_scale, guidance=guidance,
                                  generator=generator, callback=update_channel)
    return ReceiverResult(prior.to_pixels(x0).clamp(0, 1), nfe=nfe, seconds=t.seconds,
                          extras={"h_hat": state["h"], "n0_hat": state["n0"], "steps": steps})
