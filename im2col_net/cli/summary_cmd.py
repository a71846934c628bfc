"""``im2col-net summary --model NAME``: the per-layer table of a named model.

Builds the model from :data:`im2col_net.models.MODEL_BUILDERS` (with placeholder
weights: nothing is allocated or run, whatever the input shape) and prints
:meth:`~im2col_net.layers.base.Layer.summary` at the given batch size: output shapes,
parameters, forward FLOPs, activation memory and lowering workspace, with totals.
"""

from __future__ import annotations

from ..layers.base import deferred_init
from ..models import MODEL_BUILDERS, build_model
from . import CliError

NAME = "summary"
HELP = "Print a model's layers with output shapes, parameters, FLOPs and memory."


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
    parser.add_argument("--model", required=True, choices=sorted(MODEL_BUILDERS),
                        help="a registered model name")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="mini-batch size for FLOPs and memory (default 64)")
    parser.add_argument("--input-shape", default="1,28,28",
                        help="per-sample input shape C,H,W (default 1,28,28); the model is "
                             "built for C input channels")
    parser.add_argument("--num-classes", type=int, default=10,
                        help="number of output classes (default 10)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    shape = _shape(args.input_shape)
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be a positive int, got {args.batch_size}")
    if args.num_classes < 1:
        raise CliError(f"--num-classes must be a positive int, got {args.num_classes}")
    try:
        # Only shapes and sizes are needed: placeholder weights cost no memory, so a
        # huge --input-shape or --num-classes is summarised without allocating anything.
        with deferred_init():
            model = build_model(args.model, rng=0, dtype=args.dtype, in_channels=shape[0],
                                num_classes=args.num_classes)
    except ValueError as exc:
        raise CliError(f"cannot build {args.model} for {shape[0]} input channels and "
                       f"{args.num_classes} classes: {exc}") from None
    try:
        summary = model.summary(shape, batch_size=args.batch_size)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    print(summary.to_json() if args.json else summary)
    return 0
