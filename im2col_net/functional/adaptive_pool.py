"""Adaptive average / max pooling and max unpooling: forward ``(y, cache)``, backward ``dx``.

Adaptive windows follow PyTorch: along an axis of length ``H`` pooled to ``Ho`` cells,
cell ``i`` covers ``floor(i*H/Ho) <= h < ceil((i+1)*H/Ho)``. Both pools are separable
(a sum / max over a rectangle is one over its rows of one over its columns), so each
runs as two 1-D passes. A 1-D pass loops over the tap offset ``t`` below the longest
window (``ceil(H/Ho) + 1`` at most) and gathers tap ``t`` of every cell at once with
``np.take``; taps beyond a cell's own length are masked with ``np.where`` (not multiplied
by 0, so a NaN stays in the windows that hold it). The backward passes are the same
gathers transposed: every input position collects from the cells whose windows contain
it, a contiguous range of at most ``ceil(Ho/H) + 1`` cells, so no scatter-add is needed.
Batches are cut into blocks of whole images that run on the engine's threads
(:mod:`im2col_net.runtime`), as the other pooling ops.

Max unpooling writes every input at its flat index (``np.put_along_axis``); its
backward reads the gradient back at the same indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import adaptive_output_size, adaptive_windows
from ..runtime import block_bounds, block_count, run_blocks, worker_count

# Target input bytes per block of images (see :mod:`im2col_net.runtime`).
BLOCK_BYTES = 1 << 20

__all__ = [
    "AdaptiveCache",
    "adaptive_avg_pool2d_forward",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d_forward",
    "adaptive_max_pool2d_backward",
    "max_unpool2d_forward",
    "max_unpool2d_backward",
]


@dataclass
class AdaptiveCache:
    """Input shape and dtype, output size, and for max pooling the flat argmax indices."""

    input_shape: tuple[int, int, int, int]
    out_size: tuple[int, int]
    dtype: np.dtype
    indices: np.ndarray | None = None   # (N, C, Ho, Wo) int64, h * W + w


def _check_input(x, owner):
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{owner}: expected a 4-D input (N, C, H, W), got shape {x.shape}")
    if x.dtype.kind != "f":
        raise ValueError(f"{owner}: expected a floating-point input, got dtype {x.dtype}")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{owner}: expected a non-empty image, got shape {x.shape}")
    return x


def _per_block(n, image_bytes, task):
    """Run ``task(start, stop)`` over blocks of whole images on the engine's threads."""
    count = block_count(n, image_bytes, BLOCK_BYTES)
    run_blocks(lambda block, _: task(*block_bounds(block, n, count)), count, worker_count())


def _along(axis_len, ndim, axis):
    """Reshape helper: a 1-D array of ``axis_len`` broadcast along ``axis`` of ``ndim``."""
    shape = [1] * ndim
    shape[axis] = axis_len
    return tuple(shape)


def _window_sum(a, axis, size, out):
    """Sum over each adaptive window along ``axis`` (length ``size`` -> ``out``)."""
    start, length = adaptive_windows(size, out)
    mask_shape = _along(out, a.ndim, axis)
    total = np.take(a, start, axis=axis)  # every window has at least one element
    for t in range(1, int(length.max())):
        tap = np.take(a, np.minimum(start + t, size - 1), axis=axis)
        total += np.where((t < length).reshape(mask_shape), tap, 0)
    return total


def _window_sum_adjoint(g, axis, size, out):
    """Transpose of :func:`_window_sum`: position ``p`` sums ``g`` over its cells."""
    start, length = adaptive_windows(size, out)
    first, count = _cells_of_positions(start, length, size)
    mask_shape = _along(size, g.ndim, axis)
    total = np.take(g, first, axis=axis)
    for u in range(1, int(count.max())):
        tap = np.take(g, np.minimum(first + u, out - 1), axis=axis)
        total += np.where((u < count).reshape(mask_shape), tap, 0)
    return total


def _cells_of_positions(start, length, size):
    """For every input position, the first cell containing it and how many do."""
    positions = np.arange(size)
    first = np.searchsorted(start + length, positions, side="right")
    stop = np.searchsorted(start, positions, side="right")
    return first, stop - first


