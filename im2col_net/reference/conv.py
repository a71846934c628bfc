"""Reference 2-D convolution: forward and backward as plain loops over the definitions.

Notation (NCHW throughout)::

    x  (N, C, H, W)             input
    w  (Cout, C/G, kh, kw)      filters, G = groups
    b  (Cout,)                  bias (optional)
    y  (N, Cout, Ho, Wo)        output
    xp (N, C, Hp, Wp)           input after padding, Hp = H + top + bottom

Forward (cross-correlation; ``flip_kernel=True`` first rotates every filter by 180
degrees, which turns it into a true convolution)::

    y[n, o, a, b] = bias[o] + sum_{c, i, j} xp[n, g*Cg + c, a*sh + i*dh, b*sw + j*dw]
                                            * w[o, c, i, j]

where ``g = o // (Cout/G)`` is the group of output channel ``o`` and ``c`` runs over the
``Cg = C/G`` input channels of that group.

Backward is written from the textbook derivation, not as the adjoint of the forward
loop:

* bias gradient: the sum of the error map, ``db[o] = sum_{n,a,b} dy[n, o, a, b]``;
* weight gradient: the padded input correlated with the error map, ``dw[o, c, i, j] =
  sum_{n,a,b} xp[n, g*Cg + c, a*sh + i*dh, b*sw + j*dw] * dy[n, o, a, b]``;
* input gradient: insert ``s - 1`` zeros between neighbouring error elements (undoing
  the stride), zero-pad the result by the dilated kernel extent minus one on every side,
  and correlate it with the 180-degree-rotated filters (dilated like the forward
  kernel). This gives the gradient of the *padded* input; the border is then folded
  back onto the input according to the padding mode (dropped for ``"zeros"``, added to
  the border element for ``"replicate"``, added to the mirrored element for
  ``"reflect"``, to the element it wrapped from for ``"circular"``).

Everything is computed in float64 and cast back to the input's dtype at the end, so the
reference is as exact as float64 allows for any input dtype.
"""

from __future__ import annotations

import numpy as np

from ..geometry import PADDING_MODE_ALIASES, PADDING_MODES, WindowGeometry

__all__ = ["conv2d_forward", "conv2d_backward", "pad2d", "pad2d_backward", "source_index"]


def source_index(p: int, size: int, mode: str) -> int | None:
    """Which input index padded position ``p`` (``p`` in input coordinates, so ``p < 0``
    is above/left of the input and ``p >= size`` below/right of it) copies.

    ``"zeros"``: None outside the input (the value is the fill, not a copy).
    ``"replicate"`` (alias ``"edge"``): the nearest border index. ``"reflect"``: the
    mirror image about the border element, which itself is not repeated (``-1 -> 1``,
    ``size -> size - 2``). ``"circular"``: the input repeated periodically, ``p mod
    size`` (``-1 -> size - 1``, ``size -> 0``).
    """
    if 0 <= p < size:
        return p
    if mode == "zeros":
        return None
    if mode in ("replicate", "edge"):
        return 0 if p < 0 else size - 1
    if mode == "reflect":
        return -p if p < 0 else 2 * (size - 1) - p
    if mode == "circular":
        return p % size
    raise ValueError(f"reference pad2d: padding_mode must be one of {PADDING_MODES}, got {mode!r}")


def _check_pad(shape, padding, mode, owner):
    if mode not in PADDING_MODES and mode not in PADDING_MODE_ALIASES:
        raise ValueError(f"{owner}: padding_mode must be one of {PADDING_MODES}, got {mode!r}")
    top, bottom, left, right = padding
    h, w = shape[2], shape[3]
    if mode == "reflect" and (max(top, bottom) >= h or max(left, right) >= w):
        raise ValueError(
            f"{owner}: reflect padding {padding} must be smaller than the input {h}x{w}"
        )
    if mode == "circular" and (max(top, bottom) > h or max(left, right) > w):
        # One wrap at most: each pad no larger than the input (torch's limit).
        raise ValueError(
            f"{owner}: circular padding {padding} must be at most the input size {h}x{w}"
        )
    if mode in ("replicate", "edge") and (h == 0 or w == 0):
        raise ValueError(f"{owner}: replicate padding needs a non-empty input, got {h}x{w}")


