"""ΠGDM receiver: the guidance term against the exact Gaussian posterior score, the output contract, bad inputs."""

import pytest
import torch

from diffcomm.channels import complex_to_real
from diffcomm.errors import DiffcommError
from diffcomm.receivers.base import model_space as model_space_system
from diffcomm.receivers.linear import gaussian_posterior
from diffcomm.receivers.pigdm import pigdm_denoiser, pigdm_receiver

from .gaussian_case import GaussianPrior, N, bad_inputs, make_case, model_space, prior_moments, small_setup

torch.set_num_threads(1)


def test_model_space_system_reproduces_the_link_exactly():
    """y_m = complex_to_real(y) − M·1/2 and A_m = M/2: A_m x_m + M·1/2 equals the link's A(x) for any x."""
    link, rx, prior, _ = small_setup(batch=3, channel="rayleigh")
    system = model_space_system(link, rx, prior)
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    via_system = system.apply(2 * x - 1) + (complex_to_real(rx.y).double() - system.y)
    via_link = complex_to_real(link.forward(x.float(), rx)).double()
    torch.testing.assert_close(via_system, via_link, rtol=1e-5, atol=1e-5)
    assert system.noise_var == rx.n0 / 2
    assert system.a.shape == (3, 2 * link.k, N)


@pytest.mark.parametrize("sigma", [0.03, 0.3, 3.0])
def test_guidance_is_the_exact_likelihood_score_for_an_isotropic_prior(sigma):
    """ΠGDM eq. (7) with r² = σ²σ_d²/(σ² + σ_d²) is exact when p(x0 | x_σ) = N(x̂0, r² I).

    For x0 ~ N(μ, σ_d² I) (model space) that holds, so D_y = x̂0 + σ² g must equal E[x0 | x_σ, y],
    computed independently as a Gaussian posterior given the stacked observations
    [x_σ = x0 + σ ε; y_m = A_m x0 + n]. Float64 throughout: agreement to 1e-7 (round-off of the Cholesky solves).
    """
    case = make_case(isotropic=True, batch=3, seed=2)
    mu, cov, a, y, var = model_space(case)
    sigma_d = float(cov[0, 0]) ** 0.5
    x = mu + (torch.randn(3, N, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
              * (sigma_d ** 2 + sigma ** 2) ** 0.5)
    system = model_space_system(case.link, case.rx, case.prior)
    # D_y = x̂0 + σ² g with r² = σ²σ_d²/(σ² + σ_d²) (guidance_scale 1)
    d_y = pigdm_denoiser(case.prior, system, sigma_d)(x.reshape(3, 1, 4, 4), torch.full((3,), sigma)).reshape(3, N)

    a_stack = torch.cat([torch.eye(N, dtype=torch.float64), a])
    noise = torch.cat([torch.full((N,), sigma ** 2, dtype=torch.float64), torch.full((len(y),), var)])
    exact, _ = gaussian_posterior(a_stack, torch.cat([x, y.expand(3, -1)], 1), noise, mu, cov)
    torch.testing.assert_close(d_y, exact, rtol=1e-7, atol=1e-7)


def test_guidance_is_only_approximate_for_a_correlated_prior():
    """With a correlated prior p(x0 | x_σ) is not isotropic, so ΠGDM's score differs from the exact one.

    Measured at σ = 0.3 with σ_d² = the mean prior variance: the error is 13 % of the exact data
    correction E[x0 | x_σ, y] − x̂0 (0.05 % at σ = 0.03, 47 % at σ = 3).
    """
    case = make_case(isotropic=False, batch=2, seed=2)
    mu, cov, a, y, var = model_space(case)
    sigma = 0.3
    x = mu + 0.3 * torch.randn(2, N, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x0 = case.prior(x.reshape(2, 1, 4, 4), sigma)
    system = model_space_system(case.link, case.rx, case.prior)
    sd2 = float(torch.diagonal(cov).mean())
    d_y = pigdm_denoiser(case.prior, system, sd2 ** 0.5)(x.reshape(2, 1, 4, 4), torch.full((2,), sigma))
    a_stack = torch.cat([torch.eye(N, dtype=torch.float64), a])
    noise = torch.cat([torch.full((N,), sigma ** 2, dtype=torch.float64), torch.full((len(y),), var)])
    exact, _ = gaussian_posterior(a_stack, torch.cat([x, y.expand(2, -1)], 1), noise, mu, cov)
    gap = (d_y.reshape(2, N) - exact).norm(dim=1) / (exact - x0.detach().reshape(2, N)).norm(dim=1)
    assert (gap > 0.05).all()     # a real approximation, not round-off
    assert (gap < 0.25).all()     # but it still carries most of the data correction


def test_output_contract_and_reproducibility():
    link, rx, prior, _ = small_setup(batch=4)
    res = pigdm_receiver(link, rx, prior, steps=7, generator=torch.Generator().manual_seed(5))
    assert res.x_hat.shape == (4, 1, 4, 4) and res.x_hat.dtype == torch.float32
    assert 0 <= float(res.x_hat.min()) and float(res.x_hat.max()) <= 1
    assert res.nfe == 7 and prior.calls == 7 and res.seconds > 0
    again = pigdm_receiver(link, rx, prior, steps=7, generator=torch.Generator().manual_seed(5))
    other = pigdm_receiver(link, rx, prior, steps=7, generator=torch.Generator().manual_seed(6))
    assert torch.equal(res.x_hat, again.x_hat)
    assert not torch.equal(res.x_hat, other.x_hat)


def test_sigma_data_defaults_to_the_priors_data_scale():
    link, rx, prior, _ = small_setup(batch=2)
    assert pigdm_receiver(link, rx, prior, steps=2).extras["sigma_data"] == 1.0
    prior.sigma_data = 0.5
    assert pigdm_receiver(link, rx, prior, steps=2).extras["sigma_data"] == 0.5


@pytest.mark.parametrize("label,link,rx", bad_inputs(), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_received_signal_raises_one_line(label, link, rx):
    with pytest.raises(DiffcommError) as err:
        pigdm_receiver(link, rx, GaussianPrior(*prior_moments()), steps=2)
    want = "receiver pigdm needs a linear link" if label == "nonlinear link" else "pigdm"
    assert "\n" not in str(err.value) and str(err.value).startswith(want)


@pytest.mark.parametrize("options", [{"steps": 0}, {"steps": 2.5}, {"eta": 1.5}, {"sigma_data": -1.0},
                                     {"guidance_scale": 0.0}, {"sigma_max": 1e-5}, {"prior": object()}])
def test_bad_options_raise(options):
    link, rx, prior, _ = small_setup(batch=2)
    kwargs = {"steps": 2, **options}
    prior = kwargs.pop("prior", prior)
    with pytest.raises(DiffcommError, match="pigdm"):
        pigdm_receiver(link, rx, prior, **kwargs)
