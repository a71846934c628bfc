"""Transposed 2-D convolution: the adjoint of :mod:`im2col_net.functional.conv`.

A transposed convolution maps every input pixel to a whole (dilated) kernel-sized patch
of the output, patches overlapping where ``stride < kernel``. With the same lowering as
the direct convolution that is one GEMM and one col2im:

forward
    ``cols (G, N*H*W, kh*kw*Cout/G) = x (G, N*H*W, Cin/G) @ W (G, Cin/G, kh*kw*Cout/G)``,
    then col2im scatters the columns into a zero-padded output, whose padding is cut off.
backward
    pad ``dy``, im2col it (the same windows), then ``dx = dcols @ W^T`` and
    ``dW = x^T @ dcols``.

The windows are described by the :class:`~im2col_net.geometry.WindowGeometry` of the
direct convolution that takes the output back to the input (same kernel, stride,
dilation, padding), so ``lowering.im2col``/``col2im`` are reused unchanged.
Arrays are NCHW at the interface and NHWC inside; ``y`` may be an NCHW view of NHWC
memory. Every buffer is in the input's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import WindowGeometry, as_pair, conv_transpose_output_size
from ..lowering import col2im, im2col, pad
from .conv_args import check_conv_args, check_dy, native

__all__ = [
    "ConvTransposeCache",
    "conv_transpose2d_geometry",
    "conv_transpose2d_output_size",
    "conv_transpose2d_forward",
    "conv_transpose2d_forward_geom",
    "conv_transpose2d_backward",
]


@dataclass
class ConvTransposeCache:
    """What :func:`conv_transpose2d_backward` needs from the forward pass."""

    geometry: WindowGeometry
    groups: int
    input_shape: tuple[int, int, int, int]
    out_size: tuple[int, int]
    x_groups: np.ndarray        # (G, N*H*W, Cin/G) input in GEMM order
    w_gemm: np.ndarray          # (G, Cin/G, kh*kw*Cout/G) weights in GEMM order
    has_bias: bool


def conv_transpose2d_geometry(kernel_size, stride=1, padding=0, dilation=1, output_padding=0,
                              *, owner="conv_transpose2d"):
    """Validate torch-style arguments; returns ``(geometry, output_padding pair)``.

    ``padding`` is an int or a pair (symmetric, as in torch); ``output_padding`` must be
    smaller than the stride or the dilation along each axis.
    """
    kernel = as_pair(kernel_size, "kernel_size", owner=owner)
    stride_ = as_pair(stride, "stride", owner=owner)
    dilation_ = as_pair(dilation, "dilation", owner=owner)
    ph, pw = as_pair(padding, "padding", minimum=0, owner=owner)
    out_pad = as_pair(output_padding, "output_padding", minimum=0, owner=owner)
    for op, s, d in zip(out_pad, stride_, dilation_, strict=True):
        if op >= max(s, d):
            raise ValueError(
                f"{owner}: output_padding must be smaller than stride or dilation, got "
                f"output_padding={out_pad}, stride={stride_}, dilation={dilation_}"
            )
    return WindowGeometry(kernel, stride_, (ph, ph, pw, pw), dilation_), out_pad


def conv_transpose2d_output_size(geometry: WindowGeometry, output_padding, height, width,
                                 *, owner=None):
    """``(Hout, Wout)`` of a transposed convolution of an ``height x width`` input; with
    an ``owner``, ``ValueError`` naming it when that size is not positive."""
    top, bottom, left, right = geometry.padding
    out_h, out_w = (
        conv_transpose_output_size(height, geometry.kernel[0], geometry.stride[0], top + bottom,
                                   geometry.dilation[0], output_padding[0]),
        conv_transpose_output_size(width, geometry.kernel[1], geometry.stride[1], left + right,
                                   geometry.dilation[1], output_padding[1]),
    )
    if owner is not None and (out_h <= 0 or out_w <= 0):
        raise ValueError(
            f"{owner}: output size {out_h}x{out_w} is not positive for input {height}x{width}, "
            f"kernel {geometry.kernel}, stride {geometry.stride}, padding {geometry.padding}, "
            f"dilation {geometry.dilation}, output_padding {tuple(output_padding)}"
        )
    return out_h, out_w


def conv_transpose2d_forward(x, weight, bias=None, *, stride=1, padding=0, output_padding=0,
                             groups=1, dilation=1):
    """Transposed convolution, arguments as ``torch.nn.functional.conv_transpose2d``.

    Shapes: ``x (N, Cin, H, W)``, ``weight (Cin, Cout/groups, kh, kw)``, ``bias (Cout,)``
    or None; returns ``y (N, Cout, Hout, Wout)`` with ``Hout = (H-1)*stride - 2*padding +
    dilation*(kh-1) + output_padding + 1`` and a cache for the backward pass.
    """
    if np.ndim(weight) != 4:
        raise ValueError(
            f"conv_transpose2d: weight must have shape (in_channels, out_channels/groups, "
            f"kh, kw), got shape {np.shape(weight)}"
        )
    geometry, out_pad = conv_transpose2d_geometry(np.shape(weight)[2:], stride, padding,
                                                  dilation, output_padding)
    return conv_transpose2d_forward_geom(x, weight, bias, geometry, out_pad, groups=groups)


def conv_transpose2d_forward_geom(x, weight, bias, geometry: WindowGeometry, output_padding,
                                  *, groups=1, owner="conv_transpose2d"):
    """:func:`conv_transpose2d_forward` with a prepared geometry (used by layers)."""
    x, weight, bias = native(x), native(weight), native(bias)
    check_conv_args(x, weight, bias, groups, owner, transposed=True)
    n, cin, h, w = x.shape
    _, coutg, kh, kw = weight.shape
    cout, cing = coutg * groups, cin // groups
    out_h, out_w = conv_transpose2d_output_size(geometry, output_padding, h, w, owner=owner)
    m = n * h * w
    # (Cin, Coutg, kh, kw) -> (G, Cing, kh, kw, Coutg): the column order im2col uses.
    w_gemm = np.ascontiguousarray(
        weight.reshape(groups, cing, coutg, kh, kw).transpose(0, 1, 3, 4, 2)
    ).reshape(groups, cing, kh * kw * coutg)
    x_groups = np.ascontiguousarray(
        x.transpose(0, 2, 3, 1).reshape(m, groups, cing).transpose(1, 0, 2)
    )
    cols = x_groups[0] @ w_gemm[0] if groups == 1 else np.matmul(x_groups, w_gemm)
    cols = cols.reshape(groups, m, kh * kw * coutg)
    padded_shape = (n,) + geometry.padded_size(out_h, out_w) + (cout,)
    yp = col2im(cols, padded_shape, geometry, h, w)
    top, _, left, _ = geometry.padding
    y = yp[:, top:top + out_h, left:left + out_w]
    if bias is not None:
        y = y + bias
    cache = ConvTransposeCache(geometry, groups, (n, cin, h, w), (out_h, out_w), x_groups,
                               w_gemm, bias is not None)
    return y.transpose(0, 3, 1, 2), cache


def conv_transpose2d_backward(dy, cache: ConvTransposeCache, *, need_input_grad: bool = True):
    """Gradients of :func:`conv_transpose2d_forward`.

    ``dy (N, Cout, Hout, Wout)`` -> ``dx (N, Cin, H, W)`` (None when ``need_input_grad``
    is False), ``dw (Cin, Cout/groups, kh, kw)``, ``db (Cout,)`` (None without bias).
    ``dy`` is never modified.
    """
    geometry, groups = cache.geometry, cache.groups
    n, cin, h, w = cache.input_shape
    out_h, out_w = cache.out_size
    g_, cing, k = cache.w_gemm.shape
    kh, kw = geometry.kernel
    coutg = k // (kh * kw)
    cout = coutg * groups
    dtype = cache.w_gemm.dtype
    dy = check_dy(dy, (n, cout, out_h, out_w), dtype, "conv_transpose2d")
    dy_nhwc = dy.transpose(0, 2, 3, 1)
    db = dy_nhwc.sum(axis=(0, 1, 2)) if cache.has_bias else None
    # The padded border of the forward output was cut off, so its gradient is zero.
    dcols = im2col(pad(dy_nhwc, geometry.padding), geometry, h, w, groups)  # (G, M, K)
    x_groups = cache.x_groups
    if groups == 1:
        dw_gemm = (x_groups[0].T @ dcols[0])[None]
    else:
        dw_gemm = np.matmul(x_groups.transpose(0, 2, 1), dcols)
    # (G, Cing, kh, kw, Coutg) -> (Cin, Coutg, kh, kw)
    dw = np.ascontiguousarray(
        dw_gemm.reshape(groups, cing, kh, kw, coutg).transpose(0, 1, 4, 2, 3)
    ).reshape(cin, coutg, kh, kw)
    dx = None
    if need_input_grad:
        if groups == 1:
            dx2d = dcols[0] @ cache.w_gemm[0].T
        else:
            dx2d = np.matmul(dcols, cache.w_gemm.transpose(0, 2, 1)).transpose(1, 0, 2)
        dx = dx2d.reshape(n, h, w, cin).transpose(0, 3, 1, 2)
    return dx, dw, db
