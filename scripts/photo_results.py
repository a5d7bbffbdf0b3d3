"""Colour photos end to end: DeepJSCC, HiFi-DiffCom and the digital envelope on held-out photos.

The held-out photos are the test split of :mod:`diffcomm.data.natural` (coffee 400×600, flower
427×640, grace_hopper 600×512), never seen by the colour models, which were trained on 32×32
patches of the other photos. Each photo is sent whole:

* ``deepjscc`` / ``hifi``: :func:`diffcomm.tiling.transmit_tiled` with the shipped colour DeepJSCC
  for the channel and CBR (``natural-deepjscc-{awgn,rayleigh}-cbr{16,48}``) on 32×32 tiles
  overlapping by ``--overlap`` pixels (blended), decoded by the DeepJSCC decoder or by HiFi-DiffCom
  with the shipped colour prior (``natural-prior``); under Rayleigh block fading every tile is its
  own coherence block with perfect CSI.
* ``digital``: :func:`diffcomm.transmit.digital.digital_envelope` — the best (codec, quality, 5G LDPC
  rate, QAM order) for the whole photo (one codec stream; JPEG, WebP, JPEG 2000, AVIF, HEVC intra)
  with **the same channel uses as the tiled link** (overlap and padding included) and, under
  Rayleigh, the same coherence length (one gain per tile-sized block of symbols), evaluated on fresh
  channel draws.

Metrics on the whole photo: PSNR, SSIM and MS-SSIM (pytorch-msssim, photos ≥ 160 px). Records go to
``OUT/photos.jsonl``, one per (photo, receiver, CBR, channel, SNR), appended as they finish, so a
killed run resumes where it stopped; every reconstruction is kept in ``OUT/images/`` (float16, not committed:
the grid is). ``--table`` writes ``OUT/table.md`` (means over photos) and
``--grid`` an image grid of 160×160 centre crops (``OUT/grid_<channel>_<cbr>_<snr>dB.png``).

Usage:
    python scripts/photo_results.py --out results/photos --snr 0 5 10 15 20 --hifi-snr 0 10 20
    python scripts/photo_results.py --out results/photos --table --grid --grid-snr 10
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from diffcomm.channels import make_channel, parse_cbr
from diffcomm.data.natural import NATURAL_TEST_PHOTOS, load_photo
from diffcomm.metrics.fidelity import fidelity
from diffcomm.tiling import transmit_tiled

RECEIVERS = ("deepjscc", "hifi", "digital")


def photo_tensor(name: str, crop: int = 0) -> torch.Tensor:
    """A photo as float ``(1, 3, H, W)`` in [0, 1]; ``crop > 0``: its ``crop × crop`` centre."""
    x = torch.from_numpy(load_photo(name).copy()).permute(2, 0, 1)[None].float().div_(255.0)
    if crop:
        h, w = x.shape[2:]
        if crop > min(h, w):
            raise SystemExit(f"--crop {crop} exceeds photo {name} ({h}x{w})")
        top, left = (h - crop) // 2, (w - crop) // 2
        x = x[:, :, top:top + crop, left:left + crop]
    return x


def point_key(photo: str, receiver: str, cbr: str, channel: str, snr: float) -> str:
    return f"{photo}|{receiver}|{cbr}|{channel}|{snr:g}"


def _fname(key: str) -> str:
    return key.replace("|", "_").replace("/", "-")


def _seed(key: str) -> int:
    import zlib

    return zlib.crc32(key.encode())


def tiled_point(x: torch.Tensor, receiver: str, cbr: str, channel: str, snr: float, overlap: int, steps: int,
                seed: int) -> tuple[torch.Tensor, dict]:
    options = {"steps": steps} if receiver == "hifi" else {}
    t0 = time.perf_counter()
    res = transmit_tiled(x, "deepjscc", receiver, cbr, channel, snr, overlap=overlap, seed=seed,
                         generator=torch.Generator().manual_seed(seed), tile_batch=128, **options)
    info = {"effective_cbr": res.effective_cbr, "tile_cbr": res.tile_cbr, "tiles": res.tiles_per_image,
            "channel_uses": res.channel_uses, "k_tile": res.k, "nfe_per_tile": res.nfe,
            "encoder": getattr(res.link.encoder, "name", "deepjscc"), "options": options,
            "seconds": time.perf_counter() - t0}
    return res.x_hat.clamp(0, 1), info


def tile_budget(x: torch.Tensor, cbr: str, overlap: int) -> tuple[float, int]:
    """The tiled link's effective CBR and data symbols per tile, without sending anything."""
    from diffcomm.tiling import native_shape, tile_layout

    c, th, tw = native_shape("deepjscc", "deepjscc", "awgn", cbr, channels=x.shape[1])
    layout = tile_layout(x.shape[2], x.shape[3], (th, tw), overlap)
    k = round(parse_cbr(cbr) * c * th * tw)
    tiles = layout.rows * layout.cols * (x.shape[1] // c)
    return tiles * k / x[0].numel(), k


def digital_point(x: torch.Tensor, cbr: str, channel: str, snr: float, overlap: int, seed: int,
                  trials: int, table) -> tuple[torch.Tensor | None, dict]:
    from diffcomm.transmit.digital import best_config

    eff_cbr, k_tile = tile_budget(x, cbr, overlap)
    ch = make_channel("awgn") if channel == "awgn" else make_channel(channel, block=True, coherence=k_tile)
    t0 = time.perf_counter()
    g_search = torch.Generator().manual_seed(seed)
    sel = best_config(x, eff_cbr, snr, ch, trials=trials, generator=g_search, packing="per-image", table=table)
    info = {"effective_cbr": eff_cbr, "coherence": k_tile if channel != "awgn" else None,
            "choice": sel.describe()}
    if sel.system is None:
        info.update({"sent": False, "seconds": time.perf_counter() - t0})
        return None, info
    g_eval = torch.Generator().manual_seed(seed + 1)
    outs, success = [], []
    for _ in range(trials):
        x_hat, tx = sel.system.transmit(x, ch, snr, generator=g_eval)
        outs.append(x_hat.clamp(0, 1))
        success.append(float(tx["success"].float().mean()))
    info.update({"sent": True, "success_rate": sum(success) / len(success), "trials": trials,
                 "channel_uses": int(tx["channel_uses"]), "seconds": time.perf_counter() - t0})
    return torch.stack(outs), info


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "photos.jsonl"
    done = set()
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                done.add(json.loads(line)["key"])
            except (json.JSONDecodeError, KeyError):
                continue  # a line cut by a kill
    (out / "images").mkdir(exist_ok=True)
    for photo in args.photos:
        x = photo_tensor(photo, args.crop)
        table = None  # the digital codec table (every codec and quality on this photo), built once
        for receiver in args.receivers:
            snrs = args.hifi_snr if receiver == "hifi" and args.hifi_snr else args.snr
            for cbr in args.cbr:
                for channel in args.channel:
                    for snr in snrs:
                        key = point_key(photo, receiver, cbr, channel, snr)
                        if key in done:
                            continue
                        seed = _seed(key)
                        if receiver == "digital":
                            if table is None:
                                from diffcomm.transmit.digital import build_codec_table

                                table = build_codec_table(x, None, None, "per-image", 1, 0.5)
                            x_hat, info = digital_point(x, cbr, channel, snr, args.overlap, seed, args.trials,
                                                        table)
                        else:
                            x_hat, info = tiled_point(x, receiver, cbr, channel, snr, args.overlap, args.steps,
                                                      seed)
                        if x_hat is None:  # nothing fits the budget: the receiver shows mid-grey
                            x_hat = torch.full_like(x, 0.5)[None]
                        recs = x_hat if x_hat.ndim == 5 else x_hat[None]
                        scores = [fidelity(r, x) for r in recs]
                        metrics = {m: sum(float(s[m].mean()) for s in scores) / len(scores) for m in scores[0]}
                        record = {"key": key, "photo": photo, "size": list(x.shape[1:]), "crop": args.crop,
                                  "receiver": receiver, "cbr": cbr, "channel": channel, "snr_db": float(snr),
                                  **metrics, **info}
                        torch.save(recs[0].to(torch.float16), out / "images" / f"{_fname(key)}.pt")
                        with path.open("a") as f:
                            f.write(json.dumps(record) + "\n")
                        print(f"{key}: PSNR {metrics['psnr']:.2f} SSIM {metrics['ssim']:.3f} "
                              f"MS-SSIM {metrics['ms_ssim']:.3f} ({info['seconds']:.1f} s)", flush=True)


def read_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "photos.jsonl").read_text().splitlines() if line.strip()]


