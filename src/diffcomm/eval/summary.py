"""Reading results records: metric values with intervals, curves over SNR, and the summary table.

A record's metric is either a summary ``{mean, std, n, ci_low, ci_high, ...}`` over images (psnr,
ssim, accuracy, spread, agreement), an AUROC ``{mean, se, ci_low, ci_high, ...}`` (auroc_disagreement,
auroc_spread: one value per record, interval ±1.96 Hanley–McNeil s.e.), a plain number (fd_cls, kid_cls)
or ``None`` (not computed). Several seeds of
the same setting are combined into one curve point: for summaries, the pooled mean and the
Student-t interval of all (image, seed) values, computed exactly from each record's mean, std and
n; for plain numbers, the mean over seeds with a Student-t interval over seeds. With one seed a
point is the record's own value and interval.

Example:
    >>> rec = {"metrics": {"psnr": {"mean": 20.0, "ci_low": 19.0, "ci_high": 21.0}, "fd_cls": 3.5}}
    >>> metric_value(rec, "psnr"), metric_value(rec, "fd_cls")
    ((20.0, 19.0, 21.0), (3.5, None, None))
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from diffcomm.eval.grid import cbr_label

# Metrics in the order they are shown; any other numeric metric found in records follows.
METRIC_ORDER = ("psnr", "ssim", "accuracy", "fd_cls", "kid_cls", "spread", "agreement", "auroc_disagreement",
                "auroc_spread")
METRIC_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "accuracy": "classifier accuracy",
                 "fd_cls": "FD-cls (lower is better)", "kid_cls": "KID-cls (lower is better)",
                 "spread": "posterior spread (rms pixel std)", "agreement": "semantic agreement",
                 "auroc_disagreement": "AUROC wrong class, 1 − agreement", "auroc_spread": "AUROC wrong class, spread"}
# Companion values stored beside a metric, never plotted on their own.
_NOT_PLOTTED = {"accuracy_original", "kid_cls_std"}


def metric_value(record: dict[str, Any], metric: str) -> tuple[float, float | None, float | None] | None:
    """``(mean, ci_low, ci_high)`` of ``metric`` in ``record`` (bounds ``None`` for plain numbers)."""
    value = record.get("metrics", {}).get(metric)
    if value is None:
        return None
    if isinstance(value, dict):
        if value.get("mean") is None:
            return None
        return float(value["mean"]), value.get("ci_low"), value.get("ci_high")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), None, None
    return None


def metric_names(records: Iterable[dict[str, Any]]) -> list[str]:
    """Metrics with at least one value in ``records``, in :data:`METRIC_ORDER` then name order."""
    found = set()
    for r in records:
        for name in r.get("metrics", {}):
            if name not in _NOT_PLOTTED and metric_value(r, name) is not None:
                found.add(name)
    return [m for m in METRIC_ORDER if m in found] + sorted(found - set(METRIC_ORDER))


def panel_key(record: dict[str, Any]) -> tuple:
    """The setting a curve panel shows: (dataset, split, channel, csi, cbr).

    The number of images is not part of it: a system evaluated on more images (the digital
    baseline, whose codec headers only amortise over many) shares the panel, labelled with its n.
    """
    return (record["dataset"], record["split"], record["channel"], record["csi"], record["cbr"])


def panel_sizes(records: Iterable[dict[str, Any]]) -> dict[tuple, Counter]:
    """``{panel_key: Counter(n)}``: how many records of each image count a panel has."""
    out: dict[tuple, Counter] = defaultdict(Counter)
    for r in records:
        out[panel_key(r)][r["n"]] += 1
    return out


def _common_n(sizes: Counter | None) -> int | None:
    if not sizes:
        return None
    return max(sizes.items(), key=lambda kv: (kv[1], -kv[0]))[0]


def panel_title(key: tuple, sizes: Counter | None = None) -> str:
    dataset, split, channel, csi, cbr = key
    n = _common_n(sizes)
    return f"{channel}, CSI {csi}, CBR {cbr_label(cbr)} ({dataset} {split}" + (f", n={n})" if n else ")")


def series_label(record: dict[str, Any], sizes: Counter | None = None) -> str:
    """A curve's name: the system, plus ``(n=N)`` when it used another image count than its panel."""
    n = _common_n(sizes)
    return record["system"] if n is None or record["n"] == n else f"{record['system']} (n={record['n']})"


