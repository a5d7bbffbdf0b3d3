"""The grid runner: compute one record per point, serially, on local worker processes, or on Ray.

:func:`run_point` is a pure function of a :class:`~diffcomm.eval.grid.Point` (its randomness comes
from generators seeded by the point's key, see :mod:`diffcomm.eval.grid`), so the serial, the
``workers=N`` (multiprocessing, spawn, one torch thread each) and the Ray backends give identical
records apart from the timing and host fields (:data:`~diffcomm.eval.store.TIMING_FIELDS`).

:func:`run_grid` skips points whose key is already in the results file (resume), computes the rest,
and has the parent process alone write: each point's saved images, then its record line
(:mod:`diffcomm.eval.store`).

**A multi-node Ray cluster**: start it (``ray start --head --port 6379`` on one machine, ``ray start
--address HEAD:6379`` on each other, every node with the same diffcomm install and the datasets it
reads), then run ``diffcomm eval ... --backend ray --address HEAD:6379 --out results.jsonl`` on the
head: each point is one Ray task of one CPU spread over every node's CPUs (``--workers`` sizes only a
local cluster), and the driver alone writes the results file, so it resumes like a local run.

With ``posterior_samples = S`` in the grid, each point's receiver draws S samples per image
(:func:`diffcomm.pipeline.decode`); x_hat (psnr, ssim, accuracy) is the first sample, ``nfe`` stays per
sample, and ``metrics`` add ``spread`` and ``agreement`` (summaries over images, as psnr) and
``auroc_disagreement`` / ``auroc_spread``: the AUROC of ``1 − agreement`` / of the spread for predicting
that the first sample's classifier label differs from the true label (``{mean, se, ci_low, ci_high,
positives, negatives}``, Hanley–McNeil s.e.; None when every image is on one side). Without the
classifier (or off Fashion-MNIST) only the spread is recorded.

Example:
    >>> import os, shutil, tempfile
    >>> from diffcomm.eval import grid_from_mapping, plan, run_grid
    >>> p = plan(grid_from_mapping({"receivers": "pinv@gaussian", "snr": "10", "n": 4}))
    >>> out = tempfile.mkdtemp()
    >>> summary = run_grid(p, os.path.join(out, "results.jsonl"), progress=False)
    >>> summary.computed, summary.reused
    (1, 0)
    >>> summary = run_grid(p, os.path.join(out, "results.jsonl"), progress=False)   # resumes: nothing left to do
    >>> summary.computed, summary.reused
    (0, 1)
    >>> shutil.rmtree(out)
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import os
import platform
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diffcomm.errors import DiffcommError
from diffcomm.eval.grid import DIGITAL, Plan, Point, derive_seed
from diffcomm.eval.store import RECORD_FIELDS, ResultsWriter, load_records, save_point_images

BACKENDS = ("local", "ray")
LMMSE_FIT_IMAGES = 10_000  # train images the LMMSE receiver's Gaussian prior is fitted to


@dataclass
class PointOutput:
    """What a worker sends back: the record (without ``images``) and the tensors to save."""

    record: dict[str, Any]
    tensors: dict[str, torch.Tensor]


@dataclass
class RunSummary:
    """Outcome of :func:`run_grid`: this grid's records in grid order and what happened."""

    records: list[dict[str, Any]]
    computed: int
    reused: int
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# one point


@functools.lru_cache(maxsize=4)
def _dataset(name: str, split: str):
    from diffcomm.data import get_dataset

    return get_dataset(name, split)


@functools.lru_cache(maxsize=1)
def _git_revision() -> str:
    from diffcomm.utils import git_revision

    return git_revision()


@functools.lru_cache(maxsize=1)
def _classifier():
    from diffcomm import zoo

    if os.environ.get("DIFFCOMM_EVAL_NO_CLASSIFIER"):  # tests: the classifier-free record layout
        return None
    return zoo.load("fmnist-classifier") if "fmnist-classifier" in zoo.list_models() else None


