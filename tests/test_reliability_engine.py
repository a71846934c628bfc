"""Reliability of the engine: non-finite values stay local in every convolution strategy,
backward refuses gradients of the wrong kind or shape, big-endian input computes, and
constructor errors name the public class."""

import inspect
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import im2col_net.layers as L
from im2col_net.functional import planner
from im2col_net.layers import (
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    ConvTranspose2D,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    LeakyReLU,
    Linear,
    MaxPool2D,
    Parallel,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
)
from im2col_net.layers.activations import ELU

F32 = np.float32
# (N, C, H, W), Cout: with the planner's mode set to "fft" (the fixture below), the
# "auto" strategy takes the FFT path at this size (checked below), so its NaN fallback
# is tested through "auto" as well as through an explicit "fft".
SHAPE, COUT, KERNEL, PAD = (16, 8, 10, 10), 8, 5, 2
STRATEGIES = ("im2col", "rows", "im2col_t", "strided", "fft", "auto")
BAD_VALUES = (np.nan, np.inf, -np.inf)


@pytest.fixture(autouse=True)
def _auto_means_fft():
    with planner.planning("fft"):
        yield


def _conv(strategy, cls=Conv2D, **kwargs):
    if cls is ConvTranspose2D:
        return ConvTranspose2D(SHAPE[1], COUT, KERNEL, padding=PAD, rng=1, **kwargs)
    return Conv2D(SHAPE[1], COUT, KERNEL, padding=PAD, strategy=strategy, rng=1, **kwargs)


def _receptive_mask(layer_cls, position, backward):
    """Exactly where one non-finite value at ``position`` must show: a finite indicator
    (1 there, 0 elsewhere) sent through the same convolution with all-positive weights
    on the im2col path is nonzero exactly in its receptive field."""
    probe = _conv("im2col", layer_cls)
    for name in probe.params:
        probe.params[name][...] = 1 if name == "weight" else 0
    x = np.zeros(SHAPE, F32)
    y = probe.forward(x)
    if not backward:
        x[position] = 1
        return probe.forward(x) != 0
    dy = np.zeros(y.shape, F32)
    dy[position] = 1
    return probe.backward(dy) != 0


def test_auto_takes_the_fft_path_at_the_tested_size():
    layer = _conv("auto")
    layer.forward(np.ones(SHAPE, F32))
    assert layer._cache.strategy == "fft"
    assert layer.plan(SHAPE).algorithm == "fft"


# NaN arithmetic in the worker threads warns there (np.errstate is per thread).
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@given(strategy=st.sampled_from(STRATEGIES), bad=st.sampled_from(BAD_VALUES),
       n=st.integers(0, SHAPE[0] - 1), c=st.integers(0, SHAPE[1] - 1),
       h=st.integers(0, SHAPE[2] - 1), w=st.integers(0, SHAPE[3] - 1))
def test_conv_forward_non_finite_input_stays_in_its_receptive_field(strategy, bad, n, c, h, w):
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(F32)
    x[n, c, h, w] = bad
    with np.errstate(invalid="ignore", over="ignore"):
        y = _conv(strategy).forward(x)
    expected = _receptive_mask(Conv2D, (n, c, h, w), backward=False)
    np.testing.assert_array_equal(~np.isfinite(y), expected)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@given(strategy=st.sampled_from(STRATEGIES), bad=st.sampled_from(BAD_VALUES),
       n=st.integers(0, SHAPE[0] - 1), o=st.integers(0, COUT - 1),
       p=st.integers(0, SHAPE[2] - 1), q=st.integers(0, SHAPE[3] - 1))
def test_conv_backward_non_finite_dy_stays_in_its_receptive_field(strategy, bad, n, o, p, q):
    rng = np.random.default_rng(1)
    layer = _conv(strategy)
    y = layer.forward(rng.standard_normal(SHAPE).astype(F32))
    dy = rng.standard_normal(y.shape).astype(F32)
    dy[n, o, p, q] = bad
    with np.errstate(invalid="ignore", over="ignore"):
        dx = layer.backward(dy)
    np.testing.assert_array_equal(~np.isfinite(dx),
                                  _receptive_mask(Conv2D, (n, o, p, q), backward=True))
    # the weight gradient: exactly the output channel that saw the bad value
    bad_dw = ~np.isfinite(layer.grads["weight"])
    assert bad_dw[o].all() and not np.delete(bad_dw, o, axis=0).any()
    # other images' input gradients are untouched
    assert np.isfinite(np.delete(dx, n, axis=0)).all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("bad", BAD_VALUES)
