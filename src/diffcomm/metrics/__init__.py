"""Metrics: per-image fidelity (PSNR, SSIM, MS-SSIM) and summary statistics.

Distribution metrics live in :mod:`diffcomm.metrics.distribution`, the feature/task classifier
in :mod:`diffcomm.metrics.classifier` (imported on demand; they are heavier).

Example:
    >>> import torch
    >>> from diffcomm.metrics import psnr, summarize
    >>> x = torch.full((3, 1, 16, 16), 0.5)
    >>> round(summarize({"psnr": psnr(x, x + 0.1)})["psnr"]["mean"], 4)  # MSE 0.01 -> 20 dB
    20.0
"""

from diffcomm.metrics.fidelity import (
    FIDELITY_METRICS,
    check_pair,
    fidelity,
    ms_ssim,
    ms_ssim_min_size,
    ms_ssim_supported,
    psnr,
    ssim,
)
from diffcomm.metrics.stats import mean_ci, summarize

__all__ = [
    "FIDELITY_METRICS",
    "check_pair",
    "fidelity",
    "mean_ci",
    "ms_ssim",
    "ms_ssim_min_size",
    "ms_ssim_supported",
    "psnr",
    "ssim",
    "summarize",
]
