"""Padding, upsampling, pixel (un)shuffle, Flatten(start_dim, end_dim) and Unflatten:
against the reference loops (hypothesis), finite differences, PyTorch (forward and
backward over many options), model.npz round trips, summary rows, torch state_dict
naming, dtypes and the errors of every refused option."""

import itertools
import json

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import im2col_net
from im2col_net import (
    CircularPad2D,
    ConstantPad2D,
    Conv2D,
    Flatten,
    Linear,
    PixelShuffle,
    PixelUnshuffle,
    ReflectionPad2D,
    ReLU,
    ReplicationPad2D,
    Sequential,
    Unflatten,
    Upsample,
    UpsamplingBilinear2D,
    UpsamplingNearest2D,
    ZeroPad2D,
)
from im2col_net import reference as ref
from im2col_net.functional import padding as FP
from im2col_net.functional import resample as FR
from im2col_net.interop import load_torch_state_dict, torch_state_keys
from im2col_net.serialization import architecture_to_json, model_from_json
from im2col_net.testing import (
    arrays,
    assert_layer_matches_reference,
    assert_passes_gradcheck,
    reference_pair,
)

DTYPES = st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)])
PAD_CLASSES = {"constant": ZeroPad2D, "reflect": ReflectionPad2D,
               "replicate": ReplicationPad2D, "circular": CircularPad2D}


def rand(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# -- hypothesis: the layers against the reference loops ---------------------------------

@st.composite
def pad_cases(draw):
    mode = draw(st.sampled_from(["constant", "value", "reflect", "replicate", "circular"]))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    limit_h, limit_w = {"reflect": (h - 1, w - 1), "circular": (h, w)}.get(mode, (4, 4))
    quad = (draw(st.integers(0, limit_w)), draw(st.integers(0, limit_w)),
            draw(st.integers(0, limit_h)), draw(st.integers(0, limit_h)))
    padding = quad[0] if len(set(quad)) == 1 and draw(st.booleans()) else quad
    if mode == "value":
        layer = ConstantPad2D(padding, draw(st.sampled_from([0.0, -1.5, 3.25])))
    else:
        layer = PAD_CLASSES[mode](padding)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    return layer, shape


@given(case=pad_cases(), dtype=DTYPES, data=st.data())
def test_padding_layers_match_the_reference(case, dtype, data):
    layer, shape = case
    x = data.draw(arrays(shape, dtype, noncontiguous=True))
    y, dx = assert_layer_matches_reference(layer, *reference_pair(layer), x)
    assert y.shape == layer.output_shape(shape) and dx.shape == shape
    assert y.flags.c_contiguous


@given(mode=st.sampled_from(FP.PAD_MODES), h=st.integers(1, 5), w=st.integers(1, 5),
       dtype=DTYPES, data=st.data())
def test_functional_pad_is_the_same_in_nhwc_and_nchw_and_its_grad_is_the_adjoint(
        mode, h, w, dtype, data):
    limit_h, limit_w = {"reflect": (h - 1, w - 1), "circular": (h, w)}.get(mode, (3, 3))
    quad = (data.draw(st.integers(0, limit_h)), data.draw(st.integers(0, limit_h)),
            data.draw(st.integers(0, limit_w)), data.draw(st.integers(0, limit_w)))
    x = data.draw(arrays((2, 3, h, w), dtype))
    nchw = FP.pad(x, quad, mode, 0.0, layout="NCHW")
    nhwc = FP.pad(x.transpose(0, 2, 3, 1), quad, mode, 0.0, layout="NHWC")
    np.testing.assert_array_equal(nhwc.transpose(0, 3, 1, 2), nchw)
    assert nchw.dtype == dtype and nhwc.dtype == dtype
    dy = data.draw(arrays(nchw.shape, dtype))
    dx_nchw = FP.pad_grad(dy.copy(), quad, mode, layout="NCHW")
    dx_nhwc = FP.pad_grad(np.ascontiguousarray(dy.transpose(0, 2, 3, 1)), quad, mode)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dx_nhwc.transpose(0, 3, 1, 2), dx_nchw, rtol=tol, atol=tol)
    # adjoint: <pad(x), dy> == <x, pad_grad(dy)>
    np.testing.assert_allclose(float(np.vdot(nchw.astype(np.float64), dy)),
                               float(np.vdot(x.astype(np.float64), dx_nchw)), rtol=1e-4,
                               atol=1e-4)


