"""Robustness preview: the shipped DeepJSCC decoder over MIMO and impaired links (issue 16, items 2 and 3).

DeepJSCC decoder PSNR on the first N Fashion-MNIST test images at CBR 1/16 and 5 / 10 dB, perfect CSI,
for flat Rayleigh block fading, MIMO 2×2 (i.i.d. Rayleigh, ZF and MMSE front ends), transmitter clipping
at 0.8 × rms (unmodelled) on Rayleigh, and a 4-bit ADC (AGC loading 3, unmodelled) on Rayleigh. The
Rayleigh-trained shipped model (``fmnist-deepjscc-rayleigh-cbr16``) codes every link. One seed; the
table reports the mean and its standard error over images.

Usage: .venv/bin/python scripts/robustness_preview.py [--n 64] [--out results/robustness/preview.json]
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch


def links():
    from diffcomm.channels import make_channel
    from diffcomm.channels.impairments import impairment

    return {
        "rayleigh": (lambda: "rayleigh", ()),
        "mimo-2x2-zf": (lambda: make_channel("mimo", n_t=2, n_r=2, detector="zf"), ()),
        "mimo-2x2-mmse": (lambda: make_channel("mimo", n_t=2, n_r=2, detector="mmse"), ()),
        "rayleigh+clip-0.8rms-unmodelled": (lambda: "rayleigh", (impairment("clip", ratio=0.8),)),
        "rayleigh+adc-4bit-unmodelled": (lambda: "rayleigh", (impairment("adc", bits=4),)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/robustness/preview.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    import diffcomm
    from diffcomm.channels.impairments import with_impairments
    from diffcomm.data import get_dataset
    from diffcomm.metrics import psnr
    from diffcomm.pipeline import build_link, decode
    from diffcomm.utils import atomic_write_json, git_revision

    x = get_dataset("fashion-mnist", "test").images[:args.n]
    rows = []
    for name, (channel, stages) in links().items():
        for snr in (5.0, 10.0):
            link = with_impairments(build_link("deepjscc", (1, 28, 28), "1/16", channel(), snr), *stages)
            t0 = time.perf_counter()
            rx = link.transmit(x, generator=torch.Generator().manual_seed(args.seed))
            res = decode("deepjscc", link, rx)
            p = psnr(res.x_hat, x).double()
            rows.append({"link": name, "snr_db": snr, "psnr_mean": round(float(p.mean()), 3),
                         "psnr_se": round(float(p.std()) / math.sqrt(len(p)), 3), "n": len(p),
                         "k": link.k, "channel_uses": link.channel_uses, "encoder": link.encoder.name,
                         "link_config": link.config(), "seconds": round(time.perf_counter() - t0, 3)})
            print(f"{name:36s} {snr:4.0f} dB  PSNR {rows[-1]['psnr_mean']:6.2f} ± {rows[-1]['psnr_se']:.2f} dB  "
                  f"({link.channel_uses} uses)", flush=True)
    record = {"command": " ".join(["python scripts/robustness_preview.py",
                                   *(argv if argv is not None else sys.argv[1:])]),
              "receiver": "deepjscc", "dataset": f"fashion-mnist test[:{args.n}]", "cbr": "1/16", "csi": "perfect",
              "seed": args.seed, "version": diffcomm.__version__, "git": git_revision(), "rows": rows}
    atomic_write_json(args.out, record)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
