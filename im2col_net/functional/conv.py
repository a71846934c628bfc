"""2-D convolution: the executor that runs one of the algorithms of
:mod:`.conv_algorithms` on the batch, block by block.

forward ``(x, w, b) -> (y, cache)``
    check the arguments, ask the planner (:mod:`.planner`) which algorithm runs this
    shape, pad the input block by block, and let the algorithm write each block's output;
backward ``(dy, cache) -> (dx, dw, db)``
    run the algorithm's backward on the same blocks; every chain of blocks sums its
    weight gradients in block order into its own accumulator, and the chains are summed
    in chain order, so the result depends on the plan and the shapes, never on the
    thread count or the timing. ``dx`` blocks are disjoint.

``strategy=`` picks the algorithm: ``"im2col"``, ``"rows"``, ``"im2col_t"``,
``"strided"`` or ``"fft"``, or ``"auto"`` (the planner's mode in effect), ``"measure"`` or
``"estimate"``. Non-finite values stay local whatever the algorithm: the FFT would
spread one NaN over the whole image, so a call whose input, weights or bias (forward)
or ``dy`` (backward) is not all finite runs im2col instead, even when ``"fft"`` was asked
for (:func:`_all_finite`).

The cache keeps only the padded input (NHWC); the algorithms rebuild their columns in
backward, one in-cache copy instead of holding ``kh*kw`` times the input. Arrays are
NCHW at the interface and NHWC inside; returned arrays may be NCHW views of NHWC memory.
Every buffer is in the input's dtype.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..geometry import PADDING_MODE_ALIASES, WindowGeometry
from ..lowering import check_padding_mode, pad, pad_grad
from ..runtime import block_bounds, chains, run_blocks, scratch, worker_count
from . import conv_algorithms as algos
from . import planner
from .conv_args import check_conv_args, check_dy, native

STRATEGIES = planner.ALGORITHM_NAMES + ("auto",) + planner.MODES

__all__ = ["STRATEGIES", "ConvCache", "conv2d_forward", "conv2d_backward", "conv2d_forward_geom",
           "conv2d_plan", "conv_problem", "resolve_strategy"]


@dataclass
class ConvCache:
    """What :func:`conv2d_backward` needs from the forward pass."""

    problem: algos.Problem
    plan: planner.Plan
    flip_kernel: bool
    xp: np.ndarray                 # (N, Hp, Wp, C) padded NHWC input
    w_gemm: np.ndarray             # (G, kh, kw, Cg, Coutg) weights in GEMM order
    prepared: object               # the algorithm's prepared weights

    @property
    def strategy(self) -> str:
        """The algorithm that ran (what ``"auto"`` resolved to)."""
        return self.plan.algorithm

    @property
    def geometry(self) -> WindowGeometry:
        return self.problem.geometry

    @property
    def input_shape(self):
        p = self.problem
        return (p.n, p.c, p.h, p.w)

    @property
    def out_size(self):
        return (self.problem.out_h, self.problem.out_w)


class _Blocks:
    """The image ranges of one call: ``count`` blocks, ``bounds(b)`` -> ``(start, stop)``."""

    def __init__(self, n, count):
        self.n, self.count = n, count

    def bounds(self, block):
        return block_bounds(block, self.n, self.count)


def conv2d_forward(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1,
                   padding_mode="zeros", flip_kernel=False, strategy="im2col"):
    """Convolve ``x`` with ``weight`` (cross-correlation unless ``flip_kernel``).

    Shapes: ``x (N, C, H, W)``, ``weight (Cout, C/groups, kh, kw)``, ``bias (Cout,)`` or
    None; returns ``y (N, Cout, Ho, Wo)`` and a cache for :func:`conv2d_backward`.
    Arguments follow ``torch.nn.functional.conv2d``; ``padding`` may also be
    ``"same"``/``"valid"`` or ``(top, bottom, left, right)``. ``padding_mode`` is
    torch's ``"zeros"``, ``"reflect"``, ``"replicate"`` (alias ``"edge"``) or
    ``"circular"``, with torch's size limits
    (:func:`~im2col_net.lowering.check_padding_mode`). ``flip_kernel=True`` rotates the
    kernel by 180 degrees first (true convolution). ``strategy``: see the module docstring.
    """
    if np.ndim(weight) != 4:
        raise ValueError(
            f"conv2d: weight must have shape (out_channels, in_channels/groups, kh, kw), "
            f"got shape {np.shape(weight)}"
        )
    geometry = WindowGeometry.make(np.shape(weight)[2:], stride, padding, dilation,
                                   owner="conv2d")
    return conv2d_forward_geom(x, weight, bias, geometry, groups=groups,
                               padding_mode=padding_mode, flip_kernel=flip_kernel,
                               strategy=strategy)


def _all_finite(*arrays) -> bool:
    """True when every element of every array (None skipped) is finite: a NaN or inf
    makes every partial sum containing it non-finite, so a finite sum proves it (a sum
    that merely overflows answers False, which takes the exact path)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return all(a is None or np.isfinite(np.sum(a)) for a in arrays)


