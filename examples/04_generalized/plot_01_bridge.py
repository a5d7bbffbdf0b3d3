r"""
A Schrödinger bridge from the degraded reconstruction
=====================================================

A noise-to-image receiver (DPS, ΠGDM, DiffPIR) starts its reverse process from pure noise and spends
its network evaluations rediscovering what the link already told it. A *bridge* starts from the
degraded estimate the link gives for free and walks straight to a clean image. I2SB (Liu, Vahdat,
Huang, Theodorou, Nie, Anandkumar, "I2SB: Image-to-Image Schrödinger Bridge", ICML 2023) trains on
pairs :math:`(x_0, x_1)` — a clean image and its degraded version — whose bridge has the tractable
marginal of its eq. (11) with a constant diffusion coefficient :math:`\beta`,

.. math::

   q(x_t \mid x_0, x_1) = \mathcal{N}\big((1-t)\,x_0 + t\,x_1,\; \beta\,t(1-t)\,I\big),
   \qquad t \in [0, 1],

a Brownian bridge pinned at both ends. A network predicts :math:`\hat x_0(x_t, t)`, and sampling
starts at :math:`x_1` itself (no noise) and steps down the bridge posterior of eq. (12),
:math:`q(x_s \mid \hat x_0, x_t) = \mathcal{N}\big(\hat x_0 + \tfrac{s}{t}(x_t - \hat x_0),\;
\beta\,s(t-s)/t\,I\big)`, returning the last :math:`\hat x_0`.

diffcomm ships two bridges (:mod:`diffcomm.diffusion.bridge`, receiver :mod:`diffcomm.receivers.i2sb`),
both fine-tuned from the Fashion-MNIST prior and run in 4 network evaluations: ``fmnist-i2sb-jscc``
starts from the DeepJSCC decoder's output, ``fmnist-i2sb-pinv`` from the pseudo-inverse
:math:`A^+y` of the linear downsampling link. Both are decoded here with
:func:`diffcomm.pipeline.decode`, beside a noise-started receiver on the same link.
"""

import os

import matplotlib.pyplot as plt
import torch

from diffcomm import zoo
from diffcomm.data import get_dataset
from diffcomm.pipeline import build_link, decode, score
from diffcomm.utils import format_table

FAST = os.environ.get("DIFFCOMM_GALLERY_FAST") == "1"  # the test suite's quick run
N_SHOW = 2 if FAST else 4          # images drawn along the bridge
N_MORE = 6 if FAST else 28         # further images for the start-vs-end statistics
NOISE_STEPS = 8 if FAST else 20    # steps of the noise-started receivers (20 in the committed grids)
SNR_DB = 5.0

x = get_dataset("fashion-mnist", "test").images[:N_SHOW + N_MORE]

# %%
# Watching the bridge
# -------------------
# :func:`~diffcomm.diffusion.bridge.sample_bridge` takes no callback, so to see the states we hand
# the receiver the bridge network inside a thin wrapper that keeps each call's input
# :math:`x_t` and its prediction :math:`\hat x_0` (in pixels) and otherwise passes everything through.
# With 4 steps the network is called at :math:`t = 1, 0.75, 0.5, 0.25`; the output is the last
# :math:`\hat x_0`.


class RecordedBridge:
    """The bridge network, keeping each step's state x_t and its x̂0 prediction (as pixels)."""

    def __init__(self, bridge):
        self.bridge, self.calls = bridge, []

    def __call__(self, x_t, t, condition):
        x0_hat = self.bridge(x_t, t, condition)
        self.calls.append((float(t[0]), self.bridge.to_pixels(x_t).clamp(0, 1),
                           self.bridge.to_pixels(x0_hat).clamp(0, 1)))
        return x0_hat

    def __getattr__(self, name):  # model_kind, source, beta, to_pixels, ...: the bridge's own
        if name == "bridge":
            raise AttributeError(name)
        return getattr(self.bridge, name)


def run_link(encoder, bridge_name, noise_receiver):
    """One link: the bridge on every image (states recorded), the noise-started receiver on the shown ones."""
    link = build_link(encoder, (1, 28, 28), "1/16", "awgn", snr_db=SNR_DB)
    g_channel = torch.Generator().manual_seed(0)
    rx_show = link.transmit(x[:N_SHOW], generator=g_channel)
    rx_more = link.transmit(x[N_SHOW:], generator=g_channel)
    out = {"states": [], "start": [], "end": []}
    for rx in (rx_show, rx_more):
        bridge = RecordedBridge(zoo.load(bridge_name))
        res = decode("i2sb", link, rx, prior=bridge, generator=torch.Generator().manual_seed(1))
        out["states"].append(bridge.calls)
        out["start"].append(bridge.calls[0][1])          # x1: what the bridge starts from (t = 1)
        out["end"].append(res.x_hat)
        out["nfe"] = res.nfe
    out["states"] = [(t, torch.cat([a, b]), torch.cat([pa, pb]))       # both batches, call by call
                     for (t, a, pa), (_, b, pb) in zip(*out["states"])]
    out["start"], out["end"] = torch.cat(out["start"]), torch.cat(out["end"])
    noise = decode(noise_receiver, link, rx_show, generator=torch.Generator().manual_seed(1), steps=NOISE_STEPS)
    out["noise"], out["noise_nfe"] = noise.x_hat.clamp(0, 1), noise.nfe
    return out


LINKS = {"DeepJSCC link": ("deepjscc", "fmnist-i2sb-jscc", "dps", "DeepJSCC output", "DPS"),
         "downsampling link": ("downsample", "fmnist-i2sb-pinv", "diffpir", "A⁺y", "DiffPIR")}
runs = {name: run_link(enc, bridge, noise) for name, (enc, bridge, noise, *_) in LINKS.items()}


