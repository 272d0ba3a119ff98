"""Backed .h5ad, dask and dask.distributed give the in-memory scores."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

import immunescape as ie
from immunescape.methods import method_names

from ._synthetic import synthetic

METHODS = method_names(chunked=True)  # every row-independent method in the registry


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    adata, sets = synthetic(7, n_cells=500, n_genes=300)
    folder = tmp_path_factory.mktemp("backed")
    adata.write_h5ad(folder / "csr.h5ad")
    dense = adata.copy()
    dense.X = adata.X.toarray()
    dense.write_h5ad(folder / "dense.h5ad")
    return adata, sets, folder


def scores(adata, sets, method, **kw):
    return ie.tl.score(adata, sets, method=method, inplace=False, min_coverage=0, **kw).to_numpy()


@pytest.mark.parametrize("method", METHODS)
def test_backed_csr_equals_in_memory_bitwise(files, method):
    adata, sets, folder = files
    backed = ad.read_h5ad(folder / "csr.h5ad", backed="r")
    got = scores(backed, sets, method, chunk_size=97)
    np.testing.assert_array_equal(got, scores(adata, sets, method))
    assert backed.isbacked  # X was streamed, not loaded into the object


@pytest.mark.parametrize("method", METHODS)
def test_backed_dense_equals_in_memory(files, method):
    adata, sets, folder = files
    backed = ad.read_h5ad(folder / "dense.h5ad", backed="r")
    # mean: scanpy averages dense float32 genes in float32; streaming sums in float64
    # (bins can differ only on exact ties)
    np.testing.assert_allclose(
        scores(backed, sets, method, chunk_size=64), scores(adata, sets, method), rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("method", METHODS)
def test_dask_equals_in_memory(files, method):
    da = pytest.importorskip("dask.array")
    adata, sets, _ = files
    ref = scores(adata, sets, method)
    for X in (
        da.from_array(adata.X.toarray(), chunks=(120, 100)),
        da.from_array(adata.X, chunks=(77, -1), asarray=False),
    ):
        lazy = ad.AnnData(X, obs=adata.obs, var=adata.var)
        np.testing.assert_allclose(scores(lazy, sets, method), ref, rtol=0, atol=1e-9)


def test_lazy_h5ad_x_is_scored_through_dask(files):
    pytest.importorskip("dask.array")
    import h5py
    from anndata.experimental import read_elem_lazy

    adata, sets, folder = files
    with h5py.File(folder / "csr.h5ad") as handle:
        X = read_elem_lazy(handle["X"], chunks=(128, -1))
        assert type(X).__module__.startswith("dask")
        lazy = ad.AnnData(X, obs=adata.obs, var=adata.var)
        got = scores(lazy, sets, "ucell")
    np.testing.assert_array_equal(got, scores(adata, sets, "ucell"))


@pytest.mark.slow
def test_dask_distributed_local_cluster_equals_in_memory(files):
    distributed = pytest.importorskip("dask.distributed")
    da = pytest.importorskip("dask.array")
    adata, sets, _ = files
    X = da.from_array(adata.X, chunks=(100, -1), asarray=False)
    lazy = ad.AnnData(X, obs=adata.obs, var=adata.var)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, distributed.Client(cluster):
        for method in ("ucell", "mean", "aucell"):
            np.testing.assert_allclose(scores(lazy, sets, method), scores(adata, sets, method), rtol=0, atol=1e-9)


def test_backed_errors_before_writing(files, tmp_path):
    adata, sets, _ = files
    bad = adata.copy()
    bad.X = sp.csr_matrix(bad.X)
    bad.X.data[10] = np.nan
    bad.write_h5ad(tmp_path / "nan.h5ad")
    with pytest.raises(ie.InputError, match="NaN"):
        scores(ad.read_h5ad(tmp_path / "nan.h5ad", backed="r"), sets, "ucell")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backed_csr_gives_scanpys_gene_means_bit_for_bit(tmp_path, dtype):
    # mean's control genes follow scanpy's gene means (row-order sums in the data's dtype): streamed in
    # order from a file they are the same numbers, so a gene on a bin edge stays in its bin
    import dataclasses

    from immunescape._engine.values import gene_stats, scanpy_gene_means
    from immunescape.methods import get_method

    adata, _ = synthetic(11, n_cells=400, n_genes=200)
    adata.X = sp.csr_matrix(adata.X, dtype=dtype)
    adata.write_h5ad(tmp_path / "x.h5ad")
    backed = ad.read_h5ad(tmp_path / "x.h5ad", backed="r")
    method = dataclasses.replace(get_method("mean"), needs=("means", "null_means"))
    stats = gene_stats(backed.X, method, chunk_size=37)
    assert np.array_equal(stats.means, scanpy_gene_means(adata.X))
    float64_means = np.asarray(adata.X.astype(np.float64).sum(0)).ravel()
    assert np.array_equal(stats.null_means, float64_means / adata.n_obs)
    if dtype == np.float32:  # the two differ: the test would notice float64 means passed off as scanpy's
        assert not np.array_equal(stats.means, stats.null_means)
