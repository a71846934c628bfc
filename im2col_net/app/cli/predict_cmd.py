"""``im2col-net predict MODEL.npz [FILE...]``: class and probability per image.

Images come from FILEs, from the test set (``--test-index I ...``, printed with their
true class) or from the sample digits shipped with the package (``--samples``: one PNG
per digit 0-9, taken from the MNIST test set). MODEL.npz may be a run directory.

Inputs follow :mod:`im2col_net.app.imageio`: ``.npy`` arrays of shape (H, W), (N, H, W) or
(N, 1, H, W), uint8 0-255 or float in [0, 1]; 8-bit grayscale non-interlaced PNGs. They
must be 28x28 unless ``--resize`` is given, which scales each axis to 28 pixels (area
mean when shrinking, bilinear when enlarging; the aspect ratio is not kept). Everything
else is refused with exit code 2.
"""

from __future__ import annotations

NAME = "predict"
HELP = "predict the class of 28x28 grayscale images (.npy or .png files, test images or " \
       "the shipped samples)"
IMAGE_SIZE = (28, 28)


def sample_files() -> list[str]:
    """Paths of the sample digits shipped with the package, digit0.png to digit9.png."""
    from importlib import resources

    folder = resources.files("im2col_net.datasets") / "samples"
    return [str(folder / f"digit{d}.png") for d in range(10)]


def add_arguments(parser):
    from ...datasets import DATASET_NAMES
    from .evaluate_cmd import add_allow_nonfinite
    from .train_cmd import _non_negative_int, _positive_int

    parser.add_argument("model", metavar="MODEL.npz",
                        help="a model file, a checkpoint, or a run directory (its model.npz)")
    parser.add_argument("files", metavar="FILE", nargs="*",
                        help=".npy arrays (uint8 0-255 or float in [0, 1]) or 8-bit grayscale "
                             "PNGs, 28x28 unless --resize")
    parser.add_argument("--test-index", type=_non_negative_int, nargs="+", metavar="I",
                        help="also predict these images of the --dataset test set (0-based), "
                             "with their true class")
    parser.add_argument("--samples", action="store_true",
                        help="also predict the sample digits shipped with im2col_net (one "
                             "MNIST test image per digit)")
    parser.add_argument("--resize", action="store_true",
                        help="scale images of another size to 28x28 (area mean when "
                             "shrinking, bilinear when enlarging) instead of refusing them")
    parser.add_argument("--dataset", choices=list(DATASET_NAMES), default="mnist",
                        help="whose class names to print and whose test set --test-index "
                             "reads (default: mnist)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="where to look for the dataset of --test-index")
    parser.add_argument("--top", type=_positive_int, default=1, metavar="K",
                        help="show the K most likely classes (default: 1)")
    add_allow_nonfinite(parser)


def _test_images(args):
    """The ``--test-index`` images, their names and true labels."""
    from ...datasets import DataError, load_dataset
    from . import CliError

    try:
        images, labels = load_dataset(args.dataset, "test", data_dir=args.data_dir)
    except (DataError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from exc
    bad = [i for i in args.test_index if i >= len(labels)]
    if bad:
        raise CliError(f"--test-index {bad[0]} is out of range: the {args.dataset} test set "
                       f"has {len(labels):,} images (0 to {len(labels) - 1})")
    index = list(args.test_index)
    return (images[index], [f"{args.dataset} test[{i}]" for i in index],
            [int(labels[i]) for i in index])


def run(args) -> int:
    import numpy as np

    from ...datasets import CLASS_NAMES
    from ...training import predict_proba
    from ..imageio import ImageFileError, load_images
    from . import CliError
    from .evaluate_cmd import load_model_or_fail, resolve_model_path

    files = list(args.files) + (sample_files() if args.samples else [])
    if not files and not args.test_index:
        raise CliError("nothing to predict: give image FILEs, --test-index I ... or "
                       "--samples")
    model = load_model_or_fail(resolve_model_path(args.model),
                               allow_nonfinite=args.allow_nonfinite)
    batches, names, truth = [], [], []
    for path in files:
        try:
            images = load_images(path, IMAGE_SIZE, resize=args.resize)
        except (ImageFileError, FileNotFoundError) as exc:
            raise CliError(str(exc)) from exc
        batches.append(images)
        names += [path] if len(images) == 1 else [f"{path}[{i}]" for i in range(len(images))]
        truth += [None] * len(images)
    if args.test_index:
        images, test_names, labels = _test_images(args)
        batches.append(images)
        names += test_names
        truth += labels
    images = np.concatenate(batches)
    try:
        probs = predict_proba(model, images)
    except ValueError as exc:
        raise CliError(f"{args.model}: the model does not accept these images: {exc}") from exc
    class_names = list(CLASS_NAMES[args.dataset])
    top = min(args.top, probs.shape[1])

    def label(k):
        name = class_names[k] if k < len(class_names) else str(k)
        return str(k) if name == str(k) else f"{k} ({name})"

    for name, row, true in zip(names, probs, truth, strict=True):
        order = np.argsort(-row, kind="stable")[:top]
        text = f"{name}: " + ", ".join(f"class {label(k)} p={row[k]:.4f}" for k in order)
        if true is not None:
            text += f" (true class {label(true)})"
        print(text)
    return 0
