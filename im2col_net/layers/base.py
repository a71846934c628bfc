"""The layer protocol shared by every layer and container.

A layer owns its parameters in ``params`` (name -> ndarray) and, after ``backward``,
their gradients in ``grads`` (same names and shapes). ``forward(x) -> y`` caches what
``backward(dy) -> dx`` needs; ``backward`` never modifies ``dy``. Optimizers update the
arrays in ``params`` in place, so the dicts stay valid.
"""

from __future__ import annotations

import contextlib
import contextvars
import types

import numpy as np

__all__ = ["Layer", "make_rng", "he_normal", "xavier_uniform", "check_float_input", "as_native",
           "check_float_dtype", "check_count"]
__all__ += ["batched_inputs", "unbatched_allowed"]
__all__ += ["deferred_init", "init_deferred", "placeholder", "is_placeholder", "init_zeros",
            "init_ones", "uniform_init", "check_input_shape"]
__all__ += ["observe_inputs", "observing_inputs", "forward_child", "register_summarizer"]
__all__ += ["no_grad", "grad_enabled"]

# No layer dimension comes near this; larger values are typos and would otherwise fail
# inside NumPy with a message naming no layer.
MAX_COUNT = 2 ** 31 - 1


def check_count(owner: str, name: str, value) -> int:
    """``int(value)`` for a positive int (not bool) up to :data:`MAX_COUNT`; else a
    ``ValueError`` naming ``owner`` and the argument."""
    if (not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_))
            or not 1 <= value <= MAX_COUNT):
        raise ValueError(f"{owner}: {name} must be a positive int (at most {MAX_COUNT}), "
                         f"got {value!r}")
    return int(value)


def make_rng(rng, *, owner: str = "") -> np.random.Generator:
    """Accept a ``numpy.random.Generator``, a non-negative int seed or None.

    ``owner`` (a layer name) prefixes the error message.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)
                       and rng >= 0):
        return np.random.default_rng(rng)
    where = f"{owner}: " if owner else ""
    raise ValueError(
        f"{where}rng must be a numpy.random.Generator, a non-negative int seed or None, "
        f"got {rng!r}"
    )


def check_float_dtype(owner: str, dtype) -> np.dtype:
    """Return ``np.dtype(dtype)``; raise ``ValueError`` naming ``owner`` unless floating."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.kind != "f":
        raise ValueError(f"{owner}: dtype must be a floating-point dtype, got {dtype!r}")
    return resolved


# -- the batch axis ---------------------------------------------------------------------
_BATCHED_ONLY = contextvars.ContextVar("im2col_net_batched_only", default=False)


@contextlib.contextmanager
def batched_inputs():
    """Inside this block the first axis of every input is the batch: layers that also
    take torch's unbatched inputs (Conv2D and ConvTranspose2D on ``(C, H, W)``) refuse
    them, so tools that prepend a batch axis of one (summary, ONNX export) are not
    misread as passing one unbatched image."""
    token = _BATCHED_ONLY.set(True)
    try:
        yield
    finally:
        _BATCHED_ONLY.reset(token)


def unbatched_allowed() -> bool:
    """False inside :func:`batched_inputs`."""
    return not _BATCHED_ONLY.get()


# -- building without initialising (loading a saved model, dry runs) ---------------------
_DEFER_INIT = contextvars.ContextVar("im2col_net_defer_init", default=False)


@contextlib.contextmanager
def deferred_init():
    """Inside this block new layers get placeholder parameters and buffers: read-only
    zero-stride views of a single zero with the right shape and dtype, so building costs
    no memory and draws no random numbers. The caller installs real arrays before use
    (the model loader) or only reads shapes (the summary)."""
    token = _DEFER_INIT.set(True)
    try:
        yield
    finally:
        _DEFER_INIT.reset(token)


def init_deferred() -> bool:
    """True inside :func:`deferred_init`."""
    return _DEFER_INIT.get()


def placeholder(shape, dtype) -> np.ndarray:
    """A read-only array of ``shape`` and ``dtype`` that occupies one element."""
    shape = (shape,) if isinstance(shape, (int, np.integer)) else shape
    return np.broadcast_to(np.zeros((), dtype=dtype), tuple(int(s) for s in shape))


def is_placeholder(array) -> bool:
    """True for an array made by :func:`placeholder` (or any zero-stride view)."""
    return (isinstance(array, np.ndarray) and array.ndim > 0 and not array.flags.writeable
            and all(s == 0 for s in array.strides))


