"""Samplers for ``denoiser(x, sigma, **extra_args) -> x0_hat`` over an explicit noise schedule.

One convention (k-diffusion / EDM, Karras et al. 2022): ``x = x0 + σ ε``; the score is
∇ log p_σ(x) = (D(x; σ) - x) / σ² (Tweedie); the probability-flow ODE is
dx/dσ = (x - D(x; σ)) / σ (Karras et al. 2022, eq. 4 with s(t) = 1, σ(t) = t).

Every sampler has the signature ::

    sample_X(denoiser, x, sigmas, generator=None, callback=None, extra_args=None, **options) -> x

``x`` is the state at ``sigmas[0]`` (for a full run ``x = sigmas[0] * randn``); ``sigmas`` is a
strictly decreasing 1-D tensor, normally ending in 0 (then the last step returns a clean
sample; a schedule without the final 0 stops at the last noise level). The first-order samplers
and Heun/DPM-Solver++ also take **one schedule per batch row**, ``sigmas`` of shape ``(B, n + 1)``
(each row strictly decreasing; zeros only in the last column, in every row or none), for
receivers whose start level depends on each image's channel (CDDM, HiFi under fading). ``sigmas`` is cast to
``x``'s dtype and device. ``generator`` drives all the randomness; ``callback`` is called once
per step *before* the update with ``dict(i=, x=, sigma=, sigma_hat=, denoised=)``;
``extra_args`` (e.g. ``{"class_labels": y}``) is passed to every denoiser call. The denoiser is
called with σ of shape (B,). Count network evaluations with :class:`NFECounter`.

Example:
    >>> from diffcomm.diffusion.gaussian import GaussianDenoiser
    >>> from diffcomm.diffusion.schedules import karras_sigmas
    >>> D = NFECounter(GaussianDenoiser(torch.zeros(2), torch.eye(2)))
    >>> sigmas = karras_sigmas(10, 0.002, 80.0)
    >>> g = torch.Generator().manual_seed(0)
    >>> x = sample_heun(D, torch.randn(8, 2, generator=g) * sigmas[0], sigmas, generator=g)
    >>> x.shape, D.nfe
    (torch.Size([8, 2]), 19)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch

from diffcomm.errors import DiffcommError

Denoiser = Callable[..., torch.Tensor]
Callback = Callable[[dict[str, Any]], None] | None


class NFECounter:
    """Wrap a denoiser and count its calls (network function evaluations, one per batch call).

    Attributes not found on the counter (``sigma_min``, ``to_pixels``, ...) are read from the
    wrapped denoiser.

    Example:
        >>> counter = NFECounter(lambda x, sigma: x)
        >>> _ = counter(torch.zeros(1), torch.ones(1)); counter.nfe
        1
    """

    def __init__(self, denoiser: Denoiser):
        self.denoiser = denoiser
        self.nfe = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        self.nfe += 1
        return self.denoiser(x, sigma, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name == "denoiser":                 # not set yet (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.denoiser, name)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def _check(x: torch.Tensor, sigmas: torch.Tensor, per_row: bool = False) -> torch.Tensor:
    """Validate the schedule (1-D, or ``(B, n + 1)`` with ``per_row``) and cast it to x's dtype/device."""
    if not torch.is_tensor(x) or x.ndim < 1 or not x.is_floating_point():
        raise DiffcommError("x must be a floating-point tensor of shape (B, ...)")
    s = torch.as_tensor(sigmas)
    if s.ndim == 2 and per_row:
        if s.shape[0] != x.shape[0] or s.shape[1] < 2:
            raise DiffcommError(f"per-row sigmas must be (B, n + 1) with B = {x.shape[0]} and n >= 1, "
                                f"got {tuple(s.shape)}")
        s64 = s.to(torch.float64)
        zero_last = s64[:, -1] == 0
        if not torch.isfinite(s64).all() or (s64 < 0).any() or not (s64[:, 1:] < s64[:, :-1]).all() \
                or (s64[:, :-1] == 0).any() or not (bool(zero_last.all()) or not bool(zero_last.any())):
            raise DiffcommError("per-row sigmas must be finite, >= 0, strictly decreasing along each row, "
                                "with zeros only in the last column of every row or of none")
        return s.to(dtype=x.dtype, device=x.device)
    if s.ndim != 1 or len(s) < 2:
        extra = " or (B, n + 1) per row" if per_row else ""
        raise DiffcommError(f"sigmas must be a 1-D tensor{extra} with at least 2 noise levels "
                            f"(e.g. karras_sigmas(n, ...))")
    s64 = s.to(torch.float64)
    if not torch.isfinite(s64).all() or (s64 < 0).any() or not (s64[1:] < s64[:-1]).all():
        raise DiffcommError("sigmas must be finite, >= 0 and strictly decreasing (e.g. karras_sigmas(n, ...))")
    return s.to(dtype=x.dtype, device=x.device)


