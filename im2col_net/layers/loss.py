"""Losses: SoftmaxCrossEntropy (= CrossEntropyLoss), NLLLoss, MSELoss, BCEWithLogitsLoss.

Losses are not layers: ``forward(input, target)`` returns the loss (a Python float for
``reduction="mean"``/``"sum"``, an array of the per-element losses for ``"none"``) and
``backward(dloss=1.0)`` the gradient with respect to ``input`` (``dloss`` an array of
the loss's shape for ``"none"``). Options and defaults are torch.nn's.
"""

from __future__ import annotations

import types

import numpy as np

from .. import reference as ref
from ..functional import basic as F
from ..functional import losses as FL


class _Loss:
    """The shared protocol: ``reduction`` check, call order, ``dloss`` check."""

    _defaults: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # As for layers: an inherited constructor is re-made under the subclass's name, so
        # Python's argument errors name the public class.
        if "__init__" not in cls.__dict__:
            parent = cls.__init__
            qualname = f"{cls.__qualname__}.__init__"
            init = types.FunctionType(parent.__code__.replace(co_qualname=qualname),
                                      parent.__globals__, "__init__", parent.__defaults__,
                                      parent.__closure__)
            init.__kwdefaults__, init.__doc__ = parent.__kwdefaults__, parent.__doc__
            init.__qualname__ = qualname
            cls.__init__ = init

    def __init__(self, reduction="mean"):
        self._cache = None
        self._out_shape = None
        if not isinstance(reduction, str) or reduction not in FL.REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of "
                             f"{', '.join(map(repr, FL.REDUCTIONS))}, got {reduction!r}")
        self.reduction = reduction

    def _options(self) -> dict:
        return dict(reduction=self.reduction)

    def __repr__(self):
        shown = []
        for key, value in self._options().items():
            default = self._defaults.get(key, "mean" if key == "reduction" else None)
            if isinstance(value, np.ndarray):
                shown.append(f"{key}={value.tolist()!r}")
            elif value != default:
                shown.append(f"{key}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def __call__(self, input, target):
        return self.forward(input, target)

    def _float_input(self, x, what="input"):
        x = np.asarray(x)
        if x.dtype.kind != "f" or x.ndim == 0 or 0 in x.shape:
            raise ValueError(f"{self!r}: expected a non-empty float {what}, got shape {x.shape} "
                             f"dtype {x.dtype}")
        return x if x.dtype.isnative else x.astype(x.dtype.newbyteorder("="))

    def _same_shape_target(self, x, target):
        target = np.asarray(target)
        if target.shape != x.shape or target.dtype.kind not in "fiub":
            raise ValueError(f"{self!r}: expected a real target of the input's shape {x.shape}, "
                             f"got shape {target.shape} dtype {target.dtype} (no broadcasting)")
        return target.astype(x.dtype, copy=False)

    def _check_dloss(self, dloss):
        if self._cache is None:
            raise RuntimeError(f"{self!r}: backward() called before forward()")
        if self.reduction == "none":
            d = np.asarray(dloss)
            if d.shape != self._out_shape or d.dtype.kind not in "iuf":
                raise ValueError(f"{self!r}: with reduction='none' dloss must be a real array "
                                 f"of the loss's shape {self._out_shape}, got shape {d.shape} "
                                 f"dtype {d.dtype}")
            return d
        if np.ndim(dloss) != 0 or np.asarray(dloss).dtype.kind not in "iuf":
            raise ValueError(f"{self!r}: dloss must be a real number, got {dloss!r}")
        return float(dloss)

    def _finish(self, loss, cache, out_shape):
        self._cache, self._out_shape = cache, tuple(out_shape)
        return loss


def _class_weight(owner, weight, dtype=None):
    """``weight`` as a 1-D float array of finite values (None stays None)."""
    if weight is None:
        return None
    w = np.array(weight, dtype=np.float64 if dtype is None else dtype)
    if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)):
        raise ValueError(f"{owner}: weight must be a 1-D array of finite class weights, got "
                         f"{np.shape(weight)} {weight!r}")
    return w


