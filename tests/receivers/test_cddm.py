"""CDDM-style receiver: the start level equals the pseudo-inverse's effective noise, start state, NFE, bad inputs."""

import pytest
import torch

from diffcomm.errors import DiffcommError
from diffcomm.link import make_link
from diffcomm.receivers.cddm import cddm_receiver, cddm_start_sigma

from .gaussian_case import SHAPE, GaussianPrior, bad_inputs, prior_moments, receiver_matrix_f64, small_setup

torch.set_num_threads(1)

LINKS = [("gaussian", "1/4", "awgn", "perfect"), ("gaussian", "1/2", "rayleigh", "perfect"),
         ("downsample", "1/4", "rayleigh", "perfect"), ("gaussian", "1/4", "rayleigh", "estimated")]


def _link_rx(encoder, cbr, channel, csi, snr_db=10.0, batch=4):
    kw = {"n_pilots": 2} if csi == "estimated" else {}
    link = make_link(encoder, SHAPE, cbr, channel=channel, snr_db=snr_db, csi=csi, **kw)
    x = torch.rand(batch, *SHAPE, generator=torch.Generator().manual_seed(7)) * 0.8 + 0.1
    return link, link.transmit(x, generator=torch.Generator().manual_seed(8))


@pytest.mark.parametrize("encoder,cbr,channel,csi", LINKS)
def test_start_sigma_is_the_effective_noise_of_the_pinv_closed_form(encoder, cbr, channel, csi):
    """σ_eff² = (N0/2)·4·tr(A⁺A⁺ᵀ)/n with A⁺ from torch.linalg.pinv of the receiver-side matrix (ĥ, g)."""
    link, rx = _link_rx(encoder, cbr, channel, csi)
    m = receiver_matrix_f64(link, rx)
    torch.testing.assert_close(m.float(), link.matrix(rx), rtol=1e-6, atol=1e-7)   # the same matrix as the link's
    pinv = torch.linalg.pinv(m)
    want = (rx.n0 / 2 * 4 * pinv.pow(2).sum((1, 2)) / link.n).sqrt()
    torch.testing.assert_close(cddm_start_sigma(link, rx), want, rtol=1e-9, atol=0)


@pytest.mark.parametrize("encoder,cbr,channel,csi", LINKS[:3])
def test_start_sigma_matches_monte_carlo_of_the_pinv_noise(encoder, cbr, channel, csi):
    """Push R = 4000 draws of n ~ CN(0, N0) through link.pinv, map to model space (×2), average the
    per-pixel power: E[‖2A⁺n‖²/n] = σ_eff². Tolerance 5 standard errors of that sample mean."""
    link, rx = _link_rx(encoder, cbr, channel, csi)
    reps = 4000
    g = torch.Generator().manual_seed(9)
    b = rx.batch
    noise = torch.complex(torch.randn(reps, b, link.k, generator=g), torch.randn(reps, b, link.k, generator=g))
    noise = noise * (rx.n0 / 2) ** 0.5
    from diffcomm.link import Received

    big = Received(y=noise.reshape(-1, link.k), h_hat=rx.h_hat.repeat(reps, 1), n0=rx.n0,
                   gain=rx.gain.repeat(reps), pilots_used=rx.pilots_used)
    x = link.pinv(big.y, big).double().reshape(reps, b, -1) * 2
    q = x.pow(2).mean(-1)                                     # (reps, B): per-draw mean pixel power
    est, se = q.mean(0), q.std(0) / reps ** 0.5
    sigma2 = cddm_start_sigma(link, rx) ** 2
    assert ((est - sigma2).abs() < 5 * se).all(), (est, sigma2, se)


class Recorder(GaussianPrior):
    """Gaussian prior that records the (x, σ) of every call."""

    def __init__(self, mean, cov):
        super().__init__(mean, cov)
        self.seen = []

    def __call__(self, x, sigma, class_labels=None):
        self.seen.append((x.detach().clone(), torch.as_tensor(sigma).detach().clone()))
        return super().__call__(x, sigma, class_labels)


