"""The link: power normalisation, noise level, CSI modes (pilots through the same channel), A(x), A^+."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffcomm.channels import complex_to_real, make_channel, symbols_for_cbr
from diffcomm.errors import DiffcommError
from diffcomm.link import Link, Received, make_link
from diffcomm.transmit import make_encoder

SHAPE = (1, 8, 8)


def within(estimate: float, truth: float, se: float, z: float = 5.0) -> bool:
    return abs(estimate - truth) <= z * se


def images(b: int, seed: int = 0, shape=SHAPE) -> torch.Tensor:
    return torch.rand(b, *shape, generator=torch.Generator().manual_seed(seed))


@settings(derandomize=True, max_examples=20, deadline=None)
@given(name=st.sampled_from(["gaussian", "downsample"]), channel=st.sampled_from(["awgn", "rayleigh", "rician"]),
       b=st.integers(1, 6), seed=st.integers(0, 10**6), scale=st.floats(0.01, 1.0))
def test_unit_symbol_power_and_forward(name, channel, b, seed, scale):
    link = make_link(name, SHAPE, "1/4", channel=channel, snr_db=20.0)
    x = images(b, seed) * scale
    rx, truth = link.transmit(x, generator=torch.Generator().manual_seed(seed), return_truth=True)
    assert rx.y.dtype == torch.complex64 and rx.y.shape == (b, link.k) and truth.h.shape == (b, link.k)
    assert rx.n0 == pytest.approx(0.01) and rx.pilots_used == 0 and torch.equal(rx.h_hat, truth.h)
    z = link.forward(x, rx) / truth.h                     # g E(x): the transmitted symbols
    assert torch.allclose(z.abs().pow(2).mean(1), torch.ones(b), rtol=1e-4)
    assert torch.allclose(z, truth.z, rtol=1e-4, atol=1e-5)
    e = link.encoder(x)
    assert torch.allclose(rx.gain, math.sqrt(link.k) / e.abs().pow(2).sum(1).sqrt(), rtol=1e-5)


@pytest.mark.parametrize("channel", ["awgn", "rayleigh"])
def test_noise_is_cn0_n0(channel):
    link = make_link("gaussian", SHAPE, "1/2", channel=make_channel(channel, block=False) if channel != "awgn"
                     else channel, snr_db=3.0)
    x = images(2000)
    rx = link.transmit(x, generator=torch.Generator().manual_seed(1))
    noise = (rx.y - link.forward(x, rx)).to(torch.complex128)
    for part in (noise.real.flatten(), noise.imag.flatten()):
        assert within(float(part.var()), link.n0 / 2, link.n0 / 2 * math.sqrt(2 / part.numel()))


def test_forward_is_linear_and_matches_matrix():
    link = make_link("gaussian", SHAPE, "1/4", channel="rician", snr_db=10.0)
    x1, x2 = images(3, 1), images(3, 2)
    rx = link.transmit(x1, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(link.forward(x1 + 2 * x2, rx), link.forward(x1, rx) + 2 * link.forward(x2, rx), atol=1e-5)
    m = link.matrix(rx)
    assert m.shape == (3, 2 * link.k, 64)
    assert torch.allclose(complex_to_real(link.forward(x2, rx)), (m @ x2.flatten(1)[..., None]).squeeze(-1), atol=1e-5)


def test_forward_differentiable_in_x_and_h():
    link = make_link("downsample", SHAPE, "1/4", channel="rayleigh", csi="none", snr_db=10.0)
    x = images(2)
    rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
    assert rx.h_hat is None
    with pytest.raises(DiffcommError, match="h="):
        link.forward(x, rx)
    xg = x.clone().requires_grad_(True)
    h = torch.ones(2, 1, dtype=torch.complex64, requires_grad=True)  # one gain per image, broadcast
    loss = (rx.y - link.forward(xg, rx, h=h)).abs().pow(2).sum()
    gx, gh = torch.autograd.grad(loss, (xg, h))
    assert gx.shape == x.shape and gx.abs().sum() > 0 and gh.abs().sum() > 0
    with pytest.raises(DiffcommError):
        link.forward(x, rx, h=torch.ones(2, 3, dtype=torch.complex64))


def test_received_is_detached_and_seeded():
    link = make_link("gaussian", SHAPE, "1/4", channel="rayleigh", snr_db=5.0)
    x = images(4).requires_grad_(True)
    a, ta = link.transmit(x, generator=torch.Generator().manual_seed(7), return_truth=True)
    b, tb = link.transmit(x, generator=torch.Generator().manual_seed(7), return_truth=True)
    c = link.transmit(x, generator=torch.Generator().manual_seed(8))
    assert not a.y.requires_grad and not a.gain.requires_grad
    assert not ta.h.requires_grad and not ta.z.requires_grad
    assert torch.equal(a.y, b.y) and torch.equal(ta.h, tb.h) and not torch.equal(a.y, c.y)
    assert not hasattr(a, "h")                            # the true gains are not part of what a receiver sees


def test_same_seed_same_channel_across_csi_modes():
    enc = make_encoder("gaussian", SHAPE, "1/4")
    ch = make_channel("rayleigh", coherence=4)
    x = images(3)
    rx = {csi: Link(enc, ch, 5.0, csi=csi, n_pilots=2 if csi == "estimated" else 0).transmit(
        x, generator=torch.Generator().manual_seed(3), return_truth=True) for csi in ("perfect", "estimated", "none")}
    for r, truth in rx.values():
        assert torch.equal(r.y, rx["perfect"][0].y) and torch.equal(truth.h, rx["perfect"][1].h)


@pytest.mark.parametrize("estimator,n_pilots,coherence", [("ls", 1, None), ("ls", 4, 4), ("lmmse", 1, None),
                                                          ("lmmse", 3, 4)])
def test_estimated_csi_mse(estimator, n_pilots, coherence):
    snr_db = 0.0
    link = Link(make_encoder("gaussian", SHAPE, "1/4"), make_channel("rayleigh", coherence=coherence), snr_db,
                csi="estimated", n_pilots=n_pilots, pilot_estimator=estimator)
    blocks = math.ceil(link.k / (coherence or link.k))
    assert link.pilots_used == n_pilots * blocks and link.channel_uses == link.k + link.pilots_used
    x = images(3000)
    rx, truth = link.transmit(x, generator=torch.Generator().manual_seed(5), return_truth=True)
    assert rx.pilots_used == link.pilots_used and rx.y_pilot.shape == (3000, blocks, n_pilots)
    step = coherence or link.k
    err = (rx.h_hat[:, ::step] - truth.h[:, ::step]).abs().pow(2).double().flatten()
    n0 = link.n0
    mse = n0 / n_pilots if estimator == "ls" else n0 / (n_pilots + n0)
    assert within(float(err.mean()), mse, mse / math.sqrt(err.numel())), (float(err.mean()), mse)
    # the estimate is constant within each coherence block, like the channel
    assert torch.equal(rx.h_hat[:, :step], rx.h_hat[:, :1].expand(-1, step))


def test_estimated_csi_rician_uses_los_prior():
    ch = make_channel("rician", k_factor=2.0, los_phase=0.3)
    link = Link(make_encoder("gaussian", SHAPE, "1/4"), ch, 0.0, csi="estimated", n_pilots=2)
    rx, truth = link.transmit(images(4000), generator=torch.Generator().manual_seed(6), return_truth=True)
    err = (rx.h_hat[:, 0] - truth.h[:, 0]).abs().pow(2).double()
    v, n0 = ch.scatter_var, link.n0
    mse = v * n0 / (v * 2 + n0)
    assert within(float(err.mean()), mse, mse / math.sqrt(err.numel()))


def test_pilots_in_budget():
    shape = (1, 28, 28)
    budget = symbols_for_cbr("1/16", shape)
    ch = make_channel("rayleigh", coherence=10)
    extra = make_link("gaussian", shape, "1/16", channel=ch, csi="estimated", n_pilots=2)
    assert extra.k == budget and extra.pilots_used == 2 * 5 and extra.cbr == pytest.approx(budget / 784)
    inside = make_link("gaussian", shape, "1/16", channel=ch, csi="estimated", n_pilots=2, pilots_in_budget=True)
    assert inside.k + inside.pilots_used <= budget and inside.k + inside.pilots_used + 2 > budget
    assert inside.cbr == pytest.approx((inside.k + inside.pilots_used) / 784) and inside.cbr <= 1 / 16
    ds = make_link("downsample", shape, "1/16", channel=ch, csi="estimated", n_pilots=2, pilots_in_budget=True)
    assert ds.k + ds.pilots_used <= budget
    with pytest.raises(DiffcommError):
        make_link("gaussian", (1, 4, 4), "1/16", channel="rayleigh", csi="estimated", n_pilots=1,
                  pilots_in_budget=True)


def test_config_is_json_ready():
    import json

    link = make_link("downsample", SHAPE, "1/4", channel="rician", csi="estimated", n_pilots=1)
    cfg = json.loads(json.dumps(link.config()))
    assert cfg["k"] == link.k and cfg["channel"]["name"] == "rician" and cfg["pilots_used"] == 1


class Nonlinear:
    k, shape, name = 8, SHAPE, "toy"

    def __call__(self, x):
        v = torch.tanh(x.flatten(1)[:, :16])
        return torch.complex(v[:, 0::2], v[:, 1::2])


def test_nonlinear_encoder_forward_but_no_matrix():
    link = Link(Nonlinear(), "awgn", 10.0)
    assert not link.is_linear
    x = images(2)
    rx = link.transmit(x)
    assert link.forward(x, rx).shape == (2, 8)
    with pytest.raises(DiffcommError, match="linear"):
        link.matrix(rx)
    with pytest.raises(DiffcommError, match="linear"):
        link.pinv(rx.y, rx)


@pytest.mark.parametrize("x", [
    torch.rand(2, 1, 8, 9), torch.rand(1, 8, 8), torch.randint(0, 2, (2, 1, 8, 8)), torch.rand(2, 1, 8, 8) + 0.5,
    torch.rand(2, 1, 8, 8) - 0.5, torch.full((2, 1, 8, 8), float("nan")), torch.zeros(0, 1, 8, 8), "image",
])
def test_transmit_rejects_bad_images(x):
    link = make_link("gaussian", SHAPE, "1/4")
    with pytest.raises(DiffcommError) as info:
        link.transmit(x)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kw", [dict(csi="partial"), dict(csi="estimated"), dict(csi="perfect", n_pilots=2),
                                dict(csi="estimated", n_pilots=2, pilot_estimator="ml"), dict(n_pilots=-1),
                                dict(snr_db=float("nan")), dict(snr_db=200.0), dict(channel="rayleigh-ish")])
def test_link_rejects_bad_options(kw):
    args = dict(encoder=make_encoder("gaussian", SHAPE, "1/4"), channel="awgn", snr_db=10.0) | kw
    with pytest.raises(DiffcommError):
        Link(**args)


def test_pinv_rejects_bad_y():
    link = make_link("gaussian", SHAPE, "1/4")
    rx = link.transmit(images(2))
    assert isinstance(rx, Received)
    for y in (rx.y.real, rx.y[:, :-1], rx.y[:1], torch.full_like(rx.y, float("nan"))):
        with pytest.raises(DiffcommError):
            link.pinv(y, rx)


def _one_gain(rx: Received, h: torch.Tensor | None = None) -> Received:
    """``rx`` with every row's operator the same: the mean power gain for all rows (and ``h`` for every row)."""
    h_hat = rx.h_hat if h is None else h.expand_as(rx.h_hat).clone()
    return Received(y=rx.y, h_hat=h_hat, n0=rx.n0, gain=torch.full_like(rx.gain, float(rx.gain.mean())),
                    pilots_used=rx.pilots_used)


