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

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .geometry import PADDING_MODE_ALIASES, PADDING_MODES, WindowGeometry, canonical_padding_mode

__all__ = [
    "check_padding_mode",
    "pad",
    "pad_grad",
    "offset_slices",
    "window_view",
    "im2col",
    "col2im",
    "im2col_transposed",
    "im2col_transposed_work_size",
    "column_planes",
    "column_planes_shape",
    "plane_windows",
    "col2im_transposed",
    "im2row",
    "im2row_depth",
    "im2row_shape",
    "im2row_weights",
    "split_axes",
]


def check_padding_mode(mode: str, padding, height: int, width: int, *, owner: str = "") -> str:
    """The torch name of ``mode`` (``"edge"`` -> ``"replicate"``) after checking it and
    the padding against the input size as torch does; ``ValueError`` otherwise.

    ``reflect``: each pad smaller than the input along its axis; ``circular``: each pad
    at most the input size (one wrap, as ``torch.nn.functional.pad``); ``replicate``: a
    non-empty axis wherever it is padded.
    """
    where = f"{owner}: " if owner else ""
    mode = canonical_padding_mode(mode, owner=owner)
    top, bottom, left, right = padding
    if mode == "replicate" and ((height == 0 and (top or bottom))
                                or (width == 0 and (left or right))):
        raise ValueError(
            f"{where}replicate padding {padding} needs a non-empty input, got {height}x{width}"
        )
    if mode == "reflect":
        if max(top, bottom) >= height or max(left, right) >= width:
            raise ValueError(
                f"{where}reflect padding {padding} must be smaller than the input "
                f"{height}x{width} in each direction"
            )
    if mode == "circular":
        if max(top, bottom) > height or max(left, right) > width:
            raise ValueError(
                f"{where}circular padding {padding} must be at most the input size "
                f"{height}x{width} in each direction (it wraps around once, as in torch)"
            )
    return mode


def pad(x: np.ndarray, padding: tuple[int, int, int, int], mode: str = "zeros",
        fill: float = 0.0, *, out: np.ndarray | None = None,
        border_filled: bool = False) -> np.ndarray:
    """Pad the two spatial axes of an NHWC array; returns a new C-contiguous array.

    ``mode``: ``"zeros"`` (``fill``, normally 0), ``"replicate"`` (alias ``"edge"``:
    repeat the border element), ``"reflect"`` (mirror without repeating the border, as
    ``torch``'s ``reflect``) or ``"circular"`` (wrap around: the rows above the input
    are its last rows, as ``torch``'s ``circular``); the sizes must pass
    :func:`check_padding_mode`. The result always has ``x.dtype``; ``x`` may have any
    strides. ``out``: an array of the padded shape and ``x.dtype`` to write into instead
    (returned). ``border_filled=True`` (``"zeros"`` mode with ``out`` only): ``out``'s
    border already holds ``fill`` (say, from ``np.zeros``), so only the interior is copied.
    """
    top, bottom, left, right = padding
    n, h, w, c = x.shape
    if border_filled and mode != "zeros":
        raise ValueError(f"pad: border_filled applies to mode 'zeros' only, got {mode!r}")
    mode = PADDING_MODE_ALIASES.get(mode, mode)
    if mode not in PADDING_MODES:
        raise ValueError(f"pad: padding_mode must be one of {PADDING_MODES}, got {mode!r}")
    if out is None:
        border_filled = False
        out = np.empty((n, h + top + bottom, w + left + right, c), dtype=x.dtype)
    out[:, top:top + h, left:left + w] = x
    if not (top or bottom or left or right):
        return out
    if mode == "zeros":
        if not border_filled:
            out[:, :top] = fill
            out[:, h + top:] = fill
            out[:, top:h + top, :left] = fill
            out[:, top:h + top, w + left:] = fill
        return out
    # Separable: fill the left/right bands of the input rows, then the top/bottom bands
    # over the full padded width from the rows already written.
    _fill_axis(out[:, top:top + h], 2, left, right, mode)
    _fill_axis(out, 1, top, bottom, mode)
    return out


