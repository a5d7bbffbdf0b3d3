"""MIMO spatial multiplexing: n_t streams over n_t × n_r flat block fading, linear detection, SVD precoding.

**Streams and channel uses.** A frame's k symbols are grouped into ``U = ceil(k / n_t)`` channel
uses of ``n_t`` symbols: symbol ``j`` goes on use ``j // n_t``, transmit antenna (stream)
``j % n_t``; the ``U n_t − k`` slots left in the last use carry zeros. Each use is

    y_u = H_u x_u + n_u,   H_u ∈ C^{n_r × n_t},   n_u ~ CN(0, N0 I_{n_r}),

with ``x_u = s_u`` (no precoding) or ``x_u = V_u s_u`` (SVD precoding). Every symbol keeps unit
power (the package's Es/N0 convention per complex symbol), so a use radiates ``n_t`` units in
total; subtract ``10 log10 n_t`` dB from the SNR for a fixed total power. The frame takes ``U``
channel uses: :meth:`MIMOChannel.extra_uses` returns ``U − k`` (negative), so
``Link.channel_uses = U + pilots``.

**Fading.** ``H = R_rx^{1/2} W R_tx^{1/2}`` with ``W`` i.i.d. CN(0, 1) (Rayleigh, ``E|H_ij|² = 1``)
and the *Kronecker* model of exponential correlation ``R[i, j] = ρ^{|i−j|}`` (Loyka, IEEE Commun.
Lett. 5(9), 2001; Kermoal et al., IEEE JSAC 20(6), 2002); the square roots are the Cholesky
factors, as in Sionna's :class:`sionna.phy.channel.KroneckerModel` with
:func:`sionna.phy.channel.exp_corr_mat` (the tests check that they agree). ``correlation`` is ρ at
the transmitter, ``rx_correlation`` at the receiver (default: the same ρ); ρ = 0 is i.i.d. Rayleigh.
One H per frame (``coherence=None``) or one per ``coherence`` channel uses.

**Receiver front end** (``detector``; the receiver's CSI Ĥ, of the effective channel
``G = Ĥ`` or ``Ĥ V``), per use, giving ``n_t`` outputs per use and so a ``(B, k)`` received frame:

* ``"zf"``: ``ŝ = G⁺ y = s + G⁺ n``; per-stream noise ``N0 d_i``, ``d_i = [(GᴴG)⁻¹]_ii``, post-ZF
  SNR ``1/(N0 d_i)`` (Tse & Viswanath, *Fundamentals of Wireless Communication*, 2005, §8.3.1).
* ``"mmse"``: ``ŝ = (GᴴG + N0 I)⁻¹ Gᴴ y``; ``E[ŝ_i | s_i] = β_i s_i`` with
  ``β_i = 1 − N0 e_i``, ``e_i = [(GᴴG + N0 I)⁻¹]_ii``, and per-stream SINR
  ``SINR_i = 1/(N0 e_i) − 1`` (ibid. §8.3.3, eq. 8.66; Sionna's ``lmmse_equalizer`` ``1/no_eff``).
* ``"none"``: no detection, only the lossless rotation onto the column space of G: with the thin QR
  ``G = Q R`` (diag R > 0) the receiver keeps ``Qᴴ y = R s + Qᴴ n`` — white CN(0, N0 I) noise and the
  full (upper-triangular) mixing R; for ``n_r = n_t`` Qᴴ is unitary and this is the raw signal in
  another basis, for ``n_r > n_t`` the discarded part is noise only (a sufficient statistic).

Each output is scaled to a **flat-equivalent** stream ``y_i = h_i s_i + r_i`` with real
``h_i > 0`` and residual ``E|r_i|² = N0`` (ZF: ``h_i = 1/√d_i``; MMSE: ``h_i = √(N0 SINR_i) =
√(β_i / e_i)``, ``y_i = (h_i/β_i) ŝ_i``, the residual being noise plus inter-stream interference;
none: ``h_i = R_ii``), so every per-symbol consumer (MMSE equalisation and the DeepJSCC decoder,
the SNR it is told, DPS's step size) sees ``h_hat = (h_i)`` of shape ``(B, k)``: after
``equalize_mmse`` a ZF front end gives ZF + per-stream Wiener scaling and an MMSE front end gives
exactly the MIMO-MMSE estimate. The **exact** linear model of the frame is

    y_u = M_u s_u + F_u n_u,   M = F G,   F = the front end above,

which :meth:`MIMOChannel.detect` returns as the ``mixing`` the link hands the receiver
(:attr:`diffcomm.link.Received.mixing`); ``link.operator(rx)`` then applies M, not its diagonal
(``None`` when M is diagonal by construction: ZF, and SVD precoding with perfect CSI). The noise
``F n`` is white CN(0, N0 I) for ``"none"`` and SVD precoding; for ZF / MMSE it is correlated across
the streams of a use (ZF: per-stream variance exactly N0; MMSE: N0 minus the interference power),
which the white-noise receivers do not model — use ``detector="none"`` for the exact white model.

**SVD precoding** (``precoding="svd"``, perfect CSI at both ends): ``H = U Σ Vᴴ``, the transmitter
sends ``V s`` and the receiver's front end on ``G = H V = U Σ`` reduces to ``Uᴴ y = Σ s + Uᴴ n``:
parallel streams with gains ``σ_i`` (equal power per stream, no water-filling; Telatar, Eur. Trans.
Telecommun. 10(6), 1999; Tse & Viswanath §7.1.1). Refused with estimated CSI (the transmitter's V
and the receiver's would differ).

**Estimated CSI.** Each coherence block is preceded by ``n_pilots >= n_t`` channel uses of
orthogonal DFT pilots ``P[t, m] = exp(−2πj t m / n_p)`` (``P Pᴴ = n_p I``, unit power per antenna);
LS ``Ĥ = Y_p Pᴴ / n_p`` (error ``N0 / n_p`` per entry) or LMMSE under the Kronecker prior
``vec(H) ~ CN(0, R_rx ⊗ R_txᵀ)`` (row-major vec): ``vec Ĥ = C (C + N0/n_p I)⁻¹ vec Ĥ_LS``
(Biguesh & Gershman, IEEE Trans. Signal Process. 54(3), 2006); for ρ = 0 the error is
``N0 / (n_p + N0)`` per entry, as in flat fading. ``csi="none"`` is refused (spatial
multiplexing cannot separate streams without a channel estimate).

**Through the link.** :class:`~diffcomm.link.Link` calls :meth:`propagate` (precoding, H, noise:
raw ``(B, U, n_r)``), then the CSI (:meth:`estimate_csi`), then :meth:`detect` with the receiver's
Ĥ; :meth:`apply` is the whole chain with perfect CSI, ``(B, k) -> (B, k)``, differentiable in z.

Example:
    >>> from diffcomm.channels import make_channel
    >>> ch = make_channel("mimo", n_t=2, n_r=2, detector="zf")
    >>> g = torch.Generator().manual_seed(0)
    >>> h = ch.generate(3, 49, g)                        # (3, 25, 2, 2): one H per frame, 25 uses
    >>> z = torch.randn(3, 49, dtype=torch.complex64)
    >>> y, h_hat, mixing = ch.detect(ch.propagate(z, h, 0.0), h, 0.0, k=49)     # ZF: diagonal, no mixing
    >>> bool(torch.allclose(y / h_hat, z, atol=1e-4)), mixing is None, ch.extra_uses(49)
    (True, True, -24)
"""

