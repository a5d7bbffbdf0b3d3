import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffcomm.channels import complex_to_real, normalize_power, real_to_complex
from diffcomm.errors import DiffcommError


@settings(derandomize=True, max_examples=40, deadline=None)
@given(b=st.integers(1, 8), k=st.integers(1, 300), log_scale=st.floats(-3, 3), seed=st.integers(0, 2**31 - 1))
def test_normalize_power_unit_mean_power(b, k, log_scale, seed):
    g = torch.Generator().manual_seed(seed)
    scale = 10.0 ** log_scale * torch.rand(b, 1, generator=g).add(0.1)
    z = torch.randn(b, k, dtype=torch.complex64, generator=g) * scale
    zn, gain = normalize_power(z)
    assert zn.dtype == torch.complex64 and gain.shape == (b,)
    power = zn.abs().pow(2).mean(1)
    assert torch.allclose(power, torch.ones(b), rtol=1e-5)
    assert torch.allclose(gain, k ** 0.5 / z.abs().pow(2).sum(1).sqrt(), rtol=1e-5)
    assert torch.allclose(zn, z * gain[:, None], rtol=1e-6)


def test_normalize_power_multistream_and_zero():
    z = torch.randn(3, 2, 5, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    z[1] = 0
    zn, gain = normalize_power(z)
    assert torch.allclose(zn[0].abs().pow(2).mean(), torch.tensor(1.0), rtol=1e-5)
    assert torch.equal(zn[1], torch.zeros_like(zn[1])) and torch.isfinite(gain).all()


def test_normalize_power_gradient():
    z = torch.randn(2, 4, dtype=torch.complex128, generator=torch.Generator().manual_seed(1), requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: torch.view_as_real(normalize_power(v)[0]), (z,))


def test_real_complex_roundtrip_and_layout():
    v = torch.arange(12.0).reshape(2, 6)
    z = real_to_complex(v)
    assert z.dtype == torch.complex64 and z.shape == (2, 3)
    assert z[0, 1] == complex(2.0, 3.0)  # interleaved pairs
    assert torch.equal(complex_to_real(z), v)


def test_real_complex_rejects():
    with pytest.raises(DiffcommError):
        real_to_complex(torch.zeros(2, 5))
    with pytest.raises(DiffcommError):
        real_to_complex(torch.zeros(2, 4, dtype=torch.complex64))
    with pytest.raises(DiffcommError):
        complex_to_real(torch.zeros(2, 4))
    with pytest.raises(DiffcommError):
        normalize_power(torch.zeros(2, 4))
