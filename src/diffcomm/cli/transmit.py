"""``diffcomm transmit``: send one image through a link and reconstruct it with a receiver.

Images of any size: when the encoder's model (DeepJSCC) or the receiver's prior is tied to one image
shape (the shipped 1×28×28) and the input differs, the image is sent as overlapping tiles of that
shape (``--tile auto``, the default; :mod:`diffcomm.tiling`), colour channels coded separately by a
1-channel model, tiles batched ``--tile-batch`` at a time and blended back. The record then reports
the effective CBR with every tile's channel uses counted (``cbr``), beside the per-tile one
(``tile_cbr``). ``--tile N`` forces N×N tiles; ``--tile off`` never tiles. Images that fit the
model go through one link as before.

Uncertainty: ``--samples S`` (S >= 2) draws S posterior samples of the image in one batched receiver call
(``pipeline.decode(..., posterior_samples=S)``); the reconstruction written is the first sample, and the
summary line and ``--json`` add ``samples``, per-image ``spread`` (rms of the per-pixel std over the samples)
and ``agreement`` (fraction of samples the shipped Fashion-MNIST classifier puts in the modal class; 1×28×28
images only, else null) and ``classes`` (each sample's label). ``--spread-out PATH`` writes the per-pixel
spread map as an image (pixel value = 2 × std, so white = the largest possible std of 0.5). Deterministic
receivers (pinv, lmmse, deepjscc) give spread 0 and agreement 1. Not available with tiling.

Channels and mismatch (issue 16): ``--channel ofdm --ofdm PARAM=VALUE,...`` sends the symbols on an OFDM grid over
tapped-delay-line multipath (:mod:`diffcomm.channels.ofdm`; a CP shorter than the channel memory gives ISI, which
model-aware receivers model through the frame operator). ``--channel mimo`` sends n_t streams over an n_t×n_r channel
(``--mimo 2x2``, ``--mimo-detector mmse|zf|none``, ``--mimo-precoding none|svd``, ``--mimo-correlation ρ``;
:mod:`diffcomm.channels.mimo`). ``--impairment KIND[:PARAM=VALUE,...]`` (repeatable, applied in order) adds a
hardware stage from :mod:`diffcomm.channels.impairments` (rapp, limiter, clip, adc, phase-noise, cfo), unmodelled
unless ``modelled=true`` (then the receiver's operator includes it). ``--assumed-snr DB`` tells the receiver
this SNR while the channel adds noise at ``--snr`` (:class:`diffcomm.link.Link` ``assumed_snr_db``). The JSON
record gains ``assumed_snr_db``, ``mimo`` / ``ofdm`` (with ``channel_uses``) and ``impairments`` when these are
used. ``--assumed-snr`` and ``--impairment`` are not available for tiled images.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from diffcomm.errors import DiffcommError

MIMO_DEFAULTS = {"mimo": "2x2", "mimo_detector": "mmse", "mimo_precoding": "none", "mimo_correlation": "0"}
MAX_ANTENNAS = 64


def register(sub: argparse._SubParsersAction) -> None:
    from diffcomm.channels.impairments import KINDS
    from diffcomm.channels.mimo import DETECTORS, PRECODERS
    from diffcomm.receivers.base import receiver_names

    p = sub.add_parser("transmit", help="transmit one image over a simulated channel and reconstruct it",
                       description="Encode an image, send it over a noisy fading channel, reconstruct it with a "
                                   "receiver, and write the reconstruction.")
    p.add_argument("--input", required=True, help="input image (PNG, JPEG, ...)")
    p.add_argument("--channel", default="awgn", choices=["awgn", "rayleigh", "rician", "mimo", "ofdm"])
    p.add_argument("--snr", required=True, help="channel SNR Es/N0 in dB")
    p.add_argument("--assumed-snr", dest="assumed_snr", metavar="DB",
                   help="the SNR the receiver is told (SNR mismatch); the channel's noise stays at --snr")
    p.add_argument("--cbr", default="1/16", help="channel bandwidth ratio k/(C·H·W), e.g. 1/16")
    p.add_argument("--encoder", default="gaussian",
                   help="gaussian | downsample | deepjscc[-awgn|-rayleigh|-ofdm|-mimo|-rayleigh-clip] "
                        "(deepjscc: the model trained for the channel)")
    p.add_argument("--receiver", default="pinv", help=" | ".join(receiver_names()))
    p.add_argument("--csi", default="perfect", choices=["perfect", "estimated", "none"])
    p.add_argument("--pilots", type=int, default=4, help="pilot symbols per coherence block (--csi estimated)")
    p.add_argument("--rician-k", type=float, default=3.0, help="Rician K-factor (--channel rician)")
    p.add_argument("--mimo", metavar="NTxNR", help="antennas for --channel mimo: transmit x receive, e.g. 2x2 "
                                                   f"(default {MIMO_DEFAULTS['mimo']})")
    p.add_argument("--mimo-detector", dest="mimo_detector", choices=list(DETECTORS),
                   help=f"MIMO receiver front end (default {MIMO_DEFAULTS['mimo_detector']})")
    p.add_argument("--mimo-precoding", dest="mimo_precoding", choices=list(PRECODERS),
                   help=f"MIMO precoding; svd needs --csi perfect (default {MIMO_DEFAULTS['mimo_precoding']})")
    p.add_argument("--mimo-correlation", dest="mimo_correlation", metavar="RHO",
                   help="exponential antenna correlation in [0, 1) at both ends (default 0: i.i.d. Rayleigh)")
    p.add_argument("--ofdm", metavar="PARAM=VALUE,...",
                   help="options of --channel ofdm, e.g. profile=A,delay_spread=3e-7,fft_size=32,"
                        "subcarrier_spacing=60e3,cp_length=0 (a CP below the channel memory gives ISI, which "
                        "model-aware receivers model; model_isi=false ignores it); default: the channel's defaults")
    p.add_argument("--impairment", action="append", default=[], metavar="KIND[:PARAM=VALUE,...]",
                   help=f"a hardware impairment stage ({', '.join(KINDS)}), e.g. adc:bits=3 or "
                        f"cfo:eps=0.002,modelled=true (repeatable, applied in order; unmodelled unless "
                        f"modelled=true)")
    p.add_argument("--steps", type=int, help="diffusion steps for diffusion receivers")
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="a receiver option, e.g. --option zeta=3 --option sampler=heun (repeatable; see "
                        "`diffcomm receivers`)")
    p.add_argument("--tile", default="auto",
                   help="auto (tile when the model/prior is tied to another image size) | off | N (N×N tiles)")
    p.add_argument("--tile-overlap", type=int, default=2, help="overlap between neighbouring tiles, in pixels")
    p.add_argument("--tile-batch", type=int, default=256, help="tiles per batched link/decoder call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="where to write the reconstruction (PNG)")
    p.add_argument("--samples", help="posterior samples per image for an uncertainty estimate (spread, semantic "
                                     "agreement); default 1 = off")
    p.add_argument("--spread-out", dest="spread_out", help="with --samples: write the per-pixel spread map here "
                                                           "(PNG, value = 2 x std)")
    p.add_argument("--json", action="store_true", help="print one JSON object with the metrics")
    p.set_defaults(func=run)


def parse_snr(text: str, flag: str = "--snr") -> float:
    from diffcomm.channels import snr_db_to_n0

    try:
        snr = float(text)
    except ValueError:
        raise DiffcommError(f"{flag} must be a number in dB, got {text!r}") from None
    if not math.isfinite(snr):
        raise DiffcommError(f"{flag} must be finite, got {text!r}")
    try:
        snr_db_to_n0(snr)  # range check with its own message
    except DiffcommError as exc:
        raise DiffcommError(f"{flag}: {exc}" if flag != "--snr" else str(exc)) from None
    return snr


def parse_mimo_channel(args: argparse.Namespace):
    """``--channel mimo`` and its ``--mimo*`` options -> a :class:`~diffcomm.channels.mimo.MIMOChannel`, or None for
    another channel (one-line errors: malformed NTxNR, options without ``--channel mimo``, the channel's own)."""
    import re

    from diffcomm.channels import make_channel

    given = [f"--{name.replace('_', '-')}" for name in MIMO_DEFAULTS if getattr(args, name, None) is not None]
    if args.channel != "mimo":
        if given:
            raise DiffcommError(f"{', '.join(given)} applies to --channel mimo only (got --channel {args.channel})")
        return None
    opts = {name: getattr(args, name, None) or default for name, default in MIMO_DEFAULTS.items()}
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(opts["mimo"]))
    if m is None:
        raise DiffcommError(f"--mimo must look like NTxNR (transmit x receive antennas), e.g. 2x2, "
                            f"got {opts['mimo']!r}")
    n_t, n_r = int(m.group(1)), int(m.group(2))
    if not (1 <= n_t <= MAX_ANTENNAS and 1 <= n_r <= MAX_ANTENNAS):
        raise DiffcommError(f"--mimo needs 1 to {MAX_ANTENNAS} antennas at each end, got {n_t}x{n_r}")
    try:
        rho = float(opts["mimo_correlation"])
    except ValueError:
        raise DiffcommError(f"--mimo-correlation must be a number in [0, 1), "
                            f"got {opts['mimo_correlation']!r}") from None
    return make_channel("mimo", n_t=n_t, n_r=n_r, detector=opts["mimo_detector"], precoding=opts["mimo_precoding"],
                        correlation=rho)


