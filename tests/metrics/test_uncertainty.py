"""Posterior-sample uncertainty: the spread is the exact posterior std for a Gaussian prior on a linear link;
semantic agreement and AUROC against their definitions; replication of received frames."""

import math

import pytest
import torch

from diffcomm.channels import complex_to_real
from diffcomm.diffusion.gaussian import GaussianDenoiser
from diffcomm.errors import DiffcommError
from diffcomm.link import make_link
from diffcomm.metrics.uncertainty import (
    auroc,
    posterior_samples,
    replicate_received,
    semantic_agreement,
    uncertainty,
)
from diffcomm.receivers.linear import gaussian_posterior

SHAPE = (1, 4, 4)


class IsotropicPrior:
    """Model-space prior N(2m − 1, 4 std² I) for the pixel prior N(m, std² I) (x_m = 2x − 1)."""

    sigma_min, sigma_max = 0.002, 80.0

    def __init__(self, mean, std):
        self.denoiser = GaussianDenoiser(2 * mean - 1, 4 * std ** 2 * torch.eye(mean.numel(), dtype=torch.float64))

    def __call__(self, x, sigma, class_labels=None):
        return self.denoiser(x, sigma)

    @staticmethod
    def to_model(x):
        return 2 * x - 1

    @staticmethod
    def to_pixels(x):
        return (x + 1) / 2


def test_sample_spread_matches_the_exact_posterior_std_for_a_gaussian_prior():
    """ΠGDM with the matching σ_d is the exact posterior denoiser for an isotropic Gaussian prior, so with Heun
    (50 steps) its samples follow p(x | y) up to a measured ≤ 3 % variance discretisation error
    (tests/receivers/test_sampler_exactness.py). S = 2000 samples per image for 2 images: each per-pixel
    variance ratio spread² / Var[x_i | y] lies within 4.5 MC standard deviations (√(2/(S−1))) + 3 % of 1."""
    std, s = 0.08, 2000
    ii, jj = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    mean = (0.5 + 0.1 * (ii - 1.5) / 1.5 * (jj - 1.5) / 1.5).reshape(-1).double()
    prior = IsotropicPrior(mean, std)
    gen = torch.Generator().manual_seed(0)
    x = (mean + std * torch.randn(2, 16, generator=gen, dtype=torch.float64)).clamp(0, 1).float().reshape(2, *SHAPE)
    link = make_link("gaussian", SHAPE, "1/4", "rayleigh", 10.0)
    rx = link.transmit(x, generator=gen)
    _, post_cov = gaussian_posterior(link.matrix(rx).double(), complex_to_real(rx.y).double(), rx.n0 / 2, mean,
                                     std ** 2)
    samples, res = posterior_samples("pigdm", link, rx, prior, n_samples=s, generator=torch.Generator().manual_seed(1),
                                     steps=50, sampler="heun", sigma_data=2 * std)
    assert samples.shape == (2, s, *SHAPE) and res.nfe > 0
    u = uncertainty(samples)
    ratio = u.pixel_spread.flatten(1).double() ** 2 / torch.diagonal(post_cov, dim1=-2, dim2=-1)
    bound = 4.5 * math.sqrt(2 / (s - 1)) + 0.03
    assert ((ratio - 1).abs() < bound).all(), ratio
    assert torch.allclose(u.spread, u.pixel_spread.flatten(1).double().pow(2).mean(1).sqrt())


def test_replicate_received_repeats_each_frame():
    link = make_link("gaussian", SHAPE, "1/4", "rayleigh", 10.0, csi="estimated", n_pilots=2)
    rx = link.transmit(torch.rand(3, *SHAPE), generator=torch.Generator().manual_seed(0))
    big = replicate_received(rx, 4)
    assert big.batch == 12 and torch.equal(big.y[4:8], rx.y[1:2].expand(4, -1))
    assert torch.equal(big.h_hat[8], rx.h_hat[2]) and torch.equal(big.gain[:4], rx.gain[:1].expand(4))
    assert big.y_pilot.shape[0] == 12 and torch.equal(big.pilots, rx.pilots)
    with pytest.raises(DiffcommError, match="n_samples"):
        replicate_received(rx, 0)


def test_deterministic_receivers_have_no_spread_and_full_agreement():
    link = make_link("gaussian", SHAPE, "1/4", "rayleigh", 10.0)
    rx = link.transmit(torch.rand(2, *SHAPE), generator=torch.Generator().manual_seed(0))
    samples, _ = posterior_samples("pinv", link, rx, n_samples=3)

    class Brightness(torch.nn.Module):                        # a stand-in classifier: logits from the mean pixel
        def forward(self, v, return_features=False):
            logits = torch.stack([v.mean((1, 2, 3)), 1 - v.mean((1, 2, 3))], 1)
            return (logits, logits) if return_features else logits

    u = uncertainty(samples, Brightness())
    assert torch.equal(u.spread, torch.zeros(2, dtype=torch.float64))
    assert torch.equal(u.agreement, torch.ones(2, dtype=torch.float64))
    assert set(u.record()) == {"spread", "agreement"}


