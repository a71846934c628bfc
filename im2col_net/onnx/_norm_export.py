"""ONNX export of the normalisation layers (GroupNorm, LayerNorm, InstanceNorm2D,
LocalResponseNorm, and BatchNorm on batch statistics).

Choices, each exact (the same formula, only the rounding of a different evaluation
order may differ):

- statistics of the input are computed by a decomposition into ReduceMean, Sub, Mul,
  Add, Sqrt and Div, valid for every opset 13+ and for float32 and float64 alike
  (ReduceMean takes its axes as an attribute before opset 18, as an input from 18);
- LayerNorm of a float32 model uses LayerNormalization from opset 17 (its float32
  statistics are what this engine computes); float64 models and older opsets use the
  decomposition;
- GroupNorm always uses the decomposition on a ``(N, G, -1)`` reshape: opset 18's
  GroupNormalization scales per group, not per channel, and opset 21's computes in
  float32 by default;
- InstanceNorm2D on running statistics (track_running_stats in eval mode) is an
  inference BatchNormalization, as is BatchNorm;
- LocalResponseNorm of a float32 model with an odd size maps to LRN, whose channel
  window then matches torch's; for an even size ONNX's window leans the other way (and
  onnxruntime refuses even sizes), and onnxruntime's LRN takes no float64, so those
  cases use a decomposition (Pad, Slice, Add, Mul, Pow, Div) of torch's formula.
"""

from __future__ import annotations

import numpy as np

from ..layers import (
    BatchNorm1D,
    BatchNorm2D,
    GroupNorm,
    InstanceNorm2D,
    LayerNorm,
    LocalResponseNorm,
)

NORM_LAYERS = (GroupNorm, LayerNorm, InstanceNorm2D, LocalResponseNorm)


def _reduce_mean(b, x, axes, path, prefix):
    if b.opset >= 18:
        axes_name = b.constant(prefix + "axes", np.array(axes, dtype=np.int64))
        return b.node("ReduceMean", [x, axes_name], path, keepdims=1)
    return b.node("ReduceMean", [x], path, axes=list(axes), keepdims=1)


def normalize(b, x, axes, eps, path, prefix):
    """Nodes computing ``(x - mean) / sqrt(var + eps)`` over ``axes`` (biased variance)."""
    mean = _reduce_mean(b, x, axes, path, prefix)
    centred = b.node("Sub", [x, mean], path)
    var = _reduce_mean(b, b.node("Mul", [centred, centred], path), axes, path, prefix)
    eps_name = b.constant(prefix + "eps", np.array(eps, dtype=b.dtype))
    std = b.node("Sqrt", [b.node("Add", [var, eps_name], path)], path)
    return b.node("Div", [centred, std], path)


def _affine(b, y, layer, shape, path, prefix):
    for name, op in (("weight", "Mul"), ("bias", "Add")):
        if name in layer.params:
            value = np.ascontiguousarray(layer.params[name]).reshape(shape)
            y = b.node(op, [y, b.constant(prefix + name, value)], path)
    return y


def _per_channel_view(b, x, channels, path, prefix):
    """``x (N, C, *)`` reshaped to ``(N, C, -1)`` and the Shape node to undo it: every
    input rank then needs the same nodes (``(N, C)`` becomes ``(N, C, 1)``)."""
    shape = b.node("Shape", [x], path)
    view = b.node("Reshape", [x, b.constant(prefix + "view", np.array(
        [0, channels, -1], dtype=np.int64))], path)
    return view, shape


def emit_batch_stats_batchnorm(b, layer, x, path, prefix):
    """BatchNorm normalising with the statistics of the batch (track_running_stats=False)."""
    view, shape = _per_channel_view(b, x, layer.num_features, path, prefix)
    y = _affine(b, normalize(b, view, [0, 2], layer.eps, path, prefix), layer, (-1, 1), path,
                prefix)
    return b.node("Reshape", [y, shape], path)


def _running_batchnorm(b, layer, x, path, prefix, desc):
    n = layer.num_features
    scale = layer.params.get("weight", np.ones(n, dtype=layer.dtype))
    shift = layer.params.get("bias", np.zeros(n, dtype=layer.dtype))
    inputs = [x, b.constant(prefix + "weight", scale), b.constant(prefix + "bias", shift),
              b.constant(prefix + "running_mean", layer.buffers["running_mean"]),
              b.constant(prefix + "running_var", layer.buffers["running_var"])]
    return b.node("BatchNormalization", inputs, path,
                  epsilon=b.exact_float(desc, "eps", layer.eps))


