"""Branching containers: :class:`Parallel` (Inception-style) and :class:`Residual` (ResNet).

Both feed one input to several sub-layers and combine their outputs; in backward the
gradients of the branches are summed into ``dx`` (the input fanned out, so its gradient
fans in). Parameters, gradients and buffers are exposed under dotted names with the
child's index first, exactly like :class:`~im2col_net.layers.containers.Sequential`
(``"1.0.weight"``: branch 1, its layer 0, ``weight``), so the names equal those of the
equivalent torch module whose sub-modules are registered as ``"0"``, ``"1"``, ...

Output shapes are checked when the block runs: branches that do not fit together raise
a ``ValueError`` naming the block and both shapes instead of a NumPy broadcasting error.
"""

from __future__ import annotations

import numpy as np

from .base import Layer, as_native, forward_child, make_rng
from .batchnorm import BatchNorm2D
from .containers import Container, Sequential
from .conv import Conv2D
from .dense import ReLU
from .pool import MaxPool2D

__all__ = ["Parallel", "Residual", "inception_block", "basic_residual_block"]

COMBINE_MODES = ("concat", "add")


class _Branching(Container):
    """A container of indexed children; params/grads/buffers are derived, dotted views."""

    def __init__(self, children, owner):
        super().__init__()
        for i, child in enumerate(children):
            if not isinstance(child, Layer):
                raise ValueError(f"{owner}: item {i} must be a Layer, got {type(child).__name__}")
        self._children = list(children)

    def children(self):
        return list(self._children)

    def __len__(self):
        return len(self._children)

    def __getitem__(self, index):
        return self._children[index]

    def __iter__(self):
        return iter(self._children)

    def __repr__(self):
        head = self.extra_repr()
        inner = "".join(
            f"\n  ({i}): " + repr(child).replace("\n", "\n  ")
            for i, child in enumerate(self._children)
        )
        return f"{type(self).__name__}({head}{inner}\n)"


def _sum_arrays(parts):
    """Sum input gradients from several branches without modifying any of them.

    A branch may hand back a view of its ``dy`` (identity, Flatten), so the first sum
    makes a new array and only that is updated in place. ``None`` entries (a branch that
    skips its input gradient) are ignored; all None gives None.
    """
    total, owned = None, False
    for part in parts:
        if part is None:
            continue
        if total is None:
            total = part
        elif not owned:
            total = total + part
            owned = True
        else:
            total += part
    return total


