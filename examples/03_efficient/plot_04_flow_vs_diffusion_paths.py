r"""
Flow matching against diffusion paths
=====================================

Rectified flow (Liu, Gong, Liu, "Flow Straight and Fast", ICLR 2023, eq. 1) and conditional flow
matching with the optimal-transport path (Lipman et al., "Flow Matching for Generative Modeling",
ICLR 2023, eq. 22-23 with :math:`\sigma_\min = 0`) learn a velocity :math:`v(x_t, t)` on the straight
interpolation :math:`x_t = (1-t)\,x_0 + t\,\varepsilon` and sample by integrating
:math:`dx_t/dt = v(x_t, t)` from :math:`t = 1` to 0. A diffusion model integrates the probability-flow
ODE :math:`dx/d\sigma = (x - D(x;\sigma))/\sigma` of :math:`x = x_0 + \sigma\varepsilon` (Karras et al.,
"Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS 2022, eq. 4). Dividing the
flow's path by :math:`1-t` gives the diffusion form,

.. math:: \frac{x_t}{1-t} = x_0 + \sigma\varepsilon, \qquad \sigma = \frac{t}{1-t}, \qquad
   x_t = \frac{x}{1+\sigma},

so with independent noise-data pairs and the exact optimum :math:`v^* = E[\varepsilon - x_0 \mid x_t]`
the two ODEs are one transport, seen at a different scale and in a different time
(:mod:`diffcomm.diffusion.flow`: :func:`~diffcomm.diffusion.flow.sigma_to_t`,
:func:`~diffcomm.diffusion.flow.t_to_sigma`, and :class:`~diffcomm.diffusion.flow.FlowDenoiser`, which
reads a velocity as a denoiser). This example checks that on a 2-D Gaussian mixture whose exact
denoiser :class:`diffcomm.diffusion.gaussian.GaussianMixtureDenoiser` stands in for a trained network,
measures how straight the one set of trajectories looks in the variance-exploding (VE), the
variance-preserving (VP) and the flow parametrisation, and then asks what it buys in practice: the
error of a few Euler steps (:func:`diffcomm.diffusion.samplers.sample_euler`) on the flow's uniform
grid in :math:`t` against the diffusion's Karras grid in :math:`\sigma`.
"""

import os

import matplotlib.pyplot as plt
import torch

from diffcomm.diffusion.consistency import consistency_sigmas
from diffcomm.diffusion.flow import FlowDenoiser, sigma_to_t, t_to_sigma
from diffcomm.diffusion.gaussian import GaussianMixtureDenoiser
from diffcomm.diffusion.samplers import NFECounter, sample_euler, sample_ode
from diffcomm.diffusion.schedules import alpha_bar_of_sigma

FAST = os.environ.get("DIFFCOMM_GALLERY_FAST") == "1"  # the test suite's quick run

# %%
# The mixture and its exact flow-matching velocity
# ------------------------------------------------
# Three thin arcs on a circle of radius 1.5 (elongated Gaussian components), about the scale of the
# unit noise, as images in the model space [-1, 1] are. The flow-matching optimum follows from the
# library's map :math:`D = x_t - t\,v` (the :class:`~diffcomm.diffusion.flow.FlowDenoiser` docstring)
# read backwards: :math:`v^*(x_t, t) = (x_t - D(x_t/(1-t);\, \sigma))/t` with the mixture's exact
# denoiser :math:`D`. Wrapped in a ``FlowDenoiser`` it is a flow prior like the shipped ``fmnist-flow``,
# and every sampler runs on it.

F64 = torch.float64
mixture = GaussianMixtureDenoiser.ring(torch.tensor([0.5, 0.3, 0.2]), radius=1.5, var_along=0.15, var_across=0.01)


def velocity(x_t, t, class_labels=None):
    """The exact flow-matching velocity E[ε − x0 | x_t] of the mixture."""
    t = t.reshape(-1, 1)
    return (x_t - mixture(x_t / (1 - t), t_to_sigma(t))) / t


