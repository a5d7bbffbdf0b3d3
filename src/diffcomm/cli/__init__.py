"""Command-line interface: ``diffcomm <command> ...``.

Each sub-command lives in its own module of this package and exposes
``register(subparsers) -> None``; the parser it adds sets ``func`` (called with the parsed
arguments, returning an exit code). User errors are :class:`diffcomm.DiffcommError` and are
printed as one line (no traceback) with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from diffcomm import __version__
from diffcomm.errors import DiffcommError

# Sub-command modules, in the order they appear in --help. A module that fails to import (an
# optional dependency missing) is skipped with a note, so one broken extra never hides the rest.
COMMAND_MODULES = [
    "diffcomm.cli.demo",
    "diffcomm.cli.transmit",
    "diffcomm.cli.receivers",
    "diffcomm.cli.data",
    "diffcomm.cli.train",
    "diffcomm.cli.sample",
    "diffcomm.cli.zoo",
    "diffcomm.cli.eval",
    "diffcomm.cli.plot",
    "diffcomm.cli.report",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffcomm",
        description="Generative semantic communication with diffusion models.",
    )
    parser.add_argument("--version", action="version", version=f"diffcomm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("diffcomm.cli."):
                continue  # command not written yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except DiffcommError as exc:
        print(f"diffcomm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"diffcomm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
