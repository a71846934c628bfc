"""Property tests of Linear, the activations, Flatten, Dropout, SoftmaxCrossEntropy and
Sequential against the reference loops and their defining properties."""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from im2col_net import (
    Conv2D,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    MaxPool2D,
    ReLU,
    Sequential,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
)
from im2col_net import reference as ref
from im2col_net.testing import (
    arrays,
    assert_close,
    assert_layer_matches_reference,
    assert_passes_gradcheck,
    away_from_zero,
    reference_pair,
)

DTYPES = st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)])
SHAPES = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


@given(n=st.integers(1, 4), fan_in=st.integers(1, 6), fan_out=st.integers(1, 6),
       bias=st.booleans(), dtype=DTYPES, data=st.data())
def test_linear_matches_reference(n, fan_in, fan_out, bias, dtype, data):
    layer = Linear(fan_in, fan_out, bias=bias, dtype=dtype, rng=data.draw(st.integers(0, 99)))
    if bias:
        layer.params["bias"][...] = data.draw(arrays((fan_out,), dtype))
    x = data.draw(arrays((n, fan_in), dtype, noncontiguous=True))
    assert_layer_matches_reference(layer, *reference_pair(layer), x)


@given(n=st.integers(1, 3), fan_in=st.integers(1, 4), fan_out=st.integers(1, 4),
       data=st.data())
def test_linear_passes_gradcheck(n, fan_in, fan_out, data):
    layer = Linear(fan_in, fan_out, dtype=np.float64, rng=0)
    assert_passes_gradcheck(layer, data.draw(arrays((n, fan_in), np.float64)))


ACTIVATIONS = [ReLU, lambda: LeakyReLU(0.1), LeakyReLU, Sigmoid, Tanh]


@pytest.mark.parametrize("make", ACTIVATIONS, ids=["relu", "leaky0.1", "leaky", "sigmoid",
                                                   "tanh"])
@given(shape=SHAPES, dtype=DTYPES, data=st.data())
def test_activation_matches_reference(make, shape, dtype, data):
    layer = make()
    # Inputs include exact zeros ("sparse", "integers"); at 0 both sides use the slope of
    # the x <= 0 branch (0 for ReLU, negative_slope for LeakyReLU).
    x = data.draw(arrays(shape, dtype, scale=4.0, noncontiguous=True))
    y, dx = assert_layer_matches_reference(layer, *reference_pair(layer), x)
    assert y.shape == x.shape and dx.shape == x.shape


@pytest.mark.parametrize("make", ACTIVATIONS, ids=["relu", "leaky0.1", "leaky", "sigmoid",
                                                   "tanh"])
@given(shape=SHAPES, data=st.data())
def test_activation_passes_gradcheck(make, shape, data):
    # Away from 0 by far more than eps: the ReLU kink is never straddled.
    x = data.draw(away_from_zero(shape, np.float64, margin=0.01, scale=3.0))
    assert_passes_gradcheck(make(), x)


def test_sigmoid_is_stable_for_huge_inputs():
    x = np.array([-1e4, -800.0, -50.0, 0.0, 50.0, 800.0, 1e4], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow in exp would raise here
        y = Sigmoid().forward(x)
    assert y.dtype == np.float32
    assert np.all(np.isfinite(y)) and y[0] == 0.0 and y[-1] == 1.0 and y[3] == 0.5
    assert np.all(np.diff(y) >= 0)


@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple), dtype=DTYPES,
       data=st.data())
def test_flatten_matches_reference(shape, dtype, data):
    layer = Flatten()
    x = data.draw(arrays(shape, dtype, noncontiguous=True))
    y, dx = assert_layer_matches_reference(layer, *reference_pair(layer), x)
    assert y.shape == (shape[0], int(np.prod(shape[1:])))
    np.testing.assert_array_equal(layer.backward(y), x)


# ---- Dropout ----------------------------------------------------------------------------