def test_semantic_agreement_and_auroc_against_their_definitions():
    classes = torch.tensor([[3, 3, 3, 3], [1, 2, 1, 5], [0, 1, 2, 3]])
    assert torch.allclose(semantic_agreement(classes), torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64))
    assert auroc(torch.tensor([0.9, 0.8, 0.1, 0.2]), torch.tensor([1, 1, 0, 0])) == 1.0
    assert auroc(torch.tensor([0.1, 0.2, 0.9, 0.8]), torch.tensor([1, 1, 0, 0])) == 0.0
    assert auroc(torch.tensor([0.5, 0.5, 0.5]), torch.tensor([1, 0, 0])) == 0.5
    assert auroc(torch.tensor([0.3, 0.7, 0.5, 0.5]), torch.tensor([0, 1, 1, 0])) == pytest.approx(0.875)
    assert math.isnan(auroc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1])))
    with pytest.raises(DiffcommError, match="samples"):
        uncertainty(torch.rand(2, 1, 1, 4, 4))


# ---------------------------------------------------------------------------------------------
# pipeline.decode(..., posterior_samples=S): the record in ReceiverResult


def _tiny_case():
    std = 0.08
    mean = torch.full((16,), 0.5, dtype=torch.float64)
    link = make_link("gaussian", SHAPE, "1/4", "awgn", 5.0)
    x = (mean + std * torch.randn(3, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    rx = link.transmit(x.clamp(0, 1).float().reshape(3, *SHAPE), generator=torch.Generator().manual_seed(1))
    return link, rx, IsotropicPrior(mean, std), {"steps": 4, "sampler": "heun", "sigma_data": 2 * std}


def test_decode_with_posterior_samples_returns_the_first_sample_and_the_record():
    from diffcomm.pipeline import decode

    link, rx, prior, opts = _tiny_case()
    res = decode("pigdm", link, rx, prior, generator=torch.Generator().manual_seed(2), posterior_samples=5, **opts)
    samples, batched = posterior_samples("pigdm", link, rx, prior, n_samples=5,
                                         generator=torch.Generator().manual_seed(2), **opts)
    assert res.x_hat.shape == (3, *SHAPE) and torch.equal(res.x_hat, samples[:, 0])
    assert res.nfe == batched.nfe > 0                                     # NFE per sample
    u = res.uncertainty
    assert u["samples"] == 5 and u["spread"].shape == (3,) and u["pixel_spread"].shape == (3, *SHAPE)
    assert u["agreement"] is None and u["classes"] is None and u["classifier"] is None   # 1x4x4: no classifier
    assert torch.allclose(u["spread"], uncertainty(samples).spread) and (u["spread"] > 0).all()


def test_decode_with_one_sample_is_plain_decode():
    from diffcomm.pipeline import decode

    link, rx, prior, opts = _tiny_case()
    plain = decode("pigdm", link, rx, prior, generator=torch.Generator().manual_seed(2), **opts)
    one = decode("pigdm", link, rx, prior, generator=torch.Generator().manual_seed(2), posterior_samples=1, **opts)
    assert torch.equal(plain.x_hat, one.x_hat) and one.uncertainty is None and plain.uncertainty is None


def test_decode_agreement_with_the_shipped_classifier_and_a_deterministic_receiver():
    from diffcomm.data import get_dataset
    from diffcomm.pipeline import decode

    link = make_link("gaussian", (1, 28, 28), "1/16", "awgn", 10.0)
    rx = link.transmit(get_dataset("fashion-mnist", "test").images[:2], generator=torch.Generator().manual_seed(0))
    res = decode("pinv", link, rx, posterior_samples=3)
    u = res.uncertainty
    assert u["classifier"] == "fmnist-classifier" and u["classes"].shape == (2, 3)
    assert torch.equal(u["agreement"], torch.ones(2, dtype=torch.float64)) and float(u["spread"].max()) < 1e-6
    assert torch.allclose(res.x_hat, decode("pinv", link, rx).x_hat, atol=1e-6)
    assert decode("pinv", link, rx, posterior_samples=3, uncertainty_classifier=None).uncertainty["agreement"] is None


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "4", 10_000])
def test_decode_rejects_bad_sample_counts_in_one_line(bad):
    from diffcomm.pipeline import decode

    link, rx, prior, opts = _tiny_case()
    with pytest.raises(DiffcommError, match="posterior_samples must be an integer") as err:
        decode("pigdm", link, rx, prior, posterior_samples=bad, **opts)
    assert "\n" not in str(err.value)
    with pytest.raises(DiffcommError, match="uncertainty_classifier"):
        decode("pinv", link, rx, posterior_samples=2, uncertainty_classifier="resnet")


def test_auroc_standard_error_is_hanley_mcneil():
    from diffcomm.metrics.uncertainty import auroc_se

    # Hanley & McNeil (1982), eq. 2 by hand: A = 0.5, 30 + 30 cases -> sqrt((0.25 + 58/12) / 900)
    assert auroc_se(0.5, 30, 30) == pytest.approx(math.sqrt((0.25 + 58 / 12) / 900))
    assert auroc_se(1.0, 5, 7) == 0.0
    assert math.isnan(auroc_se(float("nan"), 3, 3)) and math.isnan(auroc_se(0.7, 0, 3))