def adaptive_avg_pool2d_forward(x, output_size, owner="adaptive_avg_pool2d"):
    """``x (N, C, H, W)`` -> ``y (N, C, Ho, Wo)``: the mean of every adaptive window.

    ``output_size``: an int, a pair, with ``None`` keeping that input size (as torch).
    """
    x = _check_input(x, owner)
    n, c, h, w = x.shape
    out_h, out_w = adaptive_output_size(output_size, h, w, owner=owner)
    _, len_h = adaptive_windows(h, out_h)
    _, len_w = adaptive_windows(w, out_w)
    divisor = np.multiply.outer(len_h, len_w).astype(x.dtype)
    y = np.empty((n, c, out_h, out_w), dtype=x.dtype)

    def task(start, stop):
        np.divide(_window_sum(_window_sum(x[start:stop], 3, w, out_w), 2, h, out_h), divisor,
                  out=y[start:stop])

    _per_block(n, x[:1].nbytes, task)
    return y, AdaptiveCache((n, c, h, w), (out_h, out_w), x.dtype)


def adaptive_avg_pool2d_backward(dy, cache: AdaptiveCache):
    """``dy (N, C, Ho, Wo)`` -> ``dx (N, C, H, W)``: each window shares its gradient evenly."""
    dy = _check_dy(dy, cache, "adaptive_avg_pool2d")
    _, _, h, w = cache.input_shape
    out_h, out_w = cache.out_size
    _, len_h = adaptive_windows(h, out_h)
    _, len_w = adaptive_windows(w, out_w)
    divisor = np.multiply.outer(len_h, len_w).astype(cache.dtype)
    dx = np.empty(cache.input_shape, dtype=cache.dtype)

    def task(start, stop):
        g = dy[start:stop] / divisor
        dx[start:stop] = _window_sum_adjoint(_window_sum_adjoint(g, 2, h, out_h), 3, w, out_w)

    _per_block(len(dx), dx[:1].nbytes, task)
    return dx


def _window_max(a, axis, size, out):
    """Max over each adaptive window along ``axis`` and the position of the first maximum
    (the last NaN when the window holds NaN, as PyTorch's kernel picks)."""
    start, length = adaptive_windows(size, out)
    shape = _along(out, a.ndim, axis)
    best = np.take(a, start, axis=axis)
    where = np.broadcast_to(start.reshape(shape), best.shape).copy()
    for t in range(1, int(length.max())):
        index = np.minimum(start + t, size - 1)
        tap = np.take(a, index, axis=axis)
        better = (tap > best) | np.isnan(tap)
        better &= (t < length).reshape(shape)
        np.copyto(best, tap, where=better)
        np.copyto(where, index.reshape(shape), where=better)
    return best, where


def adaptive_max_pool2d_forward(x, output_size, owner="adaptive_max_pool2d"):
    """``x (N, C, H, W)`` -> ``y (N, C, Ho, Wo)``, the maximum of every adaptive window;
    ``cache.indices`` holds PyTorch's ``return_indices`` (flat ``h * W + w``, int64)."""
    x = _check_input(x, owner)
    n, c, h, w = x.shape
    out_h, out_w = adaptive_output_size(output_size, h, w, owner=owner)
    y = np.empty((n, c, out_h, out_w), dtype=x.dtype)
    indices = np.empty((n, c, out_h, out_w), dtype=np.int64)

    def task(start, stop):
        col_max, col_at = _window_max(x[start:stop], 3, w, out_w)     # (n, C, H, Wo)
        y[start:stop], row_at = _window_max(col_max, 2, h, out_h)     # (n, C, Ho, Wo)
        indices[start:stop] = row_at * w + np.take_along_axis(col_at, row_at, axis=2)

    _per_block(n, x[:1].nbytes, task)
    return y, AdaptiveCache((n, c, h, w), (out_h, out_w), x.dtype, indices)