SIGMA_MAX = 80.0  # the shipped priors' σ_max; flow time t_max = 80/81
flow = FlowDenoiser(velocity, sigma_min=0.002, sigma_max=SIGMA_MAX)
T_MAX = float(sigma_to_t(torch.tensor(SIGMA_MAX, dtype=F64)))


def flow_grid(k: int) -> torch.Tensor:
    """k Euler steps uniform in the flow time t, from t_max to 0, as noise levels σ = t/(1 − t)."""
    return t_to_sigma(torch.linspace(T_MAX, 0.0, k + 1, dtype=F64))


# %%
# An Euler step in :math:`t` is :func:`~diffcomm.diffusion.samplers.sample_euler` on :math:`\sigma`.
# One flow step :math:`x_{t'} = x_t + (t' - t)\,v(x_t, t)` is computed here by hand and compared with one
# step of the library's Euler sampler on the denoiser ``flow`` between the matching noise levels,
# rescaled by :math:`1/(1+\sigma')`. They agree to rounding: the step is the same DDIM update in both
# parametrisations (Karras et al. 2022, §3), so a grid uniform in :math:`t` *is* the flow's Euler method.

gen = torch.Generator().manual_seed(0)
x = mixture.sample(6, gen) + 2.0 * torch.randn(6, 2, generator=gen, dtype=F64)  # a state at σ = 2
t_now, t_next = sigma_to_t(torch.tensor(2.0, dtype=F64)), torch.tensor(0.3, dtype=F64)
x_t = x * (1 - t_now)
by_hand = x_t + (t_next - t_now) * flow.velocity(x_t, t_now)
library = sample_euler(flow, x, t_to_sigma(torch.stack([t_now, t_next]))) * (1 - t_next)
print(f"flow Euler step by hand vs sample_euler on σ: max |difference| {float((by_hand - library).abs().max()):.1e}")
print(f"FlowDenoiser(v*) vs the mixture's denoiser: max |difference| "
      f"{float((flow(x, 2.0) - mixture(x, 2.0)).abs().max()):.1e}")

# %%
# One transport from the same noise
# ---------------------------------
# The start :math:`x = x_0 + \sigma_\max\varepsilon` is drawn exactly from :math:`p_{\sigma_\max}`; in
# flow coordinates it is :math:`x/(1+\sigma_\max) = (1-t_\max)\,x_0 + t_\max\,\varepsilon`, almost pure
# noise. From it the diffusion PF-ODE is solved accurately in :math:`\log\sigma` with the mixture's
# denoiser (:func:`~diffcomm.diffusion.samplers.sample_ode`, adaptive RK45), and the flow ODE is
# integrated in its own time by many small Euler steps on the velocity. The end points agree up to the
# flow solver's first-order error, which shrinks as its steps do.

n_paths = 150 if FAST else 1000
starts = mixture.sample(n_paths, gen) + SIGMA_MAX * torch.randn(n_paths, 2, generator=gen, dtype=F64)

# levels at which the paths are recorded: dense in log σ and in t, so both ends are resolved
n_levels = 150 if FAST else 300
dense = torch.logspace(float(torch.tensor(SIGMA_MAX).log10()), -3, n_levels, dtype=F64)[1:]
inner = torch.cat([dense, flow_grid(n_levels)[1:-1]]).unique().flip(0)
levels = torch.cat([torch.tensor([SIGMA_MAX], dtype=F64), inner[inner < SIGMA_MAX * 0.999], torch.zeros(1, dtype=F64)])
recorded = []
ode_end = sample_ode(mixture, starts.clone(), levels, rtol=1e-9, atol=1e-10,
                     callback=lambda d: recorded.append(d["x"].clone()))
paths = torch.cat([torch.stack(recorded), ode_end[None]])  # (levels, paths, 2), VE coordinates
path_sigmas = levels.clone()

