"""``im2col-net gradcheck LAYER``: finite-difference check of a built-in layer.

Builds the layer from the options, draws a random input suited to it (tie-free for
max pooling, away from 0 for the ReLU family, so no element sits on a kink), runs
:func:`im2col_net.gradcheck.gradcheck` and prints its table. Exit code 0 when every
gradient is within tolerance, 1 when one is not, 2 for bad arguments.

To add a layer, add an entry to :data:`LAYERS`: a builder ``(args, dtype) -> layer``,
the input kind (``"image"`` NCHW or ``"features"`` ``(N, channels)``) and the data kind.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..functional.conv import STRATEGIES
from ..geometry import PADDING_MODES
from ..gradcheck import (
    DEFAULT_ATOL,
    DEFAULT_DIRECTIONS,
    DEFAULT_EPS,
    DEFAULT_RTOL,
    MODES,
    GradcheckWarning,
    gradcheck,
)
from ..layers import (
    AvgPool2D,
    Conv2D,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    LeakyReLU,
    Linear,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Tanh,
)
from . import CliError

NAME = "gradcheck"
HELP = "Check a built-in layer's gradients against central finite differences."

DATA_KINDS = ("normal", "away_from_zero", "tie_free")


@dataclass(frozen=True)
class LayerEntry:
    """How to build one layer for the check and what input it gets."""

    build: Callable[[argparse.Namespace, np.dtype], object]
    input_kind: str = "image"        # "image": (N, C, H, W); "features": (N, channels)
    data: str = "normal"             # one of DATA_KINDS


def _conv2d(args, dtype):
    return Conv2D(args.channels, args.out_channels, _pair(args.kernel, 3),
                  stride=_pair(args.stride, 1), padding=args.padding,
                  dilation=_pair(args.dilation, 1), groups=args.groups,
                  padding_mode=args.padding_mode, flip_kernel=args.flip,
                  strategy=args.strategy, rng=args.seed, dtype=dtype)


def _pool_kwargs(args):
    padding = args.padding
    if isinstance(padding, str):
        if padding != "valid":
            raise CliError(f"--padding {padding!r} is not supported by pooling layers; "
                           f"give 'valid' or ints")
        padding = 0
    elif isinstance(padding, tuple) and len(padding) == 4:
        raise CliError("pooling layers take symmetric padding: give 1 or 2 ints to --padding")
    return dict(kernel_size=_pair(args.kernel, 2), stride=_pair(args.stride, None),
                padding=padding)


def _linear(args, dtype):
    return Linear(args.channels, args.out_channels, rng=args.seed, dtype=dtype)


# name -> how to build it; add new layers here.
LAYERS: dict[str, LayerEntry] = {
    "conv2d": LayerEntry(_conv2d),
    "maxpool2d": LayerEntry(lambda args, dtype: MaxPool2D(**_pool_kwargs(args)), data="tie_free"),
    "avgpool2d": LayerEntry(lambda args, dtype: AvgPool2D(
        **_pool_kwargs(args), count_include_pad=not args.exclude_pad)),
    "globalavgpool2d": LayerEntry(lambda args, dtype: GlobalAvgPool2D()),
    "linear": LayerEntry(_linear, input_kind="features"),
    "relu": LayerEntry(lambda args, dtype: ReLU(), data="away_from_zero"),
    "leakyrelu": LayerEntry(lambda args, dtype: LeakyReLU(args.negative_slope),
                            data="away_from_zero"),
    "sigmoid": LayerEntry(lambda args, dtype: Sigmoid()),
    "tanh": LayerEntry(lambda args, dtype: Tanh()),
    "flatten": LayerEntry(lambda args, dtype: Flatten()),
    "dropout": LayerEntry(lambda args, dtype: Dropout(args.p, rng=args.seed)),
}


def _pair(values, default):
    """``None`` -> default, ``[k]`` -> k, ``[a, b]`` -> (a, b)."""
    if values is None:
        return default
    return values[0] if len(values) == 1 else tuple(values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("layer", metavar="LAYER",
                        help=f"the layer to check, one of: {', '.join(LAYERS)}")
    shape = parser.add_argument_group("input")
    shape.add_argument("--batch", type=int, default=2, help="batch size N (default 2)")
    shape.add_argument("--channels", type=int, default=3,
                       help="input channels C, or in_features for linear (default 3)")
    shape.add_argument("--size", type=int, nargs="+", default=[6], metavar=("H", "W"),
                       help="spatial size H [W] (default 6)")
    layer = parser.add_argument_group("layer")
    layer.add_argument("--out-channels", type=int, default=4,
                       help="conv2d out_channels / linear out_features (default 4)")
    layer.add_argument("--kernel", type=int, nargs="+", metavar=("KH", "KW"),
                       help="kernel size (default 3 for conv2d, 2 for pooling)")
    layer.add_argument("--stride", type=int, nargs="+", metavar=("SH", "SW"),
                       help="stride (default 1 for conv2d, the kernel size for pooling)")
    layer.add_argument("--padding", nargs="+", default=["0"], metavar="P",
                       help="'same', 'valid', or 1, 2 or 4 ints (top bottom left right)")
    layer.add_argument("--dilation", type=int, nargs="+", metavar=("DH", "DW"),
                       help="conv2d dilation (default 1)")
    layer.add_argument("--groups", type=int, default=1, help="conv2d groups (default 1)")
    layer.add_argument("--padding-mode", default="zeros",
                       choices=[*PADDING_MODES, "replicate"], help="conv2d padding mode")
    layer.add_argument("--flip", action="store_true",
                       help="conv2d: true convolution (kernel rotated by 180 degrees)")
    layer.add_argument("--strategy", default=STRATEGIES[0], choices=STRATEGIES,
                       help="conv2d lowering strategy")
    layer.add_argument("--exclude-pad", action="store_true",
                       help="avgpool2d: count_include_pad=False")
    layer.add_argument("--negative-slope", type=float, default=0.01,
                       help="leakyrelu slope for x < 0 (default 0.01)")
    layer.add_argument("--p", type=float, default=0.5, help="dropout probability (default 0.5)")
    layer.add_argument("--eval", action="store_true",
                       help="check the layer in eval mode (default: training mode)")
    check = parser.add_argument_group("check")
    check.add_argument("--mode", default="full", choices=MODES,
                       help="full: perturb every element; fast: random directions")
    check.add_argument("--directions", type=int, default=DEFAULT_DIRECTIONS,
                       help=f"directions per tensor in fast mode (default {DEFAULT_DIRECTIONS})")
    check.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                       help="dtype of the layer and input (checked in float64 either way)")
    check.add_argument("--seed", type=int, default=0, help="seed of weights, data and dy")
    check.add_argument("--eps", type=float, default=DEFAULT_EPS,
                       help=f"finite-difference step (default {DEFAULT_EPS:g})")
    check.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                       help=f"absolute tolerance (default {DEFAULT_ATOL:g})")
    check.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                       help=f"relative tolerance (default {DEFAULT_RTOL:g})")


def _validate(args) -> None:
    if args.layer not in LAYERS:
        raise CliError(f"unknown layer {args.layer!r}; expected one of: {', '.join(LAYERS)}")
    for option, value in (("--batch", args.batch), ("--channels", args.channels),
                          ("--out-channels", args.out_channels)):
        if value < 1:
            raise CliError(f"{option} must be a positive int, got {value}")
    for option, values in (("--size", args.size), ("--kernel", args.kernel),
                           ("--stride", args.stride), ("--dilation", args.dilation)):
        if values is None:
            continue
        if len(values) > 2:
            raise CliError(f"{option} takes 1 or 2 ints, got {len(values)}: {values}")
        if min(values) < 1:
            raise CliError(f"{option} must be positive, got {' '.join(map(str, values))}")
    if args.seed < 0:
        raise CliError(f"--seed must be >= 0, got {args.seed}")
    args.padding = _parse_padding(args.padding)


def _parse_padding(values):
    if len(values) == 1 and values[0] in ("same", "valid"):
        return values[0]
    if len(values) not in (1, 2, 4):
        raise CliError(f"--padding takes 'same', 'valid' or 1, 2 or 4 ints, got {values}")
    try:
        ints = [int(v) for v in values]
    except ValueError:
        raise CliError(
            f"--padding takes 'same', 'valid' or 1, 2 or 4 ints, got {' '.join(values)}"
        ) from None
    if min(ints) < 0:
        raise CliError(f"--padding must be >= 0, got {' '.join(values)}")
    return ints[0] if len(ints) == 1 else tuple(ints)


def make_input(entry: LayerEntry, args, dtype, rng: np.random.Generator) -> np.ndarray:
    """A random input for ``entry``: no element near a kink of the layer being checked."""
    if entry.input_kind == "features":
        shape = (args.batch, args.channels)
    else:
        height, width = (args.size * 2)[:2]
        shape = (args.batch, args.channels, height, width)
    size = int(np.prod(shape))
    if entry.data == "tie_free":
        # Distinct values spaced far wider than 2 * eps: no max-pool window has a near-tie.
        spacing = max(4.0 / size, 10 * args.eps)
        x = (rng.permutation(size) - size / 2) * spacing
    elif entry.data == "away_from_zero":
        x = rng.choice([-1.0, 1.0], size) * rng.uniform(0.1, 1.0, size)
    else:
        x = rng.standard_normal(size)
    return x.reshape(shape).astype(dtype)


def run(args) -> int:
    _validate(args)
    entry = LAYERS[args.layer]
    dtype = np.dtype(args.dtype)
    try:
        layer = entry.build(args, dtype)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.eval:
        layer.eval()
    x = make_input(entry, args, dtype, np.random.default_rng(args.seed))
    with warnings.catch_warnings():
        # The warnings' text is printed as notes under the table.
        warnings.simplefilter("ignore", GradcheckWarning)
        try:
            report = gradcheck(layer, x, eps=args.eps, atol=args.atol, rtol=args.rtol,
                               mode=args.mode, seed=args.seed, directions=args.directions)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    mode = "eval" if args.eval else "training"
    print(f"layer: {layer!r} ({mode} mode)")
    print(f"input: shape {x.shape}, {x.dtype}, {entry.data.replace('_', '-')} data")
    print(report)
    return 0 if report.ok else 1
