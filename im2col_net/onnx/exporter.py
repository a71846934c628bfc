"""Export a model of this engine to an ONNX file of standard operators.

Every layer maps to operators of the default domain with the same arithmetic (see
:data:`im2col_net.onnx.ops.EXPORT_TABLE`); where no exact equivalent exists the export
is refused with :class:`OnnxError` naming the layer and the option. The graph has one
input ``"input"`` of shape ``(N, *input_shape)`` with a symbolic batch ``N`` and one
output ``"output"``, and always describes evaluation mode (dropout is the identity,
batch norm uses its running statistics, or the batch's without ``track_running_stats``)
whatever mode the model is in. The normalisation layers are in :mod:`._norm_export`.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from ..layers import (
    ELU,
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    ConvTranspose2D,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    Graph,
    Layer,
    LeakyReLU,
    Linear,
    LogSoftmax,
    MaxPool2D,
    Parallel,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
)
from ..layers.base import batched_inputs
from ..safeio import atomic_file
from ..serialization import named_layers
from ._norm_export import NORM_LAYERS, emit_norm
from ._pool_export import POOL_LAYERS, emit_pool
from .deps import OnnxError, opset_range, require_onnx
from .export_activations import ACTIVATION_LAYERS, emit_activation
from .export_shape import SHAPE_LAYERS, emit_shape_layer

__all__ = ["export", "to_model_proto", "INPUT_NAME", "OUTPUT_NAME"]

INPUT_NAME = "input"
OUTPUT_NAME = "output"

# Parameter-free layers that are one ONNX operator each.
_SIMPLE_OPS = {ReLU: "Relu", Sigmoid: "Sigmoid", Tanh: "Tanh",
               GlobalAvgPool2D: "GlobalAveragePool"}


def _check_shape(input_shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if not shape or min(shape) < 1 or any(isinstance(s, bool) for s in input_shape):
        raise OnnxError(f"export: input_shape must be the per-sample shape as positive ints "
                        f"(e.g. (1, 28, 28)), got {input_shape!r}")
    return shape


class _Builder:
    """Collects nodes and initialisers while the layer tree is walked."""

    def __init__(self, onnx, dtype: np.dtype):
        self.onnx = onnx
        self.helper = onnx.helper
        self.dtype = dtype
        self.nodes = []
        self.initializers = []
        self._names: set[str] = set()

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def constant(self, base: str, value: np.ndarray) -> str:
        name = self.fresh(base)
        value = np.asarray(value)  # ascontiguousarray would turn a 0-d ratio into 1-d
        value = value if value.flags.c_contiguous else value.copy()
        self.initializers.append(self.onnx.numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs, path: str, **attrs) -> str:
        out = self.fresh(f"{path or 'model'}:{op}")
        self.nodes.append(self.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def exact_float(self, layer_desc, option, value):
        """``value`` as a float attribute; refused when a float64 model would lose bits."""
        if self.dtype != np.float32 and float(np.float32(value)) != float(value):
            raise OnnxError(
                f"export: {layer_desc}: {option}={value!r} is not exactly representable as "
                f"the float32 that ONNX attributes hold, and this {self.dtype} model uses it at "
                f"full precision; convert the model with .astype('float32') first"
            )
        return float(value)


def _emit(b: _Builder, layer: Layer, x: str, path: str) -> str:
    """Append the nodes computing ``layer(x)``; return the output tensor name."""
    desc = f"layer {path or '<model>'} ({type(layer).__name__})"
    prefix = f"{path}." if path else ""
    if type(layer) is Sequential:
        for i, child in enumerate(layer.layers):
            x = _emit(b, child, x, f"{prefix}{i}")
        return x
    if isinstance(layer, Parallel):
        outs = [_emit(b, child, x, f"{prefix}{i}") for i, child in enumerate(layer.children())]
        if len(outs) == 1:
            return outs[0]
        if layer.combine == "concat":
            return b.node("Concat", outs, path, axis=1)
        return _add_chain(b, outs, path)
    if isinstance(layer, Residual):
        body = _emit(b, layer.body, x, f"{prefix}0")
        short = x if layer.shortcut is None else _emit(b, layer.shortcut, x, f"{prefix}1")
        return b.node("Add", [body, short], path)
    if isinstance(layer, Graph):
        return _emit_graph(b, layer, x, path, prefix)
    if isinstance(layer, (*SHAPE_LAYERS, Flatten)) and (
            out := emit_shape_layer(b, layer, x, path, prefix, desc)) is not None:
        return out
    for cls, op in _SIMPLE_OPS.items():
        if type(layer) is cls:
            return b.node(op, [x], path)
    if type(layer) is Conv2D:
        return _emit_conv(b, layer, x, path, prefix, desc)
    if type(layer) is ConvTranspose2D:
        g = layer.geometry
        if any(o >= s for o, s in zip(layer.output_padding, g.stride, strict=True)):
            raise OnnxError(
                f"export: {desc}: output_padding={tuple(layer.output_padding)} is not smaller "
                f"than stride={g.stride}; allowed here (below the dilation) but ONNX runtimes "
                f"reject it"
            )
        top, bottom, left, right = g.padding
        inputs = [x, b.constant(prefix + "weight", layer.params["weight"])]
        if "bias" in layer.params:
            inputs.append(b.constant(prefix + "bias", layer.params["bias"]))
        return b.node("ConvTranspose", inputs, path, kernel_shape=list(g.kernel),
                      strides=list(g.stride), dilations=list(g.dilation),
                      pads=[top, left, bottom, right], output_padding=list(layer.output_padding),
                      group=layer.groups)
    if type(layer) in POOL_LAYERS:
        return emit_pool(b, layer, x, path, prefix, desc)
    if type(layer) is Linear:
        inputs = [x, b.constant(prefix + "weight", layer.params["weight"])]
        if "bias" in layer.params:
            inputs.append(b.constant(prefix + "bias", layer.params["bias"]))
        return b.node("Gemm", inputs, path, transB=1)
    if type(layer) in (BatchNorm1D, BatchNorm2D):
        return _emit_batchnorm(b, layer, x, path, prefix, desc)
    if type(layer) in NORM_LAYERS:
        return emit_norm(b, layer, x, path, prefix, desc)
    if type(layer) is LeakyReLU:
        return b.node("LeakyRelu", [x], path,
                      alpha=b.exact_float(desc, "negative_slope", layer.negative_slope))
    if type(layer) is ELU:
        return b.node("Elu", [x], path, alpha=b.exact_float(desc, "alpha", layer.alpha))
    if type(layer) is Dropout:
        # Without training_mode an ONNX Dropout is the identity; the ratio survives import.
        ratio = b.constant(prefix + "ratio", np.array(layer.p, dtype=np.float32))
        return b.node("Dropout", [x, ratio], path)
    if type(layer) is Flatten:
        return b.node("Flatten", [x], path, axis=1)
    if type(layer) is Softmax:
        return b.node("Softmax", [x], path, axis=layer.dim)
    if type(layer) is LogSoftmax:
        return b.node("LogSoftmax", [x], path, axis=layer.dim)
    if (out := emit_activation(b, layer, x, path, prefix, desc)) is not None:
        return out
    raise OnnxError(f"export: {desc} has no ONNX mapping; supported layers: "
                    f"{', '.join(sorted(_supported_names()))}")


def _supported_names():
    return [c.__name__ for c in (Sequential, Parallel, Residual, Graph, Conv2D, ConvTranspose2D,
                                 MaxPool2D, AvgPool2D, GlobalAvgPool2D, Linear, BatchNorm1D,
                                 BatchNorm2D, Dropout, ReLU, LeakyReLU, Sigmoid, Tanh, ELU,
                                 Flatten, Softmax, LogSoftmax, *NORM_LAYERS,
                                 *ACTIVATION_LAYERS, *POOL_LAYERS[2:4])] + [
        c.__name__ for c in SHAPE_LAYERS]


def _add_chain(b, outs, path):
    total = outs[0]
    for other in outs[1:]:
        total = b.node("Add", [total, other], path)
    return total


def _emit_graph(b, layer: Graph, x, path, prefix):
    values = {-1: x}
    i = 0
    for k, node in enumerate(layer.nodes):
        inputs = [values[r] for r in node["inputs"]]
        if node["op"] == "layer":
            values[k] = _emit(b, layer.layers[i], inputs[0], f"{prefix}{i}")
            i += 1
        elif node["op"] == "concat":
            values[k] = b.node("Concat", inputs, f"{prefix}node{k}", axis=1)
        else:
            values[k] = _add_chain(b, inputs, f"{prefix}node{k}")
    return values[len(layer.nodes) - 1]


def _emit_conv(b, layer: Conv2D, x, path, prefix, desc):
    g = layer.geometry
    top, bottom, left, right = g.padding
    weight = layer.params["weight"]
    if layer.flip_kernel:  # a true convolution is a cross-correlation with the rotated kernel
        weight = weight[:, :, ::-1, ::-1]
    pads = [top, left, bottom, right]
    if layer.padding_mode == "circular" and any(pads) and b.opset < 19:
        x = _emit_wrap_slices(b, x, path, prefix, g.padding)
        pads = [0, 0, 0, 0]
    elif layer.padding_mode != "zeros" and any(pads):
        mode = {"replicate": "edge", "reflect": "reflect", "circular": "wrap"}[
            layer.padding_mode]
        widths = b.constant(prefix + "pads", np.array([0, 0, top, left, 0, 0, bottom, right],
                                                      dtype=np.int64))
        x = b.node("Pad", [x, widths], path, mode=mode)
        pads = [0, 0, 0, 0]
    inputs = [x, b.constant(prefix + "weight", weight)]
    if "bias" in layer.params:
        inputs.append(b.constant(prefix + "bias", layer.params["bias"]))
    return b.node("Conv", inputs, path, kernel_shape=list(g.kernel), strides=list(g.stride),
                  dilations=list(g.dilation), pads=pads, group=layer.groups)


def _emit_wrap_slices(b, x, path, prefix, padding):
    """Circular padding before opset 19 (Pad's "wrap" mode is newer): per axis, the last
    ``before`` and the first ``after`` entries sliced off and concatenated around ``x``.
    Negative starts need no static size; each pad is at most the size (the layer checks)."""
    top, bottom, left, right = padding
    for axis, before, after in ((3, left, right), (2, top, bottom)):
        parts = [x]
        if before:
            parts.insert(0, _slice(b, x, path, prefix, axis, -before, np.iinfo(np.int64).max))
        if after:
            parts.append(_slice(b, x, path, prefix, axis, 0, after))
        if len(parts) > 1:
            x = b.node("Concat", parts, path, axis=axis)
    return x


def _slice(b, x, path, prefix, axis, start, stop):
    """``x[start:stop]`` along ``axis`` as an ONNX Slice (opset 10 and later form)."""
    inputs = [x] + [b.constant(prefix + name, np.array([value], dtype=np.int64))
                    for name, value in (("wrap_starts", start), ("wrap_ends", stop),
                                        ("wrap_axes", axis))]
    return b.node("Slice", inputs, path)


def _emit_batchnorm(b, layer, x, path, prefix, desc):
    if not layer.track_running_stats:  # batch statistics in eval mode too: decomposed
        return emit_norm(b, layer, x, path, prefix, desc)
    n = layer.num_features
    dtype = layer.dtype
    scale = layer.params.get("weight", np.ones(n, dtype=dtype))
    shift = layer.params.get("bias", np.zeros(n, dtype=dtype))
    inputs = [x, b.constant(prefix + "weight", scale), b.constant(prefix + "bias", shift),
              b.constant(prefix + "running_mean", layer.buffers["running_mean"]),
              b.constant(prefix + "running_var", layer.buffers["running_var"])]
    momentum = 0.9 if layer.momentum is None else 1.0 - layer.momentum
    return b.node("BatchNormalization", inputs, path,
                  epsilon=b.exact_float(desc, "eps", layer.eps), momentum=float(momentum))


@contextlib.contextmanager
def _eval_mode(model):
    modes = [(sub, sub.training) for _, sub in named_layers(model)]
    model.eval()
    try:
        yield
    finally:
        for sub, mode in modes:
            sub.training = mode


def to_model_proto(model: Layer, input_shape=(1, 28, 28), opset: int | None = None):
    """The ``onnx.ModelProto`` of ``model`` for per-sample ``input_shape`` (no batch
    axis) at ``opset`` (default: the newest the installed onnx supports), checked with
    ``onnx.checker.check_model(full_check=True)``."""
    onnx = require_onnx()
    if not isinstance(model, Layer):
        raise OnnxError(f"export: expected a Layer, got {type(model).__name__}")
    low, high = opset_range(onnx)
    if opset is None:
        opset = high
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not (
            low <= opset <= high):
        raise OnnxError(f"export: opset must be an int from {low} to {high} (the newest this "
                        f"onnx {onnx.__version__} supports), got {opset!r}")
    shape = _check_shape(input_shape)
    dtype = np.dtype(model.dtype or np.float32)
    with _eval_mode(model), batched_inputs():   # the graph's first axis is the batch
        try:
            probe = np.asarray(model.forward(np.zeros((1,) + shape, dtype=dtype)))
        except ValueError as exc:
            raise OnnxError(f"export: the model does not accept per-sample input shape "
                            f"{shape}: {exc}") from exc
    elem = onnx.helper.np_dtype_to_tensor_dtype(dtype)
    b = _Builder(onnx, dtype)
    b.opset = int(opset)
    b.fresh(INPUT_NAME)
    out = _emit(b, model, INPUT_NAME, "")
    b.nodes.append(onnx.helper.make_node("Identity", [out], [OUTPUT_NAME], name="output"))
    graph = onnx.helper.make_graph(
        b.nodes, "im2col_net",
        [onnx.helper.make_tensor_value_info(INPUT_NAME, elem, ["N", *shape])],
        [onnx.helper.make_tensor_value_info(OUTPUT_NAME, elem, ["N", *probe.shape[1:]])],
        initializer=b.initializers,
    )
    opsets = [onnx.helper.make_opsetid("", int(opset))]
    proto = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="im2col_net")
    proto.ir_version = onnx.helper.find_min_ir_version_for(opsets)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise OnnxError(f"export: the generated graph fails the ONNX checker: {exc}") from exc
    return proto


def export(model: Layer, path, input_shape=(1, 28, 28), opset: int | None = None):
    """Write ``model`` as an ONNX file at ``path`` (atomically: temp file, fsync,
    rename), for per-sample ``input_shape`` such as ``(1, 28, 28)``; the batch axis is
    dynamic. Returns the ``onnx.ModelProto``."""
    proto = to_model_proto(model, input_shape, opset)
    data = proto.SerializeToString()
    with atomic_file(os.fspath(path)) as handle:  # umask-respecting, signals held
        handle.write(data)
    return proto
