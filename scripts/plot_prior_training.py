"""Quality of the long prior run against training steps, from its committed log.

Reads ``runs/fmnist-prior-long/log.jsonl`` (the snapshots every ``[train] snapshot_every`` steps:
FD-cls and KID-cls of 1,000 unconditional samples against the test set, conditional accuracy of
1,000 CFG samples under the shipped classifier, with the real-data floor at the same sample size)
and the shipped 3,400-step prior's own record, and writes ``results/prior/training_curve.{json,png}``.

    python scripts/plot_prior_training.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from diffcomm.utils import atomic_write_json  # noqa: E402
from diffcomm.zoo.evaluate import training_snapshots  # noqa: E402

RUN = Path("runs/fmnist-prior-long")
OUT = Path("results/prior")


def main() -> None:
    rows = [r for r in training_snapshots(RUN / "log.jsonl") if "fd_cls_uncond_vs_test" in r]
    shipped = json.loads(Path("src/diffcomm/zoo/weights/fmnist-prior.json").read_text())
    ref = {"step": shipped["training"]["steps"], "fd_cls_uncond_vs_test": shipped["metrics"]["fd_cls_uncond_vs_test"],
           "conditional_accuracy": shipped["metrics"]["conditional_accuracy"]}
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT / "training_curve.json", {"run": str(RUN), "snapshots": rows, "shipped_fmnist_prior": ref})
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    steps = [r["step"] for r in rows]
    a.plot(steps, [r["fd_cls_uncond_vs_test"] for r in rows], marker="o", label="long run (1,000 samples)")
    a.plot([ref["step"]], [ref["fd_cls_uncond_vs_test"]], "s", label="shipped fmnist-prior")
    floor = [r.get("fd_cls_real1000_vs_rest_of_test") for r in rows]
    if rows and floor[0] is not None:
        a.axhline(floor[0], ls="--", c="gray", label="real-data floor")
    a.axhline(3.0, ls=":", c="k", label="target FD-cls 3")
    a.set_yscale("log")
    a.set_xlabel("training steps (batch 64)")
    a.set_ylabel("FD-cls (our classifier's features; not FID)")
    a.legend(fontsize=8)
    b.plot(steps, [r["conditional_accuracy"] for r in rows], marker="o", label="long run")
    b.plot([ref["step"]], [ref["conditional_accuracy"]], "s", label="shipped fmnist-prior")
    b.set_xlabel("training steps (batch 64)")
    b.set_ylabel("accuracy of class-conditional samples (CFG w = 1)")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "training_curve.png", dpi=110)
    print(f"wrote {OUT / 'training_curve.png'} ({len(rows)} snapshots)")


if __name__ == "__main__":
    main()
