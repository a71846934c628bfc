"""Learning-rate schedules: values, config round trips, argument errors."""

from __future__ import annotations

import json
import math

import pytest

from im2col_net.optim import (
    SCHEDULES,
    ConstantLR,
    CosineLR,
    ExponentialLR,
    OneCycleLR,
    Schedule,
    StepLR,
    TableLR,
    WarmupLR,
    make_schedule,
    schedule_from_config,
)


def test_constant():
    s = ConstantLR(0.1)
    assert [s(e) for e in (0, 0.5, 7, 1e6)] == [0.1] * 4
    assert isinstance(s(3), float)


def test_table_from_dict_uses_last_entry_not_after_epoch():
    s = TableLR({0: 0.1, 3: 0.01, 5: 0.001})
    assert s(0) == 0.1 and s(2.999) == 0.1
    assert s(3) == 0.01 and s(4.5) == 0.01
    assert s(5) == 0.001 and s(100) == 0.001


def test_table_from_list_and_pairs():
    s = TableLR([0.3, 0.2, 0.1])
    assert (s(0), s(1.5), s(2), s(9)) == (0.3, 0.2, 0.1, 0.1)
    assert TableLR([[0, 0.5], [4, 0.05]])(4.0) == 0.05
    # JSON turns dict keys into strings; they are accepted.
    assert TableLR(json.loads(json.dumps({0: 0.5, 2: 0.25})))(2) == 0.25


def test_step():
    s = StepLR(0.1, step_size=3, gamma=0.5)
    assert s(0) == 0.1 and s(2.99) == 0.1
    assert s(3) == pytest.approx(0.05) and s(5.9) == pytest.approx(0.05)
    assert s(6) == pytest.approx(0.025)
    assert StepLR(1.0, 1)(2.5) == pytest.approx(0.01)  # default gamma 0.1


def test_exponential_is_continuous_and_exact_at_whole_epochs():
    s = ExponentialLR(0.2, gamma=0.5)
    assert s(0) == 0.2 and s(1) == pytest.approx(0.1) and s(3) == pytest.approx(0.025)
    assert s(1.5) == pytest.approx(0.2 * 0.5**1.5)
    assert s(1) > s(1.5) > s(2)


