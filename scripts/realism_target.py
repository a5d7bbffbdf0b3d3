"""Issue 17's realism target, checked on the committed grids: at every channel and SNR, is there a receiver
with FD-cls <= 0.5x the DeepJSCC decoder's and PSNR within 1 dB of it?

Reads results/receivers/receivers.jsonl (the inference-time receivers) and results/conditional/conditional.jsonl
(the trained ones); same 256 test images, CBR 1/16, perfect CSI. Writes results/conditional/target.md.
Usage: .venv/bin/python scripts/realism_target.py
"""

from __future__ import annotations

import json
from pathlib import Path

GRIDS = (Path("results/receivers/receivers.jsonl"), Path("results/conditional/conditional.jsonl"))


def main() -> int:
    rows = {}
    for grid in GRIDS:
        for line in grid.read_text().splitlines():
            r = json.loads(line)
            if r.get("csi") != "perfect" or r["metrics"].get("fd_cls") is None:
                continue
            name = r["receiver"] + ("" if r["receiver"] == "digital" else f"@{r['encoder']}")
            rows[(name, r["channel"], r["snr_db"])] = (r["metrics"]["psnr"]["mean"], r["metrics"]["fd_cls"])
    lines = ["# Realism target: FD-cls <= 0.5x the DeepJSCC decoder's with PSNR within 1 dB of it", "",
             "Command: `.venv/bin/python scripts/realism_target.py` (from the committed grids).", "",
             "| channel | SNR | decoder PSNR / FD-cls | receivers meeting it (PSNR − decoder, FD ratio) "
             "| closest otherwise |",
             "|---|---|---|---|---|"]
    for channel in ("awgn", "rayleigh"):
        for snr in (0.0, 5.0, 10.0, 20.0):
            ref = rows.get(("deepjscc@deepjscc", channel, snr))
            if ref is None:
                continue
            cands = []
            for (name, ch, s), (p, fd) in rows.items():
                if ch == channel and s == snr and name != "deepjscc@deepjscc":
                    cands.append((name, p - ref[0], fd / ref[1]))
            ok = sorted((c for c in cands if c[1] >= -1.0 and c[2] <= 0.5), key=lambda c: c[2])
            near = sorted((c for c in cands if c not in ok and c[2] <= 0.5), key=lambda c: -c[1])[:1]
            fmt = lambda c: f"{c[0]} ({c[1]:+.2f} dB, {c[2]:.2f})"  # noqa: E731
            lines.append(f"| {channel} | {snr:g} | {ref[0]:.2f} / {ref[1]:.2f} | "
                         f"{', '.join(map(fmt, ok)) or '**none**'} | {', '.join(map(fmt, near)) or '—'} |")
    out = Path("results/conditional/target.md")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
