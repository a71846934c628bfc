"""Reference 2-D padding in torch's four modes, position by position.

``padding = (left, right, top, bottom)`` as torch.nn.functional.pad; output position
``(u, v)`` of the padded ``(H + top + bottom, W + left + right)`` plane copies input
``(source(u - top, H), source(v - left, W))`` or, in ``"constant"`` mode outside the
input, holds ``value``::

    constant   no source outside [0, size)
    reflect    p < 0 -> -p,  p >= size -> 2 * (size - 1) - p   (border not repeated)
    replicate  p < 0 -> 0,   p >= size -> size - 1
    circular   p < 0 -> p + size,  p >= size -> p - size       (one wrap at most)

The backward adds every padded position's gradient onto the input element it copied.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pad2d_torch", "pad2d_torch_backward", "pad_source_index"]

MODES = ("constant", "reflect", "replicate", "circular")


def pad_source_index(p: int, size: int, mode: str):
    """The input index padded position ``p`` (input coordinates) copies, or None."""
    if 0 <= p < size:
        return p
    if mode == "constant":
        return None
    if mode == "reflect":
        return -p if p < 0 else 2 * (size - 1) - p
    if mode == "replicate":
        return 0 if p < 0 else size - 1
    if mode == "circular":
        return p + size if p < 0 else p - size
    raise ValueError(f"reference pad2d_torch: mode must be one of {MODES}, got {mode!r}")


def _check(shape, padding, mode):
    left, right, top, bottom = padding
    h, w = shape[2], shape[3]
    if mode not in MODES:
        raise ValueError(f"reference pad2d_torch: mode must be one of {MODES}, got {mode!r}")
    if min(padding) < 0:
        raise ValueError(f"reference pad2d_torch: negative padding {padding}")
    limit_h, limit_w = {"reflect": (h - 1, w - 1), "circular": (h, w)}.get(mode, (None, None))
    if limit_h is not None and (max(top, bottom) > limit_h or max(left, right) > limit_w):
        raise ValueError(f"reference pad2d_torch: {mode} padding {padding} too large for "
                         f"{h}x{w}")


def pad2d_torch(x, padding, mode="constant", value=0.0):
    """Padded ``x (N, C, H, W)``, same dtype."""
    x = np.asarray(x)
    _check(x.shape, padding, mode)
    left, right, top, bottom = padding
    n_, c_, h, w = x.shape
    out = np.empty((n_, c_, h + top + bottom, w + left + right), dtype=x.dtype)
    for n in range(n_):
        for c in range(c_):
            for u in range(h + top + bottom):
                for v in range(w + left + right):
                    sh = pad_source_index(u - top, h, mode)
                    sw = pad_source_index(v - left, w, mode)
                    out[n, c, u, v] = value if sh is None or sw is None else x[n, c, sh, sw]
    return out


def pad2d_torch_backward(x, dy, padding, mode="constant"):
    """Gradient of :func:`pad2d_torch` with respect to ``x`` (float64 sums, ``x``'s
    dtype)."""
    x, dy = np.asarray(x), np.asarray(dy)
    _check(x.shape, padding, mode)
    left, right, top, bottom = padding
    n_, c_, h, w = x.shape
    if dy.shape != (n_, c_, h + top + bottom, w + left + right):
        raise ValueError(f"reference pad2d_torch_backward: dy has shape {dy.shape}")
    dx = np.zeros(x.shape, dtype=np.float64)
    for n in range(n_):
        for c in range(c_):
            for u in range(dy.shape[2]):
                for v in range(dy.shape[3]):
                    sh = pad_source_index(u - top, h, mode)
                    sw = pad_source_index(v - left, w, mode)
                    if sh is not None and sw is not None:
                        dx[n, c, sh, sw] += float(dy[n, c, u, v])
    return dx.astype(x.dtype)
