"""Reference activations, channel dropout and softmax along an axis, element by element
in float64 Python arithmetic, straight from the definitions (torch.nn's)::

    relu6        min(max(x, 0), 6)                      slope 1 on (0, 6), else 0
    hardsigmoid  min(max(x + 3, 0), 6) / 6              slope 1/6 on (-3, 3), else 0
    hardswish    x * hardsigmoid(x)                     x/3 + 1/2 on (-3, 3); 0 at x <= -3;
                                                        1 at x >= 3
    selu         s*x if x > 0 else s*a*(e^x - 1)        s or s*a*e^x (x <= 0)
    silu         x / (1 + e^-x)                         s (1 + x (1 - s)), s = sigmoid(x)
    gelu         x Phi(x)  (or the tanh formula)        Phi(x) + x phi(x)
    softplus     log(1 + e^(b x)) / b; x if b x > t     sigmoid(b x); 1 if b x > t
    prelu        x if x > 0 else w[c] x                 dx: 1 or w[c]; dw[c] += x dy (x <= 0)

At a kink the one-sided slope listed is the one PyTorch uses. Results have the input's
dtype.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "activation_forward", "activation_backward", "prelu_forward", "prelu_backward",
    "dropout2d_forward", "dropout2d_backward", "softmax_axis_forward", "softmax_axis_backward",
    "ACTIVATIONS",
]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


def _relu6(v, **_):
    return min(max(v, 0.0), 6.0), (1.0 if 0.0 < v < 6.0 else 0.0)


def _hardsigmoid(v, **_):
    return min(max(v + 3.0, 0.0), 6.0) / 6.0, (1.0 / 6.0 if -3.0 < v < 3.0 else 0.0)


def _hardswish(v, **_):
    if v <= -3.0:
        slope = 0.0
    elif v >= 3.0:
        slope = 1.0
    else:
        slope = v / 3.0 + 0.5
    return v * min(max(v + 3.0, 0.0), 6.0) / 6.0, slope


def _selu(v, **_):
    if v > 0:
        return _SELU_SCALE * v, _SELU_SCALE
    return _SELU_SCALE * _SELU_ALPHA * math.expm1(v), _SELU_SCALE * _SELU_ALPHA * math.exp(v)


def _silu(v, **_):
    s = _sigmoid(v)
    return v * s, s * (1.0 + v * (1.0 - s))


def _gelu(v, approximate="none", **_):
    if approximate == "none":
        cdf = 0.5 * (1.0 + math.erf(v / math.sqrt(2.0)))
        pdf = math.exp(-0.5 * v * v) / math.sqrt(2.0 * math.pi)
        return v * cdf, cdf + v * pdf
    k = math.sqrt(2.0 / math.pi)
    t = math.tanh(k * (v + 0.044715 * v ** 3))
    slope = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * k * (1.0 + 3 * 0.044715 * v * v)
    return 0.5 * v * (1.0 + t), slope


def _softplus(v, beta=1.0, threshold=20.0, **_):
    z = beta * v
    if z > threshold:
        return v, 1.0
    # log(1 + e^z) written so that e^z never overflows.
    soft = (max(z, 0.0) + math.log1p(math.exp(-abs(z)))) / beta
    return soft, _sigmoid(z)


ACTIVATIONS = {"relu6": _relu6, "hardsigmoid": _hardsigmoid, "hardswish": _hardswish,
               "selu": _selu, "silu": _silu, "gelu": _gelu, "softplus": _softplus}


def _pointwise(name):
    if name not in ACTIVATIONS:
        raise ValueError(f"reference activation: unknown {name!r}; expected one of "
                         f"{sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def activation_forward(name, x, **options):
    """``name`` (a key of :data:`ACTIVATIONS`) applied to every element of ``x``;
    ``options``: ``approximate`` for gelu, ``beta`` and ``threshold`` for softplus."""
    f = _pointwise(name)
    x = np.asarray(x)
    y = np.empty(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape):
        y[index] = f(float(x[index]), **options)[0]
    return y.astype(x.dtype)


def activation_backward(name, x, dy, **options):
    """``dx = dy * f'(x)`` element by element (the kink values as in the module table)."""
    f = _pointwise(name)
    x, dy = np.asarray(x), np.asarray(dy)
    if dy.shape != x.shape:
        raise ValueError(f"reference {name} backward: expected dy of shape {x.shape}, got "
                         f"{dy.shape}")
    dx = np.empty(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape):
        dx[index] = float(dy[index]) * f(float(x[index]), **options)[1]
    return dx.astype(x.dtype)


