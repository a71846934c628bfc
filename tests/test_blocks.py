"""Parallel and Residual containers: against compositions of the reference loops, finite
differences, dotted names, buffers, configs, shape errors; the Inception and ResNet
builders and the inception-mini / resnet-mini models."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from im2col_net import (
    ELU,
    AvgPool2D,
    Conv2D,
    Flatten,
    Linear,
    MaxPool2D,
    Parallel,
    ReLU,
    Residual,
    Sequential,
    SoftmaxCrossEntropy,
    Tanh,
)
from im2col_net.layers.blocks import basic_residual_block, inception_block
from im2col_net.models import MODEL_BUILDERS, build_model
from im2col_net.serialization import architecture_to_json, load_model, model_from_json, save_model
from im2col_net.testing import (
    arrays,
    assert_layer_matches_reference,
    assert_passes_gradcheck,
    reference_pair,
)


@st.composite
def branch_layers(draw, in_channels, dtype):
    """A size-keeping branch: a "same" convolution (random kernel, groups 1) or a 3x3
    stride-1 pooling with padding 1."""
    kind = draw(st.sampled_from(["conv", "conv", "maxpool", "avgpool"]))
    if kind == "conv":
        layer = Conv2D(in_channels, draw(st.integers(1, 3)),
                       (draw(st.integers(1, 3)), draw(st.integers(1, 3))), padding="same",
                       rng=draw(st.integers(0, 2**16)), dtype=dtype)
        layer.params["bias"][...] = np.random.default_rng(1).uniform(-1, 1, layer.out_channels)
        return layer
    return (MaxPool2D if kind == "maxpool" else AvgPool2D)(3, stride=1, padding=1)


def composed_reference(branches, combine):
    """Reference forward/backward of Parallel(branches) built from each branch's own
    reference loops: outputs concatenated or summed, input gradients summed."""
    pairs = [reference_pair(b) for b in branches]

    def forward(x):
        outs = [fwd(x) for fwd, _ in pairs]
        return np.concatenate(outs, axis=1) if combine == "concat" else sum(outs)

    def backward(x, dy):
        widths = [fwd(x).shape[1] for fwd, _ in pairs]
        pieces = (np.split(dy, np.cumsum(widths)[:-1], axis=1) if combine == "concat"
                  else [dy] * len(pairs))
        dx, grads = np.zeros(x.shape), {}
        for i, ((_, bwd), piece) in enumerate(zip(pairs, pieces, strict=True)):
            result = bwd(x, piece)
            branch_dx, branch_grads = result if isinstance(result, tuple) else (result, {})
            dx = dx + branch_dx
            grads.update({f"{i}.{k}": v for k, v in branch_grads.items()})
        return dx.astype(x.dtype), grads

    return forward, backward


@given(data=st.data(), n_branches=st.integers(1, 3),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_parallel_concat_matches_composed_reference(data, n_branches, dtype):
    channels = data.draw(st.integers(1, 3))
    branches = [data.draw(branch_layers(channels, dtype)) for _ in range(n_branches)]
    block = Parallel(*branches)
    shape = (data.draw(st.integers(1, 2)), channels, data.draw(st.integers(1, 5)),
             data.draw(st.integers(1, 5)))
    x = data.draw(arrays(shape, dtype, noncontiguous=True))
    y, dx = assert_layer_matches_reference(block, *composed_reference(branches, "concat"), x)
    assert y.dtype == dx.dtype == np.dtype(dtype)
    widths = [b.out_channels if isinstance(b, Conv2D) else channels for b in branches]
    assert y.shape == (shape[0], sum(widths)) + shape[2:]


@given(data=st.data(), n_branches=st.integers(1, 3))
def test_parallel_add_matches_composed_reference(data, n_branches):
    channels = data.draw(st.integers(1, 3))
    branches = [Conv2D(channels, 2, data.draw(st.sampled_from([1, 3])), padding="same", rng=i)
                for i in range(n_branches)]
    block = Parallel(branches, combine="add")
    x = data.draw(arrays((2, channels, 4, 3), np.float32))
    assert_layer_matches_reference(block, *composed_reference(branches, "add"), x)


@given(data=st.data(), projection=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]))
def test_residual_matches_composed_reference(data, projection, dtype):
    channels = data.draw(st.integers(1, 3))
    out_channels = data.draw(st.integers(1, 3)) if projection else channels
    body = Conv2D(channels, out_channels, 3, padding=1, rng=data.draw(st.integers(0, 99)),
                  dtype=dtype)
    shortcut = Conv2D(channels, out_channels, 1, rng=7, dtype=dtype) if projection else None
    block = Residual(body, shortcut)
    body_fwd, body_bwd = reference_pair(body)
    short_fwd, short_bwd = (reference_pair(shortcut) if projection
                            else (lambda x: x, lambda x, dy: (dy, {})))

    def forward(x):
        return body_fwd(x) + short_fwd(x)

    def backward(x, dy):
        dx_body, g_body = body_bwd(x, dy)
        dx_short, g_short = short_bwd(x, dy)
        grads = {f"0.{k}": v for k, v in g_body.items()}
        grads.update({f"1.{k}": v for k, v in g_short.items()})
        return dx_body + dx_short, grads

    x = data.draw(arrays((2, channels, data.draw(st.integers(1, 4)), 3), dtype,
                         noncontiguous=True))
    y, dx = assert_layer_matches_reference(block, forward, backward, x)
    assert y.dtype == dx.dtype == np.dtype(dtype)


@given(data=st.data())
def test_branching_blocks_pass_gradcheck(data):
    # One tensor feeds several branches (including an identity shortcut and a
    # parameter-free branch) whose gradients must add up in dx.
    rng = data.draw(st.integers(0, 2**16))
    block = Sequential(
        Parallel(
            Sequential(Conv2D(2, 2, 3, padding=1, rng=rng), Tanh()),
            AvgPool2D(3, stride=1, padding=1),
            Sequential(Conv2D(2, 1, 1, rng=rng + 1), ELU()),
        ),
        Residual(Sequential(Conv2D(5, 5, 1, rng=rng + 2), ELU())),
        Residual(Conv2D(5, 3, 1, rng=rng + 3),
                 Sequential(Conv2D(5, 3, (1, 3), padding="same", rng=rng + 4), Tanh())),
    )
    x = data.draw(arrays((2, 2, 3, 4), np.float64))
    assert_passes_gradcheck(block, x)


def test_residual_block_with_batchnorm_passes_gradcheck_in_both_modes():
    x = np.random.default_rng(0).standard_normal((3, 2, 4, 4))
    block = basic_residual_block(2, 3, stride=2, rng=0)
    assert_passes_gradcheck(block, x)
    block.eval()
    assert_passes_gradcheck(block, x)


def test_inception_block_passes_gradcheck_and_has_torch_style_names():
    block = inception_block(3, 2, 2, 3, 1, 2, 2, rng=0, dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 5))
    assert block(x).shape == (2, 2 + 3 + 2 + 2, 5, 5)
    names = [name for name, _ in block.named_parameters()]
    assert names == ["0.0.weight", "0.0.bias", "1.0.weight", "1.0.bias", "1.2.weight",
                     "1.2.bias", "2.0.weight", "2.0.bias", "2.2.weight", "2.2.bias",
                     "3.1.weight", "3.1.bias"]
    assert block.params["1.2.weight"].shape == (3, 2, 3, 3)
    assert block.params["2.2.weight"].shape == (2, 1, 5, 5)
    assert_passes_gradcheck(block, x, mode="fast")


def test_grads_and_buffers_are_dotted_views():
    block = Sequential(Conv2D(1, 4, 3, padding=1), basic_residual_block(4, 8, stride=2))
    x = np.random.default_rng(2).standard_normal((2, 1, 6, 6)).astype(np.float32)
    y = block(x)
    block.backward(np.ones_like(y))
    assert set(block.grads) == set(block.params)
    for name, grad in block.grads.items():
        assert grad.shape == block.params[name].shape and grad.dtype == np.float32
    buffers = dict(block.named_buffers())
    assert "1.0.0.1.running_mean" in buffers and "1.0.1.1.num_batches_tracked" in buffers
    assert block.buffers.keys() == buffers.keys()
    # The named arrays are the layers' own arrays (so loading into them works in place).
    residual = block[1][0]
    assert buffers["1.0.0.1.running_var"] is residual.body[1].buffers["running_var"]
    assert int(buffers["1.0.0.1.num_batches_tracked"]) == 1


def test_train_eval_reaches_every_branch():
    block = Sequential(inception_block(2, 1, 1, 1, 1, 1, 1), basic_residual_block(4, 4))
    block.eval()
    stack = [block]
    seen = 0
    while stack:
        layer = stack.pop()
        assert layer.training is False
        seen += 1
        stack.extend(layer.children())
    assert seen > 20
    block.train()
    assert block[1][0].body[1].training is True


def test_parallel_concat_shape_error_names_block_and_shapes():
    block = Parallel(Conv2D(2, 3, 3, padding=1), Conv2D(2, 4, 3, stride=2))
    with pytest.raises(ValueError) as info:
        block(np.zeros((1, 2, 7, 7), np.float32))
    message = str(info.value)
    assert "Parallel block" in message
    assert "(1, 4, 3, 3)" in message and "(1, 3, 7, 7)" in message


def test_parallel_add_shape_error():
    block = Parallel(Conv2D(2, 3, 1), Conv2D(2, 4, 1), combine="add")
    with pytest.raises(ValueError, match=r"Parallel block.*\(1, 4, 2, 2\).*\(1, 3, 2, 2\)"):
        block(np.zeros((1, 2, 2, 2), np.float32))


def test_residual_channel_mismatch_names_block_and_shapes():
    block = Residual(Conv2D(2, 3, 3, padding=1))
    with pytest.raises(ValueError) as info:
        block(np.zeros((1, 2, 5, 5), np.float32))
    message = str(info.value)
    assert "Residual block" in message and "(1, 3, 5, 5)" in message
    assert "(1, 2, 5, 5)" in message and "projection" in message
    with pytest.raises(ValueError, match=r"Residual block.*\(1, 3, 3, 3\).*\(1, 3, 5, 5\)"):
        Residual(Conv2D(2, 3, 3), Conv2D(2, 3, 1))(np.zeros((1, 2, 5, 5), np.float32))


def test_bad_construction():
    with pytest.raises(ValueError, match="Parallel: combine must be one of"):
        Parallel(ReLU(), combine="stack")
    with pytest.raises(ValueError, match="Parallel: needs at least one branch"):
        Parallel()
    with pytest.raises(ValueError, match="Parallel: item 1 must be a Layer, got int"):
        Parallel(ReLU(), 3)
    with pytest.raises(ValueError, match="Residual: item 0 must be a Layer"):
        Residual("conv")
    with pytest.raises(RuntimeError, match="before forward"):
        Residual(ReLU()).backward(np.zeros((1, 1), np.float32))
    with pytest.raises(AttributeError):
        Parallel(ReLU()).params = {"w": np.zeros(1)}


def test_backward_does_not_alias_dy():
    block = Parallel(Flatten(), Flatten(), combine="add")
    x = np.random.default_rng(3).standard_normal((2, 3)).astype(np.float32)
    y = block(x)
    dy = np.ones_like(y)
    dx = block.backward(dy)
    np.testing.assert_array_equal(dx, 2 * dy)
    dx[...] = 0
    np.testing.assert_array_equal(dy, 1)


def test_architecture_round_trips_through_json():
    model = Sequential(inception_block(1, 2, 2, 2, 1, 1, 1),
                       basic_residual_block(7, 8, stride=2),
                       Parallel(ReLU(), Tanh(), combine="add"))
    rebuilt = model_from_json(architecture_to_json(model))
    assert architecture_to_json(rebuilt) == architecture_to_json(model)
    assert [n for n, _ in rebuilt.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert [n for n, _ in rebuilt.named_buffers()] == [n for n, _ in model.named_buffers()]
    assert rebuilt[1][0].shortcut is not None and rebuilt[2].combine == "add"


def test_save_and_load_keep_weights_and_running_stats(tmp_path):
    model = build_model("resnet-mini", rng=0)
    x = np.random.default_rng(4).standard_normal((4, 1, 28, 28)).astype(np.float32)
    model(x)  # one training step moves the running statistics
    model.eval()
    expected = model(x)
    path = tmp_path / "resnet.npz"
    save_model(model, path)
    loaded = load_model(path)
    loaded.eval()
    np.testing.assert_array_equal(loaded(x), expected)
    for (name, a), (_, b) in zip(model.named_buffers(), loaded.named_buffers(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("name", ["inception-mini", "resnet-mini"])
def test_block_models_build_and_learn(name):
    assert name in MODEL_BUILDERS
    model = build_model(name, rng=0)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    labels = np.arange(8) % 10
    loss_fn = SoftmaxCrossEntropy()
    losses = []
    for _ in range(6):
        logits = model(x)
        assert logits.shape == (8, 10) and logits.dtype == np.float32
        losses.append(loss_fn(logits, labels))
        model.backward(loss_fn.backward())
        for pname, param in model.params.items():
            param -= np.float32(0.05) * model.grads[pname]
    assert losses[-1] < losses[0]
    model.eval()
    assert model(x[:1]).shape == (1, 10)


def test_models_accept_other_channel_counts_and_classes():
    for name in ("inception-mini", "resnet-mini"):
        model = build_model(name, rng=1, in_channels=3, num_classes=4, dtype=np.float64)
        y = model(np.zeros((2, 3, 28, 28)))
        assert y.shape == (2, 4) and y.dtype == np.float64
        assert isinstance(model[-1], Linear)


def test_astype_and_zero_grad_reach_every_branch():
    block = Sequential(inception_block(2, 1, 1, 1, 1, 1, 1, batch_norm=True),
                       basic_residual_block(4, 4))
    block.astype(np.float64)
    assert {p.dtype for _, p in block.named_parameters()} == {np.dtype(np.float64)}
    assert {b.dtype for n, b in block.named_buffers()
            if not n.endswith("num_batches_tracked")} == {np.dtype(np.float64)}
    x = np.random.default_rng(6).standard_normal((2, 2, 4, 4))
    y = block(x)
    block.backward(np.ones_like(y))
    block.zero_grad()
    assert set(block.grads) == set(block.params)
    assert all(not g.any() for g in block.grads.values())
    with pytest.raises(ValueError, match="Parallel: astype expects a floating dtype"):
        block[0].astype(np.int32)


def test_repr_indents_each_nesting_level():
    model = Sequential(Conv2D(1, 2, 3, rng=0),
                       Sequential(Residual(Sequential(ReLU(), Tanh())), ReLU()))
    lines = repr(model).splitlines()
    depth = {line.strip(): len(line) - len(line.lstrip()) for line in lines}
    assert depth["(1): Sequential("] == 2
    assert depth["(0): Residual(identity shortcut"] == 4
    assert depth["(0): ReLU()"] == 8 and depth["(1): Tanh()"] == 8
    assert lines[-1] == ")"
