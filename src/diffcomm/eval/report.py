"""One self-contained HTML report of a results file: setup, results table, curves, image grids.

Everything is inside the page: figures and image grids are PNG ``data:`` URIs (base64), styles
are inline, there are no scripts and no links to anything outside the file, so the page can be
mailed or archived on its own.

Image grids come from the reconstructions each point saved (``OUT.d/points``): per setting
(dataset, channel, CSI, CBR) and for the first seed, a row of originals, then one row per system
with its reconstructions at each SNR (PSNR underneath).

Example:
    >>> import os, shutil, tempfile
    >>> from diffcomm.eval import grid_from_mapping, plan, run_grid, write_report
    >>> out = tempfile.mkdtemp()
    >>> results = os.path.join(out, "results.jsonl")
    >>> _ = run_grid(plan(grid_from_mapping({"receivers": "pinv@gaussian", "snr": "10", "n": 4})), results,
    ...              progress=False)
    >>> write_report(results, os.path.join(out, "report")).relative_to(out)
    PosixPath('report/report.html')
    >>> shutil.rmtree(out)
"""

from __future__ import annotations

import base64
import html
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import torch

from diffcomm.errors import DiffcommError
from diffcomm.eval.grid import cbr_label
from diffcomm.eval.plots import figure_bytes, iter_figures
from diffcomm.eval.store import RECORD_FIELDS, load_point_images, load_records
from diffcomm.eval.summary import metric_value, panel_key, panel_sizes, panel_title, results_table

