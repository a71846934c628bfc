"""Gradient buckets: the model's gradients packed into a few large contiguous buffers.

An allreduce per parameter would send dozens of small messages a step, each paying the
link latency; packing them into buffers of about ``bucket_bytes`` sends few, large ones.
Buckets are filled from the last parameter to the first (the order backward produces
them), so a bucket holds layers that finish their backward together.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GradientBuckets", "DEFAULT_BUCKET_BYTES"]

# About DDP's default (25 MiB); large enough that a small model is one message.
DEFAULT_BUCKET_BYTES = 16 << 20


class GradientBuckets:
    """Fixed packing of the gradients named in ``shapes`` (name -> shape, in parameter
    order) of one ``dtype`` into buffers of at most ``bucket_bytes`` (a larger single
    parameter gets a bucket of its own). ``extra`` scalars are appended to the last
    bucket (the loss and accuracy sums ride along with the gradients)."""

    def __init__(self, shapes: dict, dtype, *, bucket_bytes: int = DEFAULT_BUCKET_BYTES,
                 extra: int = 0):
        if bucket_bytes < 1:
            raise ValueError(f"GradientBuckets: bucket_bytes must be positive, got "
                             f"{bucket_bytes!r}")
        self.dtype = np.dtype(dtype)
        self.names = list(shapes)
        self.shapes = {name: tuple(shape) for name, shape in shapes.items()}
        limit = max(1, bucket_bytes // self.dtype.itemsize)
        groups, current, filled = [], [], 0
        for name in reversed(self.names):
            size = int(np.prod(self.shapes[name], dtype=np.int64))
            if current and filled + size > limit:
                groups.append(current)
                current, filled = [], 0
            current.append(name)
            filled += size
        if current or not groups:
            groups.append(current)
        self.extra = int(extra)
        self.buffers = []
        self.slots = {}  # name -> (bucket index, start, stop)
        for index, group in enumerate(groups):
            offset = 0
            for name in group:
                size = int(np.prod(self.shapes[name], dtype=np.int64))
                self.slots[name] = (index, offset, offset + size)
                offset += size
            if index == len(groups) - 1:
                offset += self.extra
            self.buffers.append(np.zeros(offset, dtype=self.dtype))

    @property
    def nbytes(self) -> int:
        """Bytes of all buffers (what one allreduce per bucket moves per rank)."""
        return int(sum(buffer.nbytes for buffer in self.buffers))

    def pack(self, grads: dict, scale, extra=()):
        """Copy ``grads * scale`` (scaled in the buffers' dtype) and the ``extra`` values
        into the buffers; returns the buffers."""
        if set(grads) != set(self.names):
            raise ValueError(f"GradientBuckets.pack: gradients {sorted(grads)} do not match "
                             f"the parameters {sorted(self.names)}")
        scale = self.dtype.type(scale)
        for name in self.names:
            index, start, stop = self.slots[name]
            target = self.buffers[index][start:stop]
            np.multiply(np.asarray(grads[name]).reshape(-1), scale, out=target,
                        casting="same_kind")
        if self.extra:
            if len(extra) != self.extra:
                raise ValueError(f"GradientBuckets.pack: expected {self.extra} extra values, "
                                 f"got {len(extra)}")
            self.buffers[-1][-self.extra:] = extra
        return self.buffers

    def unpack(self) -> tuple[dict, np.ndarray]:
        """``(grads as views into the buffers, the extra values)``."""
        grads = {}
        for name in self.names:
            index, start, stop = self.slots[name]
            grads[name] = self.buffers[index][start:stop].reshape(self.shapes[name])
        extra = self.buffers[-1][len(self.buffers[-1]) - self.extra:]
        return grads, extra
