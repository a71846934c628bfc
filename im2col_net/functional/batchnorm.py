"""Batch normalisation over the channel axis: forward ``(y, cache)``, backward gradients.

The channel axis is axis 1, as in PyTorch: ``x`` is ``(N, C)``, ``(N, C, L)`` or
``(N, C, H, W)``; statistics are taken over every other axis. In training mode (or
whenever no running statistics are given) the batch statistics normalise ``x`` (the
biased variance) and, if running statistics are given, they are updated in place like
``torch.nn.functional.batch_norm``: ``running = (1 - momentum) * running + momentum *
batch`` with the *unbiased* batch variance. Otherwise the running statistics normalise.

All arithmetic stays in ``x.dtype``; element-wise results keep the memory layout of
``x`` (an NCHW view of NHWC memory stays NHWC underneath).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BatchNormCache", "batch_norm", "batch_norm_forward", "batch_norm_backward"]


@dataclass
class BatchNormCache:
    """What :func:`batch_norm_backward` needs from the forward pass."""

    xhat: np.ndarray            # normalised input, shape and dtype of x
    inv_std: np.ndarray         # (C,) 1 / sqrt(var + eps) of the statistics used
    weight: np.ndarray | None   # (C,) scale, None without affine parameters
    has_bias: bool
    batch_stats: bool           # True: mean/var came from x, so gradients flow through them


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """Reshape a ``(C,)`` vector to broadcast against an ``ndim``-D input along axis 1."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _check(x, weight, bias, running_mean, running_var, owner):
    if x.ndim < 2:
        raise ValueError(f"{owner}: expected an input (N, C, ...), got shape {x.shape}")
    if x.dtype.kind != "f":
        raise ValueError(f"{owner}: expected a floating-point input, got dtype {x.dtype}")
    c = x.shape[1]
    for name, v in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if v is not None and (v.shape != (c,) or v.dtype != x.dtype):
            raise ValueError(
                f"{owner}: expected {name} of shape ({c},) and dtype {x.dtype} for input shape "
                f"{x.shape}, got shape {v.shape} dtype {v.dtype}"
            )
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{owner}: give both running_mean and running_var or neither")


def batch_norm_forward(x, running_mean=None, running_var=None, weight=None, bias=None,
                       training=False, momentum=0.1, eps=1e-5, *, owner="batch_norm"):
    """Normalise ``x`` per channel, then scale by ``weight`` and shift by ``bias``.

    The arguments come in ``torch.nn.functional.batch_norm``'s order. Shapes: ``x (N, C,
    *)``; ``running_mean``, ``running_var``, ``weight``, ``bias`` ``(C,)`` in ``x.dtype``
    or None. ``momentum`` is the update factor for the running statistics (the caller
    turns PyTorch's ``momentum=None`` into ``1 / batches``). Returns ``y`` (shape and dtype
    of ``x``) and a cache for :func:`batch_norm_backward`. The running statistics are
    updated in place when ``training`` is true; evaluation needs them, as in torch. An
    empty ``x`` gives an empty ``y`` and leaves the running statistics alone (torch's
    behaviour).
    """
    x = np.asarray(x)
    _check(x, weight, bias, running_mean, running_var, owner)
    if not training and running_mean is None:
        raise ValueError(f"{owner}: running_mean and running_var must be given in evaluation "
                         f"mode (training=False), got None")
    axes = (0,) + tuple(range(2, x.ndim))
    count = x.size // x.shape[1] if x.shape[1] else 0
    if training and count == 1:
        raise ValueError(
            f"{owner}: expected more than 1 value per channel when training, "
            f"got input shape {x.shape}"
        )
    if x.size == 0:
        inv_std = np.ones(x.shape[1], dtype=x.dtype)
        cache = BatchNormCache(x.copy(), inv_std, weight, bias is not None, training)
        return x.copy(), cache
    if training:
        mean = x.mean(axis=axes, dtype=x.dtype)
        xhat = x - _per_channel(mean, x.ndim)
        var = np.mean(np.square(xhat), axis=axes, dtype=x.dtype)
        if running_mean is not None:
            unbiased = var * x.dtype.type(count / (count - 1))
            running_mean *= 1 - momentum
            running_mean += momentum * mean
            running_var *= 1 - momentum
            running_var += momentum * unbiased
    else:
        var = running_var
        xhat = x - _per_channel(running_mean, x.ndim)
    inv_std = 1 / np.sqrt(var + x.dtype.type(eps))
    xhat *= _per_channel(inv_std, x.ndim)
    if weight is not None:
        y = xhat * _per_channel(weight, x.ndim)
    else:
        y = xhat.copy()
    if bias is not None:
        y += _per_channel(bias, x.ndim)
    cache = BatchNormCache(xhat, inv_std, weight, bias is not None, bool(training))
    return y, cache


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """``torch.nn.functional.batch_norm``: :func:`batch_norm_forward` without the cache."""
    return batch_norm_forward(x, running_mean, running_var, weight, bias, training, momentum,
                              eps)[0]


def batch_norm_backward(dy, cache: BatchNormCache):
    """Gradients of :func:`batch_norm_forward`.

    ``dy`` (shape of ``x``) -> ``dx`` (same shape, ``x.dtype``), ``dweight (C,)`` or None,
    ``dbias (C,)`` or None. With batch statistics the gradient also flows through the
    batch mean and variance::

        dx = inv_std * (g - mean(g) - xhat * mean(g * xhat)),   g = dy * weight
    """
    xhat = cache.xhat
    if dy.shape != xhat.shape:
        raise ValueError(f"batch_norm backward: expected dy of shape {xhat.shape}, got {dy.shape}")
    dy = np.asarray(dy, dtype=xhat.dtype)
    ndim = xhat.ndim
    axes = (0,) + tuple(range(2, ndim))
    if xhat.size == 0:
        zeros = np.zeros(xhat.shape[1], dtype=xhat.dtype)
        return (dy.copy(), zeros if cache.weight is not None else None,
                zeros.copy() if cache.has_bias else None)
    dbias = dy.sum(axis=axes)
    dweight = np.sum(dy * xhat, axis=axes)
    scale = cache.inv_std if cache.weight is None else cache.inv_std * cache.weight
    if cache.batch_stats:
        count = xhat.size // xhat.shape[1]
        # mean(g) = weight * dbias / count, mean(g * xhat) = weight * dweight / count.
        dx = xhat * _per_channel(dweight / count, ndim)
        dx -= dy
        dx += _per_channel(dbias / count, ndim)
        dx *= _per_channel(-scale, ndim)
    else:
        dx = dy * _per_channel(scale, ndim)
    return (dx, dweight if cache.weight is not None else None,
            dbias if cache.has_bias else None)
