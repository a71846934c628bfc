"""The convolution planner: estimate is deterministic, measure picks the fastest timed
candidate, plans round-trip through checkpoints (a resumed run is bit-exact), and the
opt-in plan cache file is validated, never trusted blindly."""

import json
import warnings

import numpy as np
import pytest

from im2col_net import Conv2D
from im2col_net import reference as ref
from im2col_net.functional import basic, conv_algorithms, planner
from im2col_net.functional import conv as conv_module
from im2col_net.geometry import WindowGeometry
from im2col_net.layers import Dropout, Flatten, Linear, MaxPool2D, ReLU, Sequential
from im2col_net.optim import make_optimizer
from im2col_net.training import CheckpointError, TrainingInterrupted, fit, load_checkpoint
from im2col_net.training.checkpoint import validate_resume


@pytest.fixture(autouse=True)
def fresh_planner(monkeypatch):
    monkeypatch.delenv(planner.ENV_MODE, raising=False)
    monkeypatch.delenv(planner.ENV_CACHE, raising=False)
    planner.reset()
    yield
    planner.reset()


def _problem(n=16, c=32, size=14, cout=64, kernel=5, padding=2, stride=1, dtype=np.float32):
    geometry = WindowGeometry.make(kernel, stride, padding)
    return conv_module.conv_problem((n, c, size, size), (cout, c, kernel, kernel), geometry,
                                    dtype=dtype)


def _no_timing(*args):
    raise AssertionError("estimate must not time anything")


def _fake_times(times):
    """A runner that reports ``times[algorithm]`` and counts its calls; an algorithm
    that ``times`` does not name is ten times slower than the slowest it does."""
    calls = []
    slow = 10 * max(times.values())

    def runner(problem, plan, input_grad):
        calls.append(plan.algorithm)
        return times.get(plan.algorithm, slow)
    runner.calls = calls
    return runner


def test_estimate_is_deterministic_and_times_nothing():
    problems = [_problem(), _problem(200, 1, 28, 32), _problem(8, 3, 9, 5, 3, 1, 2),
                _problem(dtype=np.float16)]
    first = [planner.estimate(p).to_dict() for p in problems]
    planner.reset()
    with planner.planning("estimate"):
        again = [planner.choose(p, None, True, _no_timing).to_dict() for p in problems]
    assert first == again
    assert first[0]["algorithm"] == "fft"          # the model's conv 2: fewest operations
    assert first[3]["algorithm"] != "fft"          # no float16 FFT
    assert all(p["source"] == "estimate" for p in first)


def test_layer_plan_in_estimate_mode_runs_no_convolution(monkeypatch):
    monkeypatch.setattr(conv_module, "_time_plan", _no_timing)
    layer = Conv2D(32, 64, 5, padding=2)
    assert layer.plan((10_000, 32, 14, 14), "estimate").algorithm == "fft"
    assert Conv2D(32, 64, 5, padding=2, strategy="strided").plan((2, 32, 14, 14)).algorithm \
        == "strided"


def test_measure_picks_the_fastest_candidate_and_keeps_it():
    problem = _problem()
    times = {"im2col": 0.030, "rows": 0.020, "strided": 0.050, "fft": 0.025, "im2col_t": 0.060}
    runner = _fake_times(times)
    with planner.planning("measure"):
        plan = planner.choose(problem, None, True, runner)
        assert plan.algorithm == "rows" and plan.source == "measure"
        assert set(plan.timings) == set(times)
        assert plan.timings["rows"] == pytest.approx(0.020)
        calls = len(runner.calls)
        assert planner.choose(problem, None, True, runner) is plan   # cached per key
        assert len(runner.calls) == calls
        # Another thread count or batch bucket is another key.
        assert planner.plan_key(problem, True, 1) != planner.plan_key(problem, True, 2)
        assert planner.plan_key(problem) != planner.plan_key(problem.with_batch(200))
    # The clear losers are timed once, the candidates within 2x of the fastest and the
    # model's choice (fft) again (a batch of 16 this large is cut into 8 blocks either
    # way: no blocking round).
    assert runner.calls.count("strided") == runner.calls.count("im2col_t") == 1
    assert runner.calls.count("rows") == runner.calls.count("fft") == 3


