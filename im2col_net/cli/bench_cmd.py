"""``im2col-net bench``: training speed of the default model, side by side with PyTorch.

A thin shell over :func:`im2col_net.bench.run_benchmark`: prints the tables and, with
``--json FILE``, writes the full result (written to a temporary file, then renamed).
"""

from __future__ import annotations

import json
import os
import tempfile

from . import CliError

NAME = "bench"
HELP = "Benchmark the convnet training step (and PyTorch's, when installed)."


def add_arguments(parser):
    parser.add_argument("--batch-size", type=int, default=200, help="batch size (default 200)")
    parser.add_argument("--repeats", type=int, default=7,
                        help="timed repetitions; medians are reported (default 7)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up runs (default 2)")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS threads for im2col_net and torch.set_num_threads for "
                             "PyTorch (default: the BLAS thread count in effect)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the peak-RSS subprocess")
    parser.add_argument("--quick", action="store_true",
                        help="one warm-up, two repeats, small auxiliary cases (a smoke test)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def write_json(path: str, result: dict) -> None:
    """Write ``result`` to ``path`` atomically (temporary file in the same directory)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".bench-", suffix=".json", dir=directory)
    try:
        # mkstemp creates the file private (0600); give it the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run(args) -> int:
    from ..bench import format_report, run_benchmark

    if args.json is not None:
        directory = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(directory):
            raise CliError(f"--json: directory {directory!r} does not exist")
    try:
        result = run_benchmark(batch_size=args.batch_size, repeats=args.repeats,
                               warmup=args.warmup, threads=args.threads,
                               include_torch=not args.no_torch, quick=args.quick,
                               measure_memory=not args.no_memory)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    print(format_report(result))
    if args.json is not None:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0
