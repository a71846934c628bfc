"""BatchNorm1D / BatchNorm2D against the reference loops and finite differences: batch and
running statistics, momentum (including the cumulative ``momentum=None``), train/eval,
dtypes and bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from im2col_net import BatchNorm1D, BatchNorm2D
from im2col_net import functional as F
from im2col_net import reference as ref
from im2col_net.testing import (
    arrays,
    assert_close,
    assert_layer_matches_reference,
    assert_passes_gradcheck,
)

DTYPES = (np.float32, np.float64)


@st.composite
def bn_setups(draw, max_batch=4, max_size=4):
    """(layer, input shape): BatchNorm2D on (N, C, H, W) or BatchNorm1D on (N, C[, L]),
    with every constructor option and at least 2 values per channel."""
    kind = draw(st.sampled_from(["2d", "1d", "1d-seq"]))
    channels = draw(st.integers(1, 4))
    n = draw(st.integers(1, max_batch))
    if kind == "2d":
        shape = (n, channels, draw(st.integers(1, max_size)), draw(st.integers(1, max_size)))
    elif kind == "1d":
        shape = (n, channels)
    else:
        shape = (n, channels, draw(st.integers(1, max_size)))
    if np.prod(shape) // channels < 2:
        shape = (2,) + shape[1:]
    options = dict(
        eps=draw(st.sampled_from([1e-5, 1e-3])),
        momentum=draw(st.sampled_from([0.1, 0.5, None])),
        affine=draw(st.booleans()),
        track_running_stats=draw(st.booleans()),
        dtype=draw(st.sampled_from(DTYPES)),
    )
    cls = BatchNorm2D if kind == "2d" else BatchNorm1D
    layer = cls(channels, **options)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if layer.affine:
        layer.params["weight"][...] = rng.uniform(0.5, 1.5, channels)
        layer.params["bias"][...] = rng.uniform(-1, 1, channels)
    if layer.track_running_stats:
        layer.buffers["running_mean"][...] = rng.uniform(-1, 1, channels)
        layer.buffers["running_var"][...] = rng.uniform(0.5, 2, channels)
        layer.buffers["num_batches_tracked"][...] = draw(st.integers(0, 3))
    return layer, shape


def reference_for(layer, running):
    """Reference forward/backward bound to the layer's parameters and the given running
    statistics (copies taken before the layer's forward updates them)."""
    weight, bias = layer.params.get("weight"), layer.params.get("bias")
    mean, var = running

    def forward(x):
        return ref.batch_norm_forward(x, weight, bias, mean, var, training=layer.training,
                                      eps=layer.eps)[0]

    def backward(x, dy):
        dx, dw, db = ref.batch_norm_backward(x, dy, weight, mean, var, training=layer.training,
                                             eps=layer.eps)
        return dx, ({"weight": dw, "bias": db} if layer.affine else {})

    return forward, backward


def running_copy(layer):
    if not layer.track_running_stats:
        return None, None
    return layer.buffers["running_mean"].copy(), layer.buffers["running_var"].copy()


@given(setup=bn_setups(), training=st.booleans(), data=st.data())
def test_layer_matches_reference(setup, training, data):
    layer, shape = setup
    layer.train(training)
    dtype = layer.dtype
    x = data.draw(arrays(shape, dtype, noncontiguous=True))
    running = running_copy(layer)
    tracked = int(layer.buffers["num_batches_tracked"]) if layer.track_running_stats else None
    y, dx = assert_layer_matches_reference(layer, *reference_for(layer, running), x)
    assert y.dtype == dtype and dx.dtype == dtype
    if not layer.track_running_stats:
        assert layer.buffers == {}
        return
    # Running statistics: updated (momentum, unbiased variance) only in training.
    factor = layer.momentum if layer.momentum is not None else 1.0 / (tracked + 1)
    _, mean_ref, var_ref = ref.batch_norm_forward(
        x, None, None, *running, training=training, momentum=factor, eps=layer.eps)
    assert_close(layer.buffers["running_mean"], mean_ref, what="running_mean")
    assert_close(layer.buffers["running_var"], var_ref, what="running_var")
    assert layer.buffers["running_mean"].dtype == dtype
    assert int(layer.buffers["num_batches_tracked"]) == tracked + (1 if training else 0)
    assert layer.buffers["num_batches_tracked"].dtype == np.int64


@given(setup=bn_setups(max_batch=3, max_size=3), training=st.booleans(), data=st.data())
def test_layer_passes_gradcheck(setup, training, data):
    layer, shape = setup
    layer.train(training)
    x = data.draw(arrays(shape, np.float64, kinds=("uniform", "normal")))
    assert_passes_gradcheck(layer, x)


@given(setup=bn_setups(), data=st.data())
def test_functional_matches_reference_and_keeps_layout(setup, data):
    layer, shape = setup
    dtype = layer.dtype
    x = data.draw(arrays(shape, dtype, noncontiguous=True))
    w = data.draw(arrays((shape[1],), dtype))
    b = data.draw(arrays((shape[1],), dtype))
    mean = data.draw(arrays((shape[1],), dtype))
    var = np.abs(data.draw(arrays((shape[1],), dtype))) + np.asarray(0.5, dtype)
    training = data.draw(st.booleans())
    mean_before, var_before = mean.copy(), var.copy()
    y, cache = F.batch_norm_forward(x, mean, var, w, b, training=training, momentum=0.2)
    y_ref, mean_ref, var_ref = ref.batch_norm_forward(x, w, b, mean_before, var_before,
                                                      training=training, momentum=0.2)
    assert_close(y, y_ref, what="y")
    assert_close(mean, mean_ref, what="running_mean (updated in place)")
    assert_close(var, var_ref, what="running_var (updated in place)")
    dy = data.draw(arrays(shape, dtype))
    dy_before = dy.copy()
    dx, dw, db = F.batch_norm_backward(dy, cache)
    np.testing.assert_array_equal(dy, dy_before)
    dx_ref, dw_ref, db_ref = ref.batch_norm_backward(x, dy, w, mean_before, var_before,
                                                     training=training)
    assert_close(dx, dx_ref, what="dx")
    assert_close(dw, dw_ref, what="dweight")
    assert_close(db, db_ref, what="dbias")


def test_nhwc_memory_stays_nhwc():
    # The conv layers hand NCHW views of NHWC memory to the next layer; batch norm
    # must not force a transposing copy (its output keeps the input's layout).
    nhwc = np.random.default_rng(0).standard_normal((2, 5, 6, 3)).astype(np.float32)
    x = nhwc.transpose(0, 3, 1, 2)
    y = BatchNorm2D(3)(x)
    assert y.transpose(0, 2, 3, 1).flags.c_contiguous


def test_momentum_over_several_batches_matches_reference():
    rng = np.random.default_rng(1)
    for momentum in (0.1, None):
        layer = BatchNorm2D(3, momentum=momentum, dtype=np.float64)
        mean, var = np.zeros(3), np.ones(3)
        for step in range(1, 5):
            x = rng.normal(step, step, size=(4, 3, 2, 2))
            layer(x)
            factor = momentum if momentum is not None else 1.0 / step
            _, mean, var = ref.batch_norm_forward(x, None, None, mean, var, momentum=factor)
        assert_close(layer.buffers["running_mean"], mean, what=f"mean, momentum={momentum}")
        assert_close(layer.buffers["running_var"], var, what=f"var, momentum={momentum}")
        assert int(layer.buffers["num_batches_tracked"]) == 4


def test_cumulative_average_is_the_mean_of_batch_statistics():
    rng = np.random.default_rng(2)
    layer = BatchNorm1D(2, momentum=None, dtype=np.float64)
    batches = [rng.normal(3, 2, size=(5, 2)) for _ in range(3)]
    for x in batches:
        layer(x)
    np.testing.assert_allclose(layer.buffers["running_mean"],
                               np.mean([x.mean(axis=0) for x in batches], axis=0), rtol=1e-12)
    np.testing.assert_allclose(layer.buffers["running_var"],
                               np.mean([x.var(axis=0, ddof=1) for x in batches], axis=0),
                               rtol=1e-12)


def test_eval_uses_running_statistics_and_changes_nothing():
    layer = BatchNorm2D(2, dtype=np.float64)
    layer.buffers["running_mean"][...] = [1.0, -2.0]
    layer.buffers["running_var"][...] = [4.0, 0.25]
    layer.params["weight"][...] = [2.0, 3.0]
    layer.params["bias"][...] = [0.5, -0.5]
    layer.eval()
    x = np.random.default_rng(3).standard_normal((3, 2, 2, 2))
    y = layer(x)
    expected = ((x - np.array([1.0, -2.0])[:, None, None])
                / np.sqrt(np.array([4.0, 0.25]) + 1e-5)[:, None, None]
                * np.array([2.0, 3.0])[:, None, None] + np.array([0.5, -0.5])[:, None, None])
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    np.testing.assert_array_equal(layer.buffers["running_mean"], [1.0, -2.0])
    assert int(layer.buffers["num_batches_tracked"]) == 0
    # A single sample is fine in eval mode.
    assert layer(x[:1, :, :1, :1]).shape == (1, 2, 1, 1)


def test_without_running_stats_batch_statistics_are_used_in_eval():
    layer = BatchNorm1D(3, track_running_stats=False, affine=False, dtype=np.float64)
    assert layer.buffers == {} and layer.params == {} and layer.named_buffers() == []
    x = np.random.default_rng(4).standard_normal((6, 3))
    train_y = layer(x)
    layer.eval()
    np.testing.assert_allclose(layer(x), train_y, rtol=1e-12)
    np.testing.assert_allclose(train_y.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(train_y.var(axis=0), 1 / (1 + 1e-5 / x.var(axis=0)), rtol=1e-9)


def test_float32_stays_float32():
    layer = BatchNorm2D(3)
    x = np.random.default_rng(5).standard_normal((2, 3, 4, 4)).astype(np.float32)
    for training in (True, False):
        layer.train(training)
        y = layer(x)
        dx = layer.backward(np.ones_like(y))
        assert y.dtype == dx.dtype == np.float32
        assert layer.grads["weight"].dtype == layer.grads["bias"].dtype == np.float32
        assert layer.buffers["running_mean"].dtype == np.float32
        assert layer.buffers["running_var"].dtype == np.float32
    layer.astype(np.float64)
    assert layer.buffers["running_var"].dtype == np.float64 and layer.dtype == np.float64
    assert layer.buffers["num_batches_tracked"].dtype == np.int64


def test_config_and_names_match_torch():
    layer = BatchNorm2D(4, eps=1e-3, momentum=None, affine=True, track_running_stats=True)
    assert layer.get_config() == dict(num_features=4, eps=1e-3, momentum=None, affine=True,
                                      track_running_stats=True)
    assert BatchNorm2D.from_config(layer.get_config()).get_config() == layer.get_config()
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in layer.named_buffers()] == ["running_mean", "running_var",
                                                     "num_batches_tracked"]
    np.testing.assert_array_equal(layer.params["weight"], np.ones(4, np.float32))
    np.testing.assert_array_equal(layer.buffers["running_var"], np.ones(4, np.float32))


@pytest.mark.parametrize("layer, shape, fragment", [
    (BatchNorm2D(3), (2, 4, 5, 5), "(N, 3, H, W)"),
    (BatchNorm2D(3), (2, 3, 5), "(N, 3, H, W)"),
    (BatchNorm1D(3), (2, 3, 4, 4), "(N, 3) or (N, 3, L)"),
    (BatchNorm1D(3), (2, 5), "(N, 3) or (N, 3, L)"),
])
def test_wrong_input_shape_names_layer_and_shapes(layer, shape, fragment):
    with pytest.raises(ValueError, match="BatchNorm") as info:
        layer(np.zeros(shape, np.float32))
    assert fragment in str(info.value) and str(shape) in str(info.value)


def test_single_value_per_channel_in_training_is_rejected_without_side_effects():
    layer = BatchNorm2D(2)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer(np.ones((1, 2, 1, 1), np.float32))
    assert int(layer.buffers["num_batches_tracked"]) == 0
    np.testing.assert_array_equal(layer.buffers["running_mean"], 0)


def test_dtype_mismatch_and_call_order():
    layer = BatchNorm1D(2)
    with pytest.raises(ValueError, match="dtype float64 does not match"):
        layer(np.zeros((3, 2)))
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward"):
        BatchNorm1D(2).backward(np.zeros((3, 2), np.float32))
    layer(np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"expected dy of shape \(3, 2\)"):
        layer.backward(np.zeros((3, 3), np.float32))


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(num_features=0), "num_features must be a positive int"),
    (dict(num_features=2.5), "num_features must be a positive int"),
    (dict(num_features=2, eps=0), "eps must be a positive number"),
    (dict(num_features=2, momentum=1.5), "momentum must be in"),
    (dict(num_features=2, dtype=np.int32), "floating-point dtype"),
    (dict(num_features=2, eps="small"), "eps must be a positive number"),
    (dict(num_features=2, momentum=True), "momentum must be in"),
])
def test_bad_constructor_arguments(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        BatchNorm2D(**kwargs)


def test_functional_rejects_mismatched_statistics():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="expected weight of shape \\(3,\\)"):
        F.batch_norm_forward(x, None, None, np.ones(2, np.float32), training=True)
    with pytest.raises(ValueError, match="running_mean of shape \\(3,\\) and dtype float32"):
        F.batch_norm_forward(x, running_mean=np.zeros(3), running_var=np.ones(3))
    with pytest.raises(ValueError, match="both running_mean and running_var"):
        F.batch_norm_forward(x, running_mean=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="must be given in evaluation mode"):
        F.batch_norm_forward(x, None, None)
