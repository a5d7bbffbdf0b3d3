"""The i2sb receiver on both kinds of link: from the DeepJSCC output with the DeepJSCC-trained bridge, from A⁺y
with a bridge trained from the downsampling link's pseudo-inverse, and a one-line error for the wrong pairing."""

import pytest
import torch

from diffcomm import zoo
from diffcomm.diffusion.bridge import BridgeDenoiser
from diffcomm.diffusion.conditional import ConditionedUNet, ConditionSection, simulate_condition
from diffcomm.diffusion.unet import UNetConfig
from diffcomm.errors import DiffcommError
from diffcomm.pipeline import build_link, decode


def _pinv_bridge():
    torch.manual_seed(0)
    model = BridgeDenoiser(ConditionedUNet(UNetConfig(base_channels=8, channel_mults=(1,), attention_levels=(),
                                                      num_classes=10, emb_dim=32))).eval()
    model.source = "pinv-downsample"
    return model


def test_a_linear_link_needs_a_bridge_trained_from_pinv():
    link = build_link("downsample", (1, 28, 28), "1/16", "rayleigh", 10.0)
    rx = link.transmit(torch.rand(2, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    with pytest.raises(DiffcommError, match="fmnist-i2sb-pinv") as err:
        decode("i2sb", link, rx)                      # the default bridge is the DeepJSCC one
    assert "\n" not in str(err.value)
    res = decode("i2sb", link, rx, prior=_pinv_bridge(), steps=3, generator=torch.Generator().manual_seed(1))
    assert res.x_hat.shape == (2, 1, 28, 28) and res.nfe == 3 and 0 <= res.x_hat.min() <= res.x_hat.max() <= 1


def test_a_pinv_bridge_is_refused_on_a_deepjscc_link():
    link = build_link("deepjscc", (1, 28, 28), "1/16", "awgn", 10.0)
    rx = link.transmit(torch.rand(2, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    with pytest.raises(DiffcommError, match="trained from pinv-downsample"):
        decode("i2sb", link, rx, prior=_pinv_bridge())


def test_pinv_conditions_are_the_pseudo_inverse_on_a_half_db_grid():
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    section = ConditionSection(init="fmnist-prior", source="pinv-downsample", channels=["awgn"])
    c = simulate_condition({}, x, section, torch.Generator().manual_seed(0))
    assert torch.equal(c.snr_db * 2, (c.snr_db * 2).round()) and (c.gain_db == 0).all()
    link = build_link("downsample", (1, 28, 28), "1/16", "awgn", float(c.snr_db[0]))
    rx = link.transmit(x[:1], generator=torch.Generator().manual_seed(5))
    clean = link.operator(rx).pinv(link.operator(rx)(x[:1])).clamp(0, 1)   # A⁺A x: what A⁺y estimates
    assert ((c.image[:1] + 1) / 2 - clean).abs().mean() < 0.1


def test_the_shipped_bridges_record_their_source():
    assert zoo.load("fmnist-i2sb-jscc").source == "deepjscc"