def conv_problem(input_shape, weight_shape, geometry: WindowGeometry, *, groups=1,
                 dtype=np.float32, has_bias=True, padding_mode="zeros",
                 owner="conv2d", check=True) -> algos.Problem:
    """The :class:`~.conv_algorithms.Problem` of a convolution (shape arithmetic only;
    ``check=False`` skips the output-size check, for applicability questions)."""
    n, c, h, w = input_shape
    out_h, out_w = (geometry.checked_output_size(h, w, owner=owner) if check
                    else geometry.output_size(h, w))
    return algos.Problem(n, c, h, w, weight_shape[0], groups, geometry, out_h, out_w,
                         np.dtype(dtype), bool(has_bias),
                         PADDING_MODE_ALIASES.get(padding_mode, padding_mode))


def conv2d_plan(problem: algos.Problem, strategy="auto", input_grad=True) -> planner.Plan:
    """The plan a call with ``strategy`` runs for ``problem`` (planning it if needed)."""
    requested = planner.resolve(strategy)
    try:
        if strategy in planner.MODES:
            with planner.planning(strategy):
                return planner.choose(problem, None, input_grad, _time_plan)
        return planner.choose(problem, requested, input_grad, _time_plan)
    finally:
        _timing_data.clear()    # the random arrays are not needed past planning


