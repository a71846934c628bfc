"""How a global batch is cut into per-rank shards."""

from __future__ import annotations

import math

__all__ = ["shard_bounds", "check_shardable"]


def shard_bounds(n: int, size: int, rank: int) -> tuple[int, int]:
    """``(start, stop)`` of rank ``rank``'s contiguous slice of ``n`` items over ``size``
    ranks. Boundaries are ``n * r // size``, so the slices tile ``0..n`` in rank order
    and their sizes differ by at most one."""
    return n * rank // size, n * (rank + 1) // size


def check_shardable(n_train: int, batch_size: int, size: int, owner="fit"):
    """Refuse a run where some rank would get an empty shard of some batch (the last,
    partial batch included), naming the numbers involved."""
    if size < 2:
        return
    last = n_train - (math.ceil(n_train / batch_size) - 1) * batch_size
    smallest = min(batch_size, n_train, last)
    if smallest < size:
        which = "the batch size" if smallest == min(batch_size, n_train) else (
            f"the last batch of each epoch ({n_train} images in batches of {batch_size})")
        raise ValueError(f"{owner}: {which} gives {smallest} images, fewer than the {size} "
                         f"ranks; every rank needs at least one image of every batch")
