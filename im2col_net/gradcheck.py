"""Finite-difference gradient checking for layers and plain functions.

:func:`gradcheck` compares the analytic gradients of a target with central differences
of the scalar ``L = sum(y * dy)``, where ``y`` is the target's output and ``dy`` a fixed
random array (seeded). The gradient of ``L`` with respect to an input or a parameter
is exactly what ``backward(dy)`` must return, so a single scalar tests the whole
vector-Jacobian product.

Everything is computed in float64: a float32 layer is deep-copied and converted, float32
inputs are copied; the caller's layer and arrays are never modified. Randomness inside
the forward pass (Dropout in training mode) is handled by restoring every random
generator reachable from the target to its starting state before each forward call, so
all evaluations see the same dropout mask.

At a kink (ReLU or LeakyReLU at 0, two max-pool candidates within ``eps`` of each other)
central differences average two different one-sided slopes and disagree with any
analytic gradient. Such elements are recognised by their one-sided differences
disagreeing; when the analytic value lies between (or on) the two one-sided slopes the
element is excused rather than failed and a :class:`GradcheckWarning` says so.

Example::

    from im2col_net import Conv2D
    from im2col_net.gradcheck import gradcheck

    report = gradcheck(Conv2D(3, 8, 3, padding=1), x)   # x: (N, 3, H, W)
    print(report)                                       # one table row per tensor
    assert report.ok

Import from this module (``from im2col_net.gradcheck import ...``): the package
re-exports the function :func:`gradcheck`, which shadows this module's name as an
attribute of ``im2col_net``.
"""

from __future__ import annotations

import copy
import functools
import types
import warnings
from dataclasses import dataclass, field

import numpy as np

from .functional.pool import call_geometry
from .layers import LeakyReLU, MaxPool2D, ReLU
from .layers.base import observe_inputs
from .lowering import pad, window_view

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_DIRECTIONS",
    "DEFAULT_EPS",
    "DEFAULT_RTOL",
    "MODES",
    "GradcheckError",
    "GradcheckReport",
    "GradcheckRow",
    "GradcheckWarning",
    "gradcheck",
]

MODES = ("full", "fast")

# Defaults of :func:`gradcheck`, shared with the command line.
DEFAULT_EPS = 1e-6
DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-3
DEFAULT_DIRECTIONS = 4

# How many excused kink elements are spelled out in the warning.
_KINK_EXAMPLES = 5


class GradcheckWarning(UserWarning):
    """The check could not be trusted everywhere; the reasons are also in ``report.notes``.

    Mostly: some elements lie within ``eps`` of a kink, where finite differences are
    unreliable; they were excused instead of being reported as failures (move the inputs
    away from the kink, or lower ``eps``, to check them). Also issued when a function
    returns a lower precision than the float64 inputs it was given.
    """


class GradcheckError(AssertionError):
    """Raised by ``gradcheck(..., raise_on_failure=True)`` when a gradient is wrong.

    A subclass of ``AssertionError`` so that it reads as a failed assertion in test
    suites; the full :class:`GradcheckReport` is in ``.report`` and in the message.
    """

    def __init__(self, report: GradcheckReport):
        super().__init__(str(report))
        self.report = report

    def __reduce__(self):
        return type(self), (self.report,)


@dataclass(frozen=True)
class GradcheckRow:
    """The comparison for one tensor (an input or a parameter).

    ``checked`` counts the elements (``mode="full"``) or random directions (``"fast"``)
    compared. The error statistics, ``worst_index`` and its ``numeric``/``analytic``
    values cover the elements that were not excused as kinks (``kinks`` of them were);
    ``worst_index`` is None when nothing was left to compare. In ``"fast"`` mode an
    "element" is a direction: ``worst_index`` is ``(k,)`` and ``numeric``/``analytic`` are
    directional derivatives.
    """

    name: str
    shape: tuple[int, ...]
    checked: int
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple[int, ...] | None
    numeric: float
    analytic: float
    passed: bool
    kinks: int = 0


