"""``im2col-net predict MODEL.npz FILE...``: class and probability per image.

Inputs follow :mod:`im2col_net.imageio`: ``.npy`` arrays of shape (28, 28), (N, 28, 28)
or (N, 1, 28, 28), uint8 0-255 or float in [0, 1]; 8-bit grayscale non-interlaced
28x28 PNGs. Everything else is refused with exit code 2.
"""

from __future__ import annotations

NAME = "predict"
HELP = "predict the class of 28x28 grayscale images (.npy or .png)"


def add_arguments(parser):
    from ..datasets import DATASET_NAMES
    from .evaluate_cmd import add_allow_nonfinite
    from .train_cmd import _positive_int

    parser.add_argument("model", metavar="MODEL.npz", help="a model file (or checkpoint)")
    parser.add_argument("files", metavar="FILE", nargs="+",
                        help=".npy arrays (uint8 0-255 or float in [0, 1]) or 8-bit grayscale "
                             "PNGs, 28x28")
    parser.add_argument("--dataset", choices=list(DATASET_NAMES), default="mnist",
                        help="whose class names to print (default: mnist)")
    parser.add_argument("--top", type=_positive_int, default=1, metavar="K",
                        help="show the K most likely classes (default: 1)")
    add_allow_nonfinite(parser)


def run(args) -> int:
    import numpy as np

    from ..datasets import CLASS_NAMES
    from ..imageio import ImageFileError, load_images
    from ..training import predict_proba
    from . import CliError
    from .evaluate_cmd import load_model_or_fail

    model = load_model_or_fail(args.model, allow_nonfinite=args.allow_nonfinite)
    batches, names = [], []
    for path in args.files:
        try:
            images = load_images(path)
        except (ImageFileError, FileNotFoundError) as exc:
            raise CliError(str(exc)) from exc
        batches.append(images)
        names += [path] if len(images) == 1 else [f"{path}[{i}]" for i in range(len(images))]
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

    for name, row in zip(names, probs, strict=True):
        order = np.argsort(-row, kind="stable")[:top]
        print(f"{name}: " + ", ".join(f"class {label(k)} p={row[k]:.4f}" for k in order))
    return 0
