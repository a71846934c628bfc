"""ONNX export of the pooling options, run in onnxruntime against the engine; refusals."""

import itertools

import numpy as np
import pytest

from im2col_net import (
    AdaptiveAvgPool2D,
    AdaptiveMaxPool2D,
    AvgPool2D,
    Conv2D,
    MaxPool2D,
    MaxUnpool2D,
    Sequential,
)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from im2col_net import onnx as ox  # noqa: E402
from im2col_net.onnx.deps import OnnxError, opset_range  # noqa: E402

NEWEST = opset_range(onnx)[1]


def _run(model, shape, opset=NEWEST, seed=0):
    proto = ox.to_model_proto(model, shape, opset)
    x = np.random.default_rng(seed).standard_normal((2,) + shape).astype(model.dtype or
                                                                         np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return proto, x, session.run(None, {"input": x})[0]


WINDOWED = (
    [lambda k=k, s=s, p=p, d=d: MaxPool2D(k, s, p, d, ceil_mode=True)
     for k, s, p, d in itertools.product([2, 3], [1, 2, 3], [0, 1], [1, 2])]
    + [lambda k=k, s=s, p=p, ci=ci, dv=dv: AvgPool2D(k, s, p, True, ci, dv)
       for k, s, p, ci, dv in itertools.product([2, 3], [2, 3], [0, 1], [True, False],
                                                [None, 3])]
    + [lambda: MaxPool2D(3, 2, 1), lambda: AvgPool2D(3, 2, 1, False, False),
       lambda: MaxPool2D((3, 2), (2, 1), (1, 0), (1, 2))])


@pytest.mark.parametrize("size", [(7, 7), (6, 8)])
@pytest.mark.parametrize("index", range(len(WINDOWED)))
def test_windowed_pools_run_in_onnxruntime(index, size):
    model = Sequential(WINDOWED[index]())
    _, x, y = _run(model, (2, *size), opset=[13, 19, NEWEST][index % 3])
    expected = model.forward(x)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer, shape, op", [
    (AdaptiveAvgPool2D(1), (3, 5, 7), "GlobalAveragePool"),
    (AdaptiveMaxPool2D(1), (3, 5, 7), "GlobalMaxPool"),
    (AdaptiveAvgPool2D((3, None)), (2, 6, 5), "AveragePool"),
    (AdaptiveMaxPool2D((2, 4)), (2, 6, 8), "MaxPool"),
])
def test_adaptive_pools_with_dividing_sizes_export(layer, shape, op):
    model = Sequential(Conv2D(shape[0], 2, 1, rng=0), layer)
    proto, x, y = _run(model, shape)
    assert op in {node.op_type for node in proto.graph.node}
    np.testing.assert_allclose(y, model.forward(x), rtol=1e-5, atol=1e-6)


def test_divisor_override_is_a_mul_of_the_average():
    proto, x, y = _run(Sequential(AvgPool2D(3, 2, 1, divisor_override=2)), (1, 6, 6))
    ops = [node.op_type for node in proto.graph.node]
    assert ops[:2] == ["AveragePool", "Mul"]


@pytest.mark.parametrize("model, fragments", [
    (Sequential(AdaptiveAvgPool2D(4)), ["AdaptiveAvgPool2D", "output_size=(4, 4)",
                                        "does not divide the input size (6, 6)"]),
    (Sequential(AdaptiveMaxPool2D((None, 5))), ["AdaptiveMaxPool2D", "(6, 5)",
                                                "does not divide"]),
    (MaxPool2D(2, return_indices=True), ["MaxPool2D", "return_indices=True"]),
])
def test_inexpressible_options_are_refused(model, fragments):
    with pytest.raises(OnnxError) as info:
        if isinstance(model, MaxPool2D):
            # A layer returning (y, indices) cannot pass the shape probe as a model; the
            # emitter itself refuses it too.
            from im2col_net.onnx import exporter

            model.forward(np.zeros((1, 1, 6, 6), np.float32))
            b = exporter._Builder(onnx, np.dtype(np.float32))
            b.opset = NEWEST
            exporter._emit(b, model, "input", "")
        else:
            ox.to_model_proto(model, (1, 6, 6))
    for fragment in fragments:
        assert fragment in str(info.value)


def test_max_unpool_is_refused_by_name():
    from im2col_net.onnx import exporter

    b = exporter._Builder(onnx, np.dtype(np.float32))
    b.opset = NEWEST
    with pytest.raises(OnnxError, match="MaxUnpool2D takes the indices as a second input"):
        exporter._emit(b, MaxUnpool2D(2), "input", "")
