import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from diffcomm.data import CIFAR10_CLASSES, load_cifar10, load_image_folder, read_cifar_batch
from diffcomm.errors import DiffcommError


def _write_batch(path, data, labels, protocol=2):
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"test", b"labels": list(labels), b"data": data,
                     b"filenames": [b"x.png"] * len(labels)}, f, protocol=protocol)


def _cifar_folder(tmp_path, n=4):
    rng = np.random.default_rng(0)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(n)]
        _write_batch(tmp_path / name, data, labels)
        batches[name] = (data, labels)
    return batches


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_read_cifar_batch_layout(tmp_path, protocol):
    data = np.zeros((2, 3072), np.uint8)
    data[0, 0] = 10            # red channel, row 0, col 0
    data[0, 1024 + 33] = 20    # green channel, row 1, col 1
    data[1, 2048 + 1023] = 30  # blue channel, row 31, col 31
    _write_batch(tmp_path / "b", data, [3, 7], protocol=protocol)
    images, labels = read_cifar_batch(tmp_path / "b")
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.uint8
    assert images[0, 0, 0, 0] == 10 and images[0, 1, 1, 1] == 20 and images[1, 2, 31, 31] == 30
    assert int(images.sum()) == 60
    assert labels.tolist() == [3, 7] and labels.dtype == torch.int64


def test_load_cifar10_splits_and_meta(tmp_path):
    batches = _cifar_folder(tmp_path)
    x, y, classes = load_cifar10(tmp_path, "train")
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (20,)
    expected = np.concatenate([batches[f"data_batch_{k}"][0] for k in range(1, 6)]).reshape(-1, 3, 32, 32)
    torch.testing.assert_close(x, torch.from_numpy(expected).float() / 255)
    assert classes == CIFAR10_CLASSES
    with open(tmp_path / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072}, f, protocol=2)
    xt, yt, classes = load_cifar10(tmp_path, "test")
    assert xt.shape == (4, 3, 32, 32) and yt.tolist() == batches["test_batch"][1] and classes[9] == "c9"


def test_cifar_errors(tmp_path):
    with pytest.raises(DiffcommError, match="data_batch_1"):
        load_cifar10(tmp_path, "train")
    with pytest.raises(DiffcommError, match="split"):
        load_cifar10(tmp_path, "valid")
    (tmp_path / "test_batch").write_bytes(b"garbage, not a pickle")
    with pytest.raises(DiffcommError, match="not a valid CIFAR-10 batch"):
        load_cifar10(tmp_path, "test")
    _write_batch(tmp_path / "test_batch", np.zeros((2, 100), np.uint8), [0, 1])
    with pytest.raises(DiffcommError, match="3072"):
        load_cifar10(tmp_path, "test")


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_cifar_reader_refuses_arbitrary_globals(tmp_path):
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": []}, f)
    with pytest.raises(DiffcommError, match="refusing to load global posix.getcwd|refusing to load global os"):
        read_cifar_batch(tmp_path / "test_batch")


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_image_folder_labels_modes_and_resize(tmp_path):
    red = np.zeros((6, 6, 3), np.uint8)
    red[..., 0] = 255
    _save(tmp_path / "b_dog" / "1.png", red)
    _save(tmp_path / "a_cat" / "x.bmp", np.full((6, 6, 3), 128, np.uint8))
    _save(tmp_path / "a_cat" / "sub" / "y.png", np.full((6, 6), 64, np.uint8))  # grayscale, nested
    (tmp_path / "b_dog" / "README.txt").write_text("skipped: not an image extension")
    (tmp_path / ".hidden").mkdir()
    x, y, classes = load_image_folder(tmp_path)
    assert classes == ("a_cat", "b_dog")
    assert x.shape == (3, 3, 6, 6) and y.tolist() == [0, 0, 1]
    # files in sorted path order within a class: a_cat/sub/y.png before a_cat/x.bmp
    assert torch.allclose(x[0], torch.tensor(64 / 255)) and torch.allclose(x[1], torch.tensor(128 / 255))
    assert x[2, 0].eq(1).all() and x[2, 1:].eq(0).all()
    xl, _, _ = load_image_folder(tmp_path, mode="L", size=(4, 5))
    assert xl.shape == (3, 1, 4, 5)
    assert torch.allclose(xl[0], torch.tensor(64 / 255), atol=1 / 255)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DiffcommError, match="does not exist"):
        load_image_folder(tmp_path / "nope")
    with pytest.raises(DiffcommError, match="no class sub-folders"):
        load_image_folder(tmp_path)
    _save(tmp_path / "a" / "1.png", np.zeros((4, 4), np.uint8))
    _save(tmp_path / "a" / "2.png", np.zeros((5, 4), np.uint8))
    with pytest.raises(DiffcommError, match="different sizes"):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, size=3)[0].shape == (2, 3, 3, 3)
    (tmp_path / "a" / "3.png").write_bytes(b"not really a png")
    with pytest.raises(DiffcommError, match="3.png"):
        load_image_folder(tmp_path, size=3)
