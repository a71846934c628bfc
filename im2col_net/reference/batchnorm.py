"""Reference batch normalisation over axis 1, as loops over channels and positions.

For ``x (N, C, *)`` and channel ``c`` let the positions ``p`` run over every index of
``x[:, c]`` (``M`` of them)::

    mean[c] = sum_p x[p] / M
    var[c]  = sum_p (x[p] - mean[c])^2 / M                 (biased: normalisation)
    y[p]    = (x[p] - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]

Training updates the running statistics with the *unbiased* variance::

    running_mean = (1 - momentum) * running_mean + momentum * mean
    running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1)

Evaluation (``training=False`` with running statistics) uses them in place of the batch
statistics; then ``y`` is affine in ``x``. Backward with batch statistics follows the
chain rule through the mean and the variance step by step (the classic derivation)::

    dxhat = dy * weight
    dvar  = sum_p dxhat[p] * (x[p] - mean) * (-1/2) * (var + eps)^(-3/2)
    dmean = -sum_p dxhat[p] / sqrt(var + eps) - 2 * dvar * sum_p (x[p] - mean) / M
    dx[p] = dxhat[p] / sqrt(var + eps) + 2 * dvar * (x[p] - mean) / M + dmean / M

Everything runs in float64 Python arithmetic; results have the input's dtype.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["batch_norm_forward", "batch_norm_backward"]


def _positions(shape):
    """Every index of ``x[:, c]`` as ``(n, *rest)`` tuples, for an ``(N, C, *)`` shape."""
    return [(n,) + rest for n in range(shape[0]) for rest in np.ndindex(shape[2:])]


def _at(index, c):
    return (index[0], c) + index[1:]


def _stats(x, c, positions):
    m = len(positions)
    mean = sum(float(x[_at(p, c)]) for p in positions) / m
    var = sum((float(x[_at(p, c)]) - mean) ** 2 for p in positions) / m
    return mean, var


def _check(x, owner):
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"{owner}: expected x of shape (N, C, ...), got {x.shape}")
    return x


def _use_batch(training, running_mean):
    return training or running_mean is None


def batch_norm_forward(x, weight=None, bias=None, running_mean=None, running_var=None,
                       training=True, momentum=0.1, eps=1e-5):
    """Returns ``(y, new_running_mean, new_running_var)``; the inputs are not modified.

    The new running statistics are None without running statistics and unchanged
    copies in evaluation.
    """
    x = _check(x, "reference batch_norm_forward")
    c_ = x.shape[1]
    positions = _positions(x.shape)
    m = len(positions)
    use_batch = _use_batch(training, running_mean)
    if training and m <= 1:
        raise ValueError(
            f"reference batch_norm_forward: expected more than 1 value per channel when "
            f"training, got input shape {x.shape}"
        )
    y = np.empty(x.shape, dtype=np.float64)
    new_mean = None if running_mean is None else np.array(running_mean, dtype=np.float64)
    new_var = None if running_var is None else np.array(running_var, dtype=np.float64)
    for c in range(c_):
        if use_batch:
            mean, var = _stats(x, c, positions)
            if training and new_mean is not None:
                new_mean[c] = (1 - momentum) * new_mean[c] + momentum * mean
                new_var[c] = (1 - momentum) * new_var[c] + momentum * var * m / (m - 1)
        else:
            mean, var = float(running_mean[c]), float(running_var[c])
        scale = 1.0 if weight is None else float(weight[c])
        shift = 0.0 if bias is None else float(bias[c])
        for p in positions:
            y[_at(p, c)] = (float(x[_at(p, c)]) - mean) / math.sqrt(var + eps) * scale + shift
    dtype = x.dtype
    return (y.astype(dtype), None if new_mean is None else new_mean.astype(dtype),
            None if new_var is None else new_var.astype(dtype))


def batch_norm_backward(x, dy, weight=None, running_mean=None, running_var=None, training=True,
                        eps=1e-5, bias=True):
    """Gradients of :func:`batch_norm_forward` at ``x``: ``(dx, dweight, dbias)``.

    ``dweight`` is None without ``weight``; ``dbias`` is None when ``bias`` is false or
    there is no ``weight`` (no affine parameters).
    """
    x = _check(x, "reference batch_norm_backward")
    dy = np.asarray(dy)
    if dy.shape != x.shape:
        raise ValueError(
            f"reference batch_norm_backward: expected dy of shape {x.shape}, got {dy.shape}"
        )
    c_ = x.shape[1]
    positions = _positions(x.shape)
    m = len(positions)
    use_batch = _use_batch(training, running_mean)
    dx = np.empty(x.shape, dtype=np.float64)
    dweight = np.zeros(c_, dtype=np.float64)
    dbias = np.zeros(c_, dtype=np.float64)
    for c in range(c_):
        if use_batch:
            mean, var = _stats(x, c, positions)
        else:
            mean, var = float(running_mean[c]), float(running_var[c])
        std = math.sqrt(var + eps)
        scale = 1.0 if weight is None else float(weight[c])
        for p in positions:
            g = float(dy[_at(p, c)])
            dbias[c] += g
            dweight[c] += g * (float(x[_at(p, c)]) - mean) / std
        if not use_batch:
            for p in positions:
                dx[_at(p, c)] = float(dy[_at(p, c)]) * scale / std
            continue
        dvar = sum(float(dy[_at(p, c)]) * scale * (float(x[_at(p, c)]) - mean)
                   for p in positions) * -0.5 * (var + eps) ** -1.5
        dmean = (-sum(float(dy[_at(p, c)]) * scale for p in positions) / std
                 - 2.0 * dvar * sum(float(x[_at(p, c)]) - mean for p in positions) / m)
        for p in positions:
            dx[_at(p, c)] = (float(dy[_at(p, c)]) * scale / std
                             + 2.0 * dvar * (float(x[_at(p, c)]) - mean) / m + dmean / m)
    dtype = x.dtype
    has_affine = weight is not None
    return (dx.astype(dtype), dweight.astype(dtype) if has_affine else None,
            dbias.astype(dtype) if has_affine and bias else None)
