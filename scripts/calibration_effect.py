"""What calibration changed in the committed receiver grid: calibrated records vs the hand-set ones.

Reads two result files of the same grid (``results/receivers/grid.toml``): ``handset.jsonl`` (ζ and
λ_confirm set by hand, signature defaults otherwise; the previous code) and ``receivers.jsonl``
(strength options from ``src/diffcomm/zoo/calibration.json``), pairs the points by receiver, link
encoder, channel and SNR, and writes the differences (calibrated − hand-set) of PSNR, SSIM,
FD-cls and accuracy as JSON and a Markdown table. Receivers without a strength option (deepjscc,
pinv, ddnm, cddm, digital) are listed too: a change there comes from the code, not calibration.

Usage:
    python scripts/calibration_effect.py --before results/receivers/handset.jsonl \
        --after results/receivers/receivers.jsonl --out results/receivers/calibration_effect
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

METRICS = ("psnr", "ssim", "fd_cls", "accuracy")


def _metric(record: dict, name: str) -> float | None:
    value = record["metrics"].get(name)
    if isinstance(value, dict):
        value = value.get("mean")
    return None if value is None else float(value)


def _key(record: dict) -> tuple:
    return record["receiver"], record.get("encoder"), record["channel"], float(record["snr_db"])


def compare(before: list[dict], after: list[dict]) -> list[dict]:
    """One row per point present in both files, with both values and the difference of each metric."""
    old = {_key(r): r for r in before}
    rows = []
    for rec in after:
        prev = old.get(_key(rec))
        if prev is None:
            continue
        row = {"receiver": rec["receiver"], "encoder": rec.get("encoder"), "channel": rec["channel"],
               "snr_db": float(rec["snr_db"]), "n": rec["n"], "calibrated": rec.get("calibrated") or {},
               "options_before": prev.get("options", {})}
        for m in METRICS:
            a, b = _metric(rec, m), _metric(prev, m)
            row[m] = {"before": b, "after": a, "delta": None if a is None or b is None else a - b}
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| receiver | channel | SNR dB | calibrated values | ΔPSNR dB | ΔSSIM | ΔFD-cls | Δaccuracy |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        values = ", ".join(f"{k} {v['value']:g}" for k, v in sorted(r["calibrated"].items())) or "—"
        cells = [f"{r[m]['delta']:+.3f}" if r[m]["delta"] is not None else "—" for m in METRICS]
        lines.append(f"| {r['receiver']} | {r['channel']} | {r['snr_db']:g} | {values} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=Path("results/receivers/handset.jsonl"))
    parser.add_argument("--after", type=Path, default=Path("results/receivers/receivers.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("results/receivers/calibration_effect"))
    args = parser.parse_args(argv)
    read = lambda p: [json.loads(line) for line in p.read_text().splitlines() if line.strip()]  # noqa: E731
    rows = compare(read(args.before), read(args.after))
    args.out.with_suffix(".json").write_text(json.dumps({"before": str(args.before), "after": str(args.after),
                                                         "rows": rows}, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