def init_zeros(shape, dtype) -> np.ndarray:
    """``np.zeros`` for a parameter or buffer, a placeholder under :func:`deferred_init`."""
    return placeholder(shape, dtype) if _DEFER_INIT.get() else np.zeros(shape, dtype=dtype)


def init_ones(shape, dtype) -> np.ndarray:
    """``np.ones`` for a parameter or buffer, a placeholder under :func:`deferred_init`."""
    return placeholder(shape, dtype) if _DEFER_INIT.get() else np.ones(shape, dtype=dtype)


def uniform_init(rng: np.random.Generator, shape, bound: float, dtype) -> np.ndarray:
    """``U(-bound, bound)`` of ``dtype``, a placeholder under :func:`deferred_init`."""
    if _DEFER_INIT.get():
        return placeholder(shape, dtype)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def _ranks(ndim) -> str:
    """``4`` -> ``"4-D"``, ``(3, 4)`` -> ``"3-D or 4-D"``."""
    return " or ".join(f"{d}-D" for d in (ndim if isinstance(ndim, tuple) else (ndim,)))


def check_input_shape(layer, shape, ndim=None) -> tuple[int, ...]:
    """``shape`` as a tuple after the rank check :func:`check_float_input` makes."""
    shape = tuple(int(s) for s in shape)
    if ndim is not None and len(shape) not in (ndim if isinstance(ndim, tuple) else (ndim,)):
        raise ValueError(f"{layer!r}: expected a {_ranks(ndim)} input, got shape {shape}")
    return shape


