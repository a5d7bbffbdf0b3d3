"""The public API's bad-input corpus, grouped by module: each raises a one-line DiffcommError and
leaves nothing new on disk. Valid-but-odd images (16-bit, RGBA, palette, JPEG named .png) read right."""

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffcomm.checks import check_output_path, check_seed, read_config_file, read_json_file
from diffcomm.data import read_image, write_image
from diffcomm.diffusion.unet import UNetConfig
from diffcomm.errors import DiffcommError
from diffcomm.eval.store import RECORD_FIELDS, ResultsWriter, load_records
from diffcomm.metrics.classifier import ClassifierConfig
from diffcomm.training import TrainConfig, validate_training_config
from diffcomm.transmit.deepjscc import DeepJSCCConfig

sys.path.insert(0, str(Path(__file__).parent / "cli"))
from test_bad_inputs import FILES, png_header_only  # noqa: E402


def _files(d):
    for name, data in FILES.items():
        (d / name).write_bytes(data)
    (d / "adir").mkdir()


API = {
    # diffcomm.checks
    "seed-negative": lambda d: check_seed(-1),
    "seed-2-63": lambda d: check_seed(2 ** 63),
    "seed-float": lambda d: check_seed(1.5),
    "seed-bool": lambda d: check_seed(True),
    "seed-none": lambda d: check_seed(None),
    "seed-text": lambda d: check_seed("seven"),
    "out-file-is-dir": lambda d: check_output_path(d / "adir", "file"),
    "out-dir-is-file": lambda d: check_output_path(d / "afile", "dir"),
    "out-below-file": lambda d: check_output_path(d / "afile" / "x.png", "file"),
    "out-read-only": lambda d: check_output_path("/proc/diffcomm-x/y", "file"),
    "out-empty": lambda d: check_output_path("", "file"),
    "config-binary": lambda d: read_config_file(d / "binary.toml"),
    "config-latin1": lambda d: read_config_file(d / "latin1.toml"),
    "config-broken": lambda d: read_config_file(d / "broken.toml"),
    "config-list": lambda d: read_config_file(d / "list.json"),
    "config-missing": lambda d: read_config_file(d / "nope.toml"),
    "config-suffix": lambda d: read_config_file(d / "grid.txt"),
    "config-dir": lambda d: read_config_file(d / "adir"),
    "json-list": lambda d: read_json_file(d / "list.json"),
    "json-binary": lambda d: read_json_file(d / "binary.toml"),
    "json-broken": lambda d: read_json_file(d / "broken.toml"),
    # diffcomm.training
    "train-unknown": lambda d: TrainConfig.from_dict({"stepz": 1}),
    "train-steps-string": lambda d: TrainConfig.from_dict({"steps": "10"}),
    "train-steps-zero": lambda d: TrainConfig.from_dict({"steps": 0}),
    "train-lr-nan": lambda d: TrainConfig.from_dict({"lr": math.nan}),
    "train-lr-inf": lambda d: TrainConfig.from_dict({"lr": math.inf}),
    "train-batch-bool": lambda d: TrainConfig.from_dict({"batch_size": True}),
    "train-seed-huge": lambda d: TrainConfig.from_dict({"seed": 2 ** 64}),
    "train-not-table": lambda d: TrainConfig.from_dict([1, 2]),
    "schema-prior-limit": lambda d: validate_training_config("prior", {"data": {"limit": -59999}}),
    "schema-prior-limit-zero": lambda d: validate_training_config("prior", {"data": {"limit": 0}}),
    "schema-prior-section": lambda d: validate_training_config("prior", {"modle": {}}),
    "schema-prior-model-key": lambda d: validate_training_config("prior", {"model": {"base_chanels": 8}}),
    "schema-prior-data-list": lambda d: validate_training_config("prior", {"data": [1]}),
    "schema-classifier-snapshot": lambda d: validate_training_config("classifier", {"snapshot": {}}),
    "schema-jscc-width": lambda d: validate_training_config("jscc", {"model": {"width": 0}}),
    "schema-unknown-kind": lambda d: validate_training_config("vae", {}),
    # model configs
    "unet-misspelt": lambda d: UNetConfig.from_dict({"base_chanels": 8}),
    "unet-mults-string": lambda d: UNetConfig.from_dict({"channel_mults": "1,2"}),
    "unet-attention": lambda d: UNetConfig.from_dict({"channel_mults": [1], "attention_levels": [1]}),
    "classifier-dropout": lambda d: ClassifierConfig.from_dict({"dropout": 2.0}),
    "classifier-classes": lambda d: ClassifierConfig.from_dict({"num_classes": 1}),
    "jscc-channel": lambda d: DeepJSCCConfig.from_dict({"channel": "fibre"}),
    "jscc-cbr-nan": lambda d: DeepJSCCConfig.from_dict({"cbr": math.nan}),
    # diffcomm.data.images
    "image-bomb": lambda d: read_image(d / "bomb.png"),
    "image-corrupt": lambda d: read_image(d / "corrupt.png"),
    "image-text": lambda d: read_image(d / "text.png"),
    "image-empty": lambda d: read_image(d / "empty.png"),
    "image-missing": lambda d: read_image(d / "nope.png"),
    "image-write-to-dir": lambda d: write_image(d / "adir", torch.zeros(1, 1, 4, 4)),
    "image-write-below-file": lambda d: write_image(d / "afile" / "x.png", torch.zeros(1, 1, 4, 4)),
    "image-write-nan": lambda d: write_image(d / "x.png", torch.full((1, 1, 4, 4), math.nan)),
    # diffcomm.eval.store
    "store-foreign-no-newline": lambda d: load_records(d / "foreign.txt"),
    "store-foreign-json": lambda d: load_records(d / "foreign.jsonl"),
    "store-missing-fields": lambda d: load_records(d / "nokeys.jsonl", required=RECORD_FIELDS),
    "store-bad-type": lambda d: load_records(d / "badtype.jsonl", required=RECORD_FIELDS),
    "store-writer-foreign": lambda d: ResultsWriter(d / "foreign.txt").__enter__(),
    "store-writer-dir": lambda d: ResultsWriter(d / "adir").__enter__(),
}


