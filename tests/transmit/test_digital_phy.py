"""5G LDPC + QAM link layer: round trip, agreement with Sionna's own reference chain, fading path."""

from __future__ import annotations

import math

import pytest
import torch

from diffcomm.channels import awgn, make_channel, snr_db_to_n0
from diffcomm.errors import DiffcommError
from diffcomm.transmit.digital.phy import LdpcQam, equalize_perfect_csi


@pytest.mark.parametrize("rate,m", [(1 / 3, 2), (1 / 2, 4), (5 / 6, 6)])
def test_round_trip_bit_exact_at_30db(rate, m):
    g = torch.Generator().manual_seed(1)
    phy = LdpcQam(rate, m, k_ldpc=256)
    bits = torch.randint(0, 2, (1000,), generator=g).float()  # not a multiple of k: last block padded
    x = phy.encode_bits(bits)
    assert x.dtype == torch.complex64
    assert x.numel() == phy.num_symbols(1000) == 4 * phy.n // m
    assert abs(x.abs().square().mean().item() - 1.0) < 0.1  # unit average energy constellation
    h = torch.ones_like(x)
    y = awgn(h * x, snr_db_to_n0(30.0), generator=g)
    assert torch.equal(phy.decode_bits(y, h, snr_db_to_n0(30.0), 1000), bits)


def test_sizes_and_padding_accounting():
    phy = LdpcQam(1 / 2, 4, k_ldpc=1024)
    assert phy.n == 2048 and phy.symbols_per_codeword == 512 and phy.rate == 0.5
    assert phy.num_codewords(1) == 1 and phy.num_codewords(1024) == 1 and phy.num_codewords(1025) == 2
    assert phy.num_symbols(1025) == 1024  # the padded second block is sent and counted
    assert phy.max_info_bits(1023) == 1024 and phy.max_info_bits(511) == 0
    phy = LdpcQam(1 / 3, 6, k_ldpc=100)  # n rounded up to whole symbols: effective rate <= target
    assert phy.n % 6 == 0 and phy.rate <= 1 / 3 + 1e-12 and phy.n - 6 < 300


@pytest.mark.parametrize("kw", [dict(code_rate=0.0, bits_per_symbol=2), dict(code_rate=0.97, bits_per_symbol=2),
                                dict(code_rate=0.5, bits_per_symbol=3),
                                dict(code_rate=0.5, bits_per_symbol=2, k_ldpc=5),
                                dict(code_rate=0.5, bits_per_symbol=2, demapping="exact")])
def test_bad_parameters_raise_one_line_error(kw):
    with pytest.raises(DiffcommError) as e:
        LdpcQam(**kw)
    assert "\n" not in str(e.value)


def _sionna_reference(k, n, m, snr_db, n_cw, seed):
    """The reference setup built directly from Sionna: BinarySource, LDPC5G, QAM, Sionna AWGN."""
    import sionna.phy
    from sionna.phy.channel import AWGN
    from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
    from sionna.phy.mapping import BinarySource, Demapper, Mapper

    sionna.phy.config.seed = seed
    enc = LDPC5GEncoder(k, n, num_bits_per_symbol=m)
    dec = LDPC5GDecoder(enc, num_iter=20, hard_out=True)
    mapper, demapper, channel = Mapper("qam", m), Demapper("app", "qam", m), AWGN()
    no = torch.tensor(10 ** (-snr_db / 10))
    u = BinarySource()([n_cw, k])
    y = channel(mapper(enc(u)), no)
    return u, dec(demapper(y, no))


