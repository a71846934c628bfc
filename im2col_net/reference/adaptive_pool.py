"""Reference adaptive average / max pooling and max unpooling, as loops.

Adaptive pooling of an ``H x W`` plane to ``Ho x Wo`` cells: cell ``(a, b)`` covers
rows ``floor(a*H/Ho) <= p < ceil((a+1)*H/Ho)`` and columns ``floor(b*W/Wo) <= q <
ceil((b+1)*W/Wo)`` (PyTorch's rule), so windows may differ in size and overlap::

    avg:  y[n, c, a, b] = mean of x[n, c, p, q] over the window
          dx[n, c, p, q] = sum over the windows containing (p, q) of dy / window size
    max:  y[n, c, a, b] = x at the first maximum of the window in row-major order (the
          last NaN if the window holds NaN, as PyTorch); indices = p * W + q there
          dx[n, c, p, q] = sum of dy over the windows whose maximum is at (p, q)

``output_size`` is an int or a pair, ``None`` keeping that input size.

Max unpooling::

    y[n, c].flat[indices[n, c, p, q]] = x[n, c, p, q]   (zeros elsewhere)
    dx[n, c, p, q] = dy[n, c].flat[indices[n, c, p, q]]

Sums run in float64; results have the input's dtype.
"""

from __future__ import annotations

import math

import numpy as np

from ..geometry import adaptive_output_size

__all__ = [
    "adaptive_avg_pool2d_forward",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d_forward",
    "adaptive_max_pool2d_backward",
    "max_unpool2d_forward",
    "max_unpool2d_backward",
]


def _bounds(i, size, out):
    return (i * size) // out, -((-(i + 1) * size) // out)


def _cells(x, output_size):
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"reference adaptive pool: expected x of shape (N, C, H, W), got "
                         f"{x.shape}")
    h, w = x.shape[2], x.shape[3]
    ho, wo = adaptive_output_size(output_size, h, w, owner="reference adaptive pool")
    cells = []
    for a in range(ho):
        for b in range(wo):
            r0, r1 = _bounds(a, h, ho)
            c0, c1 = _bounds(b, w, wo)
            cells.append((a, b, [(p, q) for p in range(r0, r1) for q in range(c0, c1)]))
    return x, (ho, wo), cells


def adaptive_avg_pool2d_forward(x, output_size):
    x, (ho, wo), cells = _cells(x, output_size)
    n_, c_ = x.shape[:2]
    y = np.zeros((n_, c_, ho, wo), dtype=np.float64)
    for n in range(n_):
        for c in range(c_):
            for a, b, window in cells:
                total = 0.0
                for p, q in window:
                    total += float(x[n, c, p, q])
                y[n, c, a, b] = total / len(window)
    return y.astype(x.dtype)


def adaptive_avg_pool2d_backward(x, dy, output_size):
    x, (ho, wo), cells = _cells(x, output_size)
    n_, c_ = x.shape[:2]
    _check_dy(dy, (n_, c_, ho, wo))
    dx = np.zeros(x.shape, dtype=np.float64)
    for n in range(n_):
        for c in range(c_):
            for a, b, window in cells:
                for p, q in window:
                    dx[n, c, p, q] += float(dy[n, c, a, b]) / len(window)
    return dx.astype(x.dtype)


def _argmax(x, n, c, window):
    best, where = -math.inf, None
    for p, q in window:
        value = float(x[n, c, p, q])
        if where is None or value > best or math.isnan(value):
            best, where = value, (p, q)
    return where


def adaptive_max_pool2d_forward(x, output_size):
    """``(y, indices)``: the window maxima and their flat positions ``p * W + q``."""
    x, (ho, wo), cells = _cells(x, output_size)
    n_, c_, _, w = x.shape
    y = np.empty((n_, c_, ho, wo), dtype=x.dtype)
    indices = np.empty((n_, c_, ho, wo), dtype=np.int64)
    for n in range(n_):
        for c in range(c_):
            for a, b, window in cells:
                p, q = _argmax(x, n, c, window)
                y[n, c, a, b] = x[n, c, p, q]
                indices[n, c, a, b] = p * w + q
    return y, indices


def adaptive_max_pool2d_backward(x, dy, output_size):
    x, (ho, wo), cells = _cells(x, output_size)
    n_, c_ = x.shape[:2]
    _check_dy(dy, (n_, c_, ho, wo))
    dx = np.zeros(x.shape, dtype=np.float64)
    for n in range(n_):
        for c in range(c_):
            for a, b, window in cells:
                p, q = _argmax(x, n, c, window)
                dx[n, c, p, q] += float(dy[n, c, a, b])
    return dx.astype(x.dtype)


def max_unpool2d_forward(x, indices, out_size):
    """``x (N, C, H, W)`` placed at ``indices`` of a zero ``(N, C, *out_size)`` output;
    where indices repeat, the last element in row-major order stays."""
    x = np.asarray(x)
    n_, c_, h, w = x.shape
    ho, wo = out_size
    y = np.zeros((n_, c_, ho, wo), dtype=x.dtype)
    for n in range(n_):
        for c in range(c_):
            for p in range(h):
                for q in range(w):
                    k = int(indices[n, c, p, q])
                    y[n, c, k // wo, k % wo] = x[n, c, p, q]
    return y


def max_unpool2d_backward(x, indices, dy):
    """Each input's gradient is ``dy`` at its index."""
    x = np.asarray(x)
    n_, c_, h, w = x.shape
    wo = dy.shape[3]
    dx = np.empty(x.shape, dtype=x.dtype)
    for n in range(n_):
        for c in range(c_):
            for p in range(h):
                for q in range(w):
                    k = int(indices[n, c, p, q])
                    dx[n, c, p, q] = dy[n, c, k // wo, k % wo]
    return dx


def _check_dy(dy, expected):
    if np.shape(dy) != expected:
        raise ValueError(f"reference adaptive pool backward: expected dy of shape {expected}, "
                         f"got {np.shape(dy)}")
