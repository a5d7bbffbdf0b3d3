"""Impairment stages: PA models, PAPR clipping, ADC levels and straight-through gradient, phase noise, CFO,
gradient checks, parameter errors, and the stages on a link (modelled vs unmodelled), end to end."""

import math

import pytest
import torch

from diffcomm.channels import make_channel
from diffcomm.channels.impairments import (
    adc_levels,
    cfo,
    clip_papr,
    impairment,
    papr,
    phase_noise,
    quantize_adc,
    rapp,
    soft_limiter,
    wiener_phase,
    with_impairments,
)
from diffcomm.errors import DiffcommError
from diffcomm.link import make_link


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def cn(shape, seed=1, dtype=torch.complex128):
    return torch.randn(*shape, dtype=dtype, generator=gen(seed))


# ---- functions -------------------------------------------------------------------------------------------

def test_soft_limiter_and_rapp_against_their_definitions():
    x = cn((4, 200))
    for a in (0.5, 1.0):
        y = soft_limiter(x, a)
        assert torch.allclose(y.abs(), x.abs().clamp_max(a), atol=1e-12)
        assert torch.allclose(torch.angle(y), torch.angle(x), atol=1e-12)
    p, a = 2.0, 0.8
    y = rapp(x, p, a)
    r = x.abs()
    assert torch.allclose(y.abs(), r / (1 + (r / a) ** (2 * p)) ** (1 / (2 * p)), atol=1e-12)
    assert torch.allclose(torch.angle(y), torch.angle(x), atol=1e-12)             # no AM/PM
    at_knee = rapp(torch.tensor([a + 0j], dtype=torch.complex128), p, a).abs()
    assert float(at_knee) == pytest.approx(a / 2 ** (1 / (2 * p)))
    small = torch.tensor([1e-4 + 0j], dtype=torch.complex128)
    assert float(rapp(small, p, a).abs() / 1e-4) == pytest.approx(1.0, abs=1e-12)   # unit small-signal gain
    assert torch.allclose(rapp(x, 200.0, a).abs(), soft_limiter(x, a).abs(), atol=5e-3)   # p -> inf: limiter
    assert torch.isfinite(rapp(x * 1e6, 50.0, a)).all()
    assert rapp(torch.zeros(3, dtype=torch.complex128)).abs().sum() == 0


def test_papr_and_clipping_against_their_definitions():
    assert torch.allclose(papr(torch.polar(torch.ones(3, 64), torch.rand(3, 64) * 6)), torch.ones(3))
    spike = torch.zeros(1, 10, dtype=torch.complex64)
    spike[0, 3] = 2.0
    assert float(papr(spike)) == pytest.approx(10.0)                              # max 4 / mean 0.4
    x = cn((200, 256), seed=2)
    for gamma in (0.8, 1.2, 2.0):
        y = clip_papr(x, gamma)
        rms = x.abs().pow(2).mean(-1).sqrt()
        assert torch.allclose(y.abs().amax(-1), gamma * rms, rtol=1e-12)         # peak = A = γ rms
        want = gamma ** 2 * x.abs().pow(2).mean(-1) / y.abs().pow(2).mean(-1)
        assert torch.allclose(papr(y), want, rtol=1e-12)                          # PAPR after clipping
        # Gaussian input of power σ² = 2: output power σ²(1 − exp(−γ²)) (Ochiai & Imai 2002), A from the sample rms
        ratio = (y.abs().pow(2).mean(-1) / x.abs().pow(2).mean(-1)).mean()
        assert float(ratio) == pytest.approx(1 - math.exp(-gamma ** 2), abs=0.01)


@pytest.mark.parametrize("bits", [1, 2, 4, 6])
def test_adc_levels_and_mapping(bits):
    fs = 1.5
    levels = adc_levels(bits, fs)
    step = 2 * fs / 2 ** bits
    assert levels.numel() == 2 ** bits and float(levels[0]) == pytest.approx(-fs + step / 2)
    assert torch.allclose(levels.diff(), torch.full((2 ** bits - 1,), step, dtype=torch.float64))
    ramp = torch.linspace(-2 * fs, 2 * fs, 4001, dtype=torch.float64) + 1e-6 * math.pi      # no ties on a threshold
    y = torch.complex(ramp, -ramp)
    q = quantize_adc(y, bits, fs)
    for part, src in ((q.real, ramp), (q.imag, -ramp)):
        assert set(torch.unique(part).tolist()) == set(levels.tolist())          # exactly the 2^b levels
        nearest = levels[(src[:, None] - levels[None]).abs().argmin(1)]
        assert torch.allclose(part, nearest, atol=1e-12)                          # nearest level, saturating
    if bits == 1:
        assert set(torch.unique(q.real).tolist()) == {-fs / 2, fs / 2}


