"""Tiled transmission (diffcomm.tiling): exact reconstruction through an identity receiver at any size,
no seam error for an exactly invertible linear link, honest bandwidth, RGB through a 1-channel model."""

import math

import pytest
import torch

from diffcomm import zoo
from diffcomm.errors import DiffcommError
from diffcomm.link import Link
from diffcomm.receivers.base import RECEIVERS, ReceiverResult, register_receiver
from diffcomm.tiling import blend_tiles, blend_window, split_tiles, tile_layout, transmit_tiled

TILE = (1, 28, 28)


@pytest.fixture
def oracle(monkeypatch):
    """A test receiver that returns exactly the tiles the link was given (records them at transmit)."""
    sent = []
    original = Link.transmit

    def recording(self, x, generator=None, return_truth=False):
        sent.append(x.clone())
        return original(self, x, generator, return_truth)

    monkeypatch.setattr(Link, "transmit", recording)

    @register_receiver("test-tile-oracle", description="returns the transmitted tiles (test only)", link="any")
    def oracle_receiver(link, rx, prior=None, *, generator=None):
        x = sent.pop(0)
        assert x.shape[0] == rx.batch and tuple(x.shape[1:]) == link.shape
        return ReceiverResult(x, nfe=0, seconds=0.0)

    yield "test-tile-oracle"
    RECEIVERS.pop("test-tile-oracle")


@pytest.mark.parametrize("shape", [(1, 1, 28, 28), (2, 1, 57, 83), (1, 1, 1, 1), (1, 3, 5, 100), (1, 1, 84, 84),
                                   (1, 3, 29, 27)])
@pytest.mark.parametrize("overlap", [0, 2, 7])
def test_identity_receiver_reconstructs_any_size_exactly(oracle, shape, overlap):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    res = transmit_tiled(x, "downsample", oracle, "1/8", "awgn", 10.0, tile=TILE, overlap=overlap, tile_batch=5)
    torch.testing.assert_close(res.x_hat, x, rtol=0, atol=1e-6)
    lay = res.layout
    groups = shape[1]                                          # a 1-channel model codes each colour on its own
    assert res.tiles_per_image == groups * lay.rows * lay.cols
    assert res.decoder_calls == math.ceil(shape[0] * res.tiles_per_image / 5)
    assert res.channel_uses == res.tiles_per_image * res.k and res.k == 98
    assert res.effective_cbr == pytest.approx(res.channel_uses / math.prod(shape[1:]))
    assert res.effective_cbr >= res.tile_cbr - 1e-12           # overlap and padding are charged, never hidden


def test_layout_covers_with_fewest_tiles_and_centres_padding():
    lay = tile_layout(512, 512, 28, 2)
    assert (lay.rows, lay.cols) == (20, 20) and lay.padded == (522, 522) and lay.pad == (5, 5, 5, 5)
    lay = tile_layout(57, 83, 28, 4)
    assert (lay.rows, lay.cols) == (3, 4)
    assert lay.padded[0] >= 57 and lay.padded[0] - (lay.tile[0] - 4) < 57      # one row fewer would not cover
    assert tile_layout(1, 1, 28).pad == (13, 14, 13, 14)
    assert tile_layout(28, 28, 28, 5).count == 1 and tile_layout(28, 28, 28, 5).pad == (0, 0, 0, 0)
    with pytest.raises(DiffcommError, match="overlap"):
        tile_layout(64, 64, 28, 28)
    with pytest.raises(DiffcommError, match="positive"):
        tile_layout(0, 64, 28)


def test_blend_window_partition_of_unity_across_overlaps():
    """Where tiles overlap their windows sum to 1 (sin² + cos²), so equal tiles blend to themselves."""
    lay = tile_layout(80, 80, 28, 6)
    win = blend_window(lay.tile, lay.overlap, torch.float64)
    assert (win > 0).all() and float(win.max()) == 1.0
    norm = torch.zeros(lay.padded, dtype=torch.float64)
    for i, j in lay.origins():
        norm[i:i + 28, j:j + 28] += win
    inner = norm[6:-6, 6:-6]                                   # away from the outer ramps of the border tiles
    torch.testing.assert_close(inner, torch.ones_like(inner), rtol=0, atol=1e-12)
    x = torch.rand(2, 3, 80, 80, dtype=torch.float64)
    torch.testing.assert_close(blend_tiles(split_tiles(x, lay), lay, 2), x, rtol=0, atol=1e-12)


