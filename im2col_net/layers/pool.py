"""Pooling layers over :mod:`im2col_net.functional.pool` and
:mod:`im2col_net.functional.adaptive_pool`.

Every pooling layer takes a batch ``(N, C, H, W)`` or, as PyTorch, one unbatched image
``(C, H, W)``; an unbatched input gives an unbatched output, and backward then takes
and returns unbatched arrays too.

``MaxPool2D(return_indices=True)`` and ``AdaptiveMaxPool2D(return_indices=True)``
return ``(y, indices)`` from ``forward`` like their torch counterparts; ``backward``
takes the gradient of ``y`` only. As in PyTorch, such a layer cannot be followed by
another layer in a ``Sequential`` (the next layer would receive the tuple); pair it with
:class:`MaxUnpool2D` by hand.
"""

from __future__ import annotations

import numpy as np

from ..functional import adaptive_pool as A
from ..functional import pool as F
from ..geometry import adaptive_output_size, as_pair, pool_output_size, unpool_output_size
from .base import Layer, check_float_input, check_input_shape, grad_enabled

__all__ = ["MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "AdaptiveAvgPool2D",
           "AdaptiveMaxPool2D", "MaxUnpool2D"]


def _check_bool(owner, name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


class _Unbatched(Layer):
    """Shared handling of unbatched ``(C, H, W)`` inputs: add the batch axis on the way
    in, drop it on the way out, in forward and backward alike."""

    _unbatched = False

    def _input(self, x):
        x = check_float_input(self, x, (3, 4))
        self._unbatched = x.ndim == 3
        return x[None] if self._unbatched else x

    def _output(self, y):
        return y[0] if self._unbatched else y

    def _batched_dy(self, dy):
        dy = np.asarray(dy)
        return dy[None] if self._unbatched and dy.ndim == 3 else dy

    def _batched_shape(self, input_shape):
        shape = check_input_shape(self, input_shape, (3, 4))
        return (shape, False) if len(shape) == 4 else ((1,) + shape, True)


class _Pool2D(_Unbatched):

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__()
        owner = f"{type(self).__name__}(kernel_size={kernel_size!r})"
        self.geometry = F.pool_geometry(kernel_size, stride, padding, dilation, owner=owner)
        self.ceil_mode = _check_bool(owner, "ceil_mode", ceil_mode)

    def get_config(self):
        g = self.geometry
        return dict(kernel_size=list(g.kernel), stride=list(g.stride),
                    padding=[g.padding[0], g.padding[2]], ceil_mode=self.ceil_mode)

    def output_size(self, h, w):
        """``(Ho, Wo)`` for an ``h x w`` input (PyTorch's rule, ceil mode included)."""
        g = self.geometry
        top, bottom, left, right = g.padding
        sizes = tuple(pool_output_size(n, k, s, a, b, d, self.ceil_mode) for n, k, s, a, b, d
                      in zip((h, w), g.kernel, g.stride, (top, left), (bottom, right),
                             g.dilation, strict=True))
        if min(sizes) <= 0:
            g.checked_output_size(h, w, owner=repr(self))  # raises with the geometry
        return sizes

    def output_shape(self, input_shape):
        (n, c, h, w), unbatched = self._batched_shape(input_shape)
        shape = (n, c) + self.output_size(h, w)
        return shape[1:] if unbatched else shape

    def _dy(self, dy):
        cache = self._require_cache()
        n, c, _, _ = cache.input_shape
        dy = self._batched_dy(dy)
        return self._check_dy(dy, (n, c) + tuple(cache.out_size), cache.dtype), cache

    def _ref_options(self):
        g = self.geometry
        return dict(kernel_size=g.kernel, stride=g.stride, padding=(g.padding[0], g.padding[2]),
                    ceil_mode=self.ceil_mode)


def no_argmax_error(layer) -> RuntimeError:
    """The error of a max-pool backward after a forward under :func:`.base.no_grad`."""
    return RuntimeError(f"{layer!r}: backward() after a forward under no_grad(), which "
                        f"keeps no argmax; run the forward again outside no_grad() first")


class MaxPool2D(_Pool2D):
    """Max pooling ``(N, C, H, W) -> (N, C, Ho, Wo)`` with ``torch.nn.MaxPool2d``'s
    arguments, in its order: ``kernel_size, stride=None (= kernel_size), padding=0,
    dilation=1, return_indices=False, ceil_mode=False``.

    The argmax of each window (first maximum, row-major, as PyTorch) is kept from the
    forward pass and receives the whole gradient in backward. Padding is implicit
    ``-inf`` and at most half the kernel. With ``return_indices=True`` forward returns
    ``(y, indices)``: int64, the flat position ``h * W + w`` of each maximum in its
    (unpadded) input plane, as PyTorch; windows holding no input element at all (only
    possible with dilation) have no meaningful index, in PyTorch as here.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        owner = f"{type(self).__name__}(kernel_size={kernel_size!r})"
        self.return_indices = _check_bool(owner, "return_indices", return_indices)

    def get_config(self):
        return dict(super().get_config(), dilation=list(self.geometry.dilation),
                    return_indices=self.return_indices)

    def forward(self, x):
        # Under no_grad() only return_indices needs the argmax.
        y, self._cache = F.max_pool2d_forward_geom(
            self._input(x), self.geometry, owner=repr(self), ceil_mode=self.ceil_mode,
            for_backward=grad_enabled() or self.return_indices)
        if self.return_indices:
            return self._output(y), self._output(F.max_pool2d_indices(self._cache))
        return self._output(y)

    def backward(self, dy):
        dy, cache = self._dy(dy)
        if cache.argmax is None:
            raise no_argmax_error(self)
        return self._output(F.max_pool2d_backward(dy, cache))

    def reference_pair(self):
        """Reference forward (``y`` only) and backward from :mod:`im2col_net.reference`."""
        from ..reference import pool as R

        opts = dict(self._ref_options(), dilation=self.geometry.dilation)
        return (_unbatch_ref(lambda x: R.max_pool2d_forward(x, **opts)),
                _unbatch_ref_bwd(lambda x, dy: R.max_pool2d_backward(x, dy, **opts)))


class AvgPool2D(_Pool2D):
    """Average pooling ``(N, C, H, W) -> (N, C, Ho, Wo)`` with ``torch.nn.AvgPool2d``'s
    arguments, in its order: ``kernel_size, stride=None, padding=0, ceil_mode=False,
    count_include_pad=True, divisor_override=None``.

    ``count_include_pad=True`` (PyTorch's default) divides by the window clipped at the
    padded border (the full window, except for a ceil-mode overhang, which never counts);
    ``False`` divides by the number of real input elements; ``divisor_override`` (a
    nonzero int) replaces either. (Until this version the 4th positional argument was
    ``count_include_pad``; saved models store keywords and load unchanged.)
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__(kernel_size, stride, padding, 1, ceil_mode)
        owner = f"{type(self).__name__}(kernel_size={kernel_size!r})"
        self.count_include_pad = _check_bool(owner, "count_include_pad", count_include_pad)
        if divisor_override is not None and (
                isinstance(divisor_override, (bool, np.bool_))
                or not isinstance(divisor_override, (int, np.integer)) or divisor_override == 0):
            raise ValueError(f"{owner}: divisor_override must be None or a nonzero int, got "
                             f"{divisor_override!r}")
        self.divisor_override = None if divisor_override is None else int(divisor_override)

    def get_config(self):
        return dict(super().get_config(), count_include_pad=self.count_include_pad,
                    divisor_override=self.divisor_override)

    def forward(self, x):
        y, self._cache = F.avg_pool2d_forward_geom(
            self._input(x), self.geometry, self.count_include_pad, owner=repr(self),
            ceil_mode=self.ceil_mode, divisor_override=self.divisor_override)
        return self._output(y)

    def backward(self, dy):
        dy, cache = self._dy(dy)
        return self._output(F.avg_pool2d_backward(dy, cache))

    def reference_pair(self):
        from ..reference import pool as R

        opts = dict(self._ref_options(), count_include_pad=self.count_include_pad,
                    divisor_override=self.divisor_override)
        return (_unbatch_ref(lambda x: R.avg_pool2d_forward(x, **opts)),
                _unbatch_ref_bwd(lambda x, dy: R.avg_pool2d_backward(x, dy, **opts)))


def _unbatch_ref(fwd):
    return lambda x: fwd(x[None])[0] if np.ndim(x) == 3 else fwd(x)


def _unbatch_ref_bwd(bwd):
    return lambda x, dy: bwd(x[None], np.asarray(dy)[None])[0] if np.ndim(x) == 3 \
        else bwd(x, dy)


class _Adaptive(_Unbatched):
    _op = ""

    def __init__(self, output_size):
        super().__init__()
        owner = f"{type(self).__name__}(output_size={output_size!r})"
        adaptive_output_size(output_size, 1, 1, owner=owner)  # validates
        if isinstance(output_size, (tuple, list)):
            self.output_size = tuple(None if v is None else int(v) for v in output_size)
        else:
            self.output_size = None if output_size is None else int(output_size)

    def get_config(self):
        size = self.output_size
        return dict(output_size=list(size) if isinstance(size, tuple) else size)

    def output_shape(self, input_shape):
        (n, c, h, w), unbatched = self._batched_shape(input_shape)
        if h == 0 or w == 0:
            raise ValueError(f"{self!r}: expected a non-empty image, got shape {input_shape}")
        shape = (n, c) + adaptive_output_size(self.output_size, h, w, owner=repr(self))
        return shape[1:] if unbatched else shape

    def _dy(self, dy):
        cache = self._require_cache()
        n, c, _, _ = cache.input_shape
        dy = self._batched_dy(dy)
        return self._check_dy(dy, (n, c) + tuple(cache.out_size), cache.dtype), cache


class AdaptiveAvgPool2D(_Adaptive):
    """``torch.nn.AdaptiveAvgPool2d``: ``(N, C, H, W) -> (N, C, Ho, Wo)`` for any
    ``output_size`` (an int, or a pair with ``None`` keeping that input size); cell ``i``
    averages input rows ``floor(i*H/Ho) .. ceil((i+1)*H/Ho) - 1`` (likewise columns)."""

    def forward(self, x):
        y, self._cache = A.adaptive_avg_pool2d_forward(self._input(x), self.output_size,
                                                       owner=repr(self))
        return self._output(y)

    def backward(self, dy):
        dy, cache = self._dy(dy)
        return self._output(A.adaptive_avg_pool2d_backward(dy, cache))

    def reference_pair(self):
        from ..reference import adaptive_pool as RA

        size = self.output_size
        return (_unbatch_ref(lambda x: RA.adaptive_avg_pool2d_forward(x, size)),
                _unbatch_ref_bwd(lambda x, dy: RA.adaptive_avg_pool2d_backward(x, dy, size)))


class AdaptiveMaxPool2D(_Adaptive):
    """``torch.nn.AdaptiveMaxPool2d``: the maximum of each adaptive window (windows as
    :class:`AdaptiveAvgPool2D`; first maximum in row-major order, the last NaN when a
    window holds NaN, as PyTorch). ``return_indices=True``: forward returns
    ``(y, indices)`` with the flat ``h * W + w`` int64 positions, as PyTorch."""

    def __init__(self, output_size, return_indices=False):
        super().__init__(output_size)
        owner = f"{type(self).__name__}(output_size={output_size!r})"
        self.return_indices = _check_bool(owner, "return_indices", return_indices)

    def get_config(self):
        return dict(super().get_config(), return_indices=self.return_indices)

    def forward(self, x):
        y, self._cache = A.adaptive_max_pool2d_forward(self._input(x), self.output_size,
                                                       owner=repr(self))
        if self.return_indices:
            return self._output(y), self._output(self._cache.indices)
        return self._output(y)

    def backward(self, dy):
        dy, cache = self._dy(dy)
        return self._output(A.adaptive_max_pool2d_backward(dy, cache))

    def reference_pair(self):
        from ..reference import adaptive_pool as RA

        size = self.output_size
        return (_unbatch_ref(lambda x: RA.adaptive_max_pool2d_forward(x, size)[0]),
                _unbatch_ref_bwd(lambda x, dy: RA.adaptive_max_pool2d_backward(x, dy, size)))


class GlobalAvgPool2D(_Unbatched):
    """Mean over the spatial axes: ``(N, C, H, W) -> (N, C, 1, 1)``; the ``output_size=1``
    case of :class:`AdaptiveAvgPool2D` with a direct mean."""

    def output_shape(self, input_shape):
        (n, c, h, w), unbatched = self._batched_shape(input_shape)
        if h == 0 or w == 0:
            raise ValueError(f"global_avg_pool2d: expected a non-empty image, got shape "
                             f"{tuple(input_shape)}")
        return (c, 1, 1) if unbatched else (n, c, 1, 1)

    def forward(self, x):
        y, self._cache = F.global_avg_pool2d_forward(self._input(x))
        return self._output(y)

    def reference_pair(self):
        from ..reference import pool as R

        return (_unbatch_ref(R.global_avg_pool2d_forward),
                _unbatch_ref_bwd(R.global_avg_pool2d_backward))

    def backward(self, dy):
        shape, dtype = self._require_cache()
        dy = self._check_dy(self._batched_dy(dy), shape[:2] + (1, 1), dtype)
        return self._output(F.global_avg_pool2d_backward(dy, self._cache))


class MaxUnpool2D(Layer):
    """``torch.nn.MaxUnpool2d``: the partial inverse of :class:`MaxPool2D`.

    ``forward(x, indices, output_size=None)`` puts every element of ``x`` at its flat
    index ``h * Wo + w`` of a zero ``(N, C, Ho, Wo)`` output (``(C, H, W)`` unbatched
    inputs too). The default ``Ho = (H - 1) * stride - 2 * padding + kernel`` (likewise
    ``Wo``); ``output_size`` (``(Ho, Wo)`` or ``(N, C, Ho, Wo)``) must lie strictly
    within ``stride`` of it, PyTorch's rule. Backward returns the gradient of ``x``
    (the indices get none). Not usable inside a ``Sequential`` (it takes two inputs).
    """

    _unbatched = False

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        owner = f"{type(self).__name__}(kernel_size={kernel_size!r})"
        self.kernel = as_pair(kernel_size, "kernel_size", owner=owner)
        self.stride = self.kernel if stride is None else as_pair(stride, "stride", owner=owner)
        if isinstance(padding, (tuple, list)) and len(padding) == 1:
            padding = padding[0]
        self.padding = as_pair(padding, "padding", minimum=0, owner=owner)

    def get_config(self):
        return dict(kernel_size=list(self.kernel), stride=list(self.stride),
                    padding=list(self.padding))

    def default_size(self, h, w):
        return tuple(unpool_output_size(n, k, s, p) for n, k, s, p in
                     zip((h, w), self.kernel, self.stride, self.padding, strict=True))

    def _out_size(self, h, w, output_size):
        default = self.default_size(h, w)
        if output_size is None:
            size = default
        else:
            try:
                size = tuple(int(v) for v in output_size)[-2:] if len(output_size) in (2, 4) \
                    else None
            except TypeError:
                size = None
            if size is None:
                raise ValueError(f"{self!r}: output_size must be (H, W) or (N, C, H, W), got "
                                 f"{output_size!r}")
            for d in range(2):
                low, high = default[d] - self.stride[d], default[d] + self.stride[d]
                if not low < size[d] < high:
                    raise ValueError(f"{self!r}: output_size {tuple(size)} is invalid: "
                                     f"dimension {d} must lie strictly between {low} and {high}")
        if min(size) <= 0:
            raise ValueError(f"{self!r}: the output size {tuple(size)} is not positive for "
                             f"input size {(h, w)}")
        return size

    def output_shape(self, input_shape):
        shape = check_input_shape(self, input_shape, (3, 4))
        return shape[:-2] + self._out_size(shape[-2], shape[-1], None)

    def forward(self, x, indices=None, output_size=None):
        x = check_float_input(self, x, (3, 4))
        if indices is None:
            raise ValueError(f"{self!r}: forward needs the indices of the max pooling "
                             f"(MaxPool2D(return_indices=True))")
        indices = np.asarray(indices)
        self._unbatched = x.ndim == 3
        if self._unbatched:
            x, indices = x[None], indices[None]
        size = self._out_size(x.shape[2], x.shape[3], output_size)
        y, self._cache = A.max_unpool2d_forward(x, indices, size, owner=repr(self))
        return y[0] if self._unbatched else y

    def backward(self, dy):
        cache = self._require_cache()
        shape, _, size, dtype = cache
        dy = np.asarray(dy)
        if self._unbatched and dy.ndim == 3:
            dy = dy[None]
        dy = self._check_dy(dy, tuple(shape[:2]) + tuple(size), dtype)
        dx = A.max_unpool2d_backward(dy, cache)
        return dx[0] if self._unbatched else dx
