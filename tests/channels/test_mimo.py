"""MIMO channel: layout and channel uses, Kronecker correlation, ZF/MMSE/none front ends, SVD precoding,
pilots, the link's mixing operator (exact against the raw-signal Gaussian posterior), errors, end to end."""

import math

import pytest
import torch

from diffcomm.channels import complex_to_real, equalize_mmse, equalize_zf, make_channel
from diffcomm.channels.mimo import MIMOChannel, exp_correlation, front_end, mimo_pilots, post_detection_sinr
from diffcomm.errors import DiffcommError
from diffcomm.link import MixingOperator, Received, make_link


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def symbols(b, k, seed=1, dtype=torch.complex64):
    return torch.randn(b, k, dtype=dtype, generator=gen(seed))


def qpsk(shape, seed=1):
    bits = torch.randint(0, 2, (*shape, 2), generator=gen(seed)).double()
    return torch.complex(1 - 2 * bits[..., 0], 1 - 2 * bits[..., 1]) / math.sqrt(2)


def test_registered_layout_and_channel_uses():
    ch = make_channel("mimo", n_t=2, n_r=2)
    assert isinstance(ch, MIMOChannel) and ch.config()["detector"] == "mmse"
    h = ch.generate(3, 49, gen(0))
    assert h.shape == (3, 25, 2, 2) and h.dtype == torch.complex64
    assert torch.equal(h[:, :1].expand_as(h), h)                      # one H per frame by default
    assert ch.uses(49) == 25 and ch.extra_uses(49) == -24
    link = make_link("gaussian", (1, 28, 28), "1/16", ch, 10.0)
    assert link.k == 49 and link.channel_uses == 25 and link.cbr == 49 / 784
    est = make_link("gaussian", (1, 28, 28), "1/16", make_channel("mimo", coherence=10), 10.0, csi="estimated",
                    n_pilots=2)
    assert est.blocks == 3 and est.pilots_used == 6 and est.channel_uses == 25 + 6
    four = make_channel("mimo", n_t=4, n_r=4)
    assert four.uses(49) == 13 and make_link("gaussian", (1, 28, 28), "1/16", four, 10.0).channel_uses == 13
    fast = make_channel("mimo", coherence=1).generate(2, 10, gen(0))
    assert not torch.allclose(fast[:, 0], fast[:, 1])


def test_kronecker_correlation_matches_sionna_and_second_moments():
    from sionna.phy.channel import KroneckerModel, exp_corr_mat

    ch = MIMOChannel(n_t=2, n_r=3, correlation=0.6, rx_correlation=0.3)
    assert torch.allclose(exp_correlation(0.6, 2), exp_corr_mat(0.6, 2, precision="double").real)
    assert torch.allclose(exp_correlation(0.3, 3), exp_corr_mat(0.3, 3, precision="double").real)
    w = symbols(5, 6, dtype=torch.complex128).reshape(5, 3, 2)
    kron = KroneckerModel(exp_corr_mat(0.6, 2, precision="double"), exp_corr_mat(0.3, 3, precision="double"),
                          precision="double", device="cpu")
    assert torch.allclose(ch.correlate(w), kron(w), atol=1e-12)
    h = ch.generate(40000, 2, gen(1))[:, 0].to(torch.complex128).reshape(40000, 6)      # row-major vec(H)
    emp = (h.T @ h.conj()) / h.shape[0]                                                  # E[vec vecᴴ]
    want = ch.lmmse_covariance().to(torch.complex128)
    assert torch.allclose(emp, want, atol=0.03), (emp - want).abs().max()


@pytest.mark.parametrize("n_t,n_r,rho", [(2, 2, 0.0), (2, 4, 0.7), (3, 3, 0.5), (1, 2, 0.0)])
@pytest.mark.parametrize("precoding", ["none", "svd"])
def test_zf_on_a_noiseless_channel_is_exact(n_t, n_r, rho, precoding):
    ch = MIMOChannel(n_t=n_t, n_r=n_r, correlation=rho, detector="zf", precoding=precoding)
    k = 3 * n_t + 1                                                   # a part-filled last use
    h = ch.generate(4, k, gen(0)).to(torch.complex128)
    z = symbols(4, k, dtype=torch.complex128)
    y, h_hat, mixing = ch.detect(ch.propagate(z, h, 0.0), h, 0.0, k)
    assert mixing is None and y.shape == (4, k)
    s_hat, _ = equalize_zf(y, h_hat)
    assert torch.allclose(s_hat, z, atol=1e-10)


