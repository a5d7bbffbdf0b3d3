r"""
A decoder trained on the received signal: conditional diffusion after DeepJSCC
==============================================================================

The posterior samplers of the previous example condition at *inference* time: an unconditional
prior :math:`p_\theta(x)` is steered by the likelihood :math:`p(y\mid x)`, which needs the link's
operator (and, through DeepJSCC, its gradient). The other family conditions at *training* time:
a network learns :math:`p(x\mid c)` directly, with :math:`c` computed from simulated channel
outputs, and decoding is plain sampling of that model — no likelihood, no gradient. This is the
conditional decoder of CDM-JSCC (Yilmaz et al., "High Perceptual Quality Wireless Image Delivery
with Denoising Diffusion Models", 2024) and DiffJSCC (Yang et al. 2024), after Yang & Mandt's
conditional diffusion codec (2023).

diffcomm's ``fmnist-cdm-jscc`` (:mod:`diffcomm.diffusion.conditional`) is an EDM denoiser
:math:`D(x;\sigma,c)` with :math:`c = (\hat x_\text{JSCC}, \text{SNR}, G)`: the DeepJSCC
decoder's reconstruction (concatenated to the noisy image), the link SNR and the fading gain,
trained over AWGN and Rayleigh links at 0-20 dB with 10 % condition dropout, so classifier-free
guidance on the *channel* condition applies (Ho & Salimans 2022, eq. 6,
:math:`\tilde D = (1+w)\,D(x\mid c) - w\,D(x\mid\varnothing)`). The ``cdm`` receiver
(:func:`diffcomm.receivers.cdm.cdm_receiver`) samples it, by default from the decoder's output
noised to :math:`\sigma = 0.3` (SDEdit-style), or from pure noise. For contrast, the
inference-time receivers on the same link: DPS through the DeepJSCC encoder
(:func:`diffcomm.receivers.dps.dps_receiver`) and HiFi-DiffCom
(:func:`diffcomm.receivers.hifi.hifi_receiver`: DPS plus a confirming term, started at the
channel-matched noise level), both on the unconditional ``fmnist-prior``.
"""

import os

import matplotlib.pyplot as plt
import torch

from diffcomm.data import get_dataset
from diffcomm.pipeline import build_link, decode, score

FAST = os.environ.get("DIFFCOMM_GALLERY_FAST") == "1"  # the test suite's quick run

n_images = 2 if FAST else 6   # scored
n_shown = 2 if FAST else 3    # drawn per SNR
snrs = [0.0, 20.0]
# cdm's Heun sampler needs about 10 levels from pure noise (at 4-6 it leaves visible noise), so the
# quick run keeps those and cuts the others
steps = {"cdm": 4 if FAST else 10, "cdm-noise": 10, "hifi": 4 if FAST else 10, "dps": 5 if FAST else 20}

# %%
# One DeepJSCC link, two SNRs
# ---------------------------
# The shipped DeepJSCC at CBR 1/16 (49 complex symbols per image) over AWGN. Each receiver decodes
# the same received symbols; ``decode`` gives ``cdm`` its own model (``fmnist-cdm-jscc``) and the
# guided receivers the shipped prior with their calibrated strengths.

x = get_dataset("fashion-mnist", "test").images[:n_images]
systems = {"DeepJSCC decoder": ("deepjscc", {}),
           "CDM (from decoder, σ 0.3)": ("cdm", {"steps": steps["cdm"]}),
           "CDM (from noise)": ("cdm", {"steps": steps["cdm-noise"], "start_sigma": None}),
           "HiFi-DiffCom": ("hifi", {"steps": steps["hifi"]}),
           "DPS": ("dps", {"steps": steps["dps"]})}
results = {}
for snr in snrs:
    link = build_link("deepjscc", (1, 28, 28), "1/16", "awgn", snr_db=snr)
    rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
    decode("deepjscc", link, rx)  # warm-up: the first call loads the DeepJSCC model, outside the timings
    for label, (receiver, options) in systems.items():
        res = decode(receiver, link, rx, generator=torch.Generator().manual_seed(1), **options)
        results[snr, label] = (res, score(x, res.x_hat))

