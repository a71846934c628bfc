"""``im2col-net train``: train a named model on MNIST or Fashion-MNIST.

Defaults (plain ``im2col-net train``): the ``convnet`` model on MNIST, Adam with lr 1e-3
following a cosine decay over the epochs, batch 128, seed 0. The run directory gets
``metrics.jsonl``, ``checkpoint.npz`` (every epoch, and on Ctrl-C) and ``model.npz``; the
last line printed states the test accuracy and the wall time.

``--resume --out DIR`` continues the run in DIR with the settings saved in its
checkpoint; only ``--epochs`` (to extend the run), ``--data-dir`` and the display options
may be given anew. A directory already holding a run's files is refused unless
``--resume`` or ``--overwrite``; one in use by another trainer is refused (it is locked).

Exit codes: 0 done; 2 any error, printed as one line (bad arguments or settings, a run
directory that is busy, holds another run or is a file, damaged checkpoint, training
diverged to NaN/inf, a file that cannot be written); 130 after Ctrl-C (SIGINT), 143 after
SIGTERM, both with a checkpoint of the last completed update to resume from.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
import warnings

import numpy as np

from . import CliError

NAME = "train"
HELP = "train a model (default: the convnet on MNIST) and save it"

# Settings a run is made of; None on the command line means "default" (or, with
# --resume, "as saved").
DEFAULTS = {
    "dataset": "mnist",
    "model": "convnet",
    "epochs": 4,
    "batch_size": 128,
    "optimizer": "adam",
    "lr": None,          # None: the optimizer's own default
    "schedule": "cosine",
    "seed": 0,
    "limit": None,
    "dtype": "float32",
}
# Command-line conveniences: plain "--optimizer sgd" means SGD with Nesterov momentum at a
# usable rate (torch's 1e-3 without momentum barely moves in a few epochs).
DEFAULT_LR = {"adam": 1e-3, "adamw": 1e-3, "sgd": 0.05}
OPTIMIZER_OPTIONS = {"sgd": {"momentum": 0.9, "nesterov": True}}
# Arguments the command supplies to schedules that need more than lr and epochs.
SCHEDULE_OPTIONS = {
    "step": lambda epochs: {"step_size": max(1, epochs // 3), "gamma": 0.1},
    "exponential": lambda epochs: {"gamma": 0.7},
}
# May differ from the saved run on --resume.
RESUME_OVERRIDABLE = ("epochs",)


def _positive_int(text):
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text):
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _positive_float(text):
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def schedule_names():
    from ..optim import SCHEDULES

    return [name for name in SCHEDULES if not name.endswith("table")]


def build_schedule(name, lr, epochs):
    """The schedule ``name`` with this command's extra arguments (SCHEDULE_OPTIONS)."""
    from ..optim import make_schedule

    base = name[len("warmup-"):] if name.startswith("warmup-") else name
    extra = SCHEDULE_OPTIONS.get(base, lambda epochs: {})(epochs)
    return make_schedule(name, lr, epochs, **extra)


def add_arguments(parser):
    from ..datasets import DATASET_NAMES
    from ..models import MODEL_BUILDERS
    from ..optim import OPTIMIZERS

    d = DEFAULTS
    parser.add_argument("--dataset", choices=list(DATASET_NAMES),
                        help=f"training data (default: {d['dataset']})")
    parser.add_argument("--model", choices=sorted(MODEL_BUILDERS),
                        help=f"architecture (default: {d['model']})")
    parser.add_argument("--epochs", type=_positive_int, metavar="N",
                        help=f"passes over the training set (default: {d['epochs']})")
    parser.add_argument("--batch-size", type=_positive_int, metavar="N",
                        help=f"images per update (default: {d['batch_size']})")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS),
                        help=f"update rule (default: {d['optimizer']}; sgd means Nesterov "
                             "momentum 0.9)")
    parser.add_argument("--lr", type=_positive_float, metavar="X",
                        help="initial learning rate (default: 1e-3 for adam/adamw, 0.05 for "
                             "sgd, else the optimizer's default)")
    parser.add_argument("--schedule", choices=schedule_names(),
                        help="learning rate over the epochs: step divides it by 10 every "
                             "epochs/3, exponential multiplies it by 0.7 per epoch, warmup-* "
                             f"ramp up over the first epoch (default: {d['schedule']})")
    parser.add_argument("--seed", type=_non_negative_int, metavar="N",
                        help=f"seed of initialisation and shuffling (default: {d['seed']})")
    parser.add_argument("--out", metavar="DIR",
                        help="run directory (default: runs/<dataset>-<model>-<time>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in an --out holding a run: delete its checkpoint, "
                             "model and metrics log first")
    parser.add_argument("--limit", type=_positive_int, metavar="N",
                        help="use only the first N training and the first N test images")
    parser.add_argument("--data-dir", metavar="DIR", help="where to look for the dataset")
    parser.add_argument("--dtype", choices=["float32", "float64"],
                        help=f"parameter and compute dtype (default: {d['dtype']})")
    parser.add_argument("--log-every", type=_positive_int, default=50, metavar="N",
                        help="updates between progress lines / log records (default: 50)")
    parser.add_argument("--progress", choices=["auto", "bar", "lines", "none"], default="auto",
                        help="progress display (default: a bar on a terminal, else lines)")
    parser.add_argument("--plot", action="store_true",
                        help="at the end, draw the run's PNG pictures as 'im2col-net plot' "
                             "does (needs matplotlib)")
    group = parser.add_argument_group("data-parallel training (under mpiexec; the mpi extra)")
    group.add_argument("--distributed", action="store_true",
                       help="train data-parallel over the ranks of 'mpiexec -n K'; "
                            "--batch-size is the global batch (needs --out)")
    from ..distributed import DEFAULT_TIMEOUT  # MPI-free; mpi4py loads only when used

    group.add_argument("--timeout", type=_positive_float, default=DEFAULT_TIMEOUT,
                       metavar="SECONDS",
                       help="with --distributed: how long a rank waits for the others in one "
                            f"step before every rank stops with an error (default: "
                            f"{DEFAULT_TIMEOUT:g})")
    group.add_argument("--sync-bn", action="store_true",
                       help="with --distributed: batch norm with the statistics of the whole "
                            "global batch (default: each rank's own shard)")


