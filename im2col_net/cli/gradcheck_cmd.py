"""``im2col-net gradcheck LAYER``: finite-difference check of a built-in layer.

Builds the layer from the options, draws a random input suited to it (tie-free for
max pooling, away from 0 for the ReLU family, off -3, 0, 3 and 6 for ReLU6 and the
hard activations, so no element sits on a kink), runs
:func:`im2col_net.gradcheck.gradcheck` and prints its table. Exit code 0 when every
gradient is within tolerance, 1 when one is not, 2 for bad arguments.

To add a layer, add an entry to :data:`LAYERS`: a builder ``(args, dtype) -> layer``,
the input kind (``"image"`` NCHW or ``"features"`` ``(N, channels)``) and the data kind.
The losses are checked the same way through :class:`LossCheck`, which holds seeded
targets fixed.

Sizes are bounded before anything is built or drawn (the check runs two forward passes
per perturbed element in full mode): the input and the layer's output may have at most
:data:`MAX_TENSOR_ELEMENTS` elements, its parameters at most :data:`MAX_PARAM_ELEMENTS`,
and ``--mode full`` perturbs at most :data:`MAX_FULL_ELEMENTS` input and parameter
elements in all, and at most :data:`MAX_FULL_WORK` element-passes (perturbed elements
times the input, output and parameter elements each pass touches, about 10 s).
"""

from __future__ import annotations

import argparse
import math
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
    GELU,
    SELU,
    AvgPool2D,
    BCEWithLogitsLoss,
    Conv2D,
    CrossEntropyLoss,
    Dropout,
    Dropout2D,
    Flatten,
    GlobalAvgPool2D,
    Hardsigmoid,
    Hardswish,
    Identity,
    LeakyReLU,
    Linear,
    MaxPool2D,
    MSELoss,
    NLLLoss,
    PReLU,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softplus,
    Tanh,
)
from ..layers.base import deferred_init, init_deferred
from . import CliError

NAME = "gradcheck"
HELP = "check a built-in layer's gradients against central finite differences"

DATA_KINDS = ("normal", "away_from_zero", "tie_free", "kinked")

# Bounds on the work one check may ask for (see the module docstring).
MAX_TENSOR_ELEMENTS = 1_000_000
MAX_PARAM_ELEMENTS = 1_000_000
MAX_FULL_ELEMENTS = 20_000
MAX_FULL_WORK = 200_000_000


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


def _prelu(args, dtype):
    layer = PReLU(args.channels if args.per_channel else 1, args.init, dtype=dtype)
    if not init_deferred():
        # Distinct slopes per channel, so that a channel mix-up cannot pass.
        layer.params["weight"][...] = np.linspace(-0.5, 0.5, layer.num_parameters) + args.init
    return layer


class LossCheck:
    """A loss seen as a layer for the check: ``forward(x)`` is the loss of ``x`` against
    targets drawn from ``seed`` for ``x``'s shape (the same every call), ``backward(dy)``
    its gradient. Class-index targets have the input's shape without axis 1, so an image
    input checks the per-pixel form."""

    params: dict = {}
    grads: dict = {}

    def __init__(self, loss, target_kind, seed):
        self.loss, self.target_kind, self.seed = loss, target_kind, seed

    def __repr__(self):
        return repr(self.loss)

    def output_shape(self, input_shape):
        if self.loss.reduction != "none":
            return ()
        shape = tuple(input_shape)
        return shape if self.target_kind != "classes" else shape[:1] + shape[2:]

    def parameter_count(self):
        return 0

    def eval(self):
        """Losses have no train/eval mode: ``--eval`` changes nothing."""
        return self

    def _target(self, x):
        rng = np.random.default_rng([self.seed, 2])
        if self.target_kind == "classes":
            return rng.integers(0, x.shape[1], x.shape[:1] + x.shape[2:])
        if self.target_kind == "probabilities":
            p = rng.random(x.shape)
            return (p / p.sum(axis=1, keepdims=True)).astype(x.dtype)
        return rng.random(x.shape).astype(x.dtype)

    def forward(self, x):
        return np.asarray(self.loss.forward(x, self._target(x)), dtype=x.dtype)

    def backward(self, dy):
        return self.loss.backward(dy if self.loss.reduction == "none" else float(dy))


