"""The analytic null of the linear methods (score(..., null="analytic")): exact moments against an
enumeration of every random set of uniform draws within bins, power, agreement with sampled sets,
determinism and bad input (its calibration is tested beside the matched null's, in test_null.py)."""

from __future__ import annotations

import dataclasses
import itertools
import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

import immunescape as ie
from immunescape._engine import gene_stats as _scan
from immunescape._errors import InputError
from immunescape._kernels.nulls import uniform
from immunescape._null import null_bins, null_seeds
from immunescape.genes import resolve
from immunescape.methods import NullSpec, get_method
from immunescape.signatures import load

from ._synthetic import synthetic
from .test_null import LINEAR_METHODS, _counts, _lognorm, planted_programme


def _scored_genes(adata, sig, method="wmean"):
    """The genes and weights the method scores (as the null draws them), from its matched plan."""
    m = get_method(method)
    resolved = resolve(load([sig]), adata.var_names, min_coverage=0)
    stats_ = _scan(adata.X, dataclasses.replace(m, needs=(*m.needs, "null_means")))
    plan = m.prepare(resolved, stats_, m.check_params({}), 0, NullSpec(10, 4))
    return plan.null.genes[0], plan.null.weights[0]


def _enumerated(x, genes, weights, bin_of):
    """Every random set the null can draw (in each bin, an ordered sample of the bin's genes without
    replacement, one per signature gene there, carrying its weight), all equally likely: their
    scores in one cell, and whether each set's genes are all zero."""
    scores, zero = np.zeros(1), np.ones(1, bool)
    for b in np.unique(bin_of[genes]):
        w = weights[bin_of[genes] == b]
        members = np.flatnonzero(bin_of == b)
        draws = np.asarray(list(itertools.permutations(members, w.size)))
        scores = (scores[:, None] + (x[draws] * w).sum(1)[None, :]).ravel()
        zero = (zero[:, None] & (x[draws] == 0).all(1)[None, :]).ravel()
    return scores, zero


def test_z_and_p_equal_the_enumerated_null_distribution():
    """Closed-form mean, variance and third cumulant (per bin, sampling without replacement, weights
    carried) give exactly the z and the documented p of the full distribution of random-set scores."""
    rng = np.random.default_rng(0)
    n_genes = 18
    X = np.round(rng.gamma(0.7, 1.5, (6, n_genes)) * (rng.random((6, n_genes)) < 0.6), 2)
    X[:, :] = np.where(X.sum(0) == 0, 1.0, X)  # every gene expressed somewhere (wmean keeps non-empty genes)
    genes = [f"G{i}" for i in range(n_genes)]
    order = np.argsort(X.mean(0))
    positive = ie.Signature(
        "positive",
        tuple(genes[i] for i in order[[0, 6, 7, 12]]),
        weights={genes[order[0]]: 1.0, genes[order[6]]: 2.5, genes[order[7]]: 0.5, genes[order[12]]: 1.0},
    )
    signed = ie.Signature("signed", tuple(genes[i] for i in order[[1, 8]]), tuple(genes[i] for i in order[[2, 13]]))
    X[2, order[[0, 6, 7, 12]]] = 0.0  # a cell where the positive signature is all zero: the exact atom
    adata = ad.AnnData(X.astype(np.float32), var=pd.DataFrame(index=genes))
    res = ie.tl.score(
        adata,
        [positive, signed],
        method="wmean",
        null="analytic",
        null_bins=4,
        min_coverage=0,
        random_state=5,
        inplace=False,
    )
    Xf = X.astype(np.float32).astype(np.float64)
    scored = [_scored_genes(adata, sig)[0] for sig in (positive, signed)]
    bin_of = null_bins(Xf.sum(0) / Xf.shape[0], np.ones(n_genes, bool), 4, ["p", "s"], scored).bin_of  # the null's
    seed = null_seeds(5)[1]
    for s, sig in enumerate((positive, signed)):
        g, w = _scored_genes(adata, sig)
        for cell in range(X.shape[0]):
            x = Xf[cell]
            scores, zero = _enumerated(x, g, w, bin_of)
            mean, var = scores.mean(), scores.var()
            skew = ((scores - mean) ** 3).mean() / var**1.5
            observed = x[g] @ w
            z = (observed - mean) / math.sqrt(var)
            assert res["z"].iloc[cell, s] == pytest.approx(z, rel=1e-9, abs=1e-9)
            pi0 = zero.mean()
            on_atom = bool(np.all(w >= 0))
            if on_atom and np.all(x[g] == 0):
                p = (1 - pi0) + uniform(seed, cell, s) * pi0
            else:
                p = stats.norm.sf(z) + skew / 6 * (z * z - 1) * stats.norm.pdf(z)
                p = min(max(p, 0.0), 1.0)
                p = min(p, 1 - pi0) if on_atom else p
            assert res["pval"].iloc[cell, s] == pytest.approx(p, rel=1e-9, abs=1e-12), (sig.name, cell)
    assert np.all(Xf[2, _scored_genes(adata, positive)[0]] == 0)  # the atom case was exercised


