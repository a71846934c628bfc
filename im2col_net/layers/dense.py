"""Linear, activations, Flatten, Unflatten and Dropout layers."""

from __future__ import annotations

import math

import numpy as np

from .. import reference as ref
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

    def reference_pair(self):
        def backward(x, dy):
            dx, dw, db = ref.linear_backward(x, self.params["weight"], dy,
                                             bias="bias" in self.params)
            return dx, {"weight": dw, "bias": db}

        return (lambda x: ref.linear_forward(x, self.params["weight"], self.params.get("bias")),
                backward)


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

    def reference_pair(self):
        return ref.relu_forward, ref.relu_backward


class Sigmoid(_Elementwise):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, any shape -> same shape and dtype
    (torch.nn.Sigmoid)."""

    _forward = staticmethod(F.sigmoid_forward)
    _backward = staticmethod(F.sigmoid_backward)

    def reference_pair(self):
        return ref.sigmoid_forward, ref.sigmoid_backward


class Tanh(_Elementwise):
    """Hyperbolic tangent, any shape -> same shape and dtype (torch.nn.Tanh)."""

    _forward = staticmethod(F.tanh_forward)
    _backward = staticmethod(F.tanh_backward)

    def reference_pair(self):
        return ref.tanh_forward, ref.tanh_backward


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

    def reference_pair(self):
        return (lambda x: ref.leaky_relu_forward(x, self.negative_slope),
                lambda x, dy: ref.leaky_relu_backward(x, dy, self.negative_slope))


def _axis_arg(owner: str, name: str, value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{owner}: {name} must be an int, got {value!r}")
    return int(value)


class Flatten(Layer):
    """Axes ``start_dim..end_dim`` (inclusive, negative counts from the end) merged into
    one in C order (torch.nn.Flatten); the defaults ``(1, -1)`` give ``(N, d1, d2, ...) ->
    (N, d1*d2*...)``."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = _axis_arg("Flatten", "start_dim", start_dim)
        self.end_dim = _axis_arg("Flatten", "end_dim", end_dim)

    def get_config(self):
        # Saved files from before start_dim/end_dim existed have an empty config, which
        # still builds the default layer.
        return dict(start_dim=self.start_dim, end_dim=self.end_dim)

    def extra_repr(self):
        if (self.start_dim, self.end_dim) == (1, -1):
            return ""
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def _axes(self, shape):
        ndim = len(shape)
        start = self.start_dim + ndim if self.start_dim < 0 else self.start_dim
        end = self.end_dim + ndim if self.end_dim < 0 else self.end_dim
        if not (0 <= start < ndim and 0 <= end < ndim):
            what = ("an input with a batch axis" if (self.start_dim, self.end_dim) == (1, -1)
                    else f"an input with axes {self.start_dim} and {self.end_dim}")
            raise ValueError(f"{self!r}: expected {what}, got shape {shape}")
        if start > end:
            raise ValueError(f"{self!r}: start_dim {self.start_dim} comes after end_dim "
                             f"{self.end_dim} for an input of shape {shape}")
        return start, end

    def output_shape(self, input_shape):
        shape = check_input_shape(self, input_shape)
        start, end = self._axes(shape)
        return shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]

    def forward(self, x):
        x = check_float_input(self, x)
        out = self.output_shape(x.shape)
        self._cache = (x.shape, out, x.dtype)
        return x.reshape(out)

    def backward(self, dy):
        shape, out, dtype = self._require_cache()
        dy = self._check_dy(dy, out, dtype)
        return dy.reshape(shape)

    def reference_pair(self):
        from .. import reference as ref

        def bwd(x, dy):
            start, end = self._axes(np.shape(x))
            return ref.unflatten(dy, start, np.shape(x)[start:end + 1])

        return (lambda x: ref.flatten(x, self.start_dim, self.end_dim), bwd)


class Unflatten(Layer):
    """Axis ``dim`` split into ``unflattened_size`` (torch.nn.Unflatten), C order; one
    entry may be -1 (inferred)."""

    def __init__(self, dim, unflattened_size):
        super().__init__()
        self.dim = _axis_arg("Unflatten", "dim", dim)
        sizes = unflattened_size
        valid = isinstance(sizes, (tuple, list)) and len(sizes) >= 1 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
            and (v >= 1 or v == -1) for v in sizes) and sum(v == -1 for v in sizes) <= 1
        if not valid:
            raise ValueError(f"Unflatten: unflattened_size must be a non-empty tuple of "
                             f"positive ints (at most one -1), got {unflattened_size!r}")
        self.unflattened_size = tuple(int(v) for v in sizes)

    def get_config(self):
        return dict(dim=self.dim, unflattened_size=list(self.unflattened_size))

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"

    def _split(self, shape):
        ndim = len(shape)
        dim = self.dim + ndim if self.dim < 0 else self.dim
        if not 0 <= dim < ndim:
            raise ValueError(f"{self!r}: expected an input with axis {self.dim}, got shape "
                             f"{shape}")
        sizes = list(self.unflattened_size)
        known = math.prod(v for v in sizes if v != -1)
        if -1 in sizes and shape[dim] % known == 0:
            sizes[sizes.index(-1)] = shape[dim] // known
        if math.prod(sizes) != shape[dim] or -1 in sizes:
            raise ValueError(f"{self!r}: axis {self.dim} of the input shape {shape} has size "
                             f"{shape[dim]}, which unflattened_size {self.unflattened_size} "
                             f"does not match")
        return dim, tuple(sizes)

    def output_shape(self, input_shape):
        shape = check_input_shape(self, input_shape)
        dim, sizes = self._split(shape)
        return shape[:dim] + sizes + shape[dim + 1:]

    def forward(self, x):
        x = check_float_input(self, x)
        out = self.output_shape(x.shape)
        self._cache = (x.shape, out, x.dtype)
        return x.reshape(out)

    def backward(self, dy):
        shape, out, dtype = self._require_cache()
        return self._check_dy(dy, out, dtype).reshape(shape)

    def reference_pair(self):
        from .. import reference as ref

        def bwd(x, dy):
            dim, sizes = self._split(np.shape(x))
            return ref.flatten(dy, dim, dim + len(sizes) - 1)

        return (lambda x: ref.unflatten(x, self.dim, self._split(np.shape(x))[1]), bwd)


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
