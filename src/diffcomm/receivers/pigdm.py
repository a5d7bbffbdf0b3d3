"""ΠGDM receiver for linear links: pseudo-inverse guidance with the exact per-image link matrix.

Song, Vahdat, Mardani, Kautz, "Pseudoinverse-Guided Diffusion Models for Inverse Problems",
ICLR 2023, §3, eq. (7)-(8), noisy-measurement form. The reverse process is guided by

    ∇_{x_σ} log p(y | x_σ) ≈ g = [(y − A x̂0)ᵀ (r_σ² A Aᵀ + σ_y² I)⁻¹ A ∂x̂0/∂x_σ]ᵀ,     x̂0 = D(x_σ; σ),

i.e. p(x0 | x_σ) is approximated by N(x̂0, r_σ² I), which makes p(y | x_σ) = N(A x̂0, r_σ² AAᵀ + σ_y² I).
The m×m system (m = 2k, e.g. 98 for 28×28 at CBR 1/16) is solved exactly per image with a Cholesky
factorisation of the real link matrix (:meth:`diffcomm.link.Link.matrix`), and ``Jᵀ u`` is one
vector-Jacobian product through the denoiser.

**Model space, exactly.** The prior works on ``x_m = 2 x − 1``. With M the real link matrix in
pixels, ``complex_to_real(y) = M (x_m + 1)/2 + n``, so the receivers use the affine-free system

    y_m = complex_to_real(y) − M·1/2 = A_m x_m + n,   A_m = M/2,   n ~ N(0, σ_y² I),  σ_y² = N0/2

(:func:`model_space_system`; shared by the DDNM, DiffPIR and CDDM receivers).

**r_σ² (our choice).** ``r_σ² = σ² σ_d² / (σ² + σ_d²)``: the exact variance of p(x0 | x_σ) for a prior
N(μ, σ_d² I). By default σ_d is the prior's own data scale ``prior.sigma_data`` (EDM priors: 0.5 in
model space), or 1 if it has none, which is the paper's ``r_t² = σ_t²/(1 + σ_t²)`` for unit-variance
data. For a Gaussian prior N(μ, σ_d² I) with the matching ``sigma_data`` the guidance is the *exact*
likelihood score, so the sampler targets the exact posterior (up to discretisation); for other priors
it is ΠGDM's isotropic approximation (tests/receivers/test_gaussian_exactness.py measures its bias).

**Sampler.** On an EDM σ grid (Karras et al. 2022, eq. 5) the guidance is added to the prior score,
i.e. the conditional denoiser is ``D_y = x̂0 + w σ² g`` (w = ``guidance_scale``, 1 = the plain
posterior), and each step is a DDIM(η) step (Song, Meng, Ermon 2021, eq. 12 in σ form, as ΠGDM's
eq. 8): ``x' = D_y + σ_down (x − D_y)/σ + σ_up z`` with (σ_down, σ_up) from
:func:`diffcomm.diffusion.samplers.ancestral_step`. η = 1 (default) is ancestral (DDPM) sampling,
η = 0 the deterministic probability-flow ODE (Euler). NFE = ``steps`` (plus one backward pass each).

Example:
    >>> res = pigdm_receiver(link, rx, zoo.load("fmnist-prior"), steps=50)   # doctest: +SKIP
    >>> res.x_hat.shape, res.nfe                                               # doctest: +SKIP
    (torch.Size([16, 1, 28, 28]), 50)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from diffcomm.channels import complex_to_real
from diffcomm.errors import DiffcommError
from diffcomm.receivers.base import ReceiverResult, Timer, check_received

F64 = torch.float64


@dataclass
class ModelSpaceSystem:
    """The linear observation model of one batch in the prior's model space (float64).

    ``y = a x_m + n``, ``n ~ N(0, noise_var I)``; ``a`` is ``(B, m, n)`` (m = 2k real measurements),
    ``y`` is ``(B, m)``.
    """

    a: torch.Tensor
    y: torch.Tensor
    noise_var: float

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``a x`` for model-space images ``x`` (B, C, H, W) -> float64 (B, m)."""
        return bmv(self.a, x.flatten(1).to(F64))

    def adjoint(self, v: torch.Tensor) -> torch.Tensor:
        """``aᵀ v`` for ``v`` (B, m) -> float64 (B, n)."""
        return bmv(self.a.transpose(-1, -2), v)


