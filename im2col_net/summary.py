"""Model summary: per layer the output shape, parameters, FLOPs and memory at a batch size.

:func:`summarize` works out every layer's input and output shape for a batch of one
from the layers' :meth:`~im2col_net.layers.base.Layer.output_shape` (the same checks as
their forward, but no arithmetic on arrays, so a huge input costs nothing), then scales
everything that grows with the batch by ``batch_size``. A layer that cannot infer its
shape (``output_shape`` returns None, e.g. a user's own layer) is run once on a zero
image in eval mode instead, if that image has at most :data:`DRY_RUN_MAX_ELEMENTS`
elements; every layer's mode and cached forward state are restored afterwards.

What is counted (all at ``batch_size``):

FLOPs (forward)
    A multiply-add is 2 FLOPs; bias additions are not counted. Conv2D:
    ``2 * N*Ho*Wo * Cout * Cin/groups * kh*kw``; ConvTranspose2D: ``2 * N*H*W * Cin *
    Cout/groups * kh*kw`` (``H, W`` its input); Linear: ``2 * N * in * out``; max/avg
    pooling: one per window element, ``N*C*Ho*Wo * kh*kw``; global average pooling:
    one per input element; batch norm: 4 per element (2 without affine parameters);
    activations, dropout and a residual addition: 1 per output element; Flatten and
    concatenation: 0. Unknown layers count 0.
activation memory
    The bytes of the layer's output (what training keeps for the backward pass, give
    or take the layers that cache their input instead).
workspace
    Memory the layer's lowering holds besides its output. Conv2D: the padded
    channels-last copy of its input, ``N*Hp*Wp*Cin`` elements, kept from forward to
    backward whatever the algorithm; its column matrices are built in blocks of about
    2 MiB per thread (the plan's block budget), a fixed cost not counted here.
    ConvTranspose2D: its whole column matrix, ``N*H*W * kh*kw*Cout`` elements, built in
    forward and again in backward. 0 elsewhere. In training the conv rows add up, since
    every layer keeps its copy until its backward has run.
plan
    Conv2D: the algorithm the planner's ``estimate`` mode picks at this batch size (or
    the one ``strategy=`` names). Only the cost model is asked, so the summary stays
    free of convolutions and large allocations; ``im2col-net bench`` shows measured plans.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from .layers.activations import (
    ELU,
    GELU,
    SELU,
    Hardsigmoid,
    Hardswish,
    PReLU,
    ReLU6,
    SiLU,
    Softplus,
)
from .layers.base import Layer, batched_inputs, register_summarizer
from .layers.batchnorm import _BatchNorm
from .layers.blocks import Parallel, Residual
from .layers.containers import Sequential
from .layers.conv import Conv2D
from .layers.conv_transpose import ConvTranspose2D
from .layers.dense import Dropout, Flatten, LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from .layers.dropout2d import Dropout2D
from .layers.pool import (
    AdaptiveAvgPool2D,
    AdaptiveMaxPool2D,
    AvgPool2D,
    GlobalAvgPool2D,
    MaxPool2D,
)

__all__ = ["LayerSummary", "ModelSummary", "summarize", "format_bytes", "format_count",
           "DRY_RUN_MAX_ELEMENTS"]

# Largest per-sample input a layer without output_shape is run on (16 Mi elements).
DRY_RUN_MAX_ELEMENTS = 1 << 24

_ELEMENTWISE = (ReLU, LeakyReLU, Sigmoid, Tanh, ELU, Dropout)
_ELEMENTWISE += (ReLU6, PReLU, SELU, GELU, SiLU, Hardswish, Hardsigmoid, Softplus, Dropout2D)


@dataclass(frozen=True)
class LayerSummary:
    """One row: a leaf layer, or the combine step of a Parallel/Residual block."""

    name: str                       # dotted path ("3.1.2"); a block's row has its own path
    kind: str                       # short description ("Conv2D 8->16 3x3")
    output_shape: tuple[int, ...]   # at the summary's batch size
    params: int
    flops: int
    activation_bytes: int
    workspace_bytes: int
    depth: int = 0                  # nesting depth, for indentation
    plan: str = ""                  # Conv2D: the estimated algorithm ("" elsewhere)


@dataclass(frozen=True)
class ModelSummary:
    """The rows of :func:`summarize` plus totals; ``str()`` gives a readable table."""

    input_shape: tuple[int, ...]    # (batch_size, C, H, W)
    dtype: str
    rows: tuple[LayerSummary, ...] = field(default_factory=tuple)

    @property
    def batch_size(self) -> int:
        return self.input_shape[0]

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.rows[-1].output_shape if self.rows else self.input_shape

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def total_flops(self) -> int:
        return sum(r.flops for r in self.rows)

    @property
    def total_activation_bytes(self) -> int:
        return sum(r.activation_bytes for r in self.rows)

    @property
    def total_workspace_bytes(self) -> int:
        return sum(r.workspace_bytes for r in self.rows)

    @property
    def peak_workspace_bytes(self) -> int:
        return max((r.workspace_bytes for r in self.rows), default=0)

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def input_bytes(self) -> int:
        return math.prod(self.input_shape) * self.itemsize

    @property
    def param_bytes(self) -> int:
        return self.total_params * self.itemsize

    def to_dict(self) -> dict:
        """JSON-able form: rows as dicts plus the totals."""
        return {
            "input_shape": list(self.input_shape),
            "dtype": self.dtype,
            "rows": [dict(name=r.name, kind=r.kind, output_shape=list(r.output_shape),
                          params=r.params, flops=r.flops, activation_bytes=r.activation_bytes,
                          workspace_bytes=r.workspace_bytes, plan=r.plan) for r in self.rows],
            "totals": {
                "params": self.total_params,
                "param_bytes": self.param_bytes,
                "flops": self.total_flops,
                "input_bytes": self.input_bytes,
                "activation_bytes": self.total_activation_bytes,
                "workspace_bytes": self.total_workspace_bytes,
                "peak_workspace_bytes": self.peak_workspace_bytes,
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        header = ("Layer", "Output shape", "Params", "FLOPs", "Activations", "Workspace",
                  "Plan")
        table = [header]
        for r in self.rows:
            label = "  " * r.depth + f"{r.name} {r.kind}".strip()
            table.append((label, str(r.output_shape), f"{r.params:,}", format_count(r.flops),
                          format_bytes(r.activation_bytes), format_bytes(r.workspace_bytes),
                          r.plan))
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]

        def line(row):
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                              strict=True)]
            return "  ".join(cells).rstrip()

        rule = "-" * len(line(header))
        out = [f"Model summary: input {self.input_shape} {self.dtype}", rule, line(header), rule]
        out += [line(row) for row in table[1:]]
        out.append(rule)
        out += [
            f"Total parameters:      {self.total_params:,} ({format_bytes(self.param_bytes)})",
            f"Forward FLOPs:         {format_count(self.total_flops)} "
            f"(batch of {self.batch_size})",
            f"Input:                 {format_bytes(self.input_bytes)}",
            f"Activations (sum):     {format_bytes(self.total_activation_bytes)}",
            f"Workspace:             {format_bytes(self.total_workspace_bytes)} total, "
            f"{format_bytes(self.peak_workspace_bytes)} largest layer",
        ]
        return "\n".join(out)


def format_bytes(n: int) -> str:
    """``1536 -> "1.5 KiB"``; binary units."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - loop always returns


