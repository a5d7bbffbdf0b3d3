r"""
Flow matching, consistency and latent priors at a few NFE
=========================================================

A better sampler (previous example) is one way to fewer network evaluations; a different *prior* is
the other. Three shipped priors are built for it, each behind the same denoiser interface
:math:`D(x;\sigma) \approx E[x_0 \mid x_0 + \sigma\varepsilon]` so that every sampler runs on them:

* **rectified flow / flow matching** (Liu, Gong, Liu, "Flow Straight and Fast", ICLR 2023; Lipman et
  al., "Flow Matching for Generative Modeling", ICLR 2023, eq. 20-23): a velocity
  :math:`v_\theta(x_t, t)` on the straight path :math:`x_t = (1-t)\,x_0 + t\,\varepsilon`, read as a
  denoiser through :math:`D = x_t - t\,v` with :math:`\sigma = t/(1-t)`
  (:class:`diffcomm.diffusion.flow.FlowDenoiser`, model ``fmnist-flow``), sampled by Euler steps
  uniform in :math:`t` as in Liu et al.;
* a **consistency model** (Song, Dhariwal, Chen, Sutskever, "Consistency Models", ICML 2023, eq. 3):
  :math:`f_\theta(x_\sigma, \sigma)` maps any point of an ODE trajectory to its origin, distilled from
  the diffusion prior (:class:`diffcomm.diffusion.consistency.ConsistencyDenoiser`, model
  ``fmnist-consistency``), sampled by Alg. 1 (:func:`diffcomm.diffusion.samplers.sample_consistency`);
* a **latent diffusion** prior (Rombach et al., "High-Resolution Image Synthesis with Latent
  Diffusion Models", CVPR 2022): an EDM prior on the 4x7x7 latent of a small autoencoder
  (:class:`diffcomm.diffusion.autoencoder.LatentPrior`, model ``fmnist-latent-prior`` with
  ``fmnist-autoencoder`` inside), so each evaluation runs on 196 values instead of 784.

They are compared with a pixel EDM prior sampled by DPM-Solver++(2M)
(:func:`diffcomm.diffusion.samplers.sample_dpmpp_2m`), at 1, 2, 4, ... evaluations from the same
seed. That prior is ``fmnist-prior-long``, the consistency model's teacher, trained about as long as
the flow; the default ``fmnist-prior`` has the same network trained for a third of the steps.
Quality is KID-cls (Bińkowski et al. 2018, :func:`diffcomm.metrics.distribution.kernel_distance`) in
the feature space of diffcomm's own Fashion-MNIST classifier: it is *not* the Inception KID and its
values compare only with each other.
"""

import os
import time

import matplotlib.pyplot as plt
import torch

from diffcomm import zoo
from diffcomm.data import get_dataset
from diffcomm.diffusion.consistency import consistency_sigmas
from diffcomm.diffusion.flow import sigma_to_t, t_to_sigma
from diffcomm.diffusion.samplers import NFECounter, sample_consistency, sample_dpmpp_2m, sample_euler
from diffcomm.metrics.distribution import classifier_features, kernel_distance

FAST = os.environ.get("DIFFCOMM_GALLERY_FAST") == "1"  # the test suite's quick run

n_samples = 16 if FAST else 64
nfe_list = [1, 2] if FAST else [1, 2, 4, 8]

# %%
# Each prior with its few-step sampler
# ------------------------------------
# The diffusion priors use the Karras levels (Karras et al. 2022, eq. 5) *without* the final
# :math:`\sigma_\min`: :func:`~diffcomm.diffusion.consistency.consistency_sigmas` takes the first k
# levels of a k + 1 level grid, then 0, because an evaluation at :math:`\sigma_\min = 0.002` changes
# an image by almost nothing and would waste one of very few. The flow takes k Euler steps uniform in
# its time t, converted to noise levels by :func:`~diffcomm.diffusion.flow.t_to_sigma`.


def flow_grid(prior, k):
    t = torch.linspace(float(sigma_to_t(torch.tensor(prior.sigma_max))), 0.0, k + 1)
    return t_to_sigma(t)


