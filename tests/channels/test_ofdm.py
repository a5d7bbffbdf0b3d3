"""OFDM channel: grid, CP/ISI, profiles, pilots, equalisation, Sionna cross-check, link accounting, end to end."""

import math

import pytest
import torch

from diffcomm.channels import equalize_mmse, equalize_zf, make_channel
from diffcomm.channels.ofdm import OFDMChannel, estimate_ofdm_channel, interpolate_subcarriers
from diffcomm.errors import DiffcommError


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def symbols(b, k, seed=1, dtype=torch.complex64):
    return torch.randn(b, k, dtype=dtype, generator=gen(seed))


def test_registered_and_config():
    ch = make_channel("ofdm", fft_size=16, cp_length=4, delay_spread=1.0)
    assert isinstance(ch, OFDMChannel) and ch.config()["n_taps"] == 5 and ch.memory == 4
    assert make_channel("ofdm", profile="tdl-c").profile == "C"


def test_one_tap_equals_flat_rayleigh():
    ofdm = make_channel("ofdm", fft_size=8, cp_length=0, delay_spread=0.0)
    ray = make_channel("rayleigh")
    h_o, h_r = ofdm.generate(4, 21, gen(3)), ray.generate(4, 21, gen(3))
    assert torch.equal(h_o, h_r)                                   # same draws, one gain per frame
    z = symbols(4, 21)
    assert torch.allclose(ofdm.apply(z, h_o, 0.0), ray.apply(z, h_r, 0.0), atol=1e-6)
    # noise: CN(0, N0) per data RE
    z = symbols(2000, 21)
    h = ofdm.generate(2000, 21, gen(4))
    e = ofdm.apply(z, h, 0.1, gen(5)) - h * z
    assert abs(e.abs().pow(2).mean().item() - 0.1) < 5 * 0.1 / math.sqrt(e.numel())
    assert abs(e.real.pow(2).mean().item() - 0.05) < 0.002 and abs((e.real * e.imag).mean().item()) < 0.002


@pytest.mark.parametrize("kw", [dict(delay_spread=2.0, n_taps=7), dict(profile="C", delay_spread=300e-9),
                                dict(profile="E", delay_spread=100e-9), dict(delay_spread=1.0, coherence=2)])
@pytest.mark.parametrize("k", [16, 49, 100])
def test_long_cp_no_isi_exact(kw, k):
    ch = OFDMChannel(fft_size=16, cp_length=16, **kw)
    assert ch.cp_length >= ch.memory
    h = ch.generate(3, k, gen(0))
    z = symbols(3, k)
    assert torch.allclose(ch.apply(z, h, 0.0), h * z, atol=2e-6)
    # a copy of the gains (not the object generate returned) -> taps fitted from the gains, same output
    # (fitting needs >= n_taps subcarriers of data in every block: refused for the 4-RE last block of k=100, c=2)
    if kw.get("coherence") and k % 32 and k % 32 < ch.n_taps:
        with pytest.raises(DiffcommError, match="fewer than"):
            ch.apply(z, h.clone(), 0.0)
    else:
        assert torch.allclose(ch.apply(z, h.clone(), 0.0), h * z, atol=2e-5)


def test_taps_from_gains_recovers_taps():
    ch = OFDMChannel(fft_size=16, cp_length=8, delay_spread=1.5, coherence=2)
    h = ch.generate(2, 80, gen(0))
    assert torch.allclose(ch.taps_from_gains(h.clone()), ch.last_draw.taps, atol=1e-5)
    with pytest.raises(DiffcommError, match="fewer than"):
        ch.taps_from_gains(h[:, :3].clone())


