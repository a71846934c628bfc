"""``im2col-net gradcheck package.module:ClassName``: a user's own layer, imported from the
current directory, checked like a built-in one; every mistake in the call is one line."""

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

MODULE = textwrap.dedent('''
    import numpy as np

    from im2col_net import Layer


    class ChannelAffine(Layer):
        """y = weight[c] * x + bias[c] per channel."""

        def __init__(self, channels, dtype=np.float32):
            super().__init__()
            if channels < 1:
                raise ValueError(f"ChannelAffine: channels must be >= 1, got {channels}")
            self.channels = channels
            rng = np.random.default_rng(0)
            self.params["weight"] = rng.uniform(0.5, 2.0, channels).astype(dtype)
            self.params["bias"] = rng.uniform(-1.0, 1.0, channels).astype(dtype)

        def get_config(self):
            return {"channels": self.channels}

        def forward(self, x):
            self._cache = x
            w, b = self.params["weight"], self.params["bias"]
            return x * w[:, None, None] + b[:, None, None]

        def backward(self, dy):
            x = self._require_cache()
            self.grads["weight"] = (dy * x).sum(axis=(0, 2, 3))
            self.grads["bias"] = dy.sum(axis=(0, 2, 3))
            return dy * self.params["weight"][:, None, None]

        def reference_pair(self):
            def forward(x):
                y = np.empty_like(x)
                for c in range(x.shape[1]):
                    y[:, c] = self.params["weight"][c] * x[:, c] + self.params["bias"][c]
                return y

            def backward(x, dy):
                dx = np.empty_like(x)
                dw = np.zeros(self.channels, x.dtype)
                db = np.zeros(self.channels, x.dtype)
                for c in range(x.shape[1]):
                    dx[:, c] = self.params["weight"][c] * dy[:, c]
                    dw[c] = np.sum(dy[:, c] * x[:, c])
                    db[c] = np.sum(dy[:, c])
                return dx, {"weight": dw, "bias": db}

            return forward, backward


    class WrongWeightGrad(ChannelAffine):
        """The weight gradient of channel 2, sample 1 only is dropped: a wrong backward."""

        def backward(self, dy):
            dx = super().backward(dy)
            x = self._cache
            self.grads["weight"][2] -= (dy[1, 2] * x[1, 2]).sum()
            return dx


    class WrongReference(ChannelAffine):
        """A correct layer whose reference loops are wrong: only --reference notices."""

        def reference_pair(self):
            forward, backward = super().reference_pair()
            return (lambda x: 2 * forward(x)), backward


    class Crashes(ChannelAffine):
        def backward(self, dy):
            raise KeyError("no such thing")


    def helper():
        return 1


    NotALayer = dict
''')


@pytest.fixture
def user_dir(tmp_path):
    (tmp_path / "mylayers.py").write_text(MODULE, encoding="utf-8")
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "blocks.py").write_text("from mylayers import ChannelAffine as Affine\n",
                                   encoding="utf-8")
    (tmp_path / "broken.py").write_text("import numpy as np\nimport no_such_dependency_xyz\n",
                                        encoding="utf-8")
    return tmp_path


def gradcheck_cli(cwd, *argv):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("IM2COL_NET_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "im2col_net", "gradcheck", *argv],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_a_correct_user_layer_passes(user_dir):
    result = gradcheck_cli(user_dir, "mylayers:ChannelAffine", "--args", '{"channels": 8}',
                           "--input-shape", "2,8,5,5", "--reference")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "layer: ChannelAffine(channels=8) (training mode)" in out
    assert "input: shape (2, 8, 5, 5), float32, normal data" in out
    rows = {line.split()[0]: line for line in out.splitlines()
            if line.startswith(("input 0", "weight", "bias"))}
    assert set(rows) == {"input", "weight", "bias"}
    assert all(line.endswith("ok") for line in rows.values()), out
    assert "(8,)" in rows["weight"] and "(2, 8, 5, 5)" in rows["input"]
    assert "PASSED: 3/3 tensors within tolerance" in out
    assert "reference: forward and backward match reference_pair()" in out


def test_a_class_in_a_package_module_and_float64(user_dir):
    result = gradcheck_cli(user_dir, "userpkg.blocks:Affine", "--args", '{"channels": 2}',
                           "--input-shape", "1,2,3,3", "--dtype", "float64", "--mode", "fast")
    assert result.returncode == 0, result.stderr
    assert "input: shape (1, 2, 3, 3), float64" in result.stdout
    assert "PASSED: 3/3 tensors within tolerance" in result.stdout


def test_a_wrong_backward_fails_and_names_the_worst_index(user_dir):
    result = gradcheck_cli(user_dir, "mylayers:WrongWeightGrad", "--args", '{"channels": 4}',
                           "--input-shape", "2,4,3,3")
    assert result.returncode == 1, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()
            if line.startswith(("input 0", "weight", "bias"))}
    assert rows["weight"].endswith("FAIL") and "(2,)" in rows["weight"]
    assert rows["input"].endswith("ok") and rows["bias"].endswith("ok")
    assert "FAILED" in result.stdout and result.stderr == ""


def test_reference_mismatch_fails(user_dir):
    result = gradcheck_cli(user_dir, "mylayers:WrongReference", "--args", '{"channels": 2}',
                           "--input-shape", "1,2,3,3", "--reference")
    assert result.returncode == 1, result.stderr
    assert "PASSED: 3/3" in result.stdout      # the gradients are right...
    assert "reference: FAILED:" in result.stdout and "forward" in result.stdout


