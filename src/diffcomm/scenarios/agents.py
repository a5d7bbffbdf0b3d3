"""The agent-centric scenario: K agents, partial views, one shared diffusion prior; centralised vs distributed.

**Setting.** K agents (2 to 4) look at the same Fashion-MNIST item through partial views (``views``:
``random`` (default) — each a seeded random ``coverage`` (0.4) fraction of the pixels, like sensors with
different occlusions; ``strips`` — K complementary vertical strips; ``quadrants`` — the four quarters, K = 4).
Complementary crops can leave a view almost black (the background of a sandal's side strip), and the link's
per-image power normalisation then blows the few non-zero values up by orders of magnitude, which the exact
``lmmse`` survives but a sampler's guidance (ΠGDM gave NaN) may not. Agent k codes its view with its own
linear encoder (a seeded Gaussian projection of its pixels, ``symbols`` complex symbols) and sends it over its
own channel (``channels``) at its own SNR (grid ``snr_db`` plus ``snr_offsets_db[k]``), perfect CSI. Every
decoder uses the same shared prior (the receiver's default: the shipped Fashion-MNIST diffusion prior, or the
fitted Gaussian for ``lmmse``) and the shared classifier.

**Modes** (one record per point):

- ``centralised``: a fusion centre receives all K views and samples p(x | y₁ … y_K) — the sum of the K
  likelihood terms, written as one whitened linear link (:func:`diffcomm.scenarios.fusion.fuse`) — with
  any receiver that takes a linear link (``receivers``: pigdm (default), lmmse, dps, ddnm, diffpir, …;
  run with their registered defaults — the calibration table is per single link, not per fusion), then
  classifies. Channel uses: Σ_k k_k.
- ``distributed``: every agent broadcasts its coded view once (Σ_k k_k uses); agent i decodes from its own
  pixels (8-bit precision, or ``sensor_noise_std``) and the neighbours' broadcasts it overhears (their
  encoders, its own noise and fading draws, SNR + ``overhear_offset_db``) with the same receiver, then the
  agents run ``rounds`` rounds of belief consensus with 6-bit (label, confidence) messages, Sionna polar
  coded (:mod:`~diffcomm.scenarios.consensus`, :class:`~diffcomm.scenarios.label_link.LabelLink`), each
  round K broadcasts of ``message_code``'s uses.
- ``local``: as distributed, but no view is shared: each agent decodes its own pixels only and the agents
  exchange only the consensus messages (the semantic-only end of the trade-off).

Measured: accuracy of each agent's decision (mean over agents) and of the majority, agreement (all
agents decide alike), each agent's PSNR of its reconstruction, total channel uses including every
consensus message, NFE per agent and in total, receiver seconds per image, rounds.

**Policy** (``[policy]``, :mod:`~diffcomm.scenarios.policy`): how should one agent send its decision to
the centre? Task-JSCC (the shipped ``fmnist-taskjscc-awgn-k{k}``) with k from a set, at a power from a
set, or silent, chosen from its state (average SNR, current fading gain). The accuracy table is measured
on training images; the oracle is the exhaustive search of the reward ``accuracy − λ·uses − λ_E·energy``;
a diffusion policy is cloned from it; all policies (oracle, diffusion, every fixed action, the best fixed
one chosen on training states) are then *measured* on the test images through the channel.

**Records** are JSONL lines (:mod:`diffcomm.eval.store`, one fsync'ed line each, resumable after
``kill -9``); a point's key hashes its settings and the weights it uses. Decodes shared by the
``rounds`` of one setting are computed once per process.

Example:
    >>> grid = plan_from_mapping({"agents": 2, "snr_db": [10], "symbols": [16], "receivers": ["lmmse"],
    ...                           "modes": ["centralised"], "n": 8})
    >>> [p.label for p in grid.points]
    ['centralised lmmse k=16 10 dB']
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diffcomm.errors import DiffcommError
from diffcomm.scenarios.machine import _one_line

MODES = ("centralised", "distributed", "local")
VIEWS = ("strips", "quadrants", "random")
CHANNELS = ("awgn", "rayleigh")
TOP_KEYS = {"description": str, "dataset": str, "split": str, "n": int, "seed": int, "batch_size": int,
            "threads": int, "agents": int, "views": str, "coverage": float, "topology": str, "snr_db": list,
            "symbols": list, "snr_offsets_db": list, "channels": list, "overhear_offset_db": float,
            "sensor_noise_std": float, "receivers": list, "options": dict, "modes": list, "rounds": list,
            "message_code": str, "levels": int, "classifier": str, "policy": dict}
POLICY_KEYS = {"symbols": list, "power_db": list, "snr_db_range": list, "lambda_uses": float,
               "lambda_energy": float, "train_states": int, "train_steps": int, "table_images": int,
               "diffusion_steps": int, "n": int}
CLASSES = 10
RECORDS_FILE = "records.jsonl"


@dataclass
class AgentsPoint:
    kind: str                   # centralised | distributed | local | policy
    settings: dict[str, Any]
    key: str = ""

    @property
    def label(self) -> str:
        s = self.settings
        if self.kind == "policy":
            return "policy"
        rounds = f" r={s['rounds']}" if self.kind != "centralised" else ""
        return f"{self.kind} {s['receiver']} k={s['symbols']} {s['snr_db']:g} dB{rounds}"


@dataclass
class AgentsGrid:
    points: list[AgentsPoint]
    config: dict[str, Any]


def _number_list(value: Any, what: str, low: float, high: float, integer: bool = False) -> list:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise DiffcommError(f"{what} is empty; give at least one value")
    for v in items:
        ok = not isinstance(v, bool) and isinstance(v, int if integer else (int, float))
        if not ok or not math.isfinite(v) or not low <= v <= high:
            kind = "integers" if integer else "numbers"
            raise DiffcommError(f"{what} must be {kind} in {low:g}..{high:g}, got {_one_line(v)}")
    if len(set(items)) != len(items):
        raise DiffcommError(f"{what} lists a value twice: {items}")
    return [int(v) if integer else float(v) for v in items]


def _check_policy(raw: dict[str, Any]) -> dict[str, Any]:
    from diffcomm.checks import check_section_keys
    from diffcomm.scenarios.policy import ActionSet

    check_section_keys(raw, POLICY_KEYS, "policy setting")
    p = {"symbols": _number_list(raw.get("symbols", [1, 2, 4, 8, 16]), "policy symbols", 1, 49, True),
         "power_db": _number_list(raw.get("power_db", [-6.0, -3.0, 0.0]), "policy power_db", -30, 10),
         "snr_db_range": _number_list(raw.get("snr_db_range", [-5.0, 20.0]), "policy snr_db_range", -30, 40),
         "lambda_uses": float(raw.get("lambda_uses", 0.01)), "lambda_energy": float(raw.get("lambda_energy", 0.005)),
         "train_states": raw.get("train_states", 4096), "train_steps": raw.get("train_steps", 3000),
         "table_images": raw.get("table_images", 2000), "diffusion_steps": raw.get("diffusion_steps", 32),
         "n": raw.get("n", 1000)}
    if len(p["snr_db_range"]) != 2 or p["snr_db_range"][0] >= p["snr_db_range"][1]:
        raise DiffcommError(f"policy snr_db_range must be [low, high] with low < high, got {p['snr_db_range']}")
    for name in ("lambda_uses", "lambda_energy"):
        if not (math.isfinite(p[name]) and 0 <= p[name] <= 1):
            raise DiffcommError(f"policy {name} must be in 0..1 (reward per channel use / unit energy)")
    for name, low, high in (("train_states", 16, 10 ** 6), ("train_steps", 1, 10 ** 6), ("table_images", 10, 60000),
                            ("diffusion_steps", 2, 1000), ("n", 10, 10000)):
        v = p[name]
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise DiffcommError(f"policy {name} must be an integer in {low}..{high}, got {_one_line(v)}")
    from diffcomm import zoo

    for k in p["symbols"]:
        if f"fmnist-taskjscc-awgn-k{k}" not in zoo.list_models():
            shipped = sorted(int(m.rsplit("k", 1)[1]) for m in zoo.list_models()
                             if m.startswith("fmnist-taskjscc-awgn-k"))
            raise DiffcommError(f"policy symbols {k}: no shipped task-JSCC model fmnist-taskjscc-awgn-k{k}; "
                                f"choose from {shipped}")
    ActionSet(tuple(p["symbols"]), tuple(p["power_db"]))
    return p


def plan_from_mapping(config: dict[str, Any]) -> AgentsGrid:
    """Validate an agents-scenario config and list its points (one-line :class:`DiffcommError` before any work)."""
    from diffcomm import zoo
    from diffcomm.checks import check_section_keys, check_seed
    from diffcomm.pipeline import get_spec
    from diffcomm.scenarios.consensus import TOPOLOGIES, message_bits
    from diffcomm.scenarios.label_link import LabelLink

    if not isinstance(config, dict):
        raise DiffcommError("the scenario config must be a table of settings")
    check_section_keys(config, TOP_KEYS, "agents scenario setting")
    dataset, split = config.get("dataset", "fashion-mnist"), config.get("split", "test")
    if dataset != "fashion-mnist":
        raise DiffcommError(f"the agents scenario runs on fashion-mnist (its shared prior and classifier), "
                            f"got {dataset!r}")
    if split not in ("train", "test"):
        raise DiffcommError(f"split must be 'train' or 'test', got {split!r}")
    seed = check_seed(config.get("seed", 0), "seed")
    k_agents = config.get("agents", 3)
    if isinstance(k_agents, bool) or not isinstance(k_agents, int) or not 2 <= k_agents <= 4:
        raise DiffcommError(f"agents must be an integer in 2..4, got {_one_line(k_agents)}")
    views = config.get("views", "random")
    if views not in VIEWS:
        raise DiffcommError(f"unknown views {views!r}; choose one of {', '.join(VIEWS)}")
    if views == "quadrants" and k_agents != 4:
        raise DiffcommError(f"views = 'quadrants' needs agents = 4, got {k_agents}")
    coverage = float(config.get("coverage", 0.4))
    if not 0.05 <= coverage <= 1.0:
        raise DiffcommError(f"coverage must be in 0.05..1 (fraction of pixels each agent sees), got {coverage!r}")
    topology = config.get("topology", "complete")
    if topology not in TOPOLOGIES:
        raise DiffcommError(f"unknown topology {topology!r}; choose one of {', '.join(TOPOLOGIES)}")
    n = config.get("n", 256)
    batch = config.get("batch_size", 64)
    threads = config.get("threads", 1)
    for name, v, low, high in (("n", n, 1, 10000), ("batch_size", batch, 1, 10000), ("threads", threads, 1, 256)):
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise DiffcommError(f"{name} must be an integer in {low}..{high}, got {_one_line(v)}")
    snrs = _number_list(config.get("snr_db", [10.0]), "snr_db", -20, 40)
    symbols = _number_list(config.get("symbols", [16]), "symbols", 1, 392, True)
    offsets = config.get("snr_offsets_db", [0.0] * k_agents)
    if not isinstance(offsets, list) or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                            or not math.isfinite(v) or not -20 <= v <= 20 for v in offsets):
        raise DiffcommError(f"snr_offsets_db must be a list of numbers in -20..20 dB, got {_one_line(offsets)}")
    offsets = [float(v) for v in offsets]
    if len(offsets) != k_agents:
        raise DiffcommError(f"snr_offsets_db must give one offset per agent ({k_agents}), got {len(offsets)}")
    channels = config.get("channels", ["awgn"] * k_agents)
    if isinstance(channels, str):
        channels = [channels] * k_agents
    if not isinstance(channels, list) or len(channels) != k_agents or any(c not in CHANNELS for c in channels):
        raise DiffcommError(f"channels must list one of {', '.join(CHANNELS)} per agent ({k_agents}), "
                            f"got {_one_line(channels)}")
    overhear = float(config.get("overhear_offset_db", 0.0))
    sensor = float(config.get("sensor_noise_std", 0.0))
    if not 0 <= sensor <= 0.5:
        raise DiffcommError(f"sensor_noise_std must be in 0..0.5 (pixel units), got {sensor!r}")
    receivers = config.get("receivers", ["pigdm"])
    if not isinstance(receivers, list) or not receivers:
        raise DiffcommError("receivers must be a non-empty list of registered receiver names")
    options = config.get("options", {})
    if not isinstance(options, dict):
        raise DiffcommError("options must be a table of per-receiver option tables")
    checked_options = {}
    for name in receivers:
        spec = get_spec(name)
        spec.check_link("linear", "perfect")
        opts = options.get(name, {})
        if not isinstance(opts, dict):
            raise DiffcommError(f"options.{name} must be a table of receiver options")
        checked_options[name] = spec.validate(opts)
    unknown = sorted(set(options) - set(receivers))
    if unknown:
        raise DiffcommError(f"options.{unknown[0]} names a receiver not in receivers = {receivers}")
    modes = config.get("modes", list(MODES))
    if not isinstance(modes, list) or not modes or any(m not in MODES for m in modes):
        raise DiffcommError(f"modes must list some of {', '.join(MODES)}, got {_one_line(modes)}")
    rounds = _number_list(config.get("rounds", [0, 1, 2]), "rounds", 0, 50, True)
    code = config.get("message_code", "polar16")
    levels = config.get("levels", 4)
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= 16:
        raise DiffcommError(f"levels must be an integer in 1..16 (confidence buckets per message), got {levels!r}")
    LabelLink(num_classes=CLASSES * levels, code=code)           # one-line error for a bad code
    classifier = config.get("classifier", "fmnist-classifier")
    if classifier not in zoo.list_models():
        raise DiffcommError(f"classifier {classifier!r} is not shipped; shipped: {', '.join(zoo.list_models())}")
    policy = _check_policy(config["policy"]) if "policy" in config else None

    common = {"dataset": dataset, "split": split, "n": n, "seed": seed, "agents": k_agents, "views": views,
              "coverage": coverage if views == "random" else None, "topology": topology,
              "snr_offsets_db": offsets, "channels": channels, "overhear_offset_db": overhear,
              "sensor_noise_std": sensor, "message_code": code, "levels": levels, "classifier": classifier,
              "message_bits": message_bits(CLASSES, levels)}
    models = {classifier: zoo.weights_digest(classifier)}
    points: list[AgentsPoint] = []
    for receiver in receivers:
        from diffcomm.pipeline import prior_names

        spec = get_spec(receiver)
        rmodels = {**models, **{m: zoo.weights_digest(m) for m in prior_names(spec, (1, 28, 28))}}
        for snr in snrs:
            for k in symbols:
                for mode in modes:
                    for r in ([None] if mode == "centralised" else rounds):
                        s = {**common, "mode": mode, "receiver": receiver, "options": checked_options[receiver],
                             "snr_db": snr, "symbols": k, "rounds": r, "models": rmodels}
                        points.append(AgentsPoint(mode, s))
    if policy is not None:
        pmodels = {f"fmnist-taskjscc-awgn-k{k}": zoo.weights_digest(f"fmnist-taskjscc-awgn-k{k}")
                   for k in policy["symbols"]}
        points.append(AgentsPoint("policy", {"dataset": dataset, "split": split, "seed": seed, **policy,
                                             "models": pmodels}))
    for p in points:
        blob = json.dumps({"kind": p.kind, **p.settings}, sort_keys=True)
        p.key = f"{p.label} #{hashlib.sha256(blob.encode()).hexdigest()[:12]}"
    return AgentsGrid(points=points, config=config)


def load_scenario_config(path: str | Path) -> dict[str, Any]:
    from diffcomm.checks import read_config_file

    return read_config_file(path, what="agents scenario config")


# ---------------------------------------------------------------------------------------------
# the setting


def view_masks(views: str, agents: int, shape=(1, 28, 28), coverage: float = 0.5, seed: int = 0) -> torch.Tensor:
    """Bool ``(K, C, H, W)``: the pixels each agent sees (see the module docstring)."""
    _, h, w = shape
    masks = torch.zeros(agents, *shape, dtype=torch.bool)
    if views == "strips":
        edges = [round(i * w / agents) for i in range(agents + 1)]
        for k in range(agents):
            masks[k, :, :, edges[k]:edges[k + 1]] = True
    elif views == "quadrants":
        rows, cols = (slice(0, h // 2), slice(h // 2, h)), (slice(0, w // 2), slice(w // 2, w))
        for k, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            masks[k, :, rows[i], cols[j]] = True
    elif views == "random":
        gen = torch.Generator().manual_seed(seed)
        masks = torch.rand(agents, *shape, generator=gen) < coverage
    else:
        raise DiffcommError(f"unknown views {views!r}; choose one of {', '.join(VIEWS)}")
    return masks


def view_encoder(mask: torch.Tensor, k: int, seed: int):
    """A Gaussian projection of the masked pixels only: ``E = G ⊙ mask`` scaled so rows keep unit expected norm."""
    from diffcomm.transmit.linear import GaussianProjection, LinearEncoder

    shape = tuple(mask.shape)
    g = GaussianProjection(shape, k, seed=seed).matrix
    m = int(mask.sum())
    matrix = g * mask.flatten()[None].float() * math.sqrt(mask.numel() / m)
    return LinearEncoder(matrix, shape, "view-gaussian")


def _derive(seed: int, what: str) -> int:
    from diffcomm.eval.grid import derive_seed

    return derive_seed(seed, what)


_DECODES: dict[str, dict[str, Any]] = {}


def _setting_id(s: dict[str, Any]) -> str:
    keep = {k: v for k, v in s.items() if k not in ("rounds", "mode")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def _agents_links(s: dict[str, Any]):
    from diffcomm.link import Link

    masks = view_masks(s["views"], s["agents"], coverage=s["coverage"] or 0.5, seed=_derive(s["seed"], "views"))
    links = []
    for k in range(s["agents"]):
        enc = view_encoder(masks[k], s["symbols"], _derive(s["seed"], f"encoder {k}"))
        links.append(Link(enc, s["channels"][k], s["snr_db"] + s["snr_offsets_db"][k]))
    return masks, links


def _decode(receiver: str, options: dict[str, Any], observations, generator):
    from diffcomm.pipeline import decode
    from diffcomm.scenarios.fusion import fuse

    link, rx = fuse(observations)
    res = decode(receiver, link, rx, generator=generator, calibration=False, dataset="fashion-mnist", **options)
    return res.x_hat.detach().float().clamp(0, 1), float(res.nfe)


def _views(x: torch.Tensor, masks: torch.Tensor, sensor: float, gen: torch.Generator) -> list[torch.Tensor]:
    """Each agent's picture of the item: its pixels (plus sensor noise, clamped to [0, 1]), zero elsewhere."""
    out = []
    for m in masks:
        v = x if sensor == 0 else (x + sensor * torch.randn(x.shape, generator=gen)).clamp(0, 1)
        out.append(v * m)
    return out


