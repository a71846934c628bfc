"""Group, layer, instance and local-response normalisation: forward ``(y, cache)`` and
backward gradients, vectorised over the batch.

Group, layer and instance normalisation share one core: view ``x`` as ``(A, B, M)`` and
normalise each row of ``M`` values with its own mean and biased variance::

    xhat = (x - mean) / sqrt(var + eps)
    dx   = inv_std * (g - mean(g) - xhat * mean(g * xhat)),   g = dL/dxhat

then scale and shift per channel (group and instance norm) or per element of the
normalised shape (layer norm). All arithmetic stays in ``x.dtype``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["NormCache", "group_norm_forward", "group_norm_backward", "layer_norm_forward",
           "layer_norm_backward", "instance_norm_forward", "instance_norm_backward",
           "LRNCache", "local_response_norm_forward", "local_response_norm_backward"]


@dataclass
class NormCache:
    """What the backward functions need from the forward pass."""

    xhat: np.ndarray            # normalised input, shape and dtype of x
    inv_std: np.ndarray | None  # (A, B, 1) for the (A, B, M) row view; None: fixed statistics
    rows: tuple[int, int, int]  # the (A, B, M) view
    weight: np.ndarray | None   # broadcastable against x, None without a scale
    has_bias: bool
    param_shape: tuple[int, ...]
    param_axes: tuple[int, ...]  # axes of x summed for the parameter gradients
    fixed_scale: np.ndarray | None = None  # instance norm on running statistics: dx = dy * this


def _check_float(x, owner):
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise ValueError(f"{owner}: expected a floating-point input, got dtype {x.dtype}")
    return x


def _check_param(owner, name, v, shape, dtype):
    if v is not None and (np.shape(v) != tuple(shape) or np.asarray(v).dtype != dtype):
        raise ValueError(f"{owner}: expected {name} of shape {tuple(shape)} and dtype {dtype}, "
                         f"got shape {np.shape(v)} dtype {np.asarray(v).dtype}")


def _normalize_rows(x, rows, eps):
    """``(xhat, inv_std)`` of ``x`` viewed as ``rows = (A, B, M)``, normalised over M."""
    x3 = x.reshape(rows)
    mean = x3.mean(axis=2, keepdims=True, dtype=x.dtype)
    xhat = x3 - mean
    var = np.mean(np.square(xhat), axis=2, keepdims=True, dtype=x.dtype)
    inv_std = 1 / np.sqrt(var + x.dtype.type(eps))
    xhat *= inv_std
    return xhat.reshape(x.shape), inv_std


def _rows_backward(g, xhat, inv_std, rows):
    g3, xhat3 = g.reshape(rows), xhat.reshape(rows)
    mean_g = g3.mean(axis=2, keepdims=True, dtype=g.dtype)
    mean_gx = np.mean(g3 * xhat3, axis=2, keepdims=True, dtype=g.dtype)
    dx = xhat3 * mean_gx
    np.subtract(g3, dx, out=dx)
    dx -= mean_g
    dx *= inv_std
    return dx.reshape(xhat.shape)


def _affine(xhat, weight, bias):
    y = xhat * weight if weight is not None else xhat.copy()
    if bias is not None:
        y += bias
    return y


def _backward(dy, cache: NormCache, what):
    xhat = cache.xhat
    dy = np.asarray(dy)
    if dy.shape != xhat.shape:
        raise ValueError(f"{what} backward: expected dy of shape {xhat.shape}, got {dy.shape}")
    dy = dy.astype(xhat.dtype, copy=False)
    dweight = dbias = None
    if cache.weight is not None:
        dweight = np.sum(dy * xhat, axis=cache.param_axes, dtype=xhat.dtype).reshape(
            cache.param_shape)
    if cache.has_bias:
        dbias = np.sum(dy, axis=cache.param_axes, dtype=xhat.dtype).reshape(cache.param_shape)
    g = dy * cache.weight if cache.weight is not None else dy
    if cache.fixed_scale is not None:
        dx = g * cache.fixed_scale
    elif xhat.size == 0:
        dx = np.array(g, copy=True)
    else:
        dx = _rows_backward(g, xhat, cache.inv_std, cache.rows)
    return dx, dweight, dbias


def _channel_view(v, ndim):
    return None if v is None else v.reshape((1, -1) + (1,) * (ndim - 2))


# -- group norm ------------------------------------------------------------------------

def group_norm_forward(x, num_groups, weight=None, bias=None, eps=1e-5, *, owner="group_norm"):
    """``torch.nn.functional.group_norm``: ``x (N, C, *)`` split into ``num_groups``
    groups of ``C / num_groups`` consecutive channels; each sample's group is normalised
    over its channels and positions; ``weight``, ``bias (C,)`` scale and shift per
    channel. Returns ``(y, cache)``."""
    x = _check_float(x, owner)
    if x.ndim < 2:
        raise ValueError(f"{owner}: expected an input (N, C, ...), got shape {x.shape}")
    n, c = x.shape[:2]
    if num_groups < 1 or c % num_groups:
        raise ValueError(f"{owner}: expected a channel count divisible by num_groups="
                         f"{num_groups}, got input shape {x.shape}")
    for name, v in (("weight", weight), ("bias", bias)):
        _check_param(owner, name, v, (c,), x.dtype)
    rows = (n, num_groups, (c // num_groups) * math.prod(x.shape[2:]))
    if x.size == 0:
        xhat, inv_std = x.copy(), None
    else:
        xhat, inv_std = _normalize_rows(x, rows, eps)
    w, b = _channel_view(weight, x.ndim), _channel_view(bias, x.ndim)
    cache = NormCache(xhat, inv_std, rows, w, b is not None, (c,),
                      (0,) + tuple(range(2, x.ndim)))
    return _affine(xhat, w, b), cache


def group_norm_backward(dy, cache: NormCache):
    """``dy`` (shape of ``x``) -> ``(dx, dweight (C,) or None, dbias (C,) or None)``."""
    return _backward(dy, cache, "group_norm")


# -- layer norm ------------------------------------------------------------------------

def layer_norm_forward(x, normalized_shape, weight=None, bias=None, eps=1e-5, *,
                       owner="layer_norm"):
    """``torch.nn.functional.layer_norm``: normalise over the last
    ``len(normalized_shape)`` axes of ``x`` (which must equal ``normalized_shape``);
    ``weight``, ``bias`` of ``normalized_shape`` scale and shift element-wise."""
    x = _check_float(x, owner)
    shape = tuple(int(s) for s in normalized_shape)
    k = len(shape)
    if x.ndim < k or x.shape[x.ndim - k:] != shape:
        raise ValueError(f"{owner}: expected an input whose last {k} dimension(s) are "
                         f"{shape}, got shape {x.shape}")
    for name, v in (("weight", weight), ("bias", bias)):
        _check_param(owner, name, v, shape, x.dtype)
    rows = (math.prod(x.shape[:x.ndim - k]), 1, math.prod(shape))
    if x.size == 0:
        xhat, inv_std = x.copy(), None
    else:
        xhat, inv_std = _normalize_rows(x, rows, eps)
    cache = NormCache(xhat, inv_std, rows, weight, bias is not None, shape,
                      tuple(range(x.ndim - k)))
    return _affine(xhat, weight, bias), cache


def layer_norm_backward(dy, cache: NormCache):
    """``dy`` -> ``(dx, dweight or None, dbias or None)`` (parameters of
    ``normalized_shape``)."""
    return _backward(dy, cache, "layer_norm")


# -- instance norm ---------------------------------------------------------------------

def instance_norm_forward(x, running_mean=None, running_var=None, weight=None, bias=None,
                          use_input_stats=True, momentum=0.1, eps=1e-5, *,
                          owner="instance_norm"):
    """``torch.nn.functional.instance_norm``: each ``(n, c)`` plane of ``x (N, C, *)``
    normalised over its positions (``use_input_stats``), or every plane of channel ``c``
    with ``running_mean[c]``, ``running_var[c]`` otherwise. With input statistics and
    running statistics given, the running statistics move towards the batch average of
    the per-plane mean and unbiased variance (in place), as torch does."""
    x = _check_float(x, owner)
    if x.ndim < 3:
        raise ValueError(f"{owner}: expected an input (N, C, *spatial), got shape {x.shape}")
    n, c = x.shape[:2]
    for name, v in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        _check_param(owner, name, v, (c,), x.dtype)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{owner}: give both running_mean and running_var or neither")
    if not use_input_stats and running_mean is None:
        raise ValueError(f"{owner}: running_mean and running_var must be given when "
                         f"use_input_stats is false")
    m = math.prod(x.shape[2:])
    rows = (n, c, m)
    w, b = _channel_view(weight, x.ndim), _channel_view(bias, x.ndim)
    axes = (0,) + tuple(range(2, x.ndim))
    if not use_input_stats:
        scale = 1 / np.sqrt(running_var + x.dtype.type(eps))
        xhat = (x - _channel_view(running_mean, x.ndim)) * _channel_view(scale, x.ndim)
        cache = NormCache(xhat, None, rows, w, b is not None, (c,), axes,
                          fixed_scale=_channel_view(scale, x.ndim))
        return _affine(xhat, w, b), cache
    if m == 1:
        raise ValueError(f"{owner}: expected more than 1 spatial element when using input "
                         f"statistics, got input shape {x.shape}")
    if x.size == 0:
        xhat, inv_std = x.copy(), None
    else:
        xhat, inv_std = _normalize_rows(x, rows, eps)
        if running_mean is not None and n:
            x3 = x.reshape(rows)
            mean = x3.mean(axis=2, dtype=x.dtype)
            # The per-plane variance recomputed directly: 1/inv_std^2 - eps loses bits.
            var = np.mean(np.square(x3 - mean[:, :, None]), axis=2, dtype=x.dtype)
            unbiased = var * x.dtype.type(m / (m - 1))
            running_mean *= 1 - momentum
            running_mean += momentum * mean.mean(axis=0, dtype=x.dtype)
            running_var *= 1 - momentum
            running_var += momentum * unbiased.mean(axis=0, dtype=x.dtype)
    cache = NormCache(xhat, inv_std, rows, w, b is not None, (c,), axes)
    return _affine(xhat, w, b), cache


def instance_norm_backward(dy, cache: NormCache):
    """``dy`` -> ``(dx, dweight (C,) or None, dbias (C,) or None)``."""
    return _backward(dy, cache, "instance_norm")


# -- local response norm ---------------------------------------------------------------

@dataclass
class LRNCache:
    x: np.ndarray
    base: np.ndarray   # k + alpha * window_sum(x^2) / size
    scale: np.ndarray  # base ** -beta
    size: int
    alpha: float
    beta: float


def _window_sum(a, before, after):
    """``out[:, c] = sum of a[:, c - before .. c + after]`` along axis 1 (zeros outside):
    a loop over the ``size`` offsets of the window, vectorised over everything else."""
    c = a.shape[1]
    out = np.zeros_like(a)
    for offset in range(-before, after + 1):
        lo, hi = max(0, -offset), min(c, c - offset)
        if lo < hi:
            out[:, lo:hi] += a[:, lo + offset:hi + offset]
    return out


def local_response_norm_forward(x, size, alpha=1e-4, beta=0.75, k=1.0, *,
                                owner="local_response_norm"):
    """``torch.nn.functional.local_response_norm``: ``y = x / (k + alpha * S / size) **
    beta`` where ``S[:, c]`` sums ``x^2`` over channels ``c - size//2 .. c + (size-1)//2``
    (zeros beyond the edges, yet always divided by ``size``: torch pads the channel axis
    and average-pools it)."""
    x = _check_float(x, owner)
    if x.ndim < 3:
        raise ValueError(f"{owner}: expected an input (N, C, *) of 3 or more dimensions, got "
                         f"shape {x.shape}")
    dt = x.dtype.type
    sums = _window_sum(np.square(x), size // 2, (size - 1) // 2)
    base = sums * dt(alpha / size)
    base += dt(k)
    scale = np.power(base, dt(-beta))
    return x * scale, LRNCache(x, base, scale, int(size), float(alpha), float(beta))


def local_response_norm_backward(dy, cache: LRNCache):
    """``dy`` -> ``dx``: ``dy * base^-beta - (2 alpha beta / size) * x *
    window_sum^T(dy * x * base^(-beta-1))``, the transposed window running over channels
    ``c - (size-1)//2 .. c + size//2``."""
    x = cache.x
    dy = np.asarray(dy)
    if dy.shape != x.shape:
        raise ValueError(f"local_response_norm backward: expected dy of shape {x.shape}, got "
                         f"{dy.shape}")
    dt = x.dtype.type
    dy = dy.astype(x.dtype, copy=False)
    t = dy * x
    t *= cache.scale
    t /= cache.base
    back = _window_sum(t, (cache.size - 1) // 2, cache.size // 2)
    back *= x
    back *= dt(2 * cache.alpha * cache.beta / cache.size)
    dx = dy * cache.scale
    dx -= back
    return dx
