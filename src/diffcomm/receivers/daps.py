"""DAPS receiver: decoupled annealed posterior sampling with Langevin dynamics on x0.

Zhang, Chu, Berner, Meng, Anandkumar, Song, "Improving Diffusion Inverse Problem Solving with
Decoupled Noise Annealing", CVPR 2025, Alg. 1. Over an annealing schedule σ_1 > … > σ_N
(Karras's ρ = 7 spacing, the paper's "poly-7", from σ_1 down to σ_N = ``sigma_end``), each level

1. solves the prior's probability-flow ODE from x_{σ_i} to 0 with ``ode_steps`` Euler steps
   (the paper's x̂0(x_t); one step is Tweedie's D(x; σ_i)) — ``ode_steps`` network evaluations;
2. runs ``langevin_steps`` Langevin updates on x0 targeting p(x0 | x_{σ_i}, y) ∝
   N(x0; x̂0, r_i² I) · p(y | x0) (the paper's eq. 9-10, its ``prior_solver: gaussian`` with r_i = σ_i):

       x0 ← x0 + η [ −(x0 − x̂0)/r_i² − ∇F(x0)/τ² ] + sqrt(2 η T) ξ,    F = ½‖y − A(x0)‖²,

   with τ² = max(N0, N0_floor·``|ĥ|²``)/2 (:class:`~diffcomm.receivers.fidelity.DataTerm`), ∇F exact for
   linear links and by autograd through the encoder for DeepJSCC — no network evaluations;
3. re-noises to the next level, x_{σ_{i+1}} = x0 + σ_{i+1} ε, decoupled from the previous x_σ.

NFE = ``steps`` × ``ode_steps``. The paper's sampler is ``temperature=1, start="noise",
final="ode"`` (with its σ_max = 100 and σ_end = 0.1) and hundreds of levels. With 1-4 levels four
choices differ, each an option, each measured on training images (below):

- **Step size.** η = ``lr`` / (1/r_i² + L/τ²), the inverse curvature of the (Gaussian, for linear
  links) target times ``lr`` ≤ 1, L = ‖JᵀJ‖ (exact for linear links, a power iteration for DeepJSCC),
  instead of the paper's hand-tuned lr decayed linearly to lr·0.01: stable at every SNR and level.
- **Temperature** T (default 0). A Langevin sample of N(x̂0, r_i²) spreads by r_i in the directions the
  data do not fix; the next level's σ_{i+1} must mask that spread, which holds for the paper's 200
  closely spaced levels but not for 2-4 (σ = 2 → 0.1): with T = 1, 4 levels from noise gave 10.7 dB
  on downsample at 10 dB against 13.8 dB with T = 0, and from the link's estimate 14.1 against 17.1
  dB. T = 0 makes each level's update gradient descent to the mode of its decoupled posterior, an
  annealed MAP (every level still re-noised with fresh ε).
- **Start** (default ``"estimate"``): x_{σ_1} = x̂ + σ_1 ε from the link's cheap estimate x̂ with
  σ_1 = ``start_scale``·σ̂, σ̂ its RMS error level (:meth:`~diffcomm.receivers.fidelity.DataTerm.estimate`;
  the landing of Land-then-Transport) instead of pure noise at σ_max (``"noise"``, the paper; its level
  is ``sigma_max``, default the prior's): four levels from σ = 80 never reach the data's detail.
- **Output** (``final``, default ``"mode"``): the paper returns the last level's ODE estimate x̂0
  (``"ode"``), which ignores the last level's data term (and with one level is the prior mean);
  ``"mode"`` returns the last level's update (always at T = 0).

``prior_var="isotropic"`` replaces r_i = σ_i by ΠGDM's r_i² = σ_i² σ_d²/(σ_i² + σ_d²) (σ_d = 0.5), at most σ_d².

**Known answer.** For a linear link the Langevin target is Gaussian, N(m, C) with
C = (I/r² + AᵀA/τ²)⁻¹ and m = x̂0 + C Aᵀ(y − A x̂0)/τ², which :func:`langevin_x0` samples at T = 1 (its
moments converge to m and C) and whose mode it reaches at T = 0 — the proximal step
(:meth:`~diffcomm.receivers.fidelity.DataTerm.prox` with ρ = τ²/r²); tests/receivers/test_daps.py.

**Defaults** (steps 4, ode_steps 1, 10 updates, lr 1, T 0, σ_end 0.1, r_i = σ_i, start_scale 2):
chosen on training images only — the last 64 images of the Fashion-MNIST train split, AWGN 0 and
10 dB, downsample and DeepJSCC links at CBR 1/16, the shipped fmnist-prior, mean PSNR over the
four cells for start_scale ∈ {1, 1.5, 2, 3, 4}, lr ∈ {0.5, 1}, langevin_steps ∈ {10, 20} (the
temperature, r_i and start comparisons above on the same images; ``bench/few_step.py --tune daps``
reruns the search).

**Step bound.** η ≤ lr·τ²/L and ≤ lr·r_i², with τ² floored at 25 dB, so no update overshoots as N0 → 0.

Example:
    >>> import torch
    >>> from diffcomm import zoo
    >>> from diffcomm.pipeline import build_link
    >>> link = build_link("downsample", (1, 28, 28), "1/16", "awgn", snr_db=10.0)
    >>> gen = torch.Generator().manual_seed(0)
    >>> rx = link.transmit(torch.rand(2, 1, 28, 28), generator=gen)
    >>> res = daps_receiver(link, rx, zoo.load("fmnist-prior"), steps=4, generator=gen)
    >>> res.x_hat.shape, res.nfe
    (torch.Size([2, 1, 28, 28]), 4)
"""

