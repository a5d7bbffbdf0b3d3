"""DPS, HiFi-DiffCom and blind receivers: bad inputs, shapes/NFE, blind channel initialisation."""

import dataclasses

import pytest
import torch

from diffcomm import zoo
from diffcomm.errors import DiffcommError
from diffcomm.pipeline import build_link
from diffcomm.receivers.blind import blind_receiver, initial_channel_estimate
from diffcomm.receivers.dps import dps_receiver
from diffcomm.receivers.hifi import hifi_receiver

SHIPPED = {"fmnist-prior", "fmnist-deepjscc-rayleigh-cbr16"} <= set(zoo.list_models())
pytestmark = pytest.mark.skipif(not SHIPPED, reason="needs the shipped prior and Rayleigh DeepJSCC")


@pytest.fixture(scope="module")
def setup():
    from diffcomm.data import get_dataset

    x = get_dataset("fashion-mnist", "test").images[:4]
    link = build_link("deepjscc", (1, 28, 28), 1 / 16, "rayleigh", 15.0)
    rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
    return x, link, rx, zoo.load("fmnist-prior")


@pytest.fixture(scope="module")
def blind_setup(setup):
    """The same images over the same link without CSI (blind decodes only csi='none' links)."""
    x, _, _, prior = setup
    link = build_link("deepjscc", (1, 28, 28), 1 / 16, "rayleigh", 15.0, csi="none")
    return x, link, link.transmit(x, generator=torch.Generator().manual_seed(0)), prior


@pytest.mark.parametrize("fn", [dps_receiver, hifi_receiver])
def test_shapes_nfe_and_range(setup, fn):
    x, link, rx, prior = setup
    res = fn(link, rx, prior, steps=3, generator=torch.Generator().manual_seed(0))
    assert res.x_hat.shape == x.shape and res.nfe == 3 and 0 <= res.x_hat.min() and res.x_hat.max() <= 1


@pytest.mark.parametrize("fn", [dps_receiver, hifi_receiver, blind_receiver])
def test_bad_received_signals_raise_one_line_errors(setup, blind_setup, fn):
    _, link, rx, prior = blind_setup if fn is blind_receiver else setup
    bad_nan = rx.y.clone()
    bad_nan[0, 0] = complex(float("nan"), 0)
    for y, msg in [(rx.y[:, :10], "shape"), (rx.y.real, "complex"), (bad_nan, "NaN")]:
        with pytest.raises(DiffcommError, match=msg):
            fn(link, dataclasses.replace(rx, y=y), prior, steps=2)


def test_hifi_needs_a_deepjscc_link(setup):
    _, _, _, prior = setup
    link = build_link("gaussian", (1, 28, 28), 1 / 16, "awgn", 10.0)
    rx = link.transmit(torch.rand(2, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    with pytest.raises(DiffcommError, match="DeepJSCC"):
        hifi_receiver(link, rx, prior, steps=2)


def test_blind_refuses_a_link_with_csi(setup):
    _, link, rx, prior = setup
    with pytest.raises(DiffcommError, match="decodes without CSI") as err:
        blind_receiver(link, rx, prior, steps=2)
    assert "\n" not in str(err.value)


def test_blind_initial_estimate_is_close_at_high_snr():
    from diffcomm.data import get_dataset

    x = get_dataset("fashion-mnist", "test").images[:32]
    link = build_link("deepjscc", (1, 28, 28), 1 / 16, "rayleigh", 25.0, csi="none")
    rx, truth = link.transmit(x, generator=torch.Generator().manual_seed(1), return_truth=True)
    h_hat, _ = initial_channel_estimate(link, rx)
    err = (h_hat - truth.h[:, 0]).abs().pow(2) / truth.h[:, 0].abs().pow(2)
    # Relative squared error well below the prior's (1 = guessing 0); median is robust to a few deep fades.
    assert err.median() < 0.1