@pytest.mark.parametrize("fewer_time, expected", [(0.005, planner.FEWER_BLOCKS),
                                                   (0.0095, planner.MIN_BLOCKS)])
def test_measure_cuts_a_small_batch_into_fewer_blocks_only_by_a_clear_margin(fewer_time,
                                                                             expected):
    calls = []

    def runner(problem, plan, input_grad):
        calls.append(plan.min_blocks)
        if plan.algorithm != "rows":
            return 0.05
        return fewer_time if plan.min_blocks == planner.FEWER_BLOCKS else 0.010

    problem = _problem(16, 1, 28, 32)             # conv 1 at batch 16: 8 blocks by default
    plan = planner.measure(problem, False, runner)
    assert plan.algorithm == "rows" and plan.min_blocks == expected
    assert calls.count(planner.FEWER_BLOCKS) == planner.REPEATS
    blocks = conv_algorithms.block_count_for("rows", problem, plan.block_bytes, plan.min_blocks)
    assert blocks == expected
    # The executor runs the plan's blocking, and the plan survives a checkpoint.
    assert planner.Plan.from_dict(plan.to_dict()).min_blocks == expected
    assert planner.Plan.from_dict({"algorithm": "rows", "block_bytes": 1}).min_blocks == 8
    with pytest.raises(ValueError, match="min_blocks"):
        planner.Plan.from_dict({"algorithm": "rows", "block_bytes": 1, "min_blocks": 0})
    # A large batch has as many blocks either way: nothing more is timed.
    calls.clear()
    planner.measure(_problem(512, 1, 28, 32), False, runner)
    assert planner.FEWER_BLOCKS not in calls


def test_a_plan_in_fewer_blocks_gives_the_same_gradients_up_to_rounding():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 3, 12, 12)).astype(np.float32)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    problem = conv_module.conv_problem(x.shape, w.shape, WindowGeometry.make(3, 1, 1),
                                       dtype=np.float32)
    results = []
    for least in (planner.MIN_BLOCKS, planner.FEWER_BLOCKS):
        plan = planner.Plan("rows", conv_algorithms.DEFAULT_BLOCK_BYTES["rows"], "fixed",
                            min_blocks=least)
        y, cache = conv_module._forward(problem, plan, x, w, None)
        dy = np.random.default_rng(5).standard_normal(y.shape).astype(np.float32)
        results.append((y, *conv_module.conv2d_backward(dy, cache)[:2]))
    assert conv_algorithms.block_count_for("rows", problem, 2 << 20) == 8
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_measure_skips_unsupported_algorithms():
    runner = _fake_times({"im2col": 0.02, "rows": 0.01, "strided": 0.03, "fft": 0.0})
    plan = planner.measure(_problem(stride=2), True, runner)   # no FFT at stride 2
    assert "fft" not in runner.calls and plan.algorithm == "rows"


def test_the_models_choice_is_timed_warm_even_after_a_slow_cold_run():
    """The model's choice is timed first, so its cold run carries the first use of the
    arrays every candidate shares; a cold time three times the fastest must not drop it
    when it is the fastest warm."""
    problem = _problem(128, 1, 28, 32)
    assert planner.estimate(problem).algorithm == "rows"
    cold = {"rows": 0.0090, "im2col_t": 0.0031, "im2col": 0.0049, "strided": 0.050,
            "fft": 0.040}
    warm = {"rows": 0.0026, "im2col_t": 0.0033, "im2col": 0.0050, "strided": 0.050,
            "fft": 0.040}
    calls = []

    def runner(problem, plan, input_grad):
        seconds = (warm if plan.algorithm in calls else cold)[plan.algorithm]
        calls.append(plan.algorithm)
        return seconds

    plan = planner.measure(problem, True, runner)
    assert plan.algorithm == "rows" and plan.timings["rows"] == pytest.approx(0.0026)
    assert calls.count("rows") >= 2


