"""Conv2D / ConvTranspose2D / Linear options of torch.nn: the four padding modes under
torch's names (circular included, "edge" kept as an alias), unbatched inputs, the
refusals torch makes, model files and ONNX export of circular padding."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import im2col_net.functional as F
import im2col_net.reference as ref
from im2col_net import Conv2D, ConvTranspose2D, Linear, Sequential, load_model, lowering, save_model
from im2col_net.functional import conv_algorithms
from im2col_net.testing import (
    arrays,
    assert_close,
    assert_layer_matches_reference,
    assert_passes_gradcheck,
    conv2d_configs,
    reference_pair,
)

F64, F32 = np.dtype(np.float64), np.dtype(np.float32)
TORCH_MODES = ("zeros", "reflect", "replicate", "circular")
ALGORITHMS = tuple(conv_algorithms.ALGORITHMS)


def _tol(dtype):
    # float64 against torch to 1e-10; float32 to the rounding of a short float32 sum.
    return dict(rtol=1e-10, atol=1e-10) if dtype == F64 else dict(rtol=2e-5, atol=2e-5)


def _torch_conv(torch, layer, dtype):
    """torch.nn.Conv2d with ``layer``'s options and parameters (symmetric padding)."""
    g = layer.geometry
    top, bottom, left, right = g.padding
    padding = layer.get_config()["padding"]
    if not isinstance(padding, str):
        assert top == bottom and left == right
        padding = (top, left)
    module = torch.nn.Conv2d(layer.in_channels, layer.out_channels, g.kernel, stride=g.stride,
                             padding=padding, dilation=g.dilation, groups=layer.groups,
                             bias="bias" in layer.params, padding_mode=layer.padding_mode)
    module = module.to(getattr(torch, dtype.name))
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(layer.params["weight"].copy()))
        if "bias" in layer.params:
            module.bias.copy_(torch.from_numpy(layer.params["bias"].copy()))
    return module


def _compare_with_torch(torch, layer, module, x, dy, dtype):
    xt = torch.tensor(x, requires_grad=True)
    yt = module(xt)
    yt.backward(torch.from_numpy(dy))
    tol = _tol(dtype)
    y = layer.forward(x)
    assert_close(y, yt.detach().numpy(), what=f"{layer!r} y", **tol)
    dx = layer.backward(dy)
    assert_close(dx, xt.grad.numpy(), what=f"{layer!r} dx", **tol)
    assert_close(layer.grads["weight"], module.weight.grad.numpy(), what="dw", **tol)
    if "bias" in layer.params:
        assert_close(layer.grads["bias"], module.bias.grad.numpy(), what="db", **tol)


# Every mode x stride x dilation x groups, padding (1, 2) on a 5x6 input (reflect needs
# pad < size, circular pad <= size), plus "same" with an even kernel (asymmetric pad).
TORCH_CASES = [dict(padding_mode=m, stride=s, dilation=d, groups=g, padding=(1, 2))
               for m, s, d, g in itertools.product(TORCH_MODES, (1, (2, 1)), (1, (1, 2)),
                                                   (1, 2))]
