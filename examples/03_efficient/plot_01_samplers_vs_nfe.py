r"""
Samplers against the number of network evaluations
==================================================

A diffusion sampler pays one network evaluation (NFE) per denoiser call, so the way to a cheaper
sample is a better integrator of the probability-flow ODE :math:`dx/d\sigma = (x - D(x;\sigma))/\sigma`
(Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS 2022,
eq. 4). Four families are compared here on the shipped Fashion-MNIST prior, all on the same Karras
grid of noise levels (eq. 5) and from the same initial noise:

* **DDIM** (Song, Meng, Ermon, "Denoising Diffusion Implicit Models", ICLR 2021, eq. 12), written in
  :math:`\sigma` form; with :math:`\eta = 0` it is deterministic and *is* Euler's method on the ODE
  (Karras et al. 2022, §3), with :math:`\eta = 1` it is DDPM ancestral sampling;
* **Heun**'s second-order method (Karras et al. 2022, Alg. 1), two evaluations per step;
* **DPM-Solver++(2M)** (Lu et al., "DPM-Solver++", 2022, Alg. 2), second order from the previous
  step's denoiser output, one evaluation per step;
* **DDPM** ancestral sampling (Ho et al., "Denoising Diffusion Probabilistic Models", NeurIPS 2020,
  Alg. 2), which draws fresh noise at every step.

All are functions of :mod:`diffcomm.diffusion.samplers`
(:func:`~diffcomm.diffusion.samplers.sample_ddim`, :func:`~diffcomm.diffusion.samplers.sample_heun`,
:func:`~diffcomm.diffusion.samplers.sample_dpmpp_2m`,
:func:`~diffcomm.diffusion.samplers.sample_ddpm_ancestral`); evaluations are counted with
:class:`~diffcomm.diffusion.samplers.NFECounter`. Quality is measured two ways: how far each result is
from a many-step ODE solution of the same noise, and how well a posterior receiver
(:func:`diffcomm.pipeline.decode` with ``sampler=...``) reconstructs images sent over a link.
"""

import os

import matplotlib.pyplot as plt
import torch

from diffcomm import zoo
from diffcomm.data import get_dataset
from diffcomm.diffusion.samplers import (
    NFECounter,
    sample_ddim,
    sample_ddpm_ancestral,
    sample_dpmpp_2m,
    sample_euler,
    sample_heun,
)
from diffcomm.diffusion.schedules import karras_sigmas
from diffcomm.pipeline import build_link, decode, score

FAST = os.environ.get("DIFFCOMM_GALLERY_FAST") == "1"  # the test suite's quick run

prior = zoo.load("fmnist-prior")
n_images = 2 if FAST else 4
nfe_targets = [3, 7] if FAST else [3, 5, 7, 12, 20]
gen = torch.Generator().manual_seed(0)
noise = torch.randn(n_images, 1, 28, 28, generator=gen)  # one initial noise for every sampler


def run(sampler, levels, **options):
    """Sample ``noise`` with ``levels`` Karras noise levels; return pixels and the NFE counted."""
    sigmas = karras_sigmas(levels, prior.sigma_min, prior.sigma_max)
    counter = NFECounter(prior)
    x = sampler(counter, noise * sigmas[0], sigmas, generator=torch.Generator().manual_seed(1), **options)
    return prior.to_pixels(x).clamp(0, 1), counter.nfe


# %%
# A reference solution and one identity
# -------------------------------------
# The reference is DPM-Solver++(2M) on a fine grid. How far it can be trusted is estimated by
# comparing it with the same solver at half as many steps: distances below that level say nothing
# about a sampler. In :math:`\sigma` form the deterministic DDIM update
# :math:`x' = D + \sigma'\,(x - D)/\sigma` is the Euler step, which the two library functions confirm
# to rounding error.

