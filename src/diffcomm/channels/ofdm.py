"""OFDM over a tapped-delay-line multipath channel (exponential power-delay profile or 3GPP TDL-A…E).

**Resource grid.** A frame's k data symbols fill a grid of ``S = ceil(k / N)`` OFDM symbols × ``N =
fft_size`` subcarriers *frequency first*: data symbol ``j`` sits on OFDM symbol ``j // N``,
subcarrier ``j % N`` (natural FFT order: subcarrier 0 is DC; Sionna's grids put DC in the middle,
i.e. they are ``fftshift`` of ours). The ``S·N − k`` REs left in the last OFDM symbol are zeros and
carry no data.

**Waveform.** Each OFDM symbol is an orthonormal IDFT (``norm="ortho"``, so power is kept) with a
cyclic prefix of ``cp_length`` samples; the ``S (N + cp_length)`` samples of the frame are convolved
*linearly* (across OFDM-symbol boundaries) with the channel impulse response ``h[0..L-1]``, CN(0, N0)
noise is added per time sample, the CP is removed and an orthonormal DFT gives the received grid.
The first symbol sees no previous frame and the tail of the last symbol is cut (frames are
separated by a guard). With ``cp_length >= L - 1`` (:attr:`OFDMChannel.memory`) this is exactly

    y[s, f] = H[f] z[s, f] + n[s, f],   H[f] = sum_l h[l] exp(-2πj f l / N),   n ~ CN(0, N0),

(no ISI); a shorter CP adds inter-symbol and inter-carrier interference that the per-RE model
above does not describe. The whole frame is still linear, ``y = T z + n`` (:meth:`OFDMChannel.frame_matrix`):
an **ISI-aware receiver** models T instead of ``diag(H)``. With ``model_isi=True`` (default) and a short
CP the link hands T to the receivers as :attr:`diffcomm.link.Received.mixing`
(:meth:`OFDMChannel.receiver_mixing`), so guided and linear receivers see the exact operator while
per-symbol decoders keep the per-RE ``h_hat``; ``model_isi=False`` is the mismatched receiver that ignores
the ISI.

**Multipath profiles** (taps normalised so that ``sum_l E|h_l|² = 1``, i.e. ``E|H_f|² = 1`` on every
subcarrier, the flat channels' convention):

* ``"exponential"``: ``E|h_l|² ∝ exp(-l / delay_spread)`` for ``l = 0..n_taps-1``, independent
  CN taps; ``delay_spread`` is in *samples* (the decay constant, = the RMS delay spread of the
  continuous profile); ``delay_spread = 0`` is a single tap (flat Rayleigh fading). Default
  ``n_taps = min(fft_size, floor(4 · delay_spread) + 1)``.
* ``"A"``…``"E"``: 3GPP TR 38.901 TDL models, path delays and powers from Sionna's
  :class:`sionna.phy.channel.tr38901.TDL` (``delay_spread`` in *seconds*, default 100 ns); the
  sample rate is ``fft_size × subcarrier_spacing``. Paths are drawn as independent CN with the
  model's mean powers (the LoS path of D/E adds a specular component of the model's K-factor with a
  uniform phase), static within a block (no Doppler), and turned into discrete-time taps with
  Sionna's sinc pulse (``cir_to_time_channel``'s ``sinc(l − τ·fs)``) on the causal lags
  ``0..n_taps-1`` (default: ``ceil(τ_max·fs) + 5``, at most ``fft_size``), then scaled so the
  expected tap power is exactly 1 (the truncated sinc tails are renormalised away). For these
  correlated sinc taps ``E|H_f|² = 1`` holds on average over the subcarriers (Parseval), not on
  each one: with every subcarrier occupied (no guard band) the sinc pulse's band edge gives a
  ripple near subcarrier N/2 (TDL-A, 300 ns, 32 × 30 kHz: 0.44…1.21; Sionna's own
  ``cir_to_time_channel`` taps behave the same way).

**Block fading.** One CIR per frame by default; ``coherence=c`` draws one CIR per ``c`` OFDM
symbols (the last block may be shorter). A received sample uses the taps of the block it lies in.

**How the taps travel from generate to apply.** :meth:`OFDMChannel.generate` returns the plain
complex ``(B, k)`` frequency response on the data REs (what :class:`diffcomm.link.Link` multiplies
for CSI, and what an ideal receiver with a long-enough CP sees) and records the taps it drew in
:attr:`OFDMChannel.last_draw` (an :class:`OFDMDraw` holding that very gains tensor and its taps
``(B, blocks, L)``). :meth:`OFDMChannel.apply` takes its taps from, in order: an explicit
``taps=`` argument; ``last_draw`` if ``gains`` *is* (by identity) the tensor generate returned; else
the taps fitted to ``gains`` by least squares (:meth:`OFDMChannel.taps_from_gains`, exact for a
true frequency response whenever the data REs of each block cover at least L distinct subcarriers;
a one-line error otherwise).

**Bandwidth accounting.** A frame occupies ``S (N + cp_length)`` complex samples = channel uses: the
k data REs, the ``S·N − k`` zero-padded REs and the ``S · cp_length`` CP samples.
:meth:`OFDMChannel.extra_uses` returns ``S (N + cp_length) − k`` and the link adds it to
``Link.channel_uses`` (the one hook the link needed). The charged CBR follows the link's rule:
``k / n`` by default (overhead reported beside it in ``channel_uses``), ``channel_uses / n`` with
``pilots_in_budget=True``.

**Pilots.** The link's ``csi="estimated"`` with ``n_pilots`` sends ``n_pilots`` block-pilot OFDM
symbols per CIR block (:meth:`OFDMChannel.estimate_csi`, charged with their CP in ``pilots_used``);
:func:`estimate_ofdm_channel` (comb or block pattern) sends per-block pilot OFDM symbols through the same taps and
estimates the per-subcarrier response by LS or LMMSE with linear interpolation (comb pilots),
returning ``(B, k)`` ĥ for :func:`~diffcomm.channels.estimation.equalize_zf` /
:func:`~diffcomm.channels.estimation.equalize_mmse` or a receiver.

Example:
    >>> from diffcomm.channels import make_channel
    >>> ch = make_channel("ofdm", fft_size=16, cp_length=4, delay_spread=1.0)
    >>> g = torch.Generator().manual_seed(0)
    >>> h = ch.generate(2, 49, g)                       # (2, 49) frequency response on the data REs
    >>> y = ch.apply(torch.ones(2, 49, dtype=torch.complex64), h, 0.0)
    >>> bool(torch.allclose(y, h, atol=1e-5)), ch.extra_uses(49)   # CP 4 >= memory 4: no ISI
    (True, 31)
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any

import torch

from diffcomm.channels.estimation import PILOT_ESTIMATORS, estimate_lmmse, estimate_ls, pilot_sequence
from diffcomm.channels.models import CHANNELS, Channel, awgn, complex_normal
from diffcomm.errors import DiffcommError

TDL_MODELS = ("A", "B", "C", "D", "E")
PROFILES = ("exponential", *TDL_MODELS)
PILOT_PATTERNS = ("block", "comb")


@dataclass
class OFDMDraw:
    """What :meth:`OFDMChannel.generate` drew for one frame: the gains it returned and their taps."""

    gains: torch.Tensor        # complex64 (B, k): the frequency response on the data REs (returned object)
    taps: torch.Tensor         # complex64 (B, blocks, L): the CIR of each coherence block


def _int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise DiffcommError(f"ofdm: {name} must be an int >= {low}, got {value!r}")
    return value


def _float(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DiffcommError(f"ofdm: {name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise DiffcommError(f"ofdm: {name} must be finite, got {value!r}")
    return v


class OFDMChannel(Channel):
    """OFDM with cyclic prefix over a block-fading tapped-delay-line channel; see the module docstring.

    ``mean = 0``, ``scatter_var = 1``: the marginal prior of each ``H_f`` (zero mean — the LoS phase of
    TDL-D/E is uniform — and unit power), used by per-subcarrier LMMSE estimation.
    """

    name = "ofdm"
    mean = 0j
    scatter_var = 1.0

    def __init__(self, fft_size: int = 64, cp_length: int = 16, profile: str = "exponential",
                 delay_spread: float | None = None, n_taps: int | None = None, subcarrier_spacing: float = 30e3,
                 coherence: int | None = None, carrier_frequency: float = 3.5e9, model_isi: bool = True):
        super().__init__(block=True, coherence=None)
        if not isinstance(model_isi, bool):
            raise DiffcommError(f"ofdm: model_isi must be True or False, got {model_isi!r}")
        self.model_isi = model_isi
        self.fft_size = _int(fft_size, "fft_size", 1)
        self.cp_length = _int(cp_length, "cp_length", 0)
        if self.cp_length > self.fft_size:
            raise DiffcommError(f"ofdm: cp_length {cp_length} is longer than the FFT ({fft_size} subcarriers)")
        prof = str(profile)
        prof = prof[4:] if prof.lower().startswith("tdl-") else prof
        prof = prof.lower() if prof.lower() == "exponential" else prof.upper()
        if prof not in PROFILES:
            raise DiffcommError(f"ofdm: unknown profile {profile!r}; choose 'exponential' or a TDL model A..E")
        self.profile = prof
        self.coherence_symbols = None if coherence is None else _int(coherence, "coherence (OFDM symbols)", 1)
        self.subcarrier_spacing = _float(subcarrier_spacing, "subcarrier_spacing")
        if self.subcarrier_spacing <= 0:
            raise DiffcommError(f"ofdm: subcarrier_spacing must be > 0 Hz, got {subcarrier_spacing!r}")
        self.carrier_frequency = _float(carrier_frequency, "carrier_frequency")
        if n_taps is not None:
            n_taps = _int(n_taps, "n_taps", 1)
            if n_taps > self.fft_size:
                raise DiffcommError(f"ofdm: n_taps {n_taps} exceeds fft_size {self.fft_size}")
        self.last_draw: OFDMDraw | None = None
        self._last_ref: weakref.ref | None = None
        if prof == "exponential":
            ds = 2.0 if delay_spread is None else _float(delay_spread, "delay_spread (samples)")
            if ds < 0:
                raise DiffcommError(f"ofdm: delay_spread must be >= 0 samples, got {delay_spread!r}")
            self.delay_spread = ds
            self.n_taps = n_taps if n_taps is not None else min(self.fft_size, math.floor(4 * ds) + 1)
            lags = torch.arange(self.n_taps, dtype=torch.float64)
            pdp = torch.exp(-lags / ds) if ds > 0 else (lags == 0).to(torch.float64)
            self._pdp = pdp / pdp.sum()
        else:
            ds = 100e-9 if delay_spread is None else _float(delay_spread, "delay_spread (seconds)")
            if not 0 < ds < 1e-3:
                raise DiffcommError(f"ofdm: TDL delay_spread is in seconds (e.g. 100e-9) and must be in (0, 1e-3), "
                                    f"got {delay_spread!r}")
            self.delay_spread = ds
            self._init_tdl(n_taps)

    # ---- profile -----------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> float:
        """Samples per second: ``fft_size × subcarrier_spacing`` (used by the TDL profiles)."""
        return self.fft_size * self.subcarrier_spacing

    def _init_tdl(self, n_taps: int | None) -> None:
        from sionna.phy.channel.tr38901 import TDL

        tdl = TDL(self.profile, self.delay_spread, self.carrier_frequency, precision="double", device="cpu")
        delays = tdl.delays.to(torch.float64).cpu()                   # (M,) seconds
        powers = tdl.mean_powers.to(torch.float64).cpu()              # (M,) incl. LoS power on path 0; sum 1
        los = float(tdl.mean_power_los) if tdl.los else 0.0
        nlos = powers.clone()
        nlos[0] -= los
        self._tdl_delays, self._tdl_nlos, self._tdl_los = delays, nlos.clamp_min(0), los
        max_lag = float(delays.max()) * self.sample_rate
        self.n_taps = n_taps if n_taps is not None else min(self.fft_size, math.ceil(max_lag) + 5)
        lags = torch.arange(self.n_taps, dtype=torch.float64)
        self._sinc = torch.sinc(lags[None, :] - delays[:, None] * self.sample_rate)      # (M, L)
        expected = (powers[:, None] * self._sinc ** 2).sum()
        self._tap_scale = 1.0 / math.sqrt(float(expected))
        self._pdp = (powers[:, None] * self._sinc ** 2).sum(0) * self._tap_scale ** 2    # E|h_l|², sums to 1

    @property
    def tap_covariance(self) -> torch.Tensor:
        """The prior covariance of the taps ``E[h hᴴ]`` (float64 ``(L, L)``; its diagonal is the PDP).

        Exponential profile: independent taps, ``diag(PDP)``. TDL: the paths are independent, so the sinc-pulse
        taps are correlated: ``scale² Sᵀ diag(P) S`` with ``S`` the (paths × lags) sinc matrix and ``P`` the
        paths' mean powers (the uniform-phase LoS component of D/E included).
        """
        if self.profile == "exponential":
            return torch.diag(self._pdp)
        powers = self._tdl_nlos.clone()
        powers[0] += self._tdl_los
        return self._tap_scale ** 2 * self._sinc.T @ (powers[:, None] * self._sinc)

    @property
    def power_delay_profile(self) -> torch.Tensor:
        """Expected tap powers ``E|h_l|²`` (float64 ``(L,)``, summing to 1)."""
        return self._pdp.clone()

    @property
    def memory(self) -> int:
        """Channel memory ``L − 1`` in samples: a CP at least this long gives no ISI."""
        return self.n_taps - 1

    # ---- grid ----------------------------------------------------------------------------------------
    def n_symbols(self, k: int) -> int:
        """OFDM symbols for k data symbols: ``ceil(k / fft_size)``."""
        return -(-k // self.fft_size)

    def symbols_per_block(self, k: int) -> int:
        s = self.n_symbols(k)
        return s if self.coherence_symbols is None else min(self.coherence_symbols, s)

    def num_blocks(self, k: int) -> int:
        """CIR blocks in a frame of k data symbols."""
        return -(-self.n_symbols(k) // self.symbols_per_block(k))

    def extra_uses(self, k: int) -> int:
        """Channel uses per frame beyond the k data symbols: zero padding plus cyclic prefixes."""
        return self.n_symbols(k) * (self.fft_size + self.cp_length) - k

    def _block_of_re(self, k: int, device=None) -> torch.Tensor:
        return torch.arange(k, device=device) // self.fft_size // self.symbols_per_block(k)

    # ---- generate ------------------------------------------------------------------------------------
    def draw_taps(self, batch: int, n_blocks: int, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> torch.Tensor:
        """Random CIRs: complex64 ``(batch, n_blocks, n_taps)`` with ``sum_l E|h_l|² = 1``."""
        if self.profile == "exponential":
            w = complex_normal((batch, n_blocks, self.n_taps), generator, device)
            return (w * self._pdp.sqrt().to(w.device, torch.float32)).to(torch.complex64)
        return self._sinc_taps(self.draw_paths(batch, n_blocks, generator, device))

    def draw_paths(self, batch: int, n_blocks: int, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> torch.Tensor:
        """TDL path coefficients ``(batch, n_blocks, M)`` (complex128) before the sinc pulse and scaling."""
        if self.profile == "exponential":
            raise DiffcommError("ofdm: draw_paths applies to the TDL profiles only")
        m = self._tdl_delays.shape[0]
        w = complex_normal((batch, n_blocks, m), generator, device).to(torch.complex128)
        a = w * self._tdl_nlos.sqrt().to(w.device)
        if self._tdl_los > 0:
            gen_device = generator.device if generator is not None else device
            phase = (torch.rand(batch, n_blocks, generator=generator, device=gen_device) * 2 - 1) * math.pi
            spec = torch.polar(torch.full_like(phase, math.sqrt(self._tdl_los)), phase).to(a.device, torch.complex128)
            a = torch.cat([a[..., :1] + spec[..., None], a[..., 1:]], dim=-1)
        return a

    def _sinc_taps(self, paths: torch.Tensor) -> torch.Tensor:
        s = self._sinc.to(paths.device, torch.complex128)
        return (paths @ s * self._tap_scale).to(torch.complex64)

    def frequency_response(self, taps: torch.Tensor, k: int) -> torch.Tensor:
        """Per-data-RE gains ``H[block(j), j % N]``: complex64 ``(B, k)`` from taps ``(B, blocks, L)``."""
        h_f = torch.fft.fft(taps, n=self.fft_size, dim=-1)            # (B, blocks, N), unnormalised: sum_l h_l e^..
        j = torch.arange(k, device=taps.device)
        return h_f[:, self._block_of_re(k, taps.device), j % self.fft_size]

    def generate(self, batch: int, k: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
        """Frequency response on the k data REs, complex64 ``(batch, k)``; the taps go to :attr:`last_draw`."""
        if batch < 1 or k < 1:
            raise DiffcommError(f"ofdm: batch and k must be >= 1, got batch={batch}, k={k}")
        taps = self.draw_taps(batch, self.num_blocks(k), generator, device)
        gains = self.frequency_response(taps, k)
        self.last_draw = OFDMDraw(gains=gains, taps=taps)
        self._last_ref = weakref.ref(gains)
        return gains

    sample_gains = generate

    def taps_from_gains(self, gains: torch.Tensor) -> torch.Tensor:
        """Least-squares taps ``(B, blocks, L)`` whose frequency response on the data REs is ``gains`` (B, k).

        Exact for a true response when each block's data REs cover at least L distinct subcarriers.
        """
        if not torch.is_tensor(gains) or not gains.is_complex() or gains.ndim != 2:
            raise DiffcommError("ofdm: gains must be complex (B, k)")
        k, n = gains.shape[1], self.fft_size
        blocks = self._block_of_re(k, gains.device)
        out = []
        for b in range(self.num_blocks(k)):
            idx = torch.nonzero(blocks == b).flatten()
            f = idx % n
            n_f = torch.unique(f).numel()
            if n_f < self.n_taps:
                raise DiffcommError(f"ofdm: block {b} has data on {n_f} subcarriers, fewer than the {self.n_taps} "
                                    f"taps; pass taps= to apply or the gains returned by generate")
            lags = torch.arange(self.n_taps, device=gains.device, dtype=torch.float64)
            v = torch.polar(torch.ones(f.numel(), self.n_taps, dtype=torch.float64, device=gains.device),
                            -2 * math.pi * f[:, None].to(torch.float64) * lags[None] / n)      # (n_idx, L)
            out.append((torch.linalg.pinv(v) @ gains[:, idx].to(torch.complex128).T).T)  # (B, L)
        return torch.stack(out, dim=1).to(torch.complex64)

    def _taps_for(self, gains: torch.Tensor) -> torch.Tensor:
        if self.last_draw is not None and self._last_ref is not None and self._last_ref() is gains:
            return self.last_draw.taps
        return self.taps_from_gains(gains)

    # ---- apply ---------------------------------------------------------------------------------------
    def transmit_grid(self, grid: torch.Tensor, taps: torch.Tensor, symbols_per_block: int,
                      n0: float | torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Send a frequency-domain grid ``(B, S, N)`` through IDFT + CP, the CIR, noise, CP removal and DFT.

        ``taps`` ``(B, blocks, L)``: OFDM symbol ``s`` uses block ``s // symbols_per_block`` (a received
        sample uses the taps of its symbol's block). Returns the received grid ``(B, S, N)``;
        differentiable in ``grid`` and ``taps``.
        """
        b, s, n = grid.shape
        cp, length = self.cp_length, taps.shape[-1]
        x = torch.fft.ifft(grid, dim=-1, norm="ortho")
        x = torch.cat([x[..., n - cp:], x], dim=-1) if cp else x          # (B, S, N + cp)
        x = x.reshape(b, s * (n + cp))
        window = torch.nn.functional.pad(x, (length - 1, 0)).unfold(-1, length, 1)    # (B, T, L): x[t-L+1..t]
        sym_block = (torch.arange(s, device=grid.device) // symbols_per_block).clamp_max(taps.shape[1] - 1)
        per_sample = taps[:, sym_block].flip(-1).repeat_interleave(n + cp, dim=1)     # (B, T, L)
        y = (window * per_sample.to(window.dtype)).sum(-1)
        if not (isinstance(n0, float | int) and n0 == 0):       # a noiseless pass (n0 = 0) draws nothing
            y = awgn(y, n0, generator)
        y = y.reshape(b, s, n + cp)[..., cp:]
        return torch.fft.fft(y, dim=-1, norm="ortho")

    def apply(self, z: torch.Tensor, gains: torch.Tensor, n0: float | torch.Tensor,
              generator: torch.Generator | None = None, taps: torch.Tensor | None = None) -> torch.Tensor:
        """Received data symbols ``(B, k)`` after the OFDM chain; differentiable in ``z`` (and ``taps``).

        ``n0`` is a float or a real tensor of shape ``(B, 1)``. Taps: ``taps`` if given, else the draw
        behind ``gains`` (see the module docstring).
        """
        if not torch.is_tensor(z) or not z.is_complex() or z.ndim != 2:
            raise DiffcommError(f"ofdm: apply needs complex symbols (B, k), got "
                                f"{(z.dtype, tuple(z.shape)) if torch.is_tensor(z) else type(z).__name__}")
        bsz, k = z.shape
        taps = self._taps_for(gains) if taps is None else taps
        if taps.ndim != 3 or taps.shape[0] != bsz or taps.shape[1] != self.num_blocks(k):
            raise DiffcommError(f"ofdm: taps must be ({bsz}, {self.num_blocks(k)}, L), got {tuple(taps.shape)}")
        s, n = self.n_symbols(k), self.fft_size
        grid = torch.cat([z, z.new_zeros(bsz, s * n - k)], dim=1).reshape(bsz, s, n)
        n0_t = torch.as_tensor(n0, dtype=z.real.dtype, device=z.device)
        n0_t = n0_t.reshape(-1, 1) if n0_t.ndim else n0_t
        y = self.transmit_grid(grid, taps.to(z.device), self.symbols_per_block(k), n0_t, generator)
        return y.reshape(bsz, s * n)[:, :k].to(z.dtype)

    def frame_matrix(self, taps: torch.Tensor, k: int) -> torch.Tensor:
        """The exact noiseless map of the whole frame from data symbols to received data REs: complex64 ``(B, k, k)``.

        Column ``j`` is the received frame (IDFT, CP, the CIR ``taps`` ``(B, blocks, L)``, CP removal, DFT) of
        the unit symbol on data RE ``j``, so ``y = T z + n`` with white ``n ~ CN(0, N0 I)`` (the orthonormal DFT
        keeps the noise white) for *any* CP length: with ``cp_length >= memory`` ``T = diag(H)``; a shorter CP
        fills the off-diagonal with the ISI from the previous OFDM symbol and the ICI within each symbol.
        """
        bsz, blocks = taps.shape[:2]
        if blocks != self.num_blocks(k):
            raise DiffcommError(f"ofdm: taps must be ({bsz}, {self.num_blocks(k)}, L), got {tuple(taps.shape)}")
        s, n = self.n_symbols(k), self.fft_size
        eye = torch.eye(k, s * n, dtype=torch.complex64, device=taps.device).reshape(1, k, s, n)
        grid = eye.expand(bsz, k, s, n).reshape(bsz * k, s, n)
        rep = taps.to(torch.complex64).repeat_interleave(k, dim=0)                       # (B·k, blocks, L)
        y = self.transmit_grid(grid, rep, self.symbols_per_block(k), 0.0)               # no noise drawn
        return y.reshape(bsz, k, s * n)[..., :k].transpose(1, 2)

    def receiver_mixing(self, h_rx: torch.Tensor, k: int) -> torch.Tensor | None:
        """The frame operator the receiver models (the link's :attr:`~diffcomm.link.Received.mixing`), or None.

        With a CP shorter than the channel memory and ``model_isi`` (default), an ISI-aware receiver uses
        :meth:`frame_matrix` of the taps behind its CSI ``h_rx`` (the true draw for perfect CSI, the taps
        fitted to a pilot estimate otherwise) as one ``(B, 1, k, k)`` mixing block; per-symbol decoders keep
        the per-RE response ``h_hat``. None when the CP covers the memory (``T = diag(h)``) or
        ``model_isi=False`` (the receiver ignores the ISI: a mismatched model).
        """
        if not self.model_isi or self.cp_length >= self.memory:
            return None
        return self.frame_matrix(self._taps_for(h_rx), k)[:, None]

    def pilot_gains(self, gains: torch.Tensor) -> torch.Tensor:
        raise DiffcommError("ofdm: per-block flat pilot gains do not apply to OFDM; the link's csi='estimated' "
                            "uses OFDMChannel.estimate_csi (block pilot OFDM symbols)")

    def pilot_uses(self, k: int, n_pilots: int) -> int:
        """Channel uses of ``n_pilots`` block-pilot OFDM symbols (with CP) per CIR block."""
        return int(n_pilots) * self.num_blocks(k) * (self.fft_size + self.cp_length)

    def estimate_csi(self, gains: torch.Tensor, k: int, n0: float, n_pilots: int, estimator: str = "lmmse",
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The link's ``csi="estimated"`` on OFDM: ``n_pilots`` block-pilot OFDM symbols per CIR block through
        the frame's own taps (:func:`estimate_ofdm_channel`, LS or LMMSE per subcarrier)."""
        est = estimate_ofdm_channel(self, self._taps_for(gains), k, n0, pattern="block", n_symbols=n_pilots,
                                    estimator=estimator, generator=generator)
        return est.h_hat, est.y_pilot, est.pilots

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "fft_size": self.fft_size, "cp_length": self.cp_length, "profile": self.profile,
                "delay_spread": self.delay_spread, "n_taps": self.n_taps, "coherence": self.coherence_symbols,
                "subcarrier_spacing": self.subcarrier_spacing,
                **({"model_isi": False} if not self.model_isi else {})}


CHANNELS["ofdm"] = OFDMChannel


@dataclass
class OFDMPilotEstimate:
    """Pilot-aided OFDM channel estimate (:func:`estimate_ofdm_channel`)."""

    h_hat: torch.Tensor           # complex (B, k): estimate on the data REs
    h_subcarrier: torch.Tensor    # complex (B, blocks, N): estimate per subcarrier and block (after interpolation)
    y_pilot: torch.Tensor         # complex (B, blocks, n_pilot_subcarriers, n_symbols): received pilot REs
    pilots: torch.Tensor          # complex (n_pilot_subcarriers, n_symbols): pilot values
    pilot_subcarriers: torch.Tensor   # long (n_pilot_subcarriers,)
    pilot_res: int                # pilot REs per image
    channel_uses: int             # channel uses per image of the pilot symbols (whole OFDM symbols incl. CP)


def pilot_subcarriers(fft_size: int, pattern: str = "block", spacing: int = 4) -> torch.Tensor:
    """Subcarriers that carry pilots: all (``"block"``) or ``0, spacing, 2·spacing, …`` (``"comb"``)."""
    if pattern not in PILOT_PATTERNS:
        raise DiffcommError(f"ofdm pilots: pattern must be 'block' or 'comb', got {pattern!r}")
    if pattern == "block":
        return torch.arange(fft_size)
    spacing = _int(spacing, "pilot spacing", 1)
    return torch.arange(0, fft_size, spacing)


def interpolate_subcarriers(h_pilot: torch.Tensor, carriers: torch.Tensor, fft_size: int) -> torch.Tensor:
    """Linear interpolation of per-pilot estimates ``(..., P)`` on ``carriers`` to all ``fft_size`` subcarriers.

    The frequency response of an N-point OFDM symbol is N-periodic in the subcarrier index, so the
    interpolation wraps around (between the last pilot and the first one + N).
    """
    f = torch.arange(fft_size, device=h_pilot.device, dtype=torch.float64)
    c = carriers.to(h_pilot.device, torch.float64)
    if c.numel() == 1:
        return h_pilot[..., :1].expand(*h_pilot.shape[:-1], fft_size)
    c_ext = torch.cat([c, c[:1] + fft_size])
    h_ext = torch.cat([h_pilot, h_pilot[..., :1]], dim=-1)
    f_rel = torch.where(f < c[0], f + fft_size, f)
    right = torch.searchsorted(c_ext, f_rel, right=True).clamp(1, c_ext.numel() - 1)
    left = right - 1
    w = ((f_rel - c_ext[left]) / (c_ext[right] - c_ext[left])).to(h_pilot.real.dtype)
    return h_ext[..., left] * (1 - w) + h_ext[..., right] * w


def estimate_ofdm_channel(channel: OFDMChannel, taps: torch.Tensor, k: int, n0: float, *, pattern: str = "block",
                          spacing: int = 4, n_symbols: int = 1, estimator: str = "ls", pilot_power: float = 1.0,
                          generator: torch.Generator | None = None) -> OFDMPilotEstimate:
    """Pilot-aided estimate of the frequency response on a frame's k data REs.

    For each CIR block, ``n_symbols`` pilot OFDM symbols go through that block's ``taps`` (the same
    IDFT/CP/convolution/noise chain as the data, so a short CP also hurts the pilots). Pilot REs carry
    a Zadoff-Chu sequence over the pilot subcarriers scaled to ``|p|² = pilot_power``; the received
    pilot REs of each subcarrier are combined over the ``n_symbols`` symbols by LS
    (:func:`~diffcomm.channels.estimation.estimate_ls`, error variance ``N0 / (n_symbols |p|²)``) or
    LMMSE with the per-subcarrier prior CN(0, 1)
    (:func:`~diffcomm.channels.estimation.estimate_lmmse`, ``N0 / (n_symbols |p|² + N0)``), then
    linearly interpolated across subcarriers (comb pilots; wrap-around, see
    :func:`interpolate_subcarriers`). Draws the pilot noise from ``generator``.

    Channel uses: ``pilot_res`` REs carry pilots; ``channel_uses`` charges the whole pilot OFDM symbols
    with their CP (``blocks · n_symbols · (N + cp)``; a comb's unused REs could carry data in a real
    frame, which this estimate does not model).
    """
    if not isinstance(channel, OFDMChannel):
        raise DiffcommError("estimate_ofdm_channel: channel must be an OFDMChannel")
    if estimator not in PILOT_ESTIMATORS:
        raise DiffcommError(f"estimate_ofdm_channel: estimator must be 'ls' or 'lmmse', got {estimator!r}")
    n_symbols = _int(n_symbols, "n_symbols (pilot OFDM symbols per block)", 1)
    power = _float(pilot_power, "pilot_power")
    if power <= 0:
        raise DiffcommError(f"estimate_ofdm_channel: pilot_power must be > 0, got {pilot_power!r}")
    n = channel.fft_size
    carriers = pilot_subcarriers(n, pattern, spacing).to(taps.device)
    n_p = carriers.numel()
    bsz, blocks = taps.shape[0], taps.shape[1]
    seq = pilot_sequence(n_p * n_symbols).to(taps.device).reshape(n_symbols, n_p).T * math.sqrt(power)   # (P, S_p)
    grid = torch.zeros(bsz, blocks * n_symbols, n, dtype=torch.complex64, device=taps.device)
    grid[:, :, carriers] = seq.T.repeat(blocks, 1)[None]                   # symbol r of each block: seq[:, r]
    rx = channel.transmit_grid(grid, taps, n_symbols, n0, generator)      # (B, blocks·S_p, N)
    y_pilot = rx[:, :, carriers].reshape(bsz, blocks, n_symbols, n_p).transpose(-1, -2)   # (B, blocks, P, S_p)
    if estimator == "ls":
        est = estimate_ls(y_pilot, seq)
    else:
        est = estimate_lmmse(y_pilot, seq, n0, channel.scatter_var, channel.mean)
    h_sc = est if pattern == "block" else interpolate_subcarriers(est, carriers, n)   # (B, blocks, N)
    j = torch.arange(k, device=taps.device)
    h_hat = h_sc[:, channel._block_of_re(k, taps.device), j % n]
    uses = blocks * n_symbols * (n + channel.cp_length)
    return OFDMPilotEstimate(h_hat=h_hat, h_subcarrier=h_sc, y_pilot=y_pilot, pilots=seq, pilot_subcarriers=carriers,
                             pilot_res=blocks * n_symbols * n_p, channel_uses=uses)
