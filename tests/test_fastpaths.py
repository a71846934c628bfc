"""Every shortcut of the fast path against the plain path, the reference loops or torch.

Covered: batch blocks run on several threads (forced thread counts, tiny blocks so that
many blocks run), scratch buffers reused across calls with different shapes, the
row-run col2im, the BLAS-split matmul, the Horner argmax of max pooling, the FFT
strategy and the "auto" choice, the fused ReLU + max-pool inside Sequential, and the
first layer without input gradient.
"""

from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from im2col_net import Conv2D, Flatten, Linear, MaxPool2D, ReLU, Sequential, lowering, runtime
from im2col_net import functional as F
from im2col_net import reference as ref
from im2col_net.functional import conv as conv_ops
from im2col_net.functional import conv_algorithms, planner
from im2col_net.functional import pool as pool_ops
from im2col_net.functional.conv_algorithms import fft as fft_algorithm
from im2col_net.geometry import WindowGeometry
from im2col_net.runtime import threads as runtime_threads
from im2col_net.testing import arrays, assert_close, conv2d_configs, pool2d_configs

F64 = np.dtype(np.float64)


@contextmanager
def tiny_blocks(workers):
    """``workers`` threads, one image (or FFT frequency) per block (up to the block cap),
    tiny element-wise and GEMM blocks: every block path runs, many times."""
    with pytest.MonkeyPatch.context() as patch, runtime_threads.forced_workers(workers):
        for name in conv_algorithms.DEFAULT_BLOCK_BYTES:
            patch.setitem(conv_algorithms.DEFAULT_BLOCK_BYTES, name, 1)
        patch.setattr(fft_algorithm, "FREQ_BLOCK_BYTES", 1)
        planner.reset()      # no plan made with the usual block sizes
        patch.setattr(pool_ops, "BLOCK_BYTES", 1)
        patch.setattr(pool_ops, "SERIAL_BYTES", 0)
        patch.setattr(runtime_threads, "ROW_BLOCK_BYTES", 1)
        patch.setattr(runtime_threads, "SMALL_JOB_BYTES", 0)
        patch.setattr(runtime_threads, "SMALL_GEMM", 0)
        patch.setattr(runtime_threads, "MIN_GEMM_SPLIT", 1)
        patch.setattr(runtime_threads, "MATMUL_BLOCKS", 16)
        yield
    planner.reset()


def conv_all(x, w, b, dy, kwargs):
    y, cache = F.conv2d_forward(x, w, b, **kwargs)
    return (y,) + F.conv2d_backward(dy, cache)


# -- blocks on threads -------------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 3])
@given(config=conv2d_configs(max_batch=5), data=st.data())
def test_blocked_conv_matches_reference(workers, config, data):
    x = data.draw(arrays(config.input_shape, config.dtype, noncontiguous=True))
    w = data.draw(arrays(config.weight_shape, config.dtype))
    b = data.draw(arrays((config.out_channels,), config.dtype)) if config.bias else None
    dy = data.draw(arrays(config.output_shape, config.dtype, noncontiguous=True))
    with tiny_blocks(workers):
        y, dx, dw, db = conv_all(x, w, b, dy, config.functional_kwargs())
    assert_close(y, ref.conv2d_forward(x, w, b, **config.reference_kwargs()), what="y")
    dx_ref, dw_ref, db_ref = ref.conv2d_backward(x, w, dy, bias=config.bias,
                                                 **config.reference_kwargs())
    assert_close(dx, dx_ref, what="dx")
    assert_close(dw, dw_ref, what="dw")
    if config.bias:
        assert_close(db, db_ref, what="db")


@given(config=conv2d_configs(max_batch=5, dtypes=(np.dtype(np.float32),),
                             strategies=("im2col", "strided", "auto")), data=st.data())
def test_thread_count_does_not_change_conv_results(config, data):
    """Blocks and reduction chains do not depend on the thread count: bit-identical."""
    _assert_same_on_any_thread_count(config, data)


def _assert_same_on_any_thread_count(config, data, worker_counts=(1, 2, 4)):
    x = data.draw(arrays(config.input_shape, config.dtype))
    w = data.draw(arrays(config.weight_shape, config.dtype))
    b = data.draw(arrays((config.out_channels,), config.dtype)) if config.bias else None
    dy = data.draw(arrays(config.output_shape, config.dtype))
    results = []
    for workers in worker_counts:
        with tiny_blocks(workers):
            results.append(conv_all(x, w, b, dy, config.functional_kwargs()))
    for other in results[1:]:
        for a, c, what in zip(results[0], other, ("y", "dx", "dw", "db"), strict=True):
            if a is None:
                assert c is None
            else:
                np.testing.assert_array_equal(c, a, err_msg=what)


