import gzip

import numpy as np
import pytest

from diffcomm.data import read_idx, read_idx_header, write_idx
from diffcomm.errors import DiffcommError


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_round_trip_all_dtypes(tmp_path, dtype, name):
    rng = np.random.default_rng(0)
    arr = (rng.normal(size=(3, 4, 5)) * 50).astype(dtype)
    write_idx(tmp_path / name, arr)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.dtype(dtype) and back.shape == (3, 4, 5)
    np.testing.assert_array_equal(back, arr)
    assert read_idx_header(tmp_path / name) == (np.dtype(dtype).newbyteorder(">"), (3, 4, 5))


def test_reads_hand_made_mnist_style_file(tmp_path):
    # Layout from the MNIST page: magic 0x00000803, big-endian dims, then bytes.
    payload = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    payload += bytes(range(12))
    (tmp_path / "x-idx3-ubyte.gz").write_bytes(gzip.compress(payload))
    arr = read_idx(tmp_path / "x-idx3-ubyte.gz")
    assert arr.tolist() == [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 11]]]
    # int32 values are big-endian on disk
    payload = bytes([0, 0, 0x0C, 1]) + (2).to_bytes(4, "big") + (258).to_bytes(4, "big") + (-1).to_bytes(
        4, "big", signed=True)
    (tmp_path / "i.idx").write_bytes(payload)
    assert read_idx(tmp_path / "i.idx").tolist() == [258, -1]


def test_bad_magic_raises(tmp_path):
    write_idx(tmp_path / "a.idx", np.zeros((2, 2), np.uint8))
    data = bytearray((tmp_path / "a.idx").read_bytes())
    data[0] = 7
    (tmp_path / "a.idx").write_bytes(bytes(data))
    with pytest.raises(DiffcommError, match="bad magic"):
        read_idx(tmp_path / "a.idx")
    (tmp_path / "b.idx").write_bytes(bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 5]))  # unknown dtype code
    with pytest.raises(DiffcommError, match="bad magic"):
        read_idx(tmp_path / "b.idx")


def test_truncated_and_trailing_bytes_raise(tmp_path):
    write_idx(tmp_path / "a.idx", np.arange(100, dtype=np.uint8).reshape(10, 10))
    data = (tmp_path / "a.idx").read_bytes()
    (tmp_path / "short.idx").write_bytes(data[:-1])
    with pytest.raises(DiffcommError, match="truncated"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "head.idx").write_bytes(data[:9])
    with pytest.raises(DiffcommError, match="truncated"):
        read_idx(tmp_path / "head.idx")
    (tmp_path / "long.idx").write_bytes(data + b"\0")
    with pytest.raises(DiffcommError, match="unexpected bytes"):
        read_idx(tmp_path / "long.idx")


def test_truncated_gzip_and_missing_file_raise(tmp_path):
    write_idx(tmp_path / "a.idx.gz", np.arange(1000, dtype=np.int32))
    data = (tmp_path / "a.idx.gz").read_bytes()
    (tmp_path / "cut.idx.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DiffcommError, match="gzip") as exc:
        read_idx(tmp_path / "cut.idx.gz")
    assert "\n" not in str(exc.value)
    with pytest.raises(DiffcommError, match="does not exist"):
        read_idx(tmp_path / "nope.idx")


def test_write_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(DiffcommError, match="cannot store"):
        write_idx(tmp_path / "a.idx", np.zeros(3, np.int64))
