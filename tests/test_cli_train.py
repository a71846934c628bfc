"""The train / evaluate / predict commands: exit codes, a tiny real run, its outputs."""

import os
import re
import signal

import numpy as np
import pytest
from test_imageio import write_png

import im2col_net
from im2col_net.app.cli import main
from im2col_net.datasets import load_dataset
from im2col_net.training import evaluate, load_checkpoint, predict_proba, read_metrics

TRAIN_ARGS = ["--limit", "600", "--epochs", "1", "--batch-size", "50", "--progress", "lines"]


def _exit_code(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "--epochs", "0"], "positive integer"),
    (["train", "--batch-size", "many"], "positive integer"),
    (["train", "--lr", "-0.1"], "positive number"),
    (["train", "--lr", "nan"], "positive number"),
    (["train", "--seed", "-1"], "integer >= 0"),
    (["train", "--dataset", "cifar10"], "invalid choice"),
    (["train", "--model", "alexnet"], "invalid choice"),
    (["train", "--optimizer", "lbfgs"], "invalid choice"),
    (["train", "--schedule", "sawtooth"], "invalid choice"),
    (["train", "--dtype", "float16"], "invalid choice"),
    (["train", "--label-smoothing", "1"], "expected a number in [0, 1), got '1'"),
    (["train", "--label-smoothing", "nan"], "expected a number in [0, 1)"),
    (["train", "--resume"], "--resume needs --out"),
    (["evaluate"], "required"),
    (["predict", "model.npz"], "nothing to predict"),
])
def test_bad_arguments_exit_with_code_2(argv, message, capsys):
    code, err = _exit_code(argv, capsys)
    assert code == 2
    assert message in err