@pytest.mark.parametrize("t_time, expected", [(0.5, "im2col_t"), (0.95, "rows")])
def test_measure_takes_im2col_t_for_a_first_layer_only_by_the_clear_margin(t_time, expected):
    """The model's choice for a one-channel layer is rows; im2col_t, timed like every
    candidate, replaces it when at least 10 % faster (as under BLAS kernels without a
    small-matrix path), not on a near tie."""
    problem = _problem(200, 1, 28, 32)
    assert planner.estimate(problem).algorithm == "rows"
    runner = _fake_times({"im2col": 2.0, "rows": 1.0, "strided": 5.0, "fft": 4.0,
                          "im2col_t": t_time})
    plan = planner.measure(problem, True, runner)
    assert "im2col_t" in plan.timings and plan.algorithm == expected
    # With groups neither few-channel algorithm is a candidate.
    grouped = conv_module.conv_problem((8, 4, 12, 12), (4, 2, 3, 3), WindowGeometry.make(3),
                                       groups=2)
    runner = _fake_times({"im2col": 1.0, "strided": 2.0, "fft": 3.0})
    planner.measure(grouped, True, runner)
    assert not {"rows", "im2col_t"} & set(runner.calls)


def test_measure_on_the_real_engine_is_bounded_and_at_least_as_fast_as_what_it_timed():
    """The convnet's two conv shapes at batch 128: planning stays bounded and returns
    the candidate with the smallest measured time (or the model's, in a near tie)."""
    total = 0.0
    for problem, dx in ((_problem(128, 1, 28, 32), False), (_problem(128), True)):
        plan = planner.measure(problem, dx, conv_module._time_plan)
        fastest = min(plan.timings.values())
        modelled = planner.estimate(problem, dx).algorithm
        assert (plan.timings[plan.algorithm] == fastest
                or (plan.algorithm == modelled and fastest > planner.MARGIN * plan.timings[
                    modelled]))
        total += plan.seconds
    assert total < 10.0   # ~0.5 s on a quiet 2-core machine; generous for a loaded one


def test_named_mode_and_strategy_aliases():
    assert planner.resolve("auto") is None and planner.resolve("measure") is None
    assert planner.resolve("im2col") == "im2col"
    with pytest.raises(ValueError, match="strategy must be one of"):
        planner.resolve("winograd")
    with planner.planning("strided"):
        assert planner.choose(_problem(), None, True, _no_timing).algorithm == "strided"
    with planner.planning("fft"):   # not applicable at stride 2: the estimate instead
        assert planner.choose(_problem(stride=2), None, True, _no_timing).algorithm != "fft"
    with pytest.raises(ValueError, match="plan mode"):
        planner.set_mode("fastest")


def test_training_defaults_to_measure_unless_told(monkeypatch):
    with planner.training_planning():
        assert planner.current_mode() == "measure"
    monkeypatch.setenv(planner.ENV_MODE, "estimate")
    with planner.training_planning():
        assert planner.current_mode() == "estimate"


# -- the plan cache file -------------------------------------------------------------------
def _measure_once(runner):
    with planner.planning("measure"):
        return planner.choose(_problem(), None, True, runner)


def test_plan_cache_file_makes_the_second_run_start_planned(tmp_path):
    path = tmp_path / "plans.json"
    planner.use_plan_cache(path)
    first = _measure_once(_fake_times({"im2col": 3.0, "rows": 2.0, "strided": 1.0, "fft": 4.0}))
    data = json.loads(path.read_text())
    assert data["format"] == planner.FILE_FORMAT and data["version"] == planner.FILE_VERSION
    assert data["machine"]["id"]
    planner.reset()                       # a new process
    planner.use_plan_cache(path)
    runner = _fake_times({"im2col": 1.0, "rows": 1.0, "strided": 1.0, "fft": 1.0})
    again = _measure_once(runner)
    assert runner.calls == [] and again.algorithm == first.algorithm == "strided"
    assert again.source == "file"


def test_plan_cache_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(planner.ENV_CACHE, str(tmp_path))      # a directory
    planner.reset()
    assert planner.plan_cache_path() == tmp_path / "plans.json"
    monkeypatch.setenv(planner.ENV_CACHE, "")
    planner.reset()
    assert planner.plan_cache_path() is None                 # off by default