class Parallel(_Branching):
    """Run every branch on the same input and combine the outputs (an Inception block).

    ``Parallel(b0, b1, ...)`` or ``Parallel([b0, b1, ...])``. ``combine="concat"``
    concatenates the outputs along axis 1 (channels), so all other axes must agree:
    ``(N, C_i, H, W) -> (N, sum C_i, H, W)``; ``combine="add"`` sums outputs of identical
    shape. Backward splits ``dy`` the same way and sums the branches' input gradients.
    """

    def __init__(self, *branches, combine="concat"):
        if len(branches) == 1 and isinstance(branches[0], (list, tuple)):
            branches = tuple(branches[0])
        if combine not in COMBINE_MODES:
            raise ValueError(f"Parallel: combine must be one of {COMBINE_MODES}, got {combine!r}")
        if not branches:
            raise ValueError("Parallel: needs at least one branch, got none")
        super().__init__(branches, "Parallel")
        self.combine = combine

    def get_config(self):
        return dict(combine=self.combine)

    @classmethod
    def from_config(cls, config, children=()):
        return cls(*children, **config)

    def _name(self):
        return f"Parallel block ({len(self._children)} branches, combine={self.combine!r})"

    def _check_outputs(self, outputs):
        self._check_shapes([out.shape for out in outputs])
        first = outputs[0]
        for i, out in enumerate(outputs[1:], start=1):
            if out.dtype != first.dtype:
                raise ValueError(
                    f"{self._name()}: branch {i} output dtype {out.dtype} differs from branch 0 "
                    f"output dtype {first.dtype}"
                )

    def _check_shapes(self, shapes):
        first = tuple(shapes[0])
        for i, out in enumerate(shapes[1:], start=1):
            out = tuple(out)
            if self.combine == "concat":
                fits = (len(out) == len(first) and len(out) >= 2
                        and out[:1] + out[2:] == first[:1] + first[2:])
                rule = "all axes except channels (axis 1) must match for concatenation"
            else:
                fits = out == first
                rule = "shapes must be identical for addition"
            if not fits:
                raise ValueError(
                    f"{self._name()}: branch {i} output shape {out} does not fit branch 0 "
                    f"output shape {first}; {rule}"
                )

    def combine_shapes(self, shapes):
        """The combined output shape of branch outputs of ``shapes`` (checked as
        :meth:`combine_outputs` checks arrays)."""
        shapes = [tuple(int(s) for s in shape) for shape in shapes]
        self._check_shapes(shapes)
        if self.combine == "concat":
            first = shapes[0]
            return first[:1] + (sum(shape[1] for shape in shapes),) + first[2:]
        return shapes[0]

    def output_shape(self, input_shape):
        shapes = [branch.output_shape(input_shape) for branch in self._children]
        if any(shape is None for shape in shapes):
            return None
        return self.combine_shapes(shapes)

    def combine_outputs(self, outputs):
        """Check the branch outputs fit together and combine them (no caching)."""
        outputs = [np.asarray(out) for out in outputs]
        self._check_outputs(outputs)
        if self.combine == "concat":
            return np.concatenate(outputs, axis=1)
        return _sum_arrays(outputs)

    def forward(self, x):
        outputs = [np.asarray(forward_child(branch, x)) for branch in self._children]
        y = self.combine_outputs(outputs)
        widths = [out.shape[1] for out in outputs] if self.combine == "concat" else None
        self._cache = (y.shape, widths, y.dtype)
        return y

    def backward(self, dy):
        shape, widths, dtype = self._require_cache()
        dy = self._check_dy(dy, shape, dtype)
        if widths is None:
            pieces = [dy] * len(self._children)
        else:
            pieces = np.split(dy, np.cumsum(widths)[:-1], axis=1)
        return _sum_arrays(branch.backward(piece)
                           for branch, piece in zip(self._children, pieces, strict=True))


class Residual(_Branching):
    """``y = body(x) + shortcut(x)``; the shortcut is the identity when None (a ResNet block).

    ``body`` and ``shortcut`` are any layers (typically :class:`Sequential`); their
    outputs must have identical shapes. They are children ``0`` and ``1``, so parameter
    names read ``"0.<body name>"`` and ``"1.<shortcut name>"``. Backward sums the
    gradients reaching ``x`` through the body and through the shortcut.
    """

    def __init__(self, body, shortcut=None):
        children = [body] if shortcut is None else [body, shortcut]
        super().__init__(children, "Residual")

    @property
    def body(self):
        return self._children[0]

    @property
    def shortcut(self):
        """The shortcut layer, or None for the identity."""
        return self._children[1] if len(self._children) > 1 else None

    @classmethod
    def from_config(cls, config, children=()):
        return cls(*children, **config)

    def extra_repr(self):
        return "identity shortcut" if self.shortcut is None else ""

    def _mismatch(self, body_text, short_text, what):
        which = "identity shortcut (input)" if self.shortcut is None else "shortcut output"
        return ValueError(
            f"Residual block: body output shape {body_text} does not match {which} shape "
            f"{short_text}; {what} must be identical for the addition"
            + ("; use a projection shortcut (e.g. a 1x1 Conv2D)" if self.shortcut is None
               else "")
        )

    def combine_outputs(self, body_out, short_out):
        """Check the body and shortcut outputs match and add them (no caching)."""
        body_out, short_out = np.asarray(body_out), np.asarray(short_out)
        if body_out.shape != short_out.shape or body_out.dtype != short_out.dtype:
            raise self._mismatch(f"{body_out.shape} ({body_out.dtype})",
                                 f"{short_out.shape} ({short_out.dtype})", "shapes and dtypes")
        return body_out + short_out

    def combine_shapes(self, body_shape, short_shape):
        """The output shape for body and shortcut outputs of these shapes (checked)."""
        body_shape = tuple(int(s) for s in body_shape)
        short_shape = tuple(int(s) for s in short_shape)
        if body_shape != short_shape:
            raise self._mismatch(body_shape, short_shape, "shapes")
        return body_shape

    def output_shape(self, input_shape):
        body = self.body.output_shape(input_shape)
        short = (tuple(input_shape) if self.shortcut is None
                 else self.shortcut.output_shape(input_shape))
        if body is None or short is None:
            return None
        return self.combine_shapes(body, short)

    def forward(self, x):
        x = as_native(np.asarray(x))  # the identity shortcut must match the body's dtype
        body_out = forward_child(self.body, x)
        short_out = x if self.shortcut is None else forward_child(self.shortcut, x)
        y = self.combine_outputs(body_out, short_out)
        self._cache = (y.shape, y.dtype)
        return y

    def backward(self, dy):
        shape, dtype = self._require_cache()
        dy = self._check_dy(dy, shape, dtype)
        dx_body = self.body.backward(dy)
        dx_short = dy if self.shortcut is None else self.shortcut.backward(dy)
        return _sum_arrays([dx_body, dx_short])