def _level(sigmas: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
    """Noise level ``i`` broadcastable against ``x``: a 0-d tensor, or ``(B, 1, ...)`` for per-row sigmas."""
    s = sigmas[..., i]
    return s if s.ndim == 0 else s.reshape(-1, *([1] * (x.ndim - 1)))


def _rows(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The ``(B,)`` σ handed to the denoiser."""
    return sigma * x.new_ones(x.shape[0]) if sigma.ndim == 0 else sigma.reshape(-1)


def _is_zero(sigma: torch.Tensor) -> bool:
    return bool((sigma == 0).all())


def _noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device).to(x.device)


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """ODE derivative dx/dσ = (x - D(x; σ)) / σ (Karras et al. 2022, eq. 4)."""
    return (x - denoised) / sigma


def ancestral_step(sigma: torch.Tensor, sigma_next: torch.Tensor,
                   eta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(σ_down, σ_up) of a DDIM(η) step in σ form; σ_down² + σ_up² = σ_next².

    Song et al. 2021 (DDIM), eq. 16, written for x = x0 + σ ε:
    σ_up = η σ_next sqrt(σ² - σ_next²) / σ, the std of q(x_{σ_next} | x_σ, x0) when η = 1.
    """
    if _is_zero(torch.as_tensor(sigma_next)):
        return sigma_next, sigma_next
    sigma_up = torch.minimum(sigma_next, eta * sigma_next * (sigma ** 2 - sigma_next ** 2).sqrt() / sigma)
    return (sigma_next ** 2 - sigma_up ** 2).sqrt(), sigma_up


def _churn(x: torch.Tensor, sigma: torch.Tensor, n_steps: int, s_churn: float, s_tmin: float, s_tmax: float,
           s_noise: float, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Karras et al. 2022, Alg. 2, lines 4-6: raise σ to σ̂ = σ (1 + γ) by adding fresh noise."""
    if s_churn == 0:
        return x, sigma
    gamma = min(s_churn / n_steps, math.sqrt(2) - 1) if s_tmin <= sigma <= s_tmax else 0.0
    sigma_hat = sigma * (gamma + 1)
    if gamma > 0:
        x = x + _noise(x, generator) * s_noise * (sigma_hat ** 2 - sigma ** 2).sqrt()
    return x, sigma_hat


def _callback(callback: Callback, i: int, x, sigma, sigma_hat, denoised) -> None:
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "sigma_hat": sigma_hat, "denoised": denoised})


# --------------------------------------------------------------------------------------------
# Deterministic (probability-flow ODE) samplers
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def sample_euler(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None = None,
                 callback: Callback = None, extra_args: dict | None = None, s_churn: float = 0.0,
                 s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0) -> torch.Tensor:
    """Euler steps of the probability-flow ODE, optional churn (Karras et al. 2022, Alg. 2 without
    the 2nd-order correction). NFE = number of steps. With ``s_churn = 0`` this is DDIM(η = 0).

    Example:
        >>> from diffcomm.diffusion.schedules import karras_sigmas
        >>> sample_euler(lambda x, s: torch.full_like(x, 3.0), torch.ones(2, 1), karras_sigmas(5, 0.01, 1.0))
        tensor([[3.],
                [3.]])
    """
    sigmas, extra_args = _check(x, sigmas, per_row=s_churn == 0), extra_args or {}
    n = sigmas.shape[-1] - 1
    for i in range(n):
        sigma, sigma_next = _level(sigmas, i, x), _level(sigmas, i + 1, x)
        x, sigma_hat = _churn(x, sigma, n, s_churn, s_tmin, s_tmax, s_noise, generator)
        denoised = denoiser(x, _rows(sigma_hat, x), **extra_args)
        _callback(callback, i, x, sigma, sigma_hat, denoised)
        x = x + to_d(x, sigma_hat, denoised) * (sigma_next - sigma_hat)
    return x


@torch.no_grad()
def sample_heun(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None = None,
                callback: Callback = None, extra_args: dict | None = None, s_churn: float = 0.0,
                s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0) -> torch.Tensor:
    """Heun's 2nd-order method (Karras et al. 2022, Alg. 1; with ``s_churn`` > 0, Alg. 2).

    The step to σ = 0 is a plain Euler step, so a schedule of n levels plus 0 costs 2n - 1 NFE.

    Example:
        >>> from diffcomm.diffusion.schedules import karras_sigmas
        >>> sample_heun(lambda x, s: torch.zeros_like(x), torch.ones(1, 1), karras_sigmas(3, 0.01, 1.0))
        tensor([[0.]])
    """
    sigmas, extra_args = _check(x, sigmas, per_row=s_churn == 0), extra_args or {}
    n = sigmas.shape[-1] - 1
    for i in range(n):
        sigma, sigma_next = _level(sigmas, i, x), _level(sigmas, i + 1, x)
        x, sigma_hat = _churn(x, sigma, n, s_churn, s_tmin, s_tmax, s_noise, generator)
        denoised = denoiser(x, _rows(sigma_hat, x), **extra_args)
        _callback(callback, i, x, sigma, sigma_hat, denoised)
        d = to_d(x, sigma_hat, denoised)
        dt = sigma_next - sigma_hat
        if _is_zero(sigma_next):
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigma_next, denoiser(x_2, _rows(sigma_next, x), **extra_args))
            x = x + (d + d_2) / 2 * dt
    return x


@torch.no_grad()
def sample_ddim(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None = None,
                callback: Callback = None, extra_args: dict | None = None, eta: float = 0.0) -> torch.Tensor:
    """DDIM (Song, Meng & Ermon 2021, eq. 12) in σ form; ``eta`` in [0, 1] sets the noise.

    Dividing eq. 12 by sqrt(ᾱ_{t-1}) and writing ε̂ = (x - D) / σ gives
    x_next = D + σ_down ε̂ + σ_up z with (σ_down, σ_up) from :func:`ancestral_step`.
    η = 0 is deterministic (identical to Euler on the PF-ODE); η = 1 is DDPM with the
    posterior variance β̃_t (identical to :func:`sample_ddpm_ancestral`). NFE = steps.

    Example:
        >>> from diffcomm.diffusion.schedules import karras_sigmas
        >>> sample_ddim(lambda x, s: torch.zeros_like(x), torch.ones(1, 1), karras_sigmas(4, 0.01, 1.0))
        tensor([[0.]])
    """
    if not 0.0 <= eta <= 1.0:
        raise DiffcommError(f"eta must lie in [0, 1] (0 = deterministic DDIM, 1 = DDPM); got {eta}")
    return _ddim_family(denoiser, x, sigmas, lambda s, s_next: ancestral_step(s, s_next, eta), eta > 0,
                        generator, callback, extra_args)


def _ddim_family(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                 split: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]], stochastic: bool,
                 generator: torch.Generator | None, callback: Callback, extra_args: dict | None) -> torch.Tensor:
    """x_next = D + σ_down ε̂ + σ_up z with ε̂ = (x − D)/σ and (σ_down, σ_up) = ``split(σ, σ_next)``
    (fresh noise only when ``stochastic``); the last step to σ = 0 returns D. DDIM and DiffPIR's
    re-noising differ only in the split."""
    sigmas, extra_args = _check(x, sigmas, per_row=True), extra_args or {}
    for i in range(sigmas.shape[-1] - 1):
        sigma, sigma_next = _level(sigmas, i, x), _level(sigmas, i + 1, x)
        denoised = denoiser(x, _rows(sigma, x), **extra_args)
        _callback(callback, i, x, sigma, sigma, denoised)
        if _is_zero(sigma_next):
            return denoised
        sigma_down, sigma_up = split(sigma, sigma_next)
        x = denoised + sigma_down * to_d(x, sigma, denoised)
        if stochastic:
            x = x + sigma_up * _noise(x, generator)
    return x


@torch.no_grad()
def sample_renoise(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None = None,
                   callback: Callback = None, extra_args: dict | None = None, zeta: float = 1.0) -> torch.Tensor:
    """DiffPIR's re-noising step (Zhu et al. 2023, Alg. 1 lines 5-7) in σ form; ``zeta`` in [0, 1].

    With ε̂ = (x − D)/σ: x_next = D + σ_next (sqrt(1 − ζ) ε̂ + sqrt(ζ) z). ζ = 0 is deterministic
    (= DDIM η = 0 = Euler); ζ = 1 draws the whole next noise level afresh. It is the DDIM family with
    σ_up = sqrt(ζ) σ_next, σ_down = sqrt(1 − ζ) σ_next (DDIM's η = 1 is ζ = (σ² − σ_next²)/σ²). NFE = steps.

    Example:
        >>> from diffcomm.diffusion.schedules import karras_sigmas
        >>> sample_renoise(lambda x, s: torch.zeros_like(x), torch.ones(1, 1), karras_sigmas(4, 0.01, 1.0))
        tensor([[0.]])
    """
    if not 0.0 <= zeta <= 1.0:
        raise DiffcommError(f"zeta must lie in [0, 1] (0 = deterministic, 1 = fresh noise each step); got {zeta}")
    return _ddim_family(denoiser, x, sigmas, lambda s, s_next: (math.sqrt(1 - zeta) * s_next, math.sqrt(zeta) * s_next),
                        zeta > 0, generator, callback, extra_args)


@torch.no_grad()
def sample_consistency(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                       generator: torch.Generator | None = None, callback: Callback = None,
                       extra_args: dict | None = None) -> torch.Tensor:
    """Multistep consistency sampling (Song et al., "Consistency Models", ICML 2023, Alg. 1).

    x0 = f(x, σ_0); then for each further level σ_i > 0: x0 = f(x0 + σ_i z, σ_i) (the paper adds
    sqrt(σ_i² − σ_min²) z; σ_min = 0.002 changes it by < 10⁻⁶ σ_i at the levels used). It is
    :func:`sample_renoise` with ζ = 1; NFE = the number of nonzero levels. For a consistency model use
    :func:`diffcomm.diffusion.consistency.consistency_sigmas` (which :func:`~diffcomm.diffusion.sampling.sample_prior`
    picks for ``sampler="consistency"``).

    Example:
        >>> sample_consistency(lambda x, s: torch.zeros_like(x), torch.ones(1, 1), torch.tensor([80.0, 2.0, 0.0]))
        tensor([[0.]])
    """
    return sample_renoise(denoiser, x, sigmas, generator=generator, callback=callback, extra_args=extra_args,
                          zeta=1.0)


@torch.no_grad()
def sample_dpmpp_2m(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                    generator: torch.Generator | None = None, callback: Callback = None,
                    extra_args: dict | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Alg. 2), multistep, data prediction.

    With λ = -log σ and h = λ_next - λ: x_next = (σ_next / σ) x - (e^{-h} - 1) D̃, where D̃ = D on
    the first step and the last step (to σ = 0) and otherwise
    D̃ = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}, r = h_{i-1} / h_i. NFE = steps.

    Example:
        >>> from diffcomm.diffusion.schedules import karras_sigmas
        >>> sample_dpmpp_2m(lambda x, s: torch.zeros_like(x), torch.ones(1, 1), karras_sigmas(4, 0.01, 1.0))
        tensor([[0.]])
    """
    sigmas, extra_args = _check(x, sigmas, per_row=True), extra_args or {}
    old_denoised, h_last = None, None
    for i in range(sigmas.shape[-1] - 1):
        sigma, sigma_next = _level(sigmas, i, x), _level(sigmas, i + 1, x)
        denoised = denoiser(x, _rows(sigma, x), **extra_args)
        _callback(callback, i, x, sigma, sigma, denoised)
        if _is_zero(sigma_next):
            x = denoised
            break
        h = sigma.log() - sigma_next.log()
        if old_denoised is None:
            d_tilde = denoised
        else:
            r = h_last / h
            d_tilde = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        x = (sigma_next / sigma) * x - torch.expm1(-h) * d_tilde
        old_denoised, h_last = denoised, h
    return x


def _ode_fixed_steps(drift: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, u0: torch.Tensor,
                     u1: torch.Tensor, n: int, method: str) -> torch.Tensor:
    """n equal steps in u = log σ of dx/du = drift(x, u): classical RK4 or Euler."""
    h = (u1 - u0) / n
    u = u0
    for _ in range(n):
        k1 = drift(x, u)
        if method == "euler":
            x = x + h * k1
        else:
            k2 = drift(x + h / 2 * k1, u + h / 2)
            k3 = drift(x + h / 2 * k2, u + h / 2)
            k4 = drift(x + h * k3, u + h)
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        u = u + h
    return x


@torch.no_grad()
def sample_ode(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None = None,
               callback: Callback = None, extra_args: dict | None = None,
               method: Literal["rk45", "dop853", "rk4", "euler"] = "rk45", rtol: float = 1e-7,
               atol: float = 1e-9, n_substeps: int = 8) -> torch.Tensor:
    """Probability-flow ODE (Song et al. 2021, eq. 13; Karras et al. 2022, eq. 4), solved accurately.

    Integrates dx/du = x - D(x; e^u) in u = log σ (the same ODE as dx/dσ = (x - D) / σ) through
    the positive levels of ``sigmas``: adaptively with ``scipy.integrate.solve_ivp``
    (``method="rk45"`` or ``"dop853"``, ``rtol``/``atol``, one solve over the whole range on the
    flattened state) or with ``n_substeps`` fixed ``"rk4"``/``"euler"`` steps per interval. If
    ``sigmas`` ends in 0 the last step is x = D(x; σ_last) (the ODE's σ -> 0 limit to O(σ_last²)).
    Meant as a reference solution; ``generator`` is unused. The callback (if given) costs one
    extra denoiser call per level.

    Example:
        >>> from diffcomm.diffusion.gaussian import GaussianDenoiser
        >>> D = GaussianDenoiser(torch.zeros(1), torch.eye(1))
        >>> x = sample_ode(D, torch.full((1, 1), 10.0, dtype=torch.float64),
        ...                torch.tensor([10.0, 1.0], dtype=torch.float64))
        >>> round(float(x), 6), round(float(D.ode_flow(torch.full((1, 1), 10.0), 10.0, 1.0)), 6)
        (1.407195, 1.407195)
    """
    if method not in ("rk45", "dop853", "rk4", "euler"):
        raise DiffcommError(f"method must be 'rk45', 'dop853', 'rk4' or 'euler'; got {method!r}")
    if n_substeps < 1:
        raise DiffcommError(f"n_substeps must be >= 1; got {n_substeps}")
    sigmas, extra_args = _check(x, sigmas), extra_args or {}
    s_in = x.new_ones(x.shape[0])

    def drift(xx: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return xx - denoiser(xx, u.exp() * s_in, **extra_args)

    pos = sigmas[sigmas > 0]
    states = [x]
    if method in ("rk45", "dop853") and len(pos) > 1:
        from scipy.integrate import solve_ivp

        def f(u: float, y: np.ndarray) -> np.ndarray:
            xx = torch.from_numpy(y).to(dtype=x.dtype, device=x.device).reshape(x.shape)
            return drift(xx, torch.tensor(u, dtype=x.dtype, device=x.device)).reshape(-1).double().cpu().numpy()

        u_grid = pos.double().log().cpu().numpy()
        sol = solve_ivp(f, (u_grid[0], u_grid[-1]), x.reshape(-1).double().cpu().numpy(), method=method.upper(),
                        t_eval=u_grid, rtol=rtol, atol=atol)
        if not sol.success or sol.y.shape[1] != len(pos):
            raise DiffcommError(f"ODE solver failed ({sol.message}); loosen rtol/atol or use method='rk4'")
        states = [torch.from_numpy(sol.y[:, j]).to(dtype=x.dtype, device=x.device).reshape(x.shape)
                  for j in range(len(pos))]
    elif len(pos) > 1:
        for j in range(len(pos) - 1):
            states.append(_ode_fixed_steps(drift, states[-1], pos[j].log(), pos[j + 1].log(), n_substeps, method))

    for i in range(len(pos)):
        if callback is not None:
            _callback(callback, i, states[i], pos[i], pos[i], denoiser(states[i], pos[i] * s_in, **extra_args))
    x = states[-1]
    if sigmas[-1] == 0:
        x = denoiser(x, pos[-1] * s_in, **extra_args)
    return x


# --------------------------------------------------------------------------------------------
# Stochastic samplers
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def sample_ddpm_ancestral(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                          generator: torch.Generator | None = None, callback: Callback = None,
                          extra_args: dict | None = None,
                          variance: Literal["posterior", "beta"] = "posterior",
                          project: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                          ) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Alg. 2) in σ form.

    Each step draws from the forward-process posterior q(x_{σ'} | x_σ, x0 = D(x_σ; σ)):

        x' = D + (σ'² / σ²) (x - D) + c z,

    which is Ho et al.'s μ_θ(x_t, t) divided by sqrt(ᾱ_{t-1}). ``variance="posterior"`` uses
    Ho et al.'s σ_t² = β̃_t, i.e. c = σ' sqrt(σ² - σ'²) / σ (then this equals DDIM η = 1 and
    k-diffusion's ``sample_euler_ancestral`` with eta = 1); ``variance="beta"`` uses σ_t² = β_t,
    c² = β_t / ᾱ_{t-1} = (σ² - σ'²)(1 + σ'²) / (1 + σ²) (a VP-specific choice). No noise on the
    step to σ' = 0 (Alg. 2 sets z = 0 at t = 1). NFE = steps. ``project(x', σ')``, if given, is
    applied to every new state (the last one included) and returns the state to continue from: a
    constraint on the state, e.g. DDNM's range-space replacement by the measurement noised to the
    level σ' (:func:`diffcomm.receivers.ddnm.range_replacement`).

    Example:
        >>> from diffcomm.diffusion.schedules import karras_sigmas
        >>> sample_ddpm_ancestral(lambda x, s: torch.zeros_like(x), torch.ones(1, 1), karras_sigmas(4, 0.01, 1.0))
        tensor([[0.]])
    """
    if variance not in ("posterior", "beta"):
        raise DiffcommError(f"variance must be 'posterior' or 'beta'; got {variance!r}")
    sigmas, extra_args = _check(x, sigmas, per_row=True), extra_args or {}
    for i in range(sigmas.shape[-1] - 1):
        sigma, sigma_next = _level(sigmas, i, x), _level(sigmas, i + 1, x)
        denoised = denoiser(x, _rows(sigma, x), **extra_args)
        _callback(callback, i, x, sigma, sigma, denoised)
        x = denoised + (sigma_next ** 2 / sigma ** 2) * (x - denoised)
        if not _is_zero(sigma_next):
            if variance == "posterior":
                c = sigma_next * (sigma ** 2 - sigma_next ** 2).sqrt() / sigma
            else:
                c = ((sigma ** 2 - sigma_next ** 2) * (1 + sigma_next ** 2) / (1 + sigma ** 2)).sqrt()
            x = x + c * _noise(x, generator)
        if project is not None:
            x = project(x, sigma_next)
    return x


@torch.no_grad()
def sample_annealed_langevin(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                             generator: torch.Generator | None = None, callback: Callback = None,
                             extra_args: dict | None = None, n_steps_each: int = 100,
                             step_lr: float | None = None) -> torch.Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, "NCSN", Alg. 1).

    For each positive level σ_i: α_i = ε σ_i² / σ_L² (ε = ``step_lr``, σ_L the smallest positive
    level; default ε = 0.2 σ_L², the paper's ratio ε = 2e-5 at σ_L = 0.01), then ``n_steps_each``
    times x <- x + (α_i / 2) s(x; σ_i) + sqrt(α_i) z with the score s = (D - x) / σ_i². If
    ``sigmas`` ends in 0, a final denoising step x <- D(x; σ_L) follows (Song & Ermon 2020,
    "NCSNv2", §4 / Jolicoeur-Martineau et al. 2021). Callback once per level
    (i = level) with the first evaluation of that level. NFE = levels · n_steps_each (+ 1).
    Each step contracts by 1 - α_i / (2 (λ + σ_i²)) along a data direction of variance λ, so
    ε >= 2 σ_L² would make the chain unstable or heavily biased; that raises an error.

    Example:
        >>> from diffcomm.diffusion.gaussian import GaussianDenoiser
        >>> from diffcomm.diffusion.schedules import ve_sigmas
        >>> g = torch.Generator().manual_seed(0)
        >>> x = sample_annealed_langevin(GaussianDenoiser(torch.zeros(1), torch.eye(1)), torch.zeros(2000, 1),
        ...                              ve_sigmas(20, 0.05, 20.0), g, step_lr=5e-4, n_steps_each=100)
        >>> abs(float(x.var()) - 1.0) < 0.15       # N(0, 1) data; ULA bias here is about 3 %
        True
    """
    sigmas, extra_args = _check(x, sigmas), extra_args or {}
    s_in = x.new_ones(x.shape[0])
    pos = sigmas[sigmas > 0]
    step_lr = 0.2 * float(pos[-1]) ** 2 if step_lr is None else step_lr
    if n_steps_each < 1 or not 0 < step_lr < 2 * float(pos[-1]) ** 2:
        raise DiffcommError(f"need n_steps_each >= 1 and 0 < step_lr < 2 sigma_L^2 = {2 * float(pos[-1]) ** 2:.3g} "
                            f"(sigma_L = smallest positive sigma); got {n_steps_each}, {step_lr}")
    for i, sigma in enumerate(pos):
        alpha = step_lr * (sigma / pos[-1]) ** 2
        for j in range(n_steps_each):
            denoised = denoiser(x, sigma * s_in, **extra_args)
            if j == 0:
                _callback(callback, i, x, sigma, sigma, denoised)
            x = x + (alpha / 2) * (denoised - x) / sigma ** 2 + alpha.sqrt() * _noise(x, generator)
    if sigmas[-1] == 0:
        x = denoiser(x, pos[-1] * s_in, **extra_args)
    return x


def _batch_norm_mean(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(v.shape[0], -1).norm(dim=1).mean()


@torch.no_grad()
def sample_pc(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None = None,
              callback: Callback = None, extra_args: dict | None = None, snr: float = 0.16, n_corrector: int = 1,
              predictor: Literal["reverse_diffusion", "ancestral"] = "reverse_diffusion") -> torch.Tensor:
    """Predictor-corrector sampling for the VE SDE (Song et al. 2021, Alg. 2 with Alg. 4 corrector).

    Predictor from σ to σ' (reverse diffusion, Song et al. 2021 eq. 46, which for the VE SDE is
    also Euler-Maruyama): x <- x + (σ² - σ'²) s(x; σ) + sqrt(σ² - σ'²) z; or ``"ancestral"``: the
    DDPM posterior step of :func:`sample_ddpm_ancestral`. Then ``n_corrector`` Langevin steps at
    σ': ε = 2 (snr ‖z‖ / ‖s‖)², x <- x + ε s(x; σ') + sqrt(2 ε) z. As in the authors' code, ‖·‖ are
    per-sample norms averaged over the batch (so the step size depends on the batch). The step
    to σ' = 0 returns D(x; σ) (the noise-free "x_mean"). NFE = steps + n_corrector · (steps - 1).

    Example:
        >>> from diffcomm.diffusion.schedules import karras_sigmas
        >>> sample_pc(lambda x, s: torch.zeros_like(x), torch.ones(3, 2), karras_sigmas(4, 0.01, 1.0))
        tensor([[0., 0.],
                [0., 0.],
                [0., 0.]])
    """
    if predictor not in ("reverse_diffusion", "ancestral"):
        raise DiffcommError(f"predictor must be 'reverse_diffusion' or 'ancestral'; got {predictor!r}")
    if snr <= 0 or n_corrector < 0:
        raise DiffcommError(f"need snr > 0 and n_corrector >= 0; got {snr}, {n_corrector}")
    sigmas, extra_args = _check(x, sigmas), extra_args or {}
    s_in = x.new_ones(x.shape[0])
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma * s_in, **extra_args)
        _callback(callback, i, x, sigma, sigma, denoised)
        if sigma_next == 0:
            x = denoised
            break
        if predictor == "reverse_diffusion":
            dvar = sigma ** 2 - sigma_next ** 2
            x = x + dvar * (denoised - x) / sigma ** 2 + dvar.sqrt() * _noise(x, generator)
        else:
            c = sigma_next * (sigma ** 2 - sigma_next ** 2).sqrt() / sigma
            x = denoised + (sigma_next ** 2 / sigma ** 2) * (x - denoised) + c * _noise(x, generator)
        for _ in range(n_corrector):
            score = (denoiser(x, sigma_next * s_in, **extra_args) - x) / sigma_next ** 2
            z = _noise(x, generator)
            eps = 2 * (snr * _batch_norm_mean(z) / _batch_norm_mean(score)) ** 2
            x = x + eps * score + (2 * eps).sqrt() * z
    return x
