"""The row/plane algorithm for few input channels: small GEMMs read in place, per output
row or per image, instead of one GEMM on a column matrix (no groups).

With few channels a column-matrix row holds only ``kh*kw*C`` numbers, so building it
moves short runs. This algorithm copies long runs instead and lets each GEMM read its
operand as a strided view:

* forward: :func:`~im2col_net.lowering.im2row` copies each padded row's ``kw*C``
  column-shifted segments once; output row ``oh`` is then one ``(Wo, K) · (K, Cout)``
  GEMM on a view of them (needs vertical dilation 1 and ``kh >= 2``; otherwise the
  transposed column matrix, one GEMM per image);
* weight gradient: the column planes (:func:`~im2col_net.lowering.column_planes`) make
  each kernel row's columns of one image a contiguous ``(kw*C, Ho*Wo)`` matrix, so
  ``dW[i] = Σ_n planes[i, n] · dY[n]`` is one GEMM per kernel row and image (needs
  vertical stride 1; otherwise per image on the transposed columns);
* input gradient: ``dcols = dY · Wᵀ`` per image into the transposed column matrix,
  then its col2im.

A bias rides along as a segment (or row) of ones, as in :mod:`.im2col`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...lowering import (
    col2im_transposed,
    column_planes,
    column_planes_shape,
    im2col_transposed,
    im2col_transposed_work_size,
    im2row,
    im2row_shape,
    im2row_weights,
    plane_windows,
)
from ...runtime import scratch
from .problem import Problem

NAME = "rows"


@dataclass
class Prepared:
    problem: Problem
    w_mat: np.ndarray          # (kb, Cout): column-order weights (+ the bias row)
    w_t: np.ndarray            # (Cout, K)
    w_rows: np.ndarray | None  # im2row's (K', Cout) weights, or None when it does not apply
    fold_bias: bool
    kb: int
    plane_wgrad: bool          # dW from the column planes (vertical stride 1)
    separate_bias = False

    def accumulator_shape(self):
        return (1, self.kb, self.problem.cout)


def supported(problem: Problem) -> str | None:
    return None if problem.groups == 1 else f"groups=1 (got groups={problem.groups})"


def workspace_per_image(problem: Problem) -> int:
    """Bytes of one image's transposed columns (the largest buffer the block uses)."""
    return problem.out_h * problem.out_w * (problem.k + 1) * problem.itemsize


def prepare(problem: Problem, w_gemm: np.ndarray, bias, for_backward: bool = True) -> Prepared:
    p = problem
    kh, kw = p.geometry.kernel
    fold = bias is not None
    w_mat = w_gemm.reshape(p.k, p.cout)
    w_t = w_mat.T
    if fold:
        w_mat = np.concatenate([w_mat, bias.reshape(1, -1)], axis=0)
    w_rows = None
    if p.geometry.dilation[0] == 1 and kh >= 2:
        w_rows = im2row_weights(w_gemm.reshape(kh, kw * p.c, p.cout), bias)
    return Prepared(p, w_mat, w_t, w_rows, fold, p.k + int(fold), p.geometry.stride[0] == 1)


def columns_t(prep: Prepared, xp_b, fill=True):
    """This thread's ``(kb, m)`` transposed column matrix of the block (filled unless
    ``fill`` is False: then only the buffer, for ``dcols``)."""
    p = prep.problem
    m = xp_b.shape[0] * p.out_h * p.out_w
    buffer = scratch("conv.cols_t", (prep.kb, m), p.dtype)
    if fill:
        size = im2col_transposed_work_size(xp_b.shape, p.geometry, p.out_h, p.out_w)
        im2col_transposed(xp_b, p.geometry, p.out_h, p.out_w, out=buffer[:p.k],
                          work=scratch("conv.planes", (size,), p.dtype) if size else None)
        if prep.fold_bias:
            buffer[p.k] = 1
    return buffer


def _per_image(a2d, images):
    """``(m, k)`` -> ``(images, m/images, k)``: splitting one axis is always a view."""
    return a2d.reshape(images, -1, a2d.shape[-1])