def test_conv_transpose_keeps_non_finite_values_local(bad):
    rng = np.random.default_rng(2)
    layer = _conv(None, ConvTranspose2D)
    x = rng.standard_normal(SHAPE).astype(F32)
    x[3, 2, 4, 6] = bad
    with np.errstate(invalid="ignore", over="ignore"):
        y = layer.forward(x)
    np.testing.assert_array_equal(~np.isfinite(y),
                                  _receptive_mask(ConvTranspose2D, (3, 2, 4, 6), False))
    layer.forward(np.nan_to_num(x))
    dy = rng.standard_normal(y.shape).astype(F32)
    dy[5, 1, 3, 2] = bad
    with np.errstate(invalid="ignore", over="ignore"):
        dx = layer.backward(dy)
    np.testing.assert_array_equal(~np.isfinite(dx),
                                  _receptive_mask(ConvTranspose2D, (5, 1, 3, 2), True))


def test_finite_data_still_takes_the_fft_path_and_matches_im2col():
    x = np.random.default_rng(3).standard_normal(SHAPE).astype(F32)
    fft, ref = _conv("fft"), _conv("im2col")
    np.testing.assert_allclose(fft.forward(x), ref.forward(x), rtol=1e-4, atol=1e-4)
    assert fft._cache.strategy == "fft"
    x[0, 0, 0, 0] = np.nan
    fft.forward(x)
    assert fft._cache.strategy == "im2col"  # this call only


# --- backward's dy follows forward's input rules -------------------------------------

def _image(shape=(2, 4, 6, 6)):
    return np.random.default_rng(4).standard_normal(shape).astype(F32)


