"""ONNX export of the padding, resampling and reshaping layers (called by
:mod:`im2col_net.onnx.exporter`).

=====================  ======================================================================
layer                  ONNX
=====================  ======================================================================
ZeroPad2D,             ``Pad`` mode ``constant`` (``constant_value`` input for the value)
ConstantPad2D
ReflectionPad2D        ``Pad`` mode ``reflect``
ReplicationPad2D       ``Pad`` mode ``edge``
CircularPad2D          ``Slice`` + ``Concat`` per axis (exact at every opset; ``Pad`` mode
                       ``wrap`` exists only from opset 19)
Upsample nearest       ``Gather`` along H and W with the source indices of torch's rule
                       (``Resize`` computes ``dst / scale`` where torch computes
                       ``dst * (1 / scale)`` and takes shortcuts, so it differs in places)
Upsample bilinear      float32: ``Resize`` mode ``linear``, ``half_pixel`` (or
                       ``align_corners``) with ``sizes`` (``size`` given, or recomputed
                       scale) or ``scales`` (scale factor used as such); float64
                       (onnxruntime has no double Resize), or a scale whose float32 output
                       size would differ: ``Gather`` + ``Mul`` + ``Add``, the same weights
PixelShuffle           ``DepthToSpace`` mode ``CRD``
PixelUnshuffle         ``SpaceToDepth`` (channel order ``(i, j, c)``), then ``Reshape`` /
                       ``Transpose`` / ``Reshape`` to torch's ``(c, i, j)``
Flatten, Unflatten     ``Reshape`` to a shape made from ``Shape`` slices of the input (the
                       batch axis stays dynamic); default Flatten: ``Flatten`` axis 1
=====================  ======================================================================

The upsampling tables need the input's spatial size: the exporter runs the model once
on the declared input shape before emitting nodes, and :class:`~im2col_net.Upsample`
keeps the shape of its last input.
"""

from __future__ import annotations

import numpy as np

from ..layers import (
    CircularPad2D,
    ConstantPad2D,
    Flatten,
    PixelShuffle,
    PixelUnshuffle,
    ReflectionPad2D,
    ReplicationPad2D,
    Unflatten,
    Upsample,
    ZeroPad2D,
)
from .deps import OnnxError

__all__ = ["emit_shape_layer", "SHAPE_LAYERS"]

SHAPE_LAYERS = (ZeroPad2D, ConstantPad2D, ReflectionPad2D, ReplicationPad2D, CircularPad2D,
                Upsample, PixelShuffle, PixelUnshuffle, Unflatten)
_PAD_MODES = {ZeroPad2D: "constant", ConstantPad2D: "constant", ReflectionPad2D: "reflect",
              ReplicationPad2D: "edge"}
_END = np.iinfo(np.int64).max


def _ints(b, base, values):
    return b.constant(base, np.array(values, dtype=np.int64))


def _slice(b, x, start, end, axis, path, prefix):
    return b.node("Slice", [x, _ints(b, prefix + "starts", [start]), _ints(b, prefix + "ends",
                                                                        [end]),
                           _ints(b, prefix + "axes", [axis])], path)


def _shape_parts(b, x, path, prefix, parts):
    """A 1-D int64 shape: ``parts`` are ``("dims", start, end)`` (a slice of
    ``Shape(x)``) or ``("const", [values])``, concatenated."""
    shape = b.node("Shape", [x], path)
    pieces = []
    for part in parts:
        if part[0] == "dims":
            pieces.append(_slice(b, shape, part[1], part[2], 0, path, prefix))
        else:
            pieces.append(_ints(b, prefix + "shape", part[1]))
    return pieces[0] if len(pieces) == 1 else b.node("Concat", pieces, path, axis=0)


def _flatten_parts(start, end):
    parts = []
    if start != 0:
        parts.append(("dims", 0, start))
    parts.append(("const", [-1]))
    if end != -1:
        parts.append(("dims", end + 1, _END))
    return parts


