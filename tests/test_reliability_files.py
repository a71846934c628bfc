"""Hostile and mistaken files: size limits judged from headers, placeholder-built models,
JSON depth, non-finite weights, file kinds, and dry-run summaries. Every malicious file is
built small in tmp_path; none is ever inflated."""

import gzip
import json
import os
import resource
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from im2col_net import serialization as S
from im2col_net.app import imageio
from im2col_net.app.cli import main
from im2col_net.app.imageio import ImageFileError, load_images, read_png_gray
from im2col_net.datasets import idx
from im2col_net.layers import (
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    ConvTranspose2D,
    Flatten,
    GlobalAvgPool2D,
    Linear,
    MaxPool2D,
    Parallel,
    ReLU,
    Residual,
    Sequential,
)
from im2col_net.layers.base import Layer, deferred_init, is_placeholder
from im2col_net.models import MODEL_BUILDERS, build_model
from im2col_net.summary import summarize
from im2col_net.training.checkpoint import CheckpointError, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
GIB = 1 << 30


# -- helpers ----------------------------------------------------------------------------
def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (GIB, GIB))


def run_cli(*argv, limit_memory=False, timeout=120):
    """The CLI in a subprocess (optionally under RLIMIT_AS = 1 GiB)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "im2col_net", *map(str, argv)],
                          capture_output=True, text=True, env=env, timeout=timeout,
                          preexec_fn=_limit_memory if limit_memory else None)


def assert_cli_error(result, *fragments):
    """Exit 2, one line ``im2col-net: error: ...`` naming every fragment, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("im2col-net: error: "), result.stderr
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "allow_pickle" not in lines[0]
    return lines[0]


