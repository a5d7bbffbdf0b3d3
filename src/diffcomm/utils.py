"""Small shared helpers: atomic file writes, seeding, git revision, safetensors I/O, the package's modules."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + ``os.replace``).

    The path is checked first (:func:`diffcomm.checks.check_output_path`), and an operating-system
    error (disk full, permissions) is a one-line :class:`~diffcomm.errors.DiffcommError`; either way
    nothing is left behind: the previous file, if any, is untouched.
    """
    from diffcomm.checks import check_output_path, describe_os_error
    from diffcomm.errors import DiffcommError

    path = Path(check_output_path(path, "file", what="output"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise DiffcommError(describe_os_error(exc)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results and weights are meant to be shared
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise DiffcommError(describe_os_error(exc)) from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                            metadata: dict[str, str] | None = None) -> None:
    """Save tensors as safetensors atomically."""
    from safetensors.torch import save

    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, data)


def make_generator(seed: int | torch.Generator | None) -> torch.Generator | None:
    """Turn a seed into a CPU ``torch.Generator`` (``None`` stays ``None``)."""
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def git_revision() -> str:
    """Short git revision of the source tree, or ``"unknown"``."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"

def format_table(header: list[str], rows: list[list[str]], wrap: dict[int, int] | None = None) -> str:
    """Left-aligned columns separated by two spaces, with a rule under the header.

    ``wrap``: column index -> width; longer cells of those columns continue on the next lines
    (broken at spaces) instead of being cut.

    >>> print(format_table(["a", "b"], [["1", "22"]]))
    a  b
    -  --
    1  22
    """
    import textwrap

    lines_of_rows = []
    for r in rows:
        cells = [textwrap.wrap(str(c), (wrap or {}).get(i, 10 ** 9), break_on_hyphens=False) or [""]
                 for i, c in enumerate(r)]
        height = max(len(c) for c in cells)
        lines_of_rows.extend([[c[j] if j < len(c) else "" for c in cells] for j in range(height)])
    cells = [list(map(str, header))] + lines_of_rows
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def public_modules() -> list[str]:
    """Every module of the package except the ``__main__`` entry points (importing those runs the CLI):
    the API reference's pages (docs/conf.py) and the modules whose doctests the suite runs.

    Example:
        >>> mods = public_modules()
        >>> mods[0], "diffcomm.link" in mods, any(m.endswith("__main__") for m in mods)
        ('diffcomm', True, False)
    """
    import pkgutil

    import diffcomm

    return ["diffcomm"] + sorted(info.name for info in pkgutil.walk_packages(diffcomm.__path__, prefix="diffcomm.")
                                 if not info.name.endswith("__main__"))
