"""Reference pooling: max, average and global average, forward and backward, as loops.

Windows follow the convolution geometry: output ``(a, b)`` covers input rows
``a*sh - ph + i*dh`` for ``i < kh`` (likewise for columns; dilation ``d`` for max
pooling only, as in torch). ``stride=None`` means ``stride = kernel_size``; ``padding``
is an int or a pair ``(ph, pw)`` applied on both sides, as in ``torch.nn.MaxPool2d``.
The number of windows is PyTorch's (:func:`im2col_net.geometry.pool_output_size`):
with ``ceil_mode`` the last window may overhang the padded input, but only if it starts
inside the input or the top/left padding.

Max pooling::

    y[n, c, a, b] = max over the window (padded positions count as -inf)
    dx[n, c, p, q] = sum of dy[n, c, a, b] over the windows whose argmax is (p, q)

The argmax is the *first* maximum in row-major window order (kernel row ``i`` outer,
column ``j`` inner), as PyTorch picks it; with ties the gradient goes there only.

Average pooling::

    y[n, c, a, b] = (sum of the real input elements in the window) / divisor
    dx[n, c, p, q] = sum over the windows containing (p, q) of dy[n, c, a, b] / divisor

``divisor`` is, as PyTorch's kernels compute it, ``divisor_override`` when given; else
with ``count_include_pad=True`` (padded zeros count, PyTorch's default) the size of the
window clipped to the padded input (a ceil-mode overhang does not count); else the
number of real input elements in the window.

``max_pool2d_forward(..., return_indices=True)`` also returns, per output, the flat
position ``p * W + q`` of the maximum (PyTorch's ``return_indices``).

Global average pooling: ``y[n, c, 0, 0] = mean(x[n, c])`` and every ``dx[n, c, p, q] =
dy[n, c, 0, 0] / (H * W)``.

All sums run in float64; results have the input's dtype.
"""

from __future__ import annotations

import math

import numpy as np

from ..geometry import as_pair, pool_output_size

__all__ = [
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "global_avg_pool2d_backward",
]


def _setup(x, kernel_size, stride, padding, owner, dilation=1, ceil_mode=False):
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{owner}: expected x of shape (N, C, H, W), got {x.shape}")
    kh, kw = as_pair(kernel_size, "kernel_size", owner=owner)
    sh, sw = (kh, kw) if stride is None else as_pair(stride, "stride", owner=owner)
    if isinstance(padding, (tuple, list)) and len(padding) == 1:
        padding = padding[0]
    ph, pw = as_pair(padding, "padding", minimum=0, owner=owner)
    dh, dw = as_pair(dilation, "dilation", owner=owner)
    h, w = x.shape[2], x.shape[3]
    ho = pool_output_size(h, kh, sh, ph, ph, dh, ceil_mode)
    wo = pool_output_size(w, kw, sw, pw, pw, dw, ceil_mode)
    if ho <= 0 or wo <= 0:
        raise ValueError(
            f"{owner}: kernel {(kh, kw)} does not fit the padded input "
            f"{h + 2 * ph}x{w + 2 * pw}"
        )
    return x, (kh, kw), (sh, sw), (ph, pw), (ho, wo), (dh, dw)


