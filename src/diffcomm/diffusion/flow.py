"""Flow-matching (rectified flow) priors behind the denoiser interface.

Rectified flow (Liu, Gong, Liu, "Flow Straight and Fast", ICLR 2023) and conditional flow
matching with the optimal-transport path (Lipman, Chen, Ben-Hamu, Nickel, Le, "Flow Matching for
Generative Modeling", ICLR 2023, eq. 20-23 with σ_min = 0) use the straight path, in the model
space [-1, 1],

    x_t = (1 − t) x0 + t ε,   t ∈ (0, 1),   ε ~ N(0, I),

whose conditional velocity is dx_t/dt = ε − x0. A network v_θ(x_t, t) is trained by

    L = E_{t, x0, ε} ‖v_θ(x_t, t) − (ε − x0)‖²           (:func:`flow_loss`),

and its optimum is the marginal velocity v*(x_t, t) = E[ε − x0 | x_t]. Here t is drawn
**uniformly** on (0, 1) as in both papers (Liu et al. 2023, eq. 1; Lipman et al. 2023, eq. 23);
``t_sampling="logit-normal"`` draws logit(t) ~ N(0, 1) instead (Esser et al., "Scaling Rectified
Flow Transformers for High-Resolution Image Synthesis", ICML 2024, §3.1).

**Denoiser view.** Dividing the path by 1 − t gives the EDM form of the rest of the package
(docs/architecture.md, "A prior kind"):

    x_t / (1 − t) = x0 + σ ε,   σ = t / (1 − t),   i.e.  t = σ / (1 + σ),  x_t = x / (1 + σ),

and since E[x_t | x_t] = (1 − t) E[x0 | x_t] + t E[ε | x_t], the posterior mean is

    D(x; σ) = E[x0 | x] = x_t − t v*(x_t, t).

:class:`FlowDenoiser` applies this map, so every sampler and receiver that takes an EDM denoiser
runs on a flow prior unchanged; Heun on the Karras σ grid is then the flow ODE
dx_t/dt = v(x_t, t) in a reparametrised time.

Example:
    >>> from diffcomm.diffusion.unet import UNet
    >>> D = FlowDenoiser(UNet(in_channels=1, base_channels=16))
    >>> D(torch.zeros(1, 1, 28, 28), torch.tensor(1.0)).shape
    torch.Size([1, 1, 28, 28])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from diffcomm.diffusion.precond import ModelSpacePrior
from diffcomm.errors import DiffcommError

T_SAMPLINGS = ("uniform", "logit-normal")


def sigma_to_t(sigma: torch.Tensor) -> torch.Tensor:
    """EDM noise level σ -> flow time t = σ / (1 + σ)."""
    return sigma / (1 + sigma)


def t_to_sigma(t: torch.Tensor) -> torch.Tensor:
    """Flow time t -> EDM noise level σ = t / (1 − t)."""
    return t / (1 - t)


class FlowDenoiser(ModelSpacePrior):
    """A velocity network ``net(x_t, t, class_labels) -> v`` as ``denoiser(x, sigma) -> x0_hat``.

    ``net`` is usually a :class:`~diffcomm.diffusion.unet.UNet`, whose noise-level input is the
    flow time t itself; any callable of that signature works (e.g. an exact velocity field in
    tests). ``sigma_min`` / ``sigma_max`` bound the EDM noise levels samplers use
    (σ = 80 is t = 80/81). Class-conditional nets take the null class ``num_classes`` for
    unconditional use and classifier-free guidance, like :class:`~diffcomm.diffusion.precond.EDMDenoiser`.
    """

    def __init__(self, net: nn.Module | Callable[..., torch.Tensor], sigma_min: float = 0.002,
                 sigma_max: float = 80.0):
        if not 0 < sigma_min < sigma_max:
            raise DiffcommError(f"FlowDenoiser needs 0 < sigma_min < sigma_max; got {sigma_min}, {sigma_max}")
        super().__init__(net, sigma_min, sigma_max)

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor | float,
                 class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """v(x_t, t) of the network, t a scalar or one value per sample."""
        t, _ = self.per_row_sigma(t, x_t)
        return self.net(x_t, t, class_labels).to(x_t.dtype)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        sigma, s = self.per_row_sigma(sigma, x)
        t = sigma_to_t(sigma)
        x_t = x / (1 + s)
        return x_t - t.reshape_as(s) * self.velocity(x_t, t, class_labels)


def sample_t(batch: int, t_sampling: str = "uniform", generator: torch.Generator | None = None,
             device: torch.device | str | None = None) -> torch.Tensor:
    """Training times t ∈ (0, 1): uniform, or logit-normal with logit(t) ~ N(0, 1)."""
    if t_sampling == "uniform":
        return torch.rand(batch, generator=generator, device=device)
    if t_sampling == "logit-normal":
        return torch.sigmoid(torch.randn(batch, generator=generator, device=device))
    raise DiffcommError(f"unknown t_sampling {t_sampling!r}; choose from {', '.join(T_SAMPLINGS)}")


def flow_loss(model: FlowDenoiser, x0: torch.Tensor, class_labels: torch.Tensor | None = None,
              t_sampling: str = "uniform", generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample flow-matching loss ‖v_θ(x_t, t) − (ε − x0)‖² (mean over pixels); see the module docstring.

    As :func:`~diffcomm.diffusion.loss.edm_loss`, t and ε are drawn for the whole (global) batch
    and each data-parallel rank evaluates its slice (:func:`diffcomm.training.shard`).
    """
    from diffcomm.training import shard

    b = x0.shape[0]
    t = sample_t(b, t_sampling, generator, x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device)
    tt = t.reshape(-1, *([1] * (x0.ndim - 1)))
    x0, tt, t, noise, class_labels = shard(x0, tt, t, noise, class_labels)
    x_t = (1 - tt) * x0 + tt * noise
    v = model.velocity(x_t, t, class_labels)
    return ((v.float() - (noise - x0)) ** 2).flatten(1).mean(1)


__all__ = ["FlowDenoiser", "T_SAMPLINGS", "flow_loss", "sample_t", "sigma_to_t", "t_to_sigma"]