def _channel(index, ndim, nweights):
    return 0 if nweights == 1 else index[1]


def prelu_forward(x, weight):
    """PReLU with ``weight (1,)`` shared or ``(C,)`` per channel (axis 1 of ``x``)."""
    x, weight = np.asarray(x), np.asarray(weight)
    y = np.empty(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape):
        v = float(x[index])
        w = float(weight[_channel(index, x.ndim, weight.size)])
        y[index] = v if v > 0 else w * v
    return y.astype(x.dtype)


def prelu_backward(x, weight, dy):
    """``(dx, dweight)`` of :func:`prelu_forward`."""
    x, weight, dy = np.asarray(x), np.asarray(weight), np.asarray(dy)
    dx = np.empty(x.shape, dtype=np.float64)
    dw = [0.0] * weight.size
    for index in np.ndindex(x.shape):
        v, g = float(x[index]), float(dy[index])
        c = _channel(index, x.ndim, weight.size)
        if v > 0:
            dx[index] = g
        else:
            dx[index] = float(weight[c]) * g
            dw[c] += v * g
    return dx.astype(x.dtype), np.array(dw, dtype=np.float64).astype(weight.dtype)


def dropout2d_forward(x, keep, p):
    """Channel dropout of ``x (N, C, H, W)`` given the uniform draws ``keep (N, C)``: plane
    ``(n, c)`` is kept (and scaled by ``1/(1-p)``) when ``keep[n, c] >= p``."""
    x = np.asarray(x)
    y = np.empty(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape):
        kept = float(keep[index[0], index[1]]) >= p
        y[index] = float(x[index]) / (1.0 - p) if kept else 0.0
    return y.astype(x.dtype)


def dropout2d_backward(x, dy, keep, p):
    """Gradient of :func:`dropout2d_forward`: the same mask applied to ``dy``."""
    return dropout2d_forward(np.asarray(dy), keep, p).astype(np.asarray(x).dtype)


def _lines(shape, axis):
    """Every index of ``shape`` with ``axis`` left free (as None), one per softmax line."""
    others = [range(s) if a != axis else [None] for a, s in enumerate(shape)]
    for index in np.ndindex(*[len(r) for r in others]):
        yield tuple(None if a == axis else i for a, i in enumerate(index))


def _at(line, k, axis):
    return tuple(k if a == axis else i for a, i in enumerate(line))


def softmax_axis_forward(x, axis=1, log=False):
    """Softmax (``log=True``: log-softmax) of ``x`` along ``axis`` (negative counts from
    the end), one line at a time, the maximum subtracted before ``exp``."""
    x = np.asarray(x)
    axis = axis % x.ndim
    y = np.empty(x.shape, dtype=np.float64)
    for line in _lines(x.shape, axis):
        values = [float(x[_at(line, k, axis)]) for k in range(x.shape[axis])]
        top = max(values)
        log_norm = math.log(sum(math.exp(v - top) for v in values))
        for k, v in enumerate(values):
            y[_at(line, k, axis)] = (v - top - log_norm) if log else math.exp(v - top - log_norm)
    return y.astype(x.dtype)


def softmax_axis_backward(x, dy, axis=1, log=False):
    """Vector-Jacobian product of :func:`softmax_axis_forward` from its definition:
    ``d softmax_k / d x_j = s_k ([k == j] - s_j)`` and ``d logsoftmax_k / d x_j = [k == j]
    - s_j``."""
    x, dy = np.asarray(x), np.asarray(dy)
    axis = axis % x.ndim
    s = softmax_axis_forward(np.asarray(x, dtype=np.float64), axis)
    dx = np.empty(x.shape, dtype=np.float64)
    for line in _lines(x.shape, axis):
        n = x.shape[axis]
        for j in range(n):
            total = 0.0
            for k in range(n):
                sk, sj = float(s[_at(line, k, axis)]), float(s[_at(line, j, axis)])
                delta = 1.0 if k == j else 0.0
                jac = (delta - sj) if log else sk * (delta - sj)
                total += float(dy[_at(line, k, axis)]) * jac
            dx[_at(line, j, axis)] = total
    return dx.astype(x.dtype)
