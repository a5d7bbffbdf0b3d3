import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffcomm.channels import parse_cbr, snr_db_to_n0, symbols_for_cbr
from diffcomm.errors import DiffcommError


def test_snr_to_n0_values():
    assert snr_db_to_n0(10.0) == pytest.approx(0.1)
    assert snr_db_to_n0(0) == pytest.approx(1.0)
    assert snr_db_to_n0(-3.0) == pytest.approx(10 ** 0.3)
    t = snr_db_to_n0(torch.tensor([0.0, 10.0, 20.0]))
    assert torch.allclose(t, torch.tensor([1.0, 0.1, 0.01]))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), -50.1, 100.5, "ten", None])
def test_snr_to_n0_rejects(bad):
    with pytest.raises(DiffcommError):
        snr_db_to_n0(bad)


def test_snr_to_n0_rejects_tensor():
    with pytest.raises(DiffcommError):
        snr_db_to_n0(torch.tensor([0.0, float("nan")]))
    with pytest.raises(DiffcommError):
        snr_db_to_n0(torch.tensor([0.0, 120.0]))


@pytest.mark.parametrize("text,value", [("1/16", 0.0625), ("0.0625", 0.0625), (" 1/8 ", 0.125), ("1", 1.0),
                                        (0.5, 0.5), ("3/64", 3 / 64)])
def test_parse_cbr(text, value):
    assert parse_cbr(text) == pytest.approx(value)


@pytest.mark.parametrize("bad", ["", "abc", "1/0", "0", "-1/16", "2", "17/16", "nan", "inf", "1/x", 0.0, -0.1])
def test_parse_cbr_rejects(bad):
    with pytest.raises(DiffcommError):
        parse_cbr(bad)


def test_symbols_for_cbr_reference():
    assert symbols_for_cbr(1 / 16, (1, 28, 28)) == 49
    assert symbols_for_cbr("1/8", (1, 28, 28)) == 98
    assert symbols_for_cbr("1/6", (3, 32, 32)) == 512
    assert symbols_for_cbr(1e-6, (1, 8, 8)) == 1  # never zero symbols


@settings(derandomize=True, max_examples=60, deadline=None)
@given(c=st.integers(1, 4), h=st.integers(1, 64), w=st.integers(1, 64), num=st.integers(1, 64), den=st.integers(1, 64))
def test_symbols_for_cbr_property(c, h, w, num, den):
    if num > den:
        num, den = den, num
    cbr = num / den
    k = symbols_for_cbr(f"{num}/{den}", (c, h, w))
    assert k == max(1, round(cbr * c * h * w))
    assert abs(k - cbr * c * h * w) <= 0.5 or k == 1
    assert isinstance(k, int) and not math.isnan(k)


@pytest.mark.parametrize("shape", [(1, 28), (0, 28, 28), (1, -1, 4), (1.5, 2, 2), "abc"])
def test_symbols_for_cbr_bad_shape(shape):
    with pytest.raises(DiffcommError):
        symbols_for_cbr(0.1, shape)
