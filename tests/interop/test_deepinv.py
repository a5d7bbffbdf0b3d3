"""deepinv adapter: conversions without deepinv; physics and denoiser round trips where deepinv is installed.

deepinv needs torchvision, which is not in the project's venv: the round trips run in a separate
environment (see diffcomm.interop.deepinv) and skip here.
"""

import importlib.util

import pytest
import torch

from diffcomm.channels.symbols import complex_to_real
from diffcomm.diffusion.precond import EDMDenoiser
from diffcomm.diffusion.unet import UNet
from diffcomm.errors import DiffcommError
from diffcomm.interop.deepinv import (
    ModelSpacePrior,
    PixelDenoiser,
    affine_of,
    link_adjoint,
    link_forward,
    link_pinv,
    measurement,
)
from diffcomm.link import make_link

HAS_DEEPINV = importlib.util.find_spec("deepinv") is not None


def tiny_prior(seed: int = 0) -> EDMDenoiser:
    torch.manual_seed(seed)
    net = UNet(in_channels=1, base_channels=8, channel_mults=(1, 2), attention_levels=(1,), emb_dim=16)
    with torch.no_grad():
        net.conv_out.weight.normal_(0, 0.1)
        net.conv_out.bias.normal_(0, 0.1)
    return EDMDenoiser(net).eval().requires_grad_(False)


def tiny_link(channel: str = "rayleigh", batch: int = 2):
    link = make_link("gaussian", (1, 8, 8), "1/4", channel, 10.0)
    rx = link.transmit(torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
                       generator=torch.Generator().manual_seed(1))
    return link, rx


class _Recorder(torch.nn.Module):
    """A model-space 'prior' that records the σ it is called with and returns its input."""

    sigma_min, sigma_max = 0.002, 80.0

    def __init__(self):
        super().__init__()
        self.seen = None

    def forward(self, x, sigma, class_labels=None):
        self.seen = sigma
        return x

    @staticmethod
    def to_model(x):
        return 2 * x - 1

    @staticmethod
    def to_pixels(x):
        return (x + 1) / 2


def test_pixel_sigma_maps_to_model_sigma_times_the_scale():
    rec = _Recorder()
    assert affine_of(rec) == (2.0, -1.0)
    x = torch.rand(3, 1, 4, 4)
    out = PixelDenoiser(rec)(x, 0.1)
    torch.testing.assert_close(out, x)
    torch.testing.assert_close(rec.seen, torch.full((3,), 0.2))
    seen = []
    back = ModelSpacePrior(lambda x, s: seen.append(s) or x, sigma_min=0.01, sigma_max=5.0)
    back(torch.zeros(2, 1, 4, 4), torch.tensor([0.4, 2.0]))
    torch.testing.assert_close(seen[0], torch.tensor([0.2, 1.0]))


def test_our_prior_to_pixel_denoiser_and_back_gives_the_same_x0():
    prior = tiny_prior()
    back = ModelSpacePrior(PixelDenoiser(prior), sigma_min=prior.sigma_min, sigma_max=prior.sigma_max)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    for sigma in (0.01, 1.0, torch.tensor([0.3, 30.0])):
        torch.testing.assert_close(back(x, sigma), prior(x, sigma), atol=2e-6, rtol=1e-5)
    assert back.to_model(torch.tensor([0.0, 1.0])).tolist() == [-1.0, 1.0]
    with pytest.raises(DiffcommError, match="unconditional"):
        back(x, 1.0, torch.tensor([0, 1]))
    with pytest.raises(DiffcommError, match="sigma_min"):
        ModelSpacePrior(PixelDenoiser(prior), sigma_min=1.0, sigma_max=0.5)


