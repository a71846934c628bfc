"""``im2col-net gradcheck LAYER``: finite-difference check of a built-in or a user's layer.

Builds the layer from the options, draws a random input suited to it (tie-free for
max pooling, away from 0 for the ReLU family, off -3, 0, 3 and 6 for ReLU6 and the
hard activations, so no element sits on a kink), runs
:func:`im2col_net.gradcheck.gradcheck` and prints its table. Exit code 0 when every
gradient is within tolerance, 1 when one is not, 2 for bad arguments.

To add a layer, add an entry to :data:`LAYERS`: a builder ``(args, dtype) -> layer``,
the input kind (``"image"`` NCHW or ``"features"`` ``(N, channels)``) and the data kind.
The losses are checked the same way through :class:`LossCheck`, which holds seeded
targets fixed.

A ``LAYER`` with a colon, ``package.module:ClassName``, is a user's class: the module is
imported by name (the current directory first on ``sys.path``, as ``python -m`` does, so a
``mylayers.py`` next to the user is found; importing runs the module's code, which is
what the user asked for), the class must subclass :class:`im2col_net.Layer`, and it is
built as ``ClassName(**json.loads(--args))`` on an input of ``--input-shape``. With
``--reference`` the layer is also compared with the loops of its ``reference_pair()``.

Sizes are bounded before anything is built or drawn (the check runs two forward passes
per perturbed element in full mode): the input and the layer's output may have at most
:data:`MAX_TENSOR_ELEMENTS` elements, its parameters at most :data:`MAX_PARAM_ELEMENTS`,
and ``--mode full`` perturbs at most :data:`MAX_FULL_ELEMENTS` input and parameter
elements in all, and at most :data:`MAX_FULL_WORK` element-passes (perturbed elements
times the input, output and parameter elements each pass touches, about 10 s).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import math
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...functional.conv import STRATEGIES
from ...geometry import PADDING_MODES
from ...gradcheck import (
    DEFAULT_ATOL,
    DEFAULT_DIRECTIONS,
    DEFAULT_EPS,
    DEFAULT_RTOL,
    MODES,
    GradcheckWarning,
    gradcheck,
)
from ...layers import (
    GELU,
    SELU,
    AdaptiveAvgPool2D,
    AdaptiveMaxPool2D,
    AvgPool2D,
    BCEWithLogitsLoss,
    CircularPad2D,
    ConstantPad2D,
    Conv2D,
    CrossEntropyLoss,
    Dropout,
    Dropout2D,
    Flatten,
    GlobalAvgPool2D,
    GroupNorm,
    Hardsigmoid,
    Hardswish,
    Identity,
    InstanceNorm2D,
    LayerNorm,
    LeakyReLU,
    Linear,
    LocalResponseNorm,
    MaxPool2D,
    MaxUnpool2D,
    MSELoss,
    NLLLoss,
    PixelShuffle,
    PixelUnshuffle,
    PReLU,
    ReflectionPad2D,
    ReLU,
    ReLU6,
    ReplicationPad2D,
    Sigmoid,
    SiLU,
    Softplus,
    Tanh,
    Unflatten,
    Upsample,
    ZeroPad2D,
)
from ...layers.base import Layer, deferred_init, init_deferred
from . import CliError, one_line

NAME = "gradcheck"
HELP = "check a layer's gradients (built-in or your own) against central finite differences"

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


def _torch_padding(args):
    """The CLI's --padding (int, (H, W) or (top, bottom, left, right)) in the padding
    layers' torch order (left, right, top, bottom)."""
    padding = args.padding
    if isinstance(padding, str):
        raise CliError(f"--padding {padding!r} is not supported by padding layers; give 1, 2 "
                       f"or 4 ints")
    if isinstance(padding, tuple) and len(padding) == 2:
        return (padding[1], padding[1], padding[0], padding[0])
    if isinstance(padding, tuple):
        top, bottom, left, right = padding
        return (left, right, top, bottom)
    return padding


def _pad(cls):
    return lambda args, dtype: cls(_torch_padding(args))


def _upsample(args, dtype):
    align = args.align_corners if args.upsample_mode == "bilinear" else None
    if args.align_corners and args.upsample_mode != "bilinear":
        raise CliError("--align-corners needs --upsample-mode bilinear")
    return Upsample(scale_factor=_pair(args.scale_factor, 2.0), mode=args.upsample_mode,
                    align_corners=align)


