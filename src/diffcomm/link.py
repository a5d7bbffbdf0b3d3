"""The communication link: encoder -> power normalisation -> fading channel -> noise, with receiver CSI.

The link implements ``y = A(x) + n`` (docs/architecture.md) for one image per batch row::

    z = E(x)                         encoder output, complex (B, k)
    g = sqrt(k) / ||z||              per-image power-normalisation gain (mean |g z|^2 = 1)
    y = h ⊙ (g z) + n,  n ~ CN(0, N0 I),  N0 = 10^(-SNR/10)

**Side information.** ``g`` is one real number per image, sent to the receiver error-free as side
information (e.g. in a packet header) and *not* counted as a channel use; it reveals ``||E(x)||``.
Given ``g``, the noiseless operator ``A(x) = ĥ ⊙ g E(x)`` (:meth:`Link.forward`) is linear in x
whenever E is, which is what makes exact pseudo-inverse and Gaussian-posterior receivers possible.

**CSI.** ``csi="perfect"``: ``ĥ = h``. ``csi="estimated"``: each coherence block of the channel
(see :class:`diffcomm.channels.Channel`) is preceded by ``n_pilots`` unit-power Zadoff-Chu pilots
that go through the *same* gain; the receiver estimates one gain per block by LS or LMMSE
(:mod:`diffcomm.channels.estimation`) and ``ĥ`` is that estimate. ``csi="none"``: ``ĥ`` is None and
a (blind) receiver must pass its own ``h`` to :meth:`Link.forward`.

**Bandwidth.** Pilots are channel uses: ``pilots_used = n_pilots × blocks`` per image, so the frame
takes ``k + pilots_used`` uses. ``pilots_in_budget`` states what a result is charged:
``False`` (default): the CBR budget counts data symbols only and pilots are overhead reported
beside it (``link.cbr = k / n``); ``True``: the budget counts data + pilots
(``link.cbr = (k + pilots_used) / n``); :func:`make_link` then shrinks the encoder so that data
and pilots fit in ``round(cbr · n)``.
A channel may add ``extra_uses`` per frame (:meth:`Channel.extra_uses`; OFDM: the zero-padded
REs of the last OFDM symbol and the cyclic prefixes); they count in ``channel_uses`` and, with
``pilots_in_budget=True``, in the charged CBR (:func:`make_link` sizes the encoder for pilots only).

**What the receiver sees, and what it does not.** :meth:`Link.transmit` returns a
:class:`Received` record: ``y``, the receiver's CSI ``h_hat``, ``n0``, the gain side information
and the pilots. The true gains are a separate :class:`ChannelTruth` (``transmit(...,
return_truth=True)``), kept for evaluation and never handed to a receiver.

**The operator.** :meth:`Link.operator` gives the noiseless link seen by the receiver,
``A = ĥ ⊙ g E``, as a :class:`LinkOperator`: ``A(x)`` for any encoder (differentiable), and for
linear encoders the real matrix, its adjoint, one truncated SVD per batch (shared across the batch
when the per-image scaling is a single complex number, e.g. AWGN or one fading block), the exact
pseudo-inverse and the model-space system ``y_m = A_m x_m + n`` that ΠGDM, DDNM, DiffPIR and CDDM
use. Every receiver goes through it.

**SNR mismatch** (``assumed_snr_db``; issue 16, robustness to a receiver told the wrong SNR, as in
DiffCom's robustness tests): the channel adds noise at the true ``snr_db`` while everything the
receiver derives from the noise level uses the SNR it was told: :attr:`Received.n0` is the assumed
``N0``, and so are the LMMSE pilot estimator's weights, the MIMO front end (MMSE detector) and an ADC's
AGC. The received ``y`` of a flat or OFDM channel is bit-identical to the matched link's (same
generator); ``None`` (default) is the matched link.

**Randomness.** :meth:`Link.transmit` draws, in order, the block gains, the data noise, then the pilot
noise from one generator, so the same seed gives the same h and y whatever the CSI mode.

**Mixing channels (MIMO).** A channel with ``propagate`` and ``detect``
(:class:`diffcomm.channels.mimo.MIMOChannel`) sends the raw signal, the CSI is taken, then the
receiver's front end turns it into ``(B, k)`` streams: ``h_hat`` holds their per-stream gains (so
per-symbol decoders work unchanged) and :attr:`Received.mixing` the exact per-use mixing M of the
streams; :meth:`Link.operator` then returns a :class:`MixingOperator` (``A = M ⊛ g E``), not the
diagonal. Such a channel's ``extra_uses`` is negative (n_t symbols share one use). A channel with
``receiver_mixing`` (OFDM with a cyclic prefix shorter than the channel memory) hands the receiver its
whole-frame operator the same way, as one ``(B, 1, k, k)`` block: ISI-aware receivers.

**Impairment stages** (:mod:`diffcomm.channels.impairments`, attached with
``with_impairments(link, ...)``): transmitter stages act on ``g z`` before the channel, receiver
stages on ``y`` after it (drawing from the generator after the pilots). Modelled phase stages are
folded into ``h_hat``; modelled nonlinear ones (PA, clipping, ADC) make ``A`` nonlinear
(``is_linear`` False, :func:`~diffcomm.channels.impairments.model_forward`).

Example:
    >>> link = make_link("gaussian", (1, 28, 28), "1/16", channel="rayleigh", snr_db=10.0)
    >>> rx = link.transmit(torch.rand(2, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    >>> rx.y.shape, link.k, rx.pilots_used
    (torch.Size([2, 49]), 49, 0)
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch

from diffcomm.channels import (
    Channel,
    MIMOChannel,
    OFDMChannel,
    check_shape,
    complex_to_real,
    make_channel,
    normalize_power,
    pilot_sequence,
    real_to_complex,
    snr_db_to_n0,
    symbols_for_cbr,
)
from diffcomm.channels.estimation import PILOT_ESTIMATORS
from diffcomm.channels.impairments import is_nonlinear, model_forward, receive_stages, transmit_stages
from diffcomm.channels.units import SNR_DB_RANGE
from diffcomm.errors import DiffcommError
from diffcomm.linalg import SVD, bmv, cast_rows, shared, truncated_svd

F64 = torch.float64
_REWEIGHABLE = (Channel.estimate_csi, OFDMChannel.estimate_csi, MIMOChannel.estimate_csi)   # see lmmse_from_ls
DENSE_AUTO_MAX_N = 4096   # images up to this many values (64×64×1) use the dense path by default
CSI_MODES = ("perfect", "estimated", "none")
ESTIMATORS = PILOT_ESTIMATORS


@dataclass
class Received:
    """What the receiver sees for a batch (all tensors detached); never the true channel."""

    y: torch.Tensor                       # complex (B, k): received data symbols (pilots removed)
    h_hat: torch.Tensor | None            # complex (B, k): receiver CSI (h, an estimate, or None)
    n0: float                             # noise variance per complex symbol the receiver believes (assumed_snr_db)
    gain: torch.Tensor                    # real (B,): power-normalisation gain (side information)
    pilots_used: int                      # channel uses per image spent on pilots
    y_pilot: torch.Tensor | None = None   # complex (B, blocks, n_pilots): received pilots (csi="estimated")
    pilots: torch.Tensor | None = None    # complex (n_pilots,): the pilot sequence (csi="estimated")
    mixing: torch.Tensor | None = None    # complex (B, uses, s, s): exact per-use stream mixing (MIMO; OFDM ISI:
    #                                       one (B, 1, k, k) frame operator), else None

    @property
    def batch(self) -> int:
        return self.y.shape[0]


@dataclass
class ChannelTruth:
    """The ground truth of one transmission, for evaluation only (receivers never get it)."""

    h: torch.Tensor                       # complex (B, k): the true per-symbol gains (MIMO: (B, uses, n_r, n_t))
    z: torch.Tensor                       # complex (B, k): the transmitted (power-normalised) symbols


class Link:
    """Encoder + power normalisation + channel + CSI at a fixed SNR; see the module docstring.

    ``encoder`` is any callable ``x -> complex (B, k)`` with attributes ``k`` and ``shape``
    (e.g. from :func:`diffcomm.transmit.make_encoder`); ``channel`` a :class:`Channel` or a name for
    :func:`diffcomm.channels.make_channel`. ``assumed_snr_db``: the SNR the receiver is told when it
    differs from the true ``snr_db`` (SNR-mismatch robustness; see the module docstring), None = matched.
    """

    def __init__(self, encoder: Any, channel: Channel | str, snr_db: float, csi: str = "perfect", n_pilots: int = 0,
                 pilot_estimator: str = "lmmse", pilots_in_budget: bool = False,
                 assumed_snr_db: float | None = None):
        k = getattr(encoder, "k", None)
        if not callable(encoder) or isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise DiffcommError("Link: encoder must be callable with an int attribute k >= 1; "
                                "build one with diffcomm.transmit.make_encoder")
        self.encoder = encoder
        self.shape = check_shape(getattr(encoder, "shape", None))
        self.channel = make_channel(channel) if isinstance(channel, str) else channel
        if not isinstance(self.channel, Channel):
            raise DiffcommError(f"Link: channel must be a name or a diffcomm.channels.Channel, got {channel!r}")
        self.n0 = float(snr_db_to_n0(snr_db))
        self.snr_db = float(snr_db)
        if csi not in CSI_MODES:
            raise DiffcommError(f"Link: csi must be one of {', '.join(CSI_MODES)}, got {csi!r}")
        if pilot_estimator not in ESTIMATORS:
            raise DiffcommError(f"Link: pilot_estimator must be 'ls' or 'lmmse', got {pilot_estimator!r}")
        if isinstance(n_pilots, bool) or not isinstance(n_pilots, int) or n_pilots < 0:
            raise DiffcommError(f"Link: n_pilots must be an int >= 0, got {n_pilots!r}")
        if csi == "estimated" and n_pilots < 1:
            raise DiffcommError("Link: csi='estimated' needs n_pilots >= 1 pilot symbols per coherence block")
        if csi != "estimated" and n_pilots:
            raise DiffcommError(f"Link: n_pilots applies to csi='estimated' only; drop it or set csi='estimated' "
                                f"(got csi={csi!r})")
        if not isinstance(pilots_in_budget, bool):
            raise DiffcommError(f"Link: pilots_in_budget must be True or False, got {pilots_in_budget!r}")
        self.csi, self.n_pilots, self.pilot_estimator = csi, n_pilots, pilot_estimator
        self.pilots_in_budget = pilots_in_budget
        check = getattr(self.channel, "check_csi", None)        # channels that cannot serve every CSI mode (MIMO)
        if callable(check):
            check(csi, n_pilots)
        self.stages: tuple = ()   # impairment stages (diffcomm.channels.impairments.with_impairments)
        self.assumed_snr_db: float | None = check_assumed_snr(self, assumed_snr_db)
        self.k: int = k
        self.n: int = math.prod(self.shape)
        self.blocks: int = self.channel.num_blocks(k)
        self.pilots_used: int = self.channel.pilot_uses(k, n_pilots) if csi == "estimated" else 0
        self.extra_uses: int = int(self.channel.extra_uses(k))   # e.g. OFDM zero padding + cyclic prefixes
        self.pilots = pilot_sequence(n_pilots) if csi == "estimated" else None

    # ---- bookkeeping ---------------------------------------------------------------------------
    @property
    def is_linear(self) -> bool:
        """True for linear encoders: a dense ``matrix`` tensor, or a matrix-free one (``matrix_free = True`` with
        ``apply_adjoint`` and ``pinv``, e.g. :class:`diffcomm.transmit.linear.Downsample`)."""
        enc = self.encoder
        if not getattr(enc, "is_linear", False) or is_nonlinear(getattr(self, "stages", ())):
            return False
        if getattr(enc, "matrix_free", False):
            return callable(getattr(enc, "apply_adjoint", None)) and callable(getattr(enc, "pinv", None))
        return torch.is_tensor(getattr(enc, "matrix", None))

    @property
    def kind(self) -> str:
        """``"linear"`` (exact matrix), ``"jscc"`` (a DeepJSCC encoder with a decoder) or ``"nonlinear"``."""
        if self.is_linear:
            return "linear"
        model = getattr(self.encoder, "model", None)
        return "jscc" if model is not None and hasattr(model, "decode") else "nonlinear"

    @property
    def receiver_snr_db(self) -> float:
        """The SNR (dB) the receiver believes: ``assumed_snr_db`` when set, else the true ``snr_db``."""
        assumed = getattr(self, "assumed_snr_db", None)
        return self.snr_db if assumed is None else assumed

    @property
    def receiver_n0(self) -> float:
        """The noise variance the receiver believes (:attr:`Received.n0`); the channel adds :attr:`n0`."""
        assumed = getattr(self, "assumed_snr_db", None)
        return self.n0 if assumed is None else float(snr_db_to_n0(assumed))

    @property
    def channel_uses(self) -> int:
        """Complex channel uses per image: data symbols, pilots and the channel's extra uses (OFDM padding + CP)."""
        return self.k + self.pilots_used + self.extra_uses

    @property
    def cbr(self) -> float:
        """The CBR this link is charged: ``k / n``, or ``(k + pilots_used) / n`` if ``pilots_in_budget``."""
        return (self.channel_uses if self.pilots_in_budget else self.k) / self.n

    def config(self) -> dict[str, Any]:
        """JSON-ready description for results records."""
        enc = self.encoder.config() if hasattr(self.encoder, "config") else {"name": getattr(self.encoder, "name", "?")}
        return {"encoder": enc, "channel": self.channel.config(), "snr_db": self.snr_db, "n0": self.n0,
                "csi": self.csi, "n_pilots": self.n_pilots, "pilot_estimator": self.pilot_estimator,
                "pilots_in_budget": self.pilots_in_budget, "k": self.k, "pilots_used": self.pilots_used,
                "extra_uses": self.extra_uses, "channel_uses": self.channel_uses, "cbr": self.cbr,
                **({"assumed_snr_db": self.assumed_snr_db, "assumed_n0": self.receiver_n0}
                   if getattr(self, "assumed_snr_db", None) is not None else {}),
                **({"impairments": [st.config() for st in self.stages]} if getattr(self, "stages", ()) else {})}

    def __repr__(self) -> str:
        assumed = getattr(self, "assumed_snr_db", None)
        told = "" if assumed is None else f", assumed_snr_db={assumed:g}"
        return (f"Link(encoder={getattr(self.encoder, 'name', '?')}, channel={self.channel!r}, snr_db={self.snr_db:g}"
                f"{told}, csi={self.csi!r}, k={self.k}, pilots_used={self.pilots_used})")

    # ---- checks ----------------------------------------------------------------------------------
    def _check_images(self, x: torch.Tensor, who: str, check_range: bool) -> None:
        want = f"(B, {', '.join(map(str, self.shape))})"
        if not torch.is_tensor(x) or not x.is_floating_point() or x.ndim != 4 or tuple(x.shape[1:]) != self.shape:
            got = (str(x.dtype), tuple(x.shape)) if torch.is_tensor(x) else type(x).__name__
            raise DiffcommError(f"{who}: x must be float images {want} in [0, 1], got {got}")
        if x.shape[0] < 1:
            raise DiffcommError(f"{who}: x is an empty batch")
        if check_range:
            xd = x.detach()
            if not torch.isfinite(xd).all():
                raise DiffcommError(f"{who}: x contains NaN or inf")
            if xd.min() < 0 or xd.max() > 1:
                raise DiffcommError(f"{who}: pixels must be in [0, 1], got [{float(xd.min()):.4g}, "
                                    f"{float(xd.max()):.4g}]; rescale the images")

    def _coefficients(self, rx: Received, h: torch.Tensor | None, who: str) -> torch.Tensor:
        """``ĥ ⊙ g`` as complex ``(B, k)``: the per-symbol factor applied to ``E(x)``."""
        if not isinstance(rx, Received):
            raise DiffcommError(f"{who}: rx must be the Received record from link.transmit")
        if h is None:
            h = rx.h_hat
        if h is None:
            raise DiffcommError(f"{who}: this link has csi='none'; pass the channel to use, e.g. {who}(..., h=h_est)")
        if not torch.is_tensor(h):
            raise DiffcommError(f"{who}: h must be a tensor broadcastable to ({rx.batch}, {self.k})")
        try:
            shape = torch.broadcast_shapes(h.shape, (rx.batch, self.k))
        except RuntimeError:
            shape = None
        if shape != (rx.batch, self.k):
            raise DiffcommError(f"{who}: h {tuple(h.shape)} does not broadcast to ({rx.batch}, {self.k})")
        h = h if h.is_complex() else h.to(torch.complex64)
        return h * rx.gain.reshape(-1, 1).to(h.real.dtype)

    def _need_linear(self, who: str) -> None:
        if not self.is_linear:
            raise DiffcommError(f"{who} needs a linear encoder ('gaussian' or 'downsample'), "
                                f"got {getattr(self.encoder, 'name', type(self.encoder).__name__)!r}")

    # ---- the link --------------------------------------------------------------------------------
    def transmit(self, x: torch.Tensor, generator: torch.Generator | None = None,
                 return_truth: bool = False) -> Received | tuple[Received, ChannelTruth]:
        """Send a batch of images ``x`` (float ``(B, C, H, W)`` in [0, 1]) through the link.

        Returns the detached :class:`Received` record, or ``(Received, ChannelTruth)`` with
        ``return_truth=True``.
        """
        self._check_images(x, "transmit", check_range=True)
        with torch.no_grad():
            z = self.encoder(x)
            if not torch.is_tensor(z) or not z.is_complex() or tuple(z.shape) != (x.shape[0], self.k):
                got = (z.dtype, tuple(z.shape)) if torch.is_tensor(z) else type(z).__name__
                raise DiffcommError(f"transmit: encoder must return complex ({x.shape[0]}, {self.k}), got {got}")
            z, gain = normalize_power(z.to(torch.complex64))
            if self.stages:
                z = transmit_stages(self.stages, z)
            h = self.channel.generate(x.shape[0], self.k, generator, device=x.device)
            split = all(callable(getattr(self.channel, a, None)) for a in ("propagate", "detect"))   # MIMO front end
            y = (self.channel.propagate if split else self.channel.apply)(z, h, self.n0, generator)   # true noise
            n0_rx = self.receiver_n0                             # what the receiver believes (assumed_snr_db)
            h_hat, y_pilot, pilots = None, None, None
            if self.csi == "perfect":
                h_hat = h.clone()
            elif self.csi == "estimated":
                h_hat, y_pilot, pilots = self._estimate_csi(h, n0_rx, generator)
            mixing = None
            if split:                                            # the receiver front end with its CSI (MIMO)
                y, h_hat, mixing = self.channel.detect(y, h_hat, n0_rx, self.k)
            elif h_hat is not None and callable(getattr(self.channel, "receiver_mixing", None)):
                # a frame operator beyond diag(h_hat) (OFDM with a short CP: ISI); perfect CSI: the true draw
                mixing = self.channel.receiver_mixing(h if self.csi == "perfect" else h_hat, self.k)
            if self.stages:
                y, h_hat, mixing = receive_stages(self.stages, y, h_hat, mixing, n0_rx, generator)
        rx = Received(y=y, h_hat=h_hat, n0=n0_rx, gain=gain, pilots_used=self.pilots_used,
                      y_pilot=y_pilot, pilots=pilots, mixing=mixing)
        return (rx, ChannelTruth(h=h, z=z)) if return_truth else rx

    def _estimate_csi(self, h: torch.Tensor, n0_rx: float, generator: torch.Generator | None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pilot-aided CSI: the pilots get the true noise ``self.n0``; an LMMSE estimator weighs them with the
        receiver's belief ``n0_rx``. Matched (or LS): the channel's own estimator. Mismatched LMMSE: the channel's
        LS estimate (the same pilots and noise draws; LS does not use N0), re-weighted by :func:`lmmse_from_ls`."""
        ch = self.channel
        if self.pilot_estimator == "ls" or n0_rx == self.n0:
            return ch.estimate_csi(h, self.k, self.n0, self.n_pilots, self.pilot_estimator, generator)
        h_ls, y_pilot, pilots = ch.estimate_csi(h, self.k, self.n0, self.n_pilots, "ls", generator)
        return lmmse_from_ls(ch, h_ls, n0_rx, self.n_pilots), y_pilot, pilots

    def operator(self, rx: Received, h: torch.Tensor | None = None, matrix_free: bool | None = None) -> LinkOperator:
        """The noiseless link ``A = ĥ ⊙ g E`` the receiver sees for ``rx`` (``h`` overrides ``rx.h_hat``).

        ``matrix_free``: None (default) picks the matrix-free path for encoders that offer one when the
        image has more than :data:`DENSE_AUTO_MAX_N` values or no dense matrix; True / False force it.
        """
        if h is None and getattr(rx, "mixing", None) is not None:     # streams mixed within a use (MIMO)
            return MixingOperator(self, rx, matrix_free=matrix_free)
        return LinkOperator(self, rx, h, matrix_free=matrix_free)

    def forward(self, x: torch.Tensor, rx: Received, h: torch.Tensor | None = None) -> torch.Tensor:
        """Noiseless, differentiable ``A(x) = ĥ ⊙ g E(x)``: complex ``(B, k)`` (= ``self.operator(rx, h)(x)``).

        Uses the receiver's CSI ``rx.h_hat`` and the transmitted gain ``rx.gain``; ``h`` (broadcastable
        to ``(B, k)``, e.g. ``(B, 1)`` for one gain per image) overrides ``rx.h_hat`` and is required
        when ``csi="none"``. ``x`` may be any real images of the right shape (no range check), so
        receivers can pass intermediate estimates; gradients flow to ``x`` and ``h``.
        """
        return self.operator(rx, h)(x)

    def matrix(self, rx: Received, h: torch.Tensor | None = None) -> torch.Tensor:
        """Real matrix of ``A`` per image, ``(B, 2k, n)``; see :meth:`LinkOperator.matrix`."""
        return self.operator(rx, h).matrix()

    def pinv(self, y: torch.Tensor, rx: Received, h: torch.Tensor | None = None) -> torch.Tensor:
        """Exact pseudo-inverse ``A^+ y`` per image; see :meth:`LinkOperator.pinv`."""
        return self.operator(rx, h).pinv(y)


@dataclass
class ModelSpaceSystem:
    """A linear link's observation model in a prior's model space (float64).

    ``y = a x_m + n`` with ``n ~ N(0, noise_var I)``, ``a`` ``(B, m, n)`` (m = 2k real measurements),
    ``y`` ``(B, m)``, and the truncated SVD of ``a`` (factorised once per batch). For the shipped
    priors (``x_m = 2 x − 1``) ``a = M/2``, ``y = complex_to_real(y) − M·1/2`` and
    ``noise_var = N0/2`` (:meth:`LinkOperator.model_space`).
    """

    a: torch.Tensor
    y: torch.Tensor
    noise_var: float
    svd: SVD

    def _factored(self) -> bool:
        """True when ``a`` differs per row but the SVD's ``u`` and ``vᵀ`` are shared by the batch (e.g. AWGN
        with one power gain per image: ``a_b = |c_b| Q E``): then ``a = u diag(s) vᵀ`` (all r singular values,
        exact to rounding) is applied as shared matrix products instead of B per-row ones."""
        f = self.svd
        return shared(self.a) is None and shared(f.u) is not None and shared(f.vh) is not None

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``a x`` for model-space images ``x`` (B, ...) -> float64 (B, m)."""
        xf = x.flatten(1).to(F64)
        if self._factored():
            return bmv(self.svd.u, self.svd.s * bmv(self.svd.vh, xf))
        return bmv(self.a, xf)

    def adjoint(self, v: torch.Tensor) -> torch.Tensor:
        """``aᵀ v`` for ``v`` (B, m) -> float64 (B, n)."""
        if self._factored():
            f = self.svd
            return bmv(f.vh.transpose(-1, -2), f.s * bmv(f.u.transpose(-1, -2), v))
        return bmv(self.a.transpose(-1, -2), v)

    def pinv(self, v: torch.Tensor) -> torch.Tensor:
        """``a⁺ v`` -> float64 (B, n)."""
        f = self.svd
        return bmv(f.vh.transpose(-1, -2), f.s_inv * bmv(f.u.transpose(-1, -2), v))

    def solve(self, v: torch.Tensor, r2: float | torch.Tensor, noise_var: float | torch.Tensor) -> torch.Tensor:
        """``(r² a aᵀ + noise_var I)⁻¹ v`` through the SVD (exact; ``u`` is square when m ≤ n) -> (B, m)."""
        f = self.svd
        r2 = torch.as_tensor(r2, dtype=F64).reshape(-1, 1)
        nv = torch.as_tensor(noise_var, dtype=F64).reshape(-1, 1)
        ut_v = bmv(f.u.transpose(-1, -2), v)
        inside = bmv(f.u, ut_v / (r2 * f.s_kept ** 2 + nv))
        return inside + (v - bmv(f.u, ut_v)) / nv

    def prox(self, x0: torch.Tensor, rho: float | torch.Tensor) -> torch.Tensor:
        """``argmin_x ‖y − a x‖² + ρ ‖x − x0‖²`` = ``x0 + aᵀ(a aᵀ + ρ I)⁻¹(y − a x0)`` -> float64 (B, n)."""
        f = self.svd
        rho = torch.as_tensor(rho, dtype=F64).reshape(-1, 1)
        x0f = x0.flatten(1).to(F64)
        resid = self.y - self.apply(x0f)
        coef = f.s_kept / (f.s_kept ** 2 + rho) * bmv(f.u.transpose(-1, -2), resid)
        return x0f + bmv(f.vh.transpose(-1, -2), coef)


