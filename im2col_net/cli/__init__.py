"""The ``im2col-net`` command: a thin shell over the library.

Each sub-command lives in its own module exposing ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int`` (the exit code); register it in
``COMMANDS`` below.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Module names (relative to this package) of the sub-commands, in help order.
COMMANDS = [
    "train_cmd",
    "evaluate_cmd",
    "predict_cmd",
    "plot_cmd",
    "gradcheck_cmd",
    "summary_cmd",
    "bench_cmd",
    "export_cmd", "import_cmd",
]


class CliError(Exception):
    """A user error: printed as ``im2col-net: error: ...`` with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    """The ``im2col-net`` argument parser with one sub-command per module in COMMANDS."""
    parser = argparse.ArgumentParser(
        prog="im2col-net",
        description="A NumPy CNN engine: train, evaluate, benchmark and gradient-check.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in COMMANDS:
        module = importlib.import_module(f".{module_name}", __name__)
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    """Run ``im2col-net`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except CliError as exc:
        parser.exit(2, f"im2col-net: error: {exc}\n")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
