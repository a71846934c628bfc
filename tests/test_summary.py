"""model.summary(): shapes, parameter counts, FLOPs and memory by formula; the model is left
untouched; errors; the `im2col-net summary` command."""

import json

import numpy as np
import pytest

from im2col_net import (
    BatchNorm2D,
    Conv2D,
    ConvTranspose2D,
    Flatten,
    GlobalAvgPool2D,
    Linear,
    MaxPool2D,
    Parallel,
    ReLU,
    Residual,
    Sequential,
)
from im2col_net.app.cli import main
from im2col_net.models import MODEL_BUILDERS, build_model
from im2col_net.summary import ModelSummary, format_bytes, format_count


@pytest.mark.parametrize("strategy", ["im2col", "strided"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_flops_and_workspace_follow_the_formula(strategy, dtype):
    conv = Conv2D(4, 6, (3, 2), stride=2, padding=1, groups=2, strategy=strategy, dtype=dtype)
    n, h, w = 5, 9, 8
    s = Sequential(conv).summary((4, h, w), batch_size=n)
    (row,) = s.rows
    ho, wo = (9 + 2 - 3) // 2 + 1, (8 + 2 - 2) // 2 + 1
    itemsize = np.dtype(dtype).itemsize
    assert row.output_shape == (n, 6, ho, wo)
    assert row.flops == 2 * n * ho * wo * 6 * (4 // 2) * 3 * 2
    assert row.params == 6 * 2 * 3 * 2 + 6
    assert row.activation_bytes == n * 6 * ho * wo * itemsize
    # The padded input copy kept for backward, whatever the strategy.
    assert row.workspace_bytes == n * (h + 2) * (w + 2) * 4 * itemsize
    assert s.dtype == np.dtype(dtype).name and s.input_shape == (n, 4, h, w)


def test_other_layer_costs():
    model = Sequential(
        ConvTranspose2D(2, 4, 3, stride=2, padding=1, output_padding=1),  # 5x5 -> 10x10
        BatchNorm2D(4),
        ReLU(),
        MaxPool2D(2),
        GlobalAvgPool2D(),
        Flatten(),
        Linear(4, 3),
    )
    s = model.summary((2, 5, 5), batch_size=3)
    flops = [r.flops for r in s.rows]
    assert flops == [2 * 3 * 5 * 5 * 2 * 4 * 9, 4 * 3 * 4 * 100, 3 * 4 * 100, 3 * 4 * 25 * 4,
                     3 * 4 * 25, 0, 2 * 3 * 4 * 3]
    assert s.rows[0].workspace_bytes == 3 * 5 * 5 * 9 * 4 * 4
    assert [r.output_shape for r in s.rows] == [(3, 4, 10, 10), (3, 4, 10, 10), (3, 4, 10, 10),
                                                (3, 4, 5, 5), (3, 4, 1, 1), (3, 4), (3, 3)]
    assert all(r.workspace_bytes == 0 for r in s.rows[1:])
    assert s.total_flops == sum(flops)
    assert s.total_params == model.parameter_count()


@pytest.mark.parametrize("name", sorted(MODEL_BUILDERS))
def test_registered_models_shapes_and_totals(name):
    model = build_model(name, rng=0)
    s = model.summary((1, 28, 28), batch_size=2)
    assert s.output_shape == model.forward(np.zeros((2, 1, 28, 28), np.float32)).shape
    assert s.total_params == model.parameter_count()
    assert s.total_workspace_bytes >= s.peak_workspace_bytes > 0
    for row in s.rows:
        assert row.activation_bytes == int(np.prod(row.output_shape)) * 4


def test_rows_follow_a_sequential_step_by_step():
    model = build_model("convnet", rng=0)
    s = model.summary((1, 28, 28), batch_size=3)
    x = np.zeros((3, 1, 28, 28), np.float32)
    assert [r.name for r in s.rows] == [str(i) for i in range(len(model))]
    for layer, row in zip(model, s.rows, strict=True):
        x = layer.forward(x)
        assert row.output_shape == x.shape


def test_blocks_get_their_own_rows():
    block = Parallel(Conv2D(2, 3, 1), Sequential(Conv2D(2, 2, 3, padding=1), ReLU()))
    model = Sequential(block, Residual(Conv2D(5, 5, 1)))
    s = model.summary((2, 4, 4), batch_size=2)
    names = [(r.name, r.kind) for r in s.rows]
    assert names == [("0.0", "Conv2D 2->3 1x1"), ("0.1.0", "Conv2D 2->2 3x3"), ("0.1.1", "ReLU"),
                     ("0", "Parallel(concat)"), ("1.0", "Conv2D 5->5 1x1"),
                     ("1", "Residual(add)")]
    assert s.rows[3].output_shape == (2, 5, 4, 4) and s.rows[3].flops == 0
    assert s.rows[5].flops == 2 * 5 * 4 * 4


def test_model_state_is_left_alone():
    model = build_model("resnet-mini", rng=0)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    y = model.forward(x)  # training mode: a backward is pending
    buffers = {k: v.copy() for k, v in model.named_buffers()}
    model.summary((1, 28, 28), batch_size=64)
    assert model.training and model[1].training
    for name, value in model.named_buffers():
        np.testing.assert_array_equal(value, buffers[name], err_msg=name)
    dx = model.backward(np.ones_like(y))  # the caches survived
    reference = build_model("resnet-mini", rng=0)
    reference.forward(x)
    np.testing.assert_allclose(dx, reference.backward(np.ones_like(y)), rtol=1e-5, atol=1e-6)


def test_str_and_dict():
    s = build_model("inception-mini", rng=0).summary((1, 28, 28), batch_size=8)
    assert isinstance(s, ModelSummary)
    text = str(s)
    assert "Output shape" in text and "Workspace" in text
    assert "Parallel(concat)" in text and "(8, 10)" in text
    assert f"Total parameters:      {s.total_params:,}" in text
    assert format_count(s.total_flops) in text
    d = json.loads(s.to_json())
    assert d["totals"]["params"] == s.total_params
    assert len(d["rows"]) == len(s.rows) and d["rows"][-1]["output_shape"] == [8, 10]


def test_formatting_helpers():
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 1024**3) == "3.0 GiB"
    assert format_count(999) == "999"
    assert format_count(2_500_000) == "2.50 M"


@pytest.mark.parametrize("shape, batch, fragment", [
    ((28, 28), 1, r"summary: layer 0 \(Conv2D\) failed on the dry run.*got shape \(1, 28, 28\)"),
    ((1, 0, 28), 1, "input_shape must be the per-sample shape"),
    ((1, 28.5, 28), 1, "input_shape must be the per-sample shape"),
    ("abc", 1, "input_shape must be the per-sample shape"),
    ((1, 28, 28), 0, "batch_size must be a positive int"),
])
def test_bad_arguments(shape, batch, fragment):
    with pytest.raises(ValueError, match=fragment):
        build_model("convnet").summary(shape, batch_size=batch)


def test_mismatched_block_is_reported_by_summary():
    model = Sequential(Conv2D(1, 2, 3), Residual(Conv2D(2, 4, 1)))
    with pytest.raises(ValueError, match=r"layer 1 \(Residual\).*\(1, 4, 3, 3\).*\(1, 2, 3, 3\)"):
        model.summary((1, 5, 5))


def test_cli_summary(capsys):
    assert main(["summary", "--model", "resnet-mini", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "Residual(add)" in out and "(4, 10)" in out and "Total parameters" in out
    assert main(["summary", "--model", "convnet", "--json", "--batch-size", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input_shape"] == [2, 1, 28, 28]
    assert data["totals"]["params"] == build_model("convnet").parameter_count()


@pytest.mark.parametrize("argv", [
    ["summary", "--model", "convnet", "--input-shape", "1,28"],
    ["summary", "--model", "convnet", "--input-shape", "1,8,8"],
    ["summary", "--model", "convnet", "--batch-size", "0"],
    ["summary", "--model", "no-such-model"],
])
def test_cli_summary_user_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_summary_shows_each_conv_plan_without_running_it(monkeypatch):
    """The Plan column is the planner's estimate at the summary's batch size (the
    model's conv 2 takes the FFT by the cost model), computed without any convolution."""
    from im2col_net import summary as summary_module
    from im2col_net.functional import conv as conv_module
    from im2col_net.functional import planner
    from im2col_net.models import convnet

    def no_timing(*args):
        raise AssertionError("summary must not time convolutions")
    monkeypatch.setattr(conv_module, "_time_plan", no_timing)
    with planner.planning("measure"):      # even in measure mode: summary only estimates
        summary = summary_module.summarize(convnet(rng=0), (1, 28, 28), batch_size=256)
    plans = [r.plan for r in summary.rows if r.kind.startswith("Conv2D")]
    assert len(plans) == 2 and all(plans) and plans[1] == "fft"
    assert all(r.plan == "" for r in summary.rows if not r.kind.startswith("Conv2D"))
    assert "Plan" in str(summary) and summary.to_dict()["rows"][0]["plan"] == plans[0]