@st.composite
def upsample_cases(draw):
    mode = draw(st.sampled_from(["nearest", "bilinear"]))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    kwargs = {"mode": mode}
    if mode == "bilinear":
        kwargs["align_corners"] = draw(st.sampled_from([None, False, True]))
    if draw(st.booleans()):
        kwargs["size"] = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    else:
        scale = st.one_of(st.sampled_from([0.5, 1.0, 1.5, 2.0, 2.2, 3.0, 1 / 3]),
                          st.floats(0.3, 3.5))
        sh, sw = draw(scale), draw(scale)
        assume(int(np.floor(h * sh)) >= 1 and int(np.floor(w * sw)) >= 1)
        kwargs["scale_factor"] = sh if sh == sw and draw(st.booleans()) else (sh, sw)
        kwargs["recompute_scale_factor"] = draw(st.sampled_from([None, False, True]))
    return Upsample(**kwargs), (draw(st.integers(1, 2)), draw(st.integers(1, 2)), h, w)


@given(case=upsample_cases(), dtype=DTYPES, data=st.data())
def test_upsample_matches_the_reference(case, dtype, data):
    layer, shape = case
    x = data.draw(arrays(shape, dtype, noncontiguous=True))
    y, dx = assert_layer_matches_reference(layer, *reference_pair(layer), x)
    assert y.shape == layer.output_shape(shape) and dx.shape == shape


@given(r=st.integers(1, 3), c=st.integers(1, 2), h=st.integers(1, 3), w=st.integers(1, 3),
       dtype=DTYPES, data=st.data())
def test_pixel_shuffle_and_unshuffle_match_the_reference_and_invert_each_other(
        r, c, h, w, dtype, data):
    shuffle, unshuffle = PixelShuffle(r), PixelUnshuffle(r)
    x = data.draw(arrays((2, c * r * r, h, w), dtype, noncontiguous=True))
    y, _ = assert_layer_matches_reference(shuffle, *reference_pair(shuffle), x)
    back, _ = assert_layer_matches_reference(unshuffle, *reference_pair(unshuffle), y)
    np.testing.assert_array_equal(back, x)


@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=5), data=st.data(),
       dtype=DTYPES)
def test_flatten_and_unflatten_match_the_reference(shape, data, dtype):
    nd = len(shape)
    start = data.draw(st.integers(-nd, nd - 1))
    end = data.draw(st.integers(-nd, nd - 1))
    assume(start % nd <= end % nd)
    flatten = Flatten(start, end)
    x = data.draw(arrays(tuple(shape), dtype, noncontiguous=True))
    y, _ = assert_layer_matches_reference(flatten, *reference_pair(flatten), x)
    assert y.shape == flatten.output_shape(x.shape)
    s, e = start % nd, end % nd
    sizes = list(shape[s:e + 1])
    if data.draw(st.booleans()):
        sizes[data.draw(st.integers(0, len(sizes) - 1))] = -1
    dim = s if data.draw(st.booleans()) else s - y.ndim
    unflatten = Unflatten(dim, tuple(sizes))
    back, _ = assert_layer_matches_reference(unflatten, *reference_pair(unflatten), y)
    np.testing.assert_array_equal(back, x)


# -- finite differences ------------------------------------------------------------------

GRADCHECK_LAYERS = [
    (ZeroPad2D((1, 0, 2, 1)), (2, 2, 3, 4)),
    (ConstantPad2D(1, 2.5), (1, 2, 3, 3)),
    (ReflectionPad2D((3, 1, 2, 0)), (2, 2, 3, 4)),
    (ReplicationPad2D((2, 3, 1, 4)), (1, 2, 3, 2)),
    (CircularPad2D((4, 2, 3, 1)), (2, 2, 3, 4)),
    (Upsample(scale_factor=2), (2, 2, 3, 3)),
    (Upsample(size=(5, 2), mode="nearest"), (1, 2, 3, 4)),
    (Upsample(scale_factor=(1.5, 0.6), mode="bilinear"), (2, 2, 3, 5)),
    (Upsample(size=(7, 4), mode="bilinear", align_corners=True), (1, 2, 3, 3)),
    (UpsamplingBilinear2D(scale_factor=1.7), (1, 2, 3, 3)),
    (PixelShuffle(2), (2, 8, 2, 3)),
    (PixelUnshuffle(2), (2, 2, 4, 2)),
    (Flatten(1, 2), (2, 3, 2, 2)),
    (Unflatten(1, (2, -1)), (2, 6, 2)),
]


