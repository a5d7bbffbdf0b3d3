"""Evaluation grids: receivers x encoders x channels x CSI x SNRs x CBRs x seeds on a dataset split.

A grid comes from command-line values or a TOML/YAML config with the same names
(:func:`grid_from_mapping`); :func:`plan` validates everything a run needs *before any work*
(names, SNR/CBR lists, shipped models, split size) and expands the grid into :class:`Point` s.

Receivers are given as ``receiver`` or ``receiver@encoder``. A bare receiver is paired with every
encoder of ``encoders`` (or, without that list, with its default encoder: ``gaussian`` for the
linear-link receivers, ``deepjscc`` for the others); pairs that :func:`diffcomm.pipeline.check_receiver`
rejects are skipped with a note, while an explicit ``receiver@encoder`` that is invalid is an error.
``digital`` is the separation baseline (codec + 5G LDPC + QAM, :mod:`diffcomm.transmit.digital`);
its encoder is ``digital`` and it assumes perfect CSI.

Identity and randomness: each point has a canonical ``key`` (JSON of the fields that determine its
numbers). The receiver's generator is seeded from ``(seed, key)``; the channel's generator from
``(seed, key without receiver and options)``, so every receiver sharing an encoder sees the same
channel realisations (common random numbers) and no result depends on the order or parallelism
of the run.

Uncertainty: ``posterior_samples = S`` (a grid-level setting, 2…1024; 1 or absent = off) makes every
registered receiver draw S posterior samples per image (:func:`diffcomm.pipeline.decode`); the record's
metrics then add the mean spread and semantic agreement and the AUROCs for a wrong-class reconstruction
(:mod:`diffcomm.eval.runner`). S enters the key only when set, so earlier records keep their keys; the
channel realisations are those of the same point without samples. The digital baseline ignores it.

Example:
    >>> spec = grid_from_mapping({"dataset": "fashion-mnist", "n": 4, "receivers": "pinv,lmmse",
    ...                          "encoders": "gaussian", "channel": "awgn", "snr": "0,10", "cbr": "1/16"})
    >>> p = plan(spec)
    >>> len(p.points), p.points[0].label
    (4, 'pinv@gaussian awgn/perfect 0 dB CBR 1/16 seed 0')
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from diffcomm.checks import check_seed
from diffcomm.errors import DiffcommError

FLAT_CHANNELS = ("awgn", "rayleigh", "rician")   # the digital baseline's channels (flat fading)


def channel_names() -> tuple[str, ...]:
    """Every registered channel (:data:`diffcomm.channels.CHANNELS`: flat fading, OFDM, ...)."""
    from diffcomm.channels import CHANNELS as registry

    return tuple(registry)
CSI_MODES = ("perfect", "estimated", "none")
DIGITAL = "digital"
# Config keys (the CLI's long option names with "_" for "-").
CONFIG_KEYS = ("dataset", "split", "n", "receivers", "encoders", "channel", "csi", "snr", "cbr", "seeds",
               "batch_size", "pilots", "steps", "options", "save_images", "per_image", "threads", "n_per_receiver",
               "posterior_samples")
# Receiver arguments the runner supplies itself (never user options).
_RUNNER_ARGS = {"link", "rx", "prior", "generator", "h", "data", "prior_mean", "prior_cov", "class_labels", "semantic",
                "images", "cbr", "snr_db", "channel", "table"}


@dataclass
class GridSpec:
    """A parsed (not yet validated against models and data) evaluation grid."""

    receivers: list[str]
    snrs: list[float]
    dataset: str = "fashion-mnist"
    split: str = "test"
    n: int = 256
    encoders: list[str] | None = None
    channels: list[str] = field(default_factory=lambda: ["awgn"])
    csi: list[str] = field(default_factory=lambda: ["perfect"])
    cbrs: list[float] = field(default_factory=lambda: [1 / 16])
    seeds: list[int] = field(default_factory=lambda: [0])
    batch_size: int = 64
    pilots: int = 4
    steps: int | None = None
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    save_images: int = 8
    per_image: bool = False
    threads: int = 1
    # Images for some receivers instead of n, e.g. {"digital": 256}: the digital baseline codes mosaics
    # whose headers only amortise over many images. Their records say their own n.
    n_per_receiver: dict[str, int] = field(default_factory=dict)
    # Posterior samples per image for the uncertainty metrics (pipeline.decode(..., posterior_samples=S));
    # None (or 1) = off. Part of a point's key only when set.
    posterior_samples: int | None = None


@dataclass(frozen=True)
class Point:
    """One grid point: everything a worker needs to compute one results record."""

    receiver: str
    encoder: str
    dataset: str
    split: str
    n: int
    channel: str
    csi: str
    snr_db: float
    cbr: float
    seed: int
    batch_size: int
    pilots: int
    options_json: str = "{}"
    save_images: int = 8
    per_image: bool = False
    threads: int = 1
    # Calibrated strength options the point uses (diffcomm.calibration, looked up at plan time):
    # {"zeta": {"value": 2.0, "snr_db": 10.0, "steps": 20}}. Part of the key when not empty.
    calibrated_json: str = "{}"
    # Posterior samples per image (uncertainty metrics); None = off. Part of the key only when set.
    posterior_samples: int | None = None

    @property
    def options(self) -> dict[str, Any]:
        return json.loads(self.options_json)

    @property
    def calibrated(self) -> dict[str, dict[str, Any]]:
        return json.loads(self.calibrated_json)

    @property
    def receiver_options(self) -> dict[str, Any]:
        """What the receiver is called with: the calibrated values, then the grid's options (which win)."""
        return {**{name: c["value"] for name, c in self.calibrated.items()}, **self.options}

    @property
    def system(self) -> str:
        """Display name: ``receiver@encoder`` (``digital`` for the digital baseline)."""
        return self.receiver if self.receiver == self.encoder else f"{self.receiver}@{self.encoder}"

    def identity(self) -> dict[str, Any]:
        """The fields that determine the point's numbers (timing, image saving and threads excluded).

        Calibrated option values are included when the point has any (so a changed calibration is a
        new point, never a reused record); points without them keep their earlier keys.
        """
        ident = {"receiver": self.receiver, "encoder": self.encoder, "dataset": self.dataset, "split": self.split,
                 "n": self.n, "channel": self.channel, "csi": self.csi, "snr_db": self.snr_db, "cbr": self.cbr,
                 "seed": self.seed, "batch_size": self.batch_size,
                 "pilots": self.pilots if self.csi == "estimated" else 0, "options": self.options}
        if self.calibrated:
            ident["calibrated"] = {name: c["value"] for name, c in self.calibrated.items()}
        if self.posterior_samples is not None:
            ident["posterior_samples"] = self.posterior_samples
        return ident

    @property
    def key(self) -> str:
        return canonical_json(self.identity())

    @property
    def channel_key(self) -> str:
        ident = self.identity()
        del ident["receiver"], ident["options"]
        ident.pop("calibrated", None)
        ident.pop("posterior_samples", None)  # the same channel realisations with and without samples
        return canonical_json(ident)

    @property
    def label(self) -> str:
        return (f"{self.system} {self.channel}/{self.csi} {self.snr_db:g} dB CBR {cbr_label(self.cbr)} "
                f"seed {self.seed}")

    @property
    def file_stem(self) -> str:
        """Short stable name for the point's saved reconstructions."""
        return hashlib.sha1(self.key.encode()).hexdigest()[:16]


