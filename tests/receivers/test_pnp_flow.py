"""PnP-Flow: its schedule and NFE, the gradient and interpolation steps against closed forms, bad options.

Known answer: on a scaled-identity link (``downsample`` at CBR 1/2 on 1×4×4, AWGN) one full gradient
step (γ = 1, α = 0, step 1/L) from any x lands on the zero-forcing solution A⁺y, so every denoiser
input is A⁺y + σ_n ε: over 2000 replicated frames its mean is A⁺y (to 5 standard errors) and its
per-pixel variance σ_n² (the interpolation z̃ = (1 − t) z + t ε divided by 1 − t).
"""

import math

import pytest
import torch

from diffcomm.errors import DiffcommError
from diffcomm.receivers.fidelity import DataTerm
from diffcomm.receivers.pnp_flow import pnp_flow_receiver, pnp_flow_times

from .gaussian_case import GaussianPrior, make_case, prior_moments, small_setup

torch.set_num_threads(1)


class Recorder(GaussianPrior):
    """Gaussian prior that records the (x, σ) of every call."""

    def __init__(self, mean, cov):
        super().__init__(mean, cov)
        self.seen = []

    def __call__(self, x, sigma, class_labels=None):
        self.seen.append((x.detach().clone(), torch.as_tensor(sigma).detach().clone()))
        return super().__call__(x, sigma, class_labels)


def test_times_and_levels_follow_the_paper_grid():
    assert pnp_flow_times(4, 1.0) == [1.0, 0.75, 0.5, 0.25]
    link, rx, _, _ = small_setup(batch=2)
    prior = Recorder(*prior_moments())
    res = pnp_flow_receiver(link, rx, prior, steps=4, t_start=1.0, generator=torch.Generator().manual_seed(0))
    assert res.nfe == 4 == len(prior.seen)
    levels = [float(s[0]) for _, s in prior.seen]
    assert levels[0] == prior.sigma_max                       # t = 1: pure noise, clamped to σ_max
    assert levels[1:] == pytest.approx([0.75 / 0.25, 0.5 / 0.5, 0.25 / 0.75], rel=1e-6)


def test_full_gradient_step_then_interpolation_on_a_scaled_identity():
    case = make_case(encoder="downsample", cbr="1/2", channel="awgn", snr_db=10.0, batch=2000)
    prior = Recorder(case.prior.mean_pix, case.prior.cov_pix)
    pnp_flow_receiver(case.link, case.rx, prior, steps=3, gamma=1.0, alpha=0.0, t_start=0.9,
                      generator=torch.Generator().manual_seed(0))
    zf = prior.to_model(case.link.operator(case.rx).pinv(case.rx.y)[:1]).double().flatten()   # no null space
    for x_in, sigma in prior.seen:
        v = x_in.double().flatten(1)
        s = float(sigma[0])
        se = s / math.sqrt(v.shape[0])
        assert float((v.mean(0) - zf).abs().max()) < 5 * se
        ratio = v.var(0) / s ** 2
        assert float((ratio - 1).abs().max()) < 5 * math.sqrt(2 / (v.shape[0] - 1))


def test_gradient_steps_lower_the_data_residual():
    link, rx, prior, _ = small_setup(batch=8, snr_db=20.0)
    term = DataTerm(link, rx, prior)
    out = {}
    for gamma in (1e-6, 1.0):
        res = pnp_flow_receiver(link, rx, prior, steps=4, gamma=gamma, generator=torch.Generator().manual_seed(0))
        out[gamma] = term.residual(prior.to_model(res.x_hat)).mean()
    assert out[1.0] < out[1e-6]


@pytest.mark.parametrize("options", [{"steps": 0}, {"gamma": 0.0}, {"gamma": 3.0}, {"alpha": -0.1},
                                     {"t_start": 0.0}, {"t_start": 1.5}, {"t_start": math.inf}])
def test_bad_options_raise_one_line(options):
    link, rx, prior, _ = small_setup(batch=2)
    with pytest.raises(DiffcommError, match="pnp_flow") as err:
        pnp_flow_receiver(link, rx, prior, **options)
    assert "\n" not in str(err.value)
