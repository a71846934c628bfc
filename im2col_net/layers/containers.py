"""Sequential container."""

from __future__ import annotations

from .base import Layer


class Sequential(Layer):
    """Layers applied in order; backward runs through them in reverse.

    ``Sequential(a, b, c)`` or ``Sequential([a, b, c])``. Parameters are exposed under
    dotted names, ``"<index>.<name>"`` (``"0.weight"``), like torch.nn.Sequential.
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

    def named_parameters(self):
        out = []
        for i, layer in enumerate(self.layers):
            out.extend((f"{i}.{name}", value) for name, value in layer.named_parameters())
        return out

    def named_buffers(self):
        out = []
        for i, layer in enumerate(self.layers):
            out.extend((f"{i}.{name}", value) for name, value in layer.named_buffers())
        return out

    @property
    def buffers(self):
        return dict(self.named_buffers())

    @property
    def params(self):
        return dict(self.named_parameters())

    @params.setter
    def params(self, value):
        if value:
            raise AttributeError("Sequential.params is derived from its layers")

    @property
    def grads(self):
        out = {}
        for i, layer in enumerate(self.layers):
            out.update((f"{i}.{name}", g) for name, g in layer.grads.items())
        return out

    @grads.setter
    def grads(self, value):
        if value:
            raise AttributeError("Sequential.grads is derived from its layers")

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy

    def __repr__(self):
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)" if inner else "Sequential()"
