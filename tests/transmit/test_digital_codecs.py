"""Image codecs: availability, round trips, size vs quality, corrupted input, missing codecs, packing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from diffcomm.errors import DiffcommError
from diffcomm.transmit.digital import codecs as C
from diffcomm.transmit.digital.table import build_codec_table, psnr_per_image

LOW_HIGH = {"jpeg": (5, 90), "webp": (5, 90), "jpeg2000": (1, 50), "avif": (5, 90), "hevc": (5, 90)}


def smooth_images(b: int, c: int = 1, size: int = 28, seed: int = 0) -> torch.Tensor:
    """Compressible test images: bilinear upsampling of 7x7 noise; RGB = grey + mild colour (like photos)."""
    g = torch.Generator().manual_seed(seed)
    low = 0.2 + 0.6 * torch.rand(b, 1, 7, 7, generator=g) + 0.15 * (torch.rand(b, c, 7, 7, generator=g) - 0.5)
    return F.interpolate(low, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


def test_all_five_codecs_are_available_here():
    # Pillow 11+ and pillow-heif are installed in this environment (DESIGN §4); a missing one is a
    # packaging regression, not something to skip silently.
    assert C.available_codecs() == list(C.CODECS)
    assert C.unavailable_codecs() == {}


@pytest.mark.parametrize("codec", C.CODECS)
@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip_and_size_grows_with_quality(codec, channels):
    x = smooth_images(4, channels)
    lo, hi = LOW_HIGH[codec]
    u_lo = C.encode_batch(x, codec, lo)
    u_hi = C.encode_batch(x, codec, hi)
    assert len(u_lo) == 1 and u_lo[0].indices == (0, 1, 2, 3)
    x_lo, ok_lo = C.decode_batch(u_lo, x.shape)
    x_hi, ok_hi = C.decode_batch(u_hi, x.shape)
    assert ok_lo.all() and ok_hi.all()
    assert x_hi.shape == x.shape and x_hi.dtype == torch.float32
    assert u_hi[0].n_bytes > u_lo[0].n_bytes
    p_lo, p_hi = psnr_per_image(x_lo, x).mean(), psnr_per_image(x_hi, x).mean()
    assert p_hi > p_lo and p_hi > 30.0


def test_encoding_is_deterministic():
    x = smooth_images(3, 3)
    for codec in C.CODECS:
        assert C.encode_batch(x, codec, 40)[0].data == C.encode_batch(x, codec, 40)[0].data


@pytest.mark.parametrize("codec", C.CODECS)
def test_corrupted_bytes_never_crash_and_give_fallback(codec):
    x = smooth_images(4)
    unit = C.encode_batch(x, codec, 50)[0]
    g = torch.Generator().manual_seed(0)
    flipped = bytearray(unit.data)
    for i in torch.randint(0, len(flipped), (20,), generator=g).tolist():
        flipped[i] ^= 0xFF
    bad = [b"", b"\x00" * 50, bytes(torch.randint(0, 256, (300,), generator=g).tolist()),
           unit.data[: len(unit.data) // 2], bytes(flipped)]
    fb = torch.full((1, 28, 28), 0.25)
    for data in bad:
        out = C.decode_unit(data, codec, 4, (1, 28, 28))  # must not raise
        assert out is None or (out.shape == (4, 1, 28, 28) and torch.isfinite(out).all())
    x_hat, ok = C.decode_batch([unit], x.shape, fallback=fb, payloads=[b"garbage"])
    assert not ok.any() and torch.equal(x_hat, fb.expand(4, 1, 28, 28))
    x_hat, ok = C.decode_batch([unit], x.shape, fallback=0.5, payloads=[None])  # lost unit
    assert not ok.any() and (x_hat == 0.5).all()


def test_wrong_size_stream_is_rejected():
    # A valid stream of another geometry must not be accepted as this unit's images.
    data = C.encode_batch(smooth_images(9), "jpeg", 50)[0].data  # 3x3 mosaic
    assert C.decode_unit(data, "jpeg", 4, (1, 28, 28)) is None  # expects a 2x2 mosaic


def _pretend_missing(monkeypatch, name="hevc"):
    real = C._probe
    monkeypatch.setattr(C, "_probe", lambda c: "ImportError: no pillow_heif" if c == name else real(c))


def test_missing_codec_is_reported_skipped_and_errors_when_requested(monkeypatch):
    _pretend_missing(monkeypatch)
    assert "hevc" not in C.available_codecs()
    assert C.unavailable_codecs() == {"hevc": "ImportError: no pillow_heif"}
    with pytest.raises(DiffcommError) as e:
        C.encode_batch(smooth_images(2), "hevc", 50)
    msg = str(e.value)
    assert "hevc" in msg and "not available" in msg and "\n" not in msg
    table = build_codec_table(smooth_images(2), qualities={c: (50,) for c in C.CODECS})
    assert table.skipped == {"hevc": "ImportError: no pillow_heif"}
    assert {e.codec for e in table.entries} == set(C.CODECS) - {"hevc"}  # never substituted
    with pytest.raises(DiffcommError):
        build_codec_table(smooth_images(2), codecs=["jpeg", "hevc"])


@pytest.mark.parametrize("call", [lambda: C.check_codec("bpg"), lambda: C.encode_batch(smooth_images(1), "jpeg", 0),
                                  lambda: C.encode_batch(torch.rand(2, 2, 8, 8), "jpeg", 50),
                                  lambda: C.encode_batch(smooth_images(2), "jpeg", 50, packing="zip"),
                                  lambda: C.fallback_images(1.5, 2, (1, 4, 4))])
def test_user_errors(call):
    with pytest.raises(DiffcommError) as e:
        call()
    assert "\n" not in str(e.value)


def test_mosaic_layout_and_inverse():
    x = smooth_images(5, 3)
    m = C.make_mosaic(x)
    assert C.mosaic_grid(5) == (2, 3) and m.shape == (3, 56, 84)
    assert torch.equal(m[:, 28:, 28:56], x[4]) and (m[:, 28:, 56:] == 0).all()  # unused tile black
    assert torch.equal(C.split_mosaic(m, 5, 28, 28), x)
    assert C.unit_indices(5, "mosaic", 2) == [(0, 1), (2, 3), (4,)]
    assert C.unit_indices(3, "per-image") == [(0,), (1,), (2,)]


def test_header_accounting_per_image_vs_mosaic():
    """Per-image packing pays the container headers once per image; the mosaic once per unit."""
    x = smooth_images(64)
    for codec in ("jpeg", "avif", "hevc"):
        per = C.encode_batch(x, codec, 10, packing="per-image")
        mos = C.encode_batch(x, codec, 10, packing="mosaic")
        assert len(per) == 64 and len(mos) == 1
        # a single 28x28 image costs > 49 symbols x 6 bits of 64-QAM even before channel coding
        assert min(u.n_bytes for u in per) * 8 > 49 * 6
        assert sum(u.n_bytes for u in per) > 2 * mos[0].n_bytes
