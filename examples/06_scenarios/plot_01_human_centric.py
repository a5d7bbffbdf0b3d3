r"""
Human-centric: reconstruction quality per system
================================================

In the human-centric scenario the receiver's output is an image for a person to look at, so it is
judged by its fidelity to the sent image (PSNR, SSIM) and by how natural it looks (FD-cls, a Fréchet
distance on the shipped classifier's features — not FID). The two pull apart: the consistency–realism
trade-off of the source tutorial. This example reads the committed grid ``results/receivers/``
(256 Fashion-MNIST test images, CBR 1/16, AWGN and block Rayleigh fading, perfect CSI) and compares,
at each SNR:

* the **DeepJSCC** decoder (Bourtsoulatze, Kurka, Gündüz, IEEE TCCN 2019;
  :mod:`diffcomm.receivers.jscc_decoder`), and the diffusion receivers on its link, DPS / DiffCom and
  HiFi-DiffCom (Wang et al., "DiffCom", 2024; :mod:`diffcomm.receivers.dps`, :mod:`diffcomm.receivers.hifi`);
* the diffusion receivers of the linear downsampling link (ΠGDM, DDNM+, DiffPIR, CDDM) and its
  pseudo-inverse;
* the **digital** separation baseline: image codec + 5G LDPC + QAM, the best configuration per SNR
  (:mod:`diffcomm.transmit.digital.system`), with the ideal separation bound from ``results/jscc/``
  (:mod:`diffcomm.transmit.bound`).

The records are read with :func:`diffcomm.eval.store.load_records`, the curves and their 95 %
intervals come from :func:`diffcomm.eval.summary.curves`, the table from
:func:`diffcomm.eval.summary.results_table`, and the saved reconstructions from
:func:`diffcomm.eval.store.load_point_images`.
"""

import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

from diffcomm.eval.store import load_point_images, load_records
from diffcomm.eval.summary import curves, metric_value, results_table
from diffcomm.utils import format_table

FAST = os.environ.get("DIFFCOMM_GALLERY_FAST") == "1"  # the test suite's quick run
N_IMAGES = 3 if FAST else 5                             # saved reconstructions shown per system

# the repository root: sphinx-gallery runs each example from its own folder (and sets no __file__)
ROOT = Path(__file__).resolve().parents[2] if "__file__" in globals() else Path.cwd().parents[1]
RESULTS = ROOT / "results"
GRID = RESULTS / "receivers" / "receivers.jsonl"
records = load_records(GRID, repair=False)   # repair=False: only read, never touch the file

LABELS = {"deepjscc": "DeepJSCC decoder", "hifi@deepjscc": "HiFi-DiffCom", "dps@deepjscc": "DPS / DiffCom",
          "diffpir@downsample": "DiffPIR", "pigdm@downsample": "ΠGDM", "ddnm@downsample": "DDNM+",
          "cddm@downsample": "CDDM", "pinv@downsample": "pseudo-inverse", "digital": "digital (codec+LDPC+QAM)"}


def style(system):
    """Solid: the DeepJSCC link; dashed: the downsampling link; dotted: the digital baseline."""
    colours = dict(zip(LABELS, plt.get_cmap("tab10").colors))
    line = "-" if "downsample" not in system and system != "digital" else "--" if system != "digital" else ":"
    return {"color": colours.get(system, "grey"), "linestyle": line, "marker": "o", "markersize": 3.5}


# %%
# PSNR and SSIM against SNR
# -------------------------
# One panel per channel; shaded bands are the 95 % intervals over the 256 images. The thin grey line
# is the ideal separation bound (capacity-achieving channel code and the best codec operating point;
# over Rayleigh, its outage version), from ``results/jscc/jscc_vs_digital.json``.

bound = json.loads((RESULTS / "jscc" / "jscc_vs_digital.json").read_text())["channels"]
channels = sorted({r["channel"] for r in records})
fig, axes = plt.subplots(2, len(channels), figsize=(10, 6.6), layout="constrained", sharex=True, squeeze=False)
for row, metric in enumerate(("psnr", "ssim")):
    panels = curves(records, metric)
    for col, channel in enumerate(channels):
        ax = axes[row, col]
        (panel,) = [p for p in panels if p[2] == channel]
        for system in LABELS:
            pts = panels[panel].get(system)
            if not pts:
                continue
            snr, mean, low, high = ([p[i] for p in pts] for i in range(4))
            st = style(system)
            ax.plot(snr, mean, label=LABELS[system], **st)
            ax.fill_between(snr, low, high, color=st["color"], alpha=0.15, linewidth=0)
        if metric == "psnr":
            b = {float(s): v for s, v in bound[channel]["bound_outage_psnr"].items()}
            shown = [s for s in sorted(b) if min(snr) <= s <= max(snr)]
            ax.plot(shown, [b[s] for s in shown], color="grey", linewidth=1, label="ideal separation bound")
            ax.set_title(f"{channel}, CBR 1/16, perfect CSI", fontsize=9)
        ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
        ax.grid(alpha=0.3)
        if row == 1:
            ax.set_xlabel("SNR (dB)")