class LinkOperator:
    """The noiseless link ``A(x) = ĥ ⊙ g E(x)`` of one received batch, as the receiver sees it.

    Built by :meth:`Link.operator`. ``op(x)`` is the complex ``(B, k)`` forward map for any encoder
    (differentiable in ``x``). For linear encoders also:

    - :meth:`matrix`: the real ``(B, 2k, n)`` matrix ``M`` with ``complex_to_real(A(x)) = M vec(x)``;
    - :meth:`adjoint`: ``Mᵀ v``;
    - :meth:`svd`: the truncated float64 SVD of ``M``, computed once. When each image's symbols share
      one complex coefficient ``c = ĥ g`` up to phase (AWGN, one fading block per frame),
      ``M = |c| Q E`` with ``Q`` orthogonal, so the encoder's cached SVD is reused:
      ``U = Q U_E``, ``s = |c| s_E``, ``Vᵀ = V_Eᵀ`` — no per-image SVD. When every image's operator is the
      same (:attr:`rows_identical`, e.g. one power gain for the batch), :meth:`matrix` and the factors are one
      copy expanded over the batch, and every product with them is one matrix product;
    - :meth:`pinv`: ``A⁺ y`` and :meth:`model_space`: the system of :class:`ModelSpaceSystem`.

    **Matrix-free path** (``matrix_free``; chosen by default for encoders with ``matrix_free = True``
    on images above :data:`DENSE_AUTO_MAX_N` values, e.g. downsampling a 512×512×3 photo). Per symbol
    ``A`` multiplies ``E x`` by the complex ``c_j``; in reals that is the block ``R_j = [[Re c, −Im c],
    [Im c, Re c]]``, so ``M = R E`` with ``R`` block-diagonal and ``Rᵀ`` the real form of ``c̄``. Then

    - :meth:`adjoint`: ``Mᵀ v = Eᵀ complex_to_real(c̄ ⊙ v)`` (``encoder.apply_adjoint``);
    - :meth:`pinv`: for an encoder of full row rank (``E E⁺ = I``) and invertible ``R`` (every
      ``c_j ≠ 0``), ``M⁺ = Mᵀ(M Mᵀ)⁻¹ = E⁺ R⁻¹``, i.e. ``A⁺ y = E⁺ complex_to_real(y / c)``
      (``encoder.pinv``). This covers AWGN and block fading (one ``c`` per image; for a shared
      ``|c|`` it is the unitary-scaled pairing ``E⁺ Qᵀ / |c|`` of the shared-SVD path) and also fast
      fading. Gains below the package's SVD cut-off relative to the largest (``max(2k, n)·eps``)
      would make the dense pseudo-inverse drop those symbols; that case is refused with a one-line
      error when no dense matrix can be built, and falls back to the dense SVD otherwise.
    - :meth:`matrix`, :meth:`svd` and :meth:`model_space` still use the dense matrix, built lazily
      when the encoder can give one (a one-line error otherwise).

    Example:
        >>> link = make_link("gaussian", (1, 8, 8), "1/4", "rayleigh", 20.0)
        >>> rx = link.transmit(torch.rand(3, 1, 8, 8), generator=torch.Generator().manual_seed(0))
        >>> op = link.operator(rx)
        >>> op.matrix().shape, op.svd().s.shape
        (torch.Size([3, 32, 64]), torch.Size([3, 32]))
    """

    def __init__(self, link: Link, rx: Received, h: torch.Tensor | None = None, matrix_free: bool | None = None):
        self.link, self.rx = link, rx
        self.coefficients = link._coefficients(rx, h, "operator")      # complex (B or 1, k)
        self.batch = rx.batch
        self._matrix: torch.Tensor | None = None
        self._svd: SVD | None = None
        enc = link.encoder
        offers = link.is_linear and bool(getattr(enc, "matrix_free", False))
        if matrix_free is None:
            matrix_free = offers and (link.n > DENSE_AUTO_MAX_N or not getattr(enc, "has_matrix", True))
        elif matrix_free and not offers:
            raise DiffcommError(f"operator: encoder {getattr(enc, 'name', '?')!r} has no matrix-free path "
                                f"(it needs matrix_free = True, apply_adjoint and pinv)")
        self.matrix_free = bool(matrix_free)

    def _has_dense(self) -> bool:
        return bool(getattr(self.link.encoder, "has_matrix", True))

    @property
    def is_linear(self) -> bool:
        return self.link.is_linear

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``A(x)``: complex ``(B, k)``; differentiable in ``x`` (and in a tensor ``h`` given to the operator)."""
        self.link._check_images(x, "operator", check_range=False)
        if x.shape[0] != self.batch:
            raise DiffcommError(f"operator: x has batch {x.shape[0]} but rx has {self.batch}")
        if is_nonlinear(self.link.stages):                     # modelled PA / clipping / ADC stages
            return model_forward(self, x)
        return self.coefficients * self.link.encoder(x)

    def propagate(self, s: torch.Tensor) -> torch.Tensor:
        """The channel as the receiver models it on normalised symbols ``s = g E(x)`` (B, k): ``ĥ ⊙ s``."""
        return s * (self.coefficients / self.rx.gain.reshape(-1, 1).to(self.coefficients.real.dtype))

    def _coef(self) -> torch.Tensor:
        return self.coefficients.expand(self.batch, self.link.k)

    @property
    def rows_identical(self) -> bool:
        """True when every image's operator is the same (all rows of ``ĥ g`` equal exactly, e.g. AWGN with one
        power gain for the batch): then :meth:`matrix` and :meth:`svd` hold one factor, expanded over the
        batch (stride 0), and every product with them is one matrix product (:func:`diffcomm.linalg.bmv`)."""
        c = self._coef()
        return self.batch == 1 or bool((c == c[:1]).all())

    def matrix(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Real matrix per image ``(B, 2k, n)`` (float32 by default); rows in (Re, Im) pairs per symbol.

        For symbol j with ``c = ĥ_j g``: ``[Re; Im] = [[Re c, −Im c], [Im c, Re c]] · [E_2j; E_2j+1]``.
        Built once in float64 (the precision of :meth:`svd`) and cast.
        """
        self.link._need_linear("matrix")
        if not self._has_dense():
            raise DiffcommError(f"operator.matrix: a dense {2 * self.link.k}x{self.link.n} matrix is too large for "
                                f"this image; the matrix-free operator offers op(x), adjoint and pinv")
        if self._matrix is None:
            link = self.link
            c = self._coef().to(torch.complex128)
            rows = 1 if self.rows_identical else self.batch             # one matrix for identical rows
            c = c[:rows]
            e = link.encoder.matrix.to(device=c.device, dtype=F64).reshape(link.k, 2, link.n)
            er, ei = e[:, 0], e[:, 1]
            cr, ci = c.real[..., None], c.imag[..., None]
            re = cr * er - ci * ei
            im = ci * er + cr * ei
            m = torch.stack([re, im], dim=2).reshape(rows, 2 * link.k, link.n)
            self._matrix = m.expand(self.batch, -1, -1)
        return cast_rows(self._matrix, dtype)

    def adjoint(self, v: torch.Tensor) -> torch.Tensor:
        """``Mᵀ v`` for real ``v`` ``(B, 2k)`` -> float64 ``(B, n)`` (matrix-free: ``Eᵀ complex_to_real(c̄ ⊙ v)``)."""
        if self.matrix_free:
            w = real_to_complex(v.to(F64)) * self._coef().to(torch.complex128).conj()
            return self.link.encoder.apply_adjoint(complex_to_real(w))
        return bmv(self.matrix(F64).transpose(-1, -2), v.to(F64))

    def svd(self) -> SVD:
        """Truncated float64 SVD of :meth:`matrix` (cached; shared-factor fast path, see the class docstring)."""
        self.link._need_linear("svd")
        if not self._has_dense():
            raise DiffcommError(f"operator.svd: the {2 * self.link.k}x{self.link.n} link matrix is too large for an "
                                f"SVD; the matrix-free operator offers op(x), adjoint and pinv")
        if self._svd is None:
            c = self._coef().to(torch.complex128)
            mag = c.abs()
            if bool(torch.allclose(mag, mag[:, :1].expand_as(mag), rtol=1e-6, atol=0)):
                enc = self.link.encoder.svd                              # (2k, r), (r,), (r, n), (r,)
                k, r = self.link.k, enc.s.shape[0]
                phase = torch.where(mag > 0, c / mag.clamp_min(1e-300), torch.ones_like(c))   # (B, k)
                rows = 1 if bool((phase == phase[:1]).all()) else self.batch   # e.g. AWGN: one U for all
                u_c = torch.complex(enc.u[0::2], enc.u[1::2])            # (k, r) complex rows
                u_rot = phase[:rows, :, None] * u_c[None]                # (rows, k, r)
                u = torch.stack([u_rot.real, u_rot.imag], dim=2).reshape(rows, 2 * k, r).expand(self.batch, -1, -1)
                scale = mag[:, :1]                                       # (B, 1)
                s = scale * enc.s[None]
                keep = enc.keep[None].expand(self.batch, r) & (scale > 0)
                self._svd = SVD(u, s, enc.vh[None].expand(self.batch, r, enc.vh.shape[-1]), keep)
            elif self.rows_identical:                                    # one factorisation for the batch
                f = truncated_svd(self.matrix(F64)[0])
                self._svd = SVD(*(t[None].expand(self.batch, *t.shape) for t in (f.u, f.s, f.vh, f.keep)))
            else:
                self._svd = truncated_svd(self.matrix(F64))
        return self._svd

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """Exact pseudo-inverse ``A⁺ y`` per image -> float32 pixels ``(B, C, H, W)`` (not clamped)."""
        link = self.link
        link._need_linear("pinv")
        if not torch.is_tensor(y) or not y.is_complex() or y.ndim != 2 or y.shape[1] != link.k:
            got = (str(y.dtype), tuple(y.shape)) if torch.is_tensor(y) else type(y).__name__
            raise DiffcommError(f"pinv: y must be complex (B, {link.k}), got {got}")
        if y.shape[0] != self.batch:
            raise DiffcommError(f"pinv: y has batch {y.shape[0]} but rx has {self.batch}")
        if not torch.isfinite(torch.view_as_real(y)).all():
            raise DiffcommError("pinv: y contains NaN or inf")
        if self.matrix_free:
            x = self._pinv_matrix_free(y)
            if x is not None:
                return x.to(torch.float32).reshape(-1, *link.shape)
        f = self.svd()
        v = complex_to_real(y.to(torch.complex128))
        x = bmv(f.vh.transpose(-1, -2), f.s_inv * bmv(f.u.transpose(-1, -2), v))
        return x.to(torch.float32).reshape(-1, *link.shape)

    def _pinv_matrix_free(self, y: torch.Tensor) -> torch.Tensor | None:
        """``E⁺ complex_to_real(y / c)`` (float64 ``(B, n)``), or None to fall back to the dense SVD when some
        gain is below the cut-off and a dense matrix exists (see the class docstring)."""
        link, enc = self.link, self.link.encoder
        c = self._coef().to(torch.complex128)
        mag = c.abs()
        tol = max(2 * link.k, link.n) * torch.finfo(F64).eps * mag.amax(1, keepdim=True)
        small = (mag <= tol).any(1)
        if bool(small.any()) or not bool(getattr(enc, "full_row_rank", True)):
            if self._has_dense():
                return None
            raise DiffcommError(f"pinv: {int(small.sum())} image(s) have channel gains below the SVD cut-off on a "
                                f"{2 * link.k}x{link.n} link too large for a dense SVD; the matrix-free "
                                f"pseudo-inverse needs every per-symbol gain non-zero")
        return enc.pinv(complex_to_real(y.to(torch.complex128) / c))

    def model_space(self, scale: float = 2.0, offset: float = -1.0) -> ModelSpaceSystem:
        """The system ``y_m = A_m x_m + n`` for a prior on ``x_m = scale·x + offset`` (shipped priors: 2x − 1).

        ``x = (x_m − offset)/scale`` gives ``complex_to_real(y) = (M/scale) x_m − (offset/scale) M·1 + n``, so
        ``A_m = M/scale``, ``y_m = complex_to_real(y) + (offset/scale) M·1`` and ``noise_var = N0/2``.
        """
        m = self.matrix(F64)
        f = self.svd()
        y = complex_to_real(self.rx.y).to(F64) + (offset / scale) * m.sum(-1)
        svd = SVD(f.u, f.s / scale, f.vh, f.keep)
        one = shared(m)                                                   # keep a shared matrix shared
        a = (one / scale).expand_as(m) if one is not None else m / scale
        return ModelSpaceSystem(a=a, y=y, noise_var=self.rx.n0 / 2, svd=svd)


