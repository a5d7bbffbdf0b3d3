"""Peer benchmark: our dps / diffpir / ddnm / pigdm against deepinv 0.5's DPS / DiffPIR / DDRM / ΠGDM.

Both sides run in one process on the same prior (the shipped ``fmnist-prior``, wrapped for deepinv
by ``diffcomm.interop.deepinv.to_deepinv_denoiser``), the same operator (the ``downsample`` link
at CBR 1/16 over AWGN: 98 real measurements of 784 pixels), the same noise draw, the same
Fashion-MNIST test images and the same number of network evaluations (NFE, counted on the deepinv
side by a wrapper around the denoiser, read off ``ReceiverResult.nfe`` on ours), with one torch
thread. Both sides use their **default hyperparameters** (only the step count is set; ours: the
signature defaults, ``calibration=False``): defaults are what users get. With ``--calibrated`` each
side's strength parameters are first tuned per SNR and NFE on Fashion-MNIST *training* images
(``diffcomm.calibration.validation_images``, their own noise draws; the test images are never used
for a choice) by the same coordinate search (``diffcomm.calibration.coordinate_search``, from each
side's defaults): ours over the candidates each receiver registers (``Option(tune=...)``: dps ζ,
diffpir λ and ζ, pigdm guidance scale; ddnm has none), deepinv's over :data:`DEEPINV_TUNE` (DPS
weight, DiffPIR λ and ζ, DDRM η and η_b, ΠGDM weight); the winners, the start and every candidate's
training PSNR are recorded per row (``options``, ``tuning``).

Writes per pair x SNR x NFE: median seconds per batch on both sides, their ratio
(ours / deepinv; median of the per-repeat ratios, the two sides interleaved), mean PSNR/SSIM on
both sides and the paired per-image difference (ours − deepinv) with a 95 % t-interval, plus the
machine (platform, CPUs, torch/deepinv versions, load average before and after, date) and the
exact command.

Setup shared by both sides:
- **one gain per batch**: the link normalises power per image (``g = sqrt(k)/||E x||``, so the
  operator differs per image); deepinv's DDRM and ΠGDM take one SVD for the batch, so the batch is
  sent with one gain ``g0 = sqrt(k B / Σ ||E x_b||²)`` (mean power 1 over the batch), ``y``
  re-formed from the same noise draw. Both sides get that ``Received``.
- **deepinv physics**: a ``DecomposablePhysics`` from our operator's shared SVD (float32), so DDRM
  and ΠGDM get their exact spectral paths and DiffPIR its exact prox; the script checks it against
  ``diffcomm.interop.deepinv.link_physics`` (``A`` and ``A_adjoint``), recorded as ``physics_check``.
- **σ = 0**: deepinv's DDRM ends its default schedule (``linspace(1, 0, N)``) at σ = 0, where our
  prior (EDM ``c_noise = log σ / 4``) returns NaN; the benchmark's denoiser wrapper clamps σ to the
  prior's σ_min (0.001 in pixels), i.e. one last denoising step at the smallest trained level.
- deepinv constructions: ``DPS(den, num_steps=N + 1)`` (ancestral DDPM solver, t from 1 to 0: N
  evaluations), ``DiffPIR(den, L2(), max_iter=N)``, ``DDRM(den, sigmas=linspace(1, 0, N))``, and
  ΠGDM (deepinv has no class) as ``PosteriorDiffusion(PiGDMDataFidelity(), den,
  VariancePreservingDiffusion(), DDPMSolver(linspace(1, 0, N + 1)))``, the same SDE and solver as its
  DPS class.

Run (from the repository root; the project venv cannot hold deepinv, so the script skips there):

    ENV_PY=$(bench/peers_env.sh)                     # makes /work/deepinv-env once, prints its python
    PYTHONPATH=src $ENV_PY bench/peers.py            # 16 images, batch 16, NFE 20 50, 10 dB, 3 repeats
    PYTHONPATH=src $ENV_PY bench/peers.py --images 32 --snr 10 5 --nfe 20 50 100
    PYTHONPATH=src $ENV_PY bench/peers.py --images 32 --snr 10 5 --nfe 20 50 100 --calibrated   # peers_calibrated

Time ratios are what matter on a shared machine; absolute seconds move with the load.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

try:
    import deepinv as dinv
except ImportError:
    print("bench/peers.py: skipped, deepinv is not importable here; make its environment with "
          "bench/peers_env.sh and run PYTHONPATH=src $(bench/peers_env.sh) bench/peers.py")
    sys.exit(0)

import numpy as np
import torch

from diffcomm import zoo
from diffcomm.data import get_dataset
from diffcomm.interop.deepinv import affine_of, link_physics, measurement, to_deepinv_denoiser
from diffcomm.metrics import psnr, ssim
from diffcomm.pipeline import build_link, decode
from diffcomm.utils import atomic_write_json, git_revision

PAIRS = (("dps", "DPS"), ("diffpir", "DiffPIR"), ("ddnm", "DDRM"), ("pigdm", "PiGDM"))


class Counted(dinv.models.Denoiser):
    """The wrapped prior with σ clamped to its smallest trained level, counting batch evaluations."""

    def __init__(self, den, sigma_min_pixels: float):
        super().__init__()
        self.den, self.sigma_min, self.calls = den, sigma_min_pixels, 0

    def forward(self, x, sigma, *args, **kwargs):
        self.calls += 1
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).clamp_min(self.sigma_min)
        return self.den(x, s)


def fixed_gain(link, rx, x):
    """``rx`` re-sent with one power gain for the whole batch (mean power 1), same noise draw."""
    with torch.no_grad():
        z = link.encoder(x).to(torch.complex64)
        g0 = math.sqrt(link.k * x.shape[0] / float((z.abs() ** 2).sum()))
        h = rx.h_hat
        y = rx.y + h * (g0 - rx.gain.reshape(-1, 1)) * z
    return dataclasses.replace(rx, y=y, gain=torch.full_like(rx.gain, g0))


def svd_physics(link, rx):
    """deepinv ``DecomposablePhysics`` from the operator's (shared) SVD, float32; the σ_y of the link."""
    op = link.operator(rx)
    s = op.svd()
    if not bool(torch.allclose(s.s, s.s[:1].expand_as(s.s))) or not bool(torch.allclose(s.u, s.u[:1].expand_as(s.u))):
        raise SystemExit("bench/peers.py: the batch's operators differ; the shared-SVD physics needs one gain")
    keep = s.keep[0]
    u = s.u[0][:, keep].float()                          # (2k, r)
    sv = s.s[0][keep].float()                            # (r,)
    vh = s.vh[0][keep].float()                           # (r, n)
    shape = tuple(link.shape)

    def cast(m, t):
        return m if m.dtype == t.dtype else m.to(t.dtype)

    physics = dinv.physics.DecomposablePhysics(
        U=lambda v: v @ cast(u, v).T, U_adjoint=lambda yy: yy @ cast(u, yy),
        V=lambda v: (v @ cast(vh, v)).reshape(-1, *shape), V_adjoint=lambda xx: xx.flatten(1) @ cast(vh, xx).T,
        mask=sv[None], noise_model=dinv.physics.GaussianNoise(sigma=float(rx.n0 / 2) ** 0.5))
    return physics


