"""Pilots, LS/LMMSE estimation and ZF/MMSE equalisation against their theoretical error variances."""

import math

import pytest
import torch

from diffcomm.channels import (
    RayleighChannel,
    RicianChannel,
    awgn,
    equalize_mmse,
    equalize_zf,
    estimate_lmmse,
    estimate_ls,
    pilot_sequence,
)
from diffcomm.errors import DiffcommError


def within(estimate: float, truth: float, se: float, z: float = 5.0) -> bool:
    return abs(estimate - truth) <= z * se


@pytest.mark.parametrize("n", [1, 7, 8, 13])
def test_zadoff_chu_unit_modulus_and_ideal_autocorrelation(n):
    p = pilot_sequence(n).to(torch.complex128)
    assert torch.allclose(p.abs(), torch.ones(n, dtype=torch.float64), atol=1e-6)
    for lag in range(1, n):
        assert abs(complex((p * torch.roll(p, lag).conj()).sum())) < 1e-5 * n


def test_qpsk_pilots_seeded():
    a = pilot_sequence(16, "qpsk", generator=torch.Generator().manual_seed(0))
    b = pilot_sequence(16, "qpsk", generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.allclose(a.abs(), torch.ones(16))


@pytest.mark.parametrize("call", [lambda: pilot_sequence(0), lambda: pilot_sequence(8, root=2),
                                  lambda: pilot_sequence(4, "bpsk")])
def test_pilot_rejects(call):
    with pytest.raises(DiffcommError):
        call()


def test_ls_exact_without_noise():
    p = pilot_sequence(5)
    h = torch.tensor([0.3 - 1.2j, 2.0 + 0.1j])
    assert torch.allclose(estimate_ls(h[:, None] * p, p), h, atol=1e-6)


def simulate_blocks(channel, n_blocks, n_p, n0, seed):
    g = torch.Generator().manual_seed(seed)
    h = channel.sample_block_gains(1, n_blocks, generator=g)[0]
    p = pilot_sequence(n_p)
    y = awgn(h[:, None] * p, n0, generator=g)
    return h, p, y


@pytest.mark.parametrize("n_p", [1, 4, 16])
@pytest.mark.parametrize("n0", [0.1, 1.0])
def test_ls_and_lmmse_mse_rayleigh(n_p, n0):
    n_blocks = 40000
    h, p, y = simulate_blocks(RayleighChannel(), n_blocks, n_p, n0, seed=n_p)
    for h_hat, mse in [(estimate_ls(y, p), n0 / n_p), (estimate_lmmse(y, p, n0), n0 / (n_p + n0))]:
        e = (h_hat - h).abs().pow(2).double()
        # the error is CN(0, mse) so |e|^2 ~ Exp(mse): standard error mse / sqrt(N)
        assert within(float(e.mean()), mse, mse / math.sqrt(n_blocks)), (float(e.mean()), mse)
    # LS is unbiased; LMMSE error is orthogonal to the estimate (orthogonality principle)
    err = estimate_ls(y, p) - h
    assert within(float(err.real.mean()), 0.0, math.sqrt(n0 / n_p / 2 / n_blocks))
    h_l = estimate_lmmse(y, p, n0)
    cross = complex(((h - h_l) * h_l.conj()).to(torch.complex128).mean())
    assert abs(cross) <= 5 * math.sqrt(n0 / (n_p + n0) * n_p / (n_p + n0) / n_blocks)


def test_lmmse_mse_rician_prior_mean():
    ch = RicianChannel(k_factor=3.0, los_phase=0.7)
    n_blocks, n_p, n0 = 40000, 2, 0.5
    h, p, y = simulate_blocks(ch, n_blocks, n_p, n0, seed=3)
    v = ch.scatter_var
    h_hat = estimate_lmmse(y, p, n0, prior_var=v, prior_mean=ch.mean)
    mse = v * n0 / (v * n_p + n0)
    e = (h_hat - h).abs().pow(2).double()
    assert within(float(e.mean()), mse, mse / math.sqrt(n_blocks))
    # ignoring the LoS mean (zero-mean prior with the same variance) is measurably worse
    e0 = (estimate_lmmse(y, p, n0, prior_var=1.0) - h).abs().pow(2).double()
    assert float(e0.mean()) > mse + 5 * mse / math.sqrt(n_blocks)


def test_estimators_reject():
    p = pilot_sequence(4)
    with pytest.raises(DiffcommError):
        estimate_ls(torch.zeros(3, 5, dtype=torch.complex64), p)
    with pytest.raises(DiffcommError):
        estimate_ls(torch.zeros(3, 4), p)
    with pytest.raises(DiffcommError):
        estimate_lmmse(torch.zeros(3, 4, dtype=torch.complex64), p, n0=-1.0)


@pytest.mark.parametrize("h", [0.2 + 0.1j, 1.0 + 0.0j, -1.5 + 2.0j])
def test_equalizer_error_variance(h):
    g = torch.Generator().manual_seed(4)
    n, n0 = 200000, 0.3
    bits = torch.randint(0, 2, (n, 2), generator=g).float()
    s = torch.complex(1 - 2 * bits[:, 0], 1 - 2 * bits[:, 1]) / math.sqrt(2)
    hh = torch.full((n,), h, dtype=torch.complex64)
    y = awgn(hh * s, n0, generator=g)
    for eq in (equalize_zf(y, hh, n0), equalize_mmse(y, hh, n0)):
        s_hat, var = eq
        e = (s_hat - s).abs().pow(2).double()
        assert within(float(e.mean()), float(var[0]), float(e.std()) / math.sqrt(n))
    assert float(equalize_zf(y, hh, n0)[1][0]) == pytest.approx(n0 / abs(h) ** 2, rel=1e-5)
    assert float(equalize_mmse(y, hh, n0)[1][0]) == pytest.approx(n0 / (abs(h) ** 2 + n0), rel=1e-5)
    s_zf, _ = equalize_zf(hh * s, hh)
    assert torch.allclose(s_zf, s, atol=1e-5)


def test_equalizer_rejects():
    with pytest.raises(DiffcommError):
        equalize_mmse(torch.zeros(2, 3, dtype=torch.complex64), None, 0.1)
    with pytest.raises(DiffcommError):
        equalize_zf(torch.zeros(2, 3, dtype=torch.complex64), torch.ones(2, 4, dtype=torch.complex64))
