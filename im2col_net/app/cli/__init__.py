"""The ``im2col-net`` command: a thin shell over the library.

Each sub-command lives in its own module exposing ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int`` (the exit code); register it in
``COMMANDS`` below.

Error policy (see :func:`main`): every failure ends in one line on stderr,
``im2col-net: error: ...``, never a traceback. Exit codes: 0 success; 1 a command's own
"check failed" result (e.g. gradcheck) or an internal error (a bug: the line names the
exception type); 2 a user, input or environment error (bad arguments, a file that cannot
be read or written, a full disk, out of memory, a model that does not fit the data);
130 interrupted (Ctrl-C). ``--debug`` (or ``IM2COL_NET_DEBUG=1``) re-raises instead, so
developers get the traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
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

DEBUG_ENV = "IM2COL_NET_DEBUG"
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A user error: printed as ``im2col-net: error: ...`` with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    """The ``im2col-net`` argument parser with one sub-command per module in COMMANDS."""
    parser = argparse.ArgumentParser(
        prog="im2col-net",
        description="a NumPy CNN engine: train, evaluate, predict, plot, gradient-check, "
                    "summarise and benchmark",
    )
    from ... import __version__

    parser.add_argument("--version", action="version", version=f"im2col-net {__version__}",
                        help="show the version and exit")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of an error instead of one line "
                             f"(also: ${DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in COMMANDS:
        module = importlib.import_module(f".{module_name}", __name__)
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def one_line(text) -> str:
    """``text`` with its lines joined by "; " (an error report is a single line)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return "; ".join(lines)


def os_error_message(exc: OSError) -> str:
    """``PATH: reason`` for an OSError, else its text; for a rename (two paths), the
    destination, which is the path the user named (the source is a temporary file)."""
    reason = exc.strerror or (errno.errorcode.get(exc.errno, "") if exc.errno else "") \
        or str(exc) or type(exc).__name__
    if exc.errno == errno.EFBIG:
        reason += " (the file size limit was reached)"
    if exc.filename2 is not None:
        return f"{exc.filename2}: {reason}"
    if exc.filename is not None:
        return f"{exc.filename}: {reason}"
    return reason


def describe_error(exc: BaseException) -> tuple[str, int]:
    """The one-line message and exit code for an exception that ended a command."""
    if isinstance(exc, CliError):
        return one_line(exc), EXIT_USER_ERROR
    if isinstance(exc, OSError):
        return one_line(os_error_message(exc)), EXIT_USER_ERROR
    if isinstance(exc, MemoryError):
        detail = f" ({one_line(exc)})" if str(exc) else ""
        return (f"out of memory{detail}; try a smaller --batch-size or --limit (fewer images "
                f"per step) or a smaller model"), EXIT_USER_ERROR
    if isinstance(exc, RecursionError):
        return (f"maximum recursion depth exceeded ({one_line(exc)}); the model is nested "
                f"too deeply"), EXIT_USER_ERROR
    if isinstance(exc, ValueError):
        # The library reports bad input as ValueError (DataError, ModelFileError, ...).
        return one_line(exc), EXIT_USER_ERROR
    return (f"internal error: {type(exc).__name__}: {one_line(exc)} (run with --debug for "
            f"the traceback)"), EXIT_INTERNAL_ERROR


def _debug_requested(args) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def main(argv=None) -> int:
    """Run ``im2col-net`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Errors leave through ``SystemExit`` with the code of :func:`describe_error` after one
    ``im2col-net: error: ...`` line on stderr (re-raised as they are with ``--debug``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if _debug_requested(args):
            raise
        message, code = describe_error(exc)
        try:
            sys.stdout.flush()
        except OSError:  # stdout itself may be what failed (a closed pipe, a full disk)
            pass
        parser.exit(code, f"im2col-net: error: {message}\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
