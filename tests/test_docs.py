"""The documentation stays true: the Python examples of the tutorial and the README run,
the library names the docs cite exist, and relative links point at files that exist.

Fenced blocks whose info string is exactly ``python`` are executed, in order, in one
namespace per document, from a temporary working directory. Any other info string
(``bash``, ``text``, ``python no-run``) marks a block that is not run, except
``python file=NAME``: such a block is written to ``NAME`` in the working directory, which
is on ``sys.path``, so the blocks after it can import it (a user's module in the tutorial).
"""

import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
EXECUTED = ["docs/tutorial.md", "README.md"]

FENCE = re.compile(r"^(?P<fence>```+)(?P<info>[^\n`]*)\n(?P<code>.*?)^(?P=fence)[ \t]*$",
                   re.MULTILINE | re.DOTALL)


def code_blocks(path):
    """``(info, first line number of the code, code)`` for every fenced block."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start("code")) + 1
        blocks.append((match.group("info").strip(), line, match.group("code")))
    return blocks


def test_fences_are_closed():
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        fence_lines = [line for line in text.splitlines() if line.startswith("```")]
        assert len(fence_lines) % 2 == 0, f"{path.name}: an unclosed ``` fence"
        assert len(code_blocks(path)) == len(fence_lines) // 2, f"{path.name}: odd fences"


@pytest.mark.parametrize("doc", EXECUTED)
def test_python_examples_run(doc, tmp_path, monkeypatch):
    blocks = [(info, line, code) for info, line, code in code_blocks(ROOT / doc)
              if info == "python" or info.startswith("python file=")]
    assert blocks, f"{doc} has no python examples"
    monkeypatch.chdir(tmp_path)  # examples may write files
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace = {"__name__": f"docs_example_{Path(doc).stem}"}
    written = []
    try:
        for info, line, code in blocks:
            if info != "python":
                module_file = tmp_path / info.removeprefix("python file=")
                module_file.write_text(code, encoding="utf-8")
                written.append(module_file.stem)
                sys.modules.pop(module_file.stem, None)
                continue
            # Padding with newlines makes tracebacks point at the line in the document.
            compiled = compile("\n" * (line - 1) + code, str(ROOT / doc), "exec")
            exec(compiled, namespace)
    finally:
        for name in written:        # the next document, or test, imports its own copy
            sys.modules.pop(name, None)


def test_no_run_blocks_still_parse():
    for path in DOCS:
        for info, line, code in code_blocks(path):
            if info.split()[:1] == ["python"] and info != "python":
                compile(code, f"{path}:{line}", "exec")


def _resolve(dotted):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def test_cited_library_names_exist():
    cited = set()
    for path in DOCS:
        cited |= set(re.findall(r"`(im2col_net(?:\.\w+)+)", path.read_text(encoding="utf-8")))
    assert cited
    missing = []
    for name in sorted(cited):
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    assert not missing, f"the docs cite names that do not exist: {missing}"


def test_relative_links_point_at_files():
    broken = []
    for path in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).exists():
                broken.append(f"{path.name} -> {target}")
    assert not broken, f"broken links: {broken}"
