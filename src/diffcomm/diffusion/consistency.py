"""Consistency models behind the denoiser interface, and consistency distillation of a diffusion prior.

Song, Dhariwal, Chen, Sutskever, "Consistency Models", ICML 2023. A consistency function maps any
point of a probability-flow ODE trajectory to its origin, f(x_σ, σ) = x_{σ_min}; it is
parametrised so the boundary condition f(x, σ_min) = x holds exactly (§3, eq. 3 and App. C):

    f_θ(x, σ) = c_skip(σ) x + c_out(σ) F_θ(c_in(σ) x; c_noise(σ)),
    c_skip = σ_d² / ((σ − σ_min)² + σ_d²),   c_out = σ_d (σ − σ_min) / sqrt(σ_d² + σ²),
    c_in = 1 / sqrt(σ² + σ_d²),               c_noise = ln(σ) / 4,

with the EDM network input of :class:`~diffcomm.diffusion.precond.EDMDenoiser` (σ_d = 0.5 in the
[-1, 1] model space), so a consistency model starts from the shipped diffusion prior's weights.

**Consistency distillation** (Song et al. 2023, Alg. 2, eq. 7): on the Karras grid
σ_min = σ_1 < … < σ_N = σ_max (ρ = 7), draw n ~ U{1, …, N−1}, x_{n+1} = x0 + σ_{n+1} z, take one
Heun step of the *teacher's* probability-flow ODE from σ_{n+1} to σ_n (x̂_n), and minimise

    λ(σ_n) d(f_θ(x_{n+1}, σ_{n+1}), sg f_θ(x̂_n, σ_n)),    λ(σ_n) = 1 / (σ_{n+1} − σ_n),

with the pseudo-Huber distance d(a, b) = sqrt(‖a − b‖² + c²) − c, c = 0.00054 √dim (Song & Dhariwal,
"Improved Techniques for Training Consistency Models", ICLR 2024, §3.3 and §3.5 for λ), and the
target network the stop-gradient student (EMA rate μ = 0, their §3.2). The weights shipped are the
training loop's slow EMA, as in the original paper's evaluation.

**Sampling** (:func:`~diffcomm.diffusion.samplers.sample_consistency`, Song et al. 2023, Alg. 1):
x = f(σ_max ε, σ_max), then for each further level σ: x = f(x + σ z, σ). One network evaluation
per level; :func:`consistency_sigmas` gives the K-step grid.

Example:
    >>> from diffcomm.diffusion.unet import UNet
    >>> f = ConsistencyDenoiser(UNet(in_channels=1, base_channels=16))
    >>> x = torch.randn(2, 1, 28, 28)
    >>> bool(torch.equal(f(x, torch.tensor(f.sigma_min)), x))
    True
"""

from __future__ import annotations

import torch
from torch import nn

from diffcomm.diffusion.precond import ModelSpacePrior
from diffcomm.errors import DiffcommError