def table(out: Path) -> str:
    """Markdown: PSNR / SSIM / MS-SSIM means over photos, one row per receiver, CBR and channel."""
    recs = read_records(out)
    snrs = sorted({r["snr_db"] for r in recs})
    lines = ["| receiver | CBR | channel | " + " | ".join(f"{s:g} dB" for s in snrs) + " |",
             "|---|---|---|" + "---|" * len(snrs)]
    groups = sorted({(r["receiver"], r["cbr"], r["channel"]) for r in recs},
                    key=lambda g: (RECEIVERS.index(g[0]) if g[0] in RECEIVERS else 9, g[1], g[2]))
    for rcv, cbr, ch in groups:
        cells = []
        for s in snrs:
            pts = [r for r in recs if (r["receiver"], r["cbr"], r["channel"], r["snr_db"]) == (rcv, cbr, ch, s)]
            if not pts:
                cells.append("—")
                continue
            mean = {m: sum(p[m] for p in pts) / len(pts) for m in ("psnr", "ssim", "ms_ssim")}
            cells.append(f"{mean['psnr']:.2f} / {mean['ssim']:.3f} / {mean['ms_ssim']:.3f}"
                         + ("" if len(pts) == len({r['photo'] for r in recs}) else f" ({len(pts)} photos)"))
        lines.append(f"| {rcv} | {cbr} | {ch} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    return text


def grid(out: Path, channel: str, cbr: str, snr: float, crop: int = 160) -> Path:
    """Centre crops: rows = photos, columns = original and each receiver at one (channel, CBR, SNR)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = {r["key"]: r for r in read_records(out)}
    photos = sorted({r["photo"] for r in recs.values()})
    cols = ["original", *RECEIVERS]
    fig, axes = plt.subplots(len(photos), len(cols), figsize=(2.2 * len(cols), 2.3 * len(photos)), squeeze=False)
    for i, photo in enumerate(photos):
        x = photo_tensor(photo, next(r.get("crop", 0) for r in recs.values() if r["photo"] == photo))[0]
        h, w = x.shape[1:]
        top, left = (h - crop) // 2, (w - crop) // 2
        for j, col in enumerate(cols):
            ax = axes[i][j]
            ax.axis("off")
            if col == "original":
                img, title = x, photo
            else:
                key = point_key(photo, col, cbr, channel, snr)
                f = out / "images" / f"{_fname(key)}.pt"
                if key not in recs or not f.exists():
                    continue
                img = torch.load(f).float().reshape(x.shape)
                title = f"{col} {recs[key]['psnr']:.2f} dB"
            ax.imshow(img[:, top:top + crop, left:left + crop].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_title(title, fontsize=8)
    fig.suptitle(f"{channel}, CBR {cbr} per tile, {snr:g} dB ({crop}×{crop} centre crops; PSNR of the whole image)",
                 fontsize=9)
    fig.tight_layout()
    path = out / f"grid_{channel}_{cbr.replace('/', '-')}_{snr:g}dB.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/photos")
    p.add_argument("--photos", nargs="+", default=list(NATURAL_TEST_PHOTOS))
    p.add_argument("--receivers", nargs="+", default=list(RECEIVERS), choices=RECEIVERS)
    p.add_argument("--cbr", nargs="+", default=["1/16", "1/48"])
    p.add_argument("--channel", nargs="+", default=["awgn", "rayleigh"])
    p.add_argument("--snr", nargs="+", type=float, default=[0.0, 5.0, 10.0, 15.0, 20.0])
    p.add_argument("--hifi-snr", nargs="+", type=float, default=None, help="SNRs for hifi (default: --snr)")
    p.add_argument("--steps", type=int, default=10, help="HiFi steps")
    p.add_argument("--overlap", type=int, default=2)
    p.add_argument("--crop", type=int, default=256, help="centre crop of each photo in pixels (0: whole photo)")
    p.add_argument("--trials", type=int, default=2, help="digital: channel draws for the search and the eval")
    p.add_argument("--table", action="store_true", help="only write OUT/table.md from the records")
    p.add_argument("--grid", action="store_true", help="only write the image grid(s)")
    p.add_argument("--grid-snr", type=float, default=10.0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.table or args.grid:
        if args.table:
            print(table(Path(args.out)))
        if args.grid:
            for ch in args.channel:
                for cbr in args.cbr:
                    print("wrote", grid(Path(args.out), ch, cbr, args.grid_snr))
        return
    if any(math.isnan(s) for s in args.snr):
        raise SystemExit("--snr must be numbers")
    run(args)


if __name__ == "__main__":
    main()