def _factor(args, two_fits):
    """--factor, or by default 2 when the input's shape allows it and 1 otherwise."""
    if args.factor is not None:
        return args.factor
    return 2 if two_fits else 1


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


class UnpoolCheck:
    """MaxUnpool2D seen as a one-input layer for the check: its indices are those a
    MaxPool2D of the same geometry (``return_indices=True``) picks on an image drawn from
    ``seed``, the same every call, so only ``x`` varies (the indices get no gradient)."""

    params: dict = {}
    grads: dict = {}

    def __init__(self, unpool, seed):
        self.unpool, self.seed = unpool, seed
        self.pool = MaxPool2D(unpool.kernel, unpool.stride, unpool.padding,
                              return_indices=True)

    def __repr__(self):
        return repr(self.unpool)

    def output_shape(self, input_shape):
        return self.unpool.output_shape(input_shape)

    def parameter_count(self):
        return 0

    def eval(self):
        """MaxUnpool2D has no train/eval mode: ``--eval`` changes nothing."""
        return self

    def _indices(self, x):
        image_shape = self.unpool.output_shape(x.shape)
        image = np.random.default_rng([self.seed, 3]).standard_normal(image_shape)
        _, indices = self.pool.forward(image.astype(x.dtype))
        if indices.shape != x.shape:
            raise CliError(f"maxunpool2d: a {image_shape} image pools to {indices.shape}, not "
                           f"the input's {x.shape}; choose --size, --kernel, --stride and "
                           f"--padding that invert each other")
        flat = np.sort(indices.reshape(indices.shape[0], indices.shape[1], -1), axis=-1)
        if np.any(flat[..., 1:] == flat[..., :-1]):
            # Two outputs then write one element; the backward (a gather, as torch's) is
            # not the derivative of that forward, so no check could pass.
            raise CliError("maxunpool2d: overlapping pooling windows picked one element twice; "
                           "use a --stride of at least --kernel")
        return indices

    def forward(self, x):
        return self.unpool.forward(x, self._indices(x))

    def backward(self, dy):
        return self.unpool.backward(dy)


def _loss(cls, target_kind, **extra):
    def build(args, dtype):
        options = dict(extra)
        if cls is CrossEntropyLoss:
            options["label_smoothing"] = args.label_smoothing
        kind = "probabilities" if (cls is CrossEntropyLoss and args.soft_targets) else target_kind
        return LossCheck(cls(reduction=args.reduction, **options), kind, args.seed)

    return build
def _built(build):
    """The layer ``build()`` makes, its constructor errors as CLI errors."""
    try:
        return build()
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _linear(args, dtype):
    return Linear(args.channels, args.out_channels, rng=args.seed, dtype=dtype)


def _random_affine(layer, seed):
    """Draw the scale and shift away from their ones/zeros start, so the check covers
    their effect on dx too."""
    if init_deferred():  # a size probe: placeholders, nothing to draw
        return layer
    rng = np.random.default_rng(seed)
    for name, value in layer.params.items():
        value[...] = rng.uniform(0.5, 1.5, value.shape) if name == "weight" else \
            rng.uniform(-1, 1, value.shape)
    return layer


def _norm_layer(args, dtype, build):
    try:
        layer = build()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return _random_affine(layer, args.seed)


def _groupnorm(args, dtype):
    return _norm_layer(args, dtype, lambda: GroupNorm(args.groups, args.channels, dtype=dtype))


def _layernorm(args, dtype):
    height, width = (args.size * 2)[:2]
    return _norm_layer(args, dtype,
                       lambda: LayerNorm((args.channels, height, width), dtype=dtype))


def _instancenorm(args, dtype):
    def build():
        layer = InstanceNorm2D(args.channels, affine=True, track_running_stats=args.eval,
                               dtype=dtype)
        if args.eval and not init_deferred():  # running statistics away from their 0/1 start
            rng = np.random.default_rng(args.seed + 1)
            layer.buffers["running_mean"][...] = rng.uniform(-1, 1, args.channels)
            layer.buffers["running_var"][...] = rng.uniform(0.5, 2, args.channels)
        return layer

    return _norm_layer(args, dtype, build)


def _lrn(args, dtype):
    size = args.kernel[0] if args.kernel else 3
    return _norm_layer(args, dtype, lambda: LocalResponseNorm(size, alpha=0.5))


