"""``im2col-net plot RUN_DIR``: PNG pictures of a training run.

Writes into RUN_DIR (or ``--out``) the learning curves from ``metrics.jsonl``, the first
convolution's filters, the test-set confusion matrix and the misclassified test images
of ``model.npz`` (see :func:`im2col_net.app.plotting.plot_run`). Needs matplotlib (the
``plot`` extra).
"""

from __future__ import annotations

import os
import sys

from . import CliError

NAME = "plot"
HELP = "draw a run's learning curves, filters, confusion matrix and mistakes as PNG files"


def add_arguments(parser):
    from ...datasets import DATASET_NAMES
    from .argtypes import positive_int as _positive_int

    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a run directory written by 'im2col-net train'")
    parser.add_argument("--dataset", choices=list(DATASET_NAMES),
                        help="test set for the confusion matrix and mistakes (default: the "
                             "run's own, else mnist)")
    parser.add_argument("--data-dir", metavar="DIR", help="where to look for the dataset")
    parser.add_argument("--limit", type=_positive_int, metavar="N",
                        help="use only the first N test images (default: the run's --limit)")
    parser.add_argument("--out", metavar="DIR", help="where to write the PNGs (default: RUN_DIR)")
    parser.add_argument("--max-images", type=_positive_int, default=32, metavar="N",
                        help="misclassified images to show (default: 32)")
    parser.add_argument("--dpi", type=_positive_int, default=100, metavar="N",
                        help="resolution, pixels per inch (default: 100)")


def make_plots(run_dir, *, dataset=None, data_dir=None, limit=None, out_dir=None,
               max_images=32, dpi=100) -> dict:
    """:func:`~im2col_net.app.plotting.plot_run` with its errors turned into CliError and
    skipped pictures reported on stderr; also used by ``im2col-net train --plot``."""
    try:
        from ..plotting import plot_run
    except ImportError as exc:  # pragma: no cover - plotting itself imports lazily
        raise CliError(str(exc)) from exc
    from ...datasets import DataError
    from ...serialization import ModelFileError

    if not os.path.isdir(run_dir):
        raise CliError(f"{run_dir}: no such run directory")
    try:
        return plot_run(run_dir, out_dir=out_dir, dataset=dataset, data_dir=data_dir,
                        limit=limit, max_images=max_images, dpi=dpi,
                        log=lambda message: print(f"plot: {message}", file=sys.stderr))
    except (ImportError, FileNotFoundError, DataError, ModelFileError, ValueError) as exc:
        raise CliError(str(exc)) from exc


def require_matplotlib() -> None:
    """CliError unless matplotlib can be imported (checked before a --plot training run)."""
    from ..plotting import check_available

    try:
        check_available()
    except ImportError as exc:
        raise CliError(f"--plot: {exc}") from exc


def plot_after_training(run_dir, data_dir=None) -> int:
    """``im2col-net train --plot``: draw the finished run's pictures and list them.

    A failure is reported on stderr without hiding the training result; returns the exit
    status (0, or 1 when the pictures could not be drawn).
    """
    try:
        written = make_plots(run_dir, data_dir=data_dir)
    except CliError as exc:
        print(f"plot: error: {exc}", file=sys.stderr)
        return 1
    for name, path in written.items():
        print(f"plot: {name} -> {path}", flush=True)
    return 0


def run(args) -> int:
    written = make_plots(args.run_dir, dataset=args.dataset, data_dir=args.data_dir,
                         limit=args.limit, out_dir=args.out, max_images=args.max_images,
                         dpi=args.dpi)
    for name, path in written.items():
        print(f"{name:<14} {path}")
    return 0
