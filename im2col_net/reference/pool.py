"""Reference pooling: max, average and global average, forward and backward, as loops.

Windows follow the convolution geometry with dilation 1: output ``(a, b)`` covers the
padded rows ``a*sh .. a*sh + kh - 1`` and columns ``b*sw .. b*sw + kw - 1``, i.e. input
rows ``a*sh - top + i`` for ``i < kh`` (likewise for columns). ``stride=None`` means
``stride = kernel_size``; ``padding`` is an int or a pair ``(ph, pw)`` applied on both
sides, as in ``torch.nn.MaxPool2d``.

Max pooling::

    y[n, c, a, b] = max over the window (padded positions count as -inf)
    dx[n, c, p, q] = sum of dy[n, c, a, b] over the windows whose argmax is (p, q)

The argmax is the *first* maximum in row-major window order (kernel row ``i`` outer,
column ``j`` inner), as PyTorch picks it; with ties the gradient goes there only.

Average pooling::

    y[n, c, a, b] = (sum of the real input elements in the window) / divisor
    dx[n, c, p, q] = sum over the windows containing (p, q) of dy[n, c, a, b] / divisor

``divisor`` is ``kh * kw`` with ``count_include_pad=True`` (padded zeros count, PyTorch's
default) and the number of real input elements in the window otherwise.

Global average pooling: ``y[n, c, 0, 0] = mean(x[n, c])`` and every ``dx[n, c, p, q] =
dy[n, c, 0, 0] / (H * W)``.

All sums run in float64; results have the input's dtype.
"""

from __future__ import annotations

import math

import numpy as np

from ..geometry import as_pair, conv_output_size

__all__ = [
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "global_avg_pool2d_backward",
]


def _setup(x, kernel_size, stride, padding, owner):
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{owner}: expected x of shape (N, C, H, W), got {x.shape}")
    kh, kw = as_pair(kernel_size, "kernel_size", owner=owner)
    sh, sw = (kh, kw) if stride is None else as_pair(stride, "stride", owner=owner)
    ph, pw = as_pair(padding, "padding", minimum=0, owner=owner)
    h, w = x.shape[2], x.shape[3]
    ho = conv_output_size(h, kh, sh, 2 * ph)
    wo = conv_output_size(w, kw, sw, 2 * pw)
    if ho <= 0 or wo <= 0:
        raise ValueError(
            f"{owner}: kernel {(kh, kw)} does not fit the padded input "
            f"{h + 2 * ph}x{w + 2 * pw}"
        )
    return x, (kh, kw), (sh, sw), (ph, pw), (ho, wo)


def _window(a, b, kernel, stride, padding):
    """Input coordinates ``(p, q)`` of window ``(a, b)`` in row-major order; positions in
    the padding are included (the caller checks bounds)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    for i in range(kh):
        for j in range(kw):
            yield a * sh - ph + i, b * sw - pw + j


def _argmax(x, n, c, a, b, kernel, stride, padding):
    """Input coordinates of the first maximum of window ``(a, b)`` (None if all padding)."""
    h, w = x.shape[2], x.shape[3]
    best, where = -math.inf, None
    for p, q in _window(a, b, kernel, stride, padding):
        if 0 <= p < h and 0 <= q < w:
            value = float(x[n, c, p, q])
            # Strictly greater: a later equal value does not replace the first maximum.
            if where is None or value > best:
                best, where = value, (p, q)
    return where


def max_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """Reference max pooling: ``x (N, C, H, W)`` -> ``y (N, C, Ho, Wo)`` in ``x.dtype``."""
    x, kernel, stride, padding, (ho, wo) = _setup(x, kernel_size, stride, padding,
                                                  "reference max_pool2d_forward")
    n_, c_ = x.shape[:2]
    y = np.empty((n_, c_, ho, wo), dtype=x.dtype)
    for n in range(n_):
        for c in range(c_):
            for a in range(ho):
                for b in range(wo):
                    where = _argmax(x, n, c, a, b, kernel, stride, padding)
                    y[n, c, a, b] = -math.inf if where is None else x[n, c, where[0], where[1]]
    return y


def max_pool2d_backward(x, dy, kernel_size, stride=None, padding=0):
    """Reference max-pool gradient: ``dy (N, C, Ho, Wo)`` -> ``dx`` shaped like ``x``.

    The argmax of every window is recomputed from ``x``; its element receives the whole
    ``dy`` of that window (summed when several windows share it).
    """
    x, kernel, stride, padding, (ho, wo) = _setup(x, kernel_size, stride, padding,
                                                  "reference max_pool2d_backward")
    n_, c_ = x.shape[:2]
    _check_dy(dy, (n_, c_, ho, wo), "reference max_pool2d_backward")
    dx = np.zeros(x.shape, dtype=np.float64)
    for n in range(n_):
        for c in range(c_):
            for a in range(ho):
                for b in range(wo):
                    where = _argmax(x, n, c, a, b, kernel, stride, padding)
                    if where is not None:
                        dx[n, c, where[0], where[1]] += float(dy[n, c, a, b])
    return dx.astype(x.dtype)


def _real_positions(x, a, b, kernel, stride, padding):
    h, w = x.shape[2], x.shape[3]
    return [(p, q) for p, q in _window(a, b, kernel, stride, padding)
            if 0 <= p < h and 0 <= q < w]


def _divisor(real, kernel, count_include_pad):
    return kernel[0] * kernel[1] if count_include_pad else len(real)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Reference average pooling: ``x (N, C, H, W)`` -> ``y (N, C, Ho, Wo)`` in ``x.dtype``."""
    x, kernel, stride, padding, (ho, wo) = _setup(x, kernel_size, stride, padding,
                                                  "reference avg_pool2d_forward")
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
                    y[n, c, a, b] = total / _divisor(real, kernel, count_include_pad)
    return y.astype(x.dtype)


def avg_pool2d_backward(x, dy, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Reference average-pool gradient: ``dy (N, C, Ho, Wo)`` -> ``dx`` shaped like ``x``.

    Only the shape of ``x`` is used (average pooling is linear).
    """
    x, kernel, stride, padding, (ho, wo) = _setup(x, kernel_size, stride, padding,
                                                  "reference avg_pool2d_backward")
    n_, c_ = x.shape[:2]
    _check_dy(dy, (n_, c_, ho, wo), "reference avg_pool2d_backward")
    dx = np.zeros(x.shape, dtype=np.float64)
    for n in range(n_):
        for c in range(c_):
            for a in range(ho):
                for b in range(wo):
                    real = _real_positions(x, a, b, kernel, stride, padding)
                    share = float(dy[n, c, a, b]) / _divisor(real, kernel, count_include_pad)
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
