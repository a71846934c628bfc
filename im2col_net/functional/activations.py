"""The torch.nn activations beyond ReLU/ELU, channel dropout and softmax over any axis.

Every forward returns ``(y, cache)`` and every backward ``dx`` (PReLU also the weight
gradient); results keep ``x.dtype`` (constants are cast to it, so float32 never passes
through float64). Where a derivative jumps, the value at the kink is PyTorch's (measured
on torch 2.13 CPU), noted per function.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf

__all__ = [
    "relu6_forward", "hardsigmoid_forward", "hardswish_forward", "selu_forward",
    "silu_forward", "gelu_forward", "softplus_forward", "slope_backward",
    "prelu_forward", "prelu_backward", "dropout2d_forward", "dropout2d_backward",
    "softmax_forward", "softmax_backward", "log_softmax_forward", "log_softmax_backward",
    "SELU_ALPHA", "SELU_SCALE", "GELU_APPROXIMATIONS",
]

# The constants of torch.nn.SELU (Klambauer et al. 2017) to double precision.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
GELU_APPROXIMATIONS = ("none", "tanh")


def _const(value, dtype):
    return np.asarray(value, dtype=dtype)


def slope_backward(dy, slope):
    """``dx = dy * slope`` for the activations whose cache is the local derivative."""
    return np.multiply(dy, slope, dtype=slope.dtype)


def relu6_forward(x):
    """``min(max(x, 0), 6)``; the slope is 1 strictly inside (0, 6) and 0 at both kinks
    (torch's choice)."""
    x = np.asarray(x)
    y = np.clip(x, _const(0, x.dtype), _const(6, x.dtype))
    slope = ((x > 0) & (x < 6)).astype(x.dtype)
    return y, slope


def hardsigmoid_forward(x):
    """``min(max(x + 3, 0), 6) / 6``; slope 1/6 strictly inside (-3, 3), 0 at the kinks
    (torch's choice; torch's float64 backward uses the float32 value of 1/6, here it is
    exact)."""
    x = np.asarray(x)
    six = _const(6, x.dtype)
    y = np.clip(x + _const(3, x.dtype), _const(0, x.dtype), six) / six
    slope = np.where((x > -3) & (x < 3), np.ones((), x.dtype) / six, np.zeros((), x.dtype))
    return y, slope


def hardswish_forward(x):
    """``x * min(max(x + 3, 0), 6) / 6``; slope ``x/3 + 1/2`` strictly inside (-3, 3), 0
    for ``x <= -3`` and 1 for ``x >= 3`` (torch's values at the kinks)."""
    x = np.asarray(x)
    six, three = _const(6, x.dtype), _const(3, x.dtype)
    y = x * np.clip(x + three, _const(0, x.dtype), six) / six
    inner = x / three + _const(0.5, x.dtype)
    slope = np.where(x <= -3, np.zeros((), x.dtype), np.where(x >= 3, np.ones((), x.dtype),
                                                                inner))
    return y, slope


def selu_forward(x):
    """``scale * x`` for ``x > 0``, ``scale * alpha * (exp(x) - 1)`` elsewhere; at 0 the
    slope is the negative branch's ``scale * alpha`` (torch's choice)."""
    x = np.asarray(x)
    scale, alpha = _const(SELU_SCALE, x.dtype), _const(SELU_ALPHA, x.dtype)
    positive = x > 0
    # expm1 of min(x, 0) cannot overflow and keeps precision near 0.
    negative = (scale * alpha) * np.expm1(np.minimum(x, _const(0, x.dtype)))
    y = np.where(positive, scale * x, negative)
    slope = np.where(positive, scale, negative + scale * alpha)
    return y, slope


def _sigmoid(x):
    """Logistic function without overflow for large ``|x|``, in ``x.dtype``."""
    e = np.exp(-np.abs(x))
    one = np.ones((), x.dtype)
    return np.where(x >= 0, one / (one + e), e / (one + e))


def silu_forward(x):
    """``x * sigmoid(x)``; slope ``s * (1 + x * (1 - s))``."""
    x = np.asarray(x)
    s = _sigmoid(x)
    one = np.ones((), x.dtype)
    return x * s, s * (one + x * (one - s))


def gelu_forward(x, approximate="none"):
    """``x * Phi(x)`` with the exact normal CDF (``approximate="none"``, through
    scipy's erf, which keeps float32) or torch's tanh approximation."""
    x = np.asarray(x)
    half, one = _const(0.5, x.dtype), np.ones((), x.dtype)
    # Beyond |x| = 1000 the density terms are exactly 0 in any float dtype; clipping
    # keeps their powers of x from overflowing into inf * 0 = NaN.
    xc = np.clip(x, _const(-1e3, x.dtype), _const(1e3, x.dtype))
    if approximate == "none":
        # scipy's erf has float32 and float64 loops; float16 comes back wider, so cast.
        e = erf(x * _const(1 / math.sqrt(2.0), x.dtype)).astype(x.dtype, copy=False)
        cdf = half * (one + e)
        pdf = np.exp(-half * xc * xc) * _const(1 / math.sqrt(2 * math.pi), x.dtype)
        return x * cdf, cdf + x * pdf
    if approximate != "tanh":
        raise ValueError(f"gelu: approximate must be one of {GELU_APPROXIMATIONS}, got "
                         f"{approximate!r}")
    k, c = _const(math.sqrt(2 / math.pi), x.dtype), _const(0.044715, x.dtype)
    t = np.tanh(k * (xc + c * xc * xc * xc))
    y = half * x * (one + t)
    slope = half * (one + t) + half * xc * (one - t * t) * k * (one + _const(3, x.dtype) * c
                                                                 * xc * xc)
    return y, slope


def softplus_forward(x, beta=1.0, threshold=20.0):
    """``log(1 + exp(beta x)) / beta``, and ``x`` itself where ``beta * x > threshold``
    (torch reverts to the identity there; the slope is then 1, elsewhere
    ``sigmoid(beta x)``). Computed as ``max(z, 0) + log1p(exp(-|z|))``, so it never
    overflows (torch's direct formula can, for thresholds beyond exp's range)."""
    x = np.asarray(x)
    b = _const(beta, x.dtype)
    z = b * x
    linear = z > _const(threshold, x.dtype)
    soft = (np.maximum(z, _const(0, x.dtype)) + np.log1p(np.exp(-np.abs(z)))) / b
    y = np.where(linear, x, soft)
    slope = np.where(linear, np.ones((), x.dtype), _sigmoid(z))
    return y, slope


def _channel_shape(ndim, channels):
    """How a per-channel vector broadcasts against an input of ``ndim`` (channels on axis 1)."""
    return (1, channels) + (1,) * (ndim - 2)


def prelu_forward(x, weight):
    """``x`` where positive, ``weight * x`` elsewhere (also at 0, as torch).

    ``weight (1,)`` is shared; ``weight (C,)`` is per channel, on axis 1 of ``x``
    (``x`` at least 2-D with ``C`` channels). The cache holds ``x`` and the weight.
    """
    x, weight = np.asarray(x), np.asarray(weight)
    if weight.ndim != 1 or (weight.size > 1 and (x.ndim < 2 or x.shape[1] != weight.size)):
        raise ValueError(f"prelu: weight of shape {weight.shape} does not match input of "
                         f"shape {x.shape} (expected (1,) or (C,) with C = x.shape[1])")
    w = weight.reshape(()) if weight.size == 1 else weight.reshape(_channel_shape(x.ndim,
                                                                                  weight.size))
    positive = x > 0
    return np.where(positive, x, w * x), (x, w, positive, weight.shape)


def prelu_backward(dy, cache):
    """``dx = dy`` where ``x > 0`` else ``weight * dy``; ``dweight`` sums ``x * dy`` over
    the non-positive elements of each channel (of all elements for one shared weight)."""
    x, w, positive, wshape = cache
    dx = np.where(positive, dy, w * dy)
    contrib = np.where(positive, np.zeros((), x.dtype), x * dy)
    if wshape[0] == 1:
        dw = contrib.sum(dtype=x.dtype).reshape(1)
    else:
        axes = (0,) + tuple(range(2, x.ndim))
        dw = contrib.sum(axis=axes, dtype=x.dtype)
    return dx, dw


def dropout2d_forward(x, p, rng: np.random.Generator, training=True):
    """Channel dropout of ``x (N, C, H, W)``: each ``(n, c)`` plane is zeroed with
    probability ``p``, the kept ones scaled by ``1 / (1 - p)``.

    The cache is the ``(N, C, 1, 1)`` mask of scales, or None when nothing was dropped
    (evaluation mode or ``p == 0``: the identity).
    """
    if not training or p == 0:
        return x, None
    draw_dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
    keep = rng.random(x.shape[:2] + (1,) * (x.ndim - 2), dtype=draw_dtype)
    scale = np.asarray(1.0 / (1.0 - p), dtype=x.dtype)
    mask = np.where(keep >= p, scale, np.zeros((), x.dtype))
    return x * mask, mask


def dropout2d_backward(dy, mask):
    """``dx = dy * mask`` (broadcast over each plane); ``dy`` when nothing was dropped."""
    return dy if mask is None else dy * mask


def log_softmax_forward(x, axis=1):
    """``log softmax`` of ``x`` along ``axis`` (log-sum-exp with the maximum subtracted);
    the cache is the result."""
    x = np.asarray(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    y = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return y, y


def log_softmax_backward(dy, y, axis=1):
    """``dx = dy - softmax * sum(dy)`` along ``axis``."""
    return dy - np.exp(y) * dy.sum(axis=axis, keepdims=True)


def softmax_forward(x, axis=1):
    """``exp(x) / sum(exp(x))`` along ``axis``; the cache is the result."""
    y = np.exp(log_softmax_forward(x, axis)[0])
    return y, y


def softmax_backward(dy, y, axis=1):
    """``dx = y * (dy - sum(dy * y))`` along ``axis``."""
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))
