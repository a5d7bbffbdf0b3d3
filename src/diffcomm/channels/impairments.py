"""Hardware impairments as link stages: PA models, PAPR clipping, ADC quantisation, phase noise, CFO.

Plain differentiable functions on complex symbols ``(B, k)`` (any leading shape), and
:class:`Impairment`, a stage attached to a :class:`~diffcomm.link.Link` with
:func:`with_impairments`, either **modelled** (the receiver's operator ``link.operator(rx)``
includes it) or **unmodelled** (the receiver decodes as if it were absent: a mismatch).

Transmitter side (act on the power-normalised symbols ``g E(x)`` before the channel):

* :func:`rapp` — solid-state PA, AM/AM ``|y| = |x| / (1 + (|x|/A)^{2p})^{1/(2p)}``, phase kept
  (Rapp, "Effects of HPA-nonlinearity on a 4-DPSK/OFDM-signal for a digital sound broadcasting
  system", ECSC 1991). ``p`` sets the knee (p → ∞: the soft limiter).
* :func:`soft_limiter` — ideal (soft-envelope) limiter ``|y| = min(|x|, A)``, phase kept: the
  linearised PA (Rapp with p → ∞).
* :func:`clip_papr` — deliberate amplitude clipping for PAPR reduction at ``A = γ · rms(x)`` per
  frame, γ the clipping ratio (Li & Cimini, IEEE Commun. Lett. 2(5), 1998; Ochiai & Imai, IEEE
  Trans. Commun. 50(1), 2002: for Gaussian x of power σ² the output power is ``σ²(1 − e^{−γ²})``).
  :func:`papr` is ``max |x|² / mean |x|²`` per frame. The clipped power is not restored (the SNR
  stays Es/N0 of the unclipped symbols). On OFDM the stage acts on the frequency-domain REs the link
  carries, not on the time-domain waveform (so it is not OFDM PAPR clipping there).

Receiver side (act on the received symbols ``y`` the channel returns — for MIMO after its front end):

* :func:`quantize_adc` — uniform mid-rise quantiser with ``2^b`` levels per real dimension on
  ``[−FS, FS]``: step ``Δ = 2 FS / 2^b``, levels ``−FS + Δ/2 + iΔ``, saturating (Proakis & Salehi,
  *Communication Systems Engineering*, §6.6). The full scale ``FS`` is ``full_scale`` or set by an
  AGC from the power the receiver expects, ``loading · √((mean |ĥ|² + N0)/2)`` per image (rows of the
  MIMO mixing in place of ĥ; ``1 + N0`` without CSI), so a modelled ADC uses the same FS.
  Not differentiable: gradients pass **straight through** inside ``[−FS, FS]`` and are 0 outside
  (the clipped straight-through estimator, Bengio, Léonard & Courville, arXiv:1308.3432, 2013).
* :func:`phase_noise` — Wiener (free-running oscillator) phase ``θ_n = θ_{n−1} + Δ_n``,
  ``Δ_n ~ N(0, 2π β T_s)`` with β the 3-dB linewidth and T_s the symbol time, ``θ_{−1} = 0``
  (Demir, Mehrotra & Roychowdhury, IEEE TCAS-I 47(5), 2000; Petrovic, Rave & Fettweis, IEEE Trans.
  Commun. 55(8), 2007); ``y_n e^{jθ_n}`` along the frame's symbol order.
* :func:`cfo` — carrier-frequency offset ``y_n e^{j 2π ε n}``, ε the offset normalised to the symbol
  rate (cycles per symbol), n the symbol index in the frame (on OFDM REs: a phase ramp, not ICI).

**Modelled vs unmodelled.** Phase noise and CFO multiply each symbol by a unit phasor, so a
*modelled* one is folded into the receiver's CSI: ``ĥ ← e^{jθ} ĥ`` (and the rows of a MIMO
mixing), i.e. the receiver knows the phase trajectory (genie-aided phase tracking, an upper bound);
the link stays linear and every receiver, linear ones included, uses it. A modelled PA, clipping
or ADC stage makes the link nonlinear: ``link.operator(rx)(x) = Q(h ⊙ f(g E(x)))`` (f the
transmitter stages, Q the receiver's), ``link.is_linear`` is False, so the linear-only receivers
refuse it and the gradient-guided ones (DPS, HiFi) differentiate through it. An unmodelled stage
changes only what is sent or received.

Example:
    >>> from diffcomm.link import make_link
    >>> link = with_impairments(make_link("gaussian", (1, 8, 8), "1/4", "rayleigh", 10.0),
    ...                         impairment("clip", ratio=1.2), impairment("adc", bits=4, modelled=True))
    >>> [s.kind for s in link.stages], link.is_linear
    (['clip', 'adc'], False)
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from diffcomm.errors import DiffcommError

TX_KINDS = ("rapp", "limiter", "clip")
RX_KINDS = ("adc", "phase-noise", "cfo")
KINDS = TX_KINDS + RX_KINDS
PHASE_KINDS = ("phase-noise", "cfo")        # unit-phasor stages: modelled = folded into the receiver's CSI
MAX_ADC_BITS = 16


def _complex(x: Any, who: str) -> None:
    if not torch.is_tensor(x) or not x.is_complex():
        raise DiffcommError(f"{who} needs complex symbols, got {x.dtype if torch.is_tensor(x) else type(x).__name__}")


def _positive(value: Any, name: str, who: str) -> torch.Tensor | float:
    if torch.is_tensor(value):
        if not torch.isfinite(value).all() or (value <= 0).any():
            raise DiffcommError(f"{who}: {name} must be finite and > 0")
        return value
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DiffcommError(f"{who}: {name} must be a number > 0, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise DiffcommError(f"{who}: {name} must be finite and > 0, got {value!r}")
    return v


def _rows(v: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor | float:
    """A per-row value ``(B,)`` reshaped to broadcast over ``x`` ``(B, ...)``; floats unchanged."""
    if torch.is_tensor(v) and v.ndim == 1 and x.ndim > 1:
        return v.reshape(-1, *([1] * (x.ndim - 1))).to(x.real.dtype)
    return v


# ---- transmitter ---------------------------------------------------------------------------------------

def soft_limiter(x: torch.Tensor, a_sat: float | torch.Tensor) -> torch.Tensor:
    """Envelope limiter ``x · min(1, A/|x|)``: amplitude clipped at ``a_sat``, phase kept (differentiable
    except on ``|x| = A``). ``a_sat`` is a float or per-row ``(B,)`` / broadcastable tensor."""
    _complex(x, "soft_limiter")
    a = _rows(_positive(a_sat, "a_sat", "soft_limiter"), x)
    r = x.abs()
    return x * (a / torch.maximum(r, torch.as_tensor(a, dtype=r.dtype, device=r.device)))


def rapp(x: torch.Tensor, p: float = 2.0, a_sat: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Rapp (1991) solid-state PA: ``x / (1 + (|x|/A)^{2p})^{1/(2p)}`` (unit small-signal gain, output → A,
    no AM/PM); computed as ``exp(−softplus(2p log(|x|/A)) / 2p)`` so large p does not overflow."""
    _complex(x, "rapp")
    p = float(_positive(p, "p (smoothness)", "rapp"))
    a = _rows(_positive(a_sat, "a_sat", "rapp"), x)
    r = x.abs().clamp_min(torch.finfo(x.real.dtype).tiny)
    gain = torch.exp(-torch.nn.functional.softplus(2 * p * torch.log(r / a)) / (2 * p))
    return x * gain