def _band(a: np.ndarray, axis: int, start, stop, step=1) -> np.ndarray:
    index = [slice(None)] * a.ndim
    index[axis] = slice(start, stop, step)
    return a[tuple(index)]


def _fill_axis(a: np.ndarray, axis: int, before: int, after: int, mode: str) -> None:
    """Write the padded bands of ``axis`` from the interior (``before`` + size + ``after``)."""
    size = a.shape[axis] - before - after
    last = before + size - 1
    if mode == "replicate":
        if before:
            _band(a, axis, 0, before)[...] = _band(a, axis, before, before + 1)
        if after:
            _band(a, axis, last + 1, None)[...] = _band(a, axis, last, last + 1)
    elif mode == "reflect":
        if before:
            # Padded index before - 1 - t copies interior index before + 1 + t.
            _band(a, axis, 0, before)[...] = _band(a, axis, before + before, before, -1)
        if after:
            stop = last - 1 - after
            _band(a, axis, last + 1, None)[...] = _band(a, axis, last - 1,
                                                        stop if stop >= 0 else None, -1)
    else:  # circular: padded index p copies interior index (p - before) mod size
        if before:
            _band(a, axis, 0, before)[...] = _band(a, axis, last + 1 - before, last + 1)
        if after:
            _band(a, axis, last + 1, None)[...] = _band(a, axis, before, before + after)


def pad_grad(dxp: np.ndarray, padding: tuple[int, int, int, int],
             mode: str = "zeros") -> np.ndarray:
    """Adjoint of :func:`pad`: fold the gradient of the padded array back onto the input.

    For ``"zeros"`` the border is simply dropped (a view is returned); for
    ``"replicate"`` (``"edge"``) the border gradients accumulate into the first/last row
    and column; for ``"reflect"`` each padded row/column adds onto the interior
    row/column it mirrors; for ``"circular"`` onto the row/column it wrapped from (the
    top band onto the last rows, and so on). ``dxp`` may be modified in place.
    """
    mode = PADDING_MODE_ALIASES.get(mode, mode)
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
        return _band(a, axis, start, stop, step)

    last = before + size - 1
    if mode == "replicate":
        if before:
            take(before, before + 1)[...] += take(0, before).sum(axis=axis, keepdims=True)
        if after:
            take(last, last + 1)[...] += take(before + size, None).sum(axis=axis, keepdims=True)
    elif mode == "reflect":
        # Padded index before - 1 - t mirrors interior index before + 1 + t.
        if before:
            take(before + before, before, -1)[...] += take(0, before)
        if after:
            # Padded index last + 1 + t mirrors interior index last - 1 - t.
            stop = last - 1 - after
            take(last - 1, stop if stop >= 0 else None, -1)[...] += take(last + 1, last + 1 + after)
    elif mode == "circular":
        # The before band came from the last rows, the after band from the first ones.
        if before:
            take(last + 1 - before, last + 1)[...] += take(0, before)
        if after:
            take(before, before + after)[...] += take(last + 1, last + 1 + after)
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


def split_axes(a: np.ndarray, splits) -> np.ndarray:
    """Writeable view of ``a`` with axis ``i`` split into the sizes ``splits[i]`` (C order
    within the axis), for any strides: unlike ``reshape`` it never silently copies."""
    shape, strides = [], []
    for sizes, size, stride in zip(splits, a.shape, a.strides, strict=True):
        sizes = tuple(sizes)
        if int(np.prod(sizes)) != size:
            raise ValueError(f"split_axes: cannot split an axis of {size} into {sizes}")
        inner, sub = stride, []
        for part in reversed(sizes):
            sub.append(inner)
            inner *= part
        shape += sizes
        strides += reversed(sub)
    return as_strided(a, shape=tuple(shape), strides=tuple(strides))


