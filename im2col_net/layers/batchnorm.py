"""BatchNorm1D and BatchNorm2D over :mod:`im2col_net.functional.batchnorm`."""

from __future__ import annotations

import numpy as np

from ..functional.batchnorm import batch_norm_backward, batch_norm_forward
from .base import Layer, check_count, check_float_dtype, check_float_input, init_ones, init_zeros


def _real(value) -> float:
    """``float(value)`` for a real number, NaN for anything else (fails every range check)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        return float("nan")
    return float(value)


class _BatchNorm(Layer):
    """Shared implementation; subclasses fix the accepted input ranks.

    Parameters ``weight`` (ones) and ``bias`` (zeros), shape ``(num_features,)``, when
    ``affine``. Buffers (in :attr:`buffers`, not trained) ``running_mean`` (zeros),
    ``running_var`` (ones) and ``num_batches_tracked`` (0-d int64) when
    ``track_running_stats``. ``momentum=None`` gives a cumulative average, as in torch.
    """

    _ranks: tuple[int, ...] = ()
    _shape_text = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, *, dtype=np.float32):
        super().__init__()
        name = f"{type(self).__name__}({num_features!r})"
        check_count(name, "num_features", num_features)
        if not _real(eps) > 0:
            raise ValueError(f"{name}: eps must be a positive number, got {eps!r}")
        if momentum is not None and not 0.0 <= _real(momentum) <= 1.0:
            raise ValueError(f"{name}: momentum must be in [0, 1] or None, got {momentum!r}")
        dtype = check_float_dtype(name, dtype)
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        if self.affine:
            self.params["weight"] = init_ones(self.num_features, dtype)
            self.params["bias"] = init_zeros(self.num_features, dtype)
        self.buffers: dict[str, np.ndarray] = {}
        if self.track_running_stats:
            self.buffers["running_mean"] = init_zeros(self.num_features, dtype)
            self.buffers["running_var"] = init_ones(self.num_features, dtype)
            self.buffers["num_batches_tracked"] = np.zeros((), dtype=np.int64)
        self._dtype = dtype

    def get_config(self):
        return dict(num_features=self.num_features, eps=self.eps, momentum=self.momentum,
                    affine=self.affine, track_running_stats=self.track_running_stats)

    @property
    def dtype(self):
        return self._dtype

    def astype(self, dtype):
        super().astype(dtype)
        self._dtype = np.dtype(dtype)
        for name in ("running_mean", "running_var"):
            if name in self.buffers:
                self.buffers[name] = self.buffers[name].astype(dtype)
        return self

    def reset_running_stats(self):
        """Running mean 0, variance 1, batch count 0 (in place)."""
        if self.track_running_stats:
            self.buffers["running_mean"][...] = 0
            self.buffers["running_var"][...] = 1
            self.buffers["num_batches_tracked"][...] = 0

    def _check_shape(self, shape):
        if len(shape) not in self._ranks or shape[1] != self.num_features:
            raise ValueError(
                f"{self!r}: expected input of shape {self._shape_text.format(c=self.num_features)}"
                f", got shape {shape}"
            )

    def output_shape(self, input_shape):
        shape = tuple(int(s) for s in input_shape)
        self._check_shape(shape)
        return shape

    def forward(self, x):
        x = check_float_input(self, x, None, self._dtype)
        self._check_shape(x.shape)
        update = self.training and self.track_running_stats
        use_running = update or (self.track_running_stats and not self.training)
        factor = 0.0
        if update:
            # torch counts the batch before deriving the cumulative-average factor.
            tracked = int(self.buffers["num_batches_tracked"]) + 1
            factor = 1.0 / tracked if self.momentum is None else self.momentum
        running = ((self.buffers["running_mean"], self.buffers["running_var"]) if use_running
                   else (None, None))
        y, self._cache = batch_norm_forward(
            x, *running, self.params.get("weight"), self.params.get("bias"),
            training=self.training or not self.track_running_stats, momentum=factor,
            eps=self.eps, owner=repr(self),
        )
        if update:
            self.buffers["num_batches_tracked"] += 1
        return y

    def backward(self, dy):
        cache = self._require_cache()
        dy = self._check_dy(dy, cache.xhat.shape, cache.xhat.dtype)
        dx, dweight, dbias = batch_norm_backward(dy, cache)
        if self.affine:
            self.grads["weight"] = dweight
            self.grads["bias"] = dbias
        return dx


class BatchNorm2D(_BatchNorm):
    """Batch normalisation of ``(N, C, H, W)`` per channel over N, H and W (torch.nn.BatchNorm2d).

    Training mode normalises with the batch mean and biased variance and updates the
    running statistics (``running = (1 - momentum) * running + momentum * batch``, the
    variance unbiased); eval mode normalises with the running statistics. Without
    ``track_running_stats`` the batch statistics are used in both modes.
    """

    _ranks = (4,)
    _shape_text = "(N, {c}, H, W)"


class BatchNorm1D(_BatchNorm):
    """Batch normalisation of ``(N, C)`` or ``(N, C, L)`` per channel (torch.nn.BatchNorm1d).

    Same modes and statistics as :class:`BatchNorm2D`.
    """

    _ranks = (2, 3)
    _shape_text = "(N, {c}) or (N, {c}, L)"
