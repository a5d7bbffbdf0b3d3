r"""
VP against VE forward noising
=============================

The forward process of a diffusion model destroys an image by adding Gaussian noise. Two families
are common (Song et al., "Score-Based Generative Modeling through Stochastic Differential
Equations", ICLR 2021, §3.4):

* **variance exploding (VE)**: :math:`x_t = x_0 + \sigma(t)\,\varepsilon`, with
  :math:`\sigma(t) = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^t` (eq. 31);
* **variance preserving (VP)**: :math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon`,
  with :math:`\bar\alpha_t = e^{-\beta_{\min} t - (\beta_{\max}-\beta_{\min}) t^2/2}` (eq. 33).

They are the same family seen at different scales: dividing a VP sample by
:math:`\sqrt{\bar\alpha_t}` gives :math:`x_0 + \sigma\varepsilon` with
:math:`\sigma^2 = (1-\bar\alpha_t)/\bar\alpha_t` (Karras et al. 2022, Table 1), which is why
diffcomm writes every prior and sampler in the one convention :math:`x = x_0 + \sigma\varepsilon`
(:mod:`diffcomm.diffusion.schedules`). What differs is the *path*: how fast the signal-to-noise
ratio falls with t, and whether the sample's scale grows (VE) or stays near one (VP).
"""

import os

import matplotlib.pyplot as plt
import torch

from diffcomm.data import get_dataset
from diffcomm.diffusion.schedules import alpha_bar_of_sigma, snr_db_of_sigma, ve_sigma_of_t, vp_sigma_of_t

FAST = os.environ.get("DIFFCOMM_GALLERY_FAST") == "1"  # the test suite's quick run

# %%
# Noise level and signal-to-noise ratio along t
# ---------------------------------------------
# The VE path here uses the shipped prior's range (σ from 0.002 to 80 in its [-1, 1] model space);
# the VP path is the linear-β schedule of DDPM in continuous time. Both are written as the σ of the
# equivalent ``x0 + σ ε`` sample, so their SNR (1/σ² for unit-scale data) can be compared directly.

t = torch.linspace(0.0, 1.0, 201)
sigma_ve = ve_sigma_of_t(t, sigma_min=0.002, sigma_max=80.0)
sigma_vp = vp_sigma_of_t(t).clamp_min(1e-4)

fig, (ax_sigma, ax_snr) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
ax_sigma.semilogy(t, sigma_ve, label="VE: σ(t)")
ax_sigma.semilogy(t, sigma_vp, label="VP: σ(t) = √((1−ᾱ)/ᾱ)")
ax_sigma.set_xlabel("t")
ax_sigma.set_ylabel("σ of the equivalent x0 + σε")
ax_sigma.legend()
ax_snr.plot(t, snr_db_of_sigma(sigma_ve), label="VE")
ax_snr.plot(t, snr_db_of_sigma(sigma_vp), label="VP")
ax_snr.set_xlabel("t")
ax_snr.set_ylabel("SNR 1/σ² (dB)")
ax_snr.legend()
plt.show()

# %%
# One image along both paths
# --------------------------
# The top row adds noise with a growing σ (VE: the pixel range grows with it, shown here clipped);
# the bottom row shrinks the signal while it adds noise (VP), so the sample stays near unit variance.

image = get_dataset("fashion-mnist", "test").images[0:1] * 2 - 1  # model space [-1, 1]
times = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0] if not FAST else [0.0, 0.5, 1.0]
gen = torch.Generator().manual_seed(0)
noise = torch.randn(image.shape, generator=gen)

fig, axes = plt.subplots(2, len(times), figsize=(1.5 * len(times), 3.3), layout="constrained")
for j, tj in enumerate(times):
    s_ve = float(ve_sigma_of_t(tj, sigma_min=0.002, sigma_max=80.0))
    x_ve = image + s_ve * noise
    s_vp = max(float(vp_sigma_of_t(tj)), 1e-4)
    abar = float(alpha_bar_of_sigma(s_vp))
    x_vp = abar ** 0.5 * image + (1 - abar) ** 0.5 * noise
    for row, (x, name, s) in enumerate([(x_ve, "VE", s_ve), (x_vp, "VP", s_vp)]):
        ax = axes[row, j]
        ax.imshow(x[0, 0].clamp(-3, 3), cmap="gray", vmin=-3, vmax=3)
        ax.set_title(f"{name} t={tj:.1f}\nσ={s:.3g}, std={x.std():.2f}", fontsize=7)
        ax.axis("off")
plt.show()

# %%
# The VP sample's standard deviation stays near one all the way, the VE sample's grows to σ_max:
# the reason VE models need preconditioning (EDM's :math:`c_\text{in}`,
# :mod:`diffcomm.diffusion.precond`) before the network sees them.
