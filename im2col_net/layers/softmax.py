"""Softmax and LogSoftmax along any axis ``dim`` (default 1, the class axis), as layers
(for models that end in them, such as imported ONNX classifiers)."""

from __future__ import annotations

import numpy as np

from .. import reference as ref
from ..functional import activations as A
from .base import Layer, check_float_input, check_input_shape


class _AxisSoftmax(Layer):
    """Shared by both: ``dim`` (negative counts from the end, as torch) must name an axis
    of the input; the output has the input's shape and dtype.

    torch's ``dim=None`` picks an axis from the rank with a deprecation warning; here the
    default is ``dim=1`` (the class axis of ``(N, K)`` and of ``(N, C, H, W)``), and None
    is refused.
    """

    _log = False

    def __init__(self, dim=1):
        super().__init__()
        name = type(self).__name__
        if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)):
            raise ValueError(f"{name}: dim must be an int (negative counts from the end; "
                             f"torch's implicit dim=None is not supported), got {dim!r}")
        self.dim = int(dim)

    def get_config(self):
        return dict(dim=self.dim)

    def _axis(self, shape):
        if not -len(shape) <= self.dim < len(shape):
            raise ValueError(f"{self!r}: dim {self.dim} is out of range for a "
                             f"{len(shape)}-D input of shape {tuple(shape)}")
        return self.dim % len(shape)

    def output_shape(self, input_shape):
        shape = check_input_shape(self, input_shape)
        self._axis(shape)
        return shape

    def forward(self, x):
        x = check_float_input(self, x)
        axis = self._axis(x.shape)
        op = A.log_softmax_forward if self._log else A.softmax_forward
        y, cache = op(x, axis)
        self._cache = (cache, axis)
        return y

    def backward(self, dy):
        y, axis = self._require_cache()
        dy = self._check_dy(dy, y.shape, y.dtype)
        op = A.log_softmax_backward if self._log else A.softmax_backward
        return op(dy, y, axis)

    def reference_pair(self):
        def axis(x):
            return self._axis(np.shape(x))

        return (lambda x: ref.softmax_axis_forward(x, axis(x), log=self._log),
                lambda x, dy: ref.softmax_axis_backward(x, dy, axis(x), log=self._log))


class Softmax(_AxisSoftmax):
    """``exp(x) / sum(exp(x))`` along ``dim`` (torch.nn.Softmax(dim); default 1).

    Training a model that ends in Softmax with softmax cross-entropy applies softmax
    twice; drop the layer (or use :class:`LogSoftmax`) before ``fit``.
    """


class LogSoftmax(_AxisSoftmax):
    """``log softmax`` along ``dim`` (torch.nn.LogSoftmax(dim); default 1).

    Softmax cross-entropy of its output equals that of its input, so a classifier ending
    in LogSoftmax (over the class axis) trains unchanged.
    """

    _log = True