@pytest.mark.parametrize("sampler,steps,nfe", [("heun", 5, 9), ("euler", 5, 5), ("heun", 1, 1)])
def test_starts_at_the_model_space_pinv_and_sigma_eff(sampler, steps, nfe):
    """The first denoiser call sees x_start = A_m⁺ y_m = to_model(A⁺y) + P_N·1 at σ = σ_eff (per image);
    σ then decreases monotonically; NFE = 2·steps − 1 (Heun) or steps (Euler) and equals the calls."""
    link, rx = _link_rx("gaussian", "1/4", "rayleigh", "perfect")
    prior = Recorder(*prior_moments())
    res = cddm_receiver(link, rx, prior, steps=steps, sampler=sampler)
    assert res.nfe == nfe == len(prior.seen)
    x_first, s_first = prior.seen[0]
    sigma_eff = cddm_start_sigma(link, rx)
    torch.testing.assert_close(s_first.double(), sigma_eff, rtol=1e-6, atol=0)
    assert res.extras["start_sigma"] == pytest.approx(sigma_eff.tolist(), rel=1e-9)
    m = link.matrix(rx).double()
    proj_null = torch.eye(link.n, dtype=torch.float64) - torch.linalg.pinv(m) @ m
    want = 2 * link.pinv(rx.y, rx).double().flatten(1) - 1 + (proj_null @ torch.ones(link.n, dtype=torch.float64))
    torch.testing.assert_close(x_first.double().flatten(1), want, rtol=0, atol=1e-5)
    levels = torch.stack([s.double() for _, s in prior.seen])
    if sampler == "euler":
        assert (levels[1:] < levels[:-1]).all()


def test_null_noise_only_touches_the_null_space():
    """null_noise adds N(0, σ_eff²) in the null space of A only: M·(difference of start states) = 0, and the
    added power per null dimension is σ_eff² (checked over 4000 images to 5 standard errors)."""
    link, rx = _link_rx("gaussian", "1/4", "awgn", "perfect", batch=4000)
    plain, noisy = Recorder(*prior_moments()), Recorder(*prior_moments())
    cddm_receiver(link, rx, plain, steps=1)
    cddm_receiver(link, rx, noisy, steps=1, null_noise=True, generator=torch.Generator().manual_seed(0))
    diff = (noisy.seen[0][0] - plain.seen[0][0]).double().flatten(1)
    m = link.matrix(rx).double()
    assert float((m @ diff[..., None]).abs().max()) < 1e-4
    per_dim = diff.pow(2).sum(1) / (link.n - 2 * link.k) / cddm_start_sigma(link, rx) ** 2
    assert abs(float(per_dim.mean()) - 1) < 5 * float(per_dim.std()) / 4000 ** 0.5


def test_tiny_noise_returns_the_pinv():
    """At 80 dB on a square, well-conditioned operator (downsample at CBR 1/2 is a scaled identity) the start
    level is below the prior's σ_min and the output is the pseudo-inverse to within 1e-3."""
    link, rx = _link_rx("downsample", "1/2", "awgn", "perfect", snr_db=80.0)
    res = cddm_receiver(link, rx, GaussianPrior(*prior_moments()), steps=3)
    assert float(cddm_start_sigma(link, rx).max()) < 0.002
    torch.testing.assert_close(res.x_hat, link.pinv(rx.y, rx).clamp(0, 1), rtol=0, atol=1e-3)


@pytest.mark.parametrize("label,link,rx", bad_inputs(), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_received_signal_raises_one_line(label, link, rx):
    for call in (lambda: cddm_receiver(link, rx, GaussianPrior(*prior_moments()), steps=2),
                 lambda: cddm_start_sigma(link, rx)):
        with pytest.raises(DiffcommError) as err:
            call()
        assert "\n" not in str(err.value) and str(err.value).startswith(("cddm", "receiver cddm "))
    if label == "nonlinear link":      # the registry's link check (ReceiverSpec.check_link) on the receiver call
        with pytest.raises(DiffcommError, match="^receiver cddm needs a linear link"):
            cddm_receiver(link, rx, GaussianPrior(*prior_moments()), steps=2)


@pytest.mark.parametrize("options", [{"steps": 0}, {"sampler": "rk4"}, {"null_noise": 1}, {"prior": 3}])
def test_bad_options_raise(options):
    link, rx, prior, _ = small_setup(batch=2)
    kwargs = {"steps": 2, **options}
    prior = kwargs.pop("prior", prior)
    with pytest.raises(DiffcommError, match="cddm"):
        cddm_receiver(link, rx, prior, **kwargs)
