"""The engine's bottom layer: threads, BLAS control and scratch buffers.

``functional``, ``optim`` and ``bench`` use it only through this module's names; it
imports nothing else from the package.
"""

from .blas import (
    blas_controllable,
    blas_info,
    blas_thread_count,
    machine_identity,
    single_threaded_blas,
)
from .scratch import scratch, zeros
from .threads import (
    BALANCE,
    MIN_BLOCKS,
    block_bounds,
    block_count,
    call,
    chains,
    for_row_blocks,
    forced_workers,
    matmul,
    run_blocks,
    worker_count,
)

__all__ = ["BALANCE", "MIN_BLOCKS", "blas_controllable", "blas_info", "blas_thread_count",
           "machine_identity", "single_threaded_blas", "scratch", "zeros", "block_bounds",
           "block_count", "call", "chains", "for_row_blocks", "forced_workers", "matmul",
           "run_blocks", "worker_count"]
