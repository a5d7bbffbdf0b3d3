"""Channel coding and modulation for the digital baseline: 5G NR LDPC + Gray QAM (Sionna).

Chain (all coding blocks are Sionna's, nothing hand-written)::

    bits --(pad to whole blocks)--> LDPC5GEncoder (3GPP TS 38.212, rate matching and the
    bit interleaver for ``bits_per_symbol``) --> Mapper("qam", m) (Gray, unit average energy)
    --> channel: y = h x + n, n ~ CN(0, N0) (diffcomm channel objects)
    --> perfect-CSI equalisation s = y / h, effective noise N0 / |h|^2 per symbol
    --> Demapper("app" | "maxlog") --> LDPC5GDecoder (flooding BP, ``num_iter`` iterations)
    --> bits

Block length: every codeword carries ``k_ldpc`` information bits (default 1024) for all code
rates; the codeword length is ``n = ceil(k / (r m)) * m`` so that a codeword fills whole QAM
symbols (the effective rate ``k / n`` is reported by :attr:`LdpcQam.rate`). The last block is
zero-padded and the padding is sent, i.e. it counts in the channel uses. Channel uses = number of
complex QAM symbols.

SISO zero-forcing with perfect CSI is an invertible scaling of y, so the demapper on
(y / h, N0 / ``|h|^2``) computes exactly the LLRs of the received symbol (no information is lost).

Example:
    >>> phy = LdpcQam(code_rate=1 / 2, bits_per_symbol=4, k_ldpc=256)
    >>> bits = torch.randint(0, 2, (1000,), generator=torch.Generator().manual_seed(0)).float()
    >>> x = phy.encode_bits(bits)
    >>> x.shape  # 4 codewords of 512 bits -> 128 symbols each
    torch.Size([512])
    >>> bits_hat = phy.decode_bits(x, torch.ones_like(x), n0=1e-3, n_bits=1000)
    >>> bool((bits_hat == bits).all())
    True

References: 3GPP TS 38.212 (5G NR LDPC, rate matching); Richardson & Urbanke, "Modern Coding
Theory" (BP decoding); Hoydis et al., "Sionna: An Open-Source Library for Next-Generation
Physical Layer Research", arXiv:2203.11854.
"""

from __future__ import annotations

import math

import torch

from diffcomm.errors import DiffcommError

CODE_RATES: tuple[float, ...] = (1 / 3, 1 / 2, 2 / 3, 3 / 4, 5 / 6)
BITS_PER_SYMBOL: tuple[int, ...] = (2, 4, 6)
MODULATION_NAMES = {2: "QPSK", 4: "16-QAM", 6: "64-QAM"}


def rate_label(code_rate: float) -> str:
    """``1/3``-style label for the standard rates, else the float."""
    for num, den in ((1, 3), (1, 2), (2, 3), (3, 4), (5, 6)):
        if abs(code_rate - num / den) < 1e-9:
            return f"{num}/{den}"
    return f"{code_rate:.4g}"


