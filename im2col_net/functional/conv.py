"""2-D convolution as GEMM: forward ``(y, cache)`` and backward ``(dx, dw, db)``.

Two lowering strategies share one interface (``strategy=``):

``"im2col"``
    Copy the windows of the padded input into a column matrix ``(G, M, K)`` (``M =
    N*Ho*Wo``, ``K = kh*kw*C/G``) and do one GEMM per group. Backward: ``dW = cols^T
    dY`` and ``dcols = dY W^T``, then col2im. With few input channels the forward pass
    and ``dW`` read the windows in place from a cheaper copy instead of a column matrix
    (:func:`~im2col_net.lowering.im2row`, :func:`~im2col_net.lowering.column_planes`).
``"strided"``
    No column matrix: one GEMM per kernel offset ``(i, j)`` on the strided view of the
    padded input that tap sees, accumulated into the output. Backward does the same
    per offset. Uses ``kh*kw`` times less workspace, at the cost of smaller GEMMs.
``"fft"``
    Stride 1, no dilation, no groups, float32/float64 only: per-frequency products of
    the padded input's FFT (see :mod:`.conv_fft`); far less arithmetic than the GEMM for
    larger kernels and channel counts, same results up to rounding.
``"auto"``
    ``"fft"`` where it applies and pays off, else ``"im2col"`` (see
    :func:`resolve_strategy`).

Non-finite values stay local whatever the strategy: a NaN or infinity in the input
makes non-finite only the outputs whose windows contain it (and likewise for ``dy`` in
backward). The FFT mixes every pixel of an image into every frequency, so it would
spread one NaN over the whole image: a call whose input, weights or bias (forward) or
``dy`` (backward) is not all finite runs the im2col path instead, even when ``"fft"``
was asked for explicitly (:func:`_all_finite`).

All work on the batch in blocks of whole images (see :mod:`._parallel`): a block's
column matrix (about :data:`BLOCK_BYTES`) stays in cache between the copy and the GEMM
(one GEMM per image, stacked in one call, when an image's product is small:
:data:`SMALL_GEMM_MNK`), lives in a per-thread scratch buffer reused across calls, and
blocks run on the BLAS thread count's worth of threads. The cache keeps only the padded
input; backward rebuilds each block's columns, which costs one in-cache copy instead of
keeping the whole column matrix (``kh*kw`` times the input) alive between forward and
backward. ``dW`` and ``db`` are summed per chain of blocks, then over the chains in
order (the FFT path sums over the whole batch inside one GEMM per frequency), so results
do not depend on the thread count; ``dx`` blocks are disjoint.

Arrays are NCHW at the interface and NHWC inside (see :mod:`im2col_net.lowering`);
returned arrays may be NCHW views of NHWC memory. Every buffer is allocated in the
input's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..geometry import WindowGeometry
from ..lowering import (
    check_padding_mode,
    col2im,
    col2im_transposed,
    column_planes,
    column_planes_shape,
    im2col,
    im2col_transposed,
    im2col_transposed_work_size,
    im2row,
    im2row_depth,
    im2row_shape,
    im2row_weights,
    offset_slices,
    pad,
    pad_grad,
    plane_windows,
)
from . import conv_fft
from ._parallel import (
    block_count,
    call,
    chains,
    run_blocks,
    scratch,
    small_gemm_kernel,
    worker_count,
)

STRATEGIES = ("im2col", "strided", "fft", "auto")

# "auto" takes the FFT path from this many input and output channels on (with fewer,
# the transforms cost more than the GEMM they save) ...
FFT_MIN_CHANNELS = 8
# ... and when the GEMM would do at least this many times the FFT's per-frequency work:
# kh*kw*Ho*Wo / (Hp*Wp). Measured (2 cores, float32): 5x5 "same" kernels on 14x14 and
# 28x28 maps (ratio ~15-19) run 1.4-1.8x faster by FFT, 3x3 ones (ratio 5-8) 1.2-1.4x
# slower.
FFT_MIN_GAIN = 10.0
# ... and for batches of at least this many images (below, its fixed per-call costs, the
# kernel spectrum and the per-block weight-gradient products, outweigh the saving).
FFT_MIN_BATCH = 16

# Target size of one block's column matrix: small enough to stay in a core's share of
# the cache between the copy that writes it and the GEMM that reads it.
BLOCK_BYTES = 2 << 20
# The FFT path's blocks of images (forward, and the backward's transforms): fewer and
# larger than the GEMM path's, which was measured faster when the backward still summed
# an (F x C x Cout) product per block; not re-tuned since the backward sums per
# frequency over the whole batch instead.
FFT_BLOCK_BYTES = 4 << 20
FFT_MIN_BLOCKS = 4
# Its backward pass does one GEMM per frequency over the whole batch, the frequencies
# cut into blocks of about this many bytes of spectra.
FFT_FREQ_BLOCK_BYTES = 1 << 20
# When one image's GEMM has at most this many multiply-adds (M*N*K), a block's GEMMs are
# issued one per group of whole images (as many as fit), stacked in one np.matmul call
# (NumPy loops over the stack in C), instead of one GEMM per block. OpenBLAS (its SkylakeX
# kernel, the one this machine runs) takes a "small matrix" path without packing up to
# 100^3: measured, one core, the first conv layer's (784 x 26) @ (26 x 32) image products
# ran at ~95-100 GFLOP/s against ~60-77 for the (19600 x 26) @ (26 x 32) product of a
# whole block (and its weight gradient at ~109 against ~70). This and the two row/plane
# paths below are used only with such a kernel (_parallel.small_gemm_kernel): under
# OPENBLAS_CORETYPE=Haswell, whose SGEMM packs every operand of every call, the plane
# weight gradient took 7.5 ms against 4.6 for one GEMM per block (first conv layer,
# batch 200, 2 threads), and the im2row forward 4.9 against 4.5.
SMALL_GEMM_MNK = 100 ** 3
# With zero padding and a padded input of at most this size, the padded array comes
# from np.zeros (one memset, ~10 us per MiB) and each block copies only its interior:
# four thin border writes per block cost more than that for small images.
ZEROED_PAD_BYTES = 2 << 20
# Few input channels, forward: one GEMM per output row straight from the row segments of
# :func:`~im2col_net.lowering.im2row` (no column matrix), when the rows are at least this
# wide and the ones segments (the folded bias) add at most this fraction of extra
# columns. Measured (first conv layer, 1 -> 32, 5x5, K = 29 instead of 26): the GEMMs
# are a little slower per useful FLOP, but the forward pass is ~6-18 % faster on one and
# two threads than through the transposed column matrix (whose second copy stage writes
# ~80 KB per image that the GEMM then streams back from beyond L2). The weight gradient
# likewise reads the column planes in place, one GEMM per kernel row and image (same
# bound on the extra rows; 2-5 % faster on that layer, whose backward is now GEMM-bound).
ROW_GEMM_MIN_WIDTH = 16
ROW_GEMM_MAX_EXTRA = 0.25

__all__ = ["STRATEGIES", "ConvCache", "conv2d_forward", "conv2d_backward", "conv2d_forward_geom",
           "resolve_strategy"]


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
    xp: np.ndarray                 # (N, Hp, Wp, C) padded NHWC input
    w_gemm: np.ndarray             # (G, kh, kw, Cg, Coutg) weights in GEMM order
    has_bias: bool
    spectrum: np.ndarray | None = None   # "fft": kernel spectrum (F, C, Cout)


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
    if strategy == "fft":
        missing = conv_fft.fft_supported(geometry, groups, x.dtype)
        if missing:
            raise ValueError(f"{owner}: strategy 'fft' needs {missing}; use 'auto' or 'im2col'")
    check_padding_mode(padding_mode, geometry.padding, x.shape[2], x.shape[3], owner=owner)


def _native(a) -> np.ndarray:
    """``a`` as an array in native byte order, same dtype otherwise (a big-endian float32
    from a file computes as float32)."""
    a = np.asarray(a)
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def _all_finite(*arrays) -> bool:
    """True when every element of every array (None skipped) is finite.

    One sum per array instead of an ``isfinite`` mask: a NaN or infinity makes every
    partial sum containing it non-finite (IEEE addition keeps NaN, and inf plus anything
    is inf or NaN), so a finite sum proves the array finite; a finite array whose sum
    overflows merely answers False, which takes the exact path.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return all(a is None or np.isfinite(np.sum(a)) for a in arrays)