def forward_block(prep: Prepared, xp_b, bias, y_b, start: int) -> None:
    """One GEMM per output row from im2row's segments, else one per image."""
    p = prep.problem
    images = xp_b.shape[0]
    if prep.w_rows is not None:
        size = math.prod(im2row_shape(xp_b.shape, p.geometry, p.out_h, p.out_w,
                                      ones=prep.fold_bias))
        windows = im2row(xp_b, p.geometry, p.out_h, p.out_w, ones=prep.fold_bias,
                         work=scratch("conv.rows", (size,), p.dtype))
        np.matmul(windows, prep.w_rows, out=y_b)
        return
    cols = columns_t(prep, xp_b).T
    np.matmul(_per_image(cols, images), prep.w_mat, out=_per_image(y_b.reshape(-1, p.cout),
                                                                   images))


def _plane_weight_grad(prep: Prepared, xp_b, dy_rows, dw_acc) -> None:
    """``dw_acc (kb, Cout) +=`` the block's weight (and folded bias) gradient: per kernel
    row ``i`` and image ``n`` one ``(S, Ho*Wo) · (Ho*Wo, Cout)`` GEMM on the column
    planes read in place, then the sum over the block's images."""
    p = prep.problem
    images = xp_b.shape[0]
    kh, kw = p.geometry.kernel
    data = kw * p.c
    segments = data + int(prep.fold_bias)
    size = math.prod(column_planes_shape(xp_b.shape, p.geometry, p.out_h, p.out_w,
                                         ones=prep.fold_bias))
    planes = column_planes(xp_b, p.geometry, p.out_h, p.out_w, ones=prep.fold_bias,
                           work=scratch("conv.planes", (size,), p.dtype))
    windows = plane_windows(planes, p.geometry, p.out_h, p.out_w)
    products = scratch("conv.dw_planes", (kh, images, segments, p.cout), p.dtype)
    np.matmul(windows, dy_rows.reshape(images, -1, p.cout), out=products)
    summed = scratch("conv.dw_rows", (kh, segments, p.cout), p.dtype)
    np.sum(products, axis=1, out=summed)
    dw_acc[:p.k].reshape(kh, data, p.cout)[...] += summed[:, :data]
    if prep.fold_bias:
        dw_acc[p.k] += summed[0, data]


def backward_block(prep: Prepared, xp_b, dy_rows, dw_acc, dxp_b) -> None:
    """``dw_acc (1, kb, Cout) +=`` the block's ``dW``; ``dxp_b`` from ``dY · Wᵀ``."""
    p = prep.problem
    images = xp_b.shape[0]
    if prep.plane_wgrad:
        _plane_weight_grad(prep, xp_b, dy_rows, dw_acc[0])
        buffer = columns_t(prep, xp_b, fill=False) if dxp_b is not None else None
    else:
        buffer = columns_t(prep, xp_b)
        parts = scratch("conv.dw_images", (images, prep.kb, p.cout), p.dtype)
        np.matmul(buffer.reshape(prep.kb, images, -1).transpose(1, 0, 2),
                  _per_image(dy_rows, images), out=parts)
        dw_acc[0] += np.sum(parts, axis=0, out=scratch("conv.dw", parts.shape[1:], p.dtype))
    if dxp_b is not None:
        dcols = buffer[:p.k].T          # (m, K), written per image
        np.matmul(_per_image(dy_rows, images), prep.w_t, out=_per_image(dcols, images))
        col2im_transposed(buffer[:p.k], xp_b.shape, p.geometry, p.out_h, p.out_w, out=dxp_b)


def finish(prep: Prepared, dw_sum):
    p = prep.problem
    kh, kw = p.geometry.kernel
    dw_gemm = dw_sum[:, :p.k].reshape(1, kh, kw, p.c, p.cout)
    db = dw_sum[0, p.k].copy() if prep.fold_bias else None
    return dw_gemm, db
