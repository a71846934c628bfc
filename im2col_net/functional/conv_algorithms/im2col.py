"""The im2col algorithm: one column matrix and one GEMM per group, per block of images.

The textbook lowering (Chellapilla et al. 2006; the seed article's formulas):

* forward: ``cols = im2col(x)`` (one row per output position, one column per kernel
  tap and channel), then ``Y = cols · W`` (+ bias);
* backward: ``dW = colsᵀ · dY``, ``db = Σ dY``, ``dcols = dY · Wᵀ``, ``dx = col2im(dcols)``.

Without groups the bias rides along in the GEMM: a column of ones in ``cols`` and the
bias as an extra row of ``W``, so ``Y = cols · W`` adds it and ``dW = colsᵀ · dY``
sums ``db`` in its last row. The backward rebuilds the columns from the padded input
the executor keeps, which costs one in-cache copy instead of holding ``kh*kw`` times
the input between forward and backward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...lowering import col2im, im2col
from ...runtime import scratch
from .problem import Problem

NAME = "im2col"


@dataclass
class Prepared:
    problem: Problem
    w_mat: np.ndarray          # (G, kb, Coutg): W in column order (+ the bias row)
    w_t: np.ndarray            # (G, Coutg, K): its transpose without the bias row
    fold_bias: bool
    kb: int                    # columns incl. the ones column

    @property
    def separate_bias(self) -> bool:
        return self.problem.has_bias and not self.fold_bias

    def accumulator_shape(self):
        p = self.problem
        return (p.groups, self.kb, p.coutg)


def supported(problem: Problem) -> str | None:
    return None


def workspace_per_image(problem: Problem) -> int:
    """Bytes of one image's columns (what a block keeps in cache between copy and GEMM)."""
    return problem.out_h * problem.out_w * (problem.k + 1) * problem.groups * problem.itemsize


def prepare(problem: Problem, w_gemm: np.ndarray, bias, for_backward: bool = True) -> Prepared:
    """``w_gemm (G, kh, kw, Cg, Coutg)`` as the GEMM's ``(G, K, Coutg)`` matrix."""
    p = problem
    w_mat = w_gemm.reshape(p.groups, p.k, p.coutg)
    w_t = w_mat.transpose(0, 2, 1)
    fold = p.groups == 1 and bias is not None
    if fold:
        w_mat = np.concatenate([w_mat, bias.reshape(1, 1, -1)], axis=1)
    return Prepared(p, w_mat, w_t, fold, p.k + int(fold))


def _columns(prep: Prepared, xp_b):
    """The block's ``(G, m, kb)`` column matrix, in this thread's scratch."""
    p = prep.problem
    m = xp_b.shape[0] * p.out_h * p.out_w
    cols = scratch("conv.cols", (p.groups, m, prep.kb), p.dtype)
    im2col(xp_b, p.geometry, p.out_h, p.out_w, p.groups, out=cols[:, :, :p.k])
    if prep.fold_bias:
        cols[:, :, p.k] = 1
    return cols


def _by_group(prep: Prepared, rows):
    """``(m, Cout)`` rows -> ``(G, m, Coutg)`` view: the GEMM's group-major layout."""
    p = prep.problem
    return rows.reshape(-1, p.groups, p.coutg).transpose(1, 0, 2)


def forward_block(prep: Prepared, xp_b, bias, y_b, start: int) -> None:
    """``y_b (n, Ho, Wo, Cout) = cols · W (+ b)`` for the padded NHWC images ``xp_b``."""
    p = prep.problem
    y_rows = y_b.reshape(-1, p.cout)
    np.matmul(_columns(prep, xp_b), prep.w_mat, out=_by_group(prep, y_rows))
    if prep.separate_bias:
        y_rows += bias


def backward_block(prep: Prepared, xp_b, dy_rows, dw_acc, dxp_b) -> None:
    """``dw_acc (G, kb, Coutg) += colsᵀ · dY``; ``dxp_b = col2im(dY · Wᵀ)`` unless None."""
    p = prep.problem
    cols = _columns(prep, xp_b)
    dy_g = _by_group(prep, dy_rows)
    dw_b = scratch("conv.dw", dw_acc.shape, p.dtype)
    np.matmul(cols.transpose(0, 2, 1), dy_g, out=dw_b)
    dw_acc += dw_b
    if dxp_b is not None:
        dcols = cols[:, :, :p.k]      # the columns are spent: their buffer takes dcols
        np.matmul(dy_g, prep.w_t, out=dcols)
        col2im(dcols, xp_b.shape, p.geometry, p.out_h, p.out_w, out=dxp_b)


def finish(prep: Prepared, dw_sum):
    """``(dw_gemm (G, kh, kw, Cg, Coutg), db or None)`` from the summed accumulator."""
    p = prep.problem
    kh, kw = p.geometry.kernel
    dw_gemm = dw_sum[:, :p.k].reshape(p.groups, kh, kw, p.cg, p.coutg)
    db = dw_sum[0, p.k].copy() if prep.fold_bias else None
    return dw_gemm, db