def curves(records: Iterable[dict[str, Any]], metric: str) -> dict[tuple, dict[str, list[tuple]]]:
    """``{panel_key: {series: [(snr, mean, low, high, seeds), ...] sorted by SNR}}`` for ``metric``.

    A series is a system (:func:`series_label`: with its n when it differs from the panel's).
    """
    from diffcomm.metrics import mean_ci

    records = list(records)
    sizes = panel_sizes(records)
    grouped: dict[tuple, dict[str, dict[float, list]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in records:
        v = metric_value(r, metric)
        if v is not None:
            raw = r["metrics"][metric]
            std, n = (raw.get("std"), raw.get("n")) if isinstance(raw, dict) else (None, None)
            if n == 1:
                std = 0.0
            key = panel_key(r)
            grouped[key][series_label(r, sizes[key])][float(r["snr_db"])].append((*v, std, n))
    out: dict[tuple, dict[str, list[tuple]]] = {}
    for key, systems in grouped.items():
        out[key] = {}
        for system, by_snr in systems.items():
            pts = []
            for snr in sorted(by_snr):
                values = by_snr[snr]
                if len(values) == 1:
                    mean, low, high = values[0][:3]
                elif all(v[3] is not None for v in values):
                    mean, low, high = pooled_ci([(v[0], v[3], v[4]) for v in values])
                else:
                    mean, low, high = mean_ci([v[0] for v in values])
                pts.append((snr, mean, low, high, len(values)))
            out[key][system] = pts
    return out


def pooled_ci(groups: list[tuple[float, float, int]], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of the union of groups given as ``(mean, std (ddof 1), n)``.

    >>> pooled_ci([(1.0, 0.0, 1), (3.0, 0.0, 1)])[0]
    2.0
    """
    from scipy import stats

    total = sum(n for _, _, n in groups)
    mean = sum(m * n for m, _, n in groups) / total
    if total < 2:
        return mean, math.nan, math.nan
    ss = sum((n - 1) * s * s + n * (m - mean) ** 2 for m, s, n in groups)
    half = float(stats.t.ppf(0.5 + confidence / 2, df=total - 1)) * math.sqrt(ss / (total - 1) / total)
    return mean, mean - half, mean + half


def _fmt(v: tuple | None, digits: int) -> str:
    if v is None:
        return "-"
    mean, low, high = v
    if low is None or high is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ±{(high - low) / 2:.{digits}f}"


def transmitted(record: dict[str, Any]) -> str:
    """What reached the receiver, for the table: ``all`` for the analog systems; for the digital
    baseline ``all`` / ``62% of images`` / ``nothing: fallback`` (nothing fitted or decoded, every
    image is the fallback grey)."""
    digital = record.get("digital")
    if not isinstance(digital, dict):
        return "all"
    if digital.get("config") is None:
        return "nothing: fallback"
    rate = digital.get("success_rate")
    if not isinstance(rate, (int, float)):
        return "?"
    if rate >= 1:
        return "all"
    if rate <= 0:
        return "nothing: fallback"
    return f"{rate:.0%}, rest fallback"


def results_table(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (one per record) for :func:`diffcomm.utils.format_table` and the HTML report.

    Columns: system, channel, CSI, CBR, SNR, seed, images (when they differ between records),
    PSNR/SSIM (mean ±95 % CI half-width), the classifier metrics when any record has them, the
    uncertainty metrics (spread, agreement, the wrong-class AUROCs ±1.96 s.e.) when any record has them, what
    was transmitted (when a digital record is present: a fallback is said in so many words),
    NFE per image and seconds per image.
    """
    extra = [m for m in metric_names(records) if m not in ("psnr", "ssim")]
    show_n = len({r["n"] for r in records}) > 1
    show_sent = any(isinstance(r.get("digital"), dict) for r in records)
    header = ["system", "channel", "csi", "cbr", "snr_db", "seed", *(["n"] if show_n else []), "psnr", "ssim",
              *extra, *(["sent"] if show_sent else []), "nfe", "s/img"]
    digits = {"psnr": 2, "ssim": 3, "accuracy": 3, "fd_cls": 2, "kid_cls": 4, "spread": 4, "agreement": 3,
              "auroc_disagreement": 3, "auroc_spread": 3}
    rows = []
    order = sorted(records, key=lambda r: (r["dataset"], r["channel"], r["csi"], r["cbr"], r["system"],
                                           r["snr_db"], r["seed"]))
    for r in order:
        rows.append([r["system"], r["channel"], r["csi"], cbr_label(r["cbr"]), f"{r['snr_db']:g}", str(r["seed"]),
                     *([str(r["n"])] if show_n else []),
                     _fmt(metric_value(r, "psnr"), 2), _fmt(metric_value(r, "ssim"), 3),
                     *[_fmt(metric_value(r, m), digits.get(m, 3)) for m in extra],
                     *([transmitted(r)] if show_sent else []),
                     f"{r.get('nfe', 0):g}", f"{(r.get('seconds') or {}).get('per_image', float('nan')):.3f}"])
    return header, rows
