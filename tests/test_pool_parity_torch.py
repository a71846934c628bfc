"""Pooling options against PyTorch (forward, backward, indices), and the API around them:
argument order, configs (old and new model files), summary rows, interop keys, errors."""

import itertools

import numpy as np
import pytest

import im2col_net
from im2col_net import (
    AdaptiveAvgPool2D,
    AdaptiveMaxPool2D,
    AvgPool2D,
    Conv2D,
    Flatten,
    GlobalAvgPool2D,
    Linear,
    MaxPool2D,
    MaxUnpool2D,
    ReLU,
    Sequential,
)
from im2col_net.geometry import pool_output_size
from im2col_net.testing import assert_close

DTYPES = [np.float32, np.float64]


def _torch():
    return pytest.importorskip("torch")


def _tol(dtype):
    return dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)


def _versus_torch(layer, tlayer, x, *, indices=False):
    """Forward, backward (and indices) of ``layer`` and torch's ``tlayer`` on ``x``."""
    torch = _torch()
    rng = np.random.default_rng(1)
    xt = torch.tensor(x, requires_grad=True)
    out_t = tlayer(xt)
    out = layer.forward(x)
    if indices:
        (yt, it), (y, i) = out_t, out
        np.testing.assert_array_equal(i, it.numpy())
        assert i.dtype == np.int64
    else:
        yt, y = out_t, out
    assert y.dtype == x.dtype and y.shape == tuple(yt.shape)
    assert_close(y, yt.detach().numpy(), what="y", **_tol(x.dtype))
    dy = rng.uniform(-1, 1, y.shape).astype(x.dtype)
    yt.backward(torch.tensor(dy))
    dx = layer.backward(dy)
    assert dx.dtype == x.dtype
    assert_close(dx, xt.grad.numpy(), what="dx", **_tol(x.dtype))


def _distinct(shape, dtype, seed=0):
    """Distinct values: no max-pool ties, so float32 and float64 pick the same maxima."""
    size = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(size).reshape(shape) / size).astype(dtype)


MAX_CASES = [dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=c)
             for k, s, p, d, c in itertools.product([2, 3, (3, 2)], [1, 2, (2, 3)], [0, 1],
                                                    [1, 2, (1, 2)], [False, True])]


@pytest.mark.parametrize("opts", MAX_CASES, ids=lambda o: "-".join(map(str, o.values())))
def test_max_pool_matches_torch(opts):
    torch = _torch()
    # dtype and size vary with the case, so both meet every option without a product.
    dtype = [np.float32, np.float64][len(str(opts)) % 2]
    size = [(7, 7), (8, 5), (6, 9)][len(str(opts)) % 3]
    x = _distinct((2, 3, *size), dtype)
    layer = MaxPool2D(**opts, return_indices=True)
    tlayer = torch.nn.MaxPool2d(**opts, return_indices=True)
    try:
        tlayer(torch.tensor(x))
    except RuntimeError:
        with pytest.raises(ValueError):
            layer.forward(x)
        return
    if not np.isfinite(layer.forward(x)[0]).all():
        return  # a dilated window of padding only: torch's index there is arbitrary
    _versus_torch(layer, tlayer, x, indices=True)


def test_max_pool_ties_and_nan_pick_like_torch():
    torch = _torch()
    x = np.round(np.random.default_rng(3).standard_normal((2, 2, 7, 6)))
    x[0, 0, 1, 1] = x[1, 1, 4, 2] = x[1, 1, 4, 4] = np.nan
    for opts in (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                 dict(kernel_size=2, stride=1, dilation=2)):
        y, i = MaxPool2D(**opts, return_indices=True).forward(x)
        yt, it = torch.nn.MaxPool2d(**opts, return_indices=True)(torch.tensor(x))
        np.testing.assert_array_equal(y, yt.numpy())
        np.testing.assert_array_equal(i, it.numpy())


AVG_CASES = [dict(kernel_size=k, stride=s, padding=p, ceil_mode=c, count_include_pad=ci,
                  divisor_override=d)
             for k, s, p, c, ci, d in itertools.product([2, 3, (3, 2)], [1, 2, (2, 3)],
                                                        [0, (1,)], [False, True],
                                                        [True, False], [None, 3])]


@pytest.mark.parametrize("opts", AVG_CASES, ids=lambda o: "-".join(map(str, o.values())))
def test_avg_pool_matches_torch(opts):
    torch = _torch()
    dtype = [np.float32, np.float64][len(str(opts)) % 2]
    size = [(7, 7), (6, 5), (5, 8)][len(str(opts)) % 3]
    x = np.random.default_rng(0).standard_normal((2, 3, *size)).astype(dtype)
    _versus_torch(AvgPool2D(**opts), torch.nn.AvgPool2d(**opts), x)


def test_avg_pool_positional_order_is_torchs():
    torch = _torch()
    x = np.random.default_rng(2).standard_normal((1, 2, 6, 6))
    args = (3, 2, 1, True, False, None)
    layer = AvgPool2D(*args)
    assert (layer.ceil_mode, layer.count_include_pad, layer.divisor_override) == (True, False,
                                                                                   None)
    _versus_torch(layer, torch.nn.AvgPool2d(*args), x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 3, 4, (2, 5), (None, 3), (4, None), (None, None), 9])
