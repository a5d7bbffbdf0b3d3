"""Peer benchmark: our dps / diffpir / ddnm / pigdm against deepinv 0.5's DPS / DiffPIR / DDRM / ΠGDM.

Both sides run in one process on the same prior (the shipped ``fmnist-prior``, wrapped for deepinv
by ``diffcomm.interop.deepinv.to_deepinv_denoiser``), the same operator (the ``downsample`` link
at CBR 1/16 over AWGN: 98 real measurements of 784 pixels), the same noise draw, the same
Fashion-MNIST test images and the same number of network evaluations (NFE, counted on the deepinv
side by a wrapper around the denoiser, read off ``ReceiverResult.nfe`` on ours), with one torch
thread. Both sides use their **default hyperparameters** (only the step count is set): defaults are
what users get. Writes per pair x SNR x NFE: median seconds per batch on both sides, their ratio
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


def deepinv_method(name, den, nfe, seed):
    if name == "DPS":
        return dinv.sampling.DPS(den, num_steps=nfe + 1, rng=torch.Generator().manual_seed(seed))
    if name == "DiffPIR":
        return dinv.sampling.DiffPIR(den, dinv.optim.data_fidelity.L2(), max_iter=nfe)
    if name == "DDRM":
        return dinv.sampling.DDRM(den, sigmas=np.linspace(1, 0, nfe))
    if name == "PiGDM":
        solver = dinv.sampling.DDPMSolver(timesteps=torch.linspace(1, 0, nfe + 1, dtype=torch.float64),
                                          rng=torch.Generator().manual_seed(seed))
        return dinv.sampling.PosteriorDiffusion(dinv.sampling.PiGDMDataFidelity(), den,
                                                dinv.sampling.VariancePreservingDiffusion(), solver)
    raise KeyError(name)


def run_deepinv(name, den, nfe, y, physics, seed):
    model = deepinv_method(name, den, nfe, seed)
    torch.manual_seed(seed)                               # DDRM and DiffPIR draw from the global generator
    den.calls = 0
    t0 = time.perf_counter()
    if name in ("DPS", "PiGDM"):
        out = model(y, physics, seed=seed)
    else:
        out = model(y, physics)
    sec = time.perf_counter() - t0
    return out.detach().float().clamp(0, 1), sec, den.calls


def run_ours(name, link, rx, prior, nfe, seed):
    t0 = time.perf_counter()
    res = decode(name, link, rx, prior=prior, steps=nfe, generator=torch.Generator().manual_seed(seed))
    return res.x_hat.detach().float().clamp(0, 1), time.perf_counter() - t0, res.nfe


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
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results/peers.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    started = time.time()

    prior = zoo.load("fmnist-prior").eval()
    scale, _ = affine_of(prior)
    den = Counted(to_deepinv_denoiser(prior), prior.sigma_min / scale).eval()
    images = get_dataset("fashion-mnist", "test").images[: args.images].float()
    batches = [images[i:i + args.batch] for i in range(0, len(images), args.batch)]
    pairs = [p for p in PAIRS if p[0] in args.pairs]

    results, checks = [], {}
    for snr in args.snr:
        link = build_link("downsample", (1, 28, 28), "1/16", "awgn", snr)
        sent = []
        for b, x in enumerate(batches):
            rx = fixed_gain(link, link.transmit(x, generator=torch.Generator().manual_seed(args.seed + b)), x)
            physics = svd_physics(link, rx)
            if b == 0:
                checks[str(snr)] = physics_check(physics, link, rx, x)
            sent.append((x, rx, physics, measurement(rx)))
        for nfe in args.nfe:
            for ours, theirs in pairs:
                q = {"ours": {"psnr": [], "ssim": []}, "deepinv": {"psnr": [], "ssim": []}}
                nfe_seen = {"ours": set(), "deepinv": set()}
                for b, (x, rx, physics, y) in enumerate(sent):     # quality: one run per batch (also warm-up)
                    seed = args.seed + 1000 + b
                    xo, _, n_o = run_ours(ours, link, rx, prior, nfe, seed)
                    xt, _, n_t = run_deepinv(theirs, den, nfe, y, physics, seed)
                    for side, xh in (("ours", xo), ("deepinv", xt)):
                        q[side]["psnr"] += psnr(xh, x).tolist()
                        q[side]["ssim"] += ssim(xh, x).tolist()
                    nfe_seen["ours"].add(n_o)
                    nfe_seen["deepinv"].add(n_t)
                x, rx, physics, y = sent[0]
                t_o, t_t = [], []
                for r in range(args.repeats):                       # timing: interleaved, first batch
                    t_o.append(run_ours(ours, link, rx, prior, nfe, args.seed + r)[1])
                    t_t.append(run_deepinv(theirs, den, nfe, y, physics, args.seed + r)[1])
                row = {
                    "pair": f"{ours}/{theirs}", "ours": ours, "deepinv": theirs, "snr_db": snr, "nfe": nfe,
                    "nfe_counted": {k: sorted(v) for k, v in nfe_seen.items()},
                    "seconds_per_batch": {"ours": statistics.median(t_o), "deepinv": statistics.median(t_t),
                                          "ours_all": t_o, "deepinv_all": t_t, "batch": len(sent[0][0])},
                    "time_ratio": statistics.median(a / b for a, b in zip(t_o, t_t)),
                    "psnr": {"ours": float(np.mean(q["ours"]["psnr"])), "deepinv": float(np.mean(q["deepinv"]["psnr"])),
                             "diff": paired(q["ours"]["psnr"], q["deepinv"]["psnr"])},
                    "ssim": {"ours": float(np.mean(q["ours"]["ssim"])), "deepinv": float(np.mean(q["deepinv"]["ssim"])),
                             "diff": paired(q["ours"]["ssim"], q["deepinv"]["ssim"])},
                }
                results.append(row)
                sec, pd = row["seconds_per_batch"], row["psnr"]["diff"]
                print(f"{snr:4.0f} dB  NFE {nfe:3d}  {ours:>7s}/{theirs:<7s}  time {sec['ours']:6.2f} / "
                      f"{sec['deepinv']:6.2f} s = {row['time_ratio']:.3f}  PSNR "
                      f"{row['psnr']['ours']:6.2f} / {row['psnr']['deepinv']:6.2f}  d = {pd['mean']:+.2f} "
                      f"[{pd['ci95'][0]:+.2f}, {pd['ci95'][1]:+.2f}] dB  "
                      f"SSIM d = {row['ssim']['diff']['mean']:+.3f}", flush=True)

    out = {
        "benchmark": "peers: diffcomm receivers vs deepinv 0.5 samplers at equal NFE",
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
            "hyperparameters": "defaults on both sides (only the step count set); ours: decode(name, link, rx, "
                               "prior, steps=NFE); deepinv: DPS(num_steps=NFE+1), DiffPIR(L2(), max_iter=NFE), "
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