def test_short_cp_creates_isi_growing_as_cp_shrinks():
    base = OFDMChannel(fft_size=16, cp_length=7, delay_spread=3.0, n_taps=8)
    h = base.generate(1, 64, gen(0))
    taps = base.last_draw.taps.expand(256, -1, -1)
    z = symbols(256, 64)
    hz = h * z
    resid = []
    for cp in (7, 5, 3, 1, 0):
        ch = OFDMChannel(fft_size=16, cp_length=cp, delay_spread=3.0, n_taps=8)
        resid.append((ch.apply(z, h.expand(256, -1), 0.0, taps=taps) - hz).abs().pow(2).mean().item())
    assert resid[0] < 1e-10
    assert all(b > a for a, b in zip(resid, resid[1:])) and resid[-1] > 1e-3


def test_power_normalisation_unit_per_subcarrier():
    for kw in (dict(delay_spread=3.0), dict(profile="A", delay_spread=300e-9), dict(profile="D", delay_spread=300e-9)):
        ch = OFDMChannel(fft_size=32, cp_length=8, **kw)
        assert abs(ch.power_delay_profile.sum().item() - 1) < 1e-9
        h = ch.generate(20000, 32, gen(1))
        p = h.abs().pow(2).mean(0)                                 # per subcarrier
        if ch.profile == "exponential":                            # independent taps: E|H_f|² = 1 on every subcarrier
            assert torch.allclose(p, torch.ones_like(p), atol=0.06), kw
        else:                                                      # sinc taps: 1 on average (band-edge ripple)
            assert abs(p.mean().item() - 1) < 0.03, kw


def test_differentiable_in_z():
    ch = OFDMChannel(fft_size=4, cp_length=1, delay_spread=1.0, n_taps=3)     # short CP: ISI included
    h = ch.generate(2, 7, gen(0))
    taps = ch.last_draw.taps.to(torch.complex128)
    z = symbols(2, 7, dtype=torch.complex128).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: ch.apply(v, h, 0.0, taps=taps), (z,))


def test_equalisation_per_subcarrier():
    ch = OFDMChannel(fft_size=16, cp_length=4, delay_spread=1.0)
    h = ch.generate(4000, 40, gen(0))
    z = torch.polar(torch.ones(4000, 40), torch.rand(4000, 40, generator=gen(1)) * 6.283)
    s_zf, _ = equalize_zf(ch.apply(z, h, 0.0), h)
    assert torch.allclose(s_zf, z, atol=1e-3)
    n0 = 0.2
    y = ch.apply(z, h, n0, gen(2))
    s_mmse, var = equalize_mmse(y, h, n0)
    err = (s_mmse - z).abs().pow(2)
    tol = 0.02 * var.mean().item() + 5 * err.std().item() / err.numel() ** .5
    assert abs(err.mean().item() - var.mean().item()) < tol


@pytest.mark.parametrize("estimator", ["ls", "lmmse"])
@pytest.mark.parametrize("n_symbols,power", [(1, 1.0), (2, 2.0)])
def test_block_pilot_mse_matches_theory(estimator, n_symbols, power):
    ch = OFDMChannel(fft_size=16, cp_length=4, delay_spread=1.0)
    b, n0 = 4000, 0.1
    h = ch.generate(b, 16, gen(0))
    est = estimate_ofdm_channel(ch, ch.last_draw.taps, 16, n0, n_symbols=n_symbols, pilot_power=power,
                                estimator=estimator, generator=gen(1))
    err = (est.h_hat - h).abs().pow(2)                             # (B, 16): one subcarrier per column
    ep = n_symbols * power
    theory = n0 / ep if estimator == "ls" else n0 / (ep + n0)
    mse = err.mean(0)
    tol = 5 * theory / math.sqrt(b)                                # |e|² ~ exponential: std = mean
    assert torch.all((mse - theory).abs() < tol), (mse, theory)
    assert est.pilot_res == 16 * n_symbols and est.channel_uses == 20 * n_symbols


