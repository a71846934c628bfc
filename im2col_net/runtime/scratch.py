"""Per-thread work buffers that live across calls, so the column matrices of successive
steps reuse the same (already faulted-in) memory. A scratch buffer must never escape the
function that asked for it."""

from __future__ import annotations

import math
import threading

import numpy as np

__all__ = ["scratch", "zeros"]

_local = threading.local()
_zeros: dict[str, np.ndarray] = {}


def scratch(slot: str, shape, dtype) -> np.ndarray:
    """A C-contiguous work array of ``shape`` and ``dtype`` private to the calling thread.

    Reused (contents undefined) by the next request for the same ``slot`` and dtype in
    this thread, so the caller must be done with it before asking again.
    """
    store = _local.__dict__.setdefault("buffers", {})
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    key = (slot, dtype.str)
    buffer = store.get(key)
    if buffer is None or buffer.size < size:
        buffer = np.empty(max(size, 1), dtype=dtype)
        store[key] = buffer
    return buffer[:size].reshape(shape)


def zeros(shape, dtype) -> np.ndarray:
    """A read-only C-contiguous array of zeros, shared by all callers and never written.

    For ``np.maximum(x, zeros(x.shape, x.dtype))``: NumPy's maximum against a scalar
    takes a slow element-by-element loop, against an array its vector loop. The buffer
    comes from ``np.zeros`` and is never written: a large one stays untouched pages that
    the OS maps to its shared zero page, so reading it costs no resident memory.
    """
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    buffer = _zeros.get(dtype.str)
    if buffer is None or buffer.size < size:
        buffer = np.zeros(max(size, 1 << 16), dtype=dtype)
        buffer.flags.writeable = False
        _zeros[dtype.str] = buffer
    return buffer[:size].reshape(shape)