@pytest.mark.parametrize("damage", ["garbage", "format", "version", "machine", "entry"])
def test_a_corrupt_or_foreign_plan_cache_is_ignored_with_a_warning(tmp_path, damage):
    path = tmp_path / "plans.json"
    planner.use_plan_cache(path)
    _measure_once(_fake_times({"im2col": 3.0, "rows": 2.0, "strided": 1.0, "fft": 4.0}))
    data = json.loads(path.read_text())
    if damage == "garbage":
        path.write_text("{not json")
    else:
        if damage == "format":
            data["format"] = "something else"
        elif damage == "version":
            data["version"] = 99
        elif damage == "machine":
            data["machine"]["id"] = "another-cpu"
        else:
            data["plans"][0]["plan"]["algorithm"] = "winograd"
        path.write_text(json.dumps(data))
    planner.reset()
    planner.use_plan_cache(path)
    runner = _fake_times({"im2col": 1.0, "rows": 0.5, "strided": 2.0, "fft": 3.0})
    with pytest.warns(planner.PlanCacheWarning, match="ignoring the plan cache"):
        plan = _measure_once(runner)
    assert runner.calls and plan.algorithm == "rows"     # measured anew, file not trusted


# -- checkpoints ---------------------------------------------------------------------------
def _data(n, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 1, 12, 12)).astype(np.float32),
            rng.integers(0, 10, n).astype(np.int64))


TRAIN, TEST = _data(96, 0), _data(20, 1)


def _run(out_dir, *, resume=False, callback=None):
    rng = np.random.default_rng(0)
    model = Sequential(Conv2D(1, 4, 3, padding=1, rng=rng), ReLU(), MaxPool2D(2),
                       Conv2D(4, 6, 3, padding=1, rng=rng), ReLU(), Flatten(),
                       Dropout(0.2, rng=rng.spawn(1)[0]), Linear(6 * 6 * 6, 10, rng=rng))
    optimizer = make_optimizer("adam", model.params, lr=3e-3)
    fit(model, TRAIN, TEST, epochs=2, batch_size=32, optimizer=optimizer, seed=3,
        out_dir=out_dir, resume=resume, progress=False, callback=callback)
    return model.state_dict()


def _favouring(box):
    def runner(problem, plan, input_grad):
        return 0.001 if plan.algorithm == box["algorithm"] else 0.01
    return runner


def _favouring_linear(box):
    def timer(n, weight, bias):
        return lambda algorithm: 0.001 if algorithm == box["linear"] else 0.01
    return timer


def test_resume_reuses_the_checkpointed_plans_and_is_bit_exact(tmp_path, monkeypatch):
    box = {"algorithm": "strided", "linear": "wx"}
    monkeypatch.setattr(conv_module, "_time_plan", _favouring(box))
    monkeypatch.setattr(basic, "_linear_timer", _favouring_linear(box))
    reference = _run(tmp_path / "whole")          # training plans in "measure" by default
    planner.reset()

    def stop(info):
        if info["step"] == 4:
            raise KeyboardInterrupt
    with pytest.raises(TrainingInterrupted):
        _run(tmp_path / "split", callback=stop)
    saved = load_checkpoint(tmp_path / "split" / "checkpoint.npz")
    by_op = {}
    for entry in saved.plans:
        by_op.setdefault(entry["key"].split("|")[0], set()).add(entry["plan"]["algorithm"])
    assert by_op == {"conv2d": {"strided"}, "linear": {"wx"}}
    planner.reset()                               # a new process, where other algorithms
    box.update(algorithm="im2col", linear="xw")   # would now measure fastest
    resumed = _run(tmp_path / "split", resume=True)
    for name in reference:
        assert np.array_equal(resumed[name], reference[name]), name
    planner.reset()                               # control: planned afresh, it differs
    fresh = _run(tmp_path / "fresh")
    assert any(not np.array_equal(fresh[k], reference[k]) for k in reference)


