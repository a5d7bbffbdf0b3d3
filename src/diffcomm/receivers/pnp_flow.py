"""PnP-Flow receiver: plug-and-play forward-backward splitting with a flow-matching denoiser.

Martin, Gagneux, Hagemann, Steidl, "PnP-Flow: Plug-and-play image restoration with flow matching",
ICLR 2025, Alg. 1 (PnP Flow Matching). In the paper's convention (t = 0 noise, t = 1 data,
x_t = t x1 + (1 − t) ε) each of N iterations at t_n = n/N does

    z   = x − γ_n ∇F(x)                 gradient step on the data fidelity F,  γ_n = γ (1 − t_n)^α
    z̃   = t_n z + (1 − t_n) ε           interpolation onto the flow path (fresh ε ~ N(0, I))
    x   = D_{t_n}(z̃) = z̃ + (1 − t_n) v(z̃, t_n)      the flow's denoiser E[x1 | x_t = z̃]

and returns the last x. In this package's convention (diffusion/flow.py: x_t = (1 − t) x0 + t ε,
σ = t/(1 − t)) the interpolation at time t is z + σ ε after dividing by 1 − t, and D is the EDM
denoiser at σ, so the algorithm runs unchanged on the flow prior (FlowDenoiser, where it is the
paper's denoiser exactly) and on the EDM prior:

    t_n = t_0 (1 − n/N),  σ_n = min(t_n/(1 − t_n), σ_max),  n = 0 … N − 1,
    z = x − (γ t_n^α / L) ∇F(x),   x = D(z + σ_n ε; σ_n).

With t_0 = 1 (the paper) the first iteration sees pure noise and returns the prior mean; t_0 < 1
starts from the link's cheap estimate x̂ (:class:`~diffcomm.receivers.fidelity.DataTerm`: the
pseudo-inverse for linear links, the DeepJSCC decoder for the ``jscc`` link). F(x) = ½‖y − A(x)‖²
in model space; ∇F = Aᵀ(Ax − y) through the link's model-space matrix for linear links, by autograd
through the encoder otherwise. The paper's step γ_n = lr·σ_y²·(1 − t)^α multiplies ∇F/σ_y², so its
noise level cancels; here the step is expressed in units of 1/L (L = ‖JᵀJ‖, exact for linear
links, a power iteration for DeepJSCC), so γ = 1 is one full step along the stiffest direction
whatever the encoder's scale, and γ < 2 keeps every gradient step a contraction. NFE = N = ``steps``.

**Defaults** (steps 4, γ = 0.5, α = 0.5, t_0 = 0.6): chosen on training images only — the last 64
images of the Fashion-MNIST train split, AWGN 0 and 10 dB, downsample and DeepJSCC links at CBR
1/16, the shipped fmnist-prior, mean PSNR over the four cells for γ ∈ {0.5, 1, 1.5},
α ∈ {0, 0.5, 1}, t_0 ∈ {0.6, 0.9, 1} (and t_0 ∈ {0.3, 0.45} at γ ∈ {0.5, 1}, α ∈ {0.5, 1};
``bench/few_step.py --tune pnp_flow`` reruns it). The
paper's t_0 = 1 spends the first of four evaluations on the prior mean (−1 to −7 dB here). The data
step is not noise-aware (the paper tunes lr per noise level): at 0 dB a full step fits the noise,
and through the DeepJSCC encoder gradient steps move away from the decoder's estimate; both show
in bench/results/few_step.json.

**Step bound.** γ ≤ 2 and the 1/L normalisation make each data step non-expansive; nothing depends
on 1/N0, so the step does not grow as N0 → 0.

Example:
    >>> import torch
    >>> from diffcomm import zoo
    >>> from diffcomm.pipeline import build_link
    >>> link = build_link("downsample", (1, 28, 28), "1/16", "awgn", snr_db=10.0)
    >>> gen = torch.Generator().manual_seed(0)
    >>> rx = link.transmit(torch.rand(2, 1, 28, 28), generator=gen)
    >>> res = pnp_flow_receiver(link, rx, zoo.load("fmnist-prior"), steps=4, generator=gen)
    >>> res.x_hat.shape, res.nfe
    (torch.Size([2, 1, 28, 28]), 4)
"""

from __future__ import annotations

import torch

from diffcomm.receivers.base import Option, ReceiverResult, Timer, register_receiver
from diffcomm.receivers.fidelity import DataTerm, rows
from diffcomm.receivers.guidance import CountingPrior


def pnp_flow_times(steps: int, t_start: float) -> list[float]:
    """The flow times t_n = t_0 (1 − n/N), n = 0 … N − 1 (this package's convention: t = 1 is noise)."""
    return [t_start * (1 - n / steps) for n in range(steps)]


@register_receiver(
    "pnp_flow", description="PnP-Flow: gradient step, interpolation to the flow path, flow denoiser",
    link="any", prior="denoiser", paper="Martin, Gagneux, Hagemann, Steidl, ICLR 2025 (PnP-Flow)",
    options={"steps": Option(int, 1, 1000), "gamma": Option(float, 0, 2, open_low=True, help="step in units of 1/L"),
             "alpha": Option(float, 0, 1, help="step decay γ_n = γ t_n^α"),
             "t_start": Option(float, 0, 1, open_low=True, help="first flow time (1 = pure noise, the paper)")})
def pnp_flow_receiver(link, rx, prior, *, steps: int = 4, gamma: float = 0.5, alpha: float = 0.5,
                      t_start: float = 0.6, class_labels: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> ReceiverResult:
    """PnP-Flow (Alg. 1) for any link; see the module docstring. NFE = steps."""
    with Timer() as t:
        counted = CountingPrior(prior)
        term = DataTerm(link, rx, prior)
        x, _ = term.estimate()
        lip = term.lipschitz
        for tn in pnp_flow_times(steps, t_start):
            sigma = min(tn / (1 - tn), prior.sigma_max) if tn < 1 else prior.sigma_max
            z = x - rows(gamma * tn ** alpha / lip, x) * term.grad(x)
            noisy = z + sigma * torch.randn(z.shape, generator=generator)
            with torch.no_grad():
                x = counted(noisy, torch.full((rx.batch,), float(sigma)), class_labels)
    return ReceiverResult(prior.to_pixels(x).clamp(0, 1), nfe=counted.nfe, seconds=t.seconds,
                          extras={"steps": steps, "gamma": gamma, "alpha": alpha, "t_start": t_start})
