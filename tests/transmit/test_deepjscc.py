"""DeepJSCC: shapes, the power constraint through the link, SNR conditioning, training guarantees."""

import json
from pathlib import Path

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


# ---- training over changed links (issue 16): OFDM, MIMO, transmitter impairments, fine-tuning -------------------
LINKS = {"ofdm": {"channel": {"profile": "A", "delay_spread": 3e-7, "fft_size": 32, "subcarrier_spacing": 60e3,
                              "cp_length": 10}},
         "mimo": {"channel": {"n_t": 2, "n_r": 2}},
         "rayleigh": {"impairments": [{"kind": "clip", "ratio": 0.8}]}}


@pytest.mark.parametrize("channel", list(LINKS))
def test_simulate_over_ofdm_mimo_and_clipping_is_differentiable(channel):
    from diffcomm.transmit.deepjscc import training_link

    model = DeepJSCC(DeepJSCCConfig(cbr=1 / 16, channel=channel))
    ch, stages = training_link(channel, LINKS[channel])
    out = simulate(model, torch.rand(3, 1, 28, 28), torch.tensor([0.0, 10.0, 20.0]), ch,
                   torch.Generator().manual_seed(0), stages)
    assert out.shape == (3, 1, 28, 28) and 0 <= out.min() and out.max() <= 1
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_flat_simulate_is_unchanged_by_the_generalised_channel_path():
    """A name and the same channel object give the same draws (the shipped recipes stay reproducible)."""
    from diffcomm.channels import make_channel

    model = DeepJSCC(DeepJSCCConfig(cbr=1 / 16))
    x, snr = torch.rand(2, 1, 28, 28), torch.tensor([5.0, 15.0])
    a = simulate(model, x, snr, "rayleigh", torch.Generator().manual_seed(4))
    b = simulate(model, x, snr, make_channel("rayleigh"), torch.Generator().manual_seed(4))
    assert torch.equal(a, b)


@pytest.mark.parametrize("link, msg", [({"chanel": {}}, "unknown \\[link\\] key"),
                                       ({"channel": {"fft_sise": 8}}, "takes options"),
                                       ({"impairments": [{"kind": "adc", "bits": 4}]}, "transmitter stages"),
                                       ({"impairments": ["clip"]}, "list of tables"),
                                       ({"impairments": [{"kind": "clip", "ratio": -1}]}, "ratio")])
def test_bad_link_tables_are_one_line_errors(link, msg):
    from diffcomm.transmit.deepjscc import training_link

    with pytest.raises(DiffcommError, match=msg) as err:
        training_link("ofdm", link)
    assert "\n" not in str(err.value)


def test_init_from_zoo_needs_the_same_architecture():
    from diffcomm.transmit.deepjscc import init_from_zoo

    model = DeepJSCC(DeepJSCCConfig(cbr=1 / 16, channel="ofdm"))
    init_from_zoo(model, "fmnist-deepjscc-rayleigh-cbr16")
    base = zoo.load("fmnist-deepjscc-rayleigh-cbr16")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), base.state_dict().values()))
    with pytest.raises(DiffcommError, match="width") as err:
        init_from_zoo(DeepJSCC(DeepJSCCConfig(cbr=1 / 16, width=16)), "fmnist-deepjscc-rayleigh-cbr16")
    assert "\n" not in str(err.value)
    with pytest.raises(DiffcommError, match="not a DeepJSCC"):
        init_from_zoo(model, "fmnist-classifier")


def test_link_trained_models_are_picked_for_their_links():
    from diffcomm.pipeline import jscc_model_name

    assert jscc_model_name("ofdm", 1 / 16) == "fmnist-deepjscc-ofdm-cbr16"
    assert jscc_model_name("mimo", 1 / 16) == "fmnist-deepjscc-mimo-cbr16"
    assert jscc_model_name("ofdm", 1 / 8) == "fmnist-deepjscc-rayleigh-cbr8"        # none trained: Rayleigh's
    assert jscc_model_name("rayleigh", 1 / 16) == "fmnist-deepjscc-rayleigh-cbr16"  # clipping model: by name only
    assert jscc_model_name("rayleigh", 1 / 16, "rayleigh-clip") == "fmnist-deepjscc-rayleigh-clip-cbr16"
    with pytest.raises(DiffcommError, match="deepjscc-VARIANT"):
        build_link("deepjscc-ofdn", (1, 28, 28), 1 / 16, "awgn", 10.0)


def test_a_tiny_fine_tuning_run_over_ofdm_records_its_link_and_init(tmp_path):
    import tomllib

    from diffcomm.training import load_config_file
    from diffcomm.transmit.deepjscc import run_jscc_training

    recipe = Path(__file__).parents[2] / "src/diffcomm/zoo/recipes/fmnist-deepjscc-ofdm-cbr16.toml"
    config = tomllib.loads(recipe.read_text())
    assert load_config_file(recipe) == config
    config["train"].update(steps=2, snapshot_every=2, checkpoint_every=2, log_every=1)
    run_jscc_training(config, tmp_path / "run", progress=False)
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["link"] == config["link"] and meta["init"] == {"model": "fmnist-deepjscc-rayleigh-cbr16"}
    bad = {**config, "init": {"modle": "x"}}
    with pytest.raises(DiffcommError, match="unknown \\[init\\] key"):
        run_jscc_training(bad, tmp_path / "bad", progress=False)