@given(config=conv2d_configs(max_batch=5, max_groups=1, dtypes=(np.dtype(np.float32),),
                             strategies=("rows", "im2col_t")), data=st.data())
def test_thread_count_does_not_change_few_channel_results(config, data):
    """The rows and im2col_t algorithms (no groups): bit-identical on 1, 2 and 4 threads."""
    _assert_same_on_any_thread_count(config, data)


@given(config=conv2d_configs(max_batch=5, max_stride=1, max_dilation=1, max_groups=1,
                             strategies=("fft",)), data=st.data())
def test_thread_count_does_not_change_fft_results(config, data):
    _assert_same_on_any_thread_count(config, data, (1, 3))


def test_thread_count_does_not_change_linear_results():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((200, 300)).astype(np.float32)
    w = rng.standard_normal((70, 300)).astype(np.float32)
    dy = rng.standard_normal((200, 70)).astype(np.float32)
    threadpoolctl = pytest.importorskip("threadpoolctl")
    results = []
    for threads in (1, 2, 3):  # BLAS threads: the thread count the engine follows
        with threadpoolctl.threadpool_limits(threads, user_api="blas"):
            y, cache = F.linear_forward(x, w, None)
            results.append((y,) + F.linear_backward(dy, cache)[:2])
    for other in results[1:]:
        for a, c in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(c, a)


@pytest.mark.parametrize("workers", [1, 3])
@given(config=pool2d_configs(max_batch=5), data=st.data())
def test_blocked_pooling_matches_reference(workers, config, data):
    x = data.draw(arrays(config.input_shape, config.dtype, kinds=("integers", "normal")))
    kwargs = config.kwargs()
    with tiny_blocks(workers):
        if config.kind == "max":
            y, cache = F.max_pool2d_forward(x, **kwargs)
            dy = data.draw(arrays(y.shape, config.dtype))
            dx = F.max_pool2d_backward(dy, cache)
        else:
            y, cache = F.avg_pool2d_forward(x, **kwargs)
            dy = data.draw(arrays(y.shape, config.dtype))
            dx = F.avg_pool2d_backward(dy, cache)
    forward = ref.max_pool2d_forward if config.kind == "max" else ref.avg_pool2d_forward
    backward = ref.max_pool2d_backward if config.kind == "max" else ref.avg_pool2d_backward
    assert_close(y, forward(x, **kwargs), what="y")
    assert_close(dx, backward(x, dy, **kwargs), what="dx")


@pytest.mark.parametrize("workers", [1, 3])
def test_blocked_relu_and_linear_match_reference(workers):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 3, 4, 5)).astype(np.float32).transpose(0, 2, 3, 1)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    a = rng.standard_normal((9, 6))
    w = rng.standard_normal((4, 6))
    g = rng.standard_normal((9, 4))
    with tiny_blocks(workers):
        y, cache = F.relu_forward(x)
        dx = F.relu_backward(dy, cache)
        z, lin_cache = F.linear_forward(a, w, None)
        da, dw, _ = F.linear_backward(g, lin_cache)
    assert y.strides == np.empty_like(x).strides  # keeps the input's memory order
    assert_close(y, ref.relu_forward(x), what="relu y")
    assert_close(dx, ref.relu_backward(x, dy), what="relu dx")
    assert_close(z, a @ w.T, what="linear y")
    assert_close(da, g @ w, what="linear dx")
    assert_close(dw, g.T @ a, what="linear dw")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "F", "nhwc view", "strided slice", "negative stride"])
def test_relu_forward_is_np_maximum_bit_for_bit_in_every_layout(dtype, layout):
    # relu_forward compares against runtime.zeros laid out like x, not the scalar 0:
    # same values (NaN kept, -0.0 and infinities as np.maximum gives them), x's layout.
    rng = np.random.default_rng(1)
    base = rng.standard_normal((6, 5, 4, 8)).astype(dtype)
    base.reshape(-1)[:5] = [np.nan, -0.0, 0.0, np.inf, -np.inf]
    x = {"C": base, "F": np.asfortranarray(base),
         "nhwc view": base.transpose(0, 3, 1, 2), "strided slice": base[:, ::2, :, 1::3],
         "negative stride": base[::-1, :, ::-1]}[layout]
    with tiny_blocks(3):
        y, cache = F.relu_forward(x)
    assert cache is x and y.dtype == x.dtype
    assert y.strides == np.empty_like(x).strides
    bits = np.ascontiguousarray(y).view(np.uint8)
    np.testing.assert_array_equal(bits, np.ascontiguousarray(np.maximum(x, 0)).view(np.uint8))


