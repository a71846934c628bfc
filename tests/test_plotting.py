"""Pictures of a run: every file is a valid PNG of the documented size with something drawn
on it; bad input is refused; the ``plot`` command works on a small synthetic run."""

import json
import struct
import sys
import zlib

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import im2col_net  # noqa: E402
from im2col_net.app import plotting  # noqa: E402
from im2col_net.app.cli import main  # noqa: E402
from im2col_net.datasets import CLASS_NAMES, load_dataset  # noqa: E402
from im2col_net.training import evaluate  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """``(width, height)`` of a PNG file after checking its structure: the signature, an
    IHDR chunk first (length 13, valid CRC) and an IEND chunk last."""
    data = open(path, "rb").read()
    assert data[:8] == PNG_SIGNATURE, f"{path}: not a PNG signature"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR"), f"{path}: first chunk is {kind!r} ({length})"
    ihdr = data[16:29]
    (crc,) = struct.unpack(">I", data[29:33])
    assert crc == zlib.crc32(b"IHDR" + ihdr), f"{path}: IHDR CRC mismatch"
    assert data[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82", f"{path}: no IEND chunk at the end"
    width, height = struct.unpack(">II", ihdr[:8])
    return width, height


def assert_png(path, size):
    assert png_size(path) == size
    from matplotlib.image import imread

    pixels = imread(path)
    assert pixels.shape[:2] == (size[1], size[0])
    # Something was drawn: many distinct colours, not a blank canvas.
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 10


def metrics_records(epochs=3, steps_per_epoch=4):
    """A metrics log as the trainer writes it (format: im2col_net.training.metrics)."""
    records = [{"kind": "event", "event": "start", "epoch": 0, "step": 0, "time": 0.0,
                "run": {"meta": {"settings": {"dataset": "mnist", "limit": 200}}}}]
    step = 0
    for epoch in range(epochs):
        for i in range(1, steps_per_epoch + 1):
            step += 1
            progress = epoch + i / steps_per_epoch
            records.append({"kind": "step", "epoch": progress, "step": step,
                            "loss": 2.3 * np.exp(-progress), "accuracy": 1 - 0.9 * np.exp(
                                -progress), "lr": 1e-3 * (1 - progress / (epochs + 1)),
                            "images_per_sec": 900.0, "time": step * 0.1})
        records.append({"kind": "epoch", "epoch": epoch + 1, "step": step,
                        "train_loss": 2.0 * np.exp(-epoch), "train_accuracy": 0.5 + 0.1 * epoch,
                        "test_loss": None if epoch == 0 else 1.5 * np.exp(-epoch),
                        "test_accuracy": 0.55 + 0.1 * epoch, "lr": 1e-3, "epoch_time": 1.0,
                        "time": step * 0.1})
    records.append({"kind": "something-new", "epoch": 9, "value": 1})
    return records


# -- the library functions --------------------------------------------------------------
@pytest.mark.parametrize("dpi, size", [(100, (1500, 450)), (72, (1080, 324))])
def test_curves_png_size(tmp_path, dpi, size):
    path = plotting.plot_curves(metrics_records(), tmp_path / "curves.png", dpi=dpi)
    assert path == str(tmp_path / "curves.png")
    assert_png(path, size)


def test_curves_from_epoch_records_only(tmp_path):
    records = [r for r in metrics_records() if r["kind"] == "epoch"]
    assert_png(plotting.plot_curves(records, tmp_path / "c.png"), (1500, 450))


def test_curves_without_records_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="plot_curves: expected metrics records"):
        plotting.plot_curves([{"kind": "event", "event": "start"}], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("shape, kwargs, size", [
    ((32, 1, 5, 5), {}, (760, 440)),             # 8 x 4 tiles
    ((32, 1, 5, 5), {"max_filters": 10}, (760, 260)),  # 8 x 2 tiles
    ((6, 3, 3, 3), {}, (580, 170)),              # RGB: 6 x 1 tiles
    ((4, 2, 3, 3), {}, (440, 440)),              # one row per filter, one column per channel
    ((1, 1, 7, 7), {"dpi": 50}, (220, 85)),
])
def test_filters_png_size(tmp_path, shape, kwargs, size):
    weight = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    assert_png(plotting.plot_filters(weight, tmp_path / "f.png", **kwargs), size)


def test_filters_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"plot_filters: expected a float weight .*\(3, 5, 5\)"):
        plotting.plot_filters(np.zeros((3, 5, 5)), tmp_path / "f.png")
    with pytest.raises(ValueError, match="plot_filters: expected a float weight.*int64"):
        plotting.plot_filters(np.zeros((3, 1, 5, 5), dtype=np.int64), tmp_path / "f.png")
    with pytest.raises(ValueError, match="plot_filters: dpi must be an int"):
        plotting.plot_filters(np.zeros((3, 1, 5, 5)), tmp_path / "f.png", dpi=0)


