"""The label link (semantic-only transmission): uncoded QPSK BER against Q(sqrt(SNR)), codes, sizes, errors."""

import math

import pytest
import torch

from diffcomm.errors import DiffcommError
from diffcomm.scenarios.label_link import LabelLink, parse_code, polar_frozen_positions, qpsk_ber, simulate_ber


@pytest.mark.parametrize("snr_db", [-2.0, 0.0, 3.0, 6.0])
def test_uncoded_qpsk_ber_matches_the_q_function(snr_db):
    """Gray QPSK over AWGN at Es/N0 = SNR: Pb = Q(sqrt(SNR)). 50,000 four-bit messages = 200,000 bits
    (I and Q bits are independent), tolerance 4.5 binomial standard deviations."""
    ber, n_bits = simulate_ber("uncoded", snr_db, 50_000, num_classes=16, seed=1)
    p = qpsk_ber(snr_db)
    assert n_bits == 200_000
    assert abs(ber - p) <= 4.5 * math.sqrt(p * (1 - p) / n_bits), (ber, p)


def test_theory_helper_is_the_q_function():
    assert qpsk_ber(0.0) == pytest.approx(0.158655, abs=1e-6)   # Q(1)
    assert qpsk_ber(10 * math.log10(4)) == pytest.approx(0.0227501, abs=1e-6)   # Q(2)


@pytest.mark.parametrize("code,uses", [("uncoded", 2), ("rep3", 6), ("polar8", 4), ("polar16", 8), ("polar32", 16)])
def test_channel_uses_and_clean_round_trip(code, uses):
    link = LabelLink(num_classes=10, code=code)
    assert link.channel_uses == uses and link.bits == 4
    labels = torch.arange(10).repeat(5)
    for channel in ("awgn", "rayleigh"):
        link = LabelLink(num_classes=10, code=code, channel=channel)
        out = link.send(labels, snr_db=40.0, generator=torch.Generator().manual_seed(0))
        assert torch.equal(out.labels, labels) and bool(out.valid.all())


def test_codes_beat_uncoded_per_information_bit_at_moderate_snr():
    uncoded, _ = simulate_ber("uncoded", 2.0, 4000, seed=0)
    polar16, _ = simulate_ber("polar16", 2.0, 4000, seed=0)
    polar32, _ = simulate_ber("polar32", 2.0, 4000, seed=0)
    assert polar32 < polar16 < uncoded


def test_frozen_sets():
    assert list(polar_frozen_positions(4, 8)) == [0, 1, 2, 4]          # RM(1, 3): info {3, 5, 6, 7}
    assert sorted(set(range(16)) - set(polar_frozen_positions(4, 16))) == [11, 13, 14, 15]
    assert len(polar_frozen_positions(4, 32)) == 28                  # Sionna's 5G ranking


@pytest.mark.parametrize("bad", ["ldpc", "polar12", "polar4", "rep0", ""])
def test_bad_codes_are_one_line_errors(bad):
    with pytest.raises(DiffcommError) as exc:
        parse_code(bad)
    assert "\n" not in str(exc.value)


def test_bad_labels_are_refused():
    link = LabelLink(num_classes=10, code="uncoded")
    with pytest.raises(DiffcommError, match="labels must be in"):
        link.send(torch.tensor([10]), 0.0)
    with pytest.raises(DiffcommError, match="1-D integer"):
        link.send(torch.tensor([0.5]), 0.0)
