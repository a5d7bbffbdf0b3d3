"""Receivers for linear links with exact answers: pseudo-inverse and Gaussian-prior posterior mean.

For a linear encoder the received signal is ``y = A x + n`` with a known real matrix ``A``
(:meth:`diffcomm.link.Link.matrix`, built from the receiver's CSI and the gain side information)
and ``n ~ N(0, N0/2 I)`` per real dimension. Two classical receivers:

* ``pinv`` (:func:`pinv_receiver`, :func:`pinv_estimate`): ``x̂ = A^+ y`` (minimum-norm least
  squares, through the link operator's SVD), clamped to [0, 1].
* ``lmmse`` (:func:`lmmse_receiver`, :func:`lmmse_estimate`): the posterior mean under a Gaussian
  prior ``x ~ N(μ, Σ)`` (prior kind ``"gaussian"``: by default fitted to training images of the
  link's image shape, :func:`fit_gaussian_prior`), i.e. the linear MMSE estimator (Kay,
  *Estimation Theory*, 1993, Thm. 10.2 / §12.6):

      K = Σ Aᵀ (A Σ Aᵀ + R)⁻¹,   E[x | y] = μ + K (y − A μ),   Cov[x | y] = Σ − K A Σ.

:func:`gaussian_posterior` is that formula as a reusable, exact utility (float64, Cholesky solve),
e.g. for checking diffusion receivers against a Gaussian prior where the answer is known.
With estimated CSI the receivers plug ``ĥ`` in as if it were exact (mismatched decoding).

Example:
    >>> import torch
    >>> from diffcomm.link import make_link
    >>> link = make_link("gaussian", (1, 8, 8), "1/4", snr_db=20.0)
    >>> data = torch.rand(500, 1, 8, 8)
    >>> rx = link.transmit(data[:4], generator=torch.Generator().manual_seed(0))
    >>> x_hat = lmmse_estimate(link, rx, data=data)
    >>> x_hat.shape
    torch.Size([4, 1, 8, 8])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffcomm.channels import complex_to_real
from diffcomm.errors import DiffcommError
from diffcomm.receivers.base import Option, ReceiverResult, Timer, register_receiver


@dataclass
class GaussianPrior:
    """A Gaussian pixel prior ``N(mean, cov)`` (float64; ``mean`` (n,), ``cov`` (n, n) or a float)."""

    mean: torch.Tensor
    cov: torch.Tensor | float
    source: str = ""


def pinv_estimate(link, rx, h: torch.Tensor | None = None) -> torch.Tensor:
    """``clamp(A^+ y, 0, 1)`` -> float32 pixels ``(B, C, H, W)``; ``h`` overrides the CSI ``rx.h_hat``."""
    return link.operator(rx, h).pinv(rx.y).clamp(0, 1)


@register_receiver("pinv", description="exact pseudo-inverse (linear links)", link="linear",
                   paper="Moore-Penrose pseudo-inverse (Penrose 1955)")
def pinv_receiver(link, rx, prior=None, *, generator: torch.Generator | None = None) -> ReceiverResult:
    """Pseudo-inverse receiver ``clamp(A^+ y, 0, 1)`` (no prior, deterministic)."""
    with Timer() as t:
        x = pinv_estimate(link, rx)
    return ReceiverResult(x, nfe=0, seconds=t.seconds)


def fit_gaussian_prior(images: torch.Tensor, shrinkage: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian prior fitted to example images: ``(mean (n,), cov (n, n))`` in float64 pixel units.

    ``cov = (1 − α) S + α (tr S / n) I`` with S the unbiased sample covariance and α = ``shrinkage``
    (shrinkage towards a scaled identity keeps it positive definite when there are fewer images than
    pixels; Ledoit & Wolf, J. Multivariate Anal. 88, 2004).
    """
    if not torch.is_tensor(images) or not images.is_floating_point() or images.ndim != 4 or images.shape[0] < 2:
        got = (str(images.dtype), tuple(images.shape)) if torch.is_tensor(images) else type(images).__name__
        raise DiffcommError(f"fit_gaussian_prior: need float images (N >= 2, C, H, W), got {got}")
    if not 0.0 <= shrinkage <= 1.0:
        raise DiffcommError(f"fit_gaussian_prior: shrinkage must be in [0, 1], got {shrinkage!r}")
    v = images.flatten(1).double()
    mean = v.mean(0)
    s = torch.cov(v.T).reshape(v.shape[1], v.shape[1])
    n = s.shape[0]
    cov = (1 - shrinkage) * s + shrinkage * (torch.trace(s) / n) * torch.eye(n, dtype=s.dtype)
    return mean, cov


