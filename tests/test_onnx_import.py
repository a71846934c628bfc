"""ONNX import: the engine's own exports, what torch.onnx.export writes for the model
builders' PyTorch twins, graphs that are not trees (the Graph container), and refusal of
unsupported or hostile files before anything large is allocated."""

import io
import os
import time
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from test_onnx_export import randomize  # noqa: E402

import im2col_net.onnx as ox  # noqa: E402
from im2col_net import SoftmaxCrossEntropy, load_model, save_model  # noqa: E402
from im2col_net import layers as L  # noqa: E402
from im2col_net.interop import to_torch_state_dict  # noqa: E402
from im2col_net.models import MODEL_BUILDERS, build_model  # noqa: E402
from im2col_net.optim import SGD  # noqa: E402
from im2col_net.testing import assert_passes_gradcheck  # noqa: E402

NEWEST = onnx.defs.onnx_opset_version()


def assert_near(actual, desired, tol=1e-5):
    scale = max(1.0, float(np.abs(desired).max()))
    assert actual.shape == desired.shape and actual.dtype == desired.dtype
    np.testing.assert_allclose(actual, desired, rtol=tol, atol=tol * scale)


# -- the engine's own exports ---------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODEL_BUILDERS))
def test_round_trip_of_the_model_builders(tmp_path, name):
    model = randomize(build_model(name, rng=0), seed=1)
    ox.export(model, tmp_path / "m.onnx", opset=13)
    back = ox.load(tmp_path / "m.onnx")
    assert type(back) is L.Sequential and back.training
    assert back.parameter_count() == model.parameter_count()
    # Same leaves and blocks in the same order (nested Sequentials come back flattened).
    def kinds(m):
        return [type(layer).__name__ for _, layer in _walk(m) if type(layer) is not L.Sequential]

    assert kinds(back) == kinds(model)
    x = np.random.default_rng(2).standard_normal((3, 1, 28, 28)).astype(np.float32)
    model.eval()
    back.eval()
    assert_near(back(x), model(x), 1e-6)
    save_model(back, tmp_path / "back.npz")  # an ordinary model: saves and reloads
    again = load_model(tmp_path / "back.npz").eval()
    np.testing.assert_array_equal(again(x), back(x))


# -- torch.onnx.export of the builders' PyTorch twins ----------------------------------


def torch_twin(model, torch, *, view_flatten=True):
    """A torch module computing what ``model`` does, with its weights (eval mode)."""
    nn = torch.nn

    class Cat(nn.ModuleList):
        def forward(self, x):
            return torch.cat([b(x) for b in self], dim=1)

    class Res(nn.ModuleList):
        def forward(self, x):
            return self[0](x) + (self[1](x) if len(self) > 1 else x)

    class View(nn.Module):  # emits the Shape -> Gather -> Unsqueeze -> Concat chain
        def forward(self, x):
            return x.view(x.size(0), -1)

    def build(layer):
        if type(layer) is L.Sequential:
            return nn.Sequential(*[build(c) for c in layer.layers])
        if isinstance(layer, L.Parallel):
            assert layer.combine == "concat"
            return Cat([build(c) for c in layer])
        if isinstance(layer, L.Residual):
            return Res([build(c) for c in layer.children()])
        if isinstance(layer, L.Conv2D):
            g = layer.geometry
            top, _, left, _ = g.padding
            return nn.Conv2d(layer.in_channels, layer.out_channels, g.kernel, g.stride,
                             (top, left), g.dilation, layer.groups, "bias" in layer.params)
        if isinstance(layer, L.Linear):
            return nn.Linear(layer.in_features, layer.out_features, "bias" in layer.params)
        if isinstance(layer, L.BatchNorm2D):
            return nn.BatchNorm2d(layer.num_features, layer.eps)
        if isinstance(layer, (L.MaxPool2D, L.AvgPool2D)):
            g = layer.geometry
            cls = nn.MaxPool2d if isinstance(layer, L.MaxPool2D) else nn.AvgPool2d
            return cls(g.kernel, g.stride, (g.padding[0], g.padding[2]))
        if isinstance(layer, L.GlobalAvgPool2D):
            return nn.AdaptiveAvgPool2d(1)
        if isinstance(layer, L.Flatten):
            return View() if view_flatten else nn.Flatten()
        if isinstance(layer, L.Dropout):
            return nn.Dropout(layer.p)
        return {L.ReLU: nn.ReLU, L.Tanh: nn.Tanh}[type(layer)]()

    net = build(model)
    net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                         for k, v in to_torch_state_dict(model).items()})
    return net.eval()