# name -> how to build it; add new layers here.
LAYERS: dict[str, LayerEntry] = {
    "conv2d": LayerEntry(_conv2d),
    "maxpool2d": LayerEntry(lambda args, dtype: _built(lambda: MaxPool2D(
        **_pool_kwargs(args), dilation=_pair(args.dilation, 1), ceil_mode=args.ceil_mode)),
        data="tie_free"),
    "avgpool2d": LayerEntry(lambda args, dtype: _built(lambda: AvgPool2D(
        **_pool_kwargs(args), ceil_mode=args.ceil_mode, count_include_pad=not args.exclude_pad,
        divisor_override=args.divisor_override))),
    "adaptiveavgpool2d": LayerEntry(lambda args, dtype: _built(
        lambda: AdaptiveAvgPool2D(_pair(args.output_size, 2)))),
    "adaptivemaxpool2d": LayerEntry(lambda args, dtype: _built(
        lambda: AdaptiveMaxPool2D(_pair(args.output_size, 2))), data="tie_free"),
    "globalavgpool2d": LayerEntry(lambda args, dtype: GlobalAvgPool2D()),
    "maxunpool2d": LayerEntry(lambda args, dtype: UnpoolCheck(_built(lambda: MaxUnpool2D(
        **_pool_kwargs(args))), args.seed)),
    "linear": LayerEntry(_linear, input_kind="features"),
    "relu": LayerEntry(lambda args, dtype: ReLU(), data="away_from_zero"),
    "leakyrelu": LayerEntry(lambda args, dtype: LeakyReLU(args.negative_slope),
                            data="away_from_zero"),
    "sigmoid": LayerEntry(lambda args, dtype: Sigmoid()),
    "tanh": LayerEntry(lambda args, dtype: Tanh()),
    "flatten": LayerEntry(lambda args, dtype: Flatten(args.start_dim, args.end_dim)),
    "unflatten": LayerEntry(lambda args, dtype: Unflatten(1, (1, args.channels)),
                            input_kind="features"),
    "zeropad2d": LayerEntry(_pad(ZeroPad2D)),
    "constantpad2d": LayerEntry(lambda args, dtype: ConstantPad2D(_torch_padding(args),
                                                                  args.pad_value)),
    "reflectionpad2d": LayerEntry(_pad(ReflectionPad2D)),
    "replicationpad2d": LayerEntry(_pad(ReplicationPad2D)),
    "circularpad2d": LayerEntry(_pad(CircularPad2D)),
    "upsample": LayerEntry(_upsample),
    "pixelshuffle": LayerEntry(lambda args, dtype: PixelShuffle(_factor(
        args, args.channels % 4 == 0))),
    "pixelunshuffle": LayerEntry(lambda args, dtype: PixelUnshuffle(_factor(
        args, all(s % 2 == 0 for s in args.size)))),
    "dropout": LayerEntry(lambda args, dtype: Dropout(args.p, rng=args.seed)),
    "groupnorm": LayerEntry(_groupnorm),
    "layernorm": LayerEntry(_layernorm),
    "instancenorm2d": LayerEntry(_instancenorm),
    "localresponsenorm": LayerEntry(_lrn),
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
                        help=f"the layer to check, one of: {', '.join(LAYERS)}; or your own "
                             f"class as package.module:ClassName (see --args)")
    user = parser.add_argument_group(
        "your own layer (LAYER given as package.module:ClassName)")
    user.add_argument("--args", default=None, metavar="JSON",
                      help="constructor keyword arguments as a JSON object, e.g. "
                           "'{\"channels\": 8}' (default: {})")
    user.add_argument("--input-shape", default=None, metavar="N,C,H,W",
                      help="the input's shape as comma-separated ints (default: "
                           "--batch,--channels,--size)")
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
                       help="kernel size (default: 3 for conv2d, 2 for pooling); "
                            "localresponsenorm: the channel window size (default: 3)")
    layer.add_argument("--stride", type=int, nargs="+", metavar=("SH", "SW"),
                       help="stride (default: 1 for conv2d, the kernel size for pooling)")
    layer.add_argument("--padding", nargs="+", default=["0"], metavar="P",
                       help="'same', 'valid', or 1, 2 or 4 ints (top bottom left right) "
                            "(default: 0)")
    layer.add_argument("--dilation", type=int, nargs="+", metavar=("DH", "DW"),
                       help="conv2d / maxpool2d dilation (default: 1)")
    layer.add_argument("--groups", type=int, default=1, metavar="G",
                       help="conv2d groups / groupnorm num_groups (default: 1)")
    layer.add_argument("--padding-mode", default="zeros",
                       choices=[*PADDING_MODES, "edge"],
                       help="conv2d padding mode (default: zeros)")
    layer.add_argument("--flip", action="store_true",
                       help="conv2d: true convolution (kernel rotated by 180 degrees)")
    layer.add_argument("--strategy", default=STRATEGIES[0], choices=STRATEGIES,
                       help=f"conv2d lowering strategy (default: {STRATEGIES[0]})")
    layer.add_argument("--exclude-pad", action="store_true",
                       help="avgpool2d: count_include_pad=False")
    layer.add_argument("--ceil-mode", action="store_true",
                       help="maxpool2d / avgpool2d: ceil_mode=True")
    layer.add_argument("--divisor-override", type=int, default=None, metavar="D",
                       help="avgpool2d: divisor_override (default: none)")
    layer.add_argument("--output-size", type=int, nargs="+", metavar=("HO", "WO"),
                       help="adaptive pools: output size (default: 2)")
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
    layer.add_argument("--pad-value", type=float, default=0.0, metavar="X",
                       help="constantpad2d fill value (default: 0)")
    layer.add_argument("--scale-factor", type=float, nargs="+", metavar=("SH", "SW"),
                       help="upsample scale factor (default: 2)")
    layer.add_argument("--upsample-mode", default="nearest", choices=("nearest", "bilinear"),
                       help="upsample mode (default: nearest)")
    layer.add_argument("--align-corners", action="store_true",
                       help="upsample: align_corners=True (bilinear only)")
    layer.add_argument("--factor", type=int, metavar="R",
                       help="pixelshuffle upscale / pixelunshuffle downscale factor "
                            "(default: 2 when the input's shape allows it, else 1)")
    layer.add_argument("--start-dim", type=int, default=1, metavar="D",
                       help="flatten start_dim (default: 1)")
    layer.add_argument("--end-dim", type=int, default=-1, metavar="D",
                       help="flatten end_dim (default: -1)")
    layer.add_argument("--eval", action="store_true",
                       help="check the layer in eval mode (default: training mode); "
                            "instancenorm2d: with running statistics")
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
    check.add_argument("--data", default=None, choices=[d.replace("_", "-") for d in DATA_KINDS],
                       help="input values: normal, away-from-zero (for kinks at 0) or tie-free "
                            "(for max-like layers) (default: the layer's kind; normal for "
                            "your own)")
    check.add_argument("--reference", action="store_true",
                       help="also compare forward and backward with the layer's reference "
                            "loops (your layer's reference_pair() method)")


