r"""
Reverse SDE against probability-flow ODE
========================================

A diffusion model runs the forward noising backwards. Song et al. ("Score-Based Generative Modeling
through Stochastic Differential Equations", ICLR 2021) give two ways to do it with the same score
:math:`\nabla\log p_\sigma`. The reverse-time SDE (eq. 6), for the variance-exploding process
:math:`x = x_0 + \sigma\varepsilon` used throughout diffcomm, reads

.. math:: dx = -2\sigma\,\nabla\log p_\sigma(x)\,d\sigma + \sqrt{2\sigma}\,d\bar w
   \quad (\sigma \text{ decreasing}),

and injects fresh noise all the way down. The probability-flow ODE (eq. 13; Karras et al. 2022,
eq. 4) drops the noise and halves the drift,

.. math:: \frac{dx}{d\sigma} = -\sigma\,\nabla\log p_\sigma(x) = \frac{x - D(x;\sigma)}{\sigma},

and is deterministic. Both carry :math:`p_{\sigma_{\max}}` to the data distribution: they have the
same marginals at every σ, but different paths. Here the reverse SDE is discretised with the
reverse-diffusion predictor of Song et al.'s Alg. 2 (eq. 46; Euler-Maruyama for this SDE) and no
corrector, :func:`diffcomm.diffusion.samplers.sample_pc`, and the ODE with Heun's method
(Karras et al. 2022, Alg. 1), :func:`diffcomm.diffusion.samplers.sample_heun`. The data are a 2-D
Gaussian mixture with the exact denoiser :class:`diffcomm.diffusion.gaussian.GaussianMixtureDenoiser`
standing in for a trained network.
"""

import os

import matplotlib.pyplot as plt
import torch

from diffcomm.diffusion.gaussian import GaussianMixtureDenoiser
from diffcomm.diffusion.samplers import sample_heun, sample_pc
from diffcomm.diffusion.schedules import karras_sigmas

FAST = os.environ.get("DIFFCOMM_GALLERY_FAST") == "1"  # the test suite's quick run

# %%
# The mixture and the start
# -------------------------
# Three thin arcs on a circle of radius 2.5 (elongated Gaussian components). The start
# :math:`x_{\sigma_{\max}} = x_0 + \sigma_{\max}\varepsilon` is drawn exactly from
# :math:`p_{\sigma_{\max}}` (a data sample plus noise), so any error in the end points comes from
# the samplers alone. Both samplers use Karras et al.'s schedule (eq. 5) from
# :math:`\sigma_{\max} = 5` to 0.01, and a last step to σ = 0; the SDE gets many more steps, as
# stochastic samplers need them.

F64 = torch.float64
mixture = GaussianMixtureDenoiser.ring(torch.tensor([0.5, 0.3, 0.2]), radius=2.5, var_along=0.5, var_across=0.04)

SIGMA_MAX, LIM = 5.0, 7.5
ode_sigmas = karras_sigmas(30 if FAST else 40, 0.01, SIGMA_MAX, dtype=F64)
sde_sigmas = karras_sigmas(100 if FAST else 250, 0.01, SIGMA_MAX, dtype=F64)
gen = torch.Generator().manual_seed(0)


def start_points(n: int) -> torch.Tensor:
    return mixture.sample(n, gen) + SIGMA_MAX * torch.randn(n, 2, generator=gen, dtype=F64)


def ode(x: torch.Tensor, record: list | None = None) -> torch.Tensor:
    cb = None if record is None else (lambda d: record.append(d["x"].clone()))
    out = sample_heun(mixture, x.clone(), ode_sigmas, callback=cb)
    if record is not None:
        record.append(out)
    return out


def sde(x: torch.Tensor, seed: int, record: list | None = None) -> torch.Tensor:
    cb = None if record is None else (lambda d: record.append(d["x"].clone()))
    out = sample_pc(mixture, x.clone(), sde_sigmas, generator=torch.Generator().manual_seed(seed), callback=cb,
                    n_corrector=0, predictor="reverse_diffusion")
    if record is not None:
        record.append(out)
    return out


def density(ax) -> None:
    u = torch.linspace(-LIM, LIM, 150, dtype=F64)
    gx, gy = torch.meshgrid(u, u, indexing="xy")
    logp = mixture.log_prob(torch.stack([gx, gy], -1).reshape(-1, 2)).reshape(gx.shape)
    ax.contourf(gx, gy, logp.exp(), levels=12, cmap="Greys")
    ax.set_aspect("equal")
    ax.set_xlim(-LIM, LIM)
    ax.set_ylim(-LIM, LIM)


# %%
# Paths from the same starting noise
# ----------------------------------
# Four starting points (the first draws that fall inside the plotted square); from each the ODE
# is run twice and the SDE three times with different random seeds. The ODE's two runs land on
# each other (the printed difference is zero); the SDE's runs wander off in different directions
# and may end in different components.

