"""Exactness tests for the samplers with closed-form denoisers (Gaussian and Gaussian-mixture data).

Every run starts from x_T = x0 + σ_max ε with x0 drawn from the data, i.e. exactly from p_{σ_max},
so a correct sampler with enough steps must return the data distribution. Tolerances: 5 standard
errors of the Monte-Carlo estimate (n = 4000); step counts are chosen so that the measured
discretisation bias is below one standard error (first-order samplers need ~1000 steps for that
on this 4-D problem; measured variance biases at 1000 steps: Euler 0.6 %, DDPM 1.4 %, against a
standard error of 2.2 %). Where a sampler's finite-step bias is large (coarse DDPM/DDIM grids,
annealed Langevin), the exact expected variance is propagated in closed form from the paper's own
update (VP variables for DDPM/DDIM, Alg. 1 for Langevin) and the samples must match that.
"""

from __future__ import annotations

import math

import pytest
import torch

from diffcomm.diffusion import samplers as S
from diffcomm.diffusion.gaussian import GaussianDenoiser, GaussianMixtureDenoiser
from diffcomm.diffusion.schedules import (
    karras_sigmas,
    linear_alpha_bars,
    sigma_index_for,
    ve_sigmas,
    vp_discrete_sigmas,
)
from diffcomm.errors import DiffcommError

F64 = torch.float64
N_MC = 4000
Z = 5.0


def _gauss() -> GaussianDenoiser:
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=F64))
    cov = q @ torch.diag(torch.tensor([1.0, 0.5, 0.2, 0.05], dtype=F64)) @ q.T
    return GaussianDenoiser(torch.tensor([0.5, -0.3, 0.2, 0.0], dtype=F64), cov)


def _gmm() -> GaussianMixtureDenoiser:
    covs = torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.2, -0.05], [-0.05, 0.4]]], dtype=F64)
    return GaussianMixtureDenoiser(torch.tensor([0.3, 0.7]), torch.tensor([[-1.5, 0.0], [1.5, 0.5]]), covs)


GAUSS = _gauss()
GMM = _gmm()


def _gmm_moments() -> tuple[torch.Tensor, torch.Tensor]:
    w, m, c = GMM.weights, GMM.means, GMM.covs
    mean = (w[:, None] * m).sum(0)
    dm = m - mean
    cov = (w[:, None, None] * (c + dm[:, :, None] * dm[:, None, :])).sum(0)
    return mean, cov


def _start(D, n: int, sigma: float, seed: int, dtype: torch.dtype = F64) -> tuple[torch.Tensor, torch.Generator]:
    """x_T = x0 + σ ε with x0 drawn exactly from the data."""
    g = torch.Generator().manual_seed(seed)
    x0 = D.sample(n, g)
    return (x0 + sigma * torch.randn(x0.shape, generator=g, dtype=F64)).to(dtype), g


def assert_moments(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, z: float = Z) -> None:
    """Sample mean and covariance within z standard errors (SE of a covariance entry from the
    sample's own fourth moments, so it also holds for non-Gaussian data)."""
    n = len(x)
    zm = (x.mean(0) - mean) / (torch.diag(cov) / n).sqrt()
    assert zm.abs().max() < z, f"mean off by {zm.abs().max():.2f} SE: {x.mean(0)} vs {mean}"
    c = x - x.mean(0)
    prod = c[:, :, None] * c[:, None, :]
    zc = (prod.sum(0) / (n - 1) - cov) / (prod.std(0) / math.sqrt(n))
    assert zc.abs().max() < z, f"cov off by {zc.abs().max():.2f} SE:\n{torch.cov(x.T)}\nvs\n{cov}"