def test_cosine():
    s = CosineLR(0.1, total_epochs=10, min_lr=0.001)
    assert s(0) == pytest.approx(0.1)
    assert s(5) == pytest.approx(0.001 + 0.099 * 0.5)
    assert s(2.5) == pytest.approx(0.001 + 0.099 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert s(10) == pytest.approx(0.001) and s(25) == pytest.approx(0.001)
    values = [s(e / 4) for e in range(41)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_warmup_ramps_linearly_then_follows_inner():
    inner = CosineLR(1.0, total_epochs=10)
    s = WarmupLR(inner, warmup_epochs=2, start_factor=0.1)
    assert s(0) == pytest.approx(0.1)
    assert s(1) == pytest.approx(inner(1) * 0.55)
    assert s(2) == pytest.approx(inner(2)) and s(7.5) == pytest.approx(inner(7.5))
    ramp = [s(e / 10) for e in range(21)]
    assert all(0 < a < b for a, b in zip(ramp, ramp[1:], strict=False))
    assert WarmupLR(ConstantLR(0.5), 4)(0) == pytest.approx(0.005)  # default start 0.01


ALL_SCHEDULES = [
    ConstantLR(0.1),
    TableLR({0: 0.1, 3: 0.01}),
    StepLR(0.1, 2, 0.3),
    ExponentialLR(0.1, 0.9),
    CosineLR(0.1, 8, 0.002),
    WarmupLR(CosineLR(0.1, 8), 1.5, 0.05),
    WarmupLR(TableLR([0.2, 0.1]), 0.5),
    OneCycleLR(0.01, 3, pct_start=0.2, div_factor=10, final_div_factor=100),
    OneCycleLR(0.003, 2, steps_per_epoch=7),
]


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: type(s).__name__)
def test_config_round_trip_through_json(schedule):
    config = json.loads(json.dumps(schedule.get_config()))
    assert config["class"] == type(schedule).__name__
    rebuilt = schedule_from_config(config)
    assert type(rebuilt) is type(schedule) and rebuilt == schedule
    for epoch in (0, 0.25, 1, 2.5, 3, 7.75, 20):
        assert rebuilt(epoch) == schedule(epoch)
    assert repr(rebuilt) == repr(schedule)


def test_make_schedule_by_name():
    assert make_schedule("constant", 0.2) == ConstantLR(0.2)
    assert make_schedule("table", None, table={0: 0.1, 2: 0.01}) == TableLR({0: 0.1, 2: 0.01})
    assert make_schedule("step", 0.1, 10, step_size=3) == StepLR(0.1, 3, 0.1)
    assert make_schedule("exponential", 0.1, gamma=0.8) == ExponentialLR(0.1, 0.8)
    assert make_schedule("Cosine", 0.1, 10, min_lr=0.01) == CosineLR(0.1, 10, 0.01)
    assert make_schedule("warmup-cosine", 0.1, 10) == WarmupLR(CosineLR(0.1, 10), 1.0)
    s = make_schedule("warmup-step", 0.1, 10, step_size=4, warmup_epochs=2, start_factor=0.2)
    assert s == WarmupLR(StepLR(0.1, 4), 2, 0.2)
    assert make_schedule("onecycle", 0.01, 4, pct_start=0.2, steps_per_epoch=50) == \
        OneCycleLR(0.01, 4, 0.2, steps_per_epoch=50)
    assert set(SCHEDULES) >= {"constant", "table", "step", "exponential", "cosine",
                              "warmup-cosine", "onecycle"}
    assert "warmup-onecycle" not in SCHEDULES  # it has its own warm-up
    for name in SCHEDULES:
        assert isinstance(name, str)


@pytest.mark.parametrize("build,match", [
    (lambda: ConstantLR(-0.1), "ConstantLR: lr must be >= 0"),
    (lambda: ConstantLR(float("nan")), "lr must be finite"),
    (lambda: TableLR({}), "table is empty"),
    (lambda: TableLR({1: 0.1}), "must give a rate for epoch 0"),
    (lambda: TableLR({0: 0.1, -1: 0.2}), "table epoch must be >= 0"),
    (lambda: TableLR({0: 0.1, 1.5: 0.2}), "table epoch must be an integer"),
    (lambda: TableLR({0: 0.1, "0": 0.2}), "epoch 0 appears twice"),
    (lambda: TableLR([[0, 0.1, 3]]), r"pairs must be \[epoch, lr\]"),
    (lambda: TableLR("0.1"), "table must be a dict"),
    (lambda: TableLR([0.1, -0.2]), r"table\[1\] must be >= 0"),
    (lambda: StepLR(0.1, 0), "step_size must be >= 1"),
    (lambda: StepLR(0.1, 2.5), "step_size must be an integer"),
    (lambda: StepLR(0.1, 2, gamma=0.0), "gamma must be > 0"),
    (lambda: ExponentialLR(0.1, -0.5), "ExponentialLR: gamma must be > 0"),
    (lambda: CosineLR(0.1, 0), "total_epochs must be > 0"),
    (lambda: CosineLR(0.1, 5, min_lr=0.2), r"min_lr \(0.2\) must not exceed lr"),
    (lambda: WarmupLR(0.1, 2), "inner must be a Schedule"),
    (lambda: WarmupLR(ConstantLR(0.1), 0), "warmup_epochs must be > 0"),
    (lambda: WarmupLR(ConstantLR(0.1), 1, start_factor=2.0), "start_factor must be <= 1"),
    (lambda: ConstantLR(0.1)(-1), "epoch must be >= 0"),
    (lambda: ConstantLR(0.1)(float("inf")), "epoch must be finite"),
    (lambda: ConstantLR(0.1)("1"), "epoch must be a real number"),
    (lambda: OneCycleLR(0.1, 0), "total_epochs must be > 0"),
    (lambda: OneCycleLR(0.1, 2, pct_start=1.0), "pct_start must be < 1"),
    (lambda: OneCycleLR(0.1, 2, pct_start=0.0), "pct_start must be > 0"),
    (lambda: OneCycleLR(0.1, 2, div_factor=0), "div_factor must be > 0"),
    (lambda: OneCycleLR(0.1, 2, steps_per_epoch=0), "steps_per_epoch must be >= 1"),
    (lambda: make_schedule("onecycle", 0.1), "epochs .* is required"),
    (lambda: make_schedule("warmup-onecycle", 0.1, 2), "unknown schedule"),
    (lambda: make_schedule("linear", 0.1, 10), "unknown schedule 'linear'"),
    (lambda: make_schedule("cosine", 0.1), "epochs .* is required"),
    (lambda: make_schedule("cosine", None, 10), "lr is required"),
    (lambda: make_schedule("step", 0.1, 10), r"missing arguments \['step_size'\]"),
    (lambda: make_schedule("cosine", 0.1, 10, gamma=0.5), r"unexpected \['gamma'\]"),
    (lambda: make_schedule("constant", 0.1, warmup_epochs=1), r"unexpected \['warmup_epochs'\]"),
    (lambda: make_schedule("table", 0.1, table=[0.1]), "pass lr=None"),
    (lambda: make_schedule("warmup-cosine", 0.1, 3, warmup_epochs=3), "must be smaller than"),
    (lambda: make_schedule("cosine", 0.1, -2), "epochs must be > 0"),
    (lambda: schedule_from_config({"lr": 0.1}), "'class' key"),
    (lambda: schedule_from_config({"class": "Schedule"}), "unknown schedule class"),
    (lambda: schedule_from_config({"class": "StepLR", "lr": 0.1}), "bad arguments for StepLR"),
])
def test_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_base_class_is_abstract():
    with pytest.raises(NotImplementedError):
        Schedule()(0)


@pytest.mark.parametrize("epochs,steps,pct,div,final_div", [
    (2, 469, 0.25, 25.0, 1e4),   # the CLI's default recipe: full MNIST at batch 128
    (3, 10, 0.3, 25.0, 1e4),     # torch's defaults
    (1, 37, 0.5, 10.0, 100.0),
    (4, 3, 0.15, 5.0, 1e3),      # peak at a fractional update index
])
def test_onecycle_equals_torch_update_by_update(epochs, steps, pct, div, final_div):
    torch = pytest.importorskip("torch")
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([weight], lr=1.0)
    theirs = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.004, total_steps=epochs * steps, pct_start=pct,
        anneal_strategy="cos", div_factor=div, final_div_factor=final_div,
        cycle_momentum=False)
    ours = OneCycleLR(0.004, epochs, pct_start=pct, div_factor=div,
                      final_div_factor=final_div, steps_per_epoch=steps)
    for step in range(epochs * steps):
        # the trainer asks for the rate of update `step` at epoch step / steps_per_epoch
        assert ours(step / steps) == pytest.approx(optimizer.param_groups[0]["lr"],
                                                   rel=1e-12, abs=0)
        optimizer.step()
        theirs.step()
    final = 0.004 / div / final_div
    assert ours(epochs) == pytest.approx(final) and ours(epochs + 5) == pytest.approx(final)


