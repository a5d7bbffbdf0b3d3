"""A class-conditional diffusion prior used as a classifier (a generative classifier of the reconstruction).

Diffusion classifiers (Li, Prabhudesai, Duggal, Brown, Pathak, "Your Diffusion Model is Secretly a
Zero-Shot Classifier", ICCV 2023; Clark & Jaini, "Text-to-Image Diffusion Models are Zero-Shot
Classifiers", NeurIPS 2023) pick the class under which the image is best *denoised*: the
denoising loss is, up to weights and a constant, the negative ELBO of ``log p(x | c)``, so with a
uniform class prior

    ĉ = argmin_c  Σ_s w(σ_s) ‖D(x + σ_s ε_s, σ_s, c) − x‖²,     w(σ) = 1/σ²

(``‖D − x‖²/σ²`` is the ε-prediction error ``‖ε̂ − ε‖²``, the weighting of the DDPM ELBO's
simple loss used by Li et al.). Here ``x`` is the receiver's reconstruction x̂ (e.g. the DeepJSCC
decoder's) in the prior's model space, the σ levels are a few fixed values, and the noise
``ε_s`` is the *same for every class* (common random numbers: the class comparison does not see
the noise draw) and, with ``antithetic=True``, used as the pair ``±ε_s`` (the cross term linear in
ε cancels exactly). Compute: ``classes × levels × (2 if antithetic else 1)`` network evaluations
per image (NFE), all classes in one batch.

**Exactness** (the test): for Gaussian classes ``N(±μ, s² I)`` the exact class-conditional
denoiser is ``D_c(x, σ) = μ_c + s²/(s² + σ²)(x − μ_c)``, so ``D_c(x̂ + σε) − x̂ =
(1 − a)(μ_c − x̂) + aσε`` with ``a = s²/(s² + σ²)``; the antithetic pair removes the ε-linear term and
the score is ``Σ w (1 − a)² ‖μ_c − x̂‖² + const`` — the nearest class mean to x̂. For a linear link
``y = A x + n`` and x̂ the LMMSE reconstruction under the mixture's Gaussian moments, that is the
Bayes-optimal decision on ``y`` (by Sherman–Morrison the LMMSE direction is a positive multiple of
the Bayes discriminant ``μᵀAᵀΣ_y⁻¹ y``).

Example:
    >>> import torch
    >>> from diffcomm import zoo
    >>> x_hat = torch.rand(2, 1, 28, 28)     # e.g. a receiver's reconstructions
    >>> res = generative_classify(zoo.load("fmnist-prior"), x_hat, sigmas=(0.3, 0.6))
    >>> res.labels.shape, res.nfe           # 10 classes × 2 levels × 2 (antithetic)
    (torch.Size([2]), 40)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from diffcomm.errors import DiffcommError


@dataclass
class GenerativeResult:
    labels: torch.Tensor      # long (B,): argmin of the scores
    scores: torch.Tensor      # float (B, classes): weighted denoising losses (lower = more likely)
    nfe: int                  # network evaluations per image


def check_sigmas(sigmas: Sequence[float]) -> tuple[float, ...]:
    """Noise levels: a non-empty list of finite positive numbers (one-line error otherwise)."""
    try:
        values = tuple(float(s) for s in sigmas)
    except (TypeError, ValueError):
        raise DiffcommError(f"sigmas must be a list of positive numbers, got {sigmas!r}") from None
    if not values or any(not math.isfinite(s) or s <= 0 for s in values):
        raise DiffcommError(f"sigmas must be a non-empty list of finite positive numbers, got {list(sigmas)!r}")
    return values


@torch.no_grad()
def generative_classify(prior, x: torch.Tensor, sigmas: Sequence[float] = (0.3, 0.6), num_classes: int | None = None,
                        generator: torch.Generator | None = None, antithetic: bool = True,
                        pixels: bool = True, max_batch: int = 256) -> GenerativeResult:
    """Classify images ``x`` with a class-conditional denoiser ``prior(x_m, σ, class_labels) -> x0_hat``.

    ``x``: pixels in [0, 1] (``pixels=True``, mapped with ``prior.to_model``) or model-space tensors.
    ``sigmas``: noise levels in the prior's model space. ``num_classes``: default ``prior.num_classes``.
    ``max_batch``: images per network call (the B × classes inputs of one σ and sign are split into
    calls of whole classes; large batches are slower on CPU). Returns the labels, the per-class
    scores and the NFE per image.
    """
    levels = check_sigmas(sigmas)
    classes = int(num_classes if num_classes is not None else getattr(prior, "num_classes", 0))
    if classes < 2:
        raise DiffcommError("the generative classifier needs a class-conditional prior (num_classes >= 2)")
    x_m = prior.to_model(x) if pixels else x
    b = x_m.shape[0]
    per_call = max(1, min(classes, int(max_batch) // max(b, 1)))
    scores = torch.zeros(b, classes, dtype=torch.float64)
    nfe = 0
    signs = (1.0, -1.0) if antithetic else (1.0,)
    for sigma in levels:
        eps = torch.randn(x_m.shape, generator=generator, dtype=x_m.dtype).to(x_m.device)
        weight = 1.0 / sigma ** 2
        for sign in signs:
            noisy = x_m + sign * sigma * eps
            for c0 in range(0, classes, per_call):
                cs = list(range(c0, min(c0 + per_call, classes)))
                inp = noisy.repeat(len(cs), *([1] * (x_m.ndim - 1)))                  # (len(cs)·B, ...)
                labels = torch.tensor(cs, dtype=torch.long).repeat_interleave(b)
                sig = torch.full((inp.shape[0],), sigma, dtype=x_m.dtype, device=x_m.device)
                d = prior(inp, sig, labels)
                err = (d - x_m.repeat(len(cs), *([1] * (x_m.ndim - 1)))).pow(2).flatten(1).sum(1)
                scores[:, c0:c0 + len(cs)] += weight * err.double().reshape(len(cs), b).T
                nfe += len(cs)
    return GenerativeResult(labels=scores.argmin(1), scores=scores, nfe=nfe)
