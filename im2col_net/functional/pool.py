"""Max, average and global average pooling: forward ``(y, cache)``, backward ``dx``.

Windows are read per kernel offset: when they tile the input exactly (kernel ==
stride, no padding) the offsets come from a plain reshape ``(N, Ho, kh, Wo, kw, C)``;
otherwise from strided slices of the padded input (a window view). Arrays are NCHW at
the interface, NHWC inside.

Max pooling keeps, for every output, the kernel offset of the first maximum in its
window (row-major order, as PyTorch) and routes the whole gradient there. Padded
positions hold ``-inf`` and never win. Average pooling spreads the gradient evenly;
with ``count_include_pad=True`` (PyTorch's default) padded zeros count in the divisor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import WindowGeometry, as_pair
from ..lowering import offset_slices, pad

__all__ = [
    "PoolCache",
    "pool_geometry",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "global_avg_pool2d_backward",
]


@dataclass
class PoolCache:
    geometry: WindowGeometry
    input_shape: tuple[int, int, int, int]
    out_size: tuple[int, int]
    argmax: np.ndarray | None = None       # (N, Ho, Wo, C) kernel-offset index, max pooling
    divisor: np.ndarray | float = 1.0      # average pooling
    dtype: np.dtype | None = None


def pool_geometry(kernel_size, stride=None, padding=0, *, owner="pool2d") -> WindowGeometry:
    """Validate torch-style pooling arguments; ``stride=None`` means ``kernel_size``."""
    kernel = as_pair(kernel_size, "kernel_size", owner=owner)
    stride = kernel if stride is None else as_pair(stride, "stride", owner=owner)
    ph, pw = as_pair(padding, "padding", minimum=0, owner=owner)
    if 2 * ph > kernel[0] or 2 * pw > kernel[1]:
        raise ValueError(
            f"{owner}: padding must be at most half the kernel size, got padding {(ph, pw)} "
            f"for kernel {kernel}"
        )
    return WindowGeometry(kernel, stride, (ph, ph, pw, pw), (1, 1))


def _check_input(x, owner):
    if x.ndim != 4:
        raise ValueError(f"{owner}: expected a 4-D input (N, C, H, W), got shape {x.shape}")
    if x.dtype.kind != "f":
        raise ValueError(f"{owner}: expected a floating-point input, got dtype {x.dtype}")


def _taps(x_nhwc, geometry: WindowGeometry, out_h, out_w, fill):
    """Yield ``(k, i, j, view)`` for every kernel offset; ``view`` is ``(N, Ho, Wo, C)``."""
    kh, kw = geometry.kernel
    if geometry.tiles_exactly:
        n, _, _, c = x_nhwc.shape
        tiles = x_nhwc[:, : out_h * kh, : out_w * kw].reshape(n, out_h, kh, out_w, kw, c)
        for i in range(kh):
            for j in range(kw):
                yield i * kw + j, tiles[:, :, i, :, j, :]
        return
    xp = pad(x_nhwc, geometry.padding, "zeros", fill=fill)
    for i, j, index in offset_slices(geometry, out_h, out_w):
        yield i * kw + j, xp[index]


def _scatter(parts, geometry: WindowGeometry, input_shape, out_h, out_w, dtype):
    """Add per-offset ``(N, Ho, Wo, C)`` gradients back into an ``(N, C, H, W)`` view."""
    n, c, h, w = input_shape
    hp, wp = geometry.padded_size(h, w)
    dxp = np.zeros((n, hp, wp, c), dtype=dtype)
    index_of = {(i, j): index for i, j, index in offset_slices(geometry, out_h, out_w)}
    kw = geometry.kernel[1]
    disjoint = geometry.stride[0] >= geometry.kernel[0] and geometry.stride[1] >= kw
    for k, part in parts:
        target = dxp[index_of[divmod(k, kw)]]
        if disjoint:
            target[...] = part
        else:
            target += part
    top, _, left, _ = geometry.padding
    return dxp[:, top:top + h, left:left + w].transpose(0, 3, 1, 2)


def max_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """Max pooling. ``x (N, C, H, W)`` -> ``y (N, C, Ho, Wo)``, cache with the argmax."""
    geometry = pool_geometry(kernel_size, stride, padding, owner="max_pool2d")
    return max_pool2d_forward_geom(x, geometry)


def max_pool2d_forward_geom(x, geometry: WindowGeometry, owner="max_pool2d"):
    x = np.asarray(x)
    _check_input(x, owner)
    n, c, h, w = x.shape
    out_h, out_w = geometry.checked_output_size(h, w, owner=owner)
    taps = list(_taps(x.transpose(0, 2, 3, 1), geometry, out_h, out_w, -np.inf))
    y = np.empty((n, out_h, out_w, c), dtype=x.dtype)
    np.copyto(y, taps[0][1])
    for _, view in taps[1:]:
        np.maximum(y, view, out=y)
    # Walk the offsets backwards so the first (row-major) maximum is the one kept.
    index_dtype = np.uint8 if len(taps) <= 256 else np.int32
    argmax = np.zeros(y.shape, dtype=index_dtype)
    hit = np.empty(y.shape, dtype=bool)
    for k, view in reversed(taps[1:]):
        np.equal(view, y, out=hit)
        np.copyto(argmax, k, where=hit)
    np.equal(taps[0][1], y, out=hit)
    np.copyto(argmax, 0, where=hit)
    cache = PoolCache(geometry, (n, c, h, w), (out_h, out_w), argmax=argmax, dtype=x.dtype)
    return y.transpose(0, 3, 1, 2), cache


def max_pool2d_backward(dy, cache: PoolCache):
    """``dy (N, C, Ho, Wo)`` -> ``dx (N, C, H, W)``; each gradient goes to its window's argmax."""
    dy_nhwc = _check_dy(dy, cache, "max_pool2d")
    kh, kw = cache.geometry.kernel
    zero = np.zeros((), dtype=cache.dtype)

    def parts():
        for k in range(kh * kw):
            yield k, np.where(cache.argmax == k, dy_nhwc, zero)

    out_h, out_w = cache.out_size
    return _scatter(parts(), cache.geometry, cache.input_shape, out_h, out_w, cache.dtype)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Average pooling. ``x (N, C, H, W)`` -> ``y (N, C, Ho, Wo)``.

    ``count_include_pad`` as in PyTorch: whether padded zeros count in the divisor.
    """
    geometry = pool_geometry(kernel_size, stride, padding, owner="avg_pool2d")
    return avg_pool2d_forward_geom(x, geometry, count_include_pad)


def avg_pool2d_forward_geom(x, geometry: WindowGeometry, count_include_pad=True,
                            owner="avg_pool2d"):
    x = np.asarray(x)
    _check_input(x, owner)
    n, c, h, w = x.shape
    out_h, out_w = geometry.checked_output_size(h, w, owner=owner)
    kh, kw = geometry.kernel
    y = np.zeros((n, out_h, out_w, c), dtype=x.dtype)
    for _, view in _taps(x.transpose(0, 2, 3, 1), geometry, out_h, out_w, 0.0):
        y += view
    if count_include_pad or geometry.padding == (0, 0, 0, 0):
        divisor = np.asarray(kh * kw, dtype=x.dtype)
    else:
        # Count the real (unpadded) input elements under every window.
        ones = np.ones((1, h, w, 1), dtype=x.dtype)
        counts = np.zeros((1, out_h, out_w, 1), dtype=x.dtype)
        for _, view in _taps(ones, geometry, out_h, out_w, 0.0):
            counts += view
        divisor = counts
    y /= divisor
    cache = PoolCache(geometry, (n, c, h, w), (out_h, out_w), divisor=divisor, dtype=x.dtype)
    return y.transpose(0, 3, 1, 2), cache


def avg_pool2d_backward(dy, cache: PoolCache):
    """``dy (N, C, Ho, Wo)`` -> ``dx (N, C, H, W)``; each window shares its gradient evenly."""
    dy_nhwc = _check_dy(dy, cache, "avg_pool2d")
    share = dy_nhwc / cache.divisor
    kh, kw = cache.geometry.kernel
    out_h, out_w = cache.out_size
    parts = ((k, share) for k in range(kh * kw))
    return _scatter(parts, cache.geometry, cache.input_shape, out_h, out_w, cache.dtype)


def _check_dy(dy, cache: PoolCache, owner):
    n, c, _, _ = cache.input_shape
    expected = (n, c) + tuple(cache.out_size)
    if dy.shape != expected:
        raise ValueError(f"{owner} backward: expected dy of shape {expected}, got {dy.shape}")
    return np.asarray(dy, dtype=cache.dtype).transpose(0, 2, 3, 1)


def global_avg_pool2d_forward(x):
    """Mean over H and W: ``x (N, C, H, W)`` -> ``y (N, C, 1, 1)``."""
    x = np.asarray(x)
    _check_input(x, "global_avg_pool2d")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"global_avg_pool2d: expected a non-empty image, got shape {x.shape}")
    y = x.mean(axis=(2, 3), keepdims=True, dtype=x.dtype)
    return y, (x.shape, x.dtype)


def global_avg_pool2d_backward(dy, cache):
    """``dy (N, C, 1, 1)`` -> ``dx (N, C, H, W)``, every element getting ``dy / (H*W)``."""
    shape, dtype = cache
    n, c, h, w = shape
    if dy.shape != (n, c, 1, 1):
        raise ValueError(
            f"global_avg_pool2d backward: expected dy of shape {(n, c, 1, 1)}, got {dy.shape}"
        )
    scale = np.asarray(1.0 / (h * w), dtype=dtype)
    return np.broadcast_to(np.asarray(dy, dtype=dtype) * scale, shape).copy()
