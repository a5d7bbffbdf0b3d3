"""Calibrated defaults: each receiver's strength options tuned per link and SNR on validation images.

A receiver's *strength* options (a guidance step ζ, a data-term weight λ, a guidance scale) are
declared once, in its registration, with the candidate values to search:
``Option(float, 0, 100, tune=(0.5, 1, 2, 3, 5, 8))`` (:class:`diffcomm.receivers.base.Option`).
:func:`tune` (``diffcomm tune RECEIVER ...``) runs a search over those candidates on a **validation
split drawn from the training images** (:func:`validation_images`; the test split is never read)
and stores the winners in :data:`CALIBRATION_FILE` (``zoo/calibration.json``, beside the shipped
models), one entry per (receiver, link encoder, image shape, k, channel, CSI, steps, SNR).

**Search.** Mean PSNR over the validation images is the objective (mean SSIM is recorded beside
it). One strength option: every candidate. Several: coordinate search from the signature defaults
(sweep each option over its candidates with the others held, keep the best, repeat up to
``rounds`` times or until nothing changes); the winner is the best of everything evaluated, the
start included. Every candidate sees the same images, the same channel draws and the same receiver
noise (common random numbers, generators seeded from ``seed`` and the link), so the search is
deterministic for a seed on one torch version and one thread count. Steps are not tuned: an entry
holds the step count it was tuned at.

**Lookup rule** (:func:`calibrated_options`; used by :func:`diffcomm.pipeline.decode`, and so by
``diffcomm transmit``, the evaluation grid and the demo). For a receiver with the shipped default
prior, the entries of the *same* receiver, link encoder (``link.encoder.name``: e.g.
``fmnist-deepjscc-awgn-cbr16`` or ``downsample``), image shape, k (the CBR), channel and CSI mode
are candidates; among them the step count nearest the call's (ties: the larger), then the SNR
nearest the link's (ties: the lower) is chosen. Each strength option the caller did not set takes
that entry's value; options the caller set always win; with no matching entry (or a prior other
than the shipped default) the signature default applies. What was used and where it came from is
in ``ReceiverResult.extras["options_used"]`` / ``["calibrated"]`` and in every results record.

``DIFFCOMM_CALIBRATION`` overrides the file (a path; ``off`` disables calibrated defaults).

Example:
    >>> from diffcomm.calibration import validation_indices
    >>> validation_indices(60_000, 4, seed=0).tolist() == validation_indices(60_000, 4, seed=0).tolist()
    True
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffcomm.errors import DiffcommError

CALIBRATION_FILE = Path(__file__).resolve().parent / "zoo" / "calibration.json"
CALIBRATION_ENV = "DIFFCOMM_CALIBRATION"
FORMAT = 1
VALIDATION_SPLIT = "train"   # the split validation images are drawn from; never "test"
ABOUT = ("Calibrated strength options of the receivers (diffcomm tune), per receiver, link encoder, image shape, k, "
         "channel, CSI, steps and SNR, chosen by mean PSNR on a seeded validation subset of the training images. "
         "Lookup: same receiver/encoder/shape/k/channel/csi; nearest steps (ties: more), then nearest SNR "
         "(ties: lower). See diffcomm.calibration.")


# ---------------------------------------------------------------------------------------------
# the validation split


def validation_indices(size: int, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of the validation images: the first ``n`` of a seeded permutation of ``range(size)``.

    The permutation's generator is seeded from ``seed`` alone (:func:`diffcomm.eval.grid.derive_seed`
    with the tag ``"validation"``), so the subset is the same on every machine.
    """
    from diffcomm.eval.grid import derive_seed

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DiffcommError(f"validation images: n must be a positive integer, got {n!r}")
    if n > size:
        raise DiffcommError(f"validation images: {n} requested, the {VALIDATION_SPLIT} split has {size}")
    g = torch.Generator().manual_seed(derive_seed(seed, "validation"))
    return torch.randperm(size, generator=g)[:n]


