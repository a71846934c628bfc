"""save_model / load_model: round trips, damaged and hostile files, atomic writes."""

import json
import os
import zipfile

import numpy as np
import pytest

import im2col_net
from im2col_net import serialization as S
from im2col_net.layers import Conv2D, Dropout, Flatten, Layer, Linear, MaxPool2D, ReLU, Sequential
from im2col_net.models import MODEL_BUILDERS, build_model


def _images(n=4, seed=1, dtype=np.float32):
    return np.random.default_rng(seed).random((n, 1, 28, 28)).astype(dtype)


@pytest.mark.parametrize("name", ["convnet", "lenet5", "deepnet"])
def test_round_trip_gives_identical_outputs(tmp_path, name):
    model = build_model(name, rng=3)
    path = tmp_path / f"{name}.npz"
    im2col_net.save_model(model, path)
    loaded = im2col_net.load_model(path)
    assert type(loaded) is Sequential and len(loaded) == len(model)
    assert S.architecture_to_json(loaded) == S.architecture_to_json(model)
    for (n1, p1), (n2, p2) in zip(model.named_parameters(), loaded.named_parameters(),
                                  strict=True):
        assert n1 == n2 and p1.dtype == p2.dtype and np.array_equal(p1, p2)
    x = _images()
    model.eval()
    loaded.eval()
    assert np.array_equal(model.forward(x), loaded.forward(x))


def test_all_registered_builders_round_trip(tmp_path):
    # Models added to the registry later must stay saveable.
    for name in MODEL_BUILDERS:
        model = build_model(name, rng=0)
        im2col_net.save_model(model, tmp_path / "m.npz")
        loaded = im2col_net.load_model(tmp_path / "m.npz")
        assert S.architecture_to_json(loaded) == S.architecture_to_json(model), name


def test_float64_and_layer_options_survive(tmp_path):
    model = Sequential(
        Conv2D(1, 3, (3, 5), stride=(2, 1), padding=(1, 2), dilation=1,
               bias=False, padding_mode="reflect", flip_kernel=True, strategy="strided",
               rng=0),
        ReLU(), MaxPool2D(2, stride=2, padding=1), Flatten(),
        Dropout(0.25, rng=1), Linear(3 * 8 * 15, 5, init="xavier", rng=2),
    ).astype(np.float64)
    path = tmp_path / "m.npz"
    im2col_net.save_model(model, path)
    loaded = im2col_net.load_model(path)
    assert loaded.dtype == np.float64
    conv = loaded[0]
    assert conv.get_config() == model[0].get_config()
    assert "bias" not in conv.params and conv.flip_kernel and conv.strategy == "strided"
    assert loaded[4].p == 0.25
    x = _images(3, dtype=np.float64)
    model.eval()
    loaded.eval()
    out = loaded.forward(x)
    assert out.dtype == np.float64 and np.array_equal(out, model.forward(x))


def test_file_is_plain_npz_without_pickles(tmp_path):
    path = tmp_path / "m.npz"
    im2col_net.save_model(build_model("lenet5", rng=0), path)
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    assert str(arrays["__format__"]) == "im2col_net.model"
    assert int(arrays["__version__"]) == S.FORMAT_VERSION
    assert str(arrays["__dtype__"]) == "float32"
    arch = json.loads(str(arrays["__architecture__"]))
    assert arch["class"] == "Sequential" and arch["children"][0]["class"] == "Conv2D"
    assert all(a.dtype != object for a in arrays.values())
    assert arrays["param/0.weight"].shape == (6, 1, 5, 5)


def _write_npz(path, arrays):
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _model_members(tmp_path):
    path = tmp_path / "good.npz"
    im2col_net.save_model(build_model("lenet5", rng=0), path)
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    im2col_net.save_model(build_model("lenet5", rng=0), path)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 30):
        path.write_bytes(data[:cut])
        with pytest.raises(S.ModelFileError, match="m.npz"):
            im2col_net.load_model(path)


