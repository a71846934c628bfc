"""``im2col-net gradcheck``: exit codes, argument errors and the printed table."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from im2col_net.app.cli import main
from im2col_net.app.cli.gradcheck_cmd import LAYERS

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv):
    """Run the command in-process; return (exit code, stdout, stderr)."""
    try:
        code = main(["gradcheck", *argv])
    except SystemExit as exc:       # argparse and CliError leave through parser.exit
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_every_listed_layer_is_registered():
    assert set(LAYERS) >= {"conv2d", "maxpool2d", "avgpool2d", "globalavgpool2d", "linear",
                           "relu", "leakyrelu", "sigmoid", "tanh", "flatten", "dropout"}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_each_layer_passes_with_defaults(capsys, name):
    code, out, _ = run_cli(capsys, name, "--size", "4", "5", "--batch", "1")
    assert code == 0, out
    assert "PASSED" in out and "input 0" in out


@pytest.mark.parametrize("argv, tensors", [
    (["conv2d", "--kernel", "3", "2", "--stride", "2", "1", "--padding", "1", "0", "2", "1",
      "--dilation", "1", "2", "--channels", "4", "--groups", "2", "--padding-mode", "edge",
      "--flip", "--strategy", "strided", "--dtype", "float64"], ["input 0", "weight", "bias"]),
    (["conv2d", "--padding", "same", "--kernel", "2", "--mode", "fast", "--directions", "2"],
     ["input 0", "weight", "bias"]),
    (["maxpool2d", "--kernel", "3", "--stride", "2", "--padding", "1"], ["input 0"]),
    (["avgpool2d", "--padding", "1", "--exclude-pad"], ["input 0"]),
    (["linear", "--channels", "5", "--out-channels", "2"], ["input 0", "weight", "bias"]),
    (["dropout", "--p", "0.3", "--seed", "4"], ["input 0"]),
    (["dropout", "--eval"], ["input 0"]),
])
def test_options_reach_the_layer(capsys, argv, tensors):
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0, out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("tensor"))
    assert "result" in header and "max abs err" in header
    for name in tensors:
        assert any(line.startswith(name) and line.endswith("ok") for line in lines), out


def test_conv_options_show_in_the_layer_line(capsys):
    code, out, _ = run_cli(capsys, "conv2d", "--stride", "2", "--kernel", "2",
                           "--out-channels", "5")
    assert code == 0
    assert "Conv2D(3, 5, kernel_size=(2, 2), stride=(2, 2)" in out
    assert "weight   (5, 3, 2, 2)" in out


def test_failure_exits_1(capsys):
    # An absurd tolerance setting: a huge step against a zero tolerance fails for tanh.
    code, out, _ = run_cli(capsys, "tanh", "--eps", "0.5", "--atol", "0", "--rtol", "0")
    assert code == 1
    assert "FAIL" in out and "FAILED" in out


@pytest.mark.parametrize("argv, message", [
    (["softmax"], "unknown layer 'softmax'"),
    (["conv2d", "--stride", "-1"], "--stride must be positive"),
    (["maxpool2d", "--kernel", "0"], "--kernel must be positive"),
    (["conv2d", "--batch", "0"], "--batch must be a positive int"),
    (["conv2d", "--size", "4", "4", "4"], "--size takes 1 or 2 ints"),
    (["conv2d", "--padding", "wide"], "--padding takes"),
    (["conv2d", "--padding", "-2"], "--padding must be >= 0"),
    (["conv2d", "--groups", "2"], "divisible by groups"),
    (["conv2d", "--padding", "same", "--stride", "2"], "needs stride 1"),
    (["conv2d", "--kernel", "9"], "larger than the padded input"),
    (["maxpool2d", "--padding", "same"], "not supported by pooling"),
    (["dropout", "--p", "1.5"], "p must be in"),
    (["tanh", "--eps", "0"], "eps"),
    (["tanh", "--mode", "slow"], "invalid choice"),
    (["conv2d", "--stride", "x"], "invalid int value"),
])
def test_bad_arguments_exit_2_with_a_message(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err
    assert "PASSED" not in out and "FAILED" not in out


def test_module_entry_point():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-m", "im2col_net", "gradcheck", "conv2d", "--size", "5",
         "--channels", "2", "--out-channels", "3", "--padding", "same"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "PASSED: 3/3 tensors within tolerance" in result.stdout
    assert result.stdout.count("  ok") == 3


def test_maxunpool2d_is_checked_with_fixed_indices_and_refuses_overlaps(capsys):
    code, out, _ = run_cli(capsys, "maxunpool2d", "--kernel", "2", "--stride", "3", "--size", "3")
    assert code == 0 and "PASSED" in out
    code, _, err = run_cli(capsys, "maxunpool2d", "--kernel", "3", "--stride", "2",
                           "--padding", "1", "--size", "5")
    assert code == 2 and "picked one element twice" in err
