"""Padding layers (torch.nn.ZeroPad2d, ConstantPad2d, ReflectionPad2d, ReplicationPad2d,
CircularPad2d) over :mod:`im2col_net.functional.padding`."""

from __future__ import annotations

import numpy as np

from ..functional import padding as F
from .base import Layer, check_float_input, check_input_shape

__all__ = ["ZeroPad2D", "ConstantPad2D", "ReflectionPad2D", "ReplicationPad2D",
           "CircularPad2D"]


def _padding_quad(owner: str, padding) -> tuple[int, int, int, int]:
    """torch's ``padding``: an int (every side) or ``(left, right, top, bottom)``."""
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

    if is_int(padding):
        quad = (int(padding),) * 4
    elif isinstance(padding, (tuple, list)) and len(padding) == 4 and all(map(is_int, padding)):
        quad = tuple(int(p) for p in padding)
    else:
        raise ValueError(f"{owner}: padding must be an int or a 4-tuple of ints "
                         f"(left, right, top, bottom), got {padding!r}")
    if min(quad) < 0:
        # torch crops with negative pads; that is not supported here.
        raise ValueError(f"{owner}: padding must be >= 0 (negative padding, i.e. cropping, is "
                         f"not supported), got {padding!r}")
    return quad


class _Pad2D(Layer):
    """``(N, C, H, W) -> (N, C, H + top + bottom, W + left + right)``."""

    _mode = "constant"

    def __init__(self, padding):
        super().__init__()
        self.padding = _padding_quad(type(self).__name__, padding)
        self.value = 0.0

    def get_config(self):
        return dict(padding=list(self.padding))

    def extra_repr(self):
        return f"padding={self.padding}"

    def _check_size(self, shape):
        left, right, top, bottom = self.padding
        F.check_pad(F.TORCH_PAD_MODES[self._mode], (top, bottom, left, right), shape[2],
                    shape[3], owner=repr(self), torch_order=True)

    def _out(self, shape):
        left, right, top, bottom = self.padding
        return (shape[0], shape[1], shape[2] + top + bottom, shape[3] + left + right)

    def output_shape(self, input_shape):
        shape = check_input_shape(self, input_shape, 4)
        self._check_size(shape)
        return self._out(shape)

    def forward(self, x):
        x = check_float_input(self, x, 4)
        self._check_size(x.shape)
        y, cache = F.pad2d_forward(x, self.padding, self._mode, self.value)
        self._cache = (cache, y.shape, y.dtype)
        return y

    def backward(self, dy):
        cache, shape, dtype = self._require_cache()
        return F.pad2d_backward(self._check_dy(dy, shape, dtype), cache)

    def reference_pair(self):
        from .. import reference as ref

        return (lambda x: ref.pad2d_torch(x, self.padding, self._mode, self.value),
                lambda x, dy: ref.pad2d_torch_backward(x, dy, self.padding, self._mode))


class ZeroPad2D(_Pad2D):
    """Zero padding (torch.nn.ZeroPad2d); ``padding``: int or ``(left, right, top,
    bottom)``, non-negative."""


class ConstantPad2D(_Pad2D):
    """Padding with ``value`` (torch.nn.ConstantPad2d)."""

    def __init__(self, padding, value):
        super().__init__(padding)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            raise ValueError(f"ConstantPad2D: value must be a real number, got {value!r}")
        # torch accepts any float, infinities and NaN included, so this does too.
        self.value = float(value)

    def get_config(self):
        return dict(super().get_config(), value=self.value)

    def extra_repr(self):
        return f"padding={self.padding}, value={self.value!r}"


class ReflectionPad2D(_Pad2D):
    """Mirror padding without repeating the border (torch.nn.ReflectionPad2d); every pad
    must be smaller than the input size along its axis."""

    _mode = "reflect"


class ReplicationPad2D(_Pad2D):
    """Border-repeating padding (torch.nn.ReplicationPad2d); needs a non-empty input."""

    _mode = "replicate"


class CircularPad2D(_Pad2D):
    """Wrap-around padding (torch.nn.CircularPad2d); every pad at most the input size
    along its axis (one wrap)."""

    _mode = "circular"
