"""Losses with torch.nn's options: forward ``(loss, cache)``, backward the input gradient.

``reduction`` is ``"mean"``, ``"sum"`` (the loss is then a Python float and ``dloss`` a
number) or ``"none"`` (the per-element losses as an array of the input's dtype, and
``dloss`` an array of that shape). Class axis 1, as torch: logits ``(N, C)`` or ``(N, C,
d1, ..., dk)`` with class indices ``(N,)`` / ``(N, d1, ..., dk)``. Everything is computed
in the input's dtype (float32 stays float32), through log-sum-exp and ``log1p(exp(-|x|))``
so no ``exp`` overflows.
"""

from __future__ import annotations

import numpy as np

from .activations import log_softmax_forward

__all__ = [
    "REDUCTIONS",
    "cross_entropy_forward",
    "cross_entropy_backward",
    "nll_forward",
    "nll_backward",
    "mse_forward",
    "mse_backward",
    "bce_with_logits_forward",
    "bce_with_logits_backward",
]

REDUCTIONS = ("mean", "sum", "none")


def _rows(x):
    """``(N, C, d1, ...)`` -> ``(N*d1*..., C)``: one row per position, classes last."""
    if x.ndim == 2:
        return x
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _unrows(rows, shape):
    """Inverse of :func:`_rows` for an input of ``shape``."""
    if len(shape) == 2:
        return rows
    return np.moveaxis(rows.reshape((shape[0],) + tuple(shape[2:]) + (shape[1],)), -1, 1)


def _reduce(per, reduction, denominator):
    """``per`` reduced; the mean divides by ``denominator`` (0/0 gives NaN, as torch)."""
    if reduction == "none":
        return per
    total = per.sum(dtype=per.dtype)
    if reduction == "sum":
        return float(total)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(total / np.asarray(denominator, dtype=per.dtype))


def _row_scale(reduction, dloss, denominator, shape, dtype):
    """What multiplies the gradient of each element's loss: ``dloss`` spread out."""
    if reduction == "none":
        return np.asarray(dloss, dtype=dtype).reshape(shape)
    if reduction == "sum":
        return np.asarray(dloss, dtype=dtype)
    if denominator == 0:
        # Every target ignored: the loss is NaN but torch's gradient is 0, and so is this.
        return np.zeros((), dtype)
    return np.asarray(dloss, dtype=dtype) / np.asarray(denominator, dtype=dtype)


def _class_index_terms(logp, target, weight, ignore_index, smoothing):
    """Per-row losses and the gradient with respect to ``logp (M, C)`` of each row's loss
    (unscaled), and the weighted count of the targets (the mean's denominator)."""
    m, c = logp.shape
    dtype = logp.dtype
    valid = target != ignore_index
    safe = np.where(valid, target, 0)
    zero = np.zeros((), dtype)
    w_t = np.where(valid, weight[safe] if weight is not None else np.ones((), dtype), zero)
    rows = np.arange(m)
    keep = np.asarray(1 - smoothing, dtype)
    per = -(w_t * logp[rows, safe]) * keep
    grad = np.zeros_like(logp)
    grad[rows, safe] = -w_t * keep
    if smoothing:
        spread = np.asarray(smoothing / c, dtype)
        w = np.ones(c, dtype) if weight is None else weight
        # torch: the smoothing term is weighted per class and ignores ignored positions.
        on = valid.astype(dtype)
        per = per - spread * on * (logp * w).sum(axis=1, dtype=dtype)
        grad -= (spread * on)[:, None] * w
    return per, grad, w_t.sum(dtype=dtype)


def cross_entropy_forward(logits, target, weight=None, ignore_index=-100, reduction="mean",
                          label_smoothing=0.0):
    """Softmax cross-entropy of ``logits`` against class indices (``target`` integer,
    ``logits``' shape without axis 1) or class probabilities (``target`` floating, of
    ``logits``' shape), as torch.nn.functional.cross_entropy.

    ``weight (C,)`` weights each class; with class indices the mean divides by the sum
    of the targets' weights (positions equal to ``ignore_index`` count neither in the sum
    nor the denominator), with probabilities by the number of positions.
    ``label_smoothing`` mixes the target with the uniform distribution. Inputs are
    assumed checked (the loss classes do it).
    """
    logits = np.asarray(logits)
    logp, _ = log_softmax_forward(_rows(logits), axis=1)
    c = logits.shape[1]
    if target.dtype.kind == "f":
        q = _rows(target).astype(logp.dtype, copy=False)
        if label_smoothing:
            q = q * np.asarray(1 - label_smoothing, logp.dtype) + np.asarray(
                label_smoothing / c, logp.dtype)
        wq = q if weight is None else q * weight
        per = -(wq * logp).sum(axis=1, dtype=logp.dtype)
        grad, denominator = -wq, per.shape[0]
        out_shape = (logits.shape[0],) + logits.shape[2:]
    else:
        per, grad, denominator = _class_index_terms(logp, target.reshape(-1), weight,
                                                    ignore_index, label_smoothing)
        out_shape = target.shape
    loss = _reduce(per.reshape(out_shape), reduction, denominator)
    return loss, (logp, grad, denominator, reduction, logits.shape, out_shape)


