"""Schedules and conversions: known values from the papers, round trips, index semantics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffcomm.diffusion import schedules as sch
from diffcomm.errors import DiffcommError

F64 = torch.float64
sigmas_st = st.floats(1e-3, 1e3)
fast = settings(max_examples=60, deadline=None)


# ---------------------------------------------------------------------------------------------
# Karras / VE / sigma_grid
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,smin,smax,rho", [(18, 0.002, 80.0, 7.0), (5, 0.01, 1.0, 3.0), (2, 0.5, 0.6, 7.0)])
def test_karras_endpoints_length_and_order(n, smin, smax, rho):
    s = sch.karras_sigmas(n, smin, smax, rho, dtype=F64)
    assert len(s) == n + 1 and s.dtype == F64
    assert float(s[0]) == pytest.approx(smax, rel=1e-12)
    assert float(s[n - 1]) == pytest.approx(smin, rel=1e-12)
    assert float(s[-1]) == 0.0
    assert (s[1:] < s[:-1]).all()


def test_karras_matches_eq5_by_hand():
    s = sch.karras_sigmas(3, 0.002, 80.0, 7.0, dtype=F64)
    mid = ((80.0 ** (1 / 7) + 0.002 ** (1 / 7)) / 2) ** 7
    assert float(s[1]) == pytest.approx(mid, rel=1e-12)
    assert sch.karras_sigmas(4, 0.002, 80.0).dtype == torch.float32          # k-diffusion default dtype


def test_karras_single_step_and_errors():
    assert sch.karras_sigmas(1, 0.002, 80.0, dtype=F64).tolist() == [80.0, 0.0]
    for args in [(0, 0.002, 80.0), (3, 0.0, 80.0), (3, 1.0, 0.5), (3, 0.1, float("inf")), (2.5, 0.1, 1.0)]:
        with pytest.raises(DiffcommError):
            sch.karras_sigmas(*args)
    with pytest.raises(DiffcommError):
        sch.karras_sigmas(3, 0.1, 1.0, rho=0.0)


def test_sigma_grid_starts_at_level_and_never_repeats():
    s = sch.sigma_grid(10, 0.01, 2.5, dtype=F64)
    assert float(s[0]) == pytest.approx(2.5) and len(s) == 11 and (s[1:] < s[:-1]).all()
    assert sch.sigma_grid(10, 0.01, 0.001, dtype=F64).tolist() == [0.001, 0.0]


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("steps,smin,smax", [(1, 0.002, 80.0), (10, 0.002, 80.0), (30, 0.002, 0.05),
                                             (10, 0.002, 0.0021), (50, 0.002, 0.003), (7, 0.5, 0.6)])
def test_sigma_grid_never_repeats_levels(steps, smin, smax, dtype):
    """sigma_max > sigma_min: ``steps`` strictly decreasing positive levels from sigma_max to sigma_min, then 0."""
    s = sch.sigma_grid(steps, smin, smax, dtype=dtype)
    assert s.dtype == dtype and s.shape == (steps + 1,) and float(s[-1]) == 0.0
    assert (s[1:] < s[:-1]).all() and (s[:-1] > 0).all()
    assert float(s[0]) == pytest.approx(smax, rel=1e-6)
    assert float(s[-2]) == pytest.approx(smin if steps > 1 else smax, rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("smax", [0.002, 0.001, 1e-6])
def test_sigma_grid_start_at_or_below_sigma_min_is_one_level(smax, dtype):
    """sigma_max <= sigma_min: the single level [sigma_max, 0] (one NFE), whatever ``steps``."""
    for steps in (1, 10, 100):
        s = sch.sigma_grid(steps, 0.002, smax, dtype=dtype)
        assert s.dtype == dtype and s.shape == (2,)
        assert s.tolist() == [float(torch.tensor(smax, dtype=dtype)), 0.0]


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_sigma_grid_barely_above_sigma_min_never_repeats_after_the_cast(dtype):
    """A start within float round-off of sigma_min (e.g. a channel-matched σ* = σ_min(1 + 1e-8)) must not give
    repeated levels once cast to ``dtype`` (the samplers refuse such a grid)."""
    for rel in (1e-12, 1e-8, 1e-6):
        s = sch.sigma_grid(10, 0.002, 0.002 * (1 + rel), dtype=dtype)
        assert (s[1:] < s[:-1]).all(), (rel, s.tolist())
        rows = sch.sigma_grid(10, 0.002, torch.tensor([1.0, 0.002 * (1 + rel)], dtype=F64), dtype=dtype)
        assert (rows[:, 1:] < rows[:, :-1]).all(), (rel, rows[1].tolist())


def test_sigma_grid_per_row():
    """Tensor sigma_max (B,): one grid per row, (B, steps + 1). A row whose start is at least 2 sigma_min is the
    scalar grid of that start; otherwise the row ends at start/2 (CDDM's min(σ_min, σ_eff/2)), so every row keeps
    ``steps`` strictly decreasing levels."""
    top = torch.tensor([80.0, 0.5, 0.004, 0.003, 0.002, 0.001], dtype=F64)
    g = sch.sigma_grid(6, 0.002, top, dtype=F64)
    assert g.shape == (6, 7) and g.dtype == F64
    assert (g[:, 1:] < g[:, :-1]).all() and (g[:, -1] == 0).all() and (g[:, :-1] > 0).all()
    torch.testing.assert_close(g[:, 0], top, rtol=1e-12, atol=0)
    for b in range(3):
        torch.testing.assert_close(g[b], sch.sigma_grid(6, 0.002, float(top[b]), dtype=F64), rtol=1e-12, atol=0)
    for b in range(3, 6):
        torch.testing.assert_close(g[b], sch.karras_sigmas(6, float(top[b]) / 2, float(top[b]), dtype=F64),
                                   rtol=1e-12, atol=0)
    assert sch.sigma_grid(6, 0.002, top.float()).dtype == torch.float32
    gmin = sch.sigma_grid(4, torch.tensor([0.01, 0.02]), torch.tensor([1.0, 2.0]), dtype=F64)   # per-row ends too
    torch.testing.assert_close(gmin[:, -2], torch.tensor([0.01, 0.02], dtype=F64), rtol=1e-6, atol=0)
    for bad in (torch.tensor([1.0, float("nan")]), torch.tensor([1.0, -1.0]), torch.tensor([float("inf")])):
        with pytest.raises(DiffcommError):
            sch.sigma_grid(4, 0.002, bad)


def test_sigma_grid_rejects_bad_arguments():
    for args in [(0, 0.002, 1.0), (2.5, 0.002, 1.0), (4, 0.002, float("nan")), (4, 0.002, float("inf")),
                 (4, 0.002, 0.0), (4, 0.0, 1.0), (4, -0.1, 1.0)]:
        with pytest.raises(DiffcommError):
            sch.sigma_grid(*args)

def test_ve_sigmas_geometric():
    s = sch.ve_sigmas(10, 0.01, 50.0, dtype=F64)
    ratios = s[1:-1] / s[:-2]
    assert torch.allclose(ratios, torch.full_like(ratios, (0.01 / 50.0) ** (1 / 9)), rtol=1e-12)
    assert float(s[0]) == pytest.approx(50.0) and float(s[-2]) == pytest.approx(0.01) and s[-1] == 0
    with pytest.raises(DiffcommError):
        sch.ve_sigmas(4, 1.0, 0.5)


# ---------------------------------------------------------------------------------------------
# Discrete VP tables
# ---------------------------------------------------------------------------------------------

def test_linear_alpha_bars_known_values():
    ab = sch.linear_alpha_bars()
    betas = np.linspace(1e-4, 0.02, 1000)
    assert np.allclose(ab.numpy(), np.exp(np.cumsum(np.log1p(-betas))), rtol=1e-12)
    assert float(ab[0]) == pytest.approx(1 - 1e-4, rel=1e-14)
    assert float(ab[-1]) == pytest.approx(4.0358e-5, rel=1e-3)          # DDPM's ᾱ_T
    sig = sch.vp_sigmas(ab)
    assert float(sig[-1]) == pytest.approx(157.41, rel=1e-3)             # its σ_max
    assert float(sig[0]) == pytest.approx(math.sqrt(1e-4 / (1 - 1e-4)), rel=1e-9)


def test_cosine_alpha_bars_monotone_clipped_and_eq17():
    T, s = 1000, 0.008
    ab = sch.cosine_alpha_bars(T, s)
    assert ab.dtype == F64 and len(ab) == T
    assert (ab[1:] < ab[:-1]).all() and (ab > 0).all() and (ab < 1).all()
    betas = 1 - ab[1:] / ab[:-1]
    assert float(betas.max()) <= 0.999 + 1e-12
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2   # noqa: E731
    for t in (1, 10, 500, 900):                                       # eq. 17 where β is not clipped
        assert float(ab[t - 1]) == pytest.approx(f(t) / f(0), rel=1e-10)
        assert float(sch.vp_sigmas(ab)[t - 1]) == pytest.approx(sch.cosine_sigma_of_t(t / T, s), rel=1e-8)


def test_vp_discrete_sigmas_on_table():
    ab = sch.linear_alpha_bars()
    s = sch.vp_discrete_sigmas(ab, 10, dtype=F64)
    table = sch.vp_sigmas(ab)
    assert len(s) == 11 and s[-1] == 0 and (s[1:] < s[:-1]).all()
    assert float(s[0]) == pytest.approx(float(table[-1])) and float(s[-2]) == pytest.approx(float(table[0]))
    assert all(bool(torch.isclose(table, v, rtol=1e-12).any()) for v in s[:-1])
    with pytest.raises(DiffcommError):
        sch.vp_discrete_sigmas(ab, 1001)


def test_discrete_sigma_t_maps():
    table = sch.vp_sigmas(sch.linear_alpha_bars())
    k = torch.arange(0, 1000, 37)
    assert torch.allclose(sch.discrete_sigma_to_t(table[k], table), k.double(), atol=1e-9)
    assert float(sch.discrete_sigma_to_t(torch.tensor(1e-6), table)) == 0.0            # clamped
    assert float(sch.discrete_sigma_to_t(torch.tensor(1e6), table)) == 999.0
    t = torch.tensor([0.0, 0.25, 10.5, 998.9, 999.0], dtype=F64)
    assert torch.allclose(sch.discrete_sigma_to_t(sch.discrete_t_to_sigma(t, table), table), t, atol=1e-9)
    # log-σ interpolation: halfway in t is the geometric mean of neighbouring σ
    mid = sch.discrete_t_to_sigma(torch.tensor(4.5, dtype=F64), table)
    assert float(mid) == pytest.approx(math.sqrt(float(table[4] * table[5])), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Conversions (property tests)
# ---------------------------------------------------------------------------------------------

@fast
@given(sigmas_st)
def test_alpha_bar_round_trip_and_definition(s):
    ab = sch.alpha_bar_of_sigma(s)
    assert isinstance(ab, float)
    assert sch.sigma_of_alpha_bar(ab) == pytest.approx(s, rel=1e-9)
    assert s ** 2 == pytest.approx((1 - ab) / ab, rel=1e-9)


@fast
@given(sigmas_st)
def test_log_snr_and_db_round_trip(s):
    lam = sch.log_snr_of_sigma(s)
    ab = 1 / (1 + s * s)
    assert lam == pytest.approx(math.log(ab / (1 - ab)), rel=1e-9, abs=1e-9)
    assert sch.sigma_of_log_snr(lam) == pytest.approx(s, rel=1e-12)
    db = sch.snr_db_of_sigma(s)
    assert db == pytest.approx(10 / math.log(10) * lam, rel=1e-9, abs=1e-9)
    assert sch.sigma_of_snr_db(db) == pytest.approx(s, rel=1e-12)


@fast
@given(st.floats(0.0, 1.0))
def test_continuous_time_round_trips(t):
    assert sch.ve_t_of_sigma(sch.ve_sigma_of_t(t, 0.01, 50.0), 0.01, 50.0) == pytest.approx(t, abs=1e-12)
    if t > 1e-4:                                          # σ(t) -> 0 as t -> 0, where t(σ) loses digits
        assert sch.vp_t_of_sigma(sch.vp_sigma_of_t(t)) == pytest.approx(t, rel=1e-8)
    if t < 0.99:
        assert sch.cosine_t_of_sigma(sch.cosine_sigma_of_t(t)) == pytest.approx(t, abs=1e-8)


def test_continuous_known_values_and_tensor_io():
    assert sch.vp_sigma_of_t(1.0) == pytest.approx(152.0, abs=0.5)        # EDM Table 1 (VP σ_max ≈ 152)
    assert sch.vp_sigma_of_t(0.0) == 0.0
    assert sch.ve_sigma_of_t(0.0, 0.02, 100.0) == pytest.approx(0.02)
    assert sch.cosine_sigma_of_t(0.0) == 0.0
    s = torch.tensor([0.1, 1.0, 10.0], dtype=F64)
    out = sch.snr_db_of_sigma(s)
    assert torch.is_tensor(out) and torch.allclose(out, torch.tensor([20.0, 0.0, -20.0], dtype=F64))
    assert sch.alpha_bar_of_sigma(0.0) == 1.0 and sch.log_snr_of_sigma(0.0) == math.inf


def test_conversion_errors():
    nan = float("nan")
    for fn, bad in [(sch.alpha_bar_of_sigma, -1.0), (sch.sigma_of_alpha_bar, 0.0), (sch.sigma_of_alpha_bar, 1.5),
                    (sch.snr_db_of_sigma, nan), (sch.ve_t_of_sigma, 0.0), (sch.sigma_of_log_snr, nan)]:
        with pytest.raises(DiffcommError):
            fn(bad)


# ---------------------------------------------------------------------------------------------
# sigma_index_for
# ---------------------------------------------------------------------------------------------

S4 = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.0])


@pytest.mark.parametrize("target,at_or_below,nearest", [
    (2.0, 1, 1), (1.5, 2, 1), (1.2, 2, 2), (9.0, 0, 0), (0.3, 4, 3), (0.0, 4, 4), (0.5, 3, 3),
])
def test_sigma_index_for_semantics(target, at_or_below, nearest):
    assert sch.sigma_index_for(S4, target) == at_or_below
    assert sch.sigma_index_for(S4, target, mode="nearest") == nearest


def test_sigma_index_for_without_final_zero_and_errors():
    assert sch.sigma_index_for(torch.tensor([4.0, 2.0, 1.0]), 0.5) == 2
    with pytest.raises(DiffcommError):
        sch.sigma_index_for(torch.tensor([1.0, 2.0, 0.0]), 1.0)
    with pytest.raises(DiffcommError):
        sch.sigma_index_for(S4, -1.0)
    with pytest.raises(DiffcommError):
        sch.sigma_index_for(S4, 1.0, mode="closest")


@fast
@given(st.floats(0.0, 100.0))
def test_sigma_index_for_is_first_level_at_or_below(target):
    s = sch.karras_sigmas(30, 0.002, 80.0, dtype=F64)
    i = sch.sigma_index_for(s, target)
    assert s[i] <= target
    assert i == 0 or s[i - 1] > target
    j = sch.sigma_index_for(s, target, mode="nearest")
    if target > 0:
        d = (s[:-1].log() - math.log(target)).abs()
        assert float(d[j]) == pytest.approx(float(d.min()))