def _compute_decodes(s: dict[str, Any], x: torch.Tensor, progress: bool) -> dict[str, Any]:
    """Reconstructions of every agent (distributed/local) or the centre (centralised) for one setting."""
    from diffcomm.scenarios.fusion import observation, pixel_observation

    ident = f"{_setting_id(s)}|{s['mode']}"
    if ident in _DECODES:
        return _DECODES[ident]
    masks, links = _agents_links(s)
    seed, bs, k_agents = s["seed"], s["batch_size_"], s["agents"]
    g_sense = torch.Generator().manual_seed(_derive(seed, f"sensor|{_setting_id(s)}"))
    g_tx = torch.Generator().manual_seed(_derive(seed, f"uplink|{_setting_id(s)}"))
    g_over = torch.Generator().manual_seed(_derive(seed, f"overhear|{_setting_id(s)}"))
    g_rx = torch.Generator().manual_seed(_derive(seed, f"receiver|{_setting_id(s)}|{s['mode']}"))
    from diffcomm.link import Link
    from diffcomm.scenarios.consensus import topology_adjacency

    adj = topology_adjacency(s["topology"], k_agents)
    own_std = max(s["sensor_noise_std"], 1 / 255)
    outs: list[list[torch.Tensor]] = [[] for _ in range(1 if s["mode"] == "centralised" else k_agents)]
    nfe, seconds = 0.0, 0.0
    for i in range(0, len(x), bs):
        xb = x[i:i + bs]
        views = _views(xb, masks, s["sensor_noise_std"], g_sense)
        t0 = time.perf_counter()
        if s["mode"] == "centralised":
            obs = [observation(link, link.transmit(v, generator=g_tx)) for link, v in zip(links, views)]
            xh, f = _decode(s["receiver"], s["options"], obs, g_rx)
            outs[0].append(xh)
            nfe += f * len(xb)
        else:
            for a in range(k_agents):
                obs = [pixel_observation(views[a], masks[a], own_std, g_sense, name=f"agent {a} own view")]
                if s["mode"] == "distributed":
                    for j in range(k_agents):
                        if j != a and adj[a, j]:
                            lj = links[j]
                            heard = Link(lj.encoder, s["channels"][j], lj.snr_db + s["overhear_offset_db"])
                            obs.append(observation(heard, heard.transmit(views[j], generator=g_over)))
                xh, f = _decode(s["receiver"], s["options"], obs, g_rx)
                outs[a].append(xh)
                nfe += f * len(xb)
        seconds += time.perf_counter() - t0
    result = {"x_hat": [torch.cat(o) for o in outs], "nfe_total": nfe / len(x), "seconds": seconds,
              "uplink_uses": sum(link.channel_uses for link in links)}
    _DECODES[ident] = result
    return result


