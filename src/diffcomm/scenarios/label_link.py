"""A digital link for a few bits: a class label, channel-coded and QPSK-modulated (Sionna blocks).

Semantic-only transmission (GESCO-style: send the label, not the image) needs a link for a
``ceil(log2 C)``-bit message — 4 bits for Fashion-MNIST's ten classes — in a handful of channel
uses. The chain::

    label --(binary, MSB first)--> code --> QPSK (Sionna ``Mapper("qam", 2)``: Gray, unit energy)
    --> channel: y = h s + n, n ~ CN(0, N0) (a diffcomm channel: AWGN, Rayleigh/Rician block or fast)
    --> perfect-CSI equalisation s/h, effective noise N0/|h|² (:func:`diffcomm.channels.equalize_zf`)
    --> Sionna ``Demapper("app")`` LLRs --> decoder --> bits --> label (>= C: a decoding failure)

Codes (``code=``):

- ``"uncoded"``: the bits themselves (padded to an even number for QPSK); hard decisions on the
  LLRs. 4 bits = 2 channel uses.
- ``"repN"``: each bit repeated N times, LLRs summed (maximum-ratio combining: the ML decision
  for a repetition code). Not a Sionna block (Sionna has no repetition code); 4 bits = 2N uses.
- ``"polarN"`` (N a power of two >= 8): a polar code of length N with Sionna's
  ``PolarEncoder`` / ``PolarSCLDecoder`` (list size 16 by default; LLR-domain SCL with Sionna's
  fast-SCL node shortcuts, so close to but not exactly ML). Frozen set: for N >= 32 Sionna's 5G
  reliability ranking (``generate_5g_ranking``, which refuses N < 32); for N = 8 and 16 the
  information set of the Reed–Muller code RM(r, log2 N) of the smallest order r with at least k
  information bits (Sionna's ``generate_rm_code``), the lowest-index surplus positions frozen
  (RM(1, 3) is the [8, 4, 4] extended Hamming code; for 4 bits in 16 positions the result is a
  subcode of RM(1, 4) with minimum distance 8). 4 bits = N/2 uses.

Sionna's 5G LDPC needs k >= 12 information bits (:mod:`diffcomm.transmit.digital.phy`), so it is
not offered for labels.

Bit error rate of uncoded Gray QPSK over AWGN at Es/N0 = SNR (per complex symbol, the project's
convention): ``Pb = Q(sqrt(SNR))`` (:func:`qpsk_ber`; each bit sees a BPSK with amplitude
sqrt(Es/2) in noise of variance N0/2). The test checks the simulated BER against it.

Example:
    >>> link = LabelLink(num_classes=10, code="polar16")
    >>> link.channel_uses, link.bits
    (8, 4)
    >>> out = link.send(torch.arange(10), snr_db=10.0, generator=torch.Generator().manual_seed(0))
    >>> bool((out.labels == torch.arange(10)).all())
    True
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch

from diffcomm.errors import DiffcommError

CODE_KINDS = ("uncoded", "rep", "polar")


def qpsk_ber(snr_db: float) -> float:
    """Theoretical bit error rate of uncoded Gray QPSK over AWGN at Es/N0 = ``snr_db``: Q(sqrt(SNR))."""
    snr = 10 ** (float(snr_db) / 10)
    return 0.5 * math.erfc(math.sqrt(snr) / math.sqrt(2))


def parse_code(code: str) -> tuple[str, int]:
    """``"uncoded"`` -> ("uncoded", 1), ``"rep3"`` -> ("rep", 3), ``"polar16"`` -> ("polar", 16)."""
    text = str(code).strip().lower()
    if text == "uncoded":
        return "uncoded", 1
    m = re.fullmatch(r"(rep|polar)-?(\d+)", text)
    if not m:
        raise DiffcommError(f"unknown label code {code!r}; use uncoded, repN (e.g. rep3) or polarN "
                            f"(N a power of two >= 8, e.g. polar16)")
    kind, n = m.group(1), int(m.group(2))
    if kind == "rep" and not 1 <= n <= 1024:
        raise DiffcommError(f"label code {code!r}: repetitions must be in 1..1024")
    if kind == "polar" and (n < 8 or n > 1024 or n & (n - 1)):
        raise DiffcommError(f"label code {code!r}: polar length must be a power of two in 8..1024")
    return kind, n


def polar_frozen_positions(k: int, n: int):
    """Frozen positions (numpy int array) of a length-``n`` polar code with ``k`` information bits.

    n >= 32: Sionna's 5G reliability ranking; n in {8, 16}: the information set of the smallest-order
    Reed–Muller code with >= k information bits, surplus (lowest-index) information positions frozen.
    """
    import numpy as np
    from sionna.phy.fec.polar.utils import generate_5g_ranking, generate_rm_code

    if not 1 <= k <= n:
        raise DiffcommError(f"a polar code of length {n} carries 1..{n} bits, got {k}")
    if n >= 32:
        frozen, _ = generate_5g_ranking(k, n)
        return np.sort(np.asarray(frozen, dtype=int))
    m = int(math.log2(n))
    for r in range(0, m + 1):
        _, info, _, dim, _ = generate_rm_code(r, m)
        if dim >= k:
            info = np.sort(np.asarray(info, dtype=int))
            keep = info[len(info) - k:]   # the highest indices (the most reliable positions of the RM set)
            return np.setdiff1d(np.arange(n), keep)
    raise AssertionError("unreachable: RM(m, m) has n information bits")


@dataclass
class LabelOutput:
    """What :meth:`LabelLink.send` returns (per message)."""

    labels: torch.Tensor        # long (B,): decoded labels (values >= num_classes are decoding failures)
    bits: torch.Tensor          # float (B, bits): decoded information bits
    sent_bits: torch.Tensor     # float (B, bits): transmitted information bits
    channel_uses: int           # complex symbols per message
    num_classes: int            # the alphabet size C

    @property
    def valid(self) -> torch.Tensor:
        """Decoded bit patterns that name a class (the others are decoding failures)."""
        return self.labels < self.num_classes


class LabelLink:
    """Code + QPSK + channel + perfect-CSI receiver for labels in ``[0, num_classes)``; see the module docstring.

    Args:
        num_classes: message alphabet size C (bits = ceil(log2 C), at least 1).
        code: ``"uncoded"``, ``"repN"`` or ``"polarN"``.
        channel: a diffcomm channel name or :class:`~diffcomm.channels.Channel` (default AWGN; block
            fading draws one gain per message).
        list_size: SCL list size for polar codes (a power of two).
    """

    def __init__(self, num_classes: int = 10, code: str = "polar16", channel: Any = "awgn", list_size: int = 16):
        try:
            from sionna.phy.mapping import Demapper, Mapper
        except ImportError as exc:
            raise DiffcommError(f"the label link needs Sionna ({exc.name or exc}); "
                                "install it with: pip install 'diffcomm[digital]'") from None
        from diffcomm.channels import Channel, make_channel

        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise DiffcommError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        self.num_classes = num_classes
        self.bits = max(1, math.ceil(math.log2(num_classes)))
        self.code = str(code)
        self.kind, self.param = parse_code(code)
        self.channel = make_channel(channel) if isinstance(channel, str) else channel
        if not isinstance(self.channel, Channel):
            raise DiffcommError(f"channel must be a name or a diffcomm Channel, got {channel!r}")
        self.list_size = int(list_size)
        if self.kind == "uncoded":
            self.n_coded = self.bits + (self.bits % 2)
        elif self.kind == "rep":
            self.n_coded = self.bits * self.param
            self.n_coded += self.n_coded % 2   # one zero pad bit for QPSK when needed
        else:
            from sionna.phy.fec.polar import PolarEncoder, PolarSCLDecoder

            if self.bits > self.param:
                raise DiffcommError(f"label code {code!r}: a length-{self.param} polar code cannot carry "
                                    f"{self.bits} bits; use a longer one")
            if self.list_size < 1 or self.list_size & (self.list_size - 1):
                raise DiffcommError(f"list_size must be a power of two, got {list_size!r}")
            self.frozen = polar_frozen_positions(self.bits, self.param)
            self.encoder = PolarEncoder(self.frozen, self.param)
            self.decoder = PolarSCLDecoder(self.frozen, self.param, list_size=self.list_size)
            self.n_coded = self.param
        self.mapper = Mapper("qam", 2)
        self.demapper = Demapper("app", "qam", 2)

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def channel_uses(self) -> int:
        """Complex channel uses (QPSK symbols) per label."""
        return self.n_coded // 2

    @property
    def rate(self) -> float:
        """Information bits per coded bit."""
        return self.bits / self.n_coded

    def describe(self) -> dict[str, Any]:
        out = {"code": self.code, "kind": self.kind, "info_bits": self.bits, "coded_bits": self.n_coded,
               "rate": self.rate, "modulation": "QPSK (Gray, Sionna Mapper)", "channel_uses": self.channel_uses,
               "channel": self.channel.config(), "csi": "perfect", "demapping": "app (Sionna Demapper)"}
        if self.kind == "polar":
            out.update({"decoder": f"Sionna PolarSCLDecoder, list {self.list_size}",
                        "frozen_set": "5G ranking" if self.param >= 32 else "Reed-Muller information set"})
        elif self.kind == "rep":
            out["decoder"] = "LLR sum (maximum-ratio combining)"
        else:
            out["decoder"] = "hard decision"
        return out

    # -- bits ------------------------------------------------------------------------------------
    def labels_to_bits(self, labels: torch.Tensor) -> torch.Tensor:
        """Long ``(B,)`` in [0, C) -> float ``(B, bits)``, most significant bit first."""
        labels = torch.as_tensor(labels)
        if labels.ndim != 1 or labels.is_floating_point() or labels.is_complex():
            raise DiffcommError(f"labels must be a 1-D integer tensor, got {labels.dtype} {tuple(labels.shape)}")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise DiffcommError(f"labels must be in [0, {self.num_classes}), got [{int(labels.min())}, "
                                f"{int(labels.max())}]")
        shifts = torch.arange(self.bits - 1, -1, -1)
        return ((labels.long()[:, None] >> shifts) & 1).float()

    def bits_to_labels(self, bits: torch.Tensor) -> torch.Tensor:
        weights = 2 ** torch.arange(self.bits - 1, -1, -1)
        return (bits.round().long() * weights).sum(1)

    # -- the chain -------------------------------------------------------------------------------
    def encode_bits(self, bits: torch.Tensor) -> torch.Tensor:
        """Information bits ``(B, bits)`` -> coded bits ``(B, n_coded)``."""
        bits = bits.float()
        if self.kind == "polar":
            return self.encoder(bits)
        coded = bits.repeat_interleave(self.param, dim=1) if self.kind == "rep" else bits
        if coded.shape[1] < self.n_coded:
            coded = torch.cat([coded, torch.zeros(len(coded), self.n_coded - coded.shape[1])], dim=1)
        return coded

    def modulate(self, labels: torch.Tensor) -> torch.Tensor:
        """Labels ``(B,)`` -> QPSK symbols ``(B, channel_uses)`` (unit average energy)."""
        return self.mapper(self.encode_bits(self.labels_to_bits(labels))).to(torch.complex64)

    def llrs(self, y: torch.Tensor, h: torch.Tensor, n0: float) -> torch.Tensor:
        """Coded-bit LLRs ``(B, n_coded)`` (Sionna's sign: log p(1)/p(0)) from ``y = h s + n``, perfect CSI."""
        from diffcomm.channels import equalize_zf

        s_hat, no_eff = equalize_zf(y, h, float(n0))
        return self.demapper(s_hat.to(torch.complex64), no_eff.float())

    def decode_llrs(self, llr: torch.Tensor) -> torch.Tensor:
        """Coded-bit LLRs -> information bits ``(B, bits)`` (float 0/1)."""
        if self.kind == "polar":
            return self.decoder(llr.float())
        if self.kind == "rep":
            llr = llr[:, :self.bits * self.param].reshape(-1, self.bits, self.param).sum(2)
        else:
            llr = llr[:, :self.bits]
        return (llr > 0).float()

    def transmit(self, labels: torch.Tensor, snr_db: float, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
        """Code, modulate and send labels at ``snr_db`` (Es/N0 per complex symbol): ``(y, h, n0, bits)``.

        ``h`` is the channel gain per symbol, which the receiver knows (perfect CSI); the gains are
        drawn before the noise, from ``generator``.
        """
        from diffcomm.channels import snr_db_to_n0

        if not math.isfinite(float(snr_db)):
            raise DiffcommError(f"snr_db must be finite, got {snr_db!r}")
        bits = self.labels_to_bits(labels)
        s = self.mapper(self.encode_bits(bits)).to(torch.complex64)
        n0 = float(snr_db_to_n0(float(snr_db)))
        h = self.channel.generate(s.shape[0], s.shape[1], generator)
        return self.channel.apply(s, h, n0, generator), h, n0, bits

    def receive(self, y: torch.Tensor, h: torch.Tensor, n0: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The receiver: ``(labels (B,), bits (B, bits))`` from ``y`` with perfect CSI ``h``."""
        bits_hat = self.decode_llrs(self.llrs(y, h, n0))
        return self.bits_to_labels(bits_hat), bits_hat

    def send(self, labels: torch.Tensor, snr_db: float, generator: torch.Generator | None = None) -> LabelOutput:
        """Transmit labels at ``snr_db`` and decode them (perfect receiver CSI)."""
        y, h, n0, bits = self.transmit(labels, snr_db, generator)
        labels_hat, bits_hat = self.receive(y, h, n0)
        return LabelOutput(labels=labels_hat, bits=bits_hat, sent_bits=bits, channel_uses=self.channel_uses,
                           num_classes=self.num_classes)


def simulate_ber(code: str, snr_db: float, n_messages: int, num_classes: int = 16, channel: Any = "awgn",
                 seed: int = 0) -> tuple[float, int]:
    """Information-bit error rate of ``code`` over ``n_messages`` uniformly random messages; ``(ber, n_bits)``."""
    link = LabelLink(num_classes=num_classes, code=code, channel=channel)
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n_messages,), generator=gen)
    out = link.send(labels, snr_db, gen)
    errors = int((out.bits != out.sent_bits).sum())
    return errors / out.sent_bits.numel(), out.sent_bits.numel()
