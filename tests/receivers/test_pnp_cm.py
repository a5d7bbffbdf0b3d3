"""pnp_cm (PnP-ADMM with a consistency model): the exact Gaussian answer, the landed levels, NFE, options.

Known answer: ``downsample`` at CBR 1/2 on 1×4×4 images is a scaled identity, so with AWGN the
zero-forcing estimate is x0 + white noise of exactly the derived level σ̂. With the *exact*
consistency function of the Gaussian prior, f*(x, σ) = the probability-flow transport of x from σ to
σ_min, one step at c = 1, ν = 0 without a data step returns f*(x̂, σ̂)."""

import pytest
import torch

from diffcomm.errors import DiffcommError
from diffcomm.receivers.fidelity import DataTerm
from diffcomm.receivers.pnp_cm import landing_levels, pnp_cm_receiver

from .gaussian_case import GaussianPrior, make_case

torch.set_num_threads(1)
F64 = torch.float64


class ExactConsistency(GaussianPrior):
    """The Gaussian prior's exact consistency function f*(x, σ) = ODE transport from σ to σ_min."""

    def __call__(self, x, sigma, class_labels=None):
        self.calls += 1
        s = torch.as_tensor(sigma, dtype=F64).reshape(-1)
        return torch.cat([self.denoiser.ode_flow(x[i:i + 1].double(), float(s[i]), self.sigma_min)
                          for i in range(x.shape[0])]).to(x.dtype)


def identity_case(snr_db: float = 10.0):
    case = make_case(encoder="downsample", cbr="1/2", channel="awgn", snr_db=snr_db, batch=4, isotropic=False)
    return case, ExactConsistency(case.prior.mean_pix, case.prior.cov_pix)


def test_one_step_is_the_exact_consistency_map_of_the_landed_estimate():
    case, cm = identity_case()
    res = pnp_cm_receiver(case.link, case.rx, cm, steps=1, start_scale=1.0, renoise=0.0, dc=0.0)
    assert res.nfe == 1 and cm.calls == 1
    x_hat, sigma = DataTerm(case.link, case.rx, cm).estimate()
    want = torch.cat([cm.denoiser.ode_flow(x_hat[i:i + 1].double(), float(sigma[i]), cm.sigma_min)
                      for i in range(4)])
    torch.testing.assert_close(res.x_hat.double(), cm.to_pixels(want).clamp(0, 1), rtol=0, atol=1e-5)


def test_data_step_pulls_towards_the_measurement():
    """With the data step the result fits y better than the prior step alone (same seeds)."""
    case, cm = identity_case(0.0)
    term = DataTerm(case.link, case.rx, cm)
    fits = []
    for dc in (0.0, 1.0):
        res = pnp_cm_receiver(case.link, case.rx, cm, steps=3, dc=dc, generator=torch.Generator().manual_seed(0))
        fits.append(float(term.residual(cm.to_model(res.x_hat.double())).mean()))
    assert fits[1] < fits[0]


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_nfe_and_levels(steps):
    case, cm = identity_case()
    res = pnp_cm_receiver(case.link, case.rx, cm, steps=steps, generator=torch.Generator().manual_seed(0))
    assert res.nfe == steps and res.x_hat.shape == (4, 1, 4, 4)
    levels = landing_levels(steps, torch.tensor([2.0, 0.1], dtype=F64), 0.002)
    assert levels.shape == (2, steps) and torch.allclose(levels[:, 0], torch.tensor([2.0, 0.1], dtype=F64))
    assert (levels[:, 1:] < levels[:, :-1]).all() and (levels > 0.002).all()


def test_admm_and_hqs_differ_and_are_reproducible():
    case, cm = identity_case(5.0)
    runs = [pnp_cm_receiver(case.link, case.rx, cm, steps=3, admm=a, generator=torch.Generator().manual_seed(1)).x_hat
            for a in (True, True, False)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


@pytest.mark.parametrize("option, value", [("steps", 0), ("start_scale", 0.0), ("dc", -1.0), ("admm", 1)])
def test_bad_options_are_one_line_errors(option, value):
    case, cm = identity_case()
    with pytest.raises(DiffcommError, match=option) as exc:
        pnp_cm_receiver(case.link, case.rx, cm, **{option: value})
    assert "\n" not in str(exc.value)