def physics_check(physics, link, rx, x):
    ref = link_physics(link, rx)
    yy = measurement(rx)
    with torch.no_grad():
        fwd = float((physics.A(x) - ref.A(x)).abs().max() / ref.A(x).abs().max())
        adj = float((physics.A_adjoint(yy) - ref.A_adjoint(yy)).abs().max() / ref.A_adjoint(yy).abs().max())
    return {"A_rel_max_err": fwd, "A_adjoint_rel_max_err": adj, "rank": int(physics.mask.numel()),
            "noise_sigma": float(physics.noise_model.sigma)}


def deepinv_method(name, den, nfe, seed, params=None):
    """deepinv's sampler ``name`` at ``nfe`` evaluations; ``params`` are its strength parameters (default: its own)."""
    params = params or {}
    if name == "DPS":
        return dinv.sampling.DPS(den, num_steps=nfe + 1, rng=torch.Generator().manual_seed(seed), **params)
    if name == "DiffPIR":
        return dinv.sampling.DiffPIR(den, dinv.optim.data_fidelity.L2(), max_iter=nfe, **params)
    if name == "DDRM":
        return dinv.sampling.DDRM(den, sigmas=np.linspace(1, 0, nfe), **params)
    if name == "PiGDM":
        solver = dinv.sampling.DDPMSolver(timesteps=torch.linspace(1, 0, nfe + 1, dtype=torch.float64),
                                          rng=torch.Generator().manual_seed(seed))
        return dinv.sampling.PosteriorDiffusion(dinv.sampling.PiGDMDataFidelity(**params), den,
                                                dinv.sampling.VariancePreservingDiffusion(), solver)
    raise KeyError(name)