handles, labels = axes[0, 0].get_legend_handles_labels()
fig.legend(handles, labels, loc="outside right center", fontsize=8,
           title="solid: DeepJSCC link\ndashed: downsampling link", title_fontsize=7)
plt.show()

# %%
# Fidelity against realism
# ------------------------
# At one SNR, every system as a point: PSNR (up is more faithful) against FD-cls (left is more
# realistic; log scale). The upper-left corner is the goal; where the best systems cannot both move up
# and left, a human-centric system has to choose between fidelity and realism.

fig, axes = plt.subplots(1, len(channels), figsize=(10, 3.8), layout="constrained", squeeze=False)
for ax, channel in zip(axes[0], channels):
    for r in records:
        if r["channel"] != channel or r["snr_db"] != 10 or r["system"] not in LABELS:
            continue
        fd, (ps, _, _) = metric_value(r, "fd_cls")[0], metric_value(r, "psnr")
        st = style(r["system"])
        ax.scatter(fd, ps, color=st["color"], s=30, zorder=3)
        left = r["system"] == "pigdm@downsample"            # keep its label clear of DDNM+'s
        ax.annotate(LABELS[r["system"]].split(" (")[0], (fd, ps), fontsize=7, xytext=(-4 if left else 4, 3),
                    textcoords="offset points", ha="right" if left else "left")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator([2, 5, 10, 20, 50, 100, 200]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("FD-cls (lower is more realistic)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"{channel}, 10 dB", fontsize=9)
    ax.grid(alpha=0.3, which="both")
plt.show()

# %%
# What the images look like
# -------------------------
# The grid saved the first test images of every point beside its record; here those of AWGN at 5 dB.

SNR_SHOWN = 5.0
shown = {r["system"]: r for r in records if r["channel"] == "awgn" and r["snr_db"] == SNR_SHOWN}
rows = [s for s in LABELS if s in shown]
first = load_point_images(GRID, shown[rows[0]])
grid = [("original", first["x"][:N_IMAGES])]
grid += [(LABELS[s], load_point_images(GRID, shown[s])["x_hat"][:N_IMAGES]) for s in rows]
fig, axes = plt.subplots(N_IMAGES, len(grid), figsize=(0.98 * len(grid), 1.0 * N_IMAGES + 0.6),
                         layout="constrained", squeeze=False)
for j, (name, images) in enumerate(grid):
    for i in range(N_IMAGES):
        ax = axes[i, j]
        ax.imshow(images[i, 0].clamp(0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, j].set_title(name.replace(" (", "\n("), fontsize=6)
assert all(torch.equal(load_point_images(GRID, shown[s])["x"], first["x"]) for s in rows)  # same images
fig.suptitle(f"AWGN {SNR_SHOWN:g} dB, CBR 1/16: the committed grid's saved reconstructions", fontsize=9)
plt.show()

# %%
# The numbers at AWGN 10 dB
# -------------------------
# :func:`~diffcomm.eval.summary.results_table` (the table ``diffcomm report`` writes), for one setting.

header, table = results_table([r for r in records if r["channel"] == "awgn" and r["snr_db"] == 10])
keep = [header.index(c) for c in ("system", "snr_db", "psnr", "ssim", "fd_cls", "accuracy", "sent", "nfe")]
print(format_table([header[i] for i in keep], [[row[i] for i in keep] for row in table]))

# %%
# DeepJSCC is the PSNR/SSIM reference over the whole SNR range and stays above the practical digital
# envelope everywhere; the digital baseline shows the cliff — good only where a configuration decodes,
# nothing but the fallback grey below (Rayleigh at 0 dB) — and its blocky, blurred images are the least
# realistic apart from the pseudo-inverse. The diffusion receivers on the DeepJSCC link give up a little
# fidelity for a lot of realism: HiFi-DiffCom sits just below the decoder in PSNR at low and mid SNR
# (above it at 20 dB) with about half its FD-cls, so at 10 dB the two span the fidelity–realism frontier,
# while DPS is behind HiFi-DiffCom on both axes. The receivers of the downsampling link recover much more
# than its pseudo-inverse, but that linear code sends less of the image than the learned one, so they stay
# well below the DeepJSCC link. Regenerate the grid with
# ``diffcomm eval --config results/receivers/grid.toml --out results/receivers/receivers.jsonl``
# (or ``bash scripts/reproduce_results.sh receivers``, about 23 minutes on 2 cores).
