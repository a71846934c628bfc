"""The benchmark's other modes: --inference, --time-to-accuracy, --distributed, and the
machine lines. Structure only, never timings: keys, report lines, the engines agreeing."""

import builtins
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from im2col_net.app import bench, bench_inference, tta
from im2col_net.app.cli import main, train_cmd
from im2col_net.layers.base import observe_inputs
from im2col_net.training import fit

ROOT = Path(__file__).resolve().parents[1]


def positive(value):
    return isinstance(value, float) and np.isfinite(value) and value > 0


def hide(monkeypatch, *packages):
    real_import = builtins.__import__

    def guarded(name, *args, **kwargs):
        if name.split(".")[0] in packages:
            raise ImportError(f"{name} hidden by the test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)


# -- the machine ---------------------------------------------------------------------------
def test_report_names_the_cpu_its_cores_and_each_blas_kernel():
    machine = bench.machine_info()
    details = machine["cpu_details"]
    assert {"vendor", "family", "model", "cores_per_socket", "avx512f"} <= set(details)
    text = "\n".join(bench.format_machine(machine, 2))
    assert f"machine: {machine['cpu']}" in text and "logical CPUs" in text
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f
                     if line.startswith("model name")]
        if names:  # the CPU is named as the kernel names it, not as a doc says
            assert machine["cpu"] == names[0]
            assert f"family {details['family']}, model {details['model']}" in text
    for lib in machine["blas"]:
        assert f"kernel {lib['architecture']}" in text


# -- --inference ---------------------------------------------------------------------------
def check_inference(result, engines):
    assert set(result) == {"config", "machine", "status", "max_abs_diff_vs_ours", "engines",
                           "ratios"}
    assert result["config"]["mode"] == "inference"
    assert list(result["engines"]) == engines
    for name, engine in result["engines"].items():
        assert positive(engine["images_per_s"]) and positive(engine["median_s"])
        assert len(engine["times_s"]) == result["config"]["repeats"]
        assert result["status"][name].startswith("ok")
    assert set(result["ratios"]) == {f"ours/{name}" for name in engines[1:]}
    for name in engines[1:]:
        assert result["ratios"][f"ours/{name}"] == pytest.approx(
            result["engines"]["ours"]["images_per_s"] / result["engines"][name]["images_per_s"])
        # the same weights and images: the same logits up to float32 rounding
        assert result["max_abs_diff_vs_ours"][name] < 1e-3
    json.dumps(result)


def test_inference_alone_and_the_other_engines_disabled():
    result = bench_inference.run_inference_benchmark(batch_size=3, quick=True,
                                                     include_torch=False, include_onnx=False)
    check_inference(result, ["ours"])
    text = bench_inference.format_inference_report(result)
    assert "torch: disabled" in text and "onnxruntime: disabled" in text


def test_inference_without_torch_or_onnxruntime_reports_status_lines(monkeypatch):
    hide(monkeypatch, "torch", "onnxruntime", "onnx")
    result = bench_inference.run_inference_benchmark(batch_size=3, quick=True)
    check_inference(result, ["ours"])
    assert result["status"]["torch"].startswith("not available")
    assert result["status"]["onnxruntime"].startswith("not available")
    assert "hidden by the test" in bench_inference.format_inference_report(result)