def psnr(images, ref):
    return score(ref, images)["psnr"]


def draw_path(name):
    run, (*_, start_name, noise_name) = runs[name], LINKS[name]
    columns = [(f"start: {start_name}\nt = 1", run["start"][:N_SHOW])]
    columns += [(f"x_t, t = {t:g}", state[:N_SHOW]) for t, state, _ in run["states"][1:]]
    columns += [(f"bridge output\n({run['nfe']:g} NFE)", run["end"][:N_SHOW]),
                (f"{noise_name} from noise\n({run['noise_nfe']:g} NFE)", run["noise"]),
                ("original", x[:N_SHOW])]
    fig, axes = plt.subplots(N_SHOW, len(columns), figsize=(1.45 * len(columns), 1.55 * N_SHOW + 0.5),
                             layout="constrained", squeeze=False)
    for j, (title, images) in enumerate(columns):
        values = psnr(images, x[:N_SHOW])
        for i in range(N_SHOW):
            ax = axes[i, j]
            ax.imshow(images[i, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if title != "original":
                ax.set_xlabel(f"{values[i]:.1f} dB", fontsize=7)
            if i == 0:
                ax.set_title(title, fontsize=7)
    fig.suptitle(f"I2SB on the {name}, AWGN {SNR_DB:g} dB, CBR 1/16 (PSNR under each image)", fontsize=9)
    plt.show()


# %%
# From the DeepJSCC output
# ------------------------
# The DeepJSCC reconstruction is already a fair estimate, but a blurred one. The intermediate states
# carry the bridge's noise (variance :math:`\beta t(1-t)`, largest half-way), and each step moves them
# towards the network's sharper :math:`\hat x_0`. DPS on the same link starts from pure noise.

draw_path("DeepJSCC link")

# %%
# From the pseudo-inverse
# -----------------------
# The downsampling link's :math:`A^+y` is a blocky, noisy image: the bridge has far more to repair
# here, and the noise-started receiver of this link (DiffPIR) is the one to compare with.

draw_path("downsampling link")

# %%
# PSNR along the bridge and at its two ends
# -----------------------------------------
# Left: the mean PSNR of the states :math:`x_t` and of the network's predictions
# :math:`\hat x_0(x_t)` at each call, ending at the output (t = 0).
# Right: every image's PSNR at the start against the end; points above the diagonal were improved.

fig, (ax_path, ax_ends) = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
for (name, run), colour in zip(runs.items(), ("tab:blue", "tab:orange")):
    ts = [t for t, _, _ in run["states"]] + [0.0]
    state_psnr = [float(psnr(s, x).mean()) for _, s, _ in run["states"]] + [float(psnr(run["end"], x).mean())]
    pred_psnr = [float(psnr(p, x).mean()) for _, _, p in run["states"]]
    ax_path.plot(ts, state_psnr, "o-", color=colour, label=f"{name}: state x_t")
    ax_path.plot(ts[:-1], pred_psnr, "s--", color=colour, alpha=0.7, label=f"{name}: prediction x̂0(x_t)")
    start, end = psnr(run["start"], x), psnr(run["end"], x)
    ax_ends.scatter(start, end, s=14, color=colour, label=name)
lims = [min(ax_ends.get_xlim()[0], ax_ends.get_ylim()[0]), max(ax_ends.get_xlim()[1], ax_ends.get_ylim()[1])]
ax_ends.plot(lims, lims, color="grey", linewidth=0.8, linestyle=":", label="no change")
ax_path.invert_xaxis()
ax_path.set_xlabel("bridge time t (1 = degraded start, 0 = output)")
ax_path.set_ylabel(f"mean PSNR (dB), {len(x)} images")
ax_path.legend(fontsize=7)
ax_path.grid(alpha=0.3)
ax_ends.set_xlabel("PSNR of the start x1 (dB)")
ax_ends.set_ylabel("PSNR of the bridge output (dB)")
ax_ends.set_title(f"{len(x)} test images", fontsize=9)
ax_ends.legend(fontsize=7)
ax_ends.grid(alpha=0.3)
plt.show()

rows = []
for name, run in runs.items():
    first = [float(psnr(v[:N_SHOW], x[:N_SHOW]).mean()) for v in (run["start"], run["end"], run["noise"])]
    rows.append([name, f"{psnr(run['start'], x).mean():.2f}", f"{psnr(run['end'], x).mean():.2f}",
                 *(f"{v:.2f}" for v in first), f"{run['nfe']:g} / {run['noise_nfe']:g}"])
print(f"PSNR (dB), AWGN {SNR_DB:g} dB, CBR 1/16: {len(x)} images, and the {N_SHOW} shown")
print(format_table(["link", "start", "bridge", "start (shown)", "bridge (shown)", "from noise (shown)",
                    "NFE bridge / noise"], rows))

# %%
# What the figures say: from the pseudo-inverse the bridge gains several dB on nearly every image and,
# in 4 evaluations, ends on average level with or above the noise-started DiffPIR that spends 20 (at
# a handful of images this comparison is rough). From the DeepJSCC output the picture is different:
# the start is already a good estimate in PSNR, and the bridge's output lands near it, usually a
# little below — it trades a small amount of distortion for sharper edges and texture, which PSNR
# does not reward. On both links the network's first prediction :math:`\hat x_0` (at t = 1) has the
# best PSNR of the whole path: it is close to a posterior mean, and the later stochastic steps add
# detail at some cost in distortion. The committed grid in ``results/conditional/`` (README,
# "Generalized diffusion") measures the realism side with FD-cls on 256 images, and the
# ``results/tradeoff/`` sweep shows more bridge steps buying realism with distortion. DPS, started
# from noise, spends several times the evaluations and still stays below the DeepJSCC output here.