def pad2d(x, padding, mode="zeros", fill=0.0):
    """Pad the last two axes of ``x (N, C, H, W)`` by ``(top, bottom, left, right)``.

    Returns ``(N, C, H + top + bottom, W + left + right)`` in ``x.dtype``; every padded
    element is the input element :func:`source_index` names, or ``fill`` when there is
    none (``"zeros"`` mode).
    """
    x = np.asarray(x)
    _check_pad(x.shape, padding, mode, "reference pad2d")
    top, bottom, left, right = padding
    n_, c_, h, w = x.shape
    out = np.empty((n_, c_, h + top + bottom, w + left + right), dtype=x.dtype)
    for n in range(n_):
        for c in range(c_):
            for u in range(h + top + bottom):
                for v in range(w + left + right):
                    src_h = source_index(u - top, h, mode)
                    src_w = source_index(v - left, w, mode)
                    if src_h is None or src_w is None:
                        out[n, c, u, v] = fill
                    else:
                        out[n, c, u, v] = x[n, c, src_h, src_w]
    return out


def pad2d_backward(dxp, padding, mode="zeros"):
    """Gradient of :func:`pad2d`: every padded position adds its gradient onto the input
    element it copied (nothing for a zero fill).

    ``dxp (N, C, Hp, Wp)`` -> ``dx (N, C, Hp - top - bottom, Wp - left - right)``, same
    dtype (accumulated in float64).
    """
    dxp = np.asarray(dxp)
    top, bottom, left, right = padding
    n_, c_, hp, wp = dxp.shape
    h, w = hp - top - bottom, wp - left - right
    _check_pad((n_, c_, h, w), padding, mode, "reference pad2d_backward")
    dx = np.zeros((n_, c_, h, w), dtype=np.float64)
    for n in range(n_):
        for c in range(c_):
            for u in range(hp):
                for v in range(wp):
                    src_h = source_index(u - top, h, mode)
                    src_w = source_index(v - left, w, mode)
                    if src_h is not None and src_w is not None:
                        dx[n, c, src_h, src_w] += float(dxp[n, c, u, v])
    return dx.astype(dxp.dtype)


def _setup(x, w, b, stride, padding, dilation, groups, padding_mode, owner):
    """Validate shapes and turn the torch-style arguments into a WindowGeometry."""
    x = np.asarray(x)
    w = np.asarray(w)
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(
            f"{owner}: expected x (N, C, H, W) and w (Cout, C/groups, kh, kw), "
            f"got shapes {x.shape} and {w.shape}"
        )
    cout, cg = w.shape[0], w.shape[1]
    if groups < 1 or cout % groups or x.shape[1] != cg * groups:
        raise ValueError(
            f"{owner}: x has {x.shape[1]} channels, w has shape {w.shape}, groups={groups}: "
            f"expected C == w.shape[1] * groups and Cout divisible by groups"
        )
    if b is not None and np.shape(b) != (cout,):
        raise ValueError(f"{owner}: expected bias of shape ({cout},), got {np.shape(b)}")
    geometry = WindowGeometry.make(w.shape[2:], stride, padding, dilation, owner=owner)
    _check_pad(x.shape, geometry.padding, padding_mode, owner)
    ho, wo = geometry.checked_output_size(x.shape[2], x.shape[3], owner=owner)
    return x, w, geometry, ho, wo


def _effective_filters(w, flip_kernel):
    """float64 copy of the filters actually correlated with the input."""
    w64 = np.asarray(w, dtype=np.float64)
    return w64[:, :, ::-1, ::-1].copy() if flip_kernel else w64.copy()


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, groups=1,
                   padding_mode="zeros", flip_kernel=False):
    """Reference convolution ``y (N, Cout, Ho, Wo)`` in ``x.dtype``.

    Arguments as :func:`im2col_net.functional.conv2d_forward` (``padding``: int, pair,
    ``(top, bottom, left, right)``, ``"same"`` or ``"valid"``; ``padding_mode``:
    ``"zeros"``, ``"reflect"``, ``"replicate"`` (alias ``"edge"``), ``"circular"``).
    """
    x, w, geometry, ho, wo = _setup(x, w, b, stride, padding, dilation, groups, padding_mode,
                                    "reference conv2d_forward")
    xp = pad2d(np.asarray(x, dtype=np.float64), geometry.padding, padding_mode)
    weff = _effective_filters(w, flip_kernel)
    n_, _, _, _ = x.shape
    cout, cg, kh, kw = w.shape
    coutg = cout // groups
    sh, sw = geometry.stride
    dh, dw = geometry.dilation
    y = np.zeros((n_, cout, ho, wo), dtype=np.float64)
    for n in range(n_):
        for o in range(cout):
            g = o // coutg
            for a in range(ho):
                for bb in range(wo):
                    total = 0.0 if b is None else float(b[o])
                    for c in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                total += (xp[n, g * cg + c, a * sh + i * dh, bb * sw + j * dw]
                                          * weff[o, c, i, j])
                    y[n, o, a, bb] = total
    return y.astype(x.dtype)