from __future__ import annotations

import math
from typing import Any

import torch

from diffcomm.channels.estimation import PILOT_ESTIMATORS
from diffcomm.channels.models import CHANNELS, Channel, awgn, complex_normal
from diffcomm.errors import DiffcommError

DETECTORS = ("mmse", "zf", "none")
PRECODERS = ("none", "svd")


def _int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise DiffcommError(f"mimo: {name} must be an int >= {low}, got {value!r}")
    return value


def _rho(value: Any, name: str) -> float:
    try:
        rho = float(value)
    except (TypeError, ValueError):
        raise DiffcommError(f"mimo: {name} must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= rho < 1.0:
        raise DiffcommError(f"mimo: {name} must be in [0, 1) (exponential correlation ρ^|i-j|), got {value!r}")
    return rho


def exp_correlation(rho: float, n: int) -> torch.Tensor:
    """Exponential correlation matrix ``R[i, j] = ρ^|i−j|`` (float64 ``(n, n)``; Loyka 2001)."""
    idx = torch.arange(n, dtype=torch.float64)
    return torch.tensor(rho, dtype=torch.float64) ** (idx[:, None] - idx[None, :]).abs()


def _noise_var(n0: float | torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``n0`` as a real tensor broadcastable to per-use matrices ``(B, U, ·, ·)``."""
    t = torch.as_tensor(n0, dtype=ref.real.dtype, device=ref.device)
    if not torch.isfinite(t).all() or (t < 0).any():
        raise DiffcommError(f"mimo: noise variance n0 must be finite and >= 0, got {n0}")
    return t.reshape(-1, 1, 1, 1) if t.ndim else t


def front_end(g: torch.Tensor, n0: float | torch.Tensor, detector: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-use receive filter ``F`` ``(..., n_t, n_r)`` and the resulting mixing ``M = F G`` ``(..., n_t, n_t)``.

    ``g`` is the effective channel ``(B, U, n_r, n_t)`` the receiver knows; the rows of F are scaled to
    flat-equivalent streams (``diag M = h_i > 0``, residual power N0; see the module docstring).
    Computed in complex128; returned in ``g``'s dtype.
    """
    out = g.dtype
    g = g.to(torch.complex128)
    n_t = g.shape[-1]
    eye = torch.eye(n_t, dtype=g.dtype, device=g.device)
    gh = g.mH
    if detector == "none":
        q, r = torch.linalg.qr(g)                                    # thin QR: q (.., n_r, n_t), r (.., n_t, n_t)
        d = torch.diagonal(r, dim1=-2, dim2=-1)
        phase = torch.where(d.abs() > 0, d / d.abs().clamp_min(1e-300), torch.ones_like(d))
        f = phase.conj()[..., :, None] * q.mH                        # diag(conj φ) Qᴴ: diag(R) real > 0
        return f.to(out), (f @ g).to(out)
    if detector == "zf":
        inv = torch.linalg.inv(gh @ g)                               # (GᴴG)⁻¹
        dz = torch.diagonal(inv, dim1=-2, dim2=-1).real
        f = dz.rsqrt()[..., :, None].to(g.dtype) * (inv @ gh)        # D G⁺, D = 1/√d
        return f.to(out), (f @ g).to(out)
    nv = _noise_var(n0, g.real)
    a = torch.linalg.inv(gh @ g + nv * eye)                          # (GᴴG + N0 I)⁻¹
    w = a @ gh
    beta = torch.diagonal(w @ g, dim1=-2, dim2=-1).real.clamp_min(1e-300)
    e = torch.diagonal(a, dim1=-2, dim2=-1).real
    h = (beta / e).sqrt()                                            # √(N0 SINR) = √(β / e)
    f = (h / beta)[..., :, None].to(g.dtype) * w
    return f.to(out), (f @ g).to(out)


def post_detection_sinr(g: torch.Tensor, n0: float | torch.Tensor, detector: str = "mmse") -> torch.Tensor:
    """Closed-form per-stream SINR ``(..., n_t)`` of unit-power streams over ``g`` ``(..., n_r, n_t)``.

    ZF: ``1 / (N0 [(GᴴG)⁻¹]_ii)``; MMSE: ``1 / (N0 [(GᴴG + N0 I)⁻¹]_ii) − 1`` (Tse & Viswanath eq. 8.66).
    """
    if detector not in ("zf", "mmse"):
        raise DiffcommError(f"post_detection_sinr: detector must be 'zf' or 'mmse', got {detector!r}")
    g = g.to(torch.complex128)
    eye = torch.eye(g.shape[-1], dtype=g.dtype, device=g.device)
    n0_t = torch.as_tensor(n0, dtype=torch.float64, device=g.device)      # a float or the batch shape of g
    per_stream = n0_t[..., None] if n0_t.ndim else n0_t
    if detector == "zf":
        return 1 / (per_stream * torch.diagonal(torch.linalg.inv(g.mH @ g), dim1=-2, dim2=-1).real)
    a = torch.linalg.inv(g.mH @ g + (n0_t[..., None, None] if n0_t.ndim else n0_t) * eye)
    return 1 / (per_stream * torch.diagonal(a, dim1=-2, dim2=-1).real) - 1


def mimo_pilots(n_t: int, n_p: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Orthogonal DFT pilots ``P[t, m] = exp(−2πj t m / n_p)``: complex64 ``(n_t, n_p)``, ``P Pᴴ = n_p I``."""
    t = torch.arange(n_t, dtype=torch.float64)[:, None]
    m = torch.arange(n_p, dtype=torch.float64)[None, :]
    phase = -2 * math.pi * t * m / n_p
    return torch.polar(torch.ones_like(phase), phase).to(torch.complex64).to(device)


class MIMOChannel(Channel):
    """``n_t`` × ``n_r`` spatial multiplexing over (Kronecker-correlated) Rayleigh block fading; see the module
    docstring. Gains are the channel matrices per use, complex64 ``(B, U, n_r, n_t)``."""

    name = "mimo"
    mean = 0j
    scatter_var = 1.0

    def __init__(self, n_t: int = 2, n_r: int = 2, correlation: float = 0.0, rx_correlation: float | None = None,
                 detector: str = "mmse", precoding: str = "none", coherence: int | None = None):
        super().__init__(block=True, coherence=None)
        self.n_t = _int(n_t, "n_t (transmit antennas)", 1)
        self.n_r = _int(n_r, "n_r (receive antennas)", 1)
        if detector not in DETECTORS:
            raise DiffcommError(f"mimo: detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
        if precoding not in PRECODERS:
            raise DiffcommError(f"mimo: precoding must be 'none' or 'svd', got {precoding!r}")
        if self.n_r < self.n_t:
            raise DiffcommError(f"mimo: detector {detector!r} separates at most n_r streams; {self.n_t} streams "
                                f"need n_r >= n_t = {self.n_t} receive antennas, got n_r={self.n_r}")
        self.detector, self.precoding = detector, precoding
        self.correlation = _rho(correlation, "correlation")
        self.rx_correlation = self.correlation if rx_correlation is None else _rho(rx_correlation, "rx_correlation")
        self.coherence_uses = None if coherence is None else _int(coherence, "coherence (channel uses)", 1)
        self.r_tx = exp_correlation(self.correlation, self.n_t)
        self.r_rx = exp_correlation(self.rx_correlation, self.n_r)
        self._l_tx = torch.linalg.cholesky(self.r_tx)
        self._l_rx = torch.linalg.cholesky(self.r_rx)

    # ---- frame layout ----------------------------------------------------------------------------------
    def uses(self, k: int) -> int:
        """Channel uses for k symbols: ``ceil(k / n_t)``."""
        return -(-k // self.n_t)

    def uses_per_block(self, k: int) -> int:
        u = self.uses(k)
        return u if self.coherence_uses is None else min(self.coherence_uses, u)

    def num_blocks(self, k: int) -> int:
        """Coherence blocks (one H each) in a frame of k symbols."""
        return -(-self.uses(k) // self.uses_per_block(k))

    def coherence_length(self, k: int) -> int:
        """Symbols that share one H: ``n_t ×`` the uses per block."""
        return self.uses_per_block(k) * self.n_t

    def extra_uses(self, k: int) -> int:
        """``U − k`` (negative): n_t symbols share one channel use, so the frame takes ``U = ceil(k / n_t)`` uses."""
        return self.uses(k) - k

    def streams(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, k)`` symbols -> ``(B, U, n_t)`` streams per use (the last use zero-padded)."""
        b, k = z.shape
        u = self.uses(k)
        return torch.cat([z, z.new_zeros(b, u * self.n_t - k)], dim=1).reshape(b, u, self.n_t)

    # ---- generate ----------------------------------------------------------------------------------------
    def correlate(self, w: torch.Tensor) -> torch.Tensor:
        """``R_rx^{1/2} W R_tx^{1/2 H}`` (Cholesky factors, as Sionna's ``KroneckerModel``), W ``(..., n_r, n_t)``."""
        if self.correlation == 0 and self.rx_correlation == 0:
            return w
        l_tx = self._l_tx.to(w.device, torch.complex128)
        l_rx = self._l_rx.to(w.device, torch.complex128)
        return (l_rx @ w.to(torch.complex128) @ l_tx.mH).to(w.dtype)

    def generate(self, batch: int, k: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
        """Channel matrices per use: complex64 ``(batch, U, n_r, n_t)``, one draw per coherence block."""
        if batch < 1 or k < 1:
            raise DiffcommError(f"mimo: batch and k must be >= 1, got batch={batch}, k={k}")
        w = complex_normal((batch, self.num_blocks(k), self.n_r, self.n_t), generator, device)
        h = self.correlate(w).to(torch.complex64)
        return h.repeat_interleave(self.uses_per_block(k), dim=1)[:, :self.uses(k)]

    sample_gains = generate

    def _check_gains(self, gains: torch.Tensor, b: int, u: int, who: str) -> None:
        want = (b, u, self.n_r, self.n_t)
        if not torch.is_tensor(gains) or not gains.is_complex() or tuple(gains.shape) != want:
            got = tuple(gains.shape) if torch.is_tensor(gains) else type(gains).__name__
            raise DiffcommError(f"mimo: {who} needs channel matrices {want} (from generate), got {got}")

    # ---- apply -------------------------------------------------------------------------------------------
    def precoder(self, h: torch.Tensor) -> torch.Tensor:
        """The transmitter's SVD precoder ``V`` ``(B, U, n_t, n_t)`` of ``H = U Σ Vᴴ`` (perfect transmitter CSI)."""
        _, _, vh = torch.linalg.svd(h.to(torch.complex128), full_matrices=False)
        return vh.mH.to(h.dtype)

    def effective(self, h: torch.Tensor) -> torch.Tensor:
        """The channel the streams see: ``H`` or ``H V`` (SVD precoding)."""
        return h if self.precoding == "none" else h @ self.precoder(h)

    def propagate(self, z: torch.Tensor, gains: torch.Tensor, n0: float | torch.Tensor,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """Raw received signal ``H x + n`` per use: complex ``(B, U, n_r)``; differentiable in ``z``."""
        if not torch.is_tensor(z) or not z.is_complex() or z.ndim != 2:
            raise DiffcommError(f"mimo: propagate needs complex symbols (B, k), got "
                                f"{(z.dtype, tuple(z.shape)) if torch.is_tensor(z) else type(z).__name__}")
        s = self.streams(z)
        self._check_gains(gains, z.shape[0], s.shape[1], "propagate")
        g = self.effective(gains.to(z.dtype))
        y = (g @ s[..., None]).squeeze(-1)
        n0_t = torch.as_tensor(n0, dtype=z.real.dtype, device=z.device)
        return awgn(y, n0_t.reshape(-1, 1, 1) if n0_t.ndim else n0_t, generator)

    def detect(self, y_raw: torch.Tensor, h_rx: torch.Tensor | None, n0: float | torch.Tensor,
               k: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The receiver front end with its CSI ``h_rx``: ``(y (B, k), h_hat (B, k), mixing (B, U, n_t, n_t) or None)``.

        ``y`` are the flat-equivalent streams, ``h_hat`` their gains ``diag M`` and ``mixing`` the exact
        per-use mixing M (None when diagonal by construction); see the module docstring.
        """
        if h_rx is None:
            raise DiffcommError("mimo: the receiver front end needs CSI; use csi 'perfect' or 'estimated'")
        b, u = y_raw.shape[:2]
        k = u * self.n_t if k is None else k
        self._check_gains(h_rx, b, u, "detect")
        f, m = front_end(self.effective(h_rx.to(y_raw.dtype)), n0, self.detector)
        y = (f @ y_raw[..., None]).squeeze(-1).reshape(b, u * self.n_t)[:, :k]
        h_hat = torch.diagonal(m, dim1=-2, dim2=-1).reshape(b, u * self.n_t)[:, :k]
        diagonal = self.detector == "zf" or self.precoding == "svd" or self.n_t == 1
        return y, h_hat, None if diagonal else m

    def apply(self, z: torch.Tensor, gains: torch.Tensor, n0: float | torch.Tensor,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """The whole chain with perfect CSI: flat-equivalent streams ``(B, k)``; differentiable in ``z``."""
        return self.detect(self.propagate(z, gains, n0, generator), gains, n0, z.shape[1])[0]

    # ---- CSI -----------------------------------------------------------------------------------------------
    def check_csi(self, csi: str, n_pilots: int) -> None:
        """One-line errors for CSI modes this channel cannot serve (called by the link)."""
        if csi == "none":
            raise DiffcommError("mimo: csi 'none' is not supported (streams cannot be separated without a channel "
                                "estimate); use csi 'perfect' or 'estimated'")
        if csi == "estimated" and self.precoding == "svd":
            raise DiffcommError("mimo: svd precoding assumes perfect CSI at both ends; use csi 'perfect' or "
                                "precoding 'none'")
        if csi == "estimated" and n_pilots < self.n_t:
            raise DiffcommError(f"mimo: csi 'estimated' needs n_pilots >= n_t = {self.n_t} orthogonal pilot uses "
                                f"per coherence block, got {n_pilots}")

    def pilot_uses(self, k: int, n_pilots: int) -> int:
        """``n_pilots`` channel uses (each carrying n_t pilot symbols) per coherence block."""
        if 0 < n_pilots < self.n_t:
            raise DiffcommError(f"mimo: csi 'estimated' needs n_pilots >= n_t = {self.n_t} orthogonal pilot uses "
                                f"per coherence block, got {n_pilots}")
        return int(n_pilots) * self.num_blocks(k)

    def pilot_gains(self, gains: torch.Tensor) -> torch.Tensor:
        """The H each coherence block's pilots see: ``(B, blocks, n_r, n_t)``."""
        u = gains.shape[1]
        per = u if self.coherence_uses is None else min(self.coherence_uses, u)
        return gains[:, ::per]

    def lmmse_covariance(self) -> torch.Tensor:
        """Prior covariance of the row-major ``vec(H)``: ``R_rx ⊗ R_txᵀ`` (float64 ``(n_r n_t, n_r n_t)``)."""
        return torch.kron(self.r_rx, self.r_tx.T.contiguous())

    def estimate_csi(self, gains: torch.Tensor, k: int, n0: float, n_pilots: int, estimator: str = "lmmse",
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pilot-aided CSI: ``(Ĥ (B, U, n_r, n_t), y_pilot (B, blocks, n_r, n_pilots), pilots (n_t, n_pilots))``."""
        if estimator not in PILOT_ESTIMATORS:
            raise DiffcommError(f"mimo: estimator must be 'ls' or 'lmmse', got {estimator!r}")
        self.pilot_uses(k, n_pilots)
        blocks = self.pilot_gains(gains)                                       # (B, nb, n_r, n_t)
        p = mimo_pilots(self.n_t, n_pilots, gains.device).to(gains.dtype)
        y_p = awgn(blocks @ p, n0, generator)                                  # (B, nb, n_r, n_p)
        h_ls = (y_p @ p.mH) / n_pilots
        if estimator == "ls":
            est = h_ls
        else:
            c = self.lmmse_covariance().to(gains.device, torch.complex128)
            dim = c.shape[0]
            w = c @ torch.linalg.inv(c + (float(n0) / n_pilots) * torch.eye(dim, dtype=c.dtype, device=c.device))
            vec = h_ls.to(torch.complex128).reshape(*h_ls.shape[:2], dim)
            est = (vec @ w.T).reshape(h_ls.shape).to(gains.dtype)
        per = self.uses_per_block(k)
        return est.repeat_interleave(per, dim=1)[:, :self.uses(k)], y_p, p

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "n_t": self.n_t, "n_r": self.n_r, "correlation": self.correlation,
                "rx_correlation": self.rx_correlation, "detector": self.detector, "precoding": self.precoding,
                "coherence": self.coherence_uses}


CHANNELS["mimo"] = MIMOChannel
