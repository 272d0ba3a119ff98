"""Issue 19: the depth warning the robustness numbers support, and the README's method table is the one
benchmarks/robustness.py wrote."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

import immunescape as ie

ROOT = Path(__file__).resolve().parents[1]


def _depth_warnings(adata, **kw) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ie.tl.score(adata, "bagaev2021_NK_cells", min_coverage=0.3, inplace=False, **kw)
    return [str(w.message) for w in caught if "follow sequencing depth" in str(w.message)]


def test_singscore_on_single_cells_warns_of_depth_and_says_what_to_do(pbmc):
    found = _depth_warnings(pbmc.copy(), method="singscore")
    assert len(found) == 1 and "null='matched'" in found[0] and "ROBUSTNESS.md" in found[0]
    assert not _depth_warnings(pbmc.copy(), method="singscore", null="matched", n_null=20)
    assert not _depth_warnings(pbmc.copy(), method="ucell")
    bulk = ie.pp.pseudobulk(ie.datasets.simulate_tumor(n_samples=24, cells_per_sample=40, seed=1), "sample")
    assert not _depth_warnings(bulk, method="singscore")  # samples, not cells: no warning


def test_readme_method_table_is_the_benchmarks_table():
    """The README's "which method?" rows are copied from benchmarks/ROBUSTNESS.md, so re-running the
    benchmark and not the README (or the reverse) fails here."""
    readme = (ROOT / "README.md").read_text()
    results = (ROOT / "benchmarks" / "ROBUSTNESS.md").read_text()
    table = results.split("## Which method?", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert len(rows) == 6
    for row in rows:
        assert row in readme, row
    assert "benchmarks/ROBUSTNESS.md" in readme
    depth = {r.split(" | ")[0][2:]: float(r.split(" | ")[1]) for r in rows}
    from immunescape.tl._score import DEPTH_BIASED

    # the methods warned about are the depth-biased ones of that table (simulated median abs(rho) >= 0.5)
    assert {m for m, v in depth.items() if v >= 0.5} == set(DEPTH_BIASED)
    pbmc_singscore = results.split("| singscore | ", 2)[2].split(" | ")[2]  # section 1, within a PBMC type
    assert np.isclose(DEPTH_BIASED["singscore"], float(pbmc_singscore.split()[0])), pbmc_singscore
