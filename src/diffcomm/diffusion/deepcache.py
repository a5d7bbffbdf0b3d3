"""DeepCache: reuse the U-Net's slowly changing deep features between adjacent sampling steps.

Ma, Fang, Wang, "DeepCache: Accelerating Diffusion Models for Free", CVPR 2024 (§3.2, Alg. 1 with a
uniform 1:N strategy). Adjacent denoising steps change the deep, low-resolution features of a
U-Net little; only the shallow, full-resolution path needs recomputing. Every ``interval``-th call
runs the whole network and keeps the feature entering the shallowest up-sampling blocks (the
output of everything below level 0, the paper's cached high-level feature at the skip branch of
the first level); the calls in between run only ``conv_in``, the level-0 down blocks and the
level-0 up blocks, taking that cached feature in place of the deeper path. ``interval = 1`` is the
plain network.

The cache is reset when the input's shape changes (another batch, CFG's doubled batch) or the noise
level rises (a new trajectory starts), so stale features of another batch are never used. Guidance
gradients flow through the recomputed shallow path only (the cached feature is a constant), as with
DeepCache's reuse in any guided sampler.

Cost: for the shipped Fashion-MNIST U-Net (levels 28², 14², 7² with 24/48/48 channels) the skipped
path is about half of the multiply-adds; ``bench/deepcache.py`` measures time and quality.

Example:
    >>> from diffcomm.diffusion.precond import EDMDenoiser
    >>> from diffcomm.diffusion.unet import UNet
    >>> prior = DeepCachePrior(EDMDenoiser(UNet(in_channels=1, base_channels=8)), interval=3)
    >>> x = torch.zeros(2, 1, 28, 28)
    >>> [prior(x, torch.tensor(1.0)).shape == x.shape for _ in range(3)], prior.full_calls
    ([True, True, True], 1)
"""

from __future__ import annotations

from typing import Any

import torch

from diffcomm.errors import DiffcommError


class FeatureCache:
    """What the U-Net reads during one call: whether to reuse, and the cached deep feature."""

    def __init__(self) -> None:
        self.feature: torch.Tensor | None = None
        self.reuse = False


class DeepCachePrior:
    """Wrap a U-Net prior (EDM, flow or consistency) so that its network reuses deep features; see the module docstring.

    Attributes not found on the wrapper (``sigma_min``, ``to_pixels``, ``net``, ...) are read from the
    wrapped prior, so it is a drop-in prior for every sampler and receiver. ``full_calls`` and
    ``cached_calls`` count the two kinds of evaluation; :meth:`reset` starts a new trajectory.
    """

    def __init__(self, prior: Any, interval: int = 2):
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise DiffcommError(f"DeepCache interval must be an integer >= 1 (1 = no caching), got {interval!r}")
        net = getattr(prior, "net", None)
        if net is None or not hasattr(net, "config") or not hasattr(net, "up"):
            raise DiffcommError("DeepCache needs a prior whose .net is a diffcomm U-Net (diffusion.unet.UNet)")
        self.prior = prior
        self.interval = interval
        self.cache = FeatureCache()
        self.calls = 0
        self.full_calls = 0
        self.cached_calls = 0
        self._shape: tuple[int, ...] | None = None
        self._sigma = float("inf")

    def reset(self) -> None:
        """Forget the cached feature; the next call runs the whole network."""
        self.cache.feature = None
        self.calls = 0
        self._shape = None
        self._sigma = float("inf")

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float, class_labels: torch.Tensor | None = None,
                 **kwargs: Any) -> torch.Tensor:
        level = float(torch.as_tensor(sigma).detach().max())
        if tuple(x.shape) != self._shape or level > self._sigma:
            self.reset()
            self._shape = tuple(x.shape)
        self._sigma = level
        self.cache.reuse = self.cache.feature is not None and self.calls % self.interval != 0
        net = self.prior.net
        net.deep_cache = self.cache
        try:
            out = self.prior(x, sigma, class_labels, **kwargs)
        finally:
            del net.deep_cache
        self.calls += 1
        if self.cache.reuse:
            self.cached_calls += 1
        else:
            self.full_calls += 1
        return out

    def __getattr__(self, name: str) -> Any:
        if name == "prior":
            raise AttributeError(name)
        return getattr(self.prior, name)


__all__ = ["DeepCachePrior", "FeatureCache"]