def papr(x: torch.Tensor) -> torch.Tensor:
    """Peak-to-average power ratio per frame ``max_n |x_n|² / mean_n |x_n|²`` (linear) over the last dim."""
    _complex(x, "papr")
    power = x.abs().pow(2)
    return power.amax(-1) / power.mean(-1).clamp_min(torch.finfo(power.dtype).tiny)


def clip_papr(x: torch.Tensor, ratio: float) -> torch.Tensor:
    """Clip each frame's amplitude at ``A = ratio · rms(x)`` (clipping ratio γ = A / rms; rms over the last dim).

    After clipping ``papr(y) = γ² mean|x|² / mean|y|²`` whenever some sample exceeded A; differentiable
    (A follows x)."""
    _complex(x, "clip_papr")
    gamma = float(_positive(ratio, "ratio (clipping level / rms)", "clip_papr"))
    rms = x.abs().pow(2).mean(-1, keepdim=True).sqrt()
    return soft_limiter(x, (gamma * rms).clamp_min(torch.finfo(rms.dtype).tiny))


# ---- receiver --------------------------------------------------------------------------------------------

def adc_levels(bits: int, full_scale: float = 1.0) -> torch.Tensor:
    """The ``2^b`` output levels of :func:`quantize_adc` per real dimension: ``−FS + Δ/2 + iΔ`` (float64)."""
    bits = _bits(bits)
    fs = float(_positive(full_scale, "full_scale", "adc_levels"))
    step = 2 * fs / 2 ** bits
    return -fs + step / 2 + step * torch.arange(2 ** bits, dtype=torch.float64)


