from pathlib import Path

import numpy as np
import pytest
import torch

from diffcomm.data import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    dataset_info,
    get_dataset,
    load_digits8,
    load_fashion_mnist,
    load_mnist_subset,
    write_idx,
)
from diffcomm.data.datasets import FASHION_MNIST_DEFAULT_ROOT, FASHION_MNIST_ENV, fashion_mnist_root
from diffcomm.errors import DiffcommError

FMNIST_PRESENT = (Path(FASHION_MNIST_DEFAULT_ROOT) / "train-images-idx3-ubyte.gz").is_file()


@pytest.mark.skipif(not FMNIST_PRESENT, reason="Debian package dataset-fashion-mnist is not installed "
                                               "(apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_real_files(monkeypatch):
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    for split, n in (("train", 60_000), ("test", 10_000)):
        x, y = load_fashion_mnist(split)
        assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32
        assert y.shape == (n,) and y.dtype == torch.int64
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
        # Fashion-MNIST is exactly balanced: n/10 images per class
        assert torch.bincount(y, minlength=10).tolist() == [n // 10] * 10
    # values are k/255 exactly
    assert torch.equal((x * 255).round() / 255, x)
    # the cache hands out fresh tensors: modifying one does not change the next load
    x[:] = 0.5
    assert float(load_fashion_mnist("test")[0].max()) == 1.0
    assert len(FASHION_MNIST_CLASSES) == 10 and FASHION_MNIST_CLASSES[9] == "Ankle boot"


def _fake_fashion(folder: Path, n: int, gz: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    ext = ".gz" if gz else ""
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_env_override(tmp_path, monkeypatch, gz):
    images, labels = _fake_fashion(tmp_path, 7, gz)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    assert fashion_mnist_root() == tmp_path
    x, y = load_fashion_mnist("test")
    assert x.shape == (7, 1, 28, 28)
    torch.testing.assert_close(x[:, 0], torch.from_numpy(images).float() / 255)
    assert y.tolist() == labels.tolist()
    info = dataset_info("fashion-mnist")
    assert info["available"] and info["splits"] == {"train": 7, "test": 7}


def test_fashion_mnist_missing_and_mismatched_files(tmp_path, monkeypatch):
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path / "empty"))
    with pytest.raises(DiffcommError, match="apt-get install dataset-fashion-mnist") as exc:
        load_fashion_mnist("train")
    assert "\n" not in str(exc.value) and FASHION_MNIST_ENV in str(exc.value)
    info = dataset_info("fashion-mnist")
    assert not info["available"] and "apt-get" in info["how"] and info["splits"] == {}
    _fake_fashion(tmp_path, 5, True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    with pytest.raises(DiffcommError, match="mismatch"):
        load_fashion_mnist("test")
    with pytest.raises(DiffcommError, match="split"):
        load_fashion_mnist("val")


def test_mnist_subset_split_is_deterministic_and_stratified():
    x, y = load_mnist_subset("train")
    xt, yt = load_mnist_subset("test")
    assert x.shape == (4000, 1, 28, 28) and xt.shape == (1000, 1, 28, 28)
    assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1 and float(x.max()) > 0.99
    assert torch.bincount(yt, minlength=10).tolist() == [100] * 10
    assert torch.bincount(y, minlength=10).tolist() == [400] * 10
    # no test image appears in train (exact duplicates would be a leaking split)
    train_rows = {row.numpy().tobytes() for row in x.flatten(1)}
    assert sum(row.numpy().tobytes() in train_rows for row in xt.flatten(1)) == 0
    assert torch.equal(load_mnist_subset("test")[0], xt)


def test_digits8():
    x, y = load_digits8("train")
    xt, yt = load_digits8("test")
    assert x.shape == (1437, 1, 8, 8) and xt.shape == (360, 1, 8, 8)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.equal((x * 16).round() / 16, x)  # 17 gray levels
    assert set(y.tolist()) == set(range(10)) and set(yt.tolist()) == set(range(10))


def test_registry():
    ds = get_dataset("digits8", "test")
    images, labels = ds[:2]
    assert images.shape == (360, 1, 8, 8) and labels.shape == (360,)
    assert ds.name == "digits8" and ds.split == "test" and ds.classes[0] == "0"
    with pytest.raises(DiffcommError, match="fashion-mnist, mnist-subset, digits8, natural-patches"):
        get_dataset("imagenet", "train")
    with pytest.raises(DiffcommError, match="split"):
        get_dataset("digits8", "validation")
    assert set(DATASETS) >= {"fashion-mnist", "mnist-subset", "digits8", "natural-patches"}


def test_registry_cifar_needs_env_var(monkeypatch):
    monkeypatch.delenv("DIFFCOMM_CIFAR10", raising=False)
    with pytest.raises(DiffcommError, match="DIFFCOMM_CIFAR10"):
        get_dataset("cifar-10", "test")
    assert not dataset_info("cifar-10")["available"]


def test_dataset_info_mnist_subset_matches_loader():
    info = dataset_info("mnist-subset")
    assert info["available"] and info["shape"] == [1, 28, 28]
    assert info["splits"] == {"train": len(load_mnist_subset("train")[0]), "test": len(load_mnist_subset("test")[0])}