def test_comb_pilots_and_interpolation():
    f = torch.arange(0, 16, 4)
    lin = (0.3 + 0.1j) * torch.arange(16) + 1
    assert torch.allclose(interpolate_subcarriers(lin[f][None], f, 16)[0, :13], lin[:13].to(torch.complex64))
    ch = OFDMChannel(fft_size=64, cp_length=8, delay_spread=0.5, n_taps=3, coherence=1)
    h = ch.generate(200, 128, gen(0))
    est = estimate_ofdm_channel(ch, ch.last_draw.taps, 128, 0.0, pattern="comb", spacing=4, generator=gen(1))
    assert est.pilot_res == 2 * 16 and est.channel_uses == 2 * 72
    assert torch.allclose(est.h_hat[:, :64:4], h[:, :64:4], atol=1e-5)   # exact on the pilot subcarriers
    rel = (est.h_hat - h).abs().pow(2).mean() / h.abs().pow(2).mean()
    assert rel < 0.02                                               # a smooth response interpolates well
    noisy = estimate_ofdm_channel(ch, ch.last_draw.taps, 128, 0.5, pattern="comb", estimator="lmmse", generator=gen(2))
    assert noisy.h_hat.shape == (200, 128)


def test_sionna_ofdm_modulator_time_channel_demodulator_match():
    pytest.importorskip("sionna")
    from sionna.phy.channel import ApplyTimeChannel
    from sionna.phy.ofdm import OFDMDemodulator, OFDMModulator

    n, cp, k, b = 16, 3, 70, 3
    ch = OFDMChannel(fft_size=n, cp_length=cp, delay_spread=2.0, n_taps=6)          # CP < memory: ISI too
    h = ch.generate(b, k, gen(0))
    taps = ch.last_draw.taps[:, 0]                                                   # (B, L)
    z = symbols(b, k)
    ours = ch.apply(z, h, 0.0)
    s = ch.n_symbols(k)
    grid = torch.cat([z, z.new_zeros(b, s * n - k)], 1).reshape(b, s, n)
    x = OFDMModulator(cp, precision="single", device="cpu")(torch.fft.fftshift(grid, dim=-1))    # (B, T)
    t, length = x.shape[-1], taps.shape[-1]
    h_time = taps[:, None, None, None, None, None, :].expand(b, 1, 1, 1, 1, t + length - 1, length)
    y = ApplyTimeChannel(t, length, precision="single", device="cpu")(x[:, None, None], h_time.contiguous())
    rx = OFDMDemodulator(n, 0, cp, precision="single", device="cpu")(y[:, 0, 0])
    theirs = torch.fft.ifftshift(rx, dim=-1).reshape(b, s * n)[:, :k]
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_sionna_frequency_response_and_tdl_taps_match():
    pytest.importorskip("sionna")
    from sionna.phy.channel import cir_to_ofdm_channel, cir_to_time_channel, subcarrier_frequencies

    ch = OFDMChannel(fft_size=32, cp_length=8, profile="C", delay_spread=300e-9, subcarrier_spacing=30e3)
    paths = ch.draw_paths(2, 1, gen(0))                                             # (B, 1, M)
    a = paths[:, None, None, None, None, 0, :, None].to(torch.complex64)            # (B,1,1,1,1,M,1)
    tau = ch._tdl_delays[None, None, None, :].expand(2, 1, 1, -1).to(torch.float32)
    theirs = cir_to_time_channel(ch.sample_rate, a, tau, 0, ch.n_taps - 1)[:, 0, 0, 0, 0, 0] * ch._tap_scale
    ours = ch._sinc_taps(paths)[:, 0]
    assert torch.allclose(ours, theirs, atol=1e-5)
    # frequency response of the discrete taps = Sionna's OFDM response of paths at delays l / fs
    lags_tau = (torch.arange(ch.n_taps) / ch.sample_rate)[None, None, None, :].expand(2, 1, 1, -1).float()
    freqs = subcarrier_frequencies(32, 30e3, precision="single", device="cpu")
    h_sionna = cir_to_ofdm_channel(freqs, ours[:, None, None, None, None, :, None], lags_tau)[:, 0, 0, 0, 0, 0]
    h_ours = torch.fft.fftshift(ch.frequency_response(ours[:, None], 32), dim=-1)
    assert torch.allclose(h_ours, h_sionna, atol=1e-5)


