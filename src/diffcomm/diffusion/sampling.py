"""Convenience: draw samples from a prior with any sampler by name (used by the CLI and reports).

Example:
    >>> from diffcomm import zoo
    >>> x, nfe = sample_prior(zoo.load("fmnist-prior"), 2, sampler="heun", steps=3)
    >>> x.shape, nfe                    # Heun: 2·steps − 1 evaluations
    (torch.Size([2, 1, 28, 28]), 5)
"""

from __future__ import annotations

import torch

from diffcomm.errors import DiffcommError


def get_sampler(name: str):
    """Sampler function by short name (``heun`` -> ``samplers.sample_heun``)."""
    from diffcomm.diffusion import samplers

    aliases = {"ddpm": "ddpm_ancestral", "langevin": "annealed_langevin"}
    fn = getattr(samplers, f"sample_{aliases.get(name, name)}", None)
    if fn is None:
        raise DiffcommError(f"unknown sampler '{name}'")
    return fn


@torch.no_grad()
def sample_prior(prior, n: int, sampler: str = "heun", steps: int = 18, labels: torch.Tensor | None = None,
                 guidance: float = 0.0, seed: int = 0, shape: tuple[int, ...] | None = None,
                 batch_size: int = 250) -> tuple[torch.Tensor, int]:
    """Samples in pixel space [0, 1] and the number of network evaluations per image."""
    import math

    from diffcomm.checks import check_seed
    from diffcomm.diffusion.guidance import cfg_denoiser
    from diffcomm.diffusion.samplers import NFECounter
    from diffcomm.diffusion.schedules import karras_sigmas

    if isinstance(guidance, bool) or not isinstance(guidance, int | float) or not math.isfinite(guidance):
        raise DiffcommError(f"guidance must be a finite number, got {guidance!r}")
    if not 0 <= guidance <= 100:
        raise DiffcommError(f"guidance must be in [0, 100], got {guidance}")
    cfg = prior.net.config
    shape = shape or (cfg.in_channels, 28, 28)
    gen = torch.Generator().manual_seed(check_seed(seed, "seed"))
    counter = NFECounter(prior)
    use_cfg = labels is not None and guidance > 0
    denoiser = cfg_denoiser(counter, guidance, null_label=prior.num_classes) if use_cfg else counter
    fn = get_sampler(sampler)
    if sampler == "consistency":  # no wasted evaluation at σ_min, where a consistency model is the identity
        from diffcomm.diffusion.consistency import consistency_sigmas

        sigmas = consistency_sigmas(steps, prior.sigma_min, prior.sigma_max)
    else:
        sigmas = karras_sigmas(steps, prior.sigma_min, prior.sigma_max)
    out, nfe = [], 0
    for i in range(0, n, batch_size):
        b = min(batch_size, n - i)
        x = torch.randn((b, *shape), generator=gen) * sigmas[0]
        extra = {"class_labels": labels[i:i + b]} if labels is not None else {}
        counter.nfe = 0
        out.append(fn(denoiser, x, sigmas, generator=gen, extra_args=extra))
        nfe = counter.nfe
    # Network evaluations per image: a CFG call evaluates the network on both the conditional and
    # the unconditional input, so it counts twice.
    return prior.to_pixels(torch.cat(out)).clamp(0, 1), nfe * (2 if use_cfg else 1)
