"""The tumour_intrinsic collection: PROGENy footprints equal PROGENy's own scores, Hallmark sets as published."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import immunescape as ie
from immunescape.signatures import Signature

DATA = Path(__file__).parent / "data" / "progeny"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "signatures"
PATHWAYS = ["Androgen", "EGFR", "Estrogen", "Hypoxia", "JAK-STAT", "MAPK", "NFkB"] + [
    "p53",
    "PI3K",
    "TGFb",
    "TNFa",
    "Trail",
    "VEGF",
    "WNT",
]


def _progeny(pathway: str) -> Signature:
    name = "progeny_" + pathway.lower().replace("-", "_")
    return ie.signatures.get(name)


def _top(sig: Signature, n: int) -> Signature:
    """PROGENy's top n: the first n genes of the file's weights, which are listed by ascending p-value."""
    weights = dict(list(sig.weights.items())[:n])
    return Signature(
        name=sig.name,
        genes_up=[g for g, w in weights.items() if w > 0],
        genes_down=[g for g, w in weights.items() if w < 0],
        weights=weights,
    )


def test_progeny_footprints_equal_progenys_own_scores_on_its_test_input():
    """PROGENy's published test (top = 10, scale = TRUE): a weighted sum of each pathway's top genes,
    each pathway z-scored across the 8 samples. wmean divides the sum by a constant per pathway, so
    after z-scoring across samples it gives PROGENy's numbers to 1e-6. Genes renamed since the model
    (e.g. DDX58 -> RIGI) still match the input's old symbols."""
    expr = pd.read_csv(DATA / "human_input.csv", index_col=0)
    expected = pd.read_csv(DATA / "human_def_expected.csv", index_col=0)
    adata = ad.AnnData(expr.T.to_numpy(np.float64), obs=pd.DataFrame(index=expr.columns))
    adata.var_names = expr.index
    scores = ie.tl.score(
        adata, [_top(_progeny(p), 10) for p in PATHWAYS], method="wmean", min_coverage=0, inplace=False
    )
    scaled = (scores - scores.mean()) / scores.std(ddof=1)
    scaled.columns = PATHWAYS
    np.testing.assert_allclose(scaled.loc[expected.index, expected.columns], expected, atol=1e-6, rtol=0)


def test_the_collection_holds_every_progeny_pathway_and_four_hallmark_sets_for_malignant_cells():
    sigs = ie.signatures.collection("tumour_intrinsic")
    assert len(sigs) == 18 and "tumour_intrinsic" in ie.signatures.collection_names()
    assert {s.name for s in sigs} >= {
        "progeny_wnt",
        "progeny_tgfb",
        "hallmark_myc_targets_v1",
        "hallmark_kras_signaling",
    }
    for sig in sigs:
        assert sig.meta["compartment"] == "malignant" and sig.meta["category"] == "pathway", sig.name
        assert sig.meta["pathway"]["review"] and sig.meta["pathway"]["resource"], sig.name
    for pathway in PATHWAYS:
        sig = _progeny(pathway)
        assert len(sig.weights) == 100 and sig.weighted  # the model's weights, never an unsigned set
        assert set(sig.genes_down) == {g for g, w in sig.weights.items() if w < 0}
    assert sum(w < 0 for w in _progeny("PI3K").weights.values()) == 92  # PATHWAYS.md: 92 of 100 negative
    kras = ie.signatures.get("hallmark_kras_signaling")
    assert len(kras.genes_up) == 200 and len(kras.genes_down) == 200  # KRAS up minus down
    licence = ie.signatures.library_path() / "LICENSE.progeny.txt"
    assert "Apache License" in licence.read_text()  # shipped beside the files (Apache-2.0)


@pytest.mark.skipif(not (SHARED / "progeny_human.csv.gz").exists(), reason="needs ../shared/signatures")
def test_shipped_footprints_and_sets_equal_their_sources():
    """The top 100 genes by p-value of PROGENy's full model, with its weights, in p-value order; the
    Hallmark sets gene for gene (up to renamed symbols)."""
    model = pd.read_csv(SHARED / "progeny_human.csv.gz")
    for pathway in PATHWAYS:
        top = model[model["pathway"] == pathway].sort_values("p_value", kind="stable").head(100)
        sig = _progeny(pathway)
        renamed = {new: old for old, new in sig.meta.get("symbol_updates", {}).items()}
        assert [renamed.get(g, g) for g in sig.weights] == top["gene"].tolist(), pathway
        np.testing.assert_allclose(list(sig.weights.values()), top["weight"], rtol=1e-9)
    gmt = {
        line.split("\t")[0]: line.split("\t")[2:] for line in (SHARED / "hallmarks_human.gmt").read_text().splitlines()
    }
    for name, sets in [
        ("hallmark_myc_targets_v1", ["HALLMARK_MYC_TARGETS_V1"]),
        ("hallmark_pi3k_akt_mtor", ["HALLMARK_PI3K_AKT_MTOR_SIGNALING"]),
        ("hallmark_il6_jak_stat3", ["HALLMARK_IL6_JAK_STAT3_SIGNALING"]),
        ("hallmark_kras_signaling", ["HALLMARK_KRAS_SIGNALING_UP", "HALLMARK_KRAS_SIGNALING_DN"]),
    ]:
        sig = ie.signatures.get(name)
        renamed = {new: old for old, new in sig.meta.get("symbol_updates", {}).items()}
        assert sorted(renamed.get(g, g) for g in sig.genes_up) == sorted(gmt[sets[0]]), name
        if len(sets) > 1:
            assert sorted(renamed.get(g, g) for g in sig.genes_down) == sorted(gmt[sets[1]]), name
