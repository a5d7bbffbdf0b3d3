r"""
Posterior samplers on one linear link: DPS, ΠGDM, DDNM and DiffPIR
==================================================================

Inference-time conditioning leaves the diffusion prior untouched and steers its reverse process
with the likelihood of what was received, :math:`y = A x + n`. Each method below is written in
diffcomm as a *conditional denoiser* :math:`D_y(x;\sigma)`, the prior's Tweedie estimate
corrected by a data term, and run by a shared sampler (:mod:`diffcomm.receivers.guidance`):

* **DPS** (Chung et al., "Diffusion Posterior Sampling for General Noisy Inverse Problems",
  ICLR 2023, Alg. 1; DiffCom, Wang et al. 2024): a gradient step on
  :math:`\|y - A(\hat x_0)\|^2` taken through the denoiser
  (:func:`diffcomm.receivers.dps.dps_receiver`);
* **ΠGDM** (Song et al., "Pseudoinverse-Guided Diffusion Models for Inverse Problems", ICLR 2023,
  eq. 7): the exact Gaussian likelihood of :math:`y` given :math:`x_\sigma` under
  :math:`x_0 \sim \mathcal N(\hat x_0, r_\sigma^2 I)`, one vector-Jacobian product per step
  (:func:`diffcomm.receivers.pigdm.pigdm_receiver`);
* **DDNM** (Wang et al., "Zero-Shot Image Restoration Using Denoising Diffusion Null-Space Model",
  ICLR 2023, §3.2-3.3): the range-space content of the sample is replaced by :math:`A^+ y`, noised
  to each level so that the measurement's own noise is counted once (the noise rule of DDRM,
  Kawar et al. 2022, eq. 8, in place of DDNM+'s eq. 17; the module docstring says why),
  :func:`diffcomm.receivers.ddnm.ddnm_receiver`;
* **DiffPIR** (Zhu et al., "Denoising Diffusion Models for Plug-and-Play Image Restoration",
  CVPRW 2023, Alg. 1): an exact proximal step
  :math:`\arg\min_x \|y - Ax\|^2 + \rho_\sigma\|x - \hat x_0\|^2` after each denoising, then
  re-noising (:func:`diffcomm.receivers.diffpir.diffpir_receiver`).

The baselines need no diffusion model: the pseudo-inverse :math:`A^+ y` and the exact posterior
mean under a Gaussian prior fitted to training images (LMMSE,
:func:`diffcomm.receivers.linear.lmmse_receiver`). Everything is called by name through
:func:`diffcomm.pipeline.decode`, which also fills in the strength options calibrated for this
link (ΠGDM's guidance scale, DiffPIR's :math:`\lambda` and :math:`\zeta`).
"""

import os

import matplotlib.pyplot as plt
import numpy as np
import torch

from diffcomm.data import get_dataset
from diffcomm.pipeline import build_link, decode, score
from diffcomm.receivers.linear import GaussianPrior, fit_gaussian_prior

FAST = os.environ.get("DIFFCOMM_GALLERY_FAST") == "1"  # the test suite's quick run

n_images = 2 if FAST else 6
steps = 5 if FAST else 20

# %%
# The link and what each receiver makes of it
# -------------------------------------------
# A ``downsample`` encoder (4×4 average pooling: 49 complex symbols for a 28×28 image, CBR 1/16)
# over AWGN at 10 dB, the receiver knowing the channel. All diffusion receivers run the shipped
# ``fmnist-prior`` (as an unconditional model) for the same number of noise levels, each on its
# own default sampler, with the shipped (calibrated) strengths.

test = get_dataset("fashion-mnist", "test")
test_images, test_labels = test[:2]
kinds = [9, 2, 1, 6, 8, 0][:n_images]  # one test image each of ankle boot, pullover, trouser, shirt, bag, top
x = torch.cat([test_images[test_labels == c][:1] for c in kinds])
link = build_link("downsample", (1, 28, 28), "1/16", "awgn", snr_db=10.0)
rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
decode("pinv", link, rx)  # the first call factorises the encoder's matrix once (cached for every receiver)

# The LMMSE receiver's default prior is a Gaussian fitted to 10,000 training images; the quick
# run fits it to fewer.
gaussian = None if not FAST else GaussianPrior(*fit_gaussian_prior(get_dataset("fashion-mnist", "train").images[:1000]))
receivers = {"pinv": {}, "lmmse": {"prior": gaussian}, "dps": {"steps": steps}, "pigdm": {"steps": steps},
             "ddnm": {"steps": steps}, "diffpir": {"steps": steps}}