def machine_info(threads: int) -> dict[str, Any]:
    return {"platform": platform.platform(), "python": platform.python_version(), "hostname": socket.gethostname(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": threads, "pid": os.getpid()}


def _clean(value: Any) -> Any:
    """JSON-safe numbers: NaN/inf become ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _run_digital(point: Point, x: torch.Tensor, g_channel: torch.Generator,
                 g_search: torch.Generator) -> tuple[torch.Tensor, dict[str, Any], list[str]]:
    """The separation baseline on all ``n`` images at once (codec mosaics span the batch)."""
    from diffcomm.channels import symbols_for_cbr
    from diffcomm.transmit.digital import best_config

    sel = best_config(x, point.cbr, point.snr_db, point.channel, generator=g_search, **point.options)
    notes = [f"digital: {sel.note}"]
    k = symbols_for_cbr(point.cbr, tuple(x.shape[1:]))
    if sel.system is None:
        x_hat = torch.full_like(x, float(point.options.get("fallback", 0.5)))
        return x_hat, {"k": k, "channel_uses": 0, "config": None, "success_rate": 0.0}, notes
    x_hat, info = sel.system.transmit(x, point.channel, point.snr_db, generator=g_channel)
    extra = {"k": k, "channel_uses": info["channel_uses"] / len(x), "config": sel.system.describe(),
             "success_rate": float(info["success"].float().mean())}
    return x_hat, extra, notes


def point_models(point: Point) -> dict[str, str]:
    """Zoo name -> weights digest of every shipped model a point's record depends on."""
    from diffcomm import zoo
    from diffcomm.eval.grid import required_models

    shape = tuple(_dataset(point.dataset, point.split).images.shape[1:])
    names = required_models(point.receiver, point.encoder, point.channel, point.cbr, shape)
    if point.dataset == "fashion-mnist" and _classifier() is not None:
        names.append("fmnist-classifier")
    return {name: zoo.weights_digest(name) for name in names}


def _check_same_models(records: dict[str, dict], points: list[Point], out: Path) -> None:
    """Refuse to resume a results file computed with other weights than those shipped now."""
    for point in points:
        record = records.get(point.key)
        if record is None or "models" not in record:
            continue
        now = point_models(point)
        changed = sorted(n for n in set(now) | set(record["models"]) if now.get(n) != record["models"].get(n))
        if changed:
            raise DiffcommError(f"{out} holds results computed with other weights of {', '.join(changed)} "
                                f"(reshipped since); write to a new --out, or delete {out} and {out}.d to rerun")


def _classifier_metrics(point: Point, x: torch.Tensor, x_hat: torch.Tensor, labels: torch.Tensor,
                        notes: list[str]) -> dict[str, Any]:
    from diffcomm.metrics import summarize

    out: dict[str, Any] = {"accuracy": None, "accuracy_original": None, "fd_cls": None, "kid_cls": None,
                           "kid_cls_std": None}
    if point.dataset != "fashion-mnist":
        notes.append("accuracy, fd_cls and kid_cls use the Fashion-MNIST classifier: not computed for "
                     f"{point.dataset}")
        return out
    net = _classifier()
    if net is None:
        notes.append("accuracy, fd_cls and kid_cls need the shipped model 'fmnist-classifier', which is "
                     "not shipped yet: recorded as null")
        return out
    from diffcomm.metrics.classifier import predict
    from diffcomm.metrics.distribution import frechet_distance, kernel_distance

    logits_hat, feats_hat = predict(net, x_hat)
    logits, feats = predict(net, x)
    out["accuracy"] = summarize({"a": (logits_hat.argmax(1) == labels).float()})["a"]
    out["accuracy_original"] = float((logits.argmax(1) == labels).float().mean())
    if len(x) >= 2:
        out["fd_cls"] = frechet_distance(feats, feats_hat)
        kid, kid_std = kernel_distance(feats, feats_hat, seed=derive_seed(point.seed, "kid|" + point.key) % 2 ** 31)
        out["kid_cls"], out["kid_cls_std"] = kid, kid_std
    else:
        notes.append("fd_cls and kid_cls need at least 2 images")
    return out


def _uncertainty_metrics(parts: list[dict[str, Any]], labels: torch.Tensor,
                         notes: list[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Mean spread and agreement (95 % Student-t intervals) and the AUROCs of ``1 − agreement`` and of the
    spread for predicting that the first sample's classifier label is wrong; plus the per-image values.

    An AUROC is ``{mean, se, ci_low, ci_high, positives, negatives}`` (Hanley–McNeil s.e., the interval
    ±1.96 s.e. clipped to [0, 1]; positives = wrong-class images) or None when every image is on one side.
    """
    from diffcomm.metrics import summarize
    from diffcomm.metrics.uncertainty import auroc, auroc_se

    out: dict[str, Any] = {"spread": None, "agreement": None, "auroc_disagreement": None, "auroc_spread": None}
    spread = torch.cat([u["spread"] for u in parts]).double()
    per_image = {"spread": spread}
    out["spread"] = summarize({"s": spread})["s"]
    if any(u.get("agreement") is None for u in parts):
        notes.append("agreement and the wrong-class AUROCs need the Fashion-MNIST classifier: only the spread "
                     "is recorded")
        return out, per_image
    agreement = torch.cat([u["agreement"] for u in parts]).double()
    per_image["agreement"] = agreement
    out["agreement"] = summarize({"a": agreement})["a"]
    wrong = torch.cat([u["classes"][:, 0] for u in parts]).cpu() != labels.cpu()
    k, n = int(wrong.sum()), len(wrong)
    for name, score in (("auroc_disagreement", 1 - agreement), ("auroc_spread", spread)):
        area = auroc(score, wrong)
        if not math.isfinite(area):
            notes.append(f"{name} undefined: {'every' if k == n else 'no'} first sample is wrong-class")
            continue
        se = auroc_se(area, k, n - k)
        out[name] = {"mean": area, "se": se, "ci_low": max(0.0, area - 1.96 * se),
                     "ci_high": min(1.0, area + 1.96 * se), "positives": k, "negatives": n - k}
    return out, per_image


def run_point(point: Point) -> PointOutput:
    """Compute one grid point: transmit the first ``n`` split images, decode, score.

    Uses ``point.threads`` torch threads for its duration. Returns the record (everything but the
    ``images`` path, which the writer adds) and the first ``save_images`` originals and reconstructions.
    """
    from diffcomm import __version__
    from diffcomm.metrics import psnr, ssim, summarize
    from diffcomm.pipeline import build_link, decode

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(point.threads)
    try:
        t0 = time.perf_counter()
        data = _dataset(point.dataset, point.split)
        x, labels = data.images[:point.n], data.labels[:point.n]
        g_channel = torch.Generator().manual_seed(derive_seed(point.seed, point.channel_key))
        g_receiver = torch.Generator().manual_seed(derive_seed(point.seed, point.key))
        notes: list[str] = []
        receiver_seconds = 0.0
        nfe = 0.0
        extra: dict[str, Any] = {}
        options_used: dict[str, Any] = dict(point.options)
        uncertainty_parts: list[dict[str, Any]] = []
        if point.receiver == DIGITAL:
            tr = time.perf_counter()
            x_hat, extra, notes = _run_digital(point, x, g_channel, g_receiver)
            receiver_seconds = time.perf_counter() - tr
            k, uses = extra.pop("k"), extra.pop("channel_uses")
        else:
            link = build_link(point.encoder, tuple(x.shape[1:]), point.cbr, point.channel, point.snr_db,
                              csi=point.csi, n_pilots=point.pilots if point.csi == "estimated" else 0,
                              seed=point.seed)
            k, uses = link.k, link.channel_uses
            outs = []
            for i in range(0, point.n, point.batch_size):
                rx = link.transmit(x[i:i + point.batch_size], generator=g_channel)
                # The calibrated values were fixed at plan time (they are part of the key): pass them
                # explicitly and do not look the calibration file up again.
                sampling = {} if point.posterior_samples is None else {
                    "posterior_samples": point.posterior_samples,
                    "uncertainty_classifier": _classifier() if point.dataset == "fashion-mnist" else None}
                result = decode(point.receiver, link, rx, generator=g_receiver, dataset=point.dataset,
                                calibration=False, **sampling, **point.receiver_options)
                if result.uncertainty is not None:
                    uncertainty_parts.append(result.uncertainty)
                options_used = result.extras.get("options_used", options_used)
                outs.append(result.x_hat.detach().float().clamp(0, 1))
                receiver_seconds += result.seconds
                nfe += result.nfe * len(rx.y)
                prior_note = result.extras.get("prior")
                if isinstance(prior_note, str) and f"prior: {prior_note}" not in notes:
                    notes.append(f"prior: {prior_note}")
            x_hat = torch.cat(outs)
            nfe = nfe / point.n

        per_image = {"psnr": psnr(x_hat, x)}
        if min(x.shape[-2:]) >= 11:
            per_image["ssim"] = ssim(x_hat, x)
        else:
            notes.append("ssim needs images of at least 11x11 pixels: not computed")
        metrics: dict[str, Any] = {"psnr": None, "ssim": None, **summarize(per_image)}
        metrics.update(_classifier_metrics(point, x, x_hat, labels, notes))
        per_image_out = {k_: [float(v) for v in vals] for k_, vals in per_image.items()}
        if uncertainty_parts:
            notes.append(f"{point.posterior_samples} posterior samples per image: x_hat (psnr, ssim, accuracy) is the "
                         f"first; nfe is per sample (an image costs {point.posterior_samples} x nfe)")
            u_metrics, u_per_image = _uncertainty_metrics(uncertainty_parts, labels, notes)
            metrics.update(u_metrics)
            per_image_out.update({k_: [float(v) for v in vals] for k_, vals in u_per_image.items()})
        total = time.perf_counter() - t0

        record: dict[str, Any] = {
            "key": point.key,
            "system": point.system,
            "receiver": point.receiver, "encoder": point.encoder,
            "dataset": point.dataset, "split": point.split, "n": point.n,
            "channel": point.channel, "csi": point.csi, "snr_db": point.snr_db, "cbr": point.cbr,
            "k": int(k), "channel_uses": uses, "pilots": point.pilots if point.csi == "estimated" else 0,
            "seed": point.seed, "batch_size": point.batch_size, "options": point.options,
            "calibrated": point.calibrated, "options_used": options_used,
            "metrics": metrics,
            "per_image": per_image_out if point.per_image else None,
            "nfe": nfe,
            **({"posterior_samples": point.posterior_samples} if point.posterior_samples is not None else {}),
            "models": point_models(point),
            **({"digital": extra} if extra else {}),
            "notes": notes,
            "images": None,
            "seconds": {"total": total, "per_image": total / point.n, "receiver": receiver_seconds},
            "version": __version__, "git_revision": _git_revision(),
            "machine": machine_info(point.threads),
            "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        m = point.save_images
        tensors = {"x": x[:m].contiguous(), "x_hat": x_hat[:m].contiguous()} if m > 0 else {}
        return PointOutput(_clean(record), tensors)
    finally:
        torch.set_num_threads(previous_threads)


def _safe_run_point(point: Point) -> PointOutput | tuple[str, str]:
    """:func:`run_point`, with a user error returned as ``("error", message)`` (crosses processes cleanly)."""
    try:
        return run_point(point)
    except DiffcommError as exc:
        return ("error", str(exc))


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker process end when the process that started it ends, even by kill -9.

    On Linux the kernel is asked to SIGKILL us when our parent dies (``prctl(PR_SET_PDEATHSIG)``
    through ctypes); everywhere, a daemon thread also watches ``os.getppid()`` and exits the
    process when it changes (the parent died and we were re-parented).
    """
    import ctypes
    import signal
    import threading

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="diffcomm-parent-watch", daemon=True).start()


def _init_worker(threads: int, parent_pid: int | None = None) -> None:
    torch.set_num_threads(threads)
    if parent_pid is not None:
        _die_with_parent(parent_pid)


# ---------------------------------------------------------------------------------------------
# the grid


def check_backend(backend: str, workers: int, address: str | None) -> None:
    """Validate the execution settings before any work (ray importable for ``backend="ray"``)."""
    if backend not in BACKENDS:
        raise DiffcommError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if workers < 1:
        raise DiffcommError(f"--workers must be >= 1, got {workers}")
    if address is not None and backend != "ray":
        raise DiffcommError("--address needs --backend ray")
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise DiffcommError(f"--workers must be an integer, got {workers!r}")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise DiffcommError("--backend ray needs Ray: pip install 'diffcomm[eval]'") from None
        if address:
            check_ray_address(address)


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """Fail fast (one line) when a Ray cluster address cannot be reached; ``ray.init`` would retry for minutes.

    ``address``: ``host:port`` or ``ray://host:port`` (``auto`` and ``local`` are left to Ray).
    """
    if address in ("auto", "local"):
        return
    text = address.removeprefix("ray://")
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
        if not sep or not host or not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise DiffcommError(f"--address {address!r} is not host:port (or ray://host:port)") from None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise DiffcommError(f"cannot reach the Ray cluster at {address} ({exc.strerror or type(exc).__name__}); "
                            f"check --address or start the cluster with `ray start --head`") from None


def _iterate_local(points: list[Point], workers: int, threads: int):
    if not points:  # a finished grid: nothing to start
        return
    if workers == 1 or len(points) == 1:
        for p in points:
            yield p, _safe_run_point(p)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(points)), mp_context=ctx, initializer=_init_worker,
                             initargs=(threads, os.getpid())) as pool:
        futures = {pool.submit(_safe_run_point, p): p for p in points}
        try:
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        finally:
            for fut in futures:
                fut.cancel()


def _iterate_ray(points: list[Point], workers: int, address: str | None):
    if not points:
        return
    import logging

    import ray

    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=workers, **kwargs)
        started = True
    try:
        remote = ray.remote(num_cpus=1)(_safe_run_point)
        refs = {remote.remote(p): p for p in points}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield refs[done[0]], ray.get(done[0])
    finally:
        if started:
            ray.shutdown()