def test_cli_inference_with_torch_and_onnxruntime_columns(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    path = tmp_path / "inference.json"
    assert main(["bench", "--inference", "--quick", "--batch-size", "4", "--threads", "1",
                 "--json", str(path)]) == 0
    out = capsys.readouterr().out
    result = json.loads(path.read_text())
    check_inference(result, ["ours", "torch", "onnxruntime"])
    assert result["config"]["batch_size"] == 4 and result["config"]["threads"] == 1
    assert "ratio ours/torch" in out and "ratio ours/onnxruntime" in out
    assert "onnxruntime" in result["status"]["onnxruntime"]


def test_inference_batch_defaults_to_1000():
    from im2col_net.app.cli import bench_cmd, build_parser

    parsed = build_parser().parse_args(["bench", "--inference"])
    assert bench_cmd._sizes(parsed, "inference")[0] == 1000
    assert bench_cmd._sizes(build_parser().parse_args(["bench"]), "train")[0] == 200


# -- --time-to-accuracy --------------------------------------------------------------------
def test_recipe_is_the_train_commands(monkeypatch):
    monkeypatch.setitem(train_cmd.DEFAULTS, "batch_size", 17)
    monkeypatch.setitem(train_cmd.DEFAULTS, "schedule", "constant")
    settings = tta.recipe()
    assert settings["batch_size"] == 17 and settings["schedule"] == "constant"
    assert settings["lr"] == train_cmd.DEFAULT_LR[settings["optimizer"]]
    assert tta.recipe(batch_size=5)["batch_size"] == 5


def test_fit_trains_on_the_batches_torch_gets():
    rng = np.random.default_rng(3)
    images = rng.random((10, 1, 28, 28), dtype=np.float32)
    labels = np.arange(10) % 10
    model, optimizer, schedule = tta._build(tta.recipe(epochs=2, batch_size=4))
    seen = []

    def first_layer_input(child, x):
        if child is model.layers[0]:
            seen.append(np.array(x))

    with observe_inputs(first_layer_input):
        fit(model, (images, labels), None, epochs=2, batch_size=4, optimizer=optimizer,
            schedule=schedule, seed=7, progress=False)
    expected = [xb for *_, xb, _ in tta.torch_batches((images, labels), 4, 7, 2)]
    assert len(seen) == len(expected) == 6
    for got, want in zip(seen, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def check_tta(result, engines):
    assert set(result) == {"config", "machine", "status", "engines", "speedup_ours_vs_torch"}
    cfg = result["config"]
    assert cfg["quick"] and cfg["n_train"] == cfg["limit"] <= tta.QUICK["limit"]
    assert cfg["recipe"]["optimizer"] == train_cmd.DEFAULTS["optimizer"]
    assert cfg["recipe"]["schedule"] == train_cmd.DEFAULTS["schedule"]
    assert list(result["engines"]) == engines
    total = cfg["steps_per_epoch"] * cfg["max_epochs"]
    for engine in result["engines"].values():
        curve = engine["curve"]
        assert curve and curve[-1]["step"] <= total
        steps = [p["step"] for p in curve]
        assert steps == sorted(steps) and all(s % cfg["eval_every_steps"] == 0 or s == total
                                              for s in steps)
        assert all(0 <= p["test_accuracy"] <= 1 for p in curve)
        assert engine["best_accuracy"] == max(p["test_accuracy"] for p in curve)
        if engine["reached"]:
            assert engine["time_to_target_s"] <= engine["wall_to_target_s"]
            assert engine["best_accuracy"] >= cfg["target"]
        else:
            assert engine["time_to_target_s"] is None
            assert engine["best_accuracy"] < cfg["target"] and curve[-1]["step"] == total
    json.dumps(result)


def test_cli_time_to_accuracy_quick_runs_both_engines(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    path = tmp_path / "tta.json"
    assert main(["bench", "--time-to-accuracy", "0.99", "--quick", "--limit", "128",
                 "--json", str(path)]) == 0
    out = capsys.readouterr().out
    result = json.loads(path.read_text())
    check_tta(result, ["ours", "torch"])
    assert torch.__version__ in result["status"]["torch"]
    ours, twin = result["engines"]["ours"], result["engines"]["torch"]
    # Same initial weights and the same first batch: the same first loss.
    assert twin["first_loss"] == pytest.approx(ours["first_loss"], rel=1e-4)
    assert [p["step"] for p in twin["curve"]] == [p["step"] for p in ours["curve"]]
    assert "time to target" in out and "accuracy curve" in out and "not reached" in out


def test_time_to_accuracy_without_torch_and_reaching_a_low_target(monkeypatch):
    hide(monkeypatch, "torch")
    result = tta.run_time_to_accuracy(0.05, quick=True, epochs=1, limit=64, batch_size=32,
                                      eval_every=0.5)
    assert result["status"]["torch"].startswith("not available")
    assert result["config"]["n_train"] == 64
    check_tta_engines = result["engines"]["ours"]
    assert check_tta_engines["reached"] and check_tta_engines["steps_to_target"] >= 1
    assert result["speedup_ours_vs_torch"] is None
    assert "torch   not available" in tta.format_tta_report(result)


# -- --distributed -------------------------------------------------------------------------
def test_distributed_local_runs_in_process(tmp_path, capsys):
    path = tmp_path / "dist.json"
    assert main(["bench", "--distributed", "--local", "--quick", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["ranks"] == 1 and result["steps"] == 2 and result["batch_size"] == 16
    assert "allreduce" in capsys.readouterr().out


def test_distributed_baseline_gives_the_speedup(tmp_path, capsys):
    first = tmp_path / "one.json"
    assert main(["bench", "--distributed", "--local", "--quick", "--json", str(first)]) == 0
    assert main(["bench", "--distributed", "--local", "--quick", "--baseline",
                 str(first)]) == 0
    assert "speed-up" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(SystemExit) as info:
        main(["bench", "--distributed", "--local", "--quick", "--baseline",
              str(tmp_path / "bad.json")])
    assert info.value.code == 2
    assert "expected a JSON object" in capsys.readouterr().err


def test_distributed_under_mpiexec(tmp_path):
    pytest.importorskip("mpi4py")
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("mpiexec not found")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    path = tmp_path / "dist.json"
    done = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "im2col_net", "bench",
                           "--distributed", "--quick", "--json", str(path)],
                          capture_output=True, text=True, env=env, timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(path.read_text())
    assert result["ranks"] == 2 and result["shard"] == 8
    assert result["allreduce_bytes_per_step"] > 0
    assert done.stdout.count("global batch 16 on 2 rank(s)") == 1  # rank 0 alone reports


# -- options -------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--epochs", "2"], "--epochs applies only with --time-to-accuracy"),
    (["--inference", "--limit", "5"], "--limit applies only with --time-to-accuracy"),
    (["--model", "lenet5"], "--model applies only with --distributed"),
    (["--no-onnx"], "--no-onnx applies only with --inference"),
    (["--time-to-accuracy", "1.5"], "accuracy in (0, 1]"),
    (["--time-to-accuracy", "0.9", "--repeats", "3"], "do not apply"),
    (["--inference", "--distributed"], "not allowed with"),
])
def test_cli_rejects_options_of_another_mode(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", "--quick"] + argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
