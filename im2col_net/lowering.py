"""Lowering: padding, window views, im2col and col2im, all in channels-last layout.

Every array here is NHWC, ``(N, H, W, C)``: the channel axis is innermost, so a
window copy moves runs of ``C`` contiguous numbers and a GEMM on the column matrix
produces the output directly in NHWC with no transpose. The public layers speak NCHW;
they pass ``x.transpose(0, 2, 3, 1)`` views in and hand NCHW views of the NHWC
results back, so the layout change costs nothing where it can be folded into a copy
that is needed anyway (padding, im2col).

Column matrices are group-major: ``cols[g, m, k]`` with ``m`` running over
``(n, oh, ow)`` and ``k`` over ``(i, j, c)`` (kernel row, kernel column, channel of
group ``g``). col2im is the adjoint of im2col: it scatter-adds columns back with one
slice addition per kernel offset.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .geometry import PADDING_MODES, WindowGeometry

__all__ = [
    "pad",
    "pad_grad",
    "offset_slices",
    "window_view",
    "im2col",
    "col2im",
]


def check_padding_mode(mode: str, padding, height: int, width: int, *, owner: str = "") -> None:
    """Raise ``ValueError`` for an unknown mode or a reflect pad wider than the input."""
    where = f"{owner}: " if owner else ""
    if mode not in PADDING_MODES:
        raise ValueError(f"{where}padding_mode must be one of {PADDING_MODES}, got {mode!r}")
    top, bottom, left, right = padding
    if mode == "edge" and ((height == 0 and (top or bottom)) or (width == 0 and (left or right))):
        raise ValueError(
            f"{where}edge padding {padding} needs a non-empty input, got {height}x{width}"
        )
    if mode == "reflect":
        if max(top, bottom) >= height or max(left, right) >= width:
            raise ValueError(
                f"{where}reflect padding {padding} must be smaller than the input "
                f"{height}x{width} in each direction"
            )


def pad(x: np.ndarray, padding: tuple[int, int, int, int], mode: str = "zeros",
        fill: float = 0.0) -> np.ndarray:
    """Pad the two spatial axes of an NHWC array; returns a new C-contiguous array.

    ``mode``: ``"zeros"`` (``fill``, normally 0), ``"edge"`` (repeat the border element)
    or ``"reflect"`` (mirror without repeating the border, as ``torch``'s ``reflect``).
    The result always has ``x.dtype``; ``x`` may have any strides.
    """
    top, bottom, left, right = padding
    n, h, w, c = x.shape
    if mode == "zeros":
        out = np.empty((n, h + top + bottom, w + left + right, c), dtype=x.dtype)
        if top or bottom or left or right:
            out[:, :top] = fill
            out[:, h + top:] = fill
            out[:, top:h + top, :left] = fill
            out[:, top:h + top, w + left:] = fill
        out[:, top:top + h, left:left + w] = x
        return out
    np_mode = {"edge": "edge", "reflect": "reflect"}[mode]
    # np.pad keeps the memory order of an F-ordered input; the contract here is C order.
    return np.ascontiguousarray(
        np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), mode=np_mode)
    )


def pad_grad(dxp: np.ndarray, padding: tuple[int, int, int, int], mode: str = "zeros") -> np.ndarray:
    """Adjoint of :func:`pad`: fold the gradient of the padded array back onto the input.

    For ``"zeros"`` the border is simply dropped (a view is returned); for ``"edge"``
    the border gradients accumulate into the first/last row and column; for
    ``"reflect"`` each padded row/column adds onto the interior row/column it mirrors.
    ``dxp`` may be modified in place.
    """
    top, bottom, left, right = padding
    hp, wp = dxp.shape[1], dxp.shape[2]
    h, w = hp - top - bottom, wp - left - right
    if mode == "zeros" or not (top or bottom or left or right):
        return dxp[:, top:top + h, left:left + w]
    # Fold along W first (over the padded height), then along H; padding is separable.
    _fold_axis(dxp, 2, left, right, mode)
    core_w = dxp[:, :, left:left + w]
    _fold_axis(core_w, 1, top, bottom, mode)
    return core_w[:, top:top + h]


def _fold_axis(a: np.ndarray, axis: int, before: int, after: int, mode: str) -> None:
    """Add the gradient in the padded bands of ``axis`` onto the rows they copied."""
    size = a.shape[axis] - before - after

    def take(start, stop, step=1):
        index = [slice(None)] * a.ndim
        index[axis] = slice(start, stop, step)
        return a[tuple(index)]

    if mode == "edge":
        if before:
            take(before, before + 1)[...] += take(0, before).sum(axis=axis, keepdims=True)
        if after:
            last = before + size - 1
            take(last, last + 1)[...] += take(before + size, None).sum(axis=axis, keepdims=True)
    elif mode == "reflect":
        # Padded index before - 1 - t mirrors interior index before + 1 + t.
        if before:
            take(before + before, before, -1)[...] += take(0, before)
        if after:
            last = before + size - 1
            # Padded index last + 1 + t mirrors interior index last - 1 - t.
            stop = last - 1 - after
            take(last - 1, stop if stop >= 0 else None, -1)[...] += take(last + 1, last + 1 + after)
    else:  # pragma: no cover - validated by callers
        raise ValueError(f"unknown padding mode {mode!r}")


def offset_slices(geometry: WindowGeometry, out_h: int, out_w: int):
    """Yield ``(i, j, index)`` for every kernel offset, row-major.

    ``xp[index]`` (``xp`` padded NHWC) is the ``(N, Ho, Wo, C)`` strided view of the
    input elements that kernel tap ``(i, j)`` sees at every output position.
    """
    kh, kw = geometry.kernel
    sh, sw = geometry.stride
    dh, dw = geometry.dilation
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (out_h - 1) + 1, sh)
            cols = slice(j * dw, j * dw + sw * (out_w - 1) + 1, sw)
            yield i, j, (slice(None), rows, cols, slice(None))


def window_view(xp: np.ndarray, geometry: WindowGeometry, out_h: int, out_w: int) -> np.ndarray:
    """Zero-copy read-only view ``(N, Ho, Wo, kh, kw, C)`` of the windows of padded ``xp``."""
    n, _, _, c = xp.shape
    s_n, s_h, s_w, s_c = xp.strides
    sh, sw = geometry.stride
    dh, dw = geometry.dilation
    kh, kw = geometry.kernel
    return as_strided(
        xp,
        shape=(n, out_h, out_w, kh, kw, c),
        strides=(s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c),
        writeable=False,
    )


def im2col(xp: np.ndarray, geometry: WindowGeometry, out_h: int, out_w: int,
           groups: int = 1) -> np.ndarray:
    """Column matrix ``(G, N*Ho*Wo, kh*kw*C/G)`` of padded NHWC ``xp``, in ``xp.dtype``."""
    n, _, _, c = xp.shape
    kh, kw = geometry.kernel
    view = window_view(xp, geometry, out_h, out_w)
    if groups == 1:
        cols = np.empty((n, out_h, out_w, kh, kw, c), dtype=xp.dtype)
        np.copyto(cols, view)
        return cols.reshape(1, n * out_h * out_w, kh * kw * c)
    cg = c // groups
    grouped = view.reshape(n, out_h, out_w, kh, kw, groups, cg).transpose(5, 0, 1, 2, 3, 4, 6)
    cols = np.empty(grouped.shape, dtype=xp.dtype)
    np.copyto(cols, grouped)
    return cols.reshape(groups, n * out_h * out_w, kh * kw * cg)


def col2im(cols: np.ndarray, padded_shape: tuple[int, int, int, int],
           geometry: WindowGeometry, out_h: int, out_w: int) -> np.ndarray:
    """Adjoint of :func:`im2col`: scatter-add ``(G, M, K)`` columns into a padded NHWC array.

    One slice addition per kernel offset; overlapping windows accumulate.
    """
    n, hp, wp, c = padded_shape
    groups = cols.shape[0]
    kh, kw = geometry.kernel
    cg = c // groups
    # (G, N, Ho, Wo, kh, kw, Cg) -> per offset a (N, Ho, Wo, C) block in NHWC order.
    blocks = cols.reshape(groups, n, out_h, out_w, kh, kw, cg)
    dxp = np.zeros(padded_shape, dtype=cols.dtype)
    for i, j, index in offset_slices(geometry, out_h, out_w):
        target = dxp[index]
        if groups == 1:
            target += blocks[0, :, :, :, i, j, :]
        else:
            target += blocks[:, :, :, :, i, j, :].transpose(1, 2, 3, 0, 4).reshape(
                n, out_h, out_w, c
            )
    return dxp
