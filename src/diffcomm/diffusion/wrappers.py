"""Wrap ε-, v- and x0-prediction networks of VP diffusion into ``denoiser(x, sigma) -> x0_hat``.

A VP model sees ``x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε``. Dividing by α_t = sqrt(ᾱ_t) gives the
EDM form used by every sampler in diffcomm (Karras et al. 2022, §2 and Table 1)::

    x_t / α_t = x0 + (σ_t / α_t) ε  =  x0 + σ ε,    σ = sqrt((1 - ᾱ_t) / ᾱ_t).

So, given our ``x = x0 + σ ε`` and σ, the wrapper feeds the network ``x_t = x / sqrt(1 + σ²)``
and the timestep t whose σ_t = σ, and converts the prediction to x0::

    ε-prediction (Ho et al. 2020):        D = x - σ ε̂
    v-prediction (Salimans & Ho 2022):    D = α_t x_t - s_t v̂ = x / (1 + σ²) - σ / sqrt(1 + σ²) v̂
                                          (v = α_t ε - s_t x0, with s_t = sqrt(1 - ᾱ_t))
    x0-prediction:                        D = x̂0

The timestep handed to the network is found from σ by one of (in this order):
``alpha_bars`` (a discrete table; t is the fractional index from linear interpolation of log σ
over the table's σ_t, as in k-diffusion's ``DiscreteSchedule``, rounded if ``quantize``),
``time_fn(sigma)`` (any continuous map, e.g. ``vp_t_of_sigma``), or σ itself.

Example:
    >>> from diffcomm.diffusion.schedules import linear_alpha_bars
    >>> zero_eps = lambda x_t, t: torch.zeros_like(x_t)
    >>> D = EpsDenoiser(zero_eps, linear_alpha_bars())
    >>> D(torch.ones(1, 3), torch.tensor(2.0))          # ε̂ = 0  ->  D = x
    tensor([[1., 1., 1.]])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from diffcomm.diffusion.schedules import discrete_sigma_to_t, discrete_t_to_sigma, vp_sigmas
from diffcomm.errors import DiffcommError


class _VPWrapper(nn.Module):
    """Shared plumbing: σ -> timestep, σ -> VP input scaling, batch-shaped σ."""

    def __init__(self, model: Callable[..., torch.Tensor], alpha_bars: torch.Tensor | None = None,
                 time_fn: Callable[[torch.Tensor], torch.Tensor] | None = None, quantize: bool = False):
        super().__init__()
        if alpha_bars is not None and time_fn is not None:
            raise DiffcommError("give either alpha_bars (discrete model) or time_fn (continuous model), not both")
        self.model = model
        self.time_fn = time_fn
        self.quantize = quantize
        if alpha_bars is not None:
            ab = torch.as_tensor(alpha_bars, dtype=torch.float64)
            if ab.ndim != 1 or len(ab) < 2 or not (ab[1:] < ab[:-1]).all():
                raise DiffcommError("alpha_bars must be a 1-D table of >= 2 strictly decreasing values in (0, 1]")
            self.register_buffer("sigma_table", vp_sigmas(ab))
        else:
            self.sigma_table = None

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """The network's time input for noise level σ (see the module docstring)."""
        if self.sigma_table is not None:
            t = discrete_sigma_to_t(sigma, self.sigma_table)
            return t.round() if self.quantize else t
        if self.time_fn is not None:
            return self.time_fn(sigma)
        return sigma

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """σ of a (fractional) discrete timestep; only for a model given ``alpha_bars``."""
        if self.sigma_table is None:
            raise DiffcommError("t_to_sigma needs the alpha_bars table of a discrete model")
        return discrete_t_to_sigma(t, self.sigma_table)

    def _prepare(self, x: torch.Tensor, sigma: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        s = torch.as_tensor(sigma, device=x.device).reshape(-1)
        if s.numel() == 1:
            s = s.expand(x.shape[0])
        if s.numel() != x.shape[0]:
            raise DiffcommError(f"sigma must be a scalar or have one value per sample ({x.shape[0]}); got {s.numel()}")
        return s, s.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))

    def _time(self, s: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.sigma_to_t(s).to(dtype)


class EpsDenoiser(_VPWrapper):
    """``D(x, σ) = x - σ ε̂(x / sqrt(1 + σ²), t(σ))`` for an ε-prediction VP network.

    ``eps_model(x_t, t, **kwargs)`` predicts the noise of ``x_t = sqrt(ᾱ_t) x0 + sqrt(1-ᾱ_t) ε``
    (Ho et al. 2020, eq. 11), with t a discrete timestep 0..T-1 indexing ``alpha_bars``
    (fractional between table entries unless ``quantize``). Identity used:
    x_t / sqrt(ᾱ_t) = x0 + σ_t ε, σ_t² = (1 - ᾱ_t) / ᾱ_t, so E[x0 | x] = x - σ E[ε | x].

    Example:
        >>> from diffcomm.diffusion.schedules import linear_alpha_bars
        >>> D = EpsDenoiser(lambda x_t, t: torch.ones_like(x_t), linear_alpha_bars())
        >>> D(torch.zeros(2, 1), torch.tensor([1.0, 3.0]))
        tensor([[-1.],
                [-3.]])
    """

    def __init__(self, eps_model: Callable[..., torch.Tensor], alpha_bars: torch.Tensor | None = None, *,
                 time_fn: Callable[[torch.Tensor], torch.Tensor] | None = None, quantize: bool = False):
        if alpha_bars is None and time_fn is None:
            raise DiffcommError("EpsDenoiser needs alpha_bars (the model's ᾱ_t table) or time_fn")
        super().__init__(eps_model, alpha_bars, time_fn, quantize)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, **kwargs) -> torch.Tensor:
        s, sb = self._prepare(x, sigma)
        eps = self.model(x / (1 + sb * sb).sqrt(), self._time(s, x.dtype), **kwargs)
        return x - sb * eps.to(x.dtype)


