"""The MPI communicator: data-parallel training over ``MPI.COMM_WORLD`` (mpi4py).

Imported only by :func:`im2col_net.distributed.mpi_communicator`, so no other code path
loads MPI. Every collective is nonblocking and waited for with a polled timeout, so a
rank that hangs or dies cannot block the others forever: on a timeout the waiting ranks
hold a short roll call (point-to-point messages) to name the ranks that do not answer,
and raise :class:`~.errors.CollectiveTimeout` naming them. With ``abort_on_error``
an exception that escapes to the top of a rank (``sys.excepthook``) prints the rank and
the cause and calls ``MPI_Abort``, which ends every rank (``mpiexec`` exits non-zero).
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import time
import traceback

import numpy as np
from mpi4py import MPI

from ..serialization import named_buffers
from .buckets import DEFAULT_BUCKET_BYTES, GradientBuckets
from .digest import DIGEST_PARTS, run_digest
from .errors import (
    CollectiveTimeout,
    DistributedError,
    ReplicaMismatchError,
    StartupMismatchError,
)
from .layers import patch_layers
from .sharding import check_shardable, shard_bounds

__all__ = ["MPICommunicator"]

_ROLL_CALL_TAG = 7311
# Busy-poll this long before sleeping between tests of a request (keeps latency low).
_SPIN_SECONDS = 0.02
_SLEEP_SECONDS = 0.0005
_NAME_BYTES = 96


def _log(rank, size, message):
    print(f"im2col-net [rank {rank} of {size}]: {message}", file=sys.stderr, flush=True)


class MPICommunicator:
    """Data parallelism over ``MPI.COMM_WORLD`` (a private duplicate of it).

    ``timeout``: seconds one collective may take before the run is declared hung.
    ``sync_batchnorm``: normalise with the global batch's moments (default: each rank's
    own shard, as PyTorch's DDP; the running statistics are then averaged over the ranks
    once per epoch). ``bucket_bytes``: size of the gradient messages. ``stats``: running
    totals of allreduce calls, bytes and seconds (for the benchmark). ``announce``: rank
    0 prints each rank's PID and host at start (``mpiexec`` names a dead process by PID).
    """

    def __init__(self, *, timeout=300.0, sync_batchnorm=False,
                 bucket_bytes=DEFAULT_BUCKET_BYTES, abort_on_error=True, announce=True):
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"MPICommunicator: timeout must be a positive number of seconds, "
                             f"got {timeout!r}")
        self.comm = MPI.COMM_WORLD.Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.is_writer = self.rank == 0
        self.timeout = float(timeout)
        self.sync_batchnorm = bool(sync_batchnorm)
        self.bucket_bytes = int(bucket_bytes)
        self.step = 0
        self.stats = {"calls": 0, "bytes": 0, "seconds": 0.0, "messages": 0}
        self._slice = None
        self._buckets = None
        self.announce = bool(announce)
        self.processes = []
        if abort_on_error:
            self._install_excepthook()

    # -- fault handling -------------------------------------------------------------
    def _install_excepthook(self):
        previous = sys.excepthook

        def hook(kind, value, tb):
            if issubclass(kind, KeyboardInterrupt):
                _log(self.rank, self.size, "interrupted; aborting every rank")
            else:
                if not issubclass(kind, DistributedError):  # those say all in one line
                    sys.stderr.write("".join(traceback.format_exception(kind, value, tb)))
                _log(self.rank, self.size, f"failed with {kind.__name__}: {value}; aborting "
                                           f"every rank")
            self.abort(130 if issubclass(kind, KeyboardInterrupt) else 1)
            previous(kind, value, tb)  # only reached if Abort returned

        sys.excepthook = hook

    def abort(self, code=1):
        """End every rank now (``MPI_Abort``); ``mpiexec`` exits with ``code``."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(int(code))

    def run_guarded(self, function, *, expected=(), prefix="error: "):
        """Call ``function()``; if it raises, print the rank and the cause and abort every
        rank: exit 2 for the ``expected`` exception types (one line, no traceback), 130
        for Ctrl-C, 1 otherwise (with the traceback). Returns ``function()``'s value."""
        try:
            return function()
        except expected as exc:
            _log(self.rank, self.size, f"{prefix}{exc}")
            self.abort(2)
        except KeyboardInterrupt:
            _log(self.rank, self.size, "interrupted; aborting every rank")
            self.abort(130)
        except BaseException as exc:  # noqa: BLE001 - any failure must end every rank
            if isinstance(exc, SystemExit) and exc.code in (0, None):
                raise
            if not isinstance(exc, DistributedError):
                traceback.print_exc()
            _log(self.rank, self.size, f"failed with {type(exc).__name__}: {exc}; aborting "
                                       f"every rank")
            self.abort(1)

    def _wait(self, requests, what):
        """Wait for ``requests`` (a list) with the timeout; on expiry, roll call + raise."""
        started = time.monotonic()
        deadline = started + self.timeout
        while not MPI.Request.Testall(requests):
            now = time.monotonic()
            if now > deadline:
                self._timed_out(what)
            if now - started > _SPIN_SECONDS:
                time.sleep(_SLEEP_SECONDS)

    def _timed_out(self, what):
        window = min(max(1.0, self.timeout / 10), 10.0)
        token = np.array([self.rank, self.step], dtype=np.int64)
        sends = [self.comm.Isend(token, dest=peer, tag=_ROLL_CALL_TAG)
                 for peer in range(self.size) if peer != self.rank]
        answered = {self.rank}
        end = time.monotonic() + window
        status = MPI.Status()
        incoming = np.empty(2, dtype=np.int64)
        while time.monotonic() < end and len(answered) < self.size:
            if self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=_ROLL_CALL_TAG, status=status):
                self.comm.Recv(incoming, source=status.Get_source(), tag=_ROLL_CALL_TAG)
                answered.add(int(incoming[0]))
            else:
                time.sleep(0.01)
        missing = sorted(set(range(self.size)) - answered)
        del sends  # never completed by a dead peer; MPI_Abort follows
        who = (f"rank{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} "
               f"did not answer (hung, dead or slower than the timeout)" if missing else
               "every rank answered the roll call, so they are stuck in different "
               "collectives (a bug)")
        message = (f"no progress for {self.timeout:g} s in {what} at step {self.step}; {who}")
        raise CollectiveTimeout(message)

    def allreduce_inplace(self, array, what="allreduce", op=None):
        """Sum (or ``op``) ``array`` over the ranks, in place, with the timeout."""
        started = time.perf_counter()
        request = self.comm.Iallreduce(MPI.IN_PLACE, array, op=op or MPI.SUM)
        self._wait([request], what)
        self.stats["calls"] += 1
        self.stats["messages"] += 1
        self.stats["bytes"] += int(array.nbytes)
        self.stats["seconds"] += time.perf_counter() - started
        return array

    def _allgather_bytes(self, data: bytes, what):
        mine = np.frombuffer(data, dtype=np.uint8).copy()
        out = np.empty((self.size, len(mine)), dtype=np.uint8)
        self._wait([self.comm.Iallgather(mine, out)], what)
        return out

    # -- the communicator interface used by fit -------------------------------------
    def start(self, model, optimizer, run, train_images):
        """Once before training: refuse a batch some rank would get no image of, patch
        the Dropout/BatchNorm layers, and compare a digest of the settings, data, model
        and optimizer with every rank (a mismatch raises :class:`StartupMismatchError`
        on every rank, naming the ranks and what differs)."""
        check_shardable(run["n_train"], run["batch_size"], self.size)
        self._announce()
        patch_layers(model, self, sync_batchnorm=self.sync_batchnorm)
        parts = run_digest(model, optimizer, run, train_images)
        mine = b"".join(bytes.fromhex(parts[name]) for name in DIGEST_PARTS)
        table = self._allgather_bytes(mine, "the start-up digest check")
        width = len(mine) // len(DIGEST_PARTS)
        problems = []
        for peer in range(1, self.size):
            differ = [name for i, name in enumerate(DIGEST_PARTS)
                      if not np.array_equal(table[peer, i * width:(i + 1) * width],
                                            table[0, i * width:(i + 1) * width])]
            if differ:
                problems.append(f"rank {peer} ({', '.join(differ)})")
        if problems:
            raise StartupMismatchError(
                f"the ranks were not started alike: compared with rank 0, "
                f"{'; '.join(problems)} differ; every rank must get the same settings, "
                f"data and model files")

    def _announce(self):
        """Rank 0 prints which process each rank is, so that ``mpiexec``'s report of a
        dead PID can be traced back to its rank."""
        me = f"pid {os.getpid()} on {socket.gethostname()}".encode()[:_NAME_BYTES]
        table = self._allgather_bytes(me.ljust(_NAME_BYTES, b"\0"), "the start-up roll")
        self.processes = [bytes(row).rstrip(b"\0").decode(errors="replace") for row in table]
        if self.is_writer and self.announce:
            _log(self.rank, self.size, "ranks: " + "; ".join(
                f"{peer} = {name}" for peer, name in enumerate(self.processes)))

    def armed_slice(self):
        """``(global batch size, start, stop)`` of the step in progress, or None."""
        return self._slice

    def shard(self, images, labels):
        """This rank's contiguous slice of the global batch (:func:`.shard_bounds`)."""
        n = len(labels)
        start, stop = shard_bounds(n, self.size, self.rank)
        self._slice = (n, start, stop)
        return images[start:stop], labels[start:stop]

    def reduce(self, grads, loss, correct, n):
        """Sum the gradients weighted by this shard's share ``n / global batch`` (the
        loss is a per-shard mean) plus the loss and accuracy sums, in the gradients'
        dtype, one nonblocking allreduce per bucket. Returns ``(grads, mean loss over the
        global batch, correct over it, global batch size)``."""
        global_n = self._slice[0] if self._slice is not None else n
        self._slice = None
        shapes = {name: np.shape(g) for name, g in grads.items()}
        dtype = np.result_type(*grads.values())
        if (self._buckets is None or self._buckets.shapes != shapes
                or self._buckets.dtype != dtype):
            self._buckets = GradientBuckets(shapes, dtype, bucket_bytes=self.bucket_bytes,
                                            extra=2)
        buffers = self._buckets.pack(grads, n / global_n, extra=(loss * n, correct))
        started = time.perf_counter()
        requests = [self.comm.Iallreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
                    for buffer in buffers]
        self._wait(requests, "the gradient allreduce")
        self.stats["calls"] += 1
        self.stats["messages"] += len(buffers)
        self.stats["bytes"] += self._buckets.nbytes
        self.stats["seconds"] += time.perf_counter() - started
        self.step += 1
        reduced, extra = self._buckets.unpack()
        return reduced, float(extra[0]) / global_n, int(round(float(extra[1]))), global_n

    def any(self, flag) -> bool:
        """True on every rank if ``flag`` is true on any (e.g. a Ctrl-C seen by one)."""
        value = np.array([1 if flag else 0], dtype=np.int32)
        self.allreduce_inplace(value, "the stop-flag agreement", op=MPI.MAX)
        return bool(value[0])

    def _replica_digest(self, model):
        h = hashlib.blake2b(digest_size=16)
        for name, value in [*model.named_parameters(), *sorted(named_buffers(model).items())]:
            value = np.ascontiguousarray(value)
            h.update(name.encode())
            h.update(memoryview(value).cast("B"))
        return h.digest()

    def check_replicas(self, model):
        """Once per epoch: average the BatchNorm running statistics over the ranks when
        each rank normalised with its own shard, then compare a hash of every weight and
        buffer; raise :class:`ReplicaMismatchError` on every rank if any differs."""
        if not self.sync_batchnorm:
            for _, value in sorted(named_buffers(model).items()):
                if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size:
                    self.allreduce_inplace(value, "the running-statistics average")
                    value /= value.dtype.type(self.size)
        table = self._allgather_bytes(self._replica_digest(model), "the replica check")
        drifted = [peer for peer in range(1, self.size)
                   if not np.array_equal(table[peer], table[0])]
        if drifted:
            raise ReplicaMismatchError(
                f"after step {self.step} the weights of rank(s) {drifted} differ from rank "
                f"0's; the replicas must stay identical (non-deterministic reduction or a "
                f"rank-dependent computation)")

    def evaluate(self, evaluate, model, images, labels, batch_size):
        """Each rank evaluates its contiguous slice of the set; the loss and correct sums
        are allreduced (float64). Returns ``(loss, accuracy, None)``: the predictions
        stay on their ranks."""
        start, stop = shard_bounds(len(labels), self.size, self.rank)
        sums = np.zeros(2, dtype=np.float64)
        if stop > start:
            loss, accuracy, _ = evaluate(model, images[start:stop], labels[start:stop],
                                         batch_size=batch_size)
            sums[:] = loss * (stop - start), round(accuracy * (stop - start))
        self.allreduce_inplace(sums, "the evaluation sums")
        return float(sums[0]) / len(labels), float(sums[1]) / len(labels), None
