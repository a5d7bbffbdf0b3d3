"""The digital separation baseline: image codec + CRC + 5G LDPC + QAM, and its configuration search.

Transmitter, per coded unit (a mosaic of up to ``images_per_unit`` images, or one image; see
:mod:`~diffcomm.transmit.digital.codecs`)::

    frame = [payload length, 4 bytes big-endian] [codec bitstream] [CRC-32 of the two, 4 bytes]

(64 bits of framing per unit, counted in every rate), then bits -> 5G LDPC -> QAM
(:class:`~diffcomm.transmit.digital.phy.LdpcQam`). The receiver decodes the bits, checks the CRC
(zlib CRC-32, IEEE 802.3 polynomial) and hands the payload to the image decoder. If the CRC
fails, the unit's images are the *fallback* image (default mid-grey 0.5, or a given image such as
the dataset mean) — or, with ``on_crc_fail="decode"``, the corrupted payload is decoded anyway
(decoder exceptions still give the fallback).

Symbol budget: with ``cbr`` set, every image owns ``k = round(cbr · C · H · W)`` channel uses and
a unit owns the sum over its images. A unit whose frame does not fit is not sent (fallback,
``fits=False`` in the info). The channel sees exactly those budget slots: gains are drawn as
``channel.sample_gains(n_images_in_unit, k)`` (one coherence block per image slot for block
fading, as for the analog systems) and the frame occupies the first slots in order, so an LDPC
codeword can span several coherence blocks. Without ``cbr``, a unit's frame is one block of
``sample_gains(1, n_symbols)``.

Configuration search (:func:`best_config`): for each PHY mode (code rate × modulation), a few
Monte-Carlo frames of the largest unit's full budget give the probability that the first ``n``
codewords all decode, P(n); every (codec, quality) that fits is then scored by its expected
PSNR ``P(n_cw)·PSNR_clean + (1 − P(n_cw))·PSNR_fallback`` per image. The envelope
(:func:`digital_envelope`) runs the search per SNR and evaluates the chosen system on fresh
channel draws. Expect the cliff effect: a configuration is perfect above its threshold SNR and
falls to the fallback just below it.

Example:
    >>> sys_ = DigitalSystem("jpeg", 50, code_rate=1 / 2, bits_per_symbol=4)
    >>> x = torch.rand(4, 1, 28, 28)
    >>> x_hat, info = sys_.transmit(x, "awgn", snr_db=30.0, generator=torch.Generator().manual_seed(0))
    >>> bool(info["success"].all()), info["channel_uses"] > 0
    (True, True)

References: Shannon's separation theorem (Shannon 1948) and its finite-length failure, the
"cliff effect", as the DeepJSCC baseline (Bourtsoulatze, Kurka & Gündüz, IEEE TCCN 2019);
3GPP TS 38.212 (LDPC); ISO 3309 / IEEE 802.3 (CRC-32).
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch

from diffcomm.errors import DiffcommError
from diffcomm.transmit.digital.codecs import (
    PACKING_DESCRIPTIONS,
    check_codec,
    check_quality,
    decode_batch,
    encode_batch,
)
from diffcomm.transmit.digital.phy import BITS_PER_SYMBOL, CODE_RATES, LdpcQam, equalize_perfect_csi, rate_label
from diffcomm.transmit.digital.table import (
    CodecTable,
    build_codec_table,
    check_images,
    describe_fallback,
    psnr_per_image,
    ssim_per_image,
)

FRAME_OVERHEAD_BYTES = 8  # 4-byte length + 4-byte CRC-32 per unit

_PHY_CACHE: dict[tuple, LdpcQam] = {}


def get_phy(code_rate: float, bits_per_symbol: int, k_ldpc: int = 1024, num_iter: int = 20,
            demapping: str = "app") -> LdpcQam:
    """Cached :class:`LdpcQam` (building the 5G parity-check matrices takes a moment)."""
    key = (round(float(code_rate), 12), int(bits_per_symbol), int(k_ldpc), int(num_iter), demapping)
    if key not in _PHY_CACHE:
        _PHY_CACHE[key] = LdpcQam(code_rate, bits_per_symbol, k_ldpc, num_iter, demapping)
    return _PHY_CACHE[key]


# ---------------------------------------------------------------------------------------------
# framing


def build_frame(payload: bytes) -> bytes:
    """``[len:4][payload][crc32(len + payload):4]``.

    >>> parse_frame(build_frame(b"abc"))
    (b'abc', True)
    """
    head = len(payload).to_bytes(4, "big") + payload
    return head + zlib.crc32(head).to_bytes(4, "big")


def parse_frame(frame: bytes) -> tuple[bytes, bool]:
    """Split a received frame (possibly followed by padding) into (payload, crc_ok).

    With a corrupted length field the payload is cut to what was received.
    """
    if len(frame) < FRAME_OVERHEAD_BYTES:
        return b"", False
    n = int.from_bytes(frame[:4], "big")
    n_avail = min(n, len(frame) - FRAME_OVERHEAD_BYTES)
    payload = frame[4:4 + n_avail]
    if n != n_avail:
        return payload, False
    crc = int.from_bytes(frame[4 + n:8 + n], "big")
    return payload, zlib.crc32(frame[:4 + n]) == crc


def bytes_to_bits(data: bytes) -> torch.Tensor:
    """MSB-first bits as float32 0/1."""
    return torch.from_numpy(np.unpackbits(np.frombuffer(data, dtype=np.uint8)).astype(np.float32))


def bits_to_bytes(bits: torch.Tensor) -> bytes:
    """Inverse of :func:`bytes_to_bits` (length cut to whole bytes)."""
    arr = (bits.reshape(-1) > 0.5).to(torch.uint8).numpy()
    return np.packbits(arr[: arr.size // 8 * 8]).tobytes()


def frame_bits(payload_bytes: int) -> int:
    return 8 * (payload_bytes + FRAME_OVERHEAD_BYTES)


# ---------------------------------------------------------------------------------------------
# channel helpers (diffcomm.channels objects)


def resolve_channel(channel):
    """A channel object (``.sample_gains``) or a name for :func:`diffcomm.channels.make_channel`."""
    if isinstance(channel, str):
        from diffcomm.channels import make_channel

        return make_channel(channel)
    if not hasattr(channel, "sample_gains"):
        raise DiffcommError(f"channel must be a diffcomm channel or its name, got {type(channel).__name__}")
    return channel


def channel_name(channel) -> str:
    return str(getattr(channel, "name", type(channel).__name__))


def _n0(snr_db: float) -> float:
    from diffcomm.channels import snr_db_to_n0

    return float(snr_db_to_n0(float(snr_db)))


def unit_gains(channel, n_images: int, k_image: int | None, n_symbols: int,
               generator: torch.Generator | None) -> torch.Tensor:
    """Channel gains for a unit's frame of ``n_symbols`` (layout: see module doc)."""
    if k_image is None:
        return channel.sample_gains(1, n_symbols, generator).reshape(-1)
    return channel.sample_gains(n_images, k_image, generator).reshape(-1)[:n_symbols]


