"""CDDM-style training-free receiver for linear links: denoise the pseudo-inverse from its own noise level.

After Wu, Xu, Qin, Niyato, Zhang, Leung, "CDDM: Channel Denoising Diffusion Models for Wireless
Semantic Communications", IEEE Trans. Wireless Commun., 2024, §III-IV: equalise, then run the
*deterministic* reverse process from the step whose noise level matches the channel's, instead of
from pure noise. CDDM trains a channel-matched denoiser on the JSCC latent; here the unconditional
image prior plays that role, so the matching is done in the image domain:

1. **Equalise and invert.** x_pinv = A_m⁺ y_m, the minimum-norm least-squares image in model space
   (:func:`diffcomm.receivers.pigdm.model_space_system`). With a full-row-rank encoder
   A⁺ = E⁺ diag(ĥ g)⁻¹, i.e. zero-forcing equalisation with the receiver CSI ĥ followed by the
   encoder's pseudo-inverse (MMSE equalisation would shrink the symbols by a factor the pinv cannot
   undo, so ZF is the consistent choice). In pixels x_pinv = to_model(A⁺y) + P_N·1, where
   P_N projects on the null space of A (model-space zero, mid-grey, rather than pixel zero; the two
   agree when the all-ones image is in the row space, e.g. for 'downsample').
2. **Effective noise level** (:func:`cddm_start_sigma`). A⁺y = P_R x + A⁺n with n ~ N(0, N0/2 I_{2k})
   per real dimension, so the pixel-space noise has covariance (N0/2) A⁺A⁺ᵀ; model space doubles
   amplitudes (×4 variance). Averaged over the n pixels,

       σ_eff² = (N0/2) · 4 · tr(A⁺A⁺ᵀ) / n = 2 N0 Σ_i s_i⁻² / n,

   with s_i the non-zero singular values of the pixel-space link matrix M (:meth:`Link.matrix`).
   It depends on ĥ and the power gain g, so it is computed per image.
3. **Deterministic sampler from σ_eff.** Per image a Karras grid (eq. 5, ρ = 7) of ``steps`` levels
   that starts exactly at σ_eff (as :func:`diffcomm.diffusion.schedules.sigmas_from`) and ends at
   min(prior.sigma_min, σ_eff/2), then 0; Heun's method (Karras et al. 2022, Alg. 1, NFE 2·steps − 1)
   or Euler (= DDIM η = 0, NFE = steps) on the probability-flow ODE, started at x_pinv. The per-image
   grids are why this loop is written here rather than calling the shared-grid samplers.

Caveats (documented, not hidden): A⁺n lies in the row space of A, so x_pinv has *no* noise in the
null space, and its noise is anisotropic (variance ∝ 1/s_i² along v_i), whereas the denoiser assumes
x0 + σ_eff ε with white ε; with m = 2k < n the null-space content of x is simply missing. CDDM is well
matched to (near-)square, well-conditioned operators (its own setting: equalised symbols = latent +
noise). ``null_noise=True`` adds N(0, σ_eff²) noise in the null space so that every direction carries
noise of the start level and the denoiser regenerates the missing content from the prior.

Example:
    >>> res = cddm_receiver(link, rx, zoo.load("fmnist-prior"), steps=10)   # doctest: +SKIP
    >>> res.nfe, res.extras["start_sigma"][:2]                               # doctest: +SKIP
"""

from __future__ import annotations

import torch

from diffcomm.errors import DiffcommError
from diffcomm.receivers.base import ReceiverResult, Timer, check_received
from diffcomm.receivers.pigdm import F64, bmv, check_prior, check_steps, model_space_system

SAMPLERS = ("heun", "euler")