def _ignore_index(owner, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{owner}: ignore_index must be an int, got {value!r}")
    return int(value)


class _ClassIndexLoss(_Loss):
    """Input ``(N, C)`` or ``(N, C, d1, ...)``; class-index targets of its shape without
    axis 1, each in ``[0, C)`` or equal to ``ignore_index``."""

    _what = "logits"

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        self.weight = _class_weight(type(self).__name__, weight)
        self.ignore_index = _ignore_index(type(self).__name__, ignore_index)

    def _options(self):
        return dict(weight=self.weight, ignore_index=self.ignore_index,
                    reduction=self.reduction)

    def _check_input(self, x):
        x = np.asarray(x)
        if x.ndim < 2 or x.dtype.kind != "f" or 0 in x.shape:
            raise ValueError(
                f"{self!r}: expected float {self._what} of shape (N, K) or (N, C, d1, ...) "
                f"with N, K >= 1, got shape {x.shape} dtype {x.dtype} (unbatched (C,) "
                f"{self._what} are not supported: add a batch axis)"
            )
        if self.weight is not None and self.weight.size != x.shape[1]:
            raise ValueError(f"{self!r}: weight has {self.weight.size} entries but the "
                             f"{self._what} have {x.shape[1]} classes (axis 1)")
        return x if x.dtype.isnative else x.astype(x.dtype.newbyteorder("="))

    def _check_labels(self, x, labels):
        expected = (x.shape[0],) + x.shape[2:]
        if labels.shape != expected or labels.dtype.kind not in "iu":
            raise ValueError(
                f"{self!r}: expected integer labels of shape {expected}{self._or_soft(x)}, got "
                f"shape {labels.shape} dtype {labels.dtype}"
            )
        k = x.shape[1]
        # The min/max test is the cheap common case; the mask only when it fails.
        if labels.min() >= 0 and labels.max() < k:
            self._any_ignored = 0 <= self.ignore_index < k and bool(
                (labels == self.ignore_index).any())
            return labels
        bad = ((labels < 0) | (labels >= k)) & (labels != self.ignore_index)
        if bad.any():
            raise ValueError(f"{self!r}: labels must be in [0, {k}) (or ignore_index="
                             f"{self.ignore_index}), got label {labels[bad][0]}")
        self._any_ignored = True
        return labels

    def _or_soft(self, x):
        return ""

    def _weight(self, dtype):
        return None if self.weight is None else self.weight.astype(dtype)


class SoftmaxCrossEntropy(_ClassIndexLoss):
    """Softmax cross-entropy of logits (torch.nn.CrossEntropyLoss, same options).

    ``forward(logits, target)``: ``logits (N, C)`` or ``(N, C, d1, ...)`` floats;
    ``target`` class indices (ints of shape ``(N,)`` / ``(N, d1, ...)``) or class
    probabilities (floats of the logits' shape). ``weight (C,)`` class weights (the
    weighted mean divides by the sum of the targets' weights for class indices, by the
    number of positions for probabilities, as torch); ``ignore_index`` (-100) marks
    positions that count for nothing (with "mean" over nothing the loss is NaN, as
    torch's); ``label_smoothing`` in [0, 1]. Stable through log-sum-exp.

    The defaults (the trainer's) take the original fast path: the mean over ``(N, K)``
    logits, gradient ``(softmax - onehot) / N`` in the logits' dtype.
    """

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(weight, ignore_index, reduction)
        name = type(self).__name__
        if isinstance(label_smoothing, (bool, np.bool_)) or not isinstance(
                label_smoothing, (int, float, np.number)) or not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"{name}: label_smoothing must be a number in [0, 1], got "
                             f"{label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def _options(self):
        return dict(super()._options(), label_smoothing=self.label_smoothing)

    _defaults = dict(weight=None, ignore_index=-100, label_smoothing=0.0)

    def _or_soft(self, x):
        return f" (or float class probabilities of the logits' shape {x.shape})"

    def forward(self, logits, labels):
        logits = self._check_input(logits)
        labels = np.asarray(labels)
        if labels.dtype.kind == "f" and labels.shape == logits.shape:
            target = labels.astype(logits.dtype, copy=False)
            out_shape = (logits.shape[0],) + logits.shape[2:]
        else:
            target = self._check_labels(logits, labels)
            out_shape = labels.shape
            if (logits.ndim == 2 and self.weight is None and self.label_smoothing == 0.0
                    and self.reduction == "mean" and not self._any_ignored):
                loss, cache = F.softmax_cross_entropy_forward(logits, labels)
                return self._finish(loss, ("fast", cache), out_shape)
        loss, cache = FL.cross_entropy_forward(logits, target, self._weight(logits.dtype),
                                               self.ignore_index, self.reduction,
                                               self.label_smoothing)
        return self._finish(loss, ("general", cache), out_shape)

    def backward(self, dloss=1.0):
        dloss = self._check_dloss(dloss)
        kind, cache = self._cache
        if kind == "fast":
            return F.softmax_cross_entropy_backward(cache, dloss)
        return FL.cross_entropy_backward(cache, dloss)

    def reference(self):
        """``(forward(logits, target) -> loss, backward(logits, target, dloss) -> dlogits)``
        from :mod:`im2col_net.reference` with this loss's options."""
        opts = dict(weight=self.weight, ignore_index=self.ignore_index,
                    reduction=self.reduction, label_smoothing=self.label_smoothing)
        return (lambda x, t: ref.cross_entropy_forward(x, t, **opts),
                lambda x, t, d=1.0: ref.cross_entropy_backward(x, t, d, **opts))


class CrossEntropyLoss(SoftmaxCrossEntropy):
    """torch's name for :class:`SoftmaxCrossEntropy` (the same class under that name)."""


class NLLLoss(_ClassIndexLoss):
    """Negative log-likelihood of log-probabilities (torch.nn.NLLLoss): ``forward(logp,
    target)`` with ``logp (N, C)`` or ``(N, C, d1, ...)`` (e.g. a LogSoftmax output) and
    class indices; ``weight``, ``ignore_index`` (-100) and ``reduction`` as torch."""

    _what = "log-probabilities"
    _defaults = dict(weight=None, ignore_index=-100)

    def forward(self, logp, target):
        logp = self._check_input(logp)
        target = self._check_labels(logp, np.asarray(target))
        loss, cache = FL.nll_forward(logp, target, self._weight(logp.dtype), self.ignore_index,
                                     self.reduction)
        return self._finish(loss, cache, target.shape)

    def backward(self, dloss=1.0):
        return FL.nll_backward(self._cache, self._check_dloss(dloss))

    def reference(self):
        """Reference ``(forward, backward)`` as :meth:`SoftmaxCrossEntropy.reference`."""
        opts = dict(weight=self.weight, ignore_index=self.ignore_index,
                    reduction=self.reduction)
        return (lambda x, t: ref.nll_forward(x, t, **opts),
                lambda x, t, d=1.0: ref.nll_backward(x, t, d, **opts))


class MSELoss(_Loss):
    """Mean squared error (torch.nn.MSELoss): ``forward(input, target)`` of the same shape
    (torch broadcasts with a warning; here a different shape is refused)."""

    def forward(self, x, target):
        x = self._float_input(x)
        target = self._same_shape_target(x, target)
        loss, cache = FL.mse_forward(x, target, self.reduction)
        return self._finish(loss, cache, x.shape)

    def backward(self, dloss=1.0):
        return FL.mse_backward(self._cache, self._check_dloss(dloss))

    def reference(self):
        """Reference ``(forward, backward)``."""
        return (lambda x, t: ref.mse_forward(x, t, self.reduction),
                lambda x, t, d=1.0: ref.mse_backward(x, t, d, self.reduction))


def _broadcast_weight(owner, name, value, shape, dtype):
    """``value`` as an array of ``dtype`` that broadcasts to ``shape`` without growing it."""
    w = np.asarray(value, dtype=dtype)
    try:
        grown = np.broadcast_shapes(w.shape, shape)
    except ValueError:
        grown = None
    if grown != tuple(shape):
        raise ValueError(f"{owner}: {name} of shape {w.shape} does not broadcast to the input's "
                         f"shape {tuple(shape)}")
    return w


class BCEWithLogitsLoss(_Loss):
    """Sigmoid + binary cross-entropy in one stable step (torch.nn.BCEWithLogitsLoss).

    ``forward(logits, target)``: targets in [0, 1] of the logits' shape. ``weight``
    rescales each element's loss; ``pos_weight`` the positive term (``(C,)`` broadcasts
    along the last axis, as torch); both must broadcast to the input's shape.
    """

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        for name, value in (("weight", weight), ("pos_weight", pos_weight)):
            if value is not None:
                array = np.array(value, dtype=np.float64)
                if not np.all(np.isfinite(array)):
                    raise ValueError(f"BCEWithLogitsLoss: {name} must be finite, got {value!r}")
        self.weight = None if weight is None else np.array(weight, dtype=np.float64)
        self.pos_weight = None if pos_weight is None else np.array(pos_weight, dtype=np.float64)

    _defaults = dict(weight=None, pos_weight=None)

    def _options(self):
        return dict(weight=self.weight, reduction=self.reduction, pos_weight=self.pos_weight)

    def _extras(self, x):
        name = repr(self)
        return [None if v is None else _broadcast_weight(name, key, v, x.shape, x.dtype)
                for key, v in (("weight", self.weight), ("pos_weight", self.pos_weight))]

    def forward(self, logits, target):
        x = self._float_input(logits, "logits")
        target = self._same_shape_target(x, target)
        weight, pos_weight = self._extras(x)
        loss, cache = FL.bce_with_logits_forward(x, target, weight, pos_weight, self.reduction)
        return self._finish(loss, cache, x.shape)

    def backward(self, dloss=1.0):
        return FL.bce_with_logits_backward(self._cache, self._check_dloss(dloss))

    def reference(self):
        """Reference ``(forward, backward)``."""
        opts = dict(weight=self.weight, pos_weight=self.pos_weight, reduction=self.reduction)
        return (lambda x, t: ref.bce_with_logits_forward(x, t, **opts),
                lambda x, t, d=1.0: ref.bce_with_logits_backward(x, t, d, **opts))
