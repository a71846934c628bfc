"""Max, average and global average pooling: forward ``(y, cache)``, backward ``dx``.

Windows are read per kernel offset: when they tile the input exactly (kernel ==
stride, no padding) the offsets come from a plain reshape ``(N, Ho, kh, Wo, kw, C)``;
otherwise from strided slices of the padded input (a window view). Arrays are NCHW at
the interface, NHWC inside.

Max pooling keeps, for every output, the kernel offset of the first maximum in its
window (row-major order, as PyTorch; a window holding NaN keeps its last NaN, as
PyTorch's kernels do) and routes the whole gradient there. Padded positions hold
``-inf`` and never win. Average pooling spreads the gradient evenly; with
``count_include_pad=True`` (PyTorch's default) padded zeros count in the divisor.

``ceil_mode`` (PyTorch's rule, :func:`im2col_net.geometry.pool_output_size`) is run as
floor mode on a geometry whose bottom/right padding is extended by the overhang of the
last window (:func:`call_geometry`); the overhang holds ``-inf`` / 0 like the padding,
but average pooling's divisor never counts it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import WindowGeometry, as_pair, ceil_overhang
from ..lowering import offset_slices, pad
from ..runtime import block_bounds, block_count, run_blocks, scratch, worker_count, zeros

# Target input bytes per block of images (see :mod:`im2col_net.runtime`), and the
# fewest blocks a batch is cut into: pooling is a dozen short ufunc calls per block,
# so blocks are kept large; many small ones cost more in calls and in the GIL
# hand-over between threads than they gain in cache.
BLOCK_BYTES = 4 << 20
MIN_BLOCKS = 4
# A call on at most this many input bytes runs on the calling thread alone: below it,
# waking a second thread costs more than it saves (docs/performance.md).
SERIAL_BYTES = 2 << 20

__all__ = [
    "PoolCache",
    "pool_geometry",
    "call_geometry",
    "max_pool2d_indices",
    "avg_pool_divisor",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "relu_max_pool2d_forward_geom",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "global_avg_pool2d_backward",
]


@dataclass
class PoolCache:
    """What the pooling backward needs: geometry, shapes, and for max pooling the index
    of each window's maximum, for average pooling the divisor of each output."""

    geometry: WindowGeometry
    input_shape: tuple[int, int, int, int]
    out_size: tuple[int, int]
    argmax: np.ndarray | None = None       # (N, Ho, Wo, C) kernel-offset index, max pooling
    divisor: np.ndarray | float = 1.0      # average pooling
    dtype: np.dtype | None = None


def pool_geometry(kernel_size, stride=None, padding=0, dilation=1, *,
                  owner="pool2d") -> WindowGeometry:
    """Validate torch-style pooling arguments; ``stride=None`` means ``kernel_size``.

    ``padding`` is an int, a 1-tuple (as torch accepts) or a pair, at most half the
    kernel (torch's check uses the undilated kernel size)."""
    kernel = as_pair(kernel_size, "kernel_size", owner=owner)
    stride = kernel if stride is None else as_pair(stride, "stride", owner=owner)
    if isinstance(padding, (tuple, list)) and len(padding) == 1:
        padding = padding[0]
    ph, pw = as_pair(padding, "padding", minimum=0, owner=owner)
    dilation = as_pair(dilation, "dilation", owner=owner)
    if 2 * ph > kernel[0] or 2 * pw > kernel[1]:
        raise ValueError(
            f"{owner}: padding must be at most half the kernel size, got padding {(ph, pw)} "
            f"for kernel {kernel}"
        )
    return WindowGeometry(kernel, stride, (ph, ph, pw, pw), dilation)


def call_geometry(geometry: WindowGeometry, ceil_mode: bool, h: int, w: int) -> WindowGeometry:
    """The floor-mode geometry for one input size: in ceil mode the bottom/right padding
    grows by the last window's overhang (unchanged in floor mode)."""
    if not ceil_mode:
        return geometry
    top, bottom, left, right = geometry.padding
    (kh, kw), (sh, sw), (dh, dw) = geometry.kernel, geometry.stride, geometry.dilation
    extra_h = ceil_overhang(h, kh, sh, top, bottom, dh, True)
    extra_w = ceil_overhang(w, kw, sw, left, right, dw, True)
    if not (extra_h or extra_w):
        return geometry
    return WindowGeometry(geometry.kernel, geometry.stride,
                          (top, bottom + extra_h, left, right + extra_w), geometry.dilation)


