"""Datasets a user has on disk, named by spec strings: CIFAR-10 python batches and Kodak-style photo folders;
and the CIFAR-10 / folder recipes train (2 steps) and evaluate through the same code path as the shipped ones.

The tests write the files they read: a fake CIFAR-10 folder of 20 images per batch file and a folder of 5
small PNG photos of different sizes."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch

from diffcomm.data import get_dataset, write_image
from diffcomm.data.datasets import parse_dataset_spec
from diffcomm.errors import DiffcommError

RECIPES = Path(__file__).resolve().parents[2] / "src" / "diffcomm" / "zoo" / "recipes"


def write_cifar(root: Path, n: int = 20) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        # smooth images (so a 2-step model has something to learn) stored as the official uint8 rows
        base = rng.random((n, 3, 8, 8))
        data = (np.kron(base, np.ones((1, 1, 4, 4))) * 255).astype(np.uint8).reshape(n, 3072)
        with open(root / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": [(i + j) % 10 for j in range(n)],
                         b"data": data, b"filenames": [b"x.png"] * n}, f, protocol=2)
    return root


def write_photos(root: Path, sizes=((48, 40), (40, 64), (56, 56), (33, 90), (64, 48))) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for i, (h, w) in enumerate(sizes):
        x = torch.nn.functional.interpolate(torch.rand(1, 3, h // 4, w // 4, generator=g), size=(h, w),
                                            mode="bilinear", align_corners=False).clamp(0, 1)
        write_image(root / f"kodim{i + 1:02d}.png", x)
    (root / ".hidden.png").write_bytes(b"not an image")
    (root / "notes.txt").write_text("skipped")
    return root


def test_spec_strings_parse_and_refuse_bad_options():
    assert parse_dataset_spec("cifar10") == ("cifar-10", {})
    assert parse_dataset_spec("folder:~/kodak?patch=64&per_image=8") == (
        "folder", {"path": "~/kodak", "patch": 64, "per_image": 8})
    assert parse_dataset_spec("cifar-10:/data/c") == ("cifar-10", {"path": "/data/c"})
    with pytest.raises(DiffcommError, match="takes no path"):
        parse_dataset_spec("fashion-mnist:/x")
    with pytest.raises(DiffcommError, match="not one of"):
        parse_dataset_spec("folder:/x?size=3")
    with pytest.raises(DiffcommError, match="integer"):
        parse_dataset_spec("folder:/x?patch=big")
    with pytest.raises(DiffcommError, match="not one of"):
        parse_dataset_spec("cifar-10:/x?patch=3")


def test_cifar_by_path_and_by_env(tmp_path, monkeypatch):
    root = write_cifar(tmp_path / "cifar-10-batches-py")
    ds = get_dataset(f"cifar10:{root}", "train")
    assert ds.images.shape == (100, 3, 32, 32) and ds.name == "cifar-10" and ds.labels.dtype == torch.int64
    monkeypatch.setenv("DIFFCOMM_CIFAR10", str(root))
    test = get_dataset("cifar-10", "test")
    assert test.images.shape == (20, 3, 32, 32)
    torch.testing.assert_close(get_dataset("cifar-10", "test", path=root).images, test.images)


def test_folder_patches_split_by_photo_and_fixed_crops(tmp_path, monkeypatch):
    root = write_photos(tmp_path / "kodak")
    train = get_dataset(f"folder:{root}?patch=32&per_image=6", "train")
    test = get_dataset(f"folder:{root}?patch=32&per_image=6", "test")
    assert train.images.shape == (24, 3, 32, 32) and test.images.shape == (6, 3, 32, 32)
    assert test.classes == ("kodim01.png",) and set(train.classes).isdisjoint(test.classes)   # by photo
    assert train.images.min() >= 0 and train.images.max() <= 1
    again = get_dataset(f"folder:{root}?patch=32&per_image=6", "train")
    assert torch.equal(train.images, again.images)                  # seeded crops: the same every run
    monkeypatch.setenv("DIFFCOMM_IMAGE_FOLDER", str(root))
    assert torch.equal(get_dataset("folder", "train", patch=32, per_image=6).images, train.images)
    assert len(get_dataset("folder", "all", patch=16, per_image=2).images) == 10
    with pytest.raises(DiffcommError, match="exceeds photo"):
        get_dataset("folder", "train", patch=41)
    with pytest.raises(DiffcommError, match="different sizes"):
        get_dataset("folder", "train", patch=0)
    with pytest.raises(DiffcommError, match="does not exist"):
        get_dataset(f"folder:{tmp_path / 'nope'}")
    monkeypatch.delenv("DIFFCOMM_IMAGE_FOLDER")
    with pytest.raises(DiffcommError, match="DIFFCOMM_IMAGE_FOLDER"):
        get_dataset("folder")


def tiny(recipe: str, dataset: str, **model) -> dict:
    """A shipped recipe with its dataset pointed at the test's files, a tiny model and 2 steps."""
    config = tomllib.loads((RECIPES / recipe).read_text())
    config["data"]["dataset"] = dataset
    config["model"].update(model)
    config["train"].update(steps=2, batch_size=4, warmup_steps=1, checkpoint_every=1, snapshot_every=2,
                           log_every=1, threads=1)
    return config