def _bits(bits: Any) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_ADC_BITS:
        raise DiffcommError(f"adc: bits must be an int in 1..{MAX_ADC_BITS} per real dimension, got {bits!r}")
    return bits


def quantize_adc(y: torch.Tensor, bits: int, full_scale: float | torch.Tensor) -> torch.Tensor:
    """Uniform mid-rise ``b``-bit quantiser on Re and Im separately over ``[−FS, FS]`` (saturating).

    ``q(v) = Δ (floor(v/Δ) + 1/2)`` limited to ``±(FS − Δ/2)``, ``Δ = 2 FS / 2^b``. Backward: the clipped
    straight-through estimator (gradient 1 inside ``[−FS, FS]``, 0 outside). ``full_scale`` is a float or
    per-row ``(B,)`` / broadcastable tensor.
    """
    _complex(y, "quantize_adc")
    bits = _bits(bits)
    fs = _positive(full_scale, "full_scale", "quantize_adc")
    v = torch.view_as_real(y)                                             # (..., k, 2)
    if torch.is_tensor(fs):
        fs = fs.to(device=v.device, dtype=v.dtype)
        if fs.ndim == 1 and y.ndim > 1 and fs.shape[0] == y.shape[0]:
            fs = fs.reshape(-1, *([1] * (y.ndim - 1)))                    # per row (B,) -> (B, 1, ...)
        fs = fs[..., None]
    else:
        fs = torch.tensor(fs, dtype=v.dtype, device=v.device)
    step = 2 * fs / 2 ** bits
    top = fs - step / 2
    q = torch.minimum(torch.maximum(step * (torch.floor(v / step) + 0.5), -top), top)
    inside = torch.minimum(torch.maximum(v, -fs), fs)
    return torch.view_as_complex((inside + (q - inside).detach()).contiguous())


