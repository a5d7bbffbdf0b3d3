"""The results store: one JSON record per line (JSONL), appended atomically, safe to resume.

Layout for a results file ``OUT`` (e.g. ``results.jsonl``):

- ``OUT``: one record per finished grid point, one line each. A record is appended with a single
  ``write`` of the whole line followed by ``flush`` + ``fsync``, so a crash or ``kill -9`` can
  leave at most a *partial last line*; :func:`load_records` detects it (no trailing newline, or
  not JSON) and truncates the file back to the last complete record. Any other malformed line is
  an error (the file is not a diffcomm results file).
- ``OUT.d/points/<hash>.safetensors``: the first few originals (``x``) and reconstructions
  (``x_hat``) of each point, written atomically *before* its record, so every record's
  ``images`` path exists. A record's ``images`` is relative to ``OUT.d`` (``points/<hash>.safetensors``),
  so records do not depend on the results file's name or folder.

A run holds an exclusive ``flock`` on ``OUT.d/lock`` so two runs never append to one file.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "r.jsonl"
    >>> with ResultsWriter(path) as w:
    ...     w.append({"key": "a", "metrics": {}})
    >>> [r["key"] for r in load_records(path)]
    ['a']
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from diffcomm.errors import DiffcommError
from diffcomm.utils import atomic_save_safetensors

# Record fields that legitimately differ between runs of the same point (wall time, host).
TIMING_FIELDS = ("seconds", "timestamp", "machine")


def sidecar_dir(path: str | os.PathLike) -> Path:
    """``OUT.d``: the folder beside a results file that holds its saved reconstructions."""
    path = Path(path)
    return path.parent / (path.name + ".d")


def load_records(path: str | os.PathLike, repair: bool = True) -> list[dict[str, Any]]:
    """All complete records of a results file (``[]`` if it does not exist).

    A partial last line (an interrupted append) is dropped, and with ``repair`` the file is
    truncated to the last complete record. A malformed line elsewhere raises :class:`DiffcommError`.
    """
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_file():
        raise DiffcommError(f"results path {path} is not a file")
    data = path.read_bytes()
    records: list[dict[str, Any]] = []
    good_end = 0
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        line = data[pos:] if nl < 0 else data[pos:nl]
        end = len(data) if nl < 0 else nl + 1
        try:
            record = json.loads(line) if line.strip() else None
        except ValueError:
            record = False
        if nl >= 0 and record is False:
            raise DiffcommError(f"{path}: line {len(records) + 1} is not a JSON record; "
                                f"this is not a diffcomm results file (or it was edited)")
        if nl < 0:
            break  # partial last line (no newline yet): dropped below
        if record is not None:
            if not isinstance(record, dict) or "key" not in record:
                raise DiffcommError(f"{path}: line {len(records) + 1} is not a diffcomm results record")
            records.append(record)
        good_end = end
        pos = end
    if good_end < len(data) and repair:
        with open(path, "r+b") as f:
            f.truncate(good_end)
            f.flush()
            os.fsync(f.fileno())
    return records


def save_point_images(results_path: str | os.PathLike, stem: str, tensors: dict[str, torch.Tensor]) -> str:
    """Write a point's saved images to ``OUT.d/points/<stem>.safetensors``; return ``points/<stem>.safetensors``."""
    rel = f"points/{stem}.safetensors"
    atomic_save_safetensors(sidecar_dir(results_path) / rel, tensors)
    return rel


def load_point_images(results_path: str | os.PathLike, record: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The tensors a record saved (``x``, ``x_hat``), or ``None`` if none were saved or the file is gone."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    rel = record.get("images")
    if not rel:
        return None
    file = sidecar_dir(results_path) / rel
    if not file.is_file():
        return None
    try:
        return load_file(str(file))
    except (SafetensorError, OSError):
        return None


class ResultsWriter:
    """Append records to a results file, one fsync'ed line each, holding an exclusive lock.

    Use as a context manager; :meth:`append` writes one record.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = None
        self._lock = None

    def __enter__(self) -> ResultsWriter:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        side = sidecar_dir(self.path)
        side.mkdir(parents=True, exist_ok=True)
        self._lock = open(side / "lock", "a")
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise DiffcommError(f"another run is writing {self.path}; wait for it or use another --out") from None
        load_records(self.path, repair=True)  # drop a partial last line before appending
        self._file = open(self.path, "ab")
        return self

    def append(self, record: dict[str, Any]) -> None:
        if self._file is None:
            raise RuntimeError("ResultsWriter.append outside its context")
        line = (json.dumps(record, allow_nan=False) + "\n").encode("utf-8")
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None


def strip_timing(record: dict[str, Any]) -> dict[str, Any]:
    """A record without the fields that differ between identical runs (:data:`TIMING_FIELDS`)."""
    return {k: v for k, v in record.items() if k not in TIMING_FIELDS}
