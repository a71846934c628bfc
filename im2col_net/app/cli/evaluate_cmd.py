"""``im2col-net evaluate MODEL.npz``: test accuracy, per-class accuracy, confusion matrix.

MODEL.npz may also be a checkpoint or a run directory (its ``model.npz``); for a run that
has no model yet (interrupted, or still training) the error says what the directory
holds and how to finish or evaluate it.
"""

from __future__ import annotations

import os

NAME = "evaluate"
HELP = "evaluate a saved model on a test set (accuracy per class, confusion matrix)"


def add_arguments(parser):
    from ...datasets import DATASET_NAMES
    from .train_cmd import _positive_int

    parser.add_argument("model", metavar="MODEL.npz",
                        help="a model file, a checkpoint, or a run directory (its model.npz)")
    parser.add_argument("--dataset", choices=list(DATASET_NAMES), default="mnist",
                        help="test set to use (default: mnist)")
    parser.add_argument("--data-dir", metavar="DIR", help="where to look for the dataset")
    parser.add_argument("--split", choices=["test", "train"], default="test",
                        help="which split to evaluate on (default: test)")
    parser.add_argument("--limit", type=_positive_int, metavar="N",
                        help="use only the first N images")
    parser.add_argument("--batch-size", type=_positive_int, default=256, metavar="N",
                        help="images per forward pass (default: 256)")
    add_allow_nonfinite(parser)


def add_allow_nonfinite(parser):
    """The ``--allow-nonfinite`` flag shared by the commands that load a model."""
    parser.add_argument("--allow-nonfinite", action="store_true",
                        help="load the model even if some weights are NaN or infinite "
                             "(refused by default)")


def _unfinished_run(run_dir, checkpoint_path) -> str:
    """What the checkpoint of a run without a model says, and how to go on from it."""
    from ...training import CheckpointError, load_checkpoint

    try:
        checkpoint = load_checkpoint(checkpoint_path)
    except (CheckpointError, OSError) as exc:
        return f"{checkpoint_path} cannot be read ({exc})"
    progress, epochs = checkpoint.progress, checkpoint.run.get("epochs")
    of = f" of {epochs}" if isinstance(epochs, int) else ""
    where = (f"at epoch {progress.epoch + 1}, step {progress.step}"
             if progress.batch_in_epoch or progress.epoch == 0
             else f"after epoch {progress.epoch}, step {progress.step}")
    if isinstance(epochs, int) and progress.epoch >= epochs:
        return (f"{checkpoint_path}: a run with all its {epochs} epochs done whose model was "
                f"never written (its last session ended first); 'im2col-net train --resume "
                f"--out {run_dir}' writes it, or 'im2col-net evaluate {checkpoint_path}' "
                f"evaluates the checkpoint's weights")
    return (f"{checkpoint_path}: an unfinished run {where} ({progress.epoch}{of} epochs "
            f"done); 'im2col-net train --resume --out {run_dir}' finishes it, or "
            f"'im2col-net evaluate {checkpoint_path}' evaluates its weights as they are")


def resolve_model_path(path) -> str:
    """The model file ``path`` names: itself, or ``model.npz`` inside a run directory.
    CliError saying what a run directory holds when it has no model (yet)."""
    from ...training import CHECKPOINT_NAME, MODEL_NAME
    from . import CliError

    path = os.fspath(path)
    if os.path.isdir(path):
        run_dir, model_path = path, os.path.join(path, MODEL_NAME)
    elif not os.path.exists(path) and os.path.basename(path) == MODEL_NAME:
        run_dir, model_path = os.path.dirname(path) or ".", path
    else:
        return path
    if os.path.exists(model_path):
        return model_path
    checkpoint_path = os.path.join(run_dir, CHECKPOINT_NAME)
    if os.path.exists(checkpoint_path):
        raise CliError(f"{model_path} does not exist: {_unfinished_run(run_dir, checkpoint_path)}")
    return path  # not a run directory: load_model says what it is


