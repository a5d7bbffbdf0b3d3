"""Metric-versus-SNR curves: one figure per (metric, channel/CSI/CBR setting), one line per system.

Each line is ``receiver@encoder`` with its 95 % confidence band (shaded; see
:mod:`diffcomm.eval.summary` for how seeds are combined). Figures are drawn with matplotlib's
object API (no pyplot global state) and written atomically as PNG and SVG.

Example:
    >>> from diffcomm.eval import load_records, plot_results
    >>> paths = plot_results(load_records("results.jsonl"), "plots")   # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

from diffcomm.errors import DiffcommError
from diffcomm.eval.grid import cbr_label
from diffcomm.eval.summary import METRIC_LABELS, curves, metric_names, panel_title

FORMATS = ("png", "svg")


def figure_for(metric: str, panel: tuple, systems: dict[str, list[tuple]]):
    """A matplotlib ``Figure`` of ``metric`` versus SNR for one panel (see :func:`~diffcomm.eval.summary.curves`)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.0), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for system in sorted(systems):
        pts = systems[system]
        snr = [p[0] for p in pts]
        mean = [p[1] for p in pts]
        (line,) = ax.plot(snr, mean, marker="o", label=system)
        band = [(s, lo, hi) for s, _, lo, hi, _ in pts if lo is not None and hi is not None]
        if band:
            ax.fill_between([b[0] for b in band], [b[1] for b in band], [b[2] for b in band],
                            color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(panel_title(panel), fontsize=10)
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
    dataset, split, n, channel, csi, cbr = panel
    name = f"{metric}_{channel}_{csi}_cbr-{cbr_label(cbr).replace('/', '-')}"
    if several_datasets:
        name += f"_{dataset}-{split}-n{n}"
    return _slug(name)


def iter_figures(records: list[dict[str, Any]], metrics: list[str] | None = None):
    """Yield ``(name, metric, panel, Figure)`` for every metric and panel in ``records``."""
    available = metric_names(records)
    chosen = metrics or available
    for m in chosen:
        if m not in available:
            raise DiffcommError(f"metric {m!r} is not in the results; available: {', '.join(available) or 'none'}")
    several = len({(r["dataset"], r["split"], r["n"]) for r in records}) > 1
    for metric in chosen:
        for panel, systems in sorted(curves(records, metric).items(), key=lambda kv: str(kv[0])):
            yield figure_name(metric, panel, several), metric, panel, figure_for(metric, panel, systems)


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