def test_onecycle_in_continuous_epochs():
    s = OneCycleLR(0.01, total_epochs=4, pct_start=0.25, div_factor=20, final_div_factor=50)
    assert s(0) == pytest.approx(0.0005)
    assert s(0.5) == pytest.approx(0.0005 + 0.0095 * 0.5)  # halfway up the rising cosine
    assert s(1) == pytest.approx(0.01)
    assert s(2.5) == pytest.approx(0.00001 + (0.01 - 0.00001) * 0.5)
    assert s(4) == pytest.approx(0.00001) and s(9) == pytest.approx(0.00001)
    rising = [s(e / 20) for e in range(21)]
    falling = [s(1 + e / 20) for e in range(61)]
    assert all(a < b for a, b in zip(rising, rising[1:], strict=False))
    assert all(a > b for a, b in zip(falling, falling[1:], strict=False))


def test_onecycle_too_short_to_rise_starts_at_the_peak():
    one = OneCycleLR(0.1, 1, pct_start=0.25, steps_per_epoch=1)
    assert one(0) == pytest.approx(0.1) and one(1) == pytest.approx(0.1 / 25 / 1e4)
    four = OneCycleLR(0.1, 1, pct_start=0.25, steps_per_epoch=4)  # peak at update 0
    assert four(0) == pytest.approx(0.1)
    assert four(0.25) > four(0.5) > four(0.75) == pytest.approx(0.1 / 25 / 1e4)
