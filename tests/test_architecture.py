"""The package layout: imports point one way and form no cycle, the engine never reaches
into the application (im2col_net/app), private modules stay private, every layer with an
oracle declares it, and the trainer and gradient checker work through the layer API
instead of knowing layer classes or replacing methods."""

import ast
import importlib
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import im2col_net
from im2col_net import layers as L
from im2col_net.gradcheck import GradcheckWarning, gradcheck
from im2col_net.layers.base import Layer, observe_inputs
from im2col_net.testing import assert_layer_matches_reference, reference_pair

PACKAGE = Path(im2col_net.__file__).resolve().parent
ROOT = "im2col_net"

def _module_names():
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = [ROOT, *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


MODULES = _module_names()


def _type_checking_lines(tree):
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lines |= {n.lineno for n in ast.walk(node) if hasattr(n, "lineno")}
    return lines


def _targets(module, path, node):
    """The im2col_net modules one import statement loads (function-local ones count)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if node.level:
        base = package[:len(package) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    out = []
    for alias in node.names:
        name = f"{source}.{alias.name}"
        out.append(name if name in MODULES else source)
    return out


def _import_graph():
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and node.lineno not in skip:
                edges |= {t for t in _targets(module, path, node) if t in MODULES and t != module}
        graph[module] = edges
    return graph


GRAPH = _import_graph()


def _inside(module, package):
    return module == package or module.startswith(package + ".")


def _cycles(graph):
    """Strongly connected components of more than one module (iterative Tarjan), leaving
    out a package whose __init__ merely imports its own submodules."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return [c for c in found if not all(_inside(m, min(c, key=len)) for m in c)]


def test_the_graph_sees_function_local_imports():
    # gradcheck's CLI imports layers at module level, the plot command plotting in a function.
    assert "im2col_net.app.plotting" in GRAPH["im2col_net.app.cli.plot_cmd"]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def _imports_of(package):
    return {(m, t) for m, targets in GRAPH.items() if _inside(m, package) for t in targets}


def test_the_engine_never_imports_the_application():
    # __main__ is `python -m im2col_net`: the command line's entry, part of the app.
    bad = sorted((m, t) for m, targets in GRAPH.items() for t in targets
                 if _inside(t, "im2col_net.app") and not _inside(m, "im2col_net.app")
                 and m != "im2col_net.__main__")
    assert bad == []


@pytest.mark.parametrize("package, forbidden", [
    ("im2col_net.reference", ["im2col_net.functional", "im2col_net.layers",
                              "im2col_net.lowering", "im2col_net.runtime"]),
    ("im2col_net.functional", ["im2col_net.layers", "im2col_net.training",
                               "im2col_net.models", "im2col_net.summary"]),
    ("im2col_net.layers", ["im2col_net.training", "im2col_net.optim", "im2col_net.summary",
                           "im2col_net.models", "im2col_net.serialization"]),
])
def test_dependencies_point_one_way(package, forbidden):
    bad = sorted((m, t) for m, t in _imports_of(package)
                 if any(_inside(t, f) for f in forbidden))
    assert bad == []


def test_the_reference_loops_use_only_geometry():
    outside = {t for _, t in _imports_of("im2col_net.reference")
               if not _inside(t, "im2col_net.reference")}
    assert outside <= {"im2col_net.geometry"}


def test_private_modules_stay_in_their_package():
    bad = []
    for module, targets in GRAPH.items():
        for target in targets:
            last = target.rsplit(".", 1)[-1]
            owner = target.rsplit(".", 1)[0]
            if last.startswith("_") and not last.startswith("__") \
                    and not _inside(module, owner):
                bad.append((module, target))
    assert sorted(bad) == []


# -- each layer declares its reference ---------------------------------------------------

# Public layers without a (forward, backward) oracle, and why.
NO_REFERENCE_PAIR = {
    "Layer": "the base class",
    "Sequential": "a container: its children are checked", "Parallel": "a container",
    "Residual": "a container", "Graph": "a container",
    "Dropout": "random: checked against its own mask",
    "BatchNorm1D": "reference.batch_norm_forward also returns running statistics",
    "BatchNorm2D": "reference.batch_norm_forward also returns running statistics",
    "SoftmaxCrossEntropy": "a loss: forward takes labels",
    "CrossEntropyLoss": "a loss", "NLLLoss": "a loss", "MSELoss": "a loss",
    "BCEWithLogitsLoss": "a loss",
    "MaxUnpool2D": "forward takes the indices too; tested against reference.max_unpool2d_*",
}
# A small instance and input shape for every public layer that declares its reference.
WITH_REFERENCE_PAIR = {
    "Conv2D": (lambda: L.Conv2D(2, 3, 3, stride=2, padding=1, rng=0, dtype=np.float64),
               (2, 2, 5, 5)),
    "ConvTranspose2D": (lambda: L.ConvTranspose2D(2, 3, 3, stride=2, rng=0,
                                                  dtype=np.float64), (2, 2, 3, 3)),
    "MaxPool2D": (lambda: L.MaxPool2D(2), (2, 2, 4, 4)),
    "AvgPool2D": (lambda: L.AvgPool2D(3, stride=2, padding=1), (2, 2, 5, 5)),
    "GlobalAvgPool2D": (L.GlobalAvgPool2D, (2, 3, 4, 4)),
    "Linear": (lambda: L.Linear(6, 4, rng=0, dtype=np.float64), (3, 6)),
    "ReLU": (L.ReLU, (3, 5)), "LeakyReLU": (lambda: L.LeakyReLU(0.2), (3, 5)),
    "ELU": (lambda: L.ELU(0.7), (3, 5)), "Sigmoid": (L.Sigmoid, (3, 5)),
    "Tanh": (L.Tanh, (3, 5)), "Flatten": (L.Flatten, (2, 3, 2, 2)),
    "GroupNorm": (lambda: L.GroupNorm(2, 4, dtype=np.float64), (2, 4, 3, 3)),
    "LayerNorm": (lambda: L.LayerNorm(4, dtype=np.float64), (2, 3, 4)),
    "InstanceNorm2D": (lambda: L.InstanceNorm2D(2, affine=True, dtype=np.float64),
                       (2, 2, 3, 3)),
    "LocalResponseNorm": (lambda: L.LocalResponseNorm(3), (2, 5, 3, 3)),
    "ZeroPad2D": (lambda: L.ZeroPad2D((1, 0, 2, 1)), (2, 2, 3, 3)),
    "ConstantPad2D": (lambda: L.ConstantPad2D(1, 0.5), (2, 2, 3, 3)),
    "ReflectionPad2D": (lambda: L.ReflectionPad2D((2, 1, 0, 1)), (2, 2, 3, 4)),
    "ReplicationPad2D": (lambda: L.ReplicationPad2D(2), (2, 2, 3, 3)),
    "CircularPad2D": (lambda: L.CircularPad2D((1, 2, 3, 0)), (2, 2, 3, 3)),
    "Upsample": (lambda: L.Upsample(scale_factor=2, mode="bilinear"), (2, 2, 3, 3)),
    "UpsamplingNearest2D": (lambda: L.UpsamplingNearest2D(size=(5, 4)), (2, 2, 3, 3)),
    "UpsamplingBilinear2D": (lambda: L.UpsamplingBilinear2D(scale_factor=2), (2, 2, 3, 3)),
    "PixelShuffle": (lambda: L.PixelShuffle(2), (2, 8, 2, 3)),
    "PixelUnshuffle": (lambda: L.PixelUnshuffle(2), (2, 2, 4, 6)),
    "Unflatten": (lambda: L.Unflatten(1, (2, 3)), (2, 6, 2)),
    "ReLU6": (L.ReLU6, (3, 5)), "SELU": (L.SELU, (3, 5)), "SiLU": (L.SiLU, (3, 5)),
    "GELU": (lambda: L.GELU(approximate="tanh"), (3, 5)),
    "Hardswish": (L.Hardswish, (3, 5)), "Hardsigmoid": (L.Hardsigmoid, (3, 5)),
    "Softplus": (lambda: L.Softplus(beta=2.0), (3, 5)),
    "PReLU": (lambda: L.PReLU(3, dtype=np.float64), (2, 3, 4)),
    "Identity": (L.Identity, (3, 5)),
    "AdaptiveAvgPool2D": (lambda: L.AdaptiveAvgPool2D((2, 3)), (2, 2, 5, 7)),
    "AdaptiveMaxPool2D": (lambda: L.AdaptiveMaxPool2D(3), (2, 2, 5, 7)),
    "Softmax": (lambda: L.Softmax(dim=-1), (2, 3, 4)),
    "LogSoftmax": (lambda: L.LogSoftmax(dim=1), (2, 3, 4)),
    "Dropout2D": (lambda: L.Dropout2D(0.5, rng=0).eval(), (2, 3, 2, 2)),
}


def test_every_public_layer_is_classified():
    public = {name for name in L.__all__ if isinstance(getattr(L, name), type)}
    assert public == set(NO_REFERENCE_PAIR) | set(WITH_REFERENCE_PAIR)
    assert not set(NO_REFERENCE_PAIR) & set(WITH_REFERENCE_PAIR)


@pytest.mark.parametrize("name", sorted(WITH_REFERENCE_PAIR))
def test_layer_declares_its_reference_and_it_holds(name):
    cls = getattr(L, name)
    assert cls.reference_pair is not Layer.reference_pair, f"{name} declares no reference"
    make, shape = WITH_REFERENCE_PAIR[name]
    layer = make()
    x = np.random.default_rng(1).standard_normal(shape)
    assert_layer_matches_reference(layer, *reference_pair(layer), x)


@pytest.mark.parametrize("name", sorted(set(NO_REFERENCE_PAIR) - {"Layer"}))
def test_layers_without_a_reference_say_so(name):
    declared = getattr(getattr(L, name), "reference_pair", Layer.reference_pair)
    assert declared is Layer.reference_pair


def test_a_user_layer_declares_its_own_reference():
    class Double(Layer):
        def forward(self, x):
            return 2 * x

        def backward(self, dy):
            return 2 * dy

        def reference_pair(self):
            return (lambda x: x + x), (lambda x, dy: dy + dy)

    x = np.arange(6.0).reshape(2, 3)
    assert_layer_matches_reference(Double(), *reference_pair(Double()), x)

    class Plain(Layer):
        pass

    with pytest.raises(ValueError, match="no reference for Plain"):
        reference_pair(Plain())


# -- the trainer and the gradient checker use the layer API --------------------------------


def test_trainer_names_no_model_layer_class():
    source = (PACKAGE / "training" / "trainer.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    model_layers = {name for name in L.__all__ if isinstance(getattr(L, name), type)}
    model_layers -= {"Layer", "SoftmaxCrossEntropy"}     # the protocol and the loss it uses
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    names |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
              and isinstance(n.value, str)}
    assert sorted(names & model_layers) == []
    assert "__name__" not in names


def test_set_input_grad_reaches_the_layer_that_sees_the_input():
    conv = L.Conv2D(1, 2, 3, rng=0)
    model = L.Sequential(L.Sequential(conv, L.ReLU()), L.Flatten())
    assert model.set_input_grad(False) is True and conv.compute_input_grad is False
    x = np.random.default_rng(0).standard_normal((2, 1, 5, 5)).astype(np.float32)
    model.forward(x)
    assert model.backward(np.ones((2, 2 * 3 * 3), np.float32)) is None
    assert conv.grads["weight"].shape == conv.params["weight"].shape
    assert model.set_input_grad(True) is False and conv.compute_input_grad is True
    assert model.set_input_grad(None) is None and conv.compute_input_grad is True
    # A layer without the switch, and a block whose input feeds two paths, keep their dx.
    residual = L.Residual(L.Sequential(L.Conv2D(2, 2, 3, padding=1, rng=0)))
    assert residual.set_input_grad(False) is None
    assert residual.body[0].compute_input_grad is True
    assert L.ReLU().set_input_grad(False) is None
    assert L.Sequential().set_input_grad(False) is None


def test_observe_inputs_sees_every_child_and_changes_no_result():
    model = L.Sequential(L.Conv2D(1, 2, 3, rng=0, dtype=np.float64), L.ReLU(), L.MaxPool2D(2),
                         L.Flatten())
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6))
    plain = model.forward(x)          # ReLU + MaxPool2D run fused here
    seen = []
    with observe_inputs(lambda layer, value: seen.append((layer, value.shape))):
        observed = model.forward(x)
    assert [type(layer).__name__ for layer, _ in seen] == ["Conv2D", "ReLU", "MaxPool2D",
                                                          "Flatten"]
    assert [shape for _, shape in seen] == [(2, 1, 6, 6), (2, 2, 4, 4), (2, 2, 4, 4),
                                            (2, 2, 2, 2)]
    np.testing.assert_array_equal(observed, plain)
    model.forward(x)
    assert len(seen) == 4             # nothing is watched outside the block


