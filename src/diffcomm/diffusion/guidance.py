"""Classifier-free guidance (Ho & Salimans 2022) as a denoiser wrapper usable with any sampler.

Convention (docs/interfaces.md): ε̃ = (1 + w) ε(x | c) - w ε(x | ∅) (Ho & Salimans 2022, eq. 6). Since
D = x - σ ε is affine in ε with the same x and σ, this is the same as

    D̃(x; σ, c) = (1 + w) D(x; σ, c) - w D(x; σ, ∅).

w = 0 is the plain conditional model; w > 0 pushes samples away from the unconditional model
(towards higher p(c | x)). The two evaluations are batched into one call of size 2B.

Example:
    >>> from diffcomm.diffusion.gaussian import GaussianMixtureDenoiser
    >>> prior = GaussianMixtureDenoiser(torch.tensor([0.5, 0.5]), torch.tensor([[-1.0], [1.0]]),
    ...                                 0.1 * torch.ones(2, 1, 1))
    >>> D = cfg_denoiser(prior, w=2.0, null_label=prior.null_label)
    >>> D(torch.zeros(1, 1), torch.tensor(1.0), class_labels=torch.tensor([1]))   # 3 D(c) - 2 D(∅)
    tensor([[2.7273]])
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffcomm.errors import DiffcommError


def cfg_denoiser(denoiser: Callable[..., torch.Tensor], w: float,
                 null_label: int | torch.Tensor) -> Callable[..., torch.Tensor]:
    """Wrap a conditional denoiser ``denoiser(x, sigma, class_labels=...)`` with CFG weight ``w``.

    ``null_label`` is the label the model was trained with for "no condition" (an int such as
    ``num_classes`` for integer labels, or a tensor, e.g. zeros for one-hot labels, broadcast to
    the shape of one sample's label). The returned function requires ``class_labels``; other
    keyword arguments are passed unchanged to both evaluations.

    Example:
        >>> D = cfg_denoiser(lambda x, s, class_labels: x * class_labels[:, None], w=1.0, null_label=0)
        >>> D(torch.ones(2, 1), torch.ones(2), class_labels=torch.tensor([1.0, 3.0]))   # 2·c·x - 0
        tensor([[2.],
                [6.]])
    """
    w = float(w)
    if not w == w or w < 0:
        raise DiffcommError(f"guidance weight w must be >= 0 (0 = plain conditional model); got {w}")

    def guided(x: torch.Tensor, sigma: torch.Tensor | float, class_labels: torch.Tensor | None = None,
               **kwargs) -> torch.Tensor:
        if class_labels is None:
            raise DiffcommError("classifier-free guidance needs class_labels; pass extra_args={'class_labels': y}")
        b = x.shape[0]
        c = torch.as_tensor(class_labels, device=x.device)
        if c.shape[0] != b:
            raise DiffcommError(f"class_labels must have one entry per sample ({b}); got {c.shape[0]}")
        null = torch.as_tensor(null_label, dtype=c.dtype, device=c.device).expand_as(c)
        s = torch.as_tensor(sigma, device=x.device).reshape(-1)
        s = s.expand(b) if s.numel() == 1 else s
        out = denoiser(torch.cat([x, x]), torch.cat([s, s]), class_labels=torch.cat([c, null]), **kwargs)
        d_cond, d_uncond = out[:b], out[b:]
        return (1 + w) * d_cond - w * d_uncond

    return guided
