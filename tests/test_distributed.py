"""Data-parallel training over MPI: sharding and bucketing rules, and ``mpiexec -n 2/3``
runs checked against one process (weights, batch norm, dropout, evaluation), resume
after Ctrl-C and after a killed rank, faults (a rank that raises, hangs or was given
other data) ending every rank quickly with a message naming it, and nothing left running.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from im2col_net.distributed import GradientBuckets, check_shardable, shard_bounds

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "mpi_scripts" / "fit_run.py"
# float32 reduction-order tolerance on weights of magnitude ~0.1-1 after 14 Adam steps.
ATOL = 2e-6


# -- pure-NumPy pieces (no MPI needed) ---------------------------------------------------
@pytest.mark.parametrize("n,size", [(32, 3), (11, 3), (7, 7), (203, 2), (5, 1)])
def test_shards_tile_the_batch_in_rank_order(n, size):
    bounds = [shard_bounds(n, size, r) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1


def test_a_batch_some_rank_gets_nothing_of_is_refused():
    check_shardable(203, 32, 3)  # last batch 11 >= 3
    with pytest.raises(ValueError, match="last batch .* 2 images, fewer than the 3 ranks"):
        check_shardable(66, 32, 3)
    with pytest.raises(ValueError, match="batch size gives 2 images, fewer than the 4"):
        check_shardable(100, 2, 4)


def test_gradient_buckets_pack_scale_and_unpack():
    rng = np.random.default_rng(0)
    shapes = {"0.weight": (4, 1, 3, 3), "0.bias": (4,), "5.weight": (10, 144), "5.bias": (10,)}
    grads = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    one = GradientBuckets(shapes, np.float32, extra=2)
    assert len(one.buffers) == 1 and one.nbytes == 4 * (36 + 4 + 1440 + 10 + 2)
    split = GradientBuckets(shapes, np.float32, bucket_bytes=4 * 200, extra=2)
    assert len(split.buffers) == 3  # 5.bias alone fits with nothing; 1440 > 200 alone
    for buckets in (one, split):
        buckets.pack(grads, 0.25, extra=(3.0, 7.0))
        out, extra = buckets.unpack()
        assert list(extra) == [3.0, 7.0]
        for name in shapes:
            assert out[name].dtype == np.float32
            np.testing.assert_array_equal(out[name], grads[name] * np.float32(0.25))
    with pytest.raises(ValueError, match="do not match"):
        one.pack({"0.weight": grads["0.weight"]}, 1.0, extra=(0, 0))


def test_non_distributed_paths_import_no_mpi(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from im2col_net.app.cli import build_parser\n"
        "import im2col_net.app.cli.train_cmd, im2col_net.distributed\n"
        f"sys.argv = ['x', '{json.dumps({'out': str(tmp_path / 'r'), 'epochs': 1})}']\n"
        f"exec(open({str(SCRIPT)!r}).read().replace('__main__', '__never__'))\n"
        "main()\n"
        "assert 'mpi4py' not in sys.modules, 'mpi4py was imported'\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


# -- mpiexec runs ------------------------------------------------------------------------
def _mpi_ready():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return shutil.which("mpiexec") is not None


mpi = pytest.mark.skipif(not _mpi_ready(), reason="needs mpi4py and mpiexec (the mpi extra)")


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1",
                OMP_NUM_THREADS="1")


def _stat(pid):
    """``(parent pid, start time)`` of a live process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), fields[19]