def cross_entropy_backward(cache, dloss=1.0):
    """``dlogits`` (the logits' shape and dtype): ``g - softmax * sum(g)`` per position,
    ``g`` the gradient with respect to the log-probabilities."""
    logp, grad, denominator, reduction, shape, out_shape = cache
    scale = _row_scale(reduction, dloss, denominator, out_shape, logp.dtype)
    g = grad * (scale.reshape(-1, 1) if scale.ndim else scale)
    dlogits = g - np.exp(logp) * g.sum(axis=1, keepdims=True, dtype=logp.dtype)
    return _unrows(dlogits, shape)


def nll_forward(logp, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of log-probabilities ``logp (N, C, ...)`` at the class
    indices ``target`` (torch.nn.functional.nll_loss): ``-weight[t] * logp[t]``, the mean
    divided by the sum of the targets' weights."""
    logp = np.asarray(logp)
    rows = _rows(logp)
    per, grad, denominator = _class_index_terms(rows, target.reshape(-1), weight,
                                                ignore_index, 0.0)
    loss = _reduce(per.reshape(target.shape), reduction, denominator)
    return loss, (grad, denominator, reduction, logp.shape, target.shape, logp.dtype)


def nll_backward(cache, dloss=1.0):
    """``dlogp``: ``-weight[t]`` (times the reduction's scale) at each target, 0 elsewhere."""
    grad, denominator, reduction, shape, out_shape, dtype = cache
    scale = _row_scale(reduction, dloss, denominator, out_shape, dtype)
    return _unrows(grad * (scale.reshape(-1, 1) if scale.ndim else scale), shape)


def mse_forward(x, target, reduction="mean"):
    """``(x - target)^2`` reduced (torch.nn.functional.mse_loss; same shapes)."""
    diff = np.asarray(x) - target
    return _reduce(diff * diff, reduction, diff.size), (diff, reduction)


def mse_backward(cache, dloss=1.0):
    """``dx = 2 (x - target)`` times the reduction's scale."""
    diff, reduction = cache
    scale = _row_scale(reduction, dloss, diff.size, diff.shape, diff.dtype)
    return np.asarray(2, diff.dtype) * diff * scale


def bce_with_logits_forward(x, target, weight=None, pos_weight=None, reduction="mean"):
    """Binary cross-entropy of ``sigmoid(x)`` against ``target`` (torch's
    BCEWithLogitsLoss): ``-(pos_weight * t * log s + (1 - t) * log(1 - s)) * weight``.

    ``-log s = softplus(-x) = max(-x, 0) + log1p(exp(-|x|))`` and ``-log(1 - s) = x +
    softplus(-x)``, so no ``exp`` overflows. ``weight`` and ``pos_weight`` broadcast
    against ``x`` (``pos_weight (C,)`` along the last axis, as torch).
    """
    x = np.asarray(x)
    dtype = x.dtype
    one, zero = np.ones((), dtype), np.zeros((), dtype)
    e = np.exp(-np.abs(x))
    neg_log_s = np.maximum(-x, zero) + np.log1p(e)
    coef = one if pos_weight is None else one + (pos_weight - one) * target
    per = (one - target) * x + coef * neg_log_s
    if weight is not None:
        per = per * weight
    s = np.where(x >= 0, one / (one + e), e / (one + e))
    # d/dx of (1 - t) x + coef * softplus(-x) is (1 - t) - coef * (1 - s).
    grad = (one - target) - coef * (one - s)
    if weight is not None:
        grad = grad * weight
    return _reduce(per, reduction, per.size), (grad, reduction)


def bce_with_logits_backward(cache, dloss=1.0):
    """``dx`` (``x``'s shape and dtype)."""
    grad, reduction = cache
    return grad * _row_scale(reduction, dloss, grad.size, grad.shape, grad.dtype)