def validation_images(dataset: str = "fashion-mnist", n: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` validation images of ``dataset`` and their indices in its **train** split.

    The images are a seeded subset of the training images (:func:`validation_indices`), never test
    images, so calibrating never touches the data the results are reported on. (The shipped prior
    and DeepJSCC models were trained on the whole train split, so these images are not unseen by
    them; what they guarantee is that no choice is made on the test images.)
    """
    from diffcomm.data import get_dataset

    data = get_dataset(dataset, VALIDATION_SPLIT)
    idx = validation_indices(len(data.images), n, seed)
    return data.images[idx].contiguous(), idx


# ---------------------------------------------------------------------------------------------
# the store


def calibration_path() -> Path | None:
    """The calibration file in use: ``$DIFFCOMM_CALIBRATION`` (``off``: none) or :data:`CALIBRATION_FILE`."""
    env = os.environ.get(CALIBRATION_ENV)
    if env is not None and env.strip().lower() in ("off", "none", "0", ""):
        return None
    return Path(env).expanduser() if env else CALIBRATION_FILE


_LOADED: dict[str, tuple[float, dict[str, Any]]] = {}


def load_calibration(path: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """The entries of a calibration file (key -> entry); ``{}`` when it does not exist.

    Cached per process by the file's modification time. A file that is not a calibration file is a
    one-line error.
    """
    path = calibration_path() if path is None else Path(path)
    if path is None or not path.is_file():
        return {}
    mtime = path.stat().st_mtime_ns
    cached = _LOADED.get(str(path))
    if cached is not None and cached[0] == mtime:
        return cached[1]
    from diffcomm.checks import read_json_file

    data = read_json_file(path, "calibration file")
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), dict):
        raise DiffcommError(f"{path} is not a diffcomm calibration file (format {FORMAT} with an 'entries' table); "
                            f"rerun `diffcomm tune` or set {CALIBRATION_ENV}=off")
    _LOADED[str(path)] = (mtime, data["entries"])
    return data["entries"]


def entry_key(receiver: str, encoder: str, shape: Sequence[int], k: int, channel: str, csi: str,
              steps: int | None, snr_db: float) -> str:
    """The store's key of one calibration entry."""
    return (f"{receiver}|{encoder}|{'x'.join(map(str, shape))}|k={int(k)}|{channel}|{csi}|"
            f"steps={steps if steps is not None else '-'}|snr={float(snr_db):g}")


def save_entries(entries: Sequence[dict[str, Any]], path: str | os.PathLike | None = None) -> Path:
    """Merge ``entries`` into the calibration file (same key: replaced) and write it atomically."""
    from diffcomm.utils import atomic_write_json

    target = calibration_path() if path is None else Path(path)
    if target is None:
        raise DiffcommError(f"{CALIBRATION_ENV} is off: pass --out to say where the calibration goes")
    current = dict(load_calibration(target)) if target.is_file() else {}
    for entry in entries:
        current[entry["key"]] = entry
    atomic_write_json(target, {"format": FORMAT, "about": ABOUT, "entries": dict(sorted(current.items()))})
    _LOADED.pop(str(target), None)
    return target


# ---------------------------------------------------------------------------------------------
# the lookup


def encoder_id(encoder: str, channel: str, cbr: float, channels: int = 1) -> str:
    """The name a link's encoder carries (``link.encoder.name``) for a grid encoder name.

    ``deepjscc`` is the shipped model for the channel and CBR (``fmnist-deepjscc-awgn-cbr16``), so
    an entry names the exact model it was tuned on; other encoders keep their name.
    """
    if encoder.startswith("deepjscc"):
        from diffcomm.pipeline import jscc_model_name

        variant = encoder.split("-", 1)[1] if "-" in encoder else None
        return jscc_model_name(channel, cbr, variant, channels=3 if channels == 3 else 1)
    return encoder


def _steps_of(spec, options: dict[str, Any]) -> int | None:
    if "steps" not in spec.options:
        return None
    return int(options["steps"]) if options.get("steps") is not None else spec.defaults().get("steps")


def calibrated_options(spec, encoder: str, shape: Sequence[int], k: int, channel: str, csi: str, snr_db: float,
                       options: dict[str, Any] | None = None,
                       path: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """Calibrated values for the strength options of ``spec`` the caller did not set.

    ``encoder`` is the link's encoder name (:func:`encoder_id`); see the module docstring for the
    rule. Returns ``{option: {"value": v, "snr_db": s, "steps": n}}`` (``s``, ``n``: the entry's), or
    ``{}`` when the receiver has no strength option, the caller set them all, or no entry matches.
    """
    options = options or {}
    wanted = [name for name in spec.tunable() if name not in options]
    if not wanted:
        return {}
    entries = [e for e in load_calibration(path).values()
               if e.get("receiver") == spec.name and e.get("encoder") == encoder and list(e.get("shape", ())) ==
               list(shape) and e.get("k") == int(k) and e.get("channel") == channel and e.get("csi") == csi]
    if not entries:
        return {}
    steps = _steps_of(spec, options)
    if steps is not None:
        have = sorted({e["steps"] for e in entries if e.get("steps") is not None})
        if have:
            best = min(have, key=lambda s: (abs(s - steps), -s))
            entries = [e for e in entries if e.get("steps") == best]
    entry = min(entries, key=lambda e: (abs(float(e["snr_db"]) - float(snr_db)), float(e["snr_db"])))
    out = {}
    for name in wanted:
        if name in entry.get("values", {}):
            out[name] = {"value": entry["values"][name], "snr_db": entry["snr_db"], "steps": entry.get("steps")}
    return out


def link_calibration(spec, link, options: dict[str, Any] | None = None,
                     path: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """:func:`calibrated_options` for a built :class:`~diffcomm.link.Link`."""
    if not spec.tunable():
        return {}
    return calibrated_options(spec, getattr(link.encoder, "name", "?"), link.shape, link.k, link.channel.name,
                              link.csi, getattr(link, "receiver_snr_db", link.snr_db), options, path)


# ---------------------------------------------------------------------------------------------
# the search


@dataclass
class Candidate:
    options: dict[str, Any]
    psnr: float
    ssim: float | None

    def record(self) -> dict[str, Any]:
        return {"options": self.options, "psnr": round(self.psnr, 4),
                "ssim": None if self.ssim is None else round(self.ssim, 5)}


def candidate_grid(spec, values: dict[str, Sequence[Any]] | None = None) -> dict[str, tuple[Any, ...]]:
    """The strength options of ``spec`` and their candidates (``values`` replace registered ones); one-line errors."""
    grid = spec.tunable()
    if not grid:
        from diffcomm.receivers.base import RECEIVERS

        tunable = [s.name for s in RECEIVERS.values() if s.tunable()]
        raise DiffcommError(f"receiver {spec.name} has no strength options to tune; receivers with tunable "
                            f"options: {', '.join(tunable) or 'none'}")
    for name, vals in (values or {}).items():
        if name not in grid:
            raise DiffcommError(f"receiver {spec.name}: {name!r} is not a strength option; tunable: "
                                f"{', '.join(grid)}")
        vals = tuple(spec.options[name].check(spec.name, name, v) for v in vals)
        if not vals:
            raise DiffcommError(f"receiver {spec.name}: give at least one value for {name}")
        grid[name] = vals
    return grid


def check_snrs(snrs: Sequence[float] | str) -> list[float]:
    """SNRs in dB (numbers, or a string as ``diffcomm eval --snr`` takes); one-line errors."""
    from diffcomm.eval.grid import parse_snrs

    return parse_snrs(snrs if isinstance(snrs, str) else list(snrs))


class _Evaluator:
    """Mean validation PSNR/SSIM of one option set on one link (cached; the same noise for every set)."""

    def __init__(self, receiver, link, prior, batches, fixed, receiver_seed, progress, label):
        self.receiver, self.link, self.prior, self.batches, self.fixed = receiver, link, prior, batches, fixed
        self.receiver_seed, self.progress, self.label = receiver_seed, progress, label
        self.cache: dict[str, Candidate] = {}

    def __call__(self, opts: dict[str, Any]) -> Candidate:
        from diffcomm.eval.grid import canonical_json
        from diffcomm.metrics import psnr, ssim
        from diffcomm.pipeline import decode

        tag = canonical_json(opts)
        if tag not in self.cache:
            g = torch.Generator().manual_seed(self.receiver_seed)
            p, s = [], []
            for xb, rx in self.batches:
                res = decode(self.receiver, self.link, rx, prior=self.prior, generator=g, calibration=False,
                             **self.fixed, **opts)
                xh = res.x_hat.detach().float().clamp(0, 1)
                p.append(psnr(xh, xb))
                if min(xb.shape[-2:]) >= 11:
                    s.append(ssim(xh, xb))
            self.cache[tag] = Candidate(dict(opts), float(torch.cat(p).mean()),
                                        float(torch.cat(s).mean()) if s else None)
            if self.progress is not None:
                self.progress(f"{self.label} {tag}")
        return self.cache[tag]


def coordinate_search(evaluate: Callable[[dict[str, Any]], Candidate], start: dict[str, Any],
                      grid: dict[str, Sequence[Any]], rounds: int) -> tuple[Candidate, Candidate]:
    """(the start's score, the best found): sweep each option over its candidates with the others held
    at the best so far, for at most ``rounds`` passes or until a pass changes nothing. With one option
    this is a plain grid search. Ties keep the earlier candidate."""
    first = evaluate(dict(start))
    best, current = first, dict(start)
    for _ in range(rounds):
        changed = False
        for name, vals in grid.items():
            for v in vals:
                cand = evaluate({**current, name: v})
                if cand.psnr > best.psnr:
                    best = cand
            changed |= best.options[name] != current[name]
            current = dict(best.options)
        if not changed:
            break
    return first, best


def tune(receiver: str, *, encoder: str, cbr: float | str = "1/16", channels: Sequence[str] = ("awgn",),
         csi: str = "perfect", snrs: Sequence[float] = (0, 5, 10, 20), steps: int | None = None,
         n_images: int = 32, seed: int = 0, dataset: str = "fashion-mnist", rounds: int = 2,
         batch_size: int = 32, values: dict[str, Sequence[Any]] | None = None,
         reference: dict[str, Any] | None = None, pilots: int = 4, out: str | os.PathLike | None = None,
         save: bool = True, command: str = "", progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Tune ``receiver``'s strength options on validation images, per channel and SNR; see the module docstring.

    Args:
        encoder, cbr, channels, csi: the links (as in :func:`diffcomm.pipeline.build_link`).
        snrs: channel SNRs in dB. steps: the receiver's step count (its default when None; not tuned).
        n_images, seed, dataset: the validation images (:func:`validation_images`).
        rounds: coordinate-search passes for receivers with several strength options.
        values: candidate values replacing the registered ones, e.g. ``{"zeta": [1, 2]}``.
        reference: one extra option set scored on the same images (recorded, never chosen), e.g. the
            hand-set values a calibration replaces.
        out, save: merge the entries into ``out`` (default :func:`calibration_path`) after each SNR.
        progress: called with a short label after each candidate.

    Returns the entries (one per channel and SNR), as stored.
    """
    from diffcomm import __version__, zoo
    from diffcomm.channels import parse_cbr
    from diffcomm.eval.grid import canonical_json, derive_seed
    from diffcomm.pipeline import build_link, check_receiver, default_prior, prior_names
    from diffcomm.utils import git_revision

    spec = check_receiver(receiver, encoder, csi)
    grid = candidate_grid(spec, values)
    snrs = check_snrs(snrs)
    cbr_value = parse_cbr(cbr) if isinstance(cbr, str) else float(cbr)
    for name, what, low in (("rounds", rounds, 1), ("batch_size", batch_size, 1), ("steps", steps, 1)):
        if what is not None and (isinstance(what, bool) or not isinstance(what, int) or what < low):
            raise DiffcommError(f"tune: {name} must be an integer >= {low}, got {what!r}")
    fixed = spec.validate({"steps": steps} if steps is not None and "steps" in spec.options else {})
    reference = spec.validate(dict(reference or {}))
    unknown = sorted(set(reference) - set(grid))
    if unknown:
        raise DiffcommError(f"tune: reference option {unknown[0]!r} is not a strength option of {receiver}")
    defaults = spec.defaults()
    steps_used = _steps_of(spec, fixed)

    x, idx = validation_images(dataset, n_images, seed)
    shape = tuple(x.shape[1:])
    prior = default_prior(spec, shape, dataset)
    models_used = list(prior_names(spec, shape))
    indices_sha = hashlib.sha256(canonical_json(idx.tolist()).encode()).hexdigest()[:16]
    entries: list[dict[str, Any]] = []
    for channel in channels:
        for snr in snrs:
            t0 = time.perf_counter()
            link = build_link(encoder, shape, cbr_value, channel, snr, csi=csi,
                              n_pilots=pilots if csi == "estimated" else 0, seed=seed)
            enc_id = getattr(link.encoder, "name", encoder)
            models = models_used + ([enc_id] if enc_id in zoo.list_models() else [])
            key = entry_key(receiver, enc_id, shape, link.k, link.channel.name, csi, steps_used, snr)
            g_channel = torch.Generator().manual_seed(derive_seed(seed, "tune-channel|" + key.split("|", 1)[1]))
            batches = [(x[i:i + batch_size], link.transmit(x[i:i + batch_size], generator=g_channel))
                       for i in range(0, len(x), batch_size)]
            evaluate = _Evaluator(receiver, link, prior, batches, fixed,
                                  derive_seed(seed, "tune-receiver|" + key), progress, f"{channel} {snr:g} dB")
            start, best = coordinate_search(evaluate, {name: defaults[name] for name in grid}, grid,
                                            rounds if len(grid) > 1 else 1)
            searched = [c.record() for c in evaluate.cache.values()]  # the reference is not a candidate
            reference_options = {**{name: defaults[name] for name in grid}, **reference}
            ref = evaluate(reference_options) if reference else None
            now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            entry = {
                "key": key, "receiver": receiver, "encoder": enc_id, "encoder_arg": encoder, "shape": list(shape),
                "k": link.k, "cbr": link.k / link.n, "channel": link.channel.name, "csi": csi,
                "snr_db": snr, "steps": steps_used, "values": best.options,
                "psnr": round(best.psnr, 4), "ssim": None if best.ssim is None else round(best.ssim, 5),
                "default": start.record(),
                "reference": None if ref is None else {**ref.record(), "options": reference_options},
                "candidates": searched,
                "search": "grid" if len(grid) == 1 else f"coordinate (at most {rounds} rounds)",
                "grid": {name: list(vals) for name, vals in grid.items()},
                "validation": {"dataset": dataset, "split": VALIDATION_SPLIT, "n": len(x), "seed": seed,
                               "indices_sha256": indices_sha, "selection": "first n of a seeded permutation"},
                "prior": models_used[0] if models_used else None,
                "models": {m: zoo.weights_digest(m) for m in models},
                "batch_size": batch_size, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                "version": __version__, "git_revision": git_revision(), "date": now,
                "seconds": round(time.perf_counter() - t0, 2), "command": command,
            }
            entries.append(entry)
            if save:
                save_entries([entry], out)
    return entries


def candidates_table(entry: dict[str, Any]) -> str:
    """A terminal table of one entry's candidates (chosen one marked ``*``, reference ``ref``)."""
    from diffcomm.utils import format_table

    names = list(entry["grid"])
    rows = []
    ref = entry.get("reference")
    items = list(entry["candidates"])
    if ref is not None and all(c["options"] != ref["options"] for c in items):
        items.append(ref)
    for c in sorted(items, key=lambda c: -c["psnr"]):
        mark = "*" if c["options"] == entry["values"] else ""
        if ref is not None and c["options"] == ref["options"]:
            mark = (mark + " ref").strip()
        if c["options"] == entry["default"]["options"]:
            mark = (mark + " default").strip()
        rows.append([*(f"{c['options'][n]:g}" if isinstance(c["options"][n], (int, float)) else str(c["options"][n])
                       for n in names), f"{c['psnr']:.2f}", "-" if c["ssim"] is None else f"{c['ssim']:.3f}", mark])
    return format_table([*names, "PSNR", "SSIM", "(* chosen)"], rows)


def summary_rows(entries: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One row per entry: channel, SNR, chosen values, PSNR (and the default's and reference's)."""
    rows = []
    for e in entries:
        chosen = ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in e["values"].items())
        ref = e.get("reference")
        rows.append([e["channel"], f"{e['snr_db']:g}", chosen, f"{e['psnr']:.2f}", f"{e['default']['psnr']:.2f}",
                     "-" if ref is None else f"{ref['psnr']:.2f}"])
    return rows