def format_count(n: int) -> str:
    """``2_500_000 -> "2.50 M"``; decimal units."""
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(int(n))


def _describe(layer: Layer) -> str:
    if isinstance(layer, Conv2D):
        g = layer.geometry
        text = f"Conv2D {layer.in_channels}->{layer.out_channels} {g.kernel[0]}x{g.kernel[1]}"
        if g.stride != (1, 1):
            text += f" s{g.stride[0]}" + (f",{g.stride[1]}" if g.stride[0] != g.stride[1] else "")
        return text + (f" g{layer.groups}" if layer.groups > 1 else "")
    if isinstance(layer, ConvTranspose2D):
        g = layer.geometry
        text = (f"ConvTranspose2D {layer.in_channels}->{layer.out_channels} "
                f"{g.kernel[0]}x{g.kernel[1]}")
        if g.stride != (1, 1):
            text += f" s{g.stride[0]}" + (f",{g.stride[1]}" if g.stride[0] != g.stride[1] else "")
        return text + (f" g{layer.groups}" if layer.groups > 1 else "")
    if isinstance(layer, Linear):
        return f"Linear {layer.in_features}->{layer.out_features}"
    if isinstance(layer, (MaxPool2D, AvgPool2D)):
        k = layer.geometry.kernel
        return f"{type(layer).__name__} {k[0]}x{k[1]}"
    if isinstance(layer, _BatchNorm):
        return f"{type(layer).__name__} {layer.num_features}"
    return type(layer).__name__