def load_model_or_fail(path, *, allow_nonfinite=False):
    """``load_model`` with user-facing errors (missing, not a regular file, not a model,
    too large, damaged, non-finite weights) turned into CliError."""
    from ...serialization import ModelFileError, load_model
    from . import CliError

    if os.fspath(path).lower().endswith(".onnx"):  # ONNX files load through im2col_net.onnx
        from .import_cmd import load_onnx_or_fail
        return load_onnx_or_fail(path, allow_nonfinite=allow_nonfinite)
    try:
        return load_model(path, allow_nonfinite=allow_nonfinite)
    except FileNotFoundError:
        raise CliError(f"{os.fspath(path)}: no such model file") from None
    except ModelFileError as exc:
        raise CliError(str(exc)) from None


def class_label(index, names) -> str:
    """``"3"`` for MNIST's digit names, ``"3 Dress"`` where the name says more."""
    name = names[index] if index < len(names) else str(index)
    return str(index) if name == str(index) else f"{index} {name}"


def format_confusion(matrix, names) -> str:
    """Rows: true class, columns: predicted class (by index)."""
    width = max(5, max(len(str(int(v))) for v in matrix.ravel()) + 1)
    first = max(17, max(len(class_label(i, names)) for i in range(len(matrix))) + 1)
    corner = "true \\ predicted"
    lines = [f"{corner:<{first}}"
             + "".join(f"{i:>{width}}" for i in range(len(matrix)))]
    for i, row in enumerate(matrix):
        lines.append(f"{class_label(i, names):<{first}}"
                     + "".join(f"{int(v):>{width}}" for v in row))
    return "\n".join(lines)


def check_output_size(model, images, num_classes, model_path, dataset) -> None:
    """CliError unless ``model`` maps one of ``images`` to ``num_classes`` scores: checked
    on a single image before the evaluation, so a model trained for another number of
    classes is named as such instead of failing inside the metrics."""
    import numpy as np

    from . import CliError

    if len(images) == 0:
        return
    was_training = model.training
    model.eval()
    try:
        scores = np.asarray(model.forward(images[:1]))
    except ValueError as exc:
        raise CliError(f"{model_path}: the model does not fit {dataset} images: {exc}") \
            from exc
    finally:
        model.train(was_training)
    if scores.ndim != 2 or scores.shape[1] != num_classes:
        size = scores.shape[1] if scores.ndim == 2 else f"shape {scores.shape[1:]}"
        raise CliError(f"{model_path}: the model outputs {size} class scores per image but "
                       f"{dataset} has {num_classes} classes; evaluate it on a dataset with "
                       f"{size} classes or use a model trained for {dataset}")


def run(args) -> int:
    import numpy as np

    from ...datasets import CLASS_NAMES, DataError, load_dataset
    from ...training import confusion_matrix, evaluate, per_class_accuracy
    from . import CliError

    args.model = resolve_model_path(args.model)
    model = load_model_or_fail(args.model, allow_nonfinite=args.allow_nonfinite)
    try:
        images, labels = load_dataset(args.dataset, args.split, data_dir=args.data_dir,
                                      limit=args.limit)
    except (DataError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from exc
    names = list(CLASS_NAMES[args.dataset])
    check_output_size(model, images, len(names), args.model, args.dataset)
    try:
        loss, accuracy, predictions = evaluate(model, images, labels, args.batch_size)
    except ValueError as exc:
        raise CliError(f"{args.model}: the model does not fit {args.dataset} images: {exc}") \
            from exc
    matrix = confusion_matrix(labels, predictions, num_classes=len(names))
    recall = per_class_accuracy(matrix)
    print(f"{args.model} on {len(labels):,} {args.dataset} {args.split} images")
    print("per-class accuracy:")
    for i in range(len(names)):
        value = "n/a" if np.isnan(recall[i]) else f"{100 * recall[i]:6.2f}%"
        print(f"  {class_label(i, names):<16} {value}  ({int(matrix[i].sum())} images)")
    print("confusion matrix (rows: true class, columns: predicted class):")
    print(format_confusion(matrix, names))
    print(f"loss {loss:.4f}")
    print(f"{args.split} accuracy {100 * accuracy:.2f}% ({int(np.trace(matrix))}/{len(labels)})")
    return 0
