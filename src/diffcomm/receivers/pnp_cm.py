"""PnP-CM receiver: plug-and-play ADMM with a consistency model as the prior's proximal operator.

Gülle, Yun, Alçalar, Akçakaya, "Consistency Models as Plug-and-Play Priors for Inverse Problems",
arXiv 2509.22736 (2025) (PnP-CM): a consistency model f(x, σ) (Song et al., ICML 2023; here the
distilled :mod:`diffcomm.diffusion.consistency` model) maps a noisy image straight to a clean one,
so it serves as the prior step of PnP-ADMM with one network evaluation per iteration; noise
injection before each prior step keeps its input on the diffusion path the model was trained on.
With x the data-consistent variable, z the prior variable and u the scaled dual, iteration k
(levels σ_0 > σ_1 > … > σ_{K−1}) is

    z = f(v_k; σ_k),                                  v_0 = x̂ + ν c σ̂ ε,  v_k = x + u + σ_k ε,
    x = argmin_x F(x)/τ² + ‖x − (z − u)‖²/(2 dc r_k²),   r_k² = σ_k² σ_d²/(σ_k² + σ_d²),
    u = u + x − z,

returning x. F = ½‖y − A(x)‖² is the link's data term in model space and its minimisation the
shared :meth:`~diffcomm.receivers.fidelity.DataTerm.data_step` (the exact proximal step of a
linear link by its SVD — the paper's conjugate-gradient solve, exactly; one bounded gradient step
through the encoder for DeepJSCC). The paper starts from noise at σ_max; for a channel the start is
*landed* at the level the SNR implies, as Land-then-Transport does (Fu et al. 2026): x̂ is the
link's cheap estimate (pseudo-inverse, or the DeepJSCC decoder), σ̂ its derived error level
(:class:`~diffcomm.receivers.fidelity.DataTerm`), σ_0 = c σ̂ sqrt(1 + ν²) (c = ``start_scale``,
ν = ``renoise``), and the levels below σ_0 follow Karras's spacing to σ_min, the last one
(where f is the identity) left out as in consistency sampling. ``admm = False`` drops the dual
(u = 0: half-quadratic splitting, i.e. multistep consistency sampling with a data step).
NFE = ``steps``.

**Known answer.** With the exact consistency function of a Gaussian prior and a linear link whose
estimate is x0 + white noise of level σ̂ (AWGN, scaled-orthogonal encoder), one step with c = 1,
ν = 0, dc = 0 returns f*(x̂, σ̂), the exact ODE transport of x̂ to the data
(tests/receivers/test_pnp_cm.py).

**Defaults** (steps 2, c = 2, ν = 0, dc = 1, ADMM): chosen on training images only — the last 64
images of the Fashion-MNIST train split, AWGN 0 and 10 dB, DeepJSCC and downsample links at CBR 1/16,
the shipped ``fmnist-consistency`` model (1,500 distillation steps), mean PSNR over the four cells for
c ∈ {0.5, 1, 1.5, 2, 3}, ν ∈ {0, 0.5, 1}, dc ∈ {0.3, 1, 3} at 2 steps (ν and dc searched fully for
c ≤ 1.5, at ν = 0, dc = 1 for c = 2, 3; ``bench/few_step.py --tune pnp_cm``). c = 2 scored 18.27 dB
(DeepJSCC 22.94 / 18.55, downsample 16.91 / 14.68 at 10 / 0 dB); c = 0.5 lost 1.2 dB, mostly on the
downsample link at 0 dB, and dc moved results by < 0.1 dB. On the DeepJSCC link every setting is within
0.4 dB of the decoder alone: a two-step consistency model adds little PSNR to a good decoder.

**Step bound.** The data step moves at most to the least-squares solution (linear links) or by a step
r²/(τ² + r²L) ≤ 1/L (nonlinear links), with τ² floored at 25 dB; σ_0 is capped at the prior's σ_max.

Example:
    >>> import torch
    >>> from diffcomm import zoo
    >>> from diffcomm.pipeline import build_link
    >>> link = build_link("downsample", (1, 28, 28), "1/16", "awgn", snr_db=10.0)
    >>> gen = torch.Generator().manual_seed(0)
    >>> rx = link.transmit(torch.rand(2, 1, 28, 28), generator=gen)
    >>> res = pnp_cm_receiver(link, rx, zoo.load("fmnist-consistency"), steps=2, generator=gen)
    >>> res.x_hat.shape, res.nfe
    (torch.Size([2, 1, 28, 28]), 2)
"""

