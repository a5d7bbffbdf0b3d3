"""Digital pipeline: framing/CRC, full-chain round trip, fallback, budget accounting, configuration search."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from diffcomm.channels import make_channel
from diffcomm.errors import DiffcommError
from diffcomm.transmit.digital.codecs import decode_batch, encode_batch
from diffcomm.transmit.digital.system import (
    FRAME_OVERHEAD_BYTES,
    DigitalSystem,
    best_config,
    bits_to_bytes,
    build_frame,
    bytes_to_bits,
    digital_envelope,
    parse_frame,
)
from diffcomm.transmit.digital.table import build_codec_table, psnr_per_image


def smooth_images(b: int, c: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = 0.2 + 0.6 * torch.rand(b, 1, 7, 7, generator=g) + 0.15 * (torch.rand(b, c, 7, 7, generator=g) - 0.5)
    return F.interpolate(low, size=28, mode="bilinear", align_corners=False).clamp(0, 1)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=200), st.integers(min_value=0, max_value=10_000), st.integers(0, 30))
def test_crc_frame_detects_any_single_bit_error(payload, pos, pad):
    frame = build_frame(payload)
    assert len(frame) == len(payload) + FRAME_OVERHEAD_BYTES
    assert parse_frame(frame + b"\x00" * pad) == (payload, True)  # LDPC padding after the frame is ignored
    bits = bytes_to_bits(frame)
    assert bits_to_bytes(bits) == frame
    i = pos % bits.numel()
    bits[i] = 1 - bits[i]
    assert parse_frame(bits_to_bytes(bits) + b"\x00" * pad)[1] is False  # CRC-32 catches every 1-bit error


def test_full_chain_bit_exact_at_30db_awgn():
    x = smooth_images(16)
    system = DigitalSystem("jpeg", 50, code_rate=1 / 2, bits_per_symbol=4, cbr=1.0)
    x_hat, info = system.transmit(x, "awgn", 30.0, generator=torch.Generator().manual_seed(0))
    assert info["units"][0]["fits"]
    clean, _ = decode_batch(encode_batch(x, "jpeg", 50), x.shape)
    assert torch.equal(x_hat, clean)  # exactly the clean codec decode: every bit arrived
    assert info["success"].all() and info["bit_errors"] == 0
    (unit,) = info["units"]
    assert unit["crc_ok"] and unit["fits"]
    payload = encode_batch(x, "jpeg", 50)[0].n_bytes
    assert info["payload_bytes"] == payload
    assert info["info_bits"] == 8 * (payload + FRAME_OVERHEAD_BYTES)
    n_cw = -(-info["info_bits"] // 1024)
    assert unit["n_codewords"] == n_cw and info["channel_uses"] == n_cw * 2048 // 4  # padding counted
    assert info["budget_symbols"] == 16 * 784 and info["channel_uses"] <= info["budget_symbols"]
    assert info["cbr_used"] == info["channel_uses"] / (16 * 784)
    assert info["packing"].startswith("mosaic")


def test_fallback_at_minus_10db_never_crashes():
    x = smooth_images(8)
    fb = x.mean(0)  # e.g. the dataset-mean image
    system = DigitalSystem("webp", 50, code_rate=5 / 6, bits_per_symbol=6, fallback=fb)
    x_hat, info = system.transmit(x, "awgn", -10.0, generator=torch.Generator().manual_seed(0))
    assert not info["success"].any() and not info["units"][0]["crc_ok"] and info["bit_errors"] > 0
    assert torch.equal(x_hat, fb.expand_as(x))
    # decoding the corrupted payload anyway must not crash either
    for codec in ("jpeg", "jpeg2000", "avif", "hevc"):
        s = DigitalSystem(codec, 30, code_rate=5 / 6, bits_per_symbol=6, on_crc_fail="decode") if codec != "jpeg2000" \
            else DigitalSystem(codec, 5, code_rate=5 / 6, bits_per_symbol=6, on_crc_fail="decode")
        x_hat, info = s.transmit(x, "rayleigh", -10.0, generator=torch.Generator().manual_seed(1))
        assert x_hat.shape == x.shape and torch.isfinite(x_hat).all() and 0 <= x_hat.min() <= x_hat.max() <= 1


def test_per_image_packing_at_cbr_1_16_sends_nothing_and_says_so():
    x = smooth_images(4)
    system = DigitalSystem("webp", 0, code_rate=5 / 6, bits_per_symbol=6, cbr=1 / 16, packing="per-image")
    x_hat, info = system.transmit(x, "awgn", 25.0, generator=torch.Generator().manual_seed(0))
    assert info["packing"] == "per-image, headers counted"
    assert len(info["units"]) == 4
    for u in info["units"]:
        assert not u["fits"] and u["budget_symbols"] == 49 and u["symbols_needed"] > 49
        assert u["frame_bits"] == 8 * (u["payload_bytes"] + FRAME_OVERHEAD_BYTES)
    assert info["channel_uses"] == 0 and not info["success"].any() and (x_hat == 0.5).all()


def test_rayleigh_is_seeded_and_respects_budget():
    x = smooth_images(32)
    system = DigitalSystem("hevc", 10, code_rate=1 / 2, bits_per_symbol=2, cbr=1 / 2)
    ch = make_channel("rayleigh")
    runs = [system.transmit(x, ch, 6.0, generator=torch.Generator().manual_seed(s)) for s in (3, 3, 4)]
    info = runs[0][1]
    assert info["units"][0]["fits"] and info["channel"] == "rayleigh" and 0 < info["channel_uses"] <= 32 * 392
    assert torch.equal(runs[0][0], runs[1][0]) and info["bit_errors"] == runs[1][1]["bit_errors"]
    assert info["bit_errors"] != runs[2][1]["bit_errors"]  # another seed, another fading/noise draw


@pytest.mark.parametrize("make", [
    lambda: DigitalSystem("jpeg", 50, 1 / 2, 4, packing="zip"),
    lambda: DigitalSystem("jpeg", 50, 1 / 2, 5),
    lambda: DigitalSystem("jpeg", 500, 1 / 2, 4),
    lambda: DigitalSystem("jpeg", 50, 1 / 2, 4, on_crc_fail="ignore"),
    lambda: DigitalSystem("jpeg", 50, 1 / 2, 4).transmit(torch.rand(2, 1, 8, 8) * 2, "awgn", 10.0),
    lambda: DigitalSystem("jpeg", 50, 1 / 2, 4, cbr=0.0).transmit(torch.rand(2, 1, 8, 8), "awgn", 10.0),
    lambda: DigitalSystem("jpeg", 50, 1 / 2, 4).transmit(torch.rand(2, 1, 8, 8), "rain", 10.0),
])
def test_user_errors(make):
    with pytest.raises(DiffcommError) as e:
        make()
    assert "\n" not in str(e.value)


def test_best_config_nothing_fits():
    sel = best_config(smooth_images(4), 1 / 16, 25.0, "awgn", codecs=["jpeg"], trials=1)
    assert sel.system is None and sel.note.startswith("nothing fits") and sel.expected_psnr == sel.fallback_psnr


def test_search_and_envelope_show_the_cliff():
    """64 images in one mosaic at CBR 1/16 (3136 channel uses). At 20 dB the search takes a
    high-rate mode and delivers; at 0 dB (capacity 1 bit/use) only QPSK 1/3 can work."""
    x = smooth_images(64)
    table = build_codec_table(x, codecs=["jpeg2000"], qualities={"jpeg2000": (0.5, 1, 2, 4, 8)})
    kw = dict(code_rates=(1 / 3, 3 / 4), bits_per_symbol=(2, 6))
    hi = best_config(x, 1 / 16, 20.0, "awgn", trials=2, generator=torch.Generator().manual_seed(0),
                     table=table, **kw)
    assert hi.system is not None and (hi.system.code_rate, hi.system.bits_per_symbol) == (3 / 4, 6)
    assert hi.success_prob == 1.0 and hi.expected_psnr > hi.fallback_psnr
    recs = digital_envelope(x, 1 / 16, [0.0, 20.0], "awgn", trials=2, eval_trials=2, table=table, **kw)
    lo_sys = recs[0]["search"]["system"]
    assert lo_sys is None or (lo_sys["code_rate"], lo_sys["bits_per_symbol"]) == ("1/3", 2)
    assert recs[1]["psnr"] > recs[0]["psnr"] + 3.0  # more SNR, a bigger stream gets through
    assert recs[1]["success_rate"] == 1.0
    x_hat, info = hi.system.transmit(x, "awgn", 20.0, generator=torch.Generator().manual_seed(9))
    assert info["success"].all()
    assert abs(psnr_per_image(x_hat, x).mean().item() - hi.clean_psnr) < 1e-4
