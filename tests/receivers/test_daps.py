"""DAPS: the Langevin step against the closed-form Gaussian target, the annealing schedule and NFE, bad options.

Known answer: for a linear link the target of the x0 updates, N(x0; x̂0, r²I)·exp(−‖y − A x0‖²/(2τ²)),
is Gaussian with C = (I/r² + AᵀA/τ²)⁻¹ and m = x̂0 + C Aᵀ(y − A x̂0)/τ² (model space). At temperature 1,
2000 chains on replicated frames must match (m, C): the Hotelling statistic of the mean is χ²₁₆ (bound:
its 1 − 10⁻⁴ quantile) and the variance along each eigenvector of C, over its eigenvalue, is
χ²_{N−1}/(N−1) (bound 4.5 sd) plus the unadjusted Langevin bias ≤ η λ_max/2 = lr/2. At temperature 0
the updates converge to m, DataTerm.prox with ρ = τ²/r².
"""

import math

import pytest
import torch
from scipy.stats import chi2

from diffcomm.errors import DiffcommError
from diffcomm.receivers.daps import daps_receiver, langevin_x0
from diffcomm.receivers.fidelity import DataTerm

from .gaussian_case import GaussianPrior, make_case, prior_moments, ratio_sd, small_setup

torch.set_num_threads(1)
F64 = torch.float64
BATCH = 2000


def target(term: DataTerm, x0_hat: torch.Tensor, r2: float):
    s = term.system
    a, tau2 = s.a[0], float(term.noise_var[0])
    prec = torch.eye(a.shape[1], dtype=F64) / r2 + a.T @ a / tau2
    cov = torch.linalg.inv(prec)
    x0 = x0_hat[0].flatten().double()
    mean = x0 + cov @ a.T @ (s.y[0] - a @ x0) / tau2
    return mean, cov


@pytest.mark.parametrize("r2", [0.05, 0.5])
def test_langevin_samples_the_gaussian_target(r2):
    case = make_case(cbr="1/4", snr_db=10.0, batch=BATCH)
    term = DataTerm(case.link, case.rx, case.prior)
    x0_hat = torch.full((BATCH, 1, 4, 4), 0.1).double()
    mean, cov = target(term, x0_hat, r2)
    lr = 0.05
    out = langevin_x0(term, x0_hat, torch.full((BATCH,), r2, dtype=F64), 800, lr,
                      torch.Generator().manual_seed(0), temperature=1.0)
    v = out.flatten(1)
    d = v.mean(0) - mean
    assert float(BATCH * d @ torch.linalg.solve(cov, d)) < chi2.ppf(1 - 1e-4, 16)
    lam, u = torch.linalg.eigh(cov)
    ratios = torch.einsum("ij,ik,kj->j", u, torch.cov(v.T), u) / lam
    assert float((ratios - 1).abs().max()) < 4.5 * ratio_sd(BATCH) + lr / 2, ratios


def test_zero_temperature_reaches_the_mode_the_proximal_step():
    link, rx, prior, _ = small_setup(batch=4)
    term = DataTerm(link, rx, prior)
    x0_hat = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(1)).double() - 0.5
    r2 = torch.full((4,), 0.3, dtype=F64)
    out = langevin_x0(term, x0_hat, r2, 400, 1.0, temperature=0.0)
    want = term.prox(x0_hat, term.noise_var / r2)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-6)


class Recorder(GaussianPrior):
    def __init__(self, mean, cov):
        super().__init__(mean, cov)
        self.sigmas = []

    def __call__(self, x, sigma, class_labels=None):
        self.sigmas.append(torch.as_tensor(sigma).double().clone())
        return super().__call__(x, sigma, class_labels)


@pytest.mark.parametrize("steps,ode_steps", [(1, 1), (4, 1), (3, 2)])
def test_nfe_is_levels_times_ode_steps_and_levels_anneal(steps, ode_steps):
    link, rx, _, _ = small_setup(batch=2)
    prior = Recorder(*prior_moments())
    res = daps_receiver(link, rx, prior, steps=steps, ode_steps=ode_steps, start="noise",
                        generator=torch.Generator().manual_seed(0))
    assert res.nfe == steps * ode_steps == len(prior.sigmas)
    levels = torch.tensor(res.extras["levels"], dtype=F64)
    assert levels.shape == (2, steps)
    assert float(levels[0, 0]) == prior.sigma_max
    if steps > 1:
        assert (levels[:, 1:] < levels[:, :-1]).all() and float(levels[0, -1]) == pytest.approx(0.1)
    firsts = [float(s[0]) for s in prior.sigmas[::ode_steps]]
    assert firsts == pytest.approx(levels[0].tolist(), rel=1e-6)


def test_start_from_the_estimate_uses_its_level():
    link, rx, prior, _ = small_setup(batch=3)
    res = daps_receiver(link, rx, prior, steps=2, start_scale=2.0, generator=torch.Generator().manual_seed(0))
    _, sigma = DataTerm(link, rx, prior).estimate()
    torch.testing.assert_close(torch.tensor(res.extras["levels"], dtype=F64)[:, 0], 2 * sigma, rtol=1e-6, atol=0)


def test_the_last_data_step_lowers_the_residual():
    """final='mode' (the last level's update) against the paper's final='ode' (its x̂0): same draws, lower residual."""
    link, rx, prior, _ = small_setup(batch=8, snr_db=20.0)
    term = DataTerm(link, rx, prior)
    out = {}
    for final in ("ode", "mode"):
        res = daps_receiver(link, rx, prior, steps=3, final=final, generator=torch.Generator().manual_seed(0))
        out[final] = term.residual(prior.to_model(res.x_hat)).mean()
    assert out["mode"] < out["ode"]


@pytest.mark.parametrize("options", [{"steps": 0}, {"ode_steps": 0}, {"langevin_steps": -1}, {"lr": 0.0},
                                     {"lr": 2.0}, {"temperature": 1.5}, {"sigma_end": 0.0},
                                     {"prior_var": "pigdm-like"}, {"final": "last"}, {"start": "zeros"},
                                     {"start_scale": math.nan}, {"sigma_max": -1.0}])
def test_bad_options_raise_one_line(options):
    link, rx, prior, _ = small_setup(batch=2)
    with pytest.raises(DiffcommError, match="daps") as err:
        daps_receiver(link, rx, prior, **options)
    assert "\n" not in str(err.value)
