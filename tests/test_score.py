from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import immunescape as ie
from immunescape.methods import method_names

from ._synthetic import synthetic

METHODS = method_names(chunked=True)  # every row-independent method in the registry


@pytest.fixture(scope="module")
def data():
    return synthetic(5, n_cells=240, n_genes=300)


def run(adata, sets, method, **kw):
    return ie.tl.score(adata, sets, method=method, inplace=False, min_coverage=0, **kw)


@pytest.mark.parametrize("method", METHODS)
def test_chunk_size_and_threads_do_not_change_results(data, method):
    adata, sets = data
    ref = run(adata, sets, method, chunk_size=10_000, n_jobs=2)
    for chunk_size, n_jobs in ((1, 1), (7, 2), (64, 1)):
        got = run(adata, sets, method, chunk_size=chunk_size, n_jobs=n_jobs)
        np.testing.assert_array_equal(got.to_numpy(), ref.to_numpy())


@pytest.mark.parametrize("method", METHODS)
def test_storage_format_does_not_change_results(data, method):
    adata, sets = data
    ref = run(adata, sets, method)
    for matrix in (adata.X.toarray(), sp.csc_matrix(adata.X), adata.X.astype(np.float64)):
        other = ad.AnnData(matrix, obs=adata.obs, var=adata.var)
        np.testing.assert_allclose(run(other, sets, method).to_numpy(), ref.to_numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_permuting_cells_permutes_scores(data, method):
    adata, sets = data
    order = np.random.default_rng(0).permutation(adata.n_obs)
    ref = run(adata, sets, method)
    got = run(adata[order].copy(), sets, method)
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy()[order], atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_scoring_a_subset_of_signatures_gives_the_same_numbers(data, method):
    adata, sets = data
    every = run(adata, sets, method)
    some = run(adata, {k: sets[k] for k in ("s1", "s3")}, method)
    np.testing.assert_array_equal(some.to_numpy(), every[["s1", "s3"]].to_numpy())


@pytest.mark.parametrize("method", ["ucell", "singscore", "wmean", "zmean"])
def test_gene_order_does_not_matter(data, method):
    adata, sets = data
    order = np.random.default_rng(1).permutation(adata.n_vars)
    ref = run(adata, sets, method)
    got = run(adata[:, order].copy(), sets, method)
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), atol=1e-12)


@pytest.mark.parametrize("method", ["aucell", "ssgsea"])
def test_tie_breaking_methods_ignore_gene_order_only_without_ties(method):
    """aucell and ssgsea order tied values by gene position (as decoupler and gseapy do), so on sparse data
    their scores depend on the gene order; without ties they do not."""
    rng = np.random.default_rng(2)
    genes = [f"G{i}" for i in range(200)]
    tie_free = ad.AnnData(rng.random((50, 200)), var=pd.DataFrame(index=genes))
    sets = {"a": genes[:20], "b": genes[50:90]}
    order = rng.permutation(200)
    ref = run(tie_free, sets, method, drop_empty_genes=False) if method == "aucell" else run(tie_free, sets, method)
    shuffled = tie_free[:, order].copy()
    got = run(shuffled, sets, method, drop_empty_genes=False) if method == "aucell" else run(shuffled, sets, method)
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), atol=1e-12)


def test_random_state_controls_mean_controls(data):
    adata, sets = data
    a = run(adata, sets, "mean", random_state=3)
    b = run(adata, sets, "mean", random_state=3)
    c = run(adata, sets, "mean", random_state=4)
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    assert not np.array_equal(a.to_numpy(), c.to_numpy())


