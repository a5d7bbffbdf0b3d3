"""Channel models: additive white Gaussian noise and flat fading (Rayleigh, Rician).

The received symbol is ``y_j = h_j s_j + n_j`` with ``n_j ~ CN(0, N0)`` (variance N0/2 per real
dimension) and gains normalised to ``E|h|^2 = 1``, so the average SNR is Es/N0 = 1/N0:

* AWGN: ``h = 1``.
* Rayleigh: ``h ~ CN(0, 1)`` (Tse & Viswanath, *Fundamentals of Wireless Communication*, §2.4).
* Rician with K-factor K: ``h = sqrt(K/(K+1)) e^{jφ} + sqrt(1/(K+1)) w``, ``w ~ CN(0, 1)``
  (line-of-sight component with fixed phase φ plus scattering; ibid. §2.4.2).

**Generate / apply** (the split of Sionna's ``GenerateFlatFadingChannel`` / ``ApplyFlatFadingChannel``):
:meth:`Channel.generate` draws the gains of a frame, shaped like the symbols they multiply
(``(B, k)`` here; a multipath or MIMO channel may return ``(B, subcarriers, symbols)`` or
``(B, n_rx, n_tx)``), and :meth:`Channel.apply` applies them and adds the noise. The link only
calls these two (and :meth:`Channel.pilot_gains` for pilot-aided estimation), so a new channel is
one new class.

Time variation: *block* fading draws one gain per coherence block of ``coherence`` symbols
(default ``None``: the whole frame of k symbols shares one gain); *fast* fading draws one gain per
symbol (coherence length 1). Blocks are consecutive; the last one may be shorter.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> ch = make_channel("rayleigh", block=True, coherence=4)
    >>> ch.sample_gains(2, 10, generator=g).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import cmath
import math
from typing import Any, Literal

import torch

from diffcomm.errors import DiffcommError

CSIMode = Literal["perfect", "estimated", "none"]


def complex_normal(shape: tuple[int, ...], generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Samples of CN(0, 1) (variance 1/2 per real dimension), complex64."""
    gen_device = generator.device if generator is not None else device
    v = torch.randn(*shape, 2, generator=generator, device=gen_device)
    return torch.view_as_complex(v * math.sqrt(0.5)).to(device)