candidates = start_points(64)
starts = candidates[candidates.abs().amax(1) < LIM - 1.5][:4]  # four that lie inside the plotted square
colors = plt.cm.tab10(range(len(starts)))
fig, (ax_ode, ax_sde) = plt.subplots(1, 2, figsize=(9, 4.6), layout="constrained", sharey=True)
for ax in (ax_ode, ax_sde):
    density(ax)
ode_paths = [[], []]
ode_ends = [ode(starts, ode_paths[0]), ode(starts, ode_paths[1])]
ode_gap = float((ode_ends[0] - ode_ends[1]).abs().max())
for run, (path, style) in enumerate(zip(ode_paths, ["-", "--"])):
    p = torch.stack(path)  # (levels, points, 2)
    for k in range(len(starts)):
        ax_ode.plot(p[:, k, 0], p[:, k, 1], style, color=colors[k], lw=2.2 if run == 0 else 1.0)
        ax_ode.plot(p[-1, k, 0], p[-1, k, 1], "o", color=colors[k], ms=5)
sde_gap = 0.0
sde_first = None
for seed in range(3):
    path = []
    end = sde(starts, seed, path)
    sde_first = end if sde_first is None else sde_first
    sde_gap = max(sde_gap, float((end - sde_first).abs().max()))
    p = torch.stack(path)
    for k in range(len(starts)):
        ax_sde.plot(p[:, k, 0], p[:, k, 1], "-", color=colors[k], lw=0.7, alpha=0.7)
        ax_sde.plot(p[-1, k, 0], p[-1, k, 1], "o", color=colors[k], ms=5)
for ax in (ax_ode, ax_sde):
    ax.plot(starts[:, 0], starts[:, 1], "k*", ms=9, label="start at σ_max")
ax_ode.set_title(f"probability-flow ODE (Heun, {len(ode_sigmas) - 1} steps), 2 runs\n"
                 f"largest gap between the runs' end points: {ode_gap:.1g}", fontsize=9)
ax_sde.set_title(f"reverse SDE (Euler-Maruyama, {len(sde_sigmas) - 1} steps), 3 seeds\n"
                 f"largest gap between the seeds' end points: {sde_gap:.2f}", fontsize=9)
ax_ode.legend(loc="lower left", fontsize=8)
plt.show()
print(f"ODE: same start, two runs, max |difference| {ode_gap:.3g}; SDE: three seeds, max |difference| {sde_gap:.3g}")

# %%
# Where many paths end
# --------------------
# The top row shows where the samplers take many starting points; the titles compare the share of
# end points in each component (assigned by the exact posterior) with the mixture's weights. The
# bottom row colours every *starting* point by the component its path ends in. For the ODE the
# colours form regions: the flow is a fixed map from noise to data, so nearby starts end nearby.
# For the SDE they are mixed, since the end point depends on the noise injected on the way.

n = 400 if FAST else 1500
starts = start_points(n)
ends = {"ODE": ode(starts), "SDE": sde(starts, seed=10)}
comp_colors = ["tab:blue", "tab:orange", "tab:green"]
fig, axes = plt.subplots(2, 2, figsize=(8.5, 8.5), layout="constrained", sharex=True, sharey=True)
weights = ", ".join(f"{w:.2f}" for w in mixture.weights)
for col, (name, x) in enumerate(ends.items()):
    comp = mixture.responsibilities(x, 0.0).argmax(1)
    shares = ", ".join(f"{float((comp == k).double().mean()):.2f}" for k in range(3))
    density(axes[0, col])
    axes[0, col].scatter(x[:, 0], x[:, 1], s=3, color="tab:red", alpha=0.5)
    axes[0, col].set_title(f"{name}: end points of {n} paths\nshares {shares} (weights {weights})", fontsize=9)
    axes[1, col].scatter(starts[:, 0], starts[:, 1], s=4, c=[comp_colors[k] for k in comp])
    axes[1, col].set_title(f"{name}: starting points, coloured by the\ncomponent their path ends in", fontsize=9)
    axes[1, col].set_aspect("equal")
    print(f"{name}: component shares {shares} against weights {weights}")
plt.show()

# %%
# What the figures show
# ---------------------
# Both samplers end on the mixture with component shares close to the weights (up to the
# Monte-Carlo error of a few hundred or thousand samples and their discretisation error): the SDE
# and the ODE have the same marginals. Their paths differ. The ODE's paths are smooth curves and
# the same start always gives the same end point, so the ODE defines an invertible map from noise
# to data; that determinism is what DDIM-style and few-step samplers, latent inversion and the
# channel-matched starts of CDDM and HiFi-DiffCom build on. The SDE's paths are rough, and its end
# point depends on the injected noise as much as on the start; the noise also corrects errors
# made earlier along the path (Karras et al. 2022, §4), the reason stochastic samplers tolerate an
# imperfect score better, at the price of many more steps. Here it uses several times as many
# steps as the ODE.
