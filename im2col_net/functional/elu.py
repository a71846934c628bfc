"""ELU activation: forward ``(y, cache)``, backward ``dx``.

``elu(x) = x`` for ``x > 0`` and ``alpha * (exp(x) - 1)`` elsewhere (as torch.nn.ELU).
Its derivative is 1 for ``x > 0`` and ``alpha * exp(x) = elu(x) + alpha`` elsewhere, so
the cache holds the derivative and backward is one multiply. Results keep ``x.dtype``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["elu_forward", "elu_backward"]


def elu_forward(x, alpha=1.0):
    """``x`` any shape, floating; returns ``y`` (same shape and dtype) and the local slope."""
    x = np.asarray(x)
    alpha = np.asarray(alpha, dtype=x.dtype)
    positive = x > 0
    # expm1 of min(x, 0) never overflows and is accurate near 0.
    negative_part = alpha * np.expm1(np.minimum(x, 0))
    y = np.where(positive, x, negative_part)
    slope = np.where(positive, np.ones((), x.dtype), negative_part + alpha)
    return y, slope


def elu_backward(dy, slope):
    """``dy`` (shape of ``x``) -> ``dx = dy * slope``."""
    return np.multiply(dy, slope, dtype=slope.dtype)
