r"""
Machine-centric: task accuracy against bandwidth, SNR and compute
=================================================================

When the receiver is a machine, the image itself does not matter, only the decision taken from it —
here the Fashion-MNIST class. The source tutorial's effectiveness–efficiency trade-off asks how
accurate that decision is for a given bandwidth (complex channel uses per image), channel quality
(SNR) and receiver compute. The committed grid ``results/machine/`` (:mod:`diffcomm.scenarios.machine`)
compares whole pipelines on AWGN and block Rayleigh fading at −5, 0 and 10 dB:

* **reconstruct, then classify** — the DeepJSCC decoder, DPS, HiFi-DiffCom, or a Gaussian projection
  decoded by its pseudo-inverse or LMMSE, followed by the shipped classifier;
* **task JSCC** — an encoder trained end to end for the classifier's decision, its head at the
  receiver (:mod:`diffcomm.scenarios.taskjscc`);
* **semantic label** — the transmitter classifies and sends the 4-bit label, uncoded, repeated or
  polar coded (:mod:`diffcomm.scenarios.label_link`);
* a **diffusion classifier** — the class-conditional prior scoring the DeepJSCC reconstruction
  (:mod:`diffcomm.scenarios.generative`);
* int8 versions of some receivers (:mod:`diffcomm.scenarios.efficiency`).

The records are read with :func:`diffcomm.eval.store.load_records`, and the Pareto frontiers — a
point is on one when nothing cheaper is at least as accurate — come from
:func:`diffcomm.scenarios.report.frontiers`, the function that wrote ``frontier.json``.
"""

from pathlib import Path

import matplotlib.pyplot as plt

from diffcomm.eval.store import load_records
from diffcomm.scenarios.report import ZERO_OPS, frontiers
from diffcomm.utils import format_table

# the repository root: sphinx-gallery runs each example from its own folder (and sets no __file__)
ROOT = Path(__file__).resolve().parents[2] if "__file__" in globals() else Path.cwd().parents[1]
RESULTS = ROOT / "results"
records = load_records(RESULTS / "machine" / "records.jsonl", repair=False)  # read only
front = frontiers(records)          # {channel: {snr: {"uses": ..., "compute": ..., "points": [...]}}}
channels = list(front)
snrs = list(front[channels[0]])

pipelines = sorted({r["pipeline"] for r in records})
palette = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7] + ["black"]   # grey: the front
COLOURS = {p: palette[i % len(palette)] for i, p in enumerate(pipelines)}
FRONT = {"color": "grey", "linewidth": 6, "alpha": 0.3, "solid_capstyle": "butt"}
MARKERS = {"none": "o", "dynamic": "x", "static": "^"}

# %%
# Accuracy against channel uses
# -----------------------------
# One line per pipeline (full-precision variants; quantisation changes the compute, not the channel
# uses), one panel per channel and SNR. The grey step is the Pareto front: the best accuracy any
# pipeline reaches within each budget.

fig, axes = plt.subplots(len(channels), len(snrs), figsize=(12, 6.8), layout="constrained", sharex=True,
                         sharey=True, squeeze=False)
for row, channel in enumerate(channels):
    for col, snr in enumerate(snrs):
        ax = axes[row, col]
        points = [p for p in front[channel][snr]["points"] if p["quantize"] == "none"]
        for pipeline in pipelines:
            mine = sorted((p for p in points if p["pipeline"] == pipeline), key=lambda p: p["channel_uses"])
            if mine:
                ax.plot([p["channel_uses"] for p in mine], [p["accuracy"] for p in mine], "o-", markersize=3.5,
                        color=COLOURS[pipeline], label=pipeline)
        pareto = front[channel][snr]["uses"]["pareto"]
        xs, ys = [p["channel_uses"] for p in pareto], [p["accuracy"] for p in pareto]
        right = max(p["channel_uses"] for p in points)
        ax.step(xs + [right], ys + [ys[-1]], where="post", label="Pareto front", **FRONT)
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1)
        ax.set_title(f"{channel}, {float(snr):g} dB", fontsize=9)
        ax.grid(alpha=0.3)
        if row == len(channels) - 1:
            ax.set_xlabel("complex channel uses per image")
        if col == 0:
            ax.set_ylabel("classification accuracy")
fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8)
plt.show()

# %%
# Accuracy against SNR at a fixed bandwidth
# -----------------------------------------
# The budget most pipelines share, 49 channel uses (CBR 1/16 of a 28×28 image), across the three SNRs.