def test_resume_without_a_checkpoint_exits_2(tmp_path, capsys):
    code, err = _exit_code(["train", "--resume", "--out", str(tmp_path)], capsys)
    assert code == 2 and "no checkpoint" in err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A real (tiny) `im2col-net train` run with the default model."""
    out = tmp_path_factory.mktemp("run")
    code = main(["train", "--out", str(out), *TRAIN_ARGS])
    assert code == 0
    return out


def test_train_writes_model_checkpoint_and_log(trained_run, capsys):
    out = trained_run
    for name in ("model.npz", "checkpoint.npz", "metrics.jsonl"):
        assert (out / name).is_file(), name
    epochs = read_metrics(out / "metrics.jsonl", kind="epoch")
    assert len(epochs) == 1 and epochs[0]["step"] == 12  # 600 images / 50
    model = im2col_net.load_model(out / "model.npz")
    assert model.parameter_count() == 1663370  # the default convnet
    images, labels = load_dataset("mnist", "test", limit=600)
    _, accuracy, _ = evaluate(model, images, labels)
    assert accuracy == pytest.approx(epochs[0]["test_accuracy"])
    assert accuracy > 0.5  # 12 updates of the real default recipe already learn a lot


def test_train_last_line_states_accuracy_and_wall_time(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--model", "lenet5", *TRAIN_ARGS]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    match = re.fullmatch(r"test accuracy (\d+\.\d\d)% on 600 mnist test images after 1 "
                         r"epochs \| wall time (\d+\.\d) s for this command \(training "
                         r"\d+\.\d s\)", lines[-1])
    assert match, lines[-1]
    epochs = read_metrics(tmp_path / "metrics.jsonl", kind="epoch")
    assert float(match.group(1)) == pytest.approx(100 * epochs[0]["test_accuracy"], abs=0.006)
    assert any(line.startswith("epoch 1/1 step 12/12") for line in lines)  # plain lines


def test_train_resume_extends_the_run_and_checks_settings(tmp_path, capsys):
    args = ["train", "--out", str(tmp_path), "--model", "lenet5", *TRAIN_ARGS]
    assert main(args) == 0
    code, err = _exit_code(args, capsys)  # same directory again without --resume
    assert code == 2 and "--resume" in err
    code, err = _exit_code(["train", "--resume", "--out", str(tmp_path), "--batch-size", "10"],
                           capsys)
    assert code == 2 and "--batch-size 10 differs" in err
    assert main(["train", "--resume", "--out", str(tmp_path), "--epochs", "2",
                 "--progress", "none"]) == 0
    saved = load_checkpoint(tmp_path / "checkpoint.npz")
    assert saved.progress.epoch == 2 and saved.progress.step == 24
    assert saved.run["meta"]["settings"]["model"] == "lenet5"
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.jsonl", kind="epoch")] == [1, 2]


def test_train_ctrl_c_saves_and_exits_130(tmp_path, capsys, monkeypatch):
    from im2col_net.optim import Adam

    original = Adam.step
    calls = {"n": 0}

    def step(self, grads):
        original(self, grads)
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C pressed during update 5

    monkeypatch.setattr(Adam, "step", step)
    code = main(["train", "--out", str(tmp_path), "--model", "lenet5", *TRAIN_ARGS])
    monkeypatch.undo()
    assert code == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume --out" in err
    assert load_checkpoint(tmp_path / "checkpoint.npz").progress.step == 5
    assert main(["train", "--resume", "--out", str(tmp_path), "--progress", "none"]) == 0
    assert load_checkpoint(tmp_path / "checkpoint.npz").progress.step == 12


def test_evaluate_prints_accuracy_per_class_and_confusion(trained_run, capsys):
    assert main(["evaluate", str(trained_run / "model.npz"), "--limit", "300"]) == 0
    out = capsys.readouterr().out
    model = im2col_net.load_model(trained_run / "model.npz")
    images, labels = load_dataset("mnist", "test", limit=300)
    _, accuracy, predictions = evaluate(model, images, labels)
    assert f"test accuracy {100 * accuracy:.2f}% ({int((predictions == labels).sum())}/300)" \
        in out
    assert "per-class accuracy" in out and "confusion matrix" in out
    rows = [line for line in out.splitlines() if re.fullmatch(r"\d( +\d+){10}", line)]
    assert [row.split()[0] for row in rows] == [str(k) for k in range(10)]
    counts = np.array([[int(v) for v in row.split()[1:]] for row in rows])
    assert counts.sum() == 300 and np.trace(counts) == (predictions == labels).sum()
    assert np.array_equal(counts.sum(axis=1), np.bincount(labels, minlength=10))


def test_evaluate_refuses_missing_or_damaged_models(tmp_path, capsys):
    code, err = _exit_code(["evaluate", str(tmp_path / "none.npz")], capsys)
    assert code == 2 and "none.npz" in err
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    code, err = _exit_code(["evaluate", str(bad)], capsys)
    assert code == 2 and "bad.npz" in err


def test_predict_npy_and_png(trained_run, tmp_path, capsys):
    images, _ = load_dataset("mnist", "test", limit=5)
    pixels = np.round(images[:, 0] * 255).astype(np.uint8)
    np.save(tmp_path / "a.npy", pixels[0])                       # (28, 28) uint8
    np.save(tmp_path / "b.npy", images[1])                       # (1, 28, 28) float
    np.save(tmp_path / "c.npy", pixels[2:4])                     # (2, 28, 28) uint8
    write_png(tmp_path / "d.png", pixels[4], filters=(0, 1, 2, 3, 4))
    files = [tmp_path / n for n in ("a.npy", "b.npy", "c.npy", "d.png")]
    model_path = str(trained_run / "model.npz")
    assert main(["predict", model_path, *map(str, files)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5
    expected = predict_proba(im2col_net.load_model(model_path),
                             np.concatenate([pixels[:1, None] / np.float32(255), images[1:2],
                                             pixels[2:5, None] / np.float32(255)]))
    names = [str(files[0]), str(files[1]), f"{files[2]}[0]", f"{files[2]}[1]", str(files[3])]
    for line, name, probs in zip(lines, names, expected, strict=True):
        k = int(probs.argmax())
        assert line == f"{name}: class {k} p={probs[k]:.4f}"


@pytest.mark.parametrize("make, message", [
    (lambda p: write_png(p, np.zeros((28, 28, 3), np.uint8), color_type=2), "8-bit RGB"),
    (lambda p: write_png(p, np.zeros((32, 32), np.uint8)), "must be 28x28"),
    (lambda p: np.save(p, np.full((28, 28), 255.0)), "must lie in"),
    (lambda p: np.save(p, np.zeros((28, 28), np.int64)), "uint8"),
    (lambda p: p.write_bytes(b"hello"), "unsupported file type"),
])
def test_predict_refuses_other_inputs(trained_run, tmp_path, capsys, make, message):
    suffix = {"8-bit RGB": ".png", "must be 28x28": ".png", "unsupported file type": ".txt"}
    path = tmp_path / ("input" + suffix.get(message, ".npy"))
    make(path)
    code, err = _exit_code(["predict", str(trained_run / "model.npz"), str(path)], capsys)
    assert code == 2
    assert str(path) in err and message in err


def test_predict_missing_file_exits_2(trained_run, tmp_path, capsys):
    code, err = _exit_code(["predict", str(trained_run / "model.npz"),
                            str(tmp_path / "gone.png")], capsys)
    assert code == 2 and "gone.png" in err


def test_label_smoothing_setting_and_runs_saved_before_it(tmp_path, capsys):
    """The default recipe smooths its labels; a run saved before the setting existed
    resumes with none, and one trained with another value refuses to change it."""
    import argparse

    from im2col_net.app.cli import train_cmd

    fresh = train_cmd._resolve_settings(argparse.Namespace(**dict.fromkeys(train_cmd.DEFAULTS)),
                                        None)
    assert fresh["label_smoothing"] == train_cmd.DEFAULTS["label_smoothing"] > 0
    old = {k: v for k, v in fresh.items() if k != "label_smoothing"}
    resumed = train_cmd._resolve_settings(argparse.Namespace(**dict.fromkeys(train_cmd.DEFAULTS)),
                                          old)
    assert resumed["label_smoothing"] == 0.0
    args = ["train", "--out", str(tmp_path), "--model", "lenet5", "--label-smoothing", "0.05",
            *TRAIN_ARGS]
    assert main(args) == 0
    assert "label smoothing 0.05" in capsys.readouterr().out
    saved = load_checkpoint(tmp_path / "checkpoint.npz")
    assert saved.run["label_smoothing"] == 0.05
    assert saved.run["meta"]["settings"]["label_smoothing"] == 0.05
    code, err = _exit_code(["train", "--resume", "--out", str(tmp_path),
                            "--label-smoothing", "0.1"], capsys)
    assert code == 2 and "--label-smoothing 0.1 differs" in err
