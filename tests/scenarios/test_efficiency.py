"""FLOP counting against the formulas, int8 operation counts, peak memory, and int8 models with bounded error."""

import os
import sys

import pytest
import torch
from torch import nn

from diffcomm.scenarios.efficiency import count_flops, int8_ops, peak_memory, probe, quantize, weight_bytes


@pytest.mark.parametrize("batch,fin,fout", [(1, 7, 3), (5, 64, 10)])
def test_linear_flops_are_two_per_multiply_add(batch, fin, fout):
    layer = nn.Linear(fin, fout)
    _, flops = count_flops(layer, torch.rand(batch, fin))
    assert flops == 2 * batch * fin * fout


@pytest.mark.parametrize("cin,cout,k,stride,pad,groups", [(1, 8, 3, 1, 1, 1), (4, 6, 5, 2, 2, 2)])
def test_conv2d_flops_match_the_formula(cin, cout, k, stride, pad, groups):
    conv = nn.Conv2d(cin, cout, k, stride, pad, groups=groups)
    x = torch.rand(3, cin, 28, 28)
    out, flops = count_flops(conv, x)
    h, w = out.shape[-2:]
    assert flops == 2 * 3 * cout * h * w * (cin // groups) * k * k


def test_int8_operations_of_a_dynamically_quantised_linear_layer():
    model = nn.Sequential(nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3))
    q = quantize(model, "dynamic")
    with int8_ops(q) as counter:
        q(torch.rand(4, 12))
    assert counter.total == 2 * 4 * (12 * 5 + 5 * 3)
    _, flops = count_flops(q, torch.rand(4, 12))
    assert flops == 0          # the counter does not know the quantised kernels; int8_ops counts them


@pytest.fixture(scope="module")
def images():
    from diffcomm.data import get_dataset

    return get_dataset("fashion-mnist", "test").images[:256], get_dataset("fashion-mnist", "train").images[:256]


@pytest.mark.parametrize("mode,bound,agree", [("dynamic", 0.25, 0.98), ("static", 1.0, 0.97)])
def test_quantised_classifier_loads_and_runs_with_bounded_error(images, mode, bound, agree):
    from diffcomm import zoo

    test, calibration = images
    net = zoo.load("fmnist-classifier")
    q = quantize(net, mode, calibration)
    with torch.no_grad():
        ref, out = net(test), q(test)
    assert (out - ref).abs().max() < bound                        # logits span about ±7
    assert float((out.argmax(1) == ref.argmax(1)).float().mean()) >= agree
    assert weight_bytes(q) < weight_bytes(net)
    assert net.head.weight.dtype == torch.float32                 # the shipped model is untouched


def test_quantised_task_jscc_head_has_bounded_error():
    from diffcomm import zoo

    model = zoo.load("fmnist-taskjscc-awgn-k8")
    q = quantize(model, "dynamic")
    s = torch.randn(256, 8, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    snr = torch.zeros(256)
    with torch.no_grad():
        ref, out = model.classify(s, snr), q.classify(s, snr)
    assert (out - ref).abs().max() < 1.0                          # logits span about ±12
    assert float((out.argmax(1) == ref.argmax(1)).float().mean()) >= 0.97
    assert weight_bytes(q.head) < weight_bytes(model.head) / 2


def test_bad_quantize_mode_is_a_one_line_error():
    from diffcomm.errors import DiffcommError

    with pytest.raises(DiffcommError, match="quantize must be one of"):
        quantize(nn.Linear(2, 2), "int4")
    with pytest.raises(DiffcommError, match="classifier"):
        quantize(nn.Linear(2, 2), "static", torch.rand(4, 2))


# The peak resident set can be reset only through /proc/self/clear_refs (Linux >= 4.0); elsewhere
# peak_memory reports None by design. Where it can, the test requires a figure (no silent skip).
CAN_RESET_PEAK = sys.platform.startswith("linux") and os.access("/proc/self/clear_refs", os.W_OK)


@pytest.mark.skipif(not CAN_RESET_PEAK, reason="needs a writable /proc/self/clear_refs to reset the peak resident set")
def test_peak_memory_sees_a_large_temporary_and_probe_reports_everything():
    _, mem, seconds = peak_memory(lambda: torch.ones(10_000_000).sum())   # 40 MB
    assert mem is not None and 30e6 < mem < 80e6 and seconds >= 0
    out = probe(lambda: nn.Linear(4, 2)(torch.rand(3, 4)))
    assert out["flops"] == 2 * 3 * 4 * 2 and out["int8_ops"] == 0 and out["peak_mem_bytes"] is not None
