"""Reference ELU, element by element in float64 Python arithmetic::

    y  = x                      if x > 0 else alpha * (exp(x) - 1)
    dx = dy                     if x > 0 else dy * alpha * exp(x)

Results have the input's dtype.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["elu_forward", "elu_backward"]


def elu_forward(x, alpha=1.0):
    """ELU of ``x`` (any shape)."""
    x = np.asarray(x)
    y = np.empty(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape):
        v = float(x[index])
        y[index] = v if v > 0 else alpha * (math.exp(v) - 1.0)
    return y.astype(x.dtype)


def elu_backward(x, dy, alpha=1.0):
    """Gradient of :func:`elu_forward`: ``dx`` (shape and dtype of ``x``)."""
    x, dy = np.asarray(x), np.asarray(dy)
    if dy.shape != x.shape:
        raise ValueError(f"reference elu_backward: expected dy of shape {x.shape}, got {dy.shape}")
    dx = np.empty(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape):
        v, g = float(x[index]), float(dy[index])
        dx[index] = g if v > 0 else g * alpha * math.exp(v)
    return dx.astype(x.dtype)