flow_steps = [100, 400] if FAST else [100, 400, 1600]
flow_ends = {k: sample_euler(flow, starts.clone(), flow_grid(k)) for k in flow_steps}
for k, end in flow_ends.items():
    gap = (end - ode_end).norm(dim=1)
    print(f"flow ODE, {k:4d} Euler steps in t, vs diffusion PF-ODE (RK45): end points differ by "
          f"{float(gap.mean()):.1e} on average, {float(gap.max()):.1e} at most")

# %%
# The three parametrisations of the same paths: VE :math:`x`, VP :math:`x\sqrt{\bar\alpha}` with
# :math:`\bar\alpha = 1/(1+\sigma^2)` (:func:`~diffcomm.diffusion.schedules.alpha_bar_of_sigma`), and the
# flow's :math:`x/(1+\sigma) = (1-t)\,x`. Two numbers per path, both independent of the speed along it and
# summarised by their medians over all paths (the mean of the first is printed too): the path length over
# the end-to-end distance (1 for a straight segment) and the total turning angle (0 for a straight segment).

scales = {
    "VE: x": torch.ones_like(path_sigmas),
    "VP: x/√(1+σ²)": alpha_bar_of_sigma(path_sigmas).sqrt(),
    "flow: x/(1+σ)": 1 - sigma_to_t(path_sigmas),
}
views, straightness = {}, {}
for name, scale in scales.items():
    q = paths * scale[:, None, None]
    seg = q[1:] - q[:-1]
    ratio = seg.norm(dim=2).sum(0) / (q[-1] - q[0]).norm(dim=1)
    heading = torch.atan2(seg[..., 1], seg[..., 0])
    turn = torch.remainder(heading[1:] - heading[:-1] + torch.pi, 2 * torch.pi) - torch.pi
    views[name] = q
    straightness[name] = (ratio, turn.abs().sum(0).rad2deg())
    print(f"{name:14s} length / end-to-end: median {float(ratio.median()):.3f}, mean {float(ratio.mean()):.3f};"
          f"  turning angle: median {float(straightness[name][1].median()):.0f}°")

# %%
# A dozen of the paths in each view, coloured by the component they end in. Circles are the end points
# of the diffusion PF-ODE, crosses those of the flow ODE (the finest Euler run), stars the starts. The
# VE paths (top left) start at radius about :math:`\sigma_\max` and do all their turning near the data,
# shown enlarged on the right; the VP and flow paths (bottom) start on the unit-scale noise.

comp = mixture.responsibilities(ode_end, 0.0).argmax(1)
comp_colors = ["tab:blue", "tab:orange", "tab:green"]
shown = torch.arange(12)
u = torch.linspace(-3.5, 3.5, 150, dtype=F64)
gx, gy = torch.meshgrid(u, u, indexing="xy")
density = mixture.log_prob(torch.stack([gx, gy], -1).reshape(-1, 2)).reshape(gx.shape).exp()
finest = flow_ends[flow_steps[-1]]

fig, axes = plt.subplots(2, 2, figsize=(9.5, 9.5), layout="constrained")
panels = [("VE: x", axes[0, 0], None), ("VE: x", axes[0, 1], 2.6),
          ("VP: x/√(1+σ²)", axes[1, 0], None), ("flow: x/(1+σ)", axes[1, 1], None)]
for name, ax, zoom in panels:
    q = views[name]
    ax.contourf(gx, gy, density, levels=10, cmap="Greys")
    for k in shown:
        ax.plot(q[:, k, 0], q[:, k, 1], "-", color=comp_colors[comp[k]], lw=1.2)
    if zoom is not None or not name.startswith("VE"):  # at the full VE scale the ends are one dot
        ax.plot(q[-1, shown, 0], q[-1, shown, 1], "o", mfc="none", mec="k", ms=7)
        ax.plot(finest[shown, 0], finest[shown, 1], "x", color="k", ms=5)
    ax.plot(q[0, shown, 0], q[0, shown, 1], "k*", ms=9)
    lim = zoom if zoom is not None else float(q[0, shown].abs().max()) * 1.08
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ratio, turn = straightness[name]
    ax.set_title(f"{name}\nlength / end-to-end {float(ratio.median()):.2f}, "
                 f"turning {float(turn.median()):.0f}° (medians over {n_paths} paths)", fontsize=9)
