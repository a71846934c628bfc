"""Reference losses as plain loops in float64 Python arithmetic, from torch.nn's
definitions (class axis 1; one "position" is an index of the input without axis 1)::

    cross entropy  l = -sum_c w_c q_c log softmax(z)_c, with q the one-hot target (or
                   the given probabilities) mixed with uniform: q (1 - eps) + eps / C;
                   for class indices the one-hot part has weight w_t and the uniform
                   part w_c; mean = sum l / sum_{kept positions} w_t (indices) or
                   sum l / positions (probabilities)
    nll            l = -w_t logp_t; mean = sum l / sum w_t
    mse            l = (x - t)^2; mean over elements
    bce logits     l = -w (p t log s(x) + (1 - t) log(1 - s(x))); mean over elements

Gradients are written out from the derivative of each formula (not from the fast
path's algebra). "mean" and "sum" return a Python float, "none" an array of the
positions' shape; losses and gradients have the input's dtype.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["cross_entropy_forward", "cross_entropy_backward", "nll_forward", "nll_backward",
           "mse_forward", "mse_backward", "bce_with_logits_forward", "bce_with_logits_backward"]


def _positions(shape):
    """Every index of a ``(N, C, d1, ...)`` input with the class axis removed."""
    return list(np.ndindex((shape[0],) + tuple(shape[2:])))


def _at(pos, c):
    return (pos[0], c) + tuple(pos[1:])


def _log_softmax(z, pos, n_classes):
    values = [float(z[_at(pos, c)]) for c in range(n_classes)]
    top = max(values)
    norm = math.log(sum(math.exp(v - top) for v in values))
    return [v - top - norm for v in values]


def _targets(target, pos, n_classes, ignore_index, smoothing):
    """``(q, kept, class)``: the per-class target weights before class weighting."""
    if target.dtype.kind == "f":
        q = [float(target[_at(pos, c)]) * (1 - smoothing) + smoothing / n_classes
             for c in range(n_classes)]
        return q, True, None
    t = int(target[pos])
    if t == ignore_index:
        return [0.0] * n_classes, False, t
    return [(1 - smoothing) * (c == t) + smoothing / n_classes for c in range(n_classes)], True, t


def _denominator(target, positions, weight, ignore_index):
    if target.dtype.kind == "f":
        return float(len(positions))
    total = 0.0
    for pos in positions:
        t = int(target[pos])
        if t != ignore_index:
            total += 1.0 if weight is None else float(weight[t])
    return total


def _finish(per, shape, reduction, denominator, dtype):
    if reduction == "none":
        return per.reshape(shape).astype(dtype)
    total = float(per.sum())
    if reduction == "sum":
        return total
    return total / denominator if denominator else math.nan


def _ce_terms(z, target, weight, ignore_index, smoothing):
    """Per-position losses and d loss_position / d logp_c (one list per position)."""
    z, target = np.asarray(z), np.asarray(target)
    n_classes = z.shape[1]
    positions = _positions(z.shape)
    losses, grads = [], []
    for pos in positions:
        logp = _log_softmax(z, pos, n_classes)
        q, kept, t = _targets(target, pos, n_classes, ignore_index, smoothing)
        coef = []
        for c in range(n_classes):
            w_c = 1.0 if weight is None else float(weight[c])
            if t is None:
                coef.append(w_c * q[c])
            else:
                # The one-hot part carries the target's weight, the uniform part w_c.
                w_t = 1.0 if weight is None else float(weight[t]) if kept else 0.0
                onehot = (1 - smoothing) * (c == t)
                coef.append((w_t * onehot + w_c * smoothing / n_classes) if kept else 0.0)
        losses.append(-sum(coef[c] * logp[c] for c in range(n_classes)))
        grads.append((logp, coef))
    return positions, losses, grads


def cross_entropy_forward(z, target, weight=None, ignore_index=-100, reduction="mean",
                          label_smoothing=0.0):
    """Cross-entropy of ``softmax(z)`` (``z (N, C, ...)``) against class indices or
    probabilities ``target``, as torch.nn.functional.cross_entropy."""
    z, target = np.asarray(z), np.asarray(target)
    positions, losses, _ = _ce_terms(z, target, weight, ignore_index, label_smoothing)
    per = np.array(losses, dtype=np.float64)
    shape = (z.shape[0],) + z.shape[2:]
    return _finish(per, shape, reduction, _denominator(target, positions, weight, ignore_index),
                   z.dtype)


def _scales(dloss, positions, reduction, denominator):
    if reduction == "none":
        d = np.asarray(dloss, dtype=np.float64)
        return [float(d[pos]) for pos in positions]
    scale = float(dloss)
    if reduction == "mean":
        # Nothing counted (every target ignored): torch's gradient is 0.
        scale = scale / denominator if denominator else 0.0
    return [scale] * len(positions)


def cross_entropy_backward(z, target, dloss=1.0, weight=None, ignore_index=-100,
                           reduction="mean", label_smoothing=0.0):
    """``dloss/dz``: with ``a_c`` the coefficient of ``-logp_c`` in the position's loss,
    ``d/dz_j = sum_c a_c (softmax_j - [c == j])``."""
    z, target = np.asarray(z), np.asarray(target)
    positions, _, terms = _ce_terms(z, target, weight, ignore_index, label_smoothing)
    scales = _scales(dloss, positions, reduction,
                     _denominator(target, positions, weight, ignore_index))
    dz = np.zeros(z.shape, dtype=np.float64)
    n_classes = z.shape[1]
    for pos, (logp, coef), scale in zip(positions, terms, scales, strict=True):
        for j in range(n_classes):
            s_j = math.exp(logp[j])
            g = sum(coef[c] * (s_j - (1.0 if c == j else 0.0)) for c in range(n_classes))
            dz[_at(pos, j)] = scale * g
    return dz.astype(z.dtype)


def nll_forward(logp, target, weight=None, ignore_index=-100, reduction="mean"):
    """``-weight[t] * logp[t]`` per position, reduced (torch.nn.functional.nll_loss)."""
    logp, target = np.asarray(logp), np.asarray(target)
    positions = _positions(logp.shape)
    per = np.empty(len(positions), dtype=np.float64)
    for i, pos in enumerate(positions):
        t = int(target[pos])
        if t == ignore_index:
            per[i] = 0.0
        else:
            per[i] = -(1.0 if weight is None else float(weight[t])) * float(logp[_at(pos, t)])
    shape = (logp.shape[0],) + logp.shape[2:]
    return _finish(per, shape, reduction, _denominator(target, positions, weight, ignore_index),
                   logp.dtype)


def nll_backward(logp, target, dloss=1.0, weight=None, ignore_index=-100, reduction="mean"):
    """``-weight[t]`` (times the reduction's scale) at each kept target, 0 elsewhere."""
    logp, target = np.asarray(logp), np.asarray(target)
    positions = _positions(logp.shape)
    scales = _scales(dloss, positions, reduction,
                     _denominator(target, positions, weight, ignore_index))
    grad = np.zeros(logp.shape, dtype=np.float64)
    for pos, scale in zip(positions, scales, strict=True):
        t = int(target[pos])
        if t != ignore_index:
            grad[_at(pos, t)] = -(1.0 if weight is None else float(weight[t])) * scale
    return grad.astype(logp.dtype)


def _elementwise_scales(dloss, shape, reduction):
    size = math.prod(shape)
    if reduction == "none":
        d = np.asarray(dloss, dtype=np.float64)
        return lambda index: float(d[index])
    scale = float(dloss) / size if reduction == "mean" else float(dloss)
    return lambda index: scale


def mse_forward(x, target, reduction="mean"):
    """``(x - target)^2`` per element, reduced."""
    x, target = np.asarray(x), np.asarray(target)
    per = np.empty(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape):
        per[index] = (float(x[index]) - float(target[index])) ** 2
    return _finish(per.reshape(-1), x.shape, reduction, x.size, x.dtype)


def mse_backward(x, target, dloss=1.0, reduction="mean"):
    """``2 (x - target)`` times the reduction's scale."""
    x, target = np.asarray(x), np.asarray(target)
    scale = _elementwise_scales(dloss, x.shape, reduction)
    dx = np.empty(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape):
        dx[index] = 2.0 * (float(x[index]) - float(target[index])) * scale(index)
    return dx.astype(x.dtype)


def _bce_parts(x, target, weight, pos_weight):
    """Per element: ``(w, p, t, v)`` with the (broadcast) weights."""
    shape = np.shape(x)
    w = np.broadcast_to(np.ones(()) if weight is None else np.asarray(weight, float), shape)
    p = np.broadcast_to(np.ones(()) if pos_weight is None else np.asarray(pos_weight, float),
                        shape)
    for index in np.ndindex(shape):
        yield index, float(w[index]), float(p[index]), float(target[index]), float(x[index])


def _log_sigmoid(v):
    """``log(1 / (1 + e^-v))`` without overflow for either sign of ``v``."""
    return -math.log1p(math.exp(-v)) if v >= 0 else v - math.log1p(math.exp(v))


def bce_with_logits_forward(x, target, weight=None, pos_weight=None, reduction="mean"):
    """``-w (p t log sigmoid(x) + (1 - t) log(1 - sigmoid(x)))`` per element, reduced."""
    x, target = np.asarray(x), np.asarray(target)
    per = np.empty(x.shape, dtype=np.float64)
    for index, w, p, t, v in _bce_parts(x, target, weight, pos_weight):
        # log(1 - sigmoid(v)) = log sigmoid(-v).
        per[index] = -w * (p * t * _log_sigmoid(v) + (1 - t) * _log_sigmoid(-v))
    return _finish(per.reshape(-1), x.shape, reduction, x.size, x.dtype)


def bce_with_logits_backward(x, target, dloss=1.0, weight=None, pos_weight=None,
                             reduction="mean"):
    """``d/dx = -w (p t (1 - s) - (1 - t) s)``, ``s = sigmoid(x)``, times the scale."""
    x, target = np.asarray(x), np.asarray(target)
    scale = _elementwise_scales(dloss, x.shape, reduction)
    dx = np.empty(x.shape, dtype=np.float64)
    for index, w, p, t, v in _bce_parts(x, target, weight, pos_weight):
        s = math.exp(_log_sigmoid(v))
        dx[index] = -w * (p * t * (1 - s) - (1 - t) * s) * scale(index)
    return dx.astype(x.dtype)