def _lrn_decomposed(b, layer, x, path, prefix):
    """``x / (k + alpha / size * window_sum(x^2)) ** beta`` from Pad, Slice and Add on an
    ``(N, C, -1)`` view: the window sum adds ``size`` shifted slices of the zero-padded
    squares (any rank, any float dtype; onnxruntime's LRN takes neither an even size
    nor float64)."""
    size = layer.size
    shape = b.node("Shape", [x], path)
    view = b.node("Reshape", [b.node("Mul", [x, x], path),
                              b.constant(prefix + "view", np.array([0, 0, -1], np.int64))],
                  path)
    pads = b.constant(prefix + "pads", np.array([0, size // 2, 0, 0, (size - 1) // 2, 0],
                                                dtype=np.int64))
    padded = b.node("Pad", [view, pads], path)
    axis = b.constant(prefix + "axis", np.array([1], dtype=np.int64))
    total = None
    for offset in range(size):
        # The padded axis holds C + size - 1 entries; each slice keeps C of them.
        back = size - 1 - offset
        end = -back if back else np.iinfo(np.int64).max
        part = b.node("Slice", [padded,
                                b.constant(prefix + "start", np.array([offset], np.int64)),
                                b.constant(prefix + "end", np.array([end], np.int64)), axis],
                      path)
        total = part if total is None else b.node("Add", [total, part], path)
    total = b.node("Reshape", [total, shape], path)
    dt = b.dtype.type
    base = b.node("Add", [b.node("Mul", [total, b.constant(prefix + "alpha_over_size", np.array(
        dt(layer.alpha / size)))], path), b.constant(prefix + "k", np.array(dt(layer.k)))], path)
    power = b.node("Pow", [base, b.constant(prefix + "beta", np.array(dt(layer.beta)))], path)
    return b.node("Div", [x, power], path)


def emit_norm(b, layer, x, path, prefix, desc):
    """The nodes of a normalisation layer, or None when ``layer`` is none of them."""
    if type(layer) in (BatchNorm1D, BatchNorm2D) and not layer.track_running_stats:
        return emit_batch_stats_batchnorm(b, layer, x, path, prefix)
    if type(layer) is GroupNorm:
        shape = b.node("Shape", [x], path)
        grouped = b.node("Reshape", [x, b.constant(prefix + "groups", np.array(
            [0, layer.num_groups, -1], dtype=np.int64))], path)
        y = normalize(b, grouped, [2], layer.eps, path, prefix)
        y = b.node("Reshape", [y, b.constant(prefix + "view", np.array(
            [0, layer.num_channels, -1], dtype=np.int64))], path)
        y = _affine(b, y, layer, (-1, 1), path, prefix)
        return b.node("Reshape", [y, shape], path)
    if type(layer) is LayerNorm:
        k = len(layer.normalized_shape)
        if b.opset >= 17 and b.dtype == np.float32:
            scale = layer.params.get("weight", np.ones(layer.normalized_shape, np.float32))
            inputs = [x, b.constant(prefix + "weight", scale)]
            if "bias" in layer.params:
                inputs.append(b.constant(prefix + "bias", layer.params["bias"]))
            return b.node("LayerNormalization", inputs, path, axis=-k,
                          epsilon=b.exact_float(desc, "eps", layer.eps))
        y = normalize(b, x, list(range(-k, 0)), layer.eps, path, prefix)
        return _affine(b, y, layer, layer.normalized_shape, path, prefix)
    if type(layer) is InstanceNorm2D:
        if layer.track_running_stats:  # eval mode: the running statistics normalise
            return _running_batchnorm(b, layer, x, path, prefix, desc)
        y = normalize(b, x, [2, 3], layer.eps, path, prefix)
        return _affine(b, y, layer, (-1, 1, 1), path, prefix)
    if type(layer) is LocalResponseNorm:
        if layer.size % 2 and b.dtype == np.float32:
            return b.node("LRN", [x], path, size=layer.size,
                          alpha=b.exact_float(desc, "alpha", layer.alpha),
                          beta=b.exact_float(desc, "beta", layer.beta),
                          bias=b.exact_float(desc, "k", layer.k))
        return _lrn_decomposed(b, layer, x, path, prefix)
    return None
