"""SNR mismatch (issue 16): the channel adds noise at the true SNR, the receiver is told ``assumed_snr_db``."""

import dataclasses
import math

import pytest
import torch

from diffcomm.channels import make_channel, snr_db_to_n0
from diffcomm.channels.impairments import impairment, with_impairments
from diffcomm.errors import DiffcommError
from diffcomm.link import Link, lmmse_from_ls, make_link, with_assumed_snr

SHAPE = (1, 8, 8)
SNR = 5.0


def images(b: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, *SHAPE, generator=torch.Generator().manual_seed(seed))


def gen(seed: int = 7) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def same_received(a, b) -> bool:
    """Every field of two Received records equal, bit for bit (tensors with torch.equal)."""
    for f in dataclasses.fields(a):
        u, v = getattr(a, f.name), getattr(b, f.name)
        if torch.is_tensor(u) or torch.is_tensor(v):
            if not (torch.is_tensor(u) and torch.is_tensor(v) and torch.equal(u, v)):
                return False
        elif u != v:
            return False
    return True


CASES = [  # (channel, channel options, csi, n_pilots, estimator)
    ("awgn", {}, "perfect", 0, "lmmse"),
    ("rayleigh", {}, "perfect", 0, "lmmse"),
    ("rayleigh", {"block": False}, "none", 0, "lmmse"),
    ("rician", {}, "estimated", 4, "lmmse"),
    ("rayleigh", {}, "estimated", 4, "ls"),
    ("ofdm", {}, "estimated", 2, "lmmse"),
    ("mimo", {"detector": "zf"}, "perfect", 0, "lmmse"),
    ("mimo", {"correlation": 0.5}, "estimated", 4, "lmmse"),
]


def build(case, assumed=None, **kw):
    name, opts, csi, n_pilots, est = case
    return make_link("gaussian", SHAPE, "1/2", make_channel(name, **opts), SNR, csi=csi, n_pilots=n_pilots,
                     pilot_estimator=est, **({} if assumed is None else {"assumed_snr_db": assumed}), **kw)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[2]}-{c[4]}")
def test_none_is_the_matched_link_bit_for_bit(case):
    x = images(3)
    plain = build(case)
    explicit = build(case, assumed_snr_db=None)
    assert explicit.assumed_snr_db is None and explicit.receiver_snr_db == SNR and explicit.receiver_n0 == plain.n0
    assert "assumed_snr_db" not in explicit.config() and explicit.config() == plain.config()
    assert repr(explicit) == repr(plain)
    a, b = plain.transmit(x, generator=gen()), explicit.transmit(x, generator=gen())
    assert same_received(a, b) and a.n0 == snr_db_to_n0(SNR)
    c = with_assumed_snr(with_assumed_snr(plain, SNR + 3), None).transmit(x, generator=gen())
    assert same_received(a, c)
    d = build(case, assumed=SNR).transmit(x, generator=gen())      # told the true SNR: the matched link
    assert same_received(a, d)


@pytest.mark.parametrize("case", [c for c in CASES if c[0] != "mimo" or c[2] == "perfect"],
                         ids=lambda c: f"{c[0]}-{c[2]}-{c[4]}")
def test_assumed_snr_changes_only_what_the_receiver_believes(case):
    x = images(3)
    matched = build(case)
    told = build(case, assumed=SNR + 3)
    a = matched.transmit(x, generator=gen())
    b, truth = told.transmit(x, generator=gen(), return_truth=True)
    assert torch.equal(a.y, b.y)                                    # the noise is the true one
    assert b.n0 == snr_db_to_n0(SNR + 3) and a.n0 == snr_db_to_n0(SNR)
    assert told.n0 == matched.n0 == snr_db_to_n0(SNR) and told.snr_db == SNR
    assert told.receiver_snr_db == SNR + 3 and told.receiver_n0 == b.n0
    cfg = told.config()
    assert cfg["assumed_snr_db"] == SNR + 3 and cfg["assumed_n0"] == b.n0 and cfg["snr_db"] == SNR
    assert "assumed_snr_db=8" in repr(told)
    if case[2] == "estimated":
        assert torch.equal(a.y_pilot, b.y_pilot)                    # pilots: true noise too
    if case[2] == "estimated" and case[4] == "lmmse":               # the estimator weighs with the belief
        ls = build(case[:4] + ("ls",), assumed=SNR + 3).transmit(x, generator=gen())   # same draws, LS estimate
        assert torch.allclose(b.h_hat, lmmse_from_ls(told.channel, ls.h_hat, b.n0, told.n_pilots), atol=1e-6)
        assert not torch.allclose(a.h_hat, b.h_hat, atol=1e-4)
    elif a.h_hat is not None:
        assert torch.equal(a.h_hat, b.h_hat)
    op = told.operator(b, h=None if b.h_hat is not None else truth.h)
    assert op.model_space().noise_var == pytest.approx(b.n0 / 2)    # receivers' data terms use rx.n0


def test_mimo_front_end_uses_the_belief():
    """The MMSE detector's filter depends on N0: the receiver builds it from the SNR it was told."""
    x = images(3)
    case = ("mimo", {"detector": "mmse"}, "perfect", 0, "lmmse")
    a = build(case).transmit(x, generator=gen())
    b = build(case, assumed=SNR + 3).transmit(x, generator=gen())
    assert b.n0 == snr_db_to_n0(SNR + 3) and not torch.allclose(a.y, b.y)
    z = build(("mimo", {"detector": "zf"}, "perfect", 0, "lmmse"), assumed=SNR + 3)
    assert torch.equal(z.transmit(x, generator=gen()).y,
                       build(("mimo", {"detector": "zf"}, "perfect", 0, "lmmse")).transmit(x, generator=gen()).y)