def _pinv_svd(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """SVD of a batch (B, m, n) with torch.linalg.pinv's cut-off: (U, s, Vh, keep)."""
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    tol = max(a.shape[-2:]) * torch.finfo(a.dtype).eps * s[:, :1]
    return u, s, vh, s > tol


def cddm_start_sigma(link, rx) -> torch.Tensor:
    """Model-space effective noise std of the pseudo-inverse, per image: float64 (B,).

    σ_eff = sqrt(2 N0 Σ_i s_i⁻² / n), s_i the non-zero singular values of ``link.matrix(rx)``; see
    the module docstring, step 2.

    Example:
        >>> link = make_link("gaussian", (1, 4, 4), "1/2", snr_db=20.0)        # doctest: +SKIP
        >>> cddm_start_sigma(link, link.transmit(torch.rand(2, 1, 4, 4)))     # doctest: +SKIP
    """
    check_received(link, rx, need_linear=True, receiver="cddm")
    _, s, _, keep = _pinv_svd(link.matrix(rx).to(F64))
    inv2 = torch.where(keep, s.clamp_min(1e-300) ** -2, torch.zeros_like(s)).sum(1)
    return (2 * rx.n0 * inv2 / link.n).sqrt()


def cddm_receiver(link, rx, prior, *, steps: int = 10, sampler: str = "heun", null_noise: bool = False,
                  class_labels: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> ReceiverResult:
    """CDDM-style receiver: pseudo-inverse, then deterministic denoising from σ_eff; see the module docstring.

    Returns pixels in [0, 1]; ``nfe`` = 2·steps − 1 (Heun) or steps (Euler);
    ``extras["start_sigma"]`` lists σ_eff per image. The generator is used only with ``null_noise``.

    Example:
        >>> res = cddm_receiver(link, rx, prior, steps=10, sampler="heun")   # doctest: +SKIP
    """
    check_received(link, rx, need_linear=True, receiver="cddm")
    check_prior(prior, "cddm")
    check_steps(steps, "cddm")
    if sampler not in SAMPLERS:
        raise DiffcommError(f"cddm: sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if not isinstance(null_noise, bool):
        raise DiffcommError(f"cddm: null_noise must be True or False, got {null_noise!r}")
    from diffcomm.diffusion.schedules import karras_sigmas

    with Timer() as t:
        system = model_space_system(link, rx)
        u, s, vh, keep = _pinv_svd(system.a)
        s_inv = torch.where(keep, 1 / s.clamp_min(1e-300), torch.zeros_like(s))
        x = bmv(vh.transpose(-1, -2), s_inv * bmv(u.transpose(-1, -2), system.y))   # A_m⁺ y_m  (B, n)
        # σ_eff from the model-space matrix: A_m = M/2 has singular values s_i/2 and noise N0/2,
        # so (N0/2) Σ (2/s_i)² / n = 2 N0 Σ s_i⁻² / n, the same as cddm_start_sigma.
        start = (system.noise_var * (s_inv ** 2).sum(1) / link.n).sqrt()
        if null_noise:
            z = torch.randn(x.shape, generator=generator, dtype=F64)
            z = z - bmv(vh.transpose(-1, -2), torch.where(keep, bmv(vh, z), torch.zeros_like(s)))
            x = x + start[:, None] * z
        b = rx.y.shape[0]
        sig = torch.stack([karras_sigmas(steps, min(prior.sigma_min, float(s0) / 2), float(s0), dtype=F64)
                           for s0 in start])                                           # (B, steps + 1)
        x = x.to(torch.float32).reshape(b, *link.shape)
        nfe = 0
        shape = (b,) + (1,) * (x.ndim - 1)
        for i in range(steps):
            s_i, s_next = sig[:, i].to(x.dtype), sig[:, i + 1].to(x.dtype)
            with torch.no_grad():
                d = (x - prior(x, s_i, class_labels)) / s_i.reshape(shape)
                nfe += 1
                dt = (s_next - s_i).reshape(shape)
                if sampler == "euler" or i == steps - 1:
                    x = x + d * dt
                else:
                    x2 = x + d * dt
                    d2 = (x2 - prior(x2, s_next, class_labels)) / s_next.reshape(shape)
                    nfe += 1
                    x = x + (d + d2) / 2 * dt
    return ReceiverResult(prior.to_pixels(x).clamp(0, 1), nfe=nfe, seconds=t.seconds,
                          extras={"steps": steps, "sampler": sampler, "null_noise": null_noise,
                                  "start_sigma": start.tolist()})
