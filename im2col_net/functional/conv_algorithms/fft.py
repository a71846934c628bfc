"""The FFT algorithm: per-frequency products of the padded input's spectrum (stride 1, no
dilation or groups, float32/float64; the transforms are in :mod:`..conv_fft`).

The forward pass runs per block of images like the others. The backward pass is the one
exception to the per-block interface: the weight gradient is a sum over the batch of
per-frequency products, which is cheapest as one GEMM per frequency with the whole
batch as its inner dimension, so :func:`backward_batch` runs three phases (spectra per
block of images, products per block of frequencies, inverse transforms per block of
images) on the runtime's threads itself. Every sum is inside one GEMM or in block
order, so the result does not depend on the thread count.

The FFT mixes every pixel of an image into every frequency: one NaN would spread over
the whole image, so the executor runs :mod:`.im2col` instead on non-finite data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...runtime import block_bounds, block_count, call, run_blocks, scratch
from .. import conv_fft
from .problem import Problem

NAME = "fft"

# The backward's per-frequency GEMMs run over blocks of about this many bytes of
# spectra: enough frequencies per block to amortise the Python loop, few enough to share.
FREQ_BLOCK_BYTES = 1 << 20


@dataclass
class Prepared:
    problem: Problem
    w_gemm: np.ndarray         # (1, kh, kw, C, Cout)
    spectrum: np.ndarray       # (F, C, Cout) kernel spectrum
    k_conj: np.ndarray


def supported(problem: Problem) -> str | None:
    return conv_fft.fft_supported(problem.geometry, problem.groups, problem.dtype)


def workspace_per_image(problem: Problem) -> int:
    """Bytes of one image's input and output spectra (complex, about the padded size)."""
    hp, wp = problem.padded
    return hp * (wp + 2) * problem.itemsize * (problem.c + problem.cout)


def prepare(problem: Problem, w_gemm: np.ndarray, bias) -> Prepared:
    spectrum = call(conv_fft.kernel_spectrum, w_gemm[0], problem.padded)
    return Prepared(problem, w_gemm, spectrum, np.conjugate(spectrum))


def forward_block(prep: Prepared, xp_b, bias, y_b) -> None:
    conv_fft.forward_block(xp_b, prep.k_conj, bias, y_b)


def backward_batch(prep: Prepared, xp, dy_nhwc, dxp, kept_rows, blocks, workers):
    """Whole-batch backward: ``(dw_gemm (1, kh, kw, C, Cout), db or None)``; writes the
    rows ``kept_rows`` of the padded input gradient into ``dxp`` unless it is None.
    ``blocks``: the executor's image blocks (``.count``, ``.bounds(b)``)."""
    p = prep.problem
    k = prep.spectrum
    n, hp, wp, c = xp.shape
    cout = p.cout
    fw = wp // 2 + 1
    # Whole-batch spectra that never leave this call: kept across steps in the calling
    # thread's scratch, so that each backward does not fault in fresh pages.
    x_conj = scratch("fft.x_conj", (n, hp, fw, c), k.dtype)
    d_spectrum = scratch("fft.d_spectrum", (n, hp, fw, cout), k.dtype)
    db_parts = np.empty((blocks.count, cout), dtype=p.dtype) if p.has_bias else None

    def spectra(block, _):
        start, stop = blocks.bounds(block)
        dy_b = dy_nhwc[start:stop]
        if db_parts is not None:
            np.sum(dy_b, axis=(0, 1, 2), out=db_parts[block])
        conv_fft.backward_spectra(xp[start:stop], dy_b, x_conj[start:stop],
                                  d_spectrum[start:stop])

    run_blocks(spectra, blocks.count, workers)
    g = np.empty(k.shape, dtype=k.dtype)
    freqs = hp * fw
    chunks = block_count(freqs, n * (c + cout) * k.itemsize, FREQ_BLOCK_BYTES)

    def products(chunk, _):
        part = slice(*block_bounds(chunk, freqs, chunks))
        conv_fft.backward_products(x_conj, d_spectrum, k, part, g, dxp is not None)

    run_blocks(products, chunks, workers)
    if dxp is not None:
        def inverse(block, _):
            start, stop = blocks.bounds(block)
            conv_fft.input_gradient_block(x_conj[start:stop], dxp[start:stop], kept_rows)

        run_blocks(inverse, blocks.count, workers)
    dw_gemm = call(conv_fft.weight_gradient, g, (hp, wp), p.geometry.kernel)[None]
    db = db_parts.sum(axis=0) if db_parts is not None else None
    return dw_gemm, db
