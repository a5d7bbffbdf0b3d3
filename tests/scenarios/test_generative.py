"""The diffusion prior as a classifier: exact Gaussian class-conditional denoisers reproduce the
Bayes-optimal decisions of a two-class Gaussian mixture observed through a linear link."""

import pytest
import torch

from diffcomm.errors import DiffcommError
from diffcomm.scenarios.generative import generative_classify

F64 = torch.float64


class GaussianClasses:
    """Exact class-conditional denoisers of x ~ N(±mu, s² I): D_c(x, σ) = mu_c + s²/(s² + σ²)(x − mu_c)."""

    num_classes = 2

    def __init__(self, mu: torch.Tensor, s: float):
        self.means = torch.stack([-mu, mu])
        self.s2 = s * s
        self.calls = 0

    @staticmethod
    def to_model(x):
        return x

    def __call__(self, x, sigma, class_labels):
        self.calls += 1
        m = self.means[class_labels]
        a = (self.s2 / (self.s2 + sigma.reshape(-1, 1) ** 2)).to(x.dtype)
        return m + a * (x - m)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generative_classifier_matches_bayes_on_a_linear_link(seed):
    g = torch.Generator().manual_seed(seed)
    d, m, s, noise = 16, 6, 0.6, 0.4
    mu = torch.randn(d, generator=g, dtype=F64) * 0.4
    a = torch.randn(m, d, generator=g, dtype=F64) / d ** 0.5
    n = 600
    labels = torch.randint(0, 2, (n,), generator=g)
    x = (2 * labels.to(F64) - 1)[:, None] * mu + s * torch.randn(n, d, generator=g, dtype=F64)
    y = x @ a.T + noise * torch.randn(n, m, generator=g, dtype=F64)
    # Bayes on y: y | c ~ N(±A mu, s² A Aᵀ + noise² I), equal priors -> sign of (A mu)ᵀ Σ_y⁻¹ y
    sigma_y = s * s * a @ a.T + noise ** 2 * torch.eye(m, dtype=F64)
    bayes = ((y @ torch.linalg.solve(sigma_y, a @ mu)) > 0).long()
    # the receiver's reconstruction: LMMSE under the mixture's moments (mean 0, covariance s² I + mu muᵀ)
    cov = s * s * torch.eye(d, dtype=F64) + torch.outer(mu, mu)
    x_hat = (cov @ a.T @ torch.linalg.solve(a @ cov @ a.T + noise ** 2 * torch.eye(m, dtype=F64), y.T)).T
    prior = GaussianClasses(mu, s)
    res = generative_classify(prior, x_hat, sigmas=(0.3, 1.0, 2.0), generator=torch.Generator().manual_seed(7),
                              pixels=False, antithetic=True)
    assert res.nfe == 2 * 3 * 2     # classes × levels × antithetic pair
    assert torch.equal(res.labels, bayes)
    assert 0.6 < float((bayes == labels).double().mean()) < 1.0   # a non-trivial problem


def test_antithetic_pairs_remove_the_noise_term_exactly():
    """Without the ±ε pair the score keeps a term linear in ε, so decisions are noisy; with it they are
    the nearest class mean exactly (the exact denoisers' score is then Σ w(1 − a)²‖μ_c − x‖² + const)."""
    g = torch.Generator().manual_seed(3)
    mu, s = torch.randn(8, generator=g, dtype=F64) * 0.5, 0.5
    x = torch.randn(400, 8, generator=g, dtype=F64) * 0.7
    nearest = ((x - mu).pow(2).sum(1) < (x + mu).pow(2).sum(1)).long()
    kwargs = dict(sigmas=(0.5,), pixels=False, generator=torch.Generator().manual_seed(0))
    plain = generative_classify(GaussianClasses(mu, s), x, antithetic=False, **kwargs)
    kwargs["generator"] = torch.Generator().manual_seed(0)
    paired = generative_classify(GaussianClasses(mu, s), x, antithetic=True, **kwargs)
    assert plain.nfe == 2 and paired.nfe == 4
    assert torch.equal(paired.labels, nearest)
    assert 0.6 < float((plain.labels == nearest).double().mean()) < 1.0


@pytest.mark.parametrize("bad", [(), (0.0,), (-1.0,), (float("nan"),), ("a",)])
def test_bad_sigmas_are_one_line_errors(bad):
    with pytest.raises(DiffcommError, match="sigmas"):
        generative_classify(GaussianClasses(torch.zeros(2, dtype=F64), 1.0), torch.zeros(1, 2, dtype=F64),
                            sigmas=bad, pixels=False)


def test_the_shipped_prior_classifies_clean_images_better_than_chance():
    from diffcomm import zoo
    from diffcomm.data import get_dataset

    data = get_dataset("fashion-mnist", "test")
    x, labels = data.images[:20], data.labels[:20]
    res = generative_classify(zoo.load("fmnist-prior"), x, sigmas=(3.2,), antithetic=False,
                              generator=torch.Generator().manual_seed(0))
    assert res.nfe == 10 and res.scores.shape == (20, 10)
    assert float((res.labels == labels).float().mean()) >= 0.5
