"""Per-image fidelity metrics: PSNR, SSIM and MS-SSIM (library-backed).

All functions take two batches of pixels ``(B, C, H, W)`` in [0, 1] of the same shape and return
one value per image, shape ``(B,)``, float32 on the input device. They are symmetric in ``x`` and
``y`` (reference first by convention).

- :func:`psnr`: ``10 log10(data_range^2 / MSE)`` with the MSE over C, H, W (cross-checked against
  torchmetrics in the tests); capped at ``max_db`` (100 dB by default, i.e. MSE <= 1e-10) so
  identical images do not give +inf.
- :func:`ssim` (pytorch_msssim; Wang et al. 2004, "Image quality assessment: from error
  visibility to structural similarity", IEEE TIP 13(4), eq. 13): Gaussian window 11x11,
  sigma 1.5, K1 = 0.01, K2 = 0.03, mean over the valid (unpadded) positions and channels, as in
  the authors' reference code. (torchmetrics 1.9's SSIM also averages reflection-padded border
  positions and reads ~0.03 higher or lower on 28x28 images; we do not use it.)
- :func:`ms_ssim` (pytorch_msssim; Wang, Simoncelli & Bovik 2003, "Multiscale structural
  similarity for image quality assessment", eq. 7): 5 scales with the standard weights
  (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); needs ``min(H, W) > (win_size - 1) * 16`` = 160.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(2, 1, 28, 28, generator=g)
    >>> y = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    >>> psnr(x, y).shape, bool((ssim(x, x) > 0.9999).all())
    (torch.Size([2]), True)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from diffcomm.errors import DiffcommError

RANGE_TOLERANCE = 1e-5
MS_SSIM_SCALES = 5


def check_pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a (reference, estimate) pair; return both as float64 clamped to [0, 1].

    Both must be real 4-D ``(B, C, H, W)`` tensors of the same shape with finite values in
    [0, 1] (up to ``RANGE_TOLERANCE``).
    """
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise DiffcommError(f"metric input {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4 or t.numel() == 0:
            raise DiffcommError(f"metric input {name} must be a non-empty (B, C, H, W) tensor, got shape "
                                f"{tuple(t.shape)}; add a batch dimension with x[None]")
        if t.is_complex():
            raise DiffcommError(f"metric input {name} must be real pixels, got a complex tensor")
    if x.shape != y.shape:
        raise DiffcommError(f"metric inputs must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    out = []
    for name, t in (("x", x), ("y", y)):
        t = t.detach().to(torch.float64)
        if not torch.isfinite(t).all():
            raise DiffcommError(f"metric input {name} contains NaN or infinite values")
        lo, hi = float(t.min()), float(t.max())
        if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            raise DiffcommError(f"metric input {name} must be pixels in [0, 1] but spans [{lo:.4g}, {hi:.4g}]; "
                                f"clamp or rescale it (e.g. (x + 1) / 2 for [-1, 1] data)")
        out.append(t.clamp(0.0, 1.0))
    return out[0], out[1]


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, max_db: float | None = 100.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, ``(B,)``: ``10 log10(data_range^2 / MSE)``.

    ``max_db`` caps the value (identical images would be +inf); ``None`` disables the cap. The
    definition is evaluated directly in float64 (it equals torchmetrics'
    ``peak_signal_noise_ratio(..., reduction="none", dim=(1, 2, 3))`` to float precision, which
    tests/metrics checks); importing torchmetrics costs seconds (scipy.signal, matplotlib) that a
    one-image ``diffcomm transmit`` should not pay.
    """
    if not data_range > 0:
        raise DiffcommError(f"data_range must be positive, got {data_range}")
    a, b = check_pair(x, y)
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(1)
    value = 10 * torch.log10(float(data_range) ** 2 / mse)
    if max_db is not None:
        value = value.clamp(max=float(max_db))
    return value.to(torch.float32)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity per image, ``(B,)`` (Wang et al. 2004, eq. 13; pytorch_msssim).

    Gaussian window ``win_size`` x ``win_size`` with std ``sigma``, K1 = 0.01, K2 = 0.03, local
    statistics over the *valid* region only (no padding), averaged over positions and channels;
    this matches the authors' reference and ``skimage.metrics.structural_similarity(...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``. Images must be at least
    ``win_size`` pixels per side; for tiny images (e.g. 8x8) pass a smaller odd ``win_size``
    such as 7 (with e.g. ``sigma=1.0``).
    """
    from pytorch_msssim import ssim as _ssim

    a, b = check_pair(x, y)
    if not isinstance(win_size, int) or win_size < 3 or win_size % 2 == 0:
        raise DiffcommError(f"SSIM win_size must be an odd integer >= 3, got {win_size}")
    if not sigma > 0:
        raise DiffcommError(f"SSIM sigma must be positive, got {sigma}")
    if min(a.shape[-2:]) < win_size:
        raise DiffcommError(f"SSIM with a {win_size}x{win_size} window needs images of at least {win_size} pixels "
                            f"per side, got {tuple(a.shape[-2:])}; pass a smaller odd win_size (e.g. 7)")
    value = _ssim(a, b, data_range=float(data_range), size_average=False, win_size=win_size, win_sigma=sigma)
    return value.to(torch.float32)


def ms_ssim_min_size(win_size: int = 11) -> int:
    """Smallest image side (exclusive bound) for 5-scale MS-SSIM: ``(win_size - 1) * 2**4``."""
    return (win_size - 1) * 2 ** (MS_SSIM_SCALES - 1)


def ms_ssim_supported(shape: Sequence[int] | torch.Size, win_size: int = 11) -> bool:
    """Whether images of ``shape`` (``(..., H, W)``) are large enough for 5-scale MS-SSIM."""
    if len(shape) < 2:
        return False
    return min(int(shape[-2]), int(shape[-1])) > ms_ssim_min_size(win_size)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = 11) -> torch.Tensor:
    """Multi-scale SSIM per image, ``(B,)`` (Wang, Simoncelli & Bovik 2003; pytorch_msssim).

    Raises :class:`DiffcommError` for images with a side of ``ms_ssim_min_size()`` = 160 pixels
    or less (5 scales of an 11x11 window do not fit); use :func:`ssim` for those.
    """
    from pytorch_msssim import ms_ssim as _ms_ssim

    a, b = check_pair(x, y)
    if not ms_ssim_supported(a.shape, win_size):
        raise DiffcommError(f"MS-SSIM needs images larger than {ms_ssim_min_size(win_size)}x"
                            f"{ms_ssim_min_size(win_size)} (5 scales, {win_size}x{win_size} window), got "
                            f"{tuple(a.shape[-2:])}; use SSIM for small images")
    value = _ms_ssim(a, b, data_range=float(data_range), size_average=False, win_size=win_size)
    return value.to(torch.float32)


FIDELITY_METRICS = {"psnr": psnr, "ssim": ssim, "ms_ssim": ms_ssim}


def fidelity(x: torch.Tensor, y: torch.Tensor, metrics: Sequence[str] = ("psnr", "ssim", "ms_ssim"),
             skip_unsupported: bool = True) -> dict[str, torch.Tensor]:
    """Several per-image metrics at once: ``{name: (B,)}``.

    With ``skip_unsupported`` MS-SSIM is left out (not an error) for images too small for it.
    """
    out: dict[str, torch.Tensor] = {}
    for name in metrics:
        if name not in FIDELITY_METRICS:
            raise DiffcommError(f"unknown fidelity metric {name!r}; choose from {', '.join(FIDELITY_METRICS)}")
        if name == "ms_ssim" and skip_unsupported and not ms_ssim_supported(tuple(x.shape)):
            continue
        out[name] = FIDELITY_METRICS[name](x, y)
    return out
