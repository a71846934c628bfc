"""Spatial padding of 4-D arrays in every mode, with its adjoint.

``pad`` / ``pad_grad`` take the same arguments as :func:`im2col_net.lowering.pad` /
:func:`im2col_net.lowering.pad_grad` (``padding = (top, bottom, left, right)``, NHWC by
default) and add the mode ``"circular"`` (wrap around, as torch's ``circular``) and a
``layout`` argument (``"NHWC"`` or ``"NCHW"``). The zero, edge and reflect modes of NHWC
arrays are handed to :mod:`im2col_net.lowering` so convolutions and the padding layers
share one implementation; NCHW arrays and the circular mode are handled here with one
slice copy per border band (no per-pixel loops).

``pad2d_forward`` / ``pad2d_backward`` are the NCHW ``(y, cache)`` pair the padding
layers use, with torch's argument order ``(left, right, top, bottom)`` and mode names
(``"constant"``, ``"reflect"``, ``"replicate"``, ``"circular"``).
"""

from __future__ import annotations

import numpy as np

from .. import lowering

__all__ = ["PAD_MODES", "TORCH_PAD_MODES", "check_pad", "pad", "pad_grad", "pad2d_forward",
           "pad2d_backward"]

# Engine names (those of lowering) plus circular.
PAD_MODES = ("zeros", "edge", "reflect", "circular")
# torch.nn.functional.pad's names -> the engine's.
TORCH_PAD_MODES = {"constant": "zeros", "reflect": "reflect", "replicate": "edge",
                   "circular": "circular"}
_LAYOUT_AXES = {"NHWC": (1, 2), "NCHW": (2, 3)}


def check_pad(mode: str, padding, height: int, width: int, *, owner: str = "pad",
              torch_order: bool = False) -> None:
    """Raise ``ValueError`` naming ``owner`` when ``padding = (top, bottom, left, right)``
    cannot pad an ``height x width`` input in ``mode``; the limits are torch's:
    reflect needs every pad below the size, circular every pad at most the size (one
    wrap), edge a non-empty input, and no mode accepts negative (cropping) pads.
    ``torch_order``: the message spells the padding as torch's ``(left, right, top,
    bottom)``."""
    if mode not in PAD_MODES:
        raise ValueError(f"{owner}: mode must be one of {PAD_MODES}, got {mode!r}")
    top, bottom, left, right = padding
    spelled = (f"(left, right, top, bottom) = {(left, right, top, bottom)}" if torch_order
               else f"(top, bottom, left, right) = {tuple(padding)}")
    if min(padding) < 0:
        raise ValueError(f"{owner}: negative padding (cropping) is not supported, got "
                         f"{spelled}")
    if mode == "reflect" and (max(top, bottom) >= height or max(left, right) >= width):
        raise ValueError(f"{owner}: reflect padding {spelled} must be smaller than the input "
                         f"{height}x{width} (H x W) in each direction")
    if mode == "circular" and (max(top, bottom) > height or max(left, right) > width):
        raise ValueError(f"{owner}: circular padding {spelled} may wrap around at most once: "
                         f"each pad must be at most the input size {height}x{width} (H x W)")
    if mode == "edge" and (height == 0 or width == 0) and any(padding):
        raise ValueError(f"{owner}: replicate (edge) padding needs a non-empty input, got "
                         f"{height}x{width}")


def _band(a, axis, start, stop):
    index = [slice(None)] * a.ndim
    index[axis] = slice(start, stop)
    return a[tuple(index)]


def _fill_axis(out, axis, before, size, after, mode):
    """Fill the ``before``/``after`` bands of ``out`` along ``axis`` from its interior
    ``[before, before + size)``, which already holds the data."""
    end = before + size
    if mode == "zeros":
        return
    if mode == "circular":
        # Padded index before - 1 - t copies interior index size - 1 - t (wrap around).
        if before:
            _band(out, axis, 0, before)[...] = _band(out, axis, end - before, end)
        if after:
            _band(out, axis, end, end + after)[...] = _band(out, axis, before, before + after)
        return
    for t in range(before):
        src = before if mode == "edge" else before + 1 + t
        _band(out, axis, before - 1 - t, before - t)[...] = _band(out, axis, src, src + 1)
    for t in range(after):
        src = end - 1 if mode == "edge" else end - 2 - t
        _band(out, axis, end + t, end + t + 1)[...] = _band(out, axis, src, src + 1)


