"""Import an ONNX graph of supported operators as a model of this engine.

The graph is evaluated symbolically, node by node in file order: constants (initialisers,
``Constant`` nodes) and shape values (``Shape`` -> ``Gather`` -> ``Unsqueeze`` ->
``Concat`` chains, where only the batch size is unknown) are folded; every node that
computes from the input becomes a layer (or an add / concat join). Each new layer is run
on a batch-1 probe, so every shape is known exactly and a layer that does not fit is
refused at the node that made it. The layer graph then becomes ``Sequential`` /
``Parallel`` / ``Residual`` where it has that shape, else a :class:`~im2col_net.layers.
Graph`. Anything unsupported is refused with :class:`OnnxError` naming the node, its
op type and what is missing; sizes are checked against :class:`Limits` first.
"""

from __future__ import annotations

import os

import numpy as np

from ..layers import (
    ELU,
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    ConvTranspose2D,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    Graph,
    LeakyReLU,
    Linear,
    LogSoftmax,
    MaxPool2D,
    Parallel,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
)
from ..serialization import named_buffers, refuse_nonfinite
from .deps import OnnxError, require_onnx
from .tensors import Limits, TensorReader, type_name

__all__ = ["load", "from_model_proto", "Limits", "IMPORT_OPS", "MIN_IMPORT_OPSET"]

# Oldest default-domain opset whose attribute forms are understood here.
MIN_IMPORT_OPSET = 9
BATCH = None  # the unknown batch size inside a shape value


class _Dyn:
    """A tensor computed from the input: node ``ref`` of the layer graph (-1: the input)
    and its value on the batch-1 probe."""

    def __init__(self, ref, probe):
        self.ref, self.probe = ref, probe


class _Shape:
    """An integer tensor in which the batch size may appear (object array, BATCH)."""

    def __init__(self, values):
        self.values = values


class _Padded:
    """A Pad node's output: only a following Conv may consume it (folded into it)."""

    def __init__(self, source: _Dyn, pads, mode, where):
        self.source, self.pads, self.mode, self.where = source, pads, mode, where


def _int_values(value, where, what):
    """A Const int array or a _Shape's object array, for shape arithmetic."""
    if isinstance(value, _Shape):
        return value.values
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu":
        return value.astype(object)
    raise OnnxError(f"import: {where}: {what} must be a static integer tensor")


def _shape_result(values):
    """Back to a Const when the batch size does not appear."""
    values = np.asarray(values, dtype=object)
    if any(v is BATCH for v in values.ravel()):
        return _Shape(values)
    return np.array(values.tolist(), dtype=np.int64).reshape(values.shape)