@pytest.mark.parametrize("shape", [(2, 3, 7, 7), (1, 2, 5, 8), (2, 1, 3, 2)])
def test_adaptive_pools_match_torch(shape, size, dtype):
    torch = _torch()
    x = _distinct(shape, dtype, seed=sum(shape))
    _versus_torch(AdaptiveAvgPool2D(size), torch.nn.AdaptiveAvgPool2d(size), x)
    _versus_torch(AdaptiveMaxPool2D(size, return_indices=True),
                  torch.nn.AdaptiveMaxPool2d(size, return_indices=True), x, indices=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts, size, out", [
    (dict(kernel_size=2), (6, 6), None), (dict(kernel_size=3, stride=2, padding=1), (7, 7), None),
    (dict(kernel_size=3, stride=2, padding=1), (7, 8), (7, 8)),
    (dict(kernel_size=3, stride=2), (7, 7), (7, 7)), (dict(kernel_size=2), (5, 7), (5, 7))])
def test_max_unpool_matches_torch(opts, size, out, dtype):
    torch = _torch()
    x = _distinct((2, 3, *size), dtype)
    y, indices = MaxPool2D(**opts, return_indices=True).forward(x)
    yt, it = torch.nn.MaxPool2d(**opts, return_indices=True)(torch.tensor(x))
    unpool = MaxUnpool2D(**opts)
    u = unpool.forward(y, indices, output_size=out)
    tt = torch.tensor(y, requires_grad=True)
    ut = torch.nn.MaxUnpool2d(**opts)(tt, it, output_size=out)
    np.testing.assert_array_equal(u, ut.detach().numpy())
    assert u.dtype == dtype and u.shape == tuple(ut.shape)
    dy = np.random.default_rng(4).uniform(-1, 1, u.shape).astype(dtype)
    ut.backward(torch.tensor(dy))
    np.testing.assert_array_equal(unpool.backward(dy), tt.grad.numpy())
    if out is None:
        assert unpool.output_shape(y.shape) == u.shape


def test_unbatched_inputs_match_torch():
    torch = _torch()
    x = _distinct((3, 7, 6), np.float64)
    for layer, tlayer in [(MaxPool2D(3, 2, 1, ceil_mode=True), torch.nn.MaxPool2d(3, 2, 1,
                                                                                 ceil_mode=True)),
                          (AvgPool2D(2, 2, 1, True), torch.nn.AvgPool2d(2, 2, 1, True)),
                          (AdaptiveAvgPool2D((2, 4)), torch.nn.AdaptiveAvgPool2d((2, 4))),
                          (AdaptiveMaxPool2D(3), torch.nn.AdaptiveMaxPool2d(3))]:
        _versus_torch(layer, tlayer, x)
        assert layer.output_shape(x.shape) == tuple(tlayer(torch.tensor(x)).shape)
    y, i = MaxPool2D(2, return_indices=True).forward(x)
    unpool = MaxUnpool2D(2)
    assert unpool.forward(y, i).shape == (3, 6, 6)
    assert unpool.backward(np.ones((3, 6, 6))).shape == y.shape


def test_ceil_output_size_is_torchs_rule():
    """The last window must start inside the input or the left padding."""
    torch = _torch()
    for n, k, s, p in itertools.product(range(1, 10), range(1, 4), range(1, 4), range(0, 2)):
        if 2 * p > k:
            continue
        try:
            expected = torch.nn.functional.max_pool2d(torch.zeros(1, 1, n, 1), (k, 1), (s, 1),
                                                      (p, 0), ceil_mode=True).shape[2]
        except RuntimeError:
            expected = None
        got = pool_output_size(n, k, s, p, p, 1, True)
        assert (got if got > 0 else None) == expected, (n, k, s, p)
    # 5 rows, kernel 2, stride 2, padding 1: ceil((5+2-2)/2)+1 = 4 windows, but the 4th
    # would start at padded row 6, in the bottom padding: dropped.
    assert MaxPool2D(2, 2, 1, ceil_mode=True).output_shape((1, 1, 5, 5)) == (1, 1, 3, 3)


@pytest.mark.parametrize("build, message", [
    (lambda: AvgPool2D(2, count_include_pad="x"), "count_include_pad must be True or False"),
    (lambda: AvgPool2D(2, ceil_mode=1), "ceil_mode must be True or False"),
    (lambda: AvgPool2D(2, divisor_override=0), "divisor_override must be None or a nonzero"),
    (lambda: AvgPool2D(2, divisor_override=1.5), "divisor_override must be None or a nonzero"),
    (lambda: AvgPool2D(2, divisor_override=True), "divisor_override must be None or a nonzero"),
    (lambda: MaxPool2D(2, return_indices="yes"), "return_indices must be True or False"),
    (lambda: MaxPool2D(2, dilation=0), "dilation must be >= 1"),
    (lambda: MaxPool2D(2, padding=(1, 1, 1)), "padding must be an int or a pair"),
    (lambda: AdaptiveAvgPool2D(0), "output_size must be a positive int"),
    (lambda: AdaptiveMaxPool2D((2, 3, 4)), "output_size must be a positive int"),
    (lambda: AdaptiveAvgPool2D("2"), "output_size must be a positive int"),
    (lambda: MaxUnpool2D(2, stride=0), "stride must be >= 1"),
])
def test_bad_options_are_refused_naming_the_layer(build, message):
    with pytest.raises(ValueError, match=message) as info:
        build()
    assert str(info.value).split("(")[0] in (
        "AvgPool2D", "MaxPool2D", "AdaptiveAvgPool2D", "AdaptiveMaxPool2D", "MaxUnpool2D")