def resolve_strategy(strategy, geometry: WindowGeometry, groups, dtype, input_shape,
                     out_channels):
    """The strategy actually run: ``"auto"`` becomes ``"fft"`` or ``"im2col"``.

    ``"fft"`` when it applies (stride 1, no dilation or groups, float32/64), the batch
    has at least :data:`FFT_MIN_BATCH` images, both channel counts are at least
    :data:`FFT_MIN_CHANNELS`, and the GEMM's work per frequency product,
    ``kh*kw*Ho*Wo / (Hp*Wp)``, is at least :data:`FFT_MIN_GAIN`.
    """
    if strategy != "auto":
        return strategy
    n, channels, h, w = input_shape
    if (conv_fft.fft_supported(geometry, groups, dtype) is not None
            or n < FFT_MIN_BATCH or min(channels, out_channels) < FFT_MIN_CHANNELS):
        return "im2col"
    kh, kw = geometry.kernel
    out_h, out_w = geometry.output_size(h, w)
    hp, wp = geometry.padded_size(h, w)
    return "fft" if kh * kw * out_h * out_w >= FFT_MIN_GAIN * hp * wp else "im2col"


def conv2d_forward_geom(x, weight, bias, geometry: WindowGeometry, *, groups=1,
                        padding_mode="zeros", flip_kernel=False, strategy="im2col",
                        owner="conv2d"):
    """:func:`conv2d_forward` with a prepared :class:`WindowGeometry` (used by layers)."""
    x, weight = _native(x), _native(weight)
    bias = None if bias is None else _native(bias)
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
    strategy = resolve_strategy(strategy, geometry, groups, x.dtype, x.shape, cout)
    if strategy == "fft" and not _all_finite(x, weight, bias):
        strategy = "im2col"  # keep NaN/inf local (see the module docstring)
    plan = _Plan(geometry, groups, (n, c, h, w), (out_h, out_w), cout, x.dtype, strategy,
                 bias is not None)
    hp, wp = geometry.padded_size(h, w)
    spectrum = k_conj = None
    if strategy == "fft":
        spectrum = call(conv_fft.kernel_spectrum, w_gemm[0], (hp, wp))
        k_conj = np.conjugate(spectrum)
    else:
        w_mat = plan.gemm_weights(w_gemm, bias)
    x_nhwc = x.transpose(0, 2, 3, 1)
    zeroed = (padding_mode == "zeros" and any(geometry.padding)
              and n * hp * wp * c * x.itemsize <= ZEROED_PAD_BYTES)
    xp = (np.zeros if zeroed else np.empty)((n, hp, wp, c), dtype=x.dtype)
    y = np.empty((n, out_h, out_w, cout), dtype=x.dtype)

    def task(block, worker):
        start, stop = plan.bounds(block)
        xp_b = pad(x_nhwc[start:stop], geometry.padding, padding_mode, out=xp[start:stop],
                   border_filled=zeroed)
        if plan.row_gemm:
            np.matmul(plan.row_windows(xp_b), w_mat[0], out=y[start:stop])
            return
        y_b = y[start:stop].reshape(-1, cout)
        if strategy == "im2col" and plan.stack:
            plan.matmul(plan.columns(xp_b)[0], w_mat[0], y_b)
        elif strategy == "im2col":
            np.matmul(plan.columns(xp_b), w_mat, out=plan.by_group(y_b))
        elif strategy == "fft":
            conv_fft.forward_block(xp_b, k_conj, bias, y[start:stop])
            return
        else:
            _strided_forward(plan, xp_b, w_gemm, y_b)
        if bias is not None and not plan.fold_bias:
            y_b += bias

    run_blocks(task, plan.blocks, plan.workers)
    cache = ConvCache(geometry, groups, padding_mode, flip_kernel, strategy, (n, c, h, w),
                      (out_h, out_w), xp, w_gemm, bias is not None, spectrum)
    return y.transpose(0, 3, 1, 2), cache


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
    dtype = cache.w_gemm.dtype
    dy = np.asarray(dy)
    if dy.shape != (n, cout, out_h, out_w):
        raise ValueError(
            f"conv2d backward: expected dy of shape {(n, cout, out_h, out_w)}, got {dy.shape}"
        )
    if dy.dtype.kind != "f":  # a complex dy would lose its imaginary part in the cast
        raise ValueError(f"conv2d backward: expected a real floating-point dy, got dtype "
                         f"{dy.dtype}")
    # NHWC-contiguous dy (the usual case: it came from our own NHWC ops) reshapes for free;
    # otherwise each block is gathered into a scratch copy.
    dy_nhwc = np.asarray(dy, dtype=dtype).transpose(0, 2, 3, 1)
    strategy = cache.strategy
    if strategy == "fft" and not _all_finite(dy_nhwc):
        strategy = "im2col"  # keep NaN/inf local (see the module docstring)
    plan = _Plan(geometry, groups, cache.input_shape, cache.out_size, cout, dtype,
                 strategy, cache.has_bias)
    xp = cache.xp
    dxp = np.empty(xp.shape, dtype=dtype) if need_input_grad else None
    fft = strategy == "fft"
    # Zero padding drops the border of dxp (pad_grad): the FFT path skips those rows.
    top = geometry.padding[0]
    kept_rows = (slice(top, top + h) if cache.padding_mode == "zeros" else slice(None))
    if fft:
        dw_gemm, db = _fft_backward(plan, cache, dy_nhwc, dxp, kept_rows)
    else:
        dw_gemm, db = _gemm_backward(plan, cache, dy_nhwc, dxp, strategy)
    # (G, kh, kw, Cg, Coutg) -> (Cout, Cg, kh, kw)
    dw = dw_gemm.transpose(0, 4, 3, 1, 2).reshape(cout, cg, kh, kw)
    if cache.flip_kernel:
        dw = dw[:, :, ::-1, ::-1]
    dw = np.ascontiguousarray(dw)
    dx = None
    if need_input_grad:
        dx = pad_grad(dxp, geometry.padding, cache.padding_mode).transpose(0, 3, 1, 2)
    return dx, dw, db


