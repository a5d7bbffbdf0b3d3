"""``diffcomm transmit``: send one image through a link and reconstruct it with a receiver."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from diffcomm.errors import DiffcommError


def register(sub: argparse._SubParsersAction) -> None:
    from diffcomm.receivers.base import receiver_names

    p = sub.add_parser("transmit", help="transmit one image over a simulated channel and reconstruct it",
                       description="Encode an image, send it over a noisy fading channel, reconstruct it with a "
                                   "receiver, and write the reconstruction.")
    p.add_argument("--input", required=True, help="input image (PNG, JPEG, ...)")
    p.add_argument("--channel", default="awgn", choices=["awgn", "rayleigh", "rician"])
    p.add_argument("--snr", required=True, help="channel SNR Es/N0 in dB")
    p.add_argument("--cbr", default="1/16", help="channel bandwidth ratio k/(C·H·W), e.g. 1/16")
    p.add_argument("--encoder", default="gaussian", help="gaussian | downsample | deepjscc[-awgn|-rayleigh]")
    p.add_argument("--receiver", default="pinv", help=" | ".join(receiver_names()))
    p.add_argument("--csi", default="perfect", choices=["perfect", "estimated", "none"])
    p.add_argument("--pilots", type=int, default=4, help="pilot symbols per coherence block (--csi estimated)")
    p.add_argument("--rician-k", type=float, default=3.0, help="Rician K-factor (--channel rician)")
    p.add_argument("--steps", type=int, help="diffusion steps for diffusion receivers")
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="a receiver option, e.g. --option zeta=3 --option sampler=heun (repeatable; see "
                        "`diffcomm receivers`)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="where to write the reconstruction (PNG)")
    p.add_argument("--json", action="store_true", help="print one JSON object with the metrics")
    p.set_defaults(func=run)


def parse_snr(text: str) -> float:
    from diffcomm.channels import snr_db_to_n0

    try:
        snr = float(text)
    except ValueError:
        raise DiffcommError(f"--snr must be a number in dB, got {text!r}") from None
    if not math.isfinite(snr):
        raise DiffcommError(f"--snr must be finite, got {text!r}")
    snr_db_to_n0(snr)  # range check with its own message
    return snr


def parse_options(items: list[str]) -> dict:
    """``["zeta=3", "sampler=heun"]`` -> ``{"zeta": 3, "sampler": "heun"}`` (TOML literals, else strings)."""
    import tomllib

    options: dict = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise DiffcommError(f"--option must look like NAME=VALUE, got {item!r}")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        options[name.strip()] = value
    return options


def run(args: argparse.Namespace) -> int:
    import torch

    from diffcomm.channels import make_channel, parse_cbr
    from diffcomm.data import read_image, write_image
    from diffcomm.pipeline import build_link, check_receiver, decode, prior_names, score

    snr = parse_snr(args.snr)
    cbr = parse_cbr(args.cbr)
    spec = check_receiver(args.receiver, args.encoder, args.csi)
    if args.steps is not None and not 1 <= args.steps <= 1000:
        raise DiffcommError(f"--steps must be between 1 and 1000, got {args.steps}")
    options = parse_options(args.option)
    if args.steps is not None and "steps" in spec.options:
        options["steps"] = args.steps
    options = spec.validate(options)
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".bmp", ".tif", ".tiff", ".webp"):
        raise DiffcommError(f"--out must be a lossless image path (.png), got {out.name!r}")
    if not Path(args.input).is_file():
        raise DiffcommError(f"input image {args.input} not found")
    x = read_image(args.input)
    prior_names(spec, tuple(x.shape[1:]))  # a one-line error when no shipped prior fits the image
    channel = make_channel(args.channel, k_factor=args.rician_k) if args.channel == "rician" else args.channel
    link = build_link(args.encoder, tuple(x.shape[1:]), cbr, channel, snr, csi=args.csi,
                      n_pilots=args.pilots if args.csi == "estimated" else 0, seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    rx = link.transmit(x, generator=gen)
    result = decode(args.receiver, link, rx, generator=gen, **options)
    seconds = time.perf_counter() - t0
    write_image(out, result.x_hat)
    metrics = {k: float(v[0]) for k, v in score(x, result.x_hat).items()}
    record = {**metrics, "snr_db": snr, "cbr": link.cbr, "k": link.k, "pilots": link.pilots_used,
              "encoder": args.encoder, "receiver": args.receiver, "channel": args.channel, "csi": args.csi,
              "nfe": result.nfe, "seconds": round(seconds, 4), "seed": args.seed, "out": str(out)}
    if args.json:
        print(json.dumps(record))
    else:
        print(f"{args.receiver} over {args.channel} at {snr:g} dB, CBR {link.cbr:.4g} (k={link.k}): "
              f"PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.3f}, {result.nfe} NFE, {seconds:.2f} s -> {out}")
    return 0