def test_malformed_checkpoint_plans_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(planner.ENV_MODE, "estimate")
    _run(tmp_path)
    saved = load_checkpoint(tmp_path / "checkpoint.npz")
    assert all(e["plan"]["source"] == "estimate" for e in saved.plans)
    saved.plans = [{"key": saved.plans[0]["key"], "plan": {"algorithm": "winograd",
                                                           "block_bytes": 1}}]
    with pytest.raises(CheckpointError, match="plans: plan entry 0: plan algorithm"):
        validate_resume(saved, model=Sequential(), shuffle_rng=np.random.default_rng(),
                        epochs=2, batches_per_epoch=3, batch_size=32, n_train=96)
    with pytest.raises(ValueError, match="plans must be a list"):
        planner.install({"not": "a list"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert planner.install([]) == 0


def test_every_algorithm_has_a_block_budget_and_a_cost():
    problem = _problem(4, 3, 9, 5, 3, 1)
    for name in conv_algorithms.ALGORITHMS:
        blocks = conv_algorithms.block_count_for(name, problem,
                                                 conv_algorithms.DEFAULT_BLOCK_BYTES[name])
        assert 1 <= blocks <= problem.n
        assert conv_algorithms.estimated_cost(name, problem, blocks) > 0


@pytest.mark.parametrize("rows_time, expected", [(0.0200, "fft"), (0.0180, "rows")])
def test_measure_overturns_the_cost_model_only_by_a_clear_margin(rows_time, expected):
    """The model picks the FFT for this shape; a candidate under 10 % faster is a tie."""
    problem = _problem()
    assert planner.estimate(problem).algorithm == "fft"
    runner = _fake_times({"im2col": 0.05, "rows": rows_time, "strided": 0.05, "fft": 0.0205})
    plan = planner.measure(problem, True, runner)
    assert plan.algorithm == expected
    assert plan.timings["rows"] == pytest.approx(rows_time)


def test_only_warm_times_decide_and_every_survivor_is_timed_warm(monkeypatch):
    """A cold first run (fresh scratch pages, FFT set-up) can be far slower than the
    steady state. On a clock where the cold round alone spends the planning budget,
    every survivor still gets one warm run, and the warm times pick the winner."""
    problem = _problem()
    cold = {"im2col": 0.200, "rows": 0.250, "strided": 0.300, "fft": 0.300}
    warm = {"im2col": 0.200, "rows": 0.250, "strided": 0.300, "fft": 0.100}
    clock = [0.0]
    calls = []

    def runner(problem, plan, input_grad):
        seconds = (warm if plan.algorithm in calls else cold)[plan.algorithm]
        calls.append(plan.algorithm)
        clock[0] += seconds
        return seconds

    monkeypatch.setattr(planner.time, "perf_counter", lambda: clock[0])
    plan = planner.measure(problem, True, runner)
    assert plan.algorithm == "fft" and plan.timings["fft"] == pytest.approx(0.100)
    # Cold, in the model's order, until past the 0.5 s budget: fft, im2col, rows.
    # Warm: the three survivors once each (fastest cold first), and no second round;
    # then the winner in fewer blocks and again as it is, once.
    assert calls == ["fft", "im2col", "rows", "im2col", "rows", "fft", "fft", "fft"]
    assert plan.min_blocks == planner.MIN_BLOCKS          # no faster in fewer blocks


# -- the Linear layer's GEMM orientation ------------------------------------------------------
def _linear_arrays(n, fan_in, fan_out, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, fan_in)).astype(dtype),
            rng.standard_normal((fan_out, fan_in)).astype(dtype),
            rng.standard_normal(fan_out).astype(dtype))