def _gemm_backward(plan, cache, dy_nhwc, dxp, strategy):
    """im2col and strided backward (``strategy``): ``(dw_gemm (G, kh, kw, Cg, Coutg),
    db)``; writes the padded input gradient into ``dxp`` unless it is None."""
    groups, coutg = plan.groups, plan.coutg
    cout = groups * coutg
    dtype = plan.dtype
    xp = cache.xp
    # Weight (and bias) gradients are sums over the batch: one accumulator per chain of
    # blocks, added up in chain order (deterministic for any thread count). With the
    # bias folded in, row K of the weight gradient is db.
    acc_shape = (groups, plan.kb, coutg)
    block_chains = chains(plan.blocks, math.prod(acc_shape) * dtype.itemsize)
    # Scratch (reused across calls, already in memory); each chain zeroes its own part.
    dw_parts = scratch("conv.dw_parts", (len(block_chains),) + acc_shape, dtype)
    db_parts = (scratch("conv.db_parts", (len(block_chains), cout), dtype)
                if plan.separate_bias else None)

    def one_block(block, chain):
        start, stop = plan.bounds(block)
        dy_b = _rows(dy_nhwc[start:stop], cout)
        if db_parts is not None:
            db_parts[chain] += dy_b.sum(axis=0)
        xp_b = xp[start:stop]
        dxp_b = None if dxp is None else dxp[start:stop]
        if strategy == "im2col":
            _im2col_backward(plan, xp_b, dy_b, cache.w_gemm, dw_parts[chain], dxp_b)
        else:
            _strided_backward(plan, xp_b, dy_b, cache.w_gemm,
                              dw_parts[chain].reshape(cache.w_gemm.shape), dxp_b)

    def task(chain, worker):
        dw_parts[chain] = 0
        if db_parts is not None:
            db_parts[chain] = 0
        for block in block_chains[chain]:
            one_block(block, chain)

    run_blocks(task, len(block_chains), plan.workers)
    dw_all = dw_parts.sum(axis=0)
    dw_gemm = dw_all[:, :plan.k].reshape(cache.w_gemm.shape)
    db = None
    if cache.has_bias:
        db = dw_all[0, plan.k].copy() if plan.fold_bias else db_parts.sum(axis=0)
    return dw_gemm, db