def _tree(d):
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else None) for p in sorted(d.rglob("*"))}


@pytest.mark.parametrize("name", sorted(API))
def test_bad_api_input_is_a_one_line_error(name, tmp_path):
    _files(tmp_path)
    before = _tree(tmp_path)
    with pytest.raises(DiffcommError) as err:
        API[name](tmp_path)
    assert "\n" not in str(err.value) and str(err.value)
    assert _tree(tmp_path) == before


def test_seed_bounds_are_inclusive_exclusive():
    assert check_seed(0) == 0 and check_seed(2 ** 63 - 1) == 2 ** 63 - 1 and check_seed("12") == 12


def test_sixteen_bit_rgba_palette_and_jpeg_named_png_read_correctly(tmp_path):
    a16 = (np.arange(28 * 28).reshape(28, 28) * 83).astype(np.uint16)
    Image.fromarray(a16).save(tmp_path / "g16.png")
    x = read_image(tmp_path / "g16.png")
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
    assert torch.allclose(x[0, 0].double(), torch.from_numpy(a16 / 65535.0), atol=1e-6)

    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:3, :, 3] = 255  # top half opaque red, bottom half transparent (composited on white)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    y = read_image(tmp_path / "rgba.png")
    assert y.shape == (1, 3, 6, 6)
    assert torch.equal(y[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0])) and torch.equal(y[0, :, 5, 5], torch.ones(3))

    rgb = np.zeros((5, 5, 3), np.uint8)
    rgb[..., 2] = 200
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "pal.png")
    z = read_image(tmp_path / "pal.png")
    assert z.shape == (1, 3, 5, 5) and abs(float(z[0, 2].mean()) - 200 / 255) < 2 / 255

    gray = np.full((8, 8), 128, np.uint8)
    Image.fromarray(gray).save(tmp_path / "actually-jpeg.png", format="JPEG", quality=95)
    w = read_image(tmp_path / "actually-jpeg.png")
    assert w.shape == (1, 1, 8, 8) and abs(float(w.mean()) - 128 / 255) < 2 / 255


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    (tmp_path / "b.png").write_bytes(png_header_only(100_000, 100_000))
    with pytest.raises(DiffcommError, match="too large"):
        read_image(tmp_path / "b.png")
    assert os.path.getsize(tmp_path / "b.png") < 1000