def karras_grid(prior, k):
    return consistency_sigmas(k, prior.sigma_min, prior.sigma_max)


priors = {
    "EDM prior, DPM-Solver++(2M)": ("fmnist-prior-long", sample_dpmpp_2m, karras_grid),
    "flow matching, Euler in t": ("fmnist-flow", sample_euler, flow_grid),
    "consistency model, Alg. 1": ("fmnist-consistency", sample_consistency, karras_grid),
    "latent EDM prior, DPM-Solver++(2M)": ("fmnist-latent-prior", sample_dpmpp_2m, karras_grid),
}
for name, (model, _, grid) in priors.items():
    print(f"{name:36s} grid for 4 NFE:", [f"{s:.3g}" for s in grid(zoo.load(model), 4).tolist()])

# %%
# Sampling and scoring
# --------------------
# Every prior starts from the same seed (the latent prior in its own 4x7x7 shape); the evaluations
# are counted, not assumed. The reference for KID-cls is a fixed set of test images; the KID-cls of
# as many *other* test images against it is what a perfect prior would score at this sample size.

test = get_dataset("fashion-mnist", "test").images
f_ref = classifier_features(test[:300 if FAST else 1000])
real_kid = kernel_distance(classifier_features(test[-n_samples:]), f_ref)

results = {}
for name, (model, sampler, grid) in priors.items():
    prior = zoo.load(model)
    shape = getattr(prior, "latent_shape", (1, 28, 28))
    results[name] = []
    for k in nfe_list:
        sigmas = grid(prior, k)
        noise = torch.randn(n_samples, *shape, generator=torch.Generator().manual_seed(0))
        counter = NFECounter(prior)
        start = time.perf_counter()
        x = sampler(counter, noise * sigmas[0], sigmas, generator=torch.Generator().manual_seed(1))
        images = prior.to_pixels(x).clamp(0, 1)
        seconds = time.perf_counter() - start
        kid, kid_std = kernel_distance(classifier_features(images), f_ref)
        results[name].append({"nfe": counter.nfe, "kid": kid, "kid_std": kid_std, "s": seconds, "x": images[:4]})
        print(f"{name:36s} NFE {counter.nfe}: KID-cls {kid:.3f} ± {kid_std:.3f}, {seconds:.2f} s "
              f"for {n_samples} samples")

# %%
# Samples against NFE
# -------------------
# Four samples per cell, the same seed in every cell of a row.


def mosaic(images):
    """Four 28x28 images as one 2x2 tile (plain tensor glue)."""
    top = torch.cat([images[0, 0], images[1, 0]], dim=1)
    bottom = torch.cat([images[2, 0], images[3, 0]], dim=1)
    return torch.cat([top, bottom], dim=0)


fig, axes = plt.subplots(len(priors), len(nfe_list), figsize=(1.5 * len(nfe_list) + 1.2, 1.5 * len(priors)),
                         layout="constrained", squeeze=False)