@pytest.mark.parametrize("recipe", ["cifar10-deepjscc-awgn-cbr16.toml", "cifar10-deepjscc-rayleigh-cbr48.toml",
                                    "folder-deepjscc-awgn-cbr16.toml"])
def test_rgb_jscc_recipes_train_and_evaluate(tmp_path, recipe):
    from diffcomm import zoo
    from diffcomm.link import Link
    from diffcomm.pipeline import decode, score
    from diffcomm.transmit.deepjscc import DeepJSCCEncoder, run_jscc_training

    if recipe.startswith("cifar10"):
        dataset = f"cifar-10:{write_cifar(tmp_path / 'cifar')}"
    else:
        dataset = f"folder:{write_photos(tmp_path / 'photos')}?patch=32&per_image=4"
    out = tmp_path / "run"
    final = run_jscc_training(tiny(recipe, dataset, width=8), out, progress=False)
    assert final["steps"] == 2 and np.isfinite(final["final_loss"]) and "psnr_10dB" in final
    model = zoo.load_weights(out / "model.safetensors")
    assert model.config.in_channels == 3 and model.config.image_size == 32
    # evaluation: the same link/receiver path as the shipped models, on the test split
    x = get_dataset(dataset, "test").images[:4]
    link = Link(DeepJSCCEncoder(model, 10.0), model.config.channel, 10.0)
    assert link.kind == "jscc" and link.k == round(model.config.cbr * 3 * 32 * 32)
    rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
    res = decode("deepjscc", link, rx)
    assert res.x_hat.shape == x.shape and torch.isfinite(score(x, res.x_hat)["psnr"]).all()
    # a whole photo of any size through the trained 32x32 RGB model, as tiles
    from diffcomm.tiling import transmit_tiled

    photo = torch.rand(1, 3, 50, 70, generator=torch.Generator().manual_seed(2))
    tiled = transmit_tiled(photo, DeepJSCCEncoder(model, 10.0), "deepjscc", model.config.cbr,
                           model.config.channel, 10.0, overlap=4)
    assert tiled.x_hat.shape == photo.shape and tiled.tile_shape == (3, 32, 32) and tiled.tiles_per_image == 6


@pytest.mark.parametrize("recipe", ["cifar10-prior.toml", "folder-prior.toml"])
def test_rgb_prior_recipes_train_and_evaluate(tmp_path, recipe):
    from diffcomm import zoo
    from diffcomm.diffusion.train_prior import run_prior_training
    from diffcomm.link import make_link
    from diffcomm.pipeline import decode

    if recipe.startswith("cifar10"):
        dataset = f"cifar-10:{write_cifar(tmp_path / 'cifar')}"
    else:
        dataset = f"folder:{write_photos(tmp_path / 'photos')}?patch=32&per_image=4"
    out = tmp_path / "run"
    final = run_prior_training(tiny(recipe, dataset, base_channels=8, num_res_blocks=1, attention_levels=[],
                                    emb_dim=16), out, progress=False)
    assert final["steps"] == 2 and np.isfinite(final["final_loss"])
    assert (out / "samples_0000002.png").is_file()
    prior = zoo.load_weights(out / "model.safetensors")
    x = get_dataset(dataset, "test").images[:2]
    link = make_link("downsample", (3, 32, 32), "1/8", "awgn", 10.0)
    rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
    res = decode("dps", link, rx, prior=prior, generator=torch.Generator().manual_seed(1), steps=2)
    assert res.x_hat.shape == x.shape and torch.isfinite(res.x_hat).all() and res.nfe >= 2