class _Converter:
    def __init__(self, onnx, proto, limits: Limits, base_dir, input_shape):
        self.onnx = onnx
        self.proto = proto
        self.graph = proto.graph
        self.limits = limits
        self.reader = TensorReader(onnx, limits, base_dir)
        self.input_shape = input_shape
        self.values: dict[str, object] = {}
        self.nodes: list[dict] = []  # {"op", "inputs", "layer"}
        self.uses: dict[str, int] = {}
        self.opset = self._opset()

    # -- checks on the file as a whole ----------------------------------------------
    def _opset(self) -> int:
        version = None
        for entry in self.proto.opset_import:
            if entry.domain in ("", "ai.onnx"):
                version = int(entry.version)
        newest = int(self.onnx.defs.onnx_opset_version())
        if version is None:
            raise OnnxError("import: the model imports no default-domain (ai.onnx) opset")
        if not MIN_IMPORT_OPSET <= version <= newest:
            raise OnnxError(f"import: default-domain opset {version} is outside the supported "
                            f"range {MIN_IMPORT_OPSET}..{newest}")
        return version

    def _where(self, i, node):
        return f"node {node.name or '#' + str(i)!r} ({node.op_type})"

    def run(self):
        graph = self.graph
        if len(graph.node) > self.limits.max_nodes:
            raise OnnxError(f"import: {len(graph.node):,} nodes, more than the limit of "
                            f"{self.limits.max_nodes:,}")
        if len(graph.sparse_initializer):
            raise OnnxError("import: sparse initialisers are not supported")
        for tensor in graph.initializer:
            self.values[tensor.name] = self.reader.array(tensor, "initializer")
        inputs = [v for v in graph.input if v.name not in self.values]
        if len(inputs) != 1:
            raise OnnxError(f"import: the graph must have exactly one input besides its "
                            f"initialisers, got {[v.name for v in inputs]}")
        if len(graph.output) != 1:
            raise OnnxError(f"import: the graph must have exactly one output, got "
                            f"{[v.name for v in graph.output]}")
        self.dtype, shape = self._input_type(inputs[0])
        self.file_batch = shape[0]
        self.values[inputs[0].name] = _Dyn(-1, np.zeros((1,) + shape[1:], dtype=self.dtype))
        for node in graph.node:
            for name in node.input:
                if name:
                    self.uses[name] = self.uses.get(name, 0) + 1
        self.uses[graph.output[0].name] = self.uses.get(graph.output[0].name, 0) + 1
        for i, node in enumerate(graph.node):
            self._convert(i, node)
        out = self.values.get(graph.output[0].name)
        if not isinstance(out, _Dyn):
            raise OnnxError(f"import: the graph output {graph.output[0].name!r} is not computed "
                            f"from the input by supported operators")
        self._check_output_shape(graph.output[0], out.probe)
        return out

    def _input_type(self, info):
        name = info.name
        tensor_type = info.type.tensor_type
        if not info.type.HasField("tensor_type") or tensor_type.elem_type not in (1, 11):
            elem = type_name(self.onnx, tensor_type.elem_type)
            raise OnnxError(f"import: input {name!r} must be a FLOAT or DOUBLE tensor, got {elem}")
        dtype = np.dtype(np.float32 if tensor_type.elem_type == 1 else np.float64)
        dims = []
        for d in tensor_type.shape.dim:
            dims.append(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0
                        else None)
        if not tensor_type.HasField("shape") or not 2 <= len(dims) <= 4:
            raise OnnxError(f"import: input {name!r} must be (N, features), (N, C, L) or "
                            f"(N, C, H, W), got {len(dims)} dims")
        if self.input_shape is not None:
            given = tuple(int(s) for s in self.input_shape)
            if len(given) != len(dims) - 1 or min(given) < 1 or any(
                    d is not None and d != g for d, g in zip(dims[1:], given, strict=True)):
                raise OnnxError(f"import: input_shape {given} does not fit input {name!r} with "
                                f"dims {dims}")
            dims = [dims[0], *given]
        if any(d is None for d in dims[1:]):
            raise OnnxError(f"import: input {name!r} has symbolic per-sample dims {dims}; pass "
                            f"input_shape=(C, H, W)")
        count = int(np.prod(dims[1:]))
        if count > self.limits.max_input_elements:
            raise OnnxError(f"import: input {name!r} has {count:,} elements per sample, more "
                            f"than the limit of {self.limits.max_input_elements:,}")
        return dtype, tuple(dims)

    def _check_output_shape(self, info, probe):
        dims = [d for d in info.type.tensor_type.shape.dim]
        if not dims:
            return
        expected = [int(d.dim_value) if d.HasField("dim_value") else None for d in dims[1:]]
        got = list(probe.shape[1:])
        if len(expected) != len(got) or any(e is not None and e != g
                                            for e, g in zip(expected, got, strict=True)):
            raise OnnxError(f"import: the graph declares output {info.name!r} with per-sample "
                            f"shape {expected}, but the imported layers compute {got}")

    # -- helpers ---------------------------------------------------------------------
    def _attrs(self, where, node, allowed):
        out = {}
        for attr in node.attribute:
            if attr.name not in allowed:
                raise OnnxError(f"import: {where}: attribute {attr.name!r} is not supported "
                                f"(supported: {sorted(allowed) or 'none'})")
            if attr.type == self.onnx.AttributeProto.TENSOR:
                out[attr.name] = self.reader.array(attr.t, f"{where} attribute {attr.name!r}")
            elif attr.type in (self.onnx.AttributeProto.GRAPH, self.onnx.AttributeProto.GRAPHS,
                               self.onnx.AttributeProto.SPARSE_TENSOR):
                raise OnnxError(f"import: {where}: attribute {attr.name!r} of this type is not "
                                f"supported")
            else:
                value = self.onnx.helper.get_attribute_value(attr)
                out[attr.name] = value.decode() if isinstance(value, bytes) else value
        return out

    def _input(self, where, node, k, optional=False):
        if k >= len(node.input) or not node.input[k]:
            if optional:
                return None
            raise OnnxError(f"import: {where}: input {k} is missing")
        name = node.input[k]
        if name not in self.values:
            raise OnnxError(f"import: {where}: input {name!r} is not defined before the node "
                            f"(the graph must be topologically sorted)")
        return self.values[name]

    def _dyn(self, where, node, k=0, ranks=None):
        value = self._input(where, node, k)
        if isinstance(value, _Padded):
            raise OnnxError(f"import: {where}: consumes the output of {value.where}; Pad is "
                            f"supported only directly before Conv")
        if not isinstance(value, _Dyn):
            raise OnnxError(f"import: {where}: input {k} must be computed from the graph input, "
                            f"got a constant")
        if ranks is not None and value.probe.ndim not in ranks:
            raise OnnxError(f"import: {where}: expects a {' or '.join(map(str, ranks))}-D input, "
                            f"got {value.probe.ndim}-D (per-sample shape "
                            f"{value.probe.shape[1:]})")
        return value

    def _const(self, where, node, k, optional=False, floating=True, shape=None):
        value = self._input(where, node, k, optional)
        if value is None:
            return None
        if not isinstance(value, np.ndarray):
            raise OnnxError(f"import: {where}: input {k} ({node.input[k]!r}) must be a constant "
                            f"(initialiser or Constant)")
        if floating:
            if value.dtype != self.dtype:
                raise OnnxError(f"import: {where}: input {k} ({node.input[k]!r}) has dtype "
                                f"{value.dtype}, the graph input is {self.dtype}")
        if shape is not None and value.shape != tuple(shape):
            raise OnnxError(f"import: {where}: input {k} ({node.input[k]!r}) must have shape "
                            f"{tuple(shape)}, got {value.shape}")
        return value

    def _single_output(self, where, node):
        if not node.output or not node.output[0]:
            raise OnnxError(f"import: {where}: the node has no output")
        extra = [name for name in node.output[1:] if name and self.uses.get(name)]
        if extra:
            raise OnnxError(f"import: {where}: only the first output is supported, but "
                            f"{extra} are used")
        return node.output[0]

    def _work_elements(self, layer, shape) -> int:
        """Largest per-sample array the layer would allocate on ``shape`` (N, C, H, W)."""
        if not isinstance(layer, (Conv2D, ConvTranspose2D, MaxPool2D, AvgPool2D)):
            return 0
        _, c, h, w = shape
        g = layer.geometry
        kh, kw = g.kernel
        if isinstance(layer, ConvTranspose2D):
            ho, wo = layer.output_size(h, w)
            return max(layer.out_channels * max(ho, 0) * max(wo, 0),
                       h * w * kh * kw * layer.out_channels)
        hp, wp = g.padded_size(h, w)
        ho, wo = (max(v, 0) for v in g.output_size(h, w))
        cout = layer.out_channels if isinstance(layer, Conv2D) else c
        return max(c * hp * wp, cout * ho * wo, c * kh * kw * ho * wo)

    def _add_layer(self, where, layer, source: _Dyn) -> _Dyn:
        need = self._work_elements(layer, source.probe.shape) if source.probe.ndim == 4 else 0
        if need > self.limits.max_activation_elements:
            raise OnnxError(f"import: {where}: the layer would need {need:,} elements per "
                            f"sample, more than the limit of "
                            f"{self.limits.max_activation_elements:,}")
        layer.eval()
        try:
            probe = np.asarray(layer.forward(source.probe))
        except ValueError as exc:
            raise OnnxError(f"import: {where}: the layer does not fit its input of per-sample "
                            f"shape {source.probe.shape[1:]}: {exc}") from exc
        self.nodes.append({"op": "layer", "inputs": [source.ref], "layer": layer})
        return _Dyn(len(self.nodes) - 1, probe)

    def _add_join(self, where, op, sources) -> _Dyn:
        probes = [s.probe for s in sources]
        first = probes[0]
        for p in probes[1:]:
            ok = (p.shape == first.shape if op == "add" else
                  p.ndim == first.ndim and p.shape[:1] + p.shape[2:] == first.shape[:1]
                  + first.shape[2:])
            if not ok:
                raise OnnxError(f"import: {where}: input shapes {[q.shape[1:] for q in probes]} "
                                f"(per sample) do not fit an exact {op}; broadcasting is not "
                                f"supported")
        probe = sum(probes[1:], probes[0]) if op == "add" else np.concatenate(probes, axis=1)
        self.nodes.append({"op": op, "inputs": [s.ref for s in sources], "layer": None})
        return _Dyn(len(self.nodes) - 1, probe)

    def _float(self, value) -> float:
        """A float attribute (stored as float32); for a float32 graph its shortest decimal
        spelling, which rounds to the same float32 and reads better in configs."""
        value = float(value)
        return float(str(np.float32(value))) if self.dtype == np.float32 else value

    def _copy(self, layer, name, value):
        target = layer.params[name]
        if value.shape != target.shape:
            raise OnnxError(f"import: {layer!r}: {name} needs shape {target.shape}, got "
                            f"{value.shape}")
        target[...] = value

    # -- the operators ---------------------------------------------------------------
    def _convert(self, i, node):
        where = self._where(i, node)
        if node.domain not in ("", "ai.onnx"):
            raise OnnxError(f"import: {where}: operator domain {node.domain!r} is not supported")
        handler = getattr(self, f"_op_{node.op_type}", None)
        if handler is None:
            raise OnnxError(f"import: {where}: operator {node.op_type!r} is not supported; "
                            f"supported: {', '.join(IMPORT_OPS)}")
        result = handler(where, node)
        self.values[self._single_output(where, node)] = result

    def _op_Identity(self, where, node):
        self._attrs(where, node, set())
        return self._input(where, node, 0)

    def _op_Constant(self, where, node):
        attrs = self._attrs(where, node, {"value", "value_float", "value_floats", "value_int",
                                          "value_ints"})
        if len(attrs) != 1:
            raise OnnxError(f"import: {where}: needs exactly one value attribute")
        (key, value), = attrs.items()
        if key == "value":
            return value
        if key.startswith("value_int"):
            return np.array(value, dtype=np.int64)
        return np.array(value, dtype=self.dtype)

    def _op_Shape(self, where, node):
        attrs = self._attrs(where, node, {"start", "end"})
        value = self._input(where, node, 0)
        if isinstance(value, _Dyn):
            dims = np.array([BATCH, *value.probe.shape[1:]], dtype=object)
        elif isinstance(value, np.ndarray):
            dims = np.array(value.shape, dtype=object)
        else:
            raise OnnxError(f"import: {where}: cannot take the shape of this input")
        rank = len(dims)
        start, end = attrs.get("start", 0), attrs.get("end", rank)
        return _shape_result(dims[slice(start, end)])

    def _op_Gather(self, where, node):
        attrs = self._attrs(where, node, {"axis"})
        data = _int_values(self._input(where, node, 0), where, "data")
        index = self._input(where, node, 1)
        if not (isinstance(index, np.ndarray) and index.dtype.kind in "iu"):
            raise OnnxError(f"import: {where}: indices must be a static integer tensor")
        axis = attrs.get("axis", 0)
        try:
            return _shape_result(np.take(data, index, axis=axis))
        except (IndexError, ValueError, np.exceptions.AxisError) as exc:
            raise OnnxError(f"import: {where}: {exc}") from exc

    def _axes(self, where, node, attrs):
        if "axes" in attrs:
            return list(attrs["axes"])
        axes = self._input(where, node, 1, optional=True)
        if axes is None:
            return None
        return [int(a) for a in _int_values(axes, where, "axes").ravel()]

    def _op_Unsqueeze(self, where, node):
        attrs = self._attrs(where, node, {"axes"})
        data = _int_values(self._input(where, node, 0), where, "data")
        axes = self._axes(where, node, attrs)
        if axes is None:
            raise OnnxError(f"import: {where}: axes are missing")
        rank = data.ndim + len(axes)
        for axis in sorted(a % rank for a in axes):
            data = np.expand_dims(data, axis)
        return _shape_result(data)

    def _op_Squeeze(self, where, node):
        attrs = self._attrs(where, node, {"axes"})
        data = _int_values(self._input(where, node, 0), where, "data")
        axes = self._axes(where, node, attrs)
        axes = None if axes is None else tuple(a % data.ndim for a in axes)
        return _shape_result(np.squeeze(data, axis=axes))

    def _op_Cast(self, where, node):
        attrs = self._attrs(where, node, {"to", "saturate"})
        value = self._input(where, node, 0)
        if attrs.get("to") not in (6, 7) or isinstance(value, (_Dyn, _Padded)):
            raise OnnxError(f"import: {where}: only casts of static integer values to "
                            f"INT64/INT32 are supported")
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            if not np.all(value == np.trunc(value)):
                raise OnnxError(f"import: {where}: casting non-integer values is not supported")
            value = value.astype(np.int64)
        return _shape_result(_int_values(value, where, "input"))

    def _static_binary(self, where, node, fn):
        """Integer arithmetic on static shape values (torch's padding chains)."""
        self._attrs(where, node, set())
        inputs = [self._input(where, node, k) for k in (0, 1)]
        if any(isinstance(v, (_Dyn, _Padded)) for v in inputs):
            raise OnnxError(f"import: {where}: supported only on static shape values (folded "
                            f"away), not on tensors computed from the input")
        a, b = (_int_values(v, where, f"input {k}") for k, v in enumerate(inputs))
        try:
            return _shape_result(fn(a, b))
        except (TypeError, ValueError, ZeroDivisionError) as exc:
            raise OnnxError(f"import: {where}: needs static integer values that do not depend "
                            f"on the batch size ({exc})") from exc

    def _op_Mul(self, where, node):
        return self._static_binary(where, node, lambda a, b: a * b)

    def _op_Sub(self, where, node):
        return self._static_binary(where, node, lambda a, b: a - b)

    def _op_Div(self, where, node):
        # ONNX integer division truncates toward zero.
        return self._static_binary(
            where, node, lambda a, b: np.vectorize(lambda p, q: int(p / q), otypes=[object])(a, b))

    def _op_Neg(self, where, node):
        self._attrs(where, node, set())
        return _shape_result(-_int_values(self._input(where, node, 0), where, "input"))

    def _op_Transpose(self, where, node):
        attrs = self._attrs(where, node, {"perm"})
        data = _int_values(self._input(where, node, 0), where, "data")
        return _shape_result(np.transpose(data, attrs.get("perm")))

    def _op_ConstantOfShape(self, where, node):
        attrs = self._attrs(where, node, {"value"})
        shape = self._input(where, node, 0)
        if not isinstance(shape, np.ndarray) or shape.dtype.kind not in "iu" or shape.ndim != 1:
            raise OnnxError(f"import: {where}: the shape must be a static 1-D integer tensor")
        value = attrs.get("value", np.zeros(1, dtype=np.float32)).reshape(-1)
        dims = [int(d) for d in shape]
        count = int(np.prod(dims, dtype=object)) if dims else 1
        if min(dims, default=0) < 0 or count * value.itemsize > self.limits.max_tensor_bytes:
            raise OnnxError(f"import: {where}: shape {dims} is negative or larger than the limit "
                            f"of {self.limits.max_tensor_bytes:,} bytes")
        return np.full(dims, value[0], dtype=value.dtype)

    def _op_Concat(self, where, node):
        attrs = self._attrs(where, node, {"axis"})
        if "axis" not in attrs:
            raise OnnxError(f"import: {where}: attribute 'axis' is missing")
        parts = [self._input(where, node, k) for k in range(len(node.input))]
        if any(isinstance(p, (_Dyn, _Padded)) for p in parts):
            sources = [self._dyn(where, node, k) for k in range(len(node.input))]
            rank = sources[0].probe.ndim
            if attrs["axis"] % rank != 1:
                raise OnnxError(f"import: {where}: only concatenation along the channel axis "
                                f"(1) is supported, got axis {attrs['axis']}")
            return self._add_join(where, "concat", sources) if len(sources) > 1 else sources[0]
        arrays = [_int_values(p, where, f"input {k}") for k, p in enumerate(parts)]
        return _shape_result(np.concatenate(arrays, axis=attrs["axis"]))

    def _op_Slice(self, where, node):
        attrs = self._attrs(where, node, {"starts", "ends", "axes"} if self.opset < 10 else set())
        data = _int_values(self._input(where, node, 0), where, "data")

        def ints(key, k):
            if key in attrs:
                return list(attrs[key])
            value = self._input(where, node, k, optional=True)
            return None if value is None else [int(v) for v in
                                               _int_values(value, where, key).ravel()]

        starts, ends = ints("starts", 1), ints("ends", 2)
        axes = ints("axes", 3) or list(range(len(starts)))
        steps = ints("steps", 4) or [1] * len(starts)
        index = [slice(None)] * data.ndim
        for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
            index[a] = slice(s, e, st)
        return _shape_result(data[tuple(index)])

    def _op_Reshape(self, where, node):
        attrs = self._attrs(where, node, {"allowzero"})
        data = self._input(where, node, 0)
        if isinstance(data, (np.ndarray, _Shape)):
            target = [int(v) for v in _int_values(self._input(where, node, 1), where,
                                                  "shape").ravel()]
            values = _int_values(data, where, "data")
            target = [values.shape[k] if v == 0 else v for k, v in enumerate(target)]
            try:
                return _shape_result(values.reshape(target))
            except ValueError as exc:
                raise OnnxError(f"import: {where}: {exc}") from exc
        source = self._dyn(where, node, 0)
        target = [v for v in _int_values(self._input(where, node, 1), where, "shape").ravel()]
        per_sample = source.probe.shape[1:]
        if attrs.get("allowzero", 0) and 0 in target:
            raise OnnxError(f"import: {where}: allowzero=1 with a zero dimension is not supported")
        first = target[0] if target else None
        keeps_batch = (first is BATCH or first == 0 or
                       (self.file_batch is not None and first == self.file_batch)
                       or (first == -1 and len(target) > 1 and -1 not in target[1:]))
        rest = [per_sample[k - 1] if v == 0 and k - 1 < len(per_sample) else v
                for k, v in enumerate(target) if k > 0]
        total = int(np.prod(per_sample))
        if keeps_batch and BATCH not in rest:
            if rest in ([total], [-1]):
                return self._add_layer(where, Flatten(), source)
            if tuple(rest) == tuple(per_sample):
                return source
        raise OnnxError(f"import: {where}: only reshapes that flatten each sample to "
                        f"(N, {total}) are supported; target {target} for per-sample shape "
                        f"{per_sample}")

    def _op_Flatten(self, where, node):
        attrs = self._attrs(where, node, {"axis"})
        source = self._dyn(where, node, 0)
        axis = attrs.get("axis", 1)
        if axis % source.probe.ndim != 1 and not (axis == source.probe.ndim and axis == 1):
            raise OnnxError(f"import: {where}: only axis=1 is supported, got axis={axis}")
        return self._add_layer(where, Flatten(), source)

    def _op_Dropout(self, where, node):
        attrs = self._attrs(where, node, {"ratio", "seed", "is_test"})
        source = self._dyn(where, node, 0)
        ratio = attrs.get("ratio", 0.5)
        given = self._input(where, node, 1, optional=True)
        if given is not None:
            if not isinstance(given, np.ndarray) or given.size != 1:
                raise OnnxError(f"import: {where}: ratio must be a constant scalar")
            ratio = float(given.reshape(()))
        mode = self._input(where, node, 2, optional=True)
        if mode is not None and (not isinstance(mode, np.ndarray) or bool(mode.reshape(()))):
            raise OnnxError(f"import: {where}: training_mode must be a constant False")
        try:
            return self._add_layer(where, Dropout(self._float(ratio)), source)
        except ValueError as exc:
            raise OnnxError(f"import: {where}: {exc}") from exc

    def _elementwise(self, where, node, make, allowed=()):
        attrs = self._attrs(where, node, set(allowed))
        return self._add_layer(where, make(attrs), self._dyn(where, node, 0))

    def _op_Relu(self, where, node):
        return self._elementwise(where, node, lambda a: ReLU())

    def _op_Sigmoid(self, where, node):
        return self._elementwise(where, node, lambda a: Sigmoid())

    def _op_Tanh(self, where, node):
        return self._elementwise(where, node, lambda a: Tanh())

    def _op_LeakyRelu(self, where, node):
        return self._elementwise(
            where, node, lambda a: LeakyReLU(self._float(a.get("alpha", 0.01))), {"alpha"})

    def _op_Elu(self, where, node):
        return self._elementwise(where, node, lambda a: ELU(self._float(a.get("alpha", 1.0))),
                                 {"alpha"})

    def _softmax(self, where, node, cls):
        attrs = self._attrs(where, node, {"axis"})
        source = self._dyn(where, node, 0)
        rank = source.probe.ndim
        axis = attrs.get("axis", -1 if self.opset >= 13 else 1)
        if not -rank <= axis < rank:
            raise OnnxError(f"import: {where}: axis {axis} is out of range for a {rank}-D "
                            f"input")
        # Before opset 13 the input is flattened to 2-D at the axis: one axis only when it
        # is the last.
        if self.opset < 13 and axis % rank != rank - 1:
            raise OnnxError(f"import: {where}: opset {self.opset} {node.op_type} over axis "
                            f"{axis} of a {rank}-D input spans several axes; supported only "
                            f"over the last axis")
        return self._add_layer(where, cls(dim=axis % rank), source)

    def _op_Softmax(self, where, node):
        return self._softmax(where, node, Softmax)

    def _op_LogSoftmax(self, where, node):
        return self._softmax(where, node, LogSoftmax)

    def _op_Pad(self, where, node):
        attrs = self._attrs(where, node, {"mode", "pads", "value"})
        source = self._dyn(where, node, 0, ranks=(4,))
        if "pads" in attrs:
            pads = list(attrs["pads"])
            value = float(attrs.get("value", 0.0))
        else:
            pads = [int(v) for v in _int_values(self._input(where, node, 1), where,
                                                "pads").ravel()]
            constant = self._input(where, node, 2, optional=True)
            value = 0.0 if constant is None else float(np.asarray(constant).reshape(()))
            axes = self._input(where, node, 3, optional=True)
            if axes is not None:
                axes = [int(a) % 4 for a in _int_values(axes, where, "axes").ravel()]
                full = [0] * 8
                for k, a in enumerate(axes):
                    full[a], full[a + 4] = pads[k], pads[k + len(axes)]
                pads = full
        mode = attrs.get("mode", "constant")
        if len(pads) != 8 or any(p < 0 for p in pads) or any(pads[a] or pads[a + 4]
                                                             for a in (0, 1)):
            raise OnnxError(f"import: {where}: only non-negative padding of the two spatial "
                            f"axes is supported, got pads {pads}")
        if (mode not in ("constant", "edge", "reflect", "wrap")
                or (mode == "constant" and value != 0)):
            raise OnnxError(f"import: {where}: mode {mode!r} (value {value}) is not supported; "
                            f"supported: constant 0, edge, reflect, wrap")
        top, left, bottom, right = pads[2], pads[3], pads[6], pads[7]
        if not any((top, left, bottom, right)):
            return source
        engine_mode = {"constant": "zeros", "edge": "replicate", "reflect": "reflect",
                       "wrap": "circular"}[mode]
        return _Padded(source, (top, bottom, left, right), engine_mode, where)

    def _spatial(self, where, attrs, kernel, size, *, same_ok=True):
        """``(stride, dilation, (top, bottom, left, right))`` from conv/pool attributes."""
        stride = tuple(attrs.get("strides", (1, 1)))
        dilation = tuple(attrs.get("dilations", (1, 1)))
        if len(stride) != 2 or len(dilation) != 2:
            raise OnnxError(f"import: {where}: only 2-D windows are supported")
        auto = attrs.get("auto_pad", "NOTSET")
        if auto in ("NOTSET", ""):
            p = list(attrs.get("pads", (0, 0, 0, 0)))
            if len(p) != 4 or min(p) < 0:
                raise OnnxError(f"import: {where}: pads must be four non-negative ints, got {p}")
            return stride, dilation, (p[0], p[2], p[1], p[3])
        if auto == "VALID":
            return stride, dilation, (0, 0, 0, 0)
        if auto in ("SAME_UPPER", "SAME_LOWER") and same_ok:
            pads = []
            for n, k, s, d in zip(size, kernel, stride, dilation, strict=True):
                out = -(-n // s)
                total = max(0, (out - 1) * s + d * (k - 1) + 1 - n)
                small, large = total // 2, total - total // 2
                pads += [small, large] if auto == "SAME_UPPER" else [large, small]
            return stride, dilation, tuple(pads)
        raise OnnxError(f"import: {where}: auto_pad {auto!r} is not supported")

    def _op_Conv(self, where, node):
        attrs = self._attrs(where, node, {"auto_pad", "dilations", "group", "kernel_shape",
                                          "pads", "strides"})
        raw = self._input(where, node, 0)
        padded = raw if isinstance(raw, _Padded) else None
        source = padded.source if padded else self._dyn(where, node, 0, ranks=(4,))
        if source.probe.ndim != 4:
            raise OnnxError(f"import: {where}: only 2-D convolution of (N, C, H, W) is supported")
        weight = self._const(where, node, 1)
        if weight.ndim != 4:
            raise OnnxError(f"import: {where}: weight must be 4-D, got shape {weight.shape}")
        bias = self._const(where, node, 2, optional=True, shape=(weight.shape[0],))
        kernel = tuple(attrs.get("kernel_shape", weight.shape[2:]))
        if kernel != weight.shape[2:]:
            raise OnnxError(f"import: {where}: kernel_shape {kernel} does not match the weight "
                            f"shape {weight.shape}")
        groups = int(attrs.get("group", 1))
        size = source.probe.shape[2:]
        mode = "zeros"
        if padded:
            size = (size[0] + padded.pads[0] + padded.pads[1],
                    size[1] + padded.pads[2] + padded.pads[3])
        stride, dilation, pads = self._spatial(where, attrs, kernel, size)
        if padded:
            mode = padded.mode
            if mode == "zeros":
                pads = tuple(a + b for a, b in zip(pads, padded.pads, strict=True))
            elif any(pads):
                raise OnnxError(f"import: {where}: {mode} padding from {padded.where} combined "
                                f"with the convolution's own zero padding is not supported")
            else:
                pads = padded.pads
        cin = weight.shape[1] * groups
        try:
            layer = Conv2D(cin, weight.shape[0], kernel, stride=stride, padding=pads,
                           dilation=dilation, groups=groups, bias=bias is not None,
                           padding_mode=mode, dtype=self.dtype)
        except ValueError as exc:
            raise OnnxError(f"import: {where}: {exc}") from exc
        self._copy(layer, "weight", weight)
        if bias is not None:
            self._copy(layer, "bias", bias)
        return self._add_layer(where, layer, source)

    def _op_ConvTranspose(self, where, node):
        attrs = self._attrs(where, node, {"auto_pad", "dilations", "group", "kernel_shape",
                                          "output_padding", "pads", "strides"})
        source = self._dyn(where, node, 0, ranks=(4,))
        weight = self._const(where, node, 1)
        if weight.ndim != 4:
            raise OnnxError(f"import: {where}: weight must be 4-D, got shape {weight.shape}")
        groups = int(attrs.get("group", 1))
        bias = self._const(where, node, 2, optional=True, shape=(weight.shape[1] * groups,))
        kernel = tuple(attrs.get("kernel_shape", weight.shape[2:]))
        if kernel != weight.shape[2:]:
            raise OnnxError(f"import: {where}: kernel_shape {kernel} does not match the weight "
                            f"shape {weight.shape}")
        stride, dilation, (top, bottom, left, right) = self._spatial(
            where, attrs, kernel, source.probe.shape[2:], same_ok=False)
        if top != bottom or left != right:
            raise OnnxError(f"import: {where}: asymmetric pads {(top, left, bottom, right)} are "
                            f"not supported")
        try:
            layer = ConvTranspose2D(weight.shape[0], weight.shape[1] * groups, kernel,
                                    stride=stride, padding=(top, left),
                                    output_padding=tuple(attrs.get("output_padding", (0, 0))),
                                    groups=groups, bias=bias is not None, dilation=dilation,
                                    dtype=self.dtype)
        except ValueError as exc:
            raise OnnxError(f"import: {where}: {exc}") from exc
        self._copy(layer, "weight", weight)
        if bias is not None:
            self._copy(layer, "bias", bias)
        return self._add_layer(where, layer, source)

    def _pool(self, where, node, kind):
        allowed = {"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides"}
        allowed |= {"storage_order"} if kind == "max" else {"count_include_pad"}
        attrs = self._attrs(where, node, allowed)
        source = self._dyn(where, node, 0, ranks=(4,))
        if "kernel_shape" not in attrs:
            raise OnnxError(f"import: {where}: attribute 'kernel_shape' is missing")
        kernel = tuple(attrs["kernel_shape"])
        size = source.probe.shape[2:]
        stride, dilation, (top, bottom, left, right) = self._spatial(where, attrs, kernel, size)
        if dilation != (1, 1):
            raise OnnxError(f"import: {where}: dilations {dilation} are not supported")
        if top != bottom or left != right:
            raise OnnxError(f"import: {where}: asymmetric pads {(top, left, bottom, right)} are "
                            f"not supported")
        if attrs.get("ceil_mode", 0):
            for n, k, s, p in zip(size, kernel, stride, (top + bottom, left + right),
                                  strict=True):
                if (n + p - k) % s:
                    raise OnnxError(f"import: {where}: ceil_mode=1 changes the output size "
                                    f"here; only floor mode is supported")
        try:
            if kind == "max":
                layer = MaxPool2D(kernel, stride=stride, padding=(top, left))
            else:
                layer = AvgPool2D(kernel, stride=stride, padding=(top, left),
                                  count_include_pad=bool(attrs.get("count_include_pad", 0)))
        except ValueError as exc:
            raise OnnxError(f"import: {where}: {exc}") from exc
        return self._add_layer(where, layer, source)

    def _op_MaxPool(self, where, node):
        return self._pool(where, node, "max")

    def _op_AveragePool(self, where, node):
        return self._pool(where, node, "avg")

    def _op_GlobalAveragePool(self, where, node):
        self._attrs(where, node, set())
        return self._add_layer(where, GlobalAvgPool2D(), self._dyn(where, node, 0, ranks=(4,)))

    def _op_BatchNormalization(self, where, node):
        attrs = self._attrs(where, node, {"epsilon", "momentum", "training_mode", "spatial",
                                          "is_test"})
        if attrs.get("training_mode", 0) or not attrs.get("spatial", 1):
            raise OnnxError(f"import: {where}: only inference mode with per-channel statistics "
                            f"is supported")
        source = self._dyn(where, node, 0, ranks=(2, 3, 4))
        channels = source.probe.shape[1]
        scale, shift, mean, var = (self._const(where, node, k, shape=(channels,))
                                   for k in range(1, 5))
        cls = BatchNorm2D if source.probe.ndim == 4 else BatchNorm1D
        momentum = min(1.0, max(0.0, self._float(1.0 - float(attrs.get("momentum", 0.9)))))
        try:
            layer = cls(channels, eps=self._float(attrs.get("epsilon", 1e-5)), momentum=momentum,
                        dtype=self.dtype)
        except ValueError as exc:
            raise OnnxError(f"import: {where}: {exc}") from exc
        self._copy(layer, "weight", scale)
        self._copy(layer, "bias", shift)
        layer.buffers["running_mean"][...] = mean
        layer.buffers["running_var"][...] = var
        return self._add_layer(where, layer, source)

    def _linear(self, where, source, weight, bias):
        layer = Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                       dtype=self.dtype)
        self._copy(layer, "weight", weight)
        if bias is not None:
            self._copy(layer, "bias", bias)
        return self._add_layer(where, layer, source)

    def _op_Gemm(self, where, node):
        attrs = self._attrs(where, node, {"alpha", "beta", "transA", "transB"})
        if attrs.get("transA", 0):
            raise OnnxError(f"import: {where}: transA=1 is not supported")
        source = self._dyn(where, node, 0, ranks=(2,))
        b = self._const(where, node, 1)
        if b.ndim != 2:
            raise OnnxError(f"import: {where}: B must be 2-D, got shape {b.shape}")
        weight = b if attrs.get("transB", 0) else b.T
        alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
        if alpha != 1.0:
            weight = weight * np.asarray(alpha, dtype=self.dtype)
        c = self._const(where, node, 2, optional=True)
        bias = None
        if c is not None:
            try:
                bias = np.broadcast_to(c, (1, weight.shape[0])).reshape(-1).copy()
            except ValueError as exc:
                raise OnnxError(f"import: {where}: C of shape {c.shape} is not a per-output "
                                f"bias") from exc
            if beta != 1.0:
                bias = bias * np.asarray(beta, dtype=self.dtype)
        return self._linear(where, source, np.ascontiguousarray(weight), bias)

    def _op_MatMul(self, where, node):
        self._attrs(where, node, set())
        source = self._dyn(where, node, 0, ranks=(2,))
        b = self._const(where, node, 1)
        if b.ndim != 2:
            raise OnnxError(f"import: {where}: the second input must be a 2-D constant, got "
                            f"shape {b.shape}")
        out = self._linear(where, source, np.ascontiguousarray(b.T), None)
        self.nodes[out.ref]["matmul_output"] = node.output[0]
        return out

    def _op_Add(self, where, node):
        self._attrs(where, node, set())
        a, b = self._input(where, node, 0), self._input(where, node, 1)
        if isinstance(a, _Dyn) and isinstance(b, _Dyn):
            return self._add_join(where, "add", [a, b])
        if isinstance(b, _Dyn) and isinstance(a, np.ndarray):
            a, b = b, a
        if isinstance(a, _Dyn) and isinstance(b, np.ndarray) and a.ref >= 0:
            record = self.nodes[a.ref]
            layer = record["layer"]
            out_name = record.get("matmul_output")
            if (isinstance(layer, Linear) and "bias" not in layer.params
                    and out_name is not None and self.uses.get(out_name) == 1
                    and b.dtype == self.dtype and b.size == layer.out_features
                    and b.shape[-1:] == (layer.out_features,)):
                layer.params["bias"] = b.reshape(-1).copy()
                probe = a.probe + layer.params["bias"]
                return _Dyn(a.ref, probe)
        if isinstance(a, (np.ndarray, _Shape)) and isinstance(b, (np.ndarray, _Shape)):
            return _shape_result(_int_values(a, where, "A") + _int_values(b, where, "B"))
        raise OnnxError(f"import: {where}: only the sum of two computed tensors of one shape, "
                        f"or a bias added right after MatMul, is supported")

    def _op_Sum(self, where, node):
        self._attrs(where, node, set())
        sources = [self._dyn(where, node, k) for k in range(len(node.input))]
        return self._add_join(where, "add", sources) if len(sources) > 1 else sources[0]