@pytest.mark.parametrize("encoder,channel,fast", [("downsample", "awgn", False), ("gaussian", "rayleigh", False),
                                                  ("gaussian", "rayleigh", True)])
def test_identical_rows_share_one_factorisation(encoder, channel, fast):
    """When every image's operator is the same (one gain for the batch; AWGN, one block, or the same fast-fading
    draw for every row), the matrix and the SVD are one factor expanded over the batch (stride 0), and pinv and
    the model-space system equal the per-row dense computation (torch.linalg.pinv / solve of each row's matrix)."""
    from diffcomm.linalg import shared

    ch = make_channel(channel, block=False) if fast else channel
    link = make_link(encoder, SHAPE, "1/4", channel=ch, snr_db=10.0)
    x = images(4, seed=3)
    rx = link.transmit(x, generator=torch.Generator().manual_seed(1))
    rx = _one_gain(rx, rx.h_hat[:1] if rx.h_hat is not None else None)
    op = link.operator(rx)
    assert op.rows_identical
    f = op.svd()
    assert all(shared(t) is not None for t in (op.matrix(), op.matrix(torch.float64), f.u, f.vh))
    m = op.matrix(torch.float64).contiguous()                                    # per-row dense reference
    v = complex_to_real(rx.y.to(torch.complex128))
    want = (torch.linalg.pinv(m) @ v[..., None]).squeeze(-1)
    torch.testing.assert_close(op.pinv(rx.y).double().flatten(1), want, rtol=0, atol=1e-5)
    system = op.model_space()
    a = m / 2
    xm = torch.randn(4, link.n, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(system.apply(xm), (a @ xm[..., None]).squeeze(-1), rtol=0, atol=1e-12)
    eye = torch.eye(a.shape[1], dtype=torch.float64)
    rho = 0.3
    resid = system.y - (a @ xm[..., None]).squeeze(-1)
    gain = torch.linalg.solve(a @ a.transpose(-1, -2) + rho * eye, resid[..., None])
    prox = xm + (a.transpose(-1, -2) @ gain).squeeze(-1)
    torch.testing.assert_close(system.prox(xm, rho), prox, rtol=0, atol=1e-10)
    r = system.y
    solve = torch.linalg.solve(0.7 * a @ a.transpose(-1, -2) + system.noise_var * eye, r[..., None]).squeeze(-1)
    torch.testing.assert_close(system.solve(r, 0.7, system.noise_var), solve, rtol=0, atol=1e-10)


def test_per_image_gains_apply_through_the_shared_singular_vectors():
    """AWGN with the usual per-image power gain: rows differ (no shared matrix) but U and Vᵀ are shared, so the
    model-space a x and aᵀ v go through them; equal to the per-row dense products."""
    from diffcomm.linalg import shared

    link = make_link("downsample", SHAPE, "1/4", channel="awgn", snr_db=10.0)
    rx = link.transmit(images(5, seed=4), generator=torch.Generator().manual_seed(0))
    op = link.operator(rx)
    assert not op.rows_identical
    system = op.model_space()
    assert shared(system.a) is None and shared(system.svd.u) is not None and shared(system.svd.vh) is not None
    xm = torch.randn(5, link.n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    v = torch.randn(5, 2 * link.k, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(system.apply(xm), (system.a @ xm[..., None]).squeeze(-1), rtol=0, atol=1e-12)
    torch.testing.assert_close(system.adjoint(v), (system.a.transpose(-1, -2) @ v[..., None]).squeeze(-1),
                               rtol=0, atol=1e-12)


def test_bmv_with_a_shared_matrix_is_one_product():
    """bmv of a matrix expanded over the batch (stride 0), of a 2-D matrix and of a batch-1 matrix equals the
    per-row products of the materialised copy."""
    from diffcomm.linalg import bmv, shared

    a = torch.randn(6, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = torch.randn(4, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = (a.expand(4, 6, 9).contiguous() @ v[..., None]).squeeze(-1)
    for form in (a, a[None], a[None].expand(4, 6, 9)):
        assert shared(form) is not None
        torch.testing.assert_close(bmv(form, v), want, rtol=0, atol=1e-12)
    assert shared(a[None].expand(4, 6, 9).contiguous()) is None
