from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import immunescape as ie
from immunescape.genes import current_symbol, detect_organism, resolve
from immunescape.signatures import Signature


def test_outdated_names_in_real_data_match_current_symbols(pbmc):
    # pbmc68k_reduced (hg19-era annotation) names VSIR "C10orf54" and KYAT3 "CCBL2"
    cov = ie.pp.coverage(pbmc, ["bagaev2021_Checkpoint_inhibition", "kynurenine_rosario2018"])
    assert "VSIR->C10orf54" in cov.loc["bagaev2021_Checkpoint_inhibition", "matched_as"]
    assert "KYAT3->CCBL2" in cov.loc["kynurenine_rosario2018", "matched_as"]
    assert cov.loc["kynurenine_rosario2018", "n_alias"] == 1


def test_outdated_names_in_signatures_match_current_data():
    sig = Signature("legacy", ("TMEM173", "MB21D1", "IGJ", "CD3Z"))
    res = resolve([sig], pd.Index(["STING1", "CGAS", "JCHAIN", "CD247", "ACTB"]))
    assert res.coverage.loc["legacy", "n_alias"] == 4
    assert sorted(res.positions[0]) == [0, 1, 2, 3]


def test_ambiguous_previous_symbol_is_not_guessed():
    assert current_symbol("STRA13") is None  # previous symbol of both BHLHE40 and CENPX
    res = resolve([Signature("s", ("BHLHE40", "ACTB"))], pd.Index(["STRA13", "ACTB"]), min_coverage=0)
    assert res.coverage.loc["s", "missing"] == "BHLHE40"


def test_ensembl_ids_with_versions_and_gene_symbols_column(pbmc):
    # Ensembl ids known independently of our tables
    known = {"CD8A": "ENSG00000153563", "GZMB": "ENSG00000100453", "PRF1": "ENSG00000180644", "GZMA": "ENSG00000145649"}
    genes = [g for g in known if g in pbmc.var_names]
    assert len(genes) >= 2
    sub = pbmc[:, genes].copy()
    sub.var["symbol"] = sub.var_names
    sub.var_names = [f"{known[g]}.{i + 3}" for i, g in enumerate(genes)]
    sig = Signature("cyto", tuple(genes))
    by_id = resolve([sig], sub.var_names)
    assert by_id.id_type == "ensembl" and by_id.coverage.loc["cyto", "n_ensembl"] == len(genes)
    by_column = ie.pp.coverage(sub, sig, gene_symbols="symbol", use_raw=False)
    assert by_column.loc["cyto", "n_exact"] == len(genes)


def test_mouse_data_use_orthologs():
    mouse_names = [
        "Cd8a",
        "Gzmb",
        "Prf1",
        "Pdcd1",
        "Cd274",
        "Actb",
        "Gapdh",
        "Foxp3",
        "Lag3",
        "Havcr2",
        "Tigit",
        "Ctla4",
    ]
    assert detect_organism(mouse_names) == "mouse"
    assert detect_organism(["CD8A", "GZMB", "C1orf109", "PRF1"]) == "human"
    sig = Signature("tex", ("PDCD1", "HAVCR2", "LAG3", "TIGIT", "CTLA4", "HLA-A"))
    res = resolve([sig], pd.Index(mouse_names), min_coverage=0.5)
    row = res.coverage.loc["tex"]
    assert res.organism == "mouse" and row["n_ortholog"] == 5 and row["missing"] == "HLA-A"
    assert "HAVCR2->Havcr2" in row["matched_as"]


def test_case_insensitive_only_when_unambiguous():
    res = resolve(
        [Signature("s", ("MYGENE", "OTHER"))], pd.Index(["mygene", "Other", "OTHER2", "other"]), min_coverage=0
    )
    assert res.coverage.loc["s", "missing"] == "OTHER"  # 'Other' and 'other' both match
    assert res.coverage.loc["s", "matched_as"] == "MYGENE->mygene"


def test_min_coverage_error_names_missing_genes():
    sig = Signature("thin", ("CD8A", "GZMB", "NOT1", "NOT2", "NOT3"))
    with pytest.raises(ie.GeneResolutionError, match=r"thin: 2 of 5 genes found \(40%\); missing: NOT1, NOT2, NOT3"):
        resolve([sig], pd.Index(["CD8A", "GZMB"]), min_coverage=0.5)
    ok = resolve([sig], pd.Index(["CD8A", "GZMB"]), min_coverage=0.4)
    assert ok.coverage.loc["thin", "coverage"] == pytest.approx(0.4)


def test_no_gene_found_always_fails():
    with pytest.raises(ie.GeneResolutionError, match="0 of 1"):
        resolve([Signature("none", ("NOTAGENE",))], pd.Index(["CD8A"]), min_coverage=0)


def test_duplicated_names_warn_and_use_first():
    with pytest.warns(ie.CoverageWarning, match="more than once"):
        res = resolve([Signature("s", ("CD8A",))], pd.Index(["CD8A", "CD8A", "GZMB"]))
    assert res.positions[0].tolist() == [0]


def test_weights_follow_matched_genes():
    sig = ie.signatures.get("tis_gep_ayers2017")
    names = pd.Index(["STAT1", "CD276", "LAG3", "XYZ"] + [f"G{i}" for i in range(10)])
    res = resolve([sig], names, min_coverage=0)
    got = dict(zip(names[res.positions[0]], res.weights[0]))
    assert got == {"STAT1": pytest.approx(0.250229), "LAG3": pytest.approx(0.123895), "CD276": pytest.approx(-0.0239)}


def test_coverage_respects_use_raw_and_layer(pbmc):
    adata = ad.AnnData(np.ones((3, 2), dtype=np.float32), var=pd.DataFrame(index=["GZMA", "PRF1"]))
    with pytest.raises(ie.InputError, match="use_raw=True but adata.raw is None"):
        ie.pp.coverage(adata, "cytolytic_activity_rooney2015", use_raw=True)
    with pytest.raises(ie.InputError, match="Layer 'counts' not found"):
        ie.pp.coverage(adata, "cytolytic_activity_rooney2015", layer="counts")
    with pytest.raises(ie.InputError, match="not a column"):
        ie.pp.coverage(adata, "cytolytic_activity_rooney2015", gene_symbols="symbol")
    assert ie.pp.coverage(adata, "cytolytic_activity_rooney2015").loc["cytolytic_activity_rooney2015", "n_found"] == 2


@pytest.mark.parametrize(
    "names",
    [
        pd.Index(["CD8A", "GZMB", "PRF1", "7"]),
        pd.Index([0, 1, 7, 3]),  # integer names match their text
        pd.Index(["CD8A", 7, "PRF1", 2.5]),  # mixed
        ["CD8A", "GZMB", "PRF1", "7"],  # a plain list
        np.array(["CD8A", "GZMB", "PRF1", "7"]),  # numpy strings
    ],
)
def test_names_of_any_type_match_as_text(names):
    # the name lookup is cached by the names as str: any index type gives the positions of their text
    sig = Signature("s", ["PRF1", "7", "CD8A", "NOPE"])
    got = resolve([sig], names, min_coverage=0, check=False)
    text = [str(n) for n in names]
    expected = [text.index(g) for g in ["PRF1", "7", "CD8A"] if g in text]
    assert got.positions[0].tolist() == expected
    assert got.coverage.loc["s", "n_found"] == len(expected)