class MixingOperator(LinkOperator):
    """:class:`LinkOperator` of a link whose streams mix within a channel use (MIMO; :attr:`Received.mixing`).

    With ``s = g E(x)`` grouped into uses of ``n_t`` streams (the last use zero-padded), the receiver's
    model is ``y_u = M_u s_u + n`` per use, so ``A(x)`` applies the per-use matrices M (not their
    diagonal ``h_hat``). For linear encoders :meth:`matrix` is the real form of ``g M E`` (complex rows
    ``(M ⊛ E_c)`` with ``E_c = E_re + j E_im``, then (Re, Im) pairs per symbol, as in
    :meth:`LinkOperator.matrix`), and :meth:`svd`, :meth:`pinv` and :meth:`model_space` factorise that
    matrix per image (no shared-factor shortcut; no matrix-free path).
    """

    def __init__(self, link: Link, rx: Received, matrix_free: bool | None = None):
        if matrix_free:
            raise DiffcommError("operator: a MIMO link (streams mixed per channel use) has no matrix-free path")
        super().__init__(link, rx, None, matrix_free=False)
        self.mixing = rx.mixing

    def _mix(self, s: torch.Tensor) -> torch.Tensor:
        """``M ⊛ s`` for ``s`` ``(B, k, ...)`` complex: per use, the n_t streams times that use's M."""
        b, k = s.shape[:2]
        u, n_s = self.mixing.shape[1], self.mixing.shape[-1]
        tail = s.shape[2:]
        pad = torch.cat([s, s.new_zeros(b, u * n_s - k, *tail)], dim=1).reshape(b, u, n_s, -1)
        out = self.mixing.to(s.dtype) @ pad                                # (B, U, n_s, ·)
        return out.reshape(b, u * n_s, *tail)[:, :k]

    def propagate(self, s: torch.Tensor) -> torch.Tensor:
        """``M ⊛ s`` on normalised symbols ``s`` (B, k)."""
        return self._mix(s)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``A(x) = M ⊛ (g E(x))``: complex ``(B, k)``; differentiable in ``x``."""
        self.link._check_images(x, "operator", check_range=False)
        if x.shape[0] != self.batch:
            raise DiffcommError(f"operator: x has batch {x.shape[0]} but rx has {self.batch}")
        if is_nonlinear(self.link.stages):
            return model_forward(self, x)
        z = self.link.encoder(x)
        return self._mix(self.rx.gain.reshape(-1, 1).to(z.real.dtype) * z)

    @property
    def rows_identical(self) -> bool:
        return False

    def matrix(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Real matrix per image ``(B, 2k, n)`` of ``g M E``; built once in float64 and cast."""
        self.link._need_linear("matrix")
        if not self._has_dense():
            raise DiffcommError(f"operator.matrix: a dense {2 * self.link.k}x{self.link.n} matrix is too large for "
                                f"this image")
        if self._matrix is None:
            link = self.link
            e = link.encoder.matrix.to(device=self.mixing.device, dtype=F64).reshape(link.k, 2, link.n)
            e_c = torch.complex(e[:, 0], e[:, 1])[None].expand(self.batch, -1, -1)     # (B, k, n)
            a = self._mix(e_c.to(torch.complex128)) * self.rx.gain.to(F64).reshape(-1, 1, 1)
            self._matrix = torch.stack([a.real, a.imag], dim=2).reshape(self.batch, 2 * link.k, link.n)
        return self._matrix.to(dtype)

    def adjoint(self, v: torch.Tensor) -> torch.Tensor:
        """``Mᵀ v`` for real ``v`` ``(B, 2k)`` -> float64 ``(B, n)``."""
        return bmv(self.matrix(F64).transpose(-1, -2), v.to(F64))

    def svd(self) -> SVD:
        """Truncated float64 SVD of :meth:`matrix`, per image (cached)."""
        self.link._need_linear("svd")
        if self._svd is None:
            self._svd = truncated_svd(self.matrix(F64))
        return self._svd


