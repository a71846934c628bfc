"""ONNX export of the parity activations, Dropout2D, Identity and Softmax/LogSoftmax over
any dim: run in onnxruntime (float32) and in onnx's reference evaluator (float64) against
the engine, at the oldest and newest exported opsets."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import im2col_net.onnx as ox  # noqa: E402
from im2col_net import (  # noqa: E402
    GELU,
    SELU,
    Conv2D,
    Dropout2D,
    Flatten,
    Hardsigmoid,
    Hardswish,
    Identity,
    Linear,
    PReLU,
    ReLU6,
    Sequential,
    SiLU,
    Softplus,
)
from im2col_net.layers import LogSoftmax, Softmax  # noqa: E402

NEWEST = onnx.defs.onnx_opset_version()

LAYERS = [
    ("relu6", ReLU6), ("hardsigmoid", Hardsigmoid), ("hardswish", Hardswish), ("selu", SELU),
    ("silu", SiLU), ("gelu-none", GELU), ("gelu-tanh", lambda: GELU("tanh")),
    ("softplus", Softplus), ("softplus-b2-t1", lambda: Softplus(2.0, 1.0)),
    ("softplus-neg-beta", lambda: Softplus(-1.5, 3.0)),
    ("prelu-1", lambda: PReLU(1, init=0.3)), ("prelu-c", lambda: _per_channel_prelu()),
    ("dropout2d", lambda: Dropout2D(0.4, rng=0)), ("identity", Identity),
    ("softmax-1", lambda: Softmax(dim=1)), ("softmax--1", lambda: Softmax(dim=-1)),
    ("logsoftmax-2", lambda: LogSoftmax(dim=2)), ("logsoftmax--2", lambda: LogSoftmax(dim=-2)),
]
IDS = [name for name, _ in LAYERS]


def _per_channel_prelu():
    layer = PReLU(3)
    layer.params["weight"][...] = [-0.5, 0.1, 0.7]
    return layer


def image_input(dtype, seed=0):
    x = np.random.default_rng(seed).uniform(-8, 8, (2, 3, 4, 5))
    x.flat[:8] = [-3, 0, 3, 6, 20, -20, 0.5, 1e3]
    return x.astype(dtype)


def model_with(make, dtype):
    model = Sequential(make())
    return model.astype(dtype) if dtype != np.float32 else model


@pytest.mark.parametrize("opset", [13, NEWEST])
@pytest.mark.parametrize("name,make", LAYERS, ids=IDS)
def test_float32_matches_onnxruntime(name, make, opset):
    model = model_with(make, np.float32).eval()
    x = image_input(np.float32)
    session = ox.onnxruntime_session(model, x.shape[1:], opset=opset, threads=1)
    theirs = session.run(None, {"input": x})[0]
    ours = model.forward(x)
    assert theirs.dtype == np.float32 and theirs.shape == ours.shape
    np.testing.assert_allclose(theirs, ours, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("name,make", LAYERS, ids=IDS)
def test_float64_matches_the_onnx_reference_evaluator(name, make):
    from onnx.reference import ReferenceEvaluator

    # A parameter-free model exports as float32 (the exporter takes the parameters'
    # dtype); a PReLU of slope 1 in front is the identity that makes the model float64.
    model = Sequential(PReLU(1, init=1.0, dtype=np.float64), make()).astype(np.float64).eval()
    x = image_input(np.float64, seed=1)
    if "softmax" in name:
        x.flat[7] = 30.0  # the evaluator's LogSoftmax is log(softmax): exp(-997) underflows
    proto = ox.to_model_proto(model, x.shape[1:])
    theirs = ReferenceEvaluator(proto).run(None, {"input": x})[0]
    ours = model.forward(x)
    assert theirs.dtype == np.float64
    # Full precision: no float32 constant or attribute on the way. (The evaluator's Erf
    # rounds through float32, and onnxruntime has no float64 Erf, so GELU's exact form
    # is checked to float32 precision.)
    tol = 1e-7 if name == "gelu-none" else 1e-12
    np.testing.assert_allclose(theirs, ours, rtol=tol, atol=tol)


def test_operators_used():
    def ops(layer, shape=(3, 4, 5)):
        return [n.op_type for n in ox.to_model_proto(Sequential(layer), shape).graph.node]

    assert ops(ReLU6()) == ["Clip", "Identity"]
    assert ops(SELU()) == ["Selu", "Identity"]
    float64 = ox.to_model_proto(Sequential(PReLU(dtype=np.float64), SELU()), (3, 4, 5))
    assert "Selu" not in [n.op_type for n in float64.graph.node]
    assert ops(PReLU(3))[0] == "PRelu" and ops(Dropout2D(0.5))[0] == "Identity"
    assert "Erf" in ops(GELU()) and "Tanh" in ops(GELU("tanh"))
    proto = ox.to_model_proto(Sequential(Softmax(dim=-2)), (3, 4))
    assert proto.graph.node[0].attribute[0].i == -2


def test_prelu_per_channel_in_a_network_of_any_rank():
    model = Sequential(Conv2D(2, 3, 3, padding=1, rng=0), _per_channel_prelu(), Flatten(),
                       Linear(48, 4, rng=0), PReLU(4), Softmax(dim=1)).eval()
    x = np.random.default_rng(2).standard_normal((2, 2, 4, 4)).astype(np.float32)
    session = ox.onnxruntime_session(model, x.shape[1:], threads=1)
    np.testing.assert_allclose(session.run(None, {"input": x})[0], model.forward(x), rtol=1e-5,
                               atol=1e-6)


def test_unknown_layer_message_lists_the_new_layers():
    from im2col_net.layers import Layer

    class Custom(Layer):
        def forward(self, x):
            return x

    with pytest.raises(ox.OnnxError, match="Custom.*no ONNX mapping.*Hardswish.*PReLU"):
        ox.to_model_proto(Sequential(Custom()), (3,))


@pytest.mark.parametrize("dim", [0, 1, 2, 3, -1, -3])
@pytest.mark.parametrize("cls", [Softmax, LogSoftmax])
def test_softmax_dim_round_trips_through_import(cls, dim):
    model = Sequential(cls(dim=dim))
    x = image_input(np.float32, seed=3)
    back = ox.from_model_proto(ox.to_model_proto(model, x.shape[1:]))
    (layer,) = [sub for sub in back.layers if isinstance(sub, cls)]
    assert layer.dim == dim % 4
    np.testing.assert_allclose(back.forward(x), model.forward(x), rtol=1e-6, atol=1e-7)