for r, (name, rows) in enumerate(results.items()):
    for c, row in enumerate(rows):
        ax = axes[r, c]
        ax.imshow(mosaic(row["x"]), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        if r == 0:
            ax.set_title(f"{row['nfe']} NFE", fontsize=9)
    axes[r, 0].set_ylabel(name.replace(", ", ",\n"), fontsize=7)
plt.show()

# %%
# KID-cls against NFE
# -------------------
# Lower is better (log scale); error bars are the standard deviation over KID's random subsets, and
# the grey band reaches up to the score of real test images at the same sample size (mean plus one
# standard deviation; real images score about zero). Open squares are the KID-cls each model's
# zoo record states (:func:`diffcomm.zoo.model_config`: 1,000 samples with the sampler it ships
# with), where the record names its NFE: the many-step end of the same curves.

fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
ticks = set(nfe_list)
for name, rows in results.items():
    line = ax.errorbar([r["nfe"] for r in rows], [r["kid"] for r in rows], yerr=[r["kid_std"] for r in rows],
                       marker="o", capsize=3, label=name)
    record = zoo.model_config(priors[name][0])["metrics"]
    if "nfe_per_image_unconditional" in record:  # the model's shipped quality record, where it names its NFE
        nfe = record["nfe_per_image_unconditional"]
        ax.plot(nfe, record["kid_cls_uncond_vs_test"], "s", mfc="none", ms=8, color=line[0].get_color())
        ticks.add(nfe)
ax.plot([], [], "s", mfc="none", color="k", label="shipped record (1,000 samples, its own sampler)")
lowest = min(r["kid"] for rows in results.values() for r in rows) / 3
ax.axhspan(lowest, max(real_kid[0] + real_kid[1], lowest * 1.5), color="grey", alpha=0.25,
           label=f"at or below {n_samples} real test images")
ax.set_yscale("log")
ax.set_ylim(bottom=lowest)
y_ticks = [v for v in (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0) if lowest <= v <= ax.get_ylim()[1]]
ax.set_yticks(y_ticks, [f"{v:g}" for v in y_ticks])
ax.minorticks_off()
ax.set_xscale("log", base=2)
ax.set_xticks(sorted(ticks), [str(k) for k in sorted(ticks)])
ax.set_xlabel("network evaluations (NFE)")
ax.set_ylabel("KID-cls (classifier features; not Inception KID)")
ax.set_title(f"{n_samples} unconditional samples per point vs Fashion-MNIST test images")
ax.legend(fontsize=8)
plt.show()

# %%
# Cost per evaluation
# -------------------
# The flow and consistency models use the pixel prior's U-Net, so an evaluation costs the same; the
# latent prior's network runs on the 4x7x7 latent. Timed alternately on one batch (medians), plus
# the one decoder pass a latent sample needs at the end.


def seconds(fn, repeats=3 if not FAST else 1):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


pixel, latent = zoo.load("fmnist-prior-long"), zoo.load("fmnist-latent-prior")
x_pixel = torch.randn(n_samples, 1, 28, 28, generator=torch.Generator().manual_seed(2))
z_latent = torch.randn(n_samples, *latent.latent_shape, generator=torch.Generator().manual_seed(2))
sigma = torch.tensor(1.0)
with torch.no_grad():
    t_pixel = seconds(lambda: pixel(x_pixel, sigma))
    t_latent = seconds(lambda: latent(z_latent, sigma))
    t_decode = seconds(lambda: latent.to_pixels(z_latent))
print(f"one evaluation at batch {n_samples}: pixel U-Net {1e3 * t_pixel:.0f} ms, latent U-Net "
      f"{1e3 * t_latent:.0f} ms ({t_latent / t_pixel:.2f}x), decoder {1e3 * t_decode:.0f} ms (once, at the end)")

# %%
# What the figures show
# ---------------------
# At one evaluation the consistency model is the only prior whose samples are garments: a single
# step from pure noise gives the others close to the posterior mean :math:`E[x_0 \mid \varepsilon]`,
# the average image (blurred, or with the network's leftover texture for the pixel EDM prior). It
# stays the best up to a few evaluations, but gains little beyond them: its quality is capped by the
# distillation, and its shipped record at 2 NFE lies above the many-step records of the others. The
# flow-matching prior is the weak one at these budgets: it was trained once on independent
# noise-image pairs, without the reflow that straightens the paths (Liu et al. 2023, §2.3), so a
# few Euler steps stay far from its ODE; with many steps it has the best record of the shipped priors.
# The pixel EDM prior with DPM-Solver++(2M) improves fastest and is among the best from about eight
# evaluations. The latent prior is ahead of it at one or two evaluations and each evaluation costs a
# fraction of a pixel one, but its many-step record is not far below its few-step scores: a ceiling
# set by its autoencoder. With 64 samples
# KID-cls separates the priors only where the gaps are large (see the error bars); the zoo records
# and ``bench/nfe_frontier.py --priors`` (1,000 samples) are the finer measurement.