def _validate(args) -> None:
    if ":" in args.layer:
        args.input_shape = _parse_input_shape(args.input_shape)
    else:
        if args.layer not in LAYERS:
            raise CliError(f"unknown layer {args.layer!r}; expected one of: "
                           f"{', '.join(LAYERS)}, or your own as package.module:ClassName")
        for option, value in (("--args", args.args), ("--input-shape", args.input_shape)):
            if value is not None:
                raise CliError(f"{option} is for your own layer (package.module:ClassName); "
                               f"{args.layer!r} is built-in, set it with its own options")
    for option, value in (("--batch", args.batch), ("--channels", args.channels),
                          ("--out-channels", args.out_channels)):
        if value < 1:
            raise CliError(f"{option} must be a positive int, got {value}")
    if args.factor is not None and args.factor < 1:
        raise CliError(f"--factor must be a positive int, got {args.factor}")
    if args.scale_factor is not None and (len(args.scale_factor) > 2
                                          or min(args.scale_factor) <= 0):
        raise CliError(f"--scale-factor takes 1 or 2 positive numbers, got "
                       f"{' '.join(map(str, args.scale_factor))}")
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


# -- a user's layer ------------------------------------------------------------------------


def _parse_input_shape(text):
    """``"2,8,5,5"`` -> ``(2, 8, 5, 5)``; None stays None (the default shape is used)."""
    if text is None:
        return None
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise CliError(f"--input-shape takes comma-separated positive ints like 2,8,5,5, "
                       f"got {text!r}")
    return shape