def _fft_backward(plan, cache, dy_nhwc, dxp, kept_rows):
    """FFT backward in three phases: the spectra of the input and of ``dy`` per block of
    images, then per block of frequencies one GEMM over the whole batch for the weight
    gradient (and the input gradient's spectrum), then the inverse transforms per block
    of images. Every sum runs inside one GEMM or in block order, so the result does not
    depend on the thread count. Returns ``(dw_gemm (1, kh, kw, C, Cout), db)``."""
    xp, k = cache.xp, cache.spectrum
    n, hp, wp, c = xp.shape
    cout = k.shape[2]
    fw = wp // 2 + 1
    x_conj = np.empty((n, hp, fw, c), dtype=k.dtype)
    d_spectrum = np.empty((n, hp, fw, cout), dtype=k.dtype)
    db_parts = (np.empty((plan.blocks, cout), dtype=plan.dtype) if cache.has_bias else None)

    def spectra(block, _):
        start, stop = plan.bounds(block)
        dy_b = dy_nhwc[start:stop]
        if db_parts is not None:
            np.sum(_rows(dy_b, cout), axis=0, out=db_parts[block])
        conv_fft.backward_spectra(xp[start:stop], dy_b, x_conj[start:stop],
                                  d_spectrum[start:stop])

    run_blocks(spectra, plan.blocks, plan.workers)
    g = np.empty(k.shape, dtype=k.dtype)
    freqs = hp * fw
    chunks = block_count(freqs, n * (c + cout) * k.itemsize, FFT_FREQ_BLOCK_BYTES)

    def products(chunk, _):
        part = slice(chunk * freqs // chunks, (chunk + 1) * freqs // chunks)
        conv_fft.backward_products(x_conj, d_spectrum, k, part, g, dxp is not None)

    run_blocks(products, chunks, plan.workers)
    if dxp is not None:
        def inverse(block, _):
            start, stop = plan.bounds(block)
            conv_fft.input_gradient_block(x_conj[start:stop], dxp[start:stop], kept_rows)

        run_blocks(inverse, plan.blocks, plan.workers)
    kh, kw = cache.geometry.kernel
    dw_gemm = call(conv_fft.weight_gradient, g, (hp, wp), (kh, kw))[None]
    db = db_parts.sum(axis=0) if db_parts is not None else None
    return dw_gemm, db


def _rows(a_nhwc, channels):
    """``(n, Ho, Wo, C)`` -> ``(n*Ho*Wo, C)``: a view when contiguous, else a scratch copy."""
    if a_nhwc.flags.c_contiguous:
        return a_nhwc.reshape(-1, channels)
    rows = scratch("conv.dy", (a_nhwc.size // max(channels, 1), channels), a_nhwc.dtype)
    np.copyto(rows.reshape(a_nhwc.shape), a_nhwc)
    return rows


class _Plan:
    """Block layout of one convolution call: image ranges, column layout, GEMM views.

    Without groups the im2col strategy folds the bias into the GEMM: the column matrix
    gets a column of ones and the weight matrix the bias as an extra row, so the forward
    GEMM adds the bias and the backward GEMM sums ``db`` with no separate pass. With few
    input channels (``kw*C < Wo``) the columns are built transposed (see
    :func:`~im2col_net.lowering.im2col_transposed`), which copies longer runs. Without
    groups, when one image's GEMM is small (:data:`SMALL_GEMM_MNK`), :meth:`matmul` and
    :meth:`matmul_reduce` issue one GEMM per :attr:`stack` images instead of one per block.
    With few channels the forward pass may skip the column matrix altogether
    (:attr:`row_gemm`, :meth:`row_windows`: one GEMM per output row).
    """

    def __init__(self, geometry, groups, input_shape, out_size, cout, dtype, strategy,
                 has_bias):
        n, c, _, _ = input_shape
        self.geometry, self.groups = geometry, groups
        self.out_h, self.out_w = out_size
        kh, kw = geometry.kernel
        self.cg, self.coutg = c // groups, cout // groups
        self.k = kh * kw * self.cg
        dense = groups == 1 and strategy == "im2col"
        self.fold_bias = dense and has_bias
        self.separate_bias = has_bias and not self.fold_bias
        self.kb = self.k + int(self.fold_bias)
        self.transposed = dense and self.cg * kw < self.out_w
        self.dtype = np.dtype(dtype)
        # Forward by im2row (see ROW_GEMM_MIN_WIDTH): K of its GEMMs, or 0 when not used.
        # These three issue many small GEMMs: only where BLAS runs them unpacked.
        small = small_gemm_kernel()
        row_k = im2row_depth(geometry.kernel, self.cg, ones=self.fold_bias)
        self.row_gemm = (row_k if small and self.transposed and kh >= 2
                         and geometry.dilation[0] == 1 and self.out_w >= ROW_GEMM_MIN_WIDTH
                         and row_k <= (1 + ROW_GEMM_MAX_EXTRA) * self.kb else 0)
        # Backward: dW from column_planes / plane_windows (see _plane_weight_grad).
        plane_rows = kh * (kw * self.cg + int(self.fold_bias))   # kh GEMMs of S rows
        self.plane_wgrad = (small and self.transposed and geometry.stride[0] == 1
                            and plane_rows <= (1 + ROW_GEMM_MAX_EXTRA) * self.kb)
        # Images per GEMM when a block's GEMMs are stacked per group of images (see
        # SMALL_GEMM_MNK); None: one GEMM per block.
        image_mnk = self.out_h * self.out_w * self.kb * self.coutg
        self.stack = (max(1, SMALL_GEMM_MNK // image_mnk)
                      if small and dense and 0 < image_mnk <= SMALL_GEMM_MNK else None)
        self.n = n
        # The strided strategy's workspace is one tap, kh*kw times less than the columns;
        # the FFT's is the input and output spectra (complex, about the padded size).
        per_image = self.out_h * self.out_w * self.dtype.itemsize * (
            c * kh * kw if strategy == "im2col" else c + cout)
        if strategy == "fft":
            hp, wp = geometry.padded_size(*input_shape[2:])
            per_image = hp * (wp + 2) * self.dtype.itemsize * (c + cout)
        self.workers = worker_count()
        if strategy == "fft":
            self.blocks = block_count(n, per_image, FFT_BLOCK_BYTES, FFT_MIN_BLOCKS)
        else:
            self.blocks = block_count(n, per_image, BLOCK_BYTES)

    def bounds(self, block):
        return block * self.n // self.blocks, (block + 1) * self.n // self.blocks

    def rows(self, images):
        return images * self.out_h * self.out_w

    def gemm_weights(self, w_gemm, bias):
        """``(G, kb, Coutg)``: the weights in column order, plus the bias row if folded;
        for :attr:`row_gemm`, ``(1, row_gemm, Cout)`` in :func:`im2row`'s order."""
        if self.row_gemm:
            kh, kw = self.geometry.kernel
            w_rows = im2row_weights(w_gemm.reshape(kh, kw * self.cg, self.coutg),
                                    bias if self.fold_bias else None)
            return w_rows[None]
        w_mat = w_gemm.reshape(self.groups, self.k, self.coutg)
        if self.fold_bias:
            w_mat = np.concatenate([w_mat, bias.reshape(1, 1, -1)], axis=1)
        return w_mat

    def column_buffer(self, images):
        """This thread's scratch for ``images`` images' ``(G, m, kb)`` columns (unfilled)."""
        m = self.rows(images)
        if self.transposed:
            return scratch("conv.cols_t", (self.kb, m), self.dtype).T[None]
        return scratch("conv.cols", (self.groups, m, self.kb), self.dtype)

    def columns(self, xp_b):
        """The block's ``(G, m, kb)`` column matrix (a view of this thread's scratch)."""
        m = self.rows(xp_b.shape[0])
        if self.transposed:
            buffer = scratch("conv.cols_t", (self.kb, m), self.dtype)
            size = im2col_transposed_work_size(xp_b.shape, self.geometry, self.out_h,
                                               self.out_w)
            im2col_transposed(xp_b, self.geometry, self.out_h, self.out_w,
                              out=buffer[:self.k],
                              work=scratch("conv.planes", (size,), self.dtype) if size else None)
            cols = buffer.T[None]
        else:
            cols = scratch("conv.cols", (self.groups, m, self.kb), self.dtype)
            im2col(xp_b, self.geometry, self.out_h, self.out_w, self.groups,
                   out=cols[:, :, :self.k])
        if self.fold_bias:
            cols[:, :, self.k] = 1
        return cols

    def row_windows(self, xp_b):
        """The block's ``(n, Ho, Wo, row_gemm)`` :func:`im2row` windows (in scratch)."""
        size = math.prod(im2row_shape(xp_b.shape, self.geometry, self.out_h, self.out_w,
                                      ones=self.fold_bias))
        return im2row(xp_b, self.geometry, self.out_h, self.out_w, ones=self.fold_bias,
                      work=scratch("conv.rows", (size,), self.dtype))

    def col2im(self, cols, xp_b, dxp_b):
        """Write ``dxp_b`` from ``(G, m, K)`` column gradients (a view of :meth:`columns`)."""
        if self.transposed:
            col2im_transposed(cols[0].T, xp_b.shape, self.geometry, self.out_h, self.out_w,
                              out=dxp_b)
        else:
            col2im(cols, xp_b.shape, self.geometry, self.out_h, self.out_w, out=dxp_b)

    def _stacks(self, m):
        """``(full, r)``: ``m`` rows as ``full`` stacked GEMMs of ``r`` rows (whole images)
        and a remainder; ``full == 0`` means one GEMM."""
        r = (self.stack or 0) * self.out_h * self.out_w
        if not r or m <= r:
            return 0, m
        return m // r, r

    def matmul(self, a, b, out):
        """``out (m, n) = a (m, k) @ b (k, n)``, rows in image order: one GEMM, or one
        per :attr:`stack` images (stacked in one call) when those are small."""
        full, r = self._stacks(a.shape[0])
        if not full:
            np.matmul(a, b, out=out)
            return
        cut = full * r
        # Splitting one axis is always a view (reshape never copies here).
        np.matmul(a[:cut].reshape(full, r, -1), b, out=out[:cut].reshape(full, r, -1))
        if cut < a.shape[0]:
            np.matmul(a[cut:], b, out=out[cut:])

    def matmul_reduce(self, a_t, b, out):
        """``out (k, n) = a_t (k, m) @ b (m, n)``, summed over the same row stacks as
        :meth:`matmul` (a fixed order: it depends only on the shapes)."""
        full, r = self._stacks(a_t.shape[1])
        if not full:
            np.matmul(a_t, b, out=out)
            return
        cut = full * r
        parts = scratch("conv.dw_stack", (full,) + out.shape, self.dtype)
        np.matmul(a_t[:, :cut].reshape(-1, full, r).transpose(1, 0, 2),
                  b[:cut].reshape(full, r, -1), out=parts)
        np.sum(parts, axis=0, out=out)
        if cut < a_t.shape[1]:
            rest = scratch("conv.dw_rest", out.shape, self.dtype)
            np.matmul(a_t[:, cut:], b[cut:], out=rest)
            out += rest

    def by_group(self, rows2d):
        """``(m, Cout)`` rows -> ``(G, m, Coutg)`` view (the GEMM's group-major layout)."""
        return rows2d.reshape(-1, self.groups, self.coutg).transpose(1, 0, 2)


def _im2col_backward(plan, xp_b, dy_b, w_gemm, dw_acc, dxp_b):
    """Add the block's ``cols^T dY`` to ``dw_acc (G, kb, Coutg)``; write its ``dx`` into
    ``dxp_b``."""
    dy_g = plan.by_group(dy_b)
    if plan.plane_wgrad:
        _plane_weight_grad(plan, xp_b, dy_b, dw_acc[0])
        cols = plan.column_buffer(xp_b.shape[0]) if dxp_b is not None else None
    else:
        cols = plan.columns(xp_b)
        dw_b = scratch("conv.dw", dw_acc.shape, plan.dtype)
        if plan.stack:
            plan.matmul_reduce(cols[0].T, dy_b, dw_b[0])
        else:
            np.matmul(cols.transpose(0, 2, 1), dy_g, out=dw_b)
        dw_acc += dw_b
    if dxp_b is not None:
        # The column buffer takes dcols: the columns are no longer needed.
        dcols = cols[:, :, :plan.k]
        w_t = w_gemm.reshape(plan.groups, plan.k, plan.coutg).transpose(0, 2, 1)
        if plan.stack:
            plan.matmul(dy_b, w_t[0], dcols[0])
        else:
            np.matmul(dy_g, w_t, out=dcols)
        plan.col2im(dcols, xp_b, dxp_b)


def _plane_weight_grad(plan, xp_b, dy_b, dw_acc):
    """Add the block's weight (and folded bias) gradient to ``dw_acc (kb, Cout)`` with no
    column matrix: for kernel row ``i`` and image ``n`` the transposed columns are rows
    of the column planes read in place (:func:`~im2col_net.lowering.plane_windows`), so
    one stacked call does a ``(S, Ho*Wo) @ (Ho*Wo, Cout)`` GEMM per ``(i, n)``, with a
    plane of ones giving ``db``; the products are then summed over the images."""
    images = xp_b.shape[0]
    kh, kw = plan.geometry.kernel
    data = kw * plan.cg
    segments = data + int(plan.fold_bias)
    size = math.prod(column_planes_shape(xp_b.shape, plan.geometry, plan.out_h, plan.out_w,
                                         ones=plan.fold_bias))
    planes = column_planes(xp_b, plan.geometry, plan.out_h, plan.out_w, ones=plan.fold_bias,
                           work=scratch("conv.planes", (size,), plan.dtype))
    windows = plane_windows(planes, plan.geometry, plan.out_h, plan.out_w)
    products = scratch("conv.dw_planes", (kh, images, segments, plan.coutg), plan.dtype)
    np.matmul(windows, dy_b.reshape(images, -1, plan.coutg), out=products)
    summed = scratch("conv.dw_rows", (kh, segments, plan.coutg), plan.dtype)
    np.sum(products, axis=1, out=summed)
    dw_acc[:plan.k].reshape(kh, data, plan.coutg)[...] += summed[:, :data]
    if plan.fold_bias:
        dw_acc[plan.k] += summed[0, data]


def _taps(plan, xp_b):
    """``(index, tap)`` per kernel offset: ``xp_b[index]`` is what the offset sees, ``tap``
    a ``(m, G, Cg)`` copy of it in scratch."""
    m = plan.rows(xp_b.shape[0])
    for i, j, index in offset_slices(plan.geometry, plan.out_h, plan.out_w):
        tap = scratch("conv.tap", xp_b[index].shape, plan.dtype)
        np.copyto(tap, xp_b[index])
        yield (i, j), index, tap.reshape(m, plan.groups, plan.cg)


def _strided_forward(plan, xp_b, w_gemm, y_b):
    """``y_b (m, Cout) = sum over offsets of tap @ W[i, j]``, one GEMM per offset."""
    y_g = plan.by_group(y_b)
    product = scratch("conv.product", y_g.shape, plan.dtype)
    first = True
    for (i, j), _, tap in _taps(plan, xp_b):
        np.matmul(tap.transpose(1, 0, 2), w_gemm[:, i, j], out=y_g if first else product)
        if not first:
            y_g += product
        first = False


def _strided_backward(plan, xp_b, dy_b, w_gemm, dw_acc, dxp_b):
    """Per offset: ``dW[i, j] += tap^T dY``; ``dxp_b[index] += dY W[i, j]^T``."""
    dy_g = plan.by_group(dy_b)
    if dxp_b is not None:
        dxp_b[...] = 0
        d_tap = scratch("conv.dtap", (plan.groups, dy_b.shape[0], plan.cg), plan.dtype)
    for (i, j), index, tap in _taps(plan, xp_b):
        dw_acc[:, i, j] += np.matmul(tap.transpose(1, 2, 0), dy_g)
        if dxp_b is not None:
            np.matmul(dy_g, w_gemm[:, i, j].transpose(0, 2, 1), out=d_tap)
            target = dxp_b[index]
            target += d_tap.transpose(1, 0, 2).reshape(target.shape)