def he_normal(rng: np.random.Generator, shape, fan_in: int, dtype) -> np.ndarray:
    """He (Kaiming) normal initialisation: ``N(0, 2 / fan_in)``, suited to ReLU."""
    if _DEFER_INIT.get():
        return placeholder(shape, dtype)
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def xavier_uniform(rng: np.random.Generator, shape, fan_in: int, fan_out: int, dtype) -> np.ndarray:
    """Glorot/Xavier uniform: ``U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))``."""
    if _DEFER_INIT.get():
        return placeholder(shape, dtype)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def as_native(a: np.ndarray) -> np.ndarray:
    """``a`` in native byte order: the same dtype otherwise (float32 stays float32), so a
    big-endian array from a file computes like any other."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def _check_float_array(owner: str, a, what: str, ndim=None, dtype=None,
                       dtype_source="parameter") -> np.ndarray:
    """The shared rank and dtype rule for forward inputs and backward gradients: a real
    floating array (native byte order, converted if needed) of ``ndim`` dimensions and,
    when given, exactly ``dtype``. ``ValueError`` naming ``owner`` otherwise."""
    a = np.asarray(a)
    if ndim is not None and a.ndim not in (ndim if isinstance(ndim, tuple) else (ndim,)):
        raise ValueError(f"{owner}: expected a {_ranks(ndim)} {what}, got shape {a.shape}")
    if a.dtype.kind != "f":
        kind = {"c": "complex", "O": "object", "b": "boolean"}.get(a.dtype.kind, "non-float")
        raise ValueError(f"{owner}: expected a real floating-point {what}, got {kind} dtype "
                         f"{a.dtype}")
    a = as_native(a)
    if dtype is not None and a.dtype != dtype:
        wanted = np.dtype(dtype).name
        raise ValueError(
            f"{owner}: {what} dtype {a.dtype.name} does not match {dtype_source} dtype "
            f"{wanted}; convert the {what} with .astype(np.{wanted})"
            + (f" or the model with model.astype(np.{a.dtype.name})"
               if dtype_source == "parameter" else "")
        )
    return a


def check_float_input(layer, x, ndim=None, dtype=None) -> np.ndarray:
    """Return ``x`` as a native-byte-order ndarray after checking its rank and dtype
    (floating; equal to ``dtype`` when given), naming ``layer``."""
    return _check_float_array(repr(layer), x, "input", ndim, dtype)


# -- forwards that no backward will follow ------------------------------------------------
_GRAD_ENABLED = contextvars.ContextVar("im2col_net_grad_enabled", default=True)


@contextlib.contextmanager
def no_grad():
    """Inside this block, forwards skip the work only a backward would use, like
    ``torch.no_grad()``: max pooling keeps no argmax (nor the fused ReLU its mask), the
    FFT convolution no input spectrum. The outputs are the same bit for bit. A max-pool
    ``backward`` after such a forward raises ``RuntimeError``; a convolution's still
    works (it transforms its input again). Evaluation and prediction run in it."""
    token = _GRAD_ENABLED.set(False)
    try:
        yield
    finally:
        _GRAD_ENABLED.reset(token)


def grad_enabled() -> bool:
    """False inside :func:`no_grad`."""
    return _GRAD_ENABLED.get()


# -- watching what each layer is given (the gradient checker's hints) --------------------
_INPUT_OBSERVER = contextvars.ContextVar("im2col_net_input_observer", default=None)


@contextlib.contextmanager
def observe_inputs(callback):
    """Inside this block every container calls ``callback(child, x)`` just before it runs
    ``child.forward(x)``, and runs each child on its own (no fused pairs: the results
    are the same, and every child is seen). The layers themselves are left untouched."""
    token = _INPUT_OBSERVER.set(callback)
    try:
        yield
    finally:
        _INPUT_OBSERVER.reset(token)


def observing_inputs() -> bool:
    """True inside :func:`observe_inputs`."""
    return _INPUT_OBSERVER.get() is not None


def forward_child(child, x):
    """``child.forward(x)``, reported to :func:`observe_inputs` first; containers run
    their children through this."""
    observer = _INPUT_OBSERVER.get()
    if observer is not None:
        observer(child, x)
    return child.forward(x)


# The model summary describes layers by their classes, so it imports them and they cannot
# import it: im2col_net.summary registers its summarize() here for Layer.summary.
_SUMMARIZER = None


def register_summarizer(function) -> None:
    """Make ``function(model, input_shape, batch_size)`` what :meth:`Layer.summary` calls
    (done by :mod:`im2col_net.summary` when it is imported)."""
    global _SUMMARIZER
    _SUMMARIZER = function


class Layer:
    """Base class: parameters, gradients, train/eval mode, call-order checks.

    A layer maps ``forward(x) -> y`` and ``backward(dy) -> dx``, where ``dy`` has ``y``'s
    shape and ``dx`` has ``x``'s; shapes per layer are in each subclass. ``params`` maps
    names (``"weight"``, ``"bias"``) to arrays the optimizer updates in place; after
    ``backward`` the gradients are in ``grads`` under the same names, with the same
    shapes and dtypes. ``backward`` never modifies ``dy``.
    """

    # False for containers, whose params/grads are built from their children's.
    _owns_params = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Python names the defining class in argument errors ("_Pool2D.__init__() takes
        # ..."): a layer that inherits its constructor gets a copy under its own name.
        if "__init__" not in cls.__dict__:
            inherited = cls.__init__
            qualname = f"{cls.__qualname__}.__init__"
            init = types.FunctionType(inherited.__code__.replace(co_qualname=qualname),
                                      inherited.__globals__, "__init__",
                                      inherited.__defaults__, inherited.__closure__)
            init.__kwdefaults__ = inherited.__kwdefaults__
            init.__doc__ = inherited.__doc__
            init.__qualname__ = qualname
            cls.__init__ = init

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.training = True
        self._cache = None

    # -- the protocol -------------------------------------------------------------
    def forward(self, x):
        """Compute ``y`` from ``x`` (shapes per layer) and keep what backward needs."""
        raise NotImplementedError

    def backward(self, dy):
        """Given ``dy = dL/dy`` (``y``'s shape), fill ``grads`` and return ``dL/dx``."""
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def _require_cache(self):
        if self._cache is None:
            raise RuntimeError(f"{self!r}: backward() called before forward()")
        return self._cache

    def _check_dy(self, dy, expected_shape, dtype):
        """``dy`` after the forward input's dtype rule (:func:`check_float_input`): real
        floating, native byte order, exactly ``dtype`` (the forward output's), and of
        ``expected_shape`` (the forward output's)."""
        dy = _check_float_array(f"{self!r} backward", dy, "dy", None, dtype,
                                dtype_source="forward output")
        if dy.shape != tuple(expected_shape):
            raise ValueError(
                f"{self!r}: backward expected dy of shape {tuple(expected_shape)} (the forward "
                f"output's), got {dy.shape}"
            )
        return dy

    # -- modes and parameters -----------------------------------------------------
    def train(self, mode: bool = True):
        """Set training mode (``mode=False``: evaluation) here and in every child."""
        self.training = bool(mode)
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        """Evaluation mode: dropout off, batch norm on running statistics."""
        return self.train(False)

    def children(self):
        """Direct sub-layers (none for a plain layer)."""
        return []

    def set_input_grad(self, needed):
        """Say whether anyone needs ``d(loss)/d(input)`` from :meth:`backward`; returns the
        previous setting, to pass back later. ``None`` changes nothing.

        A layer with a ``compute_input_grad`` switch (the convolutions) obeys it and then
        returns None from ``backward``; ``Sequential`` passes it to its first layer; any
        other layer keeps computing ``dx`` and reports None (so do the other containers,
        whose input feeds several paths). ``fit`` calls ``model.set_input_grad(False)``,
        since nobody reads the gradient of the images, and puts the setting back after.
        """
        if needed is None or not hasattr(self, "compute_input_grad"):
            return None
        previous = self.compute_input_grad
        self.compute_input_grad = bool(needed)
        return previous

    def named_parameters(self):
        """``(name, array)`` pairs, dotted for containers."""
        return list(self.params.items())

    def named_buffers(self):
        """``(name, array)`` pairs of non-trained state (BatchNorm running statistics),
        from the layer's ``buffers`` dict if it has one; dotted for containers."""
        return list(getattr(self, "buffers", {}).items())

    def parameter_count(self) -> int:
        """Number of trainable scalars in all parameters."""
        return int(sum(p.size for _, p in self.named_parameters()))

    def zero_grad(self):
        """Set every gradient to zeros of its parameter's shape and dtype."""
        for child in self.children():
            child.zero_grad()
        if not self._owns_params:
            return
        for name, value in self.params.items():
            self.grads[name] = np.zeros_like(value)

    @property
    def dtype(self):
        """The dtype of the parameters (None for a parameter-free layer)."""
        for _, p in self.named_parameters():
            return p.dtype
        return None

    def astype(self, dtype):
        """Convert every parameter (and gradient) to ``dtype`` in place; returns self."""
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            # A container's repr lists all its children: name it by its type instead.
            owner = repr(self) if self._owns_params else type(self).__name__
            raise ValueError(f"{owner}: astype expects a floating dtype, got {dtype}")
        for child in self.children():
            child.astype(dtype)
        if self._owns_params:
            for name in list(self.params):
                self.params[name] = self.params[name].astype(dtype)
            for name in list(self.grads):
                self.grads[name] = self.grads[name].astype(dtype)
        self._cache = None
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter under its (dotted) name."""
        return {name: p.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict):
        """Copy arrays into the existing parameters; names and shapes must match exactly."""
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"{self!r}: state_dict keys do not match: missing {missing}, "
                f"unexpected {unexpected}"
            )
        for name, target in own.items():
            value = np.asarray(state[name])
            if value.shape != target.shape:
                raise ValueError(
                    f"{self!r}: parameter {name!r} expects shape {target.shape}, got {value.shape}"
                )
            np.copyto(target, value, casting="same_kind")
        return self

    # -- shape inference ----------------------------------------------------------
    def output_shape(self, input_shape):
        """The shape ``forward`` returns for an input of ``input_shape`` (batch axis
        included), worked out without running it and raising the ValueError forward
        would; None when the layer cannot tell (the summary then runs it)."""
        return None

    # -- the oracle -----------------------------------------------------------------
    def reference_pair(self):
        """``(reference_forward, reference_backward)``: this layer's independent oracle from
        :mod:`im2col_net.reference`, reading the layer's parameters and settings at call
        time. ``reference_forward(x) -> y``; ``reference_backward(x, dy) -> dx`` or
        ``(dx, {param name: gradient})``. A layer with a reference overrides this (see
        :func:`im2col_net.testing.reference_pair`); the default has none."""
        raise ValueError(f"reference_pair: no reference for {type(self).__name__} (a layer "
                         f"declares one by defining reference_pair())")

    # -- description --------------------------------------------------------------
    def summary(self, input_shape, batch_size: int = 1):
        """Per-layer output shapes, parameters, FLOPs and memory for per-sample
        ``input_shape`` (e.g. ``(1, 28, 28)``) at ``batch_size``; see
        :func:`im2col_net.summary.summarize`. ``print()`` the result for a table."""
        if _SUMMARIZER is None:
            raise RuntimeError("Layer.summary: no summarizer registered; import "
                               "im2col_net.summary (importing im2col_net does)")
        return _SUMMARIZER(self, input_shape, batch_size)

    def get_config(self) -> dict:
        """JSON-serialisable constructor arguments (used to save architectures).

        Containers return only their own arguments; their sub-layers come from
        :meth:`children` and are passed back to :meth:`from_config`.
        """
        return {}

    @classmethod
    def from_config(cls, config: dict, children=()):
        """Rebuild a layer from :meth:`get_config` (and, for containers, its children)."""
        return cls(**config)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"