def run_deepinv(name, den, nfe, y, physics, seed, params=None):
    model = deepinv_method(name, den, nfe, seed, params)
    torch.manual_seed(seed)                               # DDRM and DiffPIR draw from the global generator
    den.calls = 0
    t0 = time.perf_counter()
    if name in ("DPS", "PiGDM"):
        out = model(y, physics, seed=seed)
    else:
        out = model(y, physics)
    sec = time.perf_counter() - t0
    return out.detach().float().clamp(0, 1), sec, den.calls


def run_ours(name, link, rx, prior, nfe, seed, options=None):
    """Our receiver with its signature defaults (``calibration=False``: not stored calibrated ones) or ``options``."""
    t0 = time.perf_counter()
    res = decode(name, link, rx, prior=prior, steps=nfe, generator=torch.Generator().manual_seed(seed),
                 calibration=False, **(options or {}))
    return res.x_hat.detach().float().clamp(0, 1), time.perf_counter() - t0, res.nfe


# --calibrated: each side's strength parameters, searched on training images with the same coordinate search
# (diffcomm.calibration.coordinate_search; starts at each side's defaults). Ours: the candidates each receiver
# registers (Option(..., tune=...), the ones `diffcomm tune` searches); deepinv: grids of the same breadth around
# its defaults (DPS's "norm" guidance weight absorbs ||y - A x0|| / sigma_y^2, "typically in the hundreds").
DEEPINV_TUNE = {
    "DPS": {"weight": (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)},
    "DiffPIR": {"lambda_": (1.0, 2.0, 4.0, 7.0, 12.0, 20.0), "zeta": (0.1, 0.3, 0.6, 1.0)},
    "DDRM": {"eta": (0.5, 0.7, 0.85, 1.0), "etab": (0.5, 0.75, 1.0)},
    "PiGDM": {"weight": (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)},
}
DEEPINV_DEFAULTS = {"DPS": {"weight": 1.0}, "DiffPIR": {"lambda_": 7.0, "zeta": 0.1},
                    "DDRM": {"eta": 0.85, "etab": 1.0}, "PiGDM": {"weight": 1.0}}


def ours_grid(name):
    """(start, candidates) of our receiver's strength options: its signature defaults and registered candidates."""
    from diffcomm.receivers.base import get_spec

    spec = get_spec(name)
    grid = spec.tunable()
    return {k: spec.defaults()[k] for k in grid}, grid


def tune_side(run, start, grid, tune_sets, seed, rounds=2):
    """Coordinate search of ``run(params, x, rx, physics, y, seed) -> x_hat`` by mean PSNR over the tuning batches.

    Returns {"options", "psnr", "start": {options, psnr}, "candidates": [...]}; with no strength options the
    defaults are kept and scored once."""
    from diffcomm.calibration import Candidate, coordinate_search

    cache = {}

    def evaluate(opts):
        key = tuple(sorted(opts.items()))
        if key not in cache:
            ps = []
            for b, (x, rx, physics, y) in enumerate(tune_sets):
                ps += psnr(run(opts, x, rx, physics, y, seed + b), x).tolist()
            cache[key] = Candidate(dict(opts), float(np.mean(ps)), None)
        return cache[key]

    first, best = coordinate_search(evaluate, dict(start), grid, rounds) if grid else (evaluate({}),) * 2
    return {"options": best.options, "psnr": best.psnr, "start": {"options": first.options, "psnr": first.psnr},
            "candidates": [{"options": c.options, "psnr": c.psnr} for c in cache.values()]}


def send(link, batches, seed):
    """(x, rx with one gain per batch, deepinv physics, deepinv y) per batch, noise seeded ``seed + b``."""
    out = []
    for b, x in enumerate(batches):
        rx = fixed_gain(link, link.transmit(x, generator=torch.Generator().manual_seed(seed + b)), x)
        physics = svd_physics(link, rx)
        out.append((x, rx, physics, measurement(rx)))
    return out


