from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_signatures_and_gene_tables(tmp_path):
    if not (ROOT / "pyproject.toml").exists():
        pytest.skip("not a source checkout")
    # --no-isolation: the build backend (hatchling) comes from the test extra, so no index is needed here
    run = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, f"building the wheel failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    (wheel,) = tmp_path.glob("immunescape-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    yamls = [n for n in names if n.startswith("immunescape/_signatures/") and n.endswith(".yaml")]
    assert len(yamls) == len(list((ROOT / "signatures").glob("*.yaml"))) >= 25
    assert "immunescape/data/human_genes.tsv.gz" in names and "immunescape/data/mouse_orthologs.tsv.gz" in names
    assert "immunescape/data/immune_context_model.json" in names
    assert any(n.endswith("entry_points.txt") for n in names)