def test_mean_and_zmean_share_wmean_analytic_null():
    """scanpy's score: the control term is common to the signature and its random sets; zmean is an
    affine map of wmean within a cell. Unweighted signatures, every gene expressed somewhere (so the
    three draw from the same genes): the same z and p."""
    counts = _counts(6, 120, 500)
    counts[0] += 1  # no empty gene: wmean leaves those out, scanpy's pool keeps them
    adata = _lognorm(counts)
    rng = np.random.default_rng(7)
    sigs = {f"s{j}": list(rng.choice(adata.var_names, size, replace=False)) for j, size in enumerate((5, 12, 30))}
    results = [ie.tl.score(adata, sigs, method=m, null="analytic", inplace=False) for m in LINEAR_METHODS]
    for other in results[1:]:
        pd.testing.assert_frame_equal(results[0]["pval"], other["pval"])
        pd.testing.assert_frame_equal(results[0]["z"], other["z"])


def test_analytic_z_and_p_agree_with_many_sampled_random_sets():
    """The exact moments are the limit of sampled random sets drawn as the analytic null defines them
    (uniformly within each bin, as many genes as the signature has there, its weights carried); the
    matched null's tilted draws (each gene matched in mean) are a related, not the same, null."""
    adata = _lognorm(_counts(3, 300, 1200))
    rng = np.random.default_rng(4)
    genes = np.asarray(adata.var_names)
    sigs = {f"r{j}": list(rng.choice(genes, rng.integers(8, 40), replace=False)) for j in range(6)}
    exact = ie.tl.score(adata, sigs, method="wmean", null="analytic", min_coverage=0, inplace=False)
    X = adata.X.toarray().astype(np.float64) if sp.issparse(adata.X) else np.asarray(adata.X, np.float64)
    scored = [_scored_genes(adata, ie.Signature(name, tuple(g))) for name, g in sigs.items()]
    bins = null_bins(X.mean(0), X.sum(0) != 0, None, list(sigs), [g for g, _ in scored])
    n_draw = 3000
    z_hat, p_hat = [], []
    for g, w in scored:
        indicator = np.zeros((X.shape[1], n_draw))
        for b in np.unique(bins.bin_of[g]):
            weights_here = w[bins.bin_of[g] == b]
            members = bins.members[b]
            drawn = members[np.argsort(rng.random((n_draw, members.size)), axis=1)[:, : weights_here.size]]
            np.add.at(indicator, (drawn, np.arange(n_draw)[:, None]), weights_here[None, :])
        null_scores, observed = X @ indicator, X[:, g] @ w
        z_hat.append((observed - null_scores.mean(1)) / null_scores.std(1, ddof=1))
        p_hat.append(((null_scores >= observed[:, None]).sum(1) + 1) / (n_draw + 1))
    z, z_hat = exact["z"].to_numpy().T.ravel(), np.concatenate(z_hat)
    assert np.corrcoef(z, z_hat)[0, 1] > 0.995
    assert np.median(np.abs(z - z_hat)) < 0.05
    assert np.corrcoef(exact["pval"].to_numpy().T.ravel(), np.concatenate(p_hat))[0, 1] > 0.99
    matched = ie.tl.score(adata, sigs, method="wmean", null="matched", n_null=1000, min_coverage=0, inplace=False)
    assert np.corrcoef(z, matched["z"].to_numpy().T.ravel())[0, 1] > 0.97  # measured 0.989 at n_null=3000


