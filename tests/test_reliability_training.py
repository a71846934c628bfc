"""Reliability of training: signals, run-directory locking, atomic files, full disks,
umask, non-finite values and tampered checkpoints.

Behaviour of the command (signals, locks, exit codes, one-line errors) is driven through
the real CLI in a subprocess. Where a fault must hit a precise moment (a signal or a kill
while a checkpoint is being written), the child is the real CLI started by a small
test-only wrapper that makes each update and each ``np.savez`` sleep a little, so the
moment lasts long enough to be hit reliably by polling; nothing in the package knows
about it.
"""

import fcntl
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import im2col_net
from im2col_net.app.cli import main
from im2col_net.layers import Conv2D, Dropout, Flatten, Linear, MaxPool2D, ReLU, Sequential
from im2col_net.layers.loss import SoftmaxCrossEntropy
from im2col_net.optim import make_optimizer
from im2col_net.serialization import (
    atomic_savez,
    remove_stale_temp_files,
    signals_held,
    stale_temp_files,
)
from im2col_net.training import (
    CheckpointError,
    NonFiniteError,
    RunDirLocked,
    evaluate,
    fit,
    load_checkpoint,
    lock_run_dir,
    read_metrics,
)

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 120  # generous: the machine may be loaded
# 12 updates of 50 images, lenet5: about a second per run.
CLI_RUN = ["--model", "lenet5", "--limit", "600", "--epochs", "1", "--batch-size", "50",
           "--progress", "none"]

# Test-only wrapper: argv = step_delay save_delay <CLI args>. Sleeps after each Adam update
# and after np.savez has filled the temporary file (before atomic_savez renames it).
SLOW_CHILD = r"""
import sys, time
import numpy as np
from im2col_net.optim import Adam
step_delay, save_delay = float(sys.argv[1]), float(sys.argv[2])
real_savez, real_step = np.savez, Adam.step

def slow_savez(file, *args, **kwargs):
    real_savez(file, *args, **kwargs)
    time.sleep(save_delay)

def slow_step(self, grads):
    real_step(self, grads)
    time.sleep(step_delay)

np.savez, Adam.step = slow_savez, slow_step
from im2col_net.app.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    env.pop("COLUMNS", None)
    return env


def _cli(*args, preexec_fn=None, cwd=None):
    """Run ``im2col-net`` to completion; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "im2col_net", *map(str, args)],
                          env=_env(), capture_output=True, text=True, timeout=TIMEOUT,
                          preexec_fn=preexec_fn, cwd=cwd)


