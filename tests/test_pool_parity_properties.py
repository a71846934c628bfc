"""Property tests of the torch-parity pooling options against the reference loops and
finite differences: ceil_mode, dilation, divisor_override, count_include_pad, return
indices, adaptive pools, max unpooling and unbatched inputs."""

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from im2col_net import (
    AdaptiveAvgPool2D,
    AdaptiveMaxPool2D,
    AvgPool2D,
    GlobalAvgPool2D,
    MaxPool2D,
    MaxUnpool2D,
)
from im2col_net import reference as ref
from im2col_net.functional import adaptive_pool as A
from im2col_net.testing import (
    arrays,
    assert_close,
    assert_layer_matches_reference,
    assert_passes_gradcheck,
    reference_pair,
    tie_free_arrays,
)

F64 = np.dtype(np.float64)
DTYPES = (np.dtype(np.float32), F64)


@st.composite
def pool_layers(draw, kinds=("max", "avg"), max_size=7):
    """``(layer, input_shape)`` for a windowed pool with every option drawn."""
    kind = draw(st.sampled_from(kinds))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    ceil_mode = draw(st.booleans())
    if kind == "max":
        dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        layer = MaxPool2D(kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    else:
        layer = AvgPool2D(kernel, stride, padding, ceil_mode, draw(st.booleans()),
                          draw(st.sampled_from([None, 1, 2, 5])))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)),
             draw(st.integers(1, max_size)), draw(st.integers(1, max_size)))
    try:
        layer.output_shape(shape)
    except ValueError:
        assume(False)
    return layer, shape


def _real_windows_only(layer, x):
    """Dilated windows can hold padding only (-inf outputs, as torch); keep those out."""
    return np.isfinite(layer.forward(x)).all()


@given(case=pool_layers(), dtype=st.sampled_from(DTYPES), data=st.data())
def test_windowed_pools_match_reference(case, dtype, data):
    layer, shape = case
    x = data.draw(tie_free_arrays(shape, dtype) if isinstance(layer, MaxPool2D)
                  else arrays(shape, dtype, noncontiguous=True))
    assume(_real_windows_only(layer, x))
    y, dx = assert_layer_matches_reference(layer, *reference_pair(layer), x)
    assert y.dtype == dtype and dx.dtype == dtype
    assert y.shape == layer.output_shape(shape)


@given(case=pool_layers(kinds=("max",)), data=st.data())
def test_max_pool_indices_match_reference_with_ties(case, data):
    layer, shape = case
    layer.return_indices = True
    x = data.draw(arrays(shape, F64, kinds=("integers",)))
    y, indices = layer.forward(x)
    assume(np.isfinite(y).all())
    g = layer.geometry
    y_ref, i_ref = ref.max_pool2d_forward(x, g.kernel, g.stride, (g.padding[0], g.padding[2]),
                                          g.dilation, layer.ceil_mode, return_indices=True)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(indices, i_ref)
    assert indices.dtype == np.int64
    # The indices point at the maxima.
    flat = x.reshape(*x.shape[:2], -1)
    np.testing.assert_array_equal(np.take_along_axis(flat, indices.reshape(*x.shape[:2], -1),
                                                     axis=2).reshape(y.shape), y)


@given(case=pool_layers(max_size=5), data=st.data())
def test_windowed_pools_pass_gradcheck(case, data):
    layer, shape = case
    x = data.draw(tie_free_arrays(shape, F64))
    assume(_real_windows_only(layer, x))
    assert_passes_gradcheck(layer, x)


@st.composite
def adaptive_cases(draw, max_size=7):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)),
             draw(st.integers(1, max_size)), draw(st.integers(1, max_size)))
    size = draw(st.one_of(st.integers(1, 9), st.tuples(
        st.one_of(st.none(), st.integers(1, 9)), st.one_of(st.none(), st.integers(1, 9)))))
    return size, shape


@given(case=adaptive_cases(), kind=st.sampled_from(["avg", "max"]),
       dtype=st.sampled_from(DTYPES), data=st.data())
def test_adaptive_pools_match_reference(case, kind, dtype, data):
    size, shape = case
    layer = AdaptiveAvgPool2D(size) if kind == "avg" else AdaptiveMaxPool2D(size)
    x = data.draw(tie_free_arrays(shape, dtype) if kind == "max"
                  else arrays(shape, dtype, noncontiguous=True))
    y, dx = assert_layer_matches_reference(layer, *reference_pair(layer), x)
    assert y.shape == layer.output_shape(shape) and y.dtype == dtype and dx.dtype == dtype


@given(case=adaptive_cases(), data=st.data())
def test_adaptive_max_indices_match_reference_with_ties(case, data):
    size, shape = case
    x = data.draw(arrays(shape, F64, kinds=("integers",)))
    y, indices = AdaptiveMaxPool2D(size, return_indices=True).forward(x)
    y_ref, i_ref = ref.adaptive_max_pool2d_forward(x, size)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(indices, i_ref)
    layer = AdaptiveMaxPool2D(size)
    assert_layer_matches_reference(layer, *reference_pair(layer), x)