def parse_params(text: str, flag: str, example: str) -> dict:
    """``"bits=3,modelled=true"`` -> ``{"bits": 3, "modelled": True}`` (TOML literals, else strings; one-line
    errors)."""
    import tomllib

    params: dict = {}
    for item in text.split(",") if text.strip() else []:
        name, sep, value = item.partition("=")
        name = name.strip().lower().replace("-", "_")
        if not sep or not name or not value.strip():
            raise DiffcommError(f"{flag} must look like {example}, got {text!r}")
        try:
            params[name] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            params[name] = value.strip()
    return params


def parse_ofdm_channel(args: argparse.Namespace):
    """``--channel ofdm`` with ``--ofdm PARAM=VALUE,...`` -> an :class:`~diffcomm.channels.ofdm.OFDMChannel`, or None
    for another channel (one-line errors: ``--ofdm`` without ``--channel ofdm``, the channel's own)."""
    from diffcomm.channels import make_channel

    text = getattr(args, "ofdm", None)
    if args.channel != "ofdm":
        if text is not None:
            raise DiffcommError(f"--ofdm applies to --channel ofdm only (got --channel {args.channel})")
        return None
    params = parse_params(text or "", "--ofdm", "PARAM=VALUE,..., e.g. profile=A,cp_length=0")
    try:
        return make_channel("ofdm", **params)
    except DiffcommError as exc:
        raise DiffcommError(f"--ofdm {text!r}: {exc}") from None


