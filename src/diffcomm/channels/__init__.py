"""Channels: link-budget units, symbol packing and power, AWGN, flat fading, OFDM, MIMO, pilots/estimation.

Impairment stages (PA models, clipping, ADC, phase noise, CFO) are in :mod:`diffcomm.channels.impairments`.

Conventions (docs/interfaces.md): complex64 symbols ``(B, k)`` with unit mean power after
:func:`normalize_power`; noise CN(0, N0) with ``N0 = 10 ** (-snr_db / 10)``; ``E|h|^2 = 1``;
``k = round(cbr * C * H * W)``.

Example:
    >>> import torch
    >>> from diffcomm.channels import make_channel, awgn, normalize_power, snr_db_to_n0
    >>> g = torch.Generator().manual_seed(0)
    >>> z, gain = normalize_power(torch.randn(2, 8, dtype=torch.complex64, generator=g))
    >>> h = make_channel("rayleigh").sample_gains(2, 8, generator=g)
    >>> y = awgn(h * z, snr_db_to_n0(10.0), generator=g)
"""

from diffcomm.channels.estimation import equalize_mmse, equalize_zf, estimate_lmmse, estimate_ls, pilot_sequence
from diffcomm.channels.mimo import MIMOChannel
from diffcomm.channels.models import (
    CHANNELS,
    AWGNChannel,
    Channel,
    CSIMode,
    RayleighChannel,
    RicianChannel,
    awgn,
    complex_normal,
    make_channel,
)
from diffcomm.channels.ofdm import OFDMChannel, estimate_ofdm_channel
from diffcomm.channels.symbols import complex_to_real, normalize_power, real_to_complex
from diffcomm.channels.units import check_shape, parse_cbr, snr_db_to_n0, symbols_for_cbr

__all__ = [
    "CHANNELS", "AWGNChannel", "CSIMode", "Channel", "MIMOChannel", "OFDMChannel", "RayleighChannel", "RicianChannel",
    "awgn", "check_shape", "complex_normal", "complex_to_real", "equalize_mmse", "equalize_zf", "estimate_lmmse",
    "estimate_ls",
    "estimate_ofdm_channel", "make_channel", "normalize_power", "parse_cbr", "pilot_sequence", "real_to_complex",
    "snr_db_to_n0", "symbols_for_cbr",
]
