"""The benchmark runs end to end in quick mode and reports well-formed results.

No timing assertions: only structure, consistency and the torch-missing path.
"""

import builtins
import importlib.util
import json
import math

import pytest

from im2col_net import runtime
from im2col_net.app import bench
from im2col_net.app.cli import main
from im2col_net.functional import planner

TOP_KEYS = {"config", "machine", "gemm_roof", "train_step", "breakdown", "memory_roof",
            "layers", "plans", "strategies", "reference", "memory", "batch_sweep"}


def positive(value):
    return isinstance(value, float) and math.isfinite(value) and value > 0


def check_result(result, *, with_torch):
    assert set(result) == TOP_KEYS
    assert result["config"]["batch_size"] == 2 and result["config"]["quick"]
    assert result["config"]["threads"] >= 1
    machine = result["machine"]
    assert set(bench.ENV_VARS) <= set(machine["env"])
    for lib in machine["blas"]:
        assert {"internal_api", "architecture", "num_threads"} <= set(lib)
    assert machine["machine_id"] == runtime.machine_identity()["id"]
    assert machine["plan_mode"] in planner.MODES
    roof = result["gemm_roof"]
    assert positive(roof["gflops"])
    # Measured at the start and at the end; the fractions use the better of the two.
    assert len(roof["runs_gflops"]) == 2 and roof["gflops"] == max(roof["runs_gflops"])

    step = result["train_step"]
    assert positive(step["ours"]["images_per_s"]) and positive(step["ours"]["median_s"])
    assert len(step["ours"]["times_s"]) == result["config"]["repeats"]
    assert math.isfinite(step["first_loss"]["ours"])
    if with_torch:
        assert positive(step["torch"]["images_per_s"]) and positive(step["ratio"])
        assert step["ratio"] == pytest.approx(
            step["ours"]["images_per_s"] / step["torch"]["images_per_s"])
    else:
        assert "torch" not in step and step["ratio"] is None

    check_breakdown(result)

    kinds = [row["kind"] for row in result["layers"]]
    assert kinds == ["Conv2D", "MaxPool2D", "Conv2D", "MaxPool2D"]
    for row in result["layers"]:
        assert positive(row["forward"]["median_s"]) and positive(row["backward"]["median_s"])
        if row["kind"] == "Conv2D":
            assert positive(row["gflops_forward"]) and positive(row["roof_fraction_forward"])
            assert row["roof_fraction_backward"] == pytest.approx(
                row["gflops_backward"] / result["gemm_roof"]["gflops"])
            # The best repeat is at least as fast as the median one.
            assert row["roof_fraction_forward_best"] >= row["roof_fraction_forward"]
            assert row["roof_fraction_backward_best"] == pytest.approx(
                row["gflop_backward"] / min(row["backward"]["times_s"])
                / result["gemm_roof"]["gflops"])
        else:
            assert "roof_fraction_forward" not in row
    # The first conv skips its input gradient, so its backward does half the work.
    conv0, conv1 = result["layers"][0], result["layers"][2]
    assert conv0["compute_input_grad"] is False and conv1["compute_input_grad"] is True
    for conv in (conv0, conv1):  # the model's convs run what "auto" picks for them
        (picked,) = [r["strategy"] for r in result["strategies"]
                     if r["index"] == conv["index"] and r["auto_choice"]]
        assert conv["strategy"] == picked
    assert conv0["gflop_backward"] == pytest.approx(conv0["gflop_forward"])
    assert conv1["gflop_backward"] == pytest.approx(2 * conv1["gflop_forward"])

    algorithms = ["im2col", "rows", "strided", "fft", "im2col_t"]
    assert [(r["index"], r["strategy"]) for r in result["strategies"]] == [
        (i, a) for i in (0, 3) for a in algorithms]
    # Exactly one algorithm per layer is the one the plan (the default "auto") picks.
    for index in (0, 3):
        assert sum(r["auto_choice"] for r in result["strategies"] if r["index"] == index) == 1
    plans = {row["index"]: row for row in result["plans"]}
    assert set(plans) == {0, 3, 7, 9}           # the two convs and the two Linear layers
    for index in (7, 9):
        assert plans[index]["layer"].startswith("linear ")
        assert plans[index]["algorithm"] in planner.LINEAR_ALGORITHMS
        assert plans[index]["source"] in ("measure", "estimate")
    for conv in (conv0, conv1):
        plan = plans[conv["index"]]
        assert plan["algorithm"] == conv["strategy"] and plan["block_bytes"] > 0
        if plan["source"] == "measure":      # the candidates' times are reported
            assert plan["algorithm"] in plan["timings"]
            assert plan["timings"][plan["algorithm"]] == min(plan["timings"].values())
    assert positive(result["reference"]["speedup"])
    json.dumps(result)  # JSON-serialisable throughout