@dataclass
class Plan:
    """A validated grid: its points (in grid order), notes on skipped combinations, the spec."""

    spec: GridSpec
    points: list[Point]
    notes: list[str]


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def derive_seed(seed: int, key: str) -> int:
    """A 63-bit generator seed from a user seed and a point key (stable across runs and machines)."""
    digest = hashlib.sha256(f"{int(seed)}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2 ** 63 - 1)


def cbr_label(cbr: float) -> str:
    """``0.0625 -> "1/16"``; other values as short decimals."""
    frac = Fraction(cbr).limit_denominator(4096)
    if abs(float(frac) - cbr) < 1e-12 and frac.numerator == 1:
        return f"1/{frac.denominator}"
    return f"{cbr:.4g}"


# ---------------------------------------------------------------------------------------------
# parsing


def _items(value: Any, what: str) -> list[str]:
    if isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value]
    elif isinstance(value, (str, int, float)):
        items = [s.strip() for s in str(value).split(",")]
    else:
        raise DiffcommError(f"{what} must be a comma-separated list or a list, got {type(value).__name__}")
    items = [s for s in items if s]
    if not items:
        raise DiffcommError(f"{what} is empty; give at least one value")
    return items


def parse_snrs(value: Any) -> list[float]:
    """SNRs in dB: ``"-5,0,5"``, a list of numbers, or an inclusive range ``"start:stop:step"``.

    >>> parse_snrs("-5:5:5")
    [-5.0, 0.0, 5.0]
    """
    from diffcomm.channels import snr_db_to_n0

    out: list[float] = []
    for item in _items(value, "--snr"):
        try:
            if ":" in item:
                start, stop, step = (float(v) for v in item.split(":"))
                if not step > 0 or stop < start:
                    raise ValueError
                count = int(math.floor((stop - start) / step + 1e-9)) + 1
                values = [start + i * step for i in range(count)]
            else:
                values = [float(item)]
        except ValueError:
            raise DiffcommError(f"--snr: cannot parse {item!r}; use numbers in dB like -5,0,5,10 or a range "
                                f"start:stop:step like 0:20:5") from None
        for v in values:
            if not math.isfinite(v):
                raise DiffcommError(f"--snr: {item!r} is not a finite number of dB")
            snr_db_to_n0(v)
            out.append(round(v, 10) + 0.0)
    if len(set(out)) != len(out):
        raise DiffcommError(f"--snr lists a value twice: {', '.join(f'{v:g}' for v in out)}")
    return out