def test_max_unpool_bad_inputs():
    unpool = MaxUnpool2D(2)
    x = np.ones((1, 1, 2, 2))
    with pytest.raises(ValueError, match="needs the indices"):
        unpool.forward(x)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 16\)"):
        unpool.forward(x, np.full((1, 1, 2, 2), 16))
    with pytest.raises(ValueError, match="integer indices of the input's shape"):
        unpool.forward(x, np.zeros((1, 1, 2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="strictly between 2 and 6"):
        unpool.forward(x, np.zeros((1, 1, 2, 2), dtype=np.int64), output_size=(6, 4))
    unpool.forward(x, np.zeros((1, 1, 2, 2), dtype=np.int64), output_size=(1, 1, 5, 4))
    with pytest.raises(ValueError, match="backward expected dy of shape"):
        unpool.backward(np.ones((1, 1, 4, 4)))


def test_return_indices_breaks_a_sequential_chain_like_torch():
    # torch's Sequential hands the tuple to the next layer, which fails; here the tuple
    # would be stacked into one array, so Sequential refuses it, last layer or not.
    for model in (Sequential(MaxPool2D(2, return_indices=True), Flatten()),
                  Sequential(ReLU(), AdaptiveMaxPool2D(2, return_indices=True))):
        with pytest.raises(ValueError, match="returns a tuple .*return_indices=False"):
            model.forward(np.ones((1, 1, 4, 4)))
    # Alone (or last) it returns both, as torch's layer does.
    y, i = MaxPool2D(2, return_indices=True).forward(np.ones((1, 1, 4, 4)))
    assert y.shape == i.shape == (1, 1, 2, 2)


def test_model_file_round_trip_and_old_configs(tmp_path):
    model = Sequential(Conv2D(2, 3, 3, padding=1, rng=0), MaxPool2D(3, 2, 1, 2, ceil_mode=True),
                       ReLU(), AvgPool2D(2, 1, (1,), True, False, 3), AdaptiveMaxPool2D((3, None)),
                       AdaptiveAvgPool2D((None, 2)), GlobalAvgPool2D(), Flatten(), Linear(3, 2,
                                                                                          rng=1))
    x = np.random.default_rng(0).standard_normal((2, 2, 9, 8)).astype(np.float32)
    im2col_net.save_model(model, tmp_path / "m.npz")
    loaded = im2col_net.load_model(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    assert [layer.get_config() for layer in loaded.layers] == [
        layer.get_config() for layer in model.layers]
    # Configs written before these options existed: keywords only, and still load.
    old_avg = AvgPool2D.from_config(dict(kernel_size=[2, 2], stride=[1, 1], padding=[1, 1],
                                         count_include_pad=False))
    assert (old_avg.count_include_pad, old_avg.ceil_mode, old_avg.divisor_override) == (
        False, False, None)
    old_max = MaxPool2D.from_config(dict(kernel_size=[2, 2], stride=[2, 2], padding=[0, 0]))
    assert old_max.geometry.dilation == (1, 1) and not old_max.return_indices


def test_summary_rows_use_the_output_shapes():
    model = Sequential(MaxPool2D(2, ceil_mode=True), AdaptiveAvgPool2D((2, None)),
                       AdaptiveMaxPool2D(1), Flatten())
    s = model.summary((3, 5, 7), batch_size=4)
    assert [r.output_shape for r in s.rows] == [(4, 3, 3, 4), (4, 3, 2, 4), (4, 3, 1, 1),
                                                (4, 3)]
    assert s.rows[1].flops == 4 * 3 * 3 * 4 and s.rows[2].flops == 4 * 3 * 2 * 4


def test_interop_keys_match_torch():
    torch = _torch()
    model = Sequential(Conv2D(1, 2, 3, rng=0), MaxPool2D(2, ceil_mode=True),
                       AdaptiveAvgPool2D(2), Flatten(), Linear(8, 3, rng=0))
    tmodel = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.MaxPool2d(2, ceil_mode=True),
                                 torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(),
                                 torch.nn.Linear(8, 3)).double()
    from im2col_net.interop import load_torch_state_dict, torch_state_keys

    assert torch_state_keys(model) == list(tmodel.state_dict())
    model = model.astype(np.float64)
    load_torch_state_dict(model, {k: v.numpy() for k, v in tmodel.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 1, 9, 9))
    assert_close(model.forward(x), tmodel(torch.tensor(x)).detach().numpy(), what="y")