def _dilate_and_pad_error(dy, geometry, hp, wp):
    """The error map as seen by the "full" correlation that yields the padded-input
    gradient: ``s - 1`` zeros between elements, ``d * (k - 1)`` zeros on every side, plus
    extra zeros at the bottom/right for padded rows/columns no window reached.

    ``dy (N, Cout, Ho, Wo)`` float64 -> ``(N, Cout, Hp + d*(k-1), Wp + d*(k-1))``.
    """
    n_, cout, ho, wo = dy.shape
    (kh, kw), (sh, sw), (dh, dw) = geometry.kernel, geometry.stride, geometry.dilation
    rim_h, rim_w = dh * (kh - 1), dw * (kw - 1)
    out = np.zeros((n_, cout, hp + rim_h, wp + rim_w), dtype=np.float64)
    for n in range(n_):
        for o in range(cout):
            for a in range(ho):
                for b in range(wo):
                    out[n, o, rim_h + a * sh, rim_w + b * sw] = dy[n, o, a, b]
    return out


def conv2d_backward(x, w, dy, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros", flip_kernel=False, bias=True):
    """Reference gradients of :func:`conv2d_forward`.

    ``x (N, C, H, W)``, ``w (Cout, C/G, kh, kw)``, ``dy (N, Cout, Ho, Wo)`` -> ``(dx, dw,
    db)`` with ``dx`` shaped like ``x``, ``dw`` like ``w`` and ``db (Cout,)`` (None when
    ``bias`` is False), all in ``x.dtype``. The other arguments must be the ones given
    to the forward pass.
    """
    x, w, geometry, ho, wo = _setup(x, w, None, stride, padding, dilation, groups,
                                    padding_mode, "reference conv2d_backward")
    n_, c_, h, w_in = x.shape
    cout, cg, kh, kw = w.shape
    coutg = cout // groups
    if np.shape(dy) != (n_, cout, ho, wo):
        raise ValueError(
            f"reference conv2d_backward: expected dy of shape {(n_, cout, ho, wo)}, "
            f"got {np.shape(dy)}"
        )
    dy64 = np.asarray(dy, dtype=np.float64)
    xp = pad2d(np.asarray(x, dtype=np.float64), geometry.padding, padding_mode)
    hp, wp = xp.shape[2], xp.shape[3]
    weff = _effective_filters(w, flip_kernel)
    sh, sw = geometry.stride
    dh, dw_ = geometry.dilation

    # Bias: sum of the error over the batch and all positions.
    db = None
    if bias:
        db = np.zeros(cout, dtype=np.float64)
        for o in range(cout):
            for n in range(n_):
                for a in range(ho):
                    for b in range(wo):
                        db[o] += dy64[n, o, a, b]

    # Weights: the padded input correlated with the error (tap (i, j) of the filter sees
    # the input shifted by (i*dh, j*dw) and sampled with the stride).
    dweff = np.zeros(weff.shape, dtype=np.float64)
    for o in range(cout):
        g = o // coutg
        for c in range(cg):
            for i in range(kh):
                for j in range(kw):
                    total = 0.0
                    for n in range(n_):
                        for a in range(ho):
                            for b in range(wo):
                                total += (xp[n, g * cg + c, a * sh + i * dh, b * sw + j * dw_]
                                          * dy64[n, o, a, b])
                    dweff[o, c, i, j] = total
    dw = dweff[:, :, ::-1, ::-1] if flip_kernel else dweff

    # Input: full correlation of the stride-dilated, zero-padded error with the
    # 180-degree-rotated filters, tap (i, j) stepping by the dilation.
    err = _dilate_and_pad_error(dy64, geometry, hp, wp)
    rotated = weff[:, :, ::-1, ::-1]
    dxp = np.zeros((n_, c_, hp, wp), dtype=np.float64)
    for n in range(n_):
        for ch in range(c_):
            g, c = divmod(ch, cg)
            for u in range(hp):
                for v in range(wp):
                    total = 0.0
                    for o in range(g * coutg, (g + 1) * coutg):
                        for i in range(kh):
                            for j in range(kw):
                                total += err[n, o, u + i * dh, v + j * dw_] * rotated[o, c, i, j]
                    dxp[n, ch, u, v] = total
    dx = pad2d_backward(dxp, geometry.padding, padding_mode)

    dtype = x.dtype
    return (dx.astype(dtype), np.ascontiguousarray(dw).astype(dtype),
            None if db is None else db.astype(dtype))
