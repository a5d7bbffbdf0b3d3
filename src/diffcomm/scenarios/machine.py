"""The machine-centric scenario: task accuracy against channel uses, SNR and receiver compute.

The receiver's job is a decision (the Fashion-MNIST class), not a picture. Four kinds of pipeline
are compared on one grid of channels × SNRs × budgets:

- ``reconstruct``: any registered receiver (:func:`diffcomm.pipeline.decode`) rebuilds the image,
  then the shipped classifier (``fmnist-classifier``) classifies it — optionally int8-quantised
  (``quantize``: ``dynamic`` linear layers or ``static`` FX int8 of the conv stack,
  :mod:`~diffcomm.scenarios.efficiency`).
- ``taskjscc``: an encoder and a classifier head trained end to end through the channel
  (:mod:`~diffcomm.scenarios.taskjscc`), shipped as ``fmnist-taskjscc-{channel}-k{symbols}``;
  optionally the head int8-quantised (``dynamic``).
- ``semantic``: the transmitter classifies (the shipped classifier) and sends the 4-bit label with
  a channel code and QPSK (:mod:`~diffcomm.scenarios.label_link`).
- ``generative``: a receiver reconstructs (e.g. the DeepJSCC decoder), then the class-conditional
  diffusion prior classifies the reconstruction by its denoising loss
  (:mod:`~diffcomm.scenarios.generative`).

**Records** (JSONL, one per point, :mod:`diffcomm.eval.store`: one fsync'ed line each, a partial
last line dropped on resume, an exclusive lock): the point's settings, ``metrics`` (accuracy with
its 95 % Wilson interval; the accuracy on the first 256 images when a point has more (the images
every point sees, with other noise draws); per kind the PSNR of the reconstruction, label and bit
error rates, the classifier's accuracy on the originals), and ``efficiency``: channel uses,
receiver NFE (network evaluations of a diffusion prior per image), receiver FLOPs per image
(FlopCounterMode, counted at batch 1), int8 operations of quantised layers, transmitter FLOPs,
wall seconds per image (the batched run), peak memory for one image
(:func:`diffcomm.scenarios.efficiency.peak_memory`) and the bytes of the receiver's weights. A
point's key hashes everything its result depends on (settings and the digests of the shipped
weights it uses), so rerunning the same command skips finished points — after ``kill -9`` too —
and a changed config or reshipped model computes new points.

**Receiver options**: the strength options ``diffcomm tune`` calibrated for a receiver (see
:mod:`diffcomm.calibration`) are resolved when the grid is planned, join the point's key and are
passed explicitly; the record's ``receiver_options`` lists every option used.

**Randomness**: each point's channel and receiver generators are seeded from the grid seed and the
point (:func:`diffcomm.eval.grid.derive_seed`), so a point's record does not depend on what ran before.

Example:
    >>> grid = plan_from_mapping({"channels": ["awgn"], "snr_db": [0],
    ...                           "pipeline": [{"kind": "semantic", "codes": ["polar16"], "n": 100}]})
    >>> [p.label for p in grid.points]
    ['semantic label polar16 awgn 0 dB']
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from diffcomm.errors import DiffcommError

PIPELINE_KINDS = ("reconstruct", "taskjscc", "semantic", "generative")
SNR_RANGE = (-30.0, 60.0)  # dB: what the grid accepts (the shipped models were trained on -5..20 or 0..20 dB)
CHANNELS = ("awgn", "rayleigh", "rician")
TOP_KEYS = {"dataset": str, "split": str, "seed": int, "channels": list, "snr_db": list, "csi": str,
            "batch_size": int, "threads": int, "calibration_images": int, "pipeline": list, "description": str}
PIPELINE_KEYS = ("kind", "name", "n", "receiver", "encoder", "symbols", "codes", "options", "quantize", "sigmas",
                 "antithetic", "model", "classifier", "prior", "batch_size", "list_size")
KIND_KEYS = {
    "reconstruct": {"receiver", "encoder", "symbols", "options", "quantize", "classifier"},
    "taskjscc": {"symbols", "quantize", "model"},
    "semantic": {"codes", "classifier", "list_size"},
    "generative": {"receiver", "encoder", "symbols", "options", "sigmas", "antithetic", "prior"},
}
TASKJSCC_MODEL = "fmnist-taskjscc-{channel}-k{symbols}"
COMMON_SUBSET = 256  # points with more images also record their accuracy on the first 256 (paired with the rest)
CLASSIFIER = "fmnist-classifier"
PRIOR = "fmnist-prior"


# ---------------------------------------------------------------------------------------------
# the grid


@dataclass
class PipelineSpec:
    """One ``[[pipeline]]`` table of a scenario config (validated)."""

    kind: str
    name: str
    n: int
    receiver: str | None = None
    encoder: str | None = None
    symbols: list[int] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    quantize: list[str] = field(default_factory=lambda: ["none"])
    sigmas: list[float] = field(default_factory=list)
    antithetic: bool = True
    model: str = TASKJSCC_MODEL
    classifier: str = CLASSIFIER
    prior: str = PRIOR
    batch_size: int | None = None
    list_size: int = 16


@dataclass
class MachinePoint:
    """One grid point: a pipeline variant on one channel at one SNR and one budget."""

    pipeline: PipelineSpec
    channel: str
    snr_db: float
    symbols: int | None          # complex data symbols per image (None for semantic: set by the code)
    code: str | None             # semantic label code
    quantize: str
    dataset: str
    split: str
    seed: int
    csi: str
    batch_size: int
    threads: int
    calibration_images: int
    models: dict[str, str]       # zoo name -> weights digest
    calibrated: dict[str, Any] = field(default_factory=dict)   # receiver options from diffcomm tune's table
    key: str = ""

    @property
    def variant(self) -> str:
        """The pipeline variant (what a frontier line is): the name plus quantisation."""
        return self.pipeline.name + ("" if self.quantize == "none" else f" int8-{self.quantize}")

    @property
    def label(self) -> str:
        budget = self.code if self.code is not None else f"k={self.symbols}"
        return f"{self.variant} {budget} {self.channel} {self.snr_db:g} dB"

    def settings(self) -> dict[str, Any]:
        p = asdict(self.pipeline)
        keep = {"kind", "name", "n", "batch_size"} | KIND_KEYS[self.pipeline.kind]
        p = {k: v for k, v in p.items() if k in keep and k not in ("symbols", "codes", "quantize")}
        return {"pipeline": p, "channel": self.channel, "snr_db": self.snr_db, "symbols": self.symbols,
                "code": self.code, "quantize": self.quantize, "dataset": self.dataset, "split": self.split,
                "seed": self.seed, "csi": self.csi, "batch_size": self.batch_size,
                "calibration_images": self.calibration_images, "models": self.models,
                **({"calibrated": {k: v["value"] for k, v in self.calibrated.items()}} if self.calibrated else {})}


@dataclass
class MachineGrid:
    points: list[MachinePoint]
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _one_line(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def _int_list(value: Any, what: str, low: int = 1, high: int | None = None) -> list[int]:
    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int) or v < low or (high is not None and v > high):
            rng = f">= {low}" if high is None else f"in {low}..{high}"
            raise DiffcommError(f"{what} must be integers {rng}, got {_one_line(v)}")
        out.append(v)
    if not out:
        raise DiffcommError(f"{what} is empty; give at least one value")
    return out


def _check_snrs(value: Any) -> list[float]:
    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise DiffcommError(f"snr_db must be a list of numbers in dB, got {_one_line(v)}")
        if not SNR_RANGE[0] <= v <= SNR_RANGE[1]:
            raise DiffcommError(f"snr_db {v:g} dB is out of range; use values in {SNR_RANGE[0]:g}..{SNR_RANGE[1]:g} dB")
        out.append(float(v))
    if not out:
        raise DiffcommError("snr_db is empty; give at least one SNR in dB")
    if len(set(out)) != len(out):
        raise DiffcommError(f"snr_db lists an SNR twice: {out}")
    return out


def _str_list(value: Any, what: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) and v for v in items):
        raise DiffcommError(f"{what} must be a non-empty list of names, got {_one_line(value)}")
    return list(items)


@functools.lru_cache(maxsize=4)
def _dataset(name: str, split: str):
    from diffcomm.data import get_dataset

    return get_dataset(name, split)


def _digest(name: str) -> str:
    from diffcomm import zoo

    return zoo.weights_digest(name)


def _taskjscc_name(template: str, channel: str, symbols: int) -> str:
    trained = "awgn" if channel == "awgn" else "rayleigh"  # Rician uses the Rayleigh-trained model
    try:
        return template.format(channel=trained, symbols=symbols)
    except (KeyError, IndexError, ValueError):
        raise DiffcommError(f"taskjscc model {template!r} must be a zoo name, optionally with {{channel}} and "
                            f"{{symbols}}") from None


def _parse_pipeline(raw: Any, index: int, shape: tuple[int, ...], n_max: int, csi: str) -> PipelineSpec:
    from diffcomm.scenarios.efficiency import QUANTIZE_MODES

    where = f"pipeline {index + 1}"
    if not isinstance(raw, dict):
        raise DiffcommError(f"{where} must be a table ([[pipeline]]), got {_one_line(raw)}")
    kind = raw.get("kind")
    if kind not in PIPELINE_KINDS:
        raise DiffcommError(f"{where}: unknown pipeline {kind!r}; choose one of {', '.join(PIPELINE_KINDS)}")
    allowed = {"kind", "name", "n", "batch_size"} | KIND_KEYS[kind]
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise DiffcommError(f"{where} ({kind}): unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(allowed))}")
    n = raw.get("n", 256)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= n_max:
        raise DiffcommError(f"{where}: n must be an integer in 1..{n_max} (images of the split), got {_one_line(n)}")
    batch = raw.get("batch_size")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise DiffcommError(f"{where}: batch_size must be a positive integer, got {_one_line(batch)}")
    spec = PipelineSpec(kind=kind, name="", n=n, batch_size=batch)
    pixels = math.prod(shape)
    if kind in ("reconstruct", "generative"):
        for key in ("receiver", "encoder"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise DiffcommError(f"{where} ({kind}): {key} is required (a registered receiver / an encoder name)")
        spec.receiver, spec.encoder = raw["receiver"], raw["encoder"]
        from diffcomm.pipeline import check_receiver, encoder_names, prior_names

        if spec.encoder not in encoder_names():
            raise DiffcommError(f"{where}: unknown encoder {spec.encoder!r}; "
                                f"choose one of {', '.join(encoder_names())}")
        rspec = check_receiver(spec.receiver, spec.encoder, csi)
        options = raw.get("options", {})
        if not isinstance(options, dict):
            raise DiffcommError(f"{where}: options must be a table of receiver options")
        spec.options = rspec.validate(options)
        prior_names(rspec, shape)
    if kind in ("reconstruct", "generative", "taskjscc"):
        if "symbols" not in raw:
            raise DiffcommError(f"{where} ({kind}): symbols (complex channel uses per image) is required")
        spec.symbols = _int_list(raw["symbols"], f"{where}: symbols", 1, pixels)
    if kind in ("reconstruct", "taskjscc"):
        spec.quantize = _str_list(raw.get("quantize", ["none"]), f"{where}: quantize")
        allowed_q = QUANTIZE_MODES if kind == "reconstruct" else ("none", "dynamic")
        bad = [q for q in spec.quantize if q not in allowed_q]
        if bad:
            raise DiffcommError(f"{where}: quantize {bad[0]!r} is not offered for {kind}; "
                                f"choose from {', '.join(allowed_q)}")
    if kind == "taskjscc":
        model = raw.get("model", TASKJSCC_MODEL)
        if not isinstance(model, str) or not model:
            raise DiffcommError(f"{where}: model must be a zoo name (template), got {_one_line(model)}")
        spec.model = model
    if kind in ("reconstruct", "semantic"):
        cls = raw.get("classifier", CLASSIFIER)
        if not isinstance(cls, str):
            raise DiffcommError(f"{where}: classifier must be a zoo name")
        spec.classifier = cls
    if kind == "semantic":
        from diffcomm.scenarios.label_link import LabelLink

        spec.codes = _str_list(raw.get("codes", ["polar16"]), f"{where}: codes")
        ls = raw.get("list_size", 16)
        if isinstance(ls, bool) or not isinstance(ls, int) or ls < 1 or ls & (ls - 1):
            raise DiffcommError(f"{where}: list_size must be a power of two, got {_one_line(ls)}")
        spec.list_size = ls
        for code in spec.codes:
            LabelLink(num_classes=10, code=code, list_size=ls)   # one-line error for a bad code
    if kind == "generative":
        from diffcomm.scenarios.generative import check_sigmas

        spec.sigmas = list(check_sigmas(raw.get("sigmas", [1.6, 3.2])))
        anti = raw.get("antithetic", True)
        if not isinstance(anti, bool):
            raise DiffcommError(f"{where}: antithetic must be true or false")
        spec.antithetic = anti
        prior = raw.get("prior", PRIOR)
        if not isinstance(prior, str):
            raise DiffcommError(f"{where}: prior must be a zoo name")
        spec.prior = prior
    name = raw.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise DiffcommError(f"{where}: name must be a non-empty string")
    spec.name = name or _default_name(spec)
    return spec


def _default_name(spec: PipelineSpec) -> str:
    if spec.kind == "reconstruct":
        return f"{spec.receiver}@{spec.encoder} + classifier"
    if spec.kind == "generative":
        nfe = len(spec.sigmas) * (2 if spec.antithetic else 1) * 10
        return f"{spec.receiver}@{spec.encoder} + diffusion classifier ({nfe} NFE)"
    if spec.kind == "taskjscc":
        return "task JSCC"
    return "semantic label"


def plan_from_mapping(config: dict[str, Any]) -> MachineGrid:
    """Validate a scenario config and list its points (one-line :class:`DiffcommError` before any work)."""
    from diffcomm import zoo
    from diffcomm.checks import check_section_keys

    if not isinstance(config, dict):
        raise DiffcommError("the scenario config must be a table of settings")
    check_section_keys(config, TOP_KEYS, "scenario setting")
    dataset, split = config.get("dataset", "fashion-mnist"), config.get("split", "test")
    data = _dataset(dataset, split)
    shape = tuple(data.images.shape[1:])
    seed = config.get("seed", 0)
    from diffcomm.checks import check_seed

    seed = check_seed(seed, "seed")
    channels = _str_list(config.get("channels", ["awgn"]), "channels")
    bad = [c for c in channels if c not in CHANNELS]
    if bad:
        raise DiffcommError(f"unknown channel {bad[0]!r}; choose from {', '.join(CHANNELS)}")
    snrs = _check_snrs(config.get("snr_db", [0.0]))
    csi = config.get("csi", "perfect")
    if csi not in ("perfect",):
        raise DiffcommError(f"csi {csi!r} is not offered by the machine scenario (its task pipelines assume "
                            f"perfect receiver CSI); use csi = \"perfect\"")
    batch = config.get("batch_size", 100)
    threads = config.get("threads", 1)
    calib = config.get("calibration_images", 512)
    for name, value, low in (("batch_size", batch, 1), ("threads", threads, 1), ("calibration_images", calib, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise DiffcommError(f"{name} must be an integer >= {low}, got {_one_line(value)}")
    raw = config.get("pipeline", [])
    if not raw:
        raise DiffcommError("the scenario lists no pipeline; add [[pipeline]] tables (kind = reconstruct, "
                            "taskjscc, semantic or generative)")
    specs = [_parse_pipeline(r, i, shape, len(data.images), csi) for i, r in enumerate(raw)]
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DiffcommError(f"two pipelines are named {dup[0]!r}; give them distinct name = ...")
    if any(s.kind != "reconstruct" or s.encoder.startswith("deepjscc") for s in specs) and shape != (1, 28, 28):
        raise DiffcommError(f"the shipped task models code 1x28x28 images; {dataset} images are "
                            f"{'x'.join(map(str, shape))}")
    shipped = zoo.list_models()

    def need(name: str) -> str:
        if name not in shipped:
            raise DiffcommError(f"model {name!r} is not shipped; shipped models: {', '.join(shipped)}")
        return _digest(name)

    points: list[MachinePoint] = []
    for spec in specs:
        for channel in channels:
            for snr in snrs:
                budgets: list[tuple[int | None, str | None]] = (
                    [(None, c) for c in spec.codes] if spec.kind == "semantic" else [(k, None) for k in spec.symbols])
                for k, code in budgets:
                    for q in spec.quantize if spec.kind in ("reconstruct", "taskjscc") else ["none"]:
                        models = _point_models(spec, channel, k, need)
                        point = MachinePoint(spec, channel, snr, k, code, q, dataset, split, seed, csi,
                                             spec.batch_size or batch, threads, calib, models,
                                             _calibrated(spec, channel, snr, k, shape, csi))
                        blob = json.dumps(point.settings(), sort_keys=True)
                        point.key = f"{point.label} #{hashlib.sha256(blob.encode()).hexdigest()[:12]}"
                        points.append(point)
    return MachineGrid(points=points, config=config)


def _calibrated(spec: PipelineSpec, channel: str, snr: float, k: int | None, shape, csi: str) -> dict[str, Any]:
    """The calibrated strength options (``diffcomm tune``'s table) ``decode`` would fill in for this point's
    receiver, resolved at plan time: they join the point's key and are passed to the receiver explicitly,
    so a record always names the options it ran with, whatever the table holds later."""
    if spec.kind not in ("reconstruct", "generative"):
        return {}
    from diffcomm.pipeline import get_spec

    rspec = get_spec(spec.receiver)
    if not rspec.tunable():
        return {}
    from diffcomm.calibration import calibrated_options, encoder_id

    cbr = k / math.prod(shape)
    return calibrated_options(rspec, encoder_id(spec.encoder, channel, cbr), shape, k, channel, csi, snr,
                              spec.options)


def _point_models(spec: PipelineSpec, channel: str, k: int | None, need) -> dict[str, str]:
    from diffcomm.pipeline import get_spec, jscc_model_name, prior_names

    names: list[str] = []
    if spec.kind in ("reconstruct", "generative"):
        if spec.encoder.startswith("deepjscc"):
            variant = spec.encoder.split("-", 1)[1] if "-" in spec.encoder else None
            names.append(jscc_model_name(channel, k / 784, variant))
        names += prior_names(get_spec(spec.receiver), (1, 28, 28))
    if spec.kind in ("reconstruct", "semantic"):
        names.append(spec.classifier)
    if spec.kind == "generative":
        names.append(spec.prior)
    if spec.kind == "taskjscc":
        names.append(_taskjscc_name(spec.model, channel, k))
    return {n: need(n) for n in dict.fromkeys(names)}


def load_scenario_config(path: str | Path) -> dict[str, Any]:
    from diffcomm.checks import read_config_file

    return read_config_file(path, what="scenario config")


# ---------------------------------------------------------------------------------------------
# one point


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


@functools.lru_cache(maxsize=8)
def _quantized(name: str, mode: str, calibration: int) -> torch.nn.Module:
    from diffcomm import zoo
    from diffcomm.scenarios.efficiency import quantize

    model = zoo.load(name)
    cal = _dataset("fashion-mnist", "train").images[:calibration] if mode == "static" else None
    return quantize(model, mode, cal)


@functools.lru_cache(maxsize=4)
def _transmitter_labels(classifier: str, dataset: str, split: str, n: int) -> torch.Tensor:
    from diffcomm import zoo
    from diffcomm.metrics.classifier import predict

    logits, _ = predict(zoo.load(classifier), _dataset(dataset, split).images[:n])
    return logits.argmax(1)


def _gen(point: MachinePoint, what: str) -> torch.Generator:
    from diffcomm.eval.grid import derive_seed

    return torch.Generator().manual_seed(derive_seed(point.seed, f"{what}|{point.key}"))


def _classify(net, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net(x.float()).argmax(1)


def _link(point: MachinePoint, shape):
    from diffcomm.pipeline import build_link

    n_pix = math.prod(shape)
    link = build_link(point.pipeline.encoder, tuple(shape), point.symbols / n_pix, point.channel, point.snr_db,
                      csi=point.csi, seed=point.seed)
    if link.k != point.symbols:
        raise DiffcommError(f"{point.pipeline.name}: encoder {point.pipeline.encoder} gives {link.k} symbols, "
                            f"not {point.symbols}")
    return link


def run_point(point: MachinePoint) -> dict[str, Any]:
    """Compute one point's record (see the module docstring)."""
    from diffcomm import __version__, zoo
    from diffcomm.scenarios.efficiency import MEMORY_METHOD, count_flops, probe, weight_bytes

    previous = torch.get_num_threads()
    torch.set_num_threads(point.threads)
    try:
        t_start = time.perf_counter()
        spec = point.pipeline
        data = _dataset(point.dataset, point.split)
        x, labels = data.images[:spec.n], data.labels[:spec.n]
        shape = tuple(x.shape[1:])
        g_channel, g_receiver = _gen(point, "channel"), _gen(point, "receiver")
        notes: list[str] = []
        metrics: dict[str, Any] = {}
        rx_seconds = 0.0
        nfe = 0.0
        predictions: list[torch.Tensor] = []
        receiver_models: list[torch.nn.Module] = []
        tx_flops: int | None = None
        bs = point.batch_size
        extra: dict[str, Any] = {}

        if spec.kind in ("reconstruct", "generative"):
            from diffcomm.pipeline import decode

            link = _link(point, shape)
            uses = link.channel_uses
            prior = zoo.load(spec.prior) if spec.kind == "generative" else None
            net = _quantized(spec.classifier, point.quantize, point.calibration_images) if spec.kind == "reconstruct" \
                else None
            psnrs = []

            options = {**{k_: v["value"] for k_, v in point.calibrated.items()}, **spec.options}
            used: dict[str, Any] = {}

            def receive(rx, generator):
                from diffcomm.scenarios.generative import generative_classify

                res = decode(spec.receiver, link, rx, generator=generator, dataset=point.dataset, **options)
                used.update(res.extras.get("options_used") or {})
                x_hat = res.x_hat.detach().float().clamp(0, 1)
                if spec.kind == "reconstruct":
                    return _classify(net, x_hat), x_hat, res.nfe
                g = generative_classify(prior, x_hat, spec.sigmas, generator=generator, antithetic=spec.antithetic)
                return g.labels, x_hat, res.nfe + g.nfe

            for i in range(0, spec.n, bs):
                rx = link.transmit(x[i:i + bs], generator=g_channel)
                t0 = time.perf_counter()
                pred, x_hat, batch_nfe = receive(rx, g_receiver)
                rx_seconds += time.perf_counter() - t0
                predictions.append(pred)
                nfe += batch_nfe * len(pred)
                psnrs.append(-10 * torch.log10((x_hat - x[i:i + bs]).pow(2).flatten(1).mean(1).clamp_min(1e-10)))
            metrics["psnr"] = float(torch.cat(psnrs).mean())
            rx1 = link.transmit(x[:1], generator=_gen(point, "probe"))
            def call():
                return receive(rx1, _gen(point, "probe-receiver"))
            from diffcomm.pipeline import default_prior, get_spec

            rspec = get_spec(spec.receiver)
            rx_prior = default_prior(rspec, shape, point.dataset) if rspec.prior == "denoiser" else None
            receiver_models = [m for m in (net, prior, rx_prior, getattr(link.encoder, "model", None))
                               if isinstance(m, torch.nn.Module)]
            if rspec.prior == "gaussian":
                notes.append(f"weights: the Gaussian prior of {spec.receiver} (mean and covariance fitted to training "
                             f"images) is not counted")
            if getattr(link.encoder, "model", None) is not None:
                notes.append("weights: the whole DeepJSCC model is counted at the receiver (its guided receivers "
                             "re-encode; the plain decoder needs only the decoder half)")
            if spec.kind == "reconstruct":
                metrics["accuracy_classifier_on_originals"] = float(
                    (_classify(zoo.load(spec.classifier), x) == labels).float().mean())
            extra["receiver_options"] = {"used": dict(used), "calibrated": point.calibrated,
                                         "given": spec.options}
            if link.kind == "jscc":
                _, tx_flops = count_flops(lambda: link.encoder(x[:1]))
            elif link.is_linear:
                tx_flops = 2 * 2 * link.k * math.prod(shape)   # the real (2k × n) matrix times the image
                notes.append("transmitter FLOPs of the linear encoder: 2·(2k)·n (its dense matrix-vector product)")

        elif spec.kind == "taskjscc":
            from diffcomm.link import Link
            from diffcomm.scenarios.efficiency import quantize
            from diffcomm.scenarios.taskjscc import TaskJSCCEncoder, head_logits

            name = _taskjscc_name(spec.model, point.channel, point.symbols)
            model = zoo.load(name)
            if model.k != point.symbols:
                raise DiffcommError(f"{name} sends {model.k} symbols, not {point.symbols}")
            rx_model = quantize(model, "dynamic") if point.quantize == "dynamic" else model
            link = Link(TaskJSCCEncoder(model, point.snr_db, name=name), point.channel, point.snr_db, csi=point.csi)
            uses = link.channel_uses
            for i in range(0, spec.n, bs):
                rx = link.transmit(x[i:i + bs], generator=g_channel)
                t0 = time.perf_counter()
                predictions.append(head_logits(rx_model, link, rx).argmax(1))
                rx_seconds += time.perf_counter() - t0
            rx1 = link.transmit(x[:1], generator=_gen(point, "probe"))
            def call():
                return head_logits(rx_model, link, rx1)
            receiver_models = [rx_model.head if point.quantize == "dynamic" else model.head]
            _, tx_flops = count_flops(lambda: link.encoder(x[:1]))
            if point.channel == "rician":
                notes.append(f"rician: the Rayleigh-trained model {name}")

        else:  # semantic
            from diffcomm.scenarios.label_link import LabelLink

            net = zoo.load(spec.classifier)
            sent = _transmitter_labels(spec.classifier, point.dataset, point.split, spec.n)
            llink = LabelLink(num_classes=10, code=point.code, channel=point.channel, list_size=spec.list_size)
            uses = llink.channel_uses
            bit_errors, label_errors, invalid = 0, 0, 0
            for i in range(0, spec.n, bs):
                y, h, n0, bits = llink.transmit(sent[i:i + bs], point.snr_db, generator=g_channel)
                t0 = time.perf_counter()
                got, bits_hat = llink.receive(y, h, n0)
                rx_seconds += time.perf_counter() - t0
                predictions.append(got)
                bit_errors += int((bits_hat != bits).sum())
                label_errors += int((got != sent[i:i + bs]).sum())
                invalid += int((got >= 10).sum())
            metrics.update({"bit_error_rate": bit_errors / (spec.n * llink.bits),
                            "label_error_rate": label_errors / spec.n, "invalid_label_rate": invalid / spec.n,
                            "accuracy_transmitter_classifier": float((sent == labels).float().mean())})
            y1, h1, n01, _ = llink.transmit(sent[:1], point.snr_db, generator=_gen(point, "probe"))
            def call():
                return llink.receive(y1, h1, n01)
            _, tx_flops = count_flops(lambda: _classify(net, x[:1]))
            extra["label_link"] = llink.describe()
            notes.append("receiver FLOPs: FlopCounterMode counts matrix products and convolutions; the demapper "
                         "and the SCL decoder use none (additions, comparisons), so it counts ~0")

        pred = torch.cat(predictions)
        correct = int((pred == labels).sum())
        metrics["accuracy"] = correct / spec.n
        metrics["accuracy_ci95"] = list(wilson_interval(correct, spec.n))
        metrics["correct"] = correct
        if spec.n > COMMON_SUBSET:   # the images every pipeline of the committed grid sees (paired comparisons)
            metrics[f"accuracy_first_{COMMON_SUBSET}"] = float(
                (pred[:COMMON_SUBSET] == labels[:COMMON_SUBSET]).float().mean())
        efficiency = probe(call, receiver_models)
        weights = sum(weight_bytes(m) for m in receiver_models)
        record = {
            "key": point.key, "scenario": "machine", "pipeline": spec.name, "kind": spec.kind,
            "variant": point.variant, "receiver": spec.receiver, "encoder": spec.encoder,
            "quantize": point.quantize, "code": point.code, "channel": point.channel, "csi": point.csi,
            "snr_db": point.snr_db, "symbols": point.symbols, "channel_uses": int(uses),
            "dataset": point.dataset, "split": point.split, "n": spec.n, "seed": point.seed,
            "settings": point.settings()["pipeline"], "metrics": metrics,
            "efficiency": {"channel_uses": int(uses), "nfe": nfe / spec.n if spec.n else 0.0,
                           "flops_receiver": efficiency["flops"], "int8_ops_receiver": efficiency["int8_ops"],
                           "flops_transmitter": tx_flops, "seconds_per_image": rx_seconds / spec.n,
                           "batch_size": bs, "probe_seconds_one_image": efficiency["probe_seconds"],
                           "peak_mem_bytes_one_image": efficiency["peak_mem_bytes"], "memory_method": MEMORY_METHOD,
                           "receiver_weight_bytes": weights,
                           "flops_method": "torch.utils.flop_counter.FlopCounterMode at batch 1 (matmul/conv/"
                                           "attention, backward included); int8 ops from the quantised layers' shapes"},
            **extra,
            "models": point.models, "notes": notes,
            "seconds": {"total": time.perf_counter() - t_start, "receiver": rx_seconds},
            "version": __version__, "git_revision": _git_revision(),
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                        "torch_threads": point.threads},
            "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        return _clean(record)
    finally:
        torch.set_num_threads(previous)


@functools.lru_cache(maxsize=1)
def _git_revision() -> str:
    from diffcomm.utils import git_revision

    return git_revision()


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# the run


RECORDS_FILE = "records.jsonl"


@dataclass
class ScenarioSummary:
    records: list[dict[str, Any]]     # this grid's records, in grid order
    computed: int
    reused: int
    seconds: float


def run_scenario(grid: MachineGrid, out_dir: str | Path, progress: bool = True) -> ScenarioSummary:
    """Compute the points missing from ``OUT/records.jsonl`` (resumable), then write the report."""
    from tqdm.auto import tqdm

    from diffcomm.checks import check_output_path
    from diffcomm.eval.store import ResultsWriter, load_records

    out = Path(out_dir)
    check_output_path(out, "dir")
    path = out / RECORDS_FILE
    t0 = time.time()
    computed = 0
    with ResultsWriter(path) as writer:
        done = {r["key"]: r for r in load_records(path, repair=False)}   # under the lock
        todo = [p for p in grid.points if p.key not in done]
        bar = tqdm(todo, disable=not progress, desc="machine scenario", dynamic_ncols=True, unit="point")
        for point in bar:
            bar.set_postfix_str(point.label[:60])
            record = run_point(point)
            writer.append(record)
            done[point.key] = record
            computed += 1
        bar.close()
    records = [done[p.key] for p in grid.points]
    from diffcomm.scenarios.report import write_report

    write_report(records, out, grid.config)
    return ScenarioSummary(records=records, computed=computed, reused=len(grid.points) - computed,
                           seconds=time.time() - t0)
