"""Reference dense layers, activations and the softmax cross-entropy loss, as loops.

Each function works element by element (or row by row) in float64 Python arithmetic
and returns arrays of the input's dtype.

==================  ==========================================  =============================
operation           forward                                     backward (``dy`` = dL/dy)
==================  ==========================================  =============================
linear              ``y[n,o] = b[o] + sum_i x[n,i] w[o,i]``      ``dx = dy w``, ``dw = dy^T x``,
                                                                ``db = sum_n dy``
relu                ``max(x, 0)``                               ``dy`` where ``x > 0``, else 0
leaky_relu          ``x`` if ``x > 0`` else ``slope * x``       ``dy`` or ``slope * dy``
sigmoid             ``s = 1 / (1 + e^-x)``                      ``dy * s * (1 - s)``
tanh                ``t = tanh(x)``                             ``dy * (1 - t^2)``
softmax x-entropy   ``L = -mean_n log softmax(z)[n, y_n]``      ``(softmax(z) - onehot) / N``
==================  ==========================================  =============================
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "linear_forward",
    "linear_backward",
    "relu_forward",
    "relu_backward",
    "leaky_relu_forward",
    "leaky_relu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh_forward",
    "tanh_backward",
    "softmax",
    "softmax_cross_entropy_forward",
    "softmax_cross_entropy_backward",
]


def linear_forward(x, w, b=None):
    """``x (N, in)``, ``w (out, in)``, ``b (out,)`` or None -> ``y (N, out)``."""
    x, w = np.asarray(x), np.asarray(w)
    n_, fan_in = x.shape
    fan_out = w.shape[0]
    if w.shape != (fan_out, fan_in):
        raise ValueError(f"reference linear_forward: w must be (out, {fan_in}), got {w.shape}")
    y = np.empty((n_, fan_out), dtype=np.float64)
    for n in range(n_):
        for o in range(fan_out):
            total = 0.0 if b is None else float(b[o])
            for i in range(fan_in):
                total += float(x[n, i]) * float(w[o, i])
            y[n, o] = total
    return y.astype(x.dtype)


def linear_backward(x, w, dy, bias=True):
    """Gradients of :func:`linear_forward`: ``(dx (N, in), dw (out, in), db (out,) or None)``."""
    x, w, dy = np.asarray(x), np.asarray(w), np.asarray(dy)
    n_, fan_in = x.shape
    fan_out = w.shape[0]
    if dy.shape != (n_, fan_out):
        raise ValueError(
            f"reference linear_backward: expected dy of shape {(n_, fan_out)}, got {dy.shape}"
        )
    dx = np.zeros((n_, fan_in), dtype=np.float64)
    dw = np.zeros((fan_out, fan_in), dtype=np.float64)
    db = np.zeros(fan_out, dtype=np.float64)
    for n in range(n_):
        for o in range(fan_out):
            g = float(dy[n, o])
            db[o] += g
            for i in range(fan_in):
                dx[n, i] += g * float(w[o, i])
                dw[o, i] += g * float(x[n, i])
    return dx.astype(x.dtype), dw.astype(x.dtype), (db.astype(x.dtype) if bias else None)


def _elementwise(x, f):
    x = np.asarray(x)
    out = np.empty(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape):
        out[index] = f(float(x[index]))
    return out.astype(x.dtype)


def _elementwise2(x, dy, f, owner):
    x, dy = np.asarray(x), np.asarray(dy)
    if dy.shape != x.shape:
        raise ValueError(f"{owner}: expected dy of shape {x.shape}, got {dy.shape}")
    out = np.empty(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape):
        out[index] = f(float(x[index]), float(dy[index]))
    return out.astype(x.dtype)


def relu_forward(x):
    """``max(x, 0)`` element-wise, any shape."""
    return _elementwise(x, lambda v: v if v > 0 else 0.0)


def relu_backward(x, dy):
    """``dy`` where ``x > 0``; 0 elsewhere (the subgradient at 0 is taken as 0)."""
    return _elementwise2(x, dy, lambda v, g: g if v > 0 else 0.0, "reference relu_backward")


def leaky_relu_forward(x, negative_slope=0.01):
    """``x`` where ``x > 0``, ``negative_slope * x`` elsewhere."""
    return _elementwise(x, lambda v: v if v > 0 else negative_slope * v)


def leaky_relu_backward(x, dy, negative_slope=0.01):
    """``dy`` where ``x > 0``, ``negative_slope * dy`` elsewhere."""
    return _elementwise2(x, dy, lambda v, g: g if v > 0 else negative_slope * g,
                         "reference leaky_relu_backward")


def _sigmoid(v):
    # Two algebraically equal forms; each avoids overflow of exp on its side.
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


def sigmoid_forward(x):
    """Logistic function ``1 / (1 + exp(-x))``."""
    return _elementwise(x, _sigmoid)


def sigmoid_backward(x, dy):
    """``dy * s * (1 - s)`` with ``s = sigmoid(x)``."""
    return _elementwise2(x, dy, lambda v, g: g * _sigmoid(v) * (1.0 - _sigmoid(v)),
                         "reference sigmoid_backward")


def tanh_forward(x):
    """Hyperbolic tangent."""
    return _elementwise(x, math.tanh)


def tanh_backward(x, dy):
    """``dy * (1 - tanh(x)^2)``."""
    return _elementwise2(x, dy, lambda v, g: g * (1.0 - math.tanh(v) ** 2),
                         "reference tanh_backward")


def softmax(logits):
    """Row-wise softmax of ``(N, K)`` logits; the row maximum is subtracted before ``exp``
    (the result is unchanged, but ``exp`` can no longer overflow)."""
    logits = np.asarray(logits)
    n_, k_ = logits.shape
    out = np.empty((n_, k_), dtype=np.float64)
    for n in range(n_):
        row = [float(v) for v in logits[n]]
        top = max(row)
        exps = [math.exp(v - top) for v in row]
        total = sum(exps)
        for k in range(k_):
            out[n, k] = exps[k] / total
    return out.astype(logits.dtype)


def _check_labels(logits, labels, owner):
    logits, labels = np.asarray(logits), np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(
            f"{owner}: expected logits (N, K) and labels (N,), got {logits.shape} and "
            f"{labels.shape}"
        )
    for label in labels:
        if not 0 <= int(label) < logits.shape[1]:
            raise ValueError(f"{owner}: labels must be in [0, {logits.shape[1]}), got {label}")
    return logits, labels


def softmax_cross_entropy_forward(logits, labels):
    """Mean negative log-likelihood ``-1/N sum_n log softmax(logits)[n, labels[n]]``.

    ``logits (N, K)`` floats, ``labels (N,)`` ints in ``[0, K)``; returns a Python float.
    Uses ``log softmax(z)_k = z_k - max(z) - log(sum_j exp(z_j - max(z)))``.
    """
    logits, labels = _check_labels(logits, labels, "reference softmax_cross_entropy_forward")
    n_ = logits.shape[0]
    total = 0.0
    for n in range(n_):
        row = [float(v) for v in logits[n]]
        top = max(row)
        log_norm = math.log(sum(math.exp(v - top) for v in row))
        total -= row[int(labels[n])] - top - log_norm
    return total / n_


def softmax_cross_entropy_backward(logits, labels, dloss=1.0):
    """``dlogits (N, K) = dloss * (softmax(logits) - onehot(labels)) / N``, logits' dtype."""
    logits, labels = _check_labels(logits, labels, "reference softmax_cross_entropy_backward")
    n_, k_ = logits.shape
    probs = softmax(np.asarray(logits, dtype=np.float64))
    grad = np.empty((n_, k_), dtype=np.float64)
    for n in range(n_):
        for k in range(k_):
            onehot = 1.0 if k == int(labels[n]) else 0.0
            grad[n, k] = dloss * (probs[n, k] - onehot) / n_
    return grad.astype(logits.dtype)