def parse_cbrs(value: Any) -> list[float]:
    from diffcomm.channels import parse_cbr

    out = [parse_cbr(item) for item in _items(value, "--cbr")]
    if len(set(out)) != len(out):
        raise DiffcommError("--cbr lists a value twice")
    return out


def _int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DiffcommError(f"{what} must be an integer, got {value!r}")
    try:
        out = int(value)
    except ValueError:
        raise DiffcommError(f"{what} must be an integer, got {value!r}") from None
    if out < minimum:
        raise DiffcommError(f"{what} must be >= {minimum}, got {out}")
    return out


def _posterior_samples(value: Any) -> int | None:
    """The grid's posterior samples per image: None or 1 (off) -> None, else an int 2…1024 (one-line errors)."""
    from diffcomm.pipeline import check_posterior_samples

    if value is None:
        return None
    return check_posterior_samples(_int(value, "posterior_samples", 1), "posterior_samples")


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise DiffcommError(f"{what} must be true or false, got {value!r}")
    return value


def _json_value(value: Any, what: str) -> Any:
    try:
        return json.loads(canonical_json(value))
    except (TypeError, ValueError):
        raise DiffcommError(f"{what} must be a number, string, boolean or list, got {value!r}") from None


def grid_from_mapping(config: Mapping[str, Any]) -> GridSpec:
    """Build a :class:`GridSpec` from config keys (the CLI option names; ``-`` or ``_``).

    Raises a one-line :class:`DiffcommError` for unknown keys or values that do not parse.
    """
    cfg = {str(k).replace("-", "_"): v for k, v in config.items() if v is not None}
    aliases = {"channels": "channel", "snrs": "snr", "snr_db": "snr", "cbrs": "cbr", "seed": "seeds",
               "receiver": "receivers", "encoder": "encoders"}
    cfg = {aliases.get(k, k): v for k, v in cfg.items()}
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        raise DiffcommError(f"unknown grid setting {unknown[0]!r}; known settings: {', '.join(CONFIG_KEYS)}")
    if "receivers" not in cfg:
        raise DiffcommError("the grid needs receivers (--receivers pinv,dps or receivers = [...] in the config)")
    if "snr" not in cfg:
        raise DiffcommError("the grid needs SNRs (--snr -5,0,5 or snr = [...] in the config)")
    n_per = cfg.get("n_per_receiver", {})
    if not isinstance(n_per, Mapping):
        raise DiffcommError("n_per_receiver must be a table of receiver = images, e.g. [n_per_receiver] digital = 256")
    options = cfg.get("options", {})
    if not isinstance(options, Mapping) or not all(isinstance(v, Mapping) for v in options.values()):
        raise DiffcommError("options must be a table per receiver, e.g. [options.dps] steps = 20")
    spec = GridSpec(
        receivers=_items(cfg["receivers"], "--receivers"),
        snrs=parse_snrs(cfg["snr"]),
        dataset=str(cfg.get("dataset", "fashion-mnist")),
        split=str(cfg.get("split", "test")),
        n=_int(cfg.get("n", 256), "--n", 1),
        encoders=_items(cfg["encoders"], "--encoders") if "encoders" in cfg else None,
        channels=[c.lower() for c in _items(cfg.get("channel", "awgn"), "--channel")],
        csi=_items(cfg.get("csi", "perfect"), "--csi"),
        cbrs=parse_cbrs(cfg.get("cbr", "1/16")),
        seeds=[check_seed(_int(s, "--seeds", 0), "--seeds") for s in _items(cfg.get("seeds", 0), "--seeds")],
        batch_size=_int(cfg.get("batch_size", 64), "--batch-size", 1),
        pilots=_int(cfg.get("pilots", 4), "--pilots", 1),
        steps=_int(cfg["steps"], "--steps", 1) if "steps" in cfg else None,
        options={str(r): {str(k): _json_value(v, f"option {r}.{k}") for k, v in o.items()}
                 for r, o in options.items()},
        save_images=_int(cfg.get("save_images", 8), "--save-images", 0),
        per_image=_bool(cfg.get("per_image", False), "--per-image"),
        threads=_int(cfg.get("threads", 1), "--threads", 1),
        n_per_receiver={str(r): _int(v, f"n_per_receiver.{r}", 1) for r, v in n_per.items()},
        posterior_samples=_posterior_samples(cfg.get("posterior_samples")),
    )
    if spec.threads > 1024:
        raise DiffcommError(f"--threads must be at most 1024, got {spec.threads}")
    for name, values in (("--channel", spec.channels), ("--csi", spec.csi), ("--seeds", spec.seeds)):
        if len(set(values)) != len(values):
            raise DiffcommError(f"{name} lists a value twice")
    if spec.steps is not None and spec.steps > 1000:
        raise DiffcommError(f"--steps must be between 1 and 1000, got {spec.steps}")
    return spec


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a grid config (``.toml``, ``.yaml``/``.yml`` or ``.json``) into a dict.

    Missing, binary, non-UTF-8 or unparsable files are one-line errors
    (:func:`diffcomm.checks.read_config_file`).
    """
    from diffcomm.checks import read_config_file

    return read_config_file(path, what="config")


# ---------------------------------------------------------------------------------------------
# validation and expansion


def receiver_names() -> list[str]:
    from diffcomm.receivers.base import receiver_names as registered

    return [*registered(), DIGITAL]


def default_encoder(receiver: str) -> str:
    """The encoder a bare receiver name gets when the grid lists no encoders."""
    from diffcomm.receivers.base import get_spec

    if receiver == DIGITAL:
        return DIGITAL
    return "gaussian" if get_spec(receiver).link == "linear" else "deepjscc"


def check_pair(receiver: str, encoder: str, csi: str) -> None:
    """Raise a one-line :class:`DiffcommError` when ``receiver`` cannot decode ``encoder`` with ``csi``."""
    from diffcomm.pipeline import check_receiver

    if receiver == DIGITAL or encoder == DIGITAL:
        if receiver != encoder:
            raise DiffcommError(f"the digital baseline is its own transmitter and receiver; use 'digital', "
                                f"not {receiver}@{encoder}")
        if csi != "perfect":
            raise DiffcommError(f"the digital baseline assumes perfect CSI, got csi {csi}")
        return
    check_receiver(receiver, encoder, csi)


def check_pair_any_csi(receiver: str, encoder: str, csi_modes: list[str]) -> None:
    """Like :func:`check_pair`, passing if the pair is valid for at least one of the grid's CSI modes
    (points with the other modes are skipped with a note)."""
    first: DiffcommError | None = None
    for csi in csi_modes or ["perfect"]:
        try:
            check_pair(receiver, encoder, csi)
            return
        except DiffcommError as exc:
            first = first or exc
    raise first


def receiver_function(receiver: str):
    """The callable whose keyword arguments are the user options of ``receiver``."""
    if receiver == DIGITAL:
        from diffcomm.transmit.digital import best_config

        return best_config
    from diffcomm.pipeline import get_receiver

    return get_receiver(receiver)


def allowed_options(receiver: str) -> list[str]:
    """Options a grid may set for ``receiver``: its registered options (the digital system: its keywords)."""
    if receiver == DIGITAL:
        params = inspect.signature(receiver_function(receiver)).parameters.values()
        return [p.name for p in params if p.name not in _RUNNER_ARGS
                and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is not p.empty]
    from diffcomm.receivers.base import get_spec

    return list(get_spec(receiver).options)


def uses_prior(receiver: str) -> bool:
    from diffcomm.receivers.base import get_spec

    return receiver != DIGITAL and get_spec(receiver).prior == "denoiser"


def required_models(receiver: str, encoder: str, channel: str, cbr: float,
                    shape: tuple[int, ...] = (1, 28, 28)) -> list[str]:
    """Zoo names a point needs (the DeepJSCC for its channel and CBR, the diffusion prior)."""
    from diffcomm.pipeline import jscc_model_name, prior_names
    from diffcomm.receivers.base import get_spec

    models = []
    if encoder.startswith("deepjscc"):
        variant = encoder.split("-", 1)[1] if "-" in encoder else None
        models.append(jscc_model_name(channel, cbr, variant, channels=3 if shape[0] == 3 else 1))
    if receiver != DIGITAL:
        models.extend(prior_names(get_spec(receiver), shape))
    return models


def missing_model_message(name: str) -> str:
    from diffcomm.zoo import WEIGHTS_DIR

    return (f"model {name!r} is not shipped yet (no {WEIGHTS_DIR / (name + '.safetensors')}); "
            f"train it with its recipe in src/diffcomm/zoo/recipes or choose receivers that do not need it")


def _pairs(spec: GridSpec, notes: list[str]) -> list[tuple[str, str]]:
    from diffcomm.pipeline import encoder_names

    known_receivers = receiver_names()
    known_encoders = [*encoder_names(), DIGITAL]
    for enc in spec.encoders or []:
        if enc not in known_encoders:
            raise DiffcommError(f"unknown encoder {enc!r}; choose from {', '.join(known_encoders)}")
    pairs: list[tuple[str, str]] = []
    for token in spec.receivers:
        receiver, _, encoder = token.partition("@")
        if receiver not in known_receivers:
            raise DiffcommError(f"unknown receiver {receiver!r}; choose from {', '.join(known_receivers)}")
        if encoder:
            if encoder not in known_encoders:
                raise DiffcommError(f"unknown encoder {encoder!r} in {token!r}; choose from "
                                    f"{', '.join(known_encoders)}")
            check_pair_any_csi(receiver, encoder, spec.csi)  # an explicit pair must be valid for some CSI mode
            candidates = [encoder]
        elif receiver == DIGITAL:
            candidates = [DIGITAL]
        else:
            candidates = list(spec.encoders) if spec.encoders else [default_encoder(receiver)]
        for enc in candidates:
            try:
                check_pair_any_csi(receiver, enc, spec.csi)
            except DiffcommError as exc:
                notes.append(f"skipped {receiver}@{enc}: {exc}")
                continue
            if (receiver, enc) not in pairs:
                pairs.append((receiver, enc))
    if not pairs:
        raise DiffcommError(f"no valid receiver/encoder pair in the grid ({notes[0] if notes else 'empty'})")
    return pairs


def _options_for(spec: GridSpec, receiver: str) -> dict[str, Any]:
    allowed = allowed_options(receiver)
    opts: dict[str, Any] = {}
    if spec.steps is not None and uses_prior(receiver) and "steps" in allowed:
        opts["steps"] = spec.steps
    for name, value in spec.options.get(receiver, {}).items():
        if name not in allowed:
            raise DiffcommError(f"receiver {receiver} has no option {name!r}; its options: "
                                f"{', '.join(allowed) or 'none'}")
        opts[name] = value
    if receiver != DIGITAL:  # types and ranges, before any work (the registry's declarations)
        from diffcomm.receivers.base import get_spec

        opts = get_spec(receiver).validate(opts)
    return dict(sorted(opts.items()))


def point_calibration(receiver: str, encoder: str, shape: tuple[int, ...], channel: str, csi: str, snr_db: float,
                      cbr: float, options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The calibrated strength options a point uses (the grid runs every receiver with its default
    prior, so :func:`diffcomm.calibration.calibrated_options` applies; ``{}`` for the digital baseline)."""
    if receiver == DIGITAL:
        return {}
    from diffcomm.calibration import calibrated_options, encoder_id
    from diffcomm.channels import symbols_for_cbr
    from diffcomm.receivers.base import get_spec

    spec = get_spec(receiver)
    if not spec.tunable():
        return {}
    return calibrated_options(spec, encoder_id(encoder, channel, cbr, shape[0]), shape, symbols_for_cbr(cbr, shape),
                              channel, csi, snr_db, options)