def test_seams_add_no_error_for_an_exactly_invertible_linear_link():
    """downsample at CBR 1/2 (2k = n: E is a scaled identity, exactly invertible) + pinv at 100 dB over
    AWGN: each tile comes back to float32 round-off, and blending overlapping tiles adds nothing at the
    seams (the blend is a convex combination of tile estimates that all equal the image there)."""
    x = torch.rand(1, 1, 80, 75, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    res = transmit_tiled(x, "downsample", "pinv", "1/2", "awgn", 100.0, tile=TILE, overlap=6)
    no_overlap = transmit_tiled(x, "downsample", "pinv", "1/2", "awgn", 100.0, tile=TILE, overlap=0)
    assert float((res.x_hat - x).abs().max()) < 1e-4
    assert float((no_overlap.x_hat - x).abs().max()) < 1e-4
    assert res.effective_cbr > no_overlap.effective_cbr        # the overlap costs bandwidth


def test_rgb_through_a_one_channel_model_and_channel_errors(oracle):
    x = torch.rand(1, 3, 40, 30, generator=torch.Generator().manual_seed(1))
    res = transmit_tiled(x, "downsample", oracle, "1/8", tile=TILE, overlap=2)
    lay = res.layout
    assert res.tiles_per_image == 3 * lay.count and res.x_hat.shape == x.shape
    torch.testing.assert_close(res.x_hat, x, rtol=0, atol=1e-6)
    together = transmit_tiled(x, "downsample", oracle, "1/8", tile=(3, 28, 28), overlap=2)
    assert together.tiles_per_image == lay.count and together.channel_uses == res.channel_uses
    with pytest.raises(DiffcommError, match="3-channel model cannot code 1-channel"):
        transmit_tiled(x[:, :1], "downsample", oracle, "1/8", tile=(3, 28, 28))


def test_linear_receiver_needs_a_tile_when_not_tied_to_a_size():
    with pytest.raises(DiffcommError, match="pass tile"):
        transmit_tiled(torch.rand(1, 1, 40, 40), "downsample", "pinv", "1/8")


def test_cli_tiles_images_larger_than_the_model(tmp_path, capsys):
    """`diffcomm transmit` on a 60×45 colour image: tiled automatically with the shipped colour 32×32 DeepJSCC
    at CBR 1/16, per colour channel with the 1-channel 28×28 model at 1/8 (no colour model there), the
    effective CBR reported; an image that fits the model keeps the single-link path."""
    import json

    from diffcomm.cli import main
    from diffcomm.data import read_image, write_image

    x = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 120, 90, generator=torch.Generator().manual_seed(0)), 2)
    write_image(tmp_path / "photo.png", x)
    out = tmp_path / "rec.png"
    assert main(["transmit", "--input", str(tmp_path / "photo.png"), "--encoder", "deepjscc", "--receiver",
                 "deepjscc", "--snr", "10", "--out", str(out), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert read_image(out).shape == (1, 3, 60, 45)
    tiling = record["tiling"]
    assert tiling["tile"] == [3, 32, 32] and tiling["tiles"] == 2 * 2  # stride 30: 2 x 2 tiles cover 60 x 45
    assert record["cbr"] == pytest.approx(tiling["tiles"] * 192 / (3 * 60 * 45)) and record["tile_cbr"] == 1 / 16
    assert record["psnr"] > 12
    assert main(["transmit", "--input", str(tmp_path / "photo.png"), "--encoder", "deepjscc", "--receiver",
                 "deepjscc", "--snr", "10", "--cbr", "1/8", "--out", str(out), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["tiling"]["tile"] == [1, 28, 28] and record["tiling"]["tiles"] == 3 * 3 * 2
    assert record["cbr"] == pytest.approx(18 * 98 / (3 * 60 * 45))
    write_image(tmp_path / "small.png", x[:, :1, :28, :28])
    assert main(["transmit", "--input", str(tmp_path / "small.png"), "--encoder", "deepjscc", "--receiver",
                 "deepjscc", "--snr", "10", "--out", str(out), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert "tiling" not in record and record["k"] == 49
    assert main(["transmit", "--input", str(tmp_path / "photo.png"), "--encoder", "downsample", "--receiver",
                 "pinv", "--snr", "10", "--cbr", "1/8", "--tile", "28", "--tile-overlap", "0", "--out", str(out),
                 "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["tiling"]["tile"] == [3, 28, 28] and record["tiling"]["overlap"] == 0
    assert main(["transmit", "--input", str(tmp_path / "photo.png"), "--snr", "10", "--tile", "x",
                 "--out", str(out)]) == 2
    assert "--tile" in capsys.readouterr().err


@pytest.mark.skipif("natural-prior" not in zoo.list_models(), reason="natural-prior not shipped")
def test_colour_image_through_hifi_uses_the_colour_models():
    """A 40×40 crop of a held-out photo through HiFi on the DeepJSCC link: 3×32×32 tiles, the colour DeepJSCC
    and the colour prior (both tied to 3×32×32), every tile decoded, the output in range and within a few dB
    of the decoder's (the photo results measure −0.9 … +0.6 dB on whole crops)."""
    from diffcomm.data import load_photo
    from diffcomm.metrics import psnr

    x = torch.from_numpy(load_photo("coffee")[180:220, 280:320].copy()).permute(2, 0, 1)[None].float() / 255
    hifi = transmit_tiled(x, "deepjscc", "hifi", "1/16", "awgn", 10.0, steps=2, seed=0)
    plain = transmit_tiled(x, "deepjscc", "deepjscc", "1/16", "awgn", 10.0, seed=0)
    assert hifi.tile_shape == plain.tile_shape == (3, 32, 32) and hifi.tiles_per_image == 4
    assert hifi.link.encoder.name == "natural-deepjscc-awgn-cbr16" and hifi.nfe > 0
    assert hifi.x_hat.shape == x.shape and 0 <= hifi.x_hat.min() and hifi.x_hat.max() <= 1
    assert abs(float(psnr(hifi.x_hat, x)) - float(psnr(plain.x_hat, x))) < 3.0