axes[0, 1].set_title("VE, enlarged around the data: where the same paths turn", fontsize=9)
axes[1, 0].plot([], [], "k*", label=f"start, σ = {SIGMA_MAX:g}")
axes[1, 0].plot([], [], "o", mfc="none", mec="k", label="end, diffusion PF-ODE (RK45)")
axes[1, 0].plot([], [], "x", color="k", label=f"end, flow ODE ({flow_steps[-1]} Euler steps in t)")
axes[1, 0].legend(loc="upper left", fontsize=7)
plt.show()

# %%
# The spread over all paths: the distribution of the turning angle in each parametrisation.

fig, ax = plt.subplots(figsize=(6.4, 3.4), layout="constrained")
bins = torch.linspace(0, float(max(t.max() for _, t in straightness.values())), 30)
for name, (_, turn) in straightness.items():
    ax.hist(turn, bins=bins, histtype="step", lw=1.8, label=name)
ax.set_xlabel("total turning angle of a path (degrees)")
ax.set_ylabel("number of paths")
ax.set_title(f"How much the same {n_paths} trajectories turn in each parametrisation", fontsize=10)
ax.legend()
plt.show()

# %%
# A few Euler steps: the flow's grid against the Karras grid
# ----------------------------------------------------------
# Since an Euler step is the same update in every parametrisation, what separates "Euler on the flow"
# from "Euler on the diffusion" with an exact model is only *where* the steps are. The flow takes k steps
# uniform in :math:`t`, i.e. at :math:`\sigma_i = t_i/(1-t_i)`; the diffusion takes the Karras levels
# (Karras et al. 2022, eq. 5, :math:`\rho = 7`) without the final :math:`\sigma_\min`, whose step would be
# wasted at so few (:func:`~diffcomm.diffusion.consistency.consistency_sigmas`, as in the example on
# flow and consistency priors). Both start from the same states at :math:`\sigma_\max = 80` and are scored
# by the mean distance of their end points to the accurate PF-ODE end points computed above. The
# evaluations are counted with :class:`~diffcomm.diffusion.samplers.NFECounter`.

nfe_list = [1, 2, 4, 8, 16] if FAST else [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]
grids = {
    "flow: uniform in t": flow_grid,
    "diffusion: Karras σ, ρ = 7": lambda k: consistency_sigmas(k, 0.002, SIGMA_MAX).to(F64),
}
errors, ends_at_4 = {name: [] for name in grids}, {}
for name, grid in grids.items():
    for k in nfe_list:
        counter = NFECounter(flow if name.startswith("flow") else mixture)
        end = sample_euler(counter, starts.clone(), grid(k))
        errors[name].append((counter.nfe, float((end - ode_end).norm(dim=1).mean())))
        if k == 4:
            ends_at_4[name] = end
for i, k in enumerate(nfe_list):
    (_, e_flow), (_, e_karras) = errors["flow: uniform in t"][i], errors["diffusion: Karras σ, ρ = 7"][i]
    print(f"{k:2d} Euler steps: mean end-point error, flow grid {e_flow:.3f}, Karras grid {e_karras:.3f} "
          f"(ratio {e_karras / e_flow:.2f})")