def test_gradcheck_hints_leave_the_layers_untouched_and_see_fused_layers():
    """The kink hints watch each layer's input without replacing its forward, and also
    name a ReLU that runs fused with the max-pool after it."""
    model = L.Sequential(L.ReLU(), L.MaxPool2D(2))
    x = np.random.default_rng(3).permutation(np.arange(32.0) - 10.5).reshape(1, 2, 4, 4) / 8
    # One window's largest input sits exactly at the ReLU's kink.
    x[0, 0, :2, :2] = [[-0.5, -0.25], [-0.125, 0.0]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = gradcheck(model, x)
    assert report.ok, str(report)
    messages = " ".join(str(w.message) for w in caught if w.category is GradcheckWarning)
    assert "ReLU at '0'" in messages

    class SealedReLU(L.ReLU):
        """A ReLU whose forward cannot be replaced (gradcheck works on a copy of it)."""

        def __setattr__(self, name, value):
            if name == "forward":
                raise AssertionError("gradcheck replaced a layer's forward")
            super().__setattr__(name, value)

    sealed = L.Sequential(L.Linear(2, 2, rng=0, dtype=np.float64), SealedReLU())
    x = np.array([[0.5, -1.0]])
    sealed[0].params["bias"][0] = -(x @ sealed[0].params["weight"].T)[0, 0]  # a kink at 0
    with pytest.warns(GradcheckWarning, match="SealedReLU at '1'"):
        assert gradcheck(sealed, x).ok


def test_layer_summary_works_without_layers_importing_summary():
    assert "im2col_net.summary" not in {t for _, t in _imports_of("im2col_net.layers")}
    rows = L.Sequential(L.Conv2D(1, 4, 3, rng=0), L.ReLU()).summary((1, 8, 8)).rows
    assert [r.output_shape for r in rows] == [(1, 4, 6, 6), (1, 4, 6, 6)]


def test_the_command_entry_points_lead_to_the_app():
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8")
    target = re.search(r'^im2col-net\s*=\s*"([\w.]+):(\w+)"', pyproject, re.M)
    assert target, "pyproject.toml declares no im2col-net script"
    module, function = target.groups()
    assert _inside(module, "im2col_net.app")
    main = getattr(importlib.import_module(module), function)
    assert GRAPH["im2col_net.__main__"] == {module}
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0


def test_fit_runs_the_first_conv_without_its_input_gradient():
    from im2col_net.optim import make_optimizer
    from im2col_net.training import fit

    class RecordingConv(L.Conv2D):
        def backward(self, dy):
            dx = super().backward(dy)
            self.skipped.append(dx is None)
            return dx

    conv = RecordingConv(1, 2, 3, rng=0)
    conv.skipped = []
    model = L.Sequential(L.Sequential(conv, L.ReLU()), L.Flatten(), L.Linear(72, 10, rng=1))
    rng = np.random.default_rng(0)
    data = (rng.random((20, 1, 8, 8), dtype=np.float32), rng.integers(0, 10, 20))
    fit(model, data, None, epochs=1, batch_size=10, seed=0, progress=False,
        optimizer=make_optimizer("sgd", model.params, lr=0.01))
    assert conv.skipped == [True, True]
    assert conv.compute_input_grad is True      # put back after training
