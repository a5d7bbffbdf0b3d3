"""Transmitters: semantic encoders ``encoder(x) -> complex (B, k)`` before power normalisation.

Encoders are built by name through :func:`make_encoder`; the registry :data:`ENCODERS` maps a name
to a factory ``factory(shape, cbr, seed, **options) -> encoder``. Add an encoder with
:func:`register_encoder`; a name ending in ``*`` (e.g. ``"deepjscc-*"``) registers a prefix, and
the factory then also receives ``name=`` (the full name asked for).

Every encoder has ``k`` (complex symbols per image), ``shape`` ``(C, H, W)`` and ``name``; linear
ones (``is_linear = True``) also ``matrix`` (real ``(2k, n)``) and ``decode_pinv``; matrix-free linear
ones (``matrix_free = True``: :class:`Downsample`) also ``apply_adjoint`` and ``pinv`` and build ``matrix``
lazily, only for images small enough (``has_matrix``).

Example:
    >>> enc = make_encoder("gaussian", (1, 28, 28), "1/16", seed=0)
    >>> enc.k
    49
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diffcomm.channels import check_shape, symbols_for_cbr
from diffcomm.errors import DiffcommError
from diffcomm.transmit.linear import Downsample, GaussianProjection, LinearEncoder


def _gaussian(shape: tuple[int, int, int], cbr: float | str, seed: int = 0) -> GaussianProjection:
    return GaussianProjection(shape, symbols_for_cbr(cbr, shape), seed=seed)


def _downsample(shape: tuple[int, int, int], cbr: float | str, seed: int = 0) -> Downsample:
    return Downsample(shape, symbols_for_cbr(cbr, shape))


EncoderFactory = Callable[..., Any]

ENCODERS: dict[str, EncoderFactory] = {
    "gaussian": _gaussian,
    "downsample": _downsample,
}


def register_encoder(name: str, factory: EncoderFactory) -> None:
    """Add (or replace) an encoder factory ``factory(shape, cbr, seed, **options)``; see the module doc."""
    ENCODERS[name] = factory


def encoder_names() -> list[str]:
    return sorted(ENCODERS)


def make_encoder(name: str, shape: tuple[int, int, int], cbr: float | str, seed: int = 0, **options: Any) -> Any:
    """Build the encoder ``name`` for images of ``shape`` (C, H, W) at bandwidth ratio ``cbr``.

    ``k = round(cbr · C·H·W)``; ``seed`` fixes random encoders (shared by transmitter and receiver).
    Unknown names raise :class:`DiffcommError` listing the registered ones.
    """
    shape = check_shape(shape)
    if name in ENCODERS:
        return ENCODERS[name](shape, cbr, seed, **options)
    for key, factory in ENCODERS.items():
        if key.endswith("*") and str(name).startswith(key[:-1]):
            return factory(shape, cbr, seed, name=name, **options)
    raise DiffcommError(f"unknown encoder {name!r}; choose one of {', '.join(encoder_names())}")


__all__ = ["ENCODERS", "Downsample", "GaussianProjection", "LinearEncoder", "encoder_names", "make_encoder",
           "register_encoder"]
