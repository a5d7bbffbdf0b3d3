import numpy as np
import pytest
import torch
from PIL import Image

from diffcomm.data import make_grid, read_image, save_grid, write_image
from diffcomm.errors import DiffcommError


def _quantized(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g).float() / 255.0


@pytest.mark.parametrize("channels", [1, 3])
def test_png_round_trip_is_exact(tmp_path, channels):
    x = _quantized((1, channels, 17, 23))
    write_image(tmp_path / "x.png", x)
    y = read_image(tmp_path / "x.png")
    assert y.dtype == torch.float32 and y.shape == (1, channels, 17, 23)
    assert torch.equal(y, x)


def test_write_accepts_3d_and_rounds_to_nearest_level(tmp_path):
    x = torch.full((3, 4, 4), 100.4 / 255)
    write_image(tmp_path / "x.png", x)
    assert np.asarray(Image.open(tmp_path / "x.png")).max() == 100
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temp file


def test_jpeg_is_close_and_mode_conversion(tmp_path):
    x = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(1, 3, 32, 32).contiguous()
    write_image(tmp_path / "x.jpg", x, quality=95)
    y = read_image(tmp_path / "x.jpg")
    assert y.shape == x.shape and (y - x).abs().mean() < 0.02
    gray = read_image(tmp_path / "x.jpg", mode="L")
    assert gray.shape == (1, 1, 32, 32)
    rgb_from_gray = read_image(tmp_path / "x.jpg", mode="RGB")
    assert rgb_from_gray.shape == (1, 3, 32, 32)


def test_16bit_png_keeps_precision(tmp_path):
    arr = np.array([[0, 1, 65535, 30000]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "x.png")
    y = read_image(tmp_path / "x.png")
    assert y.shape == (1, 1, 1, 4)
    torch.testing.assert_close(y[0, 0, 0], torch.tensor(arr[0] / 65535.0, dtype=torch.float32))


def test_rgba_is_composited_on_white(tmp_path):
    arr = np.zeros((2, 2, 4), np.uint8)
    arr[0, 0] = (255, 0, 0, 255)  # opaque red; the rest fully transparent black
    Image.fromarray(arr).save(tmp_path / "x.png")
    y = read_image(tmp_path / "x.png")
    assert y.shape == (1, 3, 2, 2)
    assert y[0, :, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert y[0, :, 1, 1].tolist() == [1.0, 1.0, 1.0]


def test_corrupt_and_non_image_files_raise_one_line(tmp_path):
    (tmp_path / "notes.png").write_text("this is not an image")
    with pytest.raises(DiffcommError, match="not an image") as exc:
        read_image(tmp_path / "notes.png")
    assert "\n" not in str(exc.value)
    write_image(tmp_path / "x.png", _quantized((1, 3, 64, 64)))
    data = (tmp_path / "x.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DiffcommError, match="corrupt or truncated"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(DiffcommError, match="does not exist"):
        read_image(tmp_path / "missing.png")


def test_write_rejects_bad_pixels(tmp_path):
    x = torch.rand(1, 3, 4, 4)
    for bad, match in [(x * 2, r"\[0, 1\]"), (x - 0.5, r"\[0, 1\]"), (x.masked_fill(x > 0.5, float("nan")), "NaN"),
                       (torch.rand(1, 2, 4, 4), "C = 1 or 3"), (torch.rand(2, 3, 4, 4), "batch")]:
        with pytest.raises(DiffcommError, match=match):
            write_image(tmp_path / "x.png", bad)
    with pytest.raises(DiffcommError, match="extension"):
        write_image(tmp_path / "x.nope", x)
    assert not (tmp_path / "x.png").exists()


def test_make_grid_layout():
    imgs = torch.stack([torch.full((1, 2, 3), v) for v in (0.1, 0.2, 0.3, 0.4, 0.5)])
    grid = make_grid(imgs, nrow=2, padding=1, pad_value=1.0)
    # 3 rows x 2 cols of 2x3 images, 1 px padding around each
    assert grid.shape == (1, 3 * 3 + 1, 2 * 4 + 1)
    assert torch.all(grid[:, 1:3, 1:4] == 0.1) and torch.all(grid[:, 1:3, 5:8] == 0.2)
    assert torch.all(grid[:, 4:6, 1:4] == 0.3) and torch.all(grid[:, 7:9, 1:4] == 0.5)
    assert torch.all(grid[:, 7:9, 5:8] == 1.0)  # empty last cell
    assert torch.all(grid[:, 0, :] == 1.0) and torch.all(grid[:, :, 4] == 1.0)
    assert make_grid(imgs, nrow=10, padding=0).shape == (1, 2, 15)  # one row when nrow >= B


def test_save_grid_writes_readable_png(tmp_path):
    imgs = _quantized((6, 3, 5, 5))
    save_grid(tmp_path / "sub" / "grid.png", imgs, nrow=3, padding=2)
    g = read_image(tmp_path / "sub" / "grid.png")
    assert g.shape == (1, 3, 2 * 7 + 2, 3 * 7 + 2)
    assert torch.equal(g[0, :, 2:7, 9:14], imgs[1])
