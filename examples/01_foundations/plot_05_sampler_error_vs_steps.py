r"""
Sampler error against the number of steps
=========================================

A deterministic sampler is an ODE solver for the probability-flow ODE
:math:`dx/d\sigma = (x - D(x;\sigma))/\sigma` (Song et al. 2021, eq. 13; Karras et al. 2022, eq. 4),
and its error should fall as a power of the step count: like :math:`1/N` for Euler's method
(:func:`diffcomm.diffusion.samplers.sample_euler`, which in this parametrisation is also DDIM with
η = 0, :func:`diffcomm.diffusion.samplers.sample_ddim`; Song, Meng & Ermon 2021, eq. 12), like
:math:`1/N^2` for Heun's method (Karras et al. 2022, Alg. 1, :func:`diffcomm.diffusion.samplers.sample_heun`)
and for the multistep DPM-Solver++(2M) (Lu et al. 2022, Alg. 2,
:func:`diffcomm.diffusion.samplers.sample_dpmpp_2m`), and like :math:`1/N^4` for classical
Runge-Kutta (:func:`diffcomm.diffusion.samplers.sample_ode` with ``method="rk4"``). What costs
time is not the step but the network evaluation (NFE): Heun spends two per step, RK4 four,
Euler and DPM-Solver++(2M) one (counted here with :class:`diffcomm.diffusion.samplers.NFECounter`).

To measure an error we need the exact answer. For Gaussian data
:math:`x_0 \sim \mathcal N(m, \Sigma)` the ODE is linear and its flow is known in closed form: in
the eigenbasis of Σ each coordinate is scaled by
:math:`\sqrt{(\lambda_k + \sigma_{\text{to}}^2)/(\lambda_k + \sigma_{\text{from}}^2)}`
(:meth:`diffcomm.diffusion.gaussian.GaussianDenoiser.ode_flow`). We use the Gaussian fitted to
Fashion-MNIST, in the 784 dimensions of the images, with its exact denoiser as the "network".
"""

import os

import matplotlib.pyplot as plt
import numpy as np
import torch

from diffcomm.data import get_dataset
from diffcomm.diffusion.gaussian import GaussianDenoiser, GaussianMixtureDenoiser
from diffcomm.diffusion.samplers import NFECounter, sample_ddim, sample_dpmpp_2m, sample_euler, sample_heun, sample_ode
from diffcomm.diffusion.schedules import karras_sigmas
from diffcomm.receivers.linear import fit_gaussian_prior

FAST = os.environ.get("DIFFCOMM_GALLERY_FAST") == "1"  # the test suite's quick run

# %%
# The problem and the solvers
# ---------------------------
# The Gaussian lives in the prior's model space [-1, 1] (pixels mapped by :math:`2x - 1`). Starting
# points are drawn exactly from :math:`p_{\sigma_{\max}} = \mathcal N(m, \Sigma + \sigma_{\max}^2 I)`
# and every solver integrates from :math:`\sigma_{\max} = 80` to :math:`\sigma_{\min} = 0.002` on
# Karras et al.'s schedule (eq. 5, ρ = 7) with N steps. We stop at σ_min, without the usual last
# jump to σ = 0, so that what we measure is the solver's error alone. The error is the root mean
# square difference from the exact end point, over all values of all samples.

F64 = torch.float64
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
test = get_dataset("fashion-mnist", "test")
mean_pix, cov_pix = fit_gaussian_prior(test.images[:2000] if FAST else test.images[:5000])
gaussian = GaussianDenoiser(2 * mean_pix - 1, 4 * cov_pix)
gen = torch.Generator().manual_seed(0)
n_samples = 8 if FAST else 16
start = gaussian.sample(n_samples, gen, sigma=SIGMA_MAX)
exact = gaussian.ode_flow(start, SIGMA_MAX, SIGMA_MIN)

