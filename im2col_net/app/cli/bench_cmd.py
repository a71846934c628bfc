"""``im2col-net bench``: training speed of the default model, side by side with PyTorch.

A thin shell over :mod:`im2col_net.app.bench` (the training step, the default),
:mod:`im2col_net.app.bench_inference` (``--inference``), :mod:`im2col_net.app.tta`
(``--time-to-accuracy TARGET``) and :mod:`im2col_net.distributed.bench`
(``--distributed``, under ``mpiexec -n K``): prints the report and, with ``--json FILE``,
writes the full result (written to a temporary file, then renamed).
"""

from __future__ import annotations

import json
import os
import tempfile

from . import CliError

NAME = "bench"
HELP = ("benchmark the convnet training step (and PyTorch's, when installed); also "
        "--inference, --time-to-accuracy ACC and --distributed")

# Per mode: batch size, repeats (distributed: timed steps) and warm-up when not given.
MODE_DEFAULTS = {"train": (200, 7, 2), "inference": (1000, 7, 2), "distributed": (128, 12, 3)}
# Options that only one mode reads, and that mode's flag.
MODE_OPTIONS = {"batch_sizes": "train", "epochs": "tta", "limit": "tta", "eval_every": "tta",
                "model": "distributed", "local": "distributed", "baseline": "distributed",
                "no_onnx": "inference"}
MODE_FLAGS = {"train": "the training-step benchmark (no mode flag)",
              "tta": "--time-to-accuracy", "distributed": "--distributed",
              "inference": "--inference"}