def check_breakdown(result):
    """The step's rows cover every layer once, add up to the step, and carry their roofs."""
    breakdown, memory_roof = result["breakdown"], result["memory_roof"]
    rows = breakdown["rows"]
    covered = [index for row in rows for index in row["layers"]]
    assert covered == list(range(10))  # the convnet's ten layers, each in one row
    assert [row["name"].split()[0] for row in rows[-3:]] == ["softmax", "optimizer", "rest"]
    assert sum(row["seconds"] for row in rows) == pytest.approx(breakdown["step_s"], rel=1e-9)
    assert sum(row["fraction_of_step"] for row in rows) == pytest.approx(1.0)
    for row in rows:
        assert row["seconds"] == pytest.approx(sum(row["times_s"].values()))
        if row["name"].startswith("rest"):
            continue
        assert all(positive(t) for t in row["times_s"].values()), row
        for part, roof in row["roof"].items():
            if row["kind"] == "gemm":
                assert roof["kind"] == "gemm" and positive(roof["fraction"])
                assert roof["fraction"] == pytest.approx(
                    row["gflop"][part] / row["times_s"][part] / result["gemm_roof"]["gflops"])
            else:
                assert roof["kind"] == "memory" and positive(roof["multiple"])
                assert roof["multiple"] == pytest.approx(row["times_s"][part] / roof["copy_s"])
        if row["kind"] == "gemm":     # conv and Linear: both passes against the GEMM roof
            assert set(row["roof"]) == {"forward", "backward"}
        elif row["kind"] == "memory":  # every part that moves bytes has its memory roof
            assert set(row["roof"]) == {part for part, n in row["bytes"].items() if n > 0}
    kinds = {row["name"].split()[0]: row["kind"] for row in rows}
    assert kinds["conv"] == kinds["linear"] == "gemm"
    assert kinds["relu"] == kinds["flatten"] == kinds["optimizer"] == "memory"
    assert positive(memory_roof["gbytes_per_s"]) and memory_roof["sizes"]
    assert all(positive(m["seconds"]) for m in memory_roof["sizes"])
    text = bench.format_report(result)
    assert "rest (Python glue" in text and "memory roof: streaming copy" in text
    assert "x copy" in text and "% GEMM" in text


def test_quick_benchmark_without_torch_or_memory():
    result = bench.run_benchmark(batch_size=2, quick=True, include_torch=False,
                                 measure_memory=False)
    check_result(result, with_torch=False)
    assert result["train_step"]["torch_status"].startswith("disabled")
    assert result["memory"] == {"status": "skipped"}
    text = bench.format_report(result)
    assert "training step" in text and "GEMM roof" in text and "torch: disabled" in text
    # Each BLAS line says whose library it is (NumPy's and SciPy's wheels bundle their own).
    owners = [bench.blas_owner(lib["filepath"]) for lib in result["machine"]["blas"]]
    assert all(f"BLAS of {owner}: " in text for owner in owners)
    if owners:
        assert "NumPy" in owners


