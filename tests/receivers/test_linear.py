"""Exact linear receivers: Gaussian posterior (two independent formulas), pseudo-inverse identities at 40 dB."""

import math

import pytest
import torch
import torch.nn.functional as F

from diffcomm.channels import complex_to_real, make_channel
from diffcomm.errors import DiffcommError
from diffcomm.link import Link, make_link
from diffcomm.receivers.linear import (
    GaussianPrior,
    fit_gaussian_prior,
    gaussian_posterior,
    lmmse_estimate,
    lmmse_receiver,
    pinv_estimate,
    pinv_receiver,
)
from diffcomm.transmit import make_encoder


def test_gaussian_posterior_scalar_closed_form():
    # x ~ N(1, 4), y = 3x + n, n ~ N(0, 2): posterior precision 1/4 + 9/2, mean (1/4 + 3 y / 2) / precision
    y = torch.tensor([5.0], dtype=torch.float64)
    m, c = gaussian_posterior(torch.tensor([[3.0]], dtype=torch.float64), y, 2.0,
                              torch.tensor([1.0], dtype=torch.float64), 4.0)
    prec = 1 / 4 + 9 / 2
    assert float(c) == pytest.approx(1 / prec) and float(m) == pytest.approx((1 / 4 + 3 * 5 / 2) / prec)


@pytest.mark.parametrize("m,n", [(3, 7), (9, 4)])
def test_gaussian_posterior_matches_information_form(m, n):
    g = torch.Generator().manual_seed(m)
    a = torch.randn(2, m, n, generator=g, dtype=torch.float64)
    l = torch.randn(n, n, generator=g, dtype=torch.float64)
    cov = l @ l.T + 0.1 * torch.eye(n, dtype=torch.float64)
    mean = torch.randn(n, generator=g, dtype=torch.float64)
    r = torch.rand(m, generator=g, dtype=torch.float64) + 0.05
    y = torch.randn(2, m, generator=g, dtype=torch.float64)
    pm, pc = gaussian_posterior(a, y, r, mean, cov)
    # information form: Cov = (Σ^-1 + Aᵀ R^-1 A)^-1, mean = Cov (Σ^-1 μ + Aᵀ R^-1 y)
    prec = torch.linalg.inv(cov) + a.transpose(1, 2) @ (a / r[:, None])
    cov_ref = torch.linalg.inv(prec)
    mean_ref = (cov_ref @ (torch.linalg.solve(cov, mean) + (a.transpose(1, 2) @ (y / r)[..., None]).squeeze(-1)
                           )[..., None]).squeeze(-1)
    assert torch.allclose(pc, cov_ref, atol=1e-8) and torch.allclose(pm, mean_ref, atol=1e-8)


def test_gaussian_posterior_is_calibrated_monte_carlo():
    # draw (x, y) from the model; the standardised posterior error must be N(0, 1)
    g = torch.Generator().manual_seed(0)
    n, m, draws = 5, 3, 20000
    a = torch.randn(m, n, generator=g, dtype=torch.float64)
    x = torch.randn(draws, n, generator=g, dtype=torch.float64) * 0.7 + 0.2
    y = x @ a.T + 0.3 * torch.randn(draws, m, generator=g, dtype=torch.float64)
    pm, pc = gaussian_posterior(a, y, 0.09, torch.full((n,), 0.2, dtype=torch.float64), 0.49)
    z = (x - pm)[:, 0] / pc[0, 0].sqrt()
    assert abs(float(z.var()) - 1) <= 5 * math.sqrt(2 / draws) and abs(float(z.mean())) <= 5 / math.sqrt(draws)


def test_gaussian_posterior_rejects():
    a = torch.eye(2)
    with pytest.raises(DiffcommError):
        gaussian_posterior(a, torch.zeros(2), 0.0, torch.zeros(2), 1.0)
    with pytest.raises(DiffcommError):
        gaussian_posterior(a, torch.zeros(3), 1.0, torch.zeros(2), 1.0)
    with pytest.raises(DiffcommError):
        gaussian_posterior(a, torch.zeros(2), 1.0, torch.zeros(2), -torch.eye(2) * 5)


def expected_noise_energy(link, rx):
    """E||A^+ n||² and its standard deviation per image, from the singular values of A (n ~ N(0, N0/2 I))."""
    s = torch.linalg.svdvals(link.matrix(rx).double())
    inv2 = s.pow(-2)
    var = rx.n0 / 2
    return (var * inv2.sum(1)), (math.sqrt(2) * var * inv2.pow(2).sum(1).sqrt())


