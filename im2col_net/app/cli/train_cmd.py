"""``im2col-net train``: train a named model on MNIST or Fashion-MNIST.

Defaults (plain ``im2col-net train``): the ``convnet`` model on MNIST for 2 epochs, Adam
with a one-cycle learning rate (peak 5e-3 after a quarter of the updates) and label
smoothing 0.1 (see docs/training.md), batch 128, seed 0. The run directory gets
``metrics.jsonl``, ``checkpoint.npz`` (every epoch, and on Ctrl-C) and ``model.npz``; the
last line printed states the test accuracy and the wall time.

``--val-split F`` / ``--val-size N`` hold out part of the training set (chosen from the
seed) for validation after every epoch; ``--early-stop P`` ends the run when the
validation loss has not improved for P epochs and keeps the best epoch's weights. With a
validation set the test set is evaluated once, at the end (every epoch only with
``--eval-test-every-epoch``).

``--resume --out DIR`` continues the run in DIR with every setting saved in its
checkpoint (``--plot`` and ``--threads`` included); only ``--epochs`` (to extend the
run), ``--data-dir``, ``--threads`` and the display options may be given anew, and the
resume says which saved values they replace. A directory already holding a run's files
is refused unless ``--resume`` or ``--overwrite``; one in use by another trainer is
refused (it is locked).

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
from .argtypes import fraction, non_negative_int, positive_float, positive_int, unit_interval

NAME = "train"
HELP = "train a model (default: the convnet on MNIST) and save it"

# Settings a run is made of; None on the command line means "default" (or, with
# --resume, "as saved").
DEFAULTS = {
    "dataset": "mnist",
    "model": "convnet",
    "epochs": 2,
    "batch_size": 128,
    "optimizer": "adam",
    "lr": None,          # None: the optimizer's own default
    "schedule": "onecycle",
    "label_smoothing": 0.1,
    "seed": 0,
    "limit": None,
    "dtype": "float32",
    "val_split": None,
    "val_size": None,
    "early_stop": None,
    "eval_test_every_epoch": False,
    "threads": None,     # None: the BLAS thread count in effect
    "data_dir": None,
    "log_every": 50,
    "progress": "auto",
    "plot": False,
}
# Settings added after runs were first saved: their value for a run saved without them.
SAVED_BEFORE = {"label_smoothing": 0.0}
# Command-line conveniences: plain "--optimizer sgd" means SGD with Nesterov momentum at a
# usable rate (torch's 1e-3 without momentum barely moves in a few epochs).
DEFAULT_LR = {"adam": 1e-3, "adamw": 1e-3, "sgd": 0.05}
# One-cycle's --lr is its peak, which tolerates (and wants) more than a constant rate;
# 5e-3 with label smoothing 0.1 was measured best for Adam on the convnet
# (docs/training.md; AdamW was not measured again and keeps the earlier 3e-3).
DEFAULT_PEAK_LR = {"adam": 5e-3, "adamw": 3e-3, "sgd": 0.05}
OPTIMIZER_OPTIONS = {"sgd": {"momentum": 0.9, "nesterov": True}}
# Arguments the command supplies to schedules that need more than lr and epochs.
SCHEDULE_OPTIONS = {
    "step": lambda epochs: {"step_size": max(1, epochs // 3), "gamma": 0.1},
    "exponential": lambda epochs: {"gamma": 0.7},
    "onecycle": lambda epochs: {"pct_start": 0.25},
}
# Schedules told the number of updates per epoch, to follow torch update by update.
_PER_UPDATE = {"onecycle"}
# May differ from the saved run on --resume.
RESUME_OVERRIDABLE = ("epochs", "eval_test_every_epoch", "threads", "data_dir", "log_every",
                      "progress", "plot")
PROGRESS_CHOICES = ("auto", "bar", "lines", "none")


# Kept under these names for the other commands (and helpers) that import them from here.
_positive_int = positive_int
_non_negative_int = non_negative_int
_positive_float = positive_float
_fraction = fraction


def schedule_names():
    from ...optim import SCHEDULES

    return [name for name in SCHEDULES if not name.endswith("table")]


def build_schedule(name, lr, epochs, steps_per_epoch=None):
    """The schedule ``name`` with this command's extra arguments (SCHEDULE_OPTIONS);
    ``steps_per_epoch`` (updates per epoch) is passed on to the schedules that use it."""
    from ...optim import make_schedule

    base = name[len("warmup-"):] if name.startswith("warmup-") else name
    extra = SCHEDULE_OPTIONS.get(base, lambda epochs: {})(epochs)
    if base in _PER_UPDATE and steps_per_epoch is not None:
        extra["steps_per_epoch"] = steps_per_epoch
    return make_schedule(name, lr, epochs, **extra)


def add_arguments(parser):
    import argparse

    from ...datasets import DATASET_NAMES
    from ...models import MODEL_BUILDERS
    from ...optim import OPTIMIZERS

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
                        help="initial learning rate, the peak one for onecycle (default: "
                             "1e-3 for adam/adamw, with onecycle 5e-3 for adam and 3e-3 for "
                             "adamw, 0.05 for sgd, else the optimizer's default)")
    parser.add_argument("--schedule", choices=schedule_names(),
                        help="learning rate over the epochs: onecycle rises from lr/25 to lr "
                             "over the first quarter of the updates and falls to lr/250000 "
                             "at the end (as torch's OneCycleLR), step divides it by 10 every "
                             "epochs/3, exponential multiplies it by 0.7 per epoch, warmup-* "
                             f"ramp up over the first epoch (default: {d['schedule']})")
    parser.add_argument("--label-smoothing", type=unit_interval, metavar="X",
                        help="mix each training target with the uniform distribution over "
                             "the classes by X in [0, 1), as torch's CrossEntropyLoss "
                             f"(default: {d['label_smoothing']}; evaluation uses the plain "
                             "cross-entropy)")
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
                        help="use only the first N training and the first N test images "
                             "(default: all)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="where to look for the dataset (default: the bundled MNIST, "
                             "$IM2COL_NET_DATA, then the usual places)")
    parser.add_argument("--dtype", choices=["float32", "float64"],
                        help=f"parameter and compute dtype (default: {d['dtype']})")
    val = parser.add_mutually_exclusive_group()
    val.add_argument("--val-split", type=_fraction, metavar="F",
                     help="hold out this fraction of the training set for validation, "
                          "chosen from --seed (default: none)")
    val.add_argument("--val-size", type=_positive_int, metavar="N",
                     help="hold out N training images for validation (default: none)")
    parser.add_argument("--early-stop", type=_positive_int, metavar="PATIENCE",
                        help="stop when the validation loss has not improved for PATIENCE "
                             "epochs and keep the best epoch's weights (needs --val-split "
                             "or --val-size; default: off)")
    parser.add_argument("--eval-test-every-epoch", action=argparse.BooleanOptionalAction,
                        help="with a validation set, also evaluate the test set after every "
                             "epoch (default: only at the end)")
    parser.add_argument("--threads", type=_positive_int, metavar="N",
                        help="threads for BLAS and the engine (default: the BLAS thread "
                             "count in effect, e.g. $OPENBLAS_NUM_THREADS)")
    parser.add_argument("--log-every", type=_positive_int, metavar="N",
                        help=f"updates between progress lines and log records (default: "
                             f"{d['log_every']})")
    parser.add_argument("--progress", choices=PROGRESS_CHOICES,
                        help="progress display: bar needs tqdm (default: auto, a bar on a "
                             "terminal when tqdm is installed, else lines)")
    parser.add_argument("--plot", action=argparse.BooleanOptionalAction,
                        help="at the end, draw the run's PNG pictures as 'im2col-net plot' "
                             "does (needs matplotlib; kept on --resume; default: off)")
    group = parser.add_argument_group("data-parallel training (under mpiexec; the mpi extra)")
    group.add_argument("--distributed", action="store_true",
                       help="train data-parallel over the ranks of 'mpiexec -n K'; "
                            "--batch-size is the global batch (needs --out)")
    from ...distributed import DEFAULT_TIMEOUT  # MPI-free; mpi4py loads only when used

    group.add_argument("--timeout", type=_positive_float, default=DEFAULT_TIMEOUT,
                       metavar="SECONDS",
                       help="with --distributed: how long a rank waits for the others in one "
                            f"step before every rank stops with an error (default: "
                            f"{DEFAULT_TIMEOUT:g})")
    group.add_argument("--sync-bn", action="store_true",
                       help="with --distributed: batch norm with the statistics of the whole "
                            "global batch (default: each rank's own shard)")


def _option(key):
    return "--" + key.replace("_", "-")


def _resolve_settings(args, saved, notes=None):
    """Merge command-line values with the saved run (resume) or the defaults; ``notes``
    (a list) receives one line per saved value replaced on the command line."""
    settings = {}
    for key, default in DEFAULTS.items():
        given = getattr(args, key)
        if saved is not None and key in saved:
            if given is not None and given != saved[key]:
                if key not in RESUME_OVERRIDABLE:
                    raise CliError(f"{_option(key)} {given} differs from the run being "
                                   f"resumed ({saved[key]}); drop it or start a new --out")
                if notes is not None:
                    notes.append(f"{_option(key)} {given} replaces the saved {saved[key]}")
            settings[key] = given if given is not None else saved[key]
        elif saved is not None and key in SAVED_BEFORE:
            settings[key] = given if given is not None else SAVED_BEFORE[key]
        else:
            settings[key] = given if given is not None else default
    if settings["lr"] is None:
        table = DEFAULT_PEAK_LR if settings["schedule"] == "onecycle" else DEFAULT_LR
        settings["lr"] = table.get(settings["optimizer"])
    if settings["val_split"] is not None and settings["val_size"] is not None:
        raise CliError("--val-split and --val-size exclude each other")
    if settings["early_stop"] is not None and settings["val_split"] is None \
            and settings["val_size"] is None:
        raise CliError("--early-stop needs a validation set: add --val-split F or "
                       "--val-size N (stopping on the test set would spoil its accuracy)")
    return settings


def _check_saved_settings(saved, path):
    """The saved settings must be ones the command line could have given."""
    from ...datasets import DATASET_NAMES
    from ...models import MODEL_BUILDERS
    from ...optim import OPTIMIZERS

    if not isinstance(saved, dict):
        raise CliError(f"{path}: the saved settings are not an object; the checkpoint is "
                       f"damaged")
    choices = {"dataset": DATASET_NAMES, "model": MODEL_BUILDERS, "optimizer": OPTIMIZERS,
               "schedule": schedule_names(), "dtype": ("float32", "float64"),
               "progress": PROGRESS_CHOICES}

    def is_int(value, low):
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    for key, value in saved.items():
        if key in choices:
            good = isinstance(value, str) and value in choices[key]
        elif key in ("epochs", "batch_size", "log_every"):
            good = is_int(value, 1)
        elif key in ("val_size", "early_stop", "threads"):
            good = value is None or is_int(value, 1)
        elif key == "val_split":
            good = value is None or (isinstance(value, float) and 0 < value < 1)
        elif key in ("plot", "eval_test_every_epoch"):
            good = isinstance(value, bool)
        elif key == "data_dir":
            good = value is None or isinstance(value, str)
        elif key == "seed":
            good = is_int(value, 0)
        elif key == "limit":
            good = value is None or is_int(value, 1)
        elif key == "label_smoothing":
            good = (isinstance(value, (int, float)) and not isinstance(value, bool)
                    and 0 <= value < 1)
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
    from ...training import CHECKPOINT_NAME, CheckpointError, load_checkpoint

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
    from ...training.rundir import make_run_dir

    try:
        make_run_dir(out_dir, owner="--out")
    except OSError as exc:
        raise CliError(str(exc)) from exc


@contextlib.contextmanager
def _locked(out_dir):
    """Hold the run directory's lock, taken before any data is loaded."""
    from ...training import RunDirLocked, lock_run_dir

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
    from ...distributed import DistributedError, mpi_communicator

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
    # What the command line asks for is checked before anything is created; settings a
    # resume takes from the checkpoint are checked once it has been read.
    _check_extras({"plot": bool(args.plot), "progress": args.progress})
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


