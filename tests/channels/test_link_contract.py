"""Every registered receiver over every new link (MIMO front ends, impairment stages, OFDM with and without
ISI): the contract of
``tests/receivers/test_contract.py`` — shape, dtype, range, NFE = prior calls, determinism — or a one-line
refusal naming the problem where the link cannot serve the receiver (blind on MIMO, linear-only receivers
on a modelled nonlinear stage)."""

from __future__ import annotations

import pytest
import torch
from receivers.test_contract import CallCounter, prior_of  # the same counter and prior choice as the registry contract

from diffcomm import zoo
from diffcomm.channels import make_channel
from diffcomm.channels.impairments import impairment, with_impairments
from diffcomm.errors import DiffcommError
from diffcomm.pipeline import build_link, decode
from diffcomm.receivers import RECEIVERS
from diffcomm.receivers.base import get_spec

NAMES = sorted(RECEIVERS)

NEW_LINKS = {
    "mimo-2x2-zf": (lambda: make_channel("mimo", detector="zf"), ()),
    "mimo-2x2-mmse": (lambda: make_channel("mimo", detector="mmse"), ()),
    "mimo-2x4-none-corr": (lambda: make_channel("mimo", n_t=2, n_r=4, correlation=0.5, detector="none"), ()),
    "mimo-2x2-svd": (lambda: make_channel("mimo", precoding="svd"), ()),
    "clip-modelled": (lambda: "rayleigh", (impairment("clip", ratio=0.8, modelled=True),)),
    "clip-unmodelled": (lambda: "rayleigh", (impairment("clip", ratio=0.8),)),
    "rapp-modelled": (lambda: "rayleigh", (impairment("rapp", p=2.0, a_sat=1.0, modelled=True),)),
    "adc-4bit": (lambda: "rayleigh", (impairment("adc", bits=4),)),
    "adc-4bit-modelled": (lambda: "rayleigh", (impairment("adc", bits=4, modelled=True),)),
    "phase-noise-modelled": (lambda: "rayleigh", (impairment("phase-noise", linewidth_ts=1e-3, modelled=True),)),
    "cfo-unmodelled": (lambda: "awgn", (impairment("cfo", eps=1e-3),)),
    "mimo-mmse-adc": (lambda: make_channel("mimo"), (impairment("adc", bits=6),)),
    "ofdm-tdl-a": (lambda: make_channel("ofdm", profile="A", delay_spread=3e-7, fft_size=32, subcarrier_spacing=60e3,
                                        cp_length=10), ()),
    "ofdm-tdl-a-isi": (lambda: make_channel("ofdm", profile="A", delay_spread=3e-7, fft_size=32,
                                            subcarrier_spacing=60e3, cp_length=2), ()),
}


@pytest.fixture(scope="module")
def prior():
    return zoo.load("fmnist-prior")


@pytest.fixture(scope="module")
def images():
    from diffcomm.data import get_dataset

    return get_dataset("fashion-mnist", "test").images[:2]


def build(name: str, link_name: str):
    spec = get_spec(name)
    channel, stages = NEW_LINKS[link_name]
    encoder = "downsample" if spec.link == "linear" else "deepjscc"
    csi = "none" if spec.csi == "none" else "perfect"
    link = build_link(encoder, (1, 28, 28), "1/16", channel(), 10.0, csi=csi)
    return spec, with_impairments(link, *stages)


@pytest.mark.parametrize("link_name", list(NEW_LINKS))
@pytest.mark.parametrize("name", NAMES)
def test_every_receiver_over_every_new_link(name, link_name, prior, images):
    spec = get_spec(name)
    _, stages = NEW_LINKS[link_name]
    refused = (spec.csi == "none" and link_name.startswith("mimo")) or \
              (spec.csi == "none" and any(s.modelled and s.phase_only for s in stages)) or \
              (spec.link == "linear" and any(s.modelled and not s.phase_only for s in stages))
    if refused:
        with pytest.raises(DiffcommError) as err:
            spec_, link = build(name, link_name)
            rx = link.transmit(images, generator=torch.Generator().manual_seed(0))
            decode(name, link, rx, prior=prior_of(spec, prior))
        assert "\n" not in str(err.value)
        return
    spec, link = build(name, link_name)
    rx = link.transmit(images, generator=torch.Generator().manual_seed(0))
    model = prior_of(spec, prior)     # the pixel prior, or the model the receiver is built for (latent, bridge, ...)
    counted = CallCounter(model) if model is not None else None
    options = {"steps": 3} if "steps" in spec.options else {}
    res = decode(name, link, rx, prior=counted, generator=torch.Generator().manual_seed(1), **options)
    assert res.x_hat.shape == (2, 1, 28, 28) and res.x_hat.dtype == torch.float32
    assert torch.isfinite(res.x_hat).all() and res.x_hat.min() >= 0 and res.x_hat.max() <= 1
    assert res.nfe * len(images) == (counted.rows if counted is not None else 0)
    again = decode(name, link, rx, prior=counted, generator=torch.Generator().manual_seed(1), **options)
    assert torch.equal(res.x_hat, again.x_hat)
