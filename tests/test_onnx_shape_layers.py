"""ONNX export of the padding, resampling and reshaping layers, run in onnxruntime
against the engine (and, for the channel orders, against torch)."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import im2col_net.onnx as ox  # noqa: E402
from im2col_net import (  # noqa: E402
    CircularPad2D,
    ConstantPad2D,
    Conv2D,
    Flatten,
    Linear,
    PixelShuffle,
    PixelUnshuffle,
    ReflectionPad2D,
    ReplicationPad2D,
    Sequential,
    Unflatten,
    Upsample,
    UpsamplingBilinear2D,
    UpsamplingNearest2D,
    ZeroPad2D,
)

NEWEST = onnx.defs.onnx_opset_version()


def run_both(model, x, opset=None):
    model.eval()
    ours = model.forward(x)
    session = ox.onnxruntime_session(model, x.shape[1:], opset=opset, threads=1)
    theirs = session.run(None, {"input": x})[0]
    return ours, theirs


def assert_matches(model, x, opset=None, exact=False):
    ours, theirs = run_both(model, x, opset)
    assert theirs.shape == ours.shape and theirs.dtype == ours.dtype
    if exact:
        np.testing.assert_array_equal(theirs, ours)
    else:
        tol = 1e-5 if x.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(theirs, ours, rtol=tol, atol=tol)


def typed(layer, shape, dtype):
    """A ``dtype`` model computing ``layer`` on per-sample inputs of ``shape``: a
    parameter-free model exports as float32, so an exact identity Linear (onnxruntime
    has a double Gemm, not a double Conv) between Flatten and Unflatten goes first."""
    size = int(np.prod(shape))
    linear = Linear(size, size, dtype=dtype, rng=0)
    linear.params["weight"][...] = np.eye(size)
    return Sequential(Flatten(), linear, Unflatten(1, shape), layer)


def data(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


PADS = [0, 2, (1, 0, 0, 2), (0, 3, 2, 1), (3, 3, 2, 2)]


@pytest.mark.parametrize("opset", [13, 18, NEWEST])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding", PADS)
@pytest.mark.parametrize("make", [ZeroPad2D, lambda p: ConstantPad2D(p, -1.25), ReflectionPad2D,
                                  ReplicationPad2D, CircularPad2D],
                         ids=["zero", "constant", "reflect", "replicate", "circular"])
def test_padding_layers_match_onnxruntime_exactly(make, padding, dtype, opset):
    # Reflect needs pad < size, circular pad <= size: (3, 4) tall, 4 wide fits all cases.
    model = typed(make(padding), (2, 3, 4), dtype)
    assert_matches(model, data((2, 2, 3, 4), dtype), opset, exact=True)


def test_circular_pad_of_a_full_wrap_and_batch_is_dynamic():
    model = Sequential(CircularPad2D((4, 4, 3, 0)))
    session = ox.onnxruntime_session(model, (2, 3, 4), threads=1)
    for n in (1, 3):
        x = data((n, 2, 3, 4), np.float32, n)
        np.testing.assert_array_equal(session.run(None, {"input": x})[0], model.forward(x))


UPSAMPLES = [
    lambda: Upsample(scale_factor=2),
    lambda: Upsample(scale_factor=3),
    lambda: Upsample(scale_factor=2.2),          # out == 2 * in shortcut of torch
    lambda: Upsample(scale_factor=(1.5, 0.7)),
    lambda: Upsample(scale_factor=1.1),          # out == in for small sizes
    lambda: Upsample(scale_factor=1.7, recompute_scale_factor=True),
    lambda: Upsample(size=(7, 3)),
    lambda: Upsample(size=1),
    lambda: Upsample(scale_factor=2, mode="bilinear"),
    lambda: Upsample(scale_factor=(1.5, 2.5), mode="bilinear"),
    lambda: Upsample(scale_factor=0.5, mode="bilinear"),
    lambda: Upsample(size=(1, 1), mode="bilinear"),
    lambda: Upsample(size=(9, 4), mode="bilinear", align_corners=True),
    lambda: Upsample(scale_factor=1.6, mode="bilinear", align_corners=False,
                     recompute_scale_factor=True),
    lambda: UpsamplingNearest2D(scale_factor=2),
    lambda: UpsamplingBilinear2D(size=(6, 9)),
    lambda: UpsamplingBilinear2D(scale_factor=1.3),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", UPSAMPLES)
def test_upsample_matches_onnxruntime(make, dtype):
    layer = make()
    x = data((2, 3, 4, 5), dtype)
    # Nearest is a Gather of the engine's own indices: bit-exact.
    assert_matches(typed(layer, (3, 4, 5), dtype), x, exact=layer.mode == "nearest")


def test_upsample_ops_are_gather_for_nearest_and_resize_for_float32_bilinear():
    near = ox.to_model_proto(Sequential(Upsample(scale_factor=2)), (1, 4, 4))
    assert "Gather" in {n.op_type for n in near.graph.node}
    bil = ox.to_model_proto(Sequential(Upsample(scale_factor=2, mode="bilinear")), (1, 4, 4))
    (resize,) = [n for n in bil.graph.node if n.op_type == "Resize"]
    attrs = {a.name: a for a in resize.attribute}
    assert attrs["coordinate_transformation_mode"].s == b"half_pixel"
    assert attrs["mode"].s == b"linear"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("r", [1, 2, 3])
def test_pixel_shuffle_and_unshuffle_match_onnxruntime(r, dtype):
    shuffle_in, unshuffle_in = (2 * r * r, 3, 2), (3, 2 * r, 3 * r)
    assert_matches(typed(PixelShuffle(r), shuffle_in, dtype), data((2, *shuffle_in), dtype),
                   exact=True)
    assert_matches(typed(PixelUnshuffle(r), unshuffle_in, dtype),
                   data((2, *unshuffle_in), dtype), exact=True)
    ops = {n.op_type for n in ox.to_model_proto(Sequential(PixelShuffle(r)),
                                                (2 * r * r, 3, 2)).graph.node}
    assert "DepthToSpace" in ops


def test_pixel_unshuffle_export_matches_torch_channel_order():
    torch = pytest.importorskip("torch")
    x = data((2, 3, 6, 4), np.float32)
    expected = torch.nn.PixelUnshuffle(2)(torch.from_numpy(x)).numpy()
    _, theirs = run_both(Sequential(PixelUnshuffle(2)), x)
    np.testing.assert_array_equal(theirs, expected)


@pytest.mark.parametrize("layer,shape", [
    (Flatten(), (3, 4, 5)),
    (Flatten(0, -1), (3, 4, 5)),
    (Flatten(0, 1), (3, 4, 5)),
    (Flatten(1, 2), (3, 4, 5)),
    (Flatten(2, 3), (3, 4, 5)),
    (Flatten(-2, -1), (3, 4, 5)),
    (Flatten(-3, -2), (3, 4, 5)),
    (Flatten(2, 2), (3, 4)),
    (Unflatten(1, (3, 4)), (12, 5)),
    (Unflatten(1, (2, -1, 2)), (12, 5)),
    (Unflatten(-1, (5, 1)), (12, 5)),
    (Unflatten(-2, (4, 3)), (12, 5)),
    (Unflatten(0, (1, 1)), (12, 5)),
])
def test_flatten_and_unflatten_match_onnxruntime_at_any_batch(layer, shape):
    model = Sequential(layer)
    session = ox.onnxruntime_session(model, shape, threads=1)
    for n in (1, 4):
        x = data((n, *shape), np.float32, n)
        if isinstance(layer, Unflatten) and layer.dim == 0:
            continue  # splitting the batch axis fixes the batch size
        ours, theirs = model.forward(x), session.run(None, {"input": x})[0]
        np.testing.assert_array_equal(theirs, ours)


def test_default_flatten_still_exports_as_onnx_flatten():
    proto = ox.to_model_proto(Sequential(Conv2D(1, 2, 3, rng=0), Flatten(),
                                         Linear(2 * 4 * 4, 3, rng=0)), (1, 6, 6))
    assert "Flatten" in {n.op_type for n in proto.graph.node}


def test_a_small_decoder_round_trips_through_onnxruntime():
    # 4x4 -> shuffle 8x8 -> reflect 10x10 -> conv 8x8 -> upsample 12x12 -> circular 13x13
    model = Sequential(Conv2D(1, 8, 3, padding=1, rng=0), PixelShuffle(2),
                       ReflectionPad2D(1), Conv2D(2, 2, 3, rng=1),
                       Upsample(scale_factor=1.5, mode="bilinear"), CircularPad2D((1, 1, 0, 2)),
                       PixelUnshuffle(2), Flatten(1, 2), Unflatten(1, (4, -1)))
    assert_matches(model, data((2, 1, 4, 4), np.float32))


def test_unknown_mode_message_lists_the_new_layers():
    from im2col_net.layers import Layer

    class Custom(Layer):
        def forward(self, x):
            return x

    with pytest.raises(ox.OnnxError, match="Custom.*has no ONNX mapping.*CircularPad2D"):
        ox.to_model_proto(Sequential(Custom()), (2, 3, 3))


def test_upsample_export_over_many_sizes_and_scales():
    rng = np.random.default_rng(5)
    checked = 0
    for h in range(1, 8):
        for scale in (0.5, 0.7, 1.1, 4 / 3, 1.5, 2, 2.2, 2.5, 3.3):
            if int(np.floor(h * scale)) < 1:
                continue
            for mode, corners in (("nearest", None), ("bilinear", False), ("bilinear", True)):
                layer = Upsample(scale_factor=(scale, 1.7), mode=mode, align_corners=corners)
                x = rng.standard_normal((1, 1, h, 3)).astype(np.float32)
                assert_matches(Sequential(layer), x, exact=mode == "nearest")
                checked += 1
    assert checked > 150
