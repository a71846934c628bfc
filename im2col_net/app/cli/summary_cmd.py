"""``im2col-net summary [MODEL.npz] [--model NAME]``: the per-layer table of a model.

Either a saved model (a ``model.npz``, a checkpoint or a run directory holding one) or a
named model from :data:`im2col_net.models.MODEL_BUILDERS` (default ``convnet``, as for
``train``; built with placeholder weights: nothing is allocated or run, whatever the
input shape). Prints :meth:`~im2col_net.layers.base.Layer.summary` at the given batch
size: output shapes, parameters, forward FLOPs, activation memory and lowering
workspace, with totals.
"""

from __future__ import annotations

from ...layers.base import deferred_init
from ...models import MODEL_BUILDERS, build_model
from . import CliError

NAME = "summary"
HELP = "print a model's layers with output shapes, parameters, FLOPs and memory"
DEFAULT_MODEL = "convnet"


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise CliError(f"--input-shape must be C,H,W with positive ints (e.g. 1,28,28), "
                       f"got {text!r}")
    return shape


def add_arguments(parser):
    from .train_cmd import _positive_int

    parser.add_argument("file", metavar="MODEL.npz", nargs="?",
                        help="a saved model, checkpoint or run directory (default: the model "
                             "named by --model)")
    parser.add_argument("--model", choices=sorted(MODEL_BUILDERS),
                        help=f"a registered model name, used without MODEL.npz (default: "
                             f"{DEFAULT_MODEL})")
    parser.add_argument("--batch-size", type=_positive_int, default=64, metavar="N",
                        help="mini-batch size for FLOPs and memory (default: 64)")
    parser.add_argument("--input-shape", default="1,28,28", metavar="C,H,W",
                        help="per-sample input shape (default: 1,28,28); a named model is "
                             "built for C input channels")
    parser.add_argument("--num-classes", type=_positive_int, default=10, metavar="N",
                        help="number of output classes of a named model (default: 10)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="parameter dtype of a named model, for the memory columns "
                             "(default: float32)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    shape = _shape(args.input_shape)
    if args.file is not None:
        if args.model is not None:
            raise CliError(f"give either MODEL.npz ({args.file}) or --model {args.model}, "
                           f"not both")
        from .evaluate_cmd import load_model_or_fail, resolve_model_path

        model = load_model_or_fail(resolve_model_path(args.file), allow_nonfinite=True)
        return _print(model, shape, args)
    name = args.model or DEFAULT_MODEL
    try:
        # Only shapes and sizes are needed: placeholder weights cost no memory, so a
        # huge --input-shape or --num-classes is summarised without allocating anything.
        with deferred_init():
            model = build_model(name, rng=0, dtype=args.dtype, in_channels=shape[0],
                                num_classes=args.num_classes)
    except ValueError as exc:
        raise CliError(f"cannot build {name} for {shape[0]} input channels and "
                       f"{args.num_classes} classes: {exc}") from None
    return _print(model, shape, args)


def _print(model, shape, args) -> int:
    try:
        summary = model.summary(shape, batch_size=args.batch_size)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    print(summary.to_json() if args.json else summary)
    return 0
