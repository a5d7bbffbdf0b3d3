"""The robustness matrix of issue 16: receivers × links at 5 and 10 dB on 256 Fashion-MNIST test images.

Rows are receivers (the DeepJSCC decoder with the model trained for the link where one is shipped, the
Rayleigh-trained DeepJSCC used off its training channel, DPS, HiFi, PnP-CM, the blind receiver, the digital
separation baseline); columns are links (all CBR 1/16, DeepJSCC encoder of the row's link):

* ``flat``: Rayleigh block fading, perfect CSI (the matched case of the shipped models);
* ``ofdm`` / ``ofdm-isi``: OFDM over 3GPP TDL-A (300 ns, 32 subcarriers at 60 kHz, 11 taps) with a CP of 10
  samples (no ISI) / no CP (ISI + ICI at −16.9 dB of the signal power, DiffCom's removed-CP test; guided
  receivers model the frame operator, per-symbol decoders do not); ``ofdm-isi-unmodelled``: the same link with
  guided receivers that ignore the ISI (``model_isi=False``, the per-subcarrier operator diag(H); model-aware
  rows only, the decoders are the same as in ``ofdm-isi``);
* ``mimo``: 2×2 spatial multiplexing, i.i.d. Rayleigh, MMSE front end;
* ``clip-modelled`` / ``clip-unmodelled``: transmitter clipping at 0.8 × rms on Rayleigh, in the receiver's
  operator or not (the decoder row uses the clipping-trained model where it is modelled);
* ``adc4``: a 4-bit ADC per real dimension (AGC loading 3), unmodelled, on Rayleigh;
* ``snr+3`` / ``snr-3``: Rayleigh, the receiver told an SNR 3 dB above / below the true one;
* ``ofdm-ls`` / ``ofdm-lmmse``: the ``ofdm`` link with one block-pilot OFDM symbol (LS / LMMSE per subcarrier);
* ``ofdm-blind``: the ``ofdm`` link without pilots or CSI (the blind receiver only).

Cells: PSNR, SSIM and classifier accuracy (mean, 95 % Student-t interval over images), FD-cls (the Fréchet
distance of the shipped classifier's features to the originals', with a 95 % bootstrap interval over images),
NFE, seconds and the channel uses per image (pilots and OFDM CP / padding included). Same images, channel seed
0 and receiver seed 1 in every cell. Resumable: each cell is one JSON file under ``--cells`` (atomic), done
cells are skipped; ``--rows`` / ``--columns`` pick a subset (two processes can share the folder);
``--assemble`` writes ``matrix.json`` and ``matrix.md`` from the cells.

Usage:
    .venv/bin/python scripts/robustness_matrix.py [--n 256] [--rows dps,hifi] [--columns flat,ofdm]
    .venv/bin/python scripts/robustness_matrix.py --assemble
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

OUT = Path("results/robustness")
SNRS = (5.0, 10.0)
OFDM = {"profile": "A", "delay_spread": 3e-7, "fft_size": 32, "subcarrier_spacing": 60e3}
COLUMNS = ("flat", "ofdm", "ofdm-isi", "ofdm-isi-unmodelled", "mimo", "clip-modelled", "clip-unmodelled", "adc4",
           "snr+3", "snr-3",
           "ofdm-ls", "ofdm-lmmse", "ofdm-blind")
ROWS = ("deepjscc", "deepjscc-rayleigh", "dps", "hifi", "pnp_cm", "blind", "digital")
CSI_COLUMNS = {"ofdm-blind"}                       # columns without CSI: only the blind receiver decodes them


def column_link(column: str, snr: float, encoder: str):
    """The link of a column (a DeepJSCC encoder by name), or None when the encoder does not apply."""
    from diffcomm.channels import make_channel
    from diffcomm.channels.impairments import impairment, with_impairments
    from diffcomm.pipeline import build_link

    kw: dict = {}
    stages: tuple = ()
    if column == "flat":
        channel = "rayleigh"
    elif column in ("ofdm", "ofdm-ls", "ofdm-lmmse", "ofdm-blind"):
        channel = make_channel("ofdm", cp_length=10, **OFDM)
        if column in ("ofdm-ls", "ofdm-lmmse"):
            kw = {"csi": "estimated", "n_pilots": 1, "pilot_estimator": column.split("-")[1]}
        elif column == "ofdm-blind":
            kw = {"csi": "none"}
    elif column in ("ofdm-isi", "ofdm-isi-unmodelled"):
        channel = make_channel("ofdm", cp_length=0, model_isi=column == "ofdm-isi", **OFDM)
    elif column == "mimo":
        channel = make_channel("mimo", n_t=2, n_r=2, detector="mmse")
    elif column.startswith("clip"):
        channel = "rayleigh"
        stages = (impairment("clip", ratio=0.8, modelled=column == "clip-modelled"),)
    elif column == "adc4":
        channel, stages = "rayleigh", (impairment("adc", bits=4),)
    elif column in ("snr+3", "snr-3"):
        channel, kw = "rayleigh", {"assumed_snr_db": snr + float(column[3:])}
    else:
        raise ValueError(column)
    link = build_link(encoder, (1, 28, 28), "1/16", channel, snr, **kw)
    return with_impairments(link, *stages) if stages else link


def row_plan(row: str, column: str) -> tuple[str, str] | None:
    """(receiver, encoder) of a cell, or None where the row does not apply to the column."""
    blind_col = column in CSI_COLUMNS
    if row == "blind":
        return ("blind", "deepjscc") if blind_col else None
    if blind_col:
        return None
    if column == "ofdm-isi-unmodelled" and row not in ("dps", "hifi", "pnp_cm"):
        return None
    own = "deepjscc-rayleigh-clip" if column == "clip-modelled" else "deepjscc"
    if row == "deepjscc":
        return "deepjscc", own
    if row == "deepjscc-rayleigh":   # off its training channel: only where the link's own model differs
        return ("deepjscc", "deepjscc-rayleigh") if column in ("ofdm", "ofdm-isi", "mimo", "clip-modelled",
                                                                "ofdm-ls", "ofdm-lmmse") else None
    if row == "digital":             # perfect CSI, per-symbol gains: flat and ISI-free OFDM only
        return ("digital", "digital") if column in ("flat", "ofdm") else None
    return row, "deepjscc"


def bootstrap_fd(feats: torch.Tensor, feats_hat: torch.Tensor, n_boot: int = 200, seed: int = 0) -> tuple:
    """FD-cls and a 95 % percentile bootstrap interval (images resampled in pairs)."""
    from diffcomm.metrics.distribution import frechet_distance

    fd = frechet_distance(feats, feats_hat)
    g = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(n_boot):
        idx = torch.randint(0, len(feats), (len(feats),), generator=g)
        vals.append(frechet_distance(feats[idx], feats_hat[idx]))
    vals = torch.tensor(vals, dtype=torch.float64)
    return fd, float(vals.quantile(0.025)), float(vals.quantile(0.975))


def ci(values: torch.Tensor) -> dict:
    from diffcomm.metrics import mean_ci

    mean, low, high = mean_ci(values.double())
    return {"mean": round(mean, 4), "ci_low": round(low, 4), "ci_high": round(high, 4)}


def run_cell(row: str, column: str, snr: float, x, labels, feats, n: int) -> dict | None:
    """One cell on images ``x`` (true ``labels``, classifier features ``feats`` of the originals), or None."""
    from diffcomm import zoo
    from diffcomm.metrics import psnr, ssim
    from diffcomm.metrics.classifier import predict
    from diffcomm.pipeline import decode

    plan = row_plan(row, column)
    if plan is None:
        return None
    receiver, encoder = plan
    t0 = time.perf_counter()
    extra: dict = {}
    if receiver == "digital":
        from diffcomm.transmit.digital import best_config

        channel = column_link(column, snr, "deepjscc").channel
        sel = best_config(x, 1 / 16, snr, channel, generator=torch.Generator().manual_seed(2))
        if sel.system is None:
            x_hat, uses, nfe = torch.full_like(x, 0.5), 0, 0
        else:
            x_hat, info = sel.system.transmit(x, channel, snr, generator=torch.Generator().manual_seed(0))
            uses, nfe = info["channel_uses"] / len(x), 0
            extra = {"config": sel.system.describe(), "success_rate": float(info["success"].float().mean())}
        link_cfg, enc_name = {"channel": channel.config() if hasattr(channel, "config") else channel}, "digital"
    else:
        link = column_link(column, snr, encoder)
        rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
        res = decode(receiver, link, rx, generator=torch.Generator().manual_seed(1))
        x_hat, nfe, uses = res.x_hat.clamp(0, 1), res.nfe, link.channel_uses
        link_cfg, enc_name = link.config(), link.encoder.name
        if receiver in ("dps", "hifi", "pnp_cm"):
            extra["isi_operator"] = rx.mixing is not None and column.startswith("ofdm")
    seconds = time.perf_counter() - t0
    net = zoo.load("fmnist-classifier")
    logits_hat, feats_hat = predict(net, x_hat)
    fd, fd_lo, fd_hi = bootstrap_fd(feats, feats_hat)
    models = sorted({enc_name} & set(zoo.list_models()))
    return {"row": row, "column": column, "snr_db": snr, "receiver": receiver, "encoder": enc_name, "n": n,
            "psnr": ci(psnr(x_hat, x)), "ssim": ci(ssim(x_hat, x)),
            "accuracy": ci((logits_hat.argmax(1) == labels).float()),
            "fd_cls": {"value": round(fd, 3), "ci_low": round(fd_lo, 3), "ci_high": round(fd_hi, 3)},
            "nfe": nfe, "seconds": round(seconds, 2), "channel_uses": uses, "link": link_cfg,
            "models": {m: zoo.weights_digest(m) for m in models}, **extra}


def cell_path(cells: Path, row: str, column: str, snr: float) -> Path:
    return cells / f"{row}__{column}__{snr:g}dB.json"


def assemble(cells: Path, out: Path) -> None:
    from diffcomm.utils import atomic_write_json

    records = [json.loads(p.read_text()) for p in sorted(cells.glob("*.json"))]
    atomic_write_json(out / "matrix.json", {"columns": list(COLUMNS), "rows": list(ROWS), "cells": records})
    by = {(r["row"], r["column"], r["snr_db"]): r for r in records}
    lines = []
    for snr in SNRS:
        lines += [f"### {snr:g} dB — PSNR dB [95 % CI] / SSIM / accuracy / FD-cls", "",
                  "| receiver | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
        for row in ROWS:
            cells_txt = []
            for col in COLUMNS:
                r = by.get((row, col, snr))
                if r is None:
                    cells_txt.append("—" if row_plan(row, col) is None else "…")
                    continue
                p = r["psnr"]
                cells_txt.append(f"{p['mean']:.2f} [{p['ci_low']:.2f}, {p['ci_high']:.2f}] / {r['ssim']['mean']:.3f}"
                                 f" / {r['accuracy']['mean']:.3f} / {r['fd_cls']['value']:.1f}")
            lines.append(f"| {row} | " + " | ".join(cells_txt) + " |")
        lines.append("")
    uses = {c: next((r["channel_uses"] for r in records if r["column"] == c and r["receiver"] != "digital"), None)
            for c in COLUMNS}
    lines.append("Channel uses per image (k = 49 data symbols): " +
                 ", ".join(f"{c} {u:g}" for c, u in uses.items() if u is not None) + ".")
    (out / "matrix.md").write_text("\n".join(lines) + "\n")
    compact = ["| receiver | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for row in ROWS:
        txt = []
        for col in COLUMNS:
            rs = [by.get((row, col, snr)) for snr in SNRS]
            txt.append("—" if row_plan(row, col) is None else " / ".join(
                "…" if r is None else f"{r['psnr']['mean']:.1f}±{(r['psnr']['ci_high'] - r['psnr']['ci_low']) / 2:.1f}"
                for r in rs))
        compact.append(f"| {row} | " + " | ".join(txt) + " |")
    (out / "matrix_psnr.md").write_text("\n".join(compact) + "\n")
    for snr in SNRS:
        heatmap(by, snr, out / f"matrix_psnr_{snr:g}dB.png")
    print(f"wrote {out / 'matrix.json'}, {out / 'matrix.md'} and the PSNR heat maps ({len(records)} cells)")


def heatmap(by: dict, snr: float, path: Path) -> None:
    """PSNR per (receiver, link) at one SNR, annotated; empty where the receiver does not apply."""
    import io

    import numpy as np
    from matplotlib.figure import Figure

    from diffcomm.utils import atomic_write_bytes

    grid = np.full((len(ROWS), len(COLUMNS)), np.nan)
    for i, row in enumerate(ROWS):
        for j, col in enumerate(COLUMNS):
            r = by.get((row, col, snr))
            if r is not None:
                grid[i, j] = r["psnr"]["mean"]
    fig = Figure(figsize=(11, 4.2), dpi=110)
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto")
    for i in range(len(ROWS)):
        for j in range(len(COLUMNS)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if grid[i, j] < np.nanmean(grid) else "black")
    ax.set_xticks(range(len(COLUMNS)), COLUMNS, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(ROWS)), ROWS, fontsize=8)
    ax.set_title(f"PSNR (dB), Fashion-MNIST test[:256], CBR 1/16, {snr:g} dB", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.03)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--rows", default=",".join(ROWS))
    p.add_argument("--columns", default=",".join(COLUMNS))
    p.add_argument("--snr", default="5,10")
    p.add_argument("--cells", default=str(OUT / "cells"))
    p.add_argument("--assemble", action="store_true")
    args = p.parse_args(argv)
    cells = Path(args.cells)
    if args.assemble:
        assemble(cells, OUT)
        return 0
    torch.set_num_threads(1)
    from diffcomm.data import get_dataset
    from diffcomm.utils import atomic_write_json, git_revision

    data = get_dataset("fashion-mnist", "test")
    x, labels = data.images[:args.n], data.labels[:args.n]
    cells.mkdir(parents=True, exist_ok=True)
    rows = [r for r in args.rows.split(",") if r]
    cols = [c for c in args.columns.split(",") if c]
    bad = sorted(set(rows) - set(ROWS)) + sorted(set(cols) - set(COLUMNS))
    if bad:
        print(f"error: unknown row/column {bad[0]!r}; rows: {', '.join(ROWS)}; columns: {', '.join(COLUMNS)}",
              file=sys.stderr)
        return 2
    todo = [(r, c, float(s)) for r in rows for c in cols for s in args.snr.split(",")
            if row_plan(r, c) is not None and not cell_path(cells, r, c, float(s)).exists()]
    print(f"{len(todo)} cells to run", flush=True)
    from diffcomm import zoo
    from diffcomm.metrics.classifier import predict

    feats = predict(zoo.load("fmnist-classifier"), x)[1] if todo else None     # the originals', once
    for i, (row, col, snr) in enumerate(todo):
        rec = run_cell(row, col, snr, x, labels, feats, len(x))
        rec.update({"git": git_revision(), "machine": platform.platform(), "command": "python " + " ".join(sys.argv)})
        atomic_write_json(cell_path(cells, row, col, snr), rec)
        print(f"[{i + 1}/{len(todo)}] {row:18s} {col:16s} {snr:4.0f} dB  PSNR {rec['psnr']['mean']:6.2f}  "
              f"acc {rec['accuracy']['mean']:.3f}  FD {rec['fd_cls']['value']:7.2f}  {rec['seconds']:.0f} s",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