def wiener_phase(shape: tuple[int, ...], linewidth_ts: float, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Wiener phase ``θ = cumsum(Δ)`` along the last dim, ``Δ ~ N(0, 2π β T_s)`` (``linewidth_ts`` = β T_s)."""
    bt = float(linewidth_ts)
    if not math.isfinite(bt) or bt < 0:
        raise DiffcommError(f"phase_noise: linewidth_ts (linewidth × symbol time) must be >= 0, got {linewidth_ts!r}")
    gen_device = generator.device if generator is not None else device
    steps = torch.randn(*shape, generator=generator, device=gen_device, dtype=torch.float64)
    return (steps * math.sqrt(2 * math.pi * bt)).cumsum(-1).to(device=device, dtype=dtype)


def phase_noise(y: torch.Tensor, linewidth_ts: float, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y e^{jθ}, θ)`` with Wiener phase θ (:func:`wiener_phase`) along the last dim; differentiable in ``y``."""
    _complex(y, "phase_noise")
    theta = wiener_phase(tuple(y.shape), linewidth_ts, generator, y.device, y.real.dtype)
    return y * torch.polar(torch.ones_like(theta), theta), theta


def cfo_phase(k: int, eps: float | torch.Tensor, device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Phase ramp ``2π ε n``, ``n = 0..k−1`` (``eps`` a float or a tensor broadcastable to ``(..., 1)``)."""
    n = torch.arange(k, device=device, dtype=dtype)
    e = torch.as_tensor(eps, dtype=dtype, device=device)
    if not torch.isfinite(e).all():
        raise DiffcommError(f"cfo: eps (offset / symbol rate) must be finite, got {eps!r}")
    return 2 * math.pi * e * n


def cfo(y: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
    """Carrier-frequency offset ``y_n e^{j 2π ε n}`` along the last dim; differentiable in ``y`` and ``eps``."""
    _complex(y, "cfo")
    theta = cfo_phase(y.shape[-1], eps, y.device, y.real.dtype)
    return y * torch.polar(torch.ones_like(theta), theta)


# ---- stages on a link --------------------------------------------------------------------------------------

_DEFAULTS: dict[str, dict[str, Any]] = {
    "rapp": {"p": 2.0, "a_sat": 1.0},
    "limiter": {"a_sat": 1.0},
    "clip": {"ratio": 1.0},
    "adc": {"bits": 4, "full_scale": None, "loading": 3.0},
    "phase-noise": {"linewidth_ts": 1e-3},
    "cfo": {"eps": 1e-3},
}


@dataclass(frozen=True)
class Impairment:
    """One impairment stage (build it with :func:`impairment`): ``kind``, its parameters, modelled or not."""

    kind: str
    modelled: bool = False
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def side(self) -> str:
        """``"tx"`` (before the channel) or ``"rx"`` (after it)."""
        return "tx" if self.kind in TX_KINDS else "rx"

    @property
    def phase_only(self) -> bool:
        """True for unit-phasor stages (phase noise, CFO), which a modelled stage folds into the CSI."""
        return self.kind in PHASE_KINDS

    def transmit(self, s: torch.Tensor) -> torch.Tensor:
        """A transmitter stage on symbols ``s`` (B, k)."""
        p = self.params
        if self.kind == "rapp":
            return rapp(s, p["p"], p["a_sat"])
        if self.kind == "limiter":
            return soft_limiter(s, p["a_sat"])
        return clip_papr(s, p["ratio"])

    def full_scale(self, h_hat: torch.Tensor | None, mixing: torch.Tensor | None, n0: float,
                   batch: int) -> torch.Tensor:
        """The ADC full scale per image ``(B,)``: fixed, or the AGC's ``loading · √((P_signal + N0)/2)``."""
        if self.params["full_scale"] is not None:
            return torch.full((batch,), float(self.params["full_scale"]))
        if mixing is not None:
            signal = mixing.abs().pow(2).sum(-1).reshape(batch, -1).mean(1).float()
        elif h_hat is not None:
            signal = h_hat.abs().pow(2).reshape(batch, -1).mean(1).float()
        else:
            signal = torch.ones(batch)
        return self.params["loading"] * ((signal + n0) / 2).sqrt()

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "side": self.side, "modelled": self.modelled, **self.params}


def impairment(kind: str, *, modelled: bool = False, **params: Any) -> Impairment:
    """An :class:`Impairment` stage with checked parameters (one-line errors); defaults in brackets.

    ``rapp`` (p [2], a_sat [1]), ``limiter`` (a_sat [1]), ``clip`` (ratio [1]: A / rms), ``adc`` (bits [4],
    full_scale [None: AGC], loading [3]: FS / rms per real dimension), ``phase-noise`` (linewidth_ts
    [1e-3]: β T_s), ``cfo`` (eps [1e-3]: cycles per symbol). Amplitudes are relative to the unit-power
    symbols (``a_sat = 1``: saturation at the rms input, 0 dB input back-off).
    """
    if kind not in KINDS:
        raise DiffcommError(f"unknown impairment {kind!r}; choose one of {', '.join(KINDS)}")
    if not isinstance(modelled, bool):
        raise DiffcommError(f"impairment {kind}: modelled must be True or False, got {modelled!r}")
    unknown = sorted(set(params) - set(_DEFAULTS[kind]))
    if unknown:
        raise DiffcommError(f"impairment {kind} has no parameter {unknown[0]!r}; its parameters: "
                            f"{', '.join(_DEFAULTS[kind])}")
    p = {**_DEFAULTS[kind], **params}
    who = f"impairment {kind}"
    if kind == "rapp":
        p["p"], p["a_sat"] = float(_positive(p["p"], "p", who)), float(_positive(p["a_sat"], "a_sat", who))
    elif kind == "limiter":
        p["a_sat"] = float(_positive(p["a_sat"], "a_sat", who))
    elif kind == "clip":
        p["ratio"] = float(_positive(p["ratio"], "ratio", who))
    elif kind == "adc":
        p["bits"] = _bits(p["bits"])
        if p["full_scale"] is not None:
            p["full_scale"] = float(_positive(p["full_scale"], "full_scale", who))
        p["loading"] = float(_positive(p["loading"], "loading", who))
    elif kind == "phase-noise":
        bt = p["linewidth_ts"]
        if isinstance(bt, bool) or not isinstance(bt, (int, float)) or not math.isfinite(bt) or bt < 0:
            raise DiffcommError(f"{who}: linewidth_ts (linewidth × symbol time) must be a number >= 0, got {bt!r}")
        p["linewidth_ts"] = float(bt)
    else:
        eps = p["eps"]
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps):
            raise DiffcommError(f"{who}: eps (offset / symbol rate) must be a finite number, got {eps!r}")
        p["eps"] = float(eps)
    return Impairment(kind, modelled, p)


