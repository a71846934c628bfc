"""Per-instance patches that make Dropout and BatchNorm layers aware of the shard.

While a communicator is *armed* (between ``shard()`` and ``reduce()`` of one step) and a
patched layer sees exactly this rank's shard of the batch:

- **Dropout** draws the mask of the whole global batch from its generator and keeps
  this rank's rows. Every rank's generator therefore advances identically (one state
  to checkpoint, valid for any number of ranks), and the masks are exactly those one
  process would draw at the same global batch.
- **BatchNorm** (synchronised mode only) normalises with the moments of the global
  batch (allreduced sums) and, in backward, allreduces the two per-channel gradient
  sums the batch statistics need.

Otherwise (eval mode, unarmed, another batch size) the layer's own method runs.
"""

from __future__ import annotations

import numpy as np

from ..functional.batchnorm import batch_norm_forward
from ..layers.batchnorm import BatchNorm1D, BatchNorm2D
from ..layers.dense import Dropout
from ..serialization import named_layers

__all__ = ["patch_layers"]


class _RowsOfGlobalDraw:
    """Stands in for a Generator inside one dropout forward: ``random(shape)`` draws the
    global batch's numbers and returns this shard's rows."""

    def __init__(self, rng, global_n, start, stop):
        self._rng, self._n, self._start, self._stop = rng, global_n, start, stop

    def random(self, shape, dtype=np.float64):
        full = self._rng.random((self._n, *tuple(shape)[1:]), dtype=dtype)
        return full[self._start:self._stop]


def _patch_dropout(layer, comm):
    original = layer.forward

    def forward(x):
        armed = comm.armed_slice()
        if armed is None or not layer.training or np.shape(x)[0] != armed[2] - armed[1]:
            return original(x)
        rng = layer.rng
        layer.rng = _RowsOfGlobalDraw(rng, *armed)
        try:
            return original(x)
        finally:
            layer.rng = rng

    layer.forward = forward


def _axes(ndim):
    return (0, *range(2, ndim))


def _patch_batchnorm(layer, comm):
    original_forward, original_backward = layer.forward, layer.backward
    pending = {}

    def forward(x):
        pending.clear()
        armed = comm.armed_slice()
        if armed is None or not layer.training or np.shape(x)[0] != armed[2] - armed[1]:
            return original_forward(x)
        x = np.asarray(x)
        if x.dtype != layer.dtype or x.ndim not in layer._ranks \
                or x.shape[1] != layer.num_features:
            return original_forward(x)  # let the layer raise its own error
        axes, channels = _axes(x.ndim), x.shape[1]
        sums = np.empty(channels + 1, dtype=x.dtype)
        sums[:channels] = x.sum(axis=axes, dtype=x.dtype)
        sums[channels] = x.size // channels
        comm.allreduce_inplace(sums, "sync batch norm (mean)")
        count = int(round(float(sums[channels])))
        if count <= 1:
            raise ValueError(f"{layer!r}: expected more than 1 value per channel over the "
                             f"global batch when training, got {count}")
        mean = sums[:channels] / x.dtype.type(count)
        squares = np.square(x - mean.reshape((1, -1) + (1,) * (x.ndim - 2))).sum(
            axis=axes, dtype=x.dtype)
        comm.allreduce_inplace(squares, "sync batch norm (variance)")
        var = squares / x.dtype.type(count)
        y, cache = batch_norm_forward(x, mean, var, layer.params.get("weight"),
                                      layer.params.get("bias"), training=False, eps=layer.eps,
                                      owner=repr(layer))
        if layer.track_running_stats:
            buffers = layer.buffers
            tracked = int(buffers["num_batches_tracked"]) + 1
            factor = 1.0 / tracked if layer.momentum is None else layer.momentum
            factor = x.dtype.type(factor)
            buffers["running_mean"] *= 1 - factor
            buffers["running_mean"] += factor * mean
            buffers["running_var"] *= 1 - factor
            buffers["running_var"] += factor * (var * x.dtype.type(count / (count - 1)))
            buffers["num_batches_tracked"] += 1
        layer._cache = cache
        pending["sync"] = (cache, count, x.dtype.type(x.shape[0] / armed[0]))
        return y

    def backward(dy):
        if "sync" not in pending:
            return original_backward(dy)
        cache, count, weight = pending.pop("sync")
        dy = layer._check_dy(dy, cache.xhat.shape, cache.xhat.dtype)
        dy = np.asarray(dy, dtype=cache.xhat.dtype)
        xhat, ndim = cache.xhat, cache.xhat.ndim
        channels, axes = xhat.shape[1], _axes(ndim)
        dbias = dy.sum(axis=axes)
        dweight = np.sum(dy * xhat, axis=axes)
        sums = np.concatenate([dbias, dweight]) * weight
        comm.allreduce_inplace(sums, "sync batch norm (backward)")
        # Global sums in units of this rank's local loss: divide by its weight n_k / B.
        denominator = xhat.dtype.type(count) * weight
        shape = (1, -1) + (1,) * (ndim - 2)
        scale = cache.inv_std if cache.weight is None else cache.inv_std * cache.weight
        dx = xhat * (sums[channels:] / denominator).reshape(shape)
        dx += (sums[:channels] / denominator).reshape(shape)
        np.subtract(dy, dx, out=dx)
        dx *= scale.reshape(shape)
        if layer.affine:
            layer.grads["weight"] = dweight
            layer.grads["bias"] = dbias
        return dx

    layer.forward, layer.backward = forward, backward


def patch_layers(model, comm, *, sync_batchnorm: bool) -> dict:
    """Patch every Dropout (and, with ``sync_batchnorm``, every BatchNorm) layer of
    ``model`` once for ``comm``; returns ``{"dropout": n, "batchnorm": m}`` counts."""
    counts = {"dropout": 0, "batchnorm": 0}
    for _, layer in named_layers(model):
        if getattr(layer, "_distributed_patched", None) is comm:
            continue
        if isinstance(layer, Dropout):
            _patch_dropout(layer, comm)
            counts["dropout"] += 1
        elif sync_batchnorm and isinstance(layer, (BatchNorm1D, BatchNorm2D)):
            _patch_batchnorm(layer, comm)
            counts["batchnorm"] += 1
        else:
            continue
        layer._distributed_patched = comm
    return counts
