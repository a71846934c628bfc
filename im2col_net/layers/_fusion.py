"""Internal: run a ``ReLU`` followed by a ``MaxPool2D`` as one fused operation.

``max_pool(relu(x)) == relu(max_pool(x))``, so pooling first lets the ReLU (and its
backward mask) work on the ``kh*kw`` times smaller pooled array; the full-size ReLU
output is never made. :class:`~im2col_net.layers.containers.Sequential` uses this for
adjacent pairs. Values and gradients equal the layer-by-layer path exactly, and both
layers are left with the caches their own ``forward`` would have produced, so calling
their ``backward`` one by one still works.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..functional import pool as P
from .base import grad_enabled
from .dense import ReLU
from .pool import MaxPool2D, no_argmax_error

__all__ = ["fusable", "FusedRecord", "forward_pair", "backward_pair"]


@dataclass
class FusedRecord:
    """What a fused forward left behind; valid while both layers still hold these caches."""

    relu_cache: object
    pool_cache: object
    positive: np.ndarray | None   # (N, C, Ho, Wo) bool: pooled output > 0; None under no_grad


def fusable(first, second, x) -> bool:
    """True for an exact ``ReLU`` then an exact ``MaxPool2D`` with tiling windows on a
    4-D float array (anything else takes the layer-by-layer path and its error checks)."""
    return (type(first) is ReLU and type(second) is MaxPool2D
            and second.geometry.tiles_exactly and not second.ceil_mode
            and not second.return_indices and isinstance(x, np.ndarray)
            and x.ndim == 4 and x.dtype.kind == "f" and x.dtype.isnative)


def forward_pair(relu: ReLU, pool: MaxPool2D, x: np.ndarray):
    """``pool(relu(x))``; sets both layers' caches. Returns ``(y, FusedRecord)``."""
    y, pool_cache, positive = P.relu_max_pool2d_forward_geom(
        x, pool.geometry, owner=repr(pool), for_backward=grad_enabled())
    # ReLU's backward needs only the sign of its input, which is x itself.
    relu._cache = (x.shape, x, x.dtype)
    pool._cache = pool_cache
    return y, FusedRecord(relu._cache, pool_cache, positive)


def still_valid(relu: ReLU, pool: MaxPool2D, record: FusedRecord) -> bool:
    return relu._cache is record.relu_cache and pool._cache is record.pool_cache


def backward_pair(relu: ReLU, pool: MaxPool2D, dy, record: FusedRecord):
    """Gradient through both layers: mask at the pooled size, then route to the argmax."""
    dy, cache = pool._dy(dy)
    if record.positive is None:
        raise no_argmax_error(pool)
    return P.max_pool2d_backward(dy, cache, mask=record.positive)
