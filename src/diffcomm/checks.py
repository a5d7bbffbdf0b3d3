"""Shared input checks: output paths, seeds, config files and config sections.

Every command that writes, every config that is read and every seed that is taken goes through
one function here, so a bad input gets the same one-line :class:`~diffcomm.errors.DiffcommError`
(the CLI prints it and exits 2) wherever it enters, *before any work* and before anything is
written:

- :func:`check_output_path`: the file or folder a command will write can be written (not an
  existing folder where a file is expected, nor a file where a folder is, nor below a file, nor
  in a read-only folder).
- :func:`check_seed`: an integer in ``[0, 2**63)`` (what every ``torch.Generator`` accepts and
  what :func:`diffcomm.eval.grid.derive_seed` produces).
- :func:`read_config_file` / :func:`read_json_file`: TOML, YAML or JSON files; a missing,
  binary, non-UTF-8 or unparsable file is one line naming the file.
- :func:`dataclass_from_dict`: one schema for config sections, taken from a dataclass (field
  names, annotated types, and ``metadata`` bounds): unknown keys (a misspelt key would otherwise
  silently fall back to its default), wrong types (a string where a number goes), NaN/inf, and
  values outside their range (zero or negative sizes) are rejected with the section's name.

Example:
    >>> check_seed(7)
    7
    >>> check_seed(2 ** 64)
    Traceback (most recent call last):
    ...
    diffcomm.errors.DiffcommError: --seed must be an integer in [0, 2**63), got 18446744073709551616
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from pathlib import Path
from typing import Any

from diffcomm.errors import DiffcommError

SEED_LIMIT = 2 ** 63


# ---------------------------------------------------------------------------------------------
# output paths


def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _can_create_in(folder: Path) -> bool:
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_output_path(path: str | os.PathLike, kind: str = "file", what: str = "--out") -> Path:
    """Check that ``path`` can be written as a ``kind`` (``"file"`` or ``"dir"``); return it.

    Nothing is created. Raises a one-line :class:`DiffcommError` when ``path`` is an existing
    folder and a file is expected (or the reverse), when a parent is a file, or when the nearest
    existing folder is not writable (a folder to be created must be creatable there).
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    text = os.fspath(path)
    if not str(text).strip():
        raise DiffcommError(f"{what} is empty; give a path")
    if "\x00" in str(text):
        raise DiffcommError(f"{what} contains a NUL character")
    path = Path(path)
    target = path.resolve() if path.is_symlink() else path
    if kind == "file":
        if target.is_dir():
            raise DiffcommError(f"{what} {path} is an existing folder; give a file path")
        if target.exists() and not target.is_file():
            raise DiffcommError(f"{what} {path} exists and is not a regular file")
    elif target.exists() and not target.is_dir():
        raise DiffcommError(f"{what} {path} is an existing file; give a folder path")
    existing = _first_existing(target.parent if kind == "file" else target)
    if not existing.is_dir():
        raise DiffcommError(f"{what} {path}: {existing} is a file, so nothing can be created below it")
    # The folder itself (kind "dir", existing) or the folder the new file/folders go into: try to
    # create an anonymous file there (os.access would say yes to root on a read-only file system).
    if not _can_create_in(existing):
        raise DiffcommError(f"{what} {path}: folder {existing} is not writable; choose another location")
    if kind == "file" and target.exists() and not os.access(target, os.W_OK):
        raise DiffcommError(f"{what} {path} is not writable")
    return path


def describe_os_error(exc: OSError) -> str:
    """One line for an ``OSError``: its reason and the file it names."""
    reason = exc.strerror or type(exc).__name__
    name = f" {exc.filename}" if getattr(exc, "filename", None) else ""
    return f"cannot write{name}: {reason}"


# ---------------------------------------------------------------------------------------------
# seeds


def check_seed(seed: Any, what: str = "--seed") -> int:
    """``seed`` as an ``int`` in ``[0, 2**63)``; anything else is a one-line DiffcommError."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        if isinstance(seed, str):
            try:
                seed = int(seed.strip())
            except ValueError:
                raise DiffcommError(f"{what} must be an integer in [0, 2**63), got {seed!r}") from None
        elif hasattr(seed, "__index__") and not isinstance(seed, bool):
            seed = int(seed.__index__())
        else:
            raise DiffcommError(f"{what} must be an integer in [0, 2**63), got {seed!r}")
    if not 0 <= seed < SEED_LIMIT:
        raise DiffcommError(f"{what} must be an integer in [0, 2**63), got {seed}")
    return int(seed)


# ---------------------------------------------------------------------------------------------
# config files


def read_text_file(path: str | os.PathLike, what: str = "config file", limit: int = 16 * 2 ** 20) -> str:
    """The UTF-8 text of a small file; missing, binary, non-UTF-8 or huge files raise DiffcommError."""
    path = Path(path)
    if not path.exists():
        raise DiffcommError(f"{what} {path} not found")
    if not path.is_file():
        raise DiffcommError(f"{what} {path} is not a file")
    try:
        size = path.stat().st_size
        if size > limit:
            raise DiffcommError(f"{what} {path} is {size:,} bytes; a config is a small text file")
        data = path.read_bytes()
    except OSError as exc:
        raise DiffcommError(f"cannot read {what} {path}: {exc.strerror or type(exc).__name__}") from None
    if b"\x00" in data:
        raise DiffcommError(f"{what} {path} is a binary file, not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DiffcommError(f"{what} {path} is not UTF-8 text (bad byte at offset {exc.start})") from None
    return text.removeprefix("\ufeff")


def read_config_file(path: str | os.PathLike, formats: tuple[str, ...] = (".toml", ".yaml", ".yml", ".json"),
                     what: str = "config") -> dict[str, Any]:
    """Read a TOML / YAML / JSON config file into a dict (one-line DiffcommError otherwise)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in formats:
        raise DiffcommError(f"{what} {path.name}: use a {', '.join(formats)} file")
    text = read_text_file(path, f"{what} file")
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - tomllib/yaml/json errors: a user error here
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DiffcommError(f"cannot parse {what} {path}: {first}") from None
    if not isinstance(data, dict):
        raise DiffcommError(f"{what} {path} must contain a table/mapping at the top level")
    return data


