"""The README runs as written: its Python blocks in order (shown outputs compared), its shell blocks in a
scratch folder, and its test command is the one CI runs."""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
# A shown output: comment lines right after an expression statement, starting with a repr (a quote,
# a digit, a bracket or a minus sign), e.g. `x.shape` then `# (700, 3)`.
OUTPUT_START = re.compile(r"^#\s?['\"(\[{\d-]")

pytestmark = pytest.mark.skipif(not README.exists(), reason="README.md is not in this checkout")


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text()) if lang == language]


def shown_outputs(source: str) -> list[tuple[ast.stmt, str]]:
    """Each expression statement followed by the output the README shows for it."""
    lines = source.splitlines()
    pairs = []
    for stmt in ast.parse(source).body:
        following = []
        for line in lines[stmt.end_lineno :]:
            if not line.startswith("#"):
                break
            following.append(line)
        if isinstance(stmt, ast.Expr) and following and OUTPUT_START.match(following[0]):
            pairs.append((stmt, " ".join(line.lstrip("#").strip() for line in following)))
    return pairs


def normalised(text: str) -> str:
    return " ".join(text.split())


def test_readme_has_the_blocks_it_should():
    assert len(blocks("python")) >= 5 and len(blocks("bash")) >= 2
    assert not blocks(""), "untagged ``` blocks: tag each as python, bash or text"
    first = blocks("bash")[0].splitlines()
    assert first[0].startswith("pip install . && immunescape demo")
    assert first[1].startswith('pip install ".[test]" && python -m pytest -q')


def test_ci_runs_the_readme_test_command():
    command = blocks("bash")[0].splitlines()[1].split("#")[0].strip()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in [line.strip() for line in ci], f".ci/run must run the README's test command: {command}"


@pytest.mark.slow
def test_python_blocks_run_in_order_with_the_outputs_shown(tmp_path, monkeypatch):
    """The README's notebook session, block after block in one namespace, as a reader would type it."""
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    checked = 0
    for number, source in enumerate(blocks("python"), 1):
        expected = {stmt.lineno: text for stmt, text in shown_outputs(source)}
        for stmt in ast.parse(source).body:
            where = f"README python block {number}, line {stmt.lineno}: {ast.unparse(stmt)[:80]}"
            if stmt.lineno in expected:
                value = eval(compile(ast.Expression(stmt.value), where, "eval"), namespace)
                assert normalised(repr(value)) == normalised(expected[stmt.lineno]), where
                checked += 1
            else:
                start = time.perf_counter()
                exec(compile(ast.Module([stmt], type_ignores=[]), where, "exec"), namespace)
                print(f"{time.perf_counter() - start:6.1f} s  {where}")
    assert checked >= 3, "the README should show (and this test check) some outputs"


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


@pytest.mark.slow
def test_shell_blocks_run_in_a_fresh_folder(tmp_path):
    """The first block's demo (its install step is this environment), then every other shell block in turn."""
    install_demo, install_test = (line.split("#")[0].strip() for line in blocks("bash")[0].splitlines())
    for install in (install_demo, install_test):
        pip, _, rest = install.partition(" && ")
        assert shlex.split(pip)[:2] == ["pip", "install"] and shlex.split(pip)[2] in (".", ".[test]")
    demo = install_demo.partition(" && ")[2]
    done = _run(demo, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "report" in done.stdout and "Planted escape mechanisms" in done.stdout
    out = tmp_path / "immunescape_demo"
    names = {p.name for p in out.iterdir()}
    assert {
        "tumour_report.html",
        "tumour_cells.h5ad",
        "tumour_calls.csv",
        "tumour_heatmap.png",
        "tumour_samples.h5ad",
        "scores_pbmc68k.csv",
        "pbmc_scores.png",
    } <= names
    assert not [n for n in names if n.startswith(".") or n.endswith(".part")], "temporary files left behind"
    for number, script in enumerate(blocks("bash")[1:], 2):
        done = _run(script, tmp_path)
        assert done.returncode == 0, f"README shell block {number} failed:\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
    for name in ("scored.h5ad", "scores.csv", "samples.csv", "enrich.csv", "enrich.png", "report.html", "escape.gmt"):
        assert (out / name).stat().st_size > 0, name