def cli_in_process(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, *capsys.readouterr()


def npy_header(shape, dtype="<f4") -> bytes:
    """A version 1.0 .npy header declaring ``shape`` (no data)."""
    text = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    text += " " * (-(len(text) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def png_bytes(width, height, raw: bytes, depth=8, color=0) -> bytes:
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (imageio.PNG_SIGNATURE + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def model_file(tmp_path, arrays, name="m.npz"):
    path = tmp_path / name
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def linear_stack_arrays(n_layers, features, stored_shape):
    arch = {"class": "Sequential", "config": {}, "children": [
        {"class": "Linear", "config": {"in_features": features, "out_features": features,
                                       "bias": True, "init": "he"}}] * n_layers}
    arrays = {k: v for k, v in S.model_arrays(Sequential(Linear(2, 2))).items()
              if not k.startswith("param/")}
    arrays["__architecture__"] = np.array(json.dumps(arch))
    for i in range(n_layers):
        arrays[f"param/{i}.weight"] = np.zeros(stored_shape, np.float32)
        arrays[f"param/{i}.bias"] = np.zeros(stored_shape[:1], np.float32)
    return arrays


# -- .npz: bombs and lying headers ---------------------------------------------------------
def test_deflated_member_with_absurd_ratio_is_refused_from_the_directory(tmp_path):
    path = tmp_path / "bomb.npz"
    n = 16 << 20  # 64 MiB of float32 zeros, deflated to ~64 KiB
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("param/0.weight.npy", "w", force_zip64=True) as member:
            member.write(npy_header((n,)))
            block = bytes(1 << 20)
            for _ in range(n * 4 // len(block)):
                member.write(block)
    assert path.stat().st_size < 1 << 20
    start = time.perf_counter()
    with pytest.raises(S.ModelFileError, match=r"bomb.npz: member 'param/0.weight.npy' "
                                               r"inflates .* more than 100 times"):
        S.read_npz(path)
    assert time.perf_counter() - start < 5
    # The total limit is judged from the directory too, whatever the ratio allowed.
    with pytest.raises(S.ModelFileError, match="over the limit of 8,388,608 bytes"):
        S.read_npz(path, max_ratio=1e9, max_bytes=8 << 20)
    # Allowed explicitly, it is read (and bounded by its header's declared size).
    arrays = S.read_npz(path, max_ratio=1e9)
    assert arrays["param/0.weight"].shape == (n,) and not arrays["param/0.weight"].any()


def test_member_header_declaring_a_huge_array_is_refused_before_allocating(tmp_path):
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("param/0.weight.npy", npy_header((10**12,)) + bytes(64))
    tracemalloc.start()
    try:
        with pytest.raises(S.ModelFileError, match=r"liar.npz: member 'param/0.weight.npy': "
                                                   r"declares an array of shape \(1000000000000,\)"
                                                   r".* over the limit"):
            S.read_npz(path)
        assert tracemalloc.get_traced_memory()[1] < 16 << 20
    finally:
        tracemalloc.stop()
    # Within the limit but not what the member holds: the header lies.
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("param/0.weight.npy", npy_header((1000,)) + bytes(64))
    with pytest.raises(S.ModelFileError, match=r"declares shape \(1000,\).*but 64 bytes"):
        S.read_npz(path)


def test_bare_npy_claiming_1e12_values_is_refused_as_an_image(tmp_path):
    path = tmp_path / "huge.npy"
    path.write_bytes(npy_header((10**6, 10**6), "|u1") + bytes(100))
    with pytest.raises(ImageFileError, match=r"huge.npy: declares an array of shape "
                                             r"\(1000000, 1000000\).*over the limit"):
        load_images(path)
    path.write_bytes(npy_header((28, 28), "|u1") + bytes(100))
    with pytest.raises(ImageFileError, match=r"declares shape \(28, 28\).*but 100 bytes"):
        load_images(path)


def test_checkpoint_reader_has_the_same_limits(tmp_path):
    path = tmp_path / "ckpt.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("param/0.weight.npy", npy_header((10**12,)) + bytes(64))
    with pytest.raises(CheckpointError, match="ckpt.npz.*over the limit"):
        load_checkpoint(path)


# -- architectures that do not fit the file ------------------------------------------------
def test_huge_architecture_fails_fast_without_allocating(tmp_path):
    path = model_file(tmp_path, linear_stack_arrays(40, 8000, (2, 2)))
    assert path.stat().st_size < 300_000
    tracemalloc.start()
    try:
        start = time.perf_counter()
        with pytest.raises(S.ModelFileError, match=r"parameter '0.weight' has shape \(2, 2\), "
                                                   r"the architecture needs \(8000, 8000\)"):
            S.load_model(path)
        assert time.perf_counter() - start < 5
        assert tracemalloc.get_traced_memory()[1] < 32 << 20
    finally:
        tracemalloc.stop()


def test_huge_architecture_in_the_cli_under_a_1_gib_address_space(tmp_path):
    path = model_file(tmp_path, linear_stack_arrays(40, 8000, (2, 2)))
    assert_cli_error(run_cli("evaluate", path, limit_memory=True),
                     "do not fit the architecture", "(8000, 8000)")


def test_placeholders_never_reach_a_loaded_model(tmp_path):
    model = build_model("resnet-mini", rng=1)
    S.save_model(model, tmp_path / "r.npz")
    loaded = S.load_model(tmp_path / "r.npz")
    for name, value in list(loaded.named_parameters()) + list(loaded.named_buffers()):
        assert not is_placeholder(value) and value.flags.writeable, name
    with deferred_init():
        probe = Linear(8000, 8000)
    assert is_placeholder(probe.params["weight"]) and probe.parameter_count() == 8000 * 8001


def test_wrong_buffer_shape_and_missing_names_are_refused(tmp_path):
    arrays = S.model_arrays(build_model("resnet-mini", rng=0))
    key = next(k for k in arrays if k.startswith("buffer/") and k.endswith("running_mean"))
    bad = dict(arrays, **{key: np.zeros(3, np.float32)})
    with pytest.raises(S.ModelFileError, match=r"buffer .* has shape \(3,\)"):
        S.load_model(model_file(tmp_path, bad))
    del bad[key]
    with pytest.raises(S.ModelFileError, match="buffers do not match: missing"):
        S.load_model(model_file(tmp_path, bad))


# -- architecture JSON depth ---------------------------------------------------------------
def test_deeply_nested_architecture_json_is_refused(tmp_path):
    arrays = S.model_arrays(Sequential(Linear(2, 2)))
    arrays["__architecture__"] = np.array("[" * 100_000 + "]" * 100_000)
    path = model_file(tmp_path, arrays)
    with pytest.raises(S.ModelFileError, match=f"nested 100000 levels deep, over the limit "
                                               f"of {S.MAX_JSON_DEPTH}"):
        S.load_model(path)
    assert_cli_error(run_cli("evaluate", path), "nested 100000 levels deep")
    # Brackets inside strings do not count; a deep tree given as a dict is refused too.
    assert isinstance(S.model_from_json(S.architecture_to_json(Sequential(ReLU()))),
                      Sequential)
    node = {"class": "ReLU"}
    for _ in range(5000):
        node = {"class": "Sequential", "children": [node]}
    with pytest.raises(ValueError, match="nested more than"):
        S.layer_from_dict(node)


def test_json_depth_scan_ignores_strings():
    from im2col_net.safeio import json_depth

    assert json_depth('{"a": "[[[[{{{{", "b": [1, [2]]}') == 3
    assert json_depth('"\\"[[["') == 0
    assert json_depth("[" * 3000 + "]" * 3000) == 3000


# -- non-finite weights --------------------------------------------------------------------
def _nonfinite_model(tmp_path):
    """convnet with -inf in one bias of its first conv: refused on load, but the ReLU after
    it maps the channel to 0, so the logits stay finite when it is loaded anyway."""
    model = build_model("convnet", rng=0)
    model[0].params["bias"][3] = -np.inf
    path = tmp_path / "inf.npz"
    S.save_model(model, path)
    return path


def test_nonfinite_weights_are_refused_unless_allowed(tmp_path):
    path = _nonfinite_model(tmp_path)
    with pytest.raises(S.ModelFileError, match=r"inf.npz: non-finite weights: parameter "
                                               r"'0.bias' has 1 of 32 values NaN or infinite"):
        S.load_model(path)
    model = S.load_model(path, allow_nonfinite=True)
    assert model[0].params["bias"][3] == -np.inf
    arrays = S.model_arrays(build_model("resnet-mini", rng=0))
    key = next(k for k in arrays if k.endswith("running_var"))
    arrays[key] = np.full_like(arrays[key], np.nan)
    with pytest.raises(S.ModelFileError, match=f"buffer '{key[7:]}' has {arrays[key].size} "
                                               f"of {arrays[key].size} values NaN"):
        S.load_model(model_file(tmp_path, arrays, "bn.npz"))


def test_cli_refuses_nonfinite_weights_and_loads_them_with_the_flag(tmp_path, capsys):
    path = _nonfinite_model(tmp_path)
    image = tmp_path / "digit.npy"
    np.save(image, np.zeros((28, 28), np.uint8))
    for command in (["evaluate", path, "--limit", "4"], ["predict", path, image]):
        code, out, err = cli_in_process(capsys, *command)
        assert code == 2 and err.startswith("im2col-net: error: ") and "non-finite" in err
        assert "--allow-nonfinite" in err and len(err.strip().splitlines()) == 1
    code, out, err = cli_in_process(capsys, "predict", path, image, "--allow-nonfinite")
    assert code == 0 and "digit.npy: class" in out, err
    code, out, err = cli_in_process(capsys, "evaluate", path, "--limit", "4",
                                    "--allow-nonfinite")
    assert code == 0 and "test accuracy" in out, err


# -- what the path is ----------------------------------------------------------------------
def test_directory_fifo_device_text_and_npy_given_as_a_model(tmp_path, capsys):
    (tmp_path / "dir.npz").mkdir()
    os.mkfifo(tmp_path / "fifo.npz")
    os.symlink("/dev/zero", tmp_path / "zero.npz")
    (tmp_path / "text.npz").write_text("hello, I am a text file\n")
    (tmp_path / "empty.npz").write_bytes(b"")
    np.save(tmp_path / "bare.npy", np.zeros(3))
    (tmp_path / "bare.npz").write_bytes((tmp_path / "bare.npy").read_bytes())
    with open(tmp_path / "obj.npz", "wb") as handle:
        np.savez(handle, x=np.array([None, 1], dtype=object))
    expected = {
        "dir.npz": "is a directory, not an .npz model file",
        "fifo.npz": "is not a regular file (FIFO)",
        "zero.npz": "is not a regular file (character device)",
        "text.npz": "not an .npz model file (starts with b'hello, I'",
        "empty.npz": "is empty (0 bytes)",
        "bare.npz": "is a single .npy array, not an .npz archive",
        "obj.npz": "object arrays are refused for safety",
        "missing.npz": "no such model file",
    }
    for name, fragment in expected.items():
        if name == "fifo.npz":  # a subprocess with a timeout: a FIFO must never be waited on
            assert_cli_error(run_cli("evaluate", tmp_path / name, timeout=60), name, fragment)
        else:
            code, _, err = cli_in_process(capsys, "evaluate", tmp_path / name)
            assert code == 2 and err.count("\n") == 1, err
            assert err.startswith(f"im2col-net: error: {tmp_path / name}: ") and fragment in err
            assert "allow_pickle" not in err
        if name != "missing.npz":
            with pytest.raises(S.ModelFileError) as info:
                S.read_npz(tmp_path / name)
            assert fragment in str(info.value) and "allow_pickle" not in str(info.value)
    with pytest.raises(FileNotFoundError):
        S.read_npz(tmp_path / "missing.npz")


def test_read_npz_messages_for_each_kind(tmp_path):
    (tmp_path / "dir.npz").mkdir()
    os.mkfifo(tmp_path / "fifo.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    for name, fragment in (("dir.npz", "is a directory"), ("fifo.npz", r"\(FIFO\)"),
                           ("text.npz", "not an .npz model file")):
        with pytest.raises(S.ModelFileError, match=fragment) as info:
            S.read_npz(tmp_path / name)
        assert "pickle" not in str(info.value)


def test_image_and_idx_readers_say_what_the_path_is(tmp_path):
    (tmp_path / "dir.png").mkdir()
    os.mkfifo(tmp_path / "fifo.npy")
    os.symlink("/dev/zero", tmp_path / "zero.png")
    with pytest.raises(ImageFileError, match="dir.png: is a directory"):
        load_images(tmp_path / "dir.png")
    with pytest.raises(ImageFileError, match=r"fifo.npy: is not a regular file \(FIFO\)"):
        load_images(tmp_path / "fifo.npy")
    with pytest.raises(ImageFileError, match=r"zero.png: is not a regular file \(character"):
        load_images(tmp_path / "zero.png")
    with pytest.raises(FileNotFoundError):
        load_images(tmp_path / "missing.png")
    with pytest.raises(idx.DataError, match="dir.png: is a directory"):
        idx.read_idx(tmp_path / "dir.png")
    with pytest.raises(idx.DataError, match=r"is not a regular file \(FIFO\)"):
        idx.read_idx(tmp_path / "fifo.npy")
    (tmp_path / "text.npy").write_text("just text")
    with pytest.raises(ImageFileError, match=r"text.npy: not a .npy array \(starts with b'just"):
        load_images(tmp_path / "text.npy")


def test_cli_predict_with_a_fifo_image(tmp_path):
    S.save_model(build_model("convnet", rng=0), tmp_path / "m.npz")
    os.mkfifo(tmp_path / "img.png")
    assert_cli_error(run_cli("predict", tmp_path / "m.npz", tmp_path / "img.png", timeout=60),
                     "img.png", "is not a regular file (FIFO)")


# -- PNG -----------------------------------------------------------------------------------
def test_png_size_is_refused_from_ihdr_before_inflating(tmp_path, monkeypatch):
    def no_decoding(*args):
        raise AssertionError("the image data must not be decoded")

    monkeypatch.setattr(imageio, "_unfilter", no_decoding)
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_bytes(100_000, 100_000, bytes(1000)))
    assert huge.stat().st_size < 4096
    with pytest.raises(ImageFileError, match=r"100000x100000 is out of range"):
        read_png_gray(huge)
    zeros = tmp_path / "zeros.png"
    zeros.write_bytes(png_bytes(4096, 4096, bytes(4097 * 4096)))
    assert zeros.stat().st_size < 100_000
    start = time.perf_counter()
    with pytest.raises(ImageFileError, match=r"4096x4096 is 16,777,216 pixels, over the limit "
                                             r"of 4,194,304"):
        read_png_gray(zeros)
    with pytest.raises(ImageFileError, match="images must be 28x28, got 4096x4096"):
        load_images(zeros, max_pixels=1 << 30)
    assert time.perf_counter() - start < 2


def test_png_stream_longer_than_ihdr_says_is_cut_off(tmp_path):
    path = tmp_path / "liar.png"
    path.write_bytes(png_bytes(28, 28, bytes(64 << 20)))  # 64 MiB behind a 28x28 header
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(ImageFileError, match=r"inflates to more than the 812 bytes a "
                                                 r"28x28 8-bit grayscale image needs"):
            load_images(path)
        assert tracemalloc.get_traced_memory()[1] < 8 << 20
    finally:
        tracemalloc.stop()


def test_png_paeth_rows_decode_quickly_and_correctly(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (256, 256), dtype=np.uint8)
    raw = bytearray()
    previous = np.zeros(256, np.int64)
    for row in pixels.astype(np.int64):  # encode with the Average filter (type 3)
        left = np.concatenate([[0], row[:-1]])
        raw += bytes([3]) + bytes(((row - (left + previous) // 2) % 256).astype(np.uint8))
        previous = row
    path = tmp_path / "avg.png"
    path.write_bytes(png_bytes(256, 256, bytes(raw)))
    start = time.perf_counter()
    np.testing.assert_array_equal(read_png_gray(path), pixels)
    assert time.perf_counter() - start < 5


# -- IDX -----------------------------------------------------------------------------------
def test_idx_gzip_header_claiming_1e9_images_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb-idx.gz"
    header = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 10**9, 28, 28)
    path.write_bytes(gzip.compress(header + bytes(1 << 20)))
    with pytest.raises(idx.IdxFormatError, match=r"bomb-idx.gz: IDX header declares dimensions "
                                                 r"\(1000000000, 28, 28\).*over the limit"):
        idx.read_idx(path)


def test_idx_gzip_stream_longer_than_its_header_is_cut_off(tmp_path):
    path = tmp_path / "long.gz"
    header = bytes([0, 0, 0x08, 2]) + struct.pack(">2I", 2, 3)
    path.write_bytes(gzip.compress(header + bytes(64 << 20)))
    tracemalloc.start()
    try:
        with pytest.raises(idx.IdxFormatError, match=r"trailing bytes.*need 6 payload bytes, "
                                                     r"found more than"):
            idx.read_idx(path)
        assert tracemalloc.get_traced_memory()[1] < 16 << 20
    finally:
        tracemalloc.stop()
    # A raw file over the limit is refused from its size; within it, read as before.
    raw = tmp_path / "raw.idx"
    raw.write_bytes(header + bytes(6))
    assert idx.read_idx(raw).shape == (2, 3)
    raw.write_bytes(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 5000) + bytes(5000))
    with pytest.raises(idx.IdxFormatError, match="over the limit of 4,096 bytes"):
        idx.read_idx(raw, max_bytes=4096)


# -- dry runs ------------------------------------------------------------------------------
def test_summary_of_a_huge_input_does_not_allocate():
    result = run_cli("summary", "--model", "lenet5", "--input-shape", "1,100000,100000",
                     limit_memory=True)
    assert_cli_error(result, "layer 7 (Linear)", "expected input of shape (N, 400)")
    result = run_cli("summary", "--model", "resnet-mini", "--input-shape", "1,100000,100000",
                     limit_memory=True)
    assert result.returncode == 0, result.stderr
    assert "Total parameters" in result.stdout and "(64, 10)" in result.stdout


def test_summary_of_a_real_model_with_a_huge_input_runs_no_layer():
    model = build_model("resnet-mini", rng=0)
    tracemalloc.start()
    try:
        s = model.summary((1, 100_000, 100_000), batch_size=8)
        assert tracemalloc.get_traced_memory()[1] < 8 << 20
    finally:
        tracemalloc.stop()
    assert s.output_shape == (8, 10) and s.input_bytes == 8 * 10**10 * 4


def test_summary_runs_a_layer_without_output_shape_only_on_small_inputs():
    class Doubler(Layer):  # a user's layer: no output_shape, so the summary runs it
        def forward(self, x):
            return np.concatenate([x, x], axis=1)

    model = Sequential(Conv2D(1, 2, 3), Doubler(), Flatten())
    s = summarize(model, (1, 8, 8), batch_size=2)
    assert [r.output_shape for r in s.rows] == [(2, 2, 6, 6), (2, 4, 6, 6), (2, 144)]
    with pytest.raises(ValueError, match=r"layer 1 \(Doubler\).*no output_shape\(\).*over the "
                                         r"dry-run limit of 16,777,216 elements"):
        summarize(model, (1, 10_000, 10_000))


def _leaves(layer):
    children = layer.children()
    if not children:
        yield layer
    for child in children:
        yield from _leaves(child)


@pytest.mark.parametrize("name", sorted(MODEL_BUILDERS))
def test_inferred_shapes_equal_the_real_forward(name, monkeypatch):
    model = build_model(name, rng=0)
    model.eval()
    seen = {}  # id(leaf) -> (input shape, output shape) of its real forward
    for leaf in _leaves(model):
        def recording(x, leaf=leaf, forward=leaf.forward):
            y = forward(x)
            seen[id(leaf)] = (np.shape(x), np.shape(y))
            return y
        monkeypatch.setattr(leaf, "forward", recording)
    x = np.random.default_rng(0).random((3, 1, 28, 28)).astype(np.float32)
    y = model.forward(x)
    assert model.output_shape(x.shape) == y.shape
    for leaf in _leaves(model):
        if id(leaf) in seen:  # not the ReLU/MaxPool pairs Sequential runs fused
            x_shape, y_shape = seen[id(leaf)]
            assert leaf.output_shape(x_shape) == y_shape, leaf
    layers = dict(S.named_layers(model))
    rows = model.summary((1, 28, 28), batch_size=3).rows
    compared = [r for r in rows if id(layers[r.name]) in seen]
    assert len(compared) >= len(seen) // 2
    for row in compared:
        assert row.output_shape == seen[id(layers[row.name])][1], row.name
    assert rows[-1].output_shape == y.shape


@pytest.mark.parametrize("layer, shape", [
    (Conv2D(3, 4, 3, stride=2, padding=1, dilation=2), (2, 3, 11, 9)),
    (Conv2D(2, 4, (2, 3), padding="same", padding_mode="reflect", groups=2), (1, 2, 5, 6)),
    (Conv2D(1, 2, 4, padding=(1, 0, 2, 3), padding_mode="edge"), (2, 1, 7, 7)),
    (ConvTranspose2D(2, 4, 3, stride=2, padding=1, output_padding=1), (2, 2, 5, 4)),
    (MaxPool2D(3, stride=2, padding=1), (2, 3, 9, 8)),
    (AvgPool2D(2, stride=1), (1, 2, 5, 5)),
    (GlobalAvgPool2D(), (2, 3, 4, 5)),
    (BatchNorm1D(3), (4, 3, 7)),
    (BatchNorm2D(3), (2, 3, 4, 4)),
    (Flatten(), (2, 3, 4, 5)),
    (Parallel(Conv2D(2, 3, 1), Conv2D(2, 1, 3, padding=1)), (2, 2, 5, 5)),
    (Residual(Sequential(Conv2D(2, 2, 3, padding=1), ReLU())), (1, 2, 4, 4)),
])
def test_output_shape_matches_forward_for_varied_layers(layer, shape):
    layer.eval()
    y = layer.forward(np.zeros(shape, np.float32))
    assert layer.output_shape(shape) == y.shape


@pytest.mark.parametrize("layer, shape", [
    (Conv2D(3, 4, 3), (2, 2, 8, 8)),
    (Conv2D(1, 1, 5), (1, 1, 3, 3)),
    (Conv2D(1, 1, 3, padding=3, padding_mode="reflect"), (1, 1, 3, 3)),
    (Linear(4, 2), (2, 5)),
    (MaxPool2D(4), (1, 1, 3, 3)),
    (BatchNorm2D(3), (2, 4, 2, 2)),
    (Residual(Conv2D(2, 3, 1)), (1, 2, 4, 4)),
])
def test_output_shape_refuses_what_forward_refuses(layer, shape):
    with pytest.raises(ValueError) as inferred:
        layer.output_shape(shape)
    with pytest.raises(ValueError) as real:
        layer.eval().forward(np.zeros(shape, np.float32))
    if isinstance(layer, Residual):  # forward also names the dtypes
        plain = str(real.value).replace(" (float32)", "").replace(" and dtypes", "")
        assert plain == str(inferred.value)
    else:
        assert str(inferred.value) == str(real.value)


# -- gradcheck -----------------------------------------------------------------------------
@pytest.mark.parametrize("argv, fragment", [
    (["conv2d", "--size", "100000"], "over the limit of 1,000,000 for gradcheck"),
    (["conv2d", "--channels", "100000", "--out-channels", "100000", "--size", "1",
      "--kernel", "1", "--batch", "1"], "parameters, over the limit of 1,000,000"),
    (["conv2d", "--padding", "100000"], "output of shape (2, 4, 200004, 200004)"),
    (["linear", "--channels", "200", "--out-channels", "200"],
     "--mode full perturbs every input and parameter element"),
    (["conv2d", "--size", "40", "--channels", "4", "--batch", "3"], "element-passes"),
])
def test_gradcheck_refuses_absurd_sizes(capsys, argv, fragment):
    start = time.perf_counter()
    code, out, err = cli_in_process(capsys, "gradcheck", *argv)
    assert code == 2 and err.startswith("im2col-net: error: ") and fragment in err, err
    assert time.perf_counter() - start < 5