fig, (ax_grid, ax_err, ax_end) = plt.subplots(1, 3, figsize=(13, 4.0), layout="constrained")
for (name, grid), marker in zip(grids.items(), ["o", "s"]):
    levels_8 = grid(8)[:-1]
    ax_grid.semilogy(range(len(levels_8)), levels_8, marker + "-", label=name)
    nfe, err = zip(*errors[name])
    ax_err.loglog(nfe, err, marker + "-", label=name)
ax_grid.set_xlabel("step i (8 steps, then σ = 0)")
ax_grid.set_ylabel("noise level σ at step i")
ax_grid.set_title("Where 8 Euler steps evaluate the model", fontsize=10)
ax_grid.axhspan(float(mixture.eigvals.min().sqrt()), 1.5, color="grey", alpha=0.2,
                label="data scales (arc width to radius)")
ax_grid.legend(fontsize=8)
ax_err.set_xticks(nfe_list, [str(k) for k in nfe_list])
ax_err.minorticks_off()
ax_err.set_xlabel("network evaluations (NFE), Euler")
ax_err.set_ylabel("mean distance to the PF-ODE end point")
ax_err.set_title(f"Euler error against NFE ({n_paths} starts)", fontsize=10)
ax_err.legend(fontsize=8)
ax_end.contourf(gx, gy, density, levels=10, cmap="Greys")
n_dots = min(n_paths, 300)
ax_end.plot(ode_end[:n_dots, 0], ode_end[:n_dots, 1], ".", color="k", ms=3, label="accurate PF-ODE")
for (name, end), color in zip(ends_at_4.items(), ["tab:blue", "tab:orange"]):
    ax_end.plot(end[:n_dots, 0], end[:n_dots, 1], ".", color=color, ms=3, alpha=0.6, label=f"4 Euler steps, {name}")
ax_end.set_aspect("equal")
ax_end.set_xlim(-2.6, 2.6)
ax_end.set_ylim(-3.4, 2.3)
ax_end.set_title(f"End points of 4 Euler steps (first {n_dots} starts)", fontsize=10)
ax_end.legend(fontsize=7, loc="lower center")
plt.show()

# %%
# What the figures show
# ---------------------
# The flow ODE and the diffusion PF-ODE take the same noise to the same point: the gap between their end
# points is at the level of the flow solver's step error and falls in proportion as its steps are refined.
# The one set of trajectories looks different in each parametrisation. By length over end-to-end distance
# the VE paths are almost perfectly straight, but only because a long straight ray from radius about
# :math:`\sigma_\max` dominates them; they also turn the least in total. The VP and flow views shrink that
# ray as they go and turn through well over a right angle on the median, and by length over end-to-end the
# flow view is the least straight of the three. Straight interpolation pairs do not make straight marginal
# paths: with independent coupling the flow is the same transport as the diffusion, and straightening it
# takes a new coupling (Liu et al.'s reflow, §2.3), not a new parametrisation.
#
# The practical difference lies in the time grid. One step is the same for both (the grids are then both
# :math:`[\sigma_\max, 0]`); from two steps on, Euler uniform in the flow's :math:`t` lands roughly twice as
# close to the exact end points as Euler on the Karras grid with as many evaluations, or matches it with about
# half the evaluations. Uniform :math:`t` spends its steps at noise levels between a tenth and a few units,
# the scales of this mixture, where the paths bend; :math:`\rho = 7` spends several on :math:`\sigma` far
# above the data scale, where the paths are straight rays, and its last ones far below the width of the arcs
# (Karras et al. chose :math:`\rho = 7` for image quality with their second-order sampler, not for Euler).
# So the advantage measured here is that of a grid matched to the data's scale, and any diffusion model
# sampled on the same :math:`\sigma` levels has it too; it is not a property of flow matching or of
# straighter paths. It is also an exact-model result: a trained flow such as ``fmnist-flow`` adds its own
# network error, and its learnt paths are curved like these, which is why it is weak at a few Euler steps
# (the example on flow and consistency priors). With four steps both Euler runs here still pull many samples
# off the thin arcs, towards the posterior means.
