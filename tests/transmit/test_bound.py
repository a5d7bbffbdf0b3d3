"""Ideal separation bound: capacity thresholds (AWGN), outage and ergodic capacity (Rayleigh), packing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.special import exp1

from diffcomm.channels import make_channel
from diffcomm.errors import DiffcommError
from diffcomm.transmit.bound import ideal_bound, unit_capacity_bits
from diffcomm.transmit.digital.table import build_codec_table


def smooth_images(b: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = 0.2 + 0.6 * torch.rand(b, 1, 7, 7, generator=g)
    return F.interpolate(low, size=28, mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def table16():
    return build_codec_table(smooth_images(16), codecs=["jpeg2000"], qualities={"jpeg2000": (1, 4, 16)})


def test_awgn_stream_fits_exactly_at_the_capacity_threshold(table16):
    e = table16.entries[1]  # jpeg2000 quality 4
    bits, k_total = 8 * e.n_bytes[0], 16 * 196  # cbr 1/4 -> 196 channel uses per image
    thr_db = 10 * math.log10(2 ** (bits / k_total) - 1)  # K log2(1 + snr) = bits
    above = ideal_bound(None, 1 / 4, thr_db + 0.01, "awgn", table=table16)
    below = ideal_bound(None, 1 / 4, thr_db - 0.01, "awgn", table=table16)
    assert above.units[0]["quality"] == 4.0 and above.units[0]["bytes"] * 8 <= above.units[0]["capacity_bits_mean"]
    assert below.units[0]["quality"] == 1.0
    assert above.psnr == pytest.approx(e.psnr.mean().item(), abs=1e-5) and below.psnr < above.psnr
    assert above.arrive_prob == 1.0 and above.variant == "outage" and "1 channel draw" in above.note


def test_awgn_curve_is_monotone_from_fallback_to_best_stream(table16):
    curve = [ideal_bound(None, 1 / 4, s, "awgn", table=table16).psnr for s in (-20, 0, 5, 10, 20, 60)]
    assert curve[0] == pytest.approx(table16.fallback_psnr.mean().item())
    assert all(b >= a for a, b in zip(curve, curve[1:]))
    assert curve[-1] == pytest.approx(max(e.psnr.mean().item() for e in table16.entries), abs=1e-5)


def test_rayleigh_outage_probability_matches_closed_form():
    """One image per unit, one block: the stream arrives iff k log2(1 + |h|^2 snr) >= b, i.e. with
    probability exp(-(2^(b/k) - 1) / snr) for |h|^2 ~ Exp(1) (Ozarow, Shamai & Wyner 1994)."""
    x = smooth_images(1)
    table = build_codec_table(x, codecs=["jpeg"], qualities={"jpeg": (50,)}, packing="per-image")
    bits, k = 8 * table.entries[0].n_bytes[0], 784  # cbr 1
    snr = (2 ** (bits / k) - 1) / math.log(2)  # arrive probability 1/2
    n = 4000
    r = ideal_bound(None, 1.0, 10 * math.log10(snr), "rayleigh", table=table, n_draws=n,
                    generator=torch.Generator().manual_seed(0))
    assert abs(r.arrive_prob - 0.5) <= 4.5 * math.sqrt(0.25 / n)
    p = r.arrive_prob
    expected = p * table.entries[0].psnr.mean().item() + (1 - p) * table.fallback_psnr.mean().item()
    assert r.psnr == pytest.approx(expected, abs=1e-4)


def test_ergodic_capacity_matches_closed_form():
    """E[log2(1 + |h|^2 snr)] = e^{1/snr} E1(1/snr) / ln 2 for Rayleigh (Tse & Viswanath eq. 5.92)."""
    snr_db, n_img, k, n = 10.0, 8, 49, 2000
    snr = 10 ** (snr_db / 10)
    ch = make_channel("rayleigh")
    g = torch.Generator().manual_seed(1)
    erg = unit_capacity_bits(ch, n_img, k, snr_db, n, g, variant="ergodic").item()
    per_use = math.exp(1 / snr) * exp1(1 / snr) / math.log(2)
    draws = unit_capacity_bits(ch, n_img, k, snr_db, n, g, variant="outage")
    se = draws.std().item() / math.sqrt(n)  # block fading: 8 blocks per draw
    assert abs(erg - n_img * k * per_use) <= 4.5 * se
    assert draws.std() > 0  # the outage variant keeps the per-draw spread


def test_per_image_packing_fits_nothing_at_cbr_1_16_but_a_mosaic_does():
    x = smooth_images(64)
    q = {"jpeg2000": (0.5, 1, 2), "webp": (0, 10), "hevc": (0, 10), "avif": (0, 10), "jpeg": (1, 10)}
    per = ideal_bound(x, 1 / 16, 25.0, "awgn", qualities=q, packing="per-image")
    mos = ideal_bound(x, 1 / 16, 25.0, "awgn", qualities=q, packing="mosaic")
    assert "nothing fits" in per.note and per.psnr == pytest.approx(per.fallback_psnr)
    assert mos.units[0]["codec"] is not None and mos.psnr > mos.fallback_psnr + 3.0


def test_bad_variant():
    with pytest.raises(DiffcommError):
        ideal_bound(smooth_images(2), 1 / 16, 10.0, "awgn", variant="typical", codecs=["jpeg"])
