"""Command-line interface: ``diffcomm <command> ...``.

Each sub-command lives in its own module of this package and exposes
``register(subparsers) -> None``; the parser it adds sets ``func`` (called with the parsed
arguments, returning an exit code). User errors are :class:`diffcomm.DiffcommError` and are
printed as one line (no traceback) with exit status 2; so are command-line syntax errors
(:class:`OneLineParser`) and operating-system errors such as a full disk or a folder that is not
writable. Checks every command shares run here once: ``--seed`` (:func:`diffcomm.checks.check_seed`).
A closed standard output (``diffcomm data info --json | head -c 10``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
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
    "diffcomm.cli.tune",
    "diffcomm.cli.plot",
    "diffcomm.cli.report",
    "diffcomm.cli.scenario",
]


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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


# What each writing command's --out is: one output-path check for all of them, before any work.
OUT_KINDS = {"transmit": "file", "eval": "file", "tune": "file", "demo": "dir", "train": "dir", "sample": "dir",
             "plot": "dir", "report": "dir"}


def _check_common(args: argparse.Namespace) -> None:
    """The checks every command shares, before any work: --seed and the --out path."""
    from diffcomm.checks import check_output_path, check_seed

    if getattr(args, "seed", None) is not None:
        args.seed = check_seed(args.seed)
    kind = OUT_KINDS.get(args.command)
    if kind and getattr(args, "out", None) is not None:
        check_output_path(args.out, kind)


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error, already printed on one line: exit status 2
        if exc.code in (0, None):
            raise  # --help / --version exit as argparse does
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        _check_common(args)
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        return code
    except DiffcommError as exc:
        print(f"diffcomm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _quiet_stdout()  # the reader went away (e.g. `| head`): not an error of ours
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by a broken pipe
    except OSError as exc:  # disk full, permissions, ...: the user's to fix, one line
        from diffcomm.checks import describe_os_error

        print(f"diffcomm {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"diffcomm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
