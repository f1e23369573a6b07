"""The ``testbed`` command: a thin dispatcher over one module per subcommand.

Each module in ``COMMAND_MODULES`` defines ``register(subparsers)``, which adds its parser
and sets ``func`` (``args -> int`` exit status). Heavy imports (torch, PyAV, Mininet) stay
inside the command functions so ``testbed --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = [
    "testbed.commands.prepare",
    "testbed.commands.serve",
    "testbed.commands.traces",
    "testbed.commands.run",
    "testbed.commands.compare",
    "testbed.commands.simulate",
    "testbed.commands.codec",
]


class UserError(Exception):
    """An error caused by input (config, file, flag): printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="testbed",
        description="PromptBed: emulate short-video streaming with real players over "
        "trace-driven links, and compare preloading strategies.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"testbed {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"testbed {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # As ``python -m testbed.cli`` this file is ``__main__``, and the commands raise
    # ``testbed.cli.UserError``, a different class: run the imported module's main.
    from testbed.cli import main as _main

    sys.exit(_main())