@dataclass
class GradcheckReport:
    """Result of :func:`gradcheck`: one :class:`GradcheckRow` per checked tensor.

    ``ok`` is True when every row passed. ``notes`` holds the kink explanations that
    were also issued as a :class:`GradcheckWarning`. ``str(report)`` is an aligned table.
    """

    target: str
    mode: str
    eps: float
    atol: float
    rtol: float
    source_dtype: str
    rows: list[GradcheckRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(row.passed for row in self.rows)

    @property
    def failed(self) -> list[GradcheckRow]:
        return [row for row in self.rows if not row.passed]

    def row(self, name: str) -> GradcheckRow:
        """The row of the tensor called ``name`` (``"input 0"``, ``"weight"``, ``"0.bias"``)."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"GradcheckReport: no tensor named {name!r}; have {self.names}")

    @property
    def names(self) -> list[str]:
        return [row.name for row in self.rows]

    def __str__(self) -> str:
        unit = "direction" if self.mode == "fast" else "element"
        header = ("tensor", "shape", f"{unit}s", "max abs err", "max rel err",
                  f"worst {unit}", "numeric", "analytic", "kinks", "result")
        lines = [tuple(_row_cells(row)) for row in self.rows]
        widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]
        numeric_columns = {2, 3, 4, 6, 7, 8}

        def fmt(cells):
            parts = [c.rjust(w) if i in numeric_columns else c.ljust(w)
                     for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
            return "  ".join(parts).rstrip()

        checked_in = "float64" if self.source_dtype == "float64" else (
            f"float64 (target {self.source_dtype})")
        out = [
            f"gradcheck {self.target}",
            f"mode={self.mode} eps={self.eps:g} atol={self.atol:g} rtol={self.rtol:g} "
            f"checked in {checked_in}",
            fmt(header),
            fmt(tuple("-" * w for w in widths)),
        ]
        out.extend(fmt(cells) for cells in lines)
        passed = sum(row.passed for row in self.rows)
        verdict = "PASSED" if self.ok else "FAILED"
        out.append(f"{verdict}: {passed}/{len(self.rows)} tensors within tolerance")
        out.extend(f"note: {note}" for note in self.notes)
        return "\n".join(out)


def _row_cells(row: GradcheckRow):
    has_worst = row.worst_index is not None
    yield row.name
    yield str(tuple(row.shape))
    yield str(row.checked)
    yield f"{row.max_abs_error:.3e}"
    yield f"{row.max_rel_error:.3e}"
    yield str(row.worst_index) if has_worst else "-"
    yield f"{row.numeric:.6g}" if has_worst else "-"
    yield f"{row.analytic:.6g}" if has_worst else "-"
    yield str(row.kinks)
    yield "ok" if row.passed else "FAIL"


# -- random state -----------------------------------------------------------------------

_OPAQUE = (str, bytes, bytearray, int, float, complex, bool, type(None), np.ndarray,
           np.generic, type, types.ModuleType, types.BuiltinFunctionType)


def _find_generators(roots, max_depth: int = 8):
    """Every ``numpy.random.Generator``/``RandomState`` reachable from ``roots``.

    Follows attributes, containers, bound methods, closures and ``functools.partial``;
    arrays and other leaves are not entered.
    """
    found, seen = [], set()
    stack = [(root, 0) for root in roots]
    while stack:
        obj, depth = stack.pop()
        if id(obj) in seen or depth > max_depth:
            continue
        seen.add(id(obj))
        if isinstance(obj, (np.random.Generator, np.random.RandomState)):
            found.append(obj)
            continue
        if isinstance(obj, _OPAQUE):
            continue
        if isinstance(obj, dict):
            children = list(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            children = list(obj)
        elif isinstance(obj, functools.partial):
            children = [obj.func, *obj.args, *obj.keywords.values()]
        elif isinstance(obj, types.MethodType):
            children = [obj.__self__, obj.__func__]
        elif isinstance(obj, types.FunctionType):
            children = []
            for cell in obj.__closure__ or ():
                try:
                    children.append(cell.cell_contents)
                except ValueError:  # an empty cell
                    pass
        elif hasattr(obj, "__dict__"):
            children = list(vars(obj).values())
        else:
            continue
        stack.extend((child, depth + 1) for child in children)
    return found


class _RandomStates:
    """Snapshot of the generators a forward pass may draw from (and numpy's global one)."""

    def __init__(self, roots):
        self._saved = []
        for gen in _find_generators(roots):
            if isinstance(gen, np.random.Generator):
                self._saved.append((gen, copy.deepcopy(gen.bit_generator.state)))
            else:
                self._saved.append((gen, gen.get_state()))
        self._global = np.random.get_state()

    def restore(self):
        for gen, state in self._saved:
            if isinstance(gen, np.random.Generator):
                gen.bit_generator.state = state
            else:
                gen.set_state(state)
        np.random.set_state(self._global)


# -- what is checked ------------------------------------------------------------------


def _is_layer(obj) -> bool:
    return callable(getattr(obj, "forward", None)) and callable(getattr(obj, "backward", None))


def _one_line(text: str, limit: int = 100) -> str:
    text = " ".join(part.strip() for part in text.splitlines())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _layer_parameters(layer):
    if callable(getattr(layer, "named_parameters", None)):
        return list(layer.named_parameters())
    return list(getattr(layer, "params", {}).items())


class _LayerTarget:
    """A layer checked through a float64 deep copy: input 0 and every parameter."""

    def __init__(self, layer, inputs):
        if len(inputs) != 1:
            raise ValueError(
                f"gradcheck: a layer takes exactly one input array, got {len(inputs)} inputs"
            )
        x = np.asarray(inputs[0])
        if x.dtype.kind != "f":
            raise ValueError(
                f"gradcheck: the input of {_one_line(repr(layer))} must be a floating-point "
                f"array, got dtype {x.dtype}"
            )
        params = _layer_parameters(layer)
        self.source_dtype = (params[0][1].dtype if params else x.dtype).name
        self.description = _one_line(repr(layer))
        self.layer = _float64_copy(layer)
        self.x = np.array(x, dtype=np.float64)
        self.params = _layer_parameters(self.layer)
        self.tensors = [("input 0", self.x), *self.params]
        self.random_states = _RandomStates([self.layer])

    def forward(self):
        self.random_states.restore()
        return self.layer.forward(self.x)

    def gradients(self, dy):
        dx = self.layer.backward(dy)
        grads = getattr(self.layer, "grads", {})
        out = [dx]
        for name, _ in self.params:
            if name not in grads:
                raise ValueError(
                    f"gradcheck: {self.description} has no gradient for parameter {name!r} "
                    f"after backward (grads holds {sorted(grads)})"
                )
            out.append(grads[name])
        return out


def _float64_copy(layer):
    work = copy.deepcopy(layer)
    if callable(getattr(work, "astype", None)):
        work.astype(np.float64)
    else:
        params = getattr(work, "params", {})
        for name in list(params):
            params[name] = np.array(params[name], dtype=np.float64)
    for name, value in _layer_parameters(work):
        if not isinstance(value, np.ndarray) or value.dtype != np.float64:
            raise ValueError(
                f"gradcheck: parameter {name!r} of {_one_line(repr(layer))} could not be "
                f"converted to a float64 array (got {type(value).__name__} "
                f"{getattr(value, 'dtype', '')})"
            )
    return work


class _FunctionTarget:
    """``f(*inputs)`` with a user ``backward(dy, *inputs)``; floating ndarrays are checked."""

    def __init__(self, function, backward, inputs):
        if not callable(function) or not callable(backward):
            raise ValueError(
                f"gradcheck: with backward= the target must be a callable f(*inputs) and "
                f"backward a callable (dy, *inputs), got {type(function).__name__} and "
                f"{type(backward).__name__}"
            )
        self.function, self.backward = function, backward
        self.description = getattr(function, "__qualname__", None) or _one_line(repr(function))
        self.args = list(inputs)
        self.checked = []
        dtypes = []
        for i, value in enumerate(inputs):
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                dtypes.append(value.dtype)
                self.args[i] = np.array(value, dtype=np.float64)
                self.checked.append(i)
        if not self.checked:
            raise ValueError(
                "gradcheck: no floating-point ndarray among the inputs of "
                f"{self.description}; there is nothing to check"
            )
        self.source_dtype = np.result_type(*dtypes).name
        self.tensors = [(f"input {i}", self.args[i]) for i in self.checked]
        self.random_states = _RandomStates([function])

    def forward(self):
        self.random_states.restore()
        return self.function(*self.args)

    def gradients(self, dy):
        result = self.backward(dy, *self.args)
        if not isinstance(result, (tuple, list)):
            if len(self.args) != 1:
                raise ValueError(
                    f"gradcheck: backward of {self.description} must return a tuple of "
                    f"{len(self.args)} gradients (None for inputs without one), got "
                    f"{type(result).__name__}"
                )
            result = (result,)
        if len(result) != len(self.args):
            raise ValueError(
                f"gradcheck: backward of {self.description} returned {len(result)} gradients "
                f"for {len(self.args)} inputs"
            )
        return [result[i] for i in self.checked]


# -- the check ------------------------------------------------------------------------


def gradcheck(target, *inputs, eps=DEFAULT_EPS, atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL,
              mode="full", seed=0, raise_on_failure=False, backward=None, dy=None,
              directions=DEFAULT_DIRECTIONS) -> GradcheckReport:
    """Check analytic gradients against central finite differences, in float64.

    ``target`` is either

    * a layer (anything with ``forward(x) -> y``, ``backward(dy) -> dx`` and ``params`` /
      ``grads`` dicts, such as every :class:`~im2col_net.Layer` and
      :class:`~im2col_net.Sequential`), called as ``gradcheck(layer, x)``. The input
      gradient is reported as ``"input 0"`` (skipped when ``backward`` returns None, e.g.
      ``Conv2D.compute_input_grad = False``) and every parameter under its name from
      ``named_parameters()`` (``"weight"``, ``"0.bias"``). The layer is checked in the mode
      it is in (train or eval), through a float64 deep copy; or
    * a plain function ``f(*inputs) -> y`` together with ``backward=``, a callable
      ``backward(dy, *inputs) -> grads`` returning one gradient per input (a tuple or list
      with ``len(inputs)`` entries; a bare array is accepted for a single input), each with
      the shape of its input, or None for an input without a gradient. ``backward`` is
      called once, right after ``f`` has been called with the same arguments, so it may
      rely on state cached by that call. Only floating-point ``ndarray`` inputs are
      checked (``"input <i>"``, as float64 copies); any other argument (integer labels,
      numbers, options) is passed through unchanged and its gradient entry is ignored.

    The checked scalar is ``L = sum(y * dy)`` with ``dy`` standard normal drawn from
    ``numpy.random.default_rng(seed)`` in ``y``'s shape (or the given ``dy``).

    ``mode="full"`` perturbs every element by ``+-eps`` (2 forward calls per element).
    ``mode="fast"`` draws ``directions`` standard-normal directions ``v`` per tensor (from
    ``default_rng([seed, 1])``) and compares ``(L(t + eps v) - L(t - eps v)) / 2 eps``
    with ``<grad, v>``: cheap for big tensors and still catches a single wrong element.

    An element (or direction) passes when ``|numeric - analytic| <= atol + rtol *
    |numeric|``; a NaN never passes. The defaults (``eps=1e-6``, ``atol=1e-5``,
    ``rtol=1e-3``) suit float64 central differences: truncation error is ``O(eps^2)`` and
    rounding error about ``1e-16 * |L| / eps``. ``max_rel_error`` is ``|numeric -
    analytic| / max(|numeric|, |analytic|, atol)`` (the floor keeps near-zero gradients
    from reporting noise as 100 % errors). Elements within ``eps`` of a kink are excused
    with a :class:`GradcheckWarning` when the analytic value lies between the two
    one-sided differences (see the module docstring).

    Random forward passes: before every forward call the state of every
    ``numpy.random.Generator`` / ``RandomState`` reachable from the target (attributes,
    sub-layers, closures, bound methods) and numpy's global state are restored, so
    Dropout in training mode sees one fixed mask. The caller's generators end up as they
    started. Other state a forward pass mutates must not change its output.

    Returns a :class:`GradcheckReport`; with ``raise_on_failure=True`` a failing report
    raises :class:`GradcheckError` (an ``AssertionError`` carrying ``.report``). Bad
    arguments raise ``ValueError``.
    """
    _check_options(eps, atol, rtol, mode, seed, directions)
    if backward is not None:
        if _is_layer(target):
            raise ValueError(
                f"gradcheck: backward= is for plain functions; {_one_line(repr(target))} is "
                f"a layer and its own backward is what gets checked"
            )
        problem = _FunctionTarget(target, backward, inputs)
    elif _is_layer(target):
        problem = _LayerTarget(target, inputs)
    elif callable(target):
        raise ValueError(
            f"gradcheck: {getattr(target, '__qualname__', repr(target))} is a plain function; "
            f"pass backward=(dy, *inputs) -> input gradients"
        )
    else:
        raise ValueError(
            f"gradcheck: target must be a layer (forward/backward) or a function with "
            f"backward=, got {type(target).__name__}"
        )
    try:
        report = _run_check(problem, eps, atol, rtol, mode, seed, dy, directions)
    finally:
        problem.random_states.restore()
    if report.notes:
        warnings.warn("\n".join(report.notes), GradcheckWarning, stacklevel=2)
    if raise_on_failure and not report.ok:
        raise GradcheckError(report)
    return report


def _check_options(eps, atol, rtol, mode, seed, directions):
    if mode not in MODES:
        raise ValueError(f"gradcheck: mode must be one of {MODES}, got {mode!r}")
    if not (isinstance(eps, (int, float, np.floating)) and np.isfinite(eps) and eps > 0):
        raise ValueError(f"gradcheck: eps must be a positive finite number, got {eps!r}")
    for name, value in (("atol", atol), ("rtol", rtol)):
        if not (isinstance(value, (int, float, np.floating)) and np.isfinite(value)
                and value >= 0):
            raise ValueError(f"gradcheck: {name} must be a finite number >= 0, got {value!r}")
    for name, value in (("seed", seed), ("directions", directions)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"gradcheck: {name} must be an int, got {value!r}")
    if seed < 0:
        raise ValueError(f"gradcheck: seed must be >= 0, got {seed}")
    if directions < 1:
        raise ValueError(f"gradcheck: directions must be >= 1, got {directions}")


def _output(y, problem) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype.kind != "f":
        raise ValueError(
            f"gradcheck: {problem.description} must return a floating-point array, "
            f"got dtype {y.dtype}"
        )
    return y


def _run_check(problem, eps, atol, rtol, mode, seed, dy, directions) -> GradcheckReport:
    y = _output(problem.forward(), problem)
    if dy is None:
        dy = np.random.default_rng(seed).standard_normal(y.shape)
    else:
        dy = np.array(dy, dtype=np.float64)
        if dy.shape != y.shape:
            raise ValueError(
                f"gradcheck: dy must have the output's shape {y.shape}, got {dy.shape}"
            )
    notes = []
    if y.dtype != np.float64:
        notes.append(
            f"{problem.description} returned {y.dtype} from float64 inputs; finite "
            f"differences lose precision (compute in the inputs' dtype)"
        )

    def loss() -> float:
        out = _output(problem.forward(), problem)
        if out.shape != dy.shape:
            raise ValueError(
                f"gradcheck: {problem.description} changed its output shape from {dy.shape} "
                f"to {out.shape} between calls"
            )
        return float(np.dot(out.astype(np.float64, copy=False).ravel(), dy.ravel()))

    base = float(np.dot(y.astype(np.float64, copy=False).ravel(), dy.ravel()))
    grads = problem.gradients(dy.copy())
    analytic = []
    for (name, tensor), grad in zip(problem.tensors, grads, strict=True):
        if grad is None:
            continue
        grad = np.asarray(grad)
        if grad.shape != tensor.shape:
            raise ValueError(
                f"gradcheck: the gradient of {name!r} of {problem.description} has shape "
                f"{grad.shape}, expected {tensor.shape}"
            )
        analytic.append((name, tensor, np.array(grad, dtype=np.float64)))

    rng = np.random.default_rng([seed, 1])
    report = GradcheckReport(problem.description, mode, float(eps), float(atol), float(rtol),
                             problem.source_dtype)
    kink_examples = []
    for name, tensor, grad in analytic:
        if mode == "full":
            probe = _full_differences(tensor, grad, loss, eps)
        else:
            probe = _directional_differences(tensor, grad, loss, eps, rng, directions)
        row, examples = _compare(name, tensor.shape, probe, base, atol, rtol, mode)
        report.rows.append(row)
        kink_examples.extend(examples)
    if kink_examples:
        notes.append(_kink_note(kink_examples, mode, eps))
        if isinstance(problem, _LayerTarget):
            notes.extend(_builtin_kink_hints(problem, eps))
    report.notes = notes
    return report


@dataclass
class _Differences:
    """Per element (or direction): analytic value, L at +step and -step, step sizes."""

    analytic: np.ndarray
    plus: np.ndarray
    minus: np.ndarray
    step_plus: np.ndarray
    step_minus: np.ndarray


def _full_differences(tensor, grad, loss, eps) -> _Differences:
    size = tensor.size
    plus, minus = np.empty(size), np.empty(size)
    step_plus, step_minus = np.empty(size), np.empty(size)
    for k in range(size):
        index = np.unravel_index(k, tensor.shape)
        original = tensor[index]
        tensor[index] = original + eps
        # The step actually taken, after rounding to the float64 grid.
        step_plus[k] = tensor[index] - original
        plus[k] = loss()
        tensor[index] = original - eps
        step_minus[k] = original - tensor[index]
        minus[k] = loss()
        tensor[index] = original
    return _Differences(grad.ravel(), plus, minus, step_plus, step_minus)


def _directional_differences(tensor, grad, loss, eps, rng, directions) -> _Differences:
    original = tensor.copy()
    plus, minus, projected = np.empty(directions), np.empty(directions), np.empty(directions)
    try:
        for k in range(directions):
            v = rng.standard_normal(tensor.shape)
            projected[k] = float(np.dot(grad.ravel(), v.ravel()))
            np.copyto(tensor, original + eps * v)
            plus[k] = loss()
            np.copyto(tensor, original - eps * v)
            minus[k] = loss()
    finally:
        np.copyto(tensor, original)
    steps = np.full(directions, float(eps))
    return _Differences(projected, plus, minus, steps, steps)


def _compare(name, shape, d: _Differences, base, atol, rtol, mode):
    """Build the row for one tensor; return it and the excused kink elements."""
    numeric = (d.plus - d.minus) / (d.step_plus + d.step_minus)
    analytic = d.analytic
    with np.errstate(divide="ignore", invalid="ignore"):
        error = np.abs(numeric - analytic)
        allowed = atol + rtol * np.abs(numeric)
        failing = ~(error <= allowed)
        # One-sided slopes: at a kink they disagree and bracket every valid (sub)gradient.
        right = (d.plus - base) / d.step_plus
        left = (base - d.minus) / d.step_minus
        low, high = np.minimum(left, right), np.maximum(left, right)
        side_tol = atol + rtol * np.maximum(np.abs(left), np.abs(right))
        kink = (failing & (high - low > side_tol)
                & (analytic >= low - side_tol) & (analytic <= high + side_tol))
        counted = ~kink
        ratio = np.where(error == 0, 0.0, error / allowed)
        ratio = np.where(np.isnan(ratio), np.inf, ratio)
        relative = np.where(
            error == 0, 0.0, error / np.maximum(np.maximum(np.abs(numeric), np.abs(analytic)), atol)
        )
        relative = np.where(np.isnan(relative), np.inf, relative)
    unravel = (lambda k: (int(k),)) if mode == "fast" else (
        lambda k: tuple(int(i) for i in np.unravel_index(k, shape)))
    if counted.any():
        candidates = np.flatnonzero(counted)
        worst = int(candidates[np.argmax(ratio[candidates])])
        abs_err = error[counted]
        row_stats = dict(
            max_abs_error=float(np.inf if np.isnan(abs_err).any() else abs_err.max()),
            max_rel_error=float(relative[counted].max()),
            worst_index=unravel(worst),
            numeric=float(numeric[worst]),
            analytic=float(analytic[worst]),
        )
    else:
        row_stats = dict(max_abs_error=0.0, max_rel_error=0.0, worst_index=None,
                         numeric=float("nan"), analytic=float("nan"))
    row = GradcheckRow(
        name=name, shape=tuple(int(s) for s in shape), checked=int(numeric.size),
        passed=not bool((failing & counted).any()), kinks=int(kink.sum()), **row_stats,
    )
    examples = [(name, unravel(k), float(left[k]), float(right[k]), float(analytic[k]))
                for k in np.flatnonzero(kink)]
    return row, examples


def _kink_note(examples, mode, eps) -> str:
    unit = "direction(s)" if mode == "fast" else "element(s)"
    shown = "; ".join(
        f"{name}{list(index)}: one-sided slopes {left:.6g} / {right:.6g}, analytic {value:.6g}"
        for name, index, left, right, value in examples[:_KINK_EXAMPLES]
    )
    more = f" (and {len(examples) - _KINK_EXAMPLES} more)" if len(examples) > _KINK_EXAMPLES else ""
    return (
        f"{len(examples)} {unit} lie within eps={eps:g} of a kink (their one-sided "
        f"differences disagree) and were excused, not failed: {shown}{more}"
    )


# -- hints for the built-in kinked layers ----------------------------------------------------


def _walk_layers(layer, path=""):
    yield path, layer
    children = layer.children() if callable(getattr(layer, "children", None)) else []
    for i, child in enumerate(children):
        yield from _walk_layers(child, f"{path}.{i}" if path else str(i))


def _builtin_kink_hints(problem: _LayerTarget, eps) -> list[str]:
    """Name the built-in ReLU / LeakyReLU / MaxPool2D layers that see near-kink inputs."""
    seen: dict[str, tuple] = {}
    watched = [(path, layer) for path, layer in _walk_layers(problem.layer)
               if isinstance(layer, (ReLU, LeakyReLU, MaxPool2D))]

    path_of = {id(layer): path for path, layer in watched}

    def record(layer, x):
        path = path_of.get(id(layer))
        if path is not None:
            seen[path] = (layer, np.array(x, dtype=np.float64))

    if path_of.get(id(problem.layer)) == "":      # the target itself is a kinked layer
        record(problem.layer, problem.x)
    with observe_inputs(record):
        problem.forward()
    hints = []
    for path, (layer, x) in seen.items():
        where = f"{type(layer).__name__} at {path!r}" if path else type(layer).__name__
        if isinstance(layer, MaxPool2D):
            count = _max_pool_near_ties(layer, x, eps)
            if count:
                hints.append(f"likely cause: {where} has {count} window(s) whose two largest "
                             f"inputs are within 2*eps of each other")
        else:
            count = int(np.count_nonzero(np.abs(x) <= eps))
            if count:
                hints.append(f"likely cause: {where} sees {count} input(s) within eps of 0")
    return hints


def _max_pool_near_ties(layer, x, eps) -> int:
    x = x[None] if x.ndim == 3 else x  # an unbatched image
    n, c, h, w = x.shape
    geometry = call_geometry(layer.geometry, layer.ceil_mode, h, w)
    kh, kw = geometry.kernel
    if kh * kw < 2:
        return 0
    out_h, out_w = geometry.checked_output_size(h, w)
    padded = pad(x.transpose(0, 2, 3, 1), geometry.padding, "zeros", fill=-np.inf)
    windows = window_view(padded, geometry, out_h, out_w)       # (N, Ho, Wo, kh, kw, C)
    windows = np.moveaxis(windows, 5, 3).reshape(n, out_h, out_w, c, kh * kw)
    top_two = np.partition(windows, kh * kw - 2, axis=-1)[..., -2:]
    with np.errstate(invalid="ignore"):
        gap = top_two[..., 1] - top_two[..., 0]
    return int(np.count_nonzero(gap <= 2 * eps))
