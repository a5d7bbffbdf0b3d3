"""The DeepJSCC decoder as a receiver: MMSE-equalise with the receiver's CSI, then decode.

Bourtsoulatze, Kurka, Gündüz, "Deep Joint Source-Channel Coding for Wireless Image Transmission",
IEEE TCCN 2019: the learned analog baseline. The decoder is told the post-equalisation SNR, with
the link SNR held inside its training range (:func:`diffcomm.receivers.base.decoder_snr`), so it
does not extrapolate its SNR modulation outside 0–20 dB.

Example:
    >>> import torch
    >>> from diffcomm.pipeline import build_link
    >>> link = build_link("deepjscc", (1, 28, 28), "1/16", "awgn", snr_db=10.0)
    >>> gen = torch.Generator().manual_seed(0)
    >>> rx = link.transmit(torch.rand(2, 1, 28, 28), generator=gen)
    >>> res = jscc_decoder_receiver(link, rx)
    >>> res.x_hat.shape, res.nfe
    (torch.Size([2, 1, 28, 28]), 0)
"""

from __future__ import annotations

import torch

from diffcomm.receivers.base import ReceiverResult, Timer, jscc_reconstruction, register_receiver


@register_receiver("deepjscc", description="the DeepJSCC decoder after MMSE equalisation", link="jscc",
                   paper="Bourtsoulatze et al., IEEE TCCN 2019 (DeepJSCC)")
def jscc_decoder_receiver(link, rx, prior=None, *, generator: torch.Generator | None = None) -> ReceiverResult:
    """The DeepJSCC decoder's deterministic reconstruction (no prior)."""
    with Timer() as t, torch.no_grad():
        x = jscc_reconstruction(link, rx)
    return ReceiverResult(x, nfe=0, seconds=t.seconds)
