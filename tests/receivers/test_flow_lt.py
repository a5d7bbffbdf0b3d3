"""flow_lt (Land-then-Transport): exact answers with a Gaussian prior, the derived start level, NFE, bad options.

The known-answer case: ``downsample`` at CBR 1/2 on 1×4×4 images is a scaled identity (8 complex
symbols = 16 reals = n), so with AWGN the zero-forcing estimate is x0 + white noise of exactly the
derived level σ̂ (all singular values equal, no null space). Then, with the exact Gaussian denoiser,

* one Euler step returns D(x̂; σ̂) = E[x0 | x̂] = E[x0 | y], the exact posterior mean;
* many Heun steps approach the exact probability-flow transport of x̂ from σ̂ to 0
  (:meth:`GaussianDenoiser.ode_flow`), which is *not* the posterior mean: it pushes the noisy law
  onto the prior (z_k · sqrt(λ_k/(λ_k + σ̂²)) against the mean's z_k · λ_k/(λ_k + σ̂²)).
"""

import math

import pytest
import torch

from diffcomm.errors import DiffcommError
from diffcomm.link import Link
from diffcomm.receivers.fidelity import JSCC_ERROR_GAIN, JSCC_FLOOR, SIGMA_DATA, DataTerm
from diffcomm.receivers.flow_lt import flow_lt_receiver, start_grid

from .gaussian_case import GaussianPrior, SquareEncoder, make_case, prior_moments, receiver_matrix_f64, small_setup

torch.set_num_threads(1)
F64 = torch.float64


def identity_case(snr_db: float = 10.0):
    return make_case(encoder="downsample", cbr="1/2", channel="awgn", snr_db=snr_db, batch=4, isotropic=False)


def test_one_euler_step_is_the_exact_posterior_mean():
    case = identity_case()
    res = flow_lt_receiver(case.link, case.rx, case.prior, steps=1, renoise=0.0, dc=0.0, start_scale=1.0)
    assert res.nfe == 1
    torch.testing.assert_close(res.x_hat[0].flatten().double(), case.post_mean, rtol=0, atol=2e-5)


@pytest.mark.parametrize("snr_db", [0.0, 10.0])
def test_many_heun_steps_approach_the_exact_ode_transport(snr_db):
    case = identity_case(snr_db)
    term = DataTerm(case.link, case.rx, case.prior)
    x_hat, sigma = term.estimate()
    want = case.prior.to_pixels(case.prior.denoiser.ode_flow(x_hat.double(), float(sigma[0]), 0.0))
    errors = []
    for steps in (4, 32):
        res = flow_lt_receiver(case.link, case.rx, case.prior, steps=steps, sampler="heun", renoise=0.0, dc=0.0,
                               start_scale=1.0)
        assert res.nfe == 2 * steps - 1
        errors.append(float((res.x_hat.double() - want).abs().max()))
    assert errors[1] < 3e-3 and errors[1] < errors[0] / 10, errors
    # the transport is not the posterior mean
    assert float((want[0].flatten() - case.post_mean).abs().max()) > 10 * errors[1]


@pytest.mark.parametrize("encoder,cbr,channel", [("gaussian", "1/4", "awgn"), ("gaussian", "1/4", "rayleigh"),
                                                 ("downsample", "1/4", "rayleigh")])
