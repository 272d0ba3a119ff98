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
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"building the wheel failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    (wheel,) = tmp_path.glob("immunescape-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    yamls = [n for n in names if n.startswith("immunescape/_signatures/") and n.endswith(".yaml")]
    assert len(yamls) == len(list((ROOT / "signatures").glob("*.yaml"))) >= 25
    assert "immunescape/data/human_genes.tsv.gz" in names and "immunescape/data/mouse_orthologs.tsv.gz" in names
    assert "immunescape/data/immune_context_model.json" in names
    assert any(n.endswith("entry_points.txt") for n in names)
    assert "immunescape/py.typed" in names and "immunescape/_signatures/VERSION" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)


def test_licence_citation_and_types_ship_with_the_source():
    import yaml

    import immunescape as ie

    if not (ROOT / "pyproject.toml").exists():
        pytest.skip("not a source checkout")
    assert "BSD 3-Clause License" in (ROOT / "LICENSE").read_text()
    assert (ROOT / "src" / "immunescape" / "py.typed").exists()
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["version"] == ie.__version__ and cff["license"] == "BSD-3-Clause"
    assert all(ref["title"] and ref["authors"] and ref["type"] for ref in cff["references"])
    cited = {ref["doi"] for ref in cff["references"]}
    library = set(ie.signatures.list_signatures()["doi"].dropna())
    assert library <= cited, (
        f"signature sources missing from CITATION.cff (run scripts/build_signatures.py --stamp): {library - cited}"
    )
    assert ie.signatures.library_version() in cff["notes"]


def test_signature_library_version_tracks_its_files():
    """Editing a signature without a new VERSION fails here: results record the library's version."""
    import immunescape as ie

    recorded = ie.signatures.read_version_file(ie.signatures.library_path())
    assert recorded["sha256"] == ie.signatures.library_checksum(), (
        "the signature files changed: bump the version and run python scripts/build_signatures.py --stamp --version NEW"
    )
    assert ie.signatures.library_version() == f"{recorded['version']} (sha256 {recorded['sha256'][:12]})"
