"""Uncertainty a user can see: several posterior samples per image, their per-pixel spread and semantic agreement.

A posterior receiver (DPS, ΠGDM, DDNM, ...) draws ``x ~ p(x | y)``; running it ``S`` times on the same
received frame (:func:`posterior_samples`, one batched call on the frame repeated ``S`` times) gives

* the **per-pixel spread** ``std_s x_s`` (unbiased, over the S samples) — for a Gaussian prior on a
  linear link it estimates the exact posterior standard deviation ``√diag Cov[x | y]`` (the tests
  check it within Monte-Carlo tolerance), and its rms over the image, ``spread``;
* the **semantic agreement** — how often the shipped classifier gives the samples the same class:
  the fraction of the S samples whose predicted class is the modal one (1 = all agree, 1/S… = none).
  A reconstruction that the receiver "made up" at low SNR tends to change class from sample to sample.

:func:`auroc` (the Mann–Whitney statistic, ties counted 1/2; Hanley & McNeil, Radiology 143, 1982)
scores how well a number flags a bad outcome, e.g. ``auroc(1 − agreement, wrong_class)``.
:func:`auroc_se` is its Hanley–McNeil standard error.
Deterministic receivers (pinv, the DeepJSCC decoder) give spread 0 and agreement 1.

``diffcomm.pipeline.decode(..., posterior_samples=S)`` does the same inside the pipeline and returns the
record as ``ReceiverResult.uncertainty`` (x_hat = each image's first sample).

Example:
    >>> import torch
    >>> from diffcomm import zoo
    >>> from diffcomm.pipeline import build_link
    >>> link = build_link("gaussian", (1, 28, 28), "1/16", "awgn", snr_db=10.0)
    >>> gen = torch.Generator().manual_seed(0)
    >>> rx = link.transmit(torch.rand(2, 1, 28, 28), generator=gen)
    >>> prior = zoo.load("fmnist-prior")
    >>> samples, _ = posterior_samples("dps", link, rx, prior, n_samples=3, steps=3, generator=gen)
    >>> samples.shape                   # (images, samples, C, H, W)
    torch.Size([2, 3, 1, 28, 28])
    >>> u = uncertainty(samples, classifier=zoo.load("fmnist-classifier"))
    >>> u.spread.shape, u.agreement.shape
    (torch.Size([2]), torch.Size([2]))
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from diffcomm.errors import DiffcommError


def replicate_received(rx: Any, n: int) -> Any:
    """The :class:`~diffcomm.link.Received` record with every image's frame repeated ``n`` times
    (rows ``b·n … b·n + n − 1`` are copies of row b): batch-shaped tensors are repeated, shared ones kept."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DiffcommError(f"n_samples must be an int >= 1, got {n!r}")
    b = rx.batch
    changes = {}
    for f in dataclasses.fields(rx):
        v = getattr(rx, f.name)
        if torch.is_tensor(v) and v.ndim >= 1 and v.shape[0] == b and f.name != "pilots":
            changes[f.name] = v.repeat_interleave(n, dim=0)
    return dataclasses.replace(rx, **changes)


def posterior_samples(receiver: str, link: Any, rx: Any, prior: Any = None, *, n_samples: int = 8,
                      generator: torch.Generator | None = None, **options: Any) -> tuple[torch.Tensor, Any]:
    """``n_samples`` reconstructions per image from one batched call of registered ``receiver``.

    Returns ``(samples (B, S, C, H, W), ReceiverResult of the batched call)`` (its ``nfe`` is per sample).
    """
    from diffcomm.pipeline import decode

    big = replicate_received(rx, n_samples)
    res = decode(receiver, link, big, prior=prior, generator=generator, **options)
    return res.x_hat.reshape(rx.batch, n_samples, *res.x_hat.shape[1:]), res


@dataclass
class Uncertainty:
    """Per-image uncertainty from S samples (see the module docstring)."""

    mean: torch.Tensor                 # (B, C, H, W): the sample mean
    pixel_spread: torch.Tensor         # (B, C, H, W): per-pixel std over the samples (unbiased)
    spread: torch.Tensor               # (B,): rms of the per-pixel spread
    agreement: torch.Tensor | None     # (B,): fraction of samples in the modal class (None without a classifier)
    classes: torch.Tensor | None       # (B, S): each sample's predicted class

    def record(self) -> dict[str, list[float]]:
        """JSON-ready per-image values."""
        out = {"spread": [round(float(v), 6) for v in self.spread]}
        if self.agreement is not None:
            out["agreement"] = [round(float(v), 6) for v in self.agreement]
        return out


def semantic_agreement(classes: torch.Tensor) -> torch.Tensor:
    """Fraction of each row's S labels equal to the row's modal label: ``(B, S) -> (B,)``."""
    if not torch.is_tensor(classes) or classes.ndim != 2 or classes.shape[1] < 1:
        raise DiffcommError("semantic_agreement: classes must be an integer tensor (B, S)")
    mode = torch.mode(classes, dim=1).values
    return (classes == mode[:, None]).double().mean(1)


def uncertainty(samples: torch.Tensor, classifier: Any = None) -> Uncertainty:
    """Spread and (with ``classifier``, a net mapping pixels to logits) semantic agreement of ``samples``
    ``(B, S, C, H, W)``; S >= 2 for a spread."""
    if not torch.is_tensor(samples) or samples.ndim != 5 or samples.shape[1] < 2:
        got = tuple(samples.shape) if torch.is_tensor(samples) else type(samples).__name__
        raise DiffcommError(f"uncertainty: samples must be (B, S >= 2, C, H, W) pixels, got {got}")
    v = samples.double()
    pixel = v.std(1)
    spread = pixel.pow(2).flatten(1).mean(1).sqrt()
    agreement = classes = None
    if classifier is not None:
        from diffcomm.metrics.classifier import predict

        b, s = samples.shape[:2]
        logits, _ = predict(classifier, samples.reshape(b * s, *samples.shape[2:]))
        classes = logits.argmax(1).reshape(b, s)
        agreement = semantic_agreement(classes)
    return Uncertainty(v.mean(1).float(), pixel.float(), spread, agreement, classes)


def auroc(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` (higher = more likely positive) for boolean ``positives``.

    The Mann–Whitney U statistic over all (positive, negative) pairs, ties 1/2; NaN when either class is empty.
    """
    s = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
    p = torch.as_tensor(positives).reshape(-1).bool()
    if s.shape != p.shape:
        raise DiffcommError(f"auroc: scores {tuple(s.shape)} and positives {tuple(p.shape)} differ in length")
    pos, neg = s[p], s[~p]
    if pos.numel() == 0 or neg.numel() == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


def auroc_se(area: float, positives: int, negatives: int) -> float:
    """Hanley–McNeil standard error of an AUROC ``area`` from ``positives`` and ``negatives`` cases
    (Radiology 143, 1982, eq. 2: Q1 = A/(2 − A), Q2 = 2A²/(1 + A)); NaN when undefined."""
    a, n1, n2 = float(area), int(positives), int(negatives)
    if not math.isfinite(a) or n1 < 1 or n2 < 1:
        return float("nan")
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a)) / (n1 * n2)
    return math.sqrt(max(var, 0.0))