def _slow_cli(*args, step_delay=0.0, save_delay=0.0):
    return subprocess.Popen([sys.executable, "-c", SLOW_CHILD, str(step_delay),
                             str(save_delay), *map(str, args)],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(proc):
    out, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out, err


def _wait_for(condition, proc, what, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"child exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.003)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def _training_started(run_dir):
    log = run_dir / "metrics.jsonl"
    return lambda: log.exists() and '"kind": "step"' in log.read_text()


def _checkpoint_temps(run_dir):
    return sorted(run_dir.glob(".checkpoint.npz.*.tmp"))


def _assert_one_line_error(err, *fragments):
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("im2col-net: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def _params(path):
    return {k: v for k, v in np.load(path).items() if k.startswith("param/")}


def _assert_same_params(path_a, path_b):
    a, b = _params(path_a), _params(path_b)
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted CLI run with CLI_RUN (the result resumed runs must reproduce)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    done = _cli("train", "--out", out, *CLI_RUN)
    assert done.returncode == 0, done.stderr
    return out


# -- signals ---------------------------------------------------------------------------
def test_second_ctrl_c_during_the_interrupt_checkpoint_waits_for_it(tmp_path, reference_run):
    run = tmp_path / "run"
    proc = _slow_cli("train", "--out", run, *CLI_RUN, "--log-every", "1",
                     step_delay=0.15, save_delay=0.6)
    _wait_for(_training_started(run), proc, "the first update")
    proc.send_signal(signal.SIGINT)
    _wait_for(lambda: _checkpoint_temps(run), proc, "the interrupt checkpoint's temp file")
    proc.send_signal(signal.SIGINT)   # while that checkpoint is being written
    proc.send_signal(signal.SIGTERM)  # and a SIGTERM for good measure
    code, _, err = _finish(proc)
    assert code == 130, err
    assert "Traceback" not in err and "--resume --out" in err
    saved = load_checkpoint(run / "checkpoint.npz")
    assert 1 <= saved.progress.step < 12 and saved.progress.epoch == 0
    assert not _checkpoint_temps(run)
    assert not (run / "model.npz").exists()
    done = _cli("train", "--resume", "--out", run, "--progress", "none")
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(run / "checkpoint.npz").progress.step == 12
    _assert_same_params(run / "model.npz", reference_run / "model.npz")  # bit-exact


def test_sigterm_checkpoints_and_exits_143(tmp_path):
    run = tmp_path / "run"
    proc = _slow_cli("train", "--out", run, *CLI_RUN, "--log-every", "1", step_delay=0.1)
    _wait_for(_training_started(run), proc, "the first update")
    proc.send_signal(signal.SIGTERM)
    code, _, err = _finish(proc)
    assert code == 143, err
    assert "Traceback" not in err and "interrupted at epoch 1" in err
    step = load_checkpoint(run / "checkpoint.npz").progress.step
    assert 1 <= step < 12
    events = [r["event"] for r in read_metrics(run / "metrics.jsonl", kind="event")]
    assert events == ["start", "interrupt"]


def test_signals_held_delivers_after_the_block():
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # the signal is handled by now, and only recorded
            reached = True
    assert reached
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_atomic_savez_completes_the_file(tmp_path, monkeypatch):
    real_savez = np.savez

    def savez_then_ctrl_c(file, *args, **kwargs):
        real_savez(file, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C after the data, before the rename

    monkeypatch.setattr(np, "savez", savez_then_ctrl_c)
    target = tmp_path / "a.npz"
    with pytest.raises(KeyboardInterrupt):
        atomic_savez(target, {"x": np.arange(5)})
    monkeypatch.undo()
    assert np.array_equal(np.load(target)["x"], np.arange(5))
    assert not stale_temp_files(target)


# -- kill -9, stale temp files -----------------------------------------------------------
def test_kill_9_during_a_checkpoint_write_then_resume_cleans_up(tmp_path):
    run = tmp_path / "run"
    args = ["train", "--out", run, "--model", "lenet5", "--limit", "200", "--epochs", "2",
            "--batch-size", "50", "--progress", "none"]
    proc = _slow_cli(*args, save_delay=0.6)
    # the first epoch's checkpoint is in place and the second one's is being written
    _wait_for(lambda: (run / "checkpoint.npz").exists() and _checkpoint_temps(run), proc,
              "the second checkpoint's temp file")
    proc.send_signal(signal.SIGKILL)
    code, _, _ = _finish(proc)
    assert code == -signal.SIGKILL
    orphans = _checkpoint_temps(run)
    assert orphans  # what a kill -9 leaves behind
    assert load_checkpoint(run / "checkpoint.npz").progress.epoch == 1  # previous one intact
    (run / "user-notes.tmp").write_text("not ours")
    (run / ".checkpoint.npz.tmp").write_text("not our name pattern")
    done = _cli("train", "--resume", "--out", run, "--progress", "none")
    assert done.returncode == 0, done.stderr  # the dead process's lock died with it
    assert not _checkpoint_temps(run)
    assert (run / "user-notes.tmp").exists() and (run / ".checkpoint.npz.tmp").exists()
    assert load_checkpoint(run / "checkpoint.npz").progress.epoch == 2


def test_stale_temp_files_match_only_our_pattern(tmp_path):
    target = tmp_path / "checkpoint.npz"
    ours = [tmp_path / ".checkpoint.npz.a1b2c3d4.tmp", tmp_path / ".checkpoint.npz.x_y9kq2z.tmp"]
    others = [tmp_path / ".checkpoint.npz.tmp", tmp_path / ".checkpoint.npz.abc.tmp",
              tmp_path / ".model.npz.a1b2c3d4.tmp", tmp_path / "checkpoint.npz.a1b2c3d4.tmp"]
    for path in ours + others:
        path.write_bytes(b"x")
    assert remove_stale_temp_files(target) == sorted(map(str, ours))
    assert all(p.exists() for p in others) and not any(p.exists() for p in ours)


# -- two trainers, one directory ---------------------------------------------------------
def test_a_second_trainer_on_the_same_directory_is_refused(tmp_path):
    run = tmp_path / "r"
    # 0.6 s per update: it is still training while the others try (it is stopped below)
    first = _slow_cli("train", "--out", run, *CLI_RUN, "--seed", "1", "--log-every", "1",
                      step_delay=0.6)
    _wait_for(_training_started(run), first, "the first trainer's first update")
    started = time.monotonic()
    second = _cli("train", "--out", run, *CLI_RUN, "--seed", "2")
    assert second.returncode == 2
    _assert_one_line_error(second.stderr, "in use by another training", f"pid {first.pid}")
    assert second.stdout == ""  # refused before loading any data
    assert time.monotonic() - started < TIMEOUT
    resumed = _cli("train", "--resume", "--out", run, "--progress", "none")
    assert resumed.returncode == 2  # --resume is refused just the same
    _assert_one_line_error(resumed.stderr, "in use by another training")
    assert first.poll() is None  # the refusals did not disturb it
    first.send_signal(signal.SIGTERM)
    code, _, err = _finish(first)
    assert code == 143, err
    events = [r["event"] for r in read_metrics(run / "metrics.jsonl", kind="event")]
    assert events == ["start", "interrupt"]  # one run's log, not two interleaved
    assert load_checkpoint(run / "checkpoint.npz").run["seed"] == 1
    with open(run / "train.lock", "a") as handle:  # the lock is free once the first exits
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_library_fit_refuses_a_locked_directory(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom im2col_net.training import "
         "lock_run_dir\nwith lock_run_dir(sys.argv[1]):\n    print('locked', flush=True)\n"
         "    time.sleep(60)\n", str(tmp_path)],
        env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        model = _tiny_model()
        with pytest.raises(RunDirLocked, match=f"pid {holder.pid}"):
            fit(model, TRAIN, epochs=1, batch_size=BATCH, progress=False, out_dir=tmp_path,
                optimizer=make_optimizer("adam", model.params))
        assert not (tmp_path / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    _run(tmp_path, epochs=1)  # free again once the holder is gone


def test_lock_is_reentrant_in_its_thread_only(tmp_path):
    errors = []

    def other_thread():
        try:
            with lock_run_dir(tmp_path):
                pass
        except RunDirLocked as exc:
            errors.append(exc)

    with lock_run_dir(tmp_path):
        with lock_run_dir(tmp_path):  # the CLI holds it, fit takes it again
            pass
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
    assert len(errors) == 1 and "in this process" in str(errors[0])
    with lock_run_dir(tmp_path):  # released
        pass


# -- run directory contents --------------------------------------------------------------
def test_out_naming_a_regular_file_fails_at_once(tmp_path):
    (tmp_path / "README.md").write_text("hello")
    # a data dir that does not exist: loading data first would fail differently
    done = _cli("train", "--out", "README.md", "--data-dir", tmp_path / "nowhere",
                cwd=tmp_path)
    assert done.returncode == 2
    _assert_one_line_error(done.stderr, "README.md", "not a directory")
    assert (tmp_path / "README.md").read_text() == "hello"


def test_finished_run_without_checkpoint_is_not_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *CLI_RUN]) == 0
    (run / "checkpoint.npz").unlink()
    model_bytes = (run / "model.npz").read_bytes()
    with pytest.raises(SystemExit) as info:
        main(["train", "--out", str(run), *CLI_RUN, "--seed", "3"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    _assert_one_line_error(err, "already holds a run", "model.npz", "metrics.jsonl",
                           "--overwrite")
    assert (run / "model.npz").read_bytes() == model_bytes
    assert main(["train", "--out", str(run), *CLI_RUN, "--seed", "3", "--overwrite"]) == 0
    assert load_checkpoint(run / "checkpoint.npz").run["seed"] == 3
    events = [r["event"] for r in read_metrics(run / "metrics.jsonl", kind="event")]
    assert events == ["start", "end"]


def test_fit_refuses_run_files_unless_resume_or_overwrite(tmp_path):
    _run(tmp_path, epochs=1)
    (tmp_path / "checkpoint.npz").unlink()
    with pytest.raises(FileExistsError, match="model.npz"):
        _run(tmp_path, epochs=1)
    with pytest.raises(ValueError, match="exclude"):
        _run(tmp_path, epochs=1, resume=True, overwrite=True)
    _, _, result = _run(tmp_path, epochs=1, overwrite=True)
    assert result.step == 7 and (tmp_path / "checkpoint.npz").exists()
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        _run(tmp_path / "a_file", epochs=1)


# -- file system faults and modes ----------------------------------------------------------
def _file_size_limit(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so write() fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *CLI_RUN]) == 0
    before = (run / "checkpoint.npz").read_bytes()
    assert len(before) > 400_000  # the limit below is hit by the checkpoint, not the log
    done = _cli("train", "--resume", "--out", run, "--epochs", "2", "--progress", "none",
                preexec_fn=_file_size_limit(400_000))
    assert done.returncode == 2
    _assert_one_line_error(done.stderr, "cannot write the checkpoint", "File too large",
                           "unchanged")
    assert (run / "checkpoint.npz").read_bytes() == before
    assert not _checkpoint_temps(run)
    again = _cli("train", "--resume", "--out", run, "--epochs", "2", "--progress", "none")
    assert again.returncode == 0, again.stderr
    assert load_checkpoint(run / "checkpoint.npz").progress.epoch == 2


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_files_respect_the_umask(tmp_path, umask, mode):
    run = tmp_path / "run"
    done = _cli("train", "--out", run, "--model", "lenet5", "--limit", "200", "--epochs", "1",
                "--batch-size", "100", "--progress", "none",
                preexec_fn=lambda: os.umask(umask))
    assert done.returncode == 0, done.stderr
    for name in ("checkpoint.npz", "model.npz", "metrics.jsonl", "train.lock"):
        assert (run / name).stat().st_mode & 0o777 == mode, name


# -- non-finite values ------------------------------------------------------------------------
def test_diverging_cli_run_stops_with_one_line(tmp_path):
    run = tmp_path / "run"
    done = _cli("train", "--model", "lenet5", "--optimizer", "sgd", "--lr", "1e38",
                "--limit", "500", "--epochs", "2", "--out", run)
    assert done.returncode == 2
    _assert_one_line_error(done.stderr, "non-finite", "epoch 1, step", "learning rate")
    assert not (run / "model.npz").exists() and not (run / "checkpoint.npz").exists()
    events = read_metrics(run / "metrics.jsonl", kind="event")
    assert events[-1]["event"] == "non_finite"


def _data(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.int64)
    images = rng.random((n, 1, 12, 12)).astype(np.float32) * 0.5
    images[np.arange(n), 0, labels, :] += 0.5
    return images, labels


TRAIN, TEST = _data(200, 0), _data(60, 1)
BATCH = 32  # 7 updates per epoch


def _tiny_model(seed=0):
    rng = np.random.default_rng(seed)
    return Sequential(
        Conv2D(1, 4, 3, padding=1, rng=rng), ReLU(), MaxPool2D(2), Flatten(),
        Dropout(0.3, rng=rng.spawn(1)[0]), Linear(4 * 6 * 6, 10, rng=rng),
    )


def _run(out_dir, *, epochs=3, model=None, test=TEST, **kw):
    model = model or _tiny_model()
    optimizer = make_optimizer("adam", model.params, lr=3e-3)
    result = fit(model, TRAIN, test, epochs=epochs, batch_size=BATCH, optimizer=optimizer,
                 seed=7, out_dir=out_dir, progress=False, **kw)
    return model, optimizer, result


def _poison_after(step, value=np.nan):
    def callback(info):
        if info["step"] == step:
            next(iter(info_model["model"].params.values())).flat[0] = value
    info_model = {}
    return callback, info_model


def test_nan_weights_stop_training_and_keep_the_last_finite_checkpoint(tmp_path):
    model = _tiny_model()
    callback, holder = _poison_after(9)  # during epoch 2
    holder["model"] = model
    with pytest.raises(NonFiniteError, match=r"loss \(nan\) at epoch 2, step 10") as info:
        _run(tmp_path, model=model, callback=callback)
    assert (info.value.epoch, info.value.step) == (2, 10)
    assert "step 7) is unchanged" in str(info.value)
    saved = load_checkpoint(tmp_path / "checkpoint.npz")
    assert saved.progress.step == 7
    assert all(np.isfinite(v).all() for k, v in saved.model_arrays.items()
               if k.startswith("param/"))
    assert not (tmp_path / "model.npz").exists()
    assert read_metrics(tmp_path / "metrics.jsonl", kind="event")[-1]["event"] == "non_finite"


def test_non_finite_state_is_never_written_to_a_checkpoint(tmp_path):
    model = _tiny_model()
    callback, holder = _poison_after(7, np.inf)  # the last update of epoch 1
    holder["model"] = model
    with pytest.raises(NonFiniteError, match="at epoch 1, step 7 .checkpoint.") as info:
        _run(tmp_path, model=model, callback=callback, test=None)
    assert "no checkpoint was written" in str(info.value)
    assert not (tmp_path / "checkpoint.npz").exists() and not (tmp_path / "model.npz").exists()
    with pytest.raises(NonFiniteError, match="test logits"):  # with test data: its evaluation
        model = _tiny_model()
        callback, holder = _poison_after(7, np.inf)
        holder["model"] = model
        _run(tmp_path / "b", model=model, callback=callback)


def test_non_finite_gradient_is_caught_before_the_update(tmp_path, monkeypatch):
    real_backward = SoftmaxCrossEntropy.backward
    calls = {"n": 0}

    def backward(self, dloss=1.0):
        calls["n"] += 1
        grad = real_backward(self, dloss)
        return grad * np.float32(np.nan) if calls["n"] == 3 else grad

    monkeypatch.setattr(SoftmaxCrossEntropy, "backward", backward)
    model = _tiny_model()
    with pytest.raises(NonFiniteError, match="gradient of .* at epoch 1, step 3") as info:
        _run(tmp_path, model=model)
    assert info.value.what.startswith("gradient")
    assert all(np.isfinite(p).all() for p in model.params.values())  # update not applied


@pytest.mark.parametrize("which", ["train", "test"])
def test_fit_refuses_non_finite_data(which):
    images, labels = (TRAIN if which == "train" else TEST)
    bad = images.copy()
    bad[3, 0, 2, 2] = np.inf
    bad[5, 0, 1, 1] = np.nan
    data = {"train": (bad, labels) if which == "train" else TRAIN,
            "test": (bad, labels) if which == "test" else TEST}
    model = _tiny_model()
    with pytest.raises(ValueError, match=f"{which}_data images hold 2 NaN or infinite"):
        fit(model, data["train"], data["test"], epochs=1, batch_size=BATCH, progress=False,
            optimizer=make_optimizer("adam", model.params))


def test_evaluate_refuses_non_finite_logits():
    model = _tiny_model()
    model[5].params["weight"][0, 0] = np.nan  # row 0 of the output layer: class 0's logit
    with pytest.raises(NonFiniteError, match=r"60 of 600 logits are NaN or infinite"):
        evaluate(model, *TEST)
    model = _tiny_model()
    model[5].params["weight"][...] = np.float32(3e38)  # finite weights, overflowing logits
    assert all(np.isfinite(p).all() for p in model.params.values())
    with pytest.raises(NonFiniteError, match="logits are NaN or infinite"):
        evaluate(model, *TEST)


# -- tampered checkpoints ----------------------------------------------------------------------
def _rewrite_checkpoint(path, edit):
    arrays = dict(np.load(path))
    meta = json.loads(str(arrays["__checkpoint__"]))
    edit(meta, arrays)
    arrays["__checkpoint__"] = np.array(json.dumps(meta))
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _set(*keys, value):
    def edit(meta, arrays):
        node = meta
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return edit


def _nan_param(meta, arrays):
    arrays["param/0.weight"] = arrays["param/0.weight"].copy()
    arrays["param/0.weight"].flat[0] = np.nan


@pytest.mark.parametrize("edit, field", [
    (_set("progress", "batch_in_epoch", value=8), "batch_in_epoch"),  # skips an epoch
    (_set("progress", "batch_in_epoch", value=3), "step"),
    (_set("progress", "epoch", value=-1), "progress.epoch"),
    (_set("progress", "epoch", value=7), "already done 7 epochs, more than the 3"),
    (_set("progress", "step", value=True), "progress.step"),
    (_set("progress", "seen", value=5), "progress.seen"),
    (_set("progress", "correct", value=10 ** 6), "progress.correct"),
    (_set("progress", "loss_sum", value=float("nan")), "progress.loss_sum"),
    (_set("progress", "elapsed", value=-1.0), "progress.elapsed"),
    (_set("rng", "shuffle", "bit_generator", value="MT19937"), "rng.shuffle"),
    (_set("rng", "shuffle", "state", "inc", value="x"), "rng.shuffle.state.inc"),
    (_set("rng", "shuffle", "state", "state", value=-5), "rng.shuffle.state.state"),
    (_set("rng", "layers", "4", "state", value={}), "rng.layers['4']"),
    (_nan_param, "param/0.weight"),
    (_set("run", value=5), "'run'"),
])
def test_tampered_checkpoint_fields_are_refused(tmp_path, edit, field):
    _run(tmp_path, epochs=1)
    path = tmp_path / "checkpoint.npz"
    _rewrite_checkpoint(path, edit)
    model = _tiny_model(seed=5)
    before = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(CheckpointError, match=re.escape(field)):
        _run(tmp_path, epochs=3, resume=True, model=model)
    for name, value in model.params.items():  # nothing was loaded before the refusal
        assert np.array_equal(value, before[name]), name


def test_resume_with_damaged_saved_settings_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *CLI_RUN]) == 0
    for key, value in (("model", "alexnet"), ("dtype", "float16"), ("batch_size", 0)):
        _rewrite_checkpoint(run / "checkpoint.npz",
                            _set("run", "meta", "settings", key, value=value))
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(["train", "--resume", "--out", str(run)])
        assert info.value.code == 2
        _assert_one_line_error(capsys.readouterr().err, f"saved setting {key}")
        _rewrite_checkpoint(run / "checkpoint.npz",
                            _set("run", "meta", "settings", key,
                                 value={"model": "lenet5", "dtype": "float32",
                                        "batch_size": 50}[key]))
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2",
                 "--progress", "none"]) == 0
    assert im2col_net.load_model(run / "model.npz").parameter_count() == 61706