def test_first_conv_weight_walks_containers():
    inner = im2col_net.Conv2D(1, 3, 3, rng=0)
    model = im2col_net.Sequential(im2col_net.Sequential(im2col_net.ReLU(), inner),
                                  im2col_net.Conv2D(3, 5, 3, rng=1))
    assert plotting.first_conv_weight(model) is inner.params["weight"]
    assert plotting.first_conv_weight(im2col_net.Sequential(im2col_net.Linear(2, 2))) is None


@pytest.mark.parametrize("k, names, size", [
    (10, CLASS_NAMES["fashion-mnist"], (950, 910)),
    (4, None, (560, 520)),
    (3, ["a", "b", "c"], (495, 455)),
])
def test_confusion_png_size(tmp_path, k, names, size):
    rng = np.random.default_rng(1)
    matrix = rng.integers(0, 20, (k, k)) + np.diag(rng.integers(50, 200, k))
    matrix[0] = 0  # a class with no samples must not divide by zero
    assert_png(plotting.plot_confusion(matrix, names, tmp_path / "cm.png"), size)


def test_confusion_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"plot_confusion: expected non-negative .*\(2, 3\)"):
        plotting.plot_confusion(np.zeros((2, 3), dtype=int), None, tmp_path / "cm.png")
    with pytest.raises(ValueError, match="plot_confusion: expected non-negative integer.*float"):
        plotting.plot_confusion(np.eye(3), None, tmp_path / "cm.png")
    with pytest.raises(ValueError, match="expected 3 class names for a 3x3 matrix, got 2"):
        plotting.plot_confusion(np.eye(3, dtype=int), ["a", "b"], tmp_path / "cm.png")


@pytest.mark.parametrize("n, max_images, size", [
    (40, 32, (1200, 780)),   # 8 x 4
    (5, 32, (750, 255)),     # 5 x 1
    (0, 32, (440, 255)),     # a notice
    (20, 9, (1200, 430)),    # 8 x 2
])
def test_misclassified_png_size(tmp_path, n, max_images, size):
    rng = np.random.default_rng(2)
    images = rng.random((n, 1, 28, 28), dtype=np.float32)
    true = rng.integers(0, 10, n)
    pred = (true + 1) % 10
    path = plotting.plot_misclassified(images, true, pred, tmp_path / "m.png",
                                       CLASS_NAMES["fashion-mnist"],
                                       confidence=rng.random(n), max_images=max_images)
    assert_png(path, size)


def test_misclassified_accepts_nhw_and_rgb(tmp_path):
    rng = np.random.default_rng(3)
    labels = np.arange(3)
    assert_png(plotting.plot_misclassified(rng.standard_normal((3, 8, 8)), labels, labels[::-1],
                                           tmp_path / "a.png"), (450, 255))
    assert_png(plotting.plot_misclassified(rng.random((3, 3, 8, 8)), labels, labels[::-1],
                                           tmp_path / "b.png"), (450, 255))