@given(p=st.sampled_from([0.1, 0.5, 0.9]), dtype=DTYPES, data=st.data())
def test_dropout_inverted_scaling(p, dtype, data):
    x = data.draw(away_from_zero((4, 50), dtype))
    layer = Dropout(p, rng=data.draw(st.integers(0, 2**16)))
    y = layer.forward(x)
    assert y.dtype == dtype
    kept = y != 0
    scale = np.asarray(1 / (1 - p), dtype)
    # Kept elements are scaled by exactly 1/(1-p) (in the input's dtype), the rest are 0.
    np.testing.assert_array_equal(y[kept], (x * scale)[kept])
    dy = data.draw(arrays(x.shape, dtype))
    dx = layer.backward(dy)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx, np.where(kept, dy * scale, np.zeros((), dtype)))


def test_dropout_seeded_reproducibility():
    x = np.ones((8, 16))
    a, b = Dropout(0.5, rng=7), Dropout(0.5, rng=7)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    np.testing.assert_array_equal(a.forward(x), b.forward(x))  # the streams stay in step
    c = Dropout(0.5, rng=8)
    assert not np.array_equal(Dropout(0.5, rng=7).forward(x), c.forward(x))


def test_dropout_eval_is_identity():
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    layer = Dropout(0.7, rng=0).eval()
    y = layer.forward(x)
    np.testing.assert_array_equal(y, x)
    dy = np.ones_like(x)
    np.testing.assert_array_equal(layer.backward(dy), dy)
    np.testing.assert_array_equal(Dropout(0.0, rng=0).forward(x), x)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_mask_expectation(p):
    """E[y] = x: the keep rate is 1 - p and kept values are scaled by 1/(1-p)."""
    n = 200_000
    y = Dropout(p, rng=123).forward(np.ones(n))
    keep_rate = np.count_nonzero(y) / n
    # Binomial standard deviations: sqrt(p(1-p)/n) for the rate, sqrt(p/((1-p)n)) for the
    # mean of y; allow 5 of them (false alarm odds below 1e-6, and the seed is fixed).
    assert abs(keep_rate - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    assert abs(y.mean() - 1.0) < 5 * np.sqrt(p / ((1 - p) * n))


def test_dropout_passes_gradcheck_with_its_mask():
    x = np.random.default_rng(1).standard_normal((3, 4))
    assert_passes_gradcheck(Dropout(0.5, rng=3), x)


# ---- SoftmaxCrossEntropy ----------------------------------------------------------------


@given(n=st.integers(1, 5), k=st.integers(2, 6), dtype=DTYPES,
       scale=st.sampled_from([1.0, 10.0, 100.0]), data=st.data())
def test_softmax_cross_entropy_matches_reference(n, k, dtype, scale, data):
    logits = data.draw(arrays((n, k), dtype, scale=scale, noncontiguous=True))
    labels = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    loss_fn = SoftmaxCrossEntropy()
    loss = loss_fn.forward(logits, labels)
    assert isinstance(loss, float)
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    expected = ref.softmax_cross_entropy_forward(logits, labels)
    assert loss == pytest.approx(expected, rel=rtol, abs=rtol)
    grad = loss_fn.backward()
    assert_close(grad, ref.softmax_cross_entropy_backward(logits, labels), what="dlogits")
    # softmax rows sum to 1 and the one-hot rows too: each gradient row sums to 0.
    atol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(grad.astype(np.float64).sum(axis=1), 0.0, atol=atol)


def test_softmax_cross_entropy_stable_with_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [5e3, 5e3, 0.0], [-1e30, 0.0, 1e30]])
    labels = np.array([0, 1, 1])
    loss_fn = SoftmaxCrossEntropy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = loss_fn.forward(logits, labels)
        grad = loss_fn.backward()
    # Row 0: ~0, row 1: log 2, row 2: 1e30 (label logit 1e30 below the max).
    assert loss == pytest.approx((0.0 + np.log(2) + 1e30) / 3)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(grad[1], [0.5 / 3, -0.5 / 3, 0.0], atol=1e-12)
    # Shifting every logit of a row by a constant changes nothing.
    shifted = SoftmaxCrossEntropy()
    base = np.array([[1.0, 2.0, 3.0]])
    assert shifted.forward(base + 1e6, np.array([2])) == pytest.approx(
        shifted.forward(base, np.array([2])), abs=1e-9)