def test_start_level_is_the_closed_form_pinv_error(encoder, cbr, channel):
    """σ̂² = [Σ σ_y²/s_i² + (n − r) σ_d²]/n in model space, from torch.linalg.pinv of the receiver's matrix;
    the start is σ* = c σ̂ sqrt(1 + ν² (n − r)/n) and x̂ = 2 A⁺y − 1 + P_N·1 (model-space pinv)."""
    link, rx, prior, _ = small_setup(batch=3, channel=channel, encoder=encoder, cbr=cbr)
    m = receiver_matrix_f64(link, rx)
    pinv = torch.linalg.pinv(m)
    r = torch.linalg.matrix_rank(m).double()
    n = link.n
    want = ((rx.n0 / 2 * 4 * pinv.pow(2).sum((1, 2)) + (n - r) * SIGMA_DATA ** 2) / n).sqrt()
    x_hat, sigma = DataTerm(link, rx, prior).estimate()
    torch.testing.assert_close(sigma, want, rtol=1e-6, atol=0)
    res = flow_lt_receiver(link, rx, prior, steps=2, start_scale=1.5, renoise=1.0)
    frac = (n - r) / n
    torch.testing.assert_close(torch.tensor(res.extras["sigma_start"], dtype=F64),
                               1.5 * want * (1 + frac).sqrt(), rtol=1e-6, atol=0)
    from diffcomm.channels import complex_to_real
    y = complex_to_real(rx.y).double()
    null_one = (torch.eye(n, dtype=F64) - pinv @ m) @ torch.ones(n, dtype=F64)
    want_x = 2 * (pinv @ y[..., None])[..., 0] - 1 + null_one
    torch.testing.assert_close(x_hat.double().flatten(1), want_x, rtol=0, atol=1e-5)


def test_jscc_level_follows_the_symbol_error_of_the_equaliser():
    from diffcomm import zoo
    from diffcomm.data import get_dataset
    from diffcomm.pipeline import build_link

    x = get_dataset("fashion-mnist", "train").images[-2:]
    for channel, snr in [("awgn", 10.0), ("rayleigh", 0.0)]:
        link = build_link("deepjscc", (1, 28, 28), "1/16", channel, snr)
        rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
        term = DataTerm(link, rx, zoo.load("fmnist-prior"))
        n0 = max(rx.n0, 10 ** -2.5 * float(rx.h_hat.abs().pow(2).mean()))
        h2 = rx.h_hat.abs().double() ** 2
        eps2 = (n0 / (h2 + n0)).mean(1)
        torch.testing.assert_close(term.estimate()[1], (JSCC_FLOOR ** 2 + JSCC_ERROR_GAIN ** 2 * eps2).sqrt(),
                                   rtol=1e-4, atol=0)


def test_grid_ends_at_the_flow_time_midpoint_and_counts_steps():
    start = torch.tensor([1.0, 0.3], dtype=F64)
    grid = start_grid(2, start, 0.002)
    t = start / (1 + start)
    torch.testing.assert_close(grid[:, 1], (t / 2) / (1 - t / 2), rtol=1e-9, atol=0)
    assert grid.shape == (2, 3) and (grid[:, -1] == 0).all()
    assert start_grid(1, start, 0.002).shape == (2, 2)


def test_data_consistency_lowers_the_residual_and_costs_no_evaluations():
    link, rx, prior, _ = small_setup(batch=8, snr_db=20.0)
    term = DataTerm(link, rx, prior)
    out = {}
    for dc in (0.0, 1.0):
        res = flow_lt_receiver(link, rx, prior, steps=3, dc=dc, generator=torch.Generator().manual_seed(0))
        assert res.nfe == 3
        out[dc] = term.residual(prior.to_model(res.x_hat)).mean()
    assert out[1.0] < out[0.0]


@pytest.mark.parametrize("options", [{"steps": 0}, {"sampler": "rk4"}, {"start_scale": 0.0}, {"renoise": -1.0},
                                     {"dc": math.nan}, {"eta": 2.0}])
def test_bad_options_raise_one_line(options):
    link, rx, prior, _ = small_setup(batch=2)
    with pytest.raises(DiffcommError, match="flow_lt") as err:
        flow_lt_receiver(link, rx, prior, **options)
    assert "\n" not in str(err.value)


def test_nonlinear_link_without_a_decoder_is_refused():
    link, rx, prior, x = small_setup(batch=2)
    nonlinear = Link(SquareEncoder(), "awgn", 10.0)
    with pytest.raises(DiffcommError) as err:
        flow_lt_receiver(nonlinear, nonlinear.transmit(x), GaussianPrior(*prior_moments()))
    assert "\n" not in str(err.value) and "DeepJSCC" in str(err.value)