def _leaf_costs(layer: Layer, x_shape, y_shape, batch: int, itemsize: int):
    """``(flops, workspace_bytes)`` of one leaf at ``batch`` from its batch-1 shapes."""
    out_per_sample = math.prod(y_shape[1:])
    in_per_sample = math.prod(x_shape[1:])
    if isinstance(layer, Conv2D):
        kh, kw = layer.geometry.kernel
        ho, wo = y_shape[2], y_shape[3]
        macs = ho * wo * layer.out_channels * (layer.in_channels // layer.groups) * kh * kw
        hp, wp = layer.geometry.padded_size(x_shape[2], x_shape[3])
        return 2 * macs * batch, hp * wp * layer.in_channels * batch * itemsize
    if isinstance(layer, ConvTranspose2D):
        kh, kw = layer.geometry.kernel
        h, w = x_shape[2], x_shape[3]
        macs = h * w * layer.in_channels * (layer.out_channels // layer.groups) * kh * kw
        return 2 * macs * batch, h * w * kh * kw * layer.out_channels * batch * itemsize
    if isinstance(layer, Linear):
        rows = math.prod(x_shape[1:-1])     # leading axes of an (N, *, in) input
        return 2 * layer.in_features * layer.out_features * rows * batch, 0
    if isinstance(layer, (MaxPool2D, AvgPool2D)):
        kh, kw = layer.geometry.kernel
        return out_per_sample * kh * kw * batch, 0
    if isinstance(layer, (GlobalAvgPool2D, AdaptiveAvgPool2D, AdaptiveMaxPool2D)):
        return in_per_sample * batch, 0  # about one operation per input element
    if isinstance(layer, _BatchNorm):
        return (4 if layer.affine else 2) * out_per_sample * batch, 0
    if isinstance(layer, _ELEMENTWISE):
        return out_per_sample * batch, 0
    if isinstance(layer, Flatten):
        return 0, 0
    return 0, 0


class _Walker:
    """Follows the batch-1 shapes through the tree and records one row per leaf."""

    def __init__(self, batch: int, itemsize: int, dtype):
        self.batch, self.itemsize, self.dtype = batch, itemsize, dtype
        self.rows: list[LayerSummary] = []

    def _shape(self, shape) -> tuple[int, ...]:
        return (self.batch,) + tuple(int(s) for s in shape[1:])

    def _bytes(self, shape) -> int:
        return math.prod(shape[1:]) * self.batch * self.itemsize

    def run(self, layer: Layer, x, path: str, depth: int):
        """``x``: the batch-1 input shape; returns the output shape."""
        if isinstance(layer, Sequential) and type(layer) is Sequential:
            for i, child in enumerate(layer.layers):
                x = self.run(child, x, f"{path}{i}.", depth)
            return x
        if isinstance(layer, Parallel):
            outs = [self.run(child, x, f"{path}{i}.", depth + 1)
                    for i, child in enumerate(layer.children())]
            y = self._guard(layer, path, lambda: layer.combine_shapes(outs))
            flops = 0 if layer.combine == "concat" else self._bytes(y) // self.itemsize * (
                len(outs) - 1)
            self._row(path, f"Parallel({layer.combine})", y, 0, flops, 0, depth)
            return y
        if isinstance(layer, Residual):
            body = self.run(layer.body, x, f"{path}0.", depth + 1)
            short = x if layer.shortcut is None else self.run(layer.shortcut, x, f"{path}1.",
                                                              depth + 1)
            y = self._guard(layer, path, lambda: layer.combine_shapes(body, short))
            self._row(path, "Residual(add)", y, 0, self._bytes(y) // self.itemsize, 0, depth)
            return y
        y = self._guard(layer, path, lambda: self._leaf_shape(layer, x, path))
        flops, work = _leaf_costs(layer, x, y, self.batch, self.itemsize)
        plan = (layer.plan(self._shape(x), "estimate").algorithm if isinstance(layer, Conv2D)
                else "")
        self._row(path, _describe(layer), y, layer.parameter_count(), flops, work, depth, plan)
        return y

    def _leaf_shape(self, layer, x, path):
        y = layer.output_shape(x)
        if y is not None:
            return tuple(int(s) for s in y)
        if math.prod(x) > DRY_RUN_MAX_ELEMENTS:
            raise ValueError(
                f"{type(layer).__name__} has no output_shape(), and running it on an input of "
                f"shape {tuple(x)} ({math.prod(x):,} elements) is over the dry-run limit of "
                f"{DRY_RUN_MAX_ELEMENTS:,} elements")
        return tuple(int(s) for s in np.shape(layer.forward(np.zeros(x, dtype=self.dtype))))

    def _guard(self, layer, path, step):
        try:
            return step()
        except ValueError as exc:
            where = path.rstrip(".") or "<model>"
            raise ValueError(f"summary: layer {where} ({type(layer).__name__}) failed on the "
                             f"dry run: {exc}") from exc

    def _row(self, path, kind, y, params, flops, work, depth, plan=""):
        self.rows.append(LayerSummary(path.rstrip("."), kind, self._shape(y), int(params),
                                      int(flops), self._bytes(y), int(work), depth, plan))


def _all_layers(layer: Layer):
    yield layer
    for child in layer.children():
        yield from _all_layers(child)


def summarize(model: Layer, input_shape, batch_size: int = 1) -> ModelSummary:
    """Summarise ``model`` for inputs of per-sample shape ``input_shape`` (e.g. ``(1, 28,
    28)``, no batch axis) at ``batch_size``.

    Returns a :class:`ModelSummary`; ``str()`` of it is a table with totals. Raises
    ``ValueError`` for a bad shape or batch size, or when a layer rejects its input
    (naming the layer's path). The model is left exactly as it was.
    """
    if not isinstance(model, Layer):
        raise ValueError(f"summary: expected a Layer, got {type(model).__name__}")
    try:
        sample_shape = tuple(int(s) for s in input_shape)
        bad_shape = not sample_shape or any(
            s < 1 or s != d for s, d in zip(sample_shape, input_shape, strict=True))
    except (TypeError, ValueError):
        bad_shape = True
    if bad_shape:
        raise ValueError(
            f"summary: input_shape must be the per-sample shape as positive ints, e.g. "
            f"(1, 28, 28), got {input_shape!r}"
        )
    if (not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool)
            or batch_size < 1):
        raise ValueError(f"summary: batch_size must be a positive int, got {batch_size!r}")
    dtype = np.dtype(model.dtype or np.float32)
    layers = list(_all_layers(model))
    saved = [(layer, layer.training, layer.__dict__.get("_cache")) for layer in layers]
    walker = _Walker(int(batch_size), dtype.itemsize, dtype)
    try:
        model.eval()
        with batched_inputs():       # the walker's first axis is the batch
            walker.run(model, (1,) + sample_shape, "", 0)
    finally:
        for layer, training, cache in saved:
            layer.training = training
            layer._cache = cache
    return ModelSummary((int(batch_size),) + sample_shape, dtype.name, tuple(walker.rows))


register_summarizer(summarize)