def test_runtime_zeros_is_shared_read_only_and_zero():
    from im2col_net import runtime

    a = runtime.zeros((3, 4), np.float32)
    b = runtime.zeros((70000,), np.float32)  # past the first buffer: a larger one
    assert a.shape == (3, 4) and a.dtype == np.float32 and a.flags.c_contiguous
    assert not a.flags.writeable and not b.flags.writeable
    with pytest.raises(ValueError):
        b[0] = 1.0
    assert not a.any() and not b.any()
    assert runtime.zeros((2,), np.float64).dtype == np.float64


def test_relu_backward_still_accepts_a_boolean_mask():
    x = np.array([[-1.0, 0.0, 2.0]], dtype=np.float32)
    dy = np.array([[5.0, 6.0, 7.0]], dtype=np.float32)
    np.testing.assert_array_equal(F.relu_backward(dy, x > 0), [[0.0, 0.0, 7.0]])
    np.testing.assert_array_equal(F.relu_backward(dy, x), [[0.0, 0.0, 7.0]])


@pytest.mark.parametrize("shape", [(300, 7), (7, 300), (1, 1)])
def test_split_matmul_matches_numpy(shape):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((shape[0], 5))
    b = rng.standard_normal((5, shape[1]))
    with tiny_blocks(3):
        np.testing.assert_allclose(runtime_threads.matmul(a, b), a @ b, rtol=1e-13, atol=1e-13)
        # Transposed (F-ordered) operands, as linear_backward passes them.
        at, bt = np.asfortranarray(a), np.asfortranarray(b)
        np.testing.assert_allclose(runtime_threads.matmul(at, bt), a @ b, rtol=1e-13, atol=1e-13)


def test_run_blocks_reraises_and_nested_regions_run_serially():
    seen = []

    def nested(block, worker):
        inner = []
        runtime_threads.run_blocks(lambda b, w: inner.append(w), 4, workers=3)
        assert inner == [0, 0, 0, 0]  # the region is taken: serial, in this thread
        seen.append(block)

    runtime_threads.run_blocks(nested, 5, workers=2)
    assert sorted(seen) == [0, 1, 2, 3, 4]

    def failing(block, worker):
        if block == 3:
            raise ValueError("block 3 failed")

    with pytest.raises(ValueError, match="block 3 failed"):
        runtime_threads.run_blocks(failing, 6, workers=2)
    # The region lock was released: a new region runs threaded again.
    workers_seen = set()
    runtime_threads.run_blocks(lambda b, w: workers_seen.add(w), 64, workers=2)
    assert workers_seen <= {0, 1}


def test_block_count_is_capped_whatever_the_batch():
    assert runtime_threads.block_count(10**7, 1 << 20, 1) == runtime_threads.MAX_BLOCKS
    assert runtime_threads.block_count(3, 1, 1 << 20) == 3          # at most one per item
    assert runtime_threads.block_count(100, 10, 1 << 20) == runtime_threads.MIN_BLOCKS
    assert runtime_threads.block_count(0, 10, 10) == 0
    # Multiples of BALANCE (equal shares for 1, 2 or 4 threads) when there are enough items.
    for items, item_bytes in ((200, 138_000), (200, 627_000), (1000, 5000), (50, 1 << 20)):
        count = runtime_threads.block_count(items, item_bytes, 2 << 20)
        assert count % runtime_threads.BALANCE == 0 or count == items


@pytest.mark.parametrize("blocks, accumulator_bytes", [(1, 8), (7, 8), (64, 8), (64, 10**7),
                                                       (64, 10**9)])
def test_chains_cover_the_blocks_in_order(blocks, accumulator_bytes):
    parts = runtime_threads.chains(blocks, accumulator_bytes)
    assert [b for part in parts for b in part] == list(range(blocks))
    assert 1 <= len(parts) <= runtime_threads.MAX_CHAINS
    assert len(parts) <= runtime_threads.BALANCE or len(parts) % runtime_threads.BALANCE == 0
    if len(parts) > 1:
        assert len(parts) * accumulator_bytes <= runtime_threads.CHAIN_BYTES


# -- scratch buffers ------------------------------------------------------------------------
def test_scratch_reuse_across_shapes_never_leaks_into_results():
    rng = np.random.default_rng(2)
    shapes = [(4, 3, 9, 9), (1, 3, 4, 4), (6, 3, 12, 7), (4, 3, 9, 9)]
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    kept = []
    for shape in shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        y, cache = F.conv2d_forward(x, w, None, padding=1)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx, dw, _ = F.conv2d_backward(dy, cache)
        kept.append((x, dy, y.copy(), dx.copy(), dw.copy(), y, dx, dw))
    for x, dy, y0, dx0, dw0, y, dx, dw in kept:
        # Later calls reused the scratch buffers; earlier results are untouched ...
        np.testing.assert_array_equal(y, y0)
        np.testing.assert_array_equal(dx, dx0)
        np.testing.assert_array_equal(dw, dw0)
        # ... and right.
        assert_close(y, ref.conv2d_forward(x, w, None, padding=1), what="y")
        dx_ref, dw_ref, _ = ref.conv2d_backward(x, w, dy, padding=1, bias=False)
        assert_close(dx, dx_ref, what="dx")
        assert_close(dw, dw_ref, what="dw")