class VDenoiser(_VPWrapper):
    """``D(x, σ) = x / (1 + σ²) - σ / sqrt(1 + σ²) · v̂`` for a v-prediction VP network.

    Salimans & Ho 2022, §4 / Appendix D: with z_t = α_t x0 + s_t ε (α_t² + s_t² = 1) the network
    predicts v = α_t ε - s_t x0, and x0 = α_t z_t - s_t v. Here α_t = 1 / sqrt(1 + σ²),
    s_t = σ / sqrt(1 + σ²) and z_t = α_t x.

    Example:
        >>> D = VDenoiser(lambda z, t: torch.zeros_like(z))        # v̂ = 0
        >>> D(torch.full((1, 1), 2.0), 3.0)                         # x / (1 + σ²)
        tensor([[0.2000]])
    """

    def __init__(self, v_model: Callable[..., torch.Tensor], alpha_bars: torch.Tensor | None = None, *,
                 time_fn: Callable[[torch.Tensor], torch.Tensor] | None = None, quantize: bool = False):
        super().__init__(v_model, alpha_bars, time_fn, quantize)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, **kwargs) -> torch.Tensor:
        s, sb = self._prepare(x, sigma)
        alpha = 1 / (1 + sb * sb).sqrt()
        v = self.model(x * alpha, self._time(s, x.dtype), **kwargs)
        return alpha * alpha * x - sb * alpha * v.to(x.dtype)


class X0Denoiser(_VPWrapper):
    """``D(x, σ) = x̂0(x / sqrt(1 + σ²), t(σ))`` for a network that predicts x0 directly.

    With ``vp_input=False`` the network gets ``x`` unscaled (a VE model conditioned on some
    time variable instead of σ).

    Example:
        >>> D = X0Denoiser(lambda x_t, t: 2 * x_t)                 # toy: returns 2 x_t
        >>> D(torch.ones(1, 1), torch.tensor(0.0))                  # σ = 0: x_t = x
        tensor([[2.]])
    """

    def __init__(self, x0_model: Callable[..., torch.Tensor], alpha_bars: torch.Tensor | None = None, *,
                 time_fn: Callable[[torch.Tensor], torch.Tensor] | None = None, quantize: bool = False,
                 vp_input: bool = True):
        super().__init__(x0_model, alpha_bars, time_fn, quantize)
        self.vp_input = vp_input

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, **kwargs) -> torch.Tensor:
        s, sb = self._prepare(x, sigma)
        x_in = x / (1 + sb * sb).sqrt() if self.vp_input else x
        return self.model(x_in, self._time(s, x.dtype), **kwargs).to(x.dtype)