@pytest.mark.parametrize("argv, message", [
    (["nosuchmodule_xyz:Layer"], "no module named 'nosuchmodule_xyz'"),
    (["broken:Thing"], "importing module 'broken' failed: ModuleNotFoundError: No module named "
                       "'no_such_dependency_xyz'"),
    (["mylayers:Missing"], "has no attribute 'Missing'; its Layer classes: ChannelAffine, "
                           "Crashes, WrongReference, WrongWeightGrad"),
    (["mylayers:helper"], "mylayers:helper is an object of type function, not a subclass of "
                          "im2col_net.Layer"),
    (["mylayers:NotALayer"], "mylayers:NotALayer is the class dict, not a subclass of "
                             "im2col_net.Layer"),
    (["mylayers:"], "a user layer is given as package.module:ClassName, got 'mylayers:'"),
    (["mylayers:ChannelAffine", "--args", "{channels: 8}"], "--args is not valid JSON"),
    (["mylayers:ChannelAffine", "--args", "[8]"],
     "--args must be a JSON object of constructor keyword arguments, like '{\"channels\": 8}', "
     "got a JSON list: '[8]'"),
    (["mylayers:ChannelAffine", "--args", '{"channels": 0}'],
     "ChannelAffine(channels=0) failed: ValueError: ChannelAffine: channels must be >= 1, got 0"),
    (["mylayers:ChannelAffine", "--args", '{"channels": 3}', "--input-shape", "2,3,x"],
     "--input-shape takes comma-separated positive ints like 2,8,5,5, got '2,3,x'"),
    (["mylayers:ChannelAffine", "--args", '{"channels": 3}', "--input-shape", "2,4,5,5"],
     "ChannelAffine(channels=3) forward() raised ValueError"),
    (["mylayers:ChannelAffine", "--args", '{"channels": 3}', "--input-shape", "1000,3,100,100"],
     "over the limit of 1,000,000 for gradcheck; use a smaller --input-shape"),
    (["mylayers:ChannelAffine", "--args", '{"channels": 3}', "--input-shape", "10,3,30,30"],
     "--mode full perturbs every input and parameter element"),
    (["mylayers:Crashes", "--args", '{"channels": 1}', "--input-shape", "1,1,2,2"],
     "raised KeyError during the check"),
    (["conv2d", "--args", "{}"], "--args is for your own layer"),
])
def test_mistakes_are_one_line_errors(user_dir, argv, message):
    result = gradcheck_cli(user_dir, *argv)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("im2col-net: error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr and "PASSED" not in result.stdout


def test_reference_and_data_work_for_built_in_layers(capsys):
    from im2col_net.app.cli import main

    code = main(["gradcheck", "maxpool2d", "--data", "tie-free", "--reference", "--size", "4"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "tie-free data" in out and "reference: forward and backward match" in out
    with pytest.raises(SystemExit) as info:
        main(["gradcheck", "dropout", "--reference", "--size", "3"])
    assert info.value.code == 2
    assert "--reference: Dropout has no reference_pair() method" in capsys.readouterr().err


def test_the_current_directory_is_not_left_on_sys_path(user_dir, monkeypatch):
    from im2col_net.app.cli.gradcheck_cmd import load_user_class

    monkeypatch.chdir(user_dir)
    monkeypatch.delitem(sys.modules, "mylayers", raising=False)
    before = list(sys.path)
    try:
        cls = load_user_class("mylayers:ChannelAffine")
        assert cls.__name__ == "ChannelAffine" and cls.__module__ == "mylayers"
        assert sys.path == before
    finally:
        sys.modules.pop("mylayers", None)


def _stable(text):
    """The output without the columns set by rounding noise (errors, worst element) and
    without the column widths, which follow those values' lengths."""
    lines = []
    for line in text.strip().splitlines():
        cells = line.split()
        if line.startswith(("input 0", "weight", "bias")):
            cells = cells[:next(i for i, cell in enumerate(cells) if cell.endswith(")")) + 2] \
                + cells[-2:]                                      # name shape n .. kinks result
        elif cells and set(line) <= {"-", " "}:
            cells = ["-"] * len(cells)                            # the rule under the header
        lines.append(" ".join(cells))
    return lines


def test_the_tutorial_example_prints_what_the_tutorial_shows(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        from test_docs import code_blocks
    finally:
        sys.path.pop(0)
    blocks = code_blocks(ROOT / "docs" / "tutorial.md")
    (module,) = [code for info, _, code in blocks if info == "python file=mylayers.py"]
    (tmp_path / "mylayers.py").write_text(module, encoding="utf-8")
    at = next(i for i, (info, _, code) in enumerate(blocks)
              if info == "bash" and code.startswith("im2col-net gradcheck mylayers:"))
    command, shown = blocks[at][2], blocks[at + 1]
    assert shown[0] == "text"
    argv = shlex.split(command)
    assert argv[:3] == ["im2col-net", "gradcheck", "mylayers:ChannelAffine"]
    result = gradcheck_cli(tmp_path, *argv[2:])
    assert result.returncode == 0, result.stderr
    assert _stable(result.stdout) == _stable(shown[2])
    assert "PASSED: 3/3 tensors within tolerance" in shown[2]
