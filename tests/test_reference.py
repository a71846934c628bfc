"""The reference loops themselves: tiny hand-computed examples, and torch where available."""

import ast
import pathlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from im2col_net import reference as ref
from im2col_net.testing import arrays, assert_close, conv2d_configs, pool2d_configs

F64 = np.float64


def grid(h, w, dtype=F64):
    """``[[0, 1, 2], [3, 4, 5], ...]`` as a (1, 1, h, w) array."""
    return np.arange(h * w, dtype=dtype).reshape(1, 1, h, w)


def test_reference_imports_nothing_from_the_fast_path():
    """Only numpy, the standard library, sibling reference modules and the pure-arithmetic
    geometry module: an oracle that shared code with the fast path could share its bugs."""
    package = pathlib.Path(ref.__file__).parent
    allowed_internal = {"geometry"}
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 2:
                top = (node.module or "").split(".")[0]
                assert top in allowed_internal, f"{path.name}: from {'.' * node.level}{top}"
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom)
                     and node.level == 0 else [])
            for name in names:
                parts = name.split(".")
                if parts[0] == "im2col_net":
                    assert parts[1:2] in (["geometry"], ["reference"]), f"{path.name}: {name}"


# ---- convolution, by hand ---------------------------------------------------------------


def test_conv_forward_hand_example():
    x = grid(3, 3)
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
    # y[a, b] = x[a, b] - x[a + 1, b + 1] = -4 everywhere.
    np.testing.assert_array_equal(ref.conv2d_forward(x, w), np.full((1, 1, 2, 2), -4.0))
    np.testing.assert_array_equal(ref.conv2d_forward(x, w, np.array([1.0])),
                                  np.full((1, 1, 2, 2), -3.0))
    # A true convolution rotates the kernel: x[a + 1, b + 1] - x[a, b] = +4.
    np.testing.assert_array_equal(ref.conv2d_forward(x, w, flip_kernel=True),
                                  np.full((1, 1, 2, 2), 4.0))


def test_conv_forward_stride_padding_dilation_by_hand():
    x = grid(3, 3)
    ones = np.ones((1, 1, 2, 2))
    # Padded 5x5, windows at rows/cols -1 and 1.
    y = ref.conv2d_forward(x, ones, stride=2, padding=1)
    np.testing.assert_array_equal(y[0, 0], [[0.0, 1 + 2], [3 + 6, 4 + 5 + 7 + 8]])
    # Dilation 2 picks the four corners.
    np.testing.assert_array_equal(ref.conv2d_forward(x, ones, dilation=2), [[[[0 + 2 + 6 + 8]]]])
    # Asymmetric 4-tuple padding (top, bottom, left, right): one zero row on top only.
    y = ref.conv2d_forward(x, np.ones((1, 1, 1, 1)), padding=(1, 0, 0, 0))
    np.testing.assert_array_equal(y[0, 0], [[0, 0, 0], [0, 1, 2], [3, 4, 5], [6, 7, 8]])


def test_conv_same_and_valid_padding_sizes():
    x = np.ones((1, 1, 5, 6))
    for k in (1, 2, 3, 4):
        w = np.ones((1, 1, k, k))
        assert ref.conv2d_forward(x, w, padding="same").shape == (1, 1, 5, 6)
        assert ref.conv2d_forward(x, w, padding="valid").shape == (1, 1, 6 - k, 7 - k)
    # Even kernel: the extra zero row/column goes to the bottom/right (as torch).
    y = ref.conv2d_forward(grid(2, 2), np.ones((1, 1, 2, 2)), padding="same")
    np.testing.assert_array_equal(y[0, 0], [[0 + 1 + 2 + 3, 1 + 3], [2 + 3, 3]])


def test_conv_groups_by_hand():
    # Two groups of one channel each: channel 0 sees only filter 0, channel 1 only filter 1.
    x = np.concatenate([grid(2, 2), 10 * grid(2, 2)], axis=1)
    w = np.array([[[[1.0]]], [[[2.0]]]])
    y = ref.conv2d_forward(x, w, groups=2)
    np.testing.assert_array_equal(y[0, 0], grid(2, 2)[0, 0])
    np.testing.assert_array_equal(y[0, 1], 20 * grid(2, 2)[0, 0])


def test_conv_backward_hand_example():
    x = grid(3, 3)
    w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx, dw, db = ref.conv2d_backward(x, w, np.ones((1, 1, 2, 2)))
    # Each input element collects the filter taps of the windows covering it.
    np.testing.assert_array_equal(dx[0, 0], [[1, 3, 2], [4, 10, 6], [3, 7, 4]])
    # dw[i, j] = sum of the 2x2 block of x starting at (i, j).
    np.testing.assert_array_equal(dw[0, 0], [[0 + 1 + 3 + 4, 1 + 2 + 4 + 5],
                                             [3 + 4 + 6 + 7, 4 + 5 + 7 + 8]])
    np.testing.assert_array_equal(db, [4.0])
    _, _, no_db = ref.conv2d_backward(x, w, np.ones((1, 1, 2, 2)), bias=False)
    assert no_db is None