def torch_export(torch, net, x, opset, **kwargs):
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), buffer, dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, **kwargs)
    return onnx.load_from_string(buffer.getvalue())


@pytest.mark.parametrize("opset", [11, 13, 17])
@pytest.mark.parametrize("name", sorted(MODEL_BUILDERS))
def test_torch_exports_of_the_builders_twins(name, opset):
    torch = pytest.importorskip("torch")
    model = randomize(build_model(name, rng=0), seed=3)
    net = torch_twin(model, torch, view_flatten=opset != 17)
    x = torch.from_numpy(np.random.default_rng(4).standard_normal((2, 1, 28, 28))
                         .astype(np.float32))
    # Without constant folding torch keeps BatchNormalization nodes (else folds them
    # into the convolutions) and the Shape chains.
    proto = torch_export(torch, net, x, opset, do_constant_folding=opset == 17)
    ops = {n.op_type for n in proto.graph.node}
    imported = ox.from_model_proto(proto).eval()
    with torch.no_grad():
        expected = net(x).numpy()
    assert_near(imported(x.numpy()), expected)
    if name == "resnet-mini":
        assert any(isinstance(layer, L.Residual) for layer in imported.layers)
    if name == "inception-mini":
        assert any(isinstance(layer, L.Parallel) for layer in imported.layers)
    if opset != 17:
        assert {"Shape", "Gather", "Unsqueeze", "Concat", "Reshape"} <= ops
        if "BatchNormalization" in ops:
            assert any(isinstance(layer, L.BatchNorm2D) for _, layer in _walk(imported))


def _walk(layer, path=""):
    yield path, layer
    for i, child in enumerate(layer.children()):
        yield from _walk(child, f"{path}.{i}")


@pytest.mark.parametrize("opset", [11, 13])
def test_torch_export_of_the_other_supported_operators(opset):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pad = nn.ReflectionPad2d((1, 2, 1, 0))
            self.conv = nn.Conv2d(2, 4, 3)
            self.edge = nn.Conv2d(4, 4, 3, padding=1, padding_mode="replicate")
            self.zero = nn.ZeroPad2d(1)
            self.conv2 = nn.Conv2d(4, 4, 3, groups=2, bias=False)
            self.up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
            self.avg = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
            self.bn = nn.BatchNorm1d(6)
            self.weight = nn.Parameter(torch.randn(4 * 7 * 9, 6) * 0.1)
            self.bias = nn.Parameter(torch.randn(6))
            self.fc = nn.Linear(6, 5)
            self.drop = nn.Dropout(0.2)

        def forward(self, x):
            a = torch.nn.functional.elu(self.conv(self.pad(x)), 0.5)
            b = torch.nn.functional.leaky_relu(self.edge(a), 0.2)
            c = torch.sigmoid(self.conv2(self.zero(a)))
            y = self.avg(self.up(torch.cat([b, c], dim=1)))
            y = torch.flatten(y, 1) @ self.weight + self.bias  # MatMul + Add
            y = self.drop(torch.tanh(self.bn(y)))
            return torch.log_softmax(self.fc(y), dim=1)

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2)
    net.eval()
    x = torch.randn(3, 2, 8, 8)
    proto = torch_export(torch, net, x, opset, do_constant_folding=False)
    ops = {n.op_type for n in proto.graph.node}
    assert {"Pad", "MatMul", "Add", "BatchNormalization", "LogSoftmax", "ConvTranspose",
            "Concat", "Elu", "LeakyRelu"} <= ops
    imported = ox.from_model_proto(proto).eval()
    with torch.no_grad():
        assert_near(imported(x.numpy()), net(x).numpy())
    kinds = {type(layer).__name__ for _, layer in _walk(imported)}
    assert {"Conv2D", "ConvTranspose2D", "AvgPool2D", "BatchNorm1D", "Linear", "LogSoftmax",
            "Parallel"} <= kinds
    modes = {layer.padding_mode for _, layer in _walk(imported) if isinstance(layer, L.Conv2D)}
    assert modes == {"zeros", "replicate", "reflect"}
    # An imported model is an ordinary one: its gradients pass the checker.
    assert_passes_gradcheck(imported, x.numpy()[:1].astype(np.float64), mode="fast",
                            allow_kinks=True)