def im2col(xp: np.ndarray, geometry: WindowGeometry, out_h: int, out_w: int,
           groups: int = 1, *, out: np.ndarray | None = None) -> np.ndarray:
    """Column matrix ``(G, N*Ho*Wo, kh*kw*C/G)`` of padded NHWC ``xp``, in ``xp.dtype``.

    ``out``: an array of that shape and dtype to fill instead (returned); any strides,
    e.g. the first ``K`` columns of a wider buffer.
    """
    n, _, _, c = xp.shape
    kh, kw = geometry.kernel
    cg = c // groups
    shape = (groups, n * out_h * out_w, kh * kw * cg)
    if out is None:
        out = np.empty(shape, dtype=xp.dtype)
    view = window_view(xp, geometry, out_h, out_w)
    if groups == 1:
        # Kernel column and channel merge into one run of kw*C contiguous numbers when
        # the dilation is 1, so the copy moves long rows.
        target = split_axes(out[0], [(n, out_h, out_w), (kh, kw, c)])
        np.copyto(target, view)
        return out
    grouped = view.reshape(n, out_h, out_w, kh, kw, groups, cg).transpose(5, 0, 1, 2, 3, 4, 6)
    np.copyto(split_axes(out, [(groups,), (n, out_h, out_w), (kh, kw, cg)]), grouped)
    return out


def im2col_transposed(xp: np.ndarray, geometry: WindowGeometry, out_h: int, out_w: int, *,
                      out: np.ndarray | None = None,
                      work: np.ndarray | None = None) -> np.ndarray:
    """Transposed column matrix ``(kh*kw*C, N*Ho*Wo)`` of padded NHWC ``xp`` (no groups).

    Row ``(i, j, c)`` holds what kernel offset ``(i, j)`` sees of channel ``c`` at every
    output position. For few channels (``kw*C`` small) this copy moves runs of ``Wo``
    numbers where :func:`im2col` moves runs of only ``kw*C``. ``out``: an array of that
    shape (any strides) to fill instead (returned).

    With vertical stride 1 and ``kh > 1`` the copy goes in two stages: first the
    :func:`column_planes`, then every row ``(i, j, c)`` of an image is one contiguous run
    of ``Ho*Wo`` numbers of such a plane (:func:`plane_windows`). ``work``: a
    C-contiguous buffer of at least :func:`im2col_transposed_work_size` elements for the
    planes (allocated when None).
    """
    n, _, _, c = xp.shape
    kh, kw = geometry.kernel
    if out is None:
        out = np.empty((kh * kw * c, n * out_h * out_w), dtype=xp.dtype)
    if not im2col_transposed_work_size(xp.shape, geometry, out_h, out_w):
        view = window_view(xp, geometry, out_h, out_w).transpose(3, 4, 5, 0, 1, 2)
        np.copyto(split_axes(out, [(kh, kw, c), (n, out_h, out_w)]), view)
        return out
    planes = column_planes(xp, geometry, out_h, out_w, work=work)
    source = plane_windows(planes, geometry, out_h, out_w)   # (kh, n, kw*C, Ho*Wo)
    item = out.itemsize
    if out.strides[1] == item:
        # out's rows of n*Ho*Wo numbers are contiguous: an image's row is one run.
        o_k = out.strides[0]
        target = _view(out, (kh, n, kw * c, out_h * out_w),
                       (o_k * kw * c, item * out_h * out_w, o_k, item), writeable=True)
    else:
        target = split_axes(out, [(kh, kw * c), (n, out_h * out_w)]).transpose(0, 2, 1, 3)
    np.copyto(target, source)
    return out


