"""Resampling of NCHW arrays: nearest and bilinear upsampling, pixel (un)shuffle.

Upsampling is separable: every output row (column) reads at most two input rows
(columns) with weights, so forward is a gather and a weighted sum along W, then along
H, and backward the exact adjoint: sums of ``dy`` over the output positions that read
each input position. The source indices are non-decreasing in the output index, so the
sums are contiguous runs and ``np.add.reduceat`` makes them without an unbuffered scatter-add. A NaN
stays where it is read (no matrix product spreads it through zero weights).

Index rules (PyTorch's CPU kernels; where its documentation says less, this is what it
does):

* ``scale``: ``1 / scale_factor`` when a scale factor is used as such (torch's default
  ``recompute_scale_factor=None``), else ``in / out``;
* nearest: ``src = min(floor(dst * scale), in - 1)`` computed in float32 whatever the
  input dtype, with the shortcuts ``out == in`` (identity) and ``out == 2 * in``
  (``dst // 2``) taken first, as torch does, even when the scale says otherwise;
* bilinear: ``align_corners=True``: ``src = dst * (in - 1) / (out - 1)`` (0 for one
  output); else the half-pixel centre ``max((dst + 0.5) * scale - 0.5, 0)``; computed in
  the input's dtype; ``i0 = floor(src)``, ``i1 = min(i0 + 1, in - 1)``, weight of
  ``i1`` is ``src - i0``; ``out == in`` is the identity.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["UPSAMPLE_MODES", "upsample_output_size", "nearest_source_index",
           "linear_source_weights", "resample_tables", "upsample_forward", "upsample_backward",
           "pixel_shuffle_forward", "pixel_shuffle_backward", "pixel_unshuffle_forward",
           "pixel_unshuffle_backward"]

UPSAMPLE_MODES = ("nearest", "bilinear")


def upsample_output_size(in_hw, size=None, scale_factor=None) -> tuple[int, int]:
    """``(Ho, Wo)``: ``size`` when given, else ``floor(in * scale_factor)`` per axis."""
    if size is not None:
        return (int(size[0]), int(size[1]))
    return tuple(int(math.floor(float(n) * float(s))) for n, s in zip(in_hw, scale_factor,
                                                                         strict=True))


def nearest_source_index(in_size: int, out_size: int, scale_factor=None) -> np.ndarray:
    """int64 ``(out_size,)``: the input index each output index copies (nearest)."""
    dst = np.arange(out_size, dtype=np.int64)
    if out_size == in_size:
        return dst
    if out_size == 2 * in_size:
        return dst >> 1
    if scale_factor is not None and scale_factor > 0:
        scale = np.float32(1.0 / float(scale_factor))
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    src = np.floor(dst.astype(np.float32) * scale).astype(np.int64)
    return np.minimum(src, in_size - 1)


def linear_source_weights(in_size: int, out_size: int, align_corners: bool,
                          scale_factor=None, dtype=np.float64):
    """``(i0, i1, w0, w1)``: output ``o`` is ``w0[o] * x[i0[o]] + w1[o] * x[i1[o]]``
    (int64 indices, weights of ``dtype``)."""
    dtype = np.dtype(dtype)
    dst = np.arange(out_size, dtype=np.int64)
    if out_size == in_size:
        return dst, dst, np.ones(out_size, dtype), np.zeros(out_size, dtype)
    if align_corners:
        ratio = (dtype.type(in_size - 1) / dtype.type(out_size - 1)) if out_size > 1 \
            else dtype.type(0)
        src = ratio * dst.astype(dtype)
    else:
        if scale_factor is not None and scale_factor > 0:
            ratio = dtype.type(1.0 / float(scale_factor))
        else:
            ratio = dtype.type(in_size) / dtype.type(out_size)
        src = ratio * (dst.astype(dtype) + dtype.type(0.5)) - dtype.type(0.5)
        src = np.maximum(src, dtype.type(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    w1 = np.clip(src - i0.astype(dtype), dtype.type(0), dtype.type(1)).astype(dtype)
    i1 = i0 + (i0 < in_size - 1)
    w0 = (dtype.type(1) - w1).astype(dtype)
    return i0, i1, w0, w1


def resample_tables(mode, in_hw, out_hw, align_corners, scales, dtype):
    """Per spatial axis: None (identity) or ``(i0, i1, w0, w1)`` (``w1`` None: nearest)."""
    tables = []
    for n_in, n_out, scale in zip(in_hw, out_hw, scales, strict=True):
        if mode == "nearest":
            index = nearest_source_index(n_in, n_out, scale)
            tables.append(None if n_in == n_out else (index, None, None, None))
        else:
            i0, i1, w0, w1 = linear_source_weights(n_in, n_out, align_corners, scale, dtype)
            tables.append(None if n_in == n_out else (i0, i1, w0, w1))
    return tables


def _shape_along(w, axis):
    shape = [1, 1, 1, 1]
    shape[axis] = w.size
    return w.reshape(shape)


def _interp_axis(x, table, axis):
    if table is None:
        return x
    i0, i1, w0, w1 = table
    if w1 is None:
        return np.take(x, i0, axis=axis)
    y = np.take(x, i0, axis=axis)
    y *= _shape_along(w0, axis)
    y += np.take(x, i1, axis=axis) * _shape_along(w1, axis)
    return y


def _sum_runs(values, index, in_size, axis):
    """``out[i] = sum of values[o] (along axis) over o with index[o] == i``; ``index``
    non-decreasing."""
    shape = list(values.shape)
    shape[axis] = in_size
    out = np.zeros(shape, dtype=values.dtype)
    if index.size == 0:
        return out
    targets, starts = np.unique(index, return_index=True)
    sums = np.add.reduceat(values, starts, axis=axis)
    where = [slice(None)] * values.ndim
    where[axis] = targets
    out[tuple(where)] = sums
    return out


def _adjoint_axis(dy, table, in_size, axis):
    if table is None:
        return dy
    i0, i1, w0, w1 = table
    if w1 is None:
        return _sum_runs(dy, i0, in_size, axis)
    dx = _sum_runs(dy * _shape_along(w0, axis), i0, in_size, axis)
    dx += _sum_runs(dy * _shape_along(w1, axis), i1, in_size, axis)
    return dx


def upsample_forward(x: np.ndarray, out_hw, mode: str = "nearest", align_corners=False,
                     scales=(None, None)):
    """Resample NCHW ``x`` to spatial size ``out_hw``; ``scales``: the per-axis scale
    factors to use as such (None: ``in / out``, see the module docstring). Returns
    ``(y, cache)``, ``y`` a new array of ``x.dtype``."""
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"upsample: mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
    x = np.asarray(x)
    in_hw = x.shape[2:]
    tables = resample_tables(mode, in_hw, tuple(out_hw), bool(align_corners), scales, x.dtype)
    # W first, then H: the order of torch's separable kernel.
    y = _interp_axis(_interp_axis(x, tables[1], 3), tables[0], 2)
    if y is x:
        y = x.copy()
    return y, (x.shape, tables)


def upsample_backward(dy: np.ndarray, cache) -> np.ndarray:
    """Adjoint of :func:`upsample_forward`: ``dx`` of the input's shape, ``dy.dtype``."""
    shape, tables = cache
    dx = _adjoint_axis(_adjoint_axis(dy, tables[0], shape[2], 2), tables[1], shape[3], 3)
    return np.array(dx, copy=True) if dx is dy else dx