ref_steps = 20 if FAST else 80
reference, ref_nfe = run(sample_dpmpp_2m, ref_steps)
coarser, _ = run(sample_dpmpp_2m, ref_steps // 2)


def rmse(a, b):
    return float((a - b).pow(2).mean().sqrt())


ref_floor = rmse(reference, coarser)
ddim_x, _ = run(sample_ddim, 7, eta=0.0)
euler_x, _ = run(sample_euler, 7)
print(f"reference: DPM-Solver++(2M), {ref_steps} steps = {ref_nfe} NFE; "
      f"its RMSE to {ref_steps // 2} steps: {ref_floor:.1e}")
print(f"max |DDIM(eta=0) - Euler| at 7 steps: {float((ddim_x - euler_x).abs().max()):.1e}")

# %%
# Distance to the ODE solution against NFE
# ----------------------------------------
# Each deterministic sampler integrates the same ODE from the same noise, so with more evaluations it
# must land on the reference image (with many steps the slope of the log-log curve tends to the
# method's order; at these few steps none has reached it). DDPM's
# fresh noise takes it to *another* sample of the prior, so its distance does not go to zero: it
# is shown to make that difference visible, not as an error. Heun's corrector evaluates the denoiser
# at the *end* of each step, and the last step of a coarse Karras grid is long: with 4 levels it runs
# from the level printed below down to σ_min, so the corrector's (x − D)/σ at σ_min is multiplied by
# a step hundreds of times σ_min.

print("Karras grid with 4 levels:", [f"{s:.3g}" for s in karras_sigmas(4, prior.sigma_min, prior.sigma_max).tolist()])

samplers = {
    "DDIM (η = 0) ≡ Euler": (sample_ddim, {"eta": 0.0}, 1),
    "Heun (2nd order)": (sample_heun, {}, 2),
    "DPM-Solver++(2M)": (sample_dpmpp_2m, {}, 1),
    "DDPM ancestral (≡ DDIM η = 1)": (sample_ddpm_ancestral, {}, 1),
}
curves, grid_row = {}, {}
for name, (fn, options, per_step) in samplers.items():
    curves[name] = []
    for nfe in nfe_targets:
        levels = nfe if per_step == 1 else (nfe + 1) // 2  # Heun: n levels cost 2n - 1 evaluations
        x, used = run(fn, levels, **options)
        curves[name].append((used, rmse(x, reference)))
        if nfe == 7:
            grid_row[name] = (x, used)

fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
for name, points in curves.items():
    nfes, errs = zip(*points)
    ax.loglog(nfes, errs, "o--" if name.startswith("DDPM") else "o-", label=name)
bottom = min(min(e for _, e in points) for points in curves.values()) / 2
ax.axhspan(min(bottom, ref_floor / 2), ref_floor, color="grey", alpha=0.2,
           label=f"below the reference's accuracy ({ref_steps} vs {ref_steps // 2} steps)")
ax.set_ylim(bottom=min(bottom, ref_floor / 2))
ax.set_xticks(nfe_targets, [str(n) for n in nfe_targets])
ax.xaxis.set_minor_locator(plt.NullLocator())
ax.yaxis.set_minor_formatter(plt.NullFormatter())
ax.set_xlabel("network evaluations (NFE)")
ax.set_ylabel("pixel RMSE to the reference ODE solution")
ax.set_title(f"fmnist-prior, {n_images} images, same initial noise")
ax.legend(fontsize=8)
plt.show()

# %%
# The same noise at 7 evaluations
# -------------------------------
# One row per sampler, one column per initial noise; the top row is the reference. At this budget
# DPM-Solver++(2M) is already close to the reference, DDIM/Euler is softer, Heun (4 levels) is
# broken by its long last step, and DDPM draws smoother, different garments from the same noise.

rows = [(f"reference ({ref_nfe} NFE)", reference)] + [(f"{n}\n{u} NFE", x) for n, (x, u) in grid_row.items()]
fig, axes = plt.subplots(len(rows), n_images, figsize=(1.25 * n_images + 1.6, 1.3 * len(rows)),
                         layout="constrained", squeeze=False)
for r, (title, images) in enumerate(rows):
    for c in range(n_images):
        axes[r, c].imshow(images[c, 0], cmap="gray", vmin=0, vmax=1)
        axes[r, c].set_xticks([])
        axes[r, c].set_yticks([])
    axes[r, 0].set_ylabel(title, fontsize=7, rotation=0, ha="right", va="center")
plt.show()

# %%
# The sampler inside a posterior receiver
# ---------------------------------------
# A receiver runs the same samplers on a *conditional* denoiser. Here ΠGDM (Song et al., ICLR 2023;
# :mod:`diffcomm.receivers.pigdm`) decodes images sent through a linear 4x-downsampling link at
# CBR 1/16 over AWGN at 10 dB, with each sampler chosen by the receiver's ``sampler`` option; the
# pseudo-inverse :math:`A^+ y` (no prior, no network) is the floor.

x_true = get_dataset("fashion-mnist", "test").images[:n_images]
link = build_link("downsample", (1, 28, 28), "1/16", "awgn", snr_db=10.0)
rx = link.transmit(x_true, generator=torch.Generator().manual_seed(0))
pinv_psnr = float(score(x_true, decode("pinv", link, rx).x_hat)["psnr"].mean())
receiver_samplers = {
    "DDIM (η = 0) ≡ Euler": {"sampler": "ddim", "eta": 0.0},
    "Heun (2nd order)": {"sampler": "heun"},
    "DPM-Solver++(2M)": {"sampler": "dpmpp_2m"},
    "DDPM ancestral (≡ DDIM η = 1)": {"sampler": "ddpm"},
}
step_counts = [2, 5] if FAST else [3, 8, 20]
fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
ticks = set()
for name, options in receiver_samplers.items():
    points = []
    for steps in step_counts:
        result = decode("pigdm", link, rx, prior=prior, steps=steps, generator=torch.Generator().manual_seed(1),
                        **options)
        points.append((result.nfe, float(score(x_true, result.x_hat)["psnr"].mean())))
    nfes, psnrs = zip(*points)
    ticks.update(nfes)
    ax.semilogx(nfes, psnrs, "o--" if name.startswith("DDPM") else "o-", label=name)
ax.set_xticks(sorted(ticks), [str(n) for n in sorted(ticks)])
ax.xaxis.set_minor_locator(plt.NullLocator())
ax.axhline(pinv_psnr, color="k", lw=0.8, ls=":", label="pseudo-inverse A⁺y (0 NFE)")
ax.set_xlabel("network evaluations (NFE), each with one backward pass")
ax.set_ylabel("PSNR (dB)")
ax.set_title(f"ΠGDM, downsample link, AWGN 10 dB, {len(x_true)} test images")
ax.legend(fontsize=8)
plt.show()

# %%
# What the figures show
# ---------------------
# For *unconditional* sampling the integrator decides: DPM-Solver++(2M) is the closest to the ODE
# solution at every budget tried, for one evaluation per step, which is why it is the usual
# few-step choice; DDIM/Euler converges at first order; Heun, second order too, catches up with
# DDIM/Euler only at the largest budgets shown and is the worst choice below them.
# DDPM ancestral sampling never converges to the ODE's image: it samples the prior, and at few steps
# its images are the smoothest. Inside a posterior receiver the ranking changes: the data term makes
# the conditional denoiser change sharply between distant noise levels, the second-order steps
# extrapolate that change (DPM-Solver++) or evaluate it at the far end of a long step (Heun), and at
# small budgets they overshoot, recovering only at a few tens of evaluations, while the stochastic
# DDPM sampler (DDIM with η = 1, what ΠGDM was designed for) is the best at every budget tried.
# Few-step *posterior* sampling is therefore not won by the ODE solver alone; the next example cuts
# NFE by changing the prior instead (flow matching, a consistency model, a latent prior).