@pytest.mark.parametrize("kw,msg", [
    (dict(fft_size=0), "fft_size"), (dict(cp_length=-1), "cp_length"), (dict(fft_size=8, cp_length=9), "longer than"),
    (dict(delay_spread=-1.0), "delay_spread"), (dict(n_taps=0), "n_taps"),
    (dict(fft_size=8, cp_length=2, n_taps=9), "n_taps"),
    (dict(profile="F"), "unknown profile"), (dict(profile="A", delay_spread=3.0), "seconds"),
    (dict(subcarrier_spacing=0), "subcarrier_spacing"), (dict(coherence=0), "coherence"),
])
def test_bad_parameters_one_line_errors(kw, msg):
    with pytest.raises(DiffcommError, match=msg) as info:
        make_channel("ofdm", **kw)
    assert "\n" not in str(info.value)


def test_link_bandwidth_accounting_and_pilot_refusal():
    from diffcomm.link import make_link

    ch = make_channel("ofdm", fft_size=16, cp_length=4, delay_spread=1.0)
    link = make_link("gaussian", (1, 28, 28), "1/16", ch, 10.0)
    assert link.k == 49 and link.extra_uses == 4 * 20 - 49 and link.channel_uses == 80
    assert link.cbr == 49 / 784 and link.config()["extra_uses"] == 31
    charged = make_link("gaussian", (1, 28, 28), "1/16", ch, 10.0, pilots_in_budget=True)
    assert charged.cbr == 80 / 784
    assert make_link("gaussian", (1, 28, 28), "1/16", "rayleigh", 10.0).extra_uses == 0
    rx = link.transmit(torch.rand(2, 1, 28, 28), generator=gen(0))
    assert rx.y.shape == (2, 49)


def test_link_estimated_csi_on_ofdm_sends_block_pilot_symbols_and_charges_them():
    """csi='estimated' on an OFDM link: n_pilots block-pilot OFDM symbols (with CP) per CIR block,
    LS per subcarrier; the error variance is N0 / n_pilots (unit-power pilots), checked at 4 sd."""
    from diffcomm.link import make_link

    ch = make_channel("ofdm", fft_size=16, cp_length=4, delay_spread=1.0)
    x = torch.rand(500, 1, 28, 28, generator=gen(1))
    for n_pilots in (1, 4):
        link = make_link("gaussian", (1, 28, 28), "1/16", ch, 10.0, csi="estimated", n_pilots=n_pilots,
                         pilot_estimator="ls")
        assert link.pilots_used == n_pilots * 20 and link.channel_uses == 80 + n_pilots * 20
        rx, truth = link.transmit(x, generator=gen(2), return_truth=True)
        err = (rx.h_hat - truth.h).abs().pow(2).double()
        want = link.n0 / n_pilots
        sd = float(err.std()) / err.numel() ** 0.5
        assert abs(float(err.mean()) - want) < 4 * sd + 1e-9, (n_pilots, float(err.mean()), want)


def test_end_to_end_deepjscc_and_dps():
    from diffcomm.pipeline import build_link, decode, score
    ch = make_channel("ofdm", fft_size=16, cp_length=4, delay_spread=1.0)
    link = build_link("deepjscc", (1, 28, 28), "1/16", ch, 10.0)
    x = torch.rand(2, 1, 28, 28, generator=gen(0)).round()
    rx, truth = link.transmit(x, generator=gen(1), return_truth=True)
    assert torch.equal(rx.h_hat, truth.h) and link.channel_uses == 80
    jscc = decode("deepjscc", link, rx)
    dps = decode("dps", link, rx, generator=gen(2), steps=3)
    for res in (jscc, dps):
        assert res.x_hat.shape == x.shape and torch.isfinite(res.x_hat).all()
        assert torch.isfinite(score(x, res.x_hat)["psnr"]).all()


# ---- the whole-frame operator (ISI-aware receivers) ---------------------------------------------------------------
TDL_A = {"profile": "A", "delay_spread": 3e-7, "fft_size": 32, "subcarrier_spacing": 60e3}