def test_conv_backward_stride_tiles_the_filter():
    # Disjoint windows (stride == kernel): dx is the Kronecker product dy (x) w.
    w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dy = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx, _, _ = ref.conv2d_backward(grid(4, 4), w, dy, stride=2)
    np.testing.assert_array_equal(dx[0, 0], np.kron(dy[0, 0], w[0, 0]))
    # A fifth row/column that no window reaches gets zero gradient.
    dx, _, _ = ref.conv2d_backward(grid(5, 5), w, dy, stride=2)
    np.testing.assert_array_equal(dx[0, 0, :4, :4], np.kron(dy[0, 0], w[0, 0]))
    assert not dx[0, 0, 4].any() and not dx[0, 0, :, 4].any()


def test_conv_backward_dilated_kernel():
    # Dilation 2, 2x2 ones on 3x3: one window, the four corners.
    dx, dw, _ = ref.conv2d_backward(grid(3, 3), np.ones((1, 1, 2, 2)), np.array([[[[5.0]]]]),
                                    dilation=2)
    np.testing.assert_array_equal(dx[0, 0], [[5, 0, 5], [0, 0, 0], [5, 0, 5]])
    np.testing.assert_array_equal(dw[0, 0], 5 * np.array([[0, 2], [6, 8]]))


def test_pad_modes_by_hand():
    row = np.array([[[[1.0, 2.0, 3.0]]]])
    np.testing.assert_array_equal(ref.pad2d(row, (0, 0, 2, 2), "zeros")[0, 0, 0],
                                  [0, 0, 1, 2, 3, 0, 0])
    np.testing.assert_array_equal(ref.pad2d(row, (0, 0, 2, 2), "edge")[0, 0, 0],
                                  [1, 1, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(ref.pad2d(row, (0, 0, 2, 2), "reflect")[0, 0, 0],
                                  [3, 2, 1, 2, 3, 2, 1])
    with pytest.raises(ValueError, match="reflect"):
        ref.pad2d(row, (0, 0, 3, 0), "reflect")


def test_padding_modes_fold_gradient_by_hand():
    # 1x1 identity filter, so dxp == dy and dx is the fold of the padded gradient.
    x = np.array([[[[1.0, 2.0, 3.0]]]])
    w = np.ones((1, 1, 1, 1))
    dy = np.array([[[[1.0, 10.0, 100.0, 1000.0, 10000.0]]]])
    # reflect: padded row is [x1, x0, x1, x2, x1]
    dx, _, _ = ref.conv2d_backward(x, w, dy, padding=(0, 0, 1, 1), padding_mode="reflect")
    np.testing.assert_array_equal(dx[0, 0, 0], [10.0, 1.0 + 100.0 + 10000.0, 1000.0])
    # edge: padded row is [x0, x0, x1, x2, x2]; the border elements accumulate.
    dx, _, _ = ref.conv2d_backward(x, w, dy, padding=(0, 0, 1, 1), padding_mode="edge")
    np.testing.assert_array_equal(dx[0, 0, 0], [11.0, 100.0, 11000.0])
    dx, _, _ = ref.conv2d_backward(x, w, dy, padding=(0, 0, 1, 1), padding_mode="zeros")
    np.testing.assert_array_equal(dx[0, 0, 0], [10.0, 100.0, 1000.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_preserves_dtype(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 4, 4)).astype(dtype)
    w = rng.standard_normal((2, 2, 3, 3)).astype(dtype)
    y = ref.conv2d_forward(x, w, padding=1)
    assert y.dtype == dtype
    assert all(g.dtype == dtype for g in ref.conv2d_backward(x, w, y, padding=1))
    assert ref.max_pool2d_forward(x, 2).dtype == dtype
    assert ref.avg_pool2d_backward(x, ref.avg_pool2d_forward(x, 2), 2).dtype == dtype
    assert ref.sigmoid_backward(x, x).dtype == dtype
    assert ref.softmax_cross_entropy_backward(x[:, :, 0, 0], np.array([0, 1])).dtype == dtype


# ---- pooling, by hand -------------------------------------------------------------------


def test_max_pool_hand_examples():
    x = np.array([[[[1.0, 2.0, 3.0], [4.0, 9.0, 5.0], [6.0, 7.0, 8.0]]]])
    y = ref.max_pool2d_forward(x, 2, stride=1)
    np.testing.assert_array_equal(y[0, 0], [[9, 9], [9, 9]])
    dx = ref.max_pool2d_backward(x, np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), 2, stride=1)
    expected = np.zeros((3, 3))
    expected[1, 1] = 10.0
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_max_pool_ties_go_to_first_maximum():
    x = np.array([[[[0.0, 5.0], [5.0, 1.0]]]])
    dx = ref.max_pool2d_backward(x, np.ones((1, 1, 1, 1)), 2)
    np.testing.assert_array_equal(dx[0, 0], [[0, 1], [0, 0]])
    dx = ref.max_pool2d_backward(np.zeros((1, 1, 2, 2)), np.ones((1, 1, 1, 1)), 2)
    np.testing.assert_array_equal(dx[0, 0], [[1, 0], [0, 0]])


def test_max_pool_padding_never_wins():
    x = -np.ones((1, 1, 2, 2))
    y = ref.max_pool2d_forward(x, 2, stride=2, padding=1)
    np.testing.assert_array_equal(y, -np.ones((1, 1, 2, 2)))


def test_avg_pool_count_include_pad_by_hand():
    x = np.ones((1, 1, 2, 2))
    # kernel 2, stride 2, padding 1: every window holds exactly one real element.
    inc = ref.avg_pool2d_forward(x, 2, padding=1, count_include_pad=True)
    exc = ref.avg_pool2d_forward(x, 2, padding=1, count_include_pad=False)
    np.testing.assert_array_equal(inc, np.full((1, 1, 2, 2), 0.25))
    np.testing.assert_array_equal(exc, np.ones((1, 1, 2, 2)))
    dy = np.ones((1, 1, 2, 2))
    np.testing.assert_array_equal(ref.avg_pool2d_backward(x, dy, 2, padding=1), 0.25 * x)
    np.testing.assert_array_equal(
        ref.avg_pool2d_backward(x, dy, 2, padding=1, count_include_pad=False), x)


def test_global_avg_pool_by_hand():
    x = grid(2, 3)
    np.testing.assert_array_equal(ref.global_avg_pool2d_forward(x), [[[[2.5]]]])
    np.testing.assert_array_equal(ref.global_avg_pool2d_backward(x, np.array([[[[6.0]]]])),
                                  np.ones((1, 1, 2, 3)))


# ---- dense, by hand ---------------------------------------------------------------------


def test_dense_hand_examples():
    x = np.array([[1.0, 2.0]])
    w = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_array_equal(ref.linear_forward(x, w, np.array([0.0, 0.0, 1.0])),
                                  [[1.0, 2.0, 4.0]])
    dx, dw, db = ref.linear_backward(x, w, np.array([[1.0, 1.0, 1.0]]))
    np.testing.assert_array_equal(dx, [[2.0, 2.0]])
    np.testing.assert_array_equal(dw, [[1.0, 2.0]] * 3)
    np.testing.assert_array_equal(db, [1.0, 1.0, 1.0])

    v = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(ref.relu_forward(v), [0.0, 0.0, 3.0])
    np.testing.assert_array_equal(ref.relu_backward(v, np.ones(3)), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(ref.leaky_relu_forward(v, 0.5), [-1.0, 0.0, 3.0])
    np.testing.assert_array_equal(ref.leaky_relu_backward(v, np.ones(3), 0.5), [0.5, 0.5, 1.0])
    assert ref.sigmoid_forward(np.array([0.0]))[0] == 0.5
    assert ref.sigmoid_backward(np.array([0.0]), np.array([1.0]))[0] == 0.25
    np.testing.assert_array_equal(ref.sigmoid_forward(np.array([-1000.0, 1000.0])), [0.0, 1.0])
    assert ref.tanh_backward(np.array([0.0]), np.array([2.0]))[0] == 2.0


def test_softmax_cross_entropy_hand_example():
    logits = np.zeros((1, 4))
    assert ref.softmax_cross_entropy_forward(logits, np.array([2])) == pytest.approx(np.log(4))
    np.testing.assert_allclose(ref.softmax_cross_entropy_backward(logits, np.array([2])),
                               [[0.25, 0.25, -0.75, 0.25]])
    # Huge logits: the max is subtracted first, so nothing overflows.
    big = np.array([[1e4, 0.0], [0.0, 1e4]])
    assert ref.softmax_cross_entropy_forward(big, np.array([0, 0])) == pytest.approx(5e3)
    with pytest.raises(ValueError, match="labels"):
        ref.softmax_cross_entropy_forward(logits, np.array([4]))


# ---- against torch ----------------------------------------------------------------------


@given(config=conv2d_configs(dtypes=(F64,), strategies=("im2col",)), data=st.data())
def test_conv_reference_matches_torch(config, data):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x = data.draw(arrays(config.input_shape, F64))
    w = data.draw(arrays(config.weight_shape, F64))
    b = data.draw(arrays((config.out_channels,), F64)) if config.bias else None
    geometry = config.geometry
    top, bottom, left, right = geometry.padding

    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    torch_mode = {"zeros": "constant", "edge": "replicate", "replicate": "replicate",
                  "reflect": "reflect", "circular": "circular"}
    xp = tf.pad(xt, (left, right, top, bottom), mode=torch_mode[config.padding_mode])
    yt = tf.conv2d(xp, wt.flip(2, 3) if config.flip_kernel else wt, bt,
                   stride=geometry.stride, dilation=geometry.dilation, groups=config.groups)
    dy = data.draw(arrays(tuple(yt.shape), F64))
    yt.backward(torch.tensor(dy))

    kwargs = config.reference_kwargs()
    assert_close(ref.conv2d_forward(x, w, b, **kwargs), yt.detach().numpy(), what="y")
    dx, dw, db = ref.conv2d_backward(x, w, dy, bias=config.bias, **kwargs)
    assert_close(dx, xt.grad.numpy(), what="dx")
    assert_close(dw, wt.grad.numpy(), what="dw")
    if config.bias:
        assert_close(db, bt.grad.numpy(), what="db")


@given(config=pool2d_configs(dtypes=(F64,)), data=st.data())
def test_pool_reference_matches_torch(config, data):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    # "integers" arrays have ties, so the first-maximum rule is compared too.
    x = data.draw(arrays(config.input_shape, F64))
    kwargs = config.kwargs()
    xt = torch.tensor(x, requires_grad=True)
    if config.kind == "max":
        yt = tf.max_pool2d(xt, **kwargs)
        forward, backward = ref.max_pool2d_forward, ref.max_pool2d_backward
    else:
        yt = tf.avg_pool2d(xt, **kwargs)
        forward, backward = ref.avg_pool2d_forward, ref.avg_pool2d_backward
    dy = data.draw(arrays(tuple(yt.shape), F64))
    yt.backward(torch.tensor(dy))
    assert_close(forward(x, **kwargs), yt.detach().numpy(), what="y")
    assert_close(backward(x, dy, **kwargs), xt.grad.numpy(), what="dx")


@given(data=st.data())
def test_dense_reference_matches_torch(data):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    n = data.draw(st.integers(1, 4))
    fan_in, fan_out = data.draw(st.integers(1, 5)), data.draw(st.integers(2, 5))
    x = data.draw(arrays((n, fan_in), F64, scale=3.0))
    w = data.draw(arrays((fan_out, fan_in), F64))
    b = data.draw(arrays((fan_out,), F64))
    dy = data.draw(arrays((n, fan_out), F64))
    labels = np.array(data.draw(st.lists(st.integers(0, fan_out - 1), min_size=n, max_size=n)))

    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = tf.linear(xt, wt, bt)
    yt.backward(torch.tensor(dy))
    assert_close(ref.linear_forward(x, w, b), yt.detach().numpy(), what="linear y")
    dx, dw, db = ref.linear_backward(x, w, dy)
    for got, want, what in ((dx, xt.grad, "dx"), (dw, wt.grad, "dw"), (db, bt.grad, "db")):
        assert_close(got, want.numpy(), what=what)

    activations = [
        (ref.relu_forward, ref.relu_backward, torch.relu),
        (lambda v: ref.leaky_relu_forward(v, 0.1), lambda v, g: ref.leaky_relu_backward(v, g, 0.1),
         lambda t: tf.leaky_relu(t, 0.1)),
        (ref.sigmoid_forward, ref.sigmoid_backward, torch.sigmoid),
        (ref.tanh_forward, ref.tanh_backward, torch.tanh),
    ]
    for forward, backward, torch_fn in activations:
        xt = torch.tensor(x, requires_grad=True)
        yt = torch_fn(xt)
        yt.backward(torch.tensor(x[:, ::-1].copy()))
        assert_close(forward(x), yt.detach().numpy(), what=f"{torch_fn} y")
        assert_close(backward(x, x[:, ::-1]), xt.grad.numpy(), what=f"{torch_fn} dx")

    logits = x @ w.T * 10.0
    lt = torch.tensor(logits, requires_grad=True)
    loss = tf.cross_entropy(lt, torch.tensor(labels))
    loss.backward()
    assert ref.softmax_cross_entropy_forward(logits, labels) == pytest.approx(loss.item(),
                                                                              rel=1e-12, abs=1e-12)
    assert_close(ref.softmax_cross_entropy_backward(logits, labels), lt.grad.numpy(),
                 what="dlogits")