def _import_user_module(name):
    """Import ``name`` as ``python -m`` would find it: the current directory first."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise CliError(f"no module named {exc.name!r} (looked in the current directory "
                           f"{cwd} and on sys.path)") from None
        raise CliError(f"importing module {name!r} failed: {type(exc).__name__}: "
                       f"{one_line(exc)}") from None
    except Exception as exc:
        raise CliError(f"importing module {name!r} failed: {type(exc).__name__}: "
                       f"{one_line(exc)}") from None
    finally:
        if added:
            sys.path.remove(cwd)


def load_user_class(spec: str) -> type:
    """The :class:`~im2col_net.Layer` subclass named by ``package.module:ClassName``."""
    module_name, _, qualname = spec.partition(":")
    if not module_name or not qualname or ":" in qualname:
        raise CliError(f"a user layer is given as package.module:ClassName, got {spec!r}")
    module = _import_user_module(module_name)
    obj = module
    for part in qualname.split("."):
        if not hasattr(obj, part):
            layers = sorted(n for n, v in vars(module).items()
                            if isinstance(v, type) and issubclass(v, Layer)
                            and v.__module__ == module.__name__)
            found = f"; its Layer classes: {', '.join(layers)}" if layers else ""
            raise CliError(f"module {module_name!r} ({getattr(module, '__file__', None)}) has "
                           f"no attribute {qualname!r}{found}")
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Layer)):
        what = f"the class {obj.__name__}" if isinstance(obj, type) else \
            f"an object of type {type(obj).__name__}"
        raise CliError(f"{spec} is {what}, not a subclass of im2col_net.Layer")
    return obj


def _parse_user_args(text) -> dict:
    if text is None:
        return {}
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--args is not valid JSON ({exc}): {text!r}") from None
    if not isinstance(kwargs, dict):
        raise CliError(f"--args must be a JSON object of constructor keyword arguments, like "
                       f"'{{\"channels\": 8}}', got a JSON {type(kwargs).__name__}: {text!r}")
    return kwargs


def build_user_layer(args, dtype):
    """Import, construct and (if its parameters are of another dtype) convert the layer."""
    cls = load_user_class(args.layer)
    kwargs = _parse_user_args(args.args)
    shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    try:
        layer = cls(**kwargs)
    except Exception as exc:
        raise CliError(f"{cls.__name__}({shown}) failed: {type(exc).__name__}: "
                       f"{one_line(exc)}") from None
    try:
        if layer.dtype is not None and layer.dtype != dtype:
            layer.astype(dtype)
    except Exception as exc:
        raise CliError(f"{cls.__name__}({shown}): converting it to --dtype {dtype} failed: "
                       f"{type(exc).__name__}: {one_line(exc)}") from None
    return layer


def user_entry(args) -> LayerEntry:
    """A :class:`LayerEntry` for ``args.layer`` (the class is imported by ``build``)."""
    return LayerEntry(build_user_layer, input_kind="user",
                      data=(args.data or "normal").replace("-", "_"))


# -- the check ------------------------------------------------------------------------------


def input_shape(entry: LayerEntry, args) -> tuple[int, ...]:
    """The shape of the input ``entry`` is checked on."""
    if entry.input_kind == "user" and args.input_shape is not None:
        return args.input_shape
    if entry.input_kind == "features":
        return (args.batch, args.channels)
    height, width = (args.size * 2)[:2]
    return (args.batch, args.channels, height, width)


def check_input_size(entry: LayerEntry, args) -> tuple[int, ...]:
    """The input shape, refused (CliError naming the limit) when it is too large."""
    shape = input_shape(entry, args)
    if math.prod(shape) > MAX_TENSOR_ELEMENTS:
        options = "--input-shape" if entry.input_kind == "user" else \
            "--batch, --channels or --size"
        raise CliError(f"the input of shape {shape} has {math.prod(shape):,} elements, over "
                       f"the limit of {MAX_TENSOR_ELEMENTS:,} for gradcheck; use a smaller "
                       f"{options}")
    return shape


def check_sizes(entry: LayerEntry, args, dtype, layer=None, out_shape=None) -> None:
    """Refuse (CliError naming the limit) a check too large to run. A built-in layer is
    sized before it is built for real, on a placeholder-weight copy; a user's ``layer``
    is given built (its constructor, the user's code, decides what it allocates), with
    ``out_shape`` when its ``output_shape`` could not tell."""
    shape = check_input_size(entry, args)
    if layer is None:
        try:
            with deferred_init():
                layer = entry.build(args, dtype)
            out_shape = layer.output_shape(shape)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    if out_shape is not None and math.prod(out_shape) > MAX_TENSOR_ELEMENTS:
        raise CliError(f"the layer's output of shape {tuple(out_shape)} has "
                       f"{math.prod(out_shape):,} elements, over the limit of "
                       f"{MAX_TENSOR_ELEMENTS:,} for gradcheck")
    params = layer.parameter_count()
    if params > MAX_PARAM_ELEMENTS:
        hint = "smaller --args" if entry.input_kind == "user" else \
            "fewer --channels or --out-channels or a smaller --kernel"
        raise CliError(f"the layer has {params:,} parameters, over the limit of "
                       f"{MAX_PARAM_ELEMENTS:,} for gradcheck; use {hint}")
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


def _user_code(layer, what, call, *call_args):
    """Run a user layer's method; its exceptions become one-line CliErrors."""
    try:
        return call(*call_args)
    except CliError:
        raise
    except Exception as exc:
        raise CliError(f"{layer!r} {what} raised {type(exc).__name__}: "
                       f"{one_line(exc)}") from None


def _prepare_user_layer(entry: LayerEntry, args, dtype, rng):
    """Build the user's layer and its input, bounding every size before the check."""
    shape = check_input_size(entry, args)
    layer = entry.build(args, dtype)
    if args.eval:
        layer.eval()
    out_shape = _user_code(layer, "output_shape()", layer.output_shape, shape)
    x = make_input(entry, args, dtype, rng)
    if out_shape is None:
        # The layer cannot tell its output size without running: one forward pass sizes it.
        out_shape = np.shape(_user_code(layer, "forward()", layer.forward, x.copy()))
    check_sizes(entry, args, dtype, layer=layer, out_shape=out_shape)
    return layer, x


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


def _compare_with_reference(layer, x, args) -> bool:
    """Print how ``layer`` compares with its ``reference_pair()``; True when it matches."""
    try:
        from ... import testing
    except ImportError as exc:
        raise CliError(f"--reference needs hypothesis ({exc}); install the testing extra, "
                       f"pip install im2col_net[testing]") from None
    # A copy: the comparison runs forward and backward, which must not touch the layer shown.
    probe = copy.deepcopy(layer)
    # Layer.reference_pair itself only says there is none; a layer declares one by overriding.
    if getattr(type(probe), "reference_pair", Layer.reference_pair) is Layer.reference_pair:
        raise CliError(f"--reference: {type(layer).__name__} has no reference_pair() "
                       f"method returning (forward(x), backward(x, dy))")
    pair = _user_code(layer, "reference_pair()", probe.reference_pair)
    if not (isinstance(pair, tuple) and len(pair) == 2 and all(map(callable, pair))):
        raise CliError(f"--reference: {type(layer).__name__}.reference_pair() must return a "
                       f"pair of callables (forward(x), backward(x, dy)), got "
                       f"{type(pair).__name__}")
    try:
        testing.assert_layer_matches_reference(probe, *pair, x.copy(), seed=args.seed)
    except AssertionError as exc:
        print(f"reference: FAILED: {one_line(exc)}")
        return False
    except Exception as exc:
        raise CliError(f"--reference: comparing {layer!r} with its reference raised "
                       f"{type(exc).__name__}: {one_line(exc)}") from None
    rtol, atol = testing.default_tolerances(x.dtype)
    print(f"reference: forward and backward match reference_pair() (rtol={rtol:g}, "
          f"atol={atol:g})")
    return True


def run(args) -> int:
    _validate(args)
    user = ":" in args.layer
    entry = user_entry(args) if user else LAYERS[args.layer]
    dtype = np.dtype(args.dtype)
    if args.data is not None and not user:
        entry = LayerEntry(entry.build, entry.input_kind, args.data.replace("-", "_"))
    rng = np.random.default_rng(args.seed)
    if user:
        layer, x = _prepare_user_layer(entry, args, dtype, rng)
    else:
        check_sizes(entry, args, dtype)
        try:
            layer = entry.build(args, dtype)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        if args.eval:
            layer.eval()
        x = make_input(entry, args, dtype, rng)
    with warnings.catch_warnings():
        # The warnings' text is printed as notes under the table.
        warnings.simplefilter("ignore", GradcheckWarning)
        try:
            report = gradcheck(layer, x, eps=args.eps, atol=args.atol, rtol=args.rtol,
                               mode=args.mode, seed=args.seed, directions=args.directions)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        except Exception as exc:
            if not user:
                raise
            raise CliError(f"{layer!r} raised {type(exc).__name__} during the check: "
                           f"{one_line(exc)}") from None
    mode = "eval" if args.eval else "training"
    print(f"layer: {layer!r} ({mode} mode)")
    print(f"input: shape {x.shape}, {x.dtype}, {entry.data.replace('_', '-')} data")
    print(report)
    matches = _compare_with_reference(layer, x, args) if args.reference else True
    return 0 if report.ok and matches else 1