@pytest.mark.parametrize("channel", ["awgn", "rayleigh"])
def test_pinv_gaussian_recovers_row_space_projection(channel):
    shape = (1, 16, 16)
    link = make_link("gaussian", shape, "1/16", channel=make_channel(channel, block=False) if channel != "awgn"
                     else channel, snr_db=40.0)
    x = torch.rand(64, *shape, generator=torch.Generator().manual_seed(0))
    rx = link.transmit(x, generator=torch.Generator().manual_seed(1))
    e, ep = link.encoder.matrix.double(), link.encoder.pinv_matrix
    proj = (x.flatten(1).double() @ (ep @ e).T).reshape(x.shape)           # P^+ P x
    # noiseless: A^+ A x is exactly the projection
    assert torch.allclose(link.pinv(link.forward(x, rx), rx).double(), proj, atol=1e-4)
    # noisy: x̂ − P^+Px = A^+ n, exactly, and its energy matches (N0/2) ||A^+||_F² within 5 s.e.
    x_hat = link.pinv(rx.y, rx).double()
    noise_part = link.pinv(rx.y - link.forward(x, rx), rx).double()
    assert torch.allclose(x_hat - proj, noise_part, atol=1e-4)
    err = (x_hat - proj).pow(2).flatten(1).sum(1)
    mean, std = expected_noise_energy(link, rx)
    assert within_batch(err, mean, std)
    # the clamped receiver is at least as close to the clamped projection
    res = pinv_receiver(link, rx)
    assert torch.equal(res.x_hat, pinv_estimate(link, rx)) and res.nfe == 0
    clamped_err = (res.x_hat.double() - proj.clamp(0, 1)).pow(2).flatten(1).sum(1)
    assert (clamped_err <= err + 1e-6).all()


def within_batch(err, mean, std):
    total, se = float(err.sum()), float(std.pow(2).sum().sqrt())
    return abs(total - float(mean.sum())) <= 5 * se


def test_pinv_downsample_recovers_upsampled_average():
    shape = (1, 28, 28)
    link = make_link("downsample", shape, "1/8", channel="rician", snr_db=40.0)   # 14x14 grid
    x = torch.rand(16, *shape, generator=torch.Generator().manual_seed(2))
    rx = link.transmit(x, generator=torch.Generator().manual_seed(3))
    up = F.avg_pool2d(x, 2).repeat_interleave(2, 2).repeat_interleave(2, 3).double()
    assert torch.allclose(link.pinv(link.forward(x, rx), rx).double(), up, atol=1e-5)
    err = (link.pinv(rx.y, rx).double() - up).pow(2).flatten(1).sum(1)
    mean, std = expected_noise_energy(link, rx)
    assert within_batch(err, mean, std)
    assert float(err.mean()) / 784 < 1e-4   # at 40 dB the reconstruction error is tiny per pixel


@pytest.mark.parametrize("name", ["gaussian", "downsample"])
def test_link_matrix_pinv_identities_and_fast_path(name):
    shape = (1, 8, 8)
    link = make_link(name, shape, "1/8", channel=make_channel("rayleigh", block=False), snr_db=20.0)
    rx = link.transmit(torch.rand(3, *shape, generator=torch.Generator().manual_seed(4)),
                       generator=torch.Generator().manual_seed(5))
    a = link.matrix(rx).double()
    a_pinv = torch.linalg.pinv(a)
    eye = torch.eye(2 * link.k, dtype=torch.float64).expand(3, -1, -1)
    assert torch.allclose(a @ a_pinv, eye, atol=1e-8)                          # A A^+ = I on the range
    ref = (a_pinv @ complex_to_real(rx.y).double()[..., None]).squeeze(-1)
    assert torch.allclose(link.pinv(rx.y, rx).double().flatten(1), ref, atol=1e-5)  # O(kn) path == SVD pinv


def test_pinv_overcomplete_gaussian_inverts_exactly():
    shape = (1, 6, 6)
    link = make_link("gaussian", shape, "1", channel="rayleigh", snr_db=30.0)    # 2k = 2n: tall matrix
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(6))
    rx = link.transmit(x, generator=torch.Generator().manual_seed(7))
    assert not link.encoder.full_row_rank
    assert torch.allclose(link.pinv(link.forward(x, rx), rx), x, atol=1e-4)