def parse_impairment(text: str):
    """``"adc:bits=3,modelled=true"`` -> ``impairment("adc", bits=3, modelled=True)`` (TOML literals, else strings).

    The kind and its parameters are those of :func:`diffcomm.channels.impairments.impairment`; ``modelled``
    (default false) says whether the receiver's operator includes the stage. One-line errors.
    """
    from diffcomm.channels.impairments import impairment

    kind, _, rest = str(text).partition(":")
    kind = kind.strip().lower()
    params = parse_params(rest, "--impairment", "KIND[:PARAM=VALUE,...], e.g. adc:bits=3,modelled=true")
    if "modeled" in params:                                  # US spelling of impairments.py's ``modelled``
        params.setdefault("modelled", params.pop("modeled"))
    modelled = params.pop("modelled", False)
    try:
        return impairment(kind, modelled=modelled, **params)
    except DiffcommError as exc:
        raise DiffcommError(f"--impairment {text!r}: {exc}") from None


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


def parse_samples(text: str | None) -> int | None:
    """``--samples``: None (off) or an int 2…1024 (1 = off); one-line errors otherwise."""
    from diffcomm.pipeline import check_posterior_samples

    if text is None:
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        value = str(text)
    return check_posterior_samples(value, "--samples")


def uncertainty_fields(u: dict | None) -> dict:
    """The JSON fields of a decode's uncertainty record (empty when off)."""
    if u is None:
        return {}
    agreement = u.get("agreement")
    return {"samples": u["samples"], "spread": [round(float(v), 6) for v in u["spread"]],
            "agreement": None if agreement is None else [round(float(v), 6) for v in agreement],
            "classes": None if u.get("classes") is None else [[int(c) for c in row] for row in u["classes"]],
            "uncertainty_classifier": u.get("classifier")}


def uncertainty_note(fields: dict) -> str:
    """``, 8 samples: spread 0.0812, agreement 0.875`` for the summary line, or nothing."""
    if not fields:
        return ""
    agreement = fields["agreement"]
    text = f", {fields['samples']} samples: spread {fields['spread'][0]:.4f}"
    return text + (f", agreement {agreement[0]:.3f}" if agreement is not None else ", agreement n/a (no classifier)")


def parse_tile(text: str) -> int | str:
    text = str(text).strip().lower()
    if text in ("auto", "off"):
        return text
    try:
        size = int(text)
    except ValueError:
        raise DiffcommError(f"--tile must be auto, off or a tile size in pixels, got {text!r}") from None
    if size < 1:
        raise DiffcommError(f"--tile must be a positive tile size, got {size}")
    return size


