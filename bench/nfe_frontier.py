"""The NFE frontier: every receiver family against the number of network evaluations and the wall time.

Setup: the first ``--images`` (256) Fashion-MNIST *test* images; two links at CBR 1/16 —
``pipeline.build_link("deepjscc", …)`` (the shipped DeepJSCC encoder for the channel) and the linear
``downsample`` link; three channels — AWGN 0 dB, AWGN 10 dB, Rayleigh 10 dB (block fading, perfect
CSI); one channel draw per cell (seed 0), one receiver generator per run (seed 1), decoded through
``pipeline.decode`` (so calibrated defaults apply where they exist), one torch thread per process.

Rows (:data:`FAMILIES`): each receiver at every NFE of the grid {1, 2, 4, 10, 20, 50, 100} its method
allows — all of them in the target cell (DeepJSCC link, AWGN 10 dB), fewer elsewhere (:data:`PLAN`,
for CPU time) — on the prior it is built for: the shipped EDM prior ``fmnist-prior`` (the calibrated
default) for the diffusion receivers, the rectified-flow ``fmnist-flow`` for ``flow_lt``/``pnp_flow``, the
consistency model ``fmnist-consistency`` for ``pnp_cm``, the latent prior for ``latent_dps`` —
and the references without a network (DeepJSCC decoder; pseudo-inverse). Priors that are not
shipped are skipped (and said so in the record).

Metrics per row: PSNR, SSIM (means over images), FD-cls (Fréchet distance of the shipped
classifier's features of the reconstructions against the 10,000 test images; with 256 images it is
biased upwards, so the record carries the same statistic for the 256 *original* images as its floor),
classifier accuracy on the reconstructions against the true labels, NFE per image, seconds per image.

Resumable: each finished row is appended to ``bench/results/nfe_frontier.d/part-<shard>.jsonl``; a
rerun skips rows already there. ``--shard i/n`` runs every n-th cell (two processes on two cores);
``--assemble`` merges the parts into ``bench/results/nfe_frontier.json`` and draws the two figures
(quality vs NFE, quality vs seconds per image) into ``results/frontier/``. ``--priors`` measures the
priors themselves: FD-cls of ``--samples`` (1,000) unconditional samples of each shipped prior against
its NFE (:data:`PRIOR_CURVES`) -> ``bench/results/prior_nfe.json`` (resumable per point).

Usage:
    .venv/bin/python bench/nfe_frontier.py --shard 0/2 & .venv/bin/python bench/nfe_frontier.py --shard 1/2
    .venv/bin/python bench/nfe_frontier.py --assemble
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from diffcomm import zoo
from diffcomm.data import get_dataset
from diffcomm.eval.runner import machine_info
from diffcomm.metrics import psnr, ssim
from diffcomm.metrics.classifier import predict
from diffcomm.metrics.distribution import frechet_distance
from diffcomm.pipeline import build_link, decode
from diffcomm.utils import atomic_write_json, git_revision

ROOT = Path(__file__).resolve().parents[1]
PARTS = ROOT / "bench" / "results" / "nfe_frontier.d"
OUT = ROOT / "bench" / "results" / "nfe_frontier.json"
FIGURES = ROOT / "results" / "frontier"
SHAPE, CBR = (1, 28, 28), "1/16"
CELLS = [("deepjscc", "awgn", 10.0), ("deepjscc", "awgn", 0.0), ("deepjscc", "rayleigh", 10.0),
         ("downsample", "awgn", 10.0), ("downsample", "awgn", 0.0), ("downsample", "rayleigh", 10.0)]
NFE_GRID = (1, 2, 4, 10, 20, 50, 100)

# receiver -> (prior: zoo name or None, NFE values it runs at, links, options for an NFE)
FAMILIES: dict[str, tuple[str | None, tuple[int, ...], tuple[str, ...], object]] = {
    "deepjscc": (None, (0,), ("deepjscc",), lambda n: {}),
    "pinv": (None, (0,), ("downsample",), lambda n: {}),
    "hifi": ("fmnist-prior", (1, 2, 4, 10, 20, 50, 100), ("deepjscc",), lambda n: {"steps": n}),
    "dps": ("fmnist-prior", (10, 20, 50, 100), ("deepjscc", "downsample"), lambda n: {"steps": n}),
    "diffpir": ("fmnist-prior", (4, 10, 20, 50, 100), ("downsample",), lambda n: {"steps": n}),
    "ddnm": ("fmnist-prior", (4, 10, 20, 50, 100), ("downsample",), lambda n: {"steps": n}),
    "pigdm": ("fmnist-prior", (10, 20, 50), ("downsample",), lambda n: {"steps": n}),
    "cddm": ("fmnist-prior", (10, 20, 50), ("downsample",), lambda n: {"steps": n}),
    "daps": ("fmnist-prior", (1, 2, 4, 10), ("deepjscc", "downsample"), lambda n: {"steps": n, "ode_steps": 1}),
    "flow_lt": ("fmnist-flow", (1, 2, 4, 10), ("deepjscc", "downsample"), lambda n: {"steps": n}),
    "pnp_flow": ("fmnist-flow", (1, 2, 4, 10), ("deepjscc", "downsample"), lambda n: {"steps": n}),
    "pnp_cm": ("fmnist-consistency", (1, 2, 4), ("deepjscc", "downsample"), lambda n: {"steps": n}),
    "latent_dps": ("fmnist-latent-prior", (10, 20, 50), ("deepjscc", "downsample"), lambda n: {"steps": n}),
}


# What runs where: the CPU time of this 2-core machine does not allow every NFE in every cell, so the
# full grid runs in the target cell (DeepJSCC link, AWGN 10 dB), a reduced one elsewhere (receiver -> NFEs;
# receivers not listed for a cell are not run there). DPS and ΠGDM differentiate through the network
# (about 3× the cost of an evaluation), so they run at fewer points.
FULL = {"deepjscc": (0,), "hifi": (1, 2, 4, 10, 20, 50, 100), "dps": (10, 20, 50, 100), "daps": (1, 4),
        "flow_lt": (1, 2, 4, 10), "pnp_flow": (1, 4), "pnp_cm": (1, 2, 4), "latent_dps": (10, 20)}
JSCC_OTHER = {"deepjscc": (0,), "hifi": (1, 4, 10), "daps": (4,), "flow_lt": (1, 2, 4), "pnp_flow": (4,),
              "pnp_cm": (1, 2, 4), "latent_dps": (20,)}
LINEAR_MAIN = {"pinv": (0,), "diffpir": (4, 10, 20), "ddnm": (4, 10), "dps": (20,), "pigdm": (20,), "cddm": (10, 20),
               "daps": (4,),
               "flow_lt": (1, 2, 4), "pnp_flow": (4,), "pnp_cm": (1, 2, 4), "latent_dps": (20,)}
LINEAR_OTHER = {"pinv": (0,), "diffpir": (4, 10), "flow_lt": (1, 2, 4), "pnp_cm": (1, 2, 4)}
PLAN = {("deepjscc", "awgn", 10.0): FULL, ("deepjscc", "awgn", 0.0): JSCC_OTHER,
        ("deepjscc", "rayleigh", 10.0): JSCC_OTHER, ("downsample", "awgn", 10.0): LINEAR_MAIN,
        ("downsample", "awgn", 0.0): LINEAR_OTHER, ("downsample", "rayleigh", 10.0): LINEAR_OTHER}


def row_key(row: dict) -> tuple:
    return (row["link"], row["channel"], row["snr_db"], row["receiver"], row["nfe_setting"])


def done_rows() -> list[dict]:
    rows = []
    for part in sorted(PARTS.glob("part-*.jsonl")):
        for line in part.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill; its row is rerun
    return rows


def run(shard: int, shards: int, n_images: int, only: set[str] | None, part_name: str | None = None) -> None:
    torch.set_num_threads(1)
    PARTS.mkdir(parents=True, exist_ok=True)
    part = PARTS / f"part-{part_name or shard}.jsonl"
    done = {row_key(r) for r in done_rows()}
    test = get_dataset("fashion-mnist", "test")
    x, labels = test.images[:n_images], test.labels[:n_images]
    classifier = zoo.load("fmnist-classifier")
    _, f_test = predict(classifier, test.images)
    shipped = zoo.list_models()
    for c, (enc, channel, snr) in enumerate(CELLS):
        if c % shards != shard:
            continue
        link = build_link(enc, SHAPE, CBR, channel, snr)
        rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
        for name, (prior_name, nfes, encs, options) in FAMILIES.items():
            if enc not in encs or (only and name not in only):
                continue
            if prior_name is not None and prior_name not in shipped:
                print(f"skip {name}: prior {prior_name} is not shipped", flush=True)
                continue
            prior = zoo.load(prior_name) if prior_name else None
            for nfe in PLAN[(enc, channel, snr)].get(name, ()):
                key = (enc, channel, snr, name, nfe)
                if key in done or nfe not in nfes:
                    continue
                res = decode(name, link, rx, prior=prior, generator=torch.Generator().manual_seed(1), **options(nfe))
                logits, feats = predict(classifier, res.x_hat)
                row = {"link": enc, "channel": channel, "snr_db": snr, "receiver": name, "prior": prior_name,
                       "nfe_setting": nfe, "options": options(nfe), "nfe": int(res.nfe), "images": len(x),
                       "psnr": float(psnr(res.x_hat, x).mean()), "ssim": float(ssim(res.x_hat, x).mean()),
                       "fd_cls": frechet_distance(feats, f_test),
                       "accuracy": float((logits.argmax(1) == labels).float().mean()),
                       "seconds_per_image": res.seconds / len(x), "load_average": list(os.getloadavg())}
                with open(part, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{enc:10s} {channel:8s} {snr:4.0f} dB {name:10s} nfe {row['nfe']:3d} psnr {row['psnr']:6.2f} "
                      f"ssim {row['ssim']:.3f} fd {row['fd_cls']:7.2f} acc {row['accuracy']:.3f} "
                      f"{row['seconds_per_image'] * 1000:8.1f} ms/img", flush=True)


def assemble(n_images: int) -> None:
    rows = done_rows()
    test = get_dataset("fashion-mnist", "test")
    classifier = zoo.load("fmnist-classifier")
    _, f_test = predict(classifier, test.images)
    _, f_real = predict(classifier, test.images[:n_images])
    floor = frechet_distance(f_real, f_test)
    unique = {row_key(r): r for r in rows}
    rows = sorted(unique.values(), key=lambda r: (CELLS.index((r["link"], r["channel"], r["snr_db"])),
                                                    list(FAMILIES).index(r["receiver"]), r["nfe"]))
    shipped = zoo.list_models()
    record = {
        "setup": {"images": n_images, "split": "test", "dataset": "fashion-mnist", "cbr": CBR, "csi": "perfect",
                  "channel_seed": 0, "receiver_seed": 1, "cells": CELLS, "nfe_grid": list(NFE_GRID)},
        "priors": {p: {"weights_digest": zoo.weights_digest(p)} if p in shipped else "not shipped"
                   for p in sorted({f[0] for f in FAMILIES.values() if f[0]})},
        "fd_cls_floor_original_images": floor,
        "rows": rows,
        "machine": machine_info(1), "git_revision": git_revision(),
        "command": "python bench/nfe_frontier.py --shard 0/2 & python bench/nfe_frontier.py --shard 1/2; "
                   "python bench/nfe_frontier.py --assemble",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(OUT, record)
    plot(record)
    print(f"wrote {OUT} ({len(rows)} rows) and {FIGURES}/quality_vs_nfe.png, quality_vs_seconds.png")


def plot(record: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIGURES.mkdir(parents=True, exist_ok=True)
    rows = record["rows"]
    for xkey, fname, xlabel in (("nfe", "quality_vs_nfe", "network evaluations per image (0 plotted at 0.5)"),
                                ("seconds_per_image", "quality_vs_seconds", "seconds per image (one CPU thread)")):
        fig, axes = plt.subplots(len(CELLS), 2, figsize=(11, 3.1 * len(CELLS)), squeeze=False)
        for i, cell in enumerate(CELLS):
            sel = [r for r in rows if (r["link"], r["channel"], r["snr_db"]) == cell]
            for j, metric in enumerate(("psnr", "fd_cls")):
                ax = axes[i][j]
                for k, name in enumerate(FAMILIES):
                    pts = sorted((max(r[xkey], 0.5) if xkey == "nfe" else r[xkey], r[metric])
                                 for r in sel if r["receiver"] == name)
                    if pts:  # one colour per receiver in every panel
                        ax.plot(*zip(*pts), marker="o", ms=3, label=name, color=plt.cm.tab20(k / 20))
                ax.set_xscale("log")
                if metric == "fd_cls":
                    ax.set_yscale("log")
                    ax.axhline(record["fd_cls_floor_original_images"], color="grey", ls=":", lw=1)
                ax.set_title(f"{cell[0]} link, {cell[1]} {cell[2]:g} dB: {metric.upper().replace('_', '-')}",
                             fontsize=9)
                ax.set_xlabel(xlabel, fontsize=8)
                ax.grid(alpha=0.3)
        handles = {h.get_label(): h for ax in axes.flat for h in ax.get_lines() if not h.get_label().startswith("_")}
        fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=6, fontsize=8)
        fig.tight_layout(rect=(0, 0, 1, 0.97))
        fig.savefig(FIGURES / f"{fname}.png", dpi=90)
        plt.close(fig)


# prior -> [(sampler, steps)] for the unconditional-sample curve (NFE: Heun 2·steps − 1, Euler/consistency steps)
PRIOR_CURVES = {
    "fmnist-flow": [("euler", 2), ("euler", 4), ("euler", 10), ("heun", 5)],
    "fmnist-prior-long": [("heun", 5)],
    "fmnist-consistency": [("consistency", 1), ("consistency", 4)],
}
# (the shipped records hold the 18-level Heun points, 35 evaluations, of the EDM and flow priors and the
# 2-step point of the consistency model, measured on the same 1,000 seeds by diffcomm zoo ship)


def prior_curves(n: int, out: Path) -> None:
    """FD-cls of ``n`` unconditional samples of each shipped prior against its number of evaluations.

    The same seed for every point; the real-data floor is the FD-cls of ``n`` test images against the other
    test images (the statistic's bias at this sample size)."""
    from diffcomm.diffusion.sampling import sample_prior

    torch.set_num_threads(1)
    rows = json.loads(out.read_text())["rows"] if out.is_file() else []
    done = {(r["prior"], r["sampler"], r["steps"]) for r in rows}
    classifier = zoo.load("fmnist-classifier")
    test = get_dataset("fashion-mnist", "test")
    _, f_test = predict(classifier, test.images)
    perm = torch.randperm(len(f_test), generator=torch.Generator().manual_seed(0))
    floor = frechet_distance(f_test[perm[:n]], f_test[perm[n:]])
    shipped = zoo.list_models()
    for name, runs in PRIOR_CURVES.items():
        if name not in shipped:
            print(f"skip {name}: not shipped", flush=True)
            continue
        for sampler, steps in runs:
            if (name, sampler, steps) in done:
                continue
            t0 = time.perf_counter()
            samples, nfe = sample_prior(zoo.load(name), n, sampler=sampler, steps=steps, seed=1)
            seconds = time.perf_counter() - t0
            _, feats = predict(classifier, samples)
            rows.append({"prior": name, "sampler": sampler, "steps": steps, "nfe": nfe,
                         "fd_cls_uncond_vs_test": frechet_distance(feats, f_test), "seconds": seconds})
            fd = rows[-1]["fd_cls_uncond_vs_test"]
            print(f"{name:20s} {sampler:11s} steps {steps:3d} nfe {nfe:3d} FD-cls {fd:.2f} ({seconds:.0f} s)",
                  flush=True)
            atomic_write_json(out, {"samples": n, "fd_cls_floor_real_test_images": floor, "rows": rows,
                                    "machine": machine_info(1), "git_revision": git_revision(),
                                    "command": f"python bench/nfe_frontier.py --priors --samples {n}",
                                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def timing_check(n_images: int = 32, repeats: int = 2) -> dict:
    """Wall time of HiFi at 4 and at 100 evaluations on the same ``n_images`` (DeepJSCC link, AWGN 10 dB),
    run alternately in one process so that the machine's load hits both alike (the frontier's rows ran hours
    apart under different loads)."""
    torch.set_num_threads(1)
    x = get_dataset("fashion-mnist", "test").images[:n_images]
    link = build_link("deepjscc", SHAPE, CBR, "awgn", 10.0)
    rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
    times: dict[int, list[float]] = {4: [], 100: []}
    for _ in range(repeats):
        for nfe in (4, 100):
            res = decode("hifi", link, rx, generator=torch.Generator().manual_seed(1), steps=nfe)
            times[nfe].append(res.seconds / n_images)
    out = {"receiver": "hifi", "cell": ["deepjscc", "awgn", 10.0], "images": n_images, "repeats": repeats,
           "seconds_per_image": {str(k): min(v) for k, v in times.items()},
           "ratio_100_over_4": min(times[100]) / min(times[4]), "load_average": list(os.getloadavg())}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--shard", default="0/1", help="i/n: run every n-th cell starting at i")
    ap.add_argument("--only", nargs="*", help="receivers to run (default: all)")
    ap.add_argument("--part", help="name of this process's rows file (default: the shard index)")
    ap.add_argument("--assemble", action="store_true", help="merge the finished rows into the JSON and figures")
    ap.add_argument("--timing", action="store_true", help="time HiFi at 4 and 100 NFE alternately (into the JSON)")
    ap.add_argument("--priors", action="store_true", help="sample quality of each shipped prior against its NFE")
    ap.add_argument("--samples", type=int, default=1000, help="samples per point with --priors")
    args = ap.parse_args()
    if args.timing:
        rec = json.loads(OUT.read_text()) if OUT.is_file() else {}
        atomic_write_json(ROOT / "bench" / "results" / "nfe_timing_check.json",
                          {**timing_check(), "machine": machine_info(1), "git_revision": git_revision(),
                           "command": "python bench/nfe_frontier.py --timing",
                           "frontier_timestamp": rec.get("timestamp")})
        return
    if args.priors:
        prior_curves(args.samples, ROOT / "bench" / "results" / "prior_nfe.json")
        return
    if args.assemble:
        assemble(args.images)
        return
    i, n = (int(v) for v in args.shard.split("/"))
    run(i, n, args.images, set(args.only) if args.only else None, args.part)


if __name__ == "__main__":
    main()
