"""Reference group, layer, instance and local-response normalisation as plain loops.

Group, layer and instance norm normalise sets of values ``S`` (``M`` of them)::

    mean = sum_{p in S} x[p] / M,   var = sum_{p in S} (x[p] - mean)^2 / M   (biased)
    y[p] = (x[p] - mean) / sqrt(var + eps) * weight + bias

- group norm: ``S`` = the channels ``g*C/G .. (g+1)*C/G - 1`` and all positions of one
  sample; weight and bias per channel;
- layer norm: ``S`` = the last ``len(normalized_shape)`` axes of one leading index;
  weight and bias per element of ``normalized_shape``;
- instance norm: ``S`` = one ``(n, c)`` plane; or, without input statistics, every plane
  of channel ``c`` uses ``running_mean[c]`` and ``running_var[c]``.

Backward follows the chain rule through the mean and variance step by step::

    dxhat = dy * weight
    dvar  = sum_p dxhat[p] * (x[p] - mean) * (-1/2) * (var + eps)^(-3/2)
    dmean = -sum_p dxhat[p] / sqrt(var + eps) + dvar * sum_p -2 (x[p] - mean) / M
    dx[p] = dxhat[p] / sqrt(var + eps) + dvar * 2 (x[p] - mean) / M + dmean / M

Local response norm (torch's definition), for channel ``c`` of ``C``::

    base[c] = k + alpha / size * sum_{i = c - size//2}^{c + (size-1)//2, 0 <= i < C} x[i]^2
    y[c]    = x[c] / base[c] ** beta

Everything runs in float64 Python arithmetic; results have the input's dtype.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["group_norm_forward", "group_norm_backward", "layer_norm_forward",
           "layer_norm_backward", "instance_norm_forward", "instance_norm_backward",
           "local_response_norm_forward", "local_response_norm_backward"]


def _moments(values):
    m = len(values)
    mean = sum(values) / m
    return mean, sum((v - mean) ** 2 for v in values) / m


def _set_backward(values, dxhat, mean, var, eps):
    """dx of ``(x - mean) / sqrt(var + eps)`` over one set, from ``dxhat`` (lists)."""
    m = len(values)
    std = math.sqrt(var + eps)
    dvar = sum(g * (v - mean) for g, v in zip(dxhat, values, strict=True)) * -0.5 * (
        var + eps) ** -1.5
    dmean = (-sum(dxhat) / std
             + dvar * sum(-2.0 * (v - mean) for v in values) / m)
    return [g / std + dvar * 2.0 * (v - mean) / m + dmean / m
            for g, v in zip(dxhat, values, strict=True)]


def _sets_forward(x, sets, scale_of, shift_of, eps):
    """Normalise each index set of ``x``; ``scale_of(index)``, ``shift_of(index)``."""
    y = np.empty(x.shape, dtype=np.float64)
    for indices in sets:
        values = [float(x[i]) for i in indices]
        mean, var = _moments(values)
        for i, v in zip(indices, values, strict=True):
            y[i] = (v - mean) / math.sqrt(var + eps) * scale_of(i) + shift_of(i)
    return y


def _sets_backward(x, dy, sets, scale_of, eps, param_index, param_shape):
    dx = np.empty(x.shape, dtype=np.float64)
    dweight = np.zeros(param_shape, dtype=np.float64)
    dbias = np.zeros(param_shape, dtype=np.float64)
    for indices in sets:
        values = [float(x[i]) for i in indices]
        mean, var = _moments(values)
        std = math.sqrt(var + eps)
        for i, v in zip(indices, values, strict=True):
            dweight[param_index(i)] += float(dy[i]) * (v - mean) / std
            dbias[param_index(i)] += float(dy[i])
        dxhat = [float(dy[i]) * scale_of(i) for i in indices]
        for i, d in zip(indices, _set_backward(values, dxhat, mean, var, eps), strict=True):
            dx[i] = d
    return dx, dweight, dbias


def _param(v, index, default):
    return default if v is None else float(v[index])


def _finish(x, dx, dweight, dbias, weight, bias):
    dtype = np.asarray(x).dtype
    return (dx.astype(dtype), None if weight is None else dweight.astype(dtype),
            None if bias is None else dbias.astype(dtype))


# -- group norm ------------------------------------------------------------------------

def _group_sets(shape, num_groups):
    per = shape[1] // num_groups
    rest = list(np.ndindex(shape[2:]))
    return [[(n, c) + r for c in range(g * per, (g + 1) * per) for r in rest]
            for n in range(shape[0]) for g in range(num_groups)]


def group_norm_forward(x, num_groups, weight=None, bias=None, eps=1e-5):
    x = np.asarray(x)
    y = _sets_forward(x, _group_sets(x.shape, num_groups),
                      lambda i: _param(weight, i[1], 1.0), lambda i: _param(bias, i[1], 0.0),
                      eps)
    return y.astype(x.dtype)


def group_norm_backward(x, dy, num_groups, weight=None, bias=None, eps=1e-5):
    """``(dx, dweight, dbias)``; a parameter's gradient is None when it is None."""
    x, dy = np.asarray(x), np.asarray(dy)
    out = _sets_backward(x, dy, _group_sets(x.shape, num_groups),
                         lambda i: _param(weight, i[1], 1.0), eps, lambda i: i[1],
                         (x.shape[1],))
    return _finish(x, *out, weight, bias)


# -- layer norm ------------------------------------------------------------------------

def _layer_sets(shape, k):
    lead, tail = shape[:len(shape) - k], shape[len(shape) - k:]
    return [[lo + t for t in np.ndindex(tail)] for lo in np.ndindex(lead)]