def pass_channel(x: torch.Tensor, h: torch.Tensor, n0: float, generator: torch.Generator | None) -> torch.Tensor:
    """``y = h x + n``, n ~ CN(0, N0) via :func:`diffcomm.channels.awgn`."""
    from diffcomm.channels import awgn

    return awgn((h * x).reshape(1, -1), n0, generator=generator).reshape(-1)


def symbols_per_image(cbr: float | None, shape: tuple[int, int, int]) -> int | None:
    if cbr is None:
        return None
    if not (isinstance(cbr, (int, float)) and 0 < cbr <= 1):
        raise DiffcommError(f"cbr must be in (0, 1], got {cbr!r}; e.g. 1/16")
    c, h, w = shape
    return max(1, round(cbr * c * h * w))


# ---------------------------------------------------------------------------------------------
# the system


@dataclass
class DigitalSystem:
    """Codec + CRC + 5G LDPC + QAM over a diffcomm channel (see module doc).

    Args:
        codec, quality: image codec and its quality (:mod:`~diffcomm.transmit.digital.codecs`).
        code_rate, bits_per_symbol: LDPC rate and QAM order (2, 4, 6).
        cbr: channel uses per real source dimension; ``None`` = no budget.
        packing: ``"mosaic"`` (default) or ``"per-image"``.
        images_per_unit: images per mosaic.
        k_ldpc, num_iter, demapping: LDPC information block length, BP iterations, demapper.
        fallback: grey level in [0, 1] or a ``(C, H, W)`` image used for lost images.
        on_crc_fail: ``"fallback"`` (default) or ``"decode"`` (decode corrupted payloads anyway).
    """

    codec: str
    quality: float
    code_rate: float
    bits_per_symbol: int
    cbr: float | None = None
    packing: str = "mosaic"
    images_per_unit: int = 256
    k_ldpc: int = 1024
    num_iter: int = 20
    demapping: str = "app"
    fallback: float | torch.Tensor = 0.5
    on_crc_fail: str = "fallback"
    phy: LdpcQam = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_codec(self.codec)
        check_quality(self.codec, self.quality)
        if self.packing not in PACKING_DESCRIPTIONS:
            raise DiffcommError(f"unknown packing {self.packing!r}; use 'mosaic' or 'per-image'")
        if self.on_crc_fail not in ("fallback", "decode"):
            raise DiffcommError(f"on_crc_fail must be 'fallback' or 'decode', got {self.on_crc_fail!r}")
        self.phy = get_phy(self.code_rate, self.bits_per_symbol, self.k_ldpc, self.num_iter, self.demapping)

    def describe(self) -> dict:
        return {"codec": self.codec, "quality": self.quality, **self.phy.describe(), "cbr": self.cbr,
                "packing": PACKING_DESCRIPTIONS[self.packing], "images_per_unit": self.images_per_unit,
                "fallback": describe_fallback(self.fallback), "on_crc_fail": self.on_crc_fail,
                "frame_overhead_bits": 8 * FRAME_OVERHEAD_BYTES}

    def transmit(self, x: torch.Tensor, channel, snr_db: float,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Send a batch ``x`` (pixels in [0, 1], ``(B, C, H, W)``); return ``(x_hat, info)``.

        ``info``: ``success`` (bool ``(B,)``: image decoded from a CRC-valid frame), ``channel_uses``
        (symbols sent, padding included), ``budget_symbols``, ``cbr_used``, ``payload_bytes``
        (codec bytes, all units), ``info_bits`` (frames incl. framing), ``coded_bits``, ``units``
        (per-unit records), the configuration, ``bit_errors`` (simulation diagnostic).
        """
        check_images(x)
        channel = resolve_channel(channel)
        n0 = _n0(snr_db)
        b, c, h, w = x.shape
        k_img = symbols_per_image(self.cbr, (c, h, w))
        units = encode_batch(x, self.codec, self.quality, self.packing, self.images_per_unit)
        phy = self.phy
        spc = phy.symbols_per_codeword

        records, sent, y_all, h_all, tx_bits = [], [], [], [], []
        for u in units:
            frame = build_frame(u.data)
            bits = bytes_to_bits(frame)
            n_sym = phy.num_symbols(bits.numel())
            budget = None if k_img is None else len(u.indices) * k_img
            fits = budget is None or n_sym <= budget
            rec = {"n_images": len(u.indices), "payload_bytes": u.n_bytes, "frame_bits": int(bits.numel()),
                   "n_codewords": phy.num_codewords(bits.numel()), "symbols_needed": n_sym,
                   "budget_symbols": budget, "fits": fits, "channel_uses": n_sym if fits else 0,
                   "crc_ok": False, "bit_errors": None}
            records.append(rec)
            if not fits:
                continue
            xs = phy.encode_bits(bits)
            gains = unit_gains(channel, len(u.indices), k_img, n_sym, generator)
            y_all.append(pass_channel(xs, gains, n0, generator))
            h_all.append(gains)
            tx_bits.append(bits)
            sent.append(len(records) - 1)

        payloads: list[bytes | None] = [None] * len(units)
        if sent:
            y = torch.cat(y_all).reshape(-1, spc)
            s_hat, no_eff = equalize_perfect_csi(y, torch.cat(h_all).reshape(-1, spc), n0)
            u_hat = phy.demodulate_blocks(s_hat, no_eff)
            start = 0
            for i, bits in zip(sent, tx_bits):
                n_cw = records[i]["n_codewords"]
                rx_bits = u_hat[start:start + n_cw].reshape(-1)
                start += n_cw
                records[i]["bit_errors"] = int((rx_bits[:bits.numel()] != bits).sum())
                payload, crc_ok = parse_frame(bits_to_bytes(rx_bits))
                records[i]["crc_ok"] = crc_ok
                if crc_ok or self.on_crc_fail == "decode":
                    payloads[i] = payload

        x_hat, decoded = decode_batch(units, x.shape, self.fallback, payloads)
        crc_ok_img = torch.zeros(b, dtype=torch.bool)
        for u, rec in zip(units, records):
            crc_ok_img[list(u.indices)] = rec["crc_ok"]
        channel_uses = sum(r["channel_uses"] for r in records)
        info = {
            **self.describe(),
            "channel": channel_name(channel), "snr_db": float(snr_db), "n0": n0,
            "success": decoded & crc_ok_img,
            "channel_uses": channel_uses,
            "budget_symbols": None if k_img is None else b * k_img,
            "symbols_per_image_budget": k_img,
            "cbr_used": channel_uses / (b * c * h * w),
            "payload_bytes": sum(r["payload_bytes"] for r in records),
            "info_bits": sum(r["frame_bits"] for r in records if r["fits"]),
            "coded_bits": sum(r["n_codewords"] * phy.n for r in records if r["fits"]),
            "bit_errors": sum(r["bit_errors"] or 0 for r in records),
            "units": records,
        }
        return x_hat, info


# ---------------------------------------------------------------------------------------------
# configuration search


def codeword_success(phy: LdpcQam, channel, n0: float, n_images: int, k_image: int, trials: int,
                     generator: torch.Generator | None, early_stop: int = 2) -> torch.Tensor:
    """Monte-Carlo: ``(trials, n_cw)`` bool, codeword j of a full-budget frame decoded without error.

    The frame fills the budget of ``n_images`` images (``n_cw = n_images·k_image // (n/m)``) with
    random bits, laid out on the channel like :meth:`DigitalSystem.transmit` does. If no codeword
    decodes in the first ``early_stop`` trials, the remaining trials are not run (all-false rows).
    """
    spc = phy.symbols_per_codeword
    n_cw = (n_images * k_image) // spc
    if n_cw == 0:
        return torch.zeros(trials, 0, dtype=torch.bool)
    rows = []
    for t in range(trials):
        u = torch.randint(0, 2, (n_cw, phy.k), generator=generator).float()
        xs = phy.modulate_blocks(u).reshape(-1)
        gains = unit_gains(channel, n_images, k_image, n_cw * spc, generator)
        y = pass_channel(xs, gains, n0, generator)
        s_hat, no_eff = equalize_perfect_csi(y.reshape(-1, spc), gains.reshape(-1, spc), n0)
        rows.append((phy.demodulate_blocks(s_hat, no_eff) == u).all(dim=1))
        if t + 1 == early_stop and not torch.stack(rows).any():
            rows += [torch.zeros(n_cw, dtype=torch.bool)] * (trials - t - 1)
            break
    return torch.stack(rows)


@dataclass
class Selection:
    """Result of :func:`best_config`. ``system`` is ``None`` when transmitting cannot beat the fallback."""

    system: DigitalSystem | None
    expected_psnr: float
    expected_ssim: float
    clean_psnr: float
    success_prob: float
    fallback_psnr: float
    note: str
    candidates: list[dict]

    def describe(self) -> dict:
        return {"system": None if self.system is None else self.system.describe(),
                "expected_psnr": self.expected_psnr, "expected_ssim": self.expected_ssim,
                "clean_psnr": self.clean_psnr, "success_prob": self.success_prob,
                "fallback_psnr": self.fallback_psnr, "note": self.note, "candidates": self.candidates}


def best_config(images: torch.Tensor, cbr: float, snr_db: float, channel, *,
                codecs: list[str] | None = None, qualities: dict[str, tuple[float, ...]] | None = None,
                code_rates: tuple[float, ...] = CODE_RATES, bits_per_symbol: tuple[int, ...] = BITS_PER_SYMBOL,
                trials: int = 4, generator: torch.Generator | None = None, packing: str = "mosaic",
                images_per_unit: int = 256, fallback: float | torch.Tensor = 0.5, k_ldpc: int = 1024,
                num_iter: int = 20, demapping: str = "app", table: CodecTable | None = None) -> Selection:
    """Best (codec, quality, code rate, modulation) for ``images`` at ``cbr`` and ``snr_db``.

    Criterion: expected mean PSNR with failed/unsent units counted as fallback images (module
    doc). Missing codecs are skipped and listed in the note when ``codecs`` is ``None``. PHY modes
    are tried in order of their best clean PSNR and skipped once that cannot beat the best
    expected PSNR found (exact pruning: expected ≤ clean).

    Example:
        >>> sel = best_config(torch.rand(8, 1, 28, 28), 1 / 16, 20.0, "awgn", codecs=["webp"], trials=1)
        >>> sel.system is None  # 8 images x 49 symbols cannot carry a WebP mosaic of noise
        True
    """
    if table is None:
        table = build_codec_table(images, codecs, qualities, packing, images_per_unit, fallback)
    c, h, w = table.shape
    k_img = symbols_per_image(cbr, (c, h, w))
    if k_img is None:
        raise DiffcommError("best_config needs a cbr (symbol budget); e.g. cbr=1/16")
    channel = resolve_channel(channel)
    n0 = _n0(snr_db)
    sizes = table.unit_sizes
    budgets = [s * k_img for s in sizes]
    unit_of = table.unit_of_image
    fb_psnr = float(table.fallback_psnr.mean())
    skipped = f"; skipped codecs (unavailable): {table.skipped}" if table.skipped else ""

    # Clean PSNR of every (mode, entry) and how many codewords each unit needs.
    modes = []
    for r in code_rates:
        for m in bits_per_symbol:
            phy = get_phy(r, m, k_ldpc, num_iter, demapping)
            spc = phy.symbols_per_codeword
            cand = []
            for e in table.entries:
                n_cw = torch.tensor([phy.num_codewords(frame_bits(nb)) for nb in e.n_bytes])
                fits = n_cw * spc <= torch.tensor(budgets)
                if not fits.any():
                    continue
                clean = torch.where(fits[unit_of], e.psnr, table.fallback_psnr).mean().item()
                cand.append((e, n_cw, fits, clean))
            if cand:
                modes.append((max(cd[3] for cd in cand), r, m, phy, cand))
    if not modes:
        smallest = min(frame_bits(min(e.n_bytes)) for e in table.entries)
        best_phy = max((get_phy(r, m, k_ldpc, num_iter, demapping) for r in code_rates for m in bits_per_symbol),
                       key=lambda p: p.max_info_bits(max(budgets)))
        return Selection(None, fb_psnr, float(table.fallback_ssim.mean()), fb_psnr, 0.0, fb_psnr,
                         f"nothing fits: smallest frame {smallest} bits > largest capacity "
                         f"{best_phy.max_info_bits(max(budgets))} info bits in {max(budgets)} symbols "
                         f"({table.describe()['packing']}); sending nothing, fallback for all{skipped}", [])

    modes.sort(key=lambda t: -t[0])
    best = None  # (expected_psnr, expected_ssim, clean, p, entry, r, m)
    records = []
    big = max(sizes)
    for top_clean, r, m, phy, cand in modes:
        rec = {"code_rate": rate_label(r), "bits_per_symbol": m, "best_clean_psnr": top_clean}
        if best is not None and top_clean <= best[0]:
            records.append({**rec, "status": "pruned (clean PSNR cannot beat the best expected PSNR)"})
            continue
        ok = codeword_success(phy, channel, n0, big, k_img, trials, generator)
        n_max = ok.shape[1]
        prefix_ok = torch.cumprod(ok.to(torch.int64), dim=1).float().mean(0) if n_max else torch.zeros(0)
        mode_best = None
        for e, n_cw, fits, clean in cand:
            p_unit = torch.tensor([float(prefix_ok[n - 1]) if f and n <= n_max else 0.0
                                   for n, f in zip(n_cw.tolist(), fits.tolist())])
            p_img = p_unit[unit_of]
            exp_psnr = (p_img * e.psnr + (1 - p_img) * table.fallback_psnr).mean().item()
            exp_ssim = (p_img * e.ssim + (1 - p_img) * table.fallback_ssim).mean().item()
            if mode_best is None or exp_psnr > mode_best[0]:
                mode_best = (exp_psnr, exp_ssim, clean, p_img.mean().item(), e)
        records.append({**rec, "status": "simulated", "trials": trials, "codec": mode_best[4].codec,
                        "quality": mode_best[4].quality, "expected_psnr": mode_best[0],
                        "clean_psnr": mode_best[2], "success_prob": mode_best[3],
                        "codeword_success_rate": ok.float().mean().item() if n_max else 0.0})
        if best is None or mode_best[0] > best[0]:
            best = (*mode_best, r, m)

    exp_psnr, exp_ssim, clean, p, e, r, m = best
    if exp_psnr <= fb_psnr + 1e-9:
        return Selection(None, fb_psnr, float(table.fallback_ssim.mean()), fb_psnr, 0.0, fb_psnr,
                         f"every configuration that fits failed in all {trials} trials at {snr_db} dB; "
                         f"sending nothing, fallback for all{skipped}", records)
    system = DigitalSystem(e.codec, e.quality, r, m, cbr=cbr, packing=table.packing,
                           images_per_unit=table.images_per_unit, k_ldpc=k_ldpc, num_iter=num_iter,
                           demapping=demapping, fallback=fallback)
    return Selection(system, exp_psnr, exp_ssim, clean, p, fb_psnr,
                     f"best of {len(records)} PHY modes by expected PSNR over {trials} MC frames{skipped}",
                     records)


def digital_envelope(images: torch.Tensor, cbr: float, snr_dbs: list[float], channel, *, trials: int = 4,
                     eval_trials: int = 4, seed: int = 0, table: CodecTable | None = None,
                     **search_kw) -> list[dict]:
    """Best practical digital PSNR/SSIM per SNR: :func:`best_config`, then evaluation of the
    chosen system on ``eval_trials`` fresh channel realisations (independent of the search draws).

    Returns one record per SNR with the chosen configuration, the search's expected PSNR and the
    evaluated mean PSNR/SSIM (mean over images and trials) with their standard errors over trials.
    """
    check_images(images)
    if table is None:
        table = build_codec_table(images, search_kw.get("codecs"), search_kw.get("qualities"),
                                  search_kw.get("packing", "mosaic"), search_kw.get("images_per_unit", 256),
                                  search_kw.get("fallback", 0.5))
    channel = resolve_channel(channel)
    out = []
    for i, snr in enumerate(snr_dbs):
        t0 = time.time()
        g_search = torch.Generator().manual_seed(seed * 1_000_003 + 2 * i)
        g_eval = torch.Generator().manual_seed(seed * 1_000_003 + 2 * i + 1)
        sel = best_config(images, cbr, snr, channel, trials=trials, generator=g_search, table=table, **search_kw)
        psnrs, ssims, succ = [], [], []
        if sel.system is None:
            psnrs = [float(table.fallback_psnr.mean())]
            ssims = [float(table.fallback_ssim.mean())]
            succ = [0.0]
            uses = 0
        else:
            for _ in range(eval_trials):
                x_hat, info = sel.system.transmit(images, channel, snr, generator=g_eval)
                psnrs.append(psnr_per_image(x_hat, images).mean().item())
                ssims.append(ssim_per_image(x_hat, images).mean().item())
                succ.append(info["success"].float().mean().item())
                uses = info["channel_uses"]
        n = len(psnrs)
        out.append({
            "snr_db": float(snr), "channel": channel_name(channel), "cbr": cbr,
            "psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "success_rate": float(np.mean(succ)),
            "psnr_se": float(np.std(psnrs, ddof=1) / math.sqrt(n)) if n > 1 else 0.0,
            "ssim_se": float(np.std(ssims, ddof=1) / math.sqrt(n)) if n > 1 else 0.0,
            "eval_trials": len(psnrs) if sel.system is not None else 0,
            "channel_uses_sent": uses, "search": sel.describe(), "wall_s": time.time() - t0,
        })
    return out