def column_planes(xp: np.ndarray, geometry: WindowGeometry, out_h: int, out_w: int, *,
                  ones: bool = False, work: np.ndarray | None = None) -> np.ndarray:
    """The ``kw*C`` column-shifted planes of padded NHWC ``xp`` (vertical stride 1).

    Returns ``planes (S, N, R, Wo)``, ``S = kw*C`` (``+ 1``: a last plane of ones, with
    ``ones``), ``R = (kh-1)*dh + Ho`` rows: ``planes[(j, c), n, r, ow] = xp[n, r, j*dw +
    ow*sw, c]``. Kernel row ``i`` sees rows ``i*dh ... i*dh + Ho - 1`` of each plane, one
    contiguous run of ``Ho*Wo`` numbers (:func:`plane_windows`). ``work``: a C-contiguous
    buffer of at least ``S*N*R*Wo`` elements (allocated when None).
    """
    n, _, _, c = xp.shape
    kw = geometry.kernel[1]
    if geometry.stride[0] != 1:
        raise ValueError(f"column_planes: needs vertical stride 1, got stride {geometry.stride}")
    data = kw * c
    shape = column_planes_shape(xp.shape, geometry, out_h, out_w, ones=ones)
    rows = shape[2]
    planes = _in_work(work, shape, xp.dtype)
    sw, dw = geometry.stride[1], geometry.dilation[1]
    s_n, s_h, s_w, s_c = xp.strides
    np.copyto(planes[:data].reshape(kw, c, n, rows, out_w),
              _view(xp, (kw, c, n, rows, out_w), (s_w * dw, s_c, s_n, s_h, s_w * sw)))
    if ones:
        planes[data] = 1
    return planes


def column_planes_shape(padded_shape, geometry: WindowGeometry, out_h: int, out_w: int, *,
                        ones: bool = False) -> tuple[int, int, int, int]:
    """``(S, N, R, Wo)``: the shape of :func:`column_planes`' result (its ``work`` holds
    the product)."""
    n, _, _, c = padded_shape
    kh, kw = geometry.kernel
    rows = (kh - 1) * geometry.dilation[0] + out_h
    return (kw * c + int(ones), n, rows, out_w)


def plane_windows(planes: np.ndarray, geometry: WindowGeometry, out_h: int,
                  out_w: int) -> np.ndarray:
    """Read-only view ``(kh, N, S, Ho*Wo)`` of :func:`column_planes`' ``(S, N, R, Wo)``:
    ``[i, n, s, (oh, ow)] = planes[s, n, i*dh + oh, ow]``, what kernel row ``i`` sees
    through plane ``s`` at every output position of image ``n``. Each ``[i, n]`` is a
    row-major ``(S, Ho*Wo)`` matrix a GEMM reads in place."""
    p_s, p_n, p_r, item = planes.strides
    return _view(planes, (geometry.kernel[0], planes.shape[1], planes.shape[0], out_h * out_w),
                 (p_r * geometry.dilation[0], p_n, p_s, item))


def _in_work(work: np.ndarray | None, shape, dtype) -> np.ndarray:
    """A C-contiguous array of ``shape`` at the start of the flat buffer ``work`` (at least
    that many elements), or a new one when ``work`` is None."""
    if work is None:
        return np.empty(shape, dtype=dtype)
    return work.reshape(-1)[:math.prod(shape)].reshape(shape)


def _view(base: np.ndarray, shape, strides, writeable: bool = False) -> np.ndarray:
    """``as_strided(base, shape, strides)``, built with the ndarray constructor when
    ``base`` is C-contiguous: several times faster (these views are made per block)."""
    if base.flags.c_contiguous and (base.flags.writeable or not writeable):
        view = np.ndarray(shape, base.dtype, buffer=base, strides=strides)
        if not writeable:
            view.flags.writeable = False
        return view
    return as_strided(base, shape=shape, strides=strides, writeable=writeable)


def im2col_transposed_work_size(padded_shape, geometry: WindowGeometry, out_h: int,
                                out_w: int) -> int:
    """Elements of the plane buffer :func:`im2col_transposed` copies through (0: it copies
    directly, for vertical stride > 1 or ``kh == 1``)."""
    n, _, _, c = padded_shape
    if geometry.stride[0] != 1 or geometry.kernel[0] == 1 or not (n and out_h and out_w and c):
        return 0
    return math.prod(column_planes_shape(padded_shape, geometry, out_h, out_w))


