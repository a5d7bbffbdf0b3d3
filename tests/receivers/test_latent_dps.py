"""The latent DPS receiver: the composed operator z ↦ A(D(z)) is differentiated exactly (float64 gradcheck on a
tiny autoencoder and a linear link), decoded outputs in [0, 1], NFE = latent-denoiser calls, guidance helps, and
one-line errors for priors and image shapes it cannot use."""

from __future__ import annotations

import pytest
import torch

from diffcomm import zoo
from diffcomm.data import get_dataset
from diffcomm.diffusion.autoencoder import AutoEncoder, AutoEncoderConfig, LatentPrior, latent_denoiser
from diffcomm.errors import DiffcommError
from diffcomm.pipeline import build_link, decode, default_prior, prior_names
from diffcomm.receivers.base import get_spec
from diffcomm.receivers.latent_dps import latent_dps_receiver, latent_operator


def tiny_prior(dtype=torch.float32) -> LatentPrior:
    torch.manual_seed(0)
    ae = AutoEncoder(AutoEncoderConfig(base_channels=4, num_res_blocks=1, latent_channels=2))
    den = latent_denoiser(ae, {"base_channels": 8, "channel_mults": [1], "attention_levels": [], "emb_dim": 16})
    return LatentPrior(ae, den, scale=1.7).to(dtype).eval()


@pytest.fixture(scope="module")
def images():
    return get_dataset("fashion-mnist", "test").images[:4]


@pytest.mark.parametrize("channel", ["awgn", "rayleigh"])
@pytest.mark.parametrize("clamp", [False, True])
def test_gradcheck_of_the_composed_latent_operator(channel, clamp, images):
    prior = tiny_prior(torch.float64)
    link = build_link("gaussian", (1, 28, 28), "1/16", channel, 10.0, csi="perfect")
    rx = link.transmit(images[:2], generator=torch.Generator().manual_seed(0))
    link.encoder.double()  # the projection in float64 too, so the check is exact to float64
    forward = latent_operator(link, rx, prior, clamp=clamp)
    z = torch.randn(2, *prior.latent_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = prior.decode(z, clamp=False)
    if clamp:  # a clamp is not differentiable at its corners: the point must keep away from 0 and 1
        assert ((x - 0).abs().min() > 1e-4) and ((x - 1).abs().min() > 1e-4)
    assert forward(z).dtype == torch.complex128
    assert torch.autograd.gradcheck(lambda v: torch.view_as_real(forward(v)), (z.requires_grad_(True),),
                                    eps=1e-6, atol=1e-6, rtol=1e-4)


def test_the_operator_is_the_link_applied_to_the_decoded_latent(images):
    prior = tiny_prior()
    link = build_link("deepjscc", (1, 28, 28), "1/16", "rayleigh", 10.0)
    rx = link.transmit(images[:2], generator=torch.Generator().manual_seed(0))
    z = torch.randn(2, *prior.latent_shape)
    assert torch.allclose(latent_operator(link, rx, prior)(z), link.operator(rx)(prior.decode(z)))


def test_output_is_decoded_pixels_with_nfe_and_seconds_per_evaluation(images):
    prior = tiny_prior()
    link = build_link("deepjscc", (1, 28, 28), "1/16", "awgn", 10.0)
    rx = link.transmit(images[:2], generator=torch.Generator().manual_seed(0))
    res = latent_dps_receiver(link, rx, prior, steps=4, generator=torch.Generator().manual_seed(1))
    assert res.x_hat.shape == (2, 1, 28, 28) and res.x_hat.dtype == torch.float32
    assert res.x_hat.min() >= 0 and res.x_hat.max() <= 1 and res.nfe == 4
    assert res.extras["latent_shape"] == [2, 7, 7] and res.extras["seconds_per_evaluation"] > 0
    glued = latent_dps_receiver(link, rx, prior, steps=4, gamma=0.5, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(glued.x_hat, res.x_hat) and glued.nfe == 4


def test_the_pipeline_gives_the_shipped_latent_prior_and_guidance_helps(images):
    from diffcomm.metrics import psnr

    spec = get_spec("latent_dps")
    assert spec.prior == "latent" and prior_names(spec, (1, 28, 28)) == ["fmnist-latent-prior"]
    assert default_prior(spec, (1, 28, 28)) is zoo.load("fmnist-latent-prior")
    link = build_link("deepjscc", (1, 28, 28), "1/16", "awgn", 10.0)
    rx = link.transmit(images, generator=torch.Generator().manual_seed(0))
    guided = decode("latent_dps", link, rx, generator=torch.Generator().manual_seed(1), steps=10)
    weak = decode("latent_dps", link, rx, generator=torch.Generator().manual_seed(1), steps=10, zeta=1e-4)
    assert guided.extras["options_used"]["zeta"] == spec.defaults()["zeta"]
    # the data term must matter: prior samples (zeta -> 0) are other garments, the guided decode the sent one
    assert float(psnr(guided.x_hat, images).mean()) > float(psnr(weak.x_hat, images).mean()) + 3


def test_one_line_errors_for_other_image_shapes_and_pixel_priors(images):
    spec = get_spec("latent_dps")
    with pytest.raises(DiffcommError, match="latent diffusion prior for 3x32x32") as err:
        prior_names(spec, (3, 32, 32))
    assert "\n" not in str(err.value)
    rgb = build_link("downsample", (3, 32, 32), "1/16", "awgn", 10.0)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    rx = rgb.transmit(x, generator=torch.Generator().manual_seed(0))
    for prior, message in [(None, "none is shipped"), (zoo.load("fmnist-latent-prior"), "decodes 1x28x28 images")]:
        with pytest.raises(DiffcommError, match=message) as err:
            decode("latent_dps", rgb, rx, prior=prior, steps=2)
        assert "\n" not in str(err.value) and "latent" in str(err.value)
    link = build_link("deepjscc", (1, 28, 28), "1/16", "awgn", 10.0)
    rx = link.transmit(images[:2], generator=torch.Generator().manual_seed(0))
    with pytest.raises(DiffcommError, match="must be a latent diffusion prior") as err:
        decode("latent_dps", link, rx, prior=zoo.load("fmnist-prior"), steps=2)
    assert "\n" not in str(err.value)
    with pytest.raises(DiffcommError, match="option zeta"):
        decode("latent_dps", link, rx, zeta=0.0)
