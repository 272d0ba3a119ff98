"""Architecture rules that a refactor must keep (issue 18): the module-level import graph has no cycle,
and no module imports another module's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "immunescape"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, *([target] if target else [])])


def _top_level_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, imported names) of the statements run at import time (not inside functions)."""
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level:
            target = _resolve(module, is_package, node.level, node.module)
            found.append((target, [alias.name for alias in node.names]))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("immunescape"):
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, names in _top_level_imports(path):
            submodules = [f"{target}.{item}" for item in names if f"{target}.{item}" in modules]  # `from . import x`
            graph[name].update(submodules)
            if target in modules and target != name and len(submodules) < len(names):
                graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            # a package's __init__ importing its own submodules is the package being built, not a cycle
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1 and not node.startswith(nxt + "."):
                return stack[stack.index(nxt) :] + [nxt]
            if not state.get(nxt):
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if not state.get(node):
            found = visit(node)
            if found:
                return found
    return None


def test_module_level_imports_have_no_cycle():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("folder", ["_engine", "tl", "methods", "_kernels"])
def test_no_private_names_cross_modules(folder):
    """Modules import each other's public names; a private helper needed elsewhere gets a public name."""
    offenders = []
    for path in (PACKAGE / folder).rglob("*.py"):
        for target, names in _top_level_imports(path):
            offenders += [
                f"{_module_name(path)}: {target}.{n}" for n in names if n.startswith("_") and n != "__version__"
            ]
    assert offenders == []


def test_a_new_method_is_one_module_the_rest_reads_the_registry(tmp_path):
    """A toy method (the largest value among a signature's genes) registered from outside the package is
    scored by ie.tl.score, offered by the CLI, listed by ie.tl.methods() and picked up by the registry
    lists the tests parametrise over."""
    import anndata as ad
    import numpy as np

    import immunescape as ie
    from immunescape.cli import _parser, main
    from immunescape.methods import Method, Plan, method_names, methods_rst, register, unregister

    def prepare(resolved, stats, params, random_state, null=None):
        genes = [np.asarray(p) for p in resolved.positions]

        def run(chunk, out, null_out=None):
            for row in range(chunk.r0, chunk.r1):
                lo, hi = chunk.indptr[row], chunk.indptr[row + 1]
                values = dict(zip(chunk.indices[lo:hi].tolist(), chunk.data[lo:hi].tolist()))
                for s, g in enumerate(genes):
                    out[row - chunk.r0, s] = max(values.get(int(i), 0.0) for i in g)

        return Plan(run=run)

    toy = Method(
        name="toy_max",
        description="largest value among the genes",
        equals="numpy max",
        reference="test",
        params={},
        needs=(),
        signed="up only",
        weighted=False,
        expects_log=False,
        value_range="[0, max]",
        prepare=prepare,
    )
    register(toy)
    try:
        assert "toy_max" in method_names(chunked=True) and "toy_max" not in method_names(null="analytic")
        assert "toy_max" in ie.tl.methods().index
        assert "``toy_max``" in methods_rst()  # the docs' methods page (docs/methods.rst) is written from it
        score_help = _parser()._subparsers._group_actions[0].choices["score"].format_help()
        assert "toy_max" in score_help
        adata = ad.AnnData(np.arange(12, dtype=np.float32).reshape(3, 4))
        adata.var_names = ["A", "B", "C", "D"]
        table = ie.tl.score(adata, {"s": ["A", "C"]}, method="toy_max", inplace=False, min_coverage=0)
        np.testing.assert_array_equal(table["s"].to_numpy(), [2.0, 6.0, 10.0])
        path = tmp_path / "x.h5ad"
        adata.write_h5ad(path)
        sets = tmp_path / "sets.yaml"
        ie.signatures.to_yaml({"s": ["A", "C"]}, sets)
        assert (
            main(["-q", "score", str(path), "-m", "toy_max", "-s", str(sets), "--scores-only", str(tmp_path / "t.csv")])
            == 0
        )
        import pandas as pd

        np.testing.assert_array_equal(pd.read_csv(tmp_path / "t.csv", index_col=0)["s"].to_numpy(), [2.0, 6.0, 10.0])
    finally:
        unregister("toy_max")
    assert "toy_max" not in method_names()


def test_no_method_name_reaches_the_null_code_or_the_kernels():
    """Methods declare their null statistic (shape, coefficients, floor); the null builder and the
    kernels switch on shapes, never on a method (no UCELL/SSGSEA-style constants or name checks)."""
    from immunescape.methods import method_names

    constants = {n.upper() for n in method_names()}  # e.g. `kind == UCELL`
    offenders = []
    for path in [PACKAGE / "_null.py", *(PACKAGE / "_kernels").glob("*.py"), *(PACKAGE / "_engine").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            found = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
            if isinstance(node, ast.Constant) and node.value in method_names():  # e.g. `if method.name == "gsva"`
                offenders.append(f"{path.name}:{node.lineno}: {node.value!r}")
            elif found in constants:
                offenders.append(f"{path.name}:{node.lineno}: {found}")
    assert offenders == []


def test_each_built_in_method_lives_in_its_own_module():
    """One module per method (or family), each registering what it defines."""
    from immunescape.methods import get_method, method_names

    for name in method_names():
        module = get_method(name).prepare.__module__
        assert module.startswith("immunescape.methods.") and module.split(".")[-1] not in ("registry", "common"), (
            name,
            module,
        )


@pytest.mark.parametrize("command", [["format", "--check", "--diff"], ["check"]], ids=["format", "lint"])
def test_ruff_format_and_lint_are_clean(command):
    """The tree is ruff-formatted and lint-clean under the rules in pyproject.toml (ruff is in the test extra)."""
    import shutil
    import subprocess
    import sys

    pytest.importorskip("ruff", reason="ruff comes with the test extra: pip install '.[test]'")
    root = PACKAGE.parents[1]
    if not (root / "pyproject.toml").exists():
        pytest.skip("not a source checkout")
    ruff = [sys.executable, "-m", "ruff"] if shutil.which("ruff") is None else ["ruff"]
    done = subprocess.run([*ruff, *command, "."], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