def test_fine_tuning_an_imported_model(tmp_path):
    torch = pytest.importorskip("torch")
    model = randomize(build_model("resnet-mini", rng=0), seed=5)
    net = torch_twin(model, torch)
    x = np.random.default_rng(6).standard_normal((8, 1, 28, 28)).astype(np.float32)
    imported = ox.from_model_proto(torch_export(torch, net, torch.from_numpy(x), 13,
                                                do_constant_folding=False))
    labels = np.arange(8) % 10
    loss_fn = SoftmaxCrossEntropy()
    optimizer = SGD(imported.params, lr=0.05)
    losses = []
    for _ in range(5):
        losses.append(loss_fn(imported.forward(x), labels))
        imported.backward(loss_fn.backward())
        optimizer.step(imported.grads)
    assert losses[-1] < losses[0]
    save_model(imported, tmp_path / "tuned.npz")
    assert load_model(tmp_path / "tuned.npz").parameter_count() == model.parameter_count()


# -- graphs that are not trees: the Graph container ----------------------------------


def value_info(name, dims, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, dims)


def make_model(nodes, inits, in_dims=("N", 2, 5, 5), out_dims=None, opset=13,
               elem=TensorProto.FLOAT):
    graph = helper.make_graph(nodes, "g", [value_info("x", list(in_dims), elem)],
                              [helper.make_tensor_value_info("y", elem, out_dims)],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def dag_model():
    """``a = tanh(conv(x))`` feeds three nodes: ``b = conv2(a)``, ``a + b`` and a final
    concat, so no Sequential/Parallel/Residual nest expresses it."""
    rng = np.random.default_rng(7)
    w1 = rng.standard_normal((3, 2, 3, 3)).astype(np.float32) * 0.3
    w2 = rng.standard_normal((3, 3, 1, 1)).astype(np.float32) * 0.3
    b1 = rng.standard_normal(3).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Tanh", ["c"], ["a"], name="tanh"),
        helper.make_node("Conv", ["a", "w2"], ["b"], name="conv2"),
        helper.make_node("Add", ["a", "b"], ["s"], name="add"),
        helper.make_node("Sigmoid", ["s"], ["t"], name="sig"),
        helper.make_node("Concat", ["t", "a", "x"], ["y"], axis=1, name="cat"),
    ]
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
             numpy_helper.from_array(w2, "w2")]
    return make_model(nodes, inits, out_dims=["N", 8, 5, 5])


