"""The command line as a new user meets it: version, help style, validation split and
early stopping, resume keeping every setting, threads, predict inputs, run directories."""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import im2col_net
from im2col_net.app.cli import build_parser, main
from im2col_net.app.imageio import load_images, resize_images, write_png_gray
from im2col_net.datasets import load_dataset
from im2col_net.models import build_model
from im2col_net.training import (
    TrainingInterrupted,
    fit,
    load_checkpoint,
    read_metrics,
    split_validation,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "lenet5", "--limit", "300", "--batch-size", "50", "--progress", "none"]


def _cli(*argv, umask=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "im2col_net", *map(str, argv)], env=env,
                          capture_output=True, text=True, timeout=240,
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def _exit_code(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    return info.value.code, capsys.readouterr().err


def _params(path):
    return {k: v for k, v in im2col_net.load_model(path).named_parameters()}


# -- version and help ------------------------------------------------------------------

def test_version_flag_and_attribute_share_one_source():
    result = _cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"im2col-net {im2col_net.__version__}"
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]', text, re.M)
    assert 'version = { attr = "im2col_net.__version__" }' in text
    assert not re.search(r'^version = "', text, re.M)  # no second copy of the number


def test_threadpoolctl_is_a_plain_dependency():
    text = (ROOT / "pyproject.toml").read_text()
    dependencies = re.search(r"^dependencies = \[(.*)\]", text, re.M).group(1)
    assert "threadpoolctl" in dependencies


def _options(parser):
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction,
                               argparse._SubParsersAction)):
            continue
        yield action


def test_help_texts_follow_one_style():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    problems = []
    for command, sub_parser in [("", parser), *sub.choices.items()]:
        description = sub_parser.description or ""
        if description[:1].isupper() or description.endswith("."):
            problems.append(f"{command}: description {description!r}")
        for action in _options(sub_parser):
            name = f"{command} {(action.option_strings or [action.dest])[-1]}"
            text = action.help or ""
            first = text.split()[0] if text else ""
            if not text:
                problems.append(f"{name}: no help")
                continue
            if (first[:1].isupper() and not first.isupper()) or text.endswith("."):
                problems.append(f"{name}: style {text!r}")
            if (action.option_strings and action.metavar is None and action.nargs != 0
                    and not action.choices
                    and not isinstance(action, argparse.BooleanOptionalAction)):
                problems.append(f"{name}: metavar {action.dest.upper()}")
            if action.default not in (None, False) and "default" not in text:
                problems.append(f"{name}: default {action.default!r} not shown")
    assert not problems, "\n".join(problems)


# -- validation split and early stopping -----------------------------------------------

def test_split_validation_is_disjoint_ordered_and_seeded():
    images = np.arange(40, dtype=np.float32).reshape(40, 1, 1, 1)
    labels = np.arange(40) % 10
    (tx, ty), (vx, vy) = split_validation((images, labels), fraction=0.25, seed=3)
    assert len(vx) == 10 and len(tx) == 30
    taken = np.concatenate([tx.ravel(), vx.ravel()])
    assert sorted(taken.tolist()) == list(range(40))  # disjoint and complete
    assert np.all(np.diff(tx.ravel()) > 0) and np.all(np.diff(vx.ravel()) > 0)
    again = split_validation((images, labels), size=10, seed=3)[1][0]
    assert np.array_equal(again, vx)  # the same seed, the same split
    assert not np.array_equal(split_validation((images, labels), size=10, seed=4)[1][0], vx)
    with pytest.raises(ValueError, match="leaves none"):
        split_validation((images, labels), size=40)


