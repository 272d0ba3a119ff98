"""The shipped immune-context model, single-sample calls, the mechanism scale, and gene contributions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import immunescape as ie
from immunescape.tl import MECHANISMS
from immunescape.tl._classify import ReferenceProfile, unaffected_group
from immunescape.tl._context import MODEL_PATH, ContextModel, Distribution, robust_scale
from immunescape.tl._context_fit import cross_validate, fit_multinomial, tertile_baseline

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "icb_phenotype"


@pytest.fixture(scope="module")
def bulk():
    cells = ie.datasets.simulate_tumor(n_samples=9, cells_per_sample=200, seed=7)
    return ie.pp.pseudobulk(cells, "sample")


def test_shipped_model_carries_its_provenance_and_validation():
    model = ie.tl.load_context_model()
    body = json.loads(MODEL_PATH.read_text())
    assert model.version == body["version"] and model.classes == ("desert", "excluded", "inflamed")
    assert len(model.universe) == 1768 and set(model.features) <= set(model.reference)
    for key in ("data", "labels", "features", "model", "indeterminate", "reference", "fitted"):
        assert model.provenance[key], key
    cv, base = model.metrics["cross_validation"], model.metrics["baseline_cd8_tertiles"]
    assert cv["n"] == 83 and base["n"] == 83
    assert cv["accuracy_ci"][0] <= cv["accuracy"] <= cv["accuracy_ci"][1]
    assert np.isclose(np.sum(cv["confusion"]["mean counts"]), 83)
    assert ContextModel.from_json(model.to_json()) == model


def test_one_sample_alone_gets_its_cohort_call(bulk):
    together = ie.tl.classify(bulk, inplace=False)
    assert together.attrs["reference"].startswith("shipped reference")
    for i in range(bulk.n_obs):
        alone = ie.tl.classify(bulk[i : i + 1].copy(), inplace=False)
        row, ref = alone.iloc[0], together.iloc[i]
        for col in ["immune_context", "p_inflamed", "p_excluded", "p_desert", "context_reason", "mechanisms"]:
            assert row[col] == ref[col], col
        for m in MECHANISMS:
            assert row[f"{m}_reason"] == ref[f"{m}_reason"]
            assert (pd.isna(row[m]) and pd.isna(ref[m])) or row[m] == ref[m]


def test_context_ignores_scale_and_other_genes(bulk):
    calls = ie.tl.classify(bulk, inplace=False)
    # counts instead of log values, and the genes in another order: ranks, hence calls, are unchanged
    counts = bulk.copy()
    counts.X = counts.layers["counts"].copy()
    counts = counts[:, counts.var_names[::-1]].copy()
    again = ie.tl.classify(counts, inplace=False)
    np.testing.assert_allclose(again["p_inflamed"], calls["p_inflamed"], atol=1e-6)


def test_context_is_indeterminate_when_the_panel_is_short(bulk):
    model = ie.tl.load_context_model()
    rng = np.random.default_rng(0)
    panel = [g for g in model.universe if g in set(bulk.var_names)]
    drop = set(rng.choice(panel, size=int(0.5 * len(panel)), replace=False))
    short = bulk[:, [g for g in bulk.var_names if g not in drop]].copy()
    calls = ie.tl.classify(short, inplace=False)
    assert set(calls["immune_context"]) == {"indeterminate"}
    assert calls["context_reason"].str.contains("of the model's 1768 genes are in the data").all()
    no_cd8 = bulk[
        :, [g for g in bulk.var_names if g not in {"CD8A", "GZMA", "GZMB", "PRF1", "IFNG", "CXCL9", "CXCL10", "TBX21"}]
    ].copy()
    assert (ie.tl.classify(no_cd8, inplace=False)["immune_context"] == "indeterminate").all()


def test_features_table_without_expression_is_cohort_only(bulk):
    ie.tl.score(bulk, "immune_escape", method="singscore")
    table = bulk.obsm["immunescape"].copy()
    calls = ie.tl.classify(table, inplace=False)
    assert set(calls["immune_context"]) == {"indeterminate"} and "no expression" in calls["context_reason"].iloc[0]
    with pytest.raises(ie.InputError, match="needs expression"):
        ie.tl.classify(table, reference="shipped")
    with pytest.raises(ie.InputError, match="reference must be"):
        ie.tl.classify(bulk, reference=3)


def test_aggregate_carries_the_pseudobulk_features(bulk):
    cells = ie.datasets.simulate_tumor(n_samples=9, cells_per_sample=200, seed=7)
    ie.tl.score(cells, "immune_escape")
    samples = ie.tl.aggregate(cells, "sample", celltype_key="cell_type")
    from_cells = ie.tl.classify(samples, inplace=False)
    from_bulk = ie.tl.classify(bulk, inplace=False)
    np.testing.assert_allclose(from_cells["p_inflamed"], from_bulk.loc[from_cells.index, "p_inflamed"], atol=1e-6)
    # one sample's cells alone: same features, same context
    one = cells[cells.obs["sample"] == "P03"].copy()
    alone = ie.tl.classify(ie.tl.aggregate(one, "sample", celltype_key="cell_type"), inplace=False)
    assert alone.loc["P03", "immune_context"] == from_cells.loc["P03", "immune_context"]
    assert "too few to judge against itself" in alone.attrs["reference"]
    assert alone.loc["P03", "bagaev_class"] == "not assessed"


def test_scale_never_collapses():
    x = np.r_[np.zeros(11), 1.0]  # MAD 0: the SD floor bounds z by about 2 sqrt(n)
    assert robust_scale(x) == pytest.approx(0.5 * np.std(x, ddof=1))
    profile = ReferenceProfile.from_features(pd.DataFrame({"f": x}))
    assert profile.z(pd.DataFrame({"f": x}))["f"].abs().max() <= 2 * np.sqrt(12) + 1e-9
    dist = Distribution.of(np.r_[np.ones(50), 2.0])
    assert dist.scale > 0.05 and np.isfinite(dist.z([2.0])).all()
    assert dist.percentile([0.0, 1.0, 3.0]).tolist()[0] == 0.0 and dist.percentile([3.0])[0] == 100.0


def test_unaffected_group_of_a_split_cohort():
    rng = np.random.default_rng(3)
    low, high = rng.normal(0, 0.05, 12), rng.normal(1, 0.05, 12)
    x = np.r_[low, high]
    assert np.array_equal(np.sort(unaffected_group(x, "high")), np.sort(low))
    assert np.array_equal(np.sort(unaffected_group(x, "low")), np.sort(high))
    assert unaffected_group(rng.normal(size=40), "high") is None
    assert unaffected_group(x[:8], "high") is None  # too few samples to split
    profile = ReferenceProfile.from_features(pd.DataFrame({"f": x}), directions={"f": "high"})
    z = profile.z(pd.DataFrame({"f": x}))["f"]
    assert (z[12:] > 3).all() and (z[:12].abs() < 1).all() and "splits in two" in profile.split["f"]


def test_mechanisms_against_the_shipped_reference_name_genes(bulk):
    calls = ie.tl.classify(bulk, inplace=False)
    reason = calls["antigen_presentation_loss_reason"].iloc[0]
    assert reason.startswith("antigen presentation low: ") and "percentile" in reason
    assert "not assessable against shipped reference" in calls["rloop_low_reason"].iloc[0]
    assert calls["rloop_low"].isna().all()
    z = calls[[f"{m}_z" for m in MECHANISMS]].to_numpy(float)
    assert np.nanmax(np.abs(z)) < 20


def test_fit_and_cross_validation_on_separable_toy_data():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    x = pd.DataFrame({"a": y + rng.normal(0, 0.3, y.size), "noise": rng.normal(size=y.size)})
    labels = pd.Series(np.array(["desert", "excluded", "inflamed"])[y])
    coef, intercept = fit_multinomial(((x - x.mean()) / x.std(ddof=0)).to_numpy(), y, 3, C=1.0)
    assert coef[2, 0] > 0 > coef[0, 0] and abs(coef[1, 1]) < abs(coef[2, 0])
    cv = cross_validate(x, labels, {"a": ["a"], "noise": ["noise"]}, n_repeats=2, n_boot=200)
    assert cv["accuracy"] > 0.85 and cv["chosen_sets"]["a"] > 0.9 and cv["inflamed_desert_swaps"] == 0
    base = tertile_baseline(x["a"], labels, n_boot=200)
    assert base["accuracy"] > 0.85


@pytest.mark.skipif(
    not SHARED.is_dir(), reason="needs ../shared/data/icb_phenotype (real cohort, not in the repository)"
)
def test_shipped_reference_matches_the_code_on_the_development_data():
    expr = pd.read_csv(SHARED / "IMvigor210_dev_expr_log2tpm.csv.gz", index_col=0).T
    model = ie.tl.load_context_model()
    feats = ie.tl.context_features(expr)
    for name, dist in model.reference.items():
        assert np.median(feats[name]) == pytest.approx(dist.median, abs=1e-5), name
    clinical = pd.read_csv(SHARED / "IMvigor210_dev_clinical.csv", index_col=0)
    labelled = clinical["Immune.phenotype"].dropna()
    calls = ie.tl.classify(_bulk(expr.loc[labelled.index]), inplace=False)
    # fitted on these samples: in-sample agreement, a consistency check (the CV numbers are in the model)
    agree = (calls["immune_context"] == labelled).mean()
    assert agree >= 0.65, agree


def _bulk(frame: pd.DataFrame):
    import anndata as ad

    return ad.AnnData(
        frame.to_numpy(np.float32), obs=pd.DataFrame(index=frame.index), var=pd.DataFrame(index=frame.columns)
    )


# ------------------------------------------------------------------------------------------ contributions
@pytest.fixture(scope="module")
def small_cells():
    cells = ie.datasets.simulate_tumor(n_samples=2, cells_per_sample=80, seed=3)
    cells.obs["cell_id"] = cells.obs_names.astype(str)
    return cells


@pytest.mark.parametrize(
    ("method", "signature", "params"),
    [
        ("ucell", "apm_mariathasan2018", {}),
        ("ucell", "tex_cd8_chu2023", {}),
        ("singscore", "tis_gep_ayers2017", {}),
        ("singscore", "apm_mariathasan2018", {}),
        ("wmean", "tis_gep_ayers2017", {}),
        ("wmean", "tis_gep_ayers2017", {"drop_empty_genes": False}),  # every contribution was 0
        ("mean", "cd8_t_effector_mariathasan2018", {}),
    ],
)
def test_contributions_add_up_to_each_cells_score(small_cells, method, signature, params):
    table = ie.tl.contributions(small_cells, signature, groupby="cell_id", method=method, **params)
    score = ie.tl.score(small_cells, [signature], method=method, inplace=False, min_coverage=0.0, **params).iloc[:, 0]
    np.testing.assert_allclose(table.sum(axis=0).loc[score.index], score.to_numpy(), atol=1e-9)


def test_contributions_rows_groups_and_refusals(small_cells):
    genes = ["GZMA", "PRF1", "NOT_A_GENE"]
    table = ie.tl.contributions(small_cells, {"s": genes}, groupby="cell_type", method="ucell")
    assert list(table.index) == ["GZMA", "PRF1", "(genes missing from the data)"]
    score = ie.tl.score(small_cells, {"s": genes}, method="ucell", inplace=False, min_coverage=0.0)["s"]
    means = score.groupby(small_cells.obs["cell_type"].astype(str).to_numpy()).mean()
    np.testing.assert_allclose(table.sum(axis=0).loc[means.index], means, atol=1e-12)
    assert table.loc["GZMA"].idxmax() in ("CD8 T", "NK")
    ie.tl.score(small_cells, "cytolytic_activity_rooney2015", method="singscore", key_added="sing")
    assert ie.tl.contributions(small_cells, "cytolytic_activity_rooney2015", key="sing").attrs["method"] == "singscore"
    with pytest.raises(ie.InputError, match="not a sum of gene terms"):
        ie.tl.contributions(small_cells, "apm_mariathasan2018", method="ssgsea")
    signed = ie.signatures.Signature("signed", ("CD8A",), ("FOXP3",))
    with pytest.raises(ie.InputError, match="down genes"):
        ie.tl.contributions(small_cells, signed, method="ucell")
    with pytest.raises(ie.InputError, match="one signature"):
        ie.tl.contributions(small_cells, "immune_escape")
    with pytest.raises(ie.InputError, match="groupby="):
        ie.tl.contributions(small_cells, "apm_mariathasan2018", groupby="nope")