def run_grid(plan: Plan, out: str | os.PathLike, workers: int = 1, backend: str = "local",
             address: str | None = None, progress: bool = True) -> RunSummary:
    """Run every point of ``plan`` not yet in ``out``; append each record as it finishes.

    Args:
        plan: a validated grid (:func:`diffcomm.eval.grid.plan`).
        out: the results file (JSONL, see :mod:`diffcomm.eval.store`); created or resumed.
        workers: points computed in parallel (local processes, or Ray CPUs for a local Ray cluster).
        backend: ``"local"`` or ``"ray"``; ``address`` connects to an existing Ray cluster.
        progress: show a tqdm bar with ETA on stderr.
    """
    from tqdm import tqdm

    check_backend(backend, workers, address)
    out = Path(out)
    t0 = time.perf_counter()
    threads = plan.spec.threads
    with ResultsWriter(out) as writer:
        existing = {r["key"]: r for r in load_records(out, required=RECORD_FIELDS)}
        _check_same_models(existing, plan.points, out)
        pending = [p for p in plan.points if p.key not in existing]
        reused = len(plan.points) - len(pending)
        bar = tqdm(total=len(plan.points), initial=reused, desc="eval", unit="point", disable=not progress,
                   dynamic_ncols=True)
        try:
            iterator = (_iterate_ray(pending, workers, address) if backend == "ray"
                        else _iterate_local(pending, workers, threads))
            for point, result in iterator:
                if isinstance(result, tuple):
                    raise DiffcommError(f"{point.label}: {result[1]}")
                record = result.record
                if result.tensors:
                    record["images"] = save_point_images(out, point.file_stem, result.tensors)
                writer.append(record)
                existing[point.key] = record
                bar.set_postfix_str(point.label, refresh=False)
                bar.update(1)
        finally:
            bar.close()
    records = [existing[p.key] for p in plan.points]
    return RunSummary(records, len(pending), reused, list(plan.notes), time.perf_counter() - t0)