def test_results_land_where_scanpy_users_look(pbmc):
    adata = pbmc.copy()
    assert ie.tl.score(adata, "bagaev2021_NK_cells,bagaev2021_T_cells", method="ucell", min_coverage=0.3) is None
    table = adata.obsm["immunescape"]
    assert (
        list(table.columns) == ["bagaev2021_NK_cells", "bagaev2021_T_cells"] and (table.index == adata.obs_names).all()
    )
    np.testing.assert_array_equal(
        adata.obs["immunescape_bagaev2021_NK_cells"].to_numpy(), table["bagaev2021_NK_cells"].to_numpy()
    )
    uns = adata.uns["immunescape"]
    assert uns["method"] == "ucell" and uns["params"]["max_rank"] == 1500 and uns["use_raw"] is True
    assert set(uns["coverage"]["signature"]) == set(table.columns) and "scanpy" in uns["versions"]
    # NK cells score higher than other cells on the NK signature (real data)
    nk = adata.obs["bulk_labels"] == "CD56+ NK"
    assert table.loc[nk, "bagaev2021_NK_cells"].mean() > 2 * table.loc[~nk, "bagaev2021_NK_cells"].mean()


def test_rerun_overwrites_instead_of_duplicating(pbmc):
    adata = pbmc.copy()
    for _ in range(2):
        ie.tl.score(adata, "bagaev2021_NK_cells", method="aucell", key_added="nk", min_coverage=0.3)
    assert [c for c in adata.obs.columns if c.startswith("nk_")] == ["nk_bagaev2021_NK_cells"]


def test_h5ad_round_trip(pbmc, tmp_path):
    adata = pbmc.copy()
    ie.tl.score(adata, "bagaev2021_NK_cells", method="mean", min_coverage=0.3)
    adata.write_h5ad(tmp_path / "x.h5ad")
    back = ad.read_h5ad(tmp_path / "x.h5ad")
    np.testing.assert_array_equal(back.obsm["immunescape"].to_numpy(), adata.obsm["immunescape"].to_numpy())
    assert back.uns["immunescape"]["method"] == "mean"


def test_copy_inplace_and_dataframe_input(pbmc):
    adata = pbmc.copy()
    out = ie.tl.score(adata, "bagaev2021_NK_cells", min_coverage=0.3, copy=True)
    assert isinstance(out, ad.AnnData) and "immunescape" in out.obsm and "immunescape" not in adata.obsm
    table = ie.tl.score(adata, "bagaev2021_NK_cells", min_coverage=0.3, inplace=False)
    assert isinstance(table, pd.DataFrame) and "immunescape" not in adata.obsm
    raw = adata.raw.X.toarray() if sp.issparse(adata.raw.X) else adata.raw.X
    frame = pd.DataFrame(raw, index=adata.obs_names, columns=adata.raw.var_names)
    np.testing.assert_allclose(ie.tl.score(frame, "bagaev2021_NK_cells", min_coverage=0.3).to_numpy(), table.to_numpy())


def test_use_raw_and_layer_behave_as_in_scanpy(pbmc):
    adata = pbmc.copy()
    adata.layers["lognorm"] = adata.raw.X.copy()
    by_raw = ie.tl.score(adata, "bagaev2021_NK_cells", min_coverage=0.3, inplace=False)  # .raw by default
    by_layer = ie.tl.score(adata, "bagaev2021_NK_cells", layer="lognorm", min_coverage=0.3, inplace=False)
    np.testing.assert_array_equal(by_raw.to_numpy(), by_layer.to_numpy())
    with pytest.warns(ie.DataWarning, match="negative"):  # adata.X of pbmc68k_reduced is scaled
        by_x = ie.tl.score(adata, "bagaev2021_NK_cells", use_raw=False, min_coverage=0.3, inplace=False)
    assert not np.array_equal(by_x.to_numpy(), by_raw.to_numpy())
    with pytest.raises(ie.InputError, match="either layer"):
        ie.tl.score(adata, "bagaev2021_NK_cells", layer="lognorm", use_raw=True)


