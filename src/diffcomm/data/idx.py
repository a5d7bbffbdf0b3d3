"""IDX files: the array format of MNIST and Fashion-MNIST.

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/, section "FILE FORMATS"): a 4-byte magic
number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32 sizes, then the values in
big-endian C order. Dtype codes: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
0x0E float64. Files may be gzip-compressed (detected from the gzip magic bytes, not the name).

Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.idx")
    >>> write_idx(path, np.arange(6, dtype=np.uint8).reshape(2, 3))
    >>> read_idx(path).tolist()
    [[0, 1, 2], [3, 4, 5]]
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from diffcomm.errors import DiffcommError
from diffcomm.utils import atomic_write_bytes

# IDX dtype code -> big-endian numpy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_KIND = {(np.dtype(d).kind, np.dtype(d).itemsize): code for code, d in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped if they start with the gzip magic."""
    if not path.is_file():
        raise DiffcommError(f"IDX file {path} does not exist; check the path")
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DiffcommError(f"{path} is a corrupt or truncated gzip file ({exc}); "
                                f"re-download or reinstall it") from None
    return raw


def parse_idx_header(data: bytes, name: str = "<bytes>") -> tuple[np.dtype, tuple[int, ...], int]:
    """Parse an IDX header: returns (dtype, shape, byte offset of the data).

    Raises :class:`DiffcommError` when the magic number is wrong.
    """
    if len(data) < 4:
        raise DiffcommError(f"{name} is not an IDX file (only {len(data)} bytes); re-download it")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or code not in IDX_DTYPES or ndim == 0:
        raise DiffcommError(f"{name} is not an IDX file (bad magic number 0x{data[:4].hex()}); "
                            f"expected 0x0000<type><ndim>, e.g. 0x00000803 for images")
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DiffcommError(f"{name} is truncated inside its IDX header; re-download it")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    return IDX_DTYPES[code], shape, offset


def read_idx_header(path: str | os.PathLike) -> tuple[np.dtype, tuple[int, ...]]:
    """The (dtype, shape) stored in an IDX file's header, reading only the first bytes."""
    path = Path(path)
    if not path.is_file():
        raise DiffcommError(f"IDX file {path} does not exist; check the path")
    with open(path, "rb") as f:
        head = f.read(2)
    try:
        opener = gzip.open if head == _GZIP_MAGIC else open
        with opener(path, "rb") as f:
            start = f.read(4)
            ndim = start[3] if len(start) == 4 else 0
            data = start + f.read(4 * ndim)
    except (OSError, EOFError, zlib.error) as exc:
        raise DiffcommError(f"{path} is a corrupt gzip file ({exc}); re-download or reinstall it") from None
    dtype, shape, _ = parse_idx_header(data, str(path))
    return dtype, shape


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian numpy array of the stored shape.

    The file size must match its header exactly; a wrong magic number, a truncated file or
    trailing bytes raise :class:`DiffcommError`.
    """
    path = Path(path)
    data = _read_bytes(path)
    dtype, shape, offset = parse_idx_header(data, str(path))
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) < expected:
        raise DiffcommError(f"{path} is truncated: header says shape {shape} ({expected} bytes) but the "
                            f"file has {len(data)} bytes; re-download it")
    if len(data) > expected:
        raise DiffcommError(f"{path} has {len(data) - expected} unexpected bytes after the data for shape "
                            f"{shape}; it is not a valid IDX file")
    arr = np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file (atomically); gzip it when ``compress`` (default: name ends .gz).

    Supported dtypes: uint8, int8, int16, int32, float32, float64.
    """
    path = Path(path)
    arr = np.asarray(array)
    code = _CODE_OF_KIND.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise DiffcommError(f"IDX cannot store dtype {arr.dtype}; convert to uint8, int8, int16, int32, "
                            f"float32 or float64")
    if arr.ndim == 0 or arr.ndim > 255:
        raise DiffcommError(f"IDX needs 1 to 255 dimensions, got {arr.ndim}")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    atomic_write_bytes(path, gzip.compress(payload, mtime=0) if compress else payload)