@pytest.mark.parametrize("rho", [0.0, 0.8])
def test_mmse_sinr_matches_the_closed_form_and_sionna(rho):
    """Per-stream SINR of the MMSE detector on fixed H: the closed form 1/(N0 [(GᴴG + N0 I)⁻¹]_ii) − 1 equals
    Sionna's 1/no_eff and the flat-equivalent gain h_i²/N0, and the Monte-Carlo SINR of the detector
    output (signal β_i², residual E|ŝ_i − β_i s_i|²) matches it within 5 standard errors."""
    from sionna.phy.mimo import lmmse_equalizer, zf_equalizer

    ch = MIMOChannel(n_t=2, n_r=3, correlation=rho, detector="mmse")
    n0, trials = 0.2, 20000
    h = ch.generate(3, 2, gen(0)).to(torch.complex128)[:, :1]                     # 3 fixed channels (3, 1, 3, 2)
    sinr = post_detection_sinr(h, n0, "mmse")[:, 0]                               # (3, 2)
    _, m = front_end(h, n0, "mmse")
    gain = torch.diagonal(m, dim1=-2, dim2=-1)[:, 0].real
    assert torch.allclose(gain ** 2 / n0, sinr, rtol=1e-10)
    s_eye = n0 * torch.eye(3, dtype=torch.complex128)
    _, no_eff = lmmse_equalizer(torch.zeros(3, 3, dtype=torch.complex128), h[:, 0], s_eye, precision="double")
    assert torch.allclose(1 / no_eff, sinr, rtol=1e-8)
    _, no_zf = zf_equalizer(torch.zeros(3, 3, dtype=torch.complex128), h[:, 0], s_eye, precision="double")
    assert torch.allclose(1 / no_zf, post_detection_sinr(h, n0, "zf")[:, 0], rtol=1e-8)
    s = qpsk((3, trials * 2), seed=2)
    hh = h.expand(3, trials, 3, 2)
    y, h_hat, _ = ch.detect(ch.propagate(s, hh, n0, gen(3)), hh, n0)
    s_hat, _ = equalize_mmse(y, h_hat, n0)                                        # = the MIMO-MMSE estimate
    beta = (h_hat.real ** 2 / (h_hat.real ** 2 + n0))
    err = (s_hat - beta * s).abs().pow(2).reshape(3, trials, 2)
    beta = beta.reshape(3, trials, 2)[:, 0]
    emp = beta ** 2 / err.mean(1)
    se = emp * err.std(1) / err.mean(1) / math.sqrt(trials)
    assert ((emp - sinr).abs() < 5 * se).all(), (emp, sinr)


def test_mmse_flat_equivalent_gives_the_mimo_mmse_estimate():
    """equalize_mmse(y, h_hat) on the flat-equivalent streams (what the DeepJSCC decoder does) is exactly
    the MIMO-MMSE estimate (GᴴG + N0 I)⁻¹ Gᴴ y_raw."""
    ch = MIMOChannel(n_t=2, n_r=2, correlation=0.5, detector="mmse")
    n0 = 0.1
    h = ch.generate(4, 20, gen(0)).to(torch.complex128)
    z = symbols(4, 20, dtype=torch.complex128)
    raw = ch.propagate(z, h, n0, gen(1))
    y, h_hat, _ = ch.detect(raw, h, n0, 20)
    s_hat, _ = equalize_mmse(y, h_hat, n0)
    w = torch.linalg.inv(h.mH @ h + n0 * torch.eye(2, dtype=h.dtype)) @ h.mH
    want = (w @ raw[..., None]).squeeze(-1).reshape(4, 20)
    assert torch.allclose(s_hat, want, atol=1e-10)


def test_detector_none_keeps_white_noise_and_the_triangular_mixing():
    ch = MIMOChannel(n_t=2, n_r=4, correlation=0.5, detector="none")
    n0 = 0.3
    h = ch.generate(1, 2, gen(0)).expand(20000, -1, -1, -1).contiguous()
    z = torch.zeros(20000, 2, dtype=torch.complex64)
    y, h_hat, m = ch.detect(ch.propagate(z, h, n0, gen(1)), h, n0, 2)
    cov = (y.T.to(torch.complex128) @ y.conj().to(torch.complex128)) / y.shape[0]
    assert torch.allclose(cov, n0 * torch.eye(2, dtype=cov.dtype), atol=0.015)   # Qᴴ n ~ CN(0, N0 I)
    assert m.shape == (20000, 1, 2, 2) and m[0, 0, 1, 0].abs() < 1e-6 and (torch.diagonal(m[0, 0]).real > 0).all()
    assert torch.allclose(h_hat[0], torch.diagonal(m[0, 0]))
    g = h[0, 0].to(torch.complex128)
    assert torch.allclose(m[0, 0].mH.to(torch.complex128) @ m[0, 0].to(torch.complex128), g.mH @ g, atol=1e-5)