def _descendants(pid):
    """``{pid: start time}`` of every live descendant of ``pid`` (from /proc; mpiexec's
    ranks run in sessions of their own, so a process-group kill would miss them)."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(entry.name)
            if stat is not None:
                children.setdefault(stat[0], []).append((int(entry.name), stat[1]))
    out, todo = {}, [pid]
    while todo:
        for child, started in children.get(todo.pop(), []):
            out[child] = started
            todo.append(child)
    return out


class Launch:
    """``mpiexec -n K python fit_run.py CFG`` (K=0: plain python) in its own session;
    :meth:`finish` waits with a timeout and then kills whatever is left."""

    def __init__(self, k, cfg, argv=None):
        command = argv or [sys.executable, str(SCRIPT), json.dumps(cfg)]
        if k:
            command = ["mpiexec", "-n", str(k), *command]
        self.known = {}
        self.proc = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)

    def watch(self):
        self.known.update(_descendants(self.proc.pid))

    def finish(self, timeout=60):
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            out = None
        finally:
            self.watch()
            self.proc.kill()
            for pid, started in self.known.items():
                stat = _stat(pid)
                if stat is not None and stat[1] == started:  # the same process, not a reuse
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait()
        assert out is not None, "the launched run did not finish in time (killed)"
        return self.proc.returncode, out


def _run(k, cfg, timeout=60):
    code, out = Launch(k, cfg).finish(timeout)
    return code, out


def _weights(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a)


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    """One-process references, by model kind and epoch count."""
    base = tmp_path_factory.mktemp("refs")
    cache = {}

    def get(model="tiny", epochs=2):
        key = (model, epochs)
        if key not in cache:
            w = base / f"{model}-{epochs}.npz"
            code, out = _run(0, {"out": str(base / f"{model}-{epochs}"), "weights": str(w),
                                 "model": model, "epochs": epochs})
            assert code == 0, out
            cache[key] = _weights(w)
        return cache[key]

    return get


def _dist(tmp_path, name, k, **cfg):
    w = tmp_path / f"{name}.npz"
    cfg = {"out": str(tmp_path / name), "weights": str(w), "distributed": True, **cfg}
    code, out = _run(k, cfg)
    assert code == 0, out
    return _weights(w), out


@mpi
def test_one_rank_is_bit_for_bit_one_process(tmp_path, refs):
    weights, _ = _dist(tmp_path, "k1", 1)
    assert _max_diff(weights, refs()) == 0.0


@mpi
@pytest.mark.parametrize("k", [2, 3])
def test_k_ranks_match_one_process_at_the_same_global_batch(tmp_path, refs, k):
    # 203 images in batches of 32: the last batch has 11, split 3/4/4 over three ranks.
    weights, out = _dist(tmp_path, f"k{k}", k)
    diff = _max_diff(weights, refs())
    assert 0 < diff < ATOL, diff
    assert "ranks: 0 = pid" in out  # rank 0 says which process each rank is
    # Evaluation was split over the ranks and reduced: it matches a whole-set evaluation.
    from im2col_net import load_model
    from im2col_net.training import evaluate, read_metrics

    last = read_metrics(tmp_path / f"k{k}" / "metrics.jsonl", kind="epoch")[-1]
    test = _script().data(61, 1)
    loss, accuracy, _ = evaluate(load_model(tmp_path / f"k{k}" / "model.npz"), *test)
    assert last["test_loss"] == pytest.approx(loss, rel=1e-5)
    assert last["test_accuracy"] == accuracy
    if k == 2:  # resuming the finished run changes nothing (and every rank agrees on it)
        again, _ = _dist(tmp_path, f"k{k}", k, resume=True, timeout=20)
        assert _max_diff(again, weights) == 0.0


def _script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("fit_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@mpi
def test_dropout_masks_are_those_of_one_process(tmp_path, refs):
    weights, _ = _dist(tmp_path, "drop", 3, model="dropout")
    assert _max_diff(weights, refs("dropout")) < ATOL


@mpi
def test_batch_norm_per_rank_by_default_and_synchronised_on_request(tmp_path, refs):
    synced, _ = _dist(tmp_path, "sync", 3, model="bn", sync_bn=True)
    assert _max_diff(synced, refs("bn")) < ATOL
    own, _ = _dist(tmp_path, "own", 2, model="bn")
    # Per-rank statistics normalise each half with its own moments: a different model.
    assert _max_diff(own, refs("bn")) > 100 * ATOL


def _wait_for(condition, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@mpi
def test_ctrl_c_on_the_launcher_then_resume_with_another_k(tmp_path, refs):
    from im2col_net.training import load_checkpoint, read_metrics

    out_dir = tmp_path / "run"
    launch = Launch(2, {"out": str(out_dir), "distributed": True, "epochs": 6,
                        "slow": 0.05})
    _wait_for(lambda: (out_dir / "checkpoint.npz").exists(), 60, "the first checkpoint")
    launch.watch()
    launch.proc.send_signal(signal.SIGINT)
    code, out = launch.finish(30)
    assert code == 130, out
    progress = load_checkpoint(out_dir / "checkpoint.npz").progress
    assert 7 <= progress.step < 42, progress
    events = [r["event"] for r in read_metrics(out_dir / "metrics.jsonl", kind="event")]
    assert events[-1] == "interrupt"
    w = tmp_path / "w.npz"
    code, out = _run(3, {"out": str(out_dir), "weights": str(w), "distributed": True,
                         "epochs": 6, "resume": True})
    assert code == 0, out
    assert _max_diff(_weights(w), refs(epochs=6)) < ATOL


@mpi
def test_a_killed_rank_ends_the_run_and_the_checkpoint_resumes(tmp_path, refs):
    from im2col_net.training import load_checkpoint

    out_dir, pidfile = tmp_path / "run", tmp_path / "pid"
    launch = Launch(2, {"out": str(out_dir), "distributed": True, "epochs": 6,
                        "slow": 0.05, "pidfile": str(pidfile)})
    _wait_for(lambda: (out_dir / "checkpoint.npz").exists(), 60, "the first checkpoint")
    launch.watch()
    pids = [int(Path(f"{pidfile}.{r}").read_text()) for r in (0, 1)]
    os.kill(pids[1], signal.SIGKILL)
    killed = time.monotonic()
    code, out = launch.finish(30)
    assert code != 0 and time.monotonic() - killed < 10, out
    assert f"PID {pids[1]}" in out and f"1 = pid {pids[1]}" in out  # the rank is named
    for pid in pids:  # nothing left running
        assert not Path(f"/proc/{pid}").exists(), f"rank process {pid} survived"
    assert load_checkpoint(out_dir / "checkpoint.npz").progress.epoch >= 1
    w = tmp_path / "w.npz"
    code, out = _run(2, {"out": str(out_dir), "weights": str(w), "distributed": True,
                         "epochs": 6, "resume": True})
    assert code == 0, out
    resumed = _weights(w)
    assert _max_diff(resumed, refs(epochs=6)) < ATOL
    # Same K as before the kill: bit for bit the uninterrupted K = 2 run.
    uninterrupted, _ = _dist(tmp_path, "whole", 2, epochs=6)
    assert _max_diff(resumed, uninterrupted) == 0.0


@mpi
@pytest.mark.parametrize("kind,expect", [
    ("raise", "rank 1 of 2]: failed with RuntimeError: injected failure at step 9"),
    ("hang", "rank 1 did not answer"),
    ("drift", "ReplicaMismatchError: after step 7 the weights of rank(s) [1] differ"),
])
def test_a_failing_or_hanging_rank_stops_every_rank_quickly(tmp_path, kind, expect):
    from im2col_net.training import load_checkpoint

    out_dir = tmp_path / "run"
    started = time.monotonic()
    code, out = _run(2, {"out": str(out_dir), "distributed": True, "epochs": 3,
                         "timeout": 2 if kind == "hang" else 30,
                         "fault": {"rank": 1, "kind": kind, "step": 3 if kind == "drift" else 9}},
                     timeout=40)
    assert code != 0 and expect in out, out
    assert time.monotonic() - started < 25
    if kind == "drift":  # caught at the end of epoch 1, before its checkpoint
        assert not (out_dir / "checkpoint.npz").exists()
    else:
        assert load_checkpoint(out_dir / "checkpoint.npz").progress.step == 7  # epoch 1


@mpi
def test_ranks_started_with_different_data_are_refused(tmp_path):
    code, out = _run(3, {"out": str(tmp_path / "run"), "distributed": True,
                         "perturb_rank": 2})
    assert code != 0, out
    assert "rank 2 (training data) differ" in out, out
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


@mpi
def test_cli_train_distributed(tmp_path):
    out_dir = tmp_path / "run"
    base = [sys.executable, "-m", "im2col_net", "train", "--distributed", "--model",
            "lenet5", "--limit", "200", "--epochs", "1", "--progress", "none", "--timeout",
            "30"]
    argv = [*base, "--batch-size", "50", "--out", str(out_dir)]
    code, out = Launch(2, None, argv).finish(60)
    assert code == 0, out
    assert out.count("test accuracy") == 1 and (out_dir / "model.npz").exists(), out
    code, out = Launch(2, None, argv).finish(60)  # the directory now holds a run
    assert code == 2 and "of 2]: error:" in out and "already holds a run" in out
    code, out = Launch(2, None, [*base, "--batch-size", "1", "--out",
                                 str(tmp_path / "b1")]).finish(60)
    assert code == 2 and "fewer than the 2 ranks" in out, out


@mpi
def test_distributed_bench_reports_one_message_of_the_model_bytes(tmp_path):
    from im2col_net.distributed.bench import predict, ring_allreduce_seconds

    out = tmp_path / "k2.json"
    argv = [sys.executable, "-m", "im2col_net.distributed.bench", "--steps", "2", "--json",
            str(out)]
    code, text = Launch(2, None, argv).finish(60)
    assert code == 0 and "allreduce" in text, text
    result = json.loads(out.read_text())
    assert result["ranks"] == 2 and result["shard"] == 64
    # The gradients of every parameter plus the loss and accuracy sums, in one message.
    assert result["allreduce_bytes_per_step"] == result["parameter_bytes"] + 2 * 4
    assert result["messages_per_step"] == 1
    # Ring cost: 2 (K-1)/K of the bytes over the link, plus 2 (K-1) latencies.
    assert ring_allreduce_seconds(1e9, 4, 8e9, latency=0) == pytest.approx(1.5)
    p = predict(1e-3, 0.0, 1e9, 100, 4, 8e9, latency=0)
    assert p["step_seconds"] == pytest.approx(0.025 + 1.5)
    assert p["efficiency"] == pytest.approx(0.1 / (4 * 1.525))
