"""Distribution metrics in the feature space of diffcomm's own classifier: FD-cls and KID-cls.

- **FD-cls**: the Fréchet distance between Gaussians fitted to classifier features
  (Heusel et al. 2017, eq. 6: ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2})).
- **KID-cls**: the unbiased squared MMD with the cubic polynomial kernel
  k(a, b) = (aᵀb / d + 1)³ (Bińkowski et al. 2018), averaged over random subsets.

Both use the 128-d penultimate features of the shipped Fashion-MNIST classifier
(:mod:`diffcomm.metrics.classifier`), **not** Inception-v3: they are *not* FID/KID, their values
are not comparable with published FID numbers, and they are only meaningful between image sets of
the classifier's domain (Fashion-MNIST-like 28×28 grey images).

Example:
    >>> a, b = torch.randn(500, 8), torch.randn(500, 8) + 1.0
    >>> round(frechet_distance(a, a), 6)
    0.0
"""

from __future__ import annotations

import numpy as np
import torch

from diffcomm.errors import DiffcommError


def _check_features(a: torch.Tensor, b: torch.Tensor, minimum: int) -> None:
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise DiffcommError(f"features must be (N, d) with the same d, got {tuple(a.shape)} and {tuple(b.shape)}")
    if len(a) < minimum or len(b) < minimum:
        raise DiffcommError(f"need at least {minimum} images per set for this metric, got {len(a)} and {len(b)}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise DiffcommError("features contain NaN or inf; check the images passed to the metric")


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussian fits of two feature sets (float64 internally)."""
    _check_features(feats_a, feats_b, minimum=2)
    a = feats_a.double().numpy()
    b = feats_b.double().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr (Σa Σb)^{1/2} = Σ sqrt(eig(Σa^{1/2} Σb Σa^{1/2})), a symmetric PSD matrix: stable with eigh.
    w, v = np.linalg.eigh(cov_a)
    sqrt_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
    trace_covmean = np.sqrt(np.clip(inner, 0, None)).sum()
    fd = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_covmean
    return float(max(fd, 0.0))


def kernel_distance(feats_a: torch.Tensor, feats_b: torch.Tensor, subsets: int = 50,
                    subset_size: int = 200, seed: int = 0) -> tuple[float, float]:
    """Unbiased polynomial-kernel MMD² (KID form): (mean, std over subsets)."""
    _check_features(feats_a, feats_b, minimum=2)
    m = min(subset_size, len(feats_a), len(feats_b))
    d = feats_a.shape[1]
    gen = torch.Generator().manual_seed(seed)
    values = []
    a_all, b_all = feats_a.double(), feats_b.double()
    for _ in range(subsets):
        a = a_all[torch.randperm(len(a_all), generator=gen)[:m]]
        b = b_all[torch.randperm(len(b_all), generator=gen)[:m]]
        k_aa = (a @ a.T / d + 1) ** 3
        k_bb = (b @ b.T / d + 1) ** 3
        k_ab = (a @ b.T / d + 1) ** 3
        mmd = ((k_aa.sum() - k_aa.diagonal().sum()) / (m * (m - 1))
               + (k_bb.sum() - k_bb.diagonal().sum()) / (m * (m - 1)) - 2 * k_ab.mean())
        values.append(float(mmd))
    v = np.asarray(values)
    return float(v.mean()), float(v.std())


def classifier_features(images: torch.Tensor, classifier=None) -> torch.Tensor:
    """Penultimate features of the shipped classifier for pixels in [0, 1]."""
    from diffcomm import zoo
    from diffcomm.metrics.classifier import predict

    net = classifier if classifier is not None else zoo.load("fmnist-classifier")
    return predict(net, images)[1]


def fd_cls(images_a: torch.Tensor, images_b: torch.Tensor, classifier=None) -> float:
    """FD-cls between two image sets (pixels in [0, 1], Fashion-MNIST-like)."""
    return frechet_distance(classifier_features(images_a, classifier), classifier_features(images_b, classifier))


def kid_cls(images_a: torch.Tensor, images_b: torch.Tensor, classifier=None, **kw) -> tuple[float, float]:
    """KID-cls (mean, std) between two image sets."""
    return kernel_distance(classifier_features(images_a, classifier), classifier_features(images_b, classifier), **kw)
