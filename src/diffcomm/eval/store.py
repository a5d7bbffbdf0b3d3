"""The results store: one JSON record per line (JSONL), appended atomically, safe to resume.

Layout for a results file ``OUT`` (e.g. ``results.jsonl``):

- ``OUT``: one record per finished grid point, one line each. A record is appended with a single
  ``write`` of the whole line followed by ``flush`` + ``fsync``, so a crash or ``kill -9`` can
  leave at most a *partial last line*; :func:`load_records` detects it (no trailing newline, or
  not JSON) and truncates the file back to the last complete record — only when that line is
  recognisably ours (it starts as every record does, ``{"key":``). Any other malformed line is
  an error and the file is left exactly as it was: a file that is not a diffcomm results file is
  never truncated or appended to.
- ``OUT.d/points/<hash>.safetensors``: the first few originals (``x``) and reconstructions
  (``x_hat``) of each point, written atomically *before* its record, so every record's
  ``images`` path exists. A record's ``images`` is relative to ``OUT.d`` (``points/<hash>.safetensors``),
  so records do not depend on the results file's name or folder.

A run holds an exclusive ``flock`` on ``OUT.d/lock`` so two runs never append to one file. Both
are found from the *resolved* path, so a results file reached through a symlink (or two spellings
of one path) shares one lock and one sidecar folder.

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


# Fields every results record has (diffcomm.eval.runner writes them); readers that use them
# (tables, plots, reports, resume) load with required=RECORD_FIELDS.
RECORD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "key": str, "system": str, "receiver": str, "encoder": str, "dataset": str, "split": str, "n": int,
    "channel": str, "csi": str, "snr_db": (int, float), "cbr": (int, float), "seed": int, "metrics": dict}
_RECORD_START = b'{"key": '  # how every record line written by ResultsWriter begins (key first)


def sidecar_dir(path: str | os.PathLike) -> Path:
    """``OUT.d``: the folder beside a results file that holds its saved reconstructions.

    Found from the resolved path (symlinks followed), like the lock.
    """
    path = Path(os.path.realpath(path))
    return path.parent / (path.name + ".d")


def _check_fields(record: dict[str, Any], required: dict[str, Any], path: Path, line: int) -> None:
    for name, tp in required.items():
        value = record.get(name)
        if value is None or isinstance(value, bool) or not isinstance(value, tp):
            what = "lacks" if value is None else "has a bad"
            raise DiffcommError(f"{path}: line {line} {what} field {name!r}; this is not a complete diffcomm "
                                f"results record (written by another tool or edited)")


def load_records(path: str | os.PathLike, repair: bool = True,
                 required: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """All complete records of a results file (``[]`` if it does not exist).

    A partial last line of ours (an interrupted append: no newline, starts like a record, not
    JSON) is dropped, and with ``repair`` the file is truncated to the last complete record; a
    complete record that only lacks its newline is kept (``repair`` adds the newline). Anything
    else that is not a record raises :class:`DiffcommError` and leaves the file untouched.
    ``required``: field -> type(s) every record must have (e.g. :data:`RECORD_FIELDS`).
    """
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_file():
        raise DiffcommError(f"results path {path} is not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DiffcommError(f"cannot read results file {path}: {exc.strerror or type(exc).__name__}") from None
    records: list[dict[str, Any]] = []
    good_end = 0
    pos = 0
    add_newline = False
    while pos < len(data):
        nl = data.find(b"\n", pos)
        line = data[pos:] if nl < 0 else data[pos:nl]
        end = len(data) if nl < 0 else nl + 1
        try:
            record = json.loads(line) if line.strip() else None
        except ValueError:
            record = False
        if nl < 0:  # the last line has no newline
            if isinstance(record, dict) and "key" in record:
                add_newline = True  # a complete record cut just before its newline
            elif record is None:
                pass
            elif line.startswith(_RECORD_START) and record is False:
                break  # a partial record of ours (interrupted append): dropped below
            else:
                raise DiffcommError(f"{path}: the last line is not a diffcomm results record; this is not a "
                                    f"diffcomm results file (nothing was changed); use another --out")
        elif record is False:
            raise DiffcommError(f"{path}: line {len(records) + 1} is not a JSON record; "
                                f"this is not a diffcomm results file (or it was edited); nothing was changed")
        if record is not None:
            if not isinstance(record, dict) or "key" not in record:
                raise DiffcommError(f"{path}: line {len(records) + 1} is not a diffcomm results record; "
                                    f"nothing was changed")
            if required:
                _check_fields(record, required, path, len(records) + 1)
            records.append(record)
        good_end = end
        pos = end
    if repair and (good_end < len(data) or add_newline):
        with open(path, "r+b") as f:
            if add_newline:
                f.seek(0, os.SEEK_END)
                f.write(b"\n")
            else:
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
        self._created: list[Path] = []  # what this writer created (removed again if it wrote nothing)
        self._appended = 0

    def __enter__(self) -> ResultsWriter:
        import fcntl

        from diffcomm.checks import check_output_path

        check_output_path(self.path, "file")
        real = Path(os.path.realpath(self.path))  # the lock and the sidecar belong to the file itself
        side = sidecar_dir(real)
        if side.exists() and not side.is_dir():
            raise DiffcommError(f"{side} (the folder for saved images of {self.path}) is a file; move it away")
        # Read (and refuse a foreign file) before creating anything beside it.
        load_records(real, repair=False)
        for folder in (*reversed(real.parents), side):
            if not folder.exists():
                folder.mkdir()
                self._created.append(folder)
        if not real.exists():
            self._created.append(real)
        if not (side / "lock").exists():
            self._created.append(side / "lock")
        self._lock = open(side / "lock", "a")
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise DiffcommError(f"another run is writing {self.path}; wait for it or use another --out") from None
        try:
            load_records(real, repair=True)  # drop a partial last line before appending
            self._file = open(real, "ab")
        except BaseException:
            self.__exit__()
            raise
        return self

    def append(self, record: dict[str, Any]) -> None:
        if self._file is None:
            raise RuntimeError("ResultsWriter.append outside its context")
        line = (json.dumps(record, allow_nan=False) + "\n").encode("utf-8")
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._appended += 1

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._created and not self._appended and exc and exc[0] is not None:
            # A run that failed before its first record leaves nothing behind that it created.
            for path in reversed(self._created):
                try:
                    path.rmdir() if path.is_dir() else path.unlink()
                except OSError:
                    pass
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None


def strip_timing(record: dict[str, Any]) -> dict[str, Any]:
    """A record without the fields that differ between identical runs (:data:`TIMING_FIELDS`)."""
    return {k: v for k, v in record.items() if k not in TIMING_FIELDS}