fig = plt.figure(figsize=(1.35 * (len(systems) + 1) + 0.4, 1.3 * n_shown * len(snrs) + 2.6), layout="constrained")
blocks = fig.subfigures(len(snrs) + 1, 1, height_ratios=[n_shown] * len(snrs) + [1.6])
for block, snr in zip(blocks, snrs):
    axes = block.subplots(n_shown, len(systems) + 1, squeeze=False)
    block.suptitle(f"AWGN {snr:g} dB", fontsize=9)
    for i in range(n_shown):
        axes[i, 0].imshow(x[i, 0], cmap="gray", vmin=0, vmax=1)
        for j, label in enumerate(systems, start=1):
            res, s = results[snr, label]
            axes[i, j].imshow(res.x_hat[i, 0], cmap="gray", vmin=0, vmax=1)
            axes[i, j].set_xlabel(f"{s['psnr'][i]:.1f} dB", fontsize=7, labelpad=1)
    axes[0, 0].set_title("truth", fontsize=7)
    for j, label in enumerate(systems, start=1):
        axes[0, j].set_title(label.replace(" (", "\n("), fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])

table_ax = blocks[-1].subplots()
table_ax.axis("off")
columns = [f"{snr:g} dB PSNR / SSIM" for snr in snrs] + ["NFE per image"]
cells = []
for label in systems:
    row = [f"{results[snr, label][1]['psnr'].mean():.2f} / {results[snr, label][1]['ssim'].mean():.3f}"
           for snr in snrs]
    row.append(" / ".join(str(results[snr, label][0].nfe) for snr in snrs))
    cells.append(row)
table = table_ax.table(cellText=cells, rowLabels=list(systems), colLabels=columns, cellLoc="center",
                       bbox=[0.28, 0.0, 0.72, 0.92])
table.auto_set_font_size(False)
table.set_fontsize(7)
table_ax.set_title(f"mean over {n_images} test images (NFE at {' / '.join(f'{s:g}' for s in snrs)} dB)", fontsize=8)
plt.show()

for (snr, label), (res, s) in results.items():
    calibrated = {k: v["value"] for k, v in res.extras.get("calibrated", {}).items()}
    print(f"{snr:4.0f} dB  {label:26s} PSNR {s['psnr'].mean():5.2f}  SSIM {s['ssim'].mean():.3f}  NFE {res.nfe:3d}  "
          f"{res.seconds / n_images:.3f} s/image  calibrated {calibrated}")

# %%
# What the table and the grid show: the conditional decoder, started from the DeepJSCC output,
# stays close to the decoder in PSNR while sharpening its blur; from pure noise it draws a sample
# of :math:`p(x\mid c)` that is more realistic still but further from the truth pixel by pixel —
# the consistency–realism trade-off of generative decoding (``results/conditional/defaults.md``
# measures the realism side with FD-cls on 256 images, which this handful cannot). The DeepJSCC
# decoder, trained for MSE, is hard to beat in PSNR; only HiFi-DiffCom, which starts from its
# output and keeps a term that confirms it, reaches or passes it, at high SNR.
#
# The difference between the two families is where the channel enters. The conditional decoder
# learned :math:`p(x\mid \hat x_\text{JSCC}, \text{SNR})` at training time, so it never evaluates
# the link: it needs no gradient and no operator, but it only knows the encoder, channels and SNRs
# it was trained with (and costs two network calls per level with guidance on). DPS and
# HiFi-DiffCom guide an *unconditional* prior with the received symbols through the link at
# inference time: they adapt to any link they can differentiate, at the cost of a backward pass
# through the U-Net and the encoder per level. DPS, starting from noise, pays for that generality
# in PSNR; HiFi-DiffCom recovers it by starting from the decoder's output as the conditional
# decoder does.