titles = {"pinv": "A⁺y", "lmmse": "LMMSE", "dps": "DPS", "pigdm": "ΠGDM", "ddnm": "DDNM", "diffpir": "DiffPIR"}
results = {}
for name, options in receivers.items():
    res = decode(name, link, rx, generator=torch.Generator().manual_seed(1), **options)
    results[name] = (res, score(x, res.x_hat))

fig, axes = plt.subplots(n_images, len(receivers) + 1, figsize=(1.45 * (len(receivers) + 1), 1.35 * n_images + 0.9),
                         layout="constrained", squeeze=False)
for i in range(n_images):
    axes[i, 0].imshow(x[i, 0], cmap="gray", vmin=0, vmax=1)
    for j, (res, s) in enumerate(results.values(), start=1):
        axes[i, j].imshow(res.x_hat[i, 0], cmap="gray", vmin=0, vmax=1)
        axes[i, j].set_xlabel(f"{s['psnr'][i]:.1f} dB", fontsize=7, labelpad=1)
axes[0, 0].set_title("truth", fontsize=8)
for j, (name, (res, s)) in enumerate(results.items(), start=1):
    axes[0, j].set_title(f"{titles[name]}\n{s['psnr'].mean():.1f} dB / {s['ssim'].mean():.2f}\n"
                         f"{res.nfe} NFE, {res.seconds / n_images:.2f} s", fontsize=7)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("downsample CBR 1/16, AWGN 10 dB (column: mean PSNR / SSIM, NFE and seconds per image)", fontsize=8)
plt.show()

# %%
# Quality against cost
# --------------------
# Mean PSNR and SSIM over the images against the wall time per image on this machine's CPU (one
# thread; LMMSE's time excludes fitting its Gaussian prior, done once). The gradient methods (DPS,
# ΠGDM) pay a backward pass through the U-Net at every step; DDNM and DiffPIR only add a small
# linear solve to each denoising.

fig, (ax_psnr, ax_ssim) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
markers = dict(zip(results, "osD^vP"))
for name, (res, s) in results.items():
    t = max(res.seconds / n_images, 1e-4)
    for ax, metric in [(ax_psnr, "psnr"), (ax_ssim, "ssim")]:
        ax.scatter(t, s[metric].mean(), s=40, marker=markers[name], label=f"{titles[name]} ({res.nfe} NFE)")
for ax, label in [(ax_psnr, "mean PSNR (dB)"), (ax_ssim, "mean SSIM")]:
    ax.set_xscale("log")
    ax.set_xlabel("seconds per image")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
ax_ssim.legend(fontsize=7, loc="lower right")
plt.show()

print(f"{n_images} images, {steps} steps; options each receiver ran with:")
for name, (res, s) in results.items():
    used = {k: v for k, v in res.extras.get("options_used", {}).items() if k in ("steps", "sampler", "zeta", "lam",
                                                                             "guidance_scale", "shrinkage")}
    print(f"{name:8s} PSNR {s['psnr'].mean():5.2f} dB  SSIM {s['ssim'].mean():.3f}  NFE {res.nfe:3d}  "
          f"{res.seconds / n_images:.3f} s/image  {used}  calibrated: {sorted(res.extras.get('calibrated', {}))}")
print("spread of PSNR over images (std, dB):", {n: round(float(np.std(s["psnr"].numpy())), 2)
                                              for n, (_, s) in results.items()})

# %%
# The pseudo-inverse only fills in what the 49 symbols measure, a blocky 7×7 picture; the Gaussian
# prior's posterior mean (LMMSE) already adds the average garment structure and is a strong
# baseline in PSNR, because PSNR rewards the mean of the posterior while a diffusion receiver
# returns one *sample* of it: sharper, with plausible detail that need not match the truth (no
# receiver can recover the print on the pullover from 49 symbols). At the same number of levels, the receivers
# that use the link's exact linear structure (DiffPIR's proximal step, DDNM's range replacement,
# ΠGDM's Gaussian likelihood) are ahead of DPS's plain gradient step, which is the most general (it
# works through any differentiable link, DeepJSCC included) but here the weakest and, with ΠGDM,
# the costliest per step. With this few images the differences of a few tenths of a dB are within
# the image-to-image spread printed above; the evaluation grid (``diffcomm eval``) measures them
# on many images and seeds.