def _loss(cls, target_kind, **extra):
    def build(args, dtype):
        options = dict(extra)
        if cls is CrossEntropyLoss:
            options["label_smoothing"] = args.label_smoothing
        kind = "probabilities" if (cls is CrossEntropyLoss and args.soft_targets) else target_kind
        return LossCheck(cls(reduction=args.reduction, **options), kind, args.seed)

    return build


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
# The torch.nn parity activations and dropout; "kinked" data keeps every element at least
# 0.1 away from the kinks at 0, +-3 and 6.
LAYERS.update({
    "relu6": LayerEntry(lambda args, dtype: ReLU6(), data="kinked"),
    "hardsigmoid": LayerEntry(lambda args, dtype: Hardsigmoid(), data="kinked"),
    "hardswish": LayerEntry(lambda args, dtype: Hardswish(), data="kinked"),
    "selu": LayerEntry(lambda args, dtype: SELU(), data="away_from_zero"),
    "silu": LayerEntry(lambda args, dtype: SiLU()),
    "gelu": LayerEntry(lambda args, dtype: GELU(args.approximate)),
    "softplus": LayerEntry(lambda args, dtype: Softplus(args.beta, args.threshold)),
    "prelu": LayerEntry(lambda args, dtype: _prelu(args, dtype), data="away_from_zero"),
    "dropout2d": LayerEntry(lambda args, dtype: Dropout2D(args.p, rng=args.seed)),
    "identity": LayerEntry(lambda args, dtype: Identity()),
})
# Losses, against seeded targets (see LossCheck); --size 1 1 with --batch gives (N, C, 1, 1).
LAYERS.update({
    "crossentropy": LayerEntry(_loss(CrossEntropyLoss, "classes")),
    "nll": LayerEntry(_loss(NLLLoss, "classes")),
    "mse": LayerEntry(_loss(MSELoss, "values")),
    "bcewithlogits": LayerEntry(_loss(BCEWithLogitsLoss, "values")),
})


def _pair(values, default):
    """``None`` -> default, ``[k]`` -> k, ``[a, b]`` -> (a, b)."""
    if values is None:
        return default
    return values[0] if len(values) == 1 else tuple(values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("layer", metavar="LAYER",
                        help=f"the layer to check, one of: {', '.join(LAYERS)}")
    shape = parser.add_argument_group("input")
    shape.add_argument("--batch", type=int, default=2, metavar="N",
                       help="batch size (default: 2)")
    shape.add_argument("--channels", type=int, default=3, metavar="C",
                       help="input channels, or in_features for linear (default: 3)")
    shape.add_argument("--size", type=int, nargs="+", default=[6], metavar=("H", "W"),
                       help="spatial size H [W] (default: 6)")
    layer = parser.add_argument_group("layer")
    layer.add_argument("--out-channels", type=int, default=4, metavar="N",
                       help="conv2d out_channels / linear out_features (default: 4)")
    layer.add_argument("--kernel", type=int, nargs="+", metavar=("KH", "KW"),
                       help="kernel size (default: 3 for conv2d, 2 for pooling)")
    layer.add_argument("--stride", type=int, nargs="+", metavar=("SH", "SW"),
                       help="stride (default: 1 for conv2d, the kernel size for pooling)")
    layer.add_argument("--padding", nargs="+", default=["0"], metavar="P",
                       help="'same', 'valid', or 1, 2 or 4 ints (top bottom left right) "
                            "(default: 0)")
    layer.add_argument("--dilation", type=int, nargs="+", metavar=("DH", "DW"),
                       help="conv2d dilation (default: 1)")
    layer.add_argument("--groups", type=int, default=1, metavar="G",
                       help="conv2d groups (default: 1)")
    layer.add_argument("--padding-mode", default="zeros",
                       choices=[*PADDING_MODES, "replicate"],
                       help="conv2d padding mode (default: zeros)")
    layer.add_argument("--flip", action="store_true",
                       help="conv2d: true convolution (kernel rotated by 180 degrees)")
    layer.add_argument("--strategy", default=STRATEGIES[0], choices=STRATEGIES,
                       help=f"conv2d lowering strategy (default: {STRATEGIES[0]})")
    layer.add_argument("--exclude-pad", action="store_true",
                       help="avgpool2d: count_include_pad=False")
    layer.add_argument("--negative-slope", type=float, default=0.01, metavar="X",
                       help="leakyrelu slope for x < 0 (default: 0.01)")
    layer.add_argument("--p", type=float, default=0.5, metavar="P",
                       help="dropout probability (default: 0.5)")
    layer.add_argument("--approximate", default="none", choices=("none", "tanh"),
                       help="gelu approximation (default: none)")
    layer.add_argument("--beta", type=float, default=1.0, metavar="X",
                       help="softplus beta (default: 1)")
    layer.add_argument("--threshold", type=float, default=20.0, metavar="X",
                       help="softplus threshold above which it is linear (default: 20)")
    layer.add_argument("--init", type=float, default=0.25, metavar="X",
                       help="prelu initial slope (default: 0.25)")
    layer.add_argument("--per-channel", action="store_true",
                       help="prelu: one slope per input channel (num_parameters=C)")
    layer.add_argument("--reduction", default="mean", choices=("mean", "sum", "none"),
                       help="loss reduction (default: mean)")
    layer.add_argument("--label-smoothing", type=float, default=0.0, metavar="X",
                       help="crossentropy label smoothing in [0, 1] (default: 0)")
    layer.add_argument("--soft-targets", action="store_true",
                       help="crossentropy: class probabilities instead of class indices")
    layer.add_argument("--eval", action="store_true",
                       help="check the layer in eval mode (default: training mode)")
    check = parser.add_argument_group("check")
    check.add_argument("--mode", default="full", choices=MODES,
                       help="full: perturb every element; fast: random directions "
                            "(default: full)")
    check.add_argument("--directions", type=int, default=DEFAULT_DIRECTIONS, metavar="N",
                       help=f"directions per tensor in fast mode (default: "
                            f"{DEFAULT_DIRECTIONS})")
    check.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                       help="dtype of the layer and input, checked in float64 either way "
                            "(default: float32)")
    check.add_argument("--seed", type=int, default=0, metavar="N",
                       help="seed of weights, data and dy (default: 0)")
    check.add_argument("--eps", type=float, default=DEFAULT_EPS, metavar="X",
                       help=f"finite-difference step (default: {DEFAULT_EPS:g})")
    check.add_argument("--atol", type=float, default=DEFAULT_ATOL, metavar="X",
                       help=f"absolute tolerance (default: {DEFAULT_ATOL:g})")
    check.add_argument("--rtol", type=float, default=DEFAULT_RTOL, metavar="X",
                       help=f"relative tolerance (default: {DEFAULT_RTOL:g})")


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


