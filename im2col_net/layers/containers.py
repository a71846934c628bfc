"""The container base (parameters, gradients and buffers taken from the children) and
Sequential."""

from __future__ import annotations

import numpy as np

from . import _fusion
from .base import Layer, forward_child, observing_inputs


class Container(Layer):
    """A layer made of child layers (``children()``): its parameters, gradients and
    buffers are its children's, under dotted names ``"<index>.<name>"``; it has none of
    its own, so ``params`` and ``grads`` are read-only views built on each access."""

    _owns_params = False

    def _dotted(self, method):
        out = []
        for i, child in enumerate(self.children()):
            out.extend((f"{i}.{name}", value) for name, value in getattr(child, method)())
        return out

    def named_parameters(self):
        return self._dotted("named_parameters")

    def named_buffers(self):
        return self._dotted("named_buffers")

    @property
    def params(self):
        return dict(self.named_parameters())

    @params.setter
    def params(self, value):
        if value:
            raise AttributeError(f"{type(self).__name__}.params is derived from its children")

    @property
    def grads(self):
        out = {}
        for i, child in enumerate(self.children()):
            out.update((f"{i}.{name}", g) for name, g in child.grads.items())
        return out

    @grads.setter
    def grads(self, value):
        if value:
            raise AttributeError(f"{type(self).__name__}.grads is derived from its children")

    @property
    def buffers(self):
        return dict(self.named_buffers())



class Sequential(Container):
    """Layers applied in order; backward runs through them in reverse.

    ``Sequential(a, b, c)`` or ``Sequential([a, b, c])``. Parameters are exposed under
    dotted names, ``"<index>.<name>"`` (``"0.weight"``), like torch.nn.Sequential.

    A ``ReLU`` directly followed by a ``MaxPool2D`` whose windows tile the input is run
    as one fused operation (pool first, then ReLU on the smaller result); outputs,
    gradients and the two layers' own caches are exactly those of running them one by
    one (see :mod:`im2col_net.layers._fusion`).
    """

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise ValueError(
                    f"Sequential: item {i} must be a Layer, got {type(layer).__name__}"
                )
        self.layers = list(layers)

    def children(self):
        return list(self.layers)

    def set_input_grad(self, needed):
        # Only the first layer sees the model's input; the others' dx feed their neighbours.
        return self.layers[0].set_input_grad(needed) if self.layers else None

    @classmethod
    def from_config(cls, config, children=()):
        return cls(list(children))

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(self.layers[index])
        return self.layers[index]

    def __iter__(self):
        return iter(self.layers)

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
            if shape is None:
                return None
        return tuple(shape)

    def forward(self, x):
        layers = self.layers
        self._fused = {}  # index of the ReLU -> record of the fused pair
        i = 0
        while i < len(layers):
            if (i + 1 < len(layers) and _fusion.fusable(layers[i], layers[i + 1], x)
                    and not observing_inputs()):
                x, self._fused[i] = _fusion.forward_pair(layers[i], layers[i + 1], x)
                i += 2
            else:
                x = forward_child(layers[i], x)
                if isinstance(x, tuple):  # would be stacked into one array silently
                    raise ValueError(
                        f"Sequential: layer {i} ({layers[i]!r}) returns a tuple (its output and "
                        f"indices); a Sequential passes one array on: set return_indices=False "
                        f"or call that layer directly")
                i += 1
        x = np.asarray(x)
        self._cache = (x.shape, x.dtype)
        return x

    def backward(self, dy):
        shape, dtype = self._require_cache()
        dy = self._check_dy(dy, shape, dtype)
        layers, fused = self.layers, getattr(self, "_fused", {})
        i = len(layers) - 1
        while i >= 0:
            record = fused.get(i - 1)
            if record is not None and _fusion.still_valid(layers[i - 1], layers[i], record):
                dy = _fusion.backward_pair(layers[i - 1], layers[i], dy, record)
                i -= 2
            else:
                dy = layers[i].backward(dy)
                i -= 1
        return dy

    def __repr__(self):
        # Nested containers span several lines: indent all of them one level.
        inner = "".join(f"\n  ({i}): " + repr(layer).replace("\n", "\n  ")
                        for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)" if inner else "Sequential()"
