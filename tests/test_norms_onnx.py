"""ONNX export of the normalisation layers, run with onnxruntime against the engine's own
eval-mode output over the opset range, and the export's refusals."""

import numpy as np
import pytest

from im2col_net import (
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    GroupNorm,
    InstanceNorm2D,
    LayerNorm,
    LocalResponseNorm,
    Sequential,
)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from im2col_net import onnx as ox  # noqa: E402
from im2col_net.onnx.deps import opset_range  # noqa: E402

NEWEST = opset_range(onnx)[1]
OPSETS = sorted({13, 16, 17, 18, 21, NEWEST})


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for name, value in layer.params.items():
            value[...] = rng.uniform(0.5, 1.5, value.shape) if name == "weight" else \
                rng.uniform(-1, 1, value.shape)
        buffers = getattr(layer, "buffers", {})
        if "running_mean" in buffers:
            buffers["running_mean"][...] = rng.uniform(-1, 1, buffers["running_mean"].shape)
            buffers["running_var"][...] = rng.uniform(0.5, 2, buffers["running_var"].shape)
    return model


CASES = {
    "groupnorm": (lambda d: GroupNorm(2, 4, dtype=d), (4, 3, 3), None),
    "groupnorm-1d": (lambda d: GroupNorm(3, 6, affine=False, eps=1e-3, dtype=d), (6, 5), None),
    "layernorm-chw": (lambda d: LayerNorm((4, 3, 3), dtype=d), (4, 3, 3), "LayerNormalization"),
    "layernorm-w-nobias": (lambda d: LayerNorm(3, bias=False, dtype=d), (4, 3, 3),
                           "LayerNormalization"),
    "layernorm-plain": (lambda d: LayerNorm((3, 3), elementwise_affine=False, dtype=d),
                        (4, 3, 3), "LayerNormalization"),
    "instancenorm": (lambda d: InstanceNorm2D(4, affine=True, dtype=d), (4, 3, 3), None),
    "instancenorm-running": (
        lambda d: InstanceNorm2D(4, affine=True, track_running_stats=True, eps=0.25, dtype=d),
        (4, 3, 3), "BatchNormalization"),
    "batchnorm2d-batch-stats": (lambda d: BatchNorm2D(4, track_running_stats=False, dtype=d),
                                (4, 3, 3), None),
    "batchnorm1d-batch-stats": (
        lambda d: BatchNorm1D(4, track_running_stats=False, eps=1e-3, dtype=d), (4, 5), None),
    "batchnorm2d-no-affine": (lambda d: BatchNorm2D(4, affine=False, eps=0.25, dtype=d),
                              (4, 3, 3), "BatchNormalization"),
}


# The graph takes the model's parameter dtype (float32 without parameters), so the float64
# runs use the cases with parameters.
_WITH_PARAMS = [n for n, (make, _, _) in CASES.items() if make(np.float32).params]


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name, dtype", [(n, np.float32) for n in sorted(CASES)]
                         + [(n, np.float64) for n in sorted(_WITH_PARAMS)])
def test_norm_layers_run_in_onnxruntime(name, dtype, opset):
    make, shape, native_op = CASES[name]
    model = _randomize(Sequential(make(dtype)), 3).eval()
    proto = ox.to_model_proto(model, shape, opset)
    ops = {node.op_type for node in proto.graph.node}
    if native_op == "LayerNormalization":
        wanted = opset >= 17 and dtype == np.float32
        assert ("LayerNormalization" in ops) == wanted, ops
        if not wanted:
            assert "ReduceMean" in ops
    elif native_op:
        assert native_op in ops
    else:
        assert "ReduceMean" in ops
    x = np.random.default_rng(opset).standard_normal((3,) + shape).astype(dtype) * 2 + 0.5
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    y = session.run(None, {"input": x})[0]
    assert y.dtype == np.dtype(dtype)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(y, model(x), rtol=tol, atol=tol)


@pytest.mark.parametrize("opset", [13, NEWEST])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_local_response_norm_window_matches_torchs(size, opset):
    model = Sequential(LocalResponseNorm(size, alpha=1.5, beta=0.75, k=1.25)).eval()
    proto = ox.to_model_proto(model, (6, 2, 3), opset)
    ops = {node.op_type for node in proto.graph.node}
    # Odd sizes are ONNX's LRN; even sizes (ONNX's window leans the other way) decompose.
    assert ("LRN" in ops) == bool(size % 2)
    x = np.random.default_rng(size).standard_normal((2, 6, 2, 3)).astype(np.float32) * 2
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], model(x), rtol=1e-5,
                               atol=1e-6)


def test_batch_statistics_depend_on_the_batch_in_onnx_too():
    model = _randomize(Sequential(Conv2D(2, 2, 1), BatchNorm2D(2, track_running_stats=False)),
                       5).eval()
    session = ort.InferenceSession(ox.to_model_proto(model, (2, 4, 4)).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    x = np.random.default_rng(6).standard_normal((4, 2, 4, 4)).astype(np.float32)
    whole = session.run(None, {"input": x})[0]
    half = session.run(None, {"input": x[:2]})[0]
    np.testing.assert_allclose(whole, model(x), rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(half, model(x[:2]), rtol=2e-5, atol=2e-5)
    assert not np.allclose(whole[:2], half)


def test_inexact_float64_attribute_is_refused():
    model = Sequential(InstanceNorm2D(2, affine=True, track_running_stats=True)).astype(
        np.float64)
    with pytest.raises(ox.OnnxError, match=r"layer 0 \(InstanceNorm2D\): eps=1e-05 is not "
                                           r"exactly representable"):
        ox.to_model_proto(model, (2, 3, 3))