def input_shape(entry: LayerEntry, args) -> tuple[int, ...]:
    """The shape of the input ``entry`` is checked on."""
    if entry.input_kind == "features":
        return (args.batch, args.channels)
    height, width = (args.size * 2)[:2]
    return (args.batch, args.channels, height, width)


def check_sizes(entry: LayerEntry, args, dtype) -> None:
    """Refuse (CliError naming the limit) a check too large to run, before building the
    layer for real: the size is worked out on a placeholder-weight copy."""
    shape = input_shape(entry, args)
    if math.prod(shape) > MAX_TENSOR_ELEMENTS:
        raise CliError(f"the input of shape {shape} has {math.prod(shape):,} elements, over "
                       f"the limit of {MAX_TENSOR_ELEMENTS:,} for gradcheck; use smaller "
                       f"--batch, --channels or --size")
    try:
        with deferred_init():
            probe = entry.build(args, dtype)
        out_shape = probe.output_shape(shape)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if out_shape is not None and math.prod(out_shape) > MAX_TENSOR_ELEMENTS:
        raise CliError(f"the layer's output of shape {tuple(out_shape)} has "
                       f"{math.prod(out_shape):,} elements, over the limit of "
                       f"{MAX_TENSOR_ELEMENTS:,} for gradcheck")
    params = probe.parameter_count()
    if params > MAX_PARAM_ELEMENTS:
        raise CliError(f"the layer has {params:,} parameters, over the limit of "
                       f"{MAX_PARAM_ELEMENTS:,} for gradcheck; use fewer --channels or "
                       f"--out-channels or a smaller --kernel")
    perturbed = math.prod(shape) + params
    if args.mode == "full" and perturbed > MAX_FULL_ELEMENTS:
        raise CliError(f"--mode full perturbs every input and parameter element (two forward "
                       f"passes each): {perturbed:,} elements is over the limit of "
                       f"{MAX_FULL_ELEMENTS:,}; use --mode fast or a smaller input or layer")
    per_pass = perturbed + (math.prod(out_shape) if out_shape is not None else 0)
    if args.mode == "full" and perturbed * per_pass > MAX_FULL_WORK:
        raise CliError(f"--mode full would run {2 * perturbed:,} forward passes over "
                       f"{per_pass:,} elements each, over the limit of {MAX_FULL_WORK:,} "
                       f"element-passes; use --mode fast or a smaller input or layer")


def make_input(entry: LayerEntry, args, dtype, rng: np.random.Generator) -> np.ndarray:
    """A random input for ``entry``: no element near a kink of the layer being checked."""
    shape = input_shape(entry, args)
    size = math.prod(shape)
    if entry.data == "tie_free":
        # Distinct values spaced far wider than 2 * eps: no max-pool window has a near-tie.
        spacing = max(4.0 / size, 10 * args.eps)
        x = (rng.permutation(size) - size / 2) * spacing
    elif entry.data == "away_from_zero":
        x = rng.choice([-1.0, 1.0], size) * rng.uniform(0.1, 1.0, size)
    elif entry.data == "kinked":
        # Around every kink of ReLU6 / Hardswish / Hardsigmoid (-3, 0, 3, 6), on either
        # side, never within 0.1 of one.
        x = rng.choice([-3.0, 0.0, 3.0, 6.0], size) + rng.choice([-1.0, 1.0], size) * \
            rng.uniform(0.1, 1.0, size)
    else:
        x = rng.standard_normal(size)
    return x.reshape(shape).astype(dtype)


def run(args) -> int:
    _validate(args)
    entry = LAYERS[args.layer]
    dtype = np.dtype(args.dtype)
    check_sizes(entry, args, dtype)
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