def test_adc_straight_through_gradient_and_per_row_full_scale():
    re, im = torch.tensor([[0.3, 2.0, -0.7]]).double(), torch.tensor([[-3.0, 0.1, 0.9]]).double()
    y = torch.complex(re, im).requires_grad_()
    q = quantize_adc(y, 3, 1.0)
    w = torch.randn(1, 3, 2, dtype=torch.float64, generator=gen(0))
    (g,) = torch.autograd.grad((torch.view_as_real(q) * w).sum(), y)
    inside = (torch.view_as_real(y.detach()).abs() <= 1.0).double()
    assert torch.allclose(torch.view_as_real(g), w * inside)                      # 1 inside [−FS, FS], 0 outside
    rows = cn((3, 50), seed=3)
    fs = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    per_row = quantize_adc(rows, 4, fs)
    for i in range(3):
        assert torch.allclose(per_row[i], quantize_adc(rows[i:i + 1], 4, float(fs[i]))[0])


def test_phase_noise_is_a_wiener_process_and_cfo_a_ramp():
    bt = 1e-3
    theta = wiener_phase((20000, 50), bt, gen(0), dtype=torch.float64)
    inc = theta.diff(dim=1)
    assert float(inc.var()) == pytest.approx(2 * math.pi * bt, rel=0.02)
    var_n = theta.var(0)
    want = 2 * math.pi * bt * torch.arange(1, 51, dtype=torch.float64)
    assert torch.allclose(var_n, want, rtol=0.06)
    y = cn((2, 30))
    out, th = phase_noise(y, bt, gen(1))
    assert torch.allclose(out, y * torch.exp(1j * th)) and torch.allclose(out.abs(), y.abs())
    eps = 0.01
    ramp = cfo(y, eps)
    n = torch.arange(30, dtype=torch.float64)
    assert torch.allclose(ramp, y * torch.exp(2j * math.pi * eps * n))


def test_gradcheck_every_differentiable_stage():
    x = (cn((2, 6), seed=4) * 0.8).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: rapp(v, 2.5, 0.9), (x,))
    assert torch.autograd.gradcheck(lambda v: clip_papr(v, 1.1), (x,))
    mask = (x.detach().abs() - 0.7).abs() > 0.05                                  # away from the kink |x| = A
    assert torch.autograd.gradcheck(lambda v: soft_limiter(v[mask], 0.7), (x,))
    assert torch.autograd.gradcheck(lambda v: phase_noise(v, 1e-2, gen(5))[0], (x,))
    eps = torch.tensor(0.02, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, e: cfo(v, e), (x, eps))


@pytest.mark.parametrize("kind,kw,msg", [
    ("adc", dict(bits=0), "bits"), ("adc", dict(bits=17), "bits"), ("adc", dict(bits=2.5), "bits"),
    ("adc", dict(full_scale=0.0), "full_scale"), ("clip", dict(ratio=-1), "ratio"), ("rapp", dict(p=0), "p"),
    ("limiter", dict(a_sat=math.inf), "a_sat"), ("phase-noise", dict(linewidth_ts=-1e-3), "linewidth_ts"),
    ("cfo", dict(eps=math.nan), "eps"), ("clip", dict(bits=3), "no parameter"), ("amp", {}, "unknown impairment"),
])
def test_bad_parameters_one_line_errors(kind, kw, msg):
    with pytest.raises(DiffcommError, match=msg) as info:
        impairment(kind, **kw)
    assert "\n" not in str(info.value)
    with pytest.raises(DiffcommError, match="bits") as info:
        quantize_adc(torch.ones(2, dtype=torch.complex64), 0, 1.0)
    assert "\n" not in str(info.value)


# ---- stages on a link --------------------------------------------------------------------------------------

SHAPE = (1, 8, 8)


def images(b=3, seed=0):
    return torch.rand(b, *SHAPE, generator=gen(seed))


STAGES = [impairment("rapp", p=2.0, a_sat=1.0), impairment("limiter", a_sat=1.2), impairment("clip", ratio=0.8),
          impairment("adc", bits=4), impairment("phase-noise", linewidth_ts=1e-2), impairment("cfo", eps=0.01)]


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.kind)
@pytest.mark.parametrize("channel", ["rayleigh", "mimo"])
def test_a_modelled_stage_is_in_the_operator_and_an_unmodelled_one_is_not(stage, channel):
    """At 100 dB the received signal is the noiseless link; a modelled stage's operator reproduces it
    (the ADC up to the rare value within the noise of a threshold), an unmodelled one's does not."""
    ch = make_channel("mimo", detector="mmse") if channel == "mimo" else channel
    base = make_link("gaussian", SHAPE, "1/4", ch, 100.0)
    x = images()
    modelled = with_impairments(base, impairment(stage.kind, modelled=True, **stage.params))
    unmodelled = with_impairments(base, stage)
    assert base.stages == () and modelled.encoder is base.encoder
    assert modelled.is_linear == stage.phase_only and unmodelled.is_linear
    assert modelled.config()["impairments"][0]["modelled"] and modelled.kind == ("linear" if stage.phase_only
                                                                                 else "nonlinear")
    for link, expect in ((modelled, True), (unmodelled, False)):
        rx = link.transmit(x, generator=gen(1))
        close = ((rx.y - link.operator(rx)(x)).abs() < 1e-3).double().mean()
        if expect:
            assert close > 0.98, (stage.kind, float(close))
        else:
            assert close < 0.9, (stage.kind, float(close))
    plain = base.transmit(x, generator=gen(1))
    assert not torch.allclose(unmodelled.transmit(x, generator=gen(1)).y, plain.y, atol=1e-3)


