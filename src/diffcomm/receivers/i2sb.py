"""I2SB receiver: an image-to-image Schrödinger bridge from the DeepJSCC reconstruction to the image.

Liu et al., "I2SB: Image-to-Image Schrödinger Bridge", ICML 2023 (eq. 11-12; sampler Alg. 2); the
source tutorial §III-D. The bridge network of :mod:`diffcomm.diffusion.bridge` starts from the
degraded image itself, ``x_1 = x_jscc`` (no noise), and walks the bridge's posterior
``q(x_s | x̂0, x_t)`` to t = 0 in ``steps`` network evaluations (uniform t grid); the SNR and
fading gain the network is conditioned on come from what the receiver sees
(:func:`~diffcomm.receivers.base.channel_condition`). ``stochastic=False`` uses the posterior mean
at every step.

Example:
    >>> res = i2sb_receiver(link, rx, zoo.load("fmnist-i2sb-jscc"), steps=4)   # doctest: +SKIP
"""

from __future__ import annotations

import torch

from diffcomm.receivers.base import (
    Option,
    ReceiverResult,
    Timer,
    channel_condition,
    check_model_kind,
    jscc_reconstruction,
    register_receiver,
)
from diffcomm.receivers.guidance import CountingPrior


@register_receiver(
    "i2sb", description="image-to-image Schroedinger bridge from the DeepJSCC reconstruction (few steps)",
    link="jscc", prior="denoiser", default_priors={(1, 28, 28): "fmnist-i2sb-jscc"},
    paper="Liu et al., ICML 2023 (I2SB)",
    options={"steps": Option(int, 1, 1000, help="network evaluations (the bridge's t grid)"),
             "stochastic": Option(bool, help="sample the bridge posterior (false: its mean)")})
def i2sb_receiver(link, rx, prior, *, steps: int = 4, stochastic: bool = True,
                  generator: torch.Generator | None = None) -> ReceiverResult:
    """Bridge from x_jscc to x0 in ``steps`` evaluations; see the module docstring."""
    from diffcomm.diffusion.bridge import sample_bridge

    check_model_kind(prior, "bridge", "i2sb")
    with Timer() as t, torch.no_grad():
        x_jscc = jscc_reconstruction(link, rx)
        counted = CountingPrior(prior)
        x = sample_bridge(counted, channel_condition(link, rx, x_jscc), steps=steps, stochastic=stochastic,
                          generator=generator)
    return ReceiverResult(x, nfe=counted.nfe, seconds=t.seconds, extras={"steps": steps, "stochastic": stochastic})
