"""DiffPIR receiver: the exact data-proximal step (ModelSpaceSystem.prox), the output contract, bad inputs."""

import pytest
import torch

from diffcomm.errors import DiffcommError
from diffcomm.receivers.base import model_space
from diffcomm.receivers.diffpir import diffpir_denoiser, diffpir_receiver

from .gaussian_case import GaussianPrior, N, bad_inputs, prior_moments, receiver_matrix_f64, small_setup

torch.set_num_threads(1)


@pytest.mark.parametrize("rho", [1e-4, 0.05, 10.0])
def test_data_proximal_is_the_exact_minimiser(rho):
    """The m×m push-through form equals the n×n normal equations (AᵀA + ρI) x = Aᵀy + ρ x0.

    A = ``system.a``, the model-space link matrix M/2 (equal to M/2 built independently in float64 up to
    float32 round-off of the link's matrix).
    """
    link, rx, prior, _ = small_setup(batch=3, channel="rayleigh")
    system = model_space(link, rx, prior)
    x0 = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = system.prox(x0, rho)
    a = system.a
    torch.testing.assert_close(a, receiver_matrix_f64(link, rx) / 2, rtol=1e-6, atol=1e-7)
    lhs = a.transpose(-1, -2) @ a + rho * torch.eye(N, dtype=torch.float64)
    rhs = (a.transpose(-1, -2) @ system.y[..., None]).squeeze(-1) + rho * x0.flatten(1)
    want = torch.linalg.solve(lhs, rhs)
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-8)


def test_denoiser_is_the_proximal_step_of_the_prior_estimate():
    """DiffPIR's conditional denoiser is prox(D(x; σ)) with ρ = λ σ_y² / σ² (eq. 11-13), per row of σ."""
    link, rx, prior, _ = small_setup(batch=3, channel="rayleigh")
    system = model_space(link, rx, prior)
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sigma = torch.tensor([0.05, 0.5, 5.0], dtype=torch.float64)
    lam = 2.0
    got = diffpir_denoiser(prior, system, lam)(x, sigma)
    for i in range(3):
        rho = lam * system.noise_var / float(sigma[i]) ** 2
        want = system.prox(prior(x, sigma)[i:i + 1].expand(3, -1, -1, -1), rho)[i]
        torch.testing.assert_close(got[i].flatten(), want, rtol=1e-12, atol=1e-12)


def test_zeta_sets_the_fresh_noise():
    """ζ = 0 draws only x_T (same seed, same output); ζ = 1 adds fresh noise each step, so it differs."""
    link, rx, prior, _ = small_setup(batch=3)
    a = diffpir_receiver(link, rx, prior, steps=8, zeta=0.0, generator=torch.Generator().manual_seed(4))
    b = diffpir_receiver(link, rx, prior, steps=8, zeta=0.0, generator=torch.Generator().manual_seed(4))
    c = diffpir_receiver(link, rx, prior, steps=8, zeta=1.0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.x_hat, b.x_hat)
    assert not torch.equal(a.x_hat, c.x_hat)


def test_output_contract_and_reproducibility():
    link, rx, prior, _ = small_setup(batch=4)
    res = diffpir_receiver(link, rx, prior, steps=6, lam=2.0, zeta=0.5, generator=torch.Generator().manual_seed(5))
    assert res.x_hat.shape == (4, 1, 4, 4) and res.x_hat.dtype == torch.float32
    assert 0 <= float(res.x_hat.min()) and float(res.x_hat.max()) <= 1
    assert res.nfe == 6 and prior.calls == 6 and res.seconds > 0
    assert res.extras["lam"] == 2.0 and res.extras["zeta"] == 0.5
    again = diffpir_receiver(link, rx, prior, steps=6, lam=2.0, zeta=0.5, generator=torch.Generator().manual_seed(5))
    assert torch.equal(res.x_hat, again.x_hat)


@pytest.mark.parametrize("label,link,rx", bad_inputs(), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_received_signal_raises_one_line(label, link, rx):
    with pytest.raises(DiffcommError) as err:
        diffpir_receiver(link, rx, GaussianPrior(*prior_moments()), steps=2)
    want = "receiver diffpir needs a linear link" if label == "nonlinear link" else "diffpir"
    assert "\n" not in str(err.value) and str(err.value).startswith(want)


@pytest.mark.parametrize("options", [{"steps": -1}, {"lam": 0.0}, {"lam": float("inf")}, {"zeta": 1.5},
                                     {"zeta": -0.1}, {"prior": None}])
def test_bad_options_raise(options):
    link, rx, prior, _ = small_setup(batch=2)
    kwargs = {"steps": 2, **options}
    prior = kwargs.pop("prior", prior)
    with pytest.raises(DiffcommError, match="diffpir"):
        diffpir_receiver(link, rx, prior, **kwargs)
