"""ONNX export: every layer to standard operators, checked by onnx.checker (full check)
inside the exporter and by running the file in onnxruntime against the engine."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import im2col_net.onnx as ox  # noqa: E402
from im2col_net import (  # noqa: E402
    ELU,
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    ConvTranspose2D,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    LeakyReLU,
    Linear,
    MaxPool2D,
    Parallel,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
    Tanh,
    save_model,
)
from im2col_net.layers import Layer, LogSoftmax, Softmax  # noqa: E402
from im2col_net.models import MODEL_BUILDERS, build_model  # noqa: E402
from im2col_net.testing import conv2d_configs, pool2d_configs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NEWEST = onnx.defs.onnx_opset_version()


def randomize(model, seed=0):
    """Non-trivial biases and batch-norm statistics (zero/one after construction)."""
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        if name.endswith("bias") or p.ndim == 1:
            p[...] = rng.uniform(-0.5, 0.5, p.shape)
    for name, b in model.named_buffers():
        if name.endswith("running_var"):
            b[...] = rng.uniform(0.5, 2.0, b.shape)
        elif name.endswith("running_mean"):
            b[...] = rng.uniform(-0.5, 0.5, b.shape)
    return model


def run_ort(model, x, opset=None):
    session = ox.onnxruntime_session(model, x.shape[1:], opset=opset, threads=1)
    return session.run(None, {"input": x})[0]


def max_diff(model, x, opset=None):
    """``(max |engine - onnxruntime|, max |engine|)`` in eval mode."""
    model.eval()
    ours = model.forward(x)
    theirs = run_ort(model, x, opset)
    assert theirs.shape == ours.shape and theirs.dtype == ours.dtype
    return float(np.abs(ours - theirs).max()), float(np.abs(ours).max())


def assert_float32_match(model, x, opset=None):
    diff, scale = max_diff(model, x, opset)
    assert diff <= 1e-5 * max(1.0, scale), (diff, scale)
    return diff


@pytest.mark.parametrize("opset", [13, NEWEST])
@pytest.mark.parametrize("name", sorted(MODEL_BUILDERS))
def test_model_builders_match_onnxruntime(name, opset):
    model = randomize(build_model(name, rng=0), seed=1)
    x = np.random.default_rng(2).standard_normal((3, 1, 28, 28)).astype(np.float32)
    assert_float32_match(model, x, opset)
    # The batch axis is dynamic: the same session runs any batch size.
    session = ox.onnxruntime_session(model, (1, 28, 28), opset=opset)
    assert session.run(None, {"input": x[:1]})[0].shape[0] == 1
    proto = ox.to_model_proto(model, (1, 28, 28), opset)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert {o.version for o in proto.opset_import if o.domain == ""} == {opset}


def every_layer_net(rng=0):
    """Every layer type and option exported (besides those of the model builders)."""
    return Sequential(
        Conv2D(2, 4, 3, padding="same", padding_mode="reflect", flip_kernel=True, rng=rng),
        BatchNorm2D(4, affine=False),
        LeakyReLU(0.2),
        Residual(Sequential(Conv2D(4, 4, (3, 2), padding=(1, 1, 0, 1), padding_mode="edge",
                                   dilation=(1, 1), rng=rng), ELU(0.5))),
        Parallel(Sequential(AvgPool2D(3, stride=1, padding=1, count_include_pad=False)),
                 Sequential(Conv2D(4, 4, 1, groups=2, init="xavier", rng=rng), Sigmoid()),
                 combine="add"),
        ConvTranspose2D(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=1,
                        rng=rng),
        MaxPool2D(3, stride=2, padding=1),
        Tanh(),
        Parallel(Sequential(GlobalAvgPool2D(), Flatten()),
                 Sequential(AvgPool2D((4, 4)), Flatten())),
        Linear(30, 7, rng=rng),
        BatchNorm1D(7),
        Dropout(0.3, rng=rng),
        Linear(7, 5, bias=False, rng=rng),
        ReLU(),
        LogSoftmax(),
    )


@pytest.mark.parametrize("opset", [13, NEWEST])
def test_every_layer_matches_onnxruntime(opset):
    model = randomize(every_layer_net(), seed=3)
    x = np.random.default_rng(4).standard_normal((2, 2, 8, 8)).astype(np.float32)
    assert_float32_match(model, x, opset)
    ops = {n.op_type for n in ox.to_model_proto(model, (2, 8, 8), opset).graph.node}
    assert {"Pad", "Conv", "ConvTranspose", "BatchNormalization", "Add", "Concat", "Gemm",
            "AveragePool", "MaxPool", "GlobalAveragePool", "Flatten", "Dropout",
            "LeakyRelu", "Elu", "Sigmoid", "Tanh", "Relu", "LogSoftmax"} <= ops
    softmax = Sequential(Flatten(), Softmax())
    assert_float32_match(softmax, x, opset)


def test_export_describes_eval_mode_and_keeps_the_model_mode():
    model = randomize(every_layer_net(), seed=5)
    model.train()
    x = np.random.default_rng(6).standard_normal((2, 2, 8, 8)).astype(np.float32)
    theirs = run_ort(model, x)
    assert model.training and model[1].training  # restored after the probe
    assert int(model[1].buffers["num_batches_tracked"]) == 0  # the probe did not train
    model.eval()
    np.testing.assert_allclose(theirs, model(x), rtol=1e-5, atol=1e-5)


# Randomised layer configurations drawn by the property-test strategies (float32 only:
# onnxruntime's CPU Conv runs float32).
@settings(max_examples=12)
@given(config=conv2d_configs(dtypes=(np.float32,), strategies=("im2col",), max_size=7),
       seed=st.integers(0, 2**16))
def test_random_conv_configs_match_onnxruntime(config, seed):
    layer = config.make_layer(seed=seed)
    x = np.random.default_rng(seed).standard_normal(config.input_shape).astype(np.float32)
    assert_float32_match(Sequential(layer), x)
    # Imported back, the convolution computes the same (a flipped kernel comes back
    # stored rotated, a padding mode as Pad + Conv folded into one Conv2D).
    back = ox.from_model_proto(ox.to_model_proto(Sequential(layer), x.shape[1:])).eval()
    assert [type(c) for c in back] == [Conv2D]
    if any(layer.geometry.padding):
        assert back[0].padding_mode == layer.padding_mode
    np.testing.assert_allclose(back(x), layer(x), rtol=1e-5, atol=1e-5)


@settings(max_examples=12)
@given(config=pool2d_configs(dtypes=(np.float32,)), seed=st.integers(0, 2**16))
def test_random_pool_configs_match_onnxruntime(config, seed):
    x = np.random.default_rng(seed).standard_normal(config.input_shape).astype(np.float32)
    model = Sequential(config.make_layer())
    assert_float32_match(model, x)
    back = ox.from_model_proto(ox.to_model_proto(model, x.shape[1:]))
    assert back[0].get_config() == model[0].get_config()
    np.testing.assert_array_equal(back(x), model(x))


@settings(max_examples=10)
@given(data=st.data())
def test_random_conv_transpose_configs_match_onnxruntime(data):
    groups = data.draw(st.integers(1, 2))
    cin, cout = groups * data.draw(st.integers(1, 3)), groups * data.draw(st.integers(1, 3))
    k = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    stride = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    dilation = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    padding = (data.draw(st.integers(0, dilation[0] * (k[0] - 1))),
               data.draw(st.integers(0, dilation[1] * (k[1] - 1))))
    out_pad = tuple(data.draw(st.integers(0, s - 1)) for s in stride)  # ONNX: below stride
    layer = ConvTranspose2D(cin, cout, k, stride=stride, padding=padding,
                            output_padding=out_pad, groups=groups, dilation=dilation,
                            bias=data.draw(st.booleans()), rng=data.draw(st.integers(0, 99)))
    size = (data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5)))
    if min(layer.output_size(*size)) < 1:
        return  # no output for this input size: nothing to compare
    x = np.random.default_rng(0).standard_normal((2, cin) + size).astype(np.float32)
    assert_float32_match(Sequential(layer), x)
    back = ox.from_model_proto(ox.to_model_proto(Sequential(layer), x.shape[1:]))
    assert back[0].get_config() == layer.get_config()
    np.testing.assert_array_equal(back(x), layer(x))


# -- refusals -------------------------------------------------------------------------


def test_refusals_name_the_layer_and_option(tmp_path):
    slope = Sequential(Linear(4, 4), LeakyReLU(0.1)).astype(np.float64)
    with pytest.raises(ox.OnnxError, match=r"layer 1 \(LeakyReLU\): negative_slope=0.1 is not "
                                           r"exactly representable"):
        ox.to_model_proto(slope, (4,))
    ox.to_model_proto(Sequential(Linear(4, 4), LeakyReLU(0.25)).astype(np.float64), (4,))
    wide = Sequential(ConvTranspose2D(1, 1, 3, stride=1, dilation=2, output_padding=1))
    with pytest.raises(ox.OnnxError, match=r"layer 0 \(ConvTranspose2D\): output_padding=\(1, 1\)"
                                           r" is not smaller than stride=\(1, 1\)"):
        ox.to_model_proto(wide, (1, 4, 4))

    class Custom(Layer):
        def forward(self, x):
            return x

    with pytest.raises(ox.OnnxError, match=r"layer 0.1 \(Custom\) has no ONNX mapping"):
        ox.to_model_proto(Sequential(Sequential(Flatten(), Custom())), (4,))
    for opset in (12, NEWEST + 1, "13", True):
        with pytest.raises(ox.OnnxError, match=f"opset must be an int from 13 to {NEWEST}"):
            ox.to_model_proto(build_model("lenet5"), opset=opset)
    with pytest.raises(ox.OnnxError, match=r"input_shape must be the per-sample shape"):
        ox.to_model_proto(build_model("lenet5"), (0, 28, 28))
    with pytest.raises(ox.OnnxError, match=r"does not accept per-sample input shape \(3, 28, "
                                           r"28\)"):
        ox.export(build_model("lenet5"), tmp_path / "m.onnx", (3, 28, 28))
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_export_writes_a_checked_file(tmp_path):
    path = tmp_path / "m.onnx"
    ox.export(randomize(build_model("resnet-mini", rng=0)), path, opset=13)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["output"]
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


# -- the optional dependency and the CLI -----------------------------------------------


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_onnx_is_not_imported_with_the_package_and_missing_onnx_is_explained(tmp_path):
    code = (
        "import sys\n"
        "import im2col_net, im2col_net.app.cli, im2col_net.onnx\n"
        "from im2col_net.app.cli import build_parser\n"
        "build_parser()\n"
        "assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules\n"
        "sys.modules['onnx'] = None\n"
        "from im2col_net.models import build_model\n"
        "try:\n"
        "    im2col_net.onnx.export(build_model('lenet5'), 'x.onnx')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=_env(), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install im2col_net[onnx]" in result.stdout
    save_model(build_model("lenet5", rng=0), tmp_path / "m.npz")
    code = ("import sys; sys.modules['onnx'] = None\n"
            "from im2col_net.app.cli import main\n"
            "sys.exit(main(['export', 'm.npz', 'm.onnx']))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=_env(), cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "im2col-net: error: ONNX support needs the onnx package: pip install im2col_net[onnx]"]


def run_main(capsys, *argv):
    from im2col_net.app.cli import main

    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_export_evaluate_and_predict_an_onnx_file(tmp_path, capsys):
    model = randomize(build_model("lenet5", rng=0))
    save_model(model, tmp_path / "m.npz")
    onnx_path = str(tmp_path / "m.onnx")
    code, out, err = run_main(capsys, "export", str(tmp_path / "m.npz"), onnx_path,
                              "--opset", "13")
    assert code == 0, err
    assert "opset 13" in out and os.path.isfile(onnx_path)
    code, out, err = run_main(capsys, "evaluate", onnx_path, "--limit", "64")
    assert code == 0, err
    code_npz, out_npz, _ = run_main(capsys, "evaluate", str(tmp_path / "m.npz"), "--limit", "64")
    assert out.splitlines()[-1] == out_npz.splitlines()[-1]  # same accuracy line
    images = np.random.default_rng(0).uniform(0, 1, (2, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", images)
    code, out, err = run_main(capsys, "predict", onnx_path, str(tmp_path / "x.npy"))
    assert code == 0, err
    _, out_npz, _ = run_main(capsys, "predict", str(tmp_path / "m.npz"), str(tmp_path / "x.npy"))
    assert [line.split(" p=")[0] for line in out.splitlines()] == \
        [line.split(" p=")[0] for line in out_npz.splitlines()]
    code, out, err = run_main(capsys, "summary", onnx_path)
    assert code == 0, err
    _, out_npz, _ = run_main(capsys, "summary", str(tmp_path / "m.npz"))
    total = [line for line in out.splitlines() if line.startswith("Total parameters")]
    assert total and total == [line for line in out_npz.splitlines()
                               if line.startswith("Total parameters")]
    code, _, err = run_main(capsys, "export", str(tmp_path / "m.npz"), onnx_path,
                            "--opset", "12")
    assert code == 2 and err.startswith("im2col-net: error: export: opset must be")
    code, _, err = run_main(capsys, "export", str(tmp_path / "m.npz"), onnx_path,
                            "--input-shape", "1,x,28")
    assert code == 2 and "--input-shape" in err


def test_benchmark_closure_runs_onnxruntime():
    model = randomize(build_model("convnet", rng=0), seed=7).eval()
    x = np.random.default_rng(8).standard_normal((4, 1, 28, 28)).astype(np.float32)
    run, status = ox.make_onnxruntime_predict(model, x, threads=1)
    assert status.startswith("ok (onnxruntime ") and "1 threads" in status
    np.testing.assert_allclose(run(), model(x), rtol=1e-5, atol=1e-4)
    inexact = Sequential(Flatten(), Linear(784, 4), LeakyReLU(0.1)).astype(np.float64)
    run, status = ox.make_onnxruntime_predict(inexact, x.astype(np.float64))
    assert run is None and "negative_slope=0.1 is not exactly representable" in status


def test_exported_file_respects_the_umask_and_leaves_no_temp_file(tmp_path):
    model = build_model("lenet5", rng=0)
    old = os.umask(0o027)
    try:
        ox.export(model, tmp_path / "m.onnx", opset=13)
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "m.onnx").st_mode & 0o777) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