def test_a_dag_becomes_a_graph_that_trains_saves_and_exports(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    proto = dag_model()
    onnx.checker.check_model(proto, full_check=True)
    model = ox.from_model_proto(proto)
    assert isinstance(model, L.Graph)
    x = np.random.default_rng(8).standard_normal((2, 2, 5, 5)).astype(np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    assert_near(model.eval()(x), expected)
    assert model.output_shape(x.shape) == expected.shape  # without running a layer
    softmax = L.Sequential(L.Flatten(), L.LogSoftmax())
    assert softmax.output_shape(x.shape) == softmax(x).shape == (2, 50)
    # Gradients are summed where a tensor feeds several nodes: finite differences agree.
    assert_passes_gradcheck(model, x.astype(np.float64))
    save_model(model, tmp_path / "g.npz")
    again = load_model(tmp_path / "g.npz").eval()
    np.testing.assert_array_equal(again(x), model(x))
    ox.export(again, tmp_path / "g.onnx", input_shape=(2, 5, 5))
    assert_near(ox.onnxruntime_session(again, (2, 5, 5)).run(None, {"input": x})[0], expected)


def test_symbolic_dims_need_an_input_shape_and_reshapes_must_flatten():
    relu = helper.make_node("Relu", ["x"], ["y"], name="relu")
    proto = make_model([relu], [], in_dims=("N", 2, "H", "W"))
    with pytest.raises(ox.OnnxError, match=r"symbolic per-sample dims .* pass input_shape"):
        ox.from_model_proto(proto)
    model = ox.from_model_proto(proto, input_shape=(2, 5, 5))
    assert isinstance(model[0], L.ReLU)
    with pytest.raises(ox.OnnxError, match=r"input_shape \(3, 5, 5\) does not fit"):
        ox.from_model_proto(proto, input_shape=(3, 5, 5)).eval()
    target = numpy_helper.from_array(np.array([0, 2, 25], np.int64), "t")
    nodes = [helper.make_node("Reshape", ["x", "t"], ["y"], name="reshape")]
    with pytest.raises(ox.OnnxError, match=r"node 'reshape' \(Reshape\): only reshapes that "
                                           r"flatten each sample to \(N, 50\)"):
        ox.from_model_proto(make_model(nodes, [target]))
    target = numpy_helper.from_array(np.array([-1, 50], np.int64), "t")
    model = ox.from_model_proto(make_model(nodes, [target]))
    assert isinstance(model[0], L.Flatten)


def test_graph_layer_checks_its_nodes():
    with pytest.raises(ValueError, match=r"outputs of nodes \[0\] are never used"):
        L.Graph([L.ReLU(), L.Tanh()], [{"op": "layer", "inputs": [-1]},
                                       {"op": "layer", "inputs": [-1]}])
    with pytest.raises(ValueError, match="refs to the input"):
        L.Graph([L.ReLU()], [{"op": "layer", "inputs": [0]}])
    with pytest.raises(ValueError, match="2 layers given but 1 layer nodes"):
        L.Graph([L.ReLU(), L.Tanh()], [{"op": "layer", "inputs": [-1]}])
    graph = L.Graph([L.Tanh()], [{"op": "layer", "inputs": [-1]},
                                 {"op": "add", "inputs": [0, -1, 0]}])
    x = np.random.default_rng(9).standard_normal((2, 3))
    np.testing.assert_allclose(graph(x), 2 * np.tanh(x) + x)
    assert_passes_gradcheck(graph, x)


# -- refusals ---------------------------------------------------------------------------


def conv_init(shape=(3, 2, 3, 3), name="w"):
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def test_unsupported_operators_attributes_and_types_are_named():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Mul", ["r", "r"], ["y"], name="square")]
    with pytest.raises(ox.OnnxError, match=r"node 'square' \(Mul\): supported only on static "
                                           r"shape values"):
        ox.from_model_proto(make_model(nodes, []))
    nodes = [helper.make_node("LRN", ["x"], ["y"], size=3, name="lrn")]
    with pytest.raises(ox.OnnxError, match=r"node 'lrn' \(LRN\): operator 'LRN' is not "
                                           r"supported; supported: .*Conv"):
        ox.from_model_proto(make_model(nodes, []))
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2],
                            name="pool")
    with pytest.raises(ox.OnnxError, match=r"node 'pool' \(MaxPool\): dilations \(2, 2\) are "
                                           r"not supported"):
        ox.from_model_proto(make_model([node], []))
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", unknown_option=3)
    with pytest.raises(ox.OnnxError, match=r"node 'conv' \(Conv\): attribute 'unknown_option' "
                                           r"is not supported"):
        ox.from_model_proto(make_model([node], [conv_init()]))
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    with pytest.raises(ox.OnnxError, match=r"input 'x' must be a FLOAT or DOUBLE tensor, got "
                                           r"FLOAT16"):
        ox.from_model_proto(make_model([node], [], elem=TensorProto.FLOAT16))
    half = numpy_helper.from_array(np.zeros((3, 2, 3, 3), np.float16), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv")
    with pytest.raises(ox.OnnxError, match=r"tensor 'w' has data type FLOAT16"):
        ox.from_model_proto(make_model([node], [half]))
    node = helper.make_node("Softmax", ["x"], ["y"], axis=1, name="sm")
    with pytest.raises(ox.OnnxError, match=r"node 'sm' \(Softmax\): opset 11 Softmax over axis "
                                           r"1 of a 4-D input spans several axes"):
        ox.from_model_proto(make_model([node], [], opset=11))
    node = helper.make_node("Softmax", ["x"], ["y"], axis=4, name="sm")
    with pytest.raises(ox.OnnxError, match=r"node 'sm' \(Softmax\): axis 4 is out of range"):
        ox.from_model_proto(make_model([node], []))
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2],
                            ceil_mode=1,
                            name="pool")
    with pytest.raises(ox.OnnxError, match=r"ceil_mode=1 changes the output size"):
        ox.from_model_proto(make_model([node], []))
    nodes = [helper.make_node("Pad", ["x", "p"], ["q"], mode="reflect", name="pad"),
             helper.make_node("Relu", ["q"], ["y"], name="relu")]
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "p")
    with pytest.raises(ox.OnnxError, match=r"node 'relu' \(Relu\): consumes the output of node "
                                           r"'pad' \(Pad\); Pad is supported only directly "
                                           r"before Conv"):
        ox.from_model_proto(make_model(nodes, [pads]))


def raw_tensor(dims, **fields):
    """A FLOAT TensorProto built field by field (helper.make_tensor checks the sizes)."""
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, **fields)
    tensor.dims.extend(dims)
    return tensor


def _external_model(tmp_path, location, length):
    tensor = conv_init()
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv")
    path = tmp_path / "model" / "m.onnx"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(make_model([node], [tensor]).SerializeToString())
    return path