def karras(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> torch.Tensor:
    return karras_sigmas(n, sigma_min, sigma_max, dtype=F64)


# --------------------------------------------------------------------------------------------
# Distribution tests
# --------------------------------------------------------------------------------------------

CASES = {
    "heun": (S.sample_heun, {}, 50),
    "heun_churn": (S.sample_heun, {"s_churn": 40.0}, 400),
    "dpmpp_2m": (S.sample_dpmpp_2m, {}, 50),
    "ode_rk45": (S.sample_ode, {"rtol": 1e-6, "atol": 1e-8}, 10),
    "euler": (S.sample_euler, {}, 1000),
    "ddim_eta0.5": (S.sample_ddim, {"eta": 0.5}, 1000),
    "ddpm_posterior": (S.sample_ddpm_ancestral, {}, 1000),
    "pc": (S.sample_pc, {"snr": 0.05}, 400),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gaussian_data_moments(name):
    fn, kw, steps = CASES[name]
    sigmas = karras(steps)
    dtype = F64 if name.startswith("ode") else torch.float32   # float32 noise is 4x cheaper to draw
    x, g = _start(GAUSS, N_MC, float(sigmas[0]), seed=1, dtype=dtype)
    out = fn(GAUSS, x, sigmas, generator=g, **kw)
    assert out.shape == x.shape and out.dtype == dtype
    assert_moments(out.double(), GAUSS.mean, GAUSS.cov)


@pytest.mark.parametrize("name", ["heun", "dpmpp_2m", "ddpm_posterior"])
def test_gaussian_mixture_moments_and_weights(name):
    fn, kw, steps = CASES[name]
    sigmas = karras(steps)
    x, g = _start(GMM, N_MC, float(sigmas[0]), seed=2, dtype=torch.float32)
    out = fn(GMM, x, sigmas, generator=g, **kw).double()
    mean, cov = _gmm_moments()
    assert_moments(out, mean, cov)
    # component frequencies: assign by posterior at σ ≈ 0; expected fraction from a large exact sample
    ref = GMM.sample(200_000, torch.Generator().manual_seed(9))
    p_ref = float(GMM.responsibilities(ref, 1e-3).argmax(1).eq(0).double().mean())
    p = float(GMM.responsibilities(out, 1e-3).argmax(1).eq(0).double().mean())
    assert abs(p - p_ref) < Z * math.sqrt(p_ref * (1 - p_ref) / N_MC)
    assert abs(p_ref - 0.3) < 0.01


def test_start_at_channel_matched_level():
    """Start the reverse process at an intermediate level (CDDM / HiFi-DiffCom style)."""
    full = karras(40)
    i = sigma_index_for(full, 1.3)
    assert full[i] <= 1.3 < full[i - 1]
    sigmas = karras_sigmas(30, 0.002, float(full[i]), dtype=F64)
    x, g = _start(GAUSS, N_MC, float(sigmas[0]), seed=3)
    assert_moments(S.sample_heun(GAUSS, x, sigmas, generator=g), GAUSS.mean, GAUSS.cov)


def _eig_var(x: torch.Tensor) -> torch.Tensor:
    z = (x - GAUSS.mean) @ GAUSS.eigvecs
    return z.var(0)


def _assert_eig_var(x: torch.Tensor, expected: torch.Tensor) -> None:
    """Variances along Σ's eigenvectors vs the exact expectation; SE = v sqrt(2 / (n - 1))."""
    v = _eig_var(x)
    zv = (v - expected) / (expected * math.sqrt(2 / (len(x) - 1)))
    assert zv.abs().max() < Z, f"eigen-variances {v} vs exact {expected}"
    zm = ((x - GAUSS.mean) @ GAUSS.eigvecs).mean(0) / (expected / len(x)).sqrt()
    assert zm.abs().max() < Z


def _vp_expected_var(ts: torch.Tensor, ab_table: torch.Tensor, kind: str, eta: float = 1.0) -> torch.Tensor:
    """Variance of each VP eigen-coordinate after DDPM / DDIM in VP variables, propagated exactly.

    Ho et al. 2020 eq. 6-7 (posterior q(x_{t'} | x_t, x0) between consecutive chosen timesteps
    t > t', with β replaced by 1 - ᾱ_t/ᾱ_{t'}), or Song et al. 2021 eq. 12 & 16 for DDIM(η);
    x̂0 = E[x0 | x_t] for x0 ~ N(m, Σ). Linear in x_t per eigen-direction, so v' = a² v + c².
    """
    lam = GAUSS.eigvals
    abar = ab_table[ts]
    v = abar[0] * lam + (1 - abar[0])                       # x_T exact: ᾱ_T λ + (1 - ᾱ_T)
    for k in range(len(ts)):
        a_t = abar[k]
        a_n = abar[k + 1] if k + 1 < len(ts) else torch.tensor(1.0, dtype=F64)
        g = a_t.sqrt() * lam / (a_t * lam + 1 - a_t)         # x̂0 = g z_t (eigen-coordinate, m removed)
        if k + 1 == len(ts):                                 # last step: return x̂0
            return g * g * v
        if kind == "ddim":
            s_eta2 = eta ** 2 * (1 - a_n) / (1 - a_t) * (1 - a_t / a_n)
            eps_coef = (1 - a_t.sqrt() * g) / (1 - a_t).sqrt()  # ε̂ = (z_t - sqrt(ᾱ_t) x̂0) / sqrt(1 - ᾱ_t)
            a = a_n.sqrt() * g + (1 - a_n - s_eta2).sqrt() * eps_coef
            c2 = s_eta2
        else:
            beta = 1 - a_t / a_n
            a = a_n.sqrt() * beta / (1 - a_t) * g + (a_t / a_n).sqrt() * (1 - a_n) / (1 - a_t)
            c2 = (1 - a_n) / (1 - a_t) * beta if kind == "posterior" else beta
        v = a * a * v + c2
    raise AssertionError("unreachable")


@pytest.mark.parametrize("kind", ["posterior", "beta", "ddim"])
def test_ddpm_and_ddim_match_exact_vp_recursion_on_coarse_grid(kind):
    """A 12-step grid, where the finite-step distribution is far from the data (so this checks the
    σ-form update exactly, not just its limit)."""
    ab = linear_alpha_bars()
    sigmas = vp_discrete_sigmas(ab, 12, dtype=F64)
    ts = torch.linspace(len(ab) - 1, 0, 12, dtype=F64).round().long()
    expected = _vp_expected_var(ts, ab, kind, eta=0.5)               # at ᾱ = 1 VP and σ-form x agree
    assert (expected / GAUSS.eigvals - 1).abs().max() > 0.1           # the grid is really coarse
    x, g = _start(GAUSS, N_MC, float(sigmas[0]), seed=4)
    if kind == "ddim":
        out = S.sample_ddim(GAUSS, x, sigmas, generator=g, eta=0.5)
    else:
        out = S.sample_ddpm_ancestral(GAUSS, x, sigmas, generator=g, variance=kind)
    _assert_eig_var(out, expected)


def test_annealed_langevin_matches_exact_recursion_and_data():
    """Song & Ermon 2019 Alg. 1 on Gaussian data: each step is x <- (1 - α p / 2) x + sqrt(α) z per
    eigen-direction (p = 1 / (λ + σ_i²)), so v <- (1 - α p / 2)² v + α; the final denoising step
    multiplies by λ / (λ + σ_L²)."""
    sigmas = ve_sigmas(20, 0.02, 20.0, dtype=F64)
    step_lr, n_each = 2e-4, 50
    x, g = _start(GAUSS, N_MC, float(sigmas[0]), seed=5, dtype=torch.float32)
    counter = S.NFECounter(GAUSS)
    out = S.sample_annealed_langevin(counter, x, sigmas, generator=g, n_steps_each=n_each, step_lr=step_lr)
    assert counter.nfe == 20 * n_each + 1
    lam, pos = GAUSS.eigvals, sigmas[:-1]
    v = lam + pos[0] ** 2
    for s in pos:
        alpha = step_lr * s ** 2 / pos[-1] ** 2
        c = 1 - alpha / (lam + s ** 2) / 2
        for _ in range(n_each):
            v = c * c * v + alpha
    v = v * (lam / (lam + pos[-1] ** 2)) ** 2
    assert (v / lam - 1).abs().max() < 0.05                         # this configuration is nearly unbiased
    _assert_eig_var(out.double(), v)


# --------------------------------------------------------------------------------------------
# Deterministic samplers: convergence to the probability-flow ODE solution
# --------------------------------------------------------------------------------------------

def _rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt())


@pytest.fixture(scope="module")
def ode_problem():
    x, _ = _start(GAUSS, 256, 80.0, seed=6)
    return x, GAUSS.ode_flow(x, 80.0, 0.05)


def test_sample_ode_matches_closed_form_flow(ode_problem):
    x, exact = ode_problem
    sig = karras(12, 0.05)[:-1]
    assert float((S.sample_ode(GAUSS, x, sig, method="rk45", rtol=1e-7, atol=1e-9) - exact).abs().max()) < 1e-5
    assert float((S.sample_ode(GAUSS, x, sig, method="dop853", rtol=1e-10, atol=1e-12) - exact).abs().max()) < 1e-8
    e4, e8 = (_rms(S.sample_ode(GAUSS, x, sig, method="rk4", n_substeps=k), exact) for k in (4, 8))
    assert 11 < e4 / e8 < 22, (e4, e8)                               # 4th order
    e1, e2 = (_rms(S.sample_ode(GAUSS, x, sig, method="euler", n_substeps=k), exact) for k in (16, 32))
    assert 1.7 < e1 / e2 < 2.3, (e1, e2)                             # 1st order


def test_sample_ode_to_zero_matches_flow_to_zero(ode_problem):
    x, _ = ode_problem
    out = S.sample_ode(GAUSS, x, karras(8), method="dop853", rtol=1e-10, atol=1e-12)
    assert float((out - GAUSS.ode_flow(x, 80.0, 0.0)).abs().max()) < 1e-4     # O(σ_min²) final jump


ORDERS = {"euler": (S.sample_euler, 1), "heun": (S.sample_heun, 2), "dpmpp_2m": (S.sample_dpmpp_2m, 2)}


@pytest.mark.parametrize("name", list(ORDERS))
def test_convergence_order_gaussian(name, ode_problem):
    fn, order = ORDERS[name]
    x, exact = ode_problem
    errs = [_rms(fn(GAUSS, x, karras(n, 0.05)[:-1]), exact) for n in (32, 64, 128)]
    ratios = [errs[0] / errs[1], errs[1] / errs[2]]
    lo, hi = (1.7, 2.3) if order == 1 else (3.4, 4.8)
    assert all(lo < r < hi for r in ratios), (errs, ratios)
    assert errs[-1] < (0.1 if order == 1 else 2e-3)


@pytest.mark.parametrize("name", list(ORDERS))
def test_convergence_to_ode_reference_gaussian_mixture(name):
    """Nonlinear denoiser: the reference is sample_ode (DOP853, rtol 1e-10)."""
    fn, order = ORDERS[name]
    x, _ = _start(GMM, 256, 80.0, seed=7)
    ref = S.sample_ode(GMM, x, torch.tensor([80.0, 0.05], dtype=F64), method="dop853", rtol=1e-10, atol=1e-12)
    errs = [_rms(fn(GMM, x, karras(n, 0.05)[:-1]), ref) for n in (32, 64, 128)]
    ratios = [errs[0] / errs[1], errs[1] / errs[2]]
    lo, hi = (1.5, 2.5) if order == 1 else (3.0, 5.0)
    assert all(lo < r < hi for r in ratios), (errs, ratios)
    assert errs[-1] < (0.05 if order == 1 else 2e-3)


def test_ddim_eta0_is_euler_and_eta1_is_ddpm():
    sig = karras(20)
    x, _ = _start(GAUSS, 64, 80.0, seed=8)
    assert torch.allclose(S.sample_ddim(GAUSS, x, sig, eta=0.0), S.sample_euler(GAUSS, x, sig), atol=1e-12)
    a = S.sample_ddim(GAUSS, x, sig, generator=torch.Generator().manual_seed(1), eta=1.0)
    b = S.sample_ddpm_ancestral(GAUSS, x, sig, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a, b, atol=1e-12)


def test_dpmpp_2m_is_exact_for_point_mass_data():
    """Data = δ_m: D ≡ m and the exponential integrator is exact (x - m ∝ σ)."""
    m = torch.tensor([[0.3, -0.7]], dtype=F64)
    x = m + 80 * torch.tensor([[1.0, 2.0]], dtype=F64)
    sig = karras(7, 0.5)[:-1]
    out = S.sample_dpmpp_2m(lambda xx, s: m.expand_as(xx), x, sig)
    assert torch.allclose(out, m + 0.5 * torch.tensor([[1.0, 2.0]], dtype=F64), atol=1e-12)


# --------------------------------------------------------------------------------------------
# API behaviour: NFE, callback, extra_args, seeds, dtype, validation
# --------------------------------------------------------------------------------------------

ALL = {
    "euler": (S.sample_euler, {}), "heun": (S.sample_heun, {}), "ddim": (S.sample_ddim, {"eta": 0.3}),
    "dpmpp_2m": (S.sample_dpmpp_2m, {}), "ddpm_ancestral": (S.sample_ddpm_ancestral, {}),
    "pc": (S.sample_pc, {"n_corrector": 2}), "annealed_langevin": (S.sample_annealed_langevin, {"n_steps_each": 3}),
    "ode": (S.sample_ode, {"method": "rk4", "n_substeps": 2}),
}
N_STEPS = 6
EXPECTED_NFE = {"euler": 6, "heun": 11, "ddim": 6, "dpmpp_2m": 6, "ddpm_ancestral": 6, "pc": 6 + 5 * 2,
                "annealed_langevin": 6 * 3 + 1, "ode": 5 * 2 * 4 + 1 + 6}  # ode: + 1 per level for the callback


class Spy:
    """Records the σ and kwargs of every call; a Gaussian denoiser underneath."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, sigma, **kw):
        self.calls.append((sigma.clone(), kw))
        return GAUSS(x, sigma)


@pytest.mark.parametrize("name", list(ALL))
def test_nfe_sigma_shape_extra_args_and_callback(name):
    fn, kw = ALL[name]
    spy = Spy()
    counter = S.NFECounter(spy)
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0)) * 10
    seen = []
    labels = torch.arange(5)
    out = fn(counter, x, karras_sigmas(N_STEPS, 0.01, 10.0), generator=torch.Generator().manual_seed(1),
             callback=seen.append, extra_args={"class_labels": labels}, **kw)
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert counter.nfe == len(spy.calls) == EXPECTED_NFE[name]
    for sigma, kwargs in spy.calls:
        assert sigma.shape == (5,) and sigma.dtype == torch.float32
        assert kwargs["class_labels"] is labels
    assert [c["i"] for c in seen] == list(range(N_STEPS))
    assert set(seen[0]) >= {"i", "x", "sigma", "sigma_hat", "denoised"}
    assert float(seen[0]["sigma"]) == pytest.approx(10.0)


@pytest.mark.parametrize("name", ["heun", "ddim", "ddpm_ancestral", "pc", "annealed_langevin"])
def test_same_seed_same_result(name):
    fn, kw = ALL[name]
    if name == "heun":
        kw = {"s_churn": 10.0}
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0)) * 10
    sig = karras_sigmas(N_STEPS, 0.01, 10.0)
    a, b, c = (fn(GAUSS, x, sig, generator=torch.Generator().manual_seed(s), **kw) for s in (3, 3, 4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_schedule_without_final_zero_stops_at_last_level():
    x, _ = _start(GAUSS, 16, 80.0, seed=10)
    sig = karras(200, 1.0)[:-1]
    out = S.sample_heun(GAUSS, x, sig)
    assert torch.allclose(out, GAUSS.ode_flow(x, 80.0, 1.0), atol=1e-4)


def test_nfe_counter_forwards_attributes():
    counter = S.NFECounter(GAUSS)
    assert counter.dim == 4 and counter.nfe == 0


@pytest.mark.parametrize("bad", [
    torch.tensor([1.0, 2.0, 0.0]), torch.tensor([[1.0, 0.0]]), torch.tensor([1.0]),
    torch.tensor([1.0, -0.5]), torch.tensor([float("nan"), 0.0]), torch.tensor([1.0, 1.0, 0.0]),
])
def test_bad_sigmas_raise(bad):
    with pytest.raises(DiffcommError):
        S.sample_euler(GAUSS, torch.zeros(2, 4), bad)


def test_bad_options_raise():
    sig = karras_sigmas(3, 0.01, 1.0)
    x = torch.zeros(2, 4)
    with pytest.raises(DiffcommError):
        S.sample_ddim(GAUSS, x, sig, eta=1.5)
    with pytest.raises(DiffcommError):
        S.sample_ode(GAUSS, x, sig, method="midpoint")
    with pytest.raises(DiffcommError):
        S.sample_ddpm_ancestral(GAUSS, x, sig, variance="large")
    with pytest.raises(DiffcommError):
        S.sample_pc(GAUSS, x, sig, predictor="euler_maruyama")
    with pytest.raises(DiffcommError):
        S.sample_annealed_langevin(GAUSS, x, sig, step_lr=0.0)
    S.sample_annealed_langevin(GAUSS, x, sig, step_lr=2e-5, n_steps_each=1)   # 2e-5 / 0.01² = 0.2 is fine ...
    with pytest.raises(DiffcommError):                                         # ... but not with σ_L = 0.002
        S.sample_annealed_langevin(GAUSS, x, karras_sigmas(3, 0.002, 1.0), step_lr=2e-5)
    with pytest.raises(DiffcommError):
        S.sample_euler(GAUSS, [1.0, 0.0], sig)


# --------------------------------------------------------------------------------------------
# Single steps against the papers' equations (written in their own variables)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,eta", [("ddim", 0.3), ("ddim", 1.0), ("posterior", None), ("beta", None)])
def test_one_step_conditional_law_matches_vp_equations(kind, eta):
    """From one fixed x, one step σ -> σ' must have the mean and std of Song et al. 2021 eq. 12/16
    (DDIM) or Ho et al. 2020 eq. 6-7 / §3.2 (DDPM), mapped from VP to σ form by 1/sqrt(ᾱ_{t'})."""
    n, sigma, sigma_next = N_MC, 1.7, 0.6
    x = torch.tensor([[0.9, -1.2, 2.0, 0.3]], dtype=F64).expand(n, 4).contiguous()
    sigmas = torch.tensor([sigma, sigma_next], dtype=F64)
    g = torch.Generator().manual_seed(11)
    if kind == "ddim":
        out = S.sample_ddim(GAUSS, x, sigmas, generator=g, eta=eta)
    else:
        out = S.sample_ddpm_ancestral(GAUSS, x, sigmas, generator=g, variance=kind)
    a_t, a_n = 1 / (1 + sigma ** 2), 1 / (1 + sigma_next ** 2)
    x_t = math.sqrt(a_t) * x[0]
    x0 = GAUSS(x[:1], sigma)[0]
    if kind == "ddim":
        eps = (x_t - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        s_eta = eta * math.sqrt((1 - a_n) / (1 - a_t)) * math.sqrt(1 - a_t / a_n)
        mean_vp, std_vp = math.sqrt(a_n) * x0 + math.sqrt(1 - a_n - s_eta ** 2) * eps, s_eta
    else:
        beta = 1 - a_t / a_n
        mean_vp = math.sqrt(a_n) * beta / (1 - a_t) * x0 + math.sqrt(a_t / a_n) * (1 - a_n) / (1 - a_t) * x_t
        std_vp = math.sqrt((1 - a_n) / (1 - a_t) * beta if kind == "posterior" else beta)
    mean, std = mean_vp / math.sqrt(a_n), std_vp / math.sqrt(a_n)
    assert ((out.mean(0) - mean) / (std / math.sqrt(n))).abs().max() < Z
    assert ((out.std(0) - std) / (std / math.sqrt(2 * n))).abs().max() < Z


def test_pc_step_replays_song_alg2_and_alg4():
    """One predictor + two corrector steps reproduced with the same random draws."""
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0), dtype=F64) * 2
    sigma, sigma_next, snr = 2.0, 1.2, 0.16
    sigmas = torch.tensor([sigma, sigma_next], dtype=F64)
    out = S.sample_pc(GAUSS, x, sigmas, generator=torch.Generator().manual_seed(5), snr=snr, n_corrector=2)
    g = torch.Generator().manual_seed(5)
    score = lambda xx, s: (GAUSS(xx, s) - xx) / s ** 2                        # noqa: E731
    z = torch.randn(x.shape, generator=g, dtype=F64)
    y = x + (sigma ** 2 - sigma_next ** 2) * score(x, sigma) + math.sqrt(sigma ** 2 - sigma_next ** 2) * z
    for _ in range(2):
        grad = score(y, sigma_next)
        z = torch.randn(x.shape, generator=g, dtype=F64)
        step = 2 * (snr * z.norm(dim=1).mean() / grad.norm(dim=1).mean()) ** 2   # Alg. 4 with α_i = 1 (VE)
        y = y + step * grad + (2 * step).sqrt() * z
    assert torch.allclose(out, y, atol=1e-12)


def test_churn_levels_via_callback():
    """Karras et al. 2022 Alg. 2: γ_i = min(S_churn / N, √2 - 1) for σ_i in [S_tmin, S_tmax], else 0."""
    sig = karras_sigmas(10, 0.01, 10.0, dtype=F64)
    for fn in (S.sample_heun, S.sample_euler):
        for s_churn in (2.0, 50.0):                    # γ = 0.2, and the √2 - 1 cap
            seen = []
            fn(GAUSS, torch.zeros(2, 4, dtype=F64), sig, generator=torch.Generator().manual_seed(0),
               callback=seen.append, s_churn=s_churn, s_tmin=0.05, s_tmax=1.0)
            for c in seen:
                gamma = float(c["sigma_hat"] / c["sigma"]) - 1
                expected = min(s_churn / 10, math.sqrt(2) - 1) if 0.05 <= float(c["sigma"]) <= 1.0 else 0.0
                assert gamma == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------------------------
# One schedule per batch row
# --------------------------------------------------------------------------------------------

PER_ROW = {
    "euler": (S.sample_euler, {}), "heun": (S.sample_heun, {}), "ddim_eta0": (S.sample_ddim, {"eta": 0.0}),
    "dpmpp_2m": (S.sample_dpmpp_2m, {}), "renoise_zeta0": (S.sample_renoise, {"zeta": 0.0}),
}


def _row_grids(final_zero: bool) -> torch.Tensor:
    """Four different Karras grids of 7 levels (starts 80, 3, 0.4, 0.05; ends 0.002 .. 0.02), as (4, 8) or (4, 7)."""
    rows = [karras_sigmas(7, lo, hi, dtype=F64) for lo, hi in [(0.002, 80.0), (0.01, 3.0), (0.02, 0.4), (0.005, 0.05)]]
    grid = torch.stack(rows)
    return grid if final_zero else grid[:, :-1]


@pytest.mark.parametrize("final_zero", [True, False])
@pytest.mark.parametrize("name", list(PER_ROW))
def test_per_row_sigmas_equal_each_row_run_alone(name, final_zero):
    """A (B, n + 1) schedule gives, row by row, the result of running that row alone with its 1-D schedule
    (closed-form Gaussian denoiser, float64: equal to round-off), and the denoiser sees each row's own σ."""
    fn, kw = PER_ROW[name]
    grid = _row_grids(final_zero)
    x = torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=F64) * grid[:, :1]
    spy = Spy()
    batch = fn(spy, x, grid, **kw)
    first_sigma, _ = spy.calls[0]
    torch.testing.assert_close(first_sigma, grid[:, 0], rtol=0, atol=0)
    for b in range(4):
        alone = fn(GAUSS, x[b:b + 1], grid[b], **kw)
        torch.testing.assert_close(batch[b:b + 1], alone, rtol=1e-12, atol=1e-12)
    if name == "heun":   # Heun's extra evaluations are per row too: NFE = 2n − 1 with a final 0, 2n without
        n = grid.shape[1] - 1
        assert len(spy.calls) == (2 * n - 1 if final_zero else 2 * n)


@pytest.mark.parametrize("bad", [
    torch.tensor([[1.0, 0.5, 0.0], [1.0, 0.5, 0.0], [1.0, 0.5, 0.0]]),     # 3 rows for a batch of 2
    torch.tensor([[1.0], [2.0]]),                                             # no step
    torch.tensor([[1.0, 0.5, 0.0], [1.0, 1.0, 0.0]]),                         # a repeated level
    torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0]]),                         # increasing
    torch.tensor([[1.0, 0.5, 0.0], [1.0, 0.0, 0.0]]),                         # a zero before the last column
    torch.tensor([[1.0, 0.5, 0.0], [1.0, 0.5, 0.1]]),                         # final zero in some rows only
    torch.tensor([[1.0, 0.5, 0.0], [1.0, -0.5, -1.0]]),                       # negative
    torch.tensor([[1.0, 0.5, 0.0], [float("nan"), 0.5, 0.0]]),                # NaN
    torch.tensor([[1.0, 0.5, 0.0], [float("inf"), 0.5, 0.0]]),                # inf
])
@pytest.mark.parametrize("name", ["euler", "heun", "ddim", "dpmpp_2m", "ddpm_ancestral", "renoise"])
def test_malformed_per_row_sigmas_raise(name, bad):
    fn = S.sample_renoise if name == "renoise" else ALL[name][0]
    with pytest.raises(DiffcommError) as err:
        fn(GAUSS, torch.zeros(2, 4), bad)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["pc", "annealed_langevin", "ode"])
def test_per_row_sigmas_are_refused_where_not_supported(name):
    fn, kw = ALL[name]
    with pytest.raises(DiffcommError, match="1-D"):
        fn(GAUSS, torch.zeros(2, 4), _row_grids(True)[:2].float(), **kw)
    with pytest.raises(DiffcommError, match="1-D"):   # churn draws one γ per step, so it needs one schedule
        S.sample_euler(GAUSS, torch.zeros(2, 4), _row_grids(True)[:2].float(), s_churn=1.0)