def test_svd_precoding_gives_parallel_streams_with_the_singular_values():
    ch = MIMOChannel(n_t=2, n_r=3, detector="mmse", precoding="svd")
    h = ch.generate(5, 8, gen(0))
    z = symbols(5, 8)
    y, h_hat, mixing = ch.detect(ch.propagate(z, h, 0.0), h, 0.0, 8)
    sv = torch.linalg.svdvals(h[:, 0].to(torch.complex128))                        # (5, 2)
    assert mixing is None
    assert torch.allclose(h_hat.real.reshape(5, 4, 2).double(), sv[:, None].expand(5, 4, 2), atol=1e-5)
    assert torch.allclose(y, h_hat * z, atol=1e-5)


def test_link_operator_is_the_mixing_and_lmmse_is_the_exact_raw_signal_posterior():
    """Over a 2×3 MIMO link with detector 'none', the link's operator is the true mixing (op(x) = matrix · x,
    not the diagonal), and the LMMSE receiver on the front end's output equals the Gaussian posterior mean
    computed from the *raw* n_r-antenna signal y_raw = H (g E x) + n (Qᴴ is a sufficient statistic)."""
    from diffcomm.receivers.linear import gaussian_posterior, lmmse_estimate

    ch = MIMOChannel(n_t=2, n_r=3, correlation=0.4, detector="none")
    link = make_link("gaussian", (1, 6, 6), "1/4", ch, 5.0)
    x = torch.rand(3, 1, 6, 6, generator=gen(0))
    z = link.encoder(x).to(torch.complex64)
    from diffcomm.channels import normalize_power
    s, gain = normalize_power(z)
    h = ch.generate(3, link.k, gen(1))
    raw = ch.propagate(s, h, link.n0, gen(2))
    y, h_hat, mixing = ch.detect(raw, h, link.n0, link.k)
    rx = Received(y=y, h_hat=h_hat, n0=link.n0, gain=gain, pilots_used=0, mixing=mixing)
    op = link.operator(rx)
    assert isinstance(op, MixingOperator)
    xt = torch.rand(3, 1, 6, 6, generator=gen(3))
    want_ax = (op.matrix(torch.float64) @ xt.flatten(1).double()[..., None]).squeeze(-1)
    assert torch.allclose(complex_to_real(op(xt)).double(), want_ax, atol=1e-5)
    diag_only = link.operator(rx, h=h_hat)                             # the diagonal approximation differs
    assert (op(xt) - diag_only(xt)).abs().max() > 0.05
    # the raw-signal model: y_raw_u = H_u (g E x)_u + n, per use, n ~ CN(0, N0 I_3)
    e = link.encoder.matrix.double().reshape(link.k, 2, link.n)
    e_c = torch.complex(e[:, 0], e[:, 1])                              # (k, n)
    u = ch.uses(link.k)
    e_pad = torch.cat([e_c, e_c.new_zeros(u * 2 - link.k, link.n)]).reshape(u, 2, link.n)
    a_raw = (h.to(torch.complex128) @ e_pad[None]).reshape(3, u * 3, link.n) * gain.double().reshape(-1, 1, 1)
    a_real = torch.stack([a_raw.real, a_raw.imag], dim=2).reshape(3, 2 * u * 3, link.n)
    mean, var = torch.full((link.n,), 0.5, dtype=torch.float64), 0.08
    want, _ = gaussian_posterior(a_real, complex_to_real(raw.reshape(3, -1).to(torch.complex128)), link.n0 / 2,
                                 mean, var)
    got = lmmse_estimate(link, rx, mean.float(), var)
    assert torch.allclose(got.flatten(1).double(), want.clamp(0, 1), atol=2e-4)


@pytest.mark.parametrize("rho,estimator", [(0.0, "ls"), (0.0, "lmmse"), (0.7, "lmmse")])
def test_pilot_estimation_error_matches_theory(rho, estimator):
    ch = MIMOChannel(n_t=2, n_r=2, correlation=rho)
    p = mimo_pilots(2, 3)
    assert torch.allclose(p @ p.mH, 3 * torch.eye(2, dtype=p.dtype), atol=1e-5)
    n0, n_p = 0.2, 3
    h = ch.generate(20000, 4, gen(0))
    est, y_p, pilots = ch.estimate_csi(h, 4, n0, n_p, estimator, gen(1))
    assert est.shape == h.shape and y_p.shape == (20000, 1, 2, 3) and pilots.shape == (2, 3)
    err = (est - h).abs().pow(2)[:, 0].double()
    if estimator == "ls":
        want = n0 / n_p
    else:
        c = ch.lmmse_covariance()
        want = float(torch.trace(c - c @ torch.linalg.inv(c + n0 / n_p * torch.eye(4, dtype=c.dtype)) @ c)) / 4
        if rho == 0:
            assert want == pytest.approx(n0 / (n_p + n0))
        else:
            assert want < n0 / (n_p + n0)                             # the correlated prior helps
    se = float(err.mean(dim=(1, 2)).std()) / math.sqrt(err.shape[0])
    assert abs(float(err.mean()) - want) < 5 * se, (float(err.mean()), want)