def test_phase_stages_fold_into_the_csi_and_draw_after_the_pilots():
    base = make_link("gaussian", SHAPE, "1/4", "rayleigh", 10.0, csi="estimated", n_pilots=2)
    x = images()
    plain, truth = base.transmit(x, generator=gen(1), return_truth=True)
    pn = impairment("phase-noise", linewidth_ts=1e-2, modelled=True)
    rx = with_impairments(base, pn).transmit(x, generator=gen(1))
    g = gen(1)
    for shape in ((3, 1, 2), (3, base.k, 2), (3, 1, 2, 2)):                       # replay: gains, noise, pilots
        torch.randn(*shape, generator=g)
    theta = wiener_phase((3, base.k), 1e-2, g)
    assert torch.allclose(rx.y, plain.y * torch.exp(1j * theta), atol=1e-5)
    assert torch.allclose(rx.h_hat, plain.h_hat * torch.exp(1j * theta), atol=1e-5)
    off = with_impairments(base, impairment("phase-noise", linewidth_ts=1e-2)).transmit(x, generator=gen(1))
    assert torch.equal(off.h_hat, plain.h_hat)                                    # unmodelled: CSI untouched
    blind = make_link("gaussian", SHAPE, "1/4", "rayleigh", 10.0, csi="none")
    with pytest.raises(DiffcommError, match="csi 'none'") as info:
        with_impairments(blind, pn)
    assert "\n" not in str(info.value)


def test_adc_full_scale_follows_the_agc_and_a_fixed_full_scale_is_kept():
    link = with_impairments(make_link("gaussian", SHAPE, "1/4", "rayleigh", 10.0), impairment("adc", bits=3))
    rx = link.transmit(images(), generator=gen(1))
    fs = link.stages[0].full_scale(rx.h_hat, None, link.n0, rx.batch)
    want = 3.0 * ((rx.h_hat.abs().pow(2).mean(1) + link.n0) / 2).sqrt()
    assert torch.allclose(fs, want)
    levels = adc_levels(3, 1.0)
    for i in range(rx.batch):
        assert set(torch.unique(rx.y[i].real / fs[i]).round(decimals=4).tolist()) <= set(levels.round(decimals=4)
                                                                                           .tolist())
    fixed = with_impairments(make_link("gaussian", SHAPE, "1/4", "awgn", 10.0), impairment("adc", bits=2,
                                                                                             full_scale=0.5))
    y = fixed.transmit(images(), generator=gen(1)).y
    assert set(torch.unique(y.real).tolist()) <= set(adc_levels(2, 0.5).float().tolist())


def test_gradients_flow_through_every_modelled_stage_of_the_operator():
    x = images().requires_grad_()
    for st in STAGES:
        link = with_impairments(make_link("gaussian", SHAPE, "1/4", "rayleigh", 10.0),
                                impairment(st.kind, modelled=True, **st.params))
        rx = link.transmit(x.detach(), generator=gen(1))
        loss = (rx.y - link.operator(rx)(x)).abs().pow(2).sum()
        (g,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(g).all() and g.abs().sum() > 0, st.kind


def test_linear_receivers_refuse_a_modelled_nonlinear_stage_and_accept_an_unmodelled_one():
    from diffcomm.pipeline import decode

    base = make_link("downsample", (1, 28, 28), "1/16", "rayleigh", 10.0)
    x = torch.rand(2, 1, 28, 28, generator=gen(0))
    bad = with_impairments(base, impairment("clip", ratio=0.8, modelled=True))
    with pytest.raises(DiffcommError, match="linear") as info:
        decode("pinv", bad, bad.transmit(x, generator=gen(1)))
    assert "\n" not in str(info.value)
    ok = with_impairments(base, impairment("clip", ratio=0.8))
    assert decode("pinv", ok, ok.transmit(x, generator=gen(1))).x_hat.shape == x.shape


def test_end_to_end_deepjscc_and_dps_with_a_modelled_clipping_stage():
    from diffcomm.metrics import psnr
    from diffcomm.pipeline import build_link, decode

    x = torch.rand(2, 1, 28, 28, generator=gen(0)).round()
    link = with_impairments(build_link("deepjscc", (1, 28, 28), "1/16", "rayleigh", 10.0),
                            impairment("clip", ratio=0.8, modelled=True))
    rx = link.transmit(x, generator=gen(1))
    assert link.kind == "jscc"
    for res in (decode("deepjscc", link, rx), decode("dps", link, rx, generator=gen(2), steps=3)):
        assert res.x_hat.shape == x.shape and torch.isfinite(res.x_hat).all()
        assert torch.isfinite(psnr(res.x_hat, x)).all()