from __future__ import annotations

import torch

from diffcomm.receivers.base import Option, ReceiverResult, Timer, register_receiver
from diffcomm.receivers.fidelity import DataTerm, posterior_var, rows
from diffcomm.receivers.guidance import CountingPrior, run_sampler

PRIOR_VARS = ("sigma", "isotropic")
FINALS = ("mode", "ode")
STARTS = ("estimate", "noise")
ODE_SIGMA_MIN = 0.01        # the inner ODE's lowest level (the paper's diffusion_scheduler sigma_min)


def langevin_x0(term: DataTerm, x0_hat: torch.Tensor, r2: torch.Tensor, steps: int, lr: float,
                generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
    """``steps`` Langevin updates on x0 targeting N(x0; x̂0, r²I)·exp(−F/τ²), from x̂0.

    x ← x + η ∇log p + sqrt(2 η T) ξ with η = lr / (1/r² + L/τ²) per image and temperature T
    (1: Langevin; 0: gradient descent to the mode). ``r2`` is r² per image (B,) float64.
    """
    r2 = torch.as_tensor(r2, dtype=torch.float64).reshape(-1)
    tau2 = term.noise_var
    eta = lr / (1 / r2 + term.lipschitz / tau2)
    eta_x, r2_x, tau2_x = rows(eta, x0_hat), rows(r2, x0_hat), rows(tau2, x0_hat)
    x = x0_hat
    for _ in range(steps):
        score = -(x - x0_hat) / r2_x - term.grad(x) / tau2_x
        x = x + eta_x * score
        if temperature > 0:
            x = x + (2 * eta_x * temperature).sqrt() * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x


@register_receiver(
    "daps", description="DAPS: per level, ODE x̂0, Langevin on x0 with the likelihood, re-noise",
    link="any", prior="denoiser", paper="Zhang et al., CVPR 2025 (DAPS)",
    options={"steps": Option(int, 1, 1000, help="annealing levels"), "ode_steps": Option(int, 1, 100),
             "langevin_steps": Option(int, 0, 10000), "lr": Option(float, 0, 1, open_low=True),
             "temperature": Option(float, 0, 1, help="Langevin noise scale (1 = the paper's sampler)"),
             "sigma_end": Option(float, 0, 10, open_low=True), "prior_var": Option(str, choices=PRIOR_VARS),
             "final": Option(str, choices=FINALS), "start": Option(str, choices=STARTS),
             "start_scale": Option(float, 0, 100, open_low=True, help="σ_1 = c·σ̂ for start = estimate"),
             "sigma_max": Option(float, 0, 1000, open_low=True, optional=True, help="σ_1 for start = noise")})
def daps_receiver(link, rx, prior, *, steps: int = 4, ode_steps: int = 1, langevin_steps: int = 10,
                  lr: float = 1.0, temperature: float = 0.0, sigma_end: float = 0.1, prior_var: str = "sigma",
                  final: str = "mode", start: str = "estimate", start_scale: float = 2.0,
                  sigma_max: float | None = None, class_labels: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> ReceiverResult:
    """DAPS for any link; see the module docstring. NFE = steps × ode_steps."""
    from diffcomm.diffusion.schedules import sigma_grid

    with Timer() as t:
        counted = CountingPrior(prior)
        term = DataTerm(link, rx, prior)
        b = rx.batch
        noise = torch.randn((b, *link.shape), generator=generator)
        if start == "estimate":
            x_hat, sigma_hat = term.estimate()
            top = (start_scale * sigma_hat).clamp(1e-6, prior.sigma_max)                    # (B,) per image
        else:
            x_hat = torch.zeros_like(noise)
            top = torch.full((b,), float(prior.sigma_max if sigma_max is None else sigma_max), dtype=torch.float64)
        levels = sigma_grid(steps, torch.minimum(top, torch.full_like(top, sigma_end)), top,
                            dtype=torch.float64)[:, :-1]                                     # (B, steps)
        x = x_hat + rows(levels[:, 0], x_hat) * noise

        def denoiser(xx: torch.Tensor, sigma: torch.Tensor, **_) -> torch.Tensor:
            return counted(xx, sigma, class_labels)

        x0 = x
        n_levels = levels.shape[1]
        for i in range(n_levels):
            sigma = levels[:, i]
            ode = sigma_grid(ode_steps, torch.minimum(sigma / 2, torch.full_like(sigma, ODE_SIGMA_MIN)), sigma)
            x0_hat = run_sampler("euler", denoiser, x, ode, generator)
            last = i == n_levels - 1
            if last and final == "ode":
                x0 = x0_hat
                break
            r2 = posterior_var(sigma) if prior_var == "isotropic" else sigma ** 2
            x0 = langevin_x0(term, x0_hat, r2, langevin_steps, lr, generator, temperature=0.0 if last else temperature)
            if not last:
                x = x0 + rows(levels[:, i + 1], x0) * torch.randn(x0.shape, generator=generator)
    return ReceiverResult(prior.to_pixels(x0).clamp(0, 1), nfe=counted.nfe, seconds=t.seconds,
                          extras={"steps": steps, "ode_steps": ode_steps, "langevin_steps": langevin_steps,
                                  "levels": levels.tolist()})


__all__ = ["FINALS", "PRIOR_VARS", "STARTS", "daps_receiver", "langevin_x0"]
