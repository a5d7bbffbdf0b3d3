"""The machine scenario's report: Pareto frontiers (JSON), figures (PNG) and a markdown summary.

For every (channel, SNR) of the records:

- **accuracy vs channel uses**: the Pareto front (a point is on it when no point with at most its
  channel uses is at least as accurate), and for every channel-use budget B in the grid the best
  pipeline variant that fits (uses <= B) with the best of the other pipelines beside it — over the
  fp32 variants (int8 quantisation changes the compute, not the channel uses);
- **accuracy vs receiver compute**: the same over the receiver's operations per image
  (FLOPs counted by FlopCounterMode + int8 operations of quantised layers).

Files in ``OUT``: ``frontier.json``, ``summary.md``, ``frontier_uses_<channel>.png`` (one panel per
SNR) and ``frontier_compute_<channel>.png``. Figures use matplotlib's object API and are written
atomically.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from diffcomm.utils import atomic_write_bytes, atomic_write_text

ZERO_OPS = 1e3  # where a receiver with no counted operations is drawn on the log compute axis


def receiver_ops(record: dict[str, Any]) -> float:
    eff = record["efficiency"]
    return float(eff.get("flops_receiver") or 0) + float(eff.get("int8_ops_receiver") or 0)


def _summary_point(r: dict[str, Any]) -> dict[str, Any]:
    eff = r["efficiency"]
    return {"variant": r["variant"], "pipeline": r["pipeline"], "kind": r["kind"], "quantize": r["quantize"],
            "budget": r.get("code") or f"k={r['symbols']}",
            "accuracy_first_256": r["metrics"].get("accuracy_first_256", r["metrics"]["accuracy"] if r["n"] == 256
                                                   else None),
            "channel_uses": r["channel_uses"], "accuracy": r["metrics"]["accuracy"],
            "accuracy_ci95": r["metrics"]["accuracy_ci95"], "n": r["n"], "receiver_ops": receiver_ops(r),
            "nfe": eff.get("nfe"), "seconds_per_image": eff.get("seconds_per_image"),
            "peak_mem_bytes_one_image": eff.get("peak_mem_bytes_one_image"), "key": r["key"]}


def pareto(points: list[dict[str, Any]], cost: str) -> list[dict[str, Any]]:
    """Points not dominated in (lower ``cost``, higher accuracy), by increasing cost."""
    front: list[dict[str, Any]] = []
    best = -math.inf
    for p in sorted(points, key=lambda q: (q[cost], -q["accuracy"])):
        if p["accuracy"] > best:
            front.append(p)
            best = p["accuracy"]
    return front


def best_per_budget(points: list[dict[str, Any]], cost: str) -> list[dict[str, Any]]:
    """For each distinct cost value B (``limit``): the most accurate point with cost <= B, and the most
    accurate point of another pipeline (``runner_up``, None when no other pipeline fits)."""
    rows = []
    for budget in sorted({p[cost] for p in points}):
        fits = [p for p in points if p[cost] <= budget]
        best = max(fits, key=lambda q: (q["accuracy"], -q[cost]))
        others = [p for p in fits if p["pipeline"] != best["pipeline"]]
        runner = max(others, key=lambda q: (q["accuracy"], -q[cost])) if others else None
        rows.append({"limit": budget, **best, "runner_up": runner})
    return rows


def frontiers(records: list[dict[str, Any]]) -> dict[str, Any]:
    """``{channel: {snr: {"uses": {...}, "compute": {...}}}}`` (see the module docstring)."""
    out: dict[str, Any] = {}
    for channel in sorted({r["channel"] for r in records}):
        out[channel] = {}
        for snr in sorted({r["snr_db"] for r in records if r["channel"] == channel}):
            pts = [_summary_point(r) for r in records if r["channel"] == channel and r["snr_db"] == snr]
            fp32 = [p for p in pts if p["quantize"] == "none"]   # int8 variants differ in compute, not in uses
            out[channel][f"{snr:g}"] = {
                "uses": {"pareto": pareto(fp32, "channel_uses"),
                         "best_per_budget": best_per_budget(fp32, "channel_uses")},
                "compute": {"pareto": pareto(pts, "receiver_ops"),
                            "best_per_budget": best_per_budget(pts, "receiver_ops")},
                "points": sorted(pts, key=lambda q: (q["variant"], q["channel_uses"]))}
    return out


def _fmt_ops(v: float | None) -> str:
    if v is None:
        return "-"
    if v == 0:
        return "0"
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v:.3g}"


def _fmt_bytes(v: float | None) -> str:
    if v is None:
        return "-"
    for unit, scale in (("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if v >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{int(v)} B"


def _acc(p: dict[str, Any]) -> str:
    lo, hi = p["accuracy_ci95"]
    return f"{p['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _styles(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One colour per pipeline; its int8 variants share it with a dashed line and another marker."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    pipelines = sorted({r["pipeline"] for r in records})
    colour = {p: cmap(i % 10) for i, p in enumerate(pipelines)}
    markers = {"none": "o", "dynamic": "x", "static": "^"}
    out = {}
    for r in records:
        out[r["variant"]] = {"color": colour[r["pipeline"]], "marker": markers.get(r["quantize"], "s"),
                             "linestyle": "-" if r["quantize"] == "none" else "--"}
    return out


def _figure_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def plot_frontiers(records: list[dict[str, Any]], out: Path) -> list[Path]:
    """One figure per channel and axis (channel uses, receiver compute), one panel per SNR."""
    from matplotlib.figure import Figure

    front = frontiers(records)
    variants = sorted({r["variant"] for r in records})
    styles = _styles(records)
    paths = []
    for channel, by_snr in front.items():
        snrs = list(by_snr)
        for axis, cost, xlabel in (("uses", "channel_uses", "complex channel uses per image"),
                                   ("compute", "receiver_ops", "receiver operations per image (FLOPs + int8 ops)")):
            fig = Figure(figsize=(5.2 * len(snrs) + 3.5, 4.6), dpi=100)
            axes = fig.subplots(1, len(snrs), squeeze=False)[0]
            for ax, snr in zip(axes, snrs):
                pts = by_snr[snr]["points"]
                for v in variants:
                    mine = sorted([p for p in pts if p["variant"] == v], key=lambda q: q[cost])
                    if not mine:
                        continue
                    xs = [max(p[cost], ZERO_OPS) if axis == "compute" else p[cost] for p in mine]
                    st = styles[v]
                    ax.plot(xs, [p["accuracy"] for p in mine], marker=st["marker"], color=st["color"],
                            linestyle=st["linestyle"] if axis == "uses" else "none", label=v, markersize=5,
                            linewidth=1.2)
                fr = by_snr[snr][axis]["pareto"]
                xs = [max(p[cost], ZERO_OPS) if axis == "compute" else p[cost] for p in fr]
                ys = [p["accuracy"] for p in fr]
                right = max(max(p[cost], ZERO_OPS) if axis == "compute" else p[cost] for p in pts)
                if xs and right > xs[-1]:   # the front holds its last value up to the largest budget shown
                    xs, ys = xs + [right], ys + [ys[-1]]
                ax.step(xs, ys, where="post", color="black", linewidth=2.2, alpha=0.35, label="Pareto front")
                ax.set_xscale("log", base=2 if axis == "uses" else 10)
                ax.set_title(f"{channel}, {snr} dB")
                ax.set_xlabel(xlabel)
                ax.set_ylabel("accuracy")
                ax.set_ylim(0, 1)
                ax.grid(True, alpha=0.3)
                if axis == "compute":
                    ax.axvline(ZERO_OPS, color="grey", linewidth=0.6, linestyle=":")
            handles, labels = axes[0].get_legend_handles_labels()
            fig.subplots_adjust(right=0.8)
            fig.legend(handles, labels, loc="center left", fontsize=8, bbox_to_anchor=(0.81, 0.5), frameon=False)
            note = "" if axis == "uses" else f" (a receiver with no counted FLOPs is drawn at {ZERO_OPS:g})"
            fig.suptitle(f"Fashion-MNIST accuracy vs {xlabel}{note}", fontsize=10)
            path = out / f"frontier_{axis}_{channel}.png"
            atomic_write_bytes(path, _figure_bytes(fig))
            paths.append(path)
    return paths


def efficiency_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    """One row per pipeline variant: its compute figures (the same at every SNR, except start-dependent NFE)."""
    rows = []
    for v in sorted({r["variant"] for r in records}):
        mine = [r for r in records if r["variant"] == v]
        e = [r["efficiency"] for r in mine]
        nfe = sorted({round(x["nfe"], 2) for x in e})
        ops = sorted(receiver_ops(r) for r in mine)
        secs = sorted(x["seconds_per_image"] for x in e)
        mems = sorted(x["peak_mem_bytes_one_image"] for x in e if x.get("peak_mem_bytes_one_image") is not None)
        tx = sorted(x["flops_transmitter"] for x in e if x.get("flops_transmitter") is not None)
        rows.append([v, mine[0]["kind"], "/".join(f"{n:g}" for n in nfe[:3]) + ("…" if len(nfe) > 3 else ""),
                     f"{_fmt_ops(ops[0])}–{_fmt_ops(ops[-1])}" if ops[0] != ops[-1] else _fmt_ops(ops[0]),
                     f"{secs[len(secs) // 2] * 1e3:.3g}", _fmt_bytes(mems[len(mems) // 2]) if mems else "-",
                     _fmt_bytes(mine[0]["efficiency"]["receiver_weight_bytes"]),
                     _fmt_ops(tx[len(tx) // 2]) if tx else "-"])
    return rows


def quantization_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    """fp32 vs int8 variants of one pipeline at the same point: accuracy, ops, time, memory, weights."""
    rows = []
    by_base: dict[tuple, dict[str, dict]] = {}
    for r in records:
        base = (r["pipeline"], r["channel"], r["snr_db"], r["symbols"])
        by_base.setdefault(base, {})[r["quantize"]] = r
    groups: dict[tuple, list] = {}
    for (pipe, *_), variants in by_base.items():
        if len(variants) < 2 or "none" not in variants:
            continue
        ref = variants["none"]
        for q, r in variants.items():
            if q == "none":
                continue
            groups.setdefault((pipe, q), []).append((ref, r))
    for (pipe, q), pairs in sorted(groups.items()):
        acc = [r["metrics"]["accuracy"] - ref["metrics"]["accuracy"] for ref, r in pairs]
        ref, r = pairs[0]
        t_ref = sorted(p[0]["efficiency"]["seconds_per_image"] for p in pairs)
        t_q = sorted(p[1]["efficiency"]["seconds_per_image"] for p in pairs)

        def median_mem(i: int, pairs=pairs) -> float | None:
            mems = sorted(p[i]["efficiency"]["peak_mem_bytes_one_image"] for p in pairs
                          if p[i]["efficiency"].get("peak_mem_bytes_one_image") is not None)
            return mems[len(mems) // 2] if mems else None

        rows.append([pipe, q, str(len(pairs)), f"{sum(acc) / len(acc) * 100:+.2f} (min {min(acc) * 100:+.2f}, "
                     f"max {max(acc) * 100:+.2f})",
                     f"{_fmt_ops(ref['efficiency']['flops_receiver'])} → {_fmt_ops(r['efficiency']['flops_receiver'])}"
                     f" + {_fmt_ops(r['efficiency']['int8_ops_receiver'])} int8",
                     f"{t_ref[len(t_ref) // 2] * 1e3:.3g} → {t_q[len(t_q) // 2] * 1e3:.3g}",
                     f"{_fmt_bytes(median_mem(0))} → {_fmt_bytes(median_mem(1))}",
                     f"{_fmt_bytes(ref['efficiency']['receiver_weight_bytes'])} → "
                     f"{_fmt_bytes(r['efficiency']['receiver_weight_bytes'])}"])
    return rows


def summary_markdown(records: list[dict[str, Any]], config: dict[str, Any] | None = None) -> str:
    front = frontiers(records)
    parts = ["# Machine-centric scenario: accuracy vs channel uses, SNR and receiver compute", ""]
    if config and config.get("description"):
        parts += [str(config["description"]), ""]
    n_by_kind = {}
    for r in records:
        n_by_kind.setdefault(r["kind"], set()).add(r["n"])
    parts += [f"{len(records)} points; test images per point: " +
              ", ".join(f"{k} {'/'.join(map(str, sorted(v)))}" for k, v in sorted(n_by_kind.items())) +
              ". Accuracy is on the first n test images (95 % Wilson intervals in `frontier.json`).", ""]
    for channel, by_snr in front.items():
        for snr, fr in by_snr.items():
            parts += [f"## {channel}, {snr} dB", "", "Best pipeline within each channel-use budget:", ""]
            rows = [[str(b["limit"]), b["variant"], b["budget"], _acc(b), _fmt_ops(b["receiver_ops"]),
                     f"{b['runner_up']['variant']} {b['runner_up']['budget']}: {_acc(b['runner_up'])}"
                     if b["runner_up"] else "-"] for b in fr["uses"]["best_per_budget"]]
            parts += [_table(["uses ≤", "best variant (fp32)", "its budget", "accuracy [95 % CI]", "receiver ops",
                              "best other pipeline"], rows), ""]
            parts += ["Pareto front over receiver compute (operations per image):", ""]
            rows = [[_fmt_ops(p["receiver_ops"]), p["variant"], p["budget"], str(p["channel_uses"]),
                     _acc(p)] for p in fr["compute"]["pareto"]]
            parts += [_table(["ops", "variant", "budget", "uses", "accuracy"], rows), ""]
    # the channel-use budget shared by the most variants (the committed grid: 49 = CBR 1/16)
    variants_at: dict[int, set] = {}
    for r in records:
        variants_at.setdefault(r["channel_uses"], set()).add(r["variant"])
    if variants_at:
        budget = max(variants_at, key=lambda u: (len(variants_at[u]), u))
        cols = [(c, s) for c in front for s in front[c]]
        rows = []
        for v in sorted({r["variant"] for r in records if r["channel_uses"] == budget}):
            cells = []
            for c, s in cols:
                p = next((p for p in front[c][s]["points"] if p["variant"] == v and p["channel_uses"] == budget), None)
                if p is None:
                    cells.append("-")
                    continue
                first = p.get("accuracy_first_256")
                paired = f" ({first:.3f})" if first is not None and p["n"] != 256 else ""
                cells.append(f"{p['accuracy']:.3f}{paired}")
            rows.append([v, *cells])
        parts += [f"## Every variant at {budget} channel uses", "",
                  "Accuracy (in brackets: on the first 256 test images, the ones the 256-image points use; other "
                  "noise draws).", "", _table(["variant", *[f"{c} {s} dB" for c, s in cols]], rows), ""]
    parts += ["## Receiver compute per variant", "",
              "NFE: diffusion-network evaluations per image; ops: FLOPs (FlopCounterMode, batch 1) + int8 "
              "operations; time: receiver wall milliseconds per image in the batched run (median over points); "
              "memory: peak resident-set growth decoding one image (median); weights: serialised bytes of the "
              "receiver's models; tx: transmitter FLOPs per image.", ""]
    parts += [_table(["variant", "kind", "NFE", "receiver ops", "ms/image", "peak mem (1 image)", "weights",
                      "tx FLOPs"], efficiency_rows(records)), ""]
    q = quantization_rows(records)
    if q:
        parts += ["## Post-training int8 quantisation", "",
                  "Accuracy change in percentage points (int8 − fp32) over the points both ran; ops fp32 → int8 "
                  "(FLOPs left in fp32 + int8 operations); time in ms/image and peak memory for one image (medians); "
                  "weights.",
                  "", _table(["pipeline", "mode", "points", "Δ accuracy (pp)", "receiver ops", "ms/image",
                              "peak mem", "weights"], q), ""]
    notes = sorted({n for r in records for n in r.get("notes", [])})
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(parts)


def write_report(records: list[dict[str, Any]], out: str | Path, config: dict[str, Any] | None = None) -> list[Path]:
    """``frontier.json``, ``summary.md`` and the figures for ``records`` in ``out``."""
    out = Path(out)
    if not records:
        return []
    atomic_write_text(out / "frontier.json", json.dumps(frontiers(records), indent=1) + "\n")
    atomic_write_text(out / "summary.md", summary_markdown(records, config))
    return [out / "frontier.json", out / "summary.md", *plot_frontiers(records, out)]