def check_assumed_snr(link: Link, assumed_snr_db: Any) -> float | None:
    """``assumed_snr_db`` checked like ``snr_db`` (finite, within the package's SNR range), or None; one-line errors.

    With ``csi="estimated"`` and the LMMSE estimator the link re-weights the channel's LS estimate
    (:func:`lmmse_from_ls`), which it can do for the package's flat-fading, OFDM and MIMO pilot schemes only.
    """
    if assumed_snr_db is None:
        return None
    lo, hi = SNR_DB_RANGE
    try:
        value = float(assumed_snr_db)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(assumed_snr_db, bool) or not math.isfinite(value) or not lo <= value <= hi:
        raise DiffcommError(f"Link: assumed_snr_db (the SNR the receiver is told) must be a finite number in "
                            f"[{lo:g}, {hi:g}] dB or None, got {assumed_snr_db!r}")
    if link.csi == "estimated" and link.pilot_estimator != "ls" and \
            type(link.channel).estimate_csi not in _REWEIGHABLE:
        raise DiffcommError(f"Link: assumed_snr_db with LMMSE pilot estimation is supported on the package's flat, "
                            f"OFDM and MIMO channels, not {type(link.channel).__name__}; use pilot_estimator='ls'")
    return value


def lmmse_from_ls(channel: Channel, h_ls: torch.Tensor, n0: float, n_pilots: int) -> torch.Tensor:
    """The channel's LMMSE pilot estimate for a receiver that believes noise variance ``n0``, from its LS estimate.

    ``h_ls`` is what ``channel.estimate_csi(..., "ls")`` returns (per symbol; MIMO: per use). The package's
    pilots have energy ``n_pilots`` per block (unit-modulus Zadoff-Chu; OFDM: per subcarrier; MIMO: ``P Pᴴ =
    n_p I``), so LMMSE is a fixed linear map of LS (:mod:`diffcomm.channels.estimation`): scalar prior
    ``CN(m, v)``: ``ĥ = m + v n_p / (v n_p + N0) · (ĥ_LS − m)``; MIMO: ``vec Ĥ = C (C + N0/n_p I)⁻¹ vec Ĥ_LS``.
    With ``n0`` equal to the true N0 this is the channel's own LMMSE estimate (to rounding).
    """
    n0 = float(n0)
    if isinstance(channel, MIMOChannel):
        c = channel.lmmse_covariance().to(h_ls.device, torch.complex128)
        dim = c.shape[0]
        w = c @ torch.linalg.inv(c + (n0 / n_pilots) * torch.eye(dim, dtype=c.dtype, device=c.device))
        vec = h_ls.to(torch.complex128).reshape(*h_ls.shape[:2], dim)
        return (vec @ w.T).reshape(h_ls.shape).to(h_ls.dtype)
    m, v = complex(channel.mean), float(channel.scatter_var)
    shrink = v * n_pilots / (v * n_pilots + n0)
    return (m + shrink * (h_ls.to(torch.complex128) - m)).to(h_ls.dtype)