def tile_shape(args: argparse.Namespace, shape: tuple[int, int, int], cbr: float) -> tuple[int, int, int] | None:
    """The tile shape for this run, or None to send the image through one link (it fits the model)."""
    from diffcomm.tiling import native_shape

    tile = parse_tile(args.tile)
    if tile == "off":
        return None
    native = native_shape(args.encoder, args.receiver, args.channel, cbr, channels=shape[0])
    if tile == "auto":
        return native if native is not None and native != tuple(shape) else None
    return (native[0] if native is not None else shape[0], tile, tile)


def run(args: argparse.Namespace) -> int:
    import torch

    from diffcomm.channels import make_channel, parse_cbr
    from diffcomm.channels.impairments import with_impairments
    from diffcomm.data import read_image, write_image
    from diffcomm.link import with_assumed_snr
    from diffcomm.pipeline import build_link, check_receiver, decode, prior_names, score

    snr = parse_snr(args.snr)
    assumed = None if getattr(args, "assumed_snr", None) is None else parse_snr(args.assumed_snr, "--assumed-snr")
    cbr = parse_cbr(args.cbr)
    spec = check_receiver(args.receiver, args.encoder, args.csi)
    if args.steps is not None and not 1 <= args.steps <= 1000:
        raise DiffcommError(f"--steps must be between 1 and 1000, got {args.steps}")
    options = parse_options(args.option)
    if args.steps is not None and "steps" in spec.options:
        options["steps"] = args.steps
    options = spec.validate(options)
    samples = parse_samples(getattr(args, "samples", None))
    spread_out = Path(args.spread_out) if getattr(args, "spread_out", None) else None
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".bmp", ".tif", ".tiff", ".webp"):
        raise DiffcommError(f"--out must be a lossless image path (.png), got {out.name!r}")
    if spread_out is not None:
        if samples is None:
            raise DiffcommError("--spread-out needs --samples S with S >= 2")
        if spread_out.suffix.lower() not in (".png", ".bmp", ".tif", ".tiff", ".webp"):
            raise DiffcommError(f"--spread-out must be a lossless image path (.png), got {spread_out.name!r}")
    if not Path(args.input).is_file():
        raise DiffcommError(f"input image {args.input} not found")
    mimo = parse_mimo_channel(args) or parse_ofdm_channel(args)
    stages = [parse_impairment(item) for item in getattr(args, "impairment", [])]
    x = read_image(args.input)
    channel = make_channel(args.channel, k_factor=args.rician_k) if args.channel == "rician" else args.channel
    channel = mimo if mimo is not None else channel
    tile = tile_shape(args, tuple(x.shape[1:]), cbr)
    if tile is not None:
        sent = f"{'x'.join(map(str, x.shape[1:]))} sent as {'x'.join(map(str, tile))} tiles"
        for flag, used in (("--samples", samples is not None), ("--assumed-snr", assumed is not None),
                           ("--impairment", bool(stages))):
            if used:
                raise DiffcommError(f"{flag} is not available for tiled images ({sent}); use --tile off or an image "
                                    f"of the model's size")
        return run_tiled(args, x, tile, channel, snr, cbr, options, out)
    prior_names(spec, tuple(x.shape[1:]))  # a one-line error when no shipped prior fits the image
    link = build_link(args.encoder, tuple(x.shape[1:]), cbr, channel, snr, csi=args.csi,
                      n_pilots=args.pilots if args.csi == "estimated" else 0, seed=args.seed)
    if stages:
        link = with_impairments(link, *stages)
    if assumed is not None:
        link = with_assumed_snr(link, assumed)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    rx = link.transmit(x, generator=gen)
    result = decode(args.receiver, link, rx, generator=gen, posterior_samples=samples, **options)
    seconds = time.perf_counter() - t0
    write_image(out, result.x_hat)
    unc = uncertainty_fields(result.uncertainty)
    if spread_out is not None:
        write_image(spread_out, (2 * result.uncertainty["pixel_spread"]).clamp(0, 1))
    metrics = {k: float(v[0]) for k, v in score(x, result.x_hat).items()}
    record = {**metrics, "snr_db": snr, "cbr": link.cbr, "k": link.k, "pilots": link.pilots_used,
              "encoder": args.encoder, "receiver": args.receiver, "channel": args.channel, "csi": args.csi,
              "nfe": result.nfe, "seconds": round(seconds, 4), "seed": args.seed, "out": str(out),
              "options_used": result.extras.get("options_used", options),
              "calibrated": result.extras.get("calibrated", {}), **unc,
              **({"spread_out": str(spread_out)} if spread_out is not None else {}),
              **link_fields(link, assumed)}
    if args.json:
        print(json.dumps(record))
    else:
        per = " per sample" if unc else ""
        told = "" if assumed is None else f" (receiver told {assumed:g} dB)"
        hw = f" with {' + '.join(st.kind for st in stages)}" if stages else ""
        print(f"{args.receiver} over {args.channel}{hw} at {snr:g} dB{told}, CBR {link.cbr:.4g} (k={link.k}): "
              f"PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.3f}, {result.nfe} NFE{per}"
              f"{uncertainty_note(unc)}, "
              f"{seconds:.2f} s -> {out}{calibrated_note(record['calibrated'])}")
    return 0


