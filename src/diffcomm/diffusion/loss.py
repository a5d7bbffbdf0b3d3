"""Denoising score matching loss with the EDM weighting.

Vincent 2011 (denoising score matching) in the form of Karras et al. 2022, eq. (2) and (8):

    L = E_{σ, x0, ε} [ λ(σ) ‖D(x0 + σ ε; σ) − x0‖² ],
    ln σ ~ N(P_mean, P_std²),  λ(σ) = (σ² + σ_d²) / (σ σ_d)²,

which makes the effective regression target of the raw network ``F`` unit-variance at every σ.
An optimal ``D`` is the posterior mean E[x0 | x], whose residual gives the score:
∇ log p_σ(x) = (D(x; σ) − x) / σ² (Tweedie's formula).

Example:
    >>> from diffcomm.diffusion.unet import UNet
    >>> from diffcomm.diffusion.precond import EDMDenoiser
    >>> D = EDMDenoiser(UNet(in_channels=1, base_channels=16))
    >>> edm_loss(D, torch.zeros(4, 1, 28, 28), generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4])
"""

from __future__ import annotations

import torch


def edm_loss(denoiser, x0: torch.Tensor, class_labels: torch.Tensor | None = None,
             p_mean: float = -1.2, p_std: float = 1.2, sigma_data: float = 0.5,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample EDM-weighted denoising loss (mean over pixels); see the module docstring.

    Under data-parallel training the noise is drawn for the whole (global) ``x0`` and each rank
    evaluates its slice (:func:`diffcomm.training.shard`), so the per-sample losses of all ranks
    together are those of one process; in one process nothing is sliced.
    """
    from diffcomm.training import shard

    b = x0.shape[0]
    ln_sigma = p_mean + p_std * torch.randn(b, generator=generator, device=x0.device)
    sigma = ln_sigma.exp()
    noise = torch.randn(x0.shape, generator=generator, device=x0.device)
    s = sigma.reshape(-1, *([1] * (x0.ndim - 1)))
    x0, s, sigma, noise, class_labels = shard(x0, s, sigma, noise, class_labels)
    weight = (s ** 2 + sigma_data ** 2) / (s * sigma_data) ** 2
    denoised = denoiser(x0 + s * noise, sigma, class_labels)
    return (weight * (denoised.float() - x0) ** 2).flatten(1).mean(1)
