"""Every sampler × ΠGDM against the exact posterior of an isotropic Gaussian prior.

For an isotropic prior N(μ, σ_d² I) with the matching ``sigma_data``, ΠGDM's conditional denoiser
is exactly E[x0 | x_σ, y] (its likelihood score is exact; :mod:`diffcomm.receivers.pigdm`), so
running it with any sampler is that sampler run on the exact posterior: the answer is known.

- Euler (= DDIM η = 0), DDIM(η = 1) and DDPM ancestral (= DDIM η = 1): their output law on a
  Gaussian target is Gaussian with moments in closed form (``ddim_moments``, no sampling); the 2000
  draws must match those moments (Hotelling χ²₁₆ < its 1 − 10⁻⁴ quantile; each variance ratio
  within 4.5 MC standard deviations).
- Heun and DPM-Solver++(2M) (second order, 50 steps): the same mean test against the exact
  posterior, and variance ratios within the MC band around 1 widened by a stated 3 % for their
  discretisation error (measured 0.96–1.06 at 50 steps).
"""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chi2

from diffcomm.diffusion.schedules import karras_sigmas
from diffcomm.receivers.pigdm import pigdm_receiver

from .gaussian_case import ddim_moments, make_case, moment_statistics, ratio_sd, to_pixel_moments

BATCH = 2000
CHI2_BOUND = float(chi2.ppf(1 - 1e-4, 16))
RATIO_BOUND = 4.5 * ratio_sd(BATCH)
SIGMA_D = 0.16          # model-space prior std of the isotropic case (2 × 0.08)
F64 = torch.float64


@pytest.fixture(scope="module")
def case():
    return make_case(channel="awgn", isotropic=True, snr_db=10.0, batch=BATCH)


def variance_ratios(cov: torch.Tensor, post_cov: torch.Tensor) -> torch.Tensor:
    lam, u = torch.linalg.eigh(post_cov)
    return torch.einsum("ij,ik,kj->j", u, cov, u) / lam


@pytest.mark.parametrize("sampler,eta", [("euler", None), ("ddim", 0.0), ("ddim", 1.0), ("ddpm", None)])
def test_first_order_samplers_match_their_closed_form_law_on_the_exact_posterior(case, sampler, eta):
    steps = 100
    opts = {"eta": eta} if eta is not None else {}
    res = pigdm_receiver(case.link, case.rx, case.prior, steps=steps, sigma_data=SIGMA_D, sampler=sampler,
                         generator=torch.Generator().manual_seed(5), **opts)
    assert res.nfe == steps
    law_eta = 1.0 if sampler == "ddpm" or eta == 1.0 else 0.0
    mean, cov = to_pixel_moments(*ddim_moments(2 * case.post_mean - 1, 4 * case.post_cov,
                                               karras_sigmas(steps, 0.002, 80.0, dtype=F64), law_eta))
    stat, ratios = moment_statistics(res.x_hat, mean, cov)
    assert stat < CHI2_BOUND
    assert ((ratios - 1).abs() < RATIO_BOUND).all(), ratios


@pytest.mark.parametrize("sampler", ["heun", "dpmpp_2m"])
def test_second_order_samplers_sample_the_exact_posterior(case, sampler):
    res = pigdm_receiver(case.link, case.rx, case.prior, steps=50, sigma_data=SIGMA_D, sampler=sampler,
                         generator=torch.Generator().manual_seed(6))
    stat, ratios = moment_statistics(res.x_hat, case.post_mean, case.post_cov)
    assert stat < CHI2_BOUND
    assert ((ratios - 1).abs() < RATIO_BOUND + 0.03).all(), ratios
