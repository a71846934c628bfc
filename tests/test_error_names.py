"""Every public layer's own error messages name a public class (``MaxPool2D(...)``), never
a private base (``_Pool2D``, ``_Elementwise``, ``Layer.__init__()``).

Constructor ``TypeError``s and bad constructor values are covered in
test_reliability_engine.py; this file covers what a built layer raises: call order,
forward input checks, backward ``dy`` checks, ``astype``, ``load_state_dict`` and
``output_shape``. Classes are taken from ``im2col_net.layers.__all__``, so a new public
layer is covered as soon as one of the generic constructions below builds it.
"""

import inspect
import re

import numpy as np
import pytest

import im2col_net.layers as L

PUBLIC = {name: getattr(L, name) for name in L.__all__
          if inspect.isclass(getattr(L, name)) and name != "Layer"}

# Layers the generic constructions below cannot build (or build only in a useless form).
from test_architecture import WITH_REFERENCE_PAIR  # noqa: E402

from im2col_net.layers.base import Layer  # noqa: E402

SPECIFIC = {
    "Conv2D": (lambda: L.Conv2D(2, 3, 3, rng=0), (1, 2, 5, 5)),
    "ConvTranspose2D": (lambda: L.ConvTranspose2D(2, 3, 3, rng=0), (1, 2, 4, 4)),
    "Linear": (lambda: L.Linear(2, 3, rng=0), (2, 2)),
    "Dropout": (lambda: L.Dropout(0.5, rng=0), (2, 2)),
    "Sequential": (lambda: L.Sequential(L.Linear(2, 3, rng=0), L.ReLU()), (2, 2)),
    "Parallel": (lambda: L.Parallel(L.ReLU(), L.Tanh()), (2, 2)),
    "Residual": (lambda: L.Residual(L.Linear(2, 2, rng=0)), (2, 2)),
    "Graph": (lambda: L.Graph([L.ReLU()], [{"op": "layer", "inputs": [-1]}]), (2, 2)),
    "GroupNorm": (lambda: L.GroupNorm(2, 4), (2, 4, 3, 3)),
    "LayerNorm": (lambda: L.LayerNorm(4), (2, 3, 4)),
    "InstanceNorm2D": (lambda: L.InstanceNorm2D(2), (2, 2, 3, 3)),
    "MaxUnpool2D": (lambda: _unpool_with_indices(), (1, 2, 2, 2)),
}


def _unpool_with_indices():
    """MaxUnpool2D's forward takes the pooling indices too: bind all-zero ones."""
    layer = L.MaxUnpool2D(2)
    forward = layer.forward
    layer.forward = lambda x, indices=None, output_size=None: forward(
        x, np.zeros(np.shape(x), np.int64) if indices is None else indices, output_size)
    return layer
CONSTRUCTIONS = [(), (2,), (2, 3, 3)]
SHAPES = [(1, 2, 4, 4), (2, 2), (2, 2, 4)]


def _build(name):
    """A built layer and an input shape its forward accepts."""
    if name in SPECIFIC:
        make, shape = SPECIFIC[name]
        return make(), shape
    if name in WITH_REFERENCE_PAIR:  # the instances the architecture test builds
        make, shape = WITH_REFERENCE_PAIR[name]
        return make(), shape
    cls = PUBLIC[name]
    for args in CONSTRUCTIONS:
        try:
            layer = cls(*args)
        except (TypeError, ValueError):
            continue
        for shape in SHAPES:
            try:
                layer.forward(np.ones(shape, dtype=layer.dtype or np.float32))
            except ValueError:
                continue
            return cls(*args), shape
    raise AssertionError(f"no generic construction builds {name} with a working forward; "
                         f"add it to SPECIFIC in {__file__}")


def _private_names(cls):
    """Names of the bases a message about ``cls`` must not show."""
    return {base.__name__ for base in cls.__mro__[1:]
            if base is not object and base.__name__ not in PUBLIC}


def _messages(layer, shape):
    """``(what, message)`` of every error a built layer raises for misuse."""
    dtype = layer.dtype or np.float32
    x = np.ones(shape, dtype=dtype)
    attempts = [
        ("backward before forward", lambda: layer.backward(x)),
        ("integer input", lambda: layer.forward(np.ones(shape, dtype=np.int64))),
        ("complex input", lambda: layer.forward(np.ones(shape, dtype=np.complex128))),
        ("7-D input", lambda: layer.forward(np.ones((1,) * 7, dtype=dtype))),
        ("7-D output_shape", lambda: layer.output_shape((1,) * 7)),
        ("astype(int)", lambda: layer.astype(np.int32)),
        ("unknown state", lambda: layer.load_state_dict({"no_such_parameter": np.ones(1)})),
    ]
    found = []
    for what, attempt in attempts:
        try:
            attempt()
        except (TypeError, ValueError, RuntimeError) as exc:
            found.append((what, str(exc)))
    y = layer.forward(x)
    wrong_shape = np.ones(y.shape[:-1] + (y.shape[-1] + 1,), dtype=y.dtype)
    other_dtype = np.ones(y.shape, dtype=np.float16)
    for what, dy in (("dy of the wrong shape", wrong_shape), ("dy of another dtype", other_dtype)):
        try:
            layer.backward(dy)
        except (TypeError, ValueError, RuntimeError) as exc:
            found.append((what, str(exc)))
    return found


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_a_built_layers_errors_name_public_classes(name):
    if not issubclass(PUBLIC[name], Layer):  # a loss: forward takes targets too
        loss = PUBLIC[name]()
        index_targets = name in ("SoftmaxCrossEntropy", "CrossEntropyLoss", "NLLLoss")
        targets = np.array([0, 1]) if index_targets else np.ones((2, 3))
        attempts = [lambda: loss.backward(),
                    lambda: loss.forward(np.ones((2, 3), np.int64), targets)]
        if index_targets:
            attempts.append(lambda: loss.forward(np.ones((2, 3)), np.array([0, 7])))
        messages = []
        for attempt in attempts:
            with pytest.raises((ValueError, RuntimeError)) as info:
                attempt()
            messages.append(str(info.value))
        assert all(m.startswith(f"{name}()") for m in messages), messages
        return
    cls = PUBLIC[name]
    layer, shape = _build(name)
    found = _messages(layer, shape)
    whats = {what for what, _ in found}
    # The checks every layer makes: these must raise, not pass silently.
    assert {"backward before forward", "integer input", "complex input", "astype(int)",
            "unknown state", "dy of the wrong shape", "dy of another dtype"} <= whats, whats
    private = _private_names(cls)
    public = "|".join(map(re.escape, sorted(PUBLIC, key=len, reverse=True)))
    for what, message in found:
        for base in private:
            assert not re.search(rf"\b{re.escape(base)}\b", message), (what, message)
        assert "Layer." not in message, (what, message)
        # Messages from the layer itself name it; a container may pass on a child's.
        assert re.match(rf"^({public})\b", message), (what, message)
        if what in ("backward before forward", "astype(int)", "unknown state",
                    "dy of the wrong shape", "dy of another dtype"):
            assert message.startswith(name), (what, message)


def test_a_subclass_is_named_by_its_own_name():
    class MyPool(L.MaxPool2D):
        pass

    pool = MyPool(2)
    with pytest.raises(ValueError, match=r"^MyPool\(kernel_size="):
        pool.forward(np.ones((1, 1, 1, 1), np.float32))
    with pytest.raises(TypeError, match=r"\bMyPool\.__init__\(\) got an unexpected") as info:
        MyPool(2, no_such_argument=1)
    assert "_Pool2D" not in str(info.value) and "MaxPool2D" not in str(info.value)
