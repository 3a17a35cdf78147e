"""The `spacemoc` command line: one sub-command per stage, usable without Snakemake.

Each module in this package that defines ``register(subparsers)`` adds its sub-commands; modules
import their heavy dependencies (torch, OCAtari) inside the command functions, so `spacemoc --help`
stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from spacemoc import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spacemoc",
        description="SPACE+MOC unsupervised object discovery for Atari: every workflow stage.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (2: bad input, said in one line on stderr)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a usage error argparse has reported
        return int(stop.code or 0)
    try:
        return args.func(args) or 0
    except ValueError as err:  # bad input: one clear line, no traceback
        print(f"spacemoc {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
