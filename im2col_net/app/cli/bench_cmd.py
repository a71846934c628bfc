"""``im2col-net bench``: training speed of the default model, side by side with PyTorch.

A thin shell over :func:`im2col_net.app.bench.run_benchmark`: prints the tables and, with
``--json FILE``, writes the full result (written to a temporary file, then renamed).
"""

from __future__ import annotations

import json
import os
import tempfile

from . import CliError

NAME = "bench"
HELP = "benchmark the convnet training step (and PyTorch's, when installed)"


def add_arguments(parser):
    from .train_cmd import _non_negative_int, _positive_int

    parser.add_argument("--batch-size", type=_positive_int, default=200, metavar="N",
                        help="batch size (default: 200)")
    parser.add_argument("--repeats", type=_positive_int, default=7, metavar="N",
                        help="timed repetitions; medians are reported (default: 7)")
    parser.add_argument("--warmup", type=_non_negative_int, default=2, metavar="N",
                        help="untimed warm-up runs (default: 2)")
    parser.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                        help="BLAS threads for im2col_net and torch.set_num_threads for "
                             "PyTorch (default: the BLAS thread count in effect)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the peak-RSS subprocess")
    parser.add_argument("--quick", action="store_true",
                        help="one warm-up, two repeats, small auxiliary cases (a smoke test)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def check_json_path(path: str) -> None:
    """CliError unless ``path`` can be written: checked before measuring, so a typo in
    ``--json`` does not cost the benchmark's minutes. Probes with a temporary file in the
    target directory (removed again), which also catches a read-only directory or file
    system."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CliError(f"--json {path}: is a directory; give a file name")
    if not os.path.isdir(directory):
        what = "is not a directory" if os.path.exists(directory) else "does not exist"
        raise CliError(f"--json {path}: {directory} {what}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".bench-", suffix=".probe", dir=directory)
    except OSError as exc:
        raise CliError(f"--json {path}: cannot write into {directory}: "
                       f"{exc.strerror or exc}") from exc
    os.close(fd)
    os.unlink(probe)


def write_json(path: str, result: dict) -> None:
    """Write ``result`` to ``path`` atomically: a temporary file in the same directory,
    flushed to disk, then renamed over ``path`` (which is never left half-written)."""
    directory = os.path.dirname(os.path.abspath(path))
    text = json.dumps(result, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".bench-", suffix=".json", dir=directory)
    try:
        # mkstemp creates the file private (0600); give it the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run(args) -> int:
    from ..bench import format_report, run_benchmark

    if args.json is not None:
        check_json_path(args.json)
    try:
        result = run_benchmark(batch_size=args.batch_size, repeats=args.repeats,
                               warmup=args.warmup, threads=args.threads,
                               include_torch=not args.no_torch, quick=args.quick,
                               measure_memory=not args.no_memory)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    print(format_report(result), flush=True)
    if args.json is not None:
        try:
            write_json(args.json, result)
        except OSError as exc:
            # The measurement is not lost: the JSON goes to stdout before the error line.
            print(json.dumps(result, indent=2), flush=True)
            raise CliError(f"--json {args.json}: could not be written "
                           f"({exc.strerror or exc}); the JSON result was printed above "
                           f"instead") from exc
        print(f"wrote {args.json}")
    return 0