def test_quick_benchmark_with_torch_runs_the_identical_model():
    pytest.importorskip("torch")
    result = bench.run_benchmark(batch_size=2, quick=True, include_torch=True,
                                 measure_memory=False)
    check_result(result, with_torch=True)
    losses = result["train_step"]["first_loss"]
    # Same weights, data and loss: the first step's losses agree.
    assert losses["torch"] == pytest.approx(losses["ours"], rel=1e-4)
    assert "ratio ours/torch" in bench.format_report(result)


def test_torch_hidden_is_reported_not_fatal(monkeypatch):
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch hidden by the test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    result = bench.run_benchmark(batch_size=2, quick=True, include_torch=True,
                                 measure_memory=False)
    check_result(result, with_torch=False)
    assert result["train_step"]["torch_status"].startswith("not available")
    assert "torch hidden by the test" in bench.format_report(result)


def test_cli_writes_json_with_memory(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--batch-size", "2", "--no-torch",
                 "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "images/s" in out and f"wrote {path}" in out
    result = json.loads(path.read_text())
    check_result(result, with_torch=False)
    memory = result["memory"]
    assert memory["status"] == "ok", memory
    assert memory["peak_rss_bytes"] >= memory["baseline_rss_bytes"] > 0
    assert not [p for p in tmp_path.iterdir() if p.name != "bench.json"]  # no temp left


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "0"], "--batch-size"),
    (["--repeats", "0"], "repeats"),
    (["--threads", "0"], "threads"),
    (["--json", "/nonexistent-dir/x.json"], "does not exist"),
    (["--batch-sizes", "16,0"], "distinct positive batch sizes"),
    (["--batch-sizes", "16,16"], "distinct positive batch sizes"),
    (["--batch-sizes", "a"], "got 'a'"),
    (["--inference", "--batch-sizes", "4"], "--batch-sizes applies only with the training"),
])
def test_cli_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", "--quick", "--no-torch", "--no-memory"] + argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_batch_sweep_times_both_engines_at_each_batch_size(capsys):
    torch_there = importlib.util.find_spec("torch") is not None
    assert main(["bench", "--quick", "--batch-size", "2", "--no-memory",
                 "--batch-sizes", "3,1"] + ([] if torch_there else ["--no-torch"])) == 0
    out = capsys.readouterr().out
    assert "training step by batch size" in out
    lines = [line.split() for line in out.splitlines() if line.strip().startswith("batch ")]
    assert [line[1] for line in lines] == ["3", "1"]
    for line in lines:
        ours_ms, ours_rate = float(line[2]), float(line[4])
        # images/s is the batch size over the median step time.
        assert ours_rate == pytest.approx(int(line[1]) / (ours_ms / 1e3), rel=0.01)
        assert line[5].endswith("x") if torch_there else line[5] == "-"


def test_threads_option_sets_the_thread_count():
    pytest.importorskip("threadpoolctl")
    result = bench.run_benchmark(batch_size=2, quick=True, include_torch=False,
                                 measure_memory=False, threads=1)
    assert result["config"]["threads"] == 1


def test_time_interleaved_times_each_engine_after_untimed_calls(monkeypatch):
    """Engines take turns, and the timed call of each is the last of a group: the ones
    before it absorb whatever the previous engine left running (spinning threads)."""
    clock = [0.0]
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    calls = []

    def engine(name, settle, timed):
        durations = iter(([settle] * bench.SETTLE_CALLS + [timed]) * 3)

        def run():
            calls.append(name)
            clock[0] += next(durations)
        return run

    times = bench.time_interleaved({"a": engine("a", 100.0, 1.0),
                                    "b": engine("b", 50.0, 2.0)}, 3)
    group = bench.SETTLE_CALLS + 1
    assert bench.SETTLE_CALLS >= 1
    assert calls == (["a"] * group + ["b"] * group) * 3
    assert times == {"a": [1.0] * 3, "b": [2.0] * 3}
