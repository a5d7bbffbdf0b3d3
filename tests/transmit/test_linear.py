"""Linear encoders: exact matrices, pseudo-inverse identities, k = round(CBR·n), registry errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from diffcomm.channels import real_to_complex, symbols_for_cbr
from diffcomm.errors import DiffcommError
from diffcomm.transmit import ENCODERS, Downsample, GaussianProjection, make_encoder, register_encoder
from diffcomm.transmit.linear import downsample_grid


@pytest.mark.parametrize("name,cbr,k", [("gaussian", "1/16", 49), ("gaussian", "1/8", 98), ("downsample", "1/8", 98),
                                        ("downsample", "1/16", 49), ("gaussian", "1", 784)])
def test_k_from_cbr(name, cbr, k):
    enc = make_encoder(name, (1, 28, 28), cbr)
    assert enc.k == k == symbols_for_cbr(cbr, (1, 28, 28))
    assert enc.matrix.shape == (2 * k, 784) and enc.shape == (1, 28, 28) and enc.name == name
    z = enc(torch.rand(3, 1, 28, 28))
    assert z.dtype == torch.complex64 and z.shape == (3, k)


def test_call_is_the_matrix():
    enc = GaussianProjection((3, 8, 8), k=20, seed=1)
    x = torch.rand(4, 3, 8, 8)
    assert torch.allclose(enc(x), real_to_complex(x.flatten(1) @ enc.matrix.T))


def test_gaussian_statistics_and_seed():
    enc = GaussianProjection((1, 28, 28), k=200, seed=0)
    m = enc.matrix.double().flatten()
    n = 784
    assert abs(float(m.mean())) <= 5 * math.sqrt(1 / n / m.numel())
    assert abs(float(m.var()) - 1 / n) <= 5 * (1 / n) * math.sqrt(2 / m.numel())
    assert torch.equal(enc.matrix, GaussianProjection((1, 28, 28), k=200, seed=0).matrix)
    assert not torch.equal(enc.matrix, GaussianProjection((1, 28, 28), k=200, seed=1).matrix)


@settings(derandomize=True, max_examples=25, deadline=None)
@given(c=st.integers(1, 3), h=st.integers(2, 12), w=st.integers(2, 12), frac=st.floats(0.01, 0.5),
       seed=st.integers(0, 99))
def test_gaussian_pinv_identities(c, h, w, frac, seed):
    n = c * h * w
    k = max(1, int(frac * n))
    enc = GaussianProjection((c, h, w), k=k, seed=seed)
    e, ep = enc.matrix.double(), enc.pinv_matrix
    assert enc.full_row_rank
    assert torch.allclose(e @ ep, torch.eye(2 * k, dtype=torch.float64), atol=1e-9)   # A A^+ = I on the range
    proj = ep @ e
    assert torch.allclose(proj, proj.T, atol=1e-9) and torch.allclose(proj @ proj, proj, atol=1e-9)
    assert abs(float(torch.trace(proj)) - 2 * k) < 1e-6


SHAPES = [((1, 28, 28), 98), ((1, 28, 28), 49), ((3, 32, 32), 192), ((3, 30, 20), 90), ((1, 10, 7), 6), ((2, 9, 9), 9)]


@pytest.mark.parametrize("shape,k", SHAPES)
def test_downsample_matches_adaptive_avg_pool(shape, k):
    enc = Downsample(shape, k)
    a, b = enc.grid
    assert shape[0] * a * b == 2 * k
    x = torch.rand(5, *shape, generator=torch.Generator().manual_seed(0))
    ref = F.adaptive_avg_pool2d(x, (a, b)).flatten(1)
    assert torch.allclose(x.flatten(1) @ enc.matrix.T, ref, atol=1e-6)
    assert torch.allclose(enc.matrix.sum(1), torch.ones(2 * k), atol=1e-6)  # averages: rows sum to 1
    e = enc.matrix.double()
    assert enc.full_row_rank
    assert torch.allclose(e @ enc.pinv_matrix, torch.eye(2 * k, dtype=torch.float64), atol=1e-9)


def test_downsample_grid_aspect():
    assert downsample_grid((1, 28, 28), 98) == (14, 14)
    assert downsample_grid((1, 28, 28), 49) == (7, 14)      # tie between 7x14 and 14x7: smaller h'
    assert downsample_grid((3, 30, 20), 90) == (10, 6)      # aspect 1.67 vs H/W = 1.5
    assert downsample_grid((3, 8, 8), 10) is None           # 2k = 20 is not a multiple of C = 3


def test_downsample_pinv_is_upsampled_average():
    enc = Downsample((1, 28, 28), 98)                        # 14x14 grid: 2x2 windows
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    v = torch.view_as_real(enc(x)).flatten(1)
    up = F.avg_pool2d(x, 2).repeat_interleave(2, 2).repeat_interleave(2, 3)
    assert torch.allclose(enc.decode_pinv(v), up, atol=1e-5)


@pytest.mark.parametrize("shape,k", [((3, 8, 8), 10), ((1, 8, 8), 19), ((1, 4, 4), 9)])
def test_downsample_invalid_lists_valid_cbrs(shape, k):
    with pytest.raises(DiffcommError, match="valid CBRs") as info:
        Downsample(shape, k)
    msg = str(info.value)
    assert "\n" not in msg
    listed = [int(part.split("k=")[1].split(")")[0]) for part in msg.split("nearby: ")[1].split(", ")]
    assert listed, msg
    for good in listed:  # every CBR the message suggests really works
        assert Downsample(shape, good).k == good


def test_registry_unknown_and_extension():
    with pytest.raises(DiffcommError, match="gaussian"):
        make_encoder("wavelet", (1, 28, 28), "1/16")
    with pytest.raises(DiffcommError):
        make_encoder("gaussian", (1, 28, 28), "2")
    calls = []

    def factory(shape, cbr, seed, name=None, **kw):
        calls.append(name)
        return GaussianProjection(shape, symbols_for_cbr(cbr, shape), seed)

    register_encoder("test-prefix-*", factory)
    try:
        assert make_encoder("test-prefix-abc", (1, 8, 8), "1/4").k == 16
        assert calls == ["test-prefix-abc"]
    finally:
        del ENCODERS["test-prefix-*"]


@pytest.mark.parametrize("x", [torch.rand(2, 1, 27, 28), torch.rand(2, 28, 28), torch.randint(0, 2, (2, 1, 28, 28))])
def test_encoder_rejects_bad_images(x):
    enc = make_encoder("gaussian", (1, 28, 28), "1/16")
    with pytest.raises(DiffcommError):
        enc(x)


def test_bad_constructor_args():
    with pytest.raises(DiffcommError):
        GaussianProjection((1, 8, 8), k=0)
    with pytest.raises(DiffcommError):
        GaussianProjection((1, 8, 8), k=4, seed="x")
    with pytest.raises(DiffcommError):
        Downsample((1, 8), 4)
    enc = GaussianProjection((1, 8, 8), k=4)
    with pytest.raises(DiffcommError):
        enc.decode_pinv(torch.zeros(2, 7))
