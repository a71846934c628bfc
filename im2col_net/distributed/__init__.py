"""Data-parallel training over MPI (the optional ``mpi`` extra: mpi4py and an MPI).

Every process (rank) holds the whole model; :func:`~im2col_net.training.fit` with
``communicator=`` gives each rank its slice of every global batch, sums the weighted
gradients with an allreduce and applies the same update everywhere. See
``docs/distributed.md``.

- :class:`LocalCommunicator`: the single-process communicator ``fit`` uses by default;
  every method is the identity, and it imports no MPI.
- :func:`mpi_communicator`: the MPI communicator for a run under ``mpiexec`` (imports
  ``mpi4py`` on the first call only, so nothing here loads MPI unless asked).
- :func:`shard_bounds`, :class:`GradientBuckets`, :func:`run_digest`: the pure-NumPy
  pieces (sharding rule, gradient packing, start-up digest), usable without MPI.
"""

from __future__ import annotations

from .buckets import DEFAULT_BUCKET_BYTES, GradientBuckets
from .digest import run_digest
from .errors import DistributedError, ReplicaMismatchError, StartupMismatchError
from .local import LocalCommunicator
from .sharding import check_shardable, shard_bounds

__all__ = [
    "LocalCommunicator", "mpi_communicator", "mpi_available", "shard_bounds",
    "check_shardable", "GradientBuckets", "DEFAULT_BUCKET_BYTES", "run_digest",
    "DistributedError", "ReplicaMismatchError", "StartupMismatchError", "DEFAULT_TIMEOUT",
]

# Seconds a rank waits in one collective before it declares the run hung.
DEFAULT_TIMEOUT = 300.0


def mpi_available() -> bool:
    """True when ``mpi4py`` can be imported (does not initialise MPI)."""
    import importlib.util

    return importlib.util.find_spec("mpi4py") is not None


def mpi_communicator(*, timeout: float = DEFAULT_TIMEOUT, sync_batchnorm: bool = False,
                     bucket_bytes: int = DEFAULT_BUCKET_BYTES, abort_on_error: bool = True,
                     announce: bool = True):
    """An :class:`~.mpi.MPICommunicator` over ``MPI.COMM_WORLD`` (see its docstring).

    Raises :class:`DistributedError` when mpi4py is not installed.
    """
    if not mpi_available():
        raise DistributedError("distributed training needs mpi4py and an MPI; install the "
                               "'mpi' extra: pip install 'im2col_net[mpi]'")
    from .mpi import MPICommunicator

    return MPICommunicator(timeout=timeout, sync_batchnorm=sync_batchnorm,
                           bucket_bytes=bucket_bytes, abort_on_error=abort_on_error,
                           announce=announce)