def test_bulk_samples_score_like_cells():
    rng = np.random.default_rng(0)
    genes = ie.signatures.get("ifng_ayers2017").genes + tuple(f"BG{i}" for i in range(200))
    X = np.log1p(rng.gamma(2.0, 20.0, size=(30, len(genes)))).astype(np.float32)
    X[:10, :6] += 3.0  # ten IFN-gamma-high samples
    bulk = ad.AnnData(X, var=pd.DataFrame(index=list(genes)))
    for method in METHODS:
        s = ie.tl.score(bulk, "ifng_ayers2017", method=method, inplace=False)["ifng_ayers2017"]
        assert s.iloc[:10].min() > s.iloc[10:].max(), method


# ----------------------------------------------------------------------------- input checks
def test_bad_inputs_get_clear_errors(data):
    adata, sets = data
    bad = adata.copy()
    bad.X = bad.X.copy()
    bad.X.data[3] = np.nan
    with pytest.raises(ie.InputError, match="NaN or infinite"):
        run(bad, sets, "ucell")
    bad.X.data[3] = np.inf
    with pytest.raises(ie.InputError, match="NaN or infinite"):
        run(bad, sets, "mean")
    with pytest.raises(ie.InputError, match="Did you mean 'ucell'"):
        run(adata, sets, "ucel")
    with pytest.raises(ie.InputError, match="no parameter 'maxrank'.*Did you mean 'max_rank'"):
        run(adata, sets, "ucell", maxrank=10)
    with pytest.raises(ie.InputError, match="max_rank must be a whole number >= 1"):
        run(adata, sets, "ucell", max_rank=0)
    with pytest.raises(ie.InputError, match="chunk_size"):
        run(adata, sets, "ucell", chunk_size=0)
    with pytest.raises(ie.InputError, match="n_jobs"):
        run(adata, sets, "ucell", n_jobs=0)
    with pytest.raises(ie.InputError, match="n_up"):
        run(adata, sets, "aucell", n_up=1)
    with pytest.raises(ie.GeneResolutionError, match="nothing: 0 of 2"):
        run(adata, {"nothing": ["NOPE1", "NOPE2"]}, "ucell")
    with pytest.raises(ie.InputError, match="no cells"):
        run(adata[:0].copy(), sets, "ucell")


def test_integer_counts_warn_for_mean(data):
    adata, sets = data
    counts = adata.copy()
    counts.X = sp.csr_matrix(np.round(np.expm1(adata.X.toarray())))
    with pytest.warns(ie.DataWarning, match="normalize_total"):
        run(counts, sets, "mean")


def test_methods_registry_lists_every_method():
    table = ie.tl.methods()
    assert set(table.index) == set(METHODS) | {"gsva"}  # gsva: tests/test_gseapy_product.py
    assert {"equals", "parameters", "reference", "signed_sets"} <= set(table.columns)
    assert "max_rank=1500" in table.loc["ucell", "parameters"]


def test_low_coverage_drop_keeps_the_rest(pbmc):
    with pytest.raises(ie.GeneResolutionError, match="wnt_target_mariathasan2018"):
        ie.tl.score(pbmc, "immune_escape", min_coverage=0.3, low_coverage="raise", inplace=False)
    with pytest.warns(ie.CoverageWarning, match="left out: .*wnt_target_mariathasan2018"):
        table = ie.tl.score(pbmc, "immune_escape", min_coverage=0.3, low_coverage="drop", inplace=False)
    assert "cytolytic_activity_rooney2015" in table and "wnt_target_mariathasan2018" not in table


def test_mean_follows_scanpy_when_genes_are_permuted(data):
    """scanpy draws control genes by position within each expression bin (var order), so reordering genes
    changes the random controls. Compatibility means following scanpy on the permuted data, not staying fixed."""
    import scanpy as sc

    adata, sets = data
    order = np.random.default_rng(3).permutation(adata.n_vars)
    permuted = adata[:, order].copy()
    got = run(permuted, {"s3": sets["s3"]}, "mean")["s3"].to_numpy()
    ref = sc.tl.score_genes(permuted, sets["s3"], score_name="r", copy=True).obs["r"].to_numpy()
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert not np.allclose(got, run(adata, {"s3": sets["s3"]}, "mean")["s3"].to_numpy())