def test_train_val_split_evaluates_the_test_set_only_at_the_end(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *TINY, "--epochs", "2",
                 "--val-split", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "validation: 60 training images held out" in out and "at the end" in out
    epochs = read_metrics(run / "metrics.jsonl", kind="epoch")
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert all(r["val_loss"] is not None and r["test_accuracy"] is None for r in epochs)
    end = read_metrics(run / "metrics.jsonl", kind="event")[-1]
    assert end["event"] == "end" and end["test_accuracy"] is not None
    settings = load_checkpoint(run / "checkpoint.npz").run["meta"]["settings"]
    assert settings["val_split"] == 0.2
    # per-epoch test evaluation only when asked for
    other = tmp_path / "other"
    assert main(["train", "--out", str(other), *TINY, "--epochs", "1", "--val-size", "50",
                 "--eval-test-every-epoch"]) == 0
    record = read_metrics(other / "metrics.jsonl", kind="epoch")[0]
    assert record["test_accuracy"] is not None and record["val_accuracy"] is not None


def test_early_stop_keeps_the_best_weights_and_resume_keeps_them(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--out", str(run), "--model", "lenet5", "--limit", "400",
            "--batch-size", "50", "--epochs", "6", "--val-size", "100", "--early-stop", "1",
            "--lr", "0.03", "--schedule", "constant", "--progress", "none"]
    assert main(args) == 0
    out = capsys.readouterr().out
    epochs = read_metrics(run / "metrics.jsonl", kind="epoch")
    losses = [r["val_loss"] for r in epochs]
    best = int(np.argmin(losses)) + 1
    assert len(epochs) < 6 and len(epochs) == best + 1  # patience 1: one epoch past the best
    assert "(stopped early)" in out and f"weights of epoch {best}" in out
    stop = [r for r in read_metrics(run / "metrics.jsonl", kind="event")
            if r["event"] == "early_stop"]
    assert stop and stop[0]["best_epoch"] == best
    assert load_checkpoint(run / "checkpoint.npz").run["early_stopped"]["best_epoch"] == best
    model, kept = _params(run / "model.npz"), _params(run / "best.npz")
    assert all(np.array_equal(model[k], kept[k]) for k in model)
    # the reported test accuracy is that of the saved (best) weights
    images, labels = load_dataset("mnist", "test", limit=400)
    from im2col_net.training import evaluate

    _, accuracy, _ = evaluate(im2col_net.load_model(run / "model.npz"), images, labels)
    assert f"test accuracy {100 * accuracy:.2f}%" in out
    # resuming a stopped run trains no further
    assert main(["train", "--resume", "--out", str(run), "--progress", "none"]) == 0
    assert len(read_metrics(run / "metrics.jsonl", kind="epoch")) == len(epochs)
    again = _params(run / "model.npz")
    assert all(np.array_equal(model[k], again[k]) for k in model)


def test_early_stop_needs_a_validation_set(capsys):
    code, err = _exit_code(["train", *TINY, "--early-stop", "2"], capsys)
    assert code == 2 and "--early-stop needs a validation set" in err
    code, err = _exit_code(["train", *TINY, "--val-split", "0.1", "--val-size", "5"], capsys)
    assert code == 2 and "not allowed with" in err
    code, err = _exit_code(["train", *TINY, "--val-split", "1.5"], capsys)
    assert code == 2 and "fraction between 0 and 1" in err
    with pytest.raises(ValueError, match="early_stop needs val_data"):
        model = build_model("lenet5", rng=0)
        fit(model, load_dataset("mnist", "test", limit=20), epochs=1, batch_size=10,
            optimizer="adam", early_stop=1, progress=False)


def _fit_lenet(data, val, out_dir, **kwargs):
    model = build_model("lenet5", rng=np.random.default_rng(0))
    from im2col_net.optim import make_optimizer

    optimizer = make_optimizer("adam", model.params, lr=0.03)
    return model, fit(model, data, None, epochs=4, batch_size=50, optimizer=optimizer,
                      out_dir=out_dir, val_data=val, early_stop=2, progress=False, **kwargs)


def test_early_stop_resume_is_bit_exact_and_positions_are_1_based(tmp_path):
    train, val = split_validation(load_dataset("mnist", "train", limit=300), size=100)
    reference, _ = _fit_lenet(train, val, tmp_path / "ref")

    def stop_at_step_6(info):
        if info["step"] == 6:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as info:
        _fit_lenet(train, val, tmp_path / "run", callback=stop_at_step_6)
    assert "interrupted at epoch 2, step 6 (1 of 4 epochs done)" in str(info.value)
    stream = io.StringIO()
    model = build_model("lenet5", rng=np.random.default_rng(1))
    from im2col_net.optim import make_optimizer

    fit(model, train, None, epochs=4, batch_size=50,
        optimizer=make_optimizer("adam", model.params, lr=0.03), out_dir=tmp_path / "run",
        resume=True, val_data=val, early_stop=2, progress="lines", stream=stream)
    assert "at epoch 2, step 6 (1 of 4 epochs done)" in stream.getvalue()
    own = dict(model.named_parameters())
    assert all(np.array_equal(p, own[k]) for k, p in reference.named_parameters())


# -- resume keeps every setting; the time summary says what it covers -------------------

def test_resume_keeps_plot_and_says_what_it_replaces(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    first = _cli("train", "--out", run, *TINY, "--epochs", "1", "--plot", umask=0o027)
    assert first.returncode == 0, first.stderr
    curves = run / "curves.png"
    before = curves.stat().st_mtime_ns
    os.utime(curves, ns=(before - 10**10, before - 10**10))  # clearly older than the resume
    resumed = _cli("train", "--resume", "--out", run, "--epochs", "2", "--progress", "lines",
                   umask=0o027)
    assert resumed.returncode == 0, resumed.stderr
    assert "resume: --epochs 2 replaces the saved 1" in resumed.stdout
    assert "resume: --progress lines replaces the saved none" in resumed.stdout
    assert "plot: curves -> " in resumed.stdout  # --plot survived the resume
    assert curves.stat().st_mtime_ns > before - 10**10
    last = resumed.stdout.strip().splitlines()[-1]
    match = re.search(r"wall time (\d+\.\d) s for this command \(training (\d+\.\d) s; "
                      r"(\d+\.\d) s over all sessions of the run\)$", last)
    assert match, last
    assert float(match.group(2)) <= float(match.group(3))
    # every file written under umask 027 (the subprocesses) has mode 0640
    for name in ("model.npz", "filters.png", "curves.png", "confusion.png",
                 "misclassified.png", "train.lock"):
        assert (run / name).stat().st_mode & 0o777 == 0o640, name
    # --no-plot on a resume: the pictures left behind are called stale, not kept silent
    assert main(["train", "--resume", "--out", str(run), "--epochs", "3", "--no-plot"]) == 0
    quiet = capsys.readouterr().out
    assert "are from before this run's last session" in quiet
    assert f"im2col-net plot {run}" in quiet


# -- optional packages: explicit requests fail clearly, the fallback is safe -----------

def test_progress_bar_without_tqdm_is_an_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    code, err = _exit_code(["train", "--out", tmp_path / "r", *TINY, "--progress", "bar"],
                           capsys)
    assert code == 2 and "--progress bar needs tqdm" in err
    assert not (tmp_path / "r" / "metrics.jsonl").exists()  # refused before training


def test_without_threadpoolctl_train_warns_and_threads_is_refused(monkeypatch, capsys,
                                                                   tmp_path):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    code, err = _exit_code(["train", "--out", tmp_path / "a", *TINY, "--epochs", "1",
                            "--threads", "2"], capsys)
    assert code == 2 and "--threads needs threadpoolctl" in err
    assert main(["train", "--out", str(tmp_path / "b"), *TINY, "--epochs", "1"]) == 0
    assert "threadpoolctl is not installed" in capsys.readouterr().err


def test_engine_never_threads_on_top_of_an_uncontrolled_blas(monkeypatch):
    from im2col_net import runtime
    from im2col_net.runtime import blas

    monkeypatch.setattr(blas, "_blas", False)  # as without threadpoolctl
    threads = set()
    with runtime.forced_workers(2):
        runtime.run_blocks(lambda block, worker: threads.add(threading.get_ident()), 8)
    assert threads == {threading.get_ident()}


def test_train_threads_sets_blas_and_engine_threads(tmp_path, capsys):
    pytest.importorskip("threadpoolctl")
    from im2col_net import runtime
    from im2col_net.app.cli.train_cmd import _thread_limit

    if not runtime.blas_info():
        pytest.skip("no BLAS library visible to threadpoolctl")
    with _thread_limit(1):
        assert runtime.worker_count() == 1
    assert main(["train", "--out", str(tmp_path), *TINY, "--epochs", "1",
                 "--threads", "1"]) == 0
    assert load_checkpoint(tmp_path / "checkpoint.npz").run["meta"]["settings"]["threads"] == 1


# -- summary, evaluate and predict on what a user has ----------------------------------

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--out", str(run), *TINY, "--epochs", "1"]) == 0
    return run


def test_summary_of_a_saved_model_and_default_model(run_dir, capsys):
    assert main(["summary", str(run_dir)]) == 0
    saved = capsys.readouterr().out
    assert main(["summary", "--model", "lenet5"]) == 0
    assert capsys.readouterr().out == saved  # the same architecture, the same table
    assert main(["summary"]) == 0
    assert "1,663,370" in capsys.readouterr().out  # the default convnet, as for train
    code, err = _exit_code(["summary", run_dir / "model.npz", "--model", "convnet"], capsys)
    assert code == 2 and "not both" in err


def test_evaluate_a_run_directory_and_explain_an_unfinished_run(run_dir, tmp_path, capsys):
    assert main(["evaluate", str(run_dir), "--limit", "50"]) == 0
    assert f"{run_dir / 'model.npz'} on 50 mnist test images" in capsys.readouterr().out
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "checkpoint.npz").write_bytes((run_dir / "checkpoint.npz").read_bytes())
    for target in (unfinished, unfinished / "model.npz"):
        code, err = _exit_code(["evaluate", target], capsys)
        assert code == 2 and "no such model file" not in err
        assert f"train --resume --out {unfinished}" in err
        assert f"evaluate {unfinished / 'checkpoint.npz'}" in err
    code, err = _exit_code(["evaluate", tmp_path / "nothing.npz"], capsys)
    assert code == 2 and "no such model file" in err


def test_shipped_samples_are_the_named_test_digits(run_dir, capsys):
    from im2col_net.app.cli.predict_cmd import sample_files

    images, labels = load_dataset("mnist", "test")
    for digit, path in enumerate(sample_files()):
        first = int(np.flatnonzero(labels == digit)[0])
        assert np.array_equal(load_images(path), images[first:first + 1]), path
    assert main(["predict", str(run_dir), "--samples"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 10 and lines[7].split(": ")[0].endswith("digit7.png")


def test_predict_test_index_prints_the_true_class(run_dir, capsys):
    assert main(["predict", str(run_dir), "--test-index", "0", "5", "9"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [f"mnist test[{i}]" for i in (0, 5, 9)]
    assert lines[0].endswith("(true class 7)")
    code, err = _exit_code(["predict", run_dir, "--test-index", "10000"], capsys)
    assert code == 2 and "out of range" in err


def test_predict_resize_is_explicit_and_exact_for_whole_factors(run_dir, tmp_path, capsys):
    images, _ = load_dataset("mnist", "test", limit=1)
    pixels = np.rint(images[0, 0] * 255).astype(np.uint8)
    big = tmp_path / "big.png"
    write_png_gray(big, np.repeat(np.repeat(pixels, 2, axis=0), 3, axis=1))  # 56x84
    code, err = _exit_code(["predict", run_dir, big], capsys)
    assert code == 2 and "must be 28x28, got 56x84" in err and "--resize" in err
    assert main(["predict", str(run_dir), str(big), "--resize"]) == 0
    resized = capsys.readouterr().out
    assert main(["predict", str(run_dir), "--test-index", "0"]) == 0
    original = capsys.readouterr().out
    assert resized.split(": ")[1] == original.split(": ")[1].split(" (true")[0] + "\n"
    # area mean undoes whole-factor enlargement exactly; bilinear enlarges smoothly
    shrunk = load_images(big, resize=True)
    assert np.allclose(shrunk, images[:1], atol=1e-6)
    ramp = np.array([[[[0.0, 1.0]]]], dtype=np.float32)
    assert np.allclose(resize_images(ramp, (1, 4)), [[[[0, 0.25, 0.75, 1]]]])
    assert resize_images(ramp, (1, 4)).dtype == np.float32


def test_fashion_mnist_message_speaks_to_a_pip_user(monkeypatch, tmp_path):
    from im2col_net.datasets import DataError, sources

    monkeypatch.delenv(sources.DATA_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", "train", download=False)
    text = str(info.value)
    assert "not bundled" in text
    for hint in ("--data-dir", "$IM2COL_NET_DATA", "train-images-idx3-ubyte.gz",
                 "https://github.com/zalandoresearch/fashion-mnist",
                 "apt install dataset-fashion-mnist"):
        assert hint in text, hint
    # the ways to get it come first; the Debian package is one of them, not the first
    assert text.index("To get it") < text.index("Looked in")
    assert text.index("--data-dir") < text.index("apt install")


def test_bench_json_respects_the_umask(tmp_path):
    from im2col_net.app.cli.bench_cmd import write_json

    old = os.umask(0o027)
    try:
        write_json(str(tmp_path / "b.json"), {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o640