def adaptive_max_pool2d_backward(dy, cache: AdaptiveCache):
    """``dy (N, C, Ho, Wo)`` -> ``dx (N, C, H, W)``: each gradient goes to its argmax."""
    dy = _check_dy(dy, cache, "adaptive_max_pool2d")
    _, _, h, w = cache.input_shape
    out_h, out_w = cache.out_size
    first_h, count_h = _cells_of_positions(*adaptive_windows(h, out_h), h)
    first_w, count_w = _cells_of_positions(*adaptive_windows(w, out_w), w)
    own = np.arange(h)[:, None] * w + np.arange(w)
    dx = np.zeros(cache.input_shape, dtype=cache.dtype)

    def task(start, stop):
        dx_b, dy_b, at_b = dx[start:stop], dy[start:stop], cache.indices[start:stop]
        for u in range(int(count_h.max())):
            rows = np.minimum(first_h + u, out_h - 1)
            for v in range(int(count_w.max())):
                cols = np.minimum(first_w + v, out_w - 1)
                hit = at_b[:, :, rows][:, :, :, cols] == own
                hit &= (u < count_h)[:, None] & (v < count_w)
                dx_b += np.where(hit, dy_b[:, :, rows][:, :, :, cols], 0)

    _per_block(len(dx), dx[:1].nbytes, task)
    return dx


def _check_dy(dy, cache, owner):
    n, c, _, _ = cache.input_shape
    expected = (n, c) + tuple(cache.out_size)
    dy = np.asarray(dy)
    if dy.shape != expected:
        raise ValueError(f"{owner} backward: expected dy of shape {expected}, got {dy.shape}")
    if dy.dtype.kind != "f":
        raise ValueError(f"{owner} backward: expected a real floating-point dy, got dtype "
                         f"{dy.dtype}")
    return np.asarray(dy, dtype=cache.dtype)


def max_unpool2d_forward(x, indices, out_size, owner="max_unpool2d"):
    """``x (N, C, H, W)`` and its int ``indices`` (flat ``h * Wo + w`` per plane, as
    returned by max pooling) -> ``y (N, C, Ho, Wo)``: zeros except ``x`` at ``indices``.

    Where several inputs share an index the last (row-major) one is kept; PyTorch
    leaves that case undefined.
    """
    x = np.asarray(x)
    if x.ndim != 4 or x.dtype.kind != "f":
        raise ValueError(f"{owner}: expected a 4-D floating-point input (N, C, H, W), got "
                         f"shape {x.shape} dtype {x.dtype}")
    indices = np.asarray(indices)
    if indices.shape != x.shape or indices.dtype.kind not in "iu":
        raise ValueError(f"{owner}: expected integer indices of the input's shape {x.shape}, "
                         f"got shape {indices.shape} dtype {indices.dtype}")
    n, c = x.shape[:2]
    out_h, out_w = out_size
    flat = indices.reshape(n, c, -1).astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= out_h * out_w):
        raise ValueError(f"{owner}: indices must lie in [0, {out_h * out_w}) for the output "
                         f"size {(out_h, out_w)}, got values from {flat.min()} to {flat.max()}")
    y = np.zeros((n, c, out_h * out_w), dtype=x.dtype)
    np.put_along_axis(y, flat, x.reshape(n, c, -1), axis=2)
    return y.reshape(n, c, out_h, out_w), (x.shape, flat, (out_h, out_w), x.dtype)


def max_unpool2d_backward(dy, cache):
    """``dy (N, C, Ho, Wo)`` -> ``dx (N, C, H, W)``: the gradient read at the indices."""
    shape, flat, out_size, dtype = cache
    expected = tuple(shape[:2]) + tuple(out_size)
    dy = np.asarray(dy)
    if dy.shape != expected or dy.dtype.kind != "f":
        raise ValueError(f"max_unpool2d backward: expected a floating-point dy of shape "
                         f"{expected}, got shape {dy.shape} dtype {dy.dtype}")
    dy = np.asarray(dy, dtype=dtype).reshape(shape[0], shape[1], -1)
    return np.take_along_axis(dy, flat, axis=2).reshape(shape)
