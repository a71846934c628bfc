"""Linear, activations, Flatten and Dropout layers."""

from __future__ import annotations

import math

import numpy as np

from ..functional import basic as F
from .base import (
    Layer,
    check_count,
    check_float_dtype,
    check_float_input,
    check_input_shape,
    he_normal,
    init_zeros,
    make_rng,
    xavier_uniform,
)


def _real_number(owner: str, name: str, value) -> float:
    """``float(value)`` for a finite real number; ``ValueError`` naming ``owner`` otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{owner}: {name} must be a real number, got {value!r}")
    number = float(value)
    if not np.isfinite(number):
        raise ValueError(f"{owner}: {name} must be finite, got {value!r}")
    return number


class Linear(Layer):
    """``y = x @ weight.T + bias``: ``(N, in_features) -> (N, out_features)``; as in
    torch, also ``(in_features,) -> (out_features,)`` and ``(*, in_features) -> (*,
    out_features)`` with any number of leading axes.

    ``weight (out_features, in_features)``, ``bias (out_features,)`` as in torch.nn.
    ``init``: ``"he"`` (default) or ``"xavier"``.
    """

    def __init__(self, in_features, out_features, bias=True, *, init="he", rng=None,
                 dtype=np.float32):
        super().__init__()
        name = f"Linear({in_features}, {out_features})"
        for arg, value in (("in_features", in_features), ("out_features", out_features)):
            check_count(name, arg, value)
        if init not in ("he", "xavier"):
            raise ValueError(f"{name}: init must be 'he' or 'xavier', got {init!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.init = init
        dtype = check_float_dtype(name, dtype)
        rng = make_rng(rng, owner=name)
        shape = (self.out_features, self.in_features)
        if init == "he":
            self.params["weight"] = he_normal(rng, shape, self.in_features, dtype)
        else:
            self.params["weight"] = xavier_uniform(rng, shape, self.in_features,
                                                   self.out_features, dtype)
        if bias:
            self.params["bias"] = init_zeros(self.out_features, dtype)

    def get_config(self):
        return dict(in_features=self.in_features, out_features=self.out_features,
                    bias="bias" in self.params, init=self.init)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={'bias' in self.params}"

    def output_shape(self, input_shape):
        shape = check_input_shape(self, input_shape)
        self._check_features(shape)
        return shape[:-1] + (self.out_features,)

    def _check_features(self, shape):
        if not shape or shape[-1] != self.in_features:
            raise ValueError(
                f"{self!r}: expected input of shape (N, {self.in_features}), "
                f"({self.in_features},) or (*, {self.in_features}), got shape {shape}"
            )

    def forward(self, x):
        weight = self.params["weight"]
        x = check_float_input(self, x, None, weight.dtype)
        self._check_features(x.shape)
        # As torch.nn.Linear: every leading axis is a batch axis (none for one sample).
        lead = x.shape[:-1]
        rows = x if x.ndim == 2 else x.reshape(-1, self.in_features)
        y, cache = F.linear_forward(rows, weight, self.params.get("bias"))
        self._cache = (lead, cache)
        return y if x.ndim == 2 else y.reshape(lead + (self.out_features,))

    def backward(self, dy):
        lead, cache = self._require_cache()
        dy = self._check_dy(dy, lead + (self.out_features,), cache[0].dtype)
        rows = dy if dy.ndim == 2 else dy.reshape(-1, self.out_features)
        dx, dw, db = F.linear_backward(rows, cache)
        self.grads["weight"] = dw
        if db is not None:
            self.grads["bias"] = db
        return dx if dy.ndim == 2 else dx.reshape(lead + (self.in_features,))


class _Elementwise(Layer):
    """An activation whose backward is ``dy`` times something cached in forward."""

    _forward = staticmethod(lambda x: (x, None))
    _backward = staticmethod(lambda dy, cache: dy)

    def output_shape(self, input_shape):
        return check_input_shape(self, input_shape)

    def forward(self, x):
        x = check_float_input(self, x)
        y, cache = self._forward(x)
        self._cache = (x.shape, cache, y.dtype)
        return y

    def backward(self, dy):
        shape, cache, dtype = self._require_cache()
        return self._backward(self._check_dy(dy, shape, dtype), cache)


class ReLU(_Elementwise):
    """``max(x, 0)``, any shape -> same shape and dtype; the gradient at exactly 0 is
    taken as 0."""

    _forward = staticmethod(F.relu_forward)
    _backward = staticmethod(F.relu_backward)


class Sigmoid(_Elementwise):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, any shape -> same shape and dtype
    (torch.nn.Sigmoid)."""

    _forward = staticmethod(F.sigmoid_forward)
    _backward = staticmethod(F.sigmoid_backward)


class Tanh(_Elementwise):
    """Hyperbolic tangent, any shape -> same shape and dtype (torch.nn.Tanh)."""

    _forward = staticmethod(F.tanh_forward)
    _backward = staticmethod(F.tanh_backward)


class LeakyReLU(_Elementwise):
    """``x`` where positive, ``negative_slope * x`` elsewhere, any shape -> same shape and
    dtype (torch.nn.LeakyReLU, default slope 0.01)."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = _real_number("LeakyReLU", "negative_slope", negative_slope)

    def get_config(self):
        return dict(negative_slope=self.negative_slope)

    def _forward(self, x):
        return F.leaky_relu_forward(x, self.negative_slope)

    _backward = staticmethod(F.leaky_relu_backward)


class Flatten(Layer):
    """``(N, d1, d2, ...) -> (N, d1*d2*...)`` (C-order, like torch.flatten(x, 1))."""

    def output_shape(self, input_shape):
        shape = check_input_shape(self, input_shape)
        self._check_rank(shape)
        return (shape[0], math.prod(shape[1:]))

    def _check_rank(self, shape):
        if len(shape) < 2:
            raise ValueError(f"{self!r}: expected an input with a batch axis, got shape {shape}")

    def forward(self, x):
        x = check_float_input(self, x)
        self._check_rank(x.shape)
        self._cache = (x.shape, x.dtype)
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        shape, dtype = self._require_cache()
        dy = self._check_dy(dy, (shape[0], int(np.prod(shape[1:]))), dtype)
        return dy.reshape(shape)


class Dropout(Layer):
    """Inverted dropout with probability ``p``; the identity in eval mode.

    Any shape -> same shape and dtype: in training each element is zeroed with
    probability ``p`` and the rest are scaled by ``1 / (1 - p)``, so eval needs no
    rescaling (torch.nn.Dropout). The mask comes from ``rng`` (a Generator or seed), so
    runs are reproducible.
    """

    def __init__(self, p=0.5, *, rng=None):
        super().__init__()
        if not 0.0 <= _real_number("Dropout", "p", p) < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = make_rng(rng, owner=f"Dropout(p={p!r})")

    def get_config(self):
        return dict(p=self.p)

    def output_shape(self, input_shape):
        return check_input_shape(self, input_shape)

    def forward(self, x):
        x = check_float_input(self, x)
        y, mask = F.dropout_forward(x, self.p, self.rng, self.training)
        self._cache = (x.shape, mask, y.dtype)
        return y

    def backward(self, dy):
        shape, mask, dtype = self._require_cache()
        return F.dropout_backward(self._check_dy(dy, shape, dtype), mask)