def _message_sender(s: dict[str, Any], adj: torch.Tensor, gen: torch.Generator):
    from diffcomm.scenarios.label_link import LabelLink

    links = {c: LabelLink(num_classes=CLASSES * s["levels"], code=s["message_code"], channel=c)
             for c in set(s["channels"])}

    def send(r: int, msg: torch.Tensor) -> torch.Tensor:
        k, b = msg.shape
        got = torch.full((k, k, b), -1, dtype=torch.long)
        for j in range(k):                     # agent j broadcasts once; each neighbour decodes its own copy
            ll = links[s["channels"][j]]
            snr = s["snr_db"] + s["snr_offsets_db"][j] + s["overhear_offset_db"]
            for i in range(k):
                if i != j and adj[i, j]:
                    y, h, n0, _ = ll.transmit(msg[j], snr, generator=gen)
                    got[i, j] = ll.receive(y, h, n0)[0]
        return got
    uses = next(iter(links.values())).channel_uses
    return send, uses


def run_point(point: AgentsPoint, batch_size: int = 64, threads: int = 1, progress: bool = False) -> dict[str, Any]:
    """Compute one point's record (module docstring)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        if point.kind == "policy":
            return _run_policy(point, progress)
        return _run_decoding(point, batch_size, progress)
    finally:
        torch.set_num_threads(previous)


def _run_decoding(point: AgentsPoint, batch_size: int, progress: bool) -> dict[str, Any]:
    from diffcomm import zoo
    from diffcomm.data import get_dataset
    from diffcomm.scenarios.consensus import run_consensus, topology_adjacency
    from diffcomm.scenarios.machine import wilson_interval

    t_start = time.perf_counter()
    s = {**point.settings, "batch_size_": batch_size}
    data = get_dataset(s["dataset"], s["split"])
    x, labels = data.images[:s["n"]], data.labels[:s["n"]]
    dec = _compute_decodes(s, x, progress)
    classifier = zoo.load(s["classifier"])
    with torch.no_grad():
        beliefs = torch.stack([torch.softmax(classifier(xh), -1) for xh in dec["x_hat"]]).double()
    from diffcomm.metrics import psnr as psnr_per_image

    psnr = [float(psnr_per_image(xh, x).mean()) for xh in dec["x_hat"]]
    metrics: dict[str, Any] = {}
    k_agents = s["agents"]
    uses = dec["uplink_uses"] if s["mode"] != "local" else 0
    if s["mode"] == "centralised":
        pred = beliefs[0].argmax(-1)
        correct = int((pred == labels).sum())
        metrics.update({"accuracy": correct / len(x), "accuracy_ci95": list(wilson_interval(correct, len(x))),
                        "psnr": psnr[0], "agreement": 1.0})
        extra = {"rounds": None, "messages": 0, "decoders": 1, "nfe_per_decoder": dec["nfe_total"]}
    else:
        adj = topology_adjacency(s["topology"], k_agents)
        gen = torch.Generator().manual_seed(_derive(s["seed"], f"messages|{_setting_id(s)}|{s['mode']}"))
        send, msg_uses = _message_sender(s, adj, gen)
        res = run_consensus(beliefs, adj, s["rounds"], levels=s["levels"], send=send)
        decisions = res.decisions[-1]                                     # (K, B)
        per_agent = (decisions == labels[None]).double().mean(1)
        votes = torch.nn.functional.one_hot(decisions, CLASSES).sum(0)
        majority = votes.argmax(-1)
        correct = int((per_agent * len(x)).sum())
        metrics.update({"accuracy": float(per_agent.mean()),
                        "accuracy_ci95": list(wilson_interval(correct, len(x) * k_agents)),
                        "accuracy_per_agent": per_agent.tolist(),
                        "accuracy_majority": float((majority == labels).double().mean()),
                        "accuracy_per_round": [float((d == labels[None]).double().mean()) for d in res.decisions],
                        "agreement": res.agreement[-1], "agreement_per_round": res.agreement,
                        "psnr": float(sum(psnr) / k_agents), "psnr_per_agent": psnr,
                        "failed_messages": res.failed})
        uses += res.messages_sent * msg_uses
        extra = {"rounds": s["rounds"], "messages": res.messages_sent, "uses_per_message": msg_uses,
                 "decoders": k_agents, "nfe_per_decoder": dec["nfe_total"] / k_agents}
    from diffcomm import __version__
    from diffcomm.scenarios.machine import _git_revision

    record = {"key": point.key, "scenario": "agents", "kind": point.kind, "mode": s["mode"],
              "receiver": s["receiver"], "snr_db": s["snr_db"], "symbols": s["symbols"], "agents": k_agents,
              "views": s["views"], "topology": s["topology"], "n": s["n"], "metrics": metrics,
              "channel_uses": int(uses), "uplink_uses": int(dec["uplink_uses"]) if s["mode"] != "local" else 0,
              "nfe_total": dec["nfe_total"], **extra,
              "seconds_per_image": dec["seconds"] / len(x), "settings": point.settings,
              "seconds": time.perf_counter() - t_start, "version": __version__, "git_revision": _git_revision(),
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__},
              "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    return record


# ---------------------------------------------------------------------------------------------
# the policy


@torch.no_grad()
def taskjscc_accuracy(k: int, images: torch.Tensor, labels: torch.Tensor, snr_db: torch.Tensor,
                      generator: torch.Generator) -> torch.Tensor:
    """Correct (bool, per image) for the shipped AWGN task-JSCC ``k`` at a per-image effective SNR ``snr_db``.

    Block fading with perfect CSI and power ``P`` is AWGN at SNR + P + 10·log10|h|² after equalisation; the
    model is told that SNR held inside its training range (as :func:`~diffcomm.scenarios.taskjscc.head_logits`).
    """
    from diffcomm import zoo
    from diffcomm.channels import awgn, equalize_mmse, normalize_power, snr_db_to_n0

    model = zoo.load(f"fmnist-taskjscc-awgn-k{k}")
    cfg = model.config
    told = snr_db.float().clamp(cfg.snr_min_db, cfg.snr_max_db)
    z, _ = normalize_power(model.encode(images, told))
    n0 = snr_db_to_n0(snr_db.double()).reshape(-1, 1).to(z.real.dtype)
    y = awgn(z, n0, generator=generator)
    s_hat, _ = equalize_mmse(y, torch.ones_like(y), n0)
    return model.classify(s_hat, told).argmax(1) == labels


def _run_policy(point: AgentsPoint, progress: bool) -> dict[str, Any]:
    from diffcomm import __version__
    from diffcomm.data import get_dataset
    from diffcomm.scenarios.machine import _git_revision
    from diffcomm.scenarios.policy import (
        AccuracyTable,
        ActionSet,
        oracle_actions,
        reward_matrix,
        sample_states,
        train_policy,
    )

    t_start = time.perf_counter()
    s = point.settings
    acts = ActionSet(tuple(s["symbols"]), tuple(float(p) for p in s["power_db"]))
    train = get_dataset(s["dataset"], "train")
    xt, yt = train.images[-s["table_images"]:], train.labels[-s["table_images"]:]    # training images only
    grid = torch.arange(-25.0, 35.01, 1.0)
    g = torch.Generator().manual_seed(_derive(s["seed"], "policy table"))
    acc = torch.stack([torch.stack([taskjscc_accuracy(k, xt, yt, torch.full((len(xt),), float(v)), g).double().mean()
                                    for v in grid]) for k in acts.symbols])
    table = AccuracyTable(acts.symbols, grid, acc, 1.0 / CLASSES)
    lam, lam_e = s["lambda_uses"], s["lambda_energy"]
    gs = torch.Generator().manual_seed(_derive(s["seed"], "policy states"))
    states = sample_states(s["train_states"], tuple(s["snr_db_range"]), gs)
    train_rewards = reward_matrix(states, acts, table, lam, lam_e)
    oracle = oracle_actions(train_rewards)
    t0 = time.perf_counter()
    policy = train_policy(states, oracle, acts, train_steps=s["train_steps"], seed=s["seed"],
                          steps=s["diffusion_steps"], progress=progress)
    train_seconds = time.perf_counter() - t0
    best_fixed = int(train_rewards.mean(0).argmax())

    test = get_dataset(s["dataset"], s["split"])
    n = min(s["n"], len(test.images))
    x, labels = test.images[:n], test.labels[:n]
    test_states = sample_states(n, tuple(s["snr_db_range"]), torch.Generator().manual_seed(_derive(s["seed"],
                                                                                                  "policy test")))
    expected = reward_matrix(test_states, acts, table, lam, lam_e)
    t1 = time.perf_counter()
    diffusion = policy.act(test_states, torch.Generator().manual_seed(_derive(s["seed"], "policy act")))
    act_seconds = (time.perf_counter() - t1) / n
    policies = {"oracle": oracle_actions(expected), "diffusion policy": diffusion,
                f"best fixed ({acts.describe(best_fixed)})": torch.full((n,), best_fixed, dtype=torch.long)}
    for idx in range(len(acts)):
        policies[f"fixed {acts.describe(idx)}"] = torch.full((n,), idx, dtype=torch.long)
    uses_of, power_of = acts.uses(), acts.power_linear()
    results = {}
    for name, a in policies.items():
        correct = torch.zeros(n, dtype=torch.bool)
        gm = torch.Generator().manual_seed(_derive(s["seed"], "policy channel"))   # same draws for every policy
        for idx in a.unique().tolist():
            sel = (a == idx).nonzero().flatten()
            k, p = acts.action(idx)
            if k == 0:
                guess = torch.randint(0, CLASSES, (len(sel),), generator=gm)
                correct[sel] = guess == labels[sel]
            else:
                snr_eff = test_states[sel, 0] + p + test_states[sel, 1]
                correct[sel] = taskjscc_accuracy(k, x[sel], labels[sel], snr_eff, gm)
        uses = uses_of[a]
        energy = uses * power_of[a]
        reward = correct.double() - lam * uses - lam_e * energy
        results[name] = {"accuracy": float(correct.double().mean()), "channel_uses": float(uses.mean()),
                         "energy": float(energy.mean()), "reward": float(reward.mean()),
                         "expected_reward": float(expected.gather(1, a[:, None]).mean()),
                         "oracle_match": float((a == policies["oracle"]).double().mean()),
                         "actions": {acts.describe(i): int((a == i).sum()) for i in range(len(acts)) if (a == i).any()}}
    determinism = bool(torch.equal(diffusion, policy.act(test_states, torch.Generator().manual_seed(
        _derive(s["seed"], "policy act")))))
    return {"key": point.key, "scenario": "agents", "kind": "policy", "settings": s,
            "actions": [acts.describe(i) for i in range(len(acts))],
            "table": {"snr_db": grid.tolist(), "symbols": list(acts.symbols), "accuracy": acc.tolist(),
                      "images": f"last {len(xt)} of the {s['dataset']} train split"},
            "policies": results, "train_seconds": train_seconds, "act_seconds_per_state": act_seconds,
            "deterministic_for_seed": determinism, "n": n,
            "seconds": time.perf_counter() - t_start, "version": __version__, "git_revision": _git_revision(),
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__},
            "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


# ---------------------------------------------------------------------------------------------
# the run and the report


@dataclass
class ScenarioSummary:
    records: list[dict[str, Any]]
    computed: int
    reused: int
    seconds: float
    files: list[Path] = field(default_factory=list)


def run_scenario(grid: AgentsGrid, out_dir: str | Path, progress: bool = True) -> ScenarioSummary:
    """Compute the points missing from ``OUT/records.jsonl`` (resumable), then write the report."""
    from tqdm.auto import tqdm

    from diffcomm.checks import check_output_path
    from diffcomm.eval.store import ResultsWriter, load_records

    out = Path(out_dir)
    check_output_path(out, "dir")
    path = out / RECORDS_FILE
    t0, computed = time.time(), 0
    batch = grid.config.get("batch_size", 64)
    threads = grid.config.get("threads", 1)
    with ResultsWriter(path) as writer:
        done = {r["key"]: r for r in load_records(path, repair=False)}
        todo = [p for p in grid.points if p.key not in done]
        bar = tqdm(todo, disable=not progress, desc="agents scenario", dynamic_ncols=True, unit="point")
        for point in bar:
            bar.set_postfix_str(point.label[:60])
            record = run_point(point, batch, threads, progress)
            writer.append(record)
            done[point.key] = record
            computed += 1
        bar.close()
    records = [done[p.key] for p in grid.points]
    files = write_report(records, out)
    return ScenarioSummary(records, computed, len(grid.points) - computed, time.time() - t0, files)


def _figure_bytes(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return buf.getvalue()


def write_report(records: list[dict[str, Any]], out: str | Path) -> list[Path]:
    """``summary.md``, ``tradeoff.json``, ``tradeoff.png`` (accuracy and PSNR vs channel uses and vs NFE) and
    ``policy.png`` (the policy comparison) in ``out``; figures written atomically."""
    from matplotlib.figure import Figure

    from diffcomm.utils import atomic_write_bytes, atomic_write_text

    out = Path(out)
    files: list[Path] = []
    decoding = [r for r in records if r["kind"] != "policy"]
    policy = [r for r in records if r["kind"] == "policy"]
    rows = [{"mode": r["mode"], "receiver": r["receiver"], "snr_db": r["snr_db"], "symbols": r["symbols"],
             "rounds": r["rounds"], "accuracy": r["metrics"]["accuracy"], "psnr": r["metrics"]["psnr"],
             "agreement": r["metrics"]["agreement"], "channel_uses": r["channel_uses"], "nfe_total": r["nfe_total"],
             "seconds_per_image": r["seconds_per_image"]} for r in decoding]
    atomic_write_text(out / "tradeoff.json", json.dumps(rows, indent=1) + "\n")
    files.append(out / "tradeoff.json")
    lines = ["# Agent-centric scenario", ""]
    if decoding:
        r0 = decoding[0]
        lines += [f"{r0['agents']} agents, views `{r0['views']}`, topology `{r0['topology']}`, {r0['n']} "
                  f"{r0['settings']['split']} images, per-agent channels {r0['settings']['channels']}, "
                  f"SNR offsets {r0['settings']['snr_offsets_db']} dB.", "",
                  "| mode | receiver | SNR dB | k/agent | rounds | accuracy | majority | agreement | PSNR dB | "
                  "channel uses | NFE total | s/img |", "|" + "---|" * 12]
        for r in decoding:
            m = r["metrics"]
            lines.append(f"| {r['mode']} | {r['receiver']} | {r['snr_db']:g} | {r['symbols']} | "
                         f"{'' if r['rounds'] is None else r['rounds']} | {m['accuracy']:.3f} | "
                         f"{m.get('accuracy_majority', m['accuracy']):.3f} | {m['agreement']:.3f} | {m['psnr']:.2f} | "
                         f"{r['channel_uses']} | {r['nfe_total']:.0f} | {r['seconds_per_image']:.3f} |")
        snrs = sorted({r["snr_db"] for r in decoding})
        fig = Figure(figsize=(4.6 * len(snrs), 8.0), layout="constrained")
        axes = fig.subplots(2, len(snrs), squeeze=False)
        marks = {"centralised": "o", "distributed": "s", "local": "^"}
        for col, snr in enumerate(snrs):
            for row, metric in enumerate(("accuracy", "psnr")):
                ax = axes[row][col]
                groups: dict[tuple, list] = {}
                for r in decoding:
                    if r["snr_db"] == snr:
                        groups.setdefault((r["mode"], r["receiver"], r["symbols"]), []).append(r)
                for (mode, rec, k), rs in groups.items():
                    rs = sorted(rs, key=lambda r: r["channel_uses"])
                    ax.plot([r["channel_uses"] for r in rs], [r["metrics"][metric] for r in rs],
                            marker=marks[mode], label=f"{mode} {rec} k={k}")
                ax.set_xscale("symlog", linthresh=10)
                ax.set_xlabel("channel uses per item (views + messages)", fontsize=8)
                ax.set_ylabel("accuracy" if metric == "accuracy" else "PSNR (dB)")
                ax.set_title(f"{snr:g} dB")
                ax.grid(alpha=0.3)
            axes[0][col].legend(fontsize=6)
        atomic_write_bytes(out / "tradeoff.png", _figure_bytes(fig))
        files.append(out / "tradeoff.png")
        fig = Figure(figsize=(5.5, 4))
        ax = fig.subplots()
        for r in decoding:
            ax.scatter(r["nfe_total"] + 1, r["metrics"]["accuracy"], marker=marks[r["mode"]], s=14,
                       label=r["mode"])
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles))
        ax.legend(uniq.values(), uniq.keys(), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("network evaluations per item, all decoders (+1)")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        atomic_write_bytes(out / "compute.png", _figure_bytes(fig))
        files.append(out / "compute.png")
    for r in policy:
        s = r["settings"]
        lines += ["", "## Transmission policy", "",
                  f"Reward = accuracy − {s['lambda_uses']} × channel uses − {s['lambda_energy']} × energy; states: "
                  f"SNR ~ U{s['snr_db_range']} dB, Rayleigh block gain; {r['n']} test images, one state each; "
                  f"table: {r['table']['images']}; diffusion policy: {s['diffusion_steps']} DDPM steps, "
                  f"{s['train_steps']} BC steps on {s['train_states']} oracle-labelled states "
                  f"({r['train_seconds']:.1f} s), deterministic for a seed: {r['deterministic_for_seed']}.", "",
                  "| policy | reward (measured) | reward (table) | accuracy | channel uses | energy | oracle match |",
                  "|---|---|---|---|---|---|---|"]
        main = [k for k in r["policies"] if not k.startswith("fixed ")]
        fixed = sorted((k for k in r["policies"] if k.startswith("fixed ")),
                       key=lambda k: -r["policies"][k]["reward"])
        for name in main + fixed:
            p = r["policies"][name]
            lines.append(f"| {name} | {p['reward']:.3f} | {p['expected_reward']:.3f} | {p['accuracy']:.3f} | "
                         f"{p['channel_uses']:.2f} | {p['energy']:.2f} | {p['oracle_match']:.3f} |")
        fig = Figure(figsize=(7, 3.6))
        ax = fig.subplots()
        names = main + fixed[:4]
        ax.bar(range(len(names)), [r["policies"][k]["reward"] for k in names], color="tab:blue")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("measured reward per decision")
        ax.grid(alpha=0.3, axis="y")
        atomic_write_bytes(out / "policy.png", _figure_bytes(fig))
        files.append(out / "policy.png")
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    files.append(out / "summary.md")
    return files
