"""DeepJSCC: shapes, the power constraint through the link, SNR conditioning, training guarantees."""

import pytest
import torch

from diffcomm import zoo
from diffcomm.errors import DiffcommError
from diffcomm.metrics import psnr
from diffcomm.pipeline import build_link, decode
from diffcomm.transmit.deepjscc import DeepJSCC, DeepJSCCConfig, simulate


@pytest.mark.parametrize("cbr, k", [(1 / 16, 49), (1 / 8, 98)])
def test_shapes_and_symbol_count(cbr, k):
    model = DeepJSCC(DeepJSCCConfig(cbr=cbr))
    z = model.encode(torch.rand(3, 1, 28, 28), torch.full((3,), 10.0))
    assert z.shape == (3, k) and z.dtype == torch.complex64
    assert model.decode(z, torch.full((3,), 10.0)).shape == (3, 1, 28, 28)


def test_invalid_cbr_is_a_user_error():
    with pytest.raises(DiffcommError, match="divisible"):
        DeepJSCC(DeepJSCCConfig(cbr=1 / 10))


@pytest.mark.parametrize("channel", ["awgn", "rayleigh"])
def test_simulate_is_differentiable_and_in_range(channel):
    model = DeepJSCC(DeepJSCCConfig(cbr=1 / 16))
    x = torch.rand(4, 1, 28, 28)
    out = simulate(model, x, torch.tensor([0.0, 5.0, 10.0, 20.0]), channel, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


SHIPPED = zoo.list_models()
CHANNELS = [pytest.param(ch, marks=pytest.mark.skipif(f"fmnist-deepjscc-{ch}-cbr16" not in SHIPPED,
                                                      reason=f"fmnist-deepjscc-{ch}-cbr16 not shipped"))
            for ch in ("awgn", "rayleigh")]


@pytest.mark.parametrize("channel", CHANNELS)
def test_link_power_constraint_with_shipped_encoder(channel):
    from diffcomm.data import get_dataset

    x = get_dataset("fashion-mnist", "test").images[:64]
    link = build_link("deepjscc", (1, 28, 28), 1 / 16, channel, 10.0)
    z = link.encoder(x)
    rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
    s = rx.gain.reshape(-1, 1) * z
    assert torch.allclose(s.abs().pow(2).mean(1), torch.ones(64), atol=1e-4)


@pytest.mark.parametrize("channel", CHANNELS)
def test_higher_snr_gives_better_psnr_on_average(channel):
    from diffcomm.data import get_dataset

    assert_psnr_rises_with_snr(get_dataset("fashion-mnist", "test").images[:256], channel)


def assert_psnr_rises_with_snr(x: torch.Tensor, channel: str) -> None:
    """Paired comparison on the same images at 0, 10, 20 dB: mean PSNR gain above 5 standard errors."""
    scores = []
    for snr in (0.0, 10.0, 20.0):
        link = build_link("deepjscc", tuple(x.shape[1:]), 1 / 16, channel, snr)
        rx = link.transmit(x, generator=torch.Generator().manual_seed(1))
        scores.append(psnr(decode("deepjscc", link, rx).x_hat, x))
    for lo, hi in zip(scores, scores[1:]):
        diff = hi - lo
        assert diff.mean() > 5 * diff.std() / len(diff) ** 0.5


def test_model_table_picks_colour_models_by_image_channels():
    from diffcomm.pipeline import JSCC_MODELS, JSCC_MODELS_RGB, jscc_model_name

    assert jscc_model_name("awgn", 1 / 16) == "fmnist-deepjscc-awgn-cbr16"
    assert jscc_model_name("awgn", 1 / 16, channels=3) == "natural-deepjscc-awgn-cbr16"
    # no colour model trained over Rayleigh: the AWGN-trained one decodes the equalised symbols
    assert jscc_model_name("rayleigh", 1 / 48, channels=3) == "natural-deepjscc-awgn-cbr48"
    with pytest.raises(DiffcommError, match="supported CBRs: 1/16, 1/48"):
        jscc_model_name("awgn", 1 / 8, channels=3)
    with pytest.raises(DiffcommError, match="no shipped"):
        jscc_model_name("rayleigh", 1 / 16, variant="rayleigh", channels=3)
    with pytest.raises(DiffcommError, match="1- or 3-channel"):
        jscc_model_name("awgn", 1 / 16, channels=2)
    for (_, cbr), name in {**JSCC_MODELS, **JSCC_MODELS_RGB}.items():  # every listed model is shipped
        cfg = zoo.load(name).config
        assert abs(cfg.cbr - cbr) < 1e-9 and cfg.in_channels == (3 if name in JSCC_MODELS_RGB.values() else 1)


@pytest.mark.parametrize("channel", CHANNELS)
def test_colour_models_keep_the_power_constraint_and_gain_with_snr(channel):
    """The shipped colour DeepJSCC on held-out photo patches: unit power per frame, and a paired PSNR
    gain from 0 to 10 to 20 dB (over Rayleigh the AWGN-trained model decodes the equalised symbols)."""
    from diffcomm.data import get_dataset

    x = get_dataset("natural-patches", "test").images[::6]  # 128 patches of the three held-out photos
    link = build_link("deepjscc", (3, 32, 32), 1 / 16, channel, 10.0)
    assert link.encoder.k == 192
    rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
    s = rx.gain.reshape(-1, 1) * link.encoder(x)
    assert torch.allclose(s.abs().pow(2).mean(1), torch.ones(len(x)), atol=1e-4)
    assert_psnr_rises_with_snr(x, channel)
