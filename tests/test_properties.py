"""Property-based tests: every method against a naive NumPy/SciPy implementation written plainly here,
on random sparse and dense matrices with ties, zeros, empty rows, small and large, signed and weighted
sets, float32 and float64; and fuzzed signature parsers. Example counts are bounded for CI time."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata

import immunescape as ie

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def matrices(draw, allow_negative=False):
    n_cells = draw(st.integers(1, 9))
    n_genes = draw(st.integers(4, 25))
    levels = draw(st.integers(2, 6))  # few distinct values -> many ties
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    X = rng.integers(0, levels, size=(n_cells, n_genes)).astype(float)
    X *= rng.random((n_cells, n_genes)) < draw(st.floats(0.2, 1.0))  # sparsity
    if draw(st.booleans()):
        X[rng.integers(0, n_cells)] = 0  # an empty row
    if allow_negative and draw(st.booleans()):
        X -= levels / 2
    X = X.astype(draw(st.sampled_from([np.float32, np.float64])))
    genes = [f"G{i}" for i in range(n_genes)]
    k_up = draw(st.integers(1, n_genes - 1))
    up = list(rng.choice(genes, size=k_up, replace=False))
    rest = [g for g in genes if g not in up]
    down = (
        list(rng.choice(rest, size=draw(st.integers(0, min(3, len(rest) - 1))), replace=False)) if len(rest) > 1 else []
    )
    matrix = sp.csr_matrix(X) if draw(st.booleans()) else X
    adata = ad.AnnData(matrix, var=pd.DataFrame(index=genes))
    return adata, X.astype(np.float64), genes, up, down


def ours(adata, up, down, method, **kw):
    sig = {"s": {"up": up, "down": down}} if down else {"s": up}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ie.tl.score(adata, sig, method=method, min_coverage=0, inplace=False, **kw)["s"].to_numpy()


def idx(genes, names):
    return np.array([genes.index(g) for g in names], dtype=int)


# ------------------------------------------------------------------------------------ naive references
def naive_ucell(X, up, down, max_rank, w_neg=1.0):
    def u(row, s):
        nz = np.flatnonzero(row)
        ranks = np.full(row.size, float(max_rank))
        if nz.size:
            r = rankdata(-row[nz], method="average")
            keep = r <= max_rank
            ranks[nz[keep]] = r[keep]
        n = len(s)
        smin, smax = n * (n + 1) / 2, n * max_rank
        return 0.0 if smax == smin else 1 - (ranks[s].sum() - smin) / (smax - smin)

    out = []
    for row in X:
        score = u(row, up) - (w_neg * u(row, down) if len(down) else 0.0)
        out.append(max(score, 0.0))
    return np.array(out)


def naive_aucell(X, sets, n_up, perm):
    out = []
    for row in X:
        if not row.any():
            out.append(0.0)
            continue
        shuffled = row[perm]
        r = rankdata(-shuffled, method="ordinal")  # ties by shuffled position
        rank = np.empty_like(r)
        rank[perm] = r

        def auc(s, rank=rank):
            x = np.sort(rank[s][rank[s] <= n_up])
            y = np.arange(x.size) + 1
            x = np.append(x, n_up)
            k = min(len(s), n_up - 1)
            xt = np.arange(1, k + 1)
            max_auc = np.sum(np.diff(np.append(xt, n_up)) * xt)
            return np.sum(np.diff(x) * y) / max_auc

        out.append(auc(sets[0]) - (auc(sets[1]) if len(sets[1]) else 0.0))
    return np.array(out)


def naive_ssgsea(X, up, down, alpha=0.25):
    """Running-sum integral of ssGSEA walked position by position (not the closed form)."""
    n = X.shape[1]

    def es(row, s):
        metric = np.abs(10000 * rankdata(row, method="average") / n) ** alpha
        order = np.lexsort((np.arange(n), metric))[::-1]  # descending metric, ties by descending index
        hits = np.isin(order, s)
        w = metric[order] * hits
        p_hit = np.cumsum(w) / w.sum()
        p_miss = np.cumsum(~hits) / (n - len(s))
        return np.sum(p_hit - p_miss)

    return np.array([es(row, up) - (es(row, down) if len(down) else 0.0) for row in X])


def naive_singscore(X, up, down):
    n = X.shape[1]
    ranks = np.apply_along_axis(lambda r: rankdata(r, method="min"), 1, X)

    def part(s):
        k = len(s)
        low, high = (k + 1) / 2, (2 * n - k + 1) / 2
        return (ranks[:, s].mean(axis=1) - low) / (high - low)

    out = part(up) - 0.5
    if len(down):
        out += (1 - part(down)) - 0.5
    return out


# ------------------------------------------------------------------------------------ properties
@SETTINGS
@given(matrices(), st.integers(1, 30))
def test_ucell_matches_naive(data, max_rank):
    adata, X, genes, up, down = data
    np.testing.assert_allclose(
        ours(adata, up, down, "ucell", max_rank=max_rank),
        naive_ucell(X, idx(genes, up), idx(genes, down), max_rank),
        atol=1e-9,
    )


@SETTINGS
@given(matrices(allow_negative=True))
def test_aucell_matches_naive(data):
    adata, X, genes, up, down = data
    n = X.shape[1]
    n_up = int(np.clip(np.ceil(0.05 * n), 2, n))
    perm = np.random.default_rng(0).choice(np.arange(n), n, replace=False)
    got = ours(adata, up, down, "aucell", drop_empty_genes=False)
    np.testing.assert_allclose(got, naive_aucell(X, (idx(genes, up), idx(genes, down)), n_up, perm), atol=1e-9)


@SETTINGS
@given(matrices(allow_negative=True))
def test_ssgsea_closed_form_matches_the_running_sum(data):
    adata, X, genes, up, down = data
    np.testing.assert_allclose(
        ours(adata, up, down, "ssgsea"), naive_ssgsea(X, idx(genes, up), idx(genes, down)), atol=1e-9
    )


@SETTINGS
@given(matrices(allow_negative=True))
def test_singscore_matches_naive(data):
    adata, X, genes, up, down = data
    np.testing.assert_allclose(
        ours(adata, up, down, "singscore"), naive_singscore(X, idx(genes, up), idx(genes, down)), atol=1e-9
    )


@SETTINGS
@given(matrices(allow_negative=True), st.integers(0, 2**31 - 1))
def test_weighted_means_match_numpy(data, seed):
    adata, X, genes, up, _ = data
    weights = dict(zip(up, np.random.default_rng(seed).normal(size=len(up))))
    weights = {g: w for g, w in weights.items() if w != 0}
    w = np.zeros(len(genes))
    w[idx(genes, list(weights))] = list(weights.values())
    sig = pd.DataFrame({"source": "s", "target": list(weights), "weight": list(weights.values())})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = ie.tl.score(adata, sig, method="wmean", min_coverage=0, inplace=False, drop_empty_genes=False)[
            "s"
        ].to_numpy()
        z = ie.tl.score(adata, sig, method="zmean", min_coverage=0, inplace=False, drop_empty_genes=False)[
            "s"
        ].to_numpy()
    mean = X @ w / np.abs(w).sum()
    np.testing.assert_allclose(got, mean, atol=1e-9)
    sd = X.std(axis=1, ddof=1) if X.shape[1] > 1 else np.zeros(len(X))
    expected = np.where(sd > 0, (mean - X.mean(axis=1)) * np.sqrt(np.count_nonzero(w)) / np.where(sd > 0, sd, 1), 0.0)
    np.testing.assert_allclose(z, expected, atol=1e-9)


@SETTINGS
@given(matrices())
def test_mean_equals_signature_minus_control_means(data):
    adata, X, genes, up, _ = data
    if X.shape[1] < 6:
        return
    import scanpy as sc

    try:
        ref = sc.tl.score_genes(adata, up, ctrl_size=3, n_bins=3, score_name="r", copy=True).obs["r"].to_numpy()
    except (RuntimeError, ValueError):  # scanpy finds no control genes: we must fail too, clearly
        with pytest.raises(ie.InputError, match="control genes"):
            ours(adata, up, [], "mean", ctrl_size=3, n_bins=3)
        return
    np.testing.assert_allclose(ours(adata, up, [], "mean", ctrl_size=3, n_bins=3), ref, atol=1e-6)


# ------------------------------------------------------------------------------------ parser fuzzing
@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300), st.sampled_from(["gmt", "yaml", "json"]))
def test_parsers_raise_only_our_errors(tmp_path_factory, text, fmt):
    path = tmp_path_factory.mktemp("fuzz") / f"s.{fmt}"
    path.write_text(text)
    try:
        sigs = ie.signatures.load(path)
    except ie.SignatureError:
        return
    assert all(isinstance(s, ie.Signature) and s.genes for s in sigs)


@settings(max_examples=40, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
        max_leaves=12,
    )
)
def test_dict_loader_raises_only_our_errors(obj):
    try:
        sigs = ie.signatures.load(obj)
    except ie.SignatureError:
        return
    assert all(isinstance(s, ie.Signature) for s in sigs)