budget = 49
fig, axes = plt.subplots(1, len(channels), figsize=(10, 3.8), layout="constrained", sharey=True, squeeze=False)
for ax, channel in zip(axes[0], channels):
    for pipeline in pipelines:
        pts = [(float(snr), p["accuracy"], p["accuracy_ci95"]) for snr in snrs for p in front[channel][snr]["points"]
               if p["pipeline"] == pipeline and p["quantize"] == "none" and p["channel_uses"] == budget]
        if pts:
            snr_v, acc, ci = zip(*pts)
            ax.errorbar(snr_v, acc, yerr=[[a - c[0] for a, c in zip(acc, ci)], [c[1] - a for a, c in zip(acc, ci)]],
                        fmt="o-", markersize=3.5, capsize=2, color=COLOURS[pipeline], label=pipeline)
    ax.set_xlabel("SNR (dB)")
    ax.set_title(f"{channel}, {budget} channel uses per image", fontsize=9)
    ax.grid(alpha=0.3)
axes[0, 0].set_ylabel("classification accuracy (95 % CI)")
fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside right center", fontsize=7)
plt.show()

# %%
# Accuracy against receiver compute
# ---------------------------------
# Operations per image at the receiver (FLOPs counted by PyTorch's FlopCounterMode plus int8
# operations), every variant including the quantised ones (crosses and triangles), over AWGN; the grey
# step is the Pareto front over compute. The
# semantic label needs no receiver network at all (its classifier runs at the transmitter); it is
# drawn at the dotted line.

channel = channels[0]
fig, axes = plt.subplots(1, len(snrs), figsize=(12, 3.9), layout="constrained", sharey=True, squeeze=False)
for ax, snr in zip(axes[0], snrs):
    points = front[channel][snr]["points"]
    for p in points:
        ax.scatter(max(p["receiver_ops"], ZERO_OPS), p["accuracy"], color=COLOURS[p["pipeline"]],
                   marker=MARKERS.get(p["quantize"], "s"), s=22)
    pareto = front[channel][snr]["compute"]["pareto"]
    xs, ys = [max(p["receiver_ops"], ZERO_OPS) for p in pareto], [p["accuracy"] for p in pareto]
    right = max(max(p["receiver_ops"], ZERO_OPS) for p in points)
    ax.step(xs + [right], ys + [ys[-1]], where="post", **FRONT)
    ax.axvline(ZERO_OPS, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("receiver operations per image")
    ax.set_title(f"{channel}, {float(snr):g} dB", fontsize=9)
    ax.grid(alpha=0.3)
axes[0, 0].set_ylabel("classification accuracy")
for pipeline in pipelines:
    axes[0, -1].scatter([], [], color=COLOURS[pipeline], label=pipeline)
for mode, marker in MARKERS.items():
    look = {"color": "dimgrey"} if marker == "x" else {"facecolors": "none", "edgecolors": "dimgrey"}
    axes[0, -1].scatter([], [], marker=marker, label="fp32" if mode == "none" else f"int8 {mode}", **look)
axes[0, -1].plot([], [], label="Pareto front", **FRONT)
fig.legend(*axes[0, -1].get_legend_handles_labels(), loc="outside lower center", ncol=4, fontsize=7)
plt.show()

# %%
# The best pipeline within each budget
# ------------------------------------
# For each channel-use budget at one setting: the most accurate full-precision pipeline that fits and
# the best of the others (``best_per_budget`` in :mod:`diffcomm.scenarios.report`, the table of
# ``summary.md``).

for channel, snr in ((channels[0], "0"), (channels[-1], "0")):
    rows = []
    for b in front[channel][snr]["uses"]["best_per_budget"]:
        other = b["runner_up"]
        rows.append([b["limit"], b["variant"], b["budget"], f"{b['accuracy']:.3f}",
                     f"{other['variant']} {other['budget']}: {other['accuracy']:.3f}" if other else "-"])
    print(f"{channel}, {snr} dB")
    print(format_table(["uses <=", "best pipeline", "its budget", "accuracy", "best other pipeline"], rows))
    print()

# %%
# Reading the fronts: at a handful of channel uses, sending what the machine needs beats sending the
# image. Task JSCC and the coded semantic label own the Pareto front from 1 to 16 uses at every SNR,
# and the reconstruct-then-classify pipelines stay below them at every budget, even with 49 or 98
# uses — the image carries bits the classifier never uses. The label's accuracy is capped by the
# transmitter's classifier, and the uncoded or lightly coded labels fall behind task JSCC at low SNR
# (a digital link's cliff), where task JSCC degrades gracefully. Among the image pipelines, the
# diffusion receivers (HiFi-DiffCom ahead of DPS) raise the downstream accuracy over the plain
# DeepJSCC decoder at 49 uses, but at about five orders of magnitude more receiver compute than task
# JSCC; the diffusion classifier on the decoder's output is no consistent gain over the plain
# classifier. int8 quantisation moves accuracy by about a point at most and changes only the compute.
# Regenerate the results with
# ``diffcomm scenario machine --config results/machine/grid.toml --out results/machine`` (resumable).