def _check_input(x, owner):
    if x.ndim != 4:
        raise ValueError(f"{owner}: expected a 4-D input (N, C, H, W), got shape {x.shape}")
    if x.dtype.kind != "f":
        raise ValueError(f"{owner}: expected a floating-point input, got dtype {x.dtype}")


def _taps(x_nhwc, geometry: WindowGeometry, out_h, out_w, fill):
    """``(k, view)`` for every kernel offset ``k = i*kw + j``; ``view`` is ``(N, Ho, Wo, C)``."""
    kw = geometry.kernel[1]
    if geometry.tiles_exactly:
        yield from enumerate(_tile_views(x_nhwc, geometry, out_h, out_w))
        return
    xp = pad(x_nhwc, geometry.padding, "zeros", fill=fill)
    for i, j, index in offset_slices(geometry, out_h, out_w):
        yield i * kw + j, xp[index]


def _tile_views(a, geometry, out_h, out_w):
    """Per offset, the ``(N, Ho, Wo, C)`` view of NHWC ``a`` when windows tile it."""
    kh, kw = geometry.kernel
    n, _, _, c = a.shape
    tiles = a[:, : out_h * kh, : out_w * kw].reshape(n, out_h, kh, out_w, kw, c)
    return [tiles[:, :, i, :, j, :] for i in range(kh) for j in range(kw)]


def _blocks(n, image_bytes):
    """Image ranges for a pooling call, about :data:`BLOCK_BYTES` of input each; a batch
    of at most :data:`SERIAL_BYTES` runs on the calling thread alone."""
    workers = worker_count() if n * image_bytes > SERIAL_BYTES else 1
    count = block_count(n, image_bytes, BLOCK_BYTES, MIN_BLOCKS)
    return count, workers, (lambda b: block_bounds(b, n, count))