@pytest.mark.parametrize("cp, coherence", [(2, None), (0, None), (2, 1)])
def test_frame_matrix_is_the_noiseless_frame_exactly(cp, coherence):
    ch = make_channel("ofdm", cp_length=cp, coherence=coherence, **TDL_A)
    h = ch.generate(3, 49, gen(4))
    z = symbols(3, 49)
    t = ch.frame_matrix(ch.last_draw.taps, 49)
    assert t.shape == (3, 49, 49)
    assert torch.allclose((t @ z[..., None]).squeeze(-1), ch.apply(z, h, 0.0), atol=1e-5)
    off = t - torch.diag_embed(torch.diagonal(t, dim1=1, dim2=2))
    assert off.abs().max() > 1e-3                               # a short CP really mixes the REs


def test_frame_matrix_with_long_cp_is_diag_h_and_no_operator_is_handed_over():
    ch = make_channel("ofdm", cp_length=10, **TDL_A)
    h = ch.generate(2, 49, gen(5))
    assert ch.memory == 10
    assert torch.allclose(ch.frame_matrix(ch.last_draw.taps, 49), torch.diag_embed(h), atol=1e-5)
    assert ch.receiver_mixing(h, 49) is None
    assert make_channel("ofdm", cp_length=2, model_isi=False, **TDL_A).receiver_mixing(h, 49) is None


@pytest.mark.parametrize("csi", ["perfect", "estimated"])
def test_isi_aware_link_operator_explains_the_received_frame(csi):
    from diffcomm.link import MixingOperator
    from diffcomm.pipeline import build_link

    x = torch.rand(3, 1, 28, 28, generator=gen(6))
    kw = {"n_pilots": 4} if csi == "estimated" else {}
    link = build_link("gaussian", (1, 28, 28), "1/16", make_channel("ofdm", cp_length=0, **TDL_A), 100.0, csi=csi,
                      **kw)
    rx = link.transmit(x, generator=gen(7))
    op = link.operator(rx)
    assert isinstance(op, MixingOperator) and rx.mixing.shape == (3, 1, 49, 49)
    resid = (rx.y - op(x)).abs().pow(2).mean() / rx.y.abs().pow(2).mean()
    diag = (rx.y - rx.h_hat * rx.gain[:, None] * link.encoder(x)).abs().pow(2).mean() / rx.y.abs().pow(2).mean()
    # perfect CSI: exact up to the 100 dB noise; pilots (which a short CP also corrupts) give taps close to the truth
    # (measured: perfect 1.5e-10 vs 0.021 for diag(ĥ); estimated 0.0036)
    assert resid < (1e-8 if csi == "perfect" else 1e-2) and diag > (100 if csi == "perfect" else 4) * resid
    m = op.matrix(torch.float64)                                 # the linear encoder's exact pseudo-inverse
    assert torch.allclose(bmv_real(m, x), torch.view_as_real(op(x)).flatten(1).double(), atol=1e-4)


def bmv_real(m, x):
    return (m @ x.flatten(1).double()[..., None]).squeeze(-1)


def test_model_isi_must_be_a_bool():
    with pytest.raises(DiffcommError, match="model_isi") as err:
        make_channel("ofdm", model_isi="yes")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kw", [{"delay_spread": 2.0}, TDL_A, {**TDL_A, "profile": "D"}])
def test_tap_covariance_matches_the_drawn_taps(kw):
    ch = make_channel("ofdm", **kw)
    cov = ch.tap_covariance
    assert torch.allclose(torch.diagonal(cov), ch.power_delay_profile, atol=1e-12)
    taps = ch.draw_taps(20000, 1, gen(8))[:, 0].to(torch.complex128)
    emp = taps.T @ taps.conj() / len(taps)                         # E[h hᴴ]
    # each entry's Monte-Carlo s.e. is at most sqrt(C_ii C_jj / n) <= 1/sqrt(n)
    assert (emp - cov).abs().max() < 5 / math.sqrt(len(taps)), float((emp - cov).abs().max())