def add_arguments(parser):
    from ...models import MODEL_BUILDERS
    from .train_cmd import _non_negative_int, _positive_float, _positive_int

    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--inference", action="store_true",
                      help="benchmark prediction (eval mode, batch 1000 by default) against "
                           "PyTorch under torch.inference_mode() and onnxruntime on the "
                           "ONNX export, when installed")
    mode.add_argument("--time-to-accuracy", type=_accuracy, metavar="ACC",
                      help="train with the recipe of plain 'im2col-net train' in our engine "
                           "and in PyTorch until the test accuracy reaches ACC (e.g. 0.99); "
                           "report each one's time to it and the accuracy curve")
    mode.add_argument("--distributed", action="store_true",
                      help="the data-parallel step benchmark: run as 'mpiexec -n K "
                           "im2col-net bench --distributed' (needs mpi4py; --local: one "
                           "process without MPI)")
    parser.add_argument("--batch-size", type=_positive_int, default=None, metavar="N",
                        help="batch size (default: 200; --inference 1000; --distributed 128, "
                             "the global batch; --time-to-accuracy that of 'im2col-net "
                             "train')")
    parser.add_argument("--batch-sizes", type=batch_size_list, default=None, metavar="LIST",
                        help="also time the training step of both engines at each of these "
                             "batch sizes, e.g. 16,32,64,128,256 (one row and ratio each)")
    parser.add_argument("--repeats", type=_positive_int, default=None, metavar="N",
                        help="timed repetitions; medians are reported (default: 7; "
                             "--distributed: 12 timed steps)")
    parser.add_argument("--warmup", type=_non_negative_int, default=None, metavar="N",
                        help="untimed warm-up runs (default: 2; --distributed 3)")
    parser.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                        help="BLAS threads for im2col_net and torch.set_num_threads for "
                             "PyTorch (default: the BLAS thread count in effect)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--no-onnx", action="store_true",
                        help="with --inference: skip the onnxruntime column")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the peak-RSS subprocess")
    parser.add_argument("--quick", action="store_true",
                        help="one warm-up, two repeats, small auxiliary cases (a smoke test; "
                             "--time-to-accuracy: 256 images, one epoch)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    tta = parser.add_argument_group("with --time-to-accuracy")
    tta.add_argument("--epochs", type=_positive_int, metavar="N",
                     help="the most epochs to train, also the schedule's length (default: "
                          "that of 'im2col-net train')")
    tta.add_argument("--limit", type=_positive_int, metavar="N",
                     help="use only the first N training and test images (default: all)")
    tta.add_argument("--eval-every", type=_positive_float, metavar="EPOCHS",
                     help="epochs between test evaluations (default: 0.25)")
    dist = parser.add_argument_group("with --distributed")
    dist.add_argument("--model", choices=sorted(MODEL_BUILDERS),
                      help="model of the distributed benchmark (default: lenet5)")
    dist.add_argument("--local", action="store_true", help="one process, no MPI")
    dist.add_argument("--baseline", metavar="FILE",
                      help="an earlier --distributed --json result to compute the speed-up "
                           "and scaling efficiency against")


def batch_size_list(text):
    """``"16,32,64"`` -> ``[16, 32, 64]`` (positive, no repeats)."""
    import argparse

    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = None
    if not values or any(v < 1 for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(
            f"expected distinct positive batch sizes separated by commas, e.g. 16,32,64, "
            f"got {text!r}")
    return values


def _accuracy(text):
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected an accuracy in (0, 1], e.g. 0.99, got "
                                         f"{text!r}")
    return value


def _mode(args) -> str:
    if args.inference:
        return "inference"
    if args.time_to_accuracy is not None:
        return "tta"
    return "distributed" if args.distributed else "train"


def _check_options(args, mode) -> None:
    for key, owner in MODE_OPTIONS.items():
        value = getattr(args, key)
        if value not in (None, False) and owner != mode:
            raise CliError(f"--{key.replace('_', '-')} applies only with {MODE_FLAGS[owner]}")


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
    from ...safeio import atomic_file

    text = json.dumps(result, indent=2) + "\n"
    with atomic_file(path) as handle:
        handle.write(text.encode("utf-8"))


def run(args) -> int:
    mode = _mode(args)
    _check_options(args, mode)
    if mode == "distributed":
        return _run_distributed(args)
    if args.json is not None:
        check_json_path(args.json)
    try:
        result, text = _measure(args, mode)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    print(text, flush=True)
    _save(args, result)
    return 0


def _measure(args, mode):
    """``(result, report)`` of the chosen mode."""
    if mode == "tta":
        from ..tta import format_tta_report, run_time_to_accuracy

        if args.no_memory or args.warmup is not None or args.repeats is not None:
            raise CliError("--repeats, --warmup and --no-memory do not apply with "
                           "--time-to-accuracy")
        result = run_time_to_accuracy(
            args.time_to_accuracy, epochs=args.epochs, batch_size=args.batch_size,
            limit=args.limit, eval_every=args.eval_every,
            threads=args.threads, include_torch=not args.no_torch, quick=args.quick)
        return result, format_tta_report(result)
    batch, repeats, warmup = _sizes(args, mode)
    if mode == "inference":
        from ..bench_inference import format_inference_report, run_inference_benchmark

        result = run_inference_benchmark(batch_size=batch, repeats=repeats, warmup=warmup,
                                         threads=args.threads,
                                         include_torch=not args.no_torch,
                                         include_onnx=not args.no_onnx, quick=args.quick)
        return result, format_inference_report(result)
    from ..bench import format_report, run_benchmark

    result = run_benchmark(batch_size=batch, repeats=repeats, warmup=warmup,
                           threads=args.threads, include_torch=not args.no_torch,
                           quick=args.quick, measure_memory=not args.no_memory,
                           batch_sizes=args.batch_sizes or ())
    return result, format_report(result)


def _sizes(args, mode):
    batch, repeats, warmup = MODE_DEFAULTS[mode]
    if mode == "distributed" and args.quick:
        batch, repeats, warmup = 16, 2, 1
    return (args.batch_size if args.batch_size is not None else batch,
            args.repeats if args.repeats is not None else repeats,
            args.warmup if args.warmup is not None else warmup)


def _save(args, result) -> None:
    if args.json is None:
        return
    try:
        write_json(args.json, result)
    except OSError as exc:
        # The measurement is not lost: the JSON goes to stdout before the error line.
        print(json.dumps(result, indent=2), flush=True)
        raise CliError(f"--json {args.json}: could not be written "
                       f"({exc.strerror or exc}); the JSON result was printed above "
                       f"instead") from exc
    print(f"wrote {args.json}")


def _run_distributed(args) -> int:
    """The distributed step benchmark on every rank of ``mpiexec`` (rank 0 reports)."""
    from ...distributed import DistributedError, mpi_communicator  # mpi4py loads only here
    from ...distributed.bench import compare, format_report, run_distributed_benchmark

    if args.no_torch or args.no_memory or args.threads is not None:
        raise CliError("--no-torch, --no-memory and --threads do not apply with "
                       "--distributed (set OPENBLAS_NUM_THREADS per rank)")
    batch, steps, warmup = _sizes(args, "distributed")
    model = args.model or "lenet5"

    def measure(comm):
        writer = comm is None or comm.is_writer
        baseline = None
        if writer:
            if args.json is not None:
                check_json_path(args.json)
            if args.baseline is not None:
                baseline = _read_baseline(args.baseline)
        result = run_distributed_benchmark(model, batch, steps=steps, warmup=warmup,
                                           communicator=comm)
        if not writer:
            return 0
        if baseline is not None:
            try:
                result = compare(result, baseline)
            except (KeyError, TypeError) as exc:
                raise CliError(f"--baseline {args.baseline}: not a --distributed result "
                               f"({type(exc).__name__}: {exc})") from exc
        print(format_report(result), flush=True)
        _save(args, result)
        return 0

    if args.local:
        try:
            return measure(None)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
    try:
        comm = mpi_communicator(announce=False)
    except DistributedError as exc:
        raise CliError(f"{exc}; or run one process with --local") from exc
    # A failure on any rank ends every rank (exit 2 for usage errors), never a hang.
    return comm.run_guarded(lambda: measure(comm), expected=(CliError, ValueError))


def _read_baseline(path):
    try:
        with open(path, encoding="utf-8") as handle:
            baseline = json.load(handle)
    except OSError as exc:
        raise CliError(f"--baseline {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise CliError(f"--baseline {path}: not JSON ({exc})") from exc
    if not isinstance(baseline, dict):
        raise CliError(f"--baseline {path}: expected a JSON object, got "
                       f"{type(baseline).__name__}")
    return baseline
