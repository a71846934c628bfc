"""Spatial padding of 4-D arrays in every mode, with its adjoint, for the padding layers.

The filling and the folding are :func:`im2col_net.lowering.pad` / ``pad_grad``, the
convolutions' own, so every mode has one implementation; this module adds the layers'
argument check (torch's limits, messages in torch's ``(left, right, top, bottom)``
order when asked) and the NCHW layout, handled as an NHWC view of the same memory.

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


def _nhwc(a: np.ndarray, layout: str) -> np.ndarray:
    """``a`` as NHWC: itself, or the transposed view of an NCHW array."""
    return a if layout == "NHWC" else a.transpose(0, 2, 3, 1)


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
    shape = list(x.shape)
    shape[ah], shape[aw] = h + top + bottom, w + left + right
    out = np.empty(shape, dtype=x.dtype)
    lowering.pad(_nhwc(x, layout), (top, bottom, left, right), mode, fill,
                 out=_nhwc(out, layout))
    return out


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
    ah, aw = _LAYOUT_AXES[layout]
    h, w = dxp.shape[ah] - top - bottom, dxp.shape[aw] - left - right
    check_pad(mode, (top, bottom, left, right), h, w, owner="pad_grad")
    dx = lowering.pad_grad(_nhwc(dxp, layout), (top, bottom, left, right), mode)
    return dx if layout == "NHWC" else dx.transpose(0, 3, 1, 2)


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