TORCH_CASES += [dict(padding_mode=m, padding="same", kernel_size=(2, 3)) for m in TORCH_MODES]
TORCH_CASES += [dict(padding_mode="circular", padding=(5, 6), kernel_size=3)]  # pad == size


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: "-".join(map(str, c.values())))
def test_conv2d_padding_modes_match_torch(case, dtype):
    """Forward, dx, dw, db against torch.nn.Conv2d for every algorithm that applies."""
    torch = pytest.importorskip("torch")
    kwargs = dict(kernel_size=(3, 2), bias=True) | case
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 4, 5, 6)).astype(dtype)
    ran = []
    for strategy in ALGORITHMS:
        try:
            layer = Conv2D(4, 6, strategy=strategy, dtype=dtype, rng=1, **kwargs)
        except ValueError as exc:      # the algorithm does not apply to this geometry
            assert "needs" in str(exc)
            continue
        layer.params["bias"][...] = rng.uniform(-1, 1, 6)
        module = _torch_conv(torch, layer, dtype)
        dy = rng.standard_normal(layer.output_shape(x.shape)).astype(dtype)
        _compare_with_torch(torch, layer, module, x, dy, dtype)
        assert layer._cache.strategy == strategy
        ran.append(strategy)
    assert "im2col" in ran and "strided" in ran


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("mode", TORCH_MODES)
def test_asymmetric_quad_padding_matches_torch_pad_then_conv(mode, dtype):
    """(top, bottom, left, right) padding = torch's F.pad in that mode, then conv2d."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 4, 5)).astype(dtype)
    w = rng.standard_normal((3, 2, 3, 3)).astype(dtype)
    padding = (3, 0, 1, 4) if mode in ("zeros", "replicate") else (3, 0, 1, 4 if
                                                                    mode == "circular" else 3)
    y, cache = F.conv2d_forward(x, w, None, padding=padding, padding_mode=mode, stride=(1, 2))
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    top, bottom, left, right = padding
    torch_mode = "constant" if mode == "zeros" else mode
    yt = torch.nn.functional.conv2d(
        torch.nn.functional.pad(xt, (left, right, top, bottom), mode=torch_mode), wt,
        stride=(1, 2))
    dy = rng.standard_normal(yt.shape).astype(dtype)
    yt.backward(torch.from_numpy(dy))
    dx, dw, _ = F.conv2d_backward(dy, cache)
    tol = _tol(dtype)
    assert_close(y, yt.detach().numpy(), what="y", **tol)
    assert_close(dx, xt.grad.numpy(), what="dx", **tol)
    assert_close(dw, wt.grad.numpy(), what="dw", **tol)


# What each algorithm needs (conv_algorithms.supported): rows and im2col_t no groups, fft
# also stride and dilation 1.
_LIMITS = {"rows": dict(max_groups=1), "im2col_t": dict(max_groups=1),
           "fft": dict(max_groups=1, max_stride=1, max_dilation=1)}


@pytest.mark.parametrize("strategy", ALGORITHMS)
@given(data=st.data())
def test_every_algorithm_with_circular_padding_matches_the_reference(strategy, data):
    config = data.draw(conv2d_configs(max_batch=2, max_channels=4, max_size=6, max_padding=3,
                                      padding_modes=("circular",), strategies=(strategy,),
                                      **_LIMITS.get(strategy, {})))
    layer = config.make_layer(seed=data.draw(st.integers(0, 2**16)))
    x = data.draw(arrays(config.input_shape, config.dtype, noncontiguous=True))
    y, _ = assert_layer_matches_reference(layer, *reference_pair(layer), x)
    assert layer._cache.strategy == strategy and y.dtype == config.dtype


def test_circular_pad_and_its_gradient_are_exact():
    """lowering.pad equals np.pad(mode="wrap") bit for bit up to one full wrap, and
    pad_grad is its exact adjoint (the reference loops agree)."""
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (2, 3), (4, 4)]:
        for padding in itertools.product(range(h + 1), range(h + 1), range(w + 1),
                                         range(w + 1)):
            x = rng.standard_normal((2, h, w, 3))
            top, bottom, left, right = padding
            xp = lowering.pad(x[:, :, ::-1][:, :, ::-1], padding, "circular")
            np.testing.assert_array_equal(
                xp, np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), mode="wrap"))
            g = rng.standard_normal(xp.shape)
            back = lowering.pad_grad(g.copy(), padding, "circular")
            np.testing.assert_allclose(
                back, ref.pad2d_backward(g.transpose(0, 3, 1, 2), padding,
                                         "circular").transpose(0, 2, 3, 1), rtol=1e-14,
                atol=1e-14)
            assert abs(np.vdot(xp, g) - np.vdot(x, back)) <= 1e-12 * np.abs(g).sum()
    x32 = rng.standard_normal((1, 3, 3, 2)).astype(np.float32)
    assert lowering.pad(x32, (1, 1, 1, 1), "circular").dtype == np.float32
    assert lowering.pad_grad(np.ones((1, 5, 5, 2), np.float32), (1, 1, 1, 1),
                             "circular").dtype == np.float32


# ---- names, aliases, model files ------------------------------------------------------


def test_edge_is_an_alias_of_replicate_and_saved_under_torchs_name(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 5, 5))
    edge = Conv2D(2, 3, 3, padding=2, padding_mode="edge", dtype=np.float64, rng=0)
    replicate = Conv2D(2, 3, 3, padding=2, padding_mode="replicate", dtype=np.float64, rng=0)
    np.testing.assert_array_equal(edge.forward(x), replicate.forward(x))
    assert edge.padding_mode == "replicate" and edge.get_config()["padding_mode"] == "replicate"
    y_fn, _ = F.conv2d_forward(x, edge.params["weight"], padding=2, padding_mode="edge")
    np.testing.assert_array_equal(y_fn, F.conv2d_forward(x, edge.params["weight"], padding=2,
                                                         padding_mode="replicate")[0])


def test_model_file_round_trip_for_every_mode_and_an_old_edge_file(tmp_path):
    rng = np.random.default_rng(2)
    model = Sequential(*(Conv2D(2, 2, 3, padding=(1, 2), padding_mode=m, dtype=np.float64,
                                rng=i) for i, m in enumerate(TORCH_MODES)))
    x = rng.standard_normal((2, 2, 6, 7))
    y = model.forward(x)
    path = tmp_path / "model.npz"
    save_model(model, path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.forward(x), y)
    assert [layer.padding_mode for layer in loaded.layers] == list(TORCH_MODES)
    # A file written before the torch names says "edge": it loads, as replicate.
    with np.load(path, allow_pickle=False) as archive:
        arrays_ = {k: archive[k] for k in archive.files}
    arch = json.loads(str(arrays_["__architecture__"]))
    configs = [child["config"] for child in arch["children"]]
    assert configs[2]["padding_mode"] == "replicate"
    configs[2]["padding_mode"] = "edge"
    arrays_["__architecture__"] = np.array(json.dumps(arch))
    old = tmp_path / "old.npz"
    np.savez(old, **arrays_)
    old_model = load_model(old)
    assert old_model.layers[2].padding_mode == "replicate"
    np.testing.assert_array_equal(old_model.forward(x), y)


# ---- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode, padding, shape, message", [
    ("reflect", 3, (1, 1, 3, 3), "reflect padding (3, 3, 3, 3) must be smaller than the input"),
    ("reflect", (0, 5), (1, 1, 3, 5), "reflect padding (0, 0, 5, 5)"),
    ("circular", 4, (1, 1, 3, 4), "circular padding (4, 4, 4, 4) must be at most the input size "
                                  "3x4"),
    ("circular", (1, 0), (1, 1, 0, 4), "circular padding (1, 1, 0, 0)"),
    ("replicate", 1, (1, 1, 0, 3), "replicate padding (1, 1, 1, 1) needs a non-empty input"),
])
def test_padding_too_large_for_the_mode_is_refused(mode, padding, shape, message):
    layer = Conv2D(1, 1, 1, padding=padding, padding_mode=mode)
    x = np.zeros(shape, np.float32)
    for call in (lambda: layer.forward(x), lambda: layer.output_shape(shape),
                 lambda: F.conv2d_forward(x, layer.params["weight"], padding=padding,
                                          padding_mode=mode)):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            call()


def test_torch_limits_hold_at_the_boundary():
    """torch allows a circular pad equal to the input size and a reflect pad one less."""
    torch = pytest.importorskip("torch")
    x = np.arange(12.0).reshape(1, 1, 3, 4)
    for mode, pad in (("circular", (3, 4)), ("reflect", (2, 3))):
        layer = Conv2D(1, 1, 1, padding=pad, padding_mode=mode, bias=False, dtype=np.float64)
        layer.params["weight"][...] = 1.0
        expected = torch.nn.functional.pad(torch.from_numpy(x), (pad[1], pad[1], pad[0], pad[0]),
                                           mode=mode).numpy()
        np.testing.assert_array_equal(layer.forward(x), expected)


def test_unknown_padding_mode_is_refused():
    with pytest.raises(ValueError, match=r"padding_mode must be one of \('zeros', 'reflect', "
                                         r"'replicate', 'circular'\).*'wrap'"):
        Conv2D(1, 1, 3, padding_mode="wrap")


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular", "edge"])
def test_conv_transpose_refuses_every_mode_but_zeros_as_torch(mode):
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="zeros"):
        torch.nn.ConvTranspose2d(2, 2, 3, padding_mode="replicate" if mode == "edge" else mode)
    with pytest.raises(ValueError, match=r"ConvTranspose2D\(2, 2.*only padding_mode='zeros' is "
                                         rf"supported \(as in torch.nn.ConvTranspose2d\), got "
                                         rf"'{mode}'"):
        ConvTranspose2D(2, 2, 3, padding_mode=mode)
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        ConvTranspose2D(2, 2, 3, padding_mode="mirror")
    assert ConvTranspose2D(2, 2, 3, padding_mode="zeros").forward(
        np.zeros((1, 2, 2, 2), np.float32)).shape == (1, 2, 4, 4)


# ---- unbatched inputs --------------------------------------------------------------------


@pytest.mark.parametrize("mode", TORCH_MODES)
def test_unbatched_conv2d_matches_torch_and_the_batched_run(mode):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    layer = Conv2D(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2,
                   padding_mode=mode, dtype=np.float64, rng=1)
    layer.params["bias"][...] = rng.uniform(-1, 1, 6)
    x = rng.standard_normal((4, 5, 6))
    assert layer.output_shape(x.shape) == (6, 3, 8)
    dy = rng.standard_normal(layer.output_shape(x.shape))
    _compare_with_torch(torch, layer, _torch_conv(torch, layer, F64), x, dy, F64)
    y, dx = layer.forward(x), layer.backward(dy)
    grads = {k: v.copy() for k, v in layer.grads.items()}
    assert y.shape == (6, 3, 8) and dx.shape == x.shape
    np.testing.assert_array_equal(layer.forward(x[None])[0], y)
    np.testing.assert_array_equal(layer.backward(dy[None])[0], dx)
    for name, grad in grads.items():
        np.testing.assert_array_equal(layer.grads[name], grad)
    with pytest.raises(ValueError, match=r"backward expected dy of shape \(6, 3, 8\)"):
        layer.forward(x)
        layer.backward(dy[None])
    with pytest.raises(ValueError, match=r"expected a 3-D or 4-D input, got shape \(5, 6\)"):
        layer.forward(x[0])
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 4, H, W\) or \(4, H, "
                                         r"W\), got shape \(3, 5, 6\)"):
        layer.output_shape((3, 5, 6))


def test_unbatched_conv_transpose2d_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    layer = ConvTranspose2D(4, 6, (3, 2), stride=2, padding=1, output_padding=1, groups=2,
                            dtype=np.float64, rng=1)
    module = torch.nn.ConvTranspose2d(4, 6, (3, 2), stride=2, padding=1, output_padding=1,
                                      groups=2).double()
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(layer.params["weight"]))
        module.bias.copy_(torch.from_numpy(layer.params["bias"]))
    x = rng.standard_normal((4, 3, 4))
    shape = layer.output_shape(x.shape)
    assert shape == tuple(module(torch.from_numpy(x)).shape) == (6, 6, 7)
    _compare_with_torch(torch, layer, module, x, rng.standard_normal(shape), F64)
    assert layer.backward(rng.standard_normal(shape)).shape == x.shape


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", [(5,), (3, 5), (2, 3, 5), (2, 1, 3, 5), (0, 5), (2, 0, 5)])
def test_linear_any_leading_axes_matches_torch(shape, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    layer = Linear(5, 4, dtype=dtype, rng=0)
    layer.params["bias"][...] = rng.uniform(-1, 1, 4)
    module = torch.nn.Linear(5, 4).to(getattr(torch, dtype.name))
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(layer.params["weight"]))
        module.bias.copy_(torch.from_numpy(layer.params["bias"]))
    x = rng.standard_normal(shape).astype(dtype)
    out = shape[:-1] + (4,)
    assert layer.output_shape(shape) == out
    dy = rng.standard_normal(out).astype(dtype)
    _compare_with_torch(torch, layer, module, x, dy, dtype)
    assert layer.forward(x).dtype == dtype and layer.backward(dy).shape == shape
    # The parameter gradients are those of the same rows as one (N, in) batch.
    grads = {k: v.copy() for k, v in layer.grads.items()}
    layer.forward(x.reshape(-1, 5))
    layer.backward(dy.reshape(-1, 4))
    for name, grad in grads.items():
        np.testing.assert_array_equal(layer.grads[name], grad)


def test_linear_refuses_a_wrong_feature_count_and_a_scalar():
    layer = Linear(5, 4)
    for shape in [(2, 3, 4), (), (4,)]:
        with pytest.raises(ValueError, match=r"Linear\(5, 4.*expected input of shape \(N, 5\), "
                                             r"\(5,\) or \(\*, 5\)"):
            layer.forward(np.zeros(shape, np.float32))
    layer.forward(np.zeros((2, 3, 5), np.float32))
    with pytest.raises(ValueError, match=r"backward expected dy of shape \(2, 3, 4\)"):
        layer.backward(np.zeros((6, 4), np.float32))


def test_summary_of_circular_and_multi_axis_linear_models():
    model = Sequential(Conv2D(1, 2, 3, padding=1, padding_mode="circular"), Linear(6, 3))
    rows = model.summary((1, 5, 6)).rows
    assert [r.output_shape[1:] for r in rows] == [(2, 5, 6), (2, 5, 3)]
    # Linear on (N, 2, 5, 6): 2*5 rows of a 6 -> 3 product per sample.
    assert rows[1].flops == 2 * 6 * 3 * 2 * 5


# ---- finite differences -------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 2, 4, 5), (2, 4, 5)], ids=["batched", "unbatched"])
def test_circular_conv_passes_gradcheck(shape):
    layer = Conv2D(2, 3, (3, 2), stride=(1, 2), padding=(4, 0, 2, 5), dilation=(1, 2),
                   padding_mode="circular", dtype=np.float64, rng=3)
    x = np.random.default_rng(8).standard_normal(shape)
    report = assert_passes_gradcheck(layer, x)
    assert set(report.names) == {"input 0", "weight", "bias"}


def test_unbatched_linear_and_conv_transpose_pass_gradcheck():
    rng = np.random.default_rng(9)
    assert_passes_gradcheck(Linear(3, 2, dtype=np.float64, rng=0), rng.standard_normal((2, 4, 3)))
    assert_passes_gradcheck(Linear(3, 2, dtype=np.float64, rng=0), rng.standard_normal(3))
    assert_passes_gradcheck(ConvTranspose2D(2, 2, 2, stride=2, dtype=np.float64, rng=0),
                            rng.standard_normal((2, 2, 3)))


# ---- ONNX ------------------------------------------------------------------------------------


@pytest.mark.parametrize("opset", [13, 18, 19, None])
def test_circular_padding_exports_exactly(opset):
    """Slice+Concat before opset 19, Pad(mode="wrap") from 19: a 1x1 identity kernel makes
    the exported graph return the padded input itself, compared bit for bit; a general
    circular convolution agrees to float32 rounding."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from im2col_net.onnx.exporter import to_model_proto

    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 2, 3, 4)).astype(np.float32)
    identity = Conv2D(2, 2, 1, padding=(3, 1, 0, 4), padding_mode="circular", bias=False)
    identity.params["weight"][...] = np.eye(2, dtype=np.float32)[:, :, None, None]
    general = Conv2D(2, 3, (3, 2), stride=(2, 1), dilation=(1, 2), padding=(1, 2),
                     padding_mode="circular", rng=1)
    general.params["bias"][...] = rng.uniform(-1, 1, 3)
    for layer, exact in ((identity, True), (general, False)):
        proto = to_model_proto(Sequential(layer), (2, 3, 4), opset=opset)
        ops = {n.op_type for n in proto.graph.node}
        assert ("Pad" in ops) == (opset is None or opset >= 19)
        assert ("Slice" in ops) == (opset is not None and opset < 19)
        session = ort.InferenceSession(proto.SerializeToString())
        y = session.run(None, {"input": x})[0]
        expected = layer.forward(x)
        if exact:
            np.testing.assert_array_equal(y, expected)
        else:
            assert_close(y, expected, rtol=2e-5, atol=2e-5)