def _window(a, b, kernel, stride, padding, dilation=(1, 1)):
    """Input coordinates ``(p, q)`` of window ``(a, b)`` in row-major order; positions in
    the padding are included (the caller checks bounds)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    for i in range(kh):
        for j in range(kw):
            yield a * sh - ph + i * dh, b * sw - pw + j * dw


def _argmax(x, n, c, a, b, kernel, stride, padding, dilation):
    """Input coordinates of the first maximum of window ``(a, b)`` (None if all padding);
    a window holding NaN gives its last NaN (PyTorch's kernels compare ``value > best or
    isnan(value)``)."""
    h, w = x.shape[2], x.shape[3]
    best, where = -math.inf, None
    for p, q in _window(a, b, kernel, stride, padding, dilation):
        if 0 <= p < h and 0 <= q < w:
            value = float(x[n, c, p, q])
            # Strictly greater: a later equal value does not replace the first maximum.
            if where is None or value > best or math.isnan(value):
                best, where = value, (p, q)
    return where


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                       return_indices=False):
    """Reference max pooling: ``x (N, C, H, W)`` -> ``y (N, C, Ho, Wo)`` in ``x.dtype``
    (and the int64 flat indices ``p * W + q`` with ``return_indices``)."""
    x, kernel, stride, padding, (ho, wo), dil = _setup(
        x, kernel_size, stride, padding, "reference max_pool2d_forward", dilation, ceil_mode)
    n_, c_, _, w = x.shape
    y = np.empty((n_, c_, ho, wo), dtype=x.dtype)
    indices = np.full((n_, c_, ho, wo), -1, dtype=np.int64)
    for n in range(n_):
        for c in range(c_):
            for a in range(ho):
                for b in range(wo):
                    where = _argmax(x, n, c, a, b, kernel, stride, padding, dil)
                    y[n, c, a, b] = -math.inf if where is None else x[n, c, where[0], where[1]]
                    if where is not None:
                        indices[n, c, a, b] = where[0] * w + where[1]
    return (y, indices) if return_indices else y


def max_pool2d_backward(x, dy, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False):
    """Reference max-pool gradient: ``dy (N, C, Ho, Wo)`` -> ``dx`` shaped like ``x``.

    The argmax of every window is recomputed from ``x``; its element receives the whole
    ``dy`` of that window (summed when several windows share it).
    """
    x, kernel, stride, padding, (ho, wo), dil = _setup(
        x, kernel_size, stride, padding, "reference max_pool2d_backward", dilation, ceil_mode)
    n_, c_ = x.shape[:2]
    _check_dy(dy, (n_, c_, ho, wo), "reference max_pool2d_backward")
    dx = np.zeros(x.shape, dtype=np.float64)
    for n in range(n_):
        for c in range(c_):
            for a in range(ho):
                for b in range(wo):
                    where = _argmax(x, n, c, a, b, kernel, stride, padding, dil)
                    if where is not None:
                        dx[n, c, where[0], where[1]] += float(dy[n, c, a, b])
    return dx.astype(x.dtype)


def _real_positions(x, a, b, kernel, stride, padding):
    h, w = x.shape[2], x.shape[3]
    return [(p, q) for p, q in _window(a, b, kernel, stride, padding)
            if 0 <= p < h and 0 <= q < w]


def _divisor(x, a, b, real, kernel, stride, padding, count_include_pad, divisor_override):
    if divisor_override is not None:
        return divisor_override
    if not count_include_pad:
        return len(real)
    # The window clipped to the padded input: padding counts, a ceil overhang does not.
    h, w = x.shape[2], x.shape[3]
    counted = 0
    for p, q in _window(a, b, kernel, stride, padding):
        if -padding[0] <= p < h + padding[0] and -padding[1] <= q < w + padding[1]:
            counted += 1
    return counted


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                       count_include_pad=True, divisor_override=None):
    """Reference average pooling: ``x (N, C, H, W)`` -> ``y (N, C, Ho, Wo)`` in ``x.dtype``."""
    x, kernel, stride, padding, (ho, wo), _ = _setup(
        x, kernel_size, stride, padding, "reference avg_pool2d_forward", ceil_mode=ceil_mode)
    n_, c_ = x.shape[:2]
    y = np.empty((n_, c_, ho, wo), dtype=np.float64)
    for n in range(n_):
        for c in range(c_):
            for a in range(ho):
                for b in range(wo):
                    real = _real_positions(x, a, b, kernel, stride, padding)
                    total = 0.0
                    for p, q in real:
                        total += float(x[n, c, p, q])
                    y[n, c, a, b] = total / _divisor(x, a, b, real, kernel, stride, padding,
                                                     count_include_pad, divisor_override)
    return y.astype(x.dtype)


def avg_pool2d_backward(x, dy, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """Reference average-pool gradient: ``dy (N, C, Ho, Wo)`` -> ``dx`` shaped like ``x``.

    Only the shape of ``x`` is used (average pooling is linear).
    """
    x, kernel, stride, padding, (ho, wo), _ = _setup(
        x, kernel_size, stride, padding, "reference avg_pool2d_backward", ceil_mode=ceil_mode)
    n_, c_ = x.shape[:2]
    _check_dy(dy, (n_, c_, ho, wo), "reference avg_pool2d_backward")
    dx = np.zeros(x.shape, dtype=np.float64)
    for n in range(n_):
        for c in range(c_):
            for a in range(ho):
                for b in range(wo):
                    real = _real_positions(x, a, b, kernel, stride, padding)
                    share = float(dy[n, c, a, b]) / _divisor(
                        x, a, b, real, kernel, stride, padding, count_include_pad,
                        divisor_override)
                    for p, q in real:
                        dx[n, c, p, q] += share
    return dx.astype(x.dtype)


def global_avg_pool2d_forward(x):
    """Reference global average pooling: ``x (N, C, H, W)`` -> ``y (N, C, 1, 1)``."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(
            f"reference global_avg_pool2d_forward: expected x of shape (N, C, H, W), "
            f"got {x.shape}"
        )
    n_, c_, h, w = x.shape
    y = np.empty((n_, c_, 1, 1), dtype=np.float64)
    for n in range(n_):
        for c in range(c_):
            total = 0.0
            for p in range(h):
                for q in range(w):
                    total += float(x[n, c, p, q])
            y[n, c, 0, 0] = total / (h * w)
    return y.astype(x.dtype)


def global_avg_pool2d_backward(x, dy):
    """Reference gradient of global average pooling: ``dy (N, C, 1, 1)`` -> ``dx``."""
    x = np.asarray(x)
    n_, c_, h, w = x.shape
    _check_dy(dy, (n_, c_, 1, 1), "reference global_avg_pool2d_backward")
    dx = np.empty(x.shape, dtype=np.float64)
    for n in range(n_):
        for c in range(c_):
            share = float(dy[n, c, 0, 0]) / (h * w)
            for p in range(h):
                for q in range(w):
                    dx[n, c, p, q] = share
    return dx.astype(x.dtype)


def _check_dy(dy, expected, owner):
    if np.shape(dy) != expected:
        raise ValueError(f"{owner}: expected dy of shape {expected}, got {np.shape(dy)}")