def test_bit_flip_inside_an_array_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    im2col_net.save_model(build_model("lenet5", rng=0), path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("param/7.weight.npy")
    data[info.header_offset + 200] ^= 0xFF  # inside the stored (uncompressed) member
    path.write_bytes(bytes(data))
    with pytest.raises(S.ModelFileError, match="m.npz"):
        im2col_net.load_model(path)


def test_not_a_zip_and_bare_npy_are_refused(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a model file at all")
    with pytest.raises(S.ModelFileError, match="garbage.npz"):
        im2col_net.load_model(garbage)
    bare = tmp_path / "bare.npz"
    with open(bare, "wb") as handle:
        np.save(handle, np.zeros(3))
    with pytest.raises(S.ModelFileError, match="bare.npz"):
        im2col_net.load_model(bare)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        im2col_net.load_model(tmp_path / "nope.npz")


def test_pickled_object_array_is_refused_without_running_it(tmp_path):
    members = _model_members(tmp_path)
    marker = tmp_path / "pwned"
    members["param/0.weight"] = np.array([_Boom(str(marker))], dtype=object)
    path = tmp_path / "evil.npz"
    _write_npz(path, members)
    with pytest.raises(S.ModelFileError, match="evil.npz"):
        im2col_net.load_model(path)
    assert not marker.exists()


class _Boom:
    """Unpickling this would create a file: proof that a pickle ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("key", ["__architecture__", "__format__", "__dtype__",
                                 "__version__", "param/3.bias"])
def test_missing_member_is_refused(tmp_path, key):
    members = _model_members(tmp_path)
    del members[key]
    path = tmp_path / "partial.npz"
    _write_npz(path, members)
    with pytest.raises(S.ModelFileError, match="partial.npz"):
        im2col_net.load_model(path)


def test_unknown_layer_class_is_refused(tmp_path):
    members = _model_members(tmp_path)
    arch = json.loads(str(members["__architecture__"]))
    arch["children"][1]["class"] = "Teleporter"
    members["__architecture__"] = np.array(json.dumps(arch))
    path = tmp_path / "unknown.npz"
    _write_npz(path, members)
    with pytest.raises(S.ModelFileError, match=r"unknown.npz.*unknown layer class 'Teleporter'"):
        im2col_net.load_model(path)


def test_shape_mismatch_and_extra_arrays_are_refused(tmp_path):
    members = _model_members(tmp_path)
    wrong = dict(members, **{"param/0.weight": np.zeros((6, 1, 3, 3), np.float32)})
    _write_npz(tmp_path / "shape.npz", wrong)
    with pytest.raises(S.ModelFileError, match=r"shape.npz.*shape"):
        im2col_net.load_model(tmp_path / "shape.npz")
    extra = dict(members, **{"param/99.weight": np.zeros(3, np.float32)})
    _write_npz(tmp_path / "extra.npz", extra)
    with pytest.raises(S.ModelFileError, match=r"extra.npz.*99.weight"):
        im2col_net.load_model(tmp_path / "extra.npz")


def test_bad_json_and_future_version_are_refused(tmp_path):
    members = _model_members(tmp_path)
    _write_npz(tmp_path / "json.npz", dict(members, __architecture__=np.array("{not json")))
    with pytest.raises(S.ModelFileError, match="json.npz"):
        im2col_net.load_model(tmp_path / "json.npz")
    _write_npz(tmp_path / "future.npz", dict(members, __version__=np.array(99)))
    with pytest.raises(S.ModelFileError, match=r"future.npz.*version 99"):
        im2col_net.load_model(tmp_path / "future.npz")


def test_failed_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    first = build_model("lenet5", rng=0)
    im2col_net.save_model(first, path)
    before = path.read_bytes()

    def failing_savez(handle, **arrays):
        handle.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(S.np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        im2col_net.save_model(build_model("lenet5", rng=1), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]  # no temp file left behind
    loaded = im2col_net.load_model(path)
    assert np.array_equal(loaded.params["0.weight"], first.params["0.weight"])


def test_interrupt_during_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    im2col_net.save_model(build_model("lenet5", rng=0), path)
    before = path.read_bytes()

    def interrupted_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(S.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        im2col_net.save_model(build_model("lenet5", rng=1), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


class _Scale(Layer):
    """A test layer with a buffer: ``y = x * buffers['factor']``."""

    def __init__(self, n=3):
        super().__init__()
        self.n = n
        self.buffers = {"factor": np.ones(n, np.float32), "count": np.zeros((), np.int64)}

    def get_config(self):
        return {"n": self.n}

    def forward(self, x):
        return x * self.buffers["factor"]


def test_buffers_are_saved_and_restored_and_registry_is_extensible(tmp_path):
    model = Sequential(Linear(2, 3, rng=0), Sequential(_Scale()))
    model[1][0].buffers["factor"][:] = [2.0, 3.0, 4.0]
    model[1][0].buffers["count"][...] = 7
    assert sorted(S.named_buffers(model)) == ["1.0.count", "1.0.factor"]
    with pytest.raises(ValueError, match="_Scale.*not registered"):
        im2col_net.save_model(model, tmp_path / "m.npz")
    S.register_layer(_Scale)
    try:
        im2col_net.save_model(model, tmp_path / "m.npz")
        loaded = im2col_net.load_model(tmp_path / "m.npz")
    finally:
        S._EXTRA_LAYERS.pop("_Scale")
    scale = loaded[1][0]
    assert isinstance(scale, _Scale)
    assert np.array_equal(scale.buffers["factor"], [2.0, 3.0, 4.0])
    assert int(scale.buffers["count"]) == 7
    x = np.ones((1, 2), np.float32)
    assert np.array_equal(loaded.forward(x), model.forward(x))


def test_registry_covers_exported_layers():
    registry = S.layer_registry()
    for name in ("Sequential", "Conv2D", "MaxPool2D", "AvgPool2D", "Linear", "Dropout",
                 "Flatten", "ReLU", "Tanh"):
        assert registry[name].__name__ == name
    assert "SoftmaxCrossEntropy" not in registry  # a loss, not a Layer
