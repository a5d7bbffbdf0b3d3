"""deepinv interop both ways: a link as a deepinv ``LinearPhysics``, priors as deepinv denoisers and back.

deepinv 0.5 needs torchvision, which does not install beside the project's CPU torch: install it in
a separate environment (``python3 -m venv ENV; ENV/bin/pip install torch==2.14.1 torchvision==0.29.1
deepinv==0.5.0; ENV/bin/pip install -e . --no-deps`` plus diffcomm's pure dependencies). Nothing in
diffcomm imports deepinv except the three builders below, on call.

Conventions (deepinv 0.5, ``deepinv/models/base.py``: ``Denoiser.forward(x, sigma)`` takes and
returns pixels in [0, 1], with ``sigma`` the standard deviation of Gaussian noise added to those
pixels; a float or one value per image):

- **our prior as a deepinv denoiser** (:class:`PixelDenoiser`, :func:`to_deepinv_denoiser`): our
  prior works in its model space ``x_m = a x + b`` (shipped priors: ``a = 2, b = −1``, read off
  ``prior.to_model``). A pixel image ``x = x0 + σ ε`` maps to ``x_m = x0_m + (a σ) ε``, so
  ``D_pix(x, σ) = to_pixels(prior(to_model(x), a σ))``.
- **a deepinv denoiser as our prior** (:class:`ModelSpacePrior`, :func:`from_deepinv_denoiser`):
  the inverse map, ``prior(x_m, σ_m) = to_model(D_pix(to_pixels(x_m), σ_m / a))``, with ``to_model``
  ``2x − 1`` by default and the σ range (model space) the caller states (deepinv denoisers do not
  carry one; defaults: the shipped priors' 0.002 to 80).
- **our link as a deepinv physics** (:func:`link_physics`): for one received batch ``rx``, the
  operator ``A = ĥ g E`` of :meth:`diffcomm.link.Link.operator` on pixels ``(B, C, H, W)``, with
  complex symbols in their real form ``(B, 2k)`` (interleaved Re, Im — :func:`complex_to_real`), so
  ``A_adjoint`` is the real transpose ``Mᵀ`` (``LinkOperator.adjoint``), ``A_dagger`` the exact
  pseudo-inverse (``LinkOperator.pinv``), the measurement ``y = complex_to_real(rx.y)``
  (:func:`measurement`) and the noise model ``GaussianNoise(σ = sqrt(N0 / 2))`` (each real dimension
  of CN(0, N0)). The pure functions :func:`link_forward`, :func:`link_adjoint` and :func:`link_pinv`
  are what the physics calls.

Example (no deepinv needed for the conversions):
    >>> from diffcomm.diffusion.precond import EDMDenoiser
    >>> from diffcomm.diffusion.unet import UNet
    >>> prior = EDMDenoiser(UNet(in_channels=1, base_channels=8, channel_mults=(1,), attention_levels=(0,)))
    >>> back = ModelSpacePrior(PixelDenoiser(prior), sigma_min=prior.sigma_min, sigma_max=prior.sigma_max)
    >>> x = torch.rand(1, 1, 8, 8)
    >>> bool(torch.allclose(back(x, 0.5), prior(x, 0.5), atol=1e-6))
    True
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import torch
from torch import nn

from diffcomm.channels.symbols import complex_to_real, real_to_complex
from diffcomm.errors import DiffcommError


def _deepinv():
    try:
        import deepinv
    except ImportError:
        raise DiffcommError("deepinv is not installed; it needs torchvision, so install it in its own environment "
                            "(pip install torch==2.14.1 torchvision==0.29.1 deepinv==0.5.0; see "
                            "diffcomm.interop.deepinv)") from None
    return deepinv


def affine_of(prior: Any) -> tuple[float, float]:
    """``(a, b)`` with ``prior.to_model(x) = a x + b`` (read off ``to_model`` of 0 and 1)."""
    ends = prior.to_model(torch.tensor([0.0, 1.0], dtype=torch.float64))
    b, a = float(ends[0]), float(ends[1] - ends[0])
    if not a > 0:
        raise DiffcommError(f"prior.to_model must be increasing (to_model(1) > to_model(0)); got a = {a}")
    return a, b


def _rows(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
    if s.numel() == 1:
        s = s.expand(x.shape[0])
    if s.numel() != x.shape[0]:
        raise DiffcommError(f"sigma must be a scalar or one value per image ({x.shape[0]}); got {s.numel()}")
    return s


class PixelDenoiser(nn.Module):
    """Our model-space prior as a pixel-space denoiser ``D(x, σ)`` (deepinv's convention; module docstring).

    σ below the prior's smallest trained level (deepinv's DDRM ends its schedule at σ = 0, where an EDM
    preconditioner divides by zero) is raised to that level, which denoises by almost nothing.
    """

    def __init__(self, prior: Any):
        super().__init__()
        self.prior = prior
        self.scale, self.offset = affine_of(prior)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, class_labels: torch.Tensor | None = None,
                **_: Any) -> torch.Tensor:
        s = (_rows(sigma, x) * self.scale).clamp_min(float(getattr(self.prior, "sigma_min", 0.0)))
        return self.prior.to_pixels(self.prior(self.prior.to_model(x), s, class_labels))


class ModelSpacePrior(nn.Module):
    """A pixel-space denoiser ``D(x, σ)`` ([0, 1] pixels, deepinv's convention) as a diffcomm prior.

    ``pixel_range``: the model-space values of pixels 0 and 1 (default ``(-1, 1)``, the shipped
    priors' space; any choice gives the same pixels, it only fixes what σ means to a sampler);
    ``sigma_min`` / ``sigma_max``: the range of model-space σ the samplers use.
    """

    def __init__(self, denoiser: Callable[..., torch.Tensor], *, sigma_min: float = 0.002, sigma_max: float = 80.0,
                 pixel_range: tuple[float, float] = (-1.0, 1.0)):
        super().__init__()
        lo, hi = (float(v) for v in pixel_range)
        if not hi > lo:
            raise DiffcommError(f"pixel_range must be increasing (model value of pixel 0, of pixel 1), "
                                f"got {pixel_range}")
        if not 0 < sigma_min < sigma_max:
            raise DiffcommError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.denoiser = denoiser
        self.scale, self.offset = hi - lo, lo
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.num_classes = 0

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        if class_labels is not None:
            raise DiffcommError("a deepinv denoiser is unconditional; call the prior without class_labels")
        s = _rows(sigma, x)
        return self.to_model(self.denoiser(self.to_pixels(x), s / self.scale).to(x.dtype))

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.offset) / self.scale


# ---------------------------------------------------------------------------------------------
# the link as a linear operator on pixels, with symbols in their real form (B, 2k)


def measurement(rx: Any) -> torch.Tensor:
    """The received symbols as deepinv measurements: real ``(B, 2k)`` float32 (interleaved Re, Im)."""
    return complex_to_real(rx.y).to(torch.float32)


def link_forward(op: Any, x: torch.Tensor) -> torch.Tensor:
    """``A(x)`` of a :class:`~diffcomm.link.LinkOperator` on pixels -> real ``(B, 2k)`` (differentiable)."""
    return complex_to_real(op(x)).to(x.dtype)


def link_adjoint(op: Any, v: torch.Tensor) -> torch.Tensor:
    """``Aᵀ v`` for real ``v`` ``(B, 2k)`` -> pixels ``(B, C, H, W)`` in ``v``'s dtype."""
    return op.adjoint(v).to(v.dtype).reshape(-1, *op.link.shape)


def link_pinv(op: Any, v: torch.Tensor) -> torch.Tensor:
    """``A⁺ v`` (the operator's exact pseudo-inverse) for real ``v`` ``(B, 2k)`` -> pixels, ``v``'s dtype."""
    return op.pinv(real_to_complex(v)).to(v.dtype)


@cache
def _classes():
    dinv = _deepinv()

    class LinkPhysics(dinv.physics.LinearPhysics):
        """One received batch's link ``A = ĥ g E`` as a deepinv ``LinearPhysics`` (see diffcomm.interop.deepinv)."""

        def __init__(self, op, noise_sigma: float, **kwargs):
            super().__init__(img_size=tuple(op.link.shape), noise_model=dinv.physics.GaussianNoise(sigma=noise_sigma),
                             **kwargs)
            self.operator = op

        def A(self, x, **kwargs):
            return link_forward(self.operator, x)

        def A_adjoint(self, y, **kwargs):
            return link_adjoint(self.operator, y)

        def A_dagger(self, y, **kwargs):
            return link_pinv(self.operator, y)

    class DeepinvDenoiser(dinv.models.Denoiser):
        """A diffcomm prior as a deepinv ``Denoiser`` (pixels in [0, 1], σ in pixel units)."""

        def __init__(self, prior):
            super().__init__()
            self.pixel = PixelDenoiser(prior)

        def forward(self, x, sigma, **kwargs):
            return self.pixel(x, sigma)

    return LinkPhysics, DeepinvDenoiser


def link_physics(link: Any, rx: Any, **operator_options: Any):
    """``deepinv.physics.LinearPhysics`` of ``link`` for the received batch ``rx`` (needs deepinv).

    Use with ``measurement(rx)`` as ``y``. The link must be linear (``link.is_linear``). The operator
    belongs to this batch (one gain and power scale per received image), so ``A`` takes exactly
    ``rx.batch`` images: ``physics.adjointness_test(x, num_samples=rx.batch)``.
    """
    if not getattr(link, "is_linear", False):
        raise DiffcommError("link_physics: the link is not linear; deepinv's LinearPhysics needs an exact adjoint "
                            "(use a gaussian or downsample encoder)")
    physics_cls, _ = _classes()
    return physics_cls(link.operator(rx, **operator_options), noise_sigma=float(rx.n0 / 2) ** 0.5)


def to_deepinv_denoiser(prior: Any):
    """Our model-space prior as a ``deepinv.models.Denoiser`` (needs deepinv)."""
    _, denoiser_cls = _classes()
    return denoiser_cls(prior)


def from_deepinv_denoiser(denoiser: Any, **options: Any) -> ModelSpacePrior:
    """A ``deepinv.models.Denoiser`` (or any ``D(x, σ)`` on [0, 1] pixels) as a diffcomm prior.

    ``options``: ``sigma_min``, ``sigma_max`` (model space), ``pixel_range``; see :class:`ModelSpacePrior`.
    """
    return ModelSpacePrior(denoiser, **options)


__all__ = ["ModelSpacePrior", "PixelDenoiser", "affine_of", "from_deepinv_denoiser", "link_adjoint", "link_forward",
           "link_physics", "link_pinv", "measurement", "to_deepinv_denoiser"]