def test_scratch_hands_out_the_same_memory_per_slot_and_thread():
    a = runtime.scratch("test.slot", (10, 10), np.float32)
    b = runtime.scratch("test.slot", (5, 4), np.float32)
    assert np.shares_memory(a, b) and b.shape == (5, 4) and b.flags.c_contiguous
    c = runtime.scratch("test.slot", (5, 4), np.float64)
    assert not np.shares_memory(a, c)


# -- col2im by row runs ----------------------------------------------------------------------
def col2im_by_offsets(cols, padded_shape, geometry, out_h, out_w):
    """Plain per-offset scatter-add (the general path), written out here."""
    n, _, _, c = padded_shape
    kh, kw = geometry.kernel
    blocks = cols.reshape(n, out_h, out_w, kh, kw, c)
    out = np.zeros(padded_shape, dtype=cols.dtype)
    for i, j, index in lowering.offset_slices(geometry, out_h, out_w):
        out[index] += blocks[:, :, :, i, j, :]
    return out


@given(kernel=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       stride=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       dilation_h=st.integers(1, 2), extra=st.tuples(st.integers(0, 4), st.integers(0, 4)),
       channels=st.integers(1, 3), data=st.data())
def test_row_run_col2im_matches_per_offset_scatter(kernel, stride, dilation_h, extra,
                                                   channels, data):
    geometry = WindowGeometry.make(kernel, stride, 0, (dilation_h, 1))
    hp, wp = geometry.span[0] + extra[0], geometry.span[1] + extra[1]
    out_h, out_w = geometry.output_size(hp, wp)
    padded_shape = (2, hp, wp, channels)
    cols = data.draw(arrays((1, 2 * out_h * out_w, kernel[0] * kernel[1] * channels), F64))
    fast = lowering.col2im(cols, padded_shape, geometry, out_h, out_w)
    np.testing.assert_allclose(fast, col2im_by_offsets(cols, padded_shape, geometry, out_h,
                                                       out_w), rtol=1e-12, atol=1e-12)
    # Writing into a given array overwrites it completely; also into a non-contiguous
    # one (the column slice of a wider buffer).
    target = np.full(padded_shape, np.nan)
    lowering.col2im(cols, padded_shape, geometry, out_h, out_w, out=target)
    np.testing.assert_array_equal(target, fast)
    wide = np.full(padded_shape[:2] + (wp + 3, channels), np.nan)
    lowering.col2im(cols, padded_shape, geometry, out_h, out_w, out=wide[:, :, 1:wp + 1])
    np.testing.assert_array_equal(wide[:, :, 1:wp + 1], fast)
    assert np.isnan(wide[:, :, 0]).all() and np.isnan(wide[:, :, wp + 1:]).all()


# -- max pooling argmax ------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", [1, 2, 3, (1, 4)])
def test_max_pool_first_maximum_with_many_ties(kernel):
    rng = np.random.default_rng(3)
    x = rng.integers(-2, 2, size=(3, 2, 12, 12)).astype(np.float32)  # heavy ties
    y, cache = F.max_pool2d_forward(x, kernel)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    assert_close(y, ref.max_pool2d_forward(x, kernel), what="y")
    assert_close(F.max_pool2d_backward(dy, cache), ref.max_pool2d_backward(x, dy, kernel),
                 what="dx")


