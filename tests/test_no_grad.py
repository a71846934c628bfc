"""``no_grad()``: forwards that skip what only a backward uses, with the same outputs."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import im2col_net
from im2col_net.functional import pool as P
from im2col_net.layers import (
    Conv2D,
    Flatten,
    Linear,
    MaxPool2D,
    ReLU,
    Sequential,
    grad_enabled,
    no_grad,
)
from im2col_net.training import evaluate, predict_proba


def _images(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _net(strategy="fft"):
    rng = np.random.default_rng(3)
    return Sequential(Conv2D(1, 4, 3, padding=1, rng=rng, strategy=strategy), ReLU(),
                      MaxPool2D(2), Conv2D(4, 6, 3, padding=1, rng=rng, strategy=strategy),
                      ReLU(), MaxPool2D(2), Flatten(), Linear(6 * 3 * 3, 5, rng=rng))


def test_the_flag_nests_and_is_restored_after_an_error():
    assert grad_enabled()
    with pytest.raises(KeyError):
        with im2col_net.no_grad():
            assert not grad_enabled()
            with no_grad():
                assert not grad_enabled()
            assert not grad_enabled()
            raise KeyError("inside")
    assert grad_enabled()


@pytest.mark.parametrize("strategy", ["fft", "im2col", "rows"])
def test_a_model_gives_the_same_bits_and_refuses_a_backward(strategy):
    model = _net(strategy)
    x = _images((5, 1, 12, 12))
    x[0, 0, 3, 4] = np.nan                # a NaN window takes the NaN path of the maxima
    model.eval()
    expected = model.forward(x)
    with no_grad():
        got = model.forward(x)
    np.testing.assert_array_equal(got, expected)      # NaN in the same places too
    assert np.isnan(got[0]).all() and np.isfinite(got[1:]).all()
    with pytest.raises(RuntimeError, match=r"MaxPool2D.*no_grad\(\)"):
        model.backward(np.ones_like(got))
    # A forward outside no_grad makes the backward work again.
    model.forward(x)
    assert model.backward(np.ones_like(got)).shape == x.shape


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 3), s=st.integers(1, 3), pad=st.integers(0, 1), d=st.integers(1, 2),
       ceil=st.booleans(), size=st.integers(3, 9), seed=st.integers(0, 99))
def test_max_pool_under_no_grad_matches_its_ordinary_forward(k, s, pad, d, ceil, size, seed):
    assume(2 * pad <= k and d * (k - 1) + 1 <= size + 2 * pad)
    layer = MaxPool2D(k, s, pad, dilation=d, ceil_mode=ceil)
    x = _images((2, 3, size, size), seed)
    expected = layer.forward(x)
    with no_grad():
        got = layer.forward(x)
    np.testing.assert_array_equal(got, expected)
    assert layer._cache.argmax is None
    with pytest.raises(RuntimeError, match="no_grad"):
        layer.backward(np.ones_like(got))


def test_return_indices_still_computes_them_under_no_grad():
    layer = MaxPool2D(2, return_indices=True)
    x = _images((2, 3, 6, 6))
    y, indices = layer.forward(x)
    with no_grad():
        y2, indices2 = layer.forward(x)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(indices2, indices)
    assert layer.backward(np.ones_like(y)).shape == x.shape


def test_fused_relu_pool_functional_keeps_nothing_without_for_backward():
    x = _images((3, 4, 8, 8))
    geometry = P.pool_geometry(2)
    y, cache, positive = P.relu_max_pool2d_forward_geom(x, geometry)
    y2, cache2, positive2 = P.relu_max_pool2d_forward_geom(x, geometry, for_backward=False)
    np.testing.assert_array_equal(y2, y)
    assert positive is not None and positive2 is None and cache2.argmax is None
    with pytest.raises(RuntimeError, match="for_backward=False"):
        P.max_pool2d_backward(np.ones_like(y2), cache2)
    with pytest.raises(RuntimeError, match="for_backward=False"):
        P.max_pool2d_indices(cache2)


def test_fft_conv_keeps_no_spectrum_and_its_backward_still_matches():
    layer = Conv2D(3, 4, 3, padding=1, rng=0, strategy="fft")
    x = _images((4, 3, 10, 10))
    dy = _images((4, 4, 10, 10), seed=1)
    y = layer.forward(x)
    assert layer._cache.prepared.x_spectrum is not None
    dx = layer.backward(dy)
    dw = layer.grads["weight"].copy()
    with no_grad():
        y2 = layer.forward(x)
    assert layer._cache.prepared.x_spectrum is None
    np.testing.assert_array_equal(y2, y)
    # The backward transforms the input again: the same bits as with the kept spectrum.
    np.testing.assert_array_equal(layer.backward(dy), dx)
    np.testing.assert_array_equal(layer.grads["weight"], dw)


def test_evaluation_and_prediction_forward_under_no_grad():
    model = _net()
    seen = []
    forward = model.forward
    model.forward = lambda xb: (seen.append(grad_enabled()), forward(xb))[1]
    x = _images((10, 1, 12, 12))
    labels = np.arange(10) % 5
    evaluate(model, x, labels, batch_size=4)
    predict_proba(model, x, batch_size=4)
    assert seen == [False] * 6
    assert grad_enabled()