@pytest.mark.parametrize("n, fan_in, fan_out", [(1, 5, 3), (7, 33, 4), (32, 300, 70),
                                                (200, 64, 10)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_linear_orientations_match_the_reference_loops(n, fan_in, fan_out, dtype):
    x, w, b = _linear_arrays(n, fan_in, fan_out, dtype)
    expected = ref.linear_forward(x, w, b)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    for strategy in planner.LINEAR_ALGORITHMS:
        y, cache = basic.linear_forward(x, w, b, strategy=strategy)
        assert y.dtype == dtype and y.shape == (n, fan_out)
        np.testing.assert_allclose(y, expected, rtol=tolerance, atol=tolerance * fan_in)
        # The backward takes a dy in either memory order.
        dy = np.asfortranarray(np.random.default_rng(1).standard_normal(y.shape).astype(dtype))
        dx, dw, db = basic.linear_backward(dy, cache)
        rdx, rdw, rdb = ref.linear_backward(x, w, dy, bias=True)
        for got, want in ((dx, rdx), (dw, rdw), (db, rdb)):
            np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance * max(n, 8))
    # "wx" hands back the transposed product without a copy.
    assert basic.linear_forward(x, w, b, strategy="wx")[0].flags.f_contiguous
    assert basic.linear_forward(x, w, b, strategy="xw")[0].flags.c_contiguous


def _linear_runner(times):
    calls = []

    def runner(algorithm):
        calls.append(algorithm)
        return times[algorithm]
    runner.calls = calls
    return runner


@pytest.mark.parametrize("wx_time, expected", [(0.5, "wx"), (0.95, "xw"), (1.5, "xw")])
def test_linear_measure_takes_the_transposed_product_only_by_a_clear_margin(wx_time,
                                                                             expected):
    runner = _linear_runner({"xw": 1.0, "wx": wx_time})
    plan = planner.measure_linear(runner)
    assert plan.algorithm == expected and plan.source == "measure" and plan.block_bytes == 0
    assert plan.timings == {"xw": 1.0, "wx": wx_time}
    # Each once cold, then warm rounds: only warm times decide.
    assert runner.calls.count("xw") == runner.calls.count("wx") >= 2


def test_linear_plans_follow_the_mode_and_are_kept_per_key(monkeypatch):
    x, w, b = _linear_arrays(32, 64, 16, np.float32)
    monkeypatch.setattr(basic, "_linear_timer", lambda n, weight, bias: _no_timing)
    with planner.planning("estimate"):            # no timing, always "xw"
        assert basic.linear_plan(32, w, b).to_dict()["algorithm"] == "xw"
        assert basic.linear_forward(x, w, b)[0].flags.c_contiguous
    runner = _linear_runner({"xw": 1.0, "wx": 0.1})
    monkeypatch.setattr(basic, "_linear_timer", lambda n, weight, bias: runner)
    layer = Linear(64, 16)
    with planner.planning("measure"):
        y = layer.forward(x)
        assert y.flags.f_contiguous                 # the measured "wx" ran
        calls = len(runner.calls)
        layer.forward(x[:20])                       # the same batch bucket: no new timing
        assert len(runner.calls) == calls
    keys = [e["key"] for e in planner.export_plans()]
    assert planner.linear_key(32, 64, 16, np.float32, True) in keys
    assert planner.linear_key(32, 64, 16, np.float32, True) != planner.linear_key(
        64, 64, 16, np.float32, True)
    assert basic.linear_plan(0, w, b).algorithm == "xw"      # an empty batch: nothing timed
    with pytest.raises(ValueError, match="linear: strategy must be one of"):
        basic.linear_forward(x, w, b, strategy="fft")


def test_linear_plans_are_validated_like_the_conv_plans():
    key = planner.linear_key(32, 64, 16, np.float32, True)
    good = {"algorithm": "wx", "block_bytes": 0, "source": "measure",
            "timings": {"xw": 0.2, "wx": 0.1}}
    assert planner.install([{"key": key, "plan": good}]) == 1
    with planner.planning("estimate"):            # an installed plan wins over every mode
        x, w, b = _linear_arrays(32, 64, 16, np.float32)
        assert basic.linear_plan(32, w, b).algorithm == "wx"
    conv_key = planner.plan_key(_problem())
    bad = [({"key": key, "plan": {**good, "algorithm": "fft"}}, "plan algorithm"),
           ({"key": key, "plan": {**good, "timings": {"fft": 0.1}}}, "plan timings"),
           ({"key": key, "plan": {**good, "block_bytes": -1}}, "block_bytes"),
           ({"key": conv_key, "plan": {**good, "algorithm": "wx"}}, "plan algorithm"),
           ({"key": conv_key, "plan": {"algorithm": "fft", "block_bytes": 0}}, "block_bytes"),
           ({"key": "dense|x=1", "plan": good}, "unknown key")]
    for entry, message in bad:
        with pytest.raises(ValueError, match=message):
            planner.validate_entries([entry])


def test_linear_plans_live_in_the_plan_cache_file(tmp_path, monkeypatch):
    path = tmp_path / "plans.json"
    planner.use_plan_cache(path)
    x, w, b = _linear_arrays(8, 40, 12, np.float32)
    monkeypatch.setattr(basic, "_linear_timer",
                        lambda n, weight, bias: _linear_runner({"xw": 1.0, "wx": 0.2}))
    with planner.planning("measure"):
        basic.linear_forward(x, w, b)
    planner.reset()                                # a new process
    planner.use_plan_cache(path)
    monkeypatch.setattr(basic, "_linear_timer", lambda n, weight, bias: _no_timing)
    with planner.planning("measure"):
        plan = basic.linear_plan(8, w, b)
    assert plan.algorithm == "wx" and plan.source == "file"