def _check_extras(s):
    """Errors for settings whose optional packages are missing, before any training."""
    if s["plot"]:
        from .plot_cmd import require_matplotlib

        require_matplotlib()
    if s["progress"] == "bar":
        try:
            import tqdm  # noqa: F401
        except ImportError:
            raise CliError("--progress bar needs tqdm (pip install tqdm); use --progress "
                           "lines, or auto to get a bar whenever tqdm is there") from None


@contextlib.contextmanager
def _thread_limit(threads):
    """BLAS (and so the engine, whose thread count follows BLAS's) at ``threads`` threads
    for the block; a warning when threadpoolctl is missing and nothing can be set."""
    try:
        import threadpoolctl
    except ImportError:
        if threads is not None:
            raise CliError("--threads needs threadpoolctl (pip install threadpoolctl)") \
                from None
        print("warning: threadpoolctl is not installed, so the engine runs on one thread "
              "(BLAS keeps its own); pip install threadpoolctl", file=sys.stderr, flush=True)
        yield
        return
    if threads is None:
        yield
        return
    with threadpoolctl.threadpool_limits(threads, user_api="blas"):
        yield


def _stale_pictures(out_dir, since):
    """PNG files in ``out_dir`` last written before ``since`` (a time.time() value)."""
    from ..plotting import PLOT_FILES

    stale = []
    for name in PLOT_FILES.values():
        path = os.path.join(out_dir, name)
        with contextlib.suppress(OSError):
            if os.path.getmtime(path) < since:
                stale.append(name)
    return stale


