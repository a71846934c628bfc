"""Activation layers: ELU over :mod:`im2col_net.functional.elu`; ReLU6, Hardsigmoid,
Hardswish, SELU, SiLU, GELU, Softplus and PReLU over
:mod:`im2col_net.functional.activations`."""

from __future__ import annotations

import numpy as np

from .. import reference as ref
from ..functional import activations as A
from ..functional.elu import elu_backward, elu_forward
from .base import (
    Layer,
    check_count,
    check_float_dtype,
    check_float_input,
    check_input_shape,
    init_deferred,
    init_ones,
)
from .dense import _Elementwise, _real_number


class ELU(_Elementwise):
    """``x`` where positive, ``alpha * (exp(x) - 1)`` elsewhere (torch.nn.ELU); any shape."""

    def __init__(self, alpha=1.0):
        super().__init__()
        try:
            value = float(alpha)
        except (TypeError, ValueError):
            value = float("nan")
        if isinstance(alpha, bool) or not np.isfinite(value):
            raise ValueError(f"ELU: alpha must be a finite number, got {alpha!r}")
        self.alpha = value

    def get_config(self):
        return dict(alpha=self.alpha)

    def _forward(self, x):
        return elu_forward(x, self.alpha)

    _backward = staticmethod(elu_backward)

    def reference_pair(self):
        return (lambda x: ref.elu_forward(x, self.alpha),
                lambda x, dy: ref.elu_backward(x, dy, self.alpha))

# -- the torch.nn activations beyond ReLU/ELU (im2col_net.functional.activations) ------


class _Sloped(_Elementwise):
    """An activation whose functional forward caches its local derivative."""

    _backward = staticmethod(A.slope_backward)

    def reference_pair(self):
        name, options = self._reference_name, self._reference_options()
        return (lambda x: ref.activation_forward(name, x, **options),
                lambda x, dy: ref.activation_backward(name, x, dy, **options))

    def _reference_options(self):
        return {}


class ReLU6(_Sloped):
    """``min(max(x, 0), 6)``, any shape (torch.nn.ReLU6); the gradient is 0 at exactly 0
    and at exactly 6, as torch's."""

    _forward = staticmethod(A.relu6_forward)
    _reference_name = "relu6"


class Hardsigmoid(_Sloped):
    """``min(max(x + 3, 0), 6) / 6``, any shape (torch.nn.Hardsigmoid); the gradient is 0
    at exactly -3 and 3, as torch's."""

    _forward = staticmethod(A.hardsigmoid_forward)
    _reference_name = "hardsigmoid"


class Hardswish(_Sloped):
    """``x * min(max(x + 3, 0), 6) / 6``, any shape (torch.nn.Hardswish); the gradient is
    0 at exactly -3 and 1 at exactly 3, as torch's (the one-sided slopes of the outer
    pieces, although torch's documentation draws the middle piece as closed)."""

    _forward = staticmethod(A.hardswish_forward)
    _reference_name = "hardswish"


class SELU(_Sloped):
    """``scale * (x if x > 0 else alpha * (exp(x) - 1))`` with torch's constants, any shape
    (torch.nn.SELU); the gradient at exactly 0 is ``scale * alpha``, as torch's."""

    _forward = staticmethod(A.selu_forward)
    _reference_name = "selu"


class SiLU(_Sloped):
    """``x * sigmoid(x)``, any shape (torch.nn.SiLU)."""

    _forward = staticmethod(A.silu_forward)
    _reference_name = "silu"


class GELU(_Sloped):
    """``x * Phi(x)``, any shape (torch.nn.GELU); ``approximate="tanh"`` uses torch's
    tanh formula instead of the exact normal CDF."""

    _reference_name = "gelu"

    def __init__(self, approximate="none"):
        super().__init__()
        if not isinstance(approximate, str) or approximate not in A.GELU_APPROXIMATIONS:
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def get_config(self):
        return dict(approximate=self.approximate)

    def _forward(self, x):
        return A.gelu_forward(x, self.approximate)

    def _reference_options(self):
        return dict(approximate=self.approximate)


class Softplus(_Sloped):
    """``log(1 + exp(beta * x)) / beta``, and ``x`` itself where ``beta * x > threshold``
    (torch.nn.Softplus, defaults beta=1, threshold=20); any shape."""

    _reference_name = "softplus"

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta = _real_number("Softplus", "beta", beta)
        if self.beta == 0:
            raise ValueError("Softplus: beta must be non-zero (it divides), got 0")
        self.threshold = _real_number("Softplus", "threshold", threshold)

    def get_config(self):
        return dict(beta=self.beta, threshold=self.threshold)

    def _forward(self, x):
        return A.softplus_forward(x, self.beta, self.threshold)

    def _reference_options(self):
        return dict(beta=self.beta, threshold=self.threshold)


class PReLU(Layer):
    """``x`` where positive, ``weight * x`` elsewhere (torch.nn.PReLU); learnable.

    ``num_parameters=1`` shares one slope; ``num_parameters=C`` learns one per channel
    (axis 1 of an input of at least 2 dimensions with ``C`` channels). ``weight
    (num_parameters,)`` starts at ``init`` (0.25), named as in torch's ``state_dict``.
    The gradient at exactly 0 is the negative branch's (``weight``), as torch's.
    """

    def __init__(self, num_parameters=1, init=0.25, *, dtype=np.float32):
        super().__init__()
        self.num_parameters = check_count("PReLU", "num_parameters", num_parameters)
        self.init = _real_number("PReLU", "init", init)
        dtype = check_float_dtype("PReLU", dtype)
        weight = init_ones(self.num_parameters, dtype)
        if not init_deferred():
            weight *= np.asarray(self.init, dtype=dtype)
        self.params["weight"] = weight

    def get_config(self):
        return dict(num_parameters=self.num_parameters, init=self.init)

    def _check_channels(self, shape):
        n = self.num_parameters
        if n > 1 and (len(shape) < 2 or shape[1] != n):
            raise ValueError(f"{self!r}: num_parameters={n} needs an input with {n} channels "
                             f"on axis 1, got shape {tuple(shape)}")

    def output_shape(self, input_shape):
        shape = check_input_shape(self, input_shape)
        self._check_channels(shape)
        return shape

    def forward(self, x):
        weight = self.params["weight"]
        x = check_float_input(self, x, None, weight.dtype)
        self._check_channels(x.shape)
        y, self._cache = A.prelu_forward(x, weight)
        return y

    def backward(self, dy):
        cache = self._require_cache()
        x = cache[0]
        dx, dw = A.prelu_backward(self._check_dy(dy, x.shape, x.dtype), cache)
        self.grads["weight"] = dw
        return dx

    def reference_pair(self):
        def backward(x, dy):
            dx, dw = ref.prelu_backward(x, self.params["weight"], dy)
            return dx, {"weight": dw}

        return (lambda x: ref.prelu_forward(x, self.params["weight"]), backward)
