"""Every CLI failure is one line ``im2col-net: error: ...`` with a documented exit code,
never a traceback; ``--data-dir`` is meant when given. The OSError cases drive the real
command as a subprocess (tests run as root, so faults come from RLIMIT_FSIZE, paths under
regular files and directories where files belong, not from permission bits)."""

import errno
import gzip
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from im2col_net.app.cli import bench_cmd, describe_error, main
from im2col_net.datasets import sources
from im2col_net.models import build_model
from im2col_net.serialization import save_model

ROOT = Path(__file__).resolve().parents[1]
QUICK_BENCH = ["bench", "--quick", "--batch-size", "2", "--no-torch", "--no-memory",
               "--repeats", "1", "--warmup", "0"]


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    env.pop(sources.DATA_ENV, None)
    env.pop("IM2COL_NET_DEBUG", None)
    env.update(extra)
    return env


def run_cli(*argv, env=None, preexec_fn=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "im2col_net", *map(str, argv)],
                          capture_output=True, text=True, env=env or _env(), timeout=120,
                          preexec_fn=preexec_fn, cwd=cwd)


def assert_one_line_error(result, code=2, *fragments, notes=None):
    """One error line on stderr (after progress notes starting with ``notes``, if any)."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    if notes is not None:
        assert all(line.startswith(notes) for line in lines[:-1]), result.stderr
        lines = lines[-1:]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("im2col-net: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """An untrained 10-class and a 12-class convnet saved with the library."""
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for classes in (10, 12):
        paths[classes] = folder / f"convnet{classes}.npz"
        save_model(build_model("convnet", rng=0, num_classes=classes), paths[classes])
    return paths


# --- bench --json: checked before measuring, never losing the result ---------------------

def test_bench_json_in_a_missing_directory(tmp_path):
    result = run_cli(*QUICK_BENCH, "--json", tmp_path / "missing" / "b.json")
    assert_one_line_error(result, 2, "does not exist")
    assert "images/s" not in result.stdout  # refused before measuring


def test_bench_json_that_is_a_directory(tmp_path):
    result = run_cli(*QUICK_BENCH, "--json", tmp_path)
    assert_one_line_error(result, 2, "is a directory")
    assert "images/s" not in result.stdout


def test_bench_json_under_a_regular_file(tmp_path):
    (tmp_path / "file").write_text("x")
    result = run_cli(*QUICK_BENCH, "--json", tmp_path / "file" / "b.json")
    assert_one_line_error(result, 2, "is not a directory")


def _file_size_limit(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_bench_json_write_failure_prints_the_result_first(tmp_path):
    target = tmp_path / "b.json"
    result = run_cli(*QUICK_BENCH, "--json", target, preexec_fn=_file_size_limit(64))
    line = assert_one_line_error(result, 2, "could not be written", "File too large")
    assert "images/s" in result.stdout            # the report
    assert '"train_step"' in result.stdout        # and the JSON it could not save
    assert str(target) in line
    assert not list(tmp_path.iterdir())          # no partial file, no temporary left


# --- other OSErrors: one line with the path ----------------------------------------------

def test_predict_on_a_directory_is_one_line(tmp_path, model_files):
    (tmp_path / "digit.png").mkdir()
    result = run_cli("predict", model_files[10], tmp_path / "digit.png")
    assert_one_line_error(result, 2, "digit.png")


def test_plot_png_path_that_is_a_directory_is_one_line(tmp_path):
    pytest.importorskip("matplotlib")
    from im2col_net import Conv2D, Flatten, Linear, MaxPool2D, ReLU, Sequential

    run = tmp_path / "run"
    run.mkdir()
    save_model(Sequential(Conv2D(1, 2, 3, padding=1, rng=0), ReLU(), MaxPool2D(2), Flatten(),
                          Linear(2 * 14 * 14, 10, rng=1)), run / "model.npz")
    (run / "filters.png").mkdir()
    result = run_cli("plot", run, "--limit", "20")
    line = assert_one_line_error(result, 2, str(run / "filters.png"), "Is a directory",
                                 notes="plot: ")
    assert ".tmp" not in line  # names the user's path, not the temporary file


def test_train_out_under_a_regular_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    result = run_cli("train", "--out", tmp_path / "file" / "run", "--limit", "64",
                     "--epochs", "1", "--batch-size", "64", "--progress", "none")
    assert_one_line_error(result, 2, str(tmp_path / "file"))


# --- evaluate: a model for another number of classes ------------------------------------

def test_evaluate_a_12_class_model_on_mnist(model_files):
    result = run_cli("evaluate", model_files[12], "--limit", "20")
    assert_one_line_error(result, 2, "outputs 12 class scores", "mnist has 10 classes")


# --- --data-dir / $IM2COL_NET_DATA are meant -------------------------------------------

@pytest.mark.parametrize("make, fragment", [
    (lambda d: None, "does not exist"),
    (lambda d: d.mkdir(), "does not hold the file"),
    (lambda d: d.write_text("not a directory"), "is not a directory"),
    (lambda d: (d.mkdir(), (d / "t10k-images.idx1.gz").write_text("")), "does not hold"),
])
def test_data_dir_without_the_data_is_an_error(tmp_path, model_files, make, fragment):
    data = tmp_path / "data"
    make(data)
    result = run_cli("evaluate", model_files[10], "--data-dir", data, "--limit", "20")
    line = assert_one_line_error(result, 2, fragment, str(data), "t10k-images-idx3-ubyte",
                                 "t10k-images.idx3-ubyte")
    assert "test accuracy" not in result.stdout  # no silent fallback to the bundled MNIST
    assert line


def test_the_environment_variable_is_meant_too(tmp_path, model_files):
    result = run_cli("evaluate", model_files[10], "--limit", "20",
                     env=_env(**{sources.DATA_ENV: str(tmp_path / "nowhere")}))
    assert_one_line_error(result, 2, f"${sources.DATA_ENV}", "does not exist")


@pytest.mark.parametrize("compress", [True, False])
def test_data_dir_with_kaggle_names_is_used(tmp_path, model_files, compress):
    data = tmp_path / "data" / "mnist"
    data.mkdir(parents=True)
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        source = sources.PACKAGE_MNIST_DIR / f"{stem}.gz"
        name = stem.replace("-idx", ".idx")
        if compress:
            shutil.copy(source, data / f"{name}.gz")
        else:
            (data / name).write_bytes(gzip.decompress(source.read_bytes()))
    result = run_cli("evaluate", model_files[10], "--data-dir", data.parent, "--limit", "20")
    assert result.returncode == 0, result.stderr
    assert "on 20 mnist test images" in result.stdout
    # the named directory's files are what was read (nothing else is searched)
    found = sources.find_file(data.parent, "t10k-images-idx3-ubyte", ("", "mnist"))
    assert found is not None and found.parent == data and ".idx3" in found.name


# --- the mapping itself (in process) -----------------------------------------------------

def _raising(exc):
    def run(args):
        raise exc
    return run


@pytest.mark.parametrize("exc, code, fragments", [
    (MemoryError(), 2, ["out of memory", "--batch-size"]),
    (MemoryError("Unable to allocate 9.1 GiB"), 2, ["out of memory", "9.1 GiB"]),
    (RecursionError("maximum recursion depth exceeded"), 2, ["recursion"]),
    (ValueError("bad thing\nsecond line"), 2, ["bad thing; second line"]),
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/x/model.npz"), 2,
     ["/x/model.npz: No space left on device"]),
    (PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/x/out"), 2,
     ["/x/out: Permission denied"]),
    (KeyError("oops"), 1, ["internal error: KeyError", "--debug"]),
])
def test_exceptions_become_one_line(monkeypatch, capsys, exc, code, fragments):
    monkeypatch.delenv("IM2COL_NET_DEBUG", raising=False)
    monkeypatch.setattr(bench_cmd, "run", _raising(exc))
    with pytest.raises(SystemExit) as info:
        main(["bench"])
    assert info.value.code == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("im2col-net: error: ")
    for fragment in fragments:
        assert fragment in err
    assert describe_error(exc)[1] == code


def test_debug_flag_and_variable_reraise(monkeypatch):
    monkeypatch.setattr(bench_cmd, "run", _raising(KeyError("oops")))
    with pytest.raises(KeyError):
        main(["--debug", "bench"])
    monkeypatch.setenv("IM2COL_NET_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["bench"])


def test_keyboard_interrupt_still_exits_130(monkeypatch, capsys):
    monkeypatch.setattr(bench_cmd, "run", _raising(KeyboardInterrupt()))
    assert main(["bench"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_json_path_is_checked_before_measuring(monkeypatch, tmp_path):
    measured = []
    monkeypatch.setattr("im2col_net.app.bench.run_benchmark",
                        lambda **kwargs: measured.append(kwargs) or {})
    with pytest.raises(SystemExit):
        main(["bench", "--json", str(tmp_path / "no" / "b.json")])
    assert not measured