def emit_shape_layer(b, layer, x, path, prefix, desc):
    """The output name of ``layer(x)`` for the layers of this module, else None."""
    kind = type(layer)
    if kind in _PAD_MODES:
        left, right, top, bottom = layer.padding
        inputs = [x, _ints(b, prefix + "pads", [0, 0, top, left, 0, 0, bottom, right])]
        if kind is ConstantPad2D and layer.value != 0:
            inputs.append(b.constant(prefix + "value",
                                     np.array(layer.value, dtype=b.dtype)))
        return b.node("Pad", inputs, path, mode=_PAD_MODES[kind])
    if kind is CircularPad2D:
        left, right, top, bottom = layer.padding
        for axis, before, after in ((3, left, right), (2, top, bottom)):
            parts = []
            if before:
                parts.append(_slice(b, x, -before, _END, axis, path, prefix))
            parts.append(x)
            if after:
                parts.append(_slice(b, x, 0, after, axis, path, prefix))
            if len(parts) > 1:
                x = b.node("Concat", parts, path, axis=axis)
        return b.node("Identity", [x], path)
    if isinstance(layer, Upsample):
        return _emit_upsample(b, layer, x, path, prefix, desc)
    if kind is PixelShuffle:
        return b.node("DepthToSpace", [x], path, blocksize=layer.factor, mode="CRD")
    if kind is PixelUnshuffle:
        r = layer.factor
        s2d = b.node("SpaceToDepth", [x], path, blocksize=r)
        split = _shape_parts(b, s2d, path, prefix, [("dims", 0, 1), ("const", [r * r, -1]),
                                                     ("dims", 2, 4)])
        y = b.node("Transpose", [b.node("Reshape", [s2d, split], path)], path,
                   perm=[0, 2, 1, 3, 4])
        merged = _shape_parts(b, s2d, path, prefix, [("dims", 0, 1), ("const", [-1]),
                                                      ("dims", 2, 4)])
        return b.node("Reshape", [y, merged], path)
    if kind is Flatten and (layer.start_dim, layer.end_dim) != (1, -1):
        target = _shape_parts(b, x, path, prefix, _flatten_parts(layer.start_dim,
                                                                 layer.end_dim))
        return b.node("Reshape", [x, target], path)
    if kind is Unflatten:
        dim = layer.dim
        parts = [("dims", 0, dim)] if dim != 0 else []
        parts.append(("const", list(layer.unflattened_size)))
        if dim != -1:
            parts.append(("dims", dim + 1, _END))
        return b.node("Reshape", [x, _shape_parts(b, x, path, prefix, parts)], path)
    return None


def _emit_upsample(b, layer, x, path, prefix, desc):
    shape = layer.last_input_shape
    if shape is None:
        raise OnnxError(f"export: {desc}: the input shape is unknown (the layer was not run "
                        f"on the declared input shape)")
    out_hw, tables = layer.tables(shape, b.dtype)
    if layer.mode == "bilinear" and b.dtype == np.float32:
        resize = _resize_inputs(b, layer, x, shape, out_hw, path, prefix)
        if resize is not None:
            mode = "align_corners" if layer.align_corners else "half_pixel"
            return b.node("Resize", resize, path, mode="linear",
                          coordinate_transformation_mode=mode)
    # W first, then H, as the engine computes it.
    for axis, table in ((3, tables[1]), (2, tables[0])):
        if table is None:
            continue
        i0, i1, w0, w1 = table
        y = b.node("Gather", [x, _ints(b, prefix + "index", i0)], path, axis=axis)
        if w1 is not None:
            weight_shape = [1, 1, 1, 1]
            weight_shape[axis] = -1
            y = b.node("Mul", [y, b.constant(prefix + "weight", w0.reshape(weight_shape))], path)
            z = b.node("Gather", [x, _ints(b, prefix + "index", i1)], path, axis=axis)
            z = b.node("Mul", [z, b.constant(prefix + "weight", w1.reshape(weight_shape))], path)
            y = b.node("Add", [y, z], path)
        x = y
    return b.node("Identity", [x], path)


def _resize_inputs(b, layer, x, shape, out_hw, path, prefix):
    """Resize's inputs reproducing the layer's source positions, or None.

    Resize maps back with ``dst / scale``, ``scale`` the ``scales`` input or ``out / in``
    with ``sizes``; torch uses ``1 / scale_factor`` when the scale factor is used as such,
    else ``in / out``. So a layer on sizes gets ``sizes``, one on scale factors gets
    ``scales``, provided the float32 ``floor(in * scale)`` Resize computes for the output
    size is the layer's (else the Gather form is used)."""
    if layer.scales == (None, None) or layer.align_corners:
        sizes = _shape_parts(b, x, path, prefix, [("dims", 0, 2), ("const", list(out_hw))])
        return [x, "", "", sizes]
    # torch copies an axis whose output size equals the input's, whatever the scale.
    factors = np.array([1.0, 1.0] + [1.0 if o == i else f for o, i, f in
                                     zip(out_hw, shape[2:], layer.scales, strict=True)],
                       dtype=np.float32)
    sizes = np.floor(np.array(shape, dtype=np.float32) * factors).astype(np.int64)
    if tuple(sizes[2:]) != tuple(out_hw):
        return None
    return [x, "", b.constant(prefix + "scales", factors)]