IMPORT_OPS = sorted(name[4:] for name in vars(_Converter) if name.startswith("_op_"))


# -- from a layer graph to containers -----------------------------------------------------
class _NotTree(Exception):
    """The layer graph is not a nest of chains, Parallel and Residual blocks."""


def _prune(nodes, out_ref):
    """Drop nodes that do not contribute to ``out_ref``; renumber the refs."""
    live, stack = set(), [out_ref]
    while stack:
        ref = stack.pop()
        if ref < 0 or ref in live:
            continue
        live.add(ref)
        stack.extend(nodes[ref]["inputs"])
    order = sorted(live)
    new = {old: k for k, old in enumerate(order)}
    new[-1] = -1
    kept = [dict(nodes[old], inputs=[new[r] for r in nodes[old]["inputs"]]) for old in order]
    return kept, new.get(out_ref, -1)


def _structure(nodes, out_ref):
    consumers: dict[int, list[int]] = {}
    for k, node in enumerate(nodes):
        for ref in node["inputs"]:
            consumers.setdefault(ref, []).append(k)

    def chain(t, layers):
        while True:
            cons = consumers.get(t, [])
            if t == out_ref:
                if cons:
                    raise _NotTree
                return layers, t, None
            if len(cons) == 1:
                k = cons[0]
                if nodes[k]["op"] == "layer":
                    layers.append(nodes[k]["layer"])
                    t = k
                    continue
                return layers, t, k
            if not cons:
                raise _NotTree
            block, t = fanout(t, cons)
            layers.append(block)

    def fanout(t, cons):
        branches = []
        for k in cons:
            if nodes[k]["op"] == "layer":
                branches.append(chain(k, [nodes[k]["layer"]]))
            else:
                branches.append(([], t, k))
        joins = {j for _, _, j in branches}
        if len(joins) != 1 or None in joins:
            raise _NotTree
        j = joins.pop()
        inputs = nodes[j]["inputs"]
        ends = [end for _, end, _ in branches]
        if len(set(ends)) != len(ends) or sorted(ends) != sorted(inputs):
            raise _NotTree
        branches.sort(key=lambda br: inputs.index(br[1]))
        seqs = [Sequential(layers) for layers, _, _ in branches]
        if nodes[j]["op"] == "concat":
            return Parallel(seqs, combine="concat"), j
        if len(branches) == 2:
            empty = [not layers for layers, _, _ in branches]
            if empty == [False, False]:
                return Residual(seqs[0], seqs[1]), j
            if True in empty and False in empty:
                return Residual(seqs[empty.index(False)]), j
        return Parallel(seqs, combine="add"), j

    layers, _, join = chain(-1, [])
    if join is not None:
        raise _NotTree
    return Sequential(layers)


