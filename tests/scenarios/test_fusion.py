"""The fusion centre's likelihood: K linear observations as one whitened link, checked against exact answers.

The exact-moment test: an isotropic Gaussian pixel prior N(m, s² I) on 1×4×4 images, two agents with
their own Gaussian projections (CBR 1/4 each), channels (AWGN 10 dB, Rayleigh block fading 0 dB) and
power gains. ΠGDM with σ_d = the model-space prior std is exact for an isotropic prior up to DDIM's
discretisation (tests/receivers/test_gaussian_exactness.py), so 2000 draws of ΠGDM on the fused link
must have the moments of the exact joint posterior N(μ, C) of the stacked system with per-row noise
(:func:`gaussian_posterior`): the Hotelling statistic N (x̄ − μ)ᵀ C⁻¹ (x̄ − μ) ~ χ²₁₆ (bound: its
1 − 10⁻⁴ quantile), and each variance ratio along an eigenvector of C is χ²_{N−1}/(N−1) (sd 0.032),
inside 4.5 sd of DDIM's closed-form ratio band at 400 steps (0.963-0.965, checked ≥ 0.95 there).
"""

import math

import pytest
import torch
from scipy.stats import chi2

from diffcomm.channels import complex_to_real
from diffcomm.diffusion.gaussian import GaussianDenoiser
from diffcomm.errors import DiffcommError
from diffcomm.link import Received, make_link
from diffcomm.receivers.linear import gaussian_posterior
from diffcomm.receivers.pigdm import pigdm_receiver
from diffcomm.scenarios.fusion import fuse, observation, pixel_observation

SHAPE = (1, 4, 4)
N = 16
F64 = torch.float64


class IsotropicPrior:
    """Model-space prior N(2m − 1, 4 s² I) for pixels N(m, s² I), in the receivers' prior interface."""

    sigma_min, sigma_max = 0.002, 80.0

    def __init__(self, mean: torch.Tensor, std: float):
        self.mean, self.std = mean.double(), std
        self.denoiser = GaussianDenoiser(2 * self.mean - 1, 4 * std ** 2 * torch.eye(N, dtype=F64))

    def __call__(self, x, sigma, class_labels=None):
        return self.denoiser(x, sigma)

    @staticmethod
    def to_model(x):
        return 2 * x - 1

    @staticmethod
    def to_pixels(x):
        return (x + 1) / 2