def test_link_csi_modes_and_truth():
    link = make_link("gaussian", (1, 8, 8), "1/4", make_channel("mimo", detector="mmse"), 10.0)
    x = torch.rand(2, 1, 8, 8, generator=gen(0))
    rx, truth = link.transmit(x, generator=gen(1), return_truth=True)
    assert truth.h.shape == (2, 8, 2, 2) and rx.mixing.shape == (2, 8, 2, 2) and rx.h_hat.shape == (2, 16)
    assert torch.allclose(rx.h_hat, torch.diagonal(rx.mixing, dim1=-2, dim2=-1).reshape(2, 16))
    again = link.transmit(x, generator=gen(1))
    assert torch.equal(again.y, rx.y)
    est = make_link("gaussian", (1, 8, 8), "1/4", make_channel("mimo"), 10.0, csi="estimated", n_pilots=2)
    rx_e = est.transmit(x, generator=gen(1))
    assert rx_e.y_pilot.shape == (2, 1, 2, 2) and rx_e.mixing is not None and rx_e.pilots_used == 2


@pytest.mark.parametrize("kw,msg", [
    (dict(n_t=2, n_r=1, detector="zf"), "n_r >= n_t"), (dict(n_t=4, n_r=2), "n_r >= n_t"),
    (dict(n_t=0), "n_t"), (dict(detector="ml"), "detector"), (dict(precoding="zf"), "precoding"),
    (dict(correlation=1.0), "correlation"), (dict(rx_correlation=-0.1), "rx_correlation"),
    (dict(coherence=0), "coherence"), (dict(correlation="high"), "correlation"),
])
def test_bad_parameters_one_line_errors(kw, msg):
    with pytest.raises(DiffcommError, match=msg) as info:
        make_channel("mimo", **kw)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("ch_kw,link_kw,msg", [
    ({}, dict(csi="none"), "csi 'none'"),
    (dict(precoding="svd"), dict(csi="estimated", n_pilots=2), "perfect CSI"),
    ({}, dict(csi="estimated", n_pilots=1), "n_pilots >= n_t"),
])
def test_link_refusals_one_line(ch_kw, link_kw, msg):
    with pytest.raises(DiffcommError, match=msg) as info:
        make_link("gaussian", (1, 8, 8), "1/4", make_channel("mimo", **ch_kw), 10.0, **link_kw)
    assert "\n" not in str(info.value)


def test_gradients_through_the_chain_and_the_operator():
    ch = MIMOChannel(n_t=2, n_r=3, correlation=0.3, detector="mmse")
    h = ch.generate(2, 5, gen(0)).to(torch.complex128)
    z = symbols(2, 5, dtype=torch.complex128).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: ch.apply(v, h, 0.1, gen(5)), (z,))     # same noise each call
    link = make_link("gaussian", (1, 4, 4), "1/4", ch, 10.0)
    rx = link.transmit(torch.rand(2, 1, 4, 4, generator=gen(1)), generator=gen(2))
    op = link.operator(rx)
    s = symbols(2, link.k, dtype=torch.complex128).requires_grad_()
    assert torch.autograd.gradcheck(op.propagate, (s,))


def test_end_to_end_deepjscc_and_dps_over_2x2():
    from diffcomm.metrics import psnr
    from diffcomm.pipeline import build_link, decode

    x = torch.rand(2, 1, 28, 28, generator=gen(0)).round()
    for detector in ("zf", "mmse"):
        link = build_link("deepjscc", (1, 28, 28), "1/16", make_channel("mimo", detector=detector), 10.0)
        rx = link.transmit(x, generator=gen(1))
        assert link.channel_uses == 25 and (rx.mixing is None) == (detector == "zf")
        for res in (decode("deepjscc", link, rx), decode("dps", link, rx, generator=gen(2), steps=3)):
            assert res.x_hat.shape == x.shape and torch.isfinite(res.x_hat).all()
            assert torch.isfinite(psnr(res.x_hat, x)).all()