def pad(x: np.ndarray, padding, mode: str = "zeros", fill: float = 0.0, *,
        layout: str = "NHWC") -> np.ndarray:
    """Pad the two spatial axes of a 4-D ``x`` by ``padding = (top, bottom, left, right)``.

    ``mode``: ``"zeros"`` (``fill``), ``"edge"``, ``"reflect"`` (mirror, border not
    repeated) or ``"circular"`` (wrap around); ``layout``: ``"NHWC"`` (spatial axes 1, 2,
    as :mod:`im2col_net.lowering`) or ``"NCHW"`` (axes 2, 3). Returns a new C-contiguous
    array of ``x.dtype``; the limits of :func:`check_pad` are checked.
    """
    if layout not in _LAYOUT_AXES:
        raise ValueError(f"pad: layout must be 'NHWC' or 'NCHW', got {layout!r}")
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"pad: expected a 4-D {layout} array, got shape {x.shape}")
    ah, aw = _LAYOUT_AXES[layout]
    h, w = x.shape[ah], x.shape[aw]
    top, bottom, left, right = (int(p) for p in padding)
    check_pad(mode, (top, bottom, left, right), h, w)
    if layout == "NHWC" and mode != "circular":
        return lowering.pad(x, (top, bottom, left, right), mode, fill)
    shape = list(x.shape)
    shape[ah], shape[aw] = h + top + bottom, w + left + right
    out = np.empty(shape, dtype=x.dtype)
    if mode == "zeros" and (top or bottom or left or right):
        out[...] = fill
    interior = [slice(None)] * 4
    interior[ah], interior[aw] = slice(top, top + h), slice(left, left + w)
    out[tuple(interior)] = x
    # Width bands over the interior rows first, then whole padded rows: the corners come
    # out as the separable (row, column) mapping of torch.
    _fill_axis(_band(out, ah, top, top + h), aw, left, w, right, mode)
    _fill_axis(out, ah, top, h, bottom, mode)
    return out


def _fold_axis(a, axis, before, size, after, mode):
    """Adjoint of :func:`_fill_axis`: add the bands' gradient onto the interior rows
    they were copied from (in place)."""
    end = before + size
    if mode == "zeros":
        return
    if mode == "circular":
        if before:
            _band(a, axis, end - before, end)[...] += _band(a, axis, 0, before)
        if after:
            _band(a, axis, before, before + after)[...] += _band(a, axis, end, end + after)
        return
    # Bands are folded from the outside in, so a reflect band never reads a row that an
    # earlier fold of the same call has changed (sources are interior rows only).
    for t in range(before):
        src = before if mode == "edge" else before + 1 + t
        _band(a, axis, src, src + 1)[...] += _band(a, axis, before - 1 - t, before - t)
    for t in range(after):
        src = end - 1 if mode == "edge" else end - 2 - t
        _band(a, axis, src, src + 1)[...] += _band(a, axis, end + t, end + t + 1)


def pad_grad(dxp: np.ndarray, padding, mode: str = "zeros", *,
             layout: str = "NHWC") -> np.ndarray:
    """Adjoint of :func:`pad`: the gradient of the padded array folded back onto the
    input (shape of the unpadded array, same dtype and layout). ``dxp`` may be modified
    in place; for ``"zeros"`` a view of it is returned."""
    if layout not in _LAYOUT_AXES:
        raise ValueError(f"pad_grad: layout must be 'NHWC' or 'NCHW', got {layout!r}")
    if mode not in PAD_MODES:
        raise ValueError(f"pad_grad: mode must be one of {PAD_MODES}, got {mode!r}")
    top, bottom, left, right = (int(p) for p in padding)
    if layout == "NHWC" and mode != "circular":
        return lowering.pad_grad(dxp, (top, bottom, left, right), mode)
    ah, aw = _LAYOUT_AXES[layout]
    h, w = dxp.shape[ah] - top - bottom, dxp.shape[aw] - left - right
    check_pad(mode, (top, bottom, left, right), h, w, owner="pad_grad")
    # Height first over the full padded width, then width over the interior rows: the
    # reverse order of pad.
    _fold_axis(dxp, ah, top, h, bottom, mode)
    rows = _band(dxp, ah, top, top + h)
    _fold_axis(rows, aw, left, w, right, mode)
    return _band(rows, aw, left, left + w)


def pad2d_forward(x: np.ndarray, padding, mode: str = "constant", value: float = 0.0):
    """torch-style ``F.pad`` of NCHW ``x`` with ``padding = (left, right, top, bottom)``
    and a torch mode name; returns ``(y, cache)``."""
    engine = TORCH_PAD_MODES[mode]
    left, right, top, bottom = padding
    quad = (top, bottom, left, right)
    y = pad(x, quad, engine, value, layout="NCHW")
    return y, (quad, engine, x.shape)


def pad2d_backward(dy: np.ndarray, cache) -> np.ndarray:
    """Gradient of :func:`pad2d_forward` (``dy`` is not modified); a new C-contiguous
    array of ``dy.dtype``."""
    quad, engine, _ = cache
    dx = pad_grad(np.array(dy, copy=True), quad, engine, layout="NCHW")
    return np.ascontiguousarray(dx)
