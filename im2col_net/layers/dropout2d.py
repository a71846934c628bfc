"""Dropout2D (whole channels, torch.nn.Dropout2d) and Identity (torch.nn.Identity)."""

from __future__ import annotations

import copy

import numpy as np

from .. import reference as ref
from ..functional import activations as A
from .base import Layer, check_float_input, check_input_shape, make_rng
from .dense import _real_number


class Dropout2D(Layer):
    """Channel dropout of ``(N, C, H, W)``: each ``(n, c)`` plane is zeroed with
    probability ``p`` and the kept planes are scaled by ``1 / (1 - p)``; the identity in
    eval mode (torch.nn.Dropout2d).

    The mask comes from ``rng`` (a Generator or seed) like :class:`Dropout`'s, so the
    trainer checkpoints its state. Only 4-D inputs are accepted: torch reads a 3-D input
    as ``(N, C, L)`` with a warning that this will change, so it is refused here.
    """

    def __init__(self, p=0.5, *, rng=None):
        super().__init__()
        if not 0.0 <= _real_number("Dropout2D", "p", p) < 1.0:
            raise ValueError(f"Dropout2D: p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = make_rng(rng, owner=f"Dropout2D(p={p!r})")

    def get_config(self):
        return dict(p=self.p)

    def output_shape(self, input_shape):
        return check_input_shape(self, input_shape, 4)

    def forward(self, x):
        x = check_float_input(self, x, 4)
        y, mask = A.dropout2d_forward(x, self.p, self.rng, self.training)
        self._cache = (x.shape, mask, y.dtype)
        return y

    def backward(self, dy):
        shape, mask, dtype = self._require_cache()
        return A.dropout2d_backward(self._check_dy(dy, shape, dtype), mask)

    def reference_pair(self):
        """The reference with the mask of the layer's next forward pass (its generator
        state is copied, not advanced): call it before running the layer."""
        snapshot = copy.deepcopy(self.rng)

        def draws(x):
            if not self.training or self.p == 0:
                return np.ones(np.shape(x)[:2])
            rng = copy.deepcopy(snapshot)
            dtype = np.asarray(x).dtype
            return rng.random(np.shape(x)[:2] + (1, 1), dtype=dtype)[:, :, 0, 0]

        return (lambda x: ref.dropout2d_forward(x, draws(x), self.p if self.training else 0.0),
                lambda x, dy: ref.dropout2d_backward(x, dy, draws(x),
                                                     self.p if self.training else 0.0))


class Identity(Layer):
    """``y = x`` for any shape (torch.nn.Identity): a placeholder in a model."""

    def output_shape(self, input_shape):
        return check_input_shape(self, input_shape)

    def forward(self, x):
        x = check_float_input(self, x)
        self._cache = (x.shape, x.dtype)
        return x

    def backward(self, dy):
        shape, dtype = self._require_cache()
        return self._check_dy(dy, shape, dtype)

    def reference_pair(self):
        return (lambda x: np.array(x, copy=True), lambda x, dy: np.array(dy, copy=True))