def with_impairments(link: Any, *stages: Impairment) -> Any:
    """A copy of ``link`` (sharing its encoder and channel) with impairment ``stages`` in the given order.

    Transmitter stages run on the normalised symbols, receiver stages on the received ones, each in order.
    """
    for st in stages:
        if not isinstance(st, Impairment):
            raise DiffcommError(f"with_impairments: stages must be built with impairment(...), got {type(st).__name__}")
        if st.modelled and st.phase_only and getattr(link, "csi", "perfect") == "none":
            raise DiffcommError(f"impairment {st.kind}: a modelled phase stage is folded into the receiver's CSI; "
                                f"with csi 'none' make it unmodelled")
    out = copy.copy(link)
    out.stages = tuple(getattr(link, "stages", ())) + tuple(stages)
    return out


def is_nonlinear(stages: tuple[Impairment, ...]) -> bool:
    """True when a modelled stage makes the receiver's operator nonlinear (PA, clipping, ADC)."""
    return any(st.modelled and not st.phase_only for st in stages)


def transmit_stages(stages: tuple[Impairment, ...], z: torch.Tensor) -> torch.Tensor:
    """Every transmitter stage on the normalised symbols ``z`` (B, k), in order."""
    for st in stages:
        if st.side == "tx":
            z = st.transmit(z)
    return z


def _rotate(theta: torch.Tensor, h_hat: torch.Tensor | None, mixing: torch.Tensor | None
            ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    phasor = torch.polar(torch.ones_like(theta), theta)
    if h_hat is not None:
        h_hat = h_hat * phasor.to(h_hat.dtype)
    if mixing is not None:
        b, u, s = mixing.shape[:3]
        pad = torch.cat([phasor, phasor.new_ones(b, u * s - phasor.shape[1])], dim=1).reshape(b, u, s, 1)
        mixing = mixing * pad.to(mixing.dtype)
    return h_hat, mixing


def receive_stages(stages: tuple[Impairment, ...], y: torch.Tensor, h_hat: torch.Tensor | None,
                   mixing: torch.Tensor | None, n0: float, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Every receiver stage on ``y`` (B, k), in order: ``(y, h_hat, mixing)`` with modelled phases folded into
    the CSI. Phase noise draws from ``generator`` (after the link's gains, noise and pilots)."""
    b, k = y.shape
    for st in stages:
        if st.side != "rx":
            continue
        if st.kind == "adc":
            y = quantize_adc(y, st.params["bits"], st.full_scale(h_hat, mixing, n0, b).to(y.device))
            continue
        if st.kind == "phase-noise":
            theta = wiener_phase((b, k), st.params["linewidth_ts"], generator, y.device, y.real.dtype)
        else:
            theta = cfo_phase(k, st.params["eps"], y.device, y.real.dtype).expand(b, k)
        y = y * torch.polar(torch.ones_like(theta), theta)
        if st.modelled:
            h_hat, mixing = _rotate(theta, h_hat, mixing)
    return y, h_hat, mixing


def model_forward(op: Any, x: torch.Tensor) -> torch.Tensor:
    """The receiver's model of a link with modelled nonlinear stages: ``Q(propagate(f(g E(x))))``.

    ``op`` is the :class:`~diffcomm.link.LinkOperator`; ``f`` are the modelled transmitter stages, ``Q``
    the modelled ADCs (with the AGC full scale the receiver set), phases are already in its CSI.
    """
    rx, stages = op.rx, op.link.stages
    z = op.link.encoder(x)
    s = rx.gain.reshape(-1, 1).to(z.real.dtype) * z
    for st in stages:
        if st.modelled and st.side == "tx":
            s = st.transmit(s)
    y = op.propagate(s)
    for st in stages:
        if st.modelled and st.kind == "adc":
            fs = st.full_scale(rx.h_hat, getattr(rx, "mixing", None), rx.n0, rx.batch).to(y.device)
            y = quantize_adc(y, st.params["bits"], fs)
    return y