solvers = {  # name: (sampler, expected order, largest step count)
    "Euler": (sample_euler, 1, None),
    "Heun": (sample_heun, 2, None),
    "DPM-Solver++(2M)": (sample_dpmpp_2m, 2, None),
    "RK4 (sample_ode)": (lambda d, x, s: sample_ode(d, x, s, method="rk4", n_substeps=1), 4, 64),
}
steps_list = [2, 4, 8, 16, 32] if FAST else [2, 4, 8, 16, 32, 64, 128]


def levels(steps: int) -> torch.Tensor:
    """steps + 1 Karras levels from sigma_max to sigma_min (no final zero)."""
    return karras_sigmas(steps + 1, SIGMA_MIN, SIGMA_MAX, dtype=F64)[:-1]


def measure(denoiser, x: torch.Tensor, reference: torch.Tensor) -> dict:
    """{solver: (steps, nfe, rms error)} over steps_list."""
    out = {}
    for name, (fn, _, max_steps) in solvers.items():
        rows = []
        for steps in steps_list:
            if max_steps is not None and steps > max_steps:
                continue
            counter = NFECounter(denoiser)
            end = fn(counter, x, levels(steps))
            rows.append((steps, counter.nfe, float((end - reference).pow(2).mean().sqrt())))
        out[name] = np.array(rows)
    return out


def slope(rows: np.ndarray, col: int) -> float:
    """Log-log slope of the error over the last three points (the asymptotic regime)."""
    tail = rows[-3:]
    return float(np.polyfit(np.log(tail[:, col]), np.log(tail[:, 2]), 1)[0])


gauss_results = measure(gaussian, start, exact)
ddim_rows = np.array([(s, s, float((sample_ddim(gaussian, start, levels(s)) - exact).pow(2).mean().sqrt()))
                      for s in steps_list])
ddim_gap = float((sample_ddim(gaussian, start, levels(8)) - sample_euler(gaussian, start, levels(8))).abs().max())
print(f"DDIM (eta = 0) against Euler, 8 steps: max |difference| = {ddim_gap:.1e}")

# %%
# Error against steps and against network evaluations
# ----------------------------------------------------
# Left: error against the number of steps, with the fitted slope of each solver over its last
# three points in the legend and reference lines of slope −1, −2 and −4 (drawn just below
# the last points of Euler, Heun and RK4). Right: the same errors
# against NFE, the cost that matters; the DDIM points (hollow) fall on Euler's.

styles = {"Euler": "o-", "Heun": "s-", "DPM-Solver++(2M)": "^-", "RK4 (sample_ode)": "d-"}


