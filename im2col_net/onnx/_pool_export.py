"""ONNX export of the pooling layers (MaxPool2D, AvgPool2D, the adaptive pools).

Choices, each exact:

- ``ceil_mode`` is exported as floor mode with the last window's overhang added to the
  bottom/right ``pads`` for the layer's input size in the exported graph (known: only
  the batch axis is symbolic). ONNX's own ``ceil_mode`` attribute is not used because
  onnxruntime keeps a last window that starts in the right padding, which PyTorch (and
  this engine) drop.
- AveragePool's divisor with an overhang: ``count_include_pad=0`` over the extended
  pads counts the real elements (this engine's ``count_include_pad=False``); for
  ``count_include_pad=True`` the real padding is made explicit with a ``Pad`` node, so
  that it counts and the overhang does not, as in PyTorch.
- MaxPool pads reaching the kernel size (a dilated ceil-mode overhang) go into a
  ``Pad`` node of ``-inf`` instead, since onnxruntime refuses such pads; average pooling
  never needs it (its last window always holds a real element, so its pads stay below
  the kernel).
- ``divisor_override=d``: AveragePool with ``count_include_pad=1`` over explicit pads
  (divisor ``kh*kw``, the windows' sums over it) times ``kh*kw/d`` (a Mul).
- Adaptive pools export when the output size divides the input size (equal windows:
  AveragePool / MaxPool with kernel = stride = input/output, or the Global pools for a
  1x1 output) and are refused otherwise, naming the layer and the option.
- ``return_indices=True`` and ``MaxUnpool2D`` are refused: they need a second output or
  input, and the exported graph has one input and one output.

The input size of each layer is read from the shape probe that :func:`to_model_proto`
runs before emitting nodes.
"""

from __future__ import annotations

import numpy as np

from ..functional.pool import call_geometry
from ..geometry import adaptive_output_size
from ..layers import AdaptiveAvgPool2D, AdaptiveMaxPool2D, AvgPool2D, MaxPool2D, MaxUnpool2D
from .deps import OnnxError

POOL_LAYERS = (MaxPool2D, AvgPool2D, AdaptiveAvgPool2D, AdaptiveMaxPool2D, MaxUnpool2D)


def _input_hw(layer, desc):
    cache = getattr(layer, "_cache", None)
    shape = getattr(cache, "input_shape", None)
    if shape is None:
        raise OnnxError(f"export: {desc}: its input size is unknown (the shape probe did not "
                        f"reach it)")
    return tuple(shape[2:4])


def emit_pool(b, layer, x, path, prefix, desc):
    """Append the nodes of a pooling ``layer`` applied to ``x``; return the output name."""
    if type(layer) is MaxUnpool2D:
        raise OnnxError(f"export: {desc}: MaxUnpool2D takes the indices as a second input; "
                        f"models with one input cannot contain it")
    if getattr(layer, "return_indices", False):
        raise OnnxError(f"export: {desc}: return_indices=True gives a second output (the "
                        f"indices); export the model with return_indices=False")
    if type(layer) in (AdaptiveAvgPool2D, AdaptiveMaxPool2D):
        return _emit_adaptive(b, layer, x, path, desc)
    h, w = _input_hw(layer, desc)
    g = layer.geometry
    floor = call_geometry(g, layer.ceil_mode, h, w)
    top, bottom, left, right = floor.padding
    extra_h, extra_w = bottom - g.padding[1], right - g.padding[3]
    attrs = dict(kernel_shape=list(g.kernel), strides=list(g.stride))
    if type(layer) is MaxPool2D:
        if max(top, bottom) >= g.kernel[0] or max(left, right) >= g.kernel[1]:
            # onnxruntime wants pads below the kernel; a dilated ceil-mode overhang may not be.
            widths = b.constant(prefix + "pads", np.array([0, 0, top, left, 0, 0, bottom, right],
                                                          dtype=np.int64))
            fill = b.constant(prefix + "pad_value", np.array(-np.inf, dtype=b.dtype))
            x = b.node("Pad", [x, widths, fill], path, mode="constant")
            top = bottom = left = right = 0
        return b.node("MaxPool", [x], path, pads=[top, left, bottom, right],
                      dilations=list(g.dilation), **attrs)
    kh, kw = g.kernel
    if layer.divisor_override is not None:
        avg = b.node("AveragePool", [x], path, pads=[top, left, bottom, right],
                     count_include_pad=1, **attrs)
        scale = b.constant(prefix + "divisor_scale",
                           np.array(kh * kw / layer.divisor_override, dtype=b.dtype))
        return b.node("Mul", [avg, scale], path)
    if not (extra_h or extra_w):
        return b.node("AveragePool", [x], path, pads=[top, left, bottom, right],
                      count_include_pad=int(layer.count_include_pad), **attrs)
    if layer.count_include_pad and any(g.padding):
        t, bt, lf, rt = g.padding
        widths = b.constant(prefix + "pads", np.array([0, 0, t, lf, 0, 0, bt, rt],
                                                      dtype=np.int64))
        x = b.node("Pad", [x, widths], path, mode="constant")
        top = left = 0
        bottom, right = extra_h, extra_w
    return b.node("AveragePool", [x], path, pads=[top, left, bottom, right],
                  count_include_pad=0, **attrs)


def _emit_adaptive(b, layer, x, path, desc):
    h, w = _input_hw(layer, desc)
    out_h, out_w = adaptive_output_size(layer.output_size, h, w)
    is_max = type(layer) is AdaptiveMaxPool2D
    if (out_h, out_w) == (1, 1):
        return b.node("GlobalMaxPool" if is_max else "GlobalAveragePool", [x], path)
    if h % out_h or w % out_w:
        raise OnnxError(f"export: {desc}: output_size={(out_h, out_w)} does not divide the "
                        f"input size {(h, w)} here; ONNX has no adaptive pooling, only "
                        f"equal windows export")
    kernel = [h // out_h, w // out_w]
    return b.node("MaxPool" if is_max else "AveragePool", [x], path, kernel_shape=kernel,
                  strides=kernel, pads=[0, 0, 0, 0])
