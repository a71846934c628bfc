"""The FFT algorithm: per-frequency products of the padded input's spectrum (stride 1, no
dilation or groups, float32/float64; the transforms are in :mod:`..conv_fft`).

With zero padding and DFT-matrix transforms, the transforms run on a grid shorter than
the padded input (:func:`transform_size`: 16x16 instead of 18x18 for 14x14 images and a
5x5 kernel, a fifth fewer frequencies), on which the wrap-around of the circular
convolution reads only zeros.

The forward pass runs per block of images like the others and keeps the input's spectrum
(in :class:`Prepared`, for the backward, up to :data:`KEEP_SPECTRUM_BYTES`, unless no
backward is expected). The
backward pass is the one exception to the per-block interface: the weight gradient is a
sum over the batch of per-frequency products, which is cheapest as one GEMM per
frequency with the whole batch as its inner dimension, so :func:`backward_batch` runs
three phases (the spectrum of ``dy`` per block of images, products per block of
frequencies, then in one region the inverse transforms per block of images and the
weight taps per block of channels) on the runtime's threads itself. Every sum is inside
one GEMM or in block order, so the result does not depend on the thread count.

The FFT mixes every pixel of an image into every frequency: one NaN would spread over
the whole image, so the executor runs :mod:`.im2col` instead on non-finite data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...runtime import block_bounds, block_count, run_blocks, scratch
from .. import conv_fft
from .problem import Problem

NAME = "fft"

# The backward's per-frequency GEMMs run over blocks of about this many bytes of
# spectra: enough frequencies per block to amortise the Python loop, few enough to share.
FREQ_BLOCK_BYTES = 1 << 20
# The forward keeps the input's spectrum for the backward up to this size; a larger
# batch (inference on many images at once, say) has the backward transform it again
# rather than hold as much memory again as the padded input.
KEEP_SPECTRUM_BYTES = 64 << 20


@dataclass
class Prepared:
    problem: Problem
    w_gemm: np.ndarray         # (1, kh, kw, C, Cout)
    k_matrix: np.ndarray       # (F, 2C, 2Cout): conv_fft.kernel_matrix
    x_spectrum: np.ndarray | None  # (N, P, Q//2+1, 2, C): the forward's, or None


def supported(problem: Problem) -> str | None:
    return conv_fft.fft_supported(problem.geometry, problem.groups, problem.dtype)


def transform_size(problem: Problem) -> tuple[int, int]:
    """``(P, Q)``: the grid the transforms run on. It is the padded size, except where
    the images are transformed from their unpadded interior (:func:`_images`): then a
    circular grid of ``h + max(top, bottom)`` rows (and likewise for columns) gives the
    same results, because every position a window reads past the grid's end wraps onto
    the zeros before the interior or after it. It is kept at least as long as the
    output and the kernel, whose rows and taps are read from it by position.
    """
    if not _from_interior(problem):
        return problem.padded
    top, bottom, left, right = problem.geometry.padding
    kh, kw = problem.geometry.kernel
    return (max(problem.h + max(top, bottom), problem.out_h, kh),
            max(problem.w + max(left, right), problem.out_w, kw))


def workspace_per_image(problem: Problem) -> int:
    """Bytes of one image's input and output split spectra."""
    hp, wp = transform_size(problem)
    return hp * (wp // 2 + 1) * 2 * problem.itemsize * (problem.c + problem.cout)


def _channel_blocks(problem: Problem) -> int:
    """Blocks of input channels for the kernel's transforms (forward and inverse): a
    fixed cost per call, worth sharing between threads at small batches."""
    hp, wp = transform_size(problem)
    per_channel = hp * (wp // 2 + 1) * 4 * problem.cout * problem.itemsize
    return block_count(problem.c, per_channel, FREQ_BLOCK_BYTES)


def prepare(problem: Problem, w_gemm: np.ndarray, bias, for_backward: bool = True) -> Prepared:
    """The kernel matrix, and an array for the input spectrum the forward keeps for the
    backward (none without ``for_backward``, or above :data:`KEEP_SPECTRUM_BYTES`)."""
    p = problem
    grid = transform_size(p)
    k_matrix = np.empty((grid[0] * (grid[1] // 2 + 1), 2 * p.c, 2 * p.cout), dtype=p.dtype)
    parts = _channel_blocks(p)

    def transform(part, _):
        channels = slice(*block_bounds(part, p.c, parts))
        conv_fft.kernel_matrix(w_gemm[0], grid, channels, k_matrix)

    run_blocks(transform, parts)
    shape = (p.n, grid[0], grid[1] // 2 + 1, 2, p.c)
    kept = for_backward and math.prod(shape) * p.itemsize <= KEEP_SPECTRUM_BYTES
    return Prepared(p, w_gemm, k_matrix, np.empty(shape, dtype=p.dtype) if kept else None)


def _from_interior(problem: Problem) -> bool:
    """Whether the transforms read only the unpadded images (zero padding, DFT-matrix
    transforms); ``scipy.fft`` and the other padding modes transform the padded block."""
    return problem.padding_mode == "zeros" and conv_fft.uses_matrices(problem.padded)


def _images(problem: Problem, xp_b):
    """``(images, offset)``: with zero padding, the block's unpadded interior and where
    it sits in the transform grid (the transforms skip the zeros); else the padded
    block."""
    top, _, left, _ = problem.geometry.padding
    if not _from_interior(problem):
        return xp_b, (0, 0)
    return xp_b[:, top:top + problem.h, left:left + problem.w], (top, left)


def forward_block(prep: Prepared, xp_b, bias, y_b, start: int) -> None:
    images, offset = _images(prep.problem, xp_b)
    conv_fft.forward_block(images, transform_size(prep.problem), offset, prep.k_matrix,
                           bias, y_b, None if prep.x_spectrum is None
                           else prep.x_spectrum[start:start + len(images)])


def backward_batch(prep: Prepared, xp, dy_nhwc, dxp, kept, blocks, workers):
    """Whole-batch backward: ``(dw_gemm (1, kh, kw, C, Cout), db or None)``; writes the
    part ``kept`` (row and column slices) of the padded input gradient into ``dxp``
    unless it is None.
    ``blocks``: the executor's image blocks (``.count``, ``.bounds(b)``)."""
    p = prep.problem
    k = prep.k_matrix
    n, c = xp.shape[0], xp.shape[3]
    hp, wp = transform_size(p)
    cout = p.cout
    fw = wp // 2 + 1
    # Whole-batch spectra that never leave this call: kept across steps in the calling
    # thread's scratch, so that each backward does not fault in fresh pages. The input's
    # spectrum is the forward's, read and never written (the cache stays reusable), or
    # for a batch too large to have kept it, transformed again here.
    x_spectrum = prep.x_spectrum
    again = x_spectrum is None
    if again:
        x_spectrum = np.empty((n, hp, fw, 2, c), dtype=p.dtype)
    d_spectrum = scratch("fft.d_spectrum", (n, hp, fw, 2, cout), p.dtype)
    dx_spectrum = (scratch("fft.dx_spectrum", (n, hp, fw, 2, c), p.dtype)
                   if dxp is not None else None)
    db_parts = np.empty((blocks.count, cout), dtype=p.dtype) if p.has_bias else None

    def spectra(block, _):
        start, stop = blocks.bounds(block)
        dy_b = dy_nhwc[start:stop]
        if db_parts is not None:
            np.sum(dy_b, axis=(0, 1, 2), out=db_parts[block])
        conv_fft.spectrum(dy_b, (hp, wp), out=d_spectrum[start:stop])
        if again:
            images, offset = _images(p, xp[start:stop])
            conv_fft.spectrum(images, (hp, wp), offset, out=x_spectrum[start:stop])

    run_blocks(spectra, blocks.count, workers)
    g = np.empty(k.shape, dtype=k.dtype)
    freqs = hp * fw
    chunks = block_count(freqs, n * 2 * (c + cout) * k.itemsize, FREQ_BLOCK_BYTES)

    def products(chunk, _):
        part = slice(*block_bounds(chunk, freqs, chunks))
        conv_fft.backward_products(x_spectrum, d_spectrum, k, part, g, dx_spectrum)

    run_blocks(products, chunks, workers)
    kh, kw = p.geometry.kernel
    dw_gemm = np.empty((1, kh, kw, c, cout), dtype=p.dtype)
    parts = _channel_blocks(p)
    inverses = blocks.count if dxp is not None else 0

    # Both read only the products: one region for the weight taps (blocks of channels)
    # and the input gradient's inverse transforms (blocks of images).
    def last_phase(task, _):
        if task < parts:
            channels = slice(*block_bounds(task, c, parts))
            conv_fft.weight_gradient(g, (hp, wp), (kh, kw), channels, dw_gemm[0])
        else:
            start, stop = blocks.bounds(task - parts)
            conv_fft.input_gradient_block(dx_spectrum[start:stop], wp, dxp[start:stop],
                                          *kept)

    run_blocks(last_phase, parts + inverses, workers)
    db = db_parts.sum(axis=0) if db_parts is not None else None
    return dw_gemm, db
