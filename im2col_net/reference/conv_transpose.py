"""Reference transposed 2-D convolution, forward and backward as plain loops.

Notation (NCHW)::

    x  (N, Cin, H, W)              input
    w  (Cin, Cout/G, kh, kw)       filters (torch layout), G = groups
    b  (Cout,)                     bias (optional)
    y  (N, Cout, Hout, Wout)       Hout = (H-1)*sh - 2*ph + dh*(kh-1) + oph + 1

Forward: every input pixel stamps its filter, scaled by its value, onto the output at
stride spacing; stamps overlap and add up, the first ``ph``/``pw`` rows/columns of the
stamped plane are cut off (the padding) and ``output_padding`` adds rows/columns at the
bottom/right::

    y[n, g*Coutg + o, a*sh - ph + i*dh, c*sw - pw + j*dw] += x[n, g*Cing + k, a, c]
                                                             * w[g*Cing + k, o, i, j]

for every ``(a, c)``, ``(i, j)`` and every ``k < Cing = Cin/G``, ``o < Coutg = Cout/G``;
output positions outside ``[0, Hout) x [0, Wout)`` are dropped. Backward gathers along
the same index map: ``dx[n, ci, a, c] = sum dy[...] * w[ci, o, i, j]`` and ``dw[ci, o,
i, j] = sum x[n, ci, a, c] * dy[...]`` over the in-range positions; ``db`` sums ``dy``.

Computed in float64; results have the input's dtype.
"""

from __future__ import annotations

import numpy as np

from ..geometry import as_pair, conv_transpose_output_size

__all__ = ["conv_transpose2d_forward", "conv_transpose2d_backward"]


def _setup(x, w, b, stride, padding, output_padding, groups, dilation, owner):
    x, w = np.asarray(x), np.asarray(w)
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(
            f"{owner}: expected x (N, Cin, H, W) and w (Cin, Cout/groups, kh, kw), "
            f"got shapes {x.shape} and {w.shape}"
        )
    cin = w.shape[0]
    if groups < 1 or cin % groups or x.shape[1] != cin:
        raise ValueError(
            f"{owner}: x has {x.shape[1]} channels, w has shape {w.shape}, groups={groups}: "
            f"expected C == w.shape[0], divisible by groups"
        )
    cout = w.shape[1] * groups
    if b is not None and np.shape(b) != (cout,):
        raise ValueError(f"{owner}: expected bias of shape ({cout},), got {np.shape(b)}")
    stride = as_pair(stride, "stride", owner=owner)
    dilation = as_pair(dilation, "dilation", owner=owner)
    padding = as_pair(padding, "padding", minimum=0, owner=owner)
    output_padding = as_pair(output_padding, "output_padding", minimum=0, owner=owner)
    size = [conv_transpose_output_size(x.shape[2 + ax], w.shape[2 + ax], stride[ax],
                                       2 * padding[ax], dilation[ax], output_padding[ax])
            for ax in range(2)]
    if min(size) <= 0:
        raise ValueError(f"{owner}: output size {size} is not positive")
    return x, w, stride, padding, dilation, size


def _targets(x_shape, w_shape, groups, stride, padding, dilation, out_size):
    """Yield ``(n, ci, a, c, co, o, i, j, oh, ow)`` for every in-range contribution."""
    n_, cin, h, wd = x_shape
    _, coutg, kh, kw = w_shape
    cing = cin // groups
    for n in range(n_):
        for ci in range(cin):
            g = ci // cing
            for a in range(h):
                for c in range(wd):
                    for o in range(coutg):
                        for i in range(kh):
                            oh = a * stride[0] - padding[0] + i * dilation[0]
                            if not 0 <= oh < out_size[0]:
                                continue
                            for j in range(kw):
                                ow = c * stride[1] - padding[1] + j * dilation[1]
                                if 0 <= ow < out_size[1]:
                                    yield n, ci, a, c, g * coutg + o, o, i, j, oh, ow


def conv_transpose2d_forward(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1,
                             dilation=1):
    """Reference transposed convolution ``y (N, Cout, Hout, Wout)`` in ``x.dtype``.

    Arguments as ``torch.nn.functional.conv_transpose2d`` (``padding`` int or pair).
    """
    x, w, stride, padding, dilation, size = _setup(
        x, w, b, stride, padding, output_padding, groups, dilation,
        "reference conv_transpose2d_forward")
    cout = w.shape[1] * groups
    y = np.zeros((x.shape[0], cout) + tuple(size), dtype=np.float64)
    if b is not None:
        for co in range(cout):
            y[:, co] = float(b[co])
    for n, ci, a, c, co, o, i, j, oh, ow in _targets(x.shape, w.shape, groups, stride, padding,
                                                     dilation, size):
        y[n, co, oh, ow] += float(x[n, ci, a, c]) * float(w[ci, o, i, j])
    return y.astype(x.dtype)


def conv_transpose2d_backward(x, w, dy, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1, bias=True):
    """Gradients of :func:`conv_transpose2d_forward`: ``(dx, dw, db)``, db None without bias."""
    x, w, stride, padding, dilation, size = _setup(
        x, w, None, stride, padding, output_padding, groups, dilation,
        "reference conv_transpose2d_backward")
    dy = np.asarray(dy)
    cout = w.shape[1] * groups
    expected = (x.shape[0], cout) + tuple(size)
    if dy.shape != expected:
        raise ValueError(
            f"reference conv_transpose2d_backward: expected dy of shape {expected}, "
            f"got {dy.shape}"
        )
    dx = np.zeros(x.shape, dtype=np.float64)
    dw = np.zeros(w.shape, dtype=np.float64)
    for n, ci, a, c, co, o, i, j, oh, ow in _targets(x.shape, w.shape, groups, stride, padding,
                                                     dilation, size):
        g = float(dy[n, co, oh, ow])
        dx[n, ci, a, c] += g * float(w[ci, o, i, j])
        dw[ci, o, i, j] += g * float(x[n, ci, a, c])
    db = None
    if bias:
        db = np.array([sum(float(v) for v in dy[:, co].ravel()) for co in range(cout)])
    return (dx.astype(x.dtype), dw.astype(x.dtype),
            None if db is None else db.astype(x.dtype))
