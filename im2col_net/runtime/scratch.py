"""Per-thread work buffers that live across calls, so the column matrices of successive
steps reuse the same (already faulted-in) memory. A scratch buffer must never escape the
function that asked for it."""

from __future__ import annotations

import math
import threading

import numpy as np

__all__ = ["scratch"]

_local = threading.local()


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
