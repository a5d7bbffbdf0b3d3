"""EDM preconditioning: turn a raw network ``F`` into ``denoiser(x, sigma) -> x0_hat``.

Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative Models",
NeurIPS 2022, Table 1 / eq. (7):

    D(x; σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x; c_noise(σ)),
    c_skip = σ_d² / (σ² + σ_d²),  c_out = σ σ_d / sqrt(σ² + σ_d²),
    c_in = 1 / sqrt(σ² + σ_d²),   c_noise = ln(σ) / 4.

diffcomm priors work in the model space [-1, 1] (``to_model(x) = 2x - 1``), where σ_d = 0.5.

Example:
    >>> from diffcomm.diffusion.unet import UNet
    >>> D = EDMDenoiser(UNet(in_channels=1, base_channels=16))
    >>> D(torch.zeros(1, 1, 28, 28), torch.tensor(1.0)).shape
    torch.Size([1, 1, 28, 28])
"""

from __future__ import annotations

import torch
from torch import nn


class ModelSpacePrior(nn.Module):
    """What every shipped prior kind shares: the network, the σ range samplers use, the class count
    (with the null class ``num_classes`` for CFG) and the [0, 1] <-> [-1, 1] model-space map.
    Subclasses implement ``forward(x, sigma, class_labels) -> x0_hat`` for ``x = x0 + σ ε``."""

    def __init__(self, net: nn.Module, sigma_min: float = 0.002, sigma_max: float = 80.0):
        super().__init__()
        self.net = net
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max

    @property
    def num_classes(self) -> int:
        return int(getattr(getattr(self.net, "config", None), "num_classes", 0))

    @staticmethod
    def per_row_sigma(sigma: torch.Tensor | float, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """σ as ``(B,)`` and as ``(B, 1, ..., 1)`` (broadcast against ``x``)."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        if sigma.numel() == 1:
            sigma = sigma.expand(x.shape[0])
        return sigma, sigma.reshape(-1, *([1] * (x.ndim - 1)))

    @staticmethod
    def to_model(x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] -> model space [-1, 1]."""
        return x * 2 - 1

    @staticmethod
    def to_pixels(x: torch.Tensor) -> torch.Tensor:
        """Model space [-1, 1] -> pixels in [0, 1] (not clamped)."""
        return (x + 1) / 2


class EDMDenoiser(ModelSpacePrior):
    """EDM-preconditioned denoiser in model space; see the module docstring."""

    def __init__(self, net: nn.Module, sigma_data: float = 0.5, sigma_min: float = 0.002,
                 sigma_max: float = 80.0):
        super().__init__(net, sigma_min, sigma_max)
        self.sigma_data = sigma_data

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        sigma, s = self.per_row_sigma(sigma, x)
        sd2 = self.sigma_data ** 2
        c_skip = sd2 / (s ** 2 + sd2)
        c_out = s * self.sigma_data / (s ** 2 + sd2).sqrt()
        c_in = 1 / (s ** 2 + sd2).sqrt()
        c_noise = sigma.log() / 4
        f = self.net(c_in * x, c_noise, class_labels)
        return c_skip * x + c_out * f.to(x.dtype)