def _scatter_block(parts, geometry: WindowGeometry, dx_b, out_h, out_w):
    """Write per-offset ``(n, Ho, Wo, C)`` gradients into the NHWC block ``dx_b``.

    Disjoint tiling windows are written straight into their tiles; otherwise they are
    added into a zero-padded copy whose border is then dropped.
    """
    n, h, w, c = dx_b.shape
    kh, kw = geometry.kernel
    if geometry.tiles_exactly:
        # Rows/columns past the last whole window get no gradient.
        dx_b[:, out_h * kh:] = 0
        dx_b[:, :, out_w * kw:] = 0
        views = _tile_views(dx_b, geometry, out_h, out_w)
        for k, write in parts:
            write(views[k])
        return
    hp, wp = geometry.padded_size(h, w)
    dxp = scratch("pool.dxp", (n, hp, wp, c), dx_b.dtype)
    dxp[...] = 0
    index_of = {i * kw + j: index for i, j, index in offset_slices(geometry, out_h, out_w)}
    part = scratch("pool.part", (n, out_h, out_w, c), dx_b.dtype)
    for k, write in parts:
        write(part)
        dxp[index_of[k]] += part
    top, _, left, _ = geometry.padding
    np.copyto(dx_b, dxp[:, top:top + h, left:left + w])


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max pooling. ``x (N, C, H, W)`` -> ``y (N, C, Ho, Wo)``, cache with the argmax
    (:func:`max_pool2d_indices` turns it into PyTorch's ``return_indices``)."""
    geometry = pool_geometry(kernel_size, stride, padding, dilation, owner="max_pool2d")
    return max_pool2d_forward_geom(x, geometry, ceil_mode=ceil_mode)


def max_pool2d_forward_geom(x, geometry: WindowGeometry, owner="max_pool2d", *,
                            ceil_mode=False, for_backward=True):
    """:func:`max_pool2d_forward` with a prepared geometry (used by layers).

    ``x (N, C, H, W)`` -> ``y (N, C, Ho, Wo)`` in ``x``'s dtype, and a :class:`PoolCache`.
    ``for_backward=False``: the cache holds no argmax (the same ``y``, less work), and
    neither :func:`max_pool2d_backward` nor :func:`max_pool2d_indices` accepts it.
    """
    y, cache, _ = _max_pool_forward(x, geometry, owner, ceil_mode, relu=False,
                                    for_backward=for_backward)
    return y, cache


def _max_pool_forward(x, geometry: WindowGeometry, owner, ceil_mode, relu, for_backward):
    """Max pooling, with ``relu`` also the ReLU of the pooled output in the same pass
    over each block: ``(y, cache, positive or None)``; without ``for_backward`` no
    argmax (``cache.argmax`` is None) and no ``positive``."""
    x = np.asarray(x)
    _check_input(x, owner)
    n, c, h, w = x.shape
    geometry = call_geometry(geometry, ceil_mode, h, w)
    out_h, out_w = geometry.checked_output_size(h, w, owner=owner)
    x_nhwc = x.transpose(0, 2, 3, 1)
    kh, kw = geometry.kernel
    y = np.empty((n, out_h, out_w, c), dtype=x.dtype)
    index_dtype = np.uint8 if kh * kw <= 256 else np.int32
    argmax = np.empty(y.shape, dtype=index_dtype) if for_backward else None
    positive = np.empty(y.shape, dtype=bool) if relu and for_backward else None
    count, workers, bounds = _blocks(n, h * w * c * x.dtype.itemsize)

    def task(block, _):
        start, stop = bounds(block)
        taps = list(_taps(x_nhwc[start:stop], geometry, out_h, out_w, -np.inf))
        y_b = y[start:stop]
        # A copy, then in-place maxima: faster than a maximum of two strided views.
        np.copyto(y_b, taps[0][1])
        for _, view in taps[1:]:
            np.maximum(y_b, view, out=y_b)
        if not for_backward:
            if relu:
                np.maximum(y_b, zeros(y_b.shape, y_b.dtype), out=y_b)
            return
        argmax_b = argmax[start:stop]
        _first_max_index(taps, y_b, argmax_b)
        # np.maximum propagates NaN, so one reduction tells whether any window has one.
        if y_b.size and np.isnan(np.min(y_b)):
            # rare: point NaN windows at their last NaN, as PyTorch does
            nan = np.isnan(y_b)
            for k, view in taps:
                argmax_b[nan & np.isnan(view)] = k
        if relu:
            positive_b = positive[start:stop]
            np.greater(y_b, 0, out=positive_b)
            argmax_b *= positive_b
            np.maximum(y_b, zeros(y_b.shape, y_b.dtype), out=y_b)

    run_blocks(task, count, workers)
    cache = PoolCache(geometry, (n, c, h, w), (out_h, out_w), argmax=argmax, dtype=x.dtype)
    return (y.transpose(0, 3, 1, 2), cache,
            None if positive is None else positive.transpose(0, 3, 1, 2))


def max_pool2d_indices(cache: PoolCache) -> np.ndarray:
    """PyTorch's ``return_indices``: int64 ``(N, C, Ho, Wo)``, for every output the flat
    position ``h * W + w`` of its maximum in the unpadded ``(H, W)`` plane."""
    _require_argmax(cache, "max_pool2d_indices")
    (_, kw), (sh, sw), (dh, dw) = (cache.geometry.kernel, cache.geometry.stride,
                                    cache.geometry.dilation)
    top, _, left, _ = cache.geometry.padding
    width = cache.input_shape[3]
    out_h, out_w = cache.out_size
    k = cache.argmax.transpose(0, 3, 1, 2).astype(np.int64)
    rows = (np.arange(out_h, dtype=np.int64) * sh - top)[:, None]
    cols = np.arange(out_w, dtype=np.int64) * sw - left
    return (rows + (k // kw) * dh) * width + cols + (k % kw) * dw


def _require_argmax(cache: PoolCache, owner):
    if cache.argmax is None:
        raise RuntimeError(f"{owner}: this max-pool forward kept no argmax (it ran with "
                           f"for_backward=False, e.g. under no_grad()); run the forward "
                           f"again outside no_grad() first")


def _first_max_index(taps, y_b, argmax_b):
    """``argmax_b`` = offset of the first (row-major) tap equal to the maximum ``y_b``.

    Horner form ``d0 * (1 + d1 * (1 + ... d[K-2]))`` with ``dk = (tap k != max)``: pure
    integer arithmetic, much cheaper than masked assignments. A window whose maximum is
    NaN equals no tap and gets the last offset.
    """
    if len(taps) == 1:
        argmax_b[...] = 0
        return
    differs = scratch("pool.differs", y_b.shape, argmax_b.dtype)
    np.not_equal(taps[-2][1], y_b, out=argmax_b)
    for _, view in reversed(taps[:-2]):
        argmax_b += 1
        np.not_equal(view, y_b, out=differs)
        argmax_b *= differs


def relu_max_pool2d_forward_geom(x, geometry: WindowGeometry, owner="max_pool2d",
                                 for_backward=True):
    """``max_pool2d(relu(x))`` computed as ``relu(max_pool2d(x))`` (they commute), so
    the ReLU runs on the pooled, ``kh*kw`` times smaller array.

    Only for windows that tile the input (``geometry.tiles_exactly``). Returns ``y (N, C,
    Ho, Wo)``, the :class:`PoolCache` that :func:`max_pool2d_forward_geom` would give
    for ``relu(x)`` (windows whose maximum is not positive point at offset 0, the first
    of their tied zeros), and ``positive (N, C, Ho, Wo)`` bool, where ``y > 0``: the
    ReLU's backward mask at the pooled size. ``for_backward=False``: the same ``y``, a
    cache without argmax and ``positive`` None (see :func:`max_pool2d_forward_geom`).
    """
    x = np.asarray(x)
    _check_input(x, owner)
    if not geometry.tiles_exactly:
        raise ValueError(f"{owner}: the fused ReLU path needs tiling windows, got {geometry}")
    return _max_pool_forward(x, geometry, owner, False, relu=True, for_backward=for_backward)


def max_pool2d_backward(dy, cache: PoolCache, mask=None):
    """``dy (N, C, Ho, Wo)`` -> ``dx (N, C, H, W)``; each gradient goes to its window's
    argmax. ``mask`` (bool, ``dy``'s shape): only where it is True (the fused ReLU's
    backward, applied in the same pass)."""
    _require_argmax(cache, "max_pool2d_backward")
    dy_nhwc = _check_dy(dy, cache, "max_pool2d")
    mask_nhwc = None if mask is None else np.asarray(mask).transpose(0, 2, 3, 1)
    kh, kw = cache.geometry.kernel
    n, c, h, w = cache.input_shape
    out_h, out_w = cache.out_size
    dx = np.empty((n, h, w, c), dtype=cache.dtype)
    count, workers, bounds = _blocks(n, h * w * c * dx.itemsize)
    tiles = cache.geometry.tiles_exactly
    # Window offset k = i*kw + j at its place in a (Ho, kh, Wo, kw) tiling.
    offsets = np.arange(kh * kw, dtype=cache.argmax.dtype).reshape(1, 1, kh, 1, kw, 1)

    def task(block, _):
        start, stop = bounds(block)
        dy_b, argmax_b = dy_nhwc[start:stop], cache.argmax[start:stop]
        if mask_nhwc is not None:
            dy_b = np.multiply(dy_b, mask_nhwc[start:stop],
                               out=scratch("pool.masked", dy_b.shape, dx.dtype))
        if tiles:
            # Disjoint windows: every tile of dx in two broadcast passes.
            dx_b = dx[start:stop]
            dx_b[:, out_h * kh:] = 0
            dx_b[:, :, out_w * kw:] = 0
            shape = (stop - start, out_h, kh, out_w, kw, c)
            hit = scratch("pool.hits", shape, bool)
            np.equal(argmax_b[:, :, None, :, None, :], offsets, out=hit)
            np.multiply(dy_b[:, :, None, :, None, :], hit,
                        out=dx_b[:, :out_h * kh, :out_w * kw].reshape(shape))
            return
        hit = scratch("pool.hit", argmax_b.shape, bool)

        def writer(k):
            def write(target):
                np.equal(argmax_b, k, out=hit)
                np.multiply(dy_b, hit, out=target)
            return k, write

        parts = (writer(k) for k in range(kh * kw))
        _scatter_block(parts, cache.geometry, dx[start:stop], out_h, out_w)

    run_blocks(task, count, workers)
    return dx.transpose(0, 3, 1, 2)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                       count_include_pad=True, divisor_override=None):
    """Average pooling. ``x (N, C, H, W)`` -> ``y (N, C, Ho, Wo)``; arguments in
    PyTorch's order.

    ``count_include_pad`` as in PyTorch: whether padded zeros count in the divisor;
    ``divisor_override``: a nonzero int dividing every window sum instead.
    """
    geometry = pool_geometry(kernel_size, stride, padding, owner="avg_pool2d")
    return avg_pool2d_forward_geom(x, geometry, count_include_pad, ceil_mode=ceil_mode,
                                   divisor_override=divisor_override)


def _axis_counts(size, out, kernel, stride, pad, include_pad):
    """Per output index along one axis, how many positions the divisor counts."""
    start = np.arange(out) * stride - pad
    end = np.minimum(start + kernel, size + pad)  # clipped at the padded border
    if not include_pad:
        start, end = np.maximum(start, 0), np.minimum(end, size)
    return end - start


def avg_pool_divisor(geometry: WindowGeometry, h, w, out_h, out_w, count_include_pad,
                     divisor_override, dtype):
    """The divisor of every window, ``(1, Ho, Wo, 1)`` (or a 0-d array), PyTorch's rule.

    Windows are clipped at the padded border (so the ceil-mode overhang is never
    counted) and, without ``count_include_pad``, at the input. PyTorch's docs describe
    the ceil-mode divisor loosely; this follows its kernels (``avg_pool2d`` CPU), which
    is what it computes.
    """
    if divisor_override is not None:
        return np.asarray(divisor_override, dtype=dtype)
    (kh, kw), (sh, sw) = geometry.kernel, geometry.stride
    top, _, left, _ = geometry.padding
    rows = _axis_counts(h, out_h, kh, sh, top, count_include_pad)
    cols = _axis_counts(w, out_w, kw, sw, left, count_include_pad)
    if (rows == kh).all() and (cols == kw).all():
        return np.asarray(kh * kw, dtype=dtype)
    return np.multiply.outer(rows, cols).astype(dtype)[None, :, :, None]


def avg_pool2d_forward_geom(x, geometry: WindowGeometry, count_include_pad=True,
                            owner="avg_pool2d", *, ceil_mode=False, divisor_override=None):
    """:func:`avg_pool2d_forward` with a prepared geometry (used by layers).

    ``x (N, C, H, W)`` -> ``y (N, C, Ho, Wo)`` in ``x``'s dtype, and a :class:`PoolCache`.
    """
    x = np.asarray(x)
    _check_input(x, owner)
    n, c, h, w = x.shape
    # The divisor uses the layer's padding; only the windows come from the ceil geometry.
    layer_geometry = geometry
    geometry = call_geometry(geometry, ceil_mode, h, w)
    out_h, out_w = geometry.checked_output_size(h, w, owner=owner)
    divisor = avg_pool_divisor(layer_geometry, h, w, out_h, out_w, count_include_pad,
                               divisor_override, x.dtype)
    x_nhwc = x.transpose(0, 2, 3, 1)
    y = np.empty((n, out_h, out_w, c), dtype=x.dtype)
    count, workers, bounds = _blocks(n, h * w * c * x.dtype.itemsize)

    def task(block, _):
        start, stop = bounds(block)
        y_b = y[start:stop]
        taps = _taps(x_nhwc[start:stop], geometry, out_h, out_w, 0.0)
        np.copyto(y_b, next(taps)[1])
        for _, view in taps:
            y_b += view
        y_b /= divisor

    run_blocks(task, count, workers)
    cache = PoolCache(geometry, (n, c, h, w), (out_h, out_w), divisor=divisor, dtype=x.dtype)
    return y.transpose(0, 3, 1, 2), cache


def avg_pool2d_backward(dy, cache: PoolCache):
    """``dy (N, C, Ho, Wo)`` -> ``dx (N, C, H, W)``; each window shares its gradient evenly."""
    dy_nhwc = _check_dy(dy, cache, "avg_pool2d")
    kh, kw = cache.geometry.kernel
    n, c, h, w = cache.input_shape
    out_h, out_w = cache.out_size
    dx = np.empty((n, h, w, c), dtype=cache.dtype)
    count, workers, bounds = _blocks(n, h * w * c * dx.itemsize)

    def task(block, _):
        start, stop = bounds(block)
        dy_b = dy_nhwc[start:stop]
        share = scratch("pool.share", dy_b.shape, cache.dtype)
        np.divide(dy_b, cache.divisor, out=share)

        def write(target):
            np.copyto(target, share)

        parts = ((k, write) for k in range(kh * kw))
        _scatter_block(parts, cache.geometry, dx[start:stop], out_h, out_w)

    run_blocks(task, count, workers)
    return dx.transpose(0, 3, 1, 2)


def _check_dy(dy, cache: PoolCache, owner):
    n, c, _, _ = cache.input_shape
    expected = (n, c) + tuple(cache.out_size)
    dy = np.asarray(dy)
    if dy.shape != expected:
        raise ValueError(f"{owner} backward: expected dy of shape {expected}, got {dy.shape}")
    if dy.dtype.kind != "f":  # a complex dy would lose its imaginary part in the cast
        raise ValueError(f"{owner} backward: expected a real floating-point dy, got dtype "
                         f"{dy.dtype}")
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