def awgn(z: torch.Tensor, n0: float | torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``z + n`` with ``n ~ CN(0, n0)``: independent N(0, n0/2) on the real and imaginary parts.

    ``n0`` is a float or a real tensor broadcastable to ``z`` (e.g. ``(B, 1)`` for per-image SNRs).
    Differentiable in ``z``.
    """
    if not torch.is_tensor(z) or not z.is_complex():
        raise DiffcommError(f"awgn needs complex symbols, got {z.dtype if torch.is_tensor(z) else type(z).__name__}")
    n0_t = torch.as_tensor(n0, dtype=z.real.dtype, device=z.device)
    if not torch.isfinite(n0_t).all() or (n0_t < 0).any():
        raise DiffcommError(f"noise variance n0 must be finite and >= 0, got {n0}")
    noise = complex_normal(tuple(z.shape), generator, z.device).to(z.dtype)
    return z + noise * n0_t.sqrt()


class Channel:
    """Flat fading channel with ``E|h|^2 = 1``; subclasses set ``mean`` and ``scatter_var``.

    ``mean`` = E[h] and ``scatter_var`` = E|h - E h|^2 (``|mean|^2 + scatter_var = 1``) are the
    prior the LMMSE channel estimator uses.
    """

    name: str = "channel"
    mean: complex = 0j
    scatter_var: float = 1.0

    def __init__(self, block: bool = True, coherence: int | None = None):
        if not isinstance(block, bool):
            raise DiffcommError(f"{self.name}: block must be True (block fading) or False (fast fading), got {block!r}")
        if coherence is not None:
            if not block:
                raise DiffcommError(f"{self.name}: coherence applies to block fading only; drop it or set block=True")
            if isinstance(coherence, bool) or not isinstance(coherence, int) or coherence < 1:
                raise DiffcommError(f"{self.name}: coherence must be a positive number of symbols, got {coherence!r}")
        self.block = block
        self.coherence = coherence

    def coherence_length(self, k: int) -> int:
        """Symbols that share one gain in a frame of ``k`` symbols."""
        if not self.block:
            return 1
        return k if self.coherence is None else min(self.coherence, k)

    def num_blocks(self, k: int) -> int:
        """Coherence blocks in a frame of ``k`` symbols (``ceil(k / coherence_length)``)."""
        return -(-k // self.coherence_length(k))

    def sample_block_gains(self, batch: int, n_blocks: int, generator: torch.Generator | None = None,
                           device: torch.device | str | None = None) -> torch.Tensor:
        """One gain per coherence block: complex64 ``(batch, n_blocks)``."""
        return (self.mean + math.sqrt(self.scatter_var) * complex_normal((batch, n_blocks), generator, device)
                ).to(torch.complex64)

    def expand_blocks(self, block_gains: torch.Tensor, k: int) -> torch.Tensor:
        """Per-block gains ``(B, n_blocks)`` -> per-symbol gains ``(B, k)``."""
        return block_gains.repeat_interleave(self.coherence_length(k), dim=1)[:, :k]

    def sample_gains(self, batch: int, k: int, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> torch.Tensor:
        """Per-symbol gains ``h``: complex64 ``(batch, k)``, constant within each coherence block."""
        if batch < 1 or k < 1:
            raise DiffcommError(f"{self.name}: batch and k must be >= 1, got batch={batch}, k={k}")
        return self.expand_blocks(self.sample_block_gains(batch, self.num_blocks(k), generator, device), k)

    def generate(self, batch: int, k: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
        """Gains of a frame of ``k`` symbols per image: complex64 ``(batch, k)`` (= :meth:`sample_gains`)."""
        return self.sample_gains(batch, k, generator, device)

    def apply(self, z: torch.Tensor, gains: torch.Tensor, n0: float | torch.Tensor,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """Received symbols ``gains ⊙ z + n``, ``n ~ CN(0, n0)``; differentiable in ``z`` and ``gains``."""
        return awgn(gains * z, n0, generator)

    def extra_uses(self, k: int) -> int:
        """Channel uses per frame beyond the k data symbols and the link's pilots (0 here; OFDM: padding + CP)."""
        return 0

    def pilot_uses(self, k: int, n_pilots: int) -> int:
        """Channel uses per frame of ``n_pilots`` pilot symbols per coherence block (``n_pilots × blocks``)."""
        return int(n_pilots) * self.num_blocks(k)

    def estimate_csi(self, gains: torch.Tensor, k: int, n0: float, n_pilots: int, estimator: str = "lmmse",
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pilot-aided receiver CSI for a frame with true ``gains`` ``(B, k)``: ``(ĥ (B, k), y_pilot, pilots)``.

        Each coherence block is preceded by ``n_pilots`` unit-power Zadoff-Chu pilots that go through the
        block's gain; one gain per block is estimated by LS or LMMSE
        (:mod:`diffcomm.channels.estimation`). Channels with another pilot structure (OFDM) override it.
        """
        from diffcomm.channels.estimation import estimate_lmmse, estimate_ls, pilot_sequence

        pilots = pilot_sequence(n_pilots).to(gains.device)
        blocks = self.pilot_gains(gains)
        y_pilot = self.apply(pilots, blocks[..., None], n0, generator)
        if estimator == "ls":
            est = estimate_ls(y_pilot, pilots)
        else:
            est = estimate_lmmse(y_pilot, pilots, n0, self.scatter_var, self.mean)
        return self.expand_blocks(est, k), y_pilot, pilots

    def pilot_gains(self, gains: torch.Tensor) -> torch.Tensor:
        """The gain each coherence block's pilots see: ``(B, n_blocks)``, the first gain of each block."""
        k = gains.shape[-1]
        return gains[:, ::self.coherence_length(k)]

    def config(self) -> dict[str, Any]:
        """JSON-ready description (for results records)."""
        return {"name": self.name, "block": self.block, "coherence": self.coherence}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class AWGNChannel(Channel):
    """No fading: ``h = 1``; draws no random numbers for the gains."""

    name = "awgn"
    mean = 1 + 0j
    scatter_var = 0.0

    def __init__(self):
        super().__init__(block=True, coherence=None)

    def sample_block_gains(self, batch: int, n_blocks: int, generator: torch.Generator | None = None,
                           device: torch.device | str | None = None) -> torch.Tensor:
        return torch.ones(batch, n_blocks, dtype=torch.complex64, device=device)

    def config(self) -> dict[str, Any]:
        return {"name": self.name}


class RayleighChannel(Channel):
    """Rayleigh fading ``h ~ CN(0, 1)``, block (default: one gain per frame) or fast (per symbol)."""

    name = "rayleigh"
    mean = 0j
    scatter_var = 1.0


class RicianChannel(Channel):
    """Rician fading with K-factor ``k_factor`` (linear, >= 0) and line-of-sight phase ``los_phase`` (rad).

    ``h = sqrt(K/(K+1)) e^{j los_phase} + sqrt(1/(K+1)) CN(0, 1)``; K = 0 is Rayleigh, K -> inf is AWGN
    with a phase rotation.
    """

    name = "rician"

    def __init__(self, k_factor: float = 1.0, block: bool = True, coherence: int | None = None,
                 los_phase: float = 0.0):
        super().__init__(block=block, coherence=coherence)
        try:
            kf, phase = float(k_factor), float(los_phase)
        except (TypeError, ValueError):
            raise DiffcommError(f"rician: k_factor and los_phase must be numbers, "
                                f"got {k_factor!r}, {los_phase!r}") from None
        if not math.isfinite(kf) or kf < 0:
            raise DiffcommError(f"rician: k_factor must be finite and >= 0 (linear, not dB), got {k_factor!r}")
        if not math.isfinite(phase):
            raise DiffcommError(f"rician: los_phase must be a finite angle in radians, got {los_phase!r}")
        self.k_factor, self.los_phase = kf, phase
        self.mean = math.sqrt(kf / (kf + 1)) * cmath.exp(1j * phase)
        self.scatter_var = 1 / (kf + 1)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "k_factor": self.k_factor, "los_phase": self.los_phase}


CHANNELS: dict[str, type[Channel]] = {"awgn": AWGNChannel, "rayleigh": RayleighChannel, "rician": RicianChannel}


def make_channel(name: str, **kwargs: Any) -> Channel:
    """Build a channel by name: ``"awgn"``, ``"rayleigh"``, ``"rician"`` or ``"ofdm"``, with its keyword options.

    Examples: ``make_channel("rician", k_factor=3.0, block=False)``,
    ``make_channel("ofdm", fft_size=16, cp_length=4, profile="C", delay_spread=300e-9)``
    (:mod:`diffcomm.channels.ofdm`).
    """
    cls = CHANNELS.get(str(name).lower())
    if cls is None:
        raise DiffcommError(f"unknown channel {name!r}; choose one of {', '.join(CHANNELS)}")
    try:
        return cls(**kwargs)
    except TypeError:
        import inspect

        allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        raise DiffcommError(f"channel {name!r} takes options {allowed or 'none'}, got {sorted(kwargs)}") from None