def layer_norm_forward(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    x = np.asarray(x)
    k = len(normalized_shape)
    y = _sets_forward(x, _layer_sets(x.shape, k),
                      lambda i: _param(weight, i[x.ndim - k:], 1.0),
                      lambda i: _param(bias, i[x.ndim - k:], 0.0), eps)
    return y.astype(x.dtype)


def layer_norm_backward(x, dy, normalized_shape, weight=None, bias=None, eps=1e-5):
    x, dy = np.asarray(x), np.asarray(dy)
    k = len(normalized_shape)
    out = _sets_backward(x, dy, _layer_sets(x.shape, k),
                         lambda i: _param(weight, i[x.ndim - k:], 1.0), eps,
                         lambda i: i[x.ndim - k:], tuple(normalized_shape))
    return _finish(x, *out, weight, bias)


# -- instance norm ---------------------------------------------------------------------

def _plane_sets(shape):
    return [[(n, c) + r for r in np.ndindex(shape[2:])]
            for n in range(shape[0]) for c in range(shape[1])]


def instance_norm_forward(x, running_mean=None, running_var=None, weight=None, bias=None,
                          use_input_stats=True, momentum=0.1, eps=1e-5):
    """``(y, new_running_mean, new_running_var)``; inputs are not modified. With input
    statistics the running statistics (if given) become ``(1 - momentum) * old +
    momentum * (average over the batch of each plane's mean / unbiased variance)``."""
    x = np.asarray(x)
    dtype = x.dtype
    scale_of = lambda i: _param(weight, i[1], 1.0)  # noqa: E731
    shift_of = lambda i: _param(bias, i[1], 0.0)  # noqa: E731
    new_mean = None if running_mean is None else np.array(running_mean, dtype=np.float64)
    new_var = None if running_var is None else np.array(running_var, dtype=np.float64)
    if not use_input_stats:
        y = np.empty(x.shape, dtype=np.float64)
        for i in np.ndindex(x.shape):
            y[i] = ((float(x[i]) - float(running_mean[i[1]]))
                    / math.sqrt(float(running_var[i[1]]) + eps) * scale_of(i) + shift_of(i))
        return y.astype(dtype), new_mean.astype(dtype), new_var.astype(dtype)
    y = _sets_forward(x, _plane_sets(x.shape), scale_of, shift_of, eps)
    if new_mean is not None:
        n, c_, m = x.shape[0], x.shape[1], math.prod(x.shape[2:])
        for c in range(c_):
            means, variances = [], []
            for nn in range(n):
                mean, var = _moments([float(x[(nn, c) + r]) for r in np.ndindex(x.shape[2:])])
                means.append(mean)
                variances.append(var * m / (m - 1))
            new_mean[c] = (1 - momentum) * new_mean[c] + momentum * sum(means) / n
            new_var[c] = (1 - momentum) * new_var[c] + momentum * sum(variances) / n
    return (y.astype(dtype), None if new_mean is None else new_mean.astype(dtype),
            None if new_var is None else new_var.astype(dtype))


def instance_norm_backward(x, dy, running_mean=None, running_var=None, weight=None, bias=None,
                           use_input_stats=True, eps=1e-5):
    x, dy = np.asarray(x), np.asarray(dy)
    c_ = x.shape[1]
    if use_input_stats:
        out = _sets_backward(x, dy, _plane_sets(x.shape), lambda i: _param(weight, i[1], 1.0),
                             eps, lambda i: i[1], (c_,))
        return _finish(x, *out, weight, bias)
    dx = np.empty(x.shape, dtype=np.float64)
    dweight = np.zeros(c_)
    dbias = np.zeros(c_)
    for i in np.ndindex(x.shape):
        c = i[1]
        std = math.sqrt(float(running_var[c]) + eps)
        g = float(dy[i])
        dx[i] = g * _param(weight, c, 1.0) / std
        dweight[c] += g * (float(x[i]) - float(running_mean[c])) / std
        dbias[c] += g
    return _finish(x, dx, dweight, dbias, weight, bias)


# -- local response norm ---------------------------------------------------------------

def _window(c, size, channels):
    return range(max(0, c - size // 2), min(channels, c + (size - 1) // 2 + 1))


def _bases(x, size, alpha, k):
    channels = x.shape[1]
    base = np.empty(x.shape, dtype=np.float64)
    for i in np.ndindex(x.shape):
        n, c, rest = i[0], i[1], i[2:]
        total = sum(float(x[(n, j) + rest]) ** 2 for j in _window(c, size, channels))
        base[i] = k + alpha / size * total
    return base


def local_response_norm_forward(x, size, alpha=1e-4, beta=0.75, k=1.0):
    x = np.asarray(x)
    base = _bases(x, size, alpha, k)
    y = np.empty(x.shape, dtype=np.float64)
    for i in np.ndindex(x.shape):
        y[i] = float(x[i]) / base[i] ** beta
    return y.astype(x.dtype)


def local_response_norm_backward(x, dy, size, alpha=1e-4, beta=0.75, k=1.0):
    """dx: ``y[c]`` depends on ``x[c]`` directly and on every ``x[j]`` in its window
    through ``base[c]``: ``d base[c] / d x[j] = 2 alpha x[j] / size``."""
    x, dy = np.asarray(x), np.asarray(dy)
    base = _bases(x, size, alpha, k)
    dx = np.zeros(x.shape, dtype=np.float64)
    channels = x.shape[1]
    for i in np.ndindex(x.shape):
        n, c, rest = i[0], i[1], i[2:]
        g = float(dy[i])
        dx[i] += g * base[i] ** -beta
        through_base = g * float(x[i]) * -beta * base[i] ** (-beta - 1) * alpha / size
        for j in _window(c, size, channels):
            dx[(n, j) + rest] += through_base * 2.0 * float(x[(n, j) + rest])
    return dx.astype(x.dtype)