@pytest.mark.parametrize("layer,shape", GRADCHECK_LAYERS, ids=lambda v: repr(v))
def test_gradients_pass_finite_differences(layer, shape):
    assert_passes_gradcheck(layer, rand(shape))


# -- PyTorch -----------------------------------------------------------------------------

def torch_step(torch, module, x, dy):
    xt = torch.tensor(x, requires_grad=True)
    yt = module(xt)
    yt.backward(torch.from_numpy(dy))
    return yt.detach().numpy(), xt.grad.numpy()


def compare_with_torch(layer, module, x):
    torch = pytest.importorskip("torch")
    y = layer.forward(x)
    dy = rand(y.shape, x.dtype, 1)
    yt, dxt = torch_step(torch, module, x, dy)
    dx = layer.backward(dy)
    assert y.dtype == x.dtype and dx.dtype == x.dtype
    tol = 1e-10 if x.dtype == np.float64 else 2e-6
    np.testing.assert_allclose(y, yt, rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, dxt, rtol=tol, atol=tol * max(1.0, np.abs(dxt).max()))


TORCH_PADS = [0, 1, 2, (1, 0, 0, 2), (0, 3, 2, 1), (3, 3, 2, 2), (2, 0, 3, 1), (3, 0, 0, 0)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding", TORCH_PADS)
@pytest.mark.parametrize("kind", ["zero", "constant", "reflect", "replicate", "circular"])
def test_padding_matches_torch(kind, padding, dtype):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    ours, theirs = {
        "zero": (ZeroPad2D(padding), nn.ZeroPad2d(padding)),
        "constant": (ConstantPad2D(padding, -0.75), nn.ConstantPad2d(padding, -0.75)),
        "reflect": (ReflectionPad2D(padding), nn.ReflectionPad2d(padding)),
        "replicate": (ReplicationPad2D(padding), nn.ReplicationPad2d(padding)),
        "circular": (CircularPad2D(padding), nn.CircularPad2d(padding)),
    }[kind]
    compare_with_torch(ours, theirs, rand((2, 3, 4, 4), dtype))


@pytest.mark.parametrize("kind", ["reflect", "circular", "replicate"])
def test_padding_limits_are_torchs(kind):
    """Every padding torch accepts on a 3x4 input is accepted here and vice versa."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    x = rand((1, 1, 3, 4))
    layer_cls = PAD_CLASSES[kind]
    for quad in itertools.product(range(6), repeat=4):
        if sum(quad) % 3:  # a third of the grid keeps this fast and covers every edge
            continue
        try:
            F.pad(torch.from_numpy(x), quad, mode=kind)
            accepted = True
        except (RuntimeError, ValueError, NotImplementedError):
            accepted = False
        layer = layer_cls(quad)
        if accepted:
            assert layer.output_shape(x.shape) == layer.forward(x).shape
        else:
            with pytest.raises(ValueError, match=f"{layer_cls.__name__}.*padding"):
                layer.forward(x)


def test_replication_padding_of_an_empty_input_is_refused():
    with pytest.raises(ValueError, match="non-empty input"):
        ReplicationPad2D(1).output_shape((1, 1, 0, 3))


UPSAMPLE_OPTIONS = [
    dict(scale_factor=2), dict(scale_factor=3), dict(scale_factor=0.5), dict(scale_factor=1.5),
    dict(scale_factor=2.2), dict(scale_factor=1.1), dict(scale_factor=(1.7, 2.5)),
    dict(scale_factor=1 / 3), dict(scale_factor=2.5, recompute_scale_factor=True),
    dict(scale_factor=0.7, recompute_scale_factor=False), dict(size=(7, 3)), dict(size=1),
    dict(size=(4, 10)), dict(size=(2, 2)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode,align", [("nearest", None), ("bilinear", None),
                                        ("bilinear", False), ("bilinear", True)])
@pytest.mark.parametrize("options", UPSAMPLE_OPTIONS, ids=str)
def test_upsample_matches_torch(options, mode, align, dtype):
    torch = pytest.importorskip("torch")
    for shape in ((2, 2, 4, 5), (1, 2, 3, 1), (1, 1, 5, 7)):
        if "scale_factor" in options:
            sf = options["scale_factor"]
            sf = sf if isinstance(sf, tuple) else (sf, sf)
            if min(int(np.floor(n * s)) for n, s in zip(shape[2:], sf, strict=True)) < 1:
                continue
        ours = Upsample(mode=mode, align_corners=align, **options)
        theirs = torch.nn.Upsample(mode=mode, align_corners=align, **options)
        compare_with_torch(ours, theirs, rand(shape, dtype))


@given(h=st.integers(1, 8), w=st.integers(1, 8), sh=st.floats(0.2, 4.0), sw=st.floats(0.2, 4.0),
       mode=st.sampled_from(["nearest", "bilinear"]), dtype=DTYPES)
def test_upsample_matches_torch_at_arbitrary_scale_factors(h, w, sh, sw, mode, dtype):
    """Random float scales probe the float32 index arithmetic at rounding boundaries."""
    torch = pytest.importorskip("torch")
    assume(int(np.floor(h * sh)) >= 1 and int(np.floor(w * sw)) >= 1)
    compare_with_torch(Upsample(scale_factor=(sh, sw), mode=mode),
                       torch.nn.Upsample(scale_factor=(sh, sw), mode=mode),
                       rand((1, 2, h, w), dtype))


def test_upsampling_aliases_match_torch():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    x = rand((2, 3, 4, 5))
    compare_with_torch(UpsamplingNearest2D(scale_factor=2), nn.UpsamplingNearest2d(
        scale_factor=2), x)
    compare_with_torch(UpsamplingNearest2D(size=(3, 7)), nn.UpsamplingNearest2d(size=(3, 7)), x)
    compare_with_torch(UpsamplingBilinear2D(scale_factor=1.5), nn.UpsamplingBilinear2d(
        scale_factor=1.5), x)
    compare_with_torch(UpsamplingBilinear2D(size=(9, 2)), nn.UpsamplingBilinear2d(size=(9, 2)), x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("r", [1, 2, 3])
def test_pixel_shuffle_matches_torch(r, dtype):
    torch = pytest.importorskip("torch")
    compare_with_torch(PixelShuffle(r), torch.nn.PixelShuffle(r),
                       rand((2, 2 * r * r, 3, 2), dtype))
    compare_with_torch(PixelUnshuffle(r), torch.nn.PixelUnshuffle(r),
                       rand((2, 3, 2 * r, 3 * r), dtype))


@pytest.mark.parametrize("start,end", [(1, -1), (0, -1), (0, 1), (1, 2), (2, 3), (-2, -1),
                                       (-3, -2), (3, 3), (0, 0)])
def test_flatten_matches_torch(start, end):
    torch = pytest.importorskip("torch")
    compare_with_torch(Flatten(start, end), torch.nn.Flatten(start, end), rand((2, 3, 4, 5)))


@pytest.mark.parametrize("dim,sizes", [(1, (3, 4)), (1, (2, -1, 2)), (-1, (5, 1)),
                                       (-2, (4, 3)), (0, (1, 2)), (2, (5,))])
def test_unflatten_matches_torch(dim, sizes):
    torch = pytest.importorskip("torch")
    compare_with_torch(Unflatten(dim, sizes), torch.nn.Unflatten(dim, sizes), rand((2, 12, 5)))


def test_torch_state_dict_names_line_up_through_parameter_free_layers():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    ours = Sequential(Conv2D(1, 8, 3, rng=0), ReflectionPad2D(1), PixelShuffle(2),
                      Upsample(scale_factor=0.5, mode="bilinear"), CircularPad2D((1, 0, 1, 0)),
                      Conv2D(2, 3, 3, padding=1, rng=1), Flatten(), Linear(3 * 6 * 6, 4, rng=2),
                      Unflatten(1, (2, 2))).astype(np.float64)
    theirs = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReflectionPad2d(1), nn.PixelShuffle(2),
                           nn.Upsample(scale_factor=0.5, mode="bilinear"),
                           nn.CircularPad2d((1, 0, 1, 0)), nn.Conv2d(2, 3, 3, padding=1),
                           nn.Flatten(), nn.Linear(108, 4), nn.Unflatten(1, (2, 2))).double()
    assert torch_state_keys(ours) == list(theirs.state_dict())
    load_torch_state_dict(ours, theirs.state_dict())
    x = rand((2, 1, 5, 5))
    np.testing.assert_allclose(ours.forward(x), theirs(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-10, atol=1e-10)


# -- files, summary, dtypes, NaN ---------------------------------------------------------

def mixed_model(dtype=np.float32):
    return Sequential(
        ZeroPad2D((1, 0, 0, 1)), ConstantPad2D(1, 0.5), Conv2D(1, 8, 3, rng=0),
        ReflectionPad2D(1), ReplicationPad2D((0, 1, 1, 0)), CircularPad2D(2), PixelShuffle(2),
        Upsample(scale_factor=(0.5, 0.75), mode="bilinear", recompute_scale_factor=True),
        UpsamplingNearest2D(size=(8, 8)), UpsamplingBilinear2D(scale_factor=1.25),
        PixelUnshuffle(2), ReLU(), Flatten(2, 3), Unflatten(-1, (5, -1)), Flatten(),
        Linear(8 * 25, 3, rng=1)).astype(dtype)


def test_model_npz_round_trip(tmp_path):
    model = mixed_model()
    x = rand((2, 1, 6, 6), np.float32)
    path = tmp_path / "model.npz"
    im2col_net.save_model(model, path)
    loaded = im2col_net.load_model(path)
    assert architecture_to_json(loaded) == architecture_to_json(model)
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    for a, b in zip(model.layers, loaded.layers, strict=True):
        assert type(a) is type(b) and a.get_config() == json.loads(json.dumps(b.get_config()))


def test_old_flatten_config_still_loads():
    """model.npz files written before start_dim/end_dim saved Flatten with ``{}``."""
    model = model_from_json(json.dumps({"class": "Sequential", "config": {}, "children": [
        {"class": "Flatten", "config": {}}]}))
    (flatten,) = model.layers
    assert (flatten.start_dim, flatten.end_dim) == (1, -1)
    assert repr(flatten) == "Flatten()"
    assert flatten.forward(rand((2, 3, 4))).shape == (2, 12)


def test_summary_rows_use_output_shape():
    model = mixed_model()
    summary = model.summary((1, 6, 6), batch_size=3)
    x = rand((3, 1, 6, 6), np.float32)
    for row, layer in zip(summary.rows, model.layers, strict=True):
        x = layer.forward(x)
        assert row.output_shape == x.shape, row
    assert "PixelShuffle" in str(summary) and "CircularPad2D" in str(summary)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtypes_are_preserved_end_to_end(dtype):
    model = mixed_model(dtype)
    y = model.forward(rand((2, 1, 6, 6), dtype))
    assert y.dtype == dtype
    dx = model.backward(np.ones_like(y))
    assert dx.dtype == dtype and all(g.dtype == dtype for g in model.grads.values())


def test_a_nan_stays_where_it_is_read():
    x = rand((1, 1, 6, 6))
    x[0, 0, 2, 3] = np.nan
    for layer in (Upsample(scale_factor=2), Upsample(scale_factor=1.5, mode="bilinear"),
                  Upsample(size=(4, 4), mode="bilinear", align_corners=True)):
        y = layer.forward(x)
        assert 0 < np.isnan(y).sum() <= 16, layer
        dy = np.zeros_like(y)
        dy[0, 0, 0, 0] = np.nan
        assert np.isnan(layer.backward(dy)).sum() <= 4, layer


def test_backward_refuses_a_wrong_dy():
    for layer, shape in GRADCHECK_LAYERS:
        y = layer.forward(rand(shape, np.float32))
        with pytest.raises(ValueError, match="does not match forward output dtype"):
            layer.backward(np.ones(y.shape, np.float64))
        with pytest.raises(ValueError, match="backward expected dy of shape"):
            layer.backward(np.ones((y.shape[0] + 1,) + y.shape[1:], np.float32))
        assert layer.backward(np.ones(y.shape, np.float32)).dtype == np.float32


def test_functional_nchw_circular_pad_leaves_dy_alone():
    dy = rand((1, 2, 5, 6))
    before = dy.copy()
    _, cache = FP.pad2d_forward(rand((1, 2, 3, 4)), (1, 1, 1, 1), "circular")
    FP.pad2d_backward(dy, cache)
    np.testing.assert_array_equal(dy, before)


def test_nearest_index_rule_is_torchs_in_float32():
    # 1/3 in float32 times 3 is just above 1: torch reads row 1, not 0.
    np.testing.assert_array_equal(FR.nearest_source_index(2, 6, 3.0), [0, 0, 0, 1, 1, 1])
    # out == 2 * in: torch's shortcut dst // 2 even though the scale is 2.2.
    np.testing.assert_array_equal(FR.nearest_source_index(2, 4, 2.2), [0, 0, 1, 1])
    # out == in: the identity, whatever the scale.
    np.testing.assert_array_equal(FR.nearest_source_index(5, 5, 1.1), np.arange(5))
    i0, i1, w0, w1 = FR.linear_source_weights(3, 6, False, None, np.float64)
    np.testing.assert_array_equal(i0, [0, 0, 0, 1, 1, 2])
    np.testing.assert_allclose(w1[:3], [0.0, 0.25, 0.75])


# -- errors --------------------------------------------------------------------------------

ERRORS = [
    (lambda: ZeroPad2D(-1), "ZeroPad2D: padding must be >= 0"),
    (lambda: ZeroPad2D((1, 2)), r"ZeroPad2D: padding must be an int or a 4-tuple"),
    (lambda: ReflectionPad2D(1.5), "ReflectionPad2D: padding must be an int"),
    (lambda: CircularPad2D(True), "CircularPad2D: padding must be an int"),
    (lambda: ConstantPad2D(1, "x"), "ConstantPad2D: value must be a real number"),
    (lambda: ReflectionPad2D(2).forward(np.zeros((1, 1, 2, 5))), "must be smaller than"),
    (lambda: CircularPad2D((0, 0, 3, 0)).forward(np.zeros((1, 1, 2, 5))), "wrap around"),
    (lambda: ZeroPad2D(1).forward(np.zeros((2, 3, 3))), "expected a 4-D input"),
    (lambda: Upsample(), "exactly one of size and scale_factor"),
    (lambda: Upsample(size=2, scale_factor=2), "exactly one of size and scale_factor"),
    (lambda: Upsample(scale_factor=2, mode="bicubic"), "mode 'bicubic' is not supported"),
    (lambda: Upsample(scale_factor=2, mode="area"), "mode 'area' is not supported"),
    (lambda: Upsample(scale_factor=2, mode="cubic"), "mode must be one of"),
    (lambda: Upsample(scale_factor=2, align_corners=True), "align_corners can only be set"),
    (lambda: Upsample(scale_factor=0), "scale_factor must be a positive finite number"),
    (lambda: Upsample(scale_factor=float("inf")), "scale_factor must be a positive"),
    (lambda: Upsample(scale_factor=(1, 2, 3)), "scale_factor must be"),
    (lambda: Upsample(size=(2, 0)), "size must be a positive int"),
    (lambda: Upsample(size=(2, 3, 4)), "size must be an int or a pair"),
    (lambda: Upsample(size=3, recompute_scale_factor=True), "not meaningful with an explicit"),
    (lambda: Upsample(scale_factor=2, recompute_scale_factor="yes"),
     "recompute_scale_factor must be"),
    (lambda: Upsample(scale_factor=0.2).forward(np.zeros((1, 1, 3, 3))),
     "sizes must be positive"),
    (lambda: PixelShuffle(0), "PixelShuffle: upscale_factor must be a positive int"),
    (lambda: PixelUnshuffle(2.0), "PixelUnshuffle: downscale_factor must be a positive int"),
    (lambda: PixelShuffle(2).forward(np.zeros((1, 6, 2, 2))), "not divisible by"),
    (lambda: PixelUnshuffle(2).forward(np.zeros((1, 1, 4, 3))), "not divisible by"),
    (lambda: Flatten(1.0), "Flatten: start_dim must be an int"),
    (lambda: Flatten(2, 1).forward(np.zeros((2, 3, 4))), "comes after end_dim"),
    (lambda: Flatten(0, 3).forward(np.zeros((2, 3, 4))), "axes 0 and 3"),
    (lambda: Flatten().forward(np.zeros(3)), "batch axis"),
    (lambda: Unflatten(1, ()), "Unflatten: unflattened_size must be a non-empty tuple"),
    (lambda: Unflatten(1, (-1, -1)), "at most one -1"),
    (lambda: Unflatten(1, (2, 0)), "positive ints"),
    (lambda: Unflatten(1, (5, 2)).forward(np.zeros((2, 12))), "does not match"),
    (lambda: Unflatten(1, (5, -1)).forward(np.zeros((2, 12))), "does not match"),
    (lambda: Unflatten(3, (1,)).forward(np.zeros((2, 12))), "with axis 3"),
    (lambda: FP.pad(np.zeros((1, 2, 2, 1)), (0, 0, 0, 0), "wrap"), "mode must be one of"),
    (lambda: FP.pad(np.zeros((1, 2, 2, 1)), (0, 0, 0, 0), layout="CHWN"), "layout must be"),
]


@pytest.mark.parametrize("make,fragment", ERRORS, ids=[e[1] for e in ERRORS])
def test_refused_options_raise_clear_errors(make, fragment):
    with pytest.raises(ValueError, match=fragment):
        make()


def test_output_shape_refuses_what_forward_refuses():
    for layer, shape in [(ReflectionPad2D(3), (1, 1, 3, 5)), (PixelShuffle(2), (1, 3, 2, 2)),
                         (Upsample(size=2), (1, 2, 3)), (Unflatten(1, (7,)), (2, 6))]:
        with pytest.raises(ValueError, match=type(layer).__name__):
            layer.output_shape(shape)
        with pytest.raises(ValueError, match=type(layer).__name__):
            layer.forward(np.zeros(shape))


def test_reference_functions_are_exported():
    for name in ("pad2d_torch", "pad2d_torch_backward", "upsample_forward", "upsample_backward",
                 "pixel_shuffle", "pixel_unshuffle", "flatten", "unflatten"):
        assert name in ref.__all__ and callable(getattr(ref, name))


@pytest.mark.parametrize("argv", [
    ["circularpad2d", "--padding", "1", "2", "3", "4", "--size", "4", "5"],
    ["reflectionpad2d", "--padding", "2", "1"],
    ["constantpad2d", "--padding", "1", "--pad-value", "2.5"],
    ["upsample", "--scale-factor", "1.5", "0.7", "--upsample-mode", "bilinear"],
    ["upsample", "--upsample-mode", "bilinear", "--align-corners", "--dtype", "float64"],
    ["pixelshuffle", "--channels", "8", "--factor", "2"],
    ["pixelunshuffle", "--size", "6", "--factor", "3"],
    ["flatten", "--start-dim", "2", "--end-dim", "3"],
    ["unflatten"],
])
def test_gradcheck_cli_checks_the_new_layers(capsys, argv):
    from im2col_net.app.cli import main

    code = main(["gradcheck", *argv, "--batch", "1", "--channels",
                 argv[argv.index("--channels") + 1] if "--channels" in argv else "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASSED" in out


@pytest.mark.parametrize("argv,fragment", [
    (["circularpad2d", "--padding", "same"], "not supported by padding layers"),
    (["reflectionpad2d", "--padding", "9"], "must be smaller than the input"),
    (["upsample", "--align-corners"], "--align-corners needs --upsample-mode bilinear"),
    (["upsample", "--scale-factor", "0"], "--scale-factor takes 1 or 2 positive numbers"),
    (["pixelshuffle", "--factor", "0"], "--factor must be a positive int"),
])
def test_gradcheck_cli_refuses_bad_options(capsys, argv, fragment):
    from im2col_net.app.cli import main

    with pytest.raises(SystemExit) as info:
        main(["gradcheck", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("im2col-net: error:") and fragment in err