def test_encoding_and_decoding_match_sionna_reference_blocks():
    """Same bits -> same symbols as the reference chain; same received y -> same decoded bits."""
    import sionna.phy
    from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
    from sionna.phy.mapping import Demapper, Mapper

    k, m = 128, 4
    phy = LdpcQam(1 / 2, m, k_ldpc=k)
    enc = LDPC5GEncoder(k, phy.n, num_bits_per_symbol=m)
    ref_x = lambda u: Mapper("qam", m)(enc(u))  # noqa: E731
    g = torch.Generator().manual_seed(3)
    u = torch.randint(0, 2, (20, k), generator=g).float()
    x = phy.modulate_blocks(u)
    assert torch.equal(x, ref_x(u))
    n0 = snr_db_to_n0(5.0)
    y = awgn(x, n0, generator=g)
    sionna.phy.config.seed = 0
    ref = LDPC5GDecoder(enc, num_iter=20, hard_out=True)(Demapper("app", "qam", m)(y, torch.tensor(n0)))
    mine = phy.demodulate_blocks(y, torch.full(y.shape, n0))
    assert torch.equal(mine, ref)
    assert 0 < (mine != u).any(1).sum() < 20  # 5 dB is inside the waterfall: a meaningful comparison


@pytest.mark.parametrize("snr_db", [1.0, 1.5])
def test_coded_ber_agrees_with_sionna_reference_within_mc_tolerance(snr_db):
    """Our chain over the diffcomm AWGN channel vs Sionna's own chain and AWGN (independent noise).

    Bit errors cluster in failed codewords, so the tolerance uses the per-codeword error rates:
    |mean_a - mean_b| <= 4.5 * sqrt(var_a / N + var_b / N).
    """
    k, m, n_cw = 128, 2, 240
    phy = LdpcQam(1 / 2, m, k_ldpc=k)
    g = torch.Generator().manual_seed(7)
    u = torch.randint(0, 2, (n_cw, k), generator=g).float()
    n0 = snr_db_to_n0(snr_db)
    y = awgn(phy.modulate_blocks(u), n0, generator=g)
    ours = (phy.demodulate_blocks(y, torch.full(y.shape, n0)) != u).float().mean(1)
    u_ref, u_hat_ref = _sionna_reference(k, phy.n, m, snr_db, n_cw, seed=11)
    ref = (u_hat_ref != u_ref).float().mean(1)
    assert 0.003 < ref.mean() < 0.2 and 0.003 < ours.mean() < 0.2  # in the waterfall: the test has power
    se = math.sqrt(ours.var().item() / n_cw + ref.var().item() / n_cw)
    assert abs(ours.mean().item() - ref.mean().item()) <= 4.5 * se
    bler_a, bler_b = (ours > 0).float().mean().item(), (ref > 0).float().mean().item()
    se_bler = math.sqrt(bler_a * (1 - bler_a) / n_cw + bler_b * (1 - bler_b) / n_cw)
    assert abs(bler_a - bler_b) <= 4.5 * se_bler


def test_fast_rayleigh_uncoded_qpsk_ber_matches_theory():
    """Perfect-CSI equalisation + effective noise variance: hard decisions of the demapper over fast
    Rayleigh fading give the textbook QPSK BER ½(1 - sqrt(γb / (1 + γb))), γb = SNR / 2
    (Proakis, Digital Communications, eq. 14.3-7)."""
    phy = LdpcQam(1 / 2, 2, k_ldpc=64)
    g = torch.Generator().manual_seed(5)
    n_bits, snr_db = 200_000, 10.0
    n0 = snr_db_to_n0(snr_db)
    bits = torch.randint(0, 2, (1, n_bits), generator=g).float()
    x = phy.mapper(bits)
    h = make_channel("rayleigh", block=False).sample_gains(1, x.shape[1], generator=g)
    s_hat, no_eff = equalize_perfect_csi(awgn(h * x, n0, generator=g), h, n0)
    llr = phy.demapper(s_hat, no_eff)
    ber = ((llr > 0).float() != bits).float().mean().item()
    gb = 10 ** (snr_db / 10) / 2
    theory = 0.5 * (1 - math.sqrt(gb / (1 + gb)))
    assert abs(ber - theory) <= 4.5 * math.sqrt(theory / n_bits) * 1.5  # x1.5: two bits per symbol share h


def test_missing_sionna_is_a_user_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sionna.phy.fec.ldpc", None)  # makes the import fail
    with pytest.raises(DiffcommError, match=r"pip install 'diffcomm\[digital\]'"):
        LdpcQam(1 / 2, 2)