class LdpcQam:
    """5G LDPC + QAM link layer (Sionna blocks), single-carrier, perfect receiver CSI.

    Args:
        code_rate: target LDPC code rate in (0, 0.95).
        bits_per_symbol: 2 (QPSK), 4 (16-QAM) or 6 (64-QAM); any even number >= 2 works.
        k_ldpc: information bits per codeword (12..8448, 5G base graphs).
        num_iter: BP iterations.
        demapping: ``"app"`` (exact) or ``"maxlog"``.
    """

    def __init__(self, code_rate: float, bits_per_symbol: int, k_ldpc: int = 1024, num_iter: int = 20,
                 demapping: str = "app") -> None:
        try:
            from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
            from sionna.phy.mapping import Demapper, Mapper
        except ImportError as exc:
            raise DiffcommError(f"the digital baseline needs Sionna ({exc.name or exc}); "
                                "install it with: pip install 'diffcomm[digital]'") from None

        if not (0.0 < float(code_rate) <= 0.95):
            raise DiffcommError(f"code_rate must be in (0, 0.95] (5G LDPC), got {code_rate}")
        if int(bits_per_symbol) != bits_per_symbol or bits_per_symbol < 2 or bits_per_symbol % 2:
            raise DiffcommError(f"bits_per_symbol must be an even integer >= 2 (square QAM), got {bits_per_symbol}")
        if not (12 <= int(k_ldpc) <= 8448):
            raise DiffcommError(f"k_ldpc must be in [12, 8448] (5G LDPC base graphs), got {k_ldpc}")
        if demapping not in ("app", "maxlog"):
            raise DiffcommError(f"demapping must be 'app' or 'maxlog', got {demapping!r}")
        self.code_rate = float(code_rate)
        self.m = int(bits_per_symbol)
        self.k = int(k_ldpc)
        self.n = int(math.ceil(self.k / (self.code_rate * self.m))) * self.m
        self.num_iter = int(num_iter)
        self.demapping = demapping
        self.encoder = LDPC5GEncoder(self.k, self.n, num_bits_per_symbol=self.m)
        self.decoder = LDPC5GDecoder(self.encoder, num_iter=self.num_iter, hard_out=True)
        self.mapper = Mapper("qam", self.m)
        self.demapper = Demapper(demapping, "qam", self.m)

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def rate(self) -> float:
        """Effective code rate k / n."""
        return self.k / self.n

    @property
    def symbols_per_codeword(self) -> int:
        return self.n // self.m

    def num_codewords(self, n_bits: int) -> int:
        """Codewords needed for ``n_bits`` information bits (last block zero-padded)."""
        return max(1, math.ceil(n_bits / self.k))

    def num_symbols(self, n_bits: int) -> int:
        """Channel uses (complex symbols) needed for ``n_bits`` information bits, padding included."""
        return self.num_codewords(n_bits) * self.symbols_per_codeword

    def max_info_bits(self, n_symbols: int) -> int:
        """Largest whole-codeword payload that fits in ``n_symbols`` channel uses."""
        return (int(n_symbols) // self.symbols_per_codeword) * self.k

    def describe(self) -> dict:
        return {"code_rate": rate_label(self.code_rate), "effective_rate": self.rate, "k_ldpc": self.k,
                "n_ldpc": self.n, "bits_per_symbol": self.m,
                "modulation": MODULATION_NAMES.get(self.m, f"{2**self.m}-QAM"),
                "demapping": self.demapping, "bp_iterations": self.num_iter}

    # -- codeword-level blocks -----------------------------------------------------------------
    def to_blocks(self, bits: torch.Tensor) -> torch.Tensor:
        """``(n_bits,)`` {0,1} -> ``(n_cw, k)`` float32, zero-padded."""
        bits = bits.reshape(-1).float()
        n_cw = self.num_codewords(bits.numel())
        out = torch.zeros(n_cw * self.k)
        out[:bits.numel()] = bits
        return out.reshape(n_cw, self.k)

    def modulate_blocks(self, u: torch.Tensor) -> torch.Tensor:
        """``(n_cw, k)`` information bits -> ``(n_cw, n/m)`` complex64 QAM symbols."""
        return self.mapper(self.encoder(u.float()))

    def demodulate_blocks(self, s_hat: torch.Tensor, no_eff: torch.Tensor) -> torch.Tensor:
        """Equalised symbols and per-symbol noise variances ``(n_cw, n/m)`` -> ``(n_cw, k)`` bits."""
        llr = self.demapper(s_hat.to(torch.complex64), no_eff.float())
        return self.decoder(llr)

    # -- frames --------------------------------------------------------------------------------
    def encode_bits(self, bits: torch.Tensor) -> torch.Tensor:
        """``(n_bits,)`` {0,1} -> ``(num_symbols(n_bits),)`` complex64, codewords in order."""
        return self.modulate_blocks(self.to_blocks(bits)).reshape(-1)

    def decode_bits(self, y: torch.Tensor, h: torch.Tensor, n0: float, n_bits: int) -> torch.Tensor:
        """Received ``y = h x + n`` (perfect CSI ``h``) -> ``(n_bits,)`` hard bits (float 0/1)."""
        s_hat, no_eff = equalize_perfect_csi(y, h, n0)
        spc = self.symbols_per_codeword
        u_hat = self.demodulate_blocks(s_hat.reshape(-1, spc), no_eff.reshape(-1, spc))
        return u_hat.reshape(-1)[:n_bits]


def equalize_perfect_csi(y: torch.Tensor, h: torch.Tensor, n0: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-forcing with perfect CSI (:func:`diffcomm.channels.equalize_zf`): ``s = y / h`` and the
    effective noise variance ``N0 / |h|^2`` per symbol.

    For one antenna this is an invertible scaling, so the demapper's LLRs on (s, N0/``|h|^2``) equal
    those on (y, h, N0): ``|s - c|^2 / (N0/|h|^2) = |y - h c|^2 / N0``.

    >>> s, v = equalize_perfect_csi(torch.tensor([2 + 0j]), torch.tensor([2 + 0j]), 0.1)
    >>> complex(s[0]), round(float(v[0]), 6)
    ((1+0j), 0.025)
    """
    from diffcomm.channels import equalize_zf

    return equalize_zf(y, h, float(n0))
