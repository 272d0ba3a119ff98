"""ie.tl.compare (group differences of sample scores and calls) and ie.tl.adjust_pvalues."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import immunescape as ie
from immunescape._errors import InputError


def _cohort(seed: int = 0, n: int = 24) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    response = np.array(["R", "NR"] * (n // 2))
    responder = response == "R"
    return pd.DataFrame(
        {
            "response": response,
            "ifng": rng.normal(0, 1, n) + 1.5 * responder,  # a real difference
            "noise": rng.normal(0, 1, n),  # none
            "excluded": np.where(responder, rng.random(n) < 0.1, rng.random(n) < 0.7),  # a call, more often in NR
            "context": rng.choice(["inflamed", "excluded", "desert"], n),
            "reason": [f"text {i}" for i in range(n)],  # free text: not a feature
        },
        index=[f"P{i}" for i in range(n)],
    )


def test_two_groups_numeric_matches_scipy_and_reports_effect_sizes():
    cohort = _cohort()
    table = ie.tl.compare(cohort, "response", reference="NR")
    assert "reason" not in table.index and {"ifng", "noise", "excluded", "context"} <= set(table.index)
    r, nr = cohort.loc[cohort.response == "R", "ifng"], cohort.loc[cohort.response == "NR", "ifng"]
    row = table.loc["ifng"]
    assert row["pval"] == pytest.approx(stats.mannwhitneyu(r, nr, alternative="two-sided").pvalue)
    wins = np.mean([np.sign(a - b) for a in r for b in nr])
    assert row["cliffs_delta"] == pytest.approx(wins)  # P(R > NR) - P(R < NR)
    assert row["difference"] == pytest.approx(r.mean() - nr.mean())
    assert row["hedges_g"] > 1 and row["n_R"] == 12 and row["n_NR"] == 12
    assert table.index[0] in ("ifng", "excluded") and table.loc["noise", "pval"] > 0.05
    np.testing.assert_allclose(table["padj"], stats.false_discovery_control(table["pval"]))


def test_categorical_features_use_fisher_or_chi_squared():
    cohort = _cohort(1)
    table = ie.tl.compare(cohort, "response", reference="NR", features=["excluded", "context"])
    counts = pd.crosstab(cohort["response"], cohort["excluded"]).loc[["NR", "R"]].to_numpy()  # columns False, True
    assert table.loc["excluded", "pval"] == pytest.approx(stats.fisher_exact(counts).pvalue)
    frac = cohort.groupby("response")["excluded"].mean()
    assert table.loc["excluded", "difference"] == pytest.approx(frac["R"] - frac["NR"])
    assert table.loc["excluded", "odds_ratio"] < 1  # responders are excluded less often
    chi = stats.chi2_contingency(pd.crosstab(cohort["response"], cohort["context"]).to_numpy(), correction=False)
    assert table.loc["context", "pval"] == pytest.approx(chi.pvalue)
    assert table.loc["context", "effect_measure"] == "cramers_v"


def test_more_groups_use_kruskal_wallis():
    cohort = _cohort(2, n=30)
    cohort["arm"] = np.repeat(["a", "b", "c"], 10)
    table = ie.tl.compare(cohort, "arm", features="ifng")
    values = [cohort.loc[cohort.arm == g, "ifng"] for g in "abc"]
    assert table.loc["ifng", "pval"] == pytest.approx(stats.kruskal(*values).pvalue)
    assert table.loc["ifng", "effect_measure"] == "epsilon_squared"


def test_permutation_test_is_reproducible_and_finds_the_difference():
    cohort = _cohort(3)
    a = ie.tl.compare(cohort, "response", test="permutation", n_permutations=999, random_state=5)
    b = ie.tl.compare(cohort, "response", test="permutation", n_permutations=999, random_state=5)
    pd.testing.assert_frame_equal(a, b)
    assert a.loc["ifng", "pval"] < 0.01 and a.loc["noise", "pval"] > 0.05
    assert a.loc["excluded", "test"] == "permutation (chi-squared)" and a.loc["excluded", "pval"] < 0.05


def test_rank_test_is_calibrated_without_differences():
    """No group difference: over many cohorts the p-values are uniform-ish (not anti-conservative)."""
    rng = np.random.default_rng(9)
    pvals = []
    for _ in range(300):
        frame = pd.DataFrame({"g": ["x", "y"] * 15, "v": rng.normal(size=30)})
        pvals.append(ie.tl.compare(frame, "g")["pval"].iloc[0])
    assert np.mean(np.asarray(pvals) < 0.05) < 0.08
    assert stats.kstest(pvals, "uniform").pvalue > 0.01


def test_sample_anndata_from_aggregate_and_bonferroni():
    cells = ie.datasets.simulate_tumor(n_samples=8, cells_per_sample=100, seed=1)
    ie.tl.score(cells, "cytolytic_activity_rooney2015,apm_mariathasan2018")
    samples = ie.tl.aggregate(cells, "sample")
    samples.obs["arm"] = ["a", "b"] * 4
    table = ie.tl.compare(samples, "arm", correction="bonferroni")
    assert "cytolytic_activity_rooney2015" in table.index and "frac_T" in table.index
    finite = table["pval"].notna()
    np.testing.assert_allclose(table.loc[finite, "padj"], np.minimum(table.loc[finite, "pval"] * finite.sum(), 1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"groupby": "respons"}, "is not a column"),
        ({"groupby": "response", "groups": ["R"]}, "at least two groups"),
        ({"groupby": "response", "reference": "CR"}, "is not one of the groups"),
        ({"groupby": "response", "test": "t"}, "test must be one of"),
        ({"groupby": "response", "features": ["reason"]}, "neither numeric nor a category"),
        ({"groupby": "response", "correction": "holm"}, "correction must be one of"),
    ],
)
def test_bad_compare_arguments(kwargs, message):
    with pytest.raises(InputError, match=message):
        ie.tl.compare(_cohort(), **kwargs)


def test_adjust_pvalues_across_cells_or_signatures():
    p = pd.DataFrame(np.random.default_rng(0).random((50, 4)), columns=list("abcd"))
    across_cells = ie.tl.adjust_pvalues(p, across="cells")
    np.testing.assert_allclose(across_cells["a"], stats.false_discovery_control(p["a"]))
    across_sigs = ie.tl.adjust_pvalues(p, across="signatures")
    np.testing.assert_allclose(across_sigs.iloc[3], stats.false_discovery_control(p.iloc[3]))
    np.testing.assert_allclose(ie.tl.adjust_pvalues(p, correction="bonferroni")["b"], np.minimum(p["b"] * 50, 1))