def test_softmax_cross_entropy_passes_gradcheck():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((4, 5)) * 3
    labels = np.array([0, 4, 2, 2])

    def loss(z, y):
        return np.asarray(SoftmaxCrossEntropy().forward(z, y))

    def backward(dloss, z, y):
        fn = SoftmaxCrossEntropy()
        fn.forward(z, y)
        return fn.backward(float(dloss)), None

    assert_passes_gradcheck(loss, logits, labels, backward=backward)


# ---- Sequential -------------------------------------------------------------------------


def small_mlp(dtype=np.float64):
    return Sequential(Linear(4, 5, rng=0, dtype=dtype), ReLU(), Linear(5, 3, rng=1, dtype=dtype))


def test_sequential_dotted_names_share_arrays():
    model = Sequential(Conv2D(1, 2, 3, rng=0), ReLU(), MaxPool2D(2), Flatten(),
                       Linear(8, 3, rng=0))
    assert list(model.params) == ["0.weight", "0.bias", "4.weight", "4.bias"]
    assert model.params["4.weight"] is model[4].params["weight"]
    model.forward(np.zeros((1, 1, 6, 6), np.float32))
    model.backward(np.ones((1, 3), np.float32))
    assert list(model.grads) == list(model.params)
    assert model.grads["0.weight"] is model[0].grads["weight"]
    assert [name for name, _ in model.named_parameters()] == list(model.params)


def test_sequential_backward_runs_in_reverse_order():
    calls = []

    class Spy(ReLU):
        def __init__(self, tag):
            super().__init__()
            self.tag = tag

        def forward(self, x):
            calls.append(("forward", self.tag))
            return super().forward(x)

        def backward(self, dy):
            calls.append(("backward", self.tag))
            return super().backward(dy)

    model = Sequential(Spy("a"), Spy("b"), Spy("c"))
    model.forward(np.ones(3))
    model.backward(np.ones(3))
    assert calls == [("forward", "a"), ("forward", "b"), ("forward", "c"),
                     ("backward", "c"), ("backward", "b"), ("backward", "a")]


@given(n=st.integers(1, 4), dtype=DTYPES, data=st.data())
def test_sequential_gradients_match_reference_composition(n, dtype, data):
    model = small_mlp(dtype)
    first, last = model[0], model[2]
    x = data.draw(arrays((n, 4), dtype))
    dy = data.draw(arrays((n, 3), dtype))

    # Reference: compose the forward loops, then chain the backward loops in reverse.
    h = ref.linear_forward(x, first.params["weight"], first.params["bias"])
    a = ref.relu_forward(h)
    y_ref = ref.linear_forward(a, last.params["weight"], last.params["bias"])
    da, dw2, db2 = ref.linear_backward(a, last.params["weight"], dy)
    dh = ref.relu_backward(h, da)
    dx_ref, dw1, db1 = ref.linear_backward(x, first.params["weight"], dh)

    assert_close(model.forward(x), y_ref, what="y")
    assert_close(model.backward(dy), dx_ref, what="dx")
    expected = {"0.weight": dw1, "0.bias": db1, "2.weight": dw2, "2.bias": db2}
    for name, grad in expected.items():
        assert_close(model.grads[name], grad, what=name)


def test_sequential_passes_gradcheck():
    model = Sequential(Conv2D(2, 3, 3, padding=1, dtype=np.float64, rng=0), Tanh(),
                       MaxPool2D(2), Flatten(), Linear(12, 2, dtype=np.float64, rng=1))
    x = np.random.default_rng(2).permutation(2 * 2 * 4 * 4).reshape(2, 2, 4, 4) / 32.0
    report = assert_passes_gradcheck(model, x)
    assert {"input 0", "0.weight", "0.bias", "4.weight", "4.bias"} == set(report.names)
