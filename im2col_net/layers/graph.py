"""Graph: a container for layer graphs that are not a tree of Sequential, Parallel and
Residual blocks (a tensor feeding several later nodes, joins of arbitrary branches)."""

from __future__ import annotations

import numpy as np

from .base import Layer, forward_child
from .blocks import _sum_arrays
from .containers import Container

__all__ = ["Graph", "GRAPH_OPS"]

GRAPH_OPS = ("layer", "add", "concat")


class Graph(Container):
    """A directed acyclic graph of layers with additions and channel concatenations.

    ``Graph(layers, nodes)``: ``nodes`` is a list in execution order of
    ``{"op": "layer" | "add" | "concat", "inputs": [ref, ...]}``, where a ref is ``-1``
    for the graph input or the index of an earlier node. The ``k``-th ``"layer"`` node
    runs ``layers[k]`` on its single input; ``"add"`` sums inputs of identical shape;
    ``"concat"`` concatenates them along axis 1. The last node is the output, and every
    node must contribute to it. Parameters are named ``"<layer index>.<name>"`` like
    Sequential. In backward the gradients reaching a tensor from all its consumers are
    summed.
    """

    def __init__(self, layers, nodes):
        super().__init__()
        layers = list(layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise ValueError(f"Graph: layer {i} must be a Layer, got {type(layer).__name__}")
        self.layers = layers
        self.nodes = self._checked_nodes(nodes, len(layers))

    @staticmethod
    def _checked_nodes(nodes, layer_count):
        if not isinstance(nodes, (list, tuple)) or not nodes:
            raise ValueError(f"Graph: nodes must be a non-empty list, got {nodes!r:.200}")
        out, used_layers, consumed = [], 0, set()
        for k, node in enumerate(nodes):
            if not isinstance(node, dict) or node.get("op") not in GRAPH_OPS:
                raise ValueError(f"Graph: node {k} must be a dict with op in {GRAPH_OPS}, "
                                 f"got {node!r:.200}")
            inputs = node.get("inputs")
            if (not isinstance(inputs, (list, tuple)) or not inputs
                    or not all(isinstance(r, int) and not isinstance(r, bool) and -1 <= r < k
                               for r in inputs)):
                raise ValueError(f"Graph: node {k} inputs must be refs to the input (-1) or "
                                 f"earlier nodes, got {inputs!r:.200}")
            if node["op"] == "layer":
                if len(inputs) != 1:
                    raise ValueError(f"Graph: layer node {k} takes one input, got {inputs}")
                used_layers += 1
            elif len(inputs) < 2:
                raise ValueError(f"Graph: {node['op']} node {k} needs at least two inputs, "
                                 f"got {inputs}")
            consumed.update(inputs)
            out.append({"op": node["op"], "inputs": [int(r) for r in inputs]})
        if used_layers != layer_count:
            raise ValueError(f"Graph: {layer_count} layers given but {used_layers} layer nodes")
        dead = [k for k in range(len(out) - 1) if k not in consumed]
        if dead:
            raise ValueError(f"Graph: the outputs of nodes {dead} are never used")
        return out

    def children(self):
        return list(self.layers)

    def get_config(self):
        return {"nodes": [dict(op=n["op"], inputs=list(n["inputs"])) for n in self.nodes]}

    @classmethod
    def from_config(cls, config, children=()):
        return cls(list(children), **config)

    def _layer_of_node(self):
        """Node index -> the layer it runs (layer nodes only)."""
        out, i = {}, 0
        for k, node in enumerate(self.nodes):
            if node["op"] == "layer":
                out[k] = self.layers[i]
                i += 1
        return out

    @staticmethod
    def _combined_shape(k, op, shapes):
        """The shape an add/concat node makes of its inputs' shapes (checked)."""
        first = tuple(shapes[0])
        for i, shape in enumerate(shapes[1:], start=1):
            shape = tuple(shape)
            same = (shape == first if op == "add" else
                    len(shape) == len(first) >= 2
                    and shape[:1] + shape[2:] == first[:1] + first[2:])
            if not same:
                raise ValueError(f"Graph node {k} ({op}): input {i} shape {shape} does not "
                                 f"fit input 0 shape {first}")
        if op == "add":
            return first
        return first[:1] + (sum(shape[1] for shape in shapes),) + first[2:]

    def _combine(self, k, op, values):
        self._combined_shape(k, op, [value.shape for value in values])
        for i, value in enumerate(values[1:], start=1):
            if value.dtype != values[0].dtype:
                raise ValueError(f"Graph node {k} ({op}): input {i} is {value.dtype}, "
                                 f"input 0 {values[0].dtype}")
        return _sum_arrays(values) if op == "add" else np.concatenate(values, axis=1)

    def output_shape(self, input_shape):
        shapes = {-1: tuple(input_shape)}
        layer_of = self._layer_of_node()
        for k, node in enumerate(self.nodes):
            inputs = [shapes[r] for r in node["inputs"]]
            if node["op"] == "layer":
                shapes[k] = layer_of[k].output_shape(inputs[0])
                if shapes[k] is None:  # a user layer that cannot say
                    return None
            else:
                shapes[k] = self._combined_shape(k, node["op"], inputs)
        return shapes[len(self.nodes) - 1]

    def forward(self, x):
        values = {-1: np.asarray(x)}
        layer_of = self._layer_of_node()
        widths = {}
        for k, node in enumerate(self.nodes):
            inputs = [values[r] for r in node["inputs"]]
            if node["op"] == "layer":
                values[k] = np.asarray(forward_child(layer_of[k], inputs[0]))
            else:
                values[k] = self._combine(k, node["op"], inputs)
                if node["op"] == "concat":
                    widths[k] = [v.shape[1] for v in inputs]
        y = values[len(self.nodes) - 1]
        self._cache = (y.shape, y.dtype, widths)
        return y

    def backward(self, dy):
        shape, dtype, widths = self._require_cache()
        dy = self._check_dy(dy, shape, dtype)
        layer_of = self._layer_of_node()
        pending: dict[int, list] = {len(self.nodes) - 1: [dy]}
        for k in range(len(self.nodes) - 1, -1, -1):
            node = self.nodes[k]
            grad = _sum_arrays(pending.pop(k, []))
            if node["op"] == "layer":
                parts = [layer_of[k].backward(grad)] if grad is not None else [None]
            elif node["op"] == "add":
                parts = [grad] * len(node["inputs"])
            else:
                parts = np.split(grad, np.cumsum(widths[k])[:-1], axis=1)
            for ref, part in zip(node["inputs"], parts, strict=True):
                pending.setdefault(ref, []).append(part)
        return _sum_arrays(pending.get(-1, []))

    def __repr__(self):
        layer_of = self._layer_of_node()
        lines = []
        for k, node in enumerate(self.nodes):
            what = (repr(layer_of[k]).replace("\n", "\n  ") if node["op"] == "layer"
                    else node["op"])
            lines.append(f"\n  ({k}) {node['inputs']} -> {what}")
        return f"Graph({''.join(lines)}\n)"