from __future__ import annotations

import torch

from diffcomm.receivers.base import Option, ReceiverResult, Timer, register_receiver
from diffcomm.receivers.fidelity import DataTerm, posterior_var, rows
from diffcomm.receivers.guidance import CountingPrior


def landing_levels(steps: int, start: torch.Tensor, sigma_min: float, rho: float = 7.0) -> torch.Tensor:
    """Per-image levels (B, steps): Karras spacing from σ_0 = ``start`` towards σ_min over steps + 1 points,
    the last (σ_min, where a consistency model is the identity) left out."""
    top = start.to(torch.float64).reshape(-1, 1).clamp_min(sigma_min * 1.0001)
    ramp = torch.arange(steps, dtype=torch.float64) / steps
    lo, hi = sigma_min ** (1 / rho), top ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


@register_receiver(
    "pnp_cm", description="PnP-CM: ADMM with a consistency-model prior step, landed at the SNR-matched level",
    link="any", prior="denoiser", default_priors={(1, 28, 28): "fmnist-consistency"},
    paper="Gülle, Yun, Alçalar, Akçakaya, arXiv 2509.22736, 2025 (PnP-CM); Song et al., ICML 2023 (CM)",
    options={"steps": Option(int, 1, 1000),
             "start_scale": Option(float, 0, 100, open_low=True, help="c: the start level is c·σ̂ (σ̂ derived)"),
             "renoise": Option(float, 0, 10, help="ν: fresh noise ν·c·σ̂ added to the landed estimate"),
             "dc": Option(float, 0, 1000, tune=(0.0, 0.3, 1.0, 3.0),
                          help="data-step weight (0 = no data step; 1 = z ~ N(x0, r_σ²))"),
             "admm": Option(bool, help="keep the ADMM dual variable (False: half-quadratic splitting)")})
def pnp_cm_receiver(link, rx, prior, *, steps: int = 2, start_scale: float = 2.0, renoise: float = 0.0,
                    dc: float = 1.0, admm: bool = True, class_labels: torch.Tensor | None = None,
                    generator: torch.Generator | None = None) -> ReceiverResult:
    """PnP-CM for any link; see the module docstring. NFE = steps."""
    with Timer() as t:
        counted = CountingPrior(prior)
        term = DataTerm(link, rx, prior)
        x_hat, sigma_hat = term.estimate()
        level = start_scale * sigma_hat
        start = (level * (1 + renoise ** 2) ** 0.5).clamp(max=prior.sigma_max)
        levels = landing_levels(steps, start, prior.sigma_min)                        # (B, steps)
        v = x_hat + rows(renoise * level, x_hat) * torch.randn(x_hat.shape, generator=generator)
        x = x_hat
        u = torch.zeros_like(x_hat)
        for k in range(steps):
            sigma = levels[:, k]
            if k > 0:
                v = x + u + rows(sigma, x) * torch.randn(x.shape, generator=generator)
            with torch.no_grad():
                z = counted(v, sigma.to(v.dtype), class_labels)
            x = term.data_step(z - u, dc * posterior_var(sigma)) if dc > 0 else z - u
            if admm and dc > 0:
                u = u + x - z
    return ReceiverResult(prior.to_pixels(x).clamp(0, 1), nfe=counted.nfe, seconds=t.seconds,
                          extras={"steps": steps, "start_scale": start_scale, "renoise": renoise, "dc": dc,
                                  "admm": admm, "sigma_hat": sigma_hat.tolist(), "sigma_start": start.tolist()})
