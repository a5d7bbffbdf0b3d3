"""Receiver efficiency: FLOPs, int8 operations, peak memory, weight bytes, and int8 post-training quantisation.

**FLOPs** are counted with :class:`torch.utils.flop_counter.FlopCounterMode` (:func:`count_flops`): it
counts the floating-point operations of matrix products, convolutions and attention (2 per
multiply-add; backward passes included when they run, e.g. DPS's gradient through the denoiser) —
not element-wise operations, and not the quantised kernels (``quantized::linear_dynamic``,
``quantized::conv2d``), which it does not know. Those are counted by :func:`int8_ops` from the
shapes (forward hooks on the quantised modules: 2·in·out per row for a linear layer,
2·C_in/groups·k_h·k_w per output value for a convolution).

**Peak memory** (:func:`peak_memory`): after a warm-up call, freed heap is returned to the system
(glibc ``malloc_trim``) and the process's peak resident set is reset (``/proc/self/clear_refs`` ← 5,
Linux >= 4.0); the figure is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after the call minus the
resident set before it (``/proc/self/statm``): the peak *growth* during the call, i.e. the working
memory of decoding (activations, temporaries), not the weights already loaded. Python's
``tracemalloc`` would miss it (torch allocates tensors outside Python's allocator). Where the peak
cannot be reset (not Linux), the figure is None. Memory the allocator kept from earlier calls and
reuses is not counted, so the figure is a lower bound on the working set.

**Quantisation** (:func:`quantize`): ``"dynamic"`` is
``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear`` (int8 weights, activations
quantised on the fly); convolutions stay fp32. ``"static"`` is the documented alternative for conv
nets: FX graph-mode static post-training quantisation (``prepare_fx`` / ``convert_fx``, the x86
backend's default qconfig, calibrated on training images) of the classifier's convolutional
feature extractor, plus dynamic int8 for its linear head. (``torch.ao.quantization`` is deprecated
in favour of torchao, which is not installed here; it still runs in torch 2.13.)

Example:
    >>> out, flops = count_flops(torch.nn.Linear(4, 3), torch.rand(2, 4))
    >>> flops
    48
"""

from __future__ import annotations

import copy
import io
import os
import resource
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from diffcomm.errors import DiffcommError

QUANTIZE_MODES = ("none", "dynamic", "static")
MEMORY_METHOD = ("peak resident-set growth during one receiver call: resource.getrusage(RUSAGE_SELF).ru_maxrss "
                 "after resetting the peak (/proc/self/clear_refs), minus the resident set before the call")


def _counter():
    """A FlopCounterMode that counts globally, without its module tracker: the tracker's backward hooks
    fail inside ``torch.autograd.grad`` (which DPS-style receivers call), and the per-module table is
    not needed. Falls back to the plain FlopCounterMode if torch's internals differ."""
    from torch.utils import flop_counter

    inner = getattr(flop_counter, "_FlopCounterMode", None)
    if inner is None:
        return flop_counter.FlopCounterMode(display=False)

    class GlobalFlopCounter(flop_counter.FlopCounterMode):
        def __enter__(self):
            self.flop_counts.clear()
            self.mode = inner(self)
            self.mode.__enter__()
            return self

        def __exit__(self, *args):
            done = self.mode.__exit__(*args)
            self.mode = None
            return done

    return GlobalFlopCounter(display=False)


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, int]:
    """``(fn(*args, **kwargs), FLOPs counted by FlopCounterMode)`` (forward and any backward inside ``fn``)."""
    with _counter() as counter:
        out = fn(*args, **kwargs)
    return out, int(counter.get_total_flops())


def _is_quantized(module: nn.Module) -> bool:
    return type(module).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized",
                                               "torch.nn.quantized"))


class int8_ops:  # noqa: N801 - used as a context manager like FlopCounterMode
    """Count the operations of quantised linear/conv modules of ``model`` while inside (``.total``)."""

    def __init__(self, model: nn.Module):
        self.model, self.total, self._hooks = model, 0, []

    def _hook(self, module: nn.Module, inputs, output) -> None:
        out = output[0] if isinstance(output, tuple) else output
        if not torch.is_tensor(out):
            return
        if hasattr(module, "in_features"):
            rows = out.numel() // max(int(module.out_features), 1)
            self.total += 2 * rows * int(module.in_features) * int(module.out_features)
        elif hasattr(module, "kernel_size"):
            kh, kw = module.kernel_size if isinstance(module.kernel_size, tuple) else (module.kernel_size,) * 2
            self.total += 2 * out.numel() * int(module.in_channels) // int(module.groups) * kh * kw

    def __enter__(self) -> int8_ops:
        for m in self.model.modules():
            if _is_quantized(m) and (hasattr(m, "in_features") or hasattr(m, "kernel_size")):
                self._hooks.append(m.register_forward_hook(self._hook))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []


def weight_bytes(model: nn.Module | None) -> int:
    """Bytes of a model's serialised state (``torch.save`` of its state_dict into memory; packed int8
    weights included)."""
    if model is None:
        return 0
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


class _FeaturesThenHead(nn.Module):
    """The shipped classifier as ``head(features((x − 0.5)/0.5))`` (what FX can trace: no branches)."""

    def __init__(self, features: nn.Module, head: nn.Module):
        super().__init__()
        self.features, self.head = features, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - 0.5) / 0.5))


def quantize(model: nn.Module, mode: str, calibration: torch.Tensor | None = None) -> nn.Module:
    """An int8 copy of ``model`` (the original is untouched); ``mode`` in :data:`QUANTIZE_MODES`.

    ``"dynamic"``: int8 ``nn.Linear`` layers (any model). ``"static"``: models with ``features`` (a
    traceable conv stack) and ``head`` (linear), i.e. :class:`diffcomm.metrics.classifier.Classifier`;
    ``calibration`` images (pixels) set the activation ranges.
    """
    if mode not in QUANTIZE_MODES:
        raise DiffcommError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {mode!r}")
    if mode == "none":
        return model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import quantize_dynamic

        if mode == "dynamic":
            return quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)
        if not (hasattr(model, "features") and hasattr(model, "head")):
            raise DiffcommError("quantize='static' applies to the classifier (features + head); use 'dynamic'")
        if calibration is None or len(calibration) == 0:
            raise DiffcommError("quantize='static' needs calibration images")
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        torch.backends.quantized.engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm"
        features = copy.deepcopy(model.features).eval()
        example = (calibration[:1] - 0.5) / 0.5
        prepared = prepare_fx(features, get_default_qconfig_mapping(torch.backends.quantized.engine), (example,))
        with torch.no_grad():
            for i in range(0, len(calibration), 128):
                prepared((calibration[i:i + 128] - 0.5) / 0.5)
        qfeatures = convert_fx(prepared)
        head = quantize_dynamic(nn.Sequential(copy.deepcopy(model.head)).eval(), {nn.Linear}, dtype=torch.qint8)
        return _FeaturesThenHead(qfeatures, head).eval()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    """Return freed heap to the system (glibc ``malloc_trim``) and reset this process's peak resident set
    (``/proc/self/clear_refs`` ← 5, Linux >= 4.0); False where that is not possible."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory(call: Callable[[], Any]) -> tuple[Any, int | None, float]:
    """``(call(), peak resident-set growth in bytes during it, seconds)`` (None where the peak cannot be reset)."""
    measure = os.path.exists("/proc/self/statm") and _reset_peak()
    base = _rss_bytes() if measure else 0
    t0 = time.perf_counter()
    out = call()
    seconds = time.perf_counter() - t0
    if not measure:
        return out, None, seconds
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux
    return out, max(0, peak - base), seconds


def probe(call: Callable[[], Any], models: list[nn.Module] | None = None) -> dict[str, Any]:
    """Peak memory, wall seconds, FLOPs and int8 operations of one receiver ``call`` (e.g. one image).

    The call runs three times: a warm-up (lazy initialisation, first-touch of library code), a
    measured run (``peak_mem_bytes``, ``probe_seconds``), and a run under the FLOP counter and the
    int8-operation hooks of ``models`` (``flops``, ``int8_ops``).
    """
    call()
    _, mem, seconds = peak_memory(call)
    counters = [int8_ops(m) for m in (models or [])]
    for c in counters:
        c.__enter__()
    try:
        _, flops = count_flops(call)
    finally:
        for c in counters:
            c.__exit__()
    return {"flops": flops, "int8_ops": sum(c.total for c in counters), "probe_seconds": seconds,
            "peak_mem_bytes": mem}
