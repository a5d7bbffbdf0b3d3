"""U-Net, EDM preconditioning and the DSM loss."""

import pytest
import torch

from diffcomm.diffusion.loss import edm_loss
from diffcomm.diffusion.precond import EDMDenoiser
from diffcomm.diffusion.unet import UNet, UNetConfig

CFG = UNetConfig(in_channels=1, base_channels=8, channel_mults=(1, 2), attention_levels=(1,), num_classes=10,
                 emb_dim=16)


def test_unet_shapes_and_config_round_trip():
    net = UNet(CFG)
    out = net(torch.randn(3, 1, 28, 28), torch.zeros(3), torch.tensor([0, 5, 10]))
    assert out.shape == (3, 1, 28, 28)
    assert UNetConfig.from_dict(CFG.to_dict()) == CFG


def test_precond_with_zero_network_is_the_skip_connection():
    # conv_out is zero-initialised, so F = 0 and D(x; σ) = c_skip(σ) x = σ_d²/(σ²+σ_d²) x (Karras et al. Table 1).
    D = EDMDenoiser(UNet(CFG))
    x = torch.randn(2, 1, 28, 28)
    for sigma in (0.01, 0.5, 10.0):
        expected = 0.25 / (sigma ** 2 + 0.25) * x
        assert torch.allclose(D(x, torch.tensor(sigma)), expected, atol=1e-6)


def test_class_label_changes_output_and_none_means_null_class():
    torch.manual_seed(0)
    net = UNet(CFG)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, c = torch.randn(2, 1, 28, 28), torch.zeros(2)
    a = net(x, c, torch.tensor([1, 1]))
    b = net(x, c, torch.tensor([2, 2]))
    assert not torch.allclose(a, b)
    assert torch.allclose(net(x, c, None), net(x, c, torch.tensor([10, 10])))


def test_edm_loss_is_zero_for_the_oracle_and_positive_otherwise():
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    g = torch.Generator().manual_seed(0)

    def oracle(x, sigma, labels=None):
        return x0

    assert torch.allclose(edm_loss(oracle, x0, generator=g), torch.zeros(4))
    D = EDMDenoiser(UNet(UNetConfig(in_channels=1, base_channels=8, channel_mults=(1,), attention_levels=())))
    assert (edm_loss(D, x0, generator=g) > 0).all()


def test_edm_weighting_makes_the_skip_only_loss_unit_scale():
    # With F = 0, D = c_skip x, the weighted error λ(σ)‖c_skip x − x0‖² has expectation 1 per pixel for
    # data of variance σ_d² (the purpose of the EDM weighting: unit-variance training targets).
    D = EDMDenoiser(UNet(UNetConfig(in_channels=1, base_channels=8, channel_mults=(1,), attention_levels=())))
    g = torch.Generator().manual_seed(1)
    x0 = 0.5 * torch.randn(4096, 1, 4, 4, generator=g)
    loss = edm_loss(D, x0, generator=g)
    se = loss.std() / len(loss) ** 0.5
    assert loss.mean().item() == pytest.approx(1.0, abs=5 * se.item())


def test_a_float64_copy_runs_and_matches_float32():
    """``.double()`` gives a float64 denoiser (reference solutions); the time embedding used to stay float32."""
    torch.manual_seed(0)
    net = UNet(CFG)
    with torch.no_grad():  # the zero-initialised layers would hide the network (and its time embedding)
        for p in net.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.1)
    den = EDMDenoiser(net, sigma_data=0.5)
    x, sigma = torch.randn(2, 1, 8, 8), torch.tensor([0.3, 2.0])
    out32 = den(x, sigma)
    out64 = den.double()(x.double(), sigma.double())
    assert out64.dtype == torch.float64
    assert torch.allclose(out64, out32.double(), atol=1e-5)
