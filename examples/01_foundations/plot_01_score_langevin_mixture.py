r"""
Scores and annealed Langevin dynamics on a Gaussian mixture
===========================================================

The score of a density is the gradient of its logarithm, :math:`s(x) = \nabla_x \log p(x)`. Langevin
dynamics turns a score into a sampler: :math:`x \leftarrow x + \tfrac{\alpha}{2} s(x) + \sqrt{\alpha}\,z`
with :math:`z \sim \mathcal N(0, I)` converges to :math:`p` as the step :math:`\alpha \to 0` and the
number of steps grows. Song & Ermon ("Generative Modeling by Estimating Gradients of the Data
Distribution", NeurIPS 2019, §3) point out two ways it fails on real data: the score is hard to
learn where there are no data, and a chain at one noise level hardly ever crosses the empty space
between two modes, so it cannot find their relative weights. Their fix is to smooth the data with
Gaussian noise of decreasing size :math:`\sigma_1 > \dots > \sigma_L` and run Langevin at each level
in turn, the *annealed* Langevin dynamics of their Alg. 1
(:func:`diffcomm.diffusion.samplers.sample_annealed_langevin`).

For a Gaussian mixture everything is known exactly.
:class:`diffcomm.diffusion.gaussian.GaussianMixtureDenoiser` gives the posterior mean
:math:`D(x;\sigma) = \mathbb E[x_0 \mid x_0 + \sigma\varepsilon = x]`, and Tweedie's formula turns it
into the score of the noised density, :math:`\nabla \log p_\sigma(x) = (D(x;\sigma) - x)/\sigma^2`
(Efron 2011; Karras et al. 2022, eq. 3). Here it plays the part of a perfectly trained network.
"""

import os

import matplotlib.pyplot as plt
import torch
from torch import nn

from diffcomm.diffusion.gaussian import GaussianMixtureDenoiser
from diffcomm.diffusion.loss import edm_loss
from diffcomm.diffusion.precond import EDMDenoiser
from diffcomm.diffusion.samplers import sample_annealed_langevin
from diffcomm.diffusion.schedules import ve_sigmas

FAST = os.environ.get("DIFFCOMM_GALLERY_FAST") == "1"  # the test suite's quick run

# %%
# The mixture and its score at two noise levels
# ---------------------------------------------
# The mixture of Song & Ermon's Fig. 3: weight 1/5 on :math:`\mathcal N((-5,-5), I)` and 4/5 on
# :math:`\mathcal N((5,5), I)`. The arrows show the direction of the score of :math:`p_\sigma`
# (all drawn at one length; the colour of the background is :math:`\log p_\sigma`). At a small σ each
# arrow points to the nearest mode, and between the modes the density is so low that nothing
# there tells a sample which mode is the heavier one. At a large σ the two modes have spread into
# broad, overlapping bumps, and from most of the square the field points towards the heavy mode:
# at this level the score carries the information about the weights.

mixture = GaussianMixtureDenoiser(torch.tensor([0.2, 0.8]), torch.tensor([[-5.0, -5.0], [5.0, 5.0]]),
                                  torch.eye(2).repeat(2, 1, 1))
LIM = 9.0