@pytest.mark.parametrize("name, opts", [("awgn", {}), ("rayleigh", {}), ("rician", {}), ("ofdm", {}),
                                        ("mimo", {"correlation": 0.6}), ("mimo", {"n_t": 2, "n_r": 3})])
def test_lmmse_from_ls_is_the_channels_lmmse_at_the_true_n0(name, opts):
    ch = make_channel(name, **opts)
    link = make_link("gaussian", SHAPE, "1/2", ch, SNR, csi="estimated", n_pilots=4)
    _, truth = link.transmit(images(4), generator=gen(), return_truth=True)
    h_ls = ch.estimate_csi(truth.h, link.k, link.n0, 4, "ls", gen(1))[0]
    h_lmmse = ch.estimate_csi(truth.h, link.k, link.n0, 4, "lmmse", gen(1))[0]
    assert torch.allclose(lmmse_from_ls(ch, h_ls, link.n0, 4), h_lmmse, atol=1e-5)


def test_empirical_noise_is_the_true_n0_not_the_assumed_one():
    link = make_link("gaussian", SHAPE, "1/2", "awgn", SNR, assumed_snr_db=SNR + 3)
    x = images(2000)
    rx, truth = link.transmit(x, generator=gen(1), return_truth=True)
    noise = (rx.y - truth.h * truth.z).to(torch.complex128)
    n = noise.numel()                                        # 2000 images x 32 symbols = 64,000 complex symbols
    n0_hat = float(noise.abs().pow(2).mean())
    # Each complex noise sample is CN(0, N0): |n|² / (N0/2) ~ χ²(2), i.e. |n|² ~ Exp(mean N0), variance N0².
    # The mean of N independent |n|² has std N0 / sqrt(N): relative std sqrt(1/N) (0.4 % here). 6 std: a false
    # failure has probability ~1e-9, while the assumed N0 (3 dB lower, 0.5 N0) is ~125 std away.
    tol = 6 * link.n0 / math.sqrt(n)
    true_n0, assumed_n0 = snr_db_to_n0(SNR), snr_db_to_n0(SNR + 3)
    assert link.n0 == true_n0 and rx.n0 == assumed_n0
    assert abs(n0_hat - true_n0) <= tol, (n0_hat, true_n0, tol)
    assert abs(n0_hat - assumed_n0) > 20 * tol


def test_modelled_adc_agc_uses_the_belief_consistently():
    """The receiver's AGC sets the ADC full scale from the N0 it believes, and its model (rx.n0) agrees."""
    base = make_link("gaussian", SHAPE, "1/2", "rayleigh", 100.0, assumed_snr_db=3.0)   # true noise ~1e-10
    link = with_impairments(base, impairment("adc", bits=4, modelled=True))
    x = images(4)
    rx = link.transmit(x, generator=gen())
    same = (rx.y == link.operator(rx)(x)).float().mean()
    assert rx.n0 == snr_db_to_n0(3.0) and float(same) > 0.95


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 1e6, -1e6, 101.0, "abc", True, [3.0]])
def test_bad_assumed_snr_is_a_one_line_error(bad):
    for build_it in (lambda: make_link("gaussian", SHAPE, "1/2", "awgn", SNR, assumed_snr_db=bad),
                     lambda: Link(make_link("gaussian", SHAPE, "1/2").encoder, "awgn", SNR, assumed_snr_db=bad),
                     lambda: with_assumed_snr(make_link("gaussian", SHAPE, "1/2"), bad)):
        with pytest.raises(DiffcommError, match="assumed_snr_db") as exc:
            build_it()
        assert "\n" not in str(exc.value)


def test_string_numbers_and_bounds_are_accepted():
    assert make_link("gaussian", SHAPE, "1/2", assumed_snr_db="7.5").assumed_snr_db == 7.5
    assert make_link("gaussian", SHAPE, "1/2", assumed_snr_db=-50).receiver_n0 == snr_db_to_n0(-50.0)
    assert make_link("gaussian", SHAPE, "1/2", assumed_snr_db=100).receiver_snr_db == 100.0


def test_decoders_and_calibration_read_the_believed_snr():
    """The DeepJSCC decoder is conditioned on the SNR the receiver believes, HiFi starts at the matching
    noise level and the calibration lookup uses it: a told SNR of 20 dB on a 0 dB link decodes as 20 dB."""
    from diffcomm.calibration import link_calibration
    from diffcomm.pipeline import build_link, decode
    from diffcomm.receivers.base import get_spec

    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    link = build_link("deepjscc", (1, 28, 28), "1/16", "awgn", 0.0)
    told = with_assumed_snr(link, 20.0)
    rx = link.transmit(x, generator=torch.Generator().manual_seed(1))
    matched = decode("deepjscc", link, rx).x_hat
    believed = decode("deepjscc", told, rx).x_hat
    assert not torch.equal(matched, believed)
    at_20 = build_link("deepjscc", (1, 28, 28), "1/16", "awgn", 20.0)
    torch.testing.assert_close(believed, decode("deepjscc", at_20, rx).x_hat)
    spec = get_spec("hifi")
    assert link_calibration(spec, told, {"steps": 10}) == link_calibration(spec, at_20, {"steps": 10})