@pytest.mark.parametrize("channel", ["awgn", "rayleigh"])
def test_link_helpers_are_adjoint_and_pinv_inverts(channel):
    link, rx = tiny_link(channel)
    op = link.operator(rx)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    v = torch.randn(2, 2 * link.k, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    ax = link_forward(op, x.float()).double()
    torch.testing.assert_close(ax, complex_to_real(op(x.float())).double())
    lhs = (ax * v).sum(1)
    rhs = (x * link_adjoint(op, v)).flatten(1).sum(1)
    torch.testing.assert_close(lhs, rhs, rtol=1e-5, atol=1e-5)
    # A A⁺ A x = A x (exact pseudo-inverse on the range)
    torch.testing.assert_close(link_forward(op, link_pinv(op, ax.float())), ax.float(), rtol=1e-4, atol=1e-4)
    y = measurement(rx)
    assert y.shape == (2, 2 * link.k) and y.dtype == torch.float32


@pytest.mark.skipif(HAS_DEEPINV, reason="deepinv is installed")
def test_builders_say_how_to_install_deepinv():
    from diffcomm.interop.deepinv import link_physics, to_deepinv_denoiser

    link, rx = tiny_link()
    with pytest.raises(DiffcommError, match="deepinv is not installed"):
        link_physics(link, rx)
    with pytest.raises(DiffcommError, match="torchvision"):
        to_deepinv_denoiser(tiny_prior())


# --- with deepinv (its own environment) --------------------------------------------------------


def test_link_as_deepinv_physics_same_a_adjoint_and_dagger():
    pytest.importorskip("deepinv")
    from diffcomm.interop.deepinv import link_physics

    link, rx = tiny_link("rayleigh")
    op = link.operator(rx)
    physics = link_physics(link, rx)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(physics.A(x), complex_to_real(op(x)))
    y = measurement(rx)
    lhs = (physics.A(x).double() * y.double()).sum()
    rhs = (x.double() * physics.A_adjoint(y).double()).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-5, atol=1e-5)
    assert float(physics.adjointness_test(x, num_samples=2)) < 1e-5   # one operator row per received image
    torch.testing.assert_close(physics.A_dagger(y), op.pinv(rx.y))
    assert physics.noise_model.sigma.item() == pytest.approx((rx.n0 / 2) ** 0.5, rel=1e-6)


def test_our_prior_through_deepinv_denoiser_and_back():
    pytest.importorskip("deepinv")
    import deepinv

    from diffcomm.interop.deepinv import from_deepinv_denoiser, to_deepinv_denoiser

    prior = tiny_prior()
    den = to_deepinv_denoiser(prior)
    assert isinstance(den, deepinv.models.Denoiser)
    back = from_deepinv_denoiser(den, sigma_min=prior.sigma_min, sigma_max=prior.sigma_max)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(8))
    for sigma in (0.02, 0.8, torch.tensor([0.1, 10.0])):
        torch.testing.assert_close(back(x, sigma), prior(x, sigma), atol=2e-6, rtol=1e-5)


def test_a_deepinv_denoiser_as_our_prior_runs_dps():
    pytest.importorskip("deepinv")
    import deepinv

    from diffcomm.interop.deepinv import from_deepinv_denoiser
    from diffcomm.pipeline import decode

    torch.manual_seed(0)
    drunet = deepinv.models.DRUNet(in_channels=1, out_channels=1, nc=(8, 8, 8, 8), nb=1, pretrained=None).eval()
    prior = from_deepinv_denoiser(drunet, sigma_min=0.01, sigma_max=2.0)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        torch.testing.assert_close(prior(prior.to_model(x), 0.4), prior.to_model(drunet(x, 0.2)))
    link, rx = tiny_link("awgn")
    res = decode("dps", link, rx, prior=prior, generator=torch.Generator().manual_seed(2), steps=3)
    assert res.x_hat.shape == (2, 1, 8, 8) and torch.isfinite(res.x_hat).all() and res.nfe == 3


def test_pixel_denoiser_is_finite_at_sigma_zero():
    """deepinv's DDRM ends at σ = 0: the adapter raises σ to the prior's smallest level instead of dividing by 0."""
    from diffcomm import zoo
    from diffcomm.interop.deepinv import PixelDenoiser

    d = PixelDenoiser(zoo.load("fmnist-prior"))
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    out = d(x, 0.0)
    assert torch.isfinite(out).all() and (out - x).abs().max() < 0.05
