"""Tumour-intrinsic pathways and exclusion (issue 20): exclusion_drivers, oncogenic-pathway calls, the
simulator's planted pathways, the plot and the CLI."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import immunescape as ie
from immunescape.tl._drivers import MIN_SAMPLES, partial_spearman


def test_partial_spearman_is_spearman_without_covariates_and_removes_a_confounder():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=40), rng.normal(size=40)
    y = y + 0.5 * x
    rho, p, n = partial_spearman(x, y)
    expected = stats.spearmanr(x, y)
    assert (
        n == 40
        and rho == pytest.approx(expected.statistic, abs=1e-12)
        and p == pytest.approx(expected.pvalue, rel=1e-9)
    )
    # both follow a confounder c: strongly correlated unadjusted, not once c's ranks are removed
    c = rng.normal(size=200)
    a, b = c + 0.3 * rng.normal(size=200), c + 0.3 * rng.normal(size=200)
    raw, _, _ = partial_spearman(a, b)
    adjusted, p_adj, _ = partial_spearman(a, b, c)
    assert raw > 0.8 and abs(adjusted) < 0.2 and p_adj > 0.01
    # the same as regressing ranks by hand (an independent computation)
    ra, rb, rc = (stats.rankdata(v) for v in (a, b, c))
    res = [r - np.polyval(np.polyfit(rc, r, 1), rc) for r in (ra, rb)]
    assert adjusted == pytest.approx(np.corrcoef(*res)[0, 1], abs=1e-10)
    # missing values are left out, not propagated
    a2 = a.copy()
    a2[:10] = np.nan
    assert partial_spearman(a2, b, c)[2] == 190


def test_intervals_cover_the_true_correlation():
    """95% intervals (Fisher z with Fieller's 1.06) cover the population Spearman rho in 92-98% of draws."""
    from immunescape.tl._drivers import _interval

    rng = np.random.default_rng(1)
    r = 0.5
    true_rho = 6 / np.pi * np.arcsin(r / 2)  # Spearman's rho of a bivariate normal
    covered = 0
    for _ in range(400):
        z = rng.multivariate_normal([0, 0], [[1, r], [r, 1]], size=30)
        rho, _, n = partial_spearman(z[:, 0], z[:, 1])
        low, high = _interval(rho, n, 0)
        covered += low <= true_rho <= high
    assert 0.92 <= covered / 400 <= 0.98


def _cohort(seed: int, pathways: dict, n_samples: int = 24, cells: int = 80):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = ie.datasets.simulate_tumor(n_samples=n_samples, cells_per_sample=cells, seed=seed, pathways=pathways)
        ie.tl.score(adata, "immune_escape")
        ie.tl.score(adata, "tumour_intrinsic", method="wmean", key_added="pathways")
        samples = ie.tl.aggregate(adata, "sample", celltype_key="cell_type", key=["immunescape", "pathways"])
        ie.tl.classify(samples)
    return adata, samples


@pytest.fixture(scope="module")
def planted():
    return _cohort(5, {"progeny_tgfb": "t_cell_poor", "progeny_wnt": "random"})


def test_a_pathway_planted_in_t_cell_poor_tumours_is_found_and_an_independent_one_is_not(planted):
    cells, samples = planted
    truth = cells.uns["simulation"]["truth"]
    assert truth["pathway_progeny_tgfb"].equals(truth["context"] != "inflamed")
    table = ie.tl.exclusion_drivers(samples, exclusion=truth["context"]).set_index(["pathway", "outcome"])
    tgfb_infiltration = table.loc[("progeny_tgfb", "infiltration")]
    assert tgfb_infiltration["rho"] < 0 and tgfb_infiltration["fdr"] < 0.05 and tgfb_infiltration["ci_high"] < 0
    assert (
        table.loc[("progeny_tgfb", "exclusion"), "rho"] > 0 and table.loc[("progeny_tgfb", "exclusion"), "fdr"] < 0.05
    )
    for outcome in ("infiltration", "exclusion"):
        assert table.loc[("progeny_wnt", outcome), "fdr"] >= 0.05
    assert (table["adjusted_for"] == "nothing").all()  # malignant-compartment means: nothing to adjust
    assert table.loc[("progeny_tgfb", "exclusion"), "n"] == int(truth["context"].isin(["excluded", "inflamed"]).sum())
    # the default exclusion axis is classify's context, recorded in attrs
    default = ie.tl.exclusion_drivers(samples)
    assert "ie.tl.classify" in default.attrs["outcomes"]["exclusion"]
    fig = ie.pl.exclusion_drivers(default, show=False)
    filled = sum(len(c.get_offsets()) for ax in fig.axes for c in ax.collections if c.get_label().startswith("FDR"))
    assert filled == int((default["fdr"] < 0.05).sum())


def test_too_few_samples_are_refused_and_a_short_outcome_is_left_out_with_a_warning(planted):
    _, samples = planted
    small = samples[: MIN_SAMPLES - 1].copy()
    with pytest.raises(ie.InputError, match="min_samples"):
        ie.tl.exclusion_drivers(small)
    labels = pd.Series("desert", index=samples.obs_names)
    labels.iloc[:4] = ["excluded", "inflamed", "excluded", "inflamed"]
    with pytest.warns(ie.DataWarning, match="exclusion outcome is left out"):
        table = ie.tl.exclusion_drivers(samples, exclusion=labels)
    assert set(table["outcome"]) == {"infiltration"}


def test_bad_arguments_say_what_to_do(planted):
    _, samples = planted
    with pytest.raises(ie.InputError, match="Did you mean"):
        ie.tl.exclusion_drivers(samples, pathways=["progeny_tgf"])
    with pytest.raises(ie.InputError, match="no 'excluded' or 'inflamed'"):
        ie.tl.exclusion_drivers(samples, exclusion=pd.Series("hot", index=samples.obs_names))
    with pytest.raises(ie.InputError, match="not a column"):
        ie.tl.exclusion_drivers(samples, exclusion="nope")
    with pytest.raises(ie.InputError, match="column name or a Series"):
        ie.tl.exclusion_drivers(samples, exclusion=3)
    with pytest.raises(ie.InputError, match="adjust"):
        ie.tl.exclusion_drivers(samples, adjust=["not_a_feature"])
    frame = ie.tl.sample_features(samples).assign(progeny_wnt=1.0)  # a pathway that never varies: no rho
    flat = ie.tl.exclusion_drivers(frame, exclusion=samples.obs["immunescape_class"], adjust=None)
    assert flat.loc[flat["pathway"] == "progeny_wnt", ["rho", "pval", "fdr"]].isna().all().all()
    with pytest.raises(ie.InputError, match="not unique"):
        ie.tl.exclusion_drivers(frame.set_axis(["same"] * len(frame)), exclusion=samples.obs["immunescape_class"])
    with pytest.raises(ie.InputError, match="score them first"):
        ie.tl.exclusion_drivers(samples[:, [v for v in samples.var_names if not v.startswith(("progeny", "hallmark"))]])


def test_bulk_is_adjusted_for_stromal_content(planted):
    """A table of bulk-like features: 'auto' adjusts for the fibroblast and endothelium scores, and a
    pathway that only follows stroma loses its association once adjusted."""
    rng = np.random.default_rng(3)
    n = 60
    stroma = rng.normal(size=n)
    frame = pd.DataFrame(
        {
            "bagaev2021_CAF": stroma + 0.2 * rng.normal(size=n),
            "bagaev2021_Endothelium": stroma + 0.2 * rng.normal(size=n),
            "cd8_t_effector_mariathasan2018": -stroma + 0.3 * rng.normal(size=n),
            "progeny_tgfb": stroma + 0.3 * rng.normal(size=n),
        },
        index=[f"s{i}" for i in range(n)],
    )
    frame["state"] = np.where(frame["cd8_t_effector_mariathasan2018"] > 0, "inflamed", "excluded")
    raw = ie.tl.exclusion_drivers(frame, pathways=["progeny_tgfb"], exclusion=frame["state"], adjust=None)
    auto = ie.tl.exclusion_drivers(frame, pathways=["progeny_tgfb"], exclusion=frame["state"])
    assert auto["adjusted_for"].iloc[0] == "bagaev2021_CAF, bagaev2021_Endothelium"
    raw_rho = raw.set_index("outcome").loc["infiltration", "rho"]
    auto_rho = auto.set_index("outcome").loc["infiltration", "rho"]
    assert raw_rho < -0.6 and abs(auto_rho) < 0.35
    with pytest.raises(ie.InputError, match="stromal content"):
        ie.tl.exclusion_drivers(
            frame.drop(columns="bagaev2021_CAF"), pathways=["progeny_tgfb"], exclusion=frame["state"]
        )


def test_classify_calls_an_active_oncogenic_pathway_with_its_genes(planted):
    cells, samples = planted
    calls = ie.tl.classify(samples, inplace=False)
    truth = cells.uns["simulation"]["truth"]["pathway_progeny_wnt"].reindex(calls.index)
    called = calls["pathway_progeny_wnt"].map(lambda v: v is True)
    assert called.sum() >= 1 and (called <= truth).all()  # calls only where planted ...
    assert called[truth].mean() >= 0.8  # ... and most of the planted ones
    reason = calls.loc[called.idxmax(), "pathway_progeny_wnt_reason"]
    assert reason.startswith("WNT signalling (PROGENy footprint") and "percentile" in reason and ": called" in reason
    genes = calls.loc[called.idxmax(), "pathway_progeny_wnt_genes"].split(" at ")[0].split(", ")
    up = {g for g, w in ie.signatures.get("progeny_wnt").gene_weights().items() if w > 0}
    assert len(genes) == 3 and set(genes) <= up
    assert all("progeny_wnt" in a for a in calls.loc[called, "pathways_active"])
    none = ie.tl.classify(samples, thresholds={"pathway": 50.0}, inplace=False)
    assert (none["pathways_active"] == "").all()
    assert "pathways_active" in samples.obs.columns.str.replace("immunescape_class_", "")


def test_the_simulator_plants_pathways_only_when_asked():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=30, seed=4)
        again = ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=30, seed=4, pathways={})
    assert (plain.X != again.X).nnz == 0 and list(plain.var_names) == list(again.var_names)
    assert not [c for c in plain.uns["simulation"]["truth"] if c.startswith("pathway_")]
    with pytest.raises(ie.InputError, match="not a tumour-intrinsic pathway"):
        ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=30, pathways={"apm_mariathasan2018": "random"})
    with pytest.raises(ie.InputError, match="t_cell_poor"):
        ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=30, pathways={"progeny_wnt": "sometimes"})


def test_cli_drivers_writes_the_table_and_the_plot(planted, tmp_path):
    from immunescape.cli import main

    cells, _ = planted
    path = tmp_path / "cells.h5ad"
    cells.write_h5ad(path)
    out, plot = tmp_path / "drivers.csv", tmp_path / "drivers.png"
    args = ["-q", "drivers", str(path), "--sample-key", "sample", "--celltype-key", "cell_type", "-o", str(out)]
    assert main([*args, "--plot", str(plot)]) == 0
    table = pd.read_csv(out, index_col=0)
    assert {"progeny_tgfb", "progeny_wnt"} <= set(table["pathway"]) and plot.read_bytes()[:4] == b"\x89PNG"
    before = path.read_bytes()
    assert main([*args[:-1], str(path), "--force"]) == 1  # never over its input, even with --force
    assert path.read_bytes() == before