def grid(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points of an n x n grid over the plotted square, as (n*n, 2), with the two coordinate arrays."""
    u = torch.linspace(-LIM, LIM, n, dtype=torch.float64)
    gx, gy = torch.meshgrid(u, u, indexing="xy")
    return torch.stack([gx, gy], -1).reshape(-1, 2), gx, gy


def score(denoiser, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Tweedie: the score of p_sigma from the denoiser's posterior mean."""
    sig = torch.full((len(x),), sigma, dtype=x.dtype)
    return (denoiser(x, sig) - x) / sigma ** 2


def draw_field(ax, field: torch.Tensor, pts: torch.Tensor, sigma: float, title: str) -> None:
    """log p_sigma as the background, unit-length score arrows on top."""
    dense, gx, gy = grid(120)
    logp = mixture.log_prob(dense, sigma).reshape(gx.shape)
    ax.pcolormesh(gx, gy, logp.clamp(min=-30), cmap="Greys", shading="auto")
    unit = field / field.norm(dim=1, keepdim=True).clamp_min(1e-12)
    ax.quiver(pts[:, 0], pts[:, 1], unit[:, 0], unit[:, 1], color="tab:blue", angles="xy", scale=30, width=0.004)
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal")
    ax.set_xlim(-LIM, LIM)
    ax.set_ylim(-LIM, LIM)


pts, _, _ = grid(15 if FAST else 21)
fig, axes = plt.subplots(1, 2, figsize=(8, 4), layout="constrained")
for ax, sigma in zip(axes, [0.5, 5.0]):
    draw_field(ax, score(mixture, pts, sigma), pts, sigma, f"score directions of p_σ, σ = {sigma:g}")
plt.show()

# %%
# Plain against annealed Langevin
# -------------------------------
# Both chains start from the same points, spread uniformly over the square, and use the exact
# score. The plain chain runs all its steps at the smallest level :math:`\sigma_L`; the annealed one
# spends the same number of score evaluations on a geometric ladder of levels from
# :math:`\sigma_1 = 20` down to the same :math:`\sigma_L` (NCSN's ``ve_sigmas``), with the step
# size :math:`\alpha_i = \epsilon\,\sigma_i^2/\sigma_L^2` of Alg. 1. Each chain ends with one
# denoising step :math:`x \leftarrow D(x;\sigma_L)`.

n_samples = 400 if FAST else 2000
n_levels, steps_each = 10, (30 if FAST else 100)
sigma_last = 0.1
gen = torch.Generator().manual_seed(0)
start = (torch.rand(n_samples, 2, generator=gen, dtype=torch.float64) * 2 - 1) * 8
truth = mixture.sample(n_samples, gen)

ladder = ve_sigmas(n_levels, sigma_last, 20.0, dtype=torch.float64)
single = torch.tensor([sigma_last, 0.0], dtype=torch.float64)
step_lr = sigma_last ** 2  # the library allows up to 2 sigma_L^2
plain = sample_annealed_langevin(mixture, start.clone(), single, generator=gen,
                                 n_steps_each=n_levels * steps_each, step_lr=step_lr)
annealed = sample_annealed_langevin(mixture, start.clone(), ladder, generator=gen,
                                    n_steps_each=steps_each, step_lr=step_lr)


def light_fraction(x: torch.Tensor) -> float:
    """Share of the samples the exact posterior assigns to the light (weight 1/5) component."""
    return float(mixture.responsibilities(x, 0.0).argmax(1).eq(0).double().mean())


fig, axes = plt.subplots(1, 3, figsize=(10, 3.6), layout="constrained", sharex=True, sharey=True)
panels = [(truth, "samples of the mixture"),
          (plain, f"Langevin at σ = {sigma_last:g} only\n{n_levels * steps_each} steps"),
          (annealed, f"annealed Langevin\n{n_levels} levels x {steps_each} steps")]
for ax, (x, name) in zip(axes, panels):
    ax.scatter(start[:, 0], start[:, 1], s=2, color="0.85", label="start" if x is plain else None)
    ax.scatter(x[:, 0], x[:, 1], s=3, color="tab:red", alpha=0.5)
    ax.set_title(f"{name}\nshare in the light mode: {light_fraction(x):.2f} (true 0.20)", fontsize=9)
    ax.set_aspect("equal")
    ax.set_xlim(-LIM, LIM)
    ax.set_ylim(-LIM, LIM)
axes[1].legend(loc="upper left", fontsize=8, markerscale=4)
plt.show()

print(f"share of samples in the light mode: plain {light_fraction(plain):.3f}, "
      f"annealed {light_fraction(annealed):.3f}, exact 0.200")

# %%
# A learned score is accurate only where the data are
# ---------------------------------------------------
# Song & Ermon's other observation (§3.2.1) concerns a *learned* score. We fit a small MLP by
# denoising score matching, the EDM-weighted loss :func:`diffcomm.diffusion.loss.edm_loss` with
# the network wrapped in :class:`diffcomm.diffusion.precond.EDMDenoiser`, at one noise level
# σ = 0.5 (``p_std = 0``), on samples of the mixture, for a few hundred steps of stochastic
# gradient descent. The loss only ever sees points near the data, so it says nothing about the
# score between the modes or at the edges of the square. The right panel shows the error of the
# learned score times σ, which is the error of the noise the network predicts
# (:math:`\sigma\,\lVert s_\theta - s\rVert = \lVert D_\theta - D\rVert/\sigma`; the noise itself has norm
# about 1.4 in 2-D), with contours of :math:`\log p_\sigma` at 2 and 8 below its peak.


class ScoreMLP(nn.Module):
    """F(c_in x, c_noise) for EDMDenoiser: a two-hidden-layer MLP on (x, c_noise)."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(3, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                               nn.Linear(width, 2))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, class_labels=None) -> torch.Tensor:
        return self.f(torch.cat([x, c_noise.reshape(-1, 1).expand(len(x), 1)], dim=1))


torch.manual_seed(0)  # the network's initial weights
train_sigma = 0.5
data = mixture.sample(20000, gen).float()
sigma_data = float(data.std())
learned = EDMDenoiser(ScoreMLP(), sigma_data=sigma_data)
params = list(learned.parameters())
velocity = [torch.zeros_like(p) for p in params]
train_steps = 150 if FAST else 600
for _ in range(train_steps):  # SGD with heavy-ball momentum (a torch.optim optimiser would import torch._dynamo)
    batch = data[torch.randint(0, len(data), (256,), generator=gen)]
    loss = edm_loss(learned, batch, p_mean=float(torch.tensor(train_sigma).log()), p_std=0.0,
                    sigma_data=sigma_data, generator=gen).mean()
    learned.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p, v in zip(params, velocity):
            v.mul_(0.9).add_(p.grad)
            p.sub_(0.05 * v)

with torch.no_grad():
    exact_field = score(mixture, pts, train_sigma)
    learned_field = score(learned, pts.float(), train_sigma).double()
    dense, gx, gy = grid(80)
    exact_dense = score(mixture, dense, train_sigma)
    # error of the predicted noise, sigma |s_theta - s| = |D_theta - D| / sigma (|eps| is about 1.4 in 2-D)
    err = (score(learned, dense.float(), train_sigma).double() - exact_dense).norm(dim=1) * train_sigma
    logp = mixture.log_prob(dense, train_sigma)

near = logp > logp.max() - 8  # within e^-8 of the peak density
print(f"median error of the learned score (times sigma): {float(err[near].median()):.2f} near the data, "
      f"{float(err[~near].median()):.2f} elsewhere")

fig, axes = plt.subplots(1, 3, figsize=(12, 4), layout="constrained")
draw_field(axes[0], exact_field, pts, train_sigma, f"exact score, σ = {train_sigma:g}")
draw_field(axes[1], learned_field, pts, train_sigma, f"learned score ({train_steps} DSM steps)")
mesh = axes[2].pcolormesh(gx, gy, err.reshape(gx.shape).clamp(1e-2, 10), cmap="magma", shading="auto", norm="log")
axes[2].contour(gx, gy, logp.reshape(gx.shape), levels=[float(logp.max()) - 8, float(logp.max()) - 2],
                colors="cyan", linewidths=0.8)
axes[2].set_aspect("equal")
axes[2].set_title(f"error of the learned score, σ‖s_θ − s‖\nmedian {float(err[near].median()):.2f} inside the "
                  f"outer contour, {float(err[~near].median()):.2f} outside", fontsize=9)
fig.colorbar(mesh, ax=axes[2], shrink=0.8, label="σ‖s_θ − s‖ (error of the predicted noise)")
plt.show()

# %%
# What the figures show
# ---------------------
# With the exact score, the plain chain at the smallest noise level keeps every sample in the
# mode whose basin it started in, so the two modes end up with about the shares of the square
# their basins cover (close to one half each), not 1/5 and 4/5: Langevin at one small σ cannot
# move mass across the empty region in any practical number of steps. The annealed chain first
# moves the samples at large σ, where the modes have merged and the score knows which side is
# heavier, and then sharpens them level by level; its share of the light mode lands near 1/5 at
# the same number of score evaluations. The learned score is close to the exact one around the
# data and poor between the modes and at the edges, where the training loss never looked,
# which is the region that noise at large σ fills with training examples. Noise-conditional
# score networks and all the diffusion priors in diffcomm are trained on a whole range of σ for
# these two reasons.
