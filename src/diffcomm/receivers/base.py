"""What every receiver shares: the result record, input checks, the prior in pixel terms.

A receiver is a plain function ``receiver(link, rx, prior=None, *, generator=None, **options)
-> ReceiverResult``. It sees only the received signal ``rx.y``, the receiver-side CSI
(``rx.h_hat``, ``rx.n0``, ``rx.gain``), the link (differentiable ``A`` via ``link.forward``) and
a prior; never ``rx.h`` or the transmitted image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from diffcomm.errors import DiffcommError


@dataclass
class ReceiverResult:
    x_hat: torch.Tensor          # pixels (B, C, H, W) in [0, 1]
    nfe: int = 0                 # network evaluations of the prior per image (0 for non-diffusion receivers)
    seconds: float = 0.0         # wall time for the batch
    extras: dict[str, Any] = field(default_factory=dict)


def check_received(link, rx, need_linear: bool = False, need_csi: bool = True, receiver: str = "receiver") -> None:
    """One-line errors for a received tensor or link a receiver cannot use."""
    y = rx.y
    if not torch.is_tensor(y) or not torch.is_complex(y):
        raise DiffcommError(f"{receiver}: y must be a complex tensor (B, k), got "
                            f"{type(y).__name__ if not torch.is_tensor(y) else y.dtype}")
    if y.ndim != 2 or y.shape[1] != link.k:
        raise DiffcommError(f"{receiver}: y must have shape (B, {link.k}) for this link, got {tuple(y.shape)}")
    if not torch.isfinite(torch.view_as_real(y)).all():
        raise DiffcommError(f"{receiver}: y contains NaN or inf; check the channel simulation")
    if need_linear and not link.is_linear:
        raise DiffcommError(f"{receiver} needs a linear link (encoder 'gaussian' or 'downsample'); "
                            f"use dps or hifi for nonlinear encoders such as DeepJSCC")
    if need_csi and rx.h_hat is None:
        raise DiffcommError(f"{receiver} needs channel state information; use csi 'perfect' or 'estimated', "
                            f"or the 'blind' receiver")


class Timer:
    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.t0


def complex_sq_norm(z: torch.Tensor) -> torch.Tensor:
    """Per-sample squared norm of a complex (B, k) tensor."""
    return z.real.pow(2).sum(1) + z.imag.pow(2).sum(1)
