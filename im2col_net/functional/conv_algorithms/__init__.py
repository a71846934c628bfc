"""The convolution algorithms, siblings behind one interface, and the cost model the
planner's ``estimate`` mode ranks them by.

Each module (:mod:`.im2col`, :mod:`.rows`, :mod:`.im2col_t`, :mod:`.strided`, :mod:`.fft`)
works on one block of padded NHWC images and knows nothing of threads:

``supported(problem)``          None, or why the algorithm cannot run this problem
``workspace_per_image(problem)`` bytes of work per image (sizes the blocks)
``prepare(problem, w_gemm, b, for_backward)``  weights in the algorithm's GEMM order
                                  (``for_backward=False``: no backward is expected)
``forward_block(prep, xp_b, b, y_b, start)``     writes the block's output (``start``:
                                  its first image's index in the batch)
``backward_block(prep, xp_b, dy_b, dw_acc, dxp_b)`` adds the block's ``dW`` (and a
                                  folded ``db``) into ``dw_acc``, writes its ``dx``
``finish(prep, dw_sum)``          ``(dW, db)`` from the summed accumulators

(:mod:`.fft` replaces the last two by one whole-batch ``backward_batch``.) The executor
in :mod:`im2col_net.functional.conv` cuts the batch into blocks, runs them on the
runtime's threads and sums the weight gradients in block order.
"""

from __future__ import annotations

import math

from ...runtime import block_count
from ..conv_fft import MATRIX_DFT_MAX
from . import fft, im2col, im2col_t, rows, strided
from .problem import Problem

__all__ = ["ALGORITHMS", "DEFAULT_BLOCK_BYTES", "Problem", "block_count_for", "estimated_cost",
           "get", "supported"]

ALGORITHMS = {m.NAME: m for m in (im2col, rows, strided, fft, im2col_t)}


def get(name: str):
    return ALGORITHMS[name]


def supported(name: str, problem: Problem) -> str | None:
    """None when ``name`` can run ``problem``, else the reason it cannot."""
    return ALGORITHMS[name].supported(problem)


# The cost model's nominal machine. Only the ratios matter (the model ranks algorithms,
# it predicts no time): GEMMs at a large-GEMM rate, window copies and transforms far
# below it, a fixed cost per call. The values were chosen once so that the ranking
# matches the measured one on the four built-in models (docs/performance.md); the
# planner's "measure" mode is the one that adapts to the machine at hand.
GEMM_FLOPS = 50e9          # a GEMM with large dimensions
COPY_BYTES = 2e9           # window copies of long contiguous runs
CALL_SECONDS = 0.5e-6      # fixed cost of one GEMM or ufunc call from Python
FFT_FLOPS = 2.5e9          # transforms run far below the GEMM rate
EDGE = 4                   # a GEMM dimension (or copy run) of d runs at d / (d + EDGE)
# The FFT path's transforms and products are batches of thousands of small GEMMs on
# strided operands, which run this much below what _gemm's edge model gives them.
BATCHED_GEMM_SLOWDOWN = 1.4


def _eff(*dims) -> float:
    return math.prod(d / (d + EDGE) for d in dims)


def _copy(nbytes, run) -> float:
    """Model seconds of a window copy moving contiguous runs of ``run`` elements (short
    runs pay a per-run overhead, like a short GEMM dimension)."""
    return nbytes / (COPY_BYTES * _eff(run))


def _gemm(m, n, k, calls=1) -> float:
    """Model seconds of ``calls`` GEMMs of ``(m, k) · (k, n)``."""
    return calls * (2.0 * m * n * k / (GEMM_FLOPS * _eff(m, n, k)) + CALL_SECONDS)