def _posterior(a: torch.Tensor, y: torch.Tensor, noise_var: float | torch.Tensor, mean: torch.Tensor,
               cov: torch.Tensor | float, want_cov: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    if not torch.is_tensor(a) or a.is_complex() or a.ndim not in (2, 3):
        raise DiffcommError("gaussian_posterior: A must be a real matrix (m, n) or a batch (B, m, n)")
    if not torch.is_tensor(y) or y.is_complex() or y.shape[-1] != a.shape[-2]:
        raise DiffcommError(f"gaussian_posterior: y must be real (..., {a.shape[-2]}) to match A {tuple(a.shape)}")
    out_dtype = torch.promote_types(a.dtype, y.dtype)
    a, y = a.double(), y.double()
    m, n = a.shape[-2:]
    r = torch.as_tensor(noise_var, dtype=torch.float64, device=a.device)
    if not torch.isfinite(r).all() or (r <= 0).any():
        raise DiffcommError("gaussian_posterior: noise_var_per_real must be finite and > 0")
    r = r.expand(*y.shape) if r.ndim else r.expand(m)
    mean = torch.as_tensor(mean, dtype=torch.float64, device=a.device)
    if mean.shape[-1:] != (n,) and mean.ndim:
        raise DiffcommError(f"gaussian_posterior: mean must have last dim {n}, got {tuple(mean.shape)}")
    if torch.is_tensor(cov):
        cov = cov.double()
        if cov.shape[-2:] != (n, n):
            raise DiffcommError(f"gaussian_posterior: cov must be ({n}, {n}), got {tuple(cov.shape)}")
    else:
        if not float(cov) > 0:
            raise DiffcommError(f"gaussian_posterior: an isotropic prior variance must be > 0, got {cov!r}")
        cov = float(cov) * torch.eye(n, dtype=torch.float64, device=a.device)
    a_cov = a @ cov                                             # A Σ        (..., m, n)
    s = a_cov @ a.transpose(-1, -2) + torch.diag_embed(r)       # AΣAᵀ + R   (..., m, m)
    chol, info = torch.linalg.cholesky_ex(s)
    if bool((info != 0).any()):
        raise DiffcommError("gaussian_posterior: A Σ Aᵀ + R is not positive definite; is cov symmetric PSD?")
    resid = y - (a @ mean[..., None]).squeeze(-1)
    w = torch.cholesky_solve(resid[..., None], chol)            # S⁻¹ (y − Aμ)
    post_mean = mean + (a_cov.transpose(-1, -2) @ w).squeeze(-1)
    post_cov = None
    if want_cov:
        g = torch.cholesky_solve(a_cov, chol)                   # S⁻¹ A Σ
        post_cov = cov - a_cov.transpose(-1, -2) @ g
        post_cov = ((post_cov + post_cov.transpose(-1, -2)) / 2).to(out_dtype)
    return post_mean.to(out_dtype), post_cov


def gaussian_posterior(A: torch.Tensor, y: torch.Tensor, noise_var_per_real: float | torch.Tensor,
                       mean: torch.Tensor, cov: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact posterior of ``x ~ N(mean, cov)`` given ``y = A x + n``, ``n ~ N(0, diag(noise_var_per_real))``.

    Shapes: ``A`` (m, n) or (B, m, n); ``y`` (m,) or (B, m); ``noise_var_per_real`` a positive scalar
    or per-row tensor; ``mean`` (n,) or (B, n); ``cov`` (n, n) symmetric PSD, or a float for
    ``cov · I``. Returns ``(post_mean (…, n), post_cov (…, n, n))`` in the promoted dtype of A and y
    (computed in float64):

        post_mean = μ + Σ Aᵀ S⁻¹ (y − A μ),   post_cov = Σ − Σ Aᵀ S⁻¹ A Σ,   S = A Σ Aᵀ + R.

    Example:
        >>> m, c = gaussian_posterior(torch.eye(1), torch.tensor([2.0]), 1.0, torch.zeros(1), 1.0)
        >>> m, c
        (tensor([1.]), tensor([[0.5000]]))
    """
    post_mean, post_cov = _posterior(A, y, noise_var_per_real, mean, cov, want_cov=True)
    return post_mean, post_cov


def lmmse_estimate(link, rx, prior_mean: torch.Tensor | None = None, prior_cov: torch.Tensor | float | None = None,
                   *, data: torch.Tensor | None = None, h: torch.Tensor | None = None) -> torch.Tensor:
    """Posterior-mean (LMMSE) estimate under a Gaussian pixel prior -> float32 pixels, clamped to [0, 1].

    The prior is ``N(prior_mean, prior_cov)`` in pixel units (``prior_mean`` (n,), ``prior_cov``
    (n, n) or a float for an isotropic variance). If either is None it is fitted to ``data``
    (float images (N, C, H, W), see :func:`fit_gaussian_prior`); with neither a DiffcommError is raised.
    The observation model is ``complex_to_real(y) = link.matrix(rx) vec(x) + n`` with ``N0/2`` per real.
    """
    if not getattr(link, "is_linear", False):
        raise DiffcommError("lmmse needs a linear encoder ('gaussian' or 'downsample')")
    if prior_mean is None or prior_cov is None:
        if data is None:
            raise DiffcommError("lmmse: pass prior_mean and prior_cov, or data=images to fit them")
        fit_mean, fit_cov = fit_gaussian_prior(data)
        prior_mean = fit_mean if prior_mean is None else prior_mean
        prior_cov = fit_cov if prior_cov is None else prior_cov
    if not torch.is_tensor(prior_mean) or prior_mean.reshape(-1).shape[0] != link.n:
        raise DiffcommError(f"lmmse: prior_mean must have {link.n} entries (one per pixel)")
    a = link.operator(rx, h).matrix()
    if not torch.is_tensor(rx.y) or not rx.y.is_complex() or tuple(rx.y.shape) != (rx.batch, link.k):
        raise DiffcommError(f"lmmse: rx.y must be complex ({rx.batch}, {link.k})")
    y = complex_to_real(rx.y)
    post_mean, _ = _posterior(a, y, rx.n0 / 2, prior_mean.reshape(-1), prior_cov, want_cov=False)
    return post_mean.to(torch.float32).reshape(-1, *link.shape).clamp(0, 1)


@register_receiver("lmmse", description="Gaussian-prior LMMSE (linear links)", link="linear", prior="gaussian",
                   paper="Kay, Fundamentals of Statistical Signal Processing: Estimation Theory, 1993, Thm. 10.2",
                   options={"shrinkage": Option(float, 0, 1)})
def lmmse_receiver(link, rx, prior, *, shrinkage: float = 0.01,
                   generator: torch.Generator | None = None) -> ReceiverResult:
    """LMMSE receiver: the exact posterior mean under a Gaussian prior.

    ``prior`` is a :class:`GaussianPrior`, or float images ``(N, C, H, W)`` to fit one to (with
    ``shrinkage``, :func:`fit_gaussian_prior`); :func:`diffcomm.pipeline.decode` fits it to training
    images of the link's shape when none is given.
    """
    with Timer() as t:
        if torch.is_tensor(prior):
            prior = GaussianPrior(*fit_gaussian_prior(prior, shrinkage=shrinkage))
        if not isinstance(prior, GaussianPrior):
            raise DiffcommError("lmmse: prior must be a GaussianPrior(mean, cov) or training images (N, C, H, W)")
        x = lmmse_estimate(link, rx, prior.mean, prior.cov)
    return ReceiverResult(x, nfe=0, seconds=t.seconds, extras={"prior": prior.source} if prior.source else {})