LAYERS = {
    "Conv2D": (lambda: Conv2D(4, 3, 3, rng=0), _image),
    "ConvTranspose2D": (lambda: ConvTranspose2D(4, 3, 3, rng=0), _image),
    "MaxPool2D": (lambda: MaxPool2D(2), _image),
    "AvgPool2D": (lambda: AvgPool2D(2), _image),
    "GlobalAvgPool2D": (GlobalAvgPool2D, _image),
    "Linear": (lambda: Linear(5, 3, rng=0), lambda: _image((2, 5))),
    "ReLU": (ReLU, _image),
    "LeakyReLU": (LeakyReLU, _image),
    "Sigmoid": (Sigmoid, _image),
    "Tanh": (Tanh, _image),
    "ELU": (ELU, _image),
    "Flatten": (Flatten, _image),
    "Dropout": (lambda: Dropout(0.5, rng=0), _image),
    "BatchNorm2D": (lambda: BatchNorm2D(4), _image),
    "BatchNorm1D": (lambda: BatchNorm1D(5), lambda: _image((3, 5))),
    "Sequential": (lambda: Sequential(Conv2D(4, 4, 3, padding=1, rng=0), ReLU(), MaxPool2D(2)),
                   _image),
    "Parallel": (lambda: Parallel(ReLU(), Conv2D(4, 2, 1, rng=0)), _image),
    "Residual": (lambda: Residual(Sequential(Conv2D(4, 4, 3, padding=1, rng=0))), _image),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("kind, fragment", [
    ("complex", "complex dtype"), ("int", "non-float dtype"), ("object", "object dtype"),
    ("float64", "dy dtype float64 does not match forward output dtype float32"),
    ("shape", "backward expected dy of shape"),
])
def test_backward_refuses_dy_of_the_wrong_kind(name, kind, fragment):
    build, make_input = LAYERS[name]
    layer = build()
    y = layer.forward(make_input())
    dy = {"complex": lambda: y.astype(np.complex64) + 1j,
          "int": lambda: np.ones(y.shape, np.int64),
          "object": lambda: np.ones(y.shape).astype(object),
          "float64": lambda: np.ones(y.shape, np.float64),
          "shape": lambda: np.ones((y.shape[0] + 1,) + y.shape[1:], F32)}[kind]()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ComplexWarning: an error instead
        with pytest.raises(ValueError, match=fragment) as info:
            layer.backward(dy)
    assert type(layer).__name__ in str(info.value).split(":")[0] or name in str(info.value)
    # a correct dy still works afterwards, and the gradients are float32
    dx = layer.backward(np.ones(y.shape, F32))
    assert dx.dtype == F32
    assert all(g.dtype == F32 for g in layer.grads.values())


def test_loss_backward_refuses_non_real_dloss():
    loss = SoftmaxCrossEntropy()
    loss.forward(np.zeros((2, 3), F32), np.array([0, 1]))
    for bad in (1 + 1j, object(), np.ones(2), True):
        with pytest.raises(ValueError, match="dloss must be a real number"):
            loss.backward(bad)
    assert loss.backward(2).dtype == F32


def test_big_endian_float32_input_is_accepted_and_stays_float32():
    model = Sequential(Conv2D(4, 4, 3, padding=1, rng=0), ReLU(), MaxPool2D(2), Flatten(),
                       Linear(36, 3, rng=0))
    x = _image()
    expected = model.forward(x)
    y = model.forward(x.astype(">f4"))
    assert y.dtype == F32 and y.dtype.isnative
    np.testing.assert_array_equal(y, expected)
    dx = model.backward(np.ones(y.shape, ">f4"))
    assert dx.dtype == F32
    res = Residual(Sequential(Conv2D(4, 4, 3, padding=1, rng=0)))
    np.testing.assert_array_equal(res.forward(x.astype(">f4")), res.forward(x))


def test_functional_convolutions_accept_big_endian_float32():
    from im2col_net.functional import conv2d_forward
    from im2col_net.functional.conv_transpose import conv_transpose2d_forward

    x = _image()
    w = np.random.default_rng(5).standard_normal((3, 4, 3, 3)).astype(F32)
    y, _ = conv2d_forward(x.astype(">f4"), w.astype(">f4"))
    assert y.dtype == F32
    np.testing.assert_array_equal(y, conv2d_forward(x, w)[0])
    wt = np.ascontiguousarray(w.transpose(1, 0, 2, 3))
    yt, _ = conv_transpose2d_forward(x.astype(">f4"), wt)
    assert yt.dtype == F32
    np.testing.assert_array_equal(yt, conv_transpose2d_forward(x, wt)[0])


def test_dtype_mismatch_message_gives_a_working_conversion():
    layer = Linear(3, 2, rng=0)
    x = np.ones((1, 3), np.float64)
    with pytest.raises(ValueError, match=r"\.astype\(np\.float32\)") as info:
        layer.forward(x)
    assert "model.astype(np.float64)" in str(info.value)
    assert layer.forward(x.astype(np.float32)).dtype == F32  # the advice works


# --- constructor errors name the public class ----------------------------------------

def _public_layer_classes():
    return [getattr(L, name) for name in L.__all__
            if inspect.isclass(getattr(L, name)) and name != "Layer"]


@pytest.mark.parametrize("cls", _public_layer_classes(), ids=lambda cls: cls.__name__)
def test_constructor_errors_name_the_public_class(cls):
    takes_varargs = any(p.kind is p.VAR_POSITIONAL
                        for p in inspect.signature(cls.__init__).parameters.values())
    if not takes_varargs:  # too many positional arguments: Python's own TypeError
        with pytest.raises(TypeError) as info:
            cls(*range(1, 14))
        assert str(info.value).startswith(f"{cls.__name__}.__init__()")
    with pytest.raises(TypeError) as info:
        cls(no_such_argument=1)
    assert str(info.value).startswith(f"{cls.__name__}.__init__()")


BAD_ARGUMENTS = [
    (Conv2D, dict(in_channels=0, out_channels=2, kernel_size=3)),
    (Conv2D, dict(in_channels=2, out_channels=2, kernel_size=10**30)),
    (Conv2D, dict(in_channels=2, out_channels=2, kernel_size=3, padding_mode=[])),
    (ConvTranspose2D, dict(in_channels=2, out_channels=10**30, kernel_size=3)),
    (Linear, dict(in_features=10**30, out_features=2)),
    (MaxPool2D, dict(kernel_size=0)),
    (AvgPool2D, dict(kernel_size=2, stride=-1)),
    (BatchNorm1D, dict(num_features=10**30)),
    (BatchNorm2D, dict(num_features=0)),
    (LeakyReLU, dict(negative_slope="x")),
    (ELU, dict(alpha=float("nan"))),
    (Dropout, dict(p=1.5)),
    (Parallel, dict(combine="mul")),
    (Sequential, dict()),
]


@pytest.mark.parametrize("cls, kwargs", BAD_ARGUMENTS, ids=lambda v: getattr(v, "__name__", ""))
def test_bad_argument_values_name_the_public_class(cls, kwargs):
    if cls is Sequential:
        with pytest.raises(ValueError, match=r"^Sequential: item 0 must be a Layer"):
            Sequential(3)
        return
    with pytest.raises(ValueError) as info:
        cls(**kwargs)
    message = str(info.value)
    assert message.startswith(cls.__name__), message
    assert "_Pool2D" not in message and "_BatchNorm" not in message and "Layer." not in message
