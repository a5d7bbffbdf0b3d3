"""I2SB receiver: an image-to-image Schrödinger bridge from the DeepJSCC reconstruction to the image.

Liu et al., "I2SB: Image-to-Image Schrödinger Bridge", ICML 2023 (eq. 11-12; sampler Alg. 2); the
source tutorial §III-D. The bridge network of :mod:`diffcomm.diffusion.bridge` starts from the
degraded image itself, ``x_1 = x_jscc`` on a DeepJSCC link (model ``fmnist-i2sb-jscc``, the default) or
``x_1 = A⁺y`` on a linear link (model ``fmnist-i2sb-pinv``, trained from the downsampling link's
pseudo-inverse; pass it as the prior) (no noise), and walks the bridge's posterior
``q(x_s | x̂0, x_t)`` to t = 0 in ``steps`` network evaluations (uniform t grid); the SNR and
fading gain the network is conditioned on come from what the receiver sees
(:func:`~diffcomm.receivers.base.channel_condition`). ``stochastic=False`` uses the posterior mean
at every step.

Example:
    >>> import torch
    >>> from diffcomm import zoo
    >>> from diffcomm.pipeline import build_link
    >>> link = build_link("deepjscc", (1, 28, 28), "1/16", "awgn", snr_db=10.0)
    >>> gen = torch.Generator().manual_seed(0)
    >>> rx = link.transmit(torch.rand(2, 1, 28, 28), generator=gen)
    >>> res = i2sb_receiver(link, rx, zoo.load("fmnist-i2sb-jscc"), steps=4, generator=gen)
    >>> res.x_hat.shape, res.nfe
    (torch.Size([2, 1, 28, 28]), 4)
"""

from __future__ import annotations

import torch

from diffcomm.errors import DiffcommError
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

SOURCES = {"jscc": "deepjscc", "linear": "pinv-downsample"}   # link kind -> the x1 a bridge must be trained from


@register_receiver(
    "i2sb", description="image-to-image Schroedinger bridge from the link's estimate (DeepJSCC output or A+y)",
    link="any", prior="denoiser", default_priors={(1, 28, 28): "fmnist-i2sb-jscc"},
    paper="Liu et al., ICML 2023 (I2SB)",
    options={"steps": Option(int, 1, 1000, help="network evaluations (the bridge's t grid)"),
             "stochastic": Option(bool, help="sample the bridge posterior (false: its mean)")})
def i2sb_receiver(link, rx, prior, *, steps: int = 4, stochastic: bool = True,
                  generator: torch.Generator | None = None) -> ReceiverResult:
    """Bridge from x1 (the DeepJSCC output, or A⁺y on a linear link) to x0 in ``steps`` evaluations."""
    from diffcomm.diffusion.bridge import sample_bridge

    check_model_kind(prior, "bridge", "i2sb")
    kind = getattr(link, "kind", None)
    need, have = SOURCES.get(kind), getattr(prior, "source", "deepjscc")
    if need is None:
        raise DiffcommError(f"i2sb bridges from a DeepJSCC output or A+y; a {kind} link has neither")
    if have != need:
        hint = ' (on linear links pass prior=zoo.load("fmnist-i2sb-pinv"))' if kind == "linear" else ""
        raise DiffcommError(f"i2sb: this bridge was trained from {have} estimates, the {kind} link gives {need}{hint}")
    with Timer() as t, torch.no_grad():
        x1 = jscc_reconstruction(link, rx) if kind == "jscc" else link.operator(rx).pinv(rx.y).clamp(0, 1)
        counted = CountingPrior(prior)
        condition = channel_condition(link, rx, x1, getattr(prior, "snr_range", None))
        x = sample_bridge(counted, condition, steps=steps, stochastic=stochastic, generator=generator)
    return ReceiverResult(x, nfe=counted.nfe, seconds=t.seconds, extras={"steps": steps, "stochastic": stochastic})