def two_agents(seed: int = 0, batch: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = (0.5 + 0.08 * torch.randn(1, *SHAPE, generator=gen)).clamp(0, 1)
    links = [make_link("gaussian", SHAPE, "1/4", "awgn", 10.0, seed=seed + 1),
             make_link("gaussian", SHAPE, "1/4", "rayleigh", 0.0, seed=seed + 2)]
    obs = []
    for link in links:
        rx = link.transmit(x, generator=gen)
        rx = Received(y=rx.y.expand(batch, -1).clone(), h_hat=rx.h_hat.expand(batch, -1).clone(), n0=rx.n0,
                      gain=rx.gain.expand(batch).clone(), pilots_used=0)
        obs.append(observation(link, rx))
    return x, links, obs


def stacked_system(obs):
    """Real (m, n) matrix, y (m,) and per-row noise variance of the unwhitened stack (image 0), float64."""
    mats, ys, noise = [], [], []
    for o in obs:
        c = o.coef[0].to(torch.complex128)
        e = o.matrix.double()
        re, im = e[0::2], e[1::2]            # E x gives (re, im) pairs per symbol
        rows = torch.empty_like(e)
        rows[0::2] = c.real[:, None] * re - c.imag[:, None] * im
        rows[1::2] = c.imag[:, None] * re + c.real[:, None] * im
        mats.append(rows)
        ys.append(complex_to_real(o.y[0]).double())
        noise.append(torch.full((e.shape[0],), o.n0 / 2, dtype=F64))
    return torch.cat(mats), torch.cat(ys), torch.cat(noise)


def test_fused_data_term_is_the_sum_of_the_agents_terms():
    _, _, obs = two_agents()
    link, rx = fuse(obs)
    x = torch.rand(1, *SHAPE)
    fused = float((rx.y - link.operator(rx)(x)).abs().pow(2).sum()) / rx.n0
    parts = sum(float((o.y - o.coef * (torch.complex(*(x.flatten(1) @ o.matrix.T).reshape(1, -1, 2).unbind(-1))))
                      .abs().pow(2).sum()) / o.n0 for o in obs)
    assert fused == pytest.approx(parts, rel=1e-5)


def test_fused_link_matrix_is_the_whitened_stack():
    _, _, obs = two_agents()
    link, rx = fuse(obs)
    a, y, noise = stacked_system(obs)
    w = (rx.n0 / 2 / noise).sqrt()
    torch.testing.assert_close(link.matrix(rx)[0].double(), w[:, None] * a, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(complex_to_real(rx.y[0]).double(), w * y, rtol=1e-5, atol=1e-6)


def test_fused_posterior_equals_the_per_row_noise_posterior():
    _, _, obs = two_agents()
    link, rx = fuse(obs)
    mean, var = torch.full((N,), 0.5, dtype=F64), 0.08 ** 2
    m1, c1 = gaussian_posterior(link.matrix(rx)[0].double(), complex_to_real(rx.y[0]).double(), rx.n0 / 2, mean, var)
    a, y, noise = stacked_system(obs)
    m2, c2 = gaussian_posterior(a, y, noise, mean, var)
    torch.testing.assert_close(m1, m2, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(c1, c2, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_more_observations_never_increase_the_exact_posterior_variance(seed):
    """C(y1) − C(y1, y2) and C(y2) − C(y1, y2) are positive semi-definite (Loewner order), for a correlated prior."""
    _, _, obs = two_agents(seed)
    gen = torch.Generator().manual_seed(100 + seed)
    b = torch.randn(N, N, generator=gen, dtype=F64)
    cov = 0.01 * (b @ b.T / N + 0.1 * torch.eye(N, dtype=F64))
    mean = torch.full((N,), 0.5, dtype=F64)
    joint = gaussian_posterior(*stacked_system(obs)[:2], stacked_system(obs)[2], mean, cov)[1]
    for one in obs:
        a, y, noise = stacked_system([one])
        single = gaussian_posterior(a, y, noise, mean, cov)[1]
        gap = torch.linalg.eigvalsh(single - joint)
        assert float(gap.min()) > -1e-12 * float(cov.diagonal().max()), gap
        assert float(torch.trace(single - joint)) > 0
    prior_gap = torch.linalg.eigvalsh(cov - joint)
    assert float(prior_gap.min()) > -1e-12


def test_pigdm_on_the_fused_link_samples_the_exact_joint_posterior():
    batch, steps, std = 2000, 400, 0.08
    x, _, obs = two_agents(seed=3, batch=batch)
    link, rx = fuse(obs)
    mean = (0.5 + 0.0 * x.flatten()).double()
    prior = IsotropicPrior(mean, std)
    res = pigdm_receiver(link, rx, prior, steps=steps, eta=1.0, sigma_data=2 * std,
                         generator=torch.Generator().manual_seed(7))
    a, y, noise = stacked_system(obs)
    post_mean, post_cov = gaussian_posterior(a, y, noise, mean, std ** 2)
    v = res.x_hat.flatten(1).double()
    d = v.mean(0) - post_mean
    hotelling = float(batch * d @ torch.linalg.solve(post_cov, d))
    assert hotelling < chi2.ppf(1 - 1e-4, N), hotelling
    lam, u = torch.linalg.eigh(post_cov)
    ratios = torch.einsum("ij,ik,kj->j", u, torch.cov(v.T), u) / lam
    bound = 4.5 * math.sqrt(2 / (batch - 1))
    assert float(ratios.min()) > 0.95 - bound and float(ratios.max()) < 1.0 + bound, ratios


def test_two_views_beat_either_alone_for_the_exact_posterior_mean():
    """On many images drawn from the prior, the joint posterior mean has a lower MSE than either single view's."""
    gen = torch.Generator().manual_seed(5)
    std, n_img = 0.08, 400
    x = (0.5 + std * torch.randn(n_img, *SHAPE, generator=gen)).clamp(0, 1)
    links = [make_link("gaussian", SHAPE, "1/4", "awgn", 10.0, seed=11),
             make_link("gaussian", SHAPE, "1/4", "awgn", 5.0, seed=12)]
    obs = [observation(link, link.transmit(x, generator=gen)) for link in links]
    mean = torch.full((N,), 0.5, dtype=F64)

    def mse(group):
        link, rx = fuse(group)
        m, _ = gaussian_posterior(link.matrix(rx).double(), complex_to_real(rx.y).double(), rx.n0 / 2, mean,
                                  std ** 2)
        return float((m - x.flatten(1).double()).pow(2).mean())
    assert mse(obs) < min(mse(obs[:1]), mse(obs[1:]))


def test_pixel_observation_noise_and_rows():
    x = torch.rand(3, *SHAPE)
    mask = torch.zeros(SHAPE, dtype=torch.bool)
    mask[..., :2] = True
    o = pixel_observation(x, mask, 1e-3, torch.Generator().manual_seed(0))
    assert o.k == 4 and o.n0 == pytest.approx(2e-6)
    got = complex_to_real(o.y)
    torch.testing.assert_close(got, x.flatten(1)[:, mask.flatten()], atol=5e-3, rtol=0)


def test_bad_inputs_get_one_line_errors():
    with pytest.raises(DiffcommError, match="no observation"):
        fuse([])
    x = torch.rand(1, *SHAPE)
    with pytest.raises(DiffcommError, match="selects no pixel"):
        pixel_observation(x, torch.zeros(SHAPE, dtype=torch.bool), 0.01)
    with pytest.raises(DiffcommError, match="noise_std"):
        pixel_observation(x, torch.ones(SHAPE, dtype=torch.bool), 0.0)
    jscc = make_link("gaussian", SHAPE, "1/4", snr_db=10.0)
    rx = jscc.transmit(x)
    other = make_link("gaussian", (1, 8, 8), "1/4", snr_db=10.0)
    with pytest.raises(DiffcommError, match="disagree"):
        fuse([observation(jscc, rx), observation(other, other.transmit(torch.rand(1, 1, 8, 8)))])