def im2row(xp: np.ndarray, geometry: WindowGeometry, out_h: int, out_w: int, *,
           ones: bool = False, work: np.ndarray | None = None) -> np.ndarray:
    """Windows of padded NHWC ``xp`` laid out for one small GEMM per output row.

    One copy writes ``q (N, R, S, Wo)`` (``R = (Ho-1)*sh + kh`` padded rows, ``S = kw*C``
    segments, plus a segment of ones with ``ones``): segment ``s = (j, c)`` of row ``r``
    holds ``xp[n, r, j*dw + ow*sw, c]`` for every output column ``ow``. The windows of
    output row ``oh`` are then the consecutive segments of rows ``oh*sh ... oh*sh+kh-1``,
    so the result is a view ``a (N, Ho, Wo, K)``, ``K = (kh-1)*S + kw*C``, with
    ``a[n, oh, ow, i*S + s] = q[n, oh*sh + i, s, ow]``: each ``a[n, oh]`` is a
    column-major ``(Wo, K)`` matrix a GEMM reads in place, and no column matrix is built.
    With ``ones``, ``K`` index ``i*S + kw*C`` (``i < kh-1``) reads ones (a place for the
    bias, see :func:`im2row_weights`). Needs vertical dilation 1 and ``kh >= 2``.
    ``work``: a C-contiguous buffer of at least ``N*R*S*Wo`` elements for ``q``.
    """
    n, _, _, c = xp.shape
    kh, kw = geometry.kernel
    (sh, sw), (dh, dw) = geometry.stride, geometry.dilation
    if dh != 1 or kh < 2:
        raise ValueError(f"im2row: needs vertical dilation 1 and kh >= 2, got dilation "
                         f"{geometry.dilation} and kernel {geometry.kernel}")
    data = kw * c
    shape = im2row_shape(xp.shape, geometry, out_h, out_w, ones=ones)
    rows = shape[1]
    q = _in_work(work, shape, xp.dtype)
    s_n, s_h, s_w, s_c = xp.strides
    # q[n, r, (j, c), ow] = xp[n, r, j*dw + ow*sw, c]
    np.copyto(q[:, :, :data].reshape(n, rows, kw, c, out_w),
              _view(xp, (n, rows, kw, c, out_w), (s_n, s_h, s_w * dw, s_c, s_w * sw)))
    if ones:
        q[:, :, data] = 1
    q_n, q_r, q_s, item = q.strides
    k = im2row_depth(geometry.kernel, c, ones=ones)
    return _view(q, (n, out_h, out_w, k), (q_n, q_r * sh, item, q_s))


def im2row_depth(kernel: tuple[int, int], channels: int, *, ones: bool = False) -> int:
    """``K`` of :func:`im2row`'s windows: ``(kh-1)*S + kw*C`` with ``S = kw*C (+ 1)``."""
    kh, kw = kernel
    return (kh - 1) * (kw * channels + int(ones)) + kw * channels


def im2row_shape(padded_shape, geometry: WindowGeometry, out_h: int, out_w: int, *,
                 ones: bool = False) -> tuple[int, int, int, int]:
    """``(N, R, S, Wo)``: the shape of :func:`im2row`'s row-segment copy ``q`` (its
    ``work`` holds the product)."""
    n, _, _, c = padded_shape
    kh, kw = geometry.kernel
    rows = (out_h - 1) * geometry.stride[0] + kh
    return (n, rows, kw * c + int(ones), out_w)


