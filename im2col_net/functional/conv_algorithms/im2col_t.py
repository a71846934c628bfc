"""The transposed-columns algorithm: one GEMM per block of images on the transposed
column matrix, for few input channels (no groups).

Like :mod:`.rows` it builds the column matrix transposed, ``(kh*kw*C, m)``: for few
channels that copy moves runs of ``Wo`` numbers (:func:`~im2col_net.lowering.
im2col_transposed`) where :mod:`.im2col`'s moves runs of ``kw*C``. Unlike :mod:`.rows`,
whose GEMMs are one per output row or per kernel row and image (small ones, fast where
the BLAS has a direct kernel for small matrices), each pass here is a single GEMM over
the whole block:

* forward: ``Y = colsᵀ · W`` (+ the bias as a row of ones);
* weight gradient: ``dW = cols · dY``, the block's sum over its images inside the GEMM;
* input gradient: ``dcolsᵀ = W · dYᵀ`` written over the columns, then their col2im.

Which of the two is faster depends on the BLAS kernels: the planner measures it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...lowering import col2im_transposed, im2col_transposed, im2col_transposed_work_size
from ...runtime import scratch
from .problem import Problem

NAME = "im2col_t"


@dataclass
class Prepared:
    problem: Problem
    w_mat: np.ndarray          # (kb, Cout): column-order weights (+ the bias row)
    fold_bias: bool
    kb: int
    separate_bias = False

    def accumulator_shape(self):
        return (1, self.kb, self.problem.cout)


def supported(problem: Problem) -> str | None:
    return None if problem.groups == 1 else f"groups=1 (got groups={problem.groups})"


def workspace_per_image(problem: Problem) -> int:
    """Bytes of one image's transposed columns."""
    return problem.out_h * problem.out_w * (problem.k + 1) * problem.itemsize


def prepare(problem: Problem, w_gemm: np.ndarray, bias) -> Prepared:
    p = problem
    fold = bias is not None
    w_mat = w_gemm.reshape(p.k, p.cout)
    if fold:
        w_mat = np.concatenate([w_mat, bias.reshape(1, -1)], axis=0)
    return Prepared(p, np.ascontiguousarray(w_mat), fold, p.k + int(fold))


def _columns_t(prep: Prepared, xp_b) -> np.ndarray:
    """This thread's ``(kb, m)`` transposed column matrix of the block (the last row
    ones when the bias is folded in)."""
    p = prep.problem
    m = xp_b.shape[0] * p.out_h * p.out_w
    buffer = scratch("conv.cols_t", (prep.kb, m), p.dtype)
    size = im2col_transposed_work_size(xp_b.shape, p.geometry, p.out_h, p.out_w)
    im2col_transposed(xp_b, p.geometry, p.out_h, p.out_w, out=buffer[:p.k],
                      work=scratch("conv.planes", (size,), p.dtype) if size else None)
    if prep.fold_bias:
        buffer[p.k] = 1
    return buffer


def forward_block(prep: Prepared, xp_b, bias, y_b) -> None:
    np.matmul(_columns_t(prep, xp_b).T, prep.w_mat, out=y_b.reshape(-1, prep.problem.cout))


def backward_block(prep: Prepared, xp_b, dy_rows, dw_acc, dxp_b) -> None:
    """``dw_acc (1, kb, Cout) +=`` the block's ``dW``; ``dxp_b`` from ``W · dYᵀ``."""
    p = prep.problem
    cols = _columns_t(prep, xp_b)
    dw = np.matmul(cols, dy_rows, out=scratch("conv.dw", (prep.kb, p.cout), p.dtype))
    dw_acc[0] += dw
    if dxp_b is not None:
        # The columns are not needed any more: their rows take dcolsᵀ (K, m).
        dcols_t = cols[:p.k]
        np.matmul(prep.w_mat[:p.k], dy_rows.T, out=dcols_t)
        col2im_transposed(dcols_t, xp_b.shape, p.geometry, p.out_h, p.out_w, out=dxp_b)


def finish(prep: Prepared, dw_sum):
    p = prep.problem
    kh, kw = p.geometry.kernel
    dw_gemm = dw_sum[:, :p.k].reshape(1, kh, kw, p.c, p.cout)
    db = dw_sum[0, p.k].copy() if prep.fold_bias else None
    return dw_gemm, db
