"""Run independent blocks of an operation on a few threads.

NumPy releases the GIL inside ufunc loops, copies and BLAS calls, so threads that each
work on their own slice of the batch run truly in parallel. While such a region runs,
BLAS is held at one thread (through ``threadpoolctl``, the optional ``bench`` extra) so
the region's threads and BLAS's own threads do not fight over the cores; blocks are
handed out dynamically, so a thread slowed by another process simply takes fewer.

The number of threads follows the BLAS thread count (``OPENBLAS_NUM_THREADS``,
``threadpoolctl.threadpool_limits``), so one knob sets both. Without ``threadpoolctl``
every region runs serially in the calling thread and BLAS keeps its own threads (even
under :func:`forced_workers` or an explicit ``workers``): the engine's threads never run
on top of a multi-threaded BLAS.

Every count here (blocks, chains) depends on the sizes only, never on the thread
count, so the order of every floating-point sum is fixed by the shapes.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from .blas import blas_controllable, blas_thread_count, pin_this_thread, single_threaded_blas

__all__ = ["worker_count", "forced_workers", "run_blocks", "call", "for_row_blocks", "matmul",
           "block_count", "block_bounds", "chains"]

# Upper bound on blocks per region: keeps the Python-level loop count independent of the
# batch size (blocks simply grow for very large batches).
MAX_BLOCKS = 64
# Block and chain counts are rounded to multiples of this, so that common thread counts
# (1, 2, 4) get equal numbers of them.
BALANCE = 4
# Fewest blocks a large enough job is cut into (work for a few threads; see block_count).
MIN_BLOCKS = 8
# Reductions (weight and bias gradients): most chains, and the memory their accumulators
# may take together (see chains()).
MAX_CHAINS = 8
CHAIN_BYTES = 16 << 20
# matmul: most blocks, fewest rows (or columns) per block, and the size (M*N*K) below
# which one single-threaded GEMM beats splitting.
MATMUL_BLOCKS = 4
MIN_GEMM_SPLIT = 32
SMALL_GEMM = 1 << 21
# for_row_blocks: block size, and the job size up to which one thread does it all: an
# element-wise pass over a few MiB is over before a woken thread would start on its
# share (docs/performance.md has the measurement; pool.SERIAL_BYTES is the same bound).
ROW_BLOCK_BYTES = 1 << 20
SMALL_JOB_BYTES = 2 << 20

_region_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_forced: int | None = None  # set by forced_workers()


@contextmanager
def forced_workers(count: int):
    """Within the block, :func:`worker_count` returns ``count`` (tests and benchmarks use
    it to exercise or compare thread counts; not thread-safe)."""
    global _forced
    previous, _forced = _forced, int(count)
    try:
        yield
    finally:
        _forced = previous


def worker_count() -> int:
    """Threads a parallel region may use: the smallest BLAS thread count, at least 1."""
    if _forced is not None:
        return max(1, _forced)
    return blas_thread_count()


def block_count(items: int, item_bytes: int, budget_bytes: int,
                minimum: int | None = None) -> int:
    """How many blocks to cut ``items`` into: each about ``budget_bytes``, at least
    ``minimum`` (default :data:`MIN_BLOCKS`: work for several threads) when there are
    enough items, never more than :data:`MAX_BLOCKS`.

    Independent of the thread count on purpose: the blocks fix the order of every
    floating-point sum, so results do not depend on how many threads ran them.
    """
    if items <= 0:
        return 0
    by_budget = math.ceil(items * max(item_bytes, 1) / max(budget_bytes, 1))
    least = MIN_BLOCKS if minimum is None else minimum
    count = max(by_budget, least)
    # A multiple of BALANCE, so that 1, 2 or 4 threads get equal shares.
    count = -(-count // BALANCE) * BALANCE
    return max(1, min(items, MAX_BLOCKS, count))


def block_bounds(block: int, items: int, count: int) -> tuple[int, int]:
    """``(start, stop)`` of block ``block`` when ``items`` are cut into ``count`` blocks
    of near-equal size (the one place this split is computed)."""
    return block * items // count, (block + 1) * items // count


def chains(blocks: int, accumulator_bytes: int) -> list[range]:
    """Split ``range(blocks)`` into contiguous chains for a reduction: each chain adds its
    blocks, in order, into its own accumulator, and the accumulators are then summed in
    chain order. Chains are what threads take dynamically, so the result is the same for
    any number of threads and any timing. More chains balance load better; their count
    is capped so that the accumulators stay within :data:`CHAIN_BYTES`."""
    count = max(1, min(blocks, MAX_CHAINS, CHAIN_BYTES // max(accumulator_bytes, 1)))
    if count > BALANCE:
        count -= count % BALANCE  # equal shares for 1, 2 or 4 threads
    return [range(*block_bounds(c, blocks, count)) for c in range(count)]


def _forget_threads_after_fork():
    """A forked child has none of the parent's threads: start afresh."""
    global _pool, _pool_size, _region_lock
    _pool, _pool_size = None, 0
    _region_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads_after_fork)


