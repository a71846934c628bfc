"""GroupNorm, LayerNorm, InstanceNorm2D and LocalResponseNorm (and BatchNorm's torch-parity
options): reference loops, finite differences, PyTorch cross-checks, model files, summary
rows, dtypes and refused options."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from im2col_net import (
    BatchNorm1D,
    BatchNorm2D,
    GroupNorm,
    InstanceNorm2D,
    LayerNorm,
    LocalResponseNorm,
    Sequential,
    load_model,
    save_model,
)
from im2col_net import functional as F
from im2col_net.app.cli.gradcheck_cmd import LAYERS
from im2col_net.interop import load_torch_state_dict, to_torch_state_dict, torch_state_keys
from im2col_net.testing import (
    arrays,
    assert_close,
    assert_layer_matches_reference,
    assert_passes_gradcheck,
    reference_pair,
)

DTYPES = (np.float32, np.float64)
SMOOTH = ("uniform", "normal")  # no constant groups: var ~ 0 would amplify rounding


def _randomize(layer, seed):
    rng = np.random.default_rng(seed)
    for name, value in layer.params.items():
        value[...] = rng.uniform(0.5, 1.5, value.shape) if name == "weight" else \
            rng.uniform(-1, 1, value.shape)
    buffers = getattr(layer, "buffers", {})
    if "running_mean" in buffers:
        buffers["running_mean"][...] = rng.uniform(-1, 1, buffers["running_mean"].shape)
        buffers["running_var"][...] = rng.uniform(0.5, 2, buffers["running_var"].shape)
    return layer


@st.composite
def norm_setups(draw, dtypes=DTYPES, max_size=3):
    """(layer, input shape) for one of the four new layers with every option drawn."""
    kind = draw(st.sampled_from(["group", "layer", "instance", "lrn"]))
    dtype = draw(st.sampled_from(dtypes))
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    eps = draw(st.sampled_from([1e-5, 1e-2]))
    if kind == "group":
        groups = draw(st.integers(1, 3))
        channels = groups * draw(st.integers(1, 2))
        layer = GroupNorm(groups, channels, eps=eps, affine=draw(st.booleans()), dtype=dtype)
        rank = draw(st.sampled_from([2, 3, 4]))
        shape = (n, channels, h, w)[:rank]
    elif kind == "layer":
        channels = draw(st.integers(1, 3))
        full = (n, channels, h, w)
        k = draw(st.integers(1, 3))
        layer = LayerNorm(full[4 - k:] if k > 1 else full[3], eps=eps,
                          elementwise_affine=draw(st.booleans()), bias=draw(st.booleans()),
                          dtype=dtype)
        shape = full
    elif kind == "instance":
        channels = draw(st.integers(1, 3))
        if h * w == 1:
            w = 2
        layer = InstanceNorm2D(channels, eps=eps, momentum=draw(st.sampled_from([0.1, 0.5, None])),
                               affine=draw(st.booleans()),
                               track_running_stats=draw(st.booleans()), dtype=dtype)
        shape = (n, channels, h, w)
    else:
        channels = draw(st.integers(1, 5))
        layer = LocalResponseNorm(draw(st.integers(1, 6)),
                                  alpha=draw(st.sampled_from([1e-4, 0.5, 2.0])),
                                  beta=draw(st.sampled_from([0.75, 0.5, 1.3])),
                                  k=draw(st.sampled_from([1.0, 2.0])))
        rank = draw(st.sampled_from([3, 4]))
        shape = (n, channels, h, w)[:rank]
    _randomize(layer, draw(st.integers(0, 2**16)))
    return layer, shape, dtype


@given(setup=norm_setups(), training=st.booleans(), data=st.data())
def test_layers_match_reference(setup, training, data):
    layer, shape, dtype = setup
    layer.train(training)
    x = data.draw(arrays(shape, dtype, kinds=SMOOTH, noncontiguous=True, scale=2.0))
    before = {k: v.copy() for k, v in getattr(layer, "buffers", {}).items()}
    y, dx = assert_layer_matches_reference(layer, *reference_pair(layer), x)
    assert y.dtype == dx.dtype == np.dtype(dtype)
    for name, grad in layer.grads.items():
        assert grad.dtype == np.dtype(dtype) and grad.shape == layer.params[name].shape
    if isinstance(layer, InstanceNorm2D) and layer.track_running_stats:
        from im2col_net import reference as ref

        factor = 0.0 if layer.momentum is None else layer.momentum
        _, mean_ref, var_ref = ref.instance_norm_forward(
            x, before["running_mean"], before["running_var"], use_input_stats=training,
            momentum=factor, eps=layer.eps)
        assert_close(layer.buffers["running_mean"], mean_ref, what="running_mean")
        assert_close(layer.buffers["running_var"], var_ref, what="running_var")
        # torch's InstanceNorm never counts batches.
        assert int(layer.buffers["num_batches_tracked"]) == 0


@given(setup=norm_setups(dtypes=(np.float64,)), training=st.booleans(), data=st.data())
def test_layers_pass_gradcheck(setup, training, data):
    layer, shape, _ = setup
    layer.train(training)
    x = data.draw(arrays(shape, np.float64, kinds=SMOOTH, scale=2.0))
    assert_passes_gradcheck(layer, x)


@given(setup=norm_setups(), data=st.data())
def test_empty_batch_gives_empty_output(setup, data):
    layer, shape, dtype = setup
    x = np.zeros((0,) + shape[1:], dtype)
    y = layer(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    dx = layer.backward(np.zeros_like(y))
    assert dx.shape == x.shape
    for name, grad in layer.grads.items():
        np.testing.assert_array_equal(grad, 0, err_msg=name)


# -- PyTorch ---------------------------------------------------------------------------

def _torch_pair(torch, layer):
    nn = torch.nn
    if isinstance(layer, GroupNorm):
        return nn.GroupNorm(layer.num_groups, layer.num_channels, eps=layer.eps,
                            affine=layer.affine)
    if isinstance(layer, LayerNorm):
        return nn.LayerNorm(layer.normalized_shape, eps=layer.eps,
                            elementwise_affine=layer.elementwise_affine, bias=layer.bias)
    if isinstance(layer, InstanceNorm2D):
        return nn.InstanceNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum,
                                 affine=layer.affine,
                                 track_running_stats=layer.track_running_stats)
    if isinstance(layer, LocalResponseNorm):
        return nn.LocalResponseNorm(layer.size, alpha=layer.alpha, beta=layer.beta, k=layer.k)
    cls = nn.BatchNorm2d if isinstance(layer, BatchNorm2D) else nn.BatchNorm1d
    return cls(layer.num_features, eps=layer.eps, momentum=layer.momentum, affine=layer.affine,
               track_running_stats=layer.track_running_stats)


TORCH_CASES = [
    (lambda d: GroupNorm(2, 4, dtype=d), (3, 4, 3, 5)),
    (lambda d: GroupNorm(1, 3, eps=1e-3, affine=False, dtype=d), (2, 3, 4)),
    (lambda d: GroupNorm(4, 4, dtype=d), (2, 4)),
    (lambda d: LayerNorm(5, dtype=d), (3, 2, 5)),
    (lambda d: LayerNorm((3, 4), bias=False, dtype=d), (2, 2, 3, 4)),
    (lambda d: LayerNorm((2, 3, 4), elementwise_affine=False, eps=1e-3, dtype=d), (2, 2, 3, 4)),
    (lambda d: InstanceNorm2D(3, dtype=d), (2, 3, 4, 3)),
    (lambda d: InstanceNorm2D(3, affine=True, track_running_stats=True, dtype=d), (2, 3, 4, 3)),
    (lambda d: InstanceNorm2D(2, momentum=None, track_running_stats=True, dtype=d),
     (3, 2, 2, 3)),
    (lambda d: LocalResponseNorm(1), (2, 3, 2, 2)),
    (lambda d: LocalResponseNorm(2, alpha=0.5, k=2.0), (2, 5, 2, 2)),
    (lambda d: LocalResponseNorm(3, alpha=0.7, beta=0.5), (2, 4, 3)),
    (lambda d: LocalResponseNorm(4, alpha=1.5, beta=1.2, k=1.5), (2, 6, 2, 3)),
    (lambda d: LocalResponseNorm(7, alpha=0.5), (1, 3, 2, 2)),
    (lambda d: BatchNorm2D(3, momentum=None, dtype=d), (4, 3, 2, 2)),
    (lambda d: BatchNorm2D(3, affine=False, track_running_stats=False, dtype=d), (4, 3, 2, 2)),
    (lambda d: BatchNorm1D(3, momentum=0.0, dtype=d), (4, 3)),
    (lambda d: BatchNorm1D(3, momentum=1.0, affine=False, dtype=d), (4, 3, 5)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(TORCH_CASES)))
def test_matches_torch(case, dtype):
    torch = pytest.importorskip("torch")
    make, shape = TORCH_CASES[case]
    ours = Sequential(_randomize(make(dtype), case))
    theirs = torch.nn.Sequential(_torch_pair(torch, ours[0])).to(
        torch.float64 if dtype == np.float64 else torch.float32)
    assert list(theirs.state_dict()) == torch_state_keys(ours)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in
                            to_torch_state_dict(ours).items()})
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    rng = np.random.default_rng(case)
    for training in (True, True, True, False):
        ours.train(training)
        theirs.train(training)
        x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        for p in theirs.parameters():
            p.grad = None
        yt = theirs(xt)
        yt.backward(torch.from_numpy(dy))
        y = ours(x)
        dx = ours.backward(dy)
        assert y.dtype == dx.dtype == np.dtype(dtype)
        assert_close(y, yt.detach().numpy(), rtol=rtol, atol=rtol, what="y")
        assert_close(dx, xt.grad.numpy(), rtol=rtol, atol=rtol, what="dx")
        for name, p in theirs.named_parameters():
            assert_close(ours.grads[name], p.grad.numpy(), rtol=rtol, atol=rtol, what=name)
        for key, value in theirs.state_dict().items():
            mine = to_torch_state_dict(ours)[key]
            if value.dtype == torch.int64:
                assert int(mine) == int(value), key
            else:
                assert_close(mine, value.numpy(), rtol=rtol, atol=rtol, what=key)


def test_torch_state_dict_loads_into_new_layers():
    torch = pytest.importorskip("torch")
    theirs = torch.nn.Sequential(torch.nn.GroupNorm(2, 4), torch.nn.InstanceNorm2d(
        4, affine=True, track_running_stats=True), torch.nn.LayerNorm((4, 3, 3)),
        torch.nn.LocalResponseNorm(2)).double()
    theirs(torch.randn(2, 4, 3, 3, dtype=torch.float64) * 3)
    with torch.no_grad():
        for p in theirs.parameters():
            p.uniform_(0.5, 1.5)
    theirs.eval()
    ours = Sequential(GroupNorm(2, 4), InstanceNorm2D(4, affine=True, track_running_stats=True),
                      LayerNorm((4, 3, 3)), LocalResponseNorm(2)).astype(np.float64)
    load_torch_state_dict(ours, theirs.state_dict()).eval()
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 3))
    np.testing.assert_allclose(ours(x), theirs(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-10, atol=1e-12)


def test_functional_batch_norm_takes_torchs_arguments():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 2))
    mean, var = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    w, b = rng.standard_normal(3), rng.standard_normal(3)
    for training in (False, True):
        ours_mean, ours_var = mean.copy(), var.copy()
        tm, tv = torch.from_numpy(mean.copy()), torch.from_numpy(var.copy())
        y = F.batch_norm(x, ours_mean, ours_var, w, b, training, 0.3, 1e-3)
        yt = torch.nn.functional.batch_norm(torch.from_numpy(x), tm, tv, torch.from_numpy(w),
                                            torch.from_numpy(b), training, 0.3, 1e-3)
        np.testing.assert_allclose(y, yt.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ours_mean, tm.numpy(), rtol=1e-12)
        np.testing.assert_allclose(ours_var, tv.numpy(), rtol=1e-12)
    # The default is evaluation, which needs running statistics (as torch).
    np.testing.assert_allclose(F.batch_norm(x, mean, var), (x - mean[:, None])
                               / np.sqrt(var[:, None] + 1e-5), rtol=1e-12)
    with pytest.raises(ValueError, match="must be given in evaluation mode"):
        F.batch_norm(x, None, None)


@pytest.mark.parametrize("cls, shape", [(BatchNorm2D, (0, 3, 2, 2)), (BatchNorm1D, (0, 3)),
                                        (BatchNorm1D, (2, 3, 0))])
def test_batchnorm_empty_batch_as_torch(cls, shape):
    # torch: an empty output, the running statistics untouched, the batch still counted.
    layer = cls(3, momentum=None, dtype=np.float64)
    y = layer(np.zeros(shape))
    assert y.shape == shape
    dx = layer.backward(np.zeros(shape))
    assert dx.shape == shape
    np.testing.assert_array_equal(layer.grads["weight"], 0)
    np.testing.assert_array_equal(layer.buffers["running_mean"], 0)
    np.testing.assert_array_equal(layer.buffers["running_var"], 1)
    assert int(layer.buffers["num_batches_tracked"]) == 1
    x = np.random.default_rng(2).standard_normal((4,) + shape[1:2] + (2,) * (len(shape) - 2))
    layer(x)  # the cumulative factor is now 1/2
    axes = (0,) + tuple(range(2, x.ndim))
    np.testing.assert_allclose(layer.buffers["running_mean"], x.mean(axis=axes) / 2, rtol=1e-12)
    layer.eval()
    assert layer(np.zeros(shape)).shape == shape
    torch = pytest.importorskip("torch")
    theirs = getattr(torch.nn, cls.__name__.replace("D", "d"))(3, momentum=None).double()
    theirs(torch.zeros(shape, dtype=torch.float64))
    theirs(torch.from_numpy(x))
    np.testing.assert_allclose(layer.buffers["running_mean"], theirs.running_mean.numpy(),
                               rtol=1e-12)
    assert int(theirs.num_batches_tracked) == 2 == int(layer.buffers["num_batches_tracked"])


# -- files, summary, dtypes ------------------------------------------------------------

def _all_layers(dtype=np.float32):
    return Sequential(GroupNorm(2, 4, dtype=dtype), LocalResponseNorm(3, alpha=0.5),
                      InstanceNorm2D(4, affine=True, track_running_stats=True, dtype=dtype),
                      LayerNorm((4, 3, 3), bias=False, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_model_file_round_trip(tmp_path, dtype):
    model = _all_layers(dtype)
    for i, layer in enumerate(model.layers):
        _randomize(layer, i)
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 3)).astype(dtype)
    model(x)
    model.eval()
    save_model(model, tmp_path / "m.npz")
    back = load_model(tmp_path / "m.npz").eval()
    assert [type(a) for a in back.layers] == [type(a) for a in model.layers]
    assert [a.get_config() for a in back.layers] == [a.get_config() for a in model.layers]
    np.testing.assert_array_equal(back(x), model(x))
    np.testing.assert_array_equal(back[2].buffers["running_var"],
                                  model[2].buffers["running_var"])
    assert back(x).dtype == np.dtype(dtype)


def test_summary_rows():
    s = _all_layers().summary((4, 3, 3), batch_size=2)
    assert [r.output_shape for r in s.rows] == [(2, 4, 3, 3)] * 4
    assert [r.params for r in s.rows] == [8, 0, 8, 36]
    assert "GroupNorm" in str(s) and "LocalResponseNorm" in str(s)
    with pytest.raises(ValueError, match=r"GroupNorm.*expected input of shape \(N, 4, \*\)"):
        Sequential(GroupNorm(2, 4)).summary((3, 3, 3))


def test_configs_and_parameter_names_follow_torch():
    assert GroupNorm(2, 4).get_config() == dict(num_groups=2, num_channels=4, eps=1e-5,
                                                affine=True)
    assert list(GroupNorm(2, 4, affine=False).params) == []
    assert list(LayerNorm(3).params) == ["weight", "bias"]
    assert list(LayerNorm(3, bias=False).params) == ["weight"]
    assert LayerNorm(3).params["weight"].shape == (3,)
    layer = InstanceNorm2D(3)
    assert layer.params == {} and layer.buffers == {}
    assert [n for n, _ in InstanceNorm2D(3, track_running_stats=True).named_buffers()] == [
        "running_mean", "running_var", "num_batches_tracked"]
    for cls_layer in (GroupNorm(1, 2), LayerNorm((2, 2)), InstanceNorm2D(2, affine=True),
                      LocalResponseNorm(2, 0.1, 0.5, 2.0)):
        again = type(cls_layer).from_config(cls_layer.get_config())
        assert again.get_config() == cls_layer.get_config()


def test_float32_stays_float32_and_layout_is_checked():
    x = np.random.default_rng(3).standard_normal((2, 4, 3, 3)).astype(np.float32)
    model = _all_layers()
    y = model(x)
    dx = model.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in model.grads.values())
    with pytest.raises(ValueError, match="dtype float64 does not match"):
        GroupNorm(2, 4)(x.astype(np.float64))
    model.astype(np.float64)
    assert model[2].buffers["running_mean"].dtype == np.float64
    assert model[2].buffers["num_batches_tracked"].dtype == np.int64


@pytest.mark.parametrize("build, fragment", [
    (lambda: GroupNorm(3, 4), "num_channels must be divisible by num_groups"),
    (lambda: GroupNorm(0, 4), "num_groups must be a positive int"),
    (lambda: GroupNorm(2, 4, eps=0), "eps must be a positive number"),
    (lambda: GroupNorm(2, 4, affine="yes"), "affine must be True or False"),
    (lambda: LayerNorm(()), "normalized_shape must be a positive int or a non-empty tuple"),
    (lambda: LayerNorm((3, 0)), "normalized_shape must be a positive int"),
    (lambda: LayerNorm("3"), "normalized_shape must be a positive int"),
    (lambda: LayerNorm(3, bias=None), "bias must be True or False"),
    (lambda: InstanceNorm2D(3, momentum=1.5), "momentum must be in"),
    (lambda: InstanceNorm2D(3, momentum=-0.1), "momentum must be in"),
    (lambda: InstanceNorm2D(3, dtype=np.int32), "floating-point dtype"),
    (lambda: LocalResponseNorm(0), "size must be a positive int"),
    (lambda: LocalResponseNorm(2, alpha=float("nan")), "alpha must be a finite real"),
    (lambda: LocalResponseNorm(2, beta="x"), "beta must be a finite real"),
    (lambda: BatchNorm2D(3, momentum=-0.5), "momentum must be in"),
    (lambda: BatchNorm1D(3, momentum=1.01), "momentum must be in"),
])
def test_bad_options_are_refused(build, fragment):
    with pytest.raises(ValueError, match=fragment) as info:
        build()
    assert "_Norm" not in str(info.value)


@pytest.mark.parametrize("layer, shape, fragment", [
    (GroupNorm(2, 4), (2, 6, 3), r"expected input of shape \(N, 4, \*\)"),
    (GroupNorm(2, 4), (4,), r"expected input of shape \(N, 4, \*\)"),
    (LayerNorm((3, 4)), (2, 4, 3), r"expected input of shape \(N, \.\.\., 3, 4\)"),
    (LayerNorm(3), (3,), r"expected input of shape \(N, \.\.\., 3\)"),
    (InstanceNorm2D(3), (3, 4, 4), r"expected input of shape \(N, 3, H, W\)"),
    (InstanceNorm2D(3), (2, 3, 1, 1), "more than 1 spatial element"),
    (LocalResponseNorm(2), (2, 3), "3 or more dimensions"),
])
def test_bad_inputs_name_the_layer(layer, shape, fragment):
    with pytest.raises(ValueError, match=fragment) as info:
        layer(np.zeros(shape, np.float32))
    assert type(layer).__name__ in str(info.value)


def test_instance_norm_running_statistics_in_eval():
    layer = InstanceNorm2D(2, track_running_stats=True, dtype=np.float64)
    layer.buffers["running_mean"][...] = [1.0, -1.0]
    layer.buffers["running_var"][...] = [4.0, 0.25]
    layer.eval()
    x = np.random.default_rng(4).standard_normal((1, 2, 1, 1))  # one pixel is fine here
    expected = (x - np.array([1.0, -1.0])[:, None, None]) / np.sqrt(
        np.array([4.0, 0.25])[:, None, None] + 1e-5)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-12)


def test_gradcheck_cli_lists_the_new_layers():
    assert {"groupnorm", "layernorm", "instancenorm2d", "localresponsenorm"} <= set(LAYERS)