@given(case=adaptive_cases(max_size=5), kind=st.sampled_from(["avg", "max"]), data=st.data())
def test_adaptive_pools_pass_gradcheck(case, kind, data):
    size, shape = case
    layer = AdaptiveAvgPool2D(size) if kind == "avg" else AdaptiveMaxPool2D(size)
    assert_passes_gradcheck(layer, data.draw(tie_free_arrays(shape, F64)))


@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 6),
                       st.integers(1, 6)),
       dtype=st.sampled_from(DTYPES), data=st.data())
def test_adaptive_avg_of_one_is_global_avg(shape, dtype, data):
    x = data.draw(arrays(shape, dtype))
    assert_close(AdaptiveAvgPool2D(1).forward(x), GlobalAvgPool2D().forward(x), what="y")


@given(case=pool_layers(kinds=("max",), max_size=6), dtype=st.sampled_from(DTYPES),
       data=st.data())
def test_max_unpool_matches_reference(case, dtype, data):
    pool, shape = case
    g = pool.geometry
    x = data.draw(tie_free_arrays(shape, dtype))
    pool.return_indices = True
    pooled, indices = pool.forward(x)
    assume(np.isfinite(pooled).all())
    unpool = MaxUnpool2D(g.kernel, g.stride, (g.padding[0], g.padding[2]))
    out = (shape[2], shape[3])
    try:
        y = unpool.forward(pooled, indices, output_size=out)
    except ValueError:
        assume(False)  # the input size is not one unpooling may choose (torch's rule)
    np.testing.assert_array_equal(y, ref.max_unpool2d_forward(pooled, indices, out))
    assert y.dtype == dtype
    dy = data.draw(arrays(y.shape, dtype))
    dx = unpool.backward(dy)
    np.testing.assert_array_equal(dx, ref.max_unpool2d_backward(pooled, indices, dy))
    # Unpooling is linear in x: finite differences with the indices fixed. Repeated
    # indices (overlapping windows) make torch's gather backward no adjoint; not here.
    flat = indices.reshape(indices.shape[0] * indices.shape[1], -1)
    if any(len(set(row)) < len(row) for row in flat.tolist()):
        return
    x64 = pooled.astype(np.float64)
    _, cache = A.max_unpool2d_forward(x64, indices, out)
    direction = data.draw(arrays(x64.shape, F64))
    dy64 = dy.astype(np.float64)
    eps = 1e-6
    plus, _ = A.max_unpool2d_forward(x64 + eps * direction, indices, out)
    minus, _ = A.max_unpool2d_forward(x64 - eps * direction, indices, out)
    numeric = ((plus - minus) / (2 * eps) * dy64).sum()
    analytic = (A.max_unpool2d_backward(dy64, cache) * direction).sum()
    assert abs(numeric - analytic) <= 1e-6 * (1 + abs(analytic))


UNBATCHED = [lambda: MaxPool2D(3, 2, 1, ceil_mode=True), lambda: AvgPool2D(2, 1, 1, True, False),
             lambda: AvgPool2D(3, 2, divisor_override=2), lambda: GlobalAvgPool2D(),
             lambda: AdaptiveAvgPool2D((3, None)), lambda: AdaptiveMaxPool2D(2)]


@given(index=st.integers(0, len(UNBATCHED) - 1), dtype=st.sampled_from(DTYPES), data=st.data())
def test_unbatched_inputs_are_one_image_batches(index, dtype, data):
    layer, batched = UNBATCHED[index](), UNBATCHED[index]()
    x = data.draw(tie_free_arrays((2, 5, 6), dtype))
    y = layer.forward(x)
    np.testing.assert_array_equal(y, batched.forward(x[None])[0])
    assert y.shape == layer.output_shape(x.shape)
    dy = data.draw(arrays(y.shape, dtype))
    dx = layer.backward(dy)
    assert dx.shape == x.shape and dx.dtype == dtype
    np.testing.assert_array_equal(dx, batched.backward(dy[None])[0])
    assert_layer_matches_reference(layer, *reference_pair(layer), x)


def _gradcheck_cli(capsys, *argv):
    from im2col_net.app.cli import main

    try:
        code = main(["gradcheck", *argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_gradcheck_cli_lists_and_checks_the_new_pool_options(capsys):
    for argv in (["maxpool2d", "--kernel", "3", "--stride", "2", "--padding", "1",
                  "--dilation", "2", "--ceil-mode", "--size", "7"],
                 ["avgpool2d", "--kernel", "3", "--stride", "2", "--padding", "1",
                  "--ceil-mode", "--divisor-override", "4", "--exclude-pad"],
                 ["adaptiveavgpool2d", "--output-size", "4", "3", "--size", "7", "5"],
                 ["adaptivemaxpool2d", "--output-size", "3", "--size", "7"]):
        code, out, _ = _gradcheck_cli(capsys, *argv, "--reference", "--dtype", "float64")
        assert code == 0, out
        assert "PASSED" in out and "match reference_pair()" in out
    code, _, err = _gradcheck_cli(capsys, "avgpool2d", "--divisor-override", "0")
    assert code == 2
    assert err.startswith("im2col-net: error: AvgPool2D") and "divisor_override" in err
    assert "Traceback" not in err