def with_assumed_snr(link: Link, assumed_snr_db: float | None) -> Link:
    """A copy of ``link`` (sharing encoder, channel and impairment stages) whose receiver is told ``assumed_snr_db``.

    The same as building the link with ``assumed_snr_db=...`` (:class:`Link`); None restores the matched link.
    For links built elsewhere (e.g. :func:`diffcomm.pipeline.build_link`, the CLI).
    """
    if not isinstance(link, Link):
        raise DiffcommError(f"with_assumed_snr: link must be a diffcomm.link.Link, got {type(link).__name__}")
    out = copy.copy(link)
    out.assumed_snr_db = check_assumed_snr(link, assumed_snr_db)
    return out


def make_link(encoder: str, shape: tuple[int, int, int], cbr: float | str, channel: str | Channel = "awgn",
              snr_db: float = 10.0, csi: str = "perfect", n_pilots: int = 0, pilot_estimator: str = "lmmse",
              pilots_in_budget: bool = False, seed: int = 0, assumed_snr_db: float | None = None,
              **encoder_options: Any) -> Link:
    """Build encoder (by name, :func:`diffcomm.transmit.make_encoder`) and :class:`Link` together.

    With ``pilots_in_budget=True`` and ``csi="estimated"``, the encoder gets the largest valid k with
    ``k + pilots_used(k) <= round(cbr · C·H·W)``; otherwise ``k = round(cbr · C·H·W)`` and pilots are
    extra. ``assumed_snr_db``: the SNR the receiver is told (SNR mismatch; :class:`Link`), None = ``snr_db``.

    Example: ``make_link("downsample", (1, 28, 28), "1/8", "rayleigh", 5.0, csi="estimated", n_pilots=2)``.
    """
    from diffcomm.transmit import make_encoder

    shape = check_shape(shape)
    ch = make_channel(channel) if isinstance(channel, str) else channel
    if not (pilots_in_budget and csi == "estimated"):
        enc = make_encoder(encoder, shape, cbr, seed, **encoder_options)
        return Link(enc, ch, snr_db, csi, n_pilots, pilot_estimator, pilots_in_budget, assumed_snr_db)
    if isinstance(n_pilots, bool) or not isinstance(n_pilots, int) or n_pilots < 1:
        raise DiffcommError(f"make_link: csi='estimated' needs n_pilots >= 1, got {n_pilots!r}")
    budget = symbols_for_cbr(cbr, shape)
    n = math.prod(shape)
    for k in range(budget - 1, 0, -1):
        if k + ch.pilot_uses(k, n_pilots) > budget:
            continue
        try:
            enc = make_encoder(encoder, shape, k / n, seed, **encoder_options)
        except DiffcommError:
            continue  # no valid encoder with this k (e.g. downsample grid); try a smaller one
        if enc.k + ch.pilot_uses(enc.k, n_pilots) <= budget:
            return Link(enc, ch, snr_db, csi, n_pilots, pilot_estimator, pilots_in_budget, assumed_snr_db)
    raise DiffcommError(f"make_link: {budget} channel uses (CBR {cbr}) leave no room for data after "
                        f"{n_pilots} pilot(s) per coherence block; raise the CBR or lower n_pilots")