def inception_block(in_channels, c1, c3r, c3, c5r, c5, pool_proj, *, batch_norm=False,
                    rng=None, dtype=np.float32) -> Parallel:
    """A GoogLeNet Inception module: four branches concatenated along channels.

    Branches (each convolution followed by ReLU, spatial size kept):
    ``1x1 -> c1``; ``1x1 -> c3r, 3x3 -> c3``; ``1x1 -> c5r, 5x5 -> c5``;
    ``3x3 max-pool stride 1 -> 1x1 -> pool_proj``. Input ``(N, in_channels, H, W)``,
    output ``(N, c1 + c3 + c5 + pool_proj, H, W)``. ``batch_norm=True`` puts a
    BatchNorm2D between every convolution (then without bias) and its ReLU, as in
    Inception v2 and later.
    """
    rng = make_rng(rng)

    def conv(cin, cout, k):
        layer = Conv2D(cin, cout, k, padding=k // 2, bias=not batch_norm, rng=rng, dtype=dtype)
        if batch_norm:
            return [layer, BatchNorm2D(cout, dtype=dtype), ReLU()]
        return [layer, ReLU()]

    return Parallel(
        Sequential(conv(in_channels, c1, 1)),
        Sequential(conv(in_channels, c3r, 1) + conv(c3r, c3, 3)),
        Sequential(conv(in_channels, c5r, 1) + conv(c5r, c5, 5)),
        Sequential([MaxPool2D(3, stride=1, padding=1)] + conv(in_channels, pool_proj, 1)),
    )


def basic_residual_block(in_channels, out_channels, stride=1, *, rng=None,
                         dtype=np.float32) -> Sequential:
    """A ResNet basic block: ``ReLU(body(x) + shortcut(x))``.

    ``body``: 3x3 conv (``stride``) -> BatchNorm -> ReLU -> 3x3 conv -> BatchNorm, the
    convolutions without bias (BatchNorm supplies it). ``shortcut``: the identity when
    the shape is kept, otherwise a 1x1 conv with ``stride`` -> BatchNorm (projection).
    Input ``(N, in_channels, H, W)``, output ``(N, out_channels, Ho, Wo)`` with
    ``Ho = (H - 1) // stride + 1``. Returns ``Sequential(Residual(body, shortcut), ReLU())``.
    """
    rng = make_rng(rng)
    body = Sequential(
        Conv2D(in_channels, out_channels, 3, stride=stride, padding=1, bias=False, rng=rng,
               dtype=dtype),
        BatchNorm2D(out_channels, dtype=dtype),
        ReLU(),
        Conv2D(out_channels, out_channels, 3, padding=1, bias=False, rng=rng, dtype=dtype),
        BatchNorm2D(out_channels, dtype=dtype),
    )
    shortcut = None
    if stride != 1 or in_channels != out_channels:
        shortcut = Sequential(
            Conv2D(in_channels, out_channels, 1, stride=stride, bias=False, rng=rng, dtype=dtype),
            BatchNorm2D(out_channels, dtype=dtype),
        )
    return Sequential(Residual(body, shortcut), ReLU())
