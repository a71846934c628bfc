"""The transposed-columns algorithm: one GEMM per block of images on the transposed
column matrix, for few input channels (no groups).

It builds the column matrix transposed, ``(kh*kw*C, m)``, as :mod:`.rows` does on its
fallback path: for few channels that copy
(:func:`~im2col_net.lowering.im2col_transposed`) moves runs of ``Wo`` numbers where
:mod:`.im2col`'s moves runs of ``kw*C``. Unlike :mod:`.rows`, whose GEMMs are one per
output row or per kernel row and image (small ones, fast where the BLAS has a direct
kernel for small matrices), each pass here is a single GEMM over the whole block:

* forward: ``Y = colsᵀ · W`` (+ the bias as a row of ones);
* weight gradient: ``dW = cols · dY``, the block's sum over its images inside the GEMM;
* input gradient: ``dcolsᵀ = W · dYᵀ`` written over the columns, then their col2im.

Which of the two is faster depends on the BLAS kernels: the planner measures it. The
weights, the columns, ``finish`` and what applies are :mod:`.rows`' own.
"""

from __future__ import annotations

import numpy as np

from ...lowering import col2im_transposed
from ...runtime import scratch
from .rows import Prepared, columns_t, finish, prepare, supported, workspace_per_image

__all__ = ["NAME", "Prepared", "supported", "workspace_per_image", "prepare",
           "forward_block", "backward_block", "finish"]

NAME = "im2col_t"


def forward_block(prep: Prepared, xp_b, bias, y_b, start: int) -> None:
    np.matmul(columns_t(prep, xp_b).T, prep.w_mat, out=y_b.reshape(-1, prep.problem.cout))


def backward_block(prep: Prepared, xp_b, dy_rows, dw_acc, dxp_b) -> None:
    """``dw_acc (1, kb, Cout) +=`` the block's ``dW``; ``dxp_b`` from ``W · dYᵀ``."""
    p = prep.problem
    cols = columns_t(prep, xp_b)
    dw_acc[0] += np.matmul(cols, dy_rows, out=scratch("conv.dw", (prep.kb, p.cout), p.dtype))
    if dxp_b is not None:
        # The columns are not needed any more: their rows take dcolsᵀ (K, m).
        dcols_t = cols[:p.k]
        np.matmul(prep.w_t.T, dy_rows.T, out=dcols_t)
        col2im_transposed(dcols_t, xp_b.shape, p.geometry, p.out_h, p.out_w, out=dxp_b)
