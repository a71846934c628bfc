"""Pooling layers over :mod:`im2col_net.functional.pool`."""

from __future__ import annotations

from ..functional import pool as F
from .base import Layer, check_float_input, check_input_shape


class _Pool2D(Layer):
    _kind = ""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        owner = f"{type(self).__name__}(kernel_size={kernel_size!r})"
        self.geometry = F.pool_geometry(kernel_size, stride, padding, owner=owner)

    def get_config(self):
        g = self.geometry
        return dict(kernel_size=list(g.kernel), stride=list(g.stride),
                    padding=[g.padding[0], g.padding[2]])

    def _input(self, x):
        return check_float_input(self, x, 4)

    def output_shape(self, input_shape):
        n, c, h, w = check_input_shape(self, input_shape, 4)
        ho, wo = self.geometry.checked_output_size(h, w, owner=repr(self))
        return (n, c, ho, wo)

    def _dy(self, dy):
        cache = self._require_cache()
        n, c, _, _ = cache.input_shape
        return self._check_dy(dy, (n, c) + tuple(cache.out_size), cache.dtype), cache


class MaxPool2D(_Pool2D):
    """Max pooling ``(N, C, H, W) -> (N, C, Ho, Wo)``; ``stride`` defaults to ``kernel_size``.

    The argmax of each window (first maximum, row-major, as PyTorch) is kept from the
    forward pass and receives the whole gradient in backward. Padding is implicit
    ``-inf`` and at most half the kernel.
    """

    def forward(self, x):
        y, self._cache = F.max_pool2d_forward_geom(self._input(x), self.geometry, owner=repr(self))
        return y

    def backward(self, dy):
        dy, cache = self._dy(dy)
        return F.max_pool2d_backward(dy, cache)


class AvgPool2D(_Pool2D):
    """Average pooling ``(N, C, H, W) -> (N, C, Ho, Wo)``.

    ``count_include_pad=True`` (PyTorch's default) divides by the full window size,
    padded zeros included; ``False`` divides by the number of real input elements.
    """

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True):
        super().__init__(kernel_size, stride, padding)
        self.count_include_pad = bool(count_include_pad)

    def get_config(self):
        return dict(super().get_config(), count_include_pad=self.count_include_pad)

    def forward(self, x):
        y, self._cache = F.avg_pool2d_forward_geom(
            self._input(x), self.geometry, self.count_include_pad, owner=repr(self)
        )
        return y

    def backward(self, dy):
        dy, cache = self._dy(dy)
        return F.avg_pool2d_backward(dy, cache)


class GlobalAvgPool2D(Layer):
    """Mean over the spatial axes: ``(N, C, H, W) -> (N, C, 1, 1)``."""

    def output_shape(self, input_shape):
        n, c, h, w = check_input_shape(self, input_shape, 4)
        if h == 0 or w == 0:
            raise ValueError(f"global_avg_pool2d: expected a non-empty image, got shape "
                             f"{(n, c, h, w)}")
        return (n, c, 1, 1)

    def forward(self, x):
        y, self._cache = F.global_avg_pool2d_forward(check_float_input(self, x, 4))
        return y

    def backward(self, dy):
        shape, dtype = self._require_cache()
        dy = self._check_dy(dy, shape[:2] + (1, 1), dtype)
        return F.global_avg_pool2d_backward(dy, self._cache)