def draw(ax, results: dict, col: int, xlabel: str, with_slopes: bool) -> None:
    for name, rows in results.items():
        label = f"{name}, slope {slope(rows, col):.2f}" if with_slopes else name
        ax.loglog(rows[:, col], rows[:, 2], styles[name], ms=4, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("RMS error of the end point")
    ax.grid(alpha=0.3, which="both")


fig, (ax_steps, ax_nfe) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained", sharey=True)
draw(ax_steps, gauss_results, 0, "steps N", with_slopes=True)
for (name, order), ls in zip([("Euler", 1), ("Heun", 2), ("RK4 (sample_ode)", 4)], [":", "--", "-."]):
    rows = gauss_results[name]  # a reference line of slope -order through this solver's last point, shifted down
    n_ref = rows[-3:, 0]
    ax_steps.loglog(n_ref, 0.4 * rows[-1, 2] * (n_ref / n_ref[-1]) ** -order, "k" + ls, lw=0.8,
                    label=f"slope −{order}")
ax_steps.set_xticks(steps_list, [str(s) for s in steps_list])
ax_steps.minorticks_off()
draw(ax_nfe, gauss_results, 1, "network evaluations (NFE)", with_slopes=False)
ax_nfe.loglog(ddim_rows[:, 1], ddim_rows[:, 2], "o", mfc="none", color="k", ms=7, label="DDIM (η = 0)")
top = max(float(r[:, 2].max()) for r in gauss_results.values())
ax_steps.set_ylim(min(float(r[:, 2].min()) for r in gauss_results.values()) / 3, min(top, 30.0))
ax_steps.legend(fontsize=7)
ax_nfe.legend(fontsize=7)
ax_steps.set_title("Gaussian fitted to Fashion-MNIST (784-D): exact end point", fontsize=9)
ax_nfe.set_title("the same errors against their cost", fontsize=9)
plt.show()

same_cost = int(gauss_results["Heun"][-2, 1])  # an NFE that Heun and DPM-Solver++(2M) both reach
err_at = {name: float(rows[rows[:, 1] == same_cost, 2][0]) for name, rows in gauss_results.items()
          if (rows[:, 1] == same_cost).any()}
print(f"at {same_cost} NFE: " + ", ".join(f"{name} {e:.1e}" for name, e in err_at.items()))
for name, rows in gauss_results.items():
    print(f"{name:18s} expected order {solvers[name][1]}, measured slope {slope(rows, 0):.2f}; errors "
          + " ".join(f"N={int(s)}:{e:.1e}" for s, _, e in rows))

# %%
# A nonlinear denoiser: the 2-D Gaussian mixture
# ----------------------------------------------
# A Gaussian's denoiser is linear, the easiest case for a solver. For a mixture
# (:class:`diffcomm.diffusion.gaussian.GaussianMixtureDenoiser`) the flow has no closed form, so the
# reference is :func:`diffcomm.diffusion.samplers.sample_ode` with the adaptive DOP853 method at a
# tolerance far below every error measured here. The orders should survive.

mixture = GaussianMixtureDenoiser(torch.tensor([0.3, 0.7]), torch.tensor([[-1.5, 0.0], [1.5, 0.5]]),
                                  torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.2, -0.05], [-0.05, 0.4]]]))
m_start = mixture.sample(256, gen) + SIGMA_MAX * torch.randn(256, 2, generator=gen, dtype=F64)
m_ref = sample_ode(mixture, m_start, torch.tensor([SIGMA_MAX, SIGMA_MIN], dtype=F64), method="dop853",
                   rtol=1e-11, atol=1e-12)
mix_results = measure(mixture, m_start, m_ref)

fig, ax = plt.subplots(figsize=(5.5, 4.2), layout="constrained")
draw(ax, mix_results, 1, "network evaluations (NFE)", with_slopes=False)
for line, (name, rows) in zip(ax.get_lines(), mix_results.items()):
    line.set_label(f"{name}, slope {slope(rows, 0):.2f} in N")
ax.set_ylim(min(float(r[:, 2].min()) for r in mix_results.values()) / 3,
            min(max(float(r[:, 2].max()) for r in mix_results.values()), 30.0))
ax.set_title("2-D Gaussian mixture: reference = adaptive DOP853", fontsize=9)
ax.legend(fontsize=7)
plt.show()

for name, rows in mix_results.items():
    print(f"mixture {name:18s} measured slope {slope(rows, 0):.2f}")

# %%
# What the figures show
# ---------------------
# Once the steps are small enough for the asymptotic regime, each solver's error falls with the
# slope of its order: about −1 for Euler (and DDIM, which here is the same computation), about −2
# for Heun and DPM-Solver++(2M), about −4 for RK4. At very few steps the higher-order methods can
# be far worse than Euler (a single Heun step from σ = 80 overshoots badly, and RK4 is unstable
# at two steps), so an order is a promise about fine grids, not about two or four steps. Against
# NFE, Heun pays twice per step and RK4 four times. DPM-Solver++(2M) gets the second order at the
# price of one evaluation per step, so at equal cost its error is a fraction of Heun's, and it is
# the most accurate of these solvers below a few tens of evaluations, the budget diffusion
# receivers work with; only for high accuracy does RK4's fourth order pay for its four
# evaluations per step. The mixture, with its nonlinear denoiser, shows the same orders. With a
# trained network the solver error is only one part of the story: the network's own error does
# not shrink with more steps, so past a point extra steps buy nothing.