def test_analytic_null_detects_a_planted_signature():
    adata, sigs, active = planted_programme()
    for method in LINEAR_METHODS:
        res = ie.tl.score(adata, sigs, method=method, null="analytic", min_coverage=0, inplace=False)
        hit = res["padj"]["planted"].to_numpy() < 0.05
        assert hit[active].mean() > 0.9 and hit[~active].mean() < 0.1, method
        assert (res["padj"].drop(columns="planted").to_numpy() < 0.05).mean() < 0.05, method


def test_analytic_null_is_the_same_whatever_chunks_threads_backed_or_dask(tmp_path):
    import dask.array as da

    adata, sets = synthetic(seed=8, n_cells=130)
    sigs = {k: sets[k] for k in ("s0", "s2", "with_empty_gene")}
    memory = ie.tl.score(adata, sigs, method="wmean", null="analytic", random_state=3, inplace=False)
    chunked = ie.tl.score(
        adata, sigs, method="wmean", null="analytic", random_state=3, chunk_size=7, n_jobs=1, inplace=False
    )
    path = tmp_path / "x.h5ad"
    adata.write_h5ad(path)
    on_disk = ie.tl.score(
        ad.read_h5ad(path, backed="r"),
        sigs,
        method="wmean",
        null="analytic",
        random_state=3,
        chunk_size=50,
        inplace=False,
    )
    lazy = adata.copy()
    lazy.X = da.from_array(adata.X.toarray(), chunks=(40, -1))
    in_dask = ie.tl.score(lazy, sigs, method="wmean", null="analytic", random_state=3, inplace=False)
    for other in (chunked, on_disk, in_dask):
        for a, b in zip(memory.values(), other.values()):
            pd.testing.assert_frame_equal(a, b)
    p = memory["pval"].to_numpy()
    assert np.isfinite(p).all() and ((p > 0) & (p <= 1)).all()


def test_analytic_null_is_recorded():
    adata, sets = synthetic(seed=9, n_cells=60)
    ie.tl.score(adata, {"a": sets["s1"]}, method="mean", null="analytic", key_added="esc")
    record = adata.uns["esc"]["details"]["null"]
    assert record["kind"] == "analytic" and "Edgeworth" in record["p_value"] and record["null_bins"] == "auto"
    assert list(adata.obsm["esc_padj"].columns) == ["a"]


@pytest.mark.parametrize("method", ["ucell", "aucell", "singscore", "ssgsea"])
def test_analytic_null_is_refused_for_rank_methods_with_advice(method):
    adata, sets = synthetic(seed=11, n_cells=30)
    with pytest.raises(InputError, match="linear methods"):
        ie.tl.score(adata, {"a": sets["s1"]}, method=method, null="analytic")


def test_sparse_and_dense_input_agree():
    adata, sets = synthetic(seed=13, n_cells=80)
    dense = ad.AnnData(adata.X.toarray(), obs=adata.obs, var=adata.var)
    a = ie.tl.score(adata, {"a": sets["s2"]}, method="wmean", null="analytic", inplace=False)
    b = ie.tl.score(dense, {"a": sets["s2"]}, method="wmean", null="analytic", inplace=False)
    for x, y in zip(a.values(), b.values()):
        pd.testing.assert_frame_equal(x, y)
    assert sp.issparse(adata.X)