def _resolve_settings(args, saved):
    """Merge command-line values with the saved run (resume) or the defaults."""
    settings = {}
    for key, default in DEFAULTS.items():
        given = getattr(args, key)
        if saved is not None and key in saved:
            if given is not None and given != saved[key] and key not in RESUME_OVERRIDABLE:
                raise CliError(f"--{key.replace('_', '-')} {given} differs from the run being "
                               f"resumed ({saved[key]}); drop it or start a new --out")
            settings[key] = given if given is not None else saved[key]
        else:
            settings[key] = given if given is not None else default
    if settings["lr"] is None:
        settings["lr"] = DEFAULT_LR.get(settings["optimizer"])
    return settings


def _check_saved_settings(saved, path):
    """The saved settings must be ones the command line could have given."""
    from ..datasets import DATASET_NAMES
    from ..models import MODEL_BUILDERS
    from ..optim import OPTIMIZERS

    if not isinstance(saved, dict):
        raise CliError(f"{path}: the saved settings are not an object; the checkpoint is "
                       f"damaged")
    choices = {"dataset": DATASET_NAMES, "model": MODEL_BUILDERS, "optimizer": OPTIMIZERS,
               "schedule": schedule_names(), "dtype": ("float32", "float64")}

    def is_int(value, low):
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    for key, value in saved.items():
        if key in choices:
            good = isinstance(value, str) and value in choices[key]
        elif key in ("epochs", "batch_size"):
            good = is_int(value, 1)
        elif key == "seed":
            good = is_int(value, 0)
        elif key == "limit":
            good = value is None or is_int(value, 1)
        elif key == "lr":
            good = value is None or (isinstance(value, (int, float))
                                     and not isinstance(value, bool)
                                     and math.isfinite(value) and value > 0)
        else:
            good = True  # settings of newer versions are ignored
        if not good:
            expected = (f"one of {sorted(choices[key])}" if key in choices
                        else "a valid value")
            raise CliError(f"{path}: saved setting {key} = {value!r} is not {expected}; the "
                           f"checkpoint is damaged or from another version")


def _saved_settings(out_dir):
    from ..training import CHECKPOINT_NAME, CheckpointError, load_checkpoint

    path = os.path.join(out_dir, CHECKPOINT_NAME)
    if not os.path.exists(path):
        raise CliError(f"--resume: no checkpoint to resume in {out_dir} ({path} missing)")
    try:
        meta = load_checkpoint(path).run.get("meta")
    except CheckpointError as exc:
        raise CliError(str(exc)) from exc
    if not isinstance(meta, dict) or "settings" not in meta:
        raise CliError(f"{path}: not written by 'im2col-net train'; resume it with the "
                       f"library's fit(resume=True)")
    _check_saved_settings(meta["settings"], path)
    return meta["settings"]


def _prepare_out_dir(out_dir):
    """Create the run directory (a clear error if it is a file or cannot be made)."""
    from ..training.rundir import make_run_dir

    try:
        make_run_dir(out_dir, owner="--out")
    except OSError as exc:
        raise CliError(str(exc)) from exc


@contextlib.contextmanager
def _locked(out_dir):
    """Hold the run directory's lock, taken before any data is loaded."""
    from ..training import RunDirLocked, lock_run_dir

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(lock_run_dir(out_dir))
        except RunDirLocked as exc:
            raise CliError(str(exc)) from exc
        except OSError as exc:
            raise CliError(f"cannot lock the run directory {out_dir}: {exc}") from exc
        yield