def test_pinv_with_explicit_h_for_blind_link():
    shape = (1, 8, 8)
    link = make_link("gaussian", shape, "1/4", channel="rayleigh", csi="none", snr_db=30.0)
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(8))
    rx, truth = link.transmit(x, generator=torch.Generator().manual_seed(9), return_truth=True)
    with pytest.raises(DiffcommError, match="needs CSI"):
        pinv_receiver(link, rx)
    with pytest.raises(DiffcommError, match="h="):
        pinv_estimate(link, rx)
    e, ep = link.encoder.matrix.double(), link.encoder.pinv_matrix
    proj = (x.flatten(1).double() @ (ep @ e).T).reshape(x.shape)
    h = truth.h
    assert torch.allclose(link.pinv(link.forward(x, rx, h=h), rx, h=h).double(), proj, atol=1e-4)
    wrong_h = torch.ones_like(h)          # a wrong channel guess gives a different (wrong) answer
    assert not torch.allclose(link.pinv(rx.y, rx, h=wrong_h).double(), proj, atol=1e-2)
    assert pinv_estimate(link, rx, h=h).shape == x.shape


def smooth_images(n: int, seed: int) -> torch.Tensor:
    """Low-dimensional smooth images in [0, 1]: a Gaussian-ish source where a prior helps."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 3, 3, generator=g)
    return F.interpolate(coarse, size=(8, 8), mode="bilinear", align_corners=True).clamp(0, 1)


def test_lmmse_receiver_is_the_gaussian_posterior_and_beats_pinv():
    link = make_link("gaussian", (1, 8, 8), "1/8", channel="rayleigh", snr_db=10.0)
    train, test = smooth_images(4000, 0), smooth_images(200, 1)
    rx = link.transmit(test, generator=torch.Generator().manual_seed(2))
    mean, cov = fit_gaussian_prior(train)
    x_hat = lmmse_estimate(link, rx, mean, cov)
    assert torch.equal(x_hat, lmmse_estimate(link, rx, data=train))
    # the registered receiver: a GaussianPrior, or training images it fits one to (same default shrinkage)
    assert torch.equal(lmmse_receiver(link, rx, GaussianPrior(mean, cov)).x_hat, x_hat)
    assert torch.equal(lmmse_receiver(link, rx, train).x_hat, x_hat)
    pm, _ = gaussian_posterior(link.matrix(rx).double(), complex_to_real(rx.y).double(), rx.n0 / 2, mean, cov)
    assert torch.allclose(x_hat, pm.float().reshape(test.shape).clamp(0, 1), atol=1e-5)
    mse_lmmse = float((x_hat - test).pow(2).mean())
    mse_pinv = float((pinv_receiver(link, rx).x_hat - test).pow(2).mean())
    assert mse_lmmse < 0.5 * mse_pinv, (mse_lmmse, mse_pinv)


def test_fit_gaussian_prior():
    x = torch.rand(5000, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    mean, cov = fit_gaussian_prior(x, shrinkage=0.0)
    assert torch.allclose(mean, torch.full((4,), 0.5, dtype=torch.float64), atol=5 * math.sqrt(1 / 12 / 5000))
    assert torch.allclose(cov, torch.eye(4, dtype=torch.float64) / 12, atol=5 * math.sqrt(2 / 5000) / 12)


def test_lmmse_receiver_rejects():
    link = make_link("gaussian", (1, 8, 8), "1/8")
    rx = link.transmit(torch.rand(2, 1, 8, 8))
    with pytest.raises(DiffcommError, match="data="):
        lmmse_estimate(link, rx)
    with pytest.raises(DiffcommError, match="prior must be a GaussianPrior"):
        lmmse_receiver(link, rx, None)
    with pytest.raises(DiffcommError):
        lmmse_estimate(link, rx, torch.zeros(10), 1.0)
    with pytest.raises(DiffcommError):
        lmmse_receiver(link, rx, GaussianPrior(torch.zeros(10), 1.0))
    with pytest.raises(DiffcommError, match="option shrinkage must be"):
        lmmse_receiver(link, rx, torch.rand(10, 1, 8, 8), shrinkage=2.0)
    with pytest.raises(DiffcommError):
        fit_gaussian_prior(torch.rand(1, 1, 8, 8))
    nonlin = Link(make_encoder("gaussian", (1, 8, 8), "1/8"), "awgn", 10.0)
    nonlin.encoder.is_linear = False
    with pytest.raises(DiffcommError):
        lmmse_estimate(nonlin, rx, torch.zeros(64), 1.0)
    with pytest.raises(DiffcommError, match="needs a linear link"):
        lmmse_receiver(nonlin, rx, GaussianPrior(torch.zeros(64), 1.0))