def bmv(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Batched matrix-vector product ``(B, m, n) @ (B, n) -> (B, m)``."""
    return (a @ v[..., None]).squeeze(-1)


def model_space_system(link, rx) -> ModelSpaceSystem:
    """Exact model-space system ``y_m = A_m x_m + n`` of a linear link (see the module docstring).

    Example:
        >>> sys_ = model_space_system(link, rx)                                  # doctest: +SKIP
        >>> sys_.a.shape, sys_.noise_var == rx.n0 / 2                            # doctest: +SKIP
        (torch.Size([4, 98, 784]), True)
    """
    m = link.matrix(rx).to(F64)
    y = complex_to_real(rx.y).to(F64) - m.sum(-1) / 2
    return ModelSpaceSystem(a=m / 2, y=y, noise_var=rx.n0 / 2)


def check_steps(steps: int, receiver: str) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise DiffcommError(f"{receiver}: steps must be an int >= 1, got {steps!r}")


def check_unit(value: float, name: str, receiver: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise DiffcommError(f"{receiver}: {name} must be a number in [0, 1], got {value!r}")


def check_positive(value: float, name: str, receiver: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (0 < value < math.inf):
        raise DiffcommError(f"{receiver}: {name} must be a finite number > 0, got {value!r}")


def check_prior(prior, receiver: str) -> None:
    """One-line error unless ``prior`` is a callable denoiser with ``to_pixels``, ``sigma_min``, ``sigma_max``."""
    missing = [name for name in ("to_pixels", "sigma_min", "sigma_max") if not hasattr(prior, name)]
    if not callable(prior) or missing:
        raise DiffcommError(f"{receiver}: prior must be a model-space denoiser prior(x, sigma, class_labels) with "
                            f"to_pixels, sigma_min and sigma_max (e.g. diffcomm.zoo.load(...)); missing "
                            f"{', '.join(missing) or 'a __call__'}")


def sigma_grid(prior, steps: int, sigma_max: float | None, receiver: str) -> torch.Tensor:
    """Karras σ grid from ``sigma_max`` (default ``prior.sigma_max``) to ``prior.sigma_min``, then 0 (float64)."""
    from diffcomm.diffusion.schedules import karras_sigmas

    top = prior.sigma_max if sigma_max is None else sigma_max
    if not isinstance(top, (int, float)) or isinstance(top, bool) or not prior.sigma_min <= top < math.inf:
        raise DiffcommError(f"{receiver}: sigma_max must be a number >= prior.sigma_min ({prior.sigma_min}), "
                            f"got {sigma_max!r}")
    return karras_sigmas(steps, prior.sigma_min, float(top), dtype=F64)


def pigdm_guidance(system: ModelSpaceSystem, x0: torch.Tensor, x: torch.Tensor, r2: float) -> torch.Tensor:
    """ΠGDM eq. (7): ``Jᵀ Aᵀ (r² AAᵀ + σ_y² I)⁻¹ (y − A x̂0)`` via one VJP; ``x0`` must depend on ``x``."""
    resid = system.y - system.apply(x0.detach())
    a = system.a
    s = r2 * (a @ a.transpose(-1, -2)) + system.noise_var * torch.eye(a.shape[1], dtype=F64, device=a.device)
    v = torch.cholesky_solve(resid[..., None], torch.linalg.cholesky(s)).squeeze(-1)
    u = system.adjoint(v).to(x0.dtype).reshape(x0.shape)
    return torch.autograd.grad(x0, x, grad_outputs=u)[0]


def pigdm_receiver(link, rx, prior, *, steps: int = 50, eta: float = 1.0, sigma_data: float | None = None,
                   guidance_scale: float = 1.0, sigma_max: float | None = None,
                   class_labels: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> ReceiverResult:
    """ΠGDM posterior sampling for a linear link; see the module docstring.

    ``prior(x, sigma, class_labels)`` is a model-space denoiser with ``to_pixels``, ``sigma_min``,
    ``sigma_max``. Returns pixels in [0, 1]; ``nfe = steps``.

    Example:
        >>> gen = torch.Generator().manual_seed(0)
        >>> res = pigdm_receiver(link, rx, prior, steps=50, generator=gen)   # doctest: +SKIP
    """
    check_received(link, rx, need_linear=True, receiver="pigdm")
    check_prior(prior, "pigdm")
    check_steps(steps, "pigdm")
    check_unit(eta, "eta", "pigdm")
    if sigma_data is None:
        sigma_data = float(getattr(prior, "sigma_data", 1.0))
    check_positive(sigma_data, "sigma_data", "pigdm")
    check_positive(guidance_scale, "guidance_scale", "pigdm")
    with Timer() as t:
        system = model_space_system(link, rx)
        sigmas = sigma_grid(prior, steps, sigma_max, "pigdm")
        b = rx.y.shape[0]
        x = torch.randn((b, *link.shape), generator=generator) * float(sigmas[0])
        sd2 = sigma_data ** 2
        for i in range(steps):
            s, s_next = float(sigmas[i]), float(sigmas[i + 1])
            x_req = x.detach().requires_grad_(True)
            with torch.enable_grad():
                x0 = prior(x_req, torch.full((b,), s, dtype=x.dtype), class_labels)
                g = pigdm_guidance(system, x0, x_req, r2=s * s * sd2 / (s * s + sd2))
            d = x0.detach() + guidance_scale * s * s * g
            x = _ddim_step(x, d, s, s_next, eta, generator)
    return ReceiverResult(prior.to_pixels(x).clamp(0, 1), nfe=steps, seconds=t.seconds,
                          extras={"steps": steps, "eta": eta, "sigma_data": sigma_data,
                                  "guidance_scale": guidance_scale, "vjp": steps})


def _ddim_step(x: torch.Tensor, d: torch.Tensor, s: float, s_next: float, eta: float,
               generator: torch.Generator | None) -> torch.Tensor:
    """DDIM(η) step in σ form from ``x`` at σ = s to s_next given the denoised estimate ``d``.

    (σ_down, σ_up) as :func:`diffcomm.diffusion.samplers.ancestral_step`, on Python floats.
    """
    if s_next == 0:
        return d
    s_up = min(s_next, eta * s_next * math.sqrt(s * s - s_next * s_next) / s)
    s_down = math.sqrt(s_next * s_next - s_up * s_up)
    x = d + s_down * (x - d) / s
    if s_up > 0:
        x = x + s_up * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x