def test_misclassified_bad_input(tmp_path):
    images = np.zeros((4, 1, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match=r"expected true labels as ints of shape \(4,\)"):
        plotting.plot_misclassified(images, np.zeros(3, int), np.zeros(4, int), tmp_path / "m")
    with pytest.raises(ValueError, match=r"expected pred labels .*float64"):
        plotting.plot_misclassified(images, np.zeros(4, int), np.zeros(4), tmp_path / "m")
    with pytest.raises(ValueError, match=r"expected float images .*\(4, 2, 8, 8\)"):
        plotting.plot_misclassified(np.zeros((4, 2, 8, 8)), np.zeros(4, int), np.zeros(4, int),
                                    tmp_path / "m")


def test_writes_atomically_and_replaces(tmp_path):
    path = tmp_path / "c.png"
    path.write_bytes(b"old")
    plotting.plot_curves(metrics_records(), path)
    assert png_size(path) == (1500, 450)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png"]  # no temporary left


@pytest.fixture
def no_matplotlib(monkeypatch):
    """Make every ``import matplotlib...`` fail, as on a machine without it."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def test_missing_matplotlib_gives_a_clear_error(tmp_path, no_matplotlib):
    with pytest.raises(ImportError, match=r"needs matplotlib.*im2col_net\[plot\]"):
        plotting.plot_curves(metrics_records(), tmp_path / "c.png")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["plot", str(run_dir)])
    assert exit_info.value.code == 2


# -- a whole run directory and the command ----------------------------------------------
def small_model():
    return im2col_net.Sequential(
        im2col_net.Conv2D(1, 4, 3, padding=1, rng=0), im2col_net.ReLU(), im2col_net.MaxPool2D(2),
        im2col_net.Flatten(), im2col_net.Linear(4 * 14 * 14, 10, rng=1))


@pytest.fixture
def run_dir(tmp_path):
    directory = tmp_path / "run"
    directory.mkdir()
    with open(directory / "metrics.jsonl", "w") as handle:
        for record in metrics_records():
            handle.write(json.dumps(record) + "\n")
        handle.write('{"kind": "step", "epoch": 3.5, "lo')  # a line cut short by a crash
    im2col_net.save_model(small_model(), directory / "model.npz")
    return directory


def test_plot_command_on_a_run(run_dir, tmp_path, capsys):
    # The run's settings say mnist, first 200 test images; the untrained model gets most
    # of them wrong, so the mistake grid is full at --max-images 8.
    images, labels = load_dataset("mnist", "test", limit=200)
    _, accuracy, _ = evaluate(im2col_net.load_model(run_dir / "model.npz"), images, labels)
    assert accuracy < 0.9
    assert main(["plot", str(run_dir), "--max-images", "8"]) == 0
    out = capsys.readouterr().out
    expected = {"curves.png": (1500, 450), "filters.png": (440, 170),
                "confusion.png": (950, 910), "misclassified.png": (1200, 255)}
    for name, size in expected.items():
        assert str(run_dir / name) in out
        assert_png(run_dir / name, size)

    out_dir = tmp_path / "pictures"
    assert main(["plot", str(run_dir), "--out", str(out_dir), "--dpi", "50", "--limit", "50"]) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(expected)
    assert png_size(out_dir / "curves.png") == (750, 225)


def test_plot_run_without_model_draws_the_curves(run_dir):
    (run_dir / "model.npz").unlink()
    messages = []
    written = plotting.plot_run(run_dir, log=messages.append)
    assert list(written) == ["curves"]
    assert png_size(written["curves"]) == (1500, 450)
    assert any("no model pictures" in m for m in messages)


def test_plot_run_model_without_conv(run_dir):
    model = im2col_net.Sequential(im2col_net.Flatten(), im2col_net.Linear(784, 10, rng=0))
    im2col_net.save_model(model, run_dir / "model.npz")
    messages = []
    written = plotting.plot_run(run_dir, log=messages.append, limit=30)
    assert sorted(written) == ["confusion", "curves", "misclassified"]
    assert any("has no Conv2D layer" in m for m in messages)


def test_plot_command_errors(tmp_path, run_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["plot", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert "no such run directory" in capsys.readouterr().err

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["plot", str(empty)])
    assert exit_info.value.code == 2
    assert "holds neither metrics.jsonl nor model.npz" in capsys.readouterr().err

    # A model for 3-channel images cannot score MNIST.
    wrong = im2col_net.Sequential(im2col_net.Conv2D(3, 2, 3, rng=0), im2col_net.Flatten(),
                                  im2col_net.Linear(2 * 26 * 26, 10, rng=0))
    im2col_net.save_model(wrong, run_dir / "model.npz")
    with pytest.raises(SystemExit) as exit_info:
        main(["plot", str(run_dir)])
    assert exit_info.value.code == 2
    assert "does not fit mnist images" in capsys.readouterr().err


def test_train_with_plot_draws_the_pictures(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--limit", "128", "--epochs", "1", "--batch-size", "64",
                 "--out", str(out), "--progress", "none", "--plot"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("test accuracy")  # still the last line
    for name, size in {"curves.png": (1500, 450), "filters.png": (760, 440),
                       "confusion.png": (950, 910)}.items():
        assert f"plot: {name[:-4]} -> {out / name}" in lines
        assert png_size(out / name) == size
    assert png_size(out / "misclassified.png")[0] == 1200


def test_train_with_plot_needs_matplotlib_before_training(tmp_path, no_matplotlib, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--limit", "64", "--epochs", "1", "--out", str(out), "--plot"])
    assert exit_info.value.code == 2
    assert "--plot: im2col_net.app.plotting needs matplotlib" in capsys.readouterr().err
    assert not out.exists()  # refused before any training