class ConsistencyDenoiser(ModelSpacePrior):
    """A consistency model f(x, σ) ≈ the ODE trajectory's origin, as ``denoiser(x, sigma) -> x0_hat``.

    Every sampler and receiver that takes an EDM denoiser runs on it; f is *not* a posterior mean,
    so Heun/Euler samplers are not what it is for: use ``sampler="consistency"``.
    """

    def __init__(self, net: nn.Module, sigma_data: float = 0.5, sigma_min: float = 0.002,
                 sigma_max: float = 80.0):
        if not 0 < sigma_min < sigma_max:
            raise DiffcommError(f"ConsistencyDenoiser needs 0 < sigma_min < sigma_max; got {sigma_min}, {sigma_max}")
        super().__init__(net, sigma_min, sigma_max)
        self.sigma_data = sigma_data

    def scalings(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_skip, c_out, c_in) at noise levels ``s``; c_skip(σ_min) = 1 and c_out(σ_min) = 0 exactly."""
        sd2 = self.sigma_data ** 2
        c_skip = sd2 / ((s - self.sigma_min) ** 2 + sd2)
        c_out = (s - self.sigma_min) * self.sigma_data / (s ** 2 + sd2).sqrt()
        c_in = 1 / (s ** 2 + sd2).sqrt()
        return c_skip, c_out, c_in

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        sigma, s = self.per_row_sigma(sigma, x)
        c_skip, c_out, c_in = self.scalings(s)
        f = self.net(c_in * x, sigma.log() / 4, class_labels)
        return c_skip * x + c_out * f.to(x.dtype)


def consistency_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0,
                       rho: float = 7.0) -> torch.Tensor:
    """The K-step consistency sampling grid: the first K levels of a Karras grid of K + 1 levels, then 0.

    (The Karras grid's last level is σ_min, where f is the identity; an evaluation there is wasted.)

    Example:
        >>> consistency_sigmas(1).tolist()
        [80.0, 0.0]
        >>> len(consistency_sigmas(4))
        5
    """
    from diffcomm.diffusion.schedules import karras_sigmas

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise DiffcommError(f"consistency sampling needs steps >= 1, got {steps!r}")
    grid = karras_sigmas(steps + 1, sigma_min, sigma_max, rho)
    return torch.cat([grid[:steps], grid[-1:]])


def distillation_grid(num_scales: int, sigma_min: float = 0.002, sigma_max: float = 80.0,
                      rho: float = 7.0) -> torch.Tensor:
    """σ_1 < … < σ_N of consistency distillation (ascending Karras grid, N = ``num_scales``)."""
    from diffcomm.diffusion.schedules import karras_sigmas

    if num_scales < 2:
        raise DiffcommError(f"consistency distillation needs num_scales >= 2, got {num_scales}")
    return karras_sigmas(num_scales, sigma_min, sigma_max, rho)[:-1].flip(0)


@torch.no_grad()
def teacher_heun_step(teacher, x: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor,
                      class_labels: torch.Tensor | None = None) -> torch.Tensor:
    """One Heun step of the teacher's probability-flow ODE dx/dσ = (x − D(x; σ))/σ from σ to σ_next (per row)."""
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    s_next = sigma_next.reshape_as(s)
    extra = {} if class_labels is None else {"class_labels": class_labels}
    d = (x - teacher(x, sigma, **extra)) / s
    x_euler = x + (s_next - s) * d
    d_next = (x_euler - teacher(x_euler, sigma_next, **extra)) / s_next
    return x + (s_next - s) * (d + d_next) / 2


def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c: float | None = None) -> torch.Tensor:
    """Per-sample pseudo-Huber distance sqrt(‖a − b‖² + c²) − c; c = 0.00054 √dim by default."""
    diff = (a - b).flatten(1)
    c = 0.00054 * diff.shape[1] ** 0.5 if c is None else c
    return (diff.pow(2).sum(1) + c * c).sqrt() - c


def consistency_distillation_loss(student: ConsistencyDenoiser, teacher, x0: torch.Tensor,
                                  class_labels: torch.Tensor | None = None, num_scales: int = 18,
                                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample consistency-distillation loss (see the module docstring); ``x0`` in model space."""
    grid = distillation_grid(num_scales, student.sigma_min, student.sigma_max).to(x0)
    b = x0.shape[0]
    n = torch.randint(0, num_scales - 1, (b,), generator=generator)
    sigma, sigma_next = grid[n], grid[n + 1]  # σ_n < σ_{n+1}
    z = torch.randn(x0.shape, generator=generator).to(x0)
    x_next = x0 + sigma_next.reshape(-1, *([1] * (x0.ndim - 1))) * z
    x_n = teacher_heun_step(teacher, x_next, sigma_next, sigma, class_labels)
    with torch.no_grad():
        target = student(x_n, sigma, class_labels)
    weight = 1 / (sigma_next - sigma)
    return weight * pseudo_huber(student(x_next, sigma_next, class_labels).float(), target.float())


__all__ = ["ConsistencyDenoiser", "consistency_distillation_loss", "consistency_sigmas", "distillation_grid",
           "pseudo_huber", "teacher_heun_step"]