def _executor(size: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size < size:
        if _pool is not None:
            _pool.shutdown(wait=True)
        _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="im2col_net")
        _pool_size = size
    return _pool


def run_blocks(task, count: int, workers: int | None = None) -> None:
    """Call ``task(block, worker)`` for ``block`` in ``range(count)``; ``worker`` is the
    index (``0 <= worker < workers``) of the thread running it (which thread runs which
    block varies from call to call, so results must not depend on it: reduce through
    :func:`chains`). Blocks must be independent. Returns when all are done; the first
    exception raised by a block is re-raised.

    With more than one worker available, BLAS runs single-threaded for the whole region
    (also when ``count`` is 1: a small GEMM is not worth waking BLAS threads for). Runs
    serially in the caller, BLAS untouched, when one worker is wanted or another region
    is already running (nested or concurrent calls).
    """
    available = worker_count() if workers is None else workers
    if count <= 0:
        return
    if available > 1 and not blas_controllable():
        # BLAS cannot be held at one thread (no threadpoolctl): threads of our own would
        # run on top of BLAS's and oversubscribe the cores, so a forced count is ignored.
        available = 1
    if available <= 1 or not _region_lock.acquire(blocking=False):
        for block in range(count):
            task(block, 0)
        return
    try:
        with single_threaded_blas():
            _run(task, count, min(available, count))
    finally:
        _region_lock.release()


def call(fn, *args):
    """``fn(*args)`` as a one-block region: BLAS single-threaded inside, so that a small
    GEMM outside the blocked operations does not wake BLAS's own threads (which then
    spin for a while, taking cycles from the region threads that come next)."""
    result = []
    run_blocks(lambda block, worker: result.append(fn(*args)), 1)
    return result[0]


def _run(task, count, workers):
    if workers == 1:
        for block in range(count):
            task(block, 0)
    else:
        _run_threaded(task, count, workers)


def for_row_blocks(rows: int, row_bytes: int, fn) -> None:
    """Call ``fn(start, stop, worker)`` over blocks of ``range(rows)`` (about
    :data:`ROW_BLOCK_BYTES` each) with :func:`run_blocks`; small jobs run as one call."""
    if rows * row_bytes <= SMALL_JOB_BYTES:
        if rows:
            fn(0, rows, 0)
        return
    workers = worker_count()
    count = block_count(rows, row_bytes, ROW_BLOCK_BYTES)

    def task(block, worker):
        fn(*block_bounds(block, rows, count), worker)

    run_blocks(task, count, workers)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a (M, K) @ b (K, N)`` -> ``(M, N)``, split into row blocks (``M >= N``) or column
    blocks of the result, each one single-threaded GEMM (see :func:`run_blocks`)."""
    m, n = a.shape[0], b.shape[1]
    if out is None:
        out = np.empty((m, n), dtype=np.result_type(a, b))
    length = max(m, n)
    # The split depends on the shapes only (BLAS kernels round differently for other
    # block sizes), so results do not depend on the thread count.
    blocks = max(1, min(MATMUL_BLOCKS, length // MIN_GEMM_SPLIT))
    if a.shape[1] * m * n < SMALL_GEMM:
        blocks = 1

    def task(block, _):
        lo, hi = block * length // blocks, (block + 1) * length // blocks
        if m >= n:
            np.matmul(a[lo:hi], b, out=out[lo:hi])
        else:
            np.matmul(a, b[:, lo:hi], out=out[:, lo:hi])

    run_blocks(task, blocks)
    return out


def _run_threaded(task, count, workers):
    counter = iter(range(count))
    lock = threading.Lock()
    failed = []
    # NumPy's floating-point error settings are per thread: the pool threads take the
    # caller's, so that a caller's np.errstate covers the whole region.
    fp_settings = np.geterr()

    def loop(worker):
        if worker:
            pin_this_thread()
            with np.errstate(**fp_settings):
                _loop(worker)
        else:
            _loop(worker)

    def _loop(worker):
        while not failed:
            with lock:
                block = next(counter, None)
            if block is None:
                return
            try:
                task(block, worker)
            except BaseException as exc:  # re-raised in the caller below
                failed.append(exc)
                return

    futures = [_executor(workers - 1).submit(loop, w) for w in range(1, workers)]
    loop(0)  # the calling thread works too
    for future in futures:
        future.result()
    if failed:
        raise failed[0]


