"""Closed-form denoisers: direct formula, Tweedie via autograd, scipy densities, exact ODE flow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from diffcomm.diffusion.gaussian import GaussianDenoiser, GaussianMixtureDenoiser
from diffcomm.errors import DiffcommError

F64 = torch.float64


def _spd(d: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=F64)


MEAN = torch.tensor([0.5, -1.0, 0.25], dtype=F64)
COV = _spd(3, 0)
GMM = GaussianMixtureDenoiser(torch.tensor([0.2, 0.5, 0.3]), torch.tensor([[-2.0, 0, 1], [0, 1, 0], [2, 0, -1.0]]),
                              torch.stack([_spd(3, s) for s in (1, 2, 3)]))


def test_gaussian_matches_direct_formula_per_sample_sigma():
    D = GaussianDenoiser(MEAN, COV)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=F64) * 3
    sig = torch.tensor([0.01, 0.3, 1.0, 5.0, 80.0], dtype=F64)
    want = torch.stack([MEAN + COV @ torch.linalg.solve(COV + s ** 2 * torch.eye(3, dtype=F64), xi - MEAN)
                        for xi, s in zip(x, sig)])
    assert torch.allclose(D(x, sig), want, atol=1e-12)
    assert torch.allclose(D(x, 0.3), D(x, torch.full((5,), 0.3, dtype=F64)), atol=1e-14)
    assert torch.allclose(D(x, 0.3)[1], want[1], atol=1e-12)


def test_tweedie_identity_gaussian_and_mixture():
    """D(x; σ) = x + σ² ∇_x log p_σ(x) (Karras et al. 2022, eq. 3), gradient by autograd."""
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(2), dtype=F64).requires_grad_(True)
    sig = torch.tensor([0.05, 0.2, 0.7, 1.5, 4.0, 20.0], dtype=F64)
    for D in (GaussianDenoiser(MEAN, COV), GMM):
        (grad,) = torch.autograd.grad(D.log_prob(x, sig).sum(), x)
        assert torch.allclose(D(x.detach(), sig), x.detach() + sig[:, None] ** 2 * grad, atol=1e-10)
    # conditional components too
    labels = torch.tensor([0, 1, 2, 3, 0, 2])
    (grad,) = torch.autograd.grad(GMM.log_prob(x, sig, class_labels=labels).sum(), x)
    assert torch.allclose(GMM(x.detach(), sig, class_labels=labels), x.detach() + sig[:, None] ** 2 * grad, atol=1e-10)


def test_log_probs_match_scipy():
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(3), dtype=F64)
    D = GaussianDenoiser(MEAN, COV)
    want = multivariate_normal(MEAN.numpy(), (COV + 0.25 * torch.eye(3, dtype=F64)).numpy()).logpdf(x.numpy())
    assert np.allclose(D.log_prob(x, 0.5).numpy(), want, atol=1e-10)
    mix = sum(float(w) * multivariate_normal(m.numpy(), c.numpy() + 0.04 * np.eye(3)).pdf(x.numpy())
              for w, m, c in zip(GMM.weights, GMM.means, GMM.covs))
    assert np.allclose(GMM.log_prob(x, 0.2).numpy(), np.log(mix), atol=1e-10)


def test_mixture_components_and_single_component_case():
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(4), dtype=F64) * 2
    for k in range(3):
        comp = GaussianDenoiser(GMM.means[k], GMM.covs[k])
        assert torch.allclose(GMM(x, 0.7, class_labels=torch.full((4,), k)), comp(x, 0.7), atol=1e-12)
    assert torch.allclose(GMM(x, 0.7, class_labels=torch.full((4,), 3)), GMM(x, 0.7), atol=1e-12)
    one = GaussianMixtureDenoiser(torch.ones(1), MEAN[None], COV[None])
    assert torch.allclose(one(x, 0.4), GaussianDenoiser(MEAN, COV)(x, 0.4), atol=1e-12)
    r = GMM.responsibilities(x, 0.7)
    assert torch.allclose(r.sum(1), torch.ones(4, dtype=F64))


def test_image_shaped_input_and_dtype():
    D = GaussianDenoiser(torch.zeros(12), torch.eye(12))
    x = torch.ones(2, 3, 2, 2)
    out = D(x, torch.tensor([1.0, 3.0]))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.allclose(out[0], torch.full((3, 2, 2), 0.5)) and torch.allclose(out[1], torch.full((3, 2, 2), 0.1))


def test_ode_flow_is_exact_solution():
    D = GaussianDenoiser(MEAN, COV)
    # pushes N(m, Σ + σ1² I) onto N(m, Σ + σ2² I): the flow is linear, A (Σ + σ1²) Aᵀ = Σ + σ2²
    eye = torch.eye(3, dtype=F64)
    a = D.ode_flow(eye + MEAN, 3.0, 0.5) - D.ode_flow(torch.zeros(3, 3, dtype=F64) + MEAN, 3.0, 0.5)
    A = a.T
    assert torch.allclose(A @ (COV + 9 * eye) @ A.T, COV + 0.25 * eye, atol=1e-12)
    # and satisfies dx/dσ = (x - D(x; σ)) / σ (central difference)
    x = torch.randn(3, 3, generator=torch.Generator().manual_seed(5), dtype=F64)
    h, s = 1e-5, 1.3
    deriv = (D.ode_flow(x, 2.0, s + h) - D.ode_flow(x, 2.0, s - h)) / (2 * h)
    xs = D.ode_flow(x, 2.0, s)
    assert torch.allclose(deriv, (xs - D(xs, s)) / s, atol=1e-8)


def test_sampling_moments():
    n = 20000
    D = GaussianDenoiser(MEAN, COV)
    x = D.sample(n, torch.Generator().manual_seed(6))
    assert ((x.mean(0) - MEAN) / (torch.diag(COV) / n).sqrt()).abs().max() < 5
    se = (torch.diag(COV)[:, None] * torch.diag(COV)[None, :] + COV ** 2).sqrt() / math.sqrt(n)
    assert ((torch.cov(x.T) - COV) / se).abs().max() < 5
    xm = GMM.sample(n, torch.Generator().manual_seed(7))
    mean = GMM.weights @ GMM.means
    dm = GMM.means - mean
    cov = (GMM.weights[:, None, None] * (GMM.covs + dm[:, :, None] * dm[:, None, :])).sum(0)
    assert ((xm.mean(0) - mean) / (torch.diag(cov) / n).sqrt()).abs().max() < 5
    c = xm - xm.mean(0)
    prod = c[:, :, None] * c[:, None, :]
    assert ((torch.cov(xm.T) - cov) / (prod.std(0) / math.sqrt(n))).abs().max() < 5
    xc = GMM.sample(1000, torch.Generator().manual_seed(8), class_labels=torch.full((1000,), 2))
    assert ((xc.mean(0) - GMM.means[2]) / (torch.diag(GMM.covs[2]) / 1000).sqrt()).abs().max() < 5


def test_errors():
    with pytest.raises(DiffcommError):
        GaussianDenoiser(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]))      # not symmetric
    with pytest.raises(DiffcommError):
        GaussianDenoiser(torch.zeros(2), torch.tensor([[1.0, 2.0], [2.0, 1.0]]))      # not PSD
    with pytest.raises(DiffcommError):
        GaussianDenoiser(torch.zeros(2), torch.eye(3))
    with pytest.raises(DiffcommError):
        GaussianDenoiser(torch.zeros(2), torch.eye(2))(torch.zeros(2, 3), 1.0)
    with pytest.raises(DiffcommError):
        GaussianDenoiser(torch.zeros(2), torch.eye(2))(torch.zeros(4, 2), torch.ones(3))
    with pytest.raises(DiffcommError):
        GaussianMixtureDenoiser(torch.tensor([0.5, 0.6]), torch.zeros(2, 2), torch.stack([torch.eye(2)] * 2))
    with pytest.raises(DiffcommError):
        GMM(torch.zeros(2, 3), 1.0, class_labels=torch.tensor([0, 4]))


def test_ring_components_are_stretched_along_the_circle():
    from diffcomm.diffusion.gaussian import GaussianMixtureDenoiser

    mix = GaussianMixtureDenoiser.ring(torch.tensor([0.25, 0.25, 0.25, 0.25]), 3.0, var_along=0.5, var_across=0.02)
    assert torch.allclose(mix.means.norm(dim=1), torch.full((4,), 3.0, dtype=torch.float64))
    radial = mix.means / 3.0
    tangent = torch.stack([-radial[:, 1], radial[:, 0]], 1)
    var = lambda v: torch.einsum("ki,kij,kj->k", v, mix.covs, v)  # noqa: E731
    assert torch.allclose(var(tangent), torch.full((4,), 0.5, dtype=torch.float64))
    assert torch.allclose(var(radial), torch.full((4,), 0.02, dtype=torch.float64))