def _time_summary(wall, result) -> str:
    """This command's wall time and the training time, saying what each covers."""
    text = f"wall time {wall:.1f} s for this command (training {result.session_time:.1f} s"
    if result.wall_time - result.session_time > 0.05:
        text += f"; {result.wall_time:.1f} s over all sessions of the run"
    return text + ")"


def _train(args, out_dir, started, communicator=None) -> int:
    """The command with ``out_dir`` created and locked (by the writing rank)."""
    from ...datasets import DataError, load_dataset
    from ...models import build_model
    from ...optim import make_optimizer
    from ...training import RunDirLocked, TrainingInterrupted, fit, split_validation
    from ...training.rundir import run_files_in

    started_clock = time.time()
    saved = _saved_settings(out_dir) if args.resume else None
    notes = []
    s = _resolve_settings(args, saved, notes)
    held = run_files_in(out_dir) if communicator is None or communicator.is_writer else []
    if not args.resume and not args.overwrite and held:
        raise CliError(f"{out_dir} already holds a run ({', '.join(held)}); pass --resume to "
                       f"continue it, --overwrite to replace it, or choose another --out")
    _check_extras(s)  # before loading data and training, not after it
    for note in notes:
        print(f"resume: {note}", flush=True)

    try:
        train = load_dataset(s["dataset"], "train", data_dir=s["data_dir"], limit=s["limit"])
        test = load_dataset(s["dataset"], "test", data_dir=s["data_dir"], limit=s["limit"])
    except (DataError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from exc
    val = None
    if s["val_split"] is not None or s["val_size"] is not None:
        try:
            train, val = split_validation(train, fraction=s["val_split"], size=s["val_size"],
                                          seed=s["seed"])
        except ValueError as exc:
            option = "--val-split" if s["val_split"] is not None else "--val-size"
            raise CliError(f"{option}: {exc}") from exc

    dtype = np.dtype(s["dtype"])
    model = build_model(s["model"], rng=np.random.default_rng([s["seed"], 0]), dtype=dtype)
    try:
        optimizer = make_optimizer(s["optimizer"], model.params, lr=s["lr"],
                                   **OPTIMIZER_OPTIONS.get(s["optimizer"], {}))
        schedule = build_schedule(s["schedule"], optimizer.lr, s["epochs"],
                                  steps_per_epoch=math.ceil(len(train[0]) / s["batch_size"]))
    except ValueError as exc:
        raise CliError(str(exc)) from exc

    print(f"training {s['model']} ({model.parameter_count():,} parameters, {dtype.name}) on "
          f"{len(train[0]):,} {s['dataset']} images for {s['epochs']} epochs: "
          f"{optimizer!r}, {s['schedule']} schedule, label smoothing "
          f"{s['label_smoothing']:g}, batch {s['batch_size']}, seed {s['seed']} -> {out_dir}",
          flush=True)
    if val is not None:
        when = "after every epoch" if s["eval_test_every_epoch"] else "at the end"
        patience = s["early_stop"]
        stop = (f"; early stop after {patience} epoch{'s' * (patience != 1)} without a lower "
                f"validation loss" if patience else "")
        print(f"validation: {len(val[0]):,} training images held out (chosen by seed "
              f"{s['seed']}); the test set is evaluated {when}{stop}", flush=True)
    progress = {"none": False, "auto": True}.get(s["progress"], s["progress"])
    try:
        with warnings.catch_warnings(), _thread_limit(s["threads"]):
            # fit reports NaN/inf itself in one line; numpy's floating-point warnings
            # (raised in worker threads too, where np.errstate does not reach) would only
            # bury it
            warnings.filterwarnings("ignore", category=RuntimeWarning,
                                    message=r"(overflow|invalid value|divide by zero) "
                                            r"encountered")
            result = fit(model, train, test, epochs=s["epochs"], batch_size=s["batch_size"],
                         optimizer=optimizer, schedule=schedule, seed=s["seed"],
                         out_dir=out_dir, resume=args.resume, overwrite=args.overwrite,
                         progress=progress, log_every=s["log_every"],
                         run_meta={"settings": s}, val_data=val, early_stop=s["early_stop"],
                         test_every_epoch=bool(s["eval_test_every_epoch"]) or val is None,
                         communicator=communicator, label_smoothing=s["label_smoothing"])
    except TrainingInterrupted as exc:
        print(f"{exc}", file=sys.stderr)
        print(f"continue with: im2col-net train --resume --out {out_dir}", file=sys.stderr)
        return 128 + (exc.signal or signal.SIGINT)
    except (ValueError, OSError, RunDirLocked) as exc:  # incl. NonFiniteError, CheckpointError
        raise CliError(str(exc)) from exc
    wall = time.perf_counter() - started
    print(f"model saved to {result.model_path}; metrics in {out_dir}", flush=True)
    if result.best_epoch is not None:
        kept = ("the weights of that epoch are kept" if s["early_stop"]
                else "the last epoch's weights are kept")
        stopped = " (stopped early)" if result.stopped_early else ""
        print(f"best validation loss at epoch {result.best_epoch}{stopped}; {kept}: "
              f"validation loss {result.val_loss:.4f} acc {100 * result.val_accuracy:.2f}%",
              flush=True)
    status = 0
    if communicator is not None and not communicator.is_writer:
        return status  # the pictures are the writing rank's
    if s["plot"]:
        from .plot_cmd import plot_after_training

        status = plot_after_training(out_dir, s["data_dir"])
    else:
        stale = _stale_pictures(out_dir, started_clock)
        if stale:
            print(f"note: {', '.join(stale)} in {out_dir} are from before this run's last "
                  f"session; redraw them with: im2col-net plot {out_dir}", flush=True)
    weights = (f" (weights of epoch {result.best_epoch})"
               if s["early_stop"] and result.best_epoch not in (None, result.epochs) else "")
    print(f"test accuracy {100 * result.test_accuracy:.2f}% on {len(test[0]):,} "
          f"{s['dataset']} test images after {result.epochs} epochs{weights} | "
          f"{_time_summary(wall, result)}", flush=True)
    return status