def _build_model(nodes, out_ref):
    nodes, out_ref = _prune(nodes, out_ref)
    try:
        return _structure(nodes, out_ref)
    except _NotTree:
        pass
    if out_ref != len(nodes) - 1:
        raise OnnxError("import: the graph output is also consumed inside the graph; not "
                        "supported")
    layers = [n["layer"] for n in nodes if n["op"] == "layer"]
    return Graph(layers, [{"op": n["op"], "inputs": n["inputs"]} for n in nodes])


# -- entry points -----------------------------------------------------------------------
def from_model_proto(proto, *, input_shape=None, limits=None, base_dir=None):
    """Convert an ``onnx.ModelProto``; external data is read relative to ``base_dir``
    (refused when None). Returns the model in training mode, like ``load_model``."""
    onnx = require_onnx()
    if not isinstance(proto, onnx.ModelProto):
        raise OnnxError(f"import: expected an onnx.ModelProto, got {type(proto).__name__}")
    converter = _Converter(onnx, proto, limits or Limits(), base_dir, input_shape)
    out = converter.run()
    model = _build_model(converter.nodes, out.ref)
    model.train()
    return model


def load(path, *, input_shape=None, limits=None, allow_nonfinite=False):
    """Import the ONNX file at ``path`` as a model of this engine.

    ``input_shape`` (per sample, e.g. ``(1, 28, 28)``) is needed only when the file
    leaves those dims symbolic. ``limits`` (:class:`Limits`) bounds what is read. The
    result is a ``Sequential`` (with ``Parallel`` / ``Residual`` blocks where the graph
    has that shape, else a ``Graph``), in training mode like ``load_model``; it can be
    evaluated, trained and saved with ``save_model``. Weights holding NaN or infinity
    are refused unless ``allow_nonfinite``, as by ``load_model``. Raises
    FileNotFoundError or :class:`OnnxError` (a ValueError) naming the problem.
    """
    onnx = require_onnx()
    limits = limits or Limits()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    size = os.path.getsize(path)
    if size > limits.max_file_bytes:
        raise OnnxError(f"{path}: {size:,} bytes, more than the limit of "
                        f"{limits.max_file_bytes:,} bytes")
    with open(path, "rb") as handle:
        data = handle.read(limits.max_file_bytes + 1)
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError or RuntimeWarning types
        raise OnnxError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {exc})") \
            from exc
    if not proto.HasField("graph"):
        raise OnnxError(f"{path}: not an ONNX model (no graph)")
    try:
        model = from_model_proto(proto, input_shape=input_shape, limits=limits,
                                 base_dir=os.path.dirname(os.path.abspath(path)))
    except OnnxError as exc:
        raise OnnxError(f"{path}: {exc}") from exc
    if not allow_nonfinite:
        refuse_nonfinite(dict(model.named_parameters()), named_buffers(model), path,
                         error=OnnxError)
    return model
