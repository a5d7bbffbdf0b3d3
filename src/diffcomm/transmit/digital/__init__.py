"""Digital separation baseline: image codec + CRC + 5G LDPC + QAM (Pillow, pillow-heif, Sionna).

Modules: :mod:`.codecs` (JPEG, WebP, JPEG 2000, AVIF, HEVC intra; mosaic or per-image packing),
:mod:`.phy` (5G LDPC + Gray QAM via Sionna, perfect-CSI equalisation), :mod:`.table` (codec
rate-distortion tables), :mod:`.system` (:class:`DigitalSystem`, :func:`best_config`,
:func:`digital_envelope`). The ideal separation bound is :mod:`diffcomm.transmit.bound`.
"""

from diffcomm.transmit.digital.codecs import (
    CODECS,
    QUALITY_GRIDS,
    available_codecs,
    check_codec,
    decode_batch,
    encode_batch,
    unavailable_codecs,
)
from diffcomm.transmit.digital.phy import BITS_PER_SYMBOL, CODE_RATES, LdpcQam
from diffcomm.transmit.digital.system import DigitalSystem, Selection, best_config, digital_envelope
from diffcomm.transmit.digital.table import CodecTable, build_codec_table

__all__ = [
    "BITS_PER_SYMBOL", "CODECS", "CODE_RATES", "QUALITY_GRIDS", "CodecTable", "DigitalSystem", "LdpcQam",
    "Selection", "available_codecs", "best_config", "build_codec_table", "check_codec", "decode_batch",
    "digital_envelope", "encode_batch", "unavailable_codecs",
]