def paired(a, b):
    """Mean of ``a − b`` with its 95 % t-interval (per-image pairs)."""
    from scipy import stats

    d = (torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)).numpy()
    m, n = float(d.mean()), d.size
    half = float(stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return {"mean": m, "ci95": [m - half, m + half], "n": n}


def machine():
    import scipy

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "torch": torch.__version__, "deepinv": dinv.__version__, "numpy": np.__version__,
            "scipy": scipy.__version__, "torch_threads": torch.get_num_threads()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16, help="Fashion-MNIST test images (the first N)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--nfe", type=int, nargs="+", default=[20, 50])
    ap.add_argument("--snr", type=float, nargs="+", default=[10.0])
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up, on the first batch")
    ap.add_argument("--pairs", nargs="+", default=[o for o, _ in PAIRS], help="our receivers to run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calibrated", action="store_true",
                    help="tune both sides' strength parameters on Fashion-MNIST training images per SNR and NFE "
                         "(never test images), then evaluate the winners on the test images")
    ap.add_argument("--tune-images", type=int, default=32,
                    help="--calibrated: training images to tune on (diffcomm.calibration.validation_images)")
    ap.add_argument("--out", default=None, help="default: results/peers.json, or results/peers_calibrated.json "
                                                "with --calibrated")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = str(Path(__file__).resolve().parent / "results" /
                       ("peers_calibrated.json" if args.calibrated else "peers.json"))
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    started = time.time()

    prior = zoo.load("fmnist-prior").eval()
    scale, _ = affine_of(prior)
    den = Counted(to_deepinv_denoiser(prior), prior.sigma_min / scale).eval()
    images = get_dataset("fashion-mnist", "test").images[: args.images].float()
    batches = [images[i:i + args.batch] for i in range(0, len(images), args.batch)]
    pairs = [p for p in PAIRS if p[0] in args.pairs]
    tune_batches = []
    if args.calibrated:
        from diffcomm.calibration import validation_images

        tune_x, tune_idx = validation_images("fashion-mnist", n=args.tune_images, seed=args.seed)
        tune_batches = [tune_x[i:i + args.batch].float() for i in range(0, len(tune_x), args.batch)]

    results, checks = [], {}
    for snr in args.snr:
        link = build_link("downsample", (1, 28, 28), "1/16", "awgn", snr)
        sent = send(link, batches, args.seed)
        checks[str(snr)] = physics_check(sent[0][2], link, sent[0][1], sent[0][0])
        tune_sets = send(link, tune_batches, args.seed + 500) if args.calibrated else []
        for nfe in args.nfe:
            for ours, theirs in pairs:
                opts, params, tuned = {}, {}, None
                if args.calibrated:                                  # tuned on training images, then fixed
                    t_tune = time.perf_counter()
                    start, grid = ours_grid(ours)
                    def ours_run(o, x, rx, ph, y, sd, ours=ours, link=link, nfe=nfe):
                        return run_ours(ours, link, rx, prior, nfe, sd, o)[0]

                    def dinv_run(o, x, rx, ph, y, sd, theirs=theirs, nfe=nfe):
                        return run_deepinv(theirs, den, nfe, y, ph, sd, o)[0]

                    t_ours = tune_side(ours_run, start, grid, tune_sets, args.seed + 2000)
                    t_dinv = tune_side(dinv_run, DEEPINV_DEFAULTS[theirs], DEEPINV_TUNE[theirs], tune_sets,
                                       args.seed + 2000)
                    opts, params = t_ours["options"], t_dinv["options"]
                    tuned = {"ours": t_ours, "deepinv": t_dinv, "seconds": time.perf_counter() - t_tune}
                    print(f"{snr:4.0f} dB  NFE {nfe:3d}  tuned {ours} {opts} ({t_ours['psnr']:.2f} dB on train) / "
                          f"{theirs} {params} ({t_dinv['psnr']:.2f} dB)", flush=True)
                q = {"ours": {"psnr": [], "ssim": []}, "deepinv": {"psnr": [], "ssim": []}}
                nfe_seen = {"ours": set(), "deepinv": set()}
                for b, (x, rx, physics, y) in enumerate(sent):     # quality: one run per batch (also warm-up)
                    seed = args.seed + 1000 + b
                    xo, _, n_o = run_ours(ours, link, rx, prior, nfe, seed, opts)
                    xt, _, n_t = run_deepinv(theirs, den, nfe, y, physics, seed, params)
                    for side, xh in (("ours", xo), ("deepinv", xt)):
                        q[side]["psnr"] += psnr(xh, x).tolist()
                        q[side]["ssim"] += ssim(xh, x).tolist()
                    nfe_seen["ours"].add(n_o)
                    nfe_seen["deepinv"].add(n_t)
                x, rx, physics, y = sent[0]
                t_o, t_t = [], []
                for r in range(args.repeats):                       # timing: interleaved, first batch
                    t_o.append(run_ours(ours, link, rx, prior, nfe, args.seed + r, opts)[1])
                    t_t.append(run_deepinv(theirs, den, nfe, y, physics, args.seed + r, params)[1])
                row = {
                    "pair": f"{ours}/{theirs}", "ours": ours, "deepinv": theirs, "snr_db": snr, "nfe": nfe,
                    "options": {"ours": opts, "deepinv": params},
                    "nfe_counted": {k: sorted(v) for k, v in nfe_seen.items()},
                    "seconds_per_batch": {"ours": statistics.median(t_o), "deepinv": statistics.median(t_t),
                                          "ours_all": t_o, "deepinv_all": t_t, "batch": len(sent[0][0])},
                    "time_ratio": statistics.median(a / b for a, b in zip(t_o, t_t)),
                    "psnr": {"ours": float(np.mean(q["ours"]["psnr"])), "deepinv": float(np.mean(q["deepinv"]["psnr"])),
                             "diff": paired(q["ours"]["psnr"], q["deepinv"]["psnr"])},
                    "ssim": {"ours": float(np.mean(q["ours"]["ssim"])), "deepinv": float(np.mean(q["deepinv"]["ssim"])),
                             "diff": paired(q["ours"]["ssim"], q["deepinv"]["ssim"])},
                }
                if tuned is not None:
                    row["tuning"] = tuned
                results.append(row)
                sec, pd = row["seconds_per_batch"], row["psnr"]["diff"]
                print(f"{snr:4.0f} dB  NFE {nfe:3d}  {ours:>7s}/{theirs:<7s}  time {sec['ours']:6.2f} / "
                      f"{sec['deepinv']:6.2f} s = {row['time_ratio']:.3f}  PSNR "
                      f"{row['psnr']['ours']:6.2f} / {row['psnr']['deepinv']:6.2f}  d = {pd['mean']:+.2f} "
                      f"[{pd['ci95'][0]:+.2f}, {pd['ci95'][1]:+.2f}] dB  "
                      f"SSIM d = {row['ssim']['diff']['mean']:+.3f}", flush=True)

    out = {
        "benchmark": "peers: diffcomm receivers vs deepinv 0.5 samplers at equal NFE" +
                     (", both sides calibrated on training images" if args.calibrated else ", default hyperparameters"),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "pythonpath": os.environ.get("PYTHONPATH"),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git": git_revision(),
        "machine": {**machine(), "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg())},
        "wall_seconds": time.time() - started,
        "setup": {
            "prior": "fmnist-prior (deepinv side: diffcomm.interop.deepinv.to_deepinv_denoiser, sigma clamped to "
                     "prior.sigma_min / 2 in pixels so DDRM's final sigma = 0 does not give NaN)",
            "link": "downsample, (1, 28, 28), cbr 1/16, awgn, perfect CSI; one power gain per batch (mean power 1), "
                    "same noise draw for both sides",
            "deepinv_physics": "DecomposablePhysics from the operator's shared SVD (float32), noise "
                               "GaussianNoise(sqrt(N0/2))",
            "physics_check": checks,
            "images": f"fashion-mnist test[:{args.images}]", "batch": args.batch, "torch_threads": 1,
            **({"tune_images": {"split": "train", "n": args.tune_images, "indices": tune_idx.tolist(),
                                "noise_seeds": f"{args.seed + 500} + batch",
                                "receiver_seeds": f"{args.seed + 2000} + batch"}} if args.calibrated else {}),
            "hyperparameters": ("calibrated: each side's strength parameters tuned per SNR and NFE on "
                                f"{args.tune_images} Fashion-MNIST training images (diffcomm.calibration."
                                "validation_images, own noise draws) by coordinate search from its defaults "
                                "(diffcomm.calibration.coordinate_search, 2 rounds); ours over the registered "
                                f"candidates (Option tune=), deepinv over {DEEPINV_TUNE}; winners in each row's "
                                "options, the search in its tuning; " if args.calibrated else "") +
                               "defaults on both sides (only the step count set); ours: decode(name, link, rx, "
                               "prior, steps=NFE, calibration=False), i.e. the signature defaults, not stored "
                               "calibrated ones; deepinv: DPS(num_steps=NFE+1), DiffPIR(L2(), max_iter=NFE), "
                               "DDRM(sigmas=linspace(1, 0, NFE)), PiGDM = PosteriorDiffusion(PiGDMDataFidelity(), "
                               "VariancePreservingDiffusion(), DDPMSolver(linspace(1, 0, NFE+1)))",
            "timing": f"one quality run per batch (doubles as warm-up), then {args.repeats} interleaved timed "
                      "repeats on the first batch; seconds = median; time_ratio = median of per-repeat ours/deepinv",
            "quality": "per-image PSNR/SSIM (diffcomm.metrics) of clamped outputs; diff = ours - deepinv, paired, "
                       "95 % t-interval",
        },
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