def estimated_cost(name: str, problem: Problem, blocks: int, input_grad: bool = True) -> float:
    """Model seconds of one forward + backward of ``problem`` in ``blocks`` blocks by
    algorithm ``name`` (deterministic: a function of the shapes only)."""
    p = problem
    kh, kw = p.geometry.kernel
    n, hw, item = p.n, p.out_h * p.out_w, p.itemsize
    m = max(1, n * hw // max(blocks, 1))         # rows of one block's GEMM
    passes = 3 if input_grad else 2
    in_bytes = n * p.h * p.w * p.c * item
    if name == "im2col":
        cols = n * hw * (p.k + 1) * item
        run = kw * p.cg if p.geometry.dilation[1] == 1 and p.groups == 1 else p.cg
        return (passes * _gemm(m, p.coutg, p.k + 1, blocks * p.groups)
                + _copy((2 + int(input_grad)) * cols, run))
    if name == "rows":
        images = n
        fwd = (_gemm(p.out_w, p.cout, p.k + kh, images * p.out_h)
               if p.geometry.dilation[0] == 1 and kh >= 2 else _gemm(hw, p.cout, p.k + 1, images))
        dw = _gemm(kw * p.c + 1, p.cout, hw, images * kh)
        dx = _gemm(hw, p.k, p.cout, images) if input_grad else 0.0
        copies = (2 * kw * in_bytes + (2 * n * hw * p.k * item if input_grad else 0))
        return fwd + dw + dx + _copy(copies, p.out_w)
    if name == "im2col_t":
        # The transposed columns are built in the forward and again in the backward (the
        # column planes, kw copies of the input, then the rows), and each GEMM's BLAS
        # packs them once more, reading the transposed operand with a stride.
        cols = n * hw * (p.k + 1) * item
        return (_gemm(m, p.cout, p.k + 1, blocks) + _gemm(p.k + 1, p.cout, m, blocks)
                + (_gemm(p.k, m, p.cout, blocks) if input_grad else 0.0)
                + _copy(2 * (2 + int(input_grad)) * cols + 2 * kw * in_bytes, p.out_w))
    if name == "strided":
        taps = kh * kw
        gemms = passes * _gemm(m, p.coutg, p.cg, blocks * p.groups * taps)
        return gemms + _copy(passes * taps * n * hw * p.c * item, p.cg)
    if name == "fft":
        hp, wp = fft.transform_size(p)
        fw = wp // 2 + 1
        freqs = hp * fw
        if max(p.padded) <= MATRIX_DFT_MAX:
            # DFT-matrix transforms: GEMMs along H per image and along W per image row.
            def spectrum(h, w, c):
                return _gemm(2 * hp, w * c, h, n) + _gemm(2 * fw, c, 2 * w, n * hp)

            def inverse(h, w, c):
                return _gemm(2 * w, c, 2 * fw, n * hp) + _gemm(h, w * c, 2 * hp, n)

            # The input's spectrum once (the backward reuses the forward's), dy's, and
            # the inverses of y and dx.
            transforms = (spectrum(p.h, p.w, p.c) + spectrum(p.out_h, p.out_w, p.cout)
                          + inverse(p.out_h, p.out_w, p.cout)
                          + (inverse(p.h, p.w, p.c) if input_grad else 0.0))
        else:
            planes = n * (p.c + 2 * p.cout + (p.c if input_grad else 0))
            transforms = planes * 2.5 * hp * wp * math.log2(max(hp * wp, 2)) / FFT_FLOPS
        # Per frequency one real GEMM on split spectra (4 real multiply-adds per complex
        # one): the forward per block of images, the backward's two over the batch.
        products = (_gemm(max(1, n // max(blocks, 1)), 2 * p.cout, 2 * p.c, freqs * blocks)
                    + _gemm(2 * p.c, 2 * p.cout, n, freqs)
                    + (_gemm(n, 2 * p.c, 2 * p.cout, freqs) if input_grad else 0.0))
        # The kernel matrix (two GEMMs per input channel and two block copies) and the
        # weight gradient (its four blocks combined, then one GEMM to the taps).
        k_bytes = freqs * 4 * p.c * p.cout * item
        kernel = (2 * _gemm(freqs, p.cout, kh * kw, p.c) + _copy(2 * k_bytes, 2 * p.cout)
                  + _copy(k_bytes, p.cout) + 4 * _gemm(kh * kw, p.c * p.cout, hp))
        return BATCHED_GEMM_SLOWDOWN * (transforms + products) + kernel
    raise KeyError(name)


# Default block budget: a block's work buffer should stay in one core's share of the
# cache between the copy that writes it and the GEMM that reads it; the FFT's blocks
# are fewer and larger because each block pays per-call transform overheads.
DEFAULT_BLOCK_BYTES = {"im2col": 2 << 20, "rows": 2 << 20, "strided": 2 << 20,
                       "fft": 4 << 20, "im2col_t": 2 << 20}


def block_count_for(name: str, problem: Problem, block_bytes: int,
                    min_blocks: int | None = None) -> int:
    """Blocks of whole images the executor cuts ``problem``'s batch into for algorithm
    ``name`` with a ``block_bytes`` budget and at least ``min_blocks`` blocks when the
    batch allows (None: the runtime's default; a function of the shapes only)."""
    return block_count(problem.n, ALGORITHMS[name].workspace_per_image(problem), block_bytes,
                       min_blocks)