def run(args) -> int:
    started = time.perf_counter()
    if not args.distributed:
        if args.sync_bn:
            raise CliError("--sync-bn needs --distributed")
        return _run(args, None, started)
    if not args.out:
        raise CliError("--distributed needs --out DIR (one run directory for every rank)")
    from ..distributed import DistributedError, mpi_communicator

    try:
        communicator = mpi_communicator(timeout=args.timeout, sync_batchnorm=args.sync_bn)
    except DistributedError as exc:
        raise CliError(str(exc)) from exc
    # A failure on any rank ends every rank (exit 2 for usage errors), never a hang.
    return communicator.run_guarded(lambda: _run(args, communicator, started),
                                    expected=(CliError,))


def _run(args, communicator, started) -> int:
    """The command on one rank (``communicator`` None: not distributed)."""
    writer = communicator is None or communicator.is_writer
    if not writer:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - rank 0 alone reports
    if args.resume and not args.out:
        raise CliError("--resume needs --out DIR naming the run to continue")
    if args.resume and args.overwrite:
        raise CliError("--resume and --overwrite exclude each other")
    if args.plot:
        from .plot_cmd import require_matplotlib

        require_matplotlib()  # before training, not after it
    if args.out:
        out_dir = args.out
    else:
        s = _resolve_settings(args, None)
        out_dir = os.path.join(
            "runs", f"{s['dataset']}-{s['model']}-{time.strftime('%Y%m%d-%H%M%S')}")
    if args.resume and not os.path.isdir(out_dir):
        raise CliError(f"--resume: no run to resume: {out_dir} is not a directory")
    if not writer:  # only the writing rank creates, locks and judges the run directory
        return _train(args, out_dir, started, communicator)
    _prepare_out_dir(out_dir)
    with _locked(out_dir):
        return _train(args, out_dir, started, communicator)


def _train(args, out_dir, started, communicator=None) -> int:
    """The command with ``out_dir`` created and locked (by the writing rank)."""
    from ..datasets import DataError, load_dataset
    from ..models import build_model
    from ..optim import make_optimizer
    from ..training import RunDirLocked, TrainingInterrupted, fit
    from ..training.rundir import run_files_in

    saved = _saved_settings(out_dir) if args.resume else None
    s = _resolve_settings(args, saved)
    held = run_files_in(out_dir) if communicator is None or communicator.is_writer else []
    if not args.resume and not args.overwrite and held:
        raise CliError(f"{out_dir} already holds a run ({', '.join(held)}); pass --resume to "
                       f"continue it, --overwrite to replace it, or choose another --out")

    try:
        train = load_dataset(s["dataset"], "train", data_dir=args.data_dir, limit=s["limit"])
        test = load_dataset(s["dataset"], "test", data_dir=args.data_dir, limit=s["limit"])
    except (DataError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from exc

    dtype = np.dtype(s["dtype"])
    model = build_model(s["model"], rng=np.random.default_rng([s["seed"], 0]), dtype=dtype)
    try:
        optimizer = make_optimizer(s["optimizer"], model.params, lr=s["lr"],
                                   **OPTIMIZER_OPTIONS.get(s["optimizer"], {}))
        schedule = build_schedule(s["schedule"], optimizer.lr, s["epochs"])
    except ValueError as exc:
        raise CliError(str(exc)) from exc

    print(f"training {s['model']} ({model.parameter_count():,} parameters, {dtype.name}) on "
          f"{len(train[0]):,} {s['dataset']} images for {s['epochs']} epochs: "
          f"{optimizer!r}, {s['schedule']} schedule, batch "
          f"{s['batch_size']}, seed {s['seed']} -> {out_dir}", flush=True)
    progress = {"none": False, "auto": True}.get(args.progress, args.progress)
    try:
        with warnings.catch_warnings():
            # fit reports NaN/inf itself in one line; numpy's floating-point warnings
            # (raised in worker threads too, where np.errstate does not reach) would only
            # bury it
            warnings.filterwarnings("ignore", category=RuntimeWarning,
                                    message=r"(overflow|invalid value|divide by zero) "
                                            r"encountered")
            result = fit(model, train, test, epochs=s["epochs"], batch_size=s["batch_size"],
                         optimizer=optimizer, schedule=schedule, seed=s["seed"],
                         out_dir=out_dir, resume=args.resume, overwrite=args.overwrite,
                         progress=progress, log_every=args.log_every,
                         run_meta={"settings": s}, communicator=communicator)
    except TrainingInterrupted as exc:
        print(f"{exc}", file=sys.stderr)
        print(f"continue with: im2col-net train --resume --out {out_dir}", file=sys.stderr)
        return 128 + (exc.signal or signal.SIGINT)
    except (ValueError, OSError, RunDirLocked) as exc:  # incl. NonFiniteError, CheckpointError
        raise CliError(str(exc)) from exc
    wall = time.perf_counter() - started
    print(f"model saved to {result.model_path}; metrics in {out_dir}", flush=True)
    status = 0
    if args.plot:
        from .plot_cmd import plot_after_training

        status = plot_after_training(out_dir, args.data_dir)
    print(f"test accuracy {100 * result.test_accuracy:.2f}% on {len(test[0]):,} "
          f"{s['dataset']} test images after {result.epochs} epochs | wall time {wall:.1f} s "
          f"(training {result.wall_time:.1f} s)", flush=True)
    return status