def pixel_shuffle_forward(x: np.ndarray, r: int):
    """``(N, C*r*r, H, W) -> (N, C, H*r, W*r)``: ``y[n, c, h*r + i, w*r + j] =
    x[n, c*r*r + i*r + j, h, w]`` (torch.nn.PixelShuffle)."""
    n, crr, h, w = x.shape
    c = crr // (r * r)
    y = x.reshape(n, c, r, r, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c, h * r, w * r)
    return np.ascontiguousarray(y), x.shape


def pixel_shuffle_backward(dy: np.ndarray, r: int) -> np.ndarray:
    """Adjoint (= inverse) of :func:`pixel_shuffle_forward`."""
    return pixel_unshuffle_forward(dy, r)[0]


def pixel_unshuffle_forward(x: np.ndarray, r: int):
    """``(N, C, H*r, W*r) -> (N, C*r*r, H, W)``, the inverse of pixel shuffle
    (torch.nn.PixelUnshuffle)."""
    n, c, hr, wr = x.shape
    h, w = hr // r, wr // r
    y = x.reshape(n, c, h, r, w, r).transpose(0, 1, 3, 5, 2, 4).reshape(n, c * r * r, h, w)
    return np.ascontiguousarray(y), x.shape


def pixel_unshuffle_backward(dy: np.ndarray, r: int) -> np.ndarray:
    """Adjoint (= inverse) of :func:`pixel_unshuffle_forward`."""
    return pixel_shuffle_forward(dy, r)[0]