def plan(spec: GridSpec, check_models: bool = True) -> Plan:
    """Validate ``spec`` (before any work) and expand it into points in grid order.

    Checks: receiver/encoder/channel/CSI names, receiver options, the dataset and that ``n`` fits
    the split, shipped DeepJSCC models for every (channel, CBR) of a DeepJSCC encoder, the diffusion
    prior for diffusion receivers (``check_models``), and the image shape those models need.
    """
    from diffcomm import zoo
    from diffcomm.data import get_dataset

    notes: list[str] = []
    for ch in spec.channels:
        if ch not in channel_names():
            raise DiffcommError(f"unknown channel {ch!r}; choose from {', '.join(channel_names())}")
    for mode in spec.csi:
        if mode not in CSI_MODES:
            raise DiffcommError(f"unknown CSI mode {mode!r}; choose from {', '.join(CSI_MODES)}")
    pairs = _pairs(spec, notes)
    options = {r: _options_for(spec, r) for r in dict.fromkeys(r for r, _ in pairs)}
    for receiver in spec.options:
        if receiver not in options:
            raise DiffcommError(f"options given for {receiver!r}, which is not a receiver of this grid")

    for receiver in spec.n_per_receiver:
        if receiver not in options:
            raise DiffcommError(f"n_per_receiver gives images for {receiver!r}, which is not a receiver of this grid")
    data = get_dataset(spec.dataset, spec.split)
    size, shape = len(data.images), tuple(data.images.shape[1:])
    for what, n in (("--n", spec.n), *((f"n_per_receiver.{r}", v) for r, v in spec.n_per_receiver.items())):
        if n > size:
            raise DiffcommError(f"{what} {n} is larger than the {spec.dataset} {spec.split} split ({size} images)")

    shipped = set(zoo.list_models()) if check_models else None
    for receiver, encoder in pairs:
        for channel in spec.channels:
            for cbr in spec.cbrs:
                if encoder.startswith("deepjscc") and shape != (1, 28, 28):
                    raise DiffcommError(f"{receiver}@{encoder} uses the shipped Fashion-MNIST models (1x28x28 "
                                        f"images); {spec.dataset} images are {'x'.join(map(str, shape))}")
                names = required_models(receiver, encoder, channel, cbr, shape)
                for name in names:
                    if shipped is not None and name not in shipped:
                        raise DiffcommError(missing_model_message(name))

    points: list[Point] = []
    for receiver, encoder in pairs:
        for csi in spec.csi:
            try:
                check_pair(receiver, encoder, csi)
            except DiffcommError as exc:
                notes.append(f"skipped {receiver}@{encoder} with csi {csi}: {exc}")
                continue
            for channel in spec.channels:
                if receiver == DIGITAL and channel not in FLAT_CHANNELS:
                    notes.append(f"skipped digital over {channel}: the digital baseline models flat fading only")
                    continue
                for cbr in spec.cbrs:
                    for snr in spec.snrs:
                        calibrated = point_calibration(receiver, encoder, shape, channel, csi, snr, cbr,
                                                       options[receiver])
                        for seed in spec.seeds:
                            n = spec.n_per_receiver.get(receiver, spec.n)
                            points.append(Point(receiver, encoder, spec.dataset, spec.split, n, channel, csi,
                                                snr, cbr, seed, spec.batch_size, spec.pilots,
                                                canonical_json(options[receiver]), spec.save_images,
                                                spec.per_image, spec.threads, canonical_json(calibrated),
                                                None if receiver == DIGITAL else spec.posterior_samples))
    if not points:
        raise DiffcommError(f"the grid has no valid point ({notes[0] if notes else 'empty'})")
    if spec.posterior_samples is not None and any(p.receiver == DIGITAL for p in points):
        notes.append("posterior_samples does not apply to the digital baseline (one deterministic decode per image)")
    return Plan(spec, points, notes)


def with_overrides(spec: GridSpec, **changes: Any) -> GridSpec:
    """A copy of ``spec`` with some fields replaced (``None`` values are ignored)."""
    return replace(spec, **{k: v for k, v in changes.items() if v is not None})
