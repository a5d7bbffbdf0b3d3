"""Metric-versus-SNR curves: one figure per (metric, channel/CSI/CBR setting), one line per system.

Each line is ``receiver@encoder`` with its 95 % confidence band (shaded; see
:mod:`diffcomm.eval.summary` for how seeds are combined). Bands are clipped to the metric's valid
range (:data:`VALID_RANGE`: [0, 1] for accuracy and SSIM, >= 0 for distances). When one system is
far from the rest (Tukey's far-out fences, :func:`find_outliers`; e.g. the digital baseline's
fallback grey in FD-cls), the axis is made readable: a log scale when every value is positive,
otherwise the axis is clipped to the other points, and a note on the figure names the outliers. Figures are
drawn with matplotlib's object API (no pyplot global state) and written atomically as PNG and SVG.

Example:
    >>> import os, shutil, tempfile
    >>> from diffcomm.eval import grid_from_mapping, load_records, plan, plot_results, run_grid
    >>> out = tempfile.mkdtemp()
    >>> results = os.path.join(out, "results.jsonl")
    >>> _ = run_grid(plan(grid_from_mapping({"receivers": "pinv@gaussian", "snr": "0,10", "n": 4})), results,
    ...              progress=False)
    >>> paths = plot_results(load_records(results), os.path.join(out, "plots"), metrics=["psnr"])
    >>> [p.name for p in paths]
    ['psnr_awgn_perfect_cbr-1-16.png', 'psnr_awgn_perfect_cbr-1-16.svg']
    >>> shutil.rmtree(out)
"""

from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path
from typing import Any

from diffcomm.errors import DiffcommError
from diffcomm.eval.grid import cbr_label
from diffcomm.eval.summary import METRIC_LABELS, curves, metric_names, panel_sizes, panel_title

FORMATS = ("png", "svg")
# Valid values of each metric (None: unbounded on that side); bands are clipped to them. KID-cls is
# an unbiased estimator and can be (slightly) negative, so it has no lower bound.
VALID_RANGE: dict[str, tuple[float | None, float | None]] = {
    "accuracy": (0.0, 1.0), "ssim": (0.0, 1.0), "ms_ssim": (0.0, 1.0), "psnr": (0.0, None), "fd_cls": (0.0, None),
    "kid_cls": (None, None), "spread": (0.0, None), "agreement": (0.0, 1.0), "auroc_disagreement": (0.0, 1.0),
    "auroc_spread": (0.0, 1.0)}
OUTLIER_FENCE = 3.0  # a point is an outlier beyond this many interquartile ranges outside the quartiles


def clip_band(metric: str, low: float, high: float) -> tuple[float, float]:
    """A confidence band clipped to the metric's valid range (:data:`VALID_RANGE`)."""
    lo_valid, hi_valid = VALID_RANGE.get(metric, (None, None))
    if lo_valid is not None:
        low, high = max(low, lo_valid), max(high, lo_valid)
    if hi_valid is not None:
        low, high = min(low, hi_valid), min(high, hi_valid)
    return low, high


def find_outliers(systems: dict[str, list[tuple]]) -> list[tuple[str, float, float]]:
    """Points ``(system, snr, value)`` far outside the bulk of a figure's values.

    Tukey's far-out fences over every plotted mean: below Q1 − 3·IQR or above Q3 + 3·IQR
    (at least 6 points; an IQR of 0 marks nothing).
    """
    import numpy as np

    points = [(name, p[0], p[1]) for name, pts in systems.items() for p in pts
              if p[1] is not None and math.isfinite(p[1])]
    if len(points) < 6:
        return []
    q1, q3 = np.percentile([v for _, _, v in points], [25, 75])
    iqr = q3 - q1
    if iqr <= 0:
        return []
    lo, hi = q1 - OUTLIER_FENCE * iqr, q3 + OUTLIER_FENCE * iqr
    return [pt for pt in points if pt[2] < lo or pt[2] > hi]


def figure_for(metric: str, panel: tuple, systems: dict[str, list[tuple]], sizes=None):
    """A matplotlib ``Figure`` of ``metric`` versus SNR for one panel (see :func:`~diffcomm.eval.summary.curves`)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.0), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for system in sorted(systems):
        pts = systems[system]
        snr = [p[0] for p in pts]
        mean = [p[1] for p in pts]
        (line,) = ax.plot(snr, mean, marker="o", label=system)
        band = [(s, *clip_band(metric, lo, hi)) for s, _, lo, hi, _ in pts
                if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi)]
        if band:
            ax.fill_between([b[0] for b in band], [b[1] for b in band], [b[2] for b in band],
                            color=line.get_color(), alpha=0.2, linewidth=0)
    outliers = find_outliers(systems)
    if outliers:
        named = "; ".join(f"{name} at {snr:g} dB: {value:.4g}" for name, snr, value in outliers)
        every = [v for pts in systems.values() for p in pts for v in (p[1], p[2], p[3])
                 if v is not None and math.isfinite(v)]
        if every and min(every) > 0:
            ax.set_yscale("log")
            note = f"log scale (outlier: {named})"
        else:
            far = {(name, snr) for name, snr, _ in outliers}
            rest = [v for name, pts in systems.items() for p in pts if (name, p[0]) not in far
                    for v in (p[1], p[2], p[3]) if v is not None and math.isfinite(v)]
            lo, hi = min(rest), max(rest)
            pad = 0.1 * max(hi - lo, 1e-9)
            ax.set_ylim(lo - pad, hi + pad)
            note = f"axis clipped; off scale: {named}"
        ax.text(0.01, 0.01, note, transform=ax.transAxes, fontsize=7, color="#555", va="bottom")
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(panel_title(panel, sizes), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_bytes(fig, fmt: str) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    return buf.getvalue()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def figure_name(metric: str, panel: tuple, several_datasets: bool) -> str:
    dataset, split, channel, csi, cbr = panel
    name = f"{metric}_{channel}_{csi}_cbr-{cbr_label(cbr).replace('/', '-')}"
    if several_datasets:
        name += f"_{dataset}-{split}"
    return _slug(name)


def iter_figures(records: list[dict[str, Any]], metrics: list[str] | None = None):
    """Yield ``(name, metric, panel, Figure)`` for every metric and panel in ``records``."""
    available = metric_names(records)
    chosen = metrics or available
    for m in chosen:
        if m not in available:
            raise DiffcommError(f"metric {m!r} is not in the results; available: {', '.join(available) or 'none'}")
    several = len({(r["dataset"], r["split"]) for r in records}) > 1
    sizes = panel_sizes(records)
    for metric in chosen:
        for panel, systems in sorted(curves(records, metric).items(), key=lambda kv: str(kv[0])):
            yield (figure_name(metric, panel, several), metric, panel,
                   figure_for(metric, panel, systems, sizes.get(panel)))


def plot_results(records: list[dict[str, Any]], out_dir: str | os.PathLike, metrics: list[str] | None = None,
                 formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write every curve of ``records`` to ``out_dir`` in each of ``formats``; return the paths."""
    from diffcomm.utils import atomic_write_bytes

    if not records:
        raise DiffcommError("no results records to plot")
    for fmt in formats:
        if fmt not in FORMATS:
            raise DiffcommError(f"unknown figure format {fmt!r}; choose from {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    paths = []
    for name, _, _, fig in iter_figures(records, metrics):
        for fmt in formats:
            path = out_dir / f"{name}.{fmt}"
            atomic_write_bytes(path, figure_bytes(fig, fmt))
            paths.append(path)
    return paths