def link_fields(link, assumed: float | None) -> dict:
    """The JSON fields of the issue-16 options, each only when used: ``assumed_snr_db``, ``mimo`` (with
    ``channel_uses``), ``impairments``."""
    out: dict = {}
    if assumed is not None:
        out["assumed_snr_db"] = assumed
    if getattr(link.channel, "name", None) in ("mimo", "ofdm"):
        out[link.channel.name] = {k: v for k, v in link.channel.config().items() if k != "name"}
        out["channel_uses"] = link.channel_uses          # MIMO: n_t symbols share one use; OFDM: CP + padding
    if getattr(link.channel, "name", None) == "ofdm":
        out["isi_modelled"] = getattr(link.channel, "model_isi", True) and link.channel.cp_length < link.channel.memory
    if link.stages:
        out["impairments"] = [st.config() for st in link.stages]
    return out


def calibrated_note(calibrated: dict) -> str:
    """`` (calibrated zeta=2 at 10 dB)`` for the one-line summary, or nothing."""
    if not calibrated:
        return ""
    parts = ", ".join(f"{k}={c['value']:g} ({c['snr_db']:g} dB, {c['steps']} steps)" for k, c in calibrated.items())
    return f" [calibrated {parts}]"


def run_tiled(args: argparse.Namespace, x, tile: tuple[int, int, int], channel, snr: float, cbr: float,
              options: dict, out: Path) -> int:
    """Send ``x`` as tiles of ``tile`` (:func:`diffcomm.tiling.transmit_tiled`) and report the honest CBR."""
    import torch

    from diffcomm.data import write_image
    from diffcomm.pipeline import check_receiver, prior_names, score
    from diffcomm.tiling import transmit_tiled

    spec = check_receiver(args.receiver, args.encoder, args.csi)
    prior_names(spec, tile)
    if args.tile_batch < 1:
        raise DiffcommError(f"--tile-batch must be a positive number of tiles, got {args.tile_batch}")
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    res = transmit_tiled(x, args.encoder, args.receiver, cbr, channel, snr, tile=tile, overlap=args.tile_overlap,
                         csi=args.csi, n_pilots=args.pilots if args.csi == "estimated" else 0, seed=args.seed,
                         generator=gen, tile_batch=args.tile_batch, **options)
    seconds = time.perf_counter() - t0
    write_image(out, res.x_hat)
    from diffcomm.calibration import link_calibration

    calibrated = link_calibration(spec, res.link, options)  # what decode() filled in for every tile
    metrics = {k: float(v[0]) for k, v in score(x, res.x_hat).items()}
    record = {**metrics, "snr_db": snr, "cbr": res.effective_cbr, "tile_cbr": res.tile_cbr,
              "k": res.tiles_per_image * res.k, "pilots": res.tiles_per_image * res.pilots,
              "channel_uses": res.channel_uses, "tiling": res.config(),
              "encoder": args.encoder, "receiver": args.receiver, "channel": args.channel, "csi": args.csi,
              "nfe": res.nfe, "seconds": round(seconds, 4), "seed": args.seed, "out": str(out),
              "options_used": {**spec.defaults(), **{k: c["value"] for k, c in calibrated.items()}, **options},
              "calibrated": calibrated}
    if args.json:
        print(json.dumps(record))
    else:
        lay = res.layout
        print(f"{args.receiver} over {args.channel} at {snr:g} dB, {res.tiles_per_image} tiles of "
              f"{'x'.join(map(str, tile))} ({lay.rows}x{lay.cols} per channel group, overlap {lay.overlap}), "
              f"CBR {res.tile_cbr:.4g} per tile, {res.effective_cbr:.4g} effective ({res.channel_uses} channel "
              f"uses): PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.3f}, {res.nfe} NFE, {seconds:.2f} s "
              f"-> {out}{calibrated_note(calibrated)}")
    return 0