def test_hostile_files_are_refused_before_allocating(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 216)
    path = _external_model(tmp_path, "../secret.bin", 216)
    with pytest.raises(ox.OnnxError, match=r"external data location '../secret.bin' escapes "
                                           r"the model's directory"):
        ox.load(path)
    path = _external_model(tmp_path, str(secret), 216)
    with pytest.raises(ox.OnnxError, match=r"must be a relative path"):
        ox.load(path)
    (tmp_path / "model" / "w.bin").write_bytes(b"\0" * 100)
    path = _external_model(tmp_path, "w.bin", 216)
    with pytest.raises(ox.OnnxError, match=r"has 100 bytes, fewer than offset 0 \+ length 216"):
        ox.load(path)
    (tmp_path / "model" / "w.bin").write_bytes(b"\0" * 216)
    model = ox.load(_external_model(tmp_path, "w.bin", 216))  # inside the directory: fine
    assert model[0].params["weight"].shape == (3, 2, 3, 3)

    # A huge initialiser declared in a tiny file.
    huge = raw_tensor([3, 2, 100000, 100000], raw_data=b"\0" * 4)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv")
    small = tmp_path / "huge.onnx"
    small.write_bytes(make_model([node], [huge]).SerializeToString())
    assert small.stat().st_size < 1000
    start = time.perf_counter()
    with pytest.raises(ox.OnnxError, match=r"tensor 'w' declares shape \[3, 2, 100000, 100000\]"
                                           r" \(240,000,000,000 bytes\), more than the limit"):
        ox.load(small)
    assert time.perf_counter() - start < 5
    lying = raw_tensor([3, 2, 3, 3], float_data=[0.0])
    with pytest.raises(ox.OnnxError, match=r"declares shape \[3, 2, 3, 3\] \(54 values\) but "
                                           r"holds 1 values"):
        ox.from_model_proto(make_model([node], [lying]))
    # An absurd input shape.
    relu = helper.make_node("Relu", ["x"], ["y"])
    with pytest.raises(ox.OnnxError, match=r"elements per sample, more than the limit"):
        ox.from_model_proto(make_model([relu], [], in_dims=("N", 3, 10**6, 10**6)))
    # Absurd padding or upsampling: refused before the layer allocates anything.
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[10**5] * 4, name="conv")
    start = time.perf_counter()
    with pytest.raises(ox.OnnxError, match=r"node 'conv' \(Conv\): the layer would need "
                                           r"[\d,]+ elements per sample, more than the limit"):
        ox.from_model_proto(make_model([node], [conv_init()]))
    up = numpy_helper.from_array(np.zeros((2, 1, 3, 3), np.float32), "w")
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[10**4, 10**4],
                            name="up")
    with pytest.raises(ox.OnnxError, match=r"node 'up' \(ConvTranspose\): the layer would "
                                           r"need"):
        ox.from_model_proto(make_model([node], [up]))
    assert time.perf_counter() - start < 5
    with pytest.raises(ox.OnnxError, match=r"more than the limit of 10 bytes"):
        ox.load(small, limits=ox.Limits(max_file_bytes=10))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(ox.OnnxError, match="not a readable ONNX file"):
        ox.load(garbage)
    with pytest.raises(FileNotFoundError):
        ox.load(tmp_path / "missing.onnx")


def test_cli_import(tmp_path, capsys):
    from im2col_net.app.cli import main

    model = randomize(build_model("inception-mini", rng=0))
    ox.export(model, tmp_path / "m.onnx")
    assert main(["import", str(tmp_path / "m.onnx"), str(tmp_path / "out.npz")]) == 0
    assert "wrote" in capsys.readouterr().out
    x = np.random.default_rng(10).standard_normal((2, 1, 28, 28)).astype(np.float32)
    assert_near(load_model(tmp_path / "out.npz").eval()(x), model.eval()(x), 1e-6)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(make_model([helper.make_node("LRN", ["x"], ["y"], size=3, name="m")], [])
                    .SerializeToString())
    with pytest.raises(SystemExit) as exc:
        main(["import", str(bad), str(tmp_path / "x.npz")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "node 'm' (LRN): operator 'LRN' is not supported" in err
    assert not os.path.exists(tmp_path / "x.npz")


def test_non_finite_weights_are_refused_unless_allowed(tmp_path, capsys):
    from im2col_net.app.cli import main

    model = build_model("lenet5", rng=0)
    first = next(p for _, p in model.named_parameters())
    first.flat[3] = np.nan
    ox.export(model, tmp_path / "nan.onnx", opset=13)
    with pytest.raises(ox.OnnxError, match="non-finite weights"):
        ox.load(tmp_path / "nan.onnx")
    back = ox.load(tmp_path / "nan.onnx", allow_nonfinite=True)
    assert np.isnan(next(p for _, p in back.named_parameters())).sum() == 1
    with pytest.raises(SystemExit) as info:
        main(["evaluate", str(tmp_path / "nan.onnx"), "--limit", "10"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "non-finite weights" in err and "Traceback" not in err