def im2row_weights(weights: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """The ``(K, Cout)`` GEMM weights for :func:`im2row`'s windows (``ones`` iff a bias).

    ``weights (kh, kw*C, Cout)`` in ``(i, (j, c))`` order. Without a bias ``K = kh*kw*C``
    and this is a plain reshape; with one, every kernel row but the last is followed by
    the ones segment's row: the bias for the first, zeros for the others.
    """
    kh, data, cout = weights.shape
    if bias is None:
        return weights.reshape(kh * data, cout)
    segments = data + 1
    out = np.zeros((kh * segments, cout), dtype=weights.dtype)
    rows = out.reshape(kh, segments, cout)
    rows[:, :data] = weights
    rows[0, data] = bias
    return out[:(kh - 1) * segments + data]   # no ones row after the last kernel row


def col2im_transposed(cols_t: np.ndarray, padded_shape: tuple[int, int, int, int],
                      geometry: WindowGeometry, out_h: int, out_w: int, *,
                      out: np.ndarray | None = None) -> np.ndarray:
    """Adjoint of :func:`im2col_transposed`: scatter-add ``(kh*kw*C, M)`` rows into a
    padded NHWC array (one slice addition per kernel offset). ``out`` as in :func:`col2im`.
    """
    n, hp, wp, c = padded_shape
    kh, kw = geometry.kernel
    blocks = split_axes(cols_t, [(kh, kw, c), (n, out_h, out_w)])
    if out is None:
        dxp = np.zeros(padded_shape, dtype=cols_t.dtype)
    else:
        dxp = out
        dxp[...] = 0
    for i, j, index in offset_slices(geometry, out_h, out_w):
        target = dxp[index]
        target += blocks[i, j].transpose(1, 2, 3, 0)
    return dxp


def col2im(cols: np.ndarray, padded_shape: tuple[int, int, int, int],
           geometry: WindowGeometry, out_h: int, out_w: int, *,
           out: np.ndarray | None = None) -> np.ndarray:
    """Adjoint of :func:`im2col`: scatter-add ``(G, M, K)`` columns into a padded NHWC array.

    Overlapping windows accumulate. ``out``: an array of ``padded_shape`` and the
    columns' dtype to overwrite instead (returned).

    Without groups or horizontal dilation, a window row's ``kw*C`` numbers land on
    ``kw*C`` consecutive numbers of the padded row, and the windows of every
    ``ceil(kw/sw)``-th output column do not overlap: so each kernel row adds those
    windows in ``ceil(kw/sw)`` additions of long contiguous runs. Otherwise one slice
    addition per kernel offset.
    """
    n, hp, wp, c = padded_shape
    groups = cols.shape[0]
    kh, kw = geometry.kernel
    cg = c // groups
    if out is None:
        dxp = np.zeros(padded_shape, dtype=cols.dtype)
    else:
        dxp = out
        dxp[...] = 0
    if groups == 1 and geometry.dilation[1] == 1 and dxp.strides[2:] == (
            c * dxp.itemsize, dxp.itemsize):
        _col2im_row_runs(split_axes(cols[0], [(n, out_h, out_w), (kh, kw * c)]), dxp,
                         geometry)
        return dxp
    # (G, N, Ho, Wo, kh, kw, Cg) -> per offset a (N, Ho, Wo, C) block in NHWC order.
    blocks = split_axes(cols, [(groups,), (n, out_h, out_w), (kh, kw, cg)])
    for i, j, index in offset_slices(geometry, out_h, out_w):
        target = dxp[index]
        if groups == 1:
            target += blocks[0, :, :, :, i, j, :]
        else:
            target += blocks[:, :, :, :, i, j, :].transpose(1, 2, 3, 0, 4).reshape(
                n, out_h, out_w, c
            )
    return dxp


def _col2im_row_runs(rows: np.ndarray, dxp: np.ndarray, geometry: WindowGeometry) -> None:
    """col2im for ``rows (N, Ho, Wo, kh, kw*C)`` into ``dxp`` (rows of ``W*C`` contiguous)."""
    n, out_h, out_w, kh, run = rows.shape
    kw = geometry.kernel[1]
    sh, sw = geometry.stride
    dh = geometry.dilation[0]
    stride_n, stride_h, stride_w, item = dxp.strides
    # Output columns r, r + hop, r + 2*hop, ... have disjoint targets.
    hop = -(-kw // sw)
    # The ndarray constructor makes these views ~5x faster than as_strided (this loop
    # runs once per batch block); it needs dxp's own buffer, i.e. a contiguous dxp.
    direct = dxp.flags.c_contiguous
    for i in range(kh):
        for r in range(min(hop, out_w)):
            count = len(range(r, out_w, hop))
            shape = (n, out_h, count, run)
            strides = (stride_n, stride_h * sh, stride_w * sw * hop, item)
            if direct:
                offset = i * dh * stride_h + r * sw * stride_w
                target = np.ndarray(shape, dxp.dtype, buffer=dxp, offset=offset,
                                    strides=strides)
            else:
                target = as_strided(dxp[:, i * dh:, r * sw:, :], shape=shape, strides=strides)
            target += rows[:, :, r::hop, i, :]
