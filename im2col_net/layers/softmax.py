"""Softmax and LogSoftmax over the class axis, as layers (for models that end in them,
such as imported ONNX classifiers)."""

from __future__ import annotations

import numpy as np

from ..functional.basic import log_softmax
from .base import Layer, check_float_input, check_input_shape


class _RowSoftmax(Layer):
    """Shared input check: ``(N, K)`` floats; the output has the same shape and dtype."""

    def _input(self, x):
        return check_float_input(self, x, 2)

    def output_shape(self, input_shape):
        return check_input_shape(self, input_shape, 2)


class Softmax(_RowSoftmax):
    """``exp(x) / sum(exp(x))`` along axis 1 of ``(N, K)`` (torch.nn.Softmax(dim=1)).

    Training a model that ends in Softmax with softmax cross-entropy applies softmax
    twice; drop the layer (or use :class:`LogSoftmax`) before ``fit``.
    """

    def forward(self, x):
        x = self._input(x)
        y = np.exp(log_softmax(x))
        self._cache = y
        return y

    def backward(self, dy):
        y = self._require_cache()
        dy = self._check_dy(dy, y.shape, y.dtype)
        return y * (dy - (dy * y).sum(axis=1, keepdims=True))


class LogSoftmax(_RowSoftmax):
    """``log softmax`` along axis 1 of ``(N, K)`` (torch.nn.LogSoftmax(dim=1)).

    Softmax cross-entropy of its output equals that of its input, so a classifier ending
    in LogSoftmax trains unchanged.
    """

    def forward(self, x):
        y = log_softmax(self._input(x))
        self._cache = y
        return y

    def backward(self, dy):
        y = self._require_cache()
        dy = self._check_dy(dy, y.shape, y.dtype)
        return dy - np.exp(y) * dy.sum(axis=1, keepdims=True)