def test_circular_onnx_file_imports_as_circular(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from im2col_net.onnx import exporter, importer

    layer = Conv2D(2, 3, 3, padding=(1, 2), padding_mode="circular", rng=1)
    proto = exporter.to_model_proto(Sequential(layer), (2, 4, 5), opset=19)
    imported = importer.from_model_proto(proto)
    convs = [m for m in imported.layers if isinstance(m, Conv2D)] if hasattr(
        imported, "layers") else [imported]
    assert [c.padding_mode for c in convs] == ["circular"]
    x = np.random.default_rng(11).standard_normal((2, 2, 4, 5)).astype(np.float32)
    assert_close(imported.forward(x), layer.forward(x), rtol=1e-6, atol=1e-6)


# ---- interop and the command line ---------------------------------------------------------


def test_circular_conv_state_dict_loads_into_torch():
    torch = pytest.importorskip("torch")
    from im2col_net.interop import to_torch_state_dict

    model = Sequential(Conv2D(2, 3, 3, padding=(2, 1), padding_mode="circular",
                              dtype=np.float64, rng=0))
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=(2, 1),
                                              padding_mode="circular")).double()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in to_torch_state_dict(model).items()})
    x = np.random.default_rng(12).standard_normal((2, 2, 4, 5))
    with torch.no_grad():
        assert_close(model.forward(x), net(torch.from_numpy(x)).numpy())


def test_gradcheck_cli_takes_every_padding_mode():
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    base = [sys.executable, "-m", "im2col_net", "gradcheck", "conv2d", "--size", "4",
            "--padding", "2", "--batch", "1", "--channels", "2", "--out-channels", "2"]
    done = subprocess.run(base + ["--padding-mode", "circular"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "PASSED" in done.stdout, done.stdout + done.stderr
    bad = subprocess.run(base + ["--padding-mode", "wrap"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "error: argument --padding-mode" in bad.stderr
    assert "circular" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_replicate_plans_keep_the_key_of_edge():
    """Plans recorded in checkpoints and plan caches before the torch names keyed
    replicate padding as "edge"; the key is unchanged so they still apply."""
    from im2col_net.functional import planner

    layer = Conv2D(2, 2, 3, padding=1, padding_mode="replicate")
    problem = F.conv_problem((1, 2, 5, 5), layer.params["weight"].shape, layer.geometry,
                             padding_mode="edge")
    assert problem.padding_mode == "replicate"
    assert "|edge|" in planner.plan_key(problem)
    circular = F.conv_problem((1, 2, 5, 5), layer.params["weight"].shape, layer.geometry,
                              padding_mode="circular")
    assert "|circular|" in planner.plan_key(circular)