def read_json_file(path: str | os.PathLike, what: str = "JSON file") -> dict[str, Any]:
    """A JSON object from ``path``; missing, unreadable or malformed files raise DiffcommError."""
    path = Path(path)
    text = read_text_file(path, what)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DiffcommError(f"{what} {path} is not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DiffcommError(f"{what} {path} must hold a JSON object, got {type(data).__name__}")
    return data


# ---------------------------------------------------------------------------------------------
# config sections from dataclasses


def bounds(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False, choices: tuple | None = None) -> dict[str, Any]:
    """Field metadata for :func:`dataclass_from_dict`: ``field(default=1, metadata=bounds(1))``."""
    return {"low": low, "high": high, "low_open": low_open, "high_open": high_open, "choices": choices}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _check_scalar(value: Any, tp: Any, where: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise DiffcommError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and math.isfinite(value):
                return int(value)
            raise DiffcommError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DiffcommError(f"{where} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise DiffcommError(f"{where} must be a finite number, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise DiffcommError(f"{where} must be a string, got {value!r}")
        return value
    return value


def _num(v: float) -> str:
    if v == SEED_LIMIT:
        return "2**63"
    return str(v) if isinstance(v, int) else f"{v:g}"


def _check_bounds(value: Any, meta: dict[str, Any], where: str) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise DiffcommError(f"{where} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value < low or (meta.get("low_open") and value == low)):
        op = ">" if meta.get("low_open") else ">="
        raise DiffcommError(f"{where} must be {op} {_num(low)}, got {value!r}")
    if high is not None and (value > high or (meta.get("high_open") and value == high)):
        op = "<" if meta.get("high_open") else "<="
        raise DiffcommError(f"{where} must be {op} {_num(high)}, got {value!r}")


def check_value(value: Any, tp: Any, meta: dict[str, Any], where: str) -> Any:
    """``value`` checked against the annotation ``tp`` (scalars, ``tuple[T, ...]``, ``list[T]``)."""
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise DiffcommError(f"{where} must be a list, got {value!r}")
        args = [a for a in typing.get_args(tp) if a is not Ellipsis] or [Any]
        items = []
        for i, item in enumerate(value):
            item = _check_scalar(item, args[0], f"{where}[{i}]")
            _check_bounds(item, meta, f"{where}[{i}]")
            items.append(item)
        return tuple(items) if origin is tuple else items
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        tp = next(a for a in args if a is not type(None))
    value = _check_scalar(value, tp, where)
    _check_bounds(value, meta, where)
    return value


def dataclass_from_dict(cls: type, data: Any, section: str) -> Any:
    """Build dataclass ``cls`` from a config section, validating names, types and bounds.

    ``section`` names the section in messages (e.g. ``"[model]"``). Field bounds come from
    ``field(metadata=bounds(...))``; types from the annotations.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DiffcommError(f"{section} must be a table of settings, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        raise DiffcommError(f"unknown {section} key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                            f"valid keys: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        values[name] = check_value(value, hints[name], dict(fields[name].metadata), f"{section} {name}")
    return cls(**values)


def check_section_keys(config: dict[str, Any], allowed: dict[str, Any], what: str) -> None:
    """Top-level sections/keys of a config: only ``allowed`` (name -> expected type)."""
    unknown = sorted(set(map(str, config)) - set(allowed))
    if unknown:
        raise DiffcommError(f"unknown {what} {', '.join(unknown)}; expected {', '.join(sorted(allowed))}")
    for name, tp in allowed.items():
        if name in config and not isinstance(config[name], tp):
            kind = "a table" if tp is dict else _type_name(tp)
            raise DiffcommError(f"{what} {name} must be {kind}, got {config[name]!r}")


__all__ = ["SEED_LIMIT", "bounds", "check_output_path", "check_seed", "check_section_keys", "check_value",
           "dataclass_from_dict", "describe_os_error", "read_config_file", "read_json_file", "read_text_file"]
