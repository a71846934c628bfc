"""The strided algorithm: one GEMM per kernel offset, no column matrix.

Kernel offset ``(i, j)`` sees a strided view of the padded input (its "tap"); the
convolution is the sum over offsets of ``tap · W[i, j]``. Backward does the same per
offset: ``dW[i, j] = tapᵀ · dY`` and ``dx[tap] += dY · W[i, j]ᵀ``. The workspace is one
tap, ``kh*kw`` times less than the column matrix, at the cost of ``kh*kw`` smaller GEMMs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...lowering import offset_slices
from ...runtime import scratch
from .problem import Problem

NAME = "strided"


@dataclass
class Prepared:
    problem: Problem
    w_gemm: np.ndarray          # (G, kh, kw, Cg, Coutg)
    fold_bias = False

    @property
    def separate_bias(self) -> bool:
        return self.problem.has_bias

    def accumulator_shape(self):
        return self.w_gemm.shape


def supported(problem: Problem) -> str | None:
    return None


def workspace_per_image(problem: Problem) -> int:
    """Bytes of one image's tap plus its output (what one offset's GEMM touches)."""
    return problem.out_h * problem.out_w * (problem.c + problem.cout) * problem.itemsize


def prepare(problem: Problem, w_gemm: np.ndarray, bias, for_backward: bool = True) -> Prepared:
    return Prepared(problem, w_gemm)


def _by_group(p: Problem, rows):
    return rows.reshape(-1, p.groups, p.coutg).transpose(1, 0, 2)


def _taps(p: Problem, xp_b):
    """``((i, j), index, tap)`` per kernel offset: ``xp_b[index]`` is what the offset
    sees, ``tap`` a ``(G, m, Cg)`` view of a scratch copy of it."""
    m = xp_b.shape[0] * p.out_h * p.out_w
    for i, j, index in offset_slices(p.geometry, p.out_h, p.out_w):
        tap = scratch("conv.tap", xp_b[index].shape, p.dtype)
        np.copyto(tap, xp_b[index])
        yield (i, j), index, tap.reshape(m, p.groups, p.cg).transpose(1, 0, 2)


def forward_block(prep: Prepared, xp_b, bias, y_b, start: int) -> None:
    """``y_b = Σ over offsets of tap · W[i, j]`` (+ b)."""
    p = prep.problem
    y_rows = y_b.reshape(-1, p.cout)
    y_g = _by_group(p, y_rows)
    product = scratch("conv.product", y_g.shape, p.dtype)
    for n, ((i, j), _, tap) in enumerate(_taps(p, xp_b)):
        np.matmul(tap, prep.w_gemm[:, i, j], out=y_g if n == 0 else product)
        if n:
            y_g += product
    if bias is not None:
        y_rows += bias


def backward_block(prep: Prepared, xp_b, dy_rows, dw_acc, dxp_b) -> None:
    """Per offset: ``dW[i, j] += tapᵀ · dY``; ``dxp_b[index] += dY · W[i, j]ᵀ``."""
    p = prep.problem
    dy_g = _by_group(p, dy_rows)
    if dxp_b is not None:
        dxp_b[...] = 0
        d_tap = scratch("conv.dtap", (p.groups, dy_rows.shape[0], p.cg), p.dtype)
    for (i, j), index, tap in _taps(p, xp_b):
        dw_acc[:, i, j] += np.matmul(tap.transpose(0, 2, 1), dy_g)
        if dxp_b is not None:
            np.matmul(dy_g, prep.w_gemm[:, i, j].transpose(0, 2, 1), out=d_tap)
            target = dxp_b[index]
            target += d_tap.transpose(1, 0, 2).reshape(target.shape)


def finish(prep: Prepared, dw_sum):
    return dw_sum, None