STYLE = """
body { font-family: sans-serif; margin: 1em 2em; color: #222; max-width: 1800px; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
img.grid { image-rendering: pixelated; max-width: 100%; }
.scroll { overflow-x: auto; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 460px), 1fr)); gap: 0.5em; }
figure { margin: 0; }
figure img { width: 100%; height: auto; }
.note { color: #555; font-size: 13px; }
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_strip_png(images: torch.Tensor, scale: int | None = None) -> bytes:
    """PNG bytes of a one-row grid of ``images``, upscaled (nearest neighbour, at most 3x) to about 360 px wide."""
    from diffcomm.data import encode_image, make_grid

    grid = make_grid(images.float().clamp(0, 1), nrow=len(images), padding=1)
    if scale is None:
        scale = max(1, min(3, 360 // grid.shape[-1]))
    if scale > 1:
        grid = grid.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    return encode_image(grid, "PNG")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _setup_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    def values(field: str, fmt=str) -> str:
        return ", ".join(fmt(v) for v in sorted({r[field] for r in records}, key=str))

    options = sorted({f"{r['receiver']}: {r['options']}" for r in records if r.get("options")})
    calibrated = sorted({f"{r['system']} {r['channel']} {r['snr_db']:g} dB: "
                         + ", ".join(f"{k}={c['value']:g}" for k, c in r["calibrated"].items())
                         for r in records if r.get("calibrated")})
    machines = sorted({f"{m.get('hostname', '?')} ({m.get('platform', '?')}, {m.get('cpu_count', '?')} CPUs, "
                       f"torch {m.get('torch', '?')}, {m.get('torch_threads', '?')} threads)"
                       for m in (r.get("machine") or {} for r in records)})
    seconds = sum((r.get("seconds") or {}).get("total", 0.0) for r in records)
    stamps = sorted(r.get("timestamp", "") for r in records if r.get("timestamp"))
    rows = [
        ["records", str(len(records))],
        ["dataset", ", ".join(sorted({f"{r['dataset']} {r['split']} (first {r['n']} images)" for r in records}))],
        ["systems (receiver@encoder)", values("system")],
        ["channels", values("channel")],
        ["CSI", values("csi")],
        ["SNR (dB)", ", ".join(f"{v:g}" for v in sorted({r["snr_db"] for r in records}))],
        ["CBR", ", ".join(cbr_label(v) for v in sorted({r["cbr"] for r in records}))],
        ["seeds", values("seed")],
        ["receiver options", "; ".join(options) or "defaults"],
        ["calibrated options (diffcomm tune, validation images)", "; ".join(calibrated) or "none"],
        ["diffcomm version", values("version")],
        ["git revision", values("git_revision")],
        ["machine", "; ".join(machines)],
        ["compute time (sum over points)", f"{seconds:.1f} s"],
        ["run period (UTC)", f"{stamps[0]} to {stamps[-1]}" if stamps else "-"],
    ]
    if any(r.get("posterior_samples") for r in records):
        rows.insert(8, ["posterior samples per image (uncertainty)",
                        ", ".join(sorted({str(r.get("posterior_samples") or 1) for r in records}, key=int))])
    return rows


def _notes_html(records: list[dict[str, Any]]) -> str:
    counts = Counter(note for r in records for note in r.get("notes") or [])
    if not counts:
        return ""
    items = "".join(f"<li>{_e(note)} <span class='note'>({n} point{'s' if n > 1 else ''})</span></li>"
                    for note, n in sorted(counts.items()))
    return f"<h3>Notes</h3><ul class='note'>{items}</ul>"


def _image_grids(records: list[dict[str, Any]], results_path: Path) -> str:
    first_seed = min(r["seed"] for r in records)
    sizes = panel_sizes(records)
    panels: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r["seed"] == first_seed and r.get("images"):
            panels[panel_key(r)].append(r)
    if not panels:
        return "<p class='note'>No reconstructions were saved (run the grid with --save-images > 0).</p>"
    parts = []
    for key in sorted(panels, key=str):
        recs = panels[key]
        snrs = sorted({r["snr_db"] for r in recs})
        systems = sorted({r["system"] for r in recs})
        cells: dict[tuple[str, float], str] = {}
        original = None
        for r in recs:
            tensors = load_point_images(results_path, r)
            if tensors is None or "x_hat" not in tensors:
                cells[(r["system"], r["snr_db"])] = "<span class='note'>images missing</span>"
                continue
            if original is None and "x" in tensors:
                original = tensors["x"]
            psnr = metric_value(r, "psnr")
            caption = f"PSNR {psnr[0]:.2f} dB" if psnr else ""
            cells[(r["system"], r["snr_db"])] = (f"<img class='grid' alt='{_e(r['system'])} at {r['snr_db']:g} dB' "
                                                 f"src='{data_uri(image_strip_png(tensors['x_hat']), 'image/png')}'>"
                                                 f"<br><span class='note'>{_e(caption)}</span>")
        head = "<tr><th>system</th>" + "".join(f"<th>{s:g} dB</th>" for s in snrs) + "</tr>"
        rows = []
        if original is not None:
            rows.append(f"<tr><td>original</td><td colspan='{len(snrs)}'><img class='grid' alt='original images' "
                        f"src='{data_uri(image_strip_png(original), 'image/png')}'></td></tr>")
        for system in systems:
            row = "".join(f"<td>{cells.get((system, s), '-')}</td>" for s in snrs)
            rows.append(f"<tr><td>{_e(system)}</td>{row}</tr>")
        parts.append(f"<h3>{_e(panel_title(key, sizes.get(key)))}, seed {first_seed}</h3>"
                     f"<div class='scroll'><table>{head}{''.join(rows)}</table></div>")
    return "".join(parts)


def render_report(records: list[dict[str, Any]], results_path: str | os.PathLike,
                  title: str = "diffcomm evaluation report") -> str:
    """The report's HTML text for ``records`` read from ``results_path`` (for the saved images)."""
    if not records:
        raise DiffcommError(f"no records in {results_path}; run diffcomm eval first")
    results_path = Path(results_path)
    header, rows = results_table(records)
    figures = []
    for name, _, _, fig in iter_figures(records):
        figures.append(f"<figure><img alt='{_e(name)}' src='{data_uri(figure_bytes(fig, 'png'), 'image/png')}'>"
                       f"<figcaption class='note'>{_e(name)}</figcaption></figure>")
    return "\n".join([
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        "<p class='note'>Metrics are means over the images of each point with 95% Student-t confidence "
        "intervals (± half-width). accuracy, fd_cls and kid_cls use diffcomm's own Fashion-MNIST classifier "
        "(FD-cls/KID-cls are Fréchet/kernel distances in its feature space, not FID/KID). "
        "nfe: prior network evaluations per image (per posterior sample when the grid sets posterior_samples: "
        "then x_hat is each image's first sample, spread is the rms per-pixel std over the samples, agreement "
        "the fraction of samples the classifier puts in the modal class, and auroc_disagreement / auroc_spread "
        "the AUROC of 1 − agreement / of the spread for predicting a wrong-class first sample, ± 1.96 "
        "Hanley–McNeil standard errors; deterministic receivers have spread 0 and agreement 1). "
        "KID-cls is the unbiased estimator of the squared kernel "
        "distance, so for two nearly identical sets it scatters around 0 and can be negative; a negative value "
        "means 'indistinguishable at this sample size', not 'better than the originals'. Shaded bands are 95% "
        "intervals clipped to each metric's valid range; a figure whose axis is on a log scale or clipped "
        "because one system is far from the rest says so in its lower left corner.</p>",
        "<h2>Setup</h2>", _table(["setting", "value"], _setup_rows(records)), _notes_html(records),
        "<h2>Results</h2>", f"<div class='scroll'>{_table(header, rows)}</div>",
        "<h2>Curves</h2>", f"<div class='figures'>{''.join(figures)}</div>" if figures
        else "<p class='note'>No metric to plot.</p>",
        "<h2>Reconstructions</h2>", _image_grids(records, results_path),
        "</body></html>",
    ])


def write_report(results_path: str | os.PathLike, out_dir: str | os.PathLike,
                 title: str = "diffcomm evaluation report") -> Path:
    """Write ``out_dir/report.html`` for the results file ``results_path``; return its path."""
    from diffcomm.utils import atomic_write_text

    results_path = Path(results_path)
    if not results_path.is_file():
        raise DiffcommError(f"results file {results_path} not found")
    records = load_records(results_path, repair=False, required=RECORD_FIELDS)
    page = render_report(records, results_path, title)
    out = Path(out_dir) / "report.html"
    atomic_write_text(out, page)
    return out
