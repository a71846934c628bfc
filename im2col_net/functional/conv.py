"""2-D convolution as GEMM: forward ``(y, cache)`` and backward ``(dx, dw, db)``.

Two lowering strategies share one interface (``strategy=``):

``"im2col"``
    Copy the windows of the padded input into a column matrix ``(G, M, K)`` (``M =
    N*Ho*Wo``, ``K = kh*kw*C/G``) and do one GEMM per group. Backward: ``dW = cols^T
    dY`` and ``dcols = dY W^T``, then col2im.
``"strided"``
    No column matrix: one GEMM per kernel offset ``(i, j)`` on the strided view of the
    padded input that tap sees, accumulated into the output. Backward does the same
    per offset. Uses ``kh*kw`` times less workspace, at the cost of smaller GEMMs.

Arrays are NCHW at the interface and NHWC inside (see :mod:`im2col_net.lowering`);
returned arrays may be NCHW views of NHWC memory. Every buffer is allocated in the
input's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import WindowGeometry
from ..lowering import check_padding_mode, col2im, im2col, offset_slices, pad, pad_grad

STRATEGIES = ("im2col", "strided")

__all__ = ["STRATEGIES", "ConvCache", "conv2d_forward", "conv2d_backward", "conv2d_forward_geom"]


@dataclass
class ConvCache:
    """What :func:`conv2d_backward` needs from the forward pass."""

    geometry: WindowGeometry
    groups: int
    padding_mode: str
    flip_kernel: bool
    strategy: str
    input_shape: tuple[int, int, int, int]
    out_size: tuple[int, int]
    xp: np.ndarray | None          # padded NHWC input (strided strategy)
    cols: np.ndarray | None        # (G, M, K) column matrix (im2col strategy)
    w_gemm: np.ndarray             # (G, kh, kw, Cg, Coutg) weights in GEMM order
    has_bias: bool


def conv2d_forward(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1,
                   padding_mode="zeros", flip_kernel=False, strategy="im2col"):
    """Convolve ``x`` with ``weight`` (cross-correlation unless ``flip_kernel``).

    Shapes: ``x (N, C, H, W)``, ``weight (Cout, C/groups, kh, kw)``, ``bias (Cout,)`` or
    None; returns ``y (N, Cout, Ho, Wo)`` and a cache for :func:`conv2d_backward`.
    Arguments follow ``torch.nn.functional.conv2d``; ``padding`` may also be
    ``"same"``/``"valid"`` or ``(top, bottom, left, right)``. ``padding_mode`` is
    ``"zeros"``, ``"edge"`` or ``"reflect"``. ``flip_kernel=True`` rotates the kernel
    by 180 degrees first (true convolution).
    """
    kernel = np.shape(weight)[2:] if np.ndim(weight) == 4 else None
    if kernel is None:
        raise ValueError(
            f"conv2d: weight must have shape (out_channels, in_channels/groups, kh, kw), "
            f"got shape {np.shape(weight)}"
        )
    geometry = WindowGeometry.make(kernel, stride, padding, dilation, owner="conv2d")
    return conv2d_forward_geom(x, weight, bias, geometry, groups=groups,
                               padding_mode=padding_mode, flip_kernel=flip_kernel,
                               strategy=strategy)


def _check_conv_args(x, weight, bias, geometry, groups, padding_mode, strategy, owner):
    if x.ndim != 4:
        raise ValueError(f"{owner}: expected a 4-D input (N, C, H, W), got shape {x.shape}")
    if x.dtype.kind != "f":
        raise ValueError(f"{owner}: expected a floating-point input, got dtype {x.dtype}")
    cout, cg, kh, kw = weight.shape
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{owner}: groups must be a positive int, got {groups!r}")
    if cout % groups:
        raise ValueError(f"{owner}: out_channels={cout} is not divisible by groups={groups}")
    if x.shape[1] != cg * groups:
        raise ValueError(
            f"{owner}: expected input with {cg * groups} channels (weight {weight.shape}, "
            f"groups={groups}), got input shape {x.shape}"
        )
    if weight.dtype != x.dtype:
        raise ValueError(
            f"{owner}: weight dtype {weight.dtype} does not match input dtype {x.dtype}"
        )
    if bias is not None and (bias.shape != (cout,) or bias.dtype != x.dtype):
        raise ValueError(
            f"{owner}: expected bias of shape ({cout},) and dtype {x.dtype}, "
            f"got shape {bias.shape} dtype {bias.dtype}"
        )
    if strategy not in STRATEGIES:
        raise ValueError(f"{owner}: strategy must be one of {STRATEGIES}, got {strategy!r}")
    check_padding_mode(padding_mode, geometry.padding, x.shape[2], x.shape[3], owner=owner)


def conv2d_forward_geom(x, weight, bias, geometry: WindowGeometry, *, groups=1,
                        padding_mode="zeros", flip_kernel=False, strategy="im2col",
                        owner="conv2d"):
    """:func:`conv2d_forward` with a prepared :class:`WindowGeometry` (used by layers)."""
    x = np.asarray(x)
    weight = np.asarray(weight)
    bias = None if bias is None else np.asarray(bias)
    _check_conv_args(x, weight, bias, geometry, groups, padding_mode, strategy, owner)
    n, c, h, w = x.shape
    cout = weight.shape[0]
    out_h, out_w = geometry.checked_output_size(h, w, owner=owner)

    w_eff = weight[:, :, ::-1, ::-1] if flip_kernel else weight
    kh, kw = geometry.kernel
    cg, coutg = c // groups, cout // groups
    # (Cout, Cg, kh, kw) -> (G, kh, kw, Cg, Coutg): the row order of the column matrix.
    w_gemm = np.ascontiguousarray(
        w_eff.reshape(groups, coutg, cg, kh, kw).transpose(0, 3, 4, 2, 1)
    )
    xp = pad(x.transpose(0, 2, 3, 1), geometry.padding, padding_mode)
    m = n * out_h * out_w

    if strategy == "im2col":
        cols = im2col(xp, geometry, out_h, out_w, groups)
        w_mat = w_gemm.reshape(groups, kh * kw * cg, coutg)
        if groups == 1:
            y2d = cols[0] @ w_mat[0]
        else:
            y2d = np.matmul(cols, w_mat).transpose(1, 0, 2).reshape(m, cout)
        cache_xp, cache_cols = None, cols
    else:
        y2d = np.zeros((m, cout), dtype=x.dtype)
        y3 = y2d.reshape(m, groups, coutg)
        for i, j, index in offset_slices(geometry, out_h, out_w):
            tap = xp[index].reshape(m, groups, cg)
            if groups == 1:
                y2d += tap[:, 0, :] @ w_gemm[0, i, j]
            else:
                y3 += np.matmul(tap.transpose(1, 0, 2), w_gemm[:, i, j]).transpose(1, 0, 2)
        cache_xp, cache_cols = xp, None

    if bias is not None:
        y2d += bias
    y = y2d.reshape(n, out_h, out_w, cout).transpose(0, 3, 1, 2)
    cache = ConvCache(geometry, groups, padding_mode, flip_kernel, strategy, (n, c, h, w),
                      (out_h, out_w), cache_xp, cache_cols, w_gemm, bias is not None)
    return y, cache


def conv2d_backward(dy, cache: ConvCache, *, need_input_grad: bool = True):
    """Gradients of :func:`conv2d_forward`.

    ``dy (N, Cout, Ho, Wo)`` -> ``dx (N, C, H, W)`` (None when ``need_input_grad`` is
    False), ``dw (Cout, C/groups, kh, kw)``, ``db (Cout,)`` (None without bias).
    ``dy`` is never modified.
    """
    geometry, groups = cache.geometry, cache.groups
    n, c, h, w = cache.input_shape
    out_h, out_w = cache.out_size
    g_, kh, kw, cg, coutg = cache.w_gemm.shape
    cout = groups * coutg
    m = n * out_h * out_w
    dtype = cache.w_gemm.dtype
    if dy.shape != (n, cout, out_h, out_w):
        raise ValueError(
            f"conv2d backward: expected dy of shape {(n, cout, out_h, out_w)}, got {dy.shape}"
        )
    # NHWC-contiguous dy (the usual case: it came from our own NHWC ops) reshapes for free.
    dy2d = np.asarray(dy, dtype=dtype).transpose(0, 2, 3, 1).reshape(m, cout)
    db = dy2d.sum(axis=0) if cache.has_bias else None
    padded_shape = (n,) + geometry.padded_size(h, w) + (c,)

    dxp = None
    if cache.strategy == "im2col":
        cols = cache.cols
        w_mat = cache.w_gemm.reshape(groups, kh * kw * cg, coutg)
        if groups == 1:
            dw_mat = (cols[0].T @ dy2d)[None]
            if need_input_grad:
                dcols = (dy2d @ w_mat[0].T)[None]
        else:
            dyg = dy2d.reshape(m, groups, coutg).transpose(1, 0, 2)
            dw_mat = np.matmul(cols.transpose(0, 2, 1), dyg)
            if need_input_grad:
                dcols = np.matmul(dyg, w_mat.transpose(0, 2, 1))
        if need_input_grad:
            dxp = col2im(dcols, padded_shape, geometry, out_h, out_w)
        dw_gemm = dw_mat.reshape(groups, kh, kw, cg, coutg)
    else:
        xp = cache.xp
        dw_gemm = np.empty_like(cache.w_gemm)
        if need_input_grad:
            dxp = np.zeros(padded_shape, dtype=dtype)
        dyg = dy2d.reshape(m, groups, coutg).transpose(1, 0, 2)  # (G, M, Coutg)
        for i, j, index in offset_slices(geometry, out_h, out_w):
            tap = xp[index].reshape(m, groups, cg)
            if groups == 1:
                dw_gemm[0, i, j] = tap[:, 0, :].T @ dy2d
                if need_input_grad:
                    dxp[index] += (dy2d @ cache.w_gemm[0, i, j].T).reshape(n, out_h, out_w, c)
            else:
                dw_gemm[:, i, j] = np.matmul(tap.transpose(1, 2, 0), dyg)
                if need_input_grad:
                    d_tap = np.matmul(dyg, cache.w_gemm[:, i, j].transpose(0, 2, 1))
                    dxp[index] += d_tap.transpose(1, 0, 2).reshape(n, out_h, out_w, c)

    # (G, kh, kw, Cg, Coutg) -> (Cout, Cg, kh, kw)
    dw = dw_gemm.transpose(0, 4, 3, 1, 2).reshape(cout, cg, kh, kw)
    if cache.flip_kernel:
        dw = dw[:, :, ::-1, ::-1]
    dw = np.ascontiguousarray(dw)
    dx = None
    if need_input_grad:
        dx = pad_grad(dxp, geometry.padding, cache.padding_mode).transpose(0, 3, 1, 2)
    return dx, dw, db
