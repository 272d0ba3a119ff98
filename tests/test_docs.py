"""The API reference builds with Sphinx and numpydoc, warnings as errors, and documents every public tool."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_api_reference_builds_without_warnings(tmp_path):
    if not (ROOT / "docs" / "conf.py").exists():
        pytest.skip("not a source checkout")
    pytest.importorskip("sphinx")
    pytest.importorskip("numpydoc")
    source = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", source, ignore=shutil.ignore_patterns("generated", "_build"))
    run = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q", str(source), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"sphinx failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    page = (tmp_path / "html" / "generated" / "immunescape.tl.score.html").read_text()
    assert "Parameters" in page and "key_added" in page and "Examples" in page


def test_api_reference_lists_every_public_tool():
    import immunescape as ie

    api = (ROOT / "docs" / "api.rst").read_text() if (ROOT / "docs" / "api.rst").exists() else pytest.skip("no docs/")
    public = {
        f"{ns}.{name}"
        for ns in ("tl", "pp", "pl")
        for name in getattr(ie, ns).__all__
        if name not in ("MECHANISMS", "HALLMARKS")
    }
    missing = sorted(name for name in public if f"   {name}\n" not in api)
    assert not missing, f"add to docs/api.rst: {missing}"


def test_readme_shows_the_demo_figures_the_script_regenerates():
    """The README's images are committed under docs/images and are exactly what
    scripts/make_docs_images.py writes, so re-running it refreshes every one."""
    import importlib.util
    import re

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("make_docs_images", root / "scripts" / "make_docs_images.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    shown = set(re.findall(r"!\[[^\]]*\]\((docs/images/[^)]+)\)", (root / "README.md").read_text()))
    written = {f"docs/images/{name}" for name in [*script.FIGURES.values(), script.REPORT_SHOT]}
    assert shown == written
    for path in shown:
        data = (root / path).read_bytes()
        assert data[:4] == b"\x89PNG" and len(data) > 10_000, path
