"""Reference upsampling, pixel (un)shuffle, flatten and unflatten, element by element.

Upsampling follows PyTorch's CPU kernels (documented in
:mod:`im2col_net.functional.resample`): per axis, with ``scale = 1 / scale_factor`` when
a scale factor is given to be used as such, else ``in / out``,

* nearest: ``src(o) = min(floor(o * scale), in - 1)`` in float32 (``o`` itself when
  ``out == in``, ``o // 2`` when ``out == 2 * in``);
* bilinear: ``src(o) = o * (in - 1) / (out - 1)`` with ``align_corners`` (0 for one
  output), else ``max((o + 0.5) * scale - 0.5, 0)``, in the input's precision; output
  ``o`` is ``(1 - t) * x[i0] + t * x[i1]`` with ``i0 = floor(src)``, ``i1 = min(i0 + 1,
  in - 1)``, ``t = src - i0``; ``out == in`` copies.

``y[o_h, o_w] = sum_{a, b} wh(o_h, a) * ww(o_w, b) * x[a, b]`` over the (at most two)
taps of each axis; the backward is ``dx[a, b] = sum_{o_h, o_w} wh * ww * dy[o_h, o_w]``
accumulated in float64.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["upsample_taps", "upsample_forward", "upsample_backward", "pixel_shuffle",
           "pixel_unshuffle", "flatten", "unflatten"]


def upsample_taps(in_size, out_size, mode, align_corners=False, scale_factor=None,
                  dtype=np.float64):
    """Per output index ``o``: a list of ``(input index, weight)`` taps."""
    taps = []
    ftype = np.dtype(dtype).type
    for o in range(out_size):
        if out_size == in_size:
            taps.append([(o, 1.0)])
            continue
        if mode == "nearest":
            if out_size == 2 * in_size:
                taps.append([(o // 2, 1.0)])
                continue
            if scale_factor is not None:
                scale = np.float32(1.0 / scale_factor)
            else:
                scale = np.float32(in_size) / np.float32(out_size)
            src = int(math.floor(float(np.float32(o) * scale)))
            taps.append([(min(src, in_size - 1), 1.0)])
            continue
        if align_corners:
            ratio = ftype(in_size - 1) / ftype(out_size - 1) if out_size > 1 else ftype(0)
            src = ratio * ftype(o)
        else:
            if scale_factor is not None:
                ratio = ftype(1.0 / scale_factor)
            else:
                ratio = ftype(in_size) / ftype(out_size)
            src = max(ratio * (ftype(o) + ftype(0.5)) - ftype(0.5), ftype(0))
        i0 = min(int(math.floor(float(src))), in_size - 1)
        t = float(min(max(ftype(src) - ftype(i0), ftype(0)), ftype(1)))
        i1 = min(i0 + 1, in_size - 1)
        taps.append([(i0, 1.0 - t), (i1, t)])
    return taps


def upsample_forward(x, out_hw, mode="nearest", align_corners=False, scales=(None, None)):
    """Upsampled ``x (N, C, H, W) -> (N, C, Ho, Wo)``, same dtype."""
    x = np.asarray(x)
    n_, c_, h, w = x.shape
    th = upsample_taps(h, out_hw[0], mode, align_corners, scales[0], x.dtype)
    tw = upsample_taps(w, out_hw[1], mode, align_corners, scales[1], x.dtype)
    y = np.zeros((n_, c_, out_hw[0], out_hw[1]), dtype=np.float64)
    for n in range(n_):
        for c in range(c_):
            for oh in range(out_hw[0]):
                for ow in range(out_hw[1]):
                    total = 0.0
                    for a, wa in th[oh]:
                        for b, wb in tw[ow]:
                            total += wa * wb * float(x[n, c, a, b])
                    y[n, c, oh, ow] = total
    return y.astype(x.dtype)


def upsample_backward(x, dy, mode="nearest", align_corners=False, scales=(None, None)):
    """Gradient of :func:`upsample_forward` with respect to ``x``."""
    x, dy = np.asarray(x), np.asarray(dy)
    n_, c_, h, w = x.shape
    ho, wo = dy.shape[2], dy.shape[3]
    th = upsample_taps(h, ho, mode, align_corners, scales[0], x.dtype)
    tw = upsample_taps(w, wo, mode, align_corners, scales[1], x.dtype)
    dx = np.zeros(x.shape, dtype=np.float64)
    for n in range(n_):
        for c in range(c_):
            for oh in range(ho):
                for ow in range(wo):
                    for a, wa in th[oh]:
                        for b, wb in tw[ow]:
                            dx[n, c, a, b] += wa * wb * float(dy[n, c, oh, ow])
    return dx.astype(x.dtype)


def pixel_shuffle(x, r):
    """``y[n, c, h*r + i, w*r + j] = x[n, c*r*r + i*r + j, h, w]``."""
    x = np.asarray(x)
    n_, crr, h, w = x.shape
    c_ = crr // (r * r)
    y = np.empty((n_, c_, h * r, w * r), dtype=x.dtype)
    for n in range(n_):
        for c in range(c_):
            for hh in range(h):
                for ww in range(w):
                    for i in range(r):
                        for j in range(r):
                            y[n, c, hh * r + i, ww * r + j] = x[n, c * r * r + i * r + j, hh, ww]
    return y


def pixel_unshuffle(x, r):
    """``y[n, c*r*r + i*r + j, h, w] = x[n, c, h*r + i, w*r + j]``."""
    x = np.asarray(x)
    n_, c_, hr, wr = x.shape
    h, w = hr // r, wr // r
    y = np.empty((n_, c_ * r * r, h, w), dtype=x.dtype)
    for n in range(n_):
        for c in range(c_):
            for hh in range(h):
                for ww in range(w):
                    for i in range(r):
                        for j in range(r):
                            y[n, c * r * r + i * r + j, hh, ww] = x[n, c, hh * r + i, ww * r + j]
    return y


def flatten(x, start_dim=1, end_dim=-1):
    """Axes ``start_dim..end_dim`` merged into one, the last of them varying fastest."""
    x = np.asarray(x)
    nd = max(x.ndim, 1)
    s, e = start_dim % nd, end_dim % nd
    merged = x.shape[s:e + 1]
    shape = x.shape[:s] + (math.prod(merged),) + x.shape[e + 1:]
    y = np.empty(shape, dtype=x.dtype)
    for index in np.ndindex(x.shape):
        flat = 0
        for k, size in zip(index[s:e + 1], merged, strict=True):
            flat = flat * size + k
        y[index[:s] + (flat,) + index[e + 1:]] = x[index]
    return y


def unflatten(x, dim, sizes):
    """Axis ``dim`` split into ``sizes`` (one may be -1), the last varying fastest."""
    x = np.asarray(x)
    d = dim % x.ndim
    sizes = list(sizes)
    if -1 in sizes:
        known = math.prod(s for s in sizes if s != -1)
        sizes[sizes.index(-1)] = x.shape[d] // known
    y = np.empty(x.shape[:d] + tuple(sizes) + x.shape[d + 1:], dtype=x.dtype)
    for index in np.ndindex(x.shape):
        rest, parts = index[d], []
        for size in reversed(sizes):
            parts.append(rest % size)
            rest //= size
        y[index[:d] + tuple(reversed(parts)) + index[d + 1:]] = x[index]
    return y