# -- fused ReLU + max pooling ----------------------------------------------------------------
def small_net(pool=2, seed=0):
    return Sequential(Conv2D(2, 4, 3, padding=1, rng=seed, dtype=np.float64), ReLU(),
                      MaxPool2D(pool), Flatten(),
                      Linear(4 * (6 // (pool if isinstance(pool, int) else 1)) ** 2, 3,
                             rng=seed, dtype=np.float64))


def run_layer_by_layer(model, x, dy):
    h = x
    for layer in model.layers:
        h = layer.forward(h)
    y = h
    for layer in reversed(model.layers):
        dy = layer.backward(dy)
    return y, dy, {k: v.copy() for k, v in model.grads.items()}


@given(data=st.data())
def test_fused_relu_max_pool_equals_layer_by_layer_exactly(data):
    # Integer-valued inputs: many non-positive windows and ties.
    x = data.draw(arrays((3, 2, 6, 6), F64, kinds=("integers", "normal")))
    model = small_net()
    dy = data.draw(arrays((3, 3), F64))
    y_plain, dx_plain, grads_plain = run_layer_by_layer(model, x, dy)
    y = model.forward(x)
    assert set(model._fused) == {1}  # the ReLU at index 1 ran fused with the pool
    dx = model.backward(dy)
    np.testing.assert_array_equal(y, y_plain)
    np.testing.assert_array_equal(dx, dx_plain)
    for name, grad in model.grads.items():
        np.testing.assert_array_equal(grad, grads_plain[name], err_msg=name)


def test_layers_of_a_fused_pair_still_work_one_by_one():
    rng = np.random.default_rng(4)
    x = rng.integers(-3, 3, size=(2, 2, 6, 6)).astype(np.float64)
    model = small_net()
    model.layers[0].params["weight"][...] = rng.integers(-1, 2, size=(4, 2, 3, 3))
    model.forward(x)
    relu, pool = model.layers[1], model.layers[2]
    h = model.layers[0].forward(x)  # the same conv output the fused pair saw
    dy_pool = rng.standard_normal((2, 4, 3, 3))
    plain_pool, plain_relu = MaxPool2D(2), ReLU()
    plain_pool.forward(plain_relu.forward(h))
    # Each layer alone, so a window routed to another (masked) element would show.
    d_pool = pool.backward(dy_pool)
    np.testing.assert_array_equal(d_pool, plain_pool.backward(dy_pool))
    np.testing.assert_array_equal(relu.backward(d_pool), plain_relu.backward(d_pool))


def test_pair_rerun_by_hand_falls_back_to_layer_by_layer_backward():
    rng = np.random.default_rng(5)
    x, x2 = rng.standard_normal((2, 2, 2, 6, 6))
    dy = rng.standard_normal((2, 3))
    model = small_net()
    model.forward(x)
    h = x2
    for layer in model.layers:  # replaces every cache, the fused pair's included
        h = layer.forward(h)
    dx = model.backward(dy)
    _, dx_ref, grads_ref = run_layer_by_layer(small_net(), x2, dy)
    np.testing.assert_array_equal(dx, dx_ref)
    for name, grad in model.grads.items():
        np.testing.assert_array_equal(grad, grads_ref[name], err_msg=name)


def test_untiled_pools_are_not_fused_and_stay_correct():
    model = Sequential(ReLU(), MaxPool2D(3, stride=2, padding=1))
    rng = np.random.default_rng(6)
    x = rng.integers(-2, 2, size=(2, 3, 7, 7)).astype(np.float64)
    y = model.forward(x)
    assert model._fused == {}
    dy = rng.standard_normal(y.shape)
    dx = model.backward(dy)
    relu_x = ref.relu_forward(x)
    assert_close(y, ref.max_pool2d_forward(relu_x, 3, 2, 1), what="y")
    expected = ref.relu_backward(x, ref.max_pool2d_backward(relu_x, dy, 3, 2, 1))
    assert_close(dx, expected, what="dx")


def test_fused_pair_reports_errors_like_the_layers():
    model = Sequential(ReLU(), MaxPool2D(2))
    with pytest.raises(ValueError, match="MaxPool2D"):
        model.forward(np.zeros((2, 3, 4, 5, 6), dtype=np.float32))  # 5-D: plain path
    with pytest.raises(ValueError, match="MaxPool2D"):
        model.forward(np.zeros((1, 1, 1, 1), dtype=np.float32))  # too small for 2x2
    model.forward(np.ones((1, 1, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="MaxPool2D"):
        model.backward(np.ones((1, 1, 3, 3), dtype=np.float32))


# -- first layer without input gradient -----------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["im2col", "rows", "strided", "fft", "im2col_t"])
def test_first_layer_without_input_gradient_keeps_all_parameter_gradients(algorithm):
    """Under one plan, skipping dx changes no other gradient, bit for bit (the planner
    may pick another algorithm for a layer without dx: the plan key includes it)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 2, 6, 6))
    dy = rng.standard_normal((3, 3))
    full = small_net(seed=1)
    skip = small_net(seed=1)
    skip.layers[0].compute_input_grad = False
    with planner.planning(algorithm):
        full.forward(x)
        skip.forward(x)
        assert skip.layers[0]._cache.strategy == full.layers[0]._cache.strategy
        assert full.backward(dy).shape == x.shape
        assert skip.backward(dy) is None
    for name, grad in full.grads.items():
        np.testing.assert_array_equal(skip.grads[name], grad, err_msg=name)


# -- the FFT strategy and "auto" ------------------------------------------------------------------
fft_configs = conv2d_configs(max_batch=5, max_stride=1, max_dilation=1, max_groups=1,
                             max_kernel=4, strategies=("fft",))


def test_fft_conv_on_a_grid_above_the_matrix_limit_matches_im2col():
    """A real grid past MATRIX_DFT_MAX (a 66x66 image padded to 68x68): scipy.fft's path,
    against the im2col algorithm, forward and both gradients."""
    from im2col_net.functional import conv_fft

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 66, 66))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    assert not conv_fft.uses_matrices((68, 68))
    y, cache = F.conv2d_forward(x, w, b, padding=1, strategy="fft")
    assert cache.strategy == "fft"
    dy = rng.standard_normal(y.shape)
    dx, dw, db = F.conv2d_backward(dy, cache)
    expected = conv_all(x, w, b, dy, dict(padding=1, strategy="im2col"))
    for got, want, what in zip((y, dx, dw, db), expected, ("y", "dx", "dw", "db"),
                               strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, err_msg=what)


@pytest.mark.parametrize("matrix_limit", [None, 0])
@pytest.mark.parametrize("workers", [1, 3])
@given(config=fft_configs, data=st.data())
def test_fft_conv_matches_reference(workers, matrix_limit, config, data):
    """Both transform paths: DFT matrices (the small grids drawn here) and, with the
    matrix limit at 0, scipy.fft with the zero padding built and the split layout
    converted (what grids above MATRIX_DFT_MAX take)."""
    from im2col_net.functional import conv_fft

    x = data.draw(arrays(config.input_shape, config.dtype, noncontiguous=True))
    w = data.draw(arrays(config.weight_shape, config.dtype))
    b = data.draw(arrays((config.out_channels,), config.dtype)) if config.bias else None
    dy = data.draw(arrays(config.output_shape, config.dtype, noncontiguous=True))
    with tiny_blocks(workers), pytest.MonkeyPatch.context() as patch:
        if matrix_limit is not None:
            patch.setattr(conv_fft, "MATRIX_DFT_MAX", matrix_limit)
        y, cache = F.conv2d_forward(x, w, b, **config.functional_kwargs())
        assert cache.strategy == "fft"
        dx, dw, db = F.conv2d_backward(dy, cache)
        again = F.conv2d_backward(dy, cache, need_input_grad=False)  # the cache is reusable
    assert y.dtype == dx.dtype == dw.dtype == config.dtype  # no upcast through complex
    assert_close(y, ref.conv2d_forward(x, w, b, **config.reference_kwargs()), what="y")
    dx_ref, dw_ref, db_ref = ref.conv2d_backward(x, w, dy, bias=config.bias,
                                                 **config.reference_kwargs())
    assert_close(dx, dx_ref, what="dx")
    assert_close(dw, dw_ref, what="dw")
    assert again[0] is None
    np.testing.assert_array_equal(again[1], dw)
    if config.bias:
        assert_close(db, db_ref, what="db")


# (h, w, kernel, padding (top, bottom, left, right), transform grid): the grid is the
# padded size less the smaller pad on each axis, but never below the output or the kernel.
SHORT_GRIDS = [
    ((14, 14), (5, 5), (2, 2, 2, 2), (16, 16)),      # the default model's second conv
    ((7, 9), (3, 2), (1, 2, 1, 1), (9, 10)),         # uneven pads, an odd grid
    ((5, 5), (1, 3), (2, 2, 1, 1), (9, 6)),          # one tap per column: the output bounds
    ((1, 2), (3, 3), (1, 1, 1, 1), (3, 3)),          # the kernel bounds
]


@pytest.mark.parametrize("size, kernel, padding, grid", SHORT_GRIDS)
def test_fft_conv_on_a_grid_shorter_than_the_padded_input(size, kernel, padding, grid):
    """With zero padding the transforms run on a circular grid shorter than the padded
    input (the reads that wrap land on zeros): the grid is as small as claimed and the
    results match the reference loops, on one thread and on three; and whether the
    forward keeps the input's spectrum for the backward or the batch is too large for
    that (the backward transforms it again), the results are the same bit for bit."""
    from im2col_net.functional import conv_fft

    geometry = WindowGeometry.make(kernel, 1, padding, 1)
    out = geometry.output_size(*size)
    problem = conv_algorithms.Problem(2, 3, *size, 4, 1, geometry, *out,
                                      np.dtype(np.float64), True)
    assert fft_algorithm.transform_size(problem) == grid != geometry.padded_size(*size)
    assert conv_fft.uses_matrices(geometry.padded_size(*size))
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, *size))
    w = rng.standard_normal((4, 3, *kernel))
    b = rng.standard_normal(4)
    dy = rng.standard_normal((2, 4, *out))
    want = (ref.conv2d_forward(x, w, b, padding=padding),
            *ref.conv2d_backward(x, w, dy, bias=True, padding=padding))
    results = {}
    for workers, keep in [(1, True), (3, True), (1, False), (3, False)]:
        with tiny_blocks(workers), pytest.MonkeyPatch.context() as patch:
            if not keep:
                patch.setattr(fft_algorithm, "KEEP_SPECTRUM_BYTES", 0)
            y, cache = F.conv2d_forward(x, w, b, padding=padding, strategy="fft")
            assert cache.strategy == "fft"
            assert (cache.prepared.x_spectrum is not None) == keep
            got = (y, *F.conv2d_backward(dy, cache))
        for g, e, what in zip(got, want, ("y", "dx", "dw", "db"), strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-9, err_msg=what)
        results[workers, keep] = got
    for workers in (1, 3):
        for kept, again in zip(results[workers, True], results[workers, False], strict=True):
            np.testing.assert_array_equal(kept, again)


def _split(full):
    """A complex spectrum in conv_fft's split layout (..., 2, C)."""
    return np.stack([full.real, full.imag], axis=-2)


@pytest.mark.parametrize("size", [(5, 6), (6, 5), (7, 7), (18, 18), (1, 2)])
def test_dft_matrix_transforms_match_scipy(size):
    import scipy.fft as sfft

    from im2col_net.functional import conv_fft

    rng = np.random.default_rng(9)
    hp, wp = size
    kh, kw = min(3, hp), min(2, wp)
    taps = rng.standard_normal((kh, kw, 3, 4))
    padded = np.zeros((hp, wp, 3, 4))
    padded[:kh, :kw] = taps
    k = sfft.rfft2(padded, axes=(0, 1)).reshape(-1, 3, 4)
    # The kernel's block matrix [[Kr, -Ki], [Ki, Kr]] of conj(K), per frequency.
    expected = np.block([[k.real, -k.imag], [k.imag, k.real]])
    np.testing.assert_allclose(conv_fft.kernel_matrix(taps, size), expected, atol=1e-12)
    # weight_gradient inverts conj(P), P = (g00 + g11) + i (g01 - g10), at the taps only.
    g = rng.standard_normal((hp * (wp // 2 + 1), 6, 8))
    p = (g[:, :3, :4] + g[:, 3:, 4:]) + 1j * (g[:, :3, 4:] - g[:, 3:, :4])
    full = sfft.irfft2(np.conjugate(p).reshape(hp, -1, 3, 4), s=size, axes=(0, 1))[:kh, :kw]
    np.testing.assert_allclose(conv_fft.weight_gradient(g, size, (kh, kw)), full, atol=1e-12)


@pytest.mark.parametrize("matrices", [True, False])
@pytest.mark.parametrize("grid, block, offset", [
    ((18, 18), (14, 14), (2, 2)), ((7, 9), (4, 6), (3, 1)), ((5, 4), (5, 4), (0, 0)),
    ((6, 7), (2, 3), (0, 4)),
])
def test_split_spectrum_and_inverse_match_scipy(monkeypatch, matrices, grid, block, offset):
    """Both transform paths (DFT matrices and scipy.fft) against scipy's rfft2/irfft2:
    a block placed at an offset in a zero grid, and the inverse at a window of rows and
    columns, also into a strided view of a larger array."""
    import scipy.fft as sfft

    from im2col_net.functional import conv_fft

    monkeypatch.setattr(conv_fft, "MATRIX_DFT_MAX", 64 if matrices else 0)
    assert conv_fft.uses_matrices(grid) is matrices
    rng = np.random.default_rng(sum(grid) + 10 * sum(offset))
    (hp, wp), (h, w) = grid, block
    a = rng.standard_normal((2, h, w, 3))
    padded = np.zeros((2, hp, wp, 3))
    padded[:, offset[0]:offset[0] + h, offset[1]:offset[1] + w] = a
    full = sfft.rfft2(padded, axes=(1, 2))
    np.testing.assert_allclose(conv_fft.spectrum(a, grid, offset), _split(full), atol=1e-12)
    spec = rng.standard_normal(full.shape) + 1j * rng.standard_normal(full.shape)
    rows, cols = slice(hp // 3, hp), slice(1, wp - 1)
    expected = sfft.irfft2(spec, s=grid, axes=(1, 2))[:, rows, cols]
    np.testing.assert_allclose(conv_fft.inverse(_split(spec), wp, rows, cols), expected,
                               atol=1e-12)
    big = np.full((2, hp + 1, wp + 2, 3), 7.0)
    window = big[:, 1:1 + expected.shape[1], 2:2 + expected.shape[2]]
    conv_fft.inverse(_split(spec), wp, rows, cols, out=window)
    np.testing.assert_allclose(window, expected, atol=1e-12)
    outside = np.ones(big.shape, bool)
    outside[:, 1:1 + expected.shape[1], 2:2 + expected.shape[2]] = False
    assert np.all(big[outside] == 7.0)
    # An output that does not reshape to the product's rows as a view (channels not
    # innermost) still receives the result.
    channels_first = np.empty((2, 3) + expected.shape[1:3]).transpose(0, 2, 3, 1)
    conv_fft.inverse(_split(spec), wp, rows, cols, out=channels_first)
    np.testing.assert_allclose(channels_first, expected, atol=1e-12)


def test_split_spectrum_keeps_float32():
    from im2col_net.functional import conv_fft

    a = np.ones((1, 4, 4, 2), np.float32)
    spec = conv_fft.spectrum(a, (6, 6), (1, 1))
    assert spec.dtype == np.float32
    assert conv_fft.inverse(spec, 6, slice(0, 3), slice(0, 3)).dtype == np.float32


@pytest.mark.parametrize("kwargs, message", [
    (dict(stride=2), "stride 1"), (dict(dilation=2), "dilation 1"),
    (dict(groups=2), "groups=1"), (dict(dtype=np.float16), "float32 or float64"),
])
def test_fft_strategy_rejects_what_it_cannot_do(kwargs, message):
    args = dict(in_channels=4, out_channels=4, kernel_size=3, strategy="fft")
    with pytest.raises(ValueError, match=message):
        Conv2D(**args, **kwargs)
    dtype = kwargs.pop("dtype", np.float32)
    x = np.zeros((1, 4, 6, 6), dtype=dtype)
    w = np.zeros((4, 4 // kwargs.get("groups", 1), 3, 3), dtype=dtype)
    with pytest.raises(ValueError, match=f"conv2d: strategy 'fft' needs {message}"):
        F.conv2d_forward(x, w, strategy="fft", **kwargs)


@pytest.mark.parametrize("shape, kwargs, expected", [
    ((16, 32, 14, 14), dict(out=64, kernel=5, padding=2), "fft"),    # the model's conv 2
    ((16, 32, 14, 14), dict(out=64, kernel=5, padding=2, stride=2), "im2col"),  # no FFT
    ((16, 32, 14, 14), dict(out=64, kernel=5, padding=2, dtype=np.float16), "im2col"),
])
def test_auto_runs_the_estimated_plan(shape, kwargs, expected):
    """A Conv2D left at its default ("auto", planner mode "estimate") runs what the cost
    model picks, reports it in the cache, and the layer's plan() agrees."""
    dtype = kwargs.get("dtype", np.float32)
    layer = Conv2D(shape[1], kwargs["out"], kwargs["kernel"], stride=kwargs.get("stride", 1),
                   padding=kwargs["padding"], dtype=dtype, rng=0)
    assert layer.strategy == "auto"
    with planner.planning("estimate"):
        assert layer.plan(shape).algorithm == expected
        layer.forward(np.zeros(shape, dtype=dtype))
        # The earlier API still answers, from the planner.
        assert conv_ops.resolve_strategy("auto", layer.geometry, 1, dtype, shape,
                                         kwargs["out"]) == expected
    assert layer._cache.strategy == expected


# -- against torch --------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
def test_default_model_shapes_match_torch(workers):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    rng = np.random.default_rng(8)
    with runtime_threads.forced_workers(workers):
        for cin, cout, size in ((1, 32, 28), (32, 64, 14)):
            x = rng.standard_normal((6, cin, size, size)).astype(np.float32)
            w = (rng.standard_normal((cout, cin, 5, 5)) * 0.1).astype(np.float32)
            b = rng.standard_normal(cout).astype(np.float32)
            tx = torch.from_numpy(x).requires_grad_()
            tw = torch.from_numpy(w).requires_grad_()
            tb = torch.from_numpy(b).requires_grad_()
            ty = tf.conv2d(tx, tw, tb, padding=2)
            dy = rng.standard_normal(ty.shape).astype(np.float32)
            ty.backward(torch.from_numpy(dy))
            for strategy in ("im2col", "rows", "strided", "fft", "im2col_t", "auto"):
                y, cache = F.conv2d_forward(x, w, b, padding=2, strategy=strategy)
                dx, dw, db = F.conv2d_backward(dy, cache)
                for ours, theirs, what in ((y, ty, "y"), (dx, tx.grad, "dx"),
                                           (dw, tw.grad, "dw"), (db, tb.grad, "db")):
                    assert_close(ours, theirs.detach().numpy(), what=f"{strategy} {what}")
            p, pcache, positive = pool_ops.relu_max_pool2d_forward_geom(
                y, F.pool_geometry(2))
            tp = tf.max_pool2d(tf.relu(torch.from_numpy(y)), 2)
            assert_close(p, tp.numpy(), what="relu+pool")


def test_pool_threads_take_the_callers_floating_point_settings():
    """np.errstate is per thread; a region's pool threads follow the caller's."""
    import warnings

    def task(block, worker):
        np.sqrt(np.array([-1.0]))

    with np.errstate(invalid="raise"), pytest.raises(FloatingPointError):
        runtime.run_blocks(task, 16, workers=2)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("error")
        runtime.run_blocks(task, 16, workers=2)
