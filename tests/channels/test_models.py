"""Channel models against closed forms: noise variance, E|h|^2, Rician mean, QPSK BER (Monte Carlo, 5 s.e.)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffcomm.channels import (
    AWGNChannel,
    RayleighChannel,
    RicianChannel,
    awgn,
    equalize_mmse,
    equalize_zf,
    make_channel,
)
from diffcomm.errors import DiffcommError


def within(estimate: float, truth: float, se: float, z: float = 5.0) -> bool:
    return abs(estimate - truth) <= z * se


@settings(derandomize=True, max_examples=8, deadline=None)
@given(snr_db=st.floats(-10, 40), seed=st.integers(0, 1000))
def test_awgn_noise_variance(snr_db, seed):
    n0 = 10 ** (-snr_db / 10)
    g = torch.Generator().manual_seed(seed)
    z = torch.zeros(100, 1000, dtype=torch.complex64)
    n = awgn(z, n0, generator=g)
    assert n.dtype == torch.complex64
    for part in (n.real, n.imag):
        v = part.double().flatten()
        var = float(v.var())
        assert within(var, n0 / 2, n0 / 2 * math.sqrt(2 / (v.numel() - 1)))
        assert within(float(v.mean()), 0.0, math.sqrt(n0 / 2 / v.numel()))
    corr = float((n.real.double() * n.imag.double()).mean())
    assert within(corr, 0.0, n0 / 2 / math.sqrt(n.numel()))


def test_awgn_per_row_n0_seeded_and_differentiable():
    n0 = torch.tensor([[0.01], [1.0]])
    z = torch.zeros(2, 50000, dtype=torch.complex64, requires_grad=True)
    y1 = awgn(z, n0, generator=torch.Generator().manual_seed(3))
    y2 = awgn(z, n0, generator=torch.Generator().manual_seed(3))
    y3 = awgn(z, n0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)
    power = y1.detach().abs().pow(2).mean(1)
    assert within(float(power[0]), 0.01, 0.01 / math.sqrt(50000))
    assert within(float(power[1]), 1.0, 1.0 / math.sqrt(50000))
    y1.real.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z.grad))


def test_awgn_rejects():
    with pytest.raises(DiffcommError):
        awgn(torch.zeros(2, 3), 0.1)
    with pytest.raises(DiffcommError):
        awgn(torch.zeros(2, 3, dtype=torch.complex64), -1.0)


CHANNEL_CASES = [
    ("rayleigh", {"block": True}),
    ("rayleigh", {"block": False}),
    ("rayleigh", {"block": True, "coherence": 3}),
    ("rician", {"k_factor": 0.5, "block": True}),
    ("rician", {"k_factor": 4.0, "block": False, "los_phase": 1.0}),
    ("awgn", {}),
]


@pytest.mark.parametrize("name,kw", CHANNEL_CASES)
def test_unit_average_gain(name, kw):
    ch = make_channel(name, **kw)
    h = ch.sample_gains(20000, 6, generator=torch.Generator().manual_seed(0))
    assert h.dtype == torch.complex64 and h.shape == (20000, 6)
    blocks = h[:, :: ch.coherence_length(6)]  # one entry per independent draw
    p = blocks.abs().pow(2).double().flatten()
    se = max(float(p.std()), 1e-12) / math.sqrt(p.numel())
    assert within(float(p.mean()), 1.0, se)
    mean = complex(blocks.to(torch.complex128).mean())
    se_mean = math.sqrt(ch.scatter_var / 2 / p.numel()) + 1e-12
    assert within(mean.real, ch.mean.real, se_mean) and within(mean.imag, ch.mean.imag, se_mean)


def test_rayleigh_power_is_exponential():
    h = RayleighChannel(block=False).sample_gains(100, 1000, generator=torch.Generator().manual_seed(1))
    frac = float((h.abs().pow(2) < 1.0).double().mean())
    p = 1 - math.exp(-1)
    assert within(frac, p, math.sqrt(p * (1 - p) / h.numel()))


def test_rician_parameters():
    ch = RicianChannel(k_factor=3.0, los_phase=math.pi / 2)
    assert ch.mean == pytest.approx(1j * math.sqrt(0.75))
    assert ch.scatter_var == pytest.approx(0.25)
    assert abs(ch.mean) ** 2 + ch.scatter_var == pytest.approx(1.0)


def test_block_structure():
    g = torch.Generator().manual_seed(2)
    h = RayleighChannel(block=True, coherence=4).sample_gains(3, 10, generator=g)
    for lo, hi in [(0, 4), (4, 8), (8, 10)]:
        assert torch.equal(h[:, lo:hi], h[:, lo:lo + 1].expand(-1, hi - lo))
    assert (h[:, 0] != h[:, 4]).all() and (h[:, 4] != h[:, 8]).all()
    frame = RayleighChannel().sample_gains(3, 10, generator=g)
    assert torch.equal(frame, frame[:, :1].expand(-1, 10))
    fast = RayleighChannel(block=False).sample_gains(3, 10, generator=g)
    assert fast[0].real.unique().numel() == 10
    assert torch.equal(AWGNChannel().sample_gains(2, 5), torch.ones(2, 5, dtype=torch.complex64))


def test_gains_seeded():
    a = RicianChannel(2.0, block=False).sample_gains(4, 8, generator=torch.Generator().manual_seed(5))
    b = RicianChannel(2.0, block=False).sample_gains(4, 8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("call", [
    lambda: make_channel("foo"),
    lambda: make_channel("awgn", k_factor=2),
    lambda: make_channel("rayleigh", block=False, coherence=3),
    lambda: make_channel("rayleigh", coherence=0),
    lambda: make_channel("rician", k_factor=-1),
    lambda: make_channel("rician", k_factor=float("nan")),
    lambda: make_channel("rayleigh", block="yes"),
])
def test_channel_rejects(call):
    with pytest.raises(DiffcommError):
        call()


def qpsk(bits: torch.Tensor) -> torch.Tensor:
    """Gray QPSK, unit energy: bit 0 -> +1, bit 1 -> -1 on each of I and Q."""
    return torch.complex(1 - 2 * bits[..., 0].float(), 1 - 2 * bits[..., 1].float()) / math.sqrt(2)


def qpsk_errors(s_hat: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    dec = torch.stack([(s_hat.real < 0), (s_hat.imag < 0)], -1).long()
    return (dec != bits).sum(-1).double()  # bit errors per symbol (0, 1, 2)


def ber_check(errors: torch.Tensor, truth: float) -> None:
    ber = float(errors.mean()) / 2
    se = float(errors.std()) / 2 / math.sqrt(errors.numel())
    assert within(ber, truth, se), (ber, truth, se)


@pytest.mark.parametrize("snr_db", [0.0, 4.0, 8.0])
def test_qpsk_ber_awgn(snr_db):
    g = torch.Generator().manual_seed(10)
    bits = torch.randint(0, 2, (200000, 2), generator=g)
    n0 = 10 ** (-snr_db / 10)
    y = awgn(qpsk(bits), n0, generator=g)
    eb_n0 = 1 / (2 * n0)  # Eb = Es/2 for QPSK
    ber_check(qpsk_errors(y, bits), 0.5 * math.erfc(math.sqrt(eb_n0)))


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
@pytest.mark.parametrize("equalizer", ["zf", "mmse"])
def test_qpsk_ber_rayleigh_perfect_csi(snr_db, equalizer):
    g = torch.Generator().manual_seed(11)
    n_sym = 200000
    bits = torch.randint(0, 2, (1, n_sym, 2), generator=g)
    n0 = 10 ** (-snr_db / 10)
    h = make_channel("rayleigh", block=False).sample_gains(1, n_sym, generator=g)
    y = awgn(h * qpsk(bits), n0, generator=g)
    s_hat, _ = equalize_zf(y, h) if equalizer == "zf" else equalize_mmse(y, h, n0)
    gb = 1 / (2 * n0)
    ber_check(qpsk_errors(s_hat, bits), 0.5 * (1 - math.sqrt(gb / (1 + gb))))