def resolve_strategy(strategy, geometry: WindowGeometry, groups, dtype, input_shape,
                     out_channels, input_grad=True) -> str:
    """The algorithm ``strategy`` runs for these shapes (``"auto"``: the planner's mode in
    effect). Kept for callers of the earlier API; :func:`conv2d_plan` gives the plan."""
    n, c, h, w = input_shape
    kh, kw = geometry.kernel
    problem = conv_problem(input_shape, (out_channels, c // groups, kh, kw), geometry,
                           groups=groups, dtype=dtype)
    return conv2d_plan(problem, strategy, input_grad).algorithm


def conv2d_forward_geom(x, weight, bias, geometry: WindowGeometry, *, groups=1,
                        padding_mode="zeros", flip_kernel=False, strategy="im2col",
                        owner="conv2d", input_grad=True, for_backward=True):
    """:func:`conv2d_forward` with a prepared :class:`WindowGeometry` (used by layers).
    ``input_grad``: whether the backward will want ``dx`` (a hint for the planner).
    ``for_backward=False``: no backward is expected, so nothing is kept for one (the FFT's
    input spectrum); a backward of the cache still works, redoing that work."""
    x, weight, bias = native(x), native(weight), native(bias)
    check_conv_args(x, weight, bias, groups, owner)
    requested = planner.resolve(strategy, owner)
    padding_mode = check_padding_mode(padding_mode, geometry.padding, x.shape[2], x.shape[3],
                                      owner=owner)
    problem = conv_problem(x.shape, weight.shape, geometry, groups=groups, dtype=x.dtype,
                           has_bias=bias is not None, padding_mode=padding_mode, owner=owner)
    missing = None if requested is None else algos.supported(requested, problem)
    if missing:
        raise ValueError(f"{owner}: strategy {requested!r} needs {missing}; use 'auto' or "
                         f"'im2col'")
    plan = conv2d_plan(problem, strategy, input_grad)
    if plan.algorithm == "fft" and not _all_finite(x, weight, bias):
        plan = _exact_plan()    # keep NaN/inf local (see the module docstring)
    w_eff = weight[:, :, ::-1, ::-1] if flip_kernel else weight
    y, cache = _forward(problem, plan, x, w_eff, bias, for_backward)
    cache.flip_kernel = bool(flip_kernel)
    return y, cache


def _exact_plan():
    return planner.Plan("im2col", algos.DEFAULT_BLOCK_BYTES["im2col"], "fixed")


def _forward(problem: algos.Problem, plan: planner.Plan, x, w_eff, bias, for_backward=True):
    p = problem
    kh, kw = p.geometry.kernel
    algorithm = algos.get(plan.algorithm)
    # (Cout, Cg, kh, kw) -> (G, kh, kw, Cg, Coutg): the row order of the column matrix.
    w_gemm = np.ascontiguousarray(
        w_eff.reshape(p.groups, p.coutg, p.cg, kh, kw).transpose(0, 3, 4, 2, 1))
    prepared = algorithm.prepare(p, w_gemm, bias, for_backward)
    blocks = _Blocks(p.n, algos.block_count_for(plan.algorithm, p, plan.block_bytes,
                                                plan.min_blocks))
    hp, wp = p.padded
    x_nhwc = x.transpose(0, 2, 3, 1)
    # Zero padding: np.zeros gives the border (lazily zeroed pages for large arrays), so
    # each block copies only its interior.
    zeroed = p.padding_mode == "zeros" and any(p.geometry.padding)
    xp = (np.zeros if zeroed else np.empty)((p.n, hp, wp, p.c), dtype=p.dtype)
    y = np.empty((p.n, p.out_h, p.out_w, p.cout), dtype=p.dtype)

    def task(block, _):
        start, stop = blocks.bounds(block)
        xp_b = pad(x_nhwc[start:stop], p.geometry.padding, p.padding_mode,
                   out=xp[start:stop], border_filled=zeroed)
        algorithm.forward_block(prepared, xp_b, bias, y[start:stop], start)

    run_blocks(task, blocks.count, worker_count())
    cache = ConvCache(p, plan, False, xp, w_gemm, prepared)
    return y.transpose(0, 3, 1, 2), cache


def conv2d_backward(dy, cache: ConvCache, *, need_input_grad: bool = True):
    """Gradients of :func:`conv2d_forward`.

    ``dy (N, Cout, Ho, Wo)`` -> ``dx (N, C, H, W)`` (None when ``need_input_grad`` is
    False), ``dw (Cout, C/groups, kh, kw)``, ``db (Cout,)`` (None without bias).
    ``dy`` is never modified.
    """
    p = cache.problem
    dy = check_dy(dy, (p.n, p.cout, p.out_h, p.out_w), p.dtype, "conv2d")
    # NHWC-contiguous dy (the usual case: it came from our own NHWC ops) reshapes for free;
    # otherwise each block is gathered into a scratch copy.
    dy_nhwc = dy.transpose(0, 2, 3, 1)
    plan, prepared = cache.plan, cache.prepared
    if plan.algorithm == "fft" and not _all_finite(dy_nhwc):
        plan = _exact_plan()    # keep NaN/inf local (see the module docstring)
        prepared = algos.get("im2col").prepare(p, cache.w_gemm, _bias_of(cache))
    dxp = np.empty(cache.xp.shape, dtype=p.dtype) if need_input_grad else None
    blocks = _Blocks(p.n, algos.block_count_for(plan.algorithm, p, plan.block_bytes,
                                                plan.min_blocks))
    algorithm = algos.get(plan.algorithm)
    if hasattr(algorithm, "backward_batch"):
        # Zero padding drops the border of dxp (pad_grad): the FFT skips it.
        top, _, left, _ = p.geometry.padding
        kept = ((slice(top, top + p.h), slice(left, left + p.w)) if p.padding_mode == "zeros"
                else (slice(None), slice(None)))
        dw_gemm, db = algorithm.backward_batch(prepared, cache.xp, dy_nhwc, dxp, kept,
                                               blocks, worker_count())
    else:
        dw_gemm, db = _blocked_backward(algorithm, prepared, cache.xp, dy_nhwc, dxp, blocks)
    kh, kw = p.geometry.kernel
    # (G, kh, kw, Cg, Coutg) -> (Cout, Cg, kh, kw)
    dw = dw_gemm.transpose(0, 4, 3, 1, 2).reshape(p.cout, p.cg, kh, kw)
    if cache.flip_kernel:
        dw = dw[:, :, ::-1, ::-1]
    dw = np.ascontiguousarray(dw)
    dx = None
    if need_input_grad:
        dx = pad_grad(dxp, p.geometry.padding, p.padding_mode).transpose(0, 3, 1, 2)
    return dx, dw, db


def _bias_of(cache):
    """The forward's bias, for re-preparing weights (only its shape and presence matter
    to the backward, which never reads it)."""
    return np.zeros(cache.problem.cout, cache.problem.dtype) if cache.problem.has_bias else None


def _blocked_backward(algorithm, prepared, xp, dy_nhwc, dxp, blocks):
    """Run ``algorithm.backward_block`` on every block; sum the weight (and bias)
    gradients per chain of blocks, then over the chains, both in order."""
    p = prepared.problem
    acc_shape = prepared.accumulator_shape()
    block_chains = chains(blocks.count, int(np.prod(acc_shape)) * p.itemsize)
    dw_parts = scratch("conv.dw_parts", (len(block_chains),) + tuple(acc_shape), p.dtype)
    db_parts = (scratch("conv.db_parts", (len(block_chains), p.cout), p.dtype)
                if prepared.separate_bias else None)

    def task(chain, _):
        dw_parts[chain] = 0
        if db_parts is not None:
            db_parts[chain] = 0
        for block in block_chains[chain]:
            start, stop = blocks.bounds(block)
            dy_b = _rows(dy_nhwc[start:stop], p.cout)
            if db_parts is not None:
                db_parts[chain] += dy_b.sum(axis=0)
            algorithm.backward_block(prepared, xp[start:stop], dy_b, dw_parts[chain],
                                     None if dxp is None else dxp[start:stop])

    run_blocks(task, len(block_chains), worker_count())
    dw_gemm, db = algorithm.finish(prepared, dw_parts.sum(axis=0))
    if db_parts is not None:
        db = db_parts.sum(axis=0)
    return dw_gemm, db


def _rows(a_nhwc, channels):
    """``(n, Ho, Wo, C)`` -> ``(n*Ho*Wo, C)``: a view when contiguous, else a scratch copy."""
    if a_nhwc.flags.c_contiguous:
        return a_nhwc.reshape(-1, channels)
    rows = scratch("conv.dy", (a_nhwc.size // max(channels, 1), channels), a_nhwc.dtype)
    np.copyto(rows.reshape(a_nhwc.shape), a_nhwc)
    return rows


# The last problem the planner timed and its random arrays (reused across candidates).
_timing_data: dict = {}


def _time_plan(problem: algos.Problem, plan: planner.Plan, input_grad: bool) -> float:
    """Seconds of one forward + backward of ``problem`` under ``plan`` on random data
    from a private generator (the planner's runner; never sees the caller's arrays)."""
    p = problem
    if _timing_data.get("problem") != p:
        rng = np.random.default_rng(0x1C0)
        kh, kw = p.geometry.kernel
        _timing_data.clear()
        _timing_data.update(
            problem=p,
            x=rng.standard_normal((p.n, p.c, p.h, p.w)).astype(p.dtype),
            w=rng.standard_normal((p.cout, p.cg, kh, kw)).astype(p.dtype),
            b=np.zeros(p.cout, p.dtype) if p.has_bias else None,
            dy=rng.standard_normal((p.n, p.cout, p.out_h, p.out_w)).astype(p.dtype))
    x, w, b, dy = (_timing_data[k] for k in ("x", "w", "b", "dy"))
    start = time.perf_counter()
    _, cache = _forward(p, plan, x, w, b)
    conv2d_backward(dy, cache, need_input_grad=input_grad)
    return time.perf_counter() - start
