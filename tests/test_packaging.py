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
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("immunescape-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    yamls = [n for n in names if n.startswith("immunescape/_signatures/") and n.endswith(".yaml")]
    assert len(yamls) == len(list((ROOT / "signatures").glob("*.yaml"))) >= 25
    assert "immunescape/data/human_genes.tsv.gz" in names and "immunescape/data/mouse_orthologs.tsv.gz" in names
    assert any(n.endswith("entry_points.txt") for n in names)
