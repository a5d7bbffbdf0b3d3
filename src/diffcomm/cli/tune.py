"""``diffcomm tune``: calibrate a receiver's strength options on validation images (never the test split).

Example:
    diffcomm tune dps --encoder deepjscc --cbr 1/16 --channel awgn rayleigh --snr 0 5 10 20 \\
        --steps 20 --images 32 --seed 0

searches the strength options the receiver declares (``Option(..., tune=...)``; here ζ) on 32 images
drawn by seed 0 from the training split, per channel and SNR, prints each candidate's validation
PSNR/SSIM, and merges the winners into the calibration file beside the shipped models
(``src/diffcomm/zoo/calibration.json``, or ``--out``). ``diffcomm transmit``, ``diffcomm eval`` and
the demo then use them for options not given explicitly; see :mod:`diffcomm.calibration`.
"""

from __future__ import annotations

import argparse
import json
import shlex

from diffcomm.errors import DiffcommError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="calibrate a receiver's strength options per link and SNR (validation images)",
                       description="Search a receiver's strength options (its options declared with candidate "
                                   "values) on a seeded validation subset of the training images, per channel and "
                                   "SNR, at a fixed step count; store the winners (by mean PSNR) in the calibration "
                                   "file that decode uses for options not given explicitly.")
    p.add_argument("receiver", help="receiver name (see `diffcomm receivers`)")
    p.add_argument("--encoder", help="gaussian | downsample | deepjscc[-awgn|-rayleigh] (default: the receiver's "
                                     "grid default: gaussian for linear-link receivers, else deepjscc)")
    p.add_argument("--cbr", default="1/16", help="channel bandwidth ratio (default 1/16)")
    p.add_argument("--channel", nargs="+", default=["awgn"], help="channels (default awgn)")
    p.add_argument("--csi", default="perfect", choices=["perfect", "estimated", "none"])
    p.add_argument("--pilots", type=int, default=4, help="pilots per coherence block with --csi estimated")
    p.add_argument("--snr", nargs="+", required=True, help="SNRs in dB, e.g. --snr 0 5 10 20")
    p.add_argument("--steps", type=int, help="the receiver's step count (not tuned; default: its own)")
    p.add_argument("--images", type=int, default=32, help="validation images from the train split (default 32)")
    p.add_argument("--seed", type=int, default=0, help="selects the images and seeds channel and receiver noise")
    p.add_argument("--dataset", default="fashion-mnist", help="dataset whose train split is sampled")
    p.add_argument("--rounds", type=int, default=2, help="coordinate-search rounds for several options (default 2)")
    p.add_argument("--batch-size", type=int, default=32, dest="batch_size", help="images per receiver call")
    p.add_argument("--values", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="candidate values replacing the registered ones for one option (repeatable)")
    p.add_argument("--reference", action="append", default=[], metavar="NAME=VALUE",
                   help="an option set scored beside the search for comparison, never chosen (repeatable)")
    p.add_argument("--out", help="calibration file to merge into (default: the shipped one, or "
                                 "$DIFFCOMM_CALIBRATION)")
    p.add_argument("--json", action="store_true", help="print the entries as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no tables")
    p.set_defaults(func=run)


def parse_values(items: list[str]) -> dict[str, list]:
    """``["zeta=1,2,3"]`` -> ``{"zeta": [1, 2, 3]}`` (TOML literals)."""
    from diffcomm.cli.transmit import parse_options

    out: dict[str, list] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip() or not text.strip():
            raise DiffcommError(f"--values must look like NAME=V1,V2,..., got {item!r}")
        out[name.strip()] = [parse_options([f"v={v}"])["v"] for v in text.split(",") if v.strip()]
    return out


def command_line(args: argparse.Namespace) -> str:
    """The command as a user would type it (recorded in each entry)."""
    parts = ["diffcomm", "tune", args.receiver, "--encoder", args.encoder, "--cbr", args.cbr,
             "--channel", *args.channel, "--csi", args.csi, "--snr", *args.snr]
    if args.steps is not None:
        parts += ["--steps", str(args.steps)]
    parts += ["--images", str(args.images), "--seed", str(args.seed)]
    if args.dataset != "fashion-mnist":
        parts += ["--dataset", args.dataset]
    if args.rounds != 2:
        parts += ["--rounds", str(args.rounds)]
    for flag in ("values", "reference"):
        for item in getattr(args, flag):
            parts += [f"--{flag}", item]
    if args.out:
        parts += ["--out", args.out]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from diffcomm.calibration import candidate_grid, candidates_table, check_snrs, summary_rows, tune
    from diffcomm.cli.transmit import parse_options
    from diffcomm.eval.grid import channel_names, default_encoder
    from diffcomm.pipeline import check_receiver
    from diffcomm.receivers.base import get_spec
    from diffcomm.utils import format_table

    spec = get_spec(args.receiver)
    candidate_grid(spec)  # one line for a receiver without strength options, before anything else
    args.encoder = args.encoder or default_encoder(args.receiver)
    check_receiver(args.receiver, args.encoder, args.csi)
    snrs = check_snrs(args.snr)
    channels = [c.lower() for c in args.channel]
    for ch in channels:
        if ch not in channel_names():
            raise DiffcommError(f"unknown channel {ch!r}; choose from {', '.join(channel_names())}")
    if len(set(channels)) != len(channels):
        raise DiffcommError("--channel lists a value twice")
    if args.images < 1:
        raise DiffcommError(f"--images must be a positive number of validation images, got {args.images}")
    values = parse_values(args.values)
    reference = parse_options(args.reference)
    sizes = {name: len(vals) for name, vals in candidate_grid(spec, values).items()}
    per_point = 1 + (sum(sizes.values()) * (args.rounds if len(sizes) > 1 else 1)) + (1 if reference else 0)
    bar = tqdm(total=per_point * len(channels) * len(snrs), desc=f"tune {args.receiver}", unit="candidate",
               disable=args.quiet, dynamic_ncols=True)

    def progress(label: str) -> None:
        bar.set_postfix_str(label, refresh=False)
        bar.update(1)

    try:
        entries = tune(args.receiver, encoder=args.encoder, cbr=args.cbr, channels=channels, csi=args.csi, snrs=snrs,
                       steps=args.steps, n_images=args.images, seed=args.seed, dataset=args.dataset,
                       rounds=args.rounds, batch_size=args.batch_size, values=values, reference=reference,
                       pilots=args.pilots, out=args.out, command=command_line(args), progress=progress)
    finally:
        bar.total = bar.n
        bar.close()
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    if not args.quiet:
        for e in entries:
            print(f"\n{args.receiver}@{args.encoder} {e['channel']}/{e['csi']} {e['snr_db']:g} dB, {e['steps']} steps, "
                  f"{e['validation']['n']} validation images (train split, seed {e['validation']['seed']}):")
            print(candidates_table(e))
        print()
    print(format_table(["channel", "SNR dB", "chosen", "PSNR", "default PSNR", "reference PSNR"],
                       summary_rows(entries)))
    from diffcomm.calibration import calibration_path

    print(f"stored in {args.out or calibration_path()}")
    return 0
