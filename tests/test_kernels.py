"""The numba kernels on plain arrays, each against a direct numpy statement of its definition (as
decoupler tests its ``_func_*``): no AnnData, no registry, no runner in between.

Each test scores a row range that does not start at 0 (rows 2..8 of 9), so the kernels' offsets
between CSR rows and output rows are exercised, and includes an all-zero row.
"""

from __future__ import annotations

import itertools
import os
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import rankdata

from immunescape._kernels import linear, nulls, ranks
from immunescape._kernels.types import NO_NULL, CsrRows, NullTables, SplitSets
from immunescape._null import NullStatistic, build_moment_null, build_null_sets

R0, R1 = 2, 9  # the scored rows


def _matrix(seed: int, n_rows: int = 9, n_genes: int = 30, signed: bool = False, ties: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(1.2, (n_rows, n_genes)) * (rng.random((n_rows, n_genes)) < 0.5)
    X = np.log1p(counts) if ties else counts + rng.random(counts.shape) * (counts > 0)
    if signed:
        X = X * rng.choice([-1.0, 1.0], X.shape)
    X[R0] = 0.0  # an all-zero row among the scored ones
    return X.astype(np.float64)


def _rows(X: np.ndarray) -> CsrRows:
    m = sp.csr_matrix(X)
    return CsrRows(m.data, m.indices, m.indptr, R0, R1)


def _sets(up: list[list[int]], down: list[list[int]]) -> SplitSets:
    def pack(lists):
        ptr = np.concatenate([[0], np.cumsum([len(g) for g in lists])]).astype(np.int64)
        idx = np.concatenate([np.asarray(g, np.int64) for g in lists]) if ptr[-1] else np.zeros(0, np.int64)
        return ptr, idx

    return SplitSets(*pack(up), *pack(down))


UP = [[0, 3, 7, 12], [1, 2], [5, 6, 8, 9, 10, 20, 25]]
DOWN = [[], [14, 15, 16], [4]]


def test_wide_rows_exceed_the_counted_ranks_limit():
    X = _matrix(5, n_genes=1000, ties=False)
    assert min(np.unique(row[row != 0]).size for row in X[R0 + 1 : R1]) > ranks.MAX_GROUPS


def test_csr_dot_is_x_times_w():
    X = _matrix(1)
    W = np.random.default_rng(2).normal(size=(X.shape[1], 4)) * (np.random.default_rng(3).random((X.shape[1], 4)) < 0.3)
    by_gene = sp.csr_matrix(W)
    out = np.empty((R1 - R0, 4))
    linear.csr_dot(_rows(X), by_gene.indptr.astype(np.int64), by_gene.indices.astype(np.int64), by_gene.data, 4, 3, out)
    np.testing.assert_allclose(out, X[R0:R1] @ W, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("signed", [False, True])
def test_csr_dot_dense_is_bit_identical_to_sparse_weights(signed):
    # the layout is chosen by speed alone (methods.common.dense_weights_are_faster): it must never change a bit
    X = _matrix(5, signed=signed, ties=False)
    rng = np.random.default_rng(6)
    W = rng.normal(size=(X.shape[1], 5)) * (rng.random((X.shape[1], 5)) < 0.4)
    W[:, 4] = 0.0  # a signature with no gene left
    W[rng.random(W.shape[0]) < 0.5] = 0.0  # genes without a weight: they share the zero row
    by_gene = sp.csr_matrix(W)
    sparse_out, dense_out = np.empty((R1 - R0, 5)), np.empty((R1 - R0, 5))
    args = by_gene.indptr.astype(np.int64), by_gene.indices.astype(np.int64), by_gene.data, 5
    linear.csr_dot(_rows(X), *args, 3, sparse_out)
    weighted = np.flatnonzero(W.any(axis=1))  # the genes without a weight share the zero row 0
    row_of = np.zeros(W.shape[0], np.int64)
    row_of[weighted] = np.arange(1, weighted.size + 1)
    rows = np.vstack([np.zeros((1, 5)), W[weighted]])
    assert 0 < weighted.size < W.shape[0] - 5
    linear.csr_dot_dense(_rows(X), row_of, rows, 3, dense_out)
    assert np.array_equal(sparse_out, dense_out)
    assert not np.signbit(dense_out[:, 4]).any()  # no -0.0 from v * 0.0 terms
    np.testing.assert_allclose(dense_out, X[R0:R1] @ W, rtol=1e-12, atol=1e-12)


def test_dense_weights_chosen_where_the_cost_model_says():
    from immunescape.methods.common import DENSE_MAX_SIGNATURES, dense_weights_are_faster, linear_weights

    n_genes = 20_000
    assert dense_weights_are_faster(20, 21_600, n_genes)  # mean's W: controls in every bin, ~1 weight per gene
    # few short signatures: the dense kernel gathers a row's weighted values first, so genes without a
    # weight cost little (10 signatures, 0.05 weights per gene: 0.032 s dense, 0.046 s sparse; the model
    # fitted before the gather chose sparse)
    assert dense_weights_are_faster(10, 1_000, n_genes)
    # half a weight per gene on 40% of the genes: the weighted rows stay in cache (0.09 s dense, 0.14 sparse)
    assert dense_weights_are_faster(20, 10_000, n_genes, 7_900)
    assert not dense_weights_are_faster(50, 50_000, n_genes, 18_400)  # rows of 50 weights on 92% of the genes: sparse
    assert not dense_weights_are_faster(50, 5_000, n_genes)  # 50 short signatures (0.088 s sparse, 0.098 dense)
    assert not dense_weights_are_faster(DENSE_MAX_SIGNATURES + 1, 50 * n_genes, n_genes)
    assert not dense_weights_are_faster(5, 100, 0)
    genes = [np.arange(0, 30, 2), np.arange(1, 30, 2)]
    cols = [np.full(15, 1 / 15), np.full(15, -1 / 15)]
    w = linear_weights(cols, genes, 30)
    unbuilt = len(pickle.dumps(w))
    row_of, rows = w.dense()
    assert w.use_dense and np.array_equal(rows[row_of], sp.csr_matrix((w.w_val, w.w_col, w.w_ptr)).toarray())
    assert rows.shape[0] == 31 and not rows[0].any()  # every gene weighted here: 30 rows and the zero row
    # to a dask worker: the dense copy stays behind and is rebuilt there
    assert len(pickle.dumps(w)) == unbuilt
    assert all(np.array_equal(a, b) for a, b in zip(pickle.loads(pickle.dumps(w)).dense(), w.dense()))
    skipping = linear_weights([np.full(5, 0.2)], [np.arange(0, 30, 6)], 30).dense()
    assert skipping[1].shape == (6, 1) and np.array_equal(np.flatnonzero(skipping[0]), np.arange(0, 30, 6))


def test_csr_row_moments_are_mean_and_sample_sd_over_all_columns():
    X = _matrix(4, signed=True)
    mean, sd = np.empty(R1 - R0), np.empty(R1 - R0)
    linear.csr_row_moments(_rows(X), X.shape[1], mean, sd)
    np.testing.assert_allclose(mean, X[R0:R1].mean(1), atol=1e-12)
    np.testing.assert_allclose(sd, X[R0:R1].std(1, ddof=1), atol=1e-12)


def _ucell_reference(x, genes, n_missing, max_rank):
    rank = rankdata(-x, method="average")  # descending, ties averaged
    rank[(x == 0) | (rank > max_rank)] = max_rank
    length = len(genes) + n_missing
    if length == 0:
        return 0.0
    total = rank[genes].sum() + n_missing * max_rank
    low = length * (length + 1) / 2
    return 1 - (total - low) / (length * max_rank - low)


# rows of 30 genes rank by counting their values; rows of 1000 continuous values (more distinct values than
# ranks.MAX_GROUPS) fall back to sorting
WIDTHS = pytest.mark.parametrize("n_genes", [30, 1000], ids=["counted", "sorted"])


@WIDTHS
@pytest.mark.parametrize("max_rank", [6, 1500])
def test_ucell_is_the_mann_whitney_u_of_capped_descending_ranks(max_rank, n_genes):
    X = _matrix(5, n_genes=n_genes, ties=n_genes < 100)
    up_missing, dn_missing = np.array([1, 0, 0], np.int64), np.array([0, 2, 0], np.int64)
    w_neg = 0.7
    out = np.empty((R1 - R0, 3))
    ranks.ucell(
        _rows(X), X.shape[1], X.shape[1], _sets(UP, DOWN), up_missing, dn_missing, max_rank, w_neg, 4, out, *NO_NULL
    )
    for i, row in enumerate(X[R0:R1]):
        for s in range(3):
            up = _ucell_reference(row, UP[s], up_missing[s], max_rank)
            down = _ucell_reference(row, DOWN[s], dn_missing[s], max_rank)
            assert out[i, s] == pytest.approx(max(up - w_neg * down, 0.0), abs=1e-12), (i, s)


@WIDTHS
def test_singscore_is_the_scaled_mean_of_ascending_minimum_ranks(n_genes):
    X = _matrix(6, n_genes=n_genes, signed=True, ties=n_genes < 100)  # negative values rank below the zeros
    n = X.shape[1]
    out = np.empty((R1 - R0, 3))
    ranks.singscore(_rows(X), n, n, _sets(UP, DOWN), True, 4, out, *NO_NULL)
    for i, row in enumerate(X[R0:R1]):
        rank = rankdata(row, method="min")
        for s in range(3):
            total = 0.0
            for genes, down in ((UP[s], False), (DOWN[s], True)):
                if not genes:
                    continue
                k = len(genes)
                low, high = (k + 1) / 2, (2 * n - k + 1) / 2
                scaled = (rank[genes].mean() - low) / (high - low)
                total += (1 - scaled if down else scaled) - 0.5
            assert out[i, s] == pytest.approx(total, abs=1e-12), (i, s)


@pytest.mark.parametrize("n_up_share", [0.2, 0.9])  # 0.9: zeros rank within n_up
@pytest.mark.parametrize(
    "values", ["float64", "float32-exact", "signed float32-exact", "continuous"]
)  # float32-exact: the packed-key sort, which selects the top n_up first
@pytest.mark.parametrize("n_genes", [30, 1000], ids=["compared", "radix"])
def test_aucell_is_the_recovery_curve_area_of_ordinal_ranks(values, n_genes, n_up_share):
    # 30 genes: rows below ranks._RADIX_MIN, sorted by comparison; 1000 genes: counted values, radix-sorted
    # (continuous values: too many distinct ones, sorted by comparison)
    X = _matrix(7, n_genes=n_genes, signed=values.startswith("signed"), ties=values != "continuous")
    if values.endswith("float32-exact"):
        X = X.astype(np.float32).astype(np.float64)
    n = X.shape[1]
    position = np.random.default_rng(8).permutation(n).astype(np.int64)  # decoupler's tie-breaking order
    gene_at = np.argsort(position).astype(np.int64)
    n_up = max(2, int(n_up_share * n))
    sets = _sets(UP, DOWN)
    k = np.minimum(np.diff(sets.up_ptr), n_up - 1)
    max_auc = (n_up * k - k * (k + 1) / 2).astype(np.float64)
    out = np.empty((R1 - R0, 3))
    ranks.aucell(_rows(X), n, n, position, gene_at, n, sets.up_ptr, sets.up_idx, max_auc, n_up, 4, out, *NO_NULL)
    for i, row in enumerate(X[R0:R1]):
        if not row.any():
            np.testing.assert_array_equal(out[i], 0.0)  # an all-zero row scores 0
            continue
        order = np.lexsort((position, -row))  # descending value, ties by position
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(1, n + 1)
        for s in range(3):
            area = sum(n_up - rank[g] for g in UP[s] if rank[g] <= n_up)
            assert out[i, s] == pytest.approx(area / max_auc[s], abs=1e-12), (i, s)


def _ssgsea_walk(x, genes, alpha):
    """GSVA's ssgsea: the sum of the running sum P_hit - P_miss over genes ordered by |x| descending
    (ties by descending gene index, as gseapy), hits weighted by |x| ** alpha (all hits weigh 1 when
    every hit's weight is 0, as fgsea)."""
    n = x.size
    order = np.lexsort((-np.arange(n), -np.abs(x)))
    weight = np.abs(x) ** alpha
    if weight[genes].sum() == 0:
        weight = np.ones(n)
    hit = np.isin(order, genes)
    p_hit = np.cumsum(np.where(hit, weight[order], 0.0)) / weight[genes].sum()
    p_miss = np.cumsum(~hit) / (n - len(genes))
    return (p_hit - p_miss).sum()


@WIDTHS
@pytest.mark.parametrize("storage", ["genes in order", "genes shuffled"])  # shuffled: sorted, not counted
@pytest.mark.parametrize("ties", [False, True])  # signed: |x| ties +v with -v; the tie order is the gene order
def test_ssgsea_equals_the_explicit_random_walk(ties, storage, n_genes):
    X = _matrix(9, n_genes=n_genes, ties=ties and n_genes < 100, signed=True)
    n = X.shape[1]
    sets = _sets(UP, DOWN)
    union = np.unique(np.concatenate([sets.up_idx, sets.dn_idx])).astype(np.int64)
    up_u, dn_u = np.searchsorted(union, sets.up_idx), np.searchsorted(union, sets.dn_idx)
    out = np.empty((R1 - R0, 3))
    rows = _rows(X)
    if storage == "genes shuffled":
        rng = np.random.default_rng(0)
        data, indices = rows.data.copy(), rows.indices.copy()
        for i in range(X.shape[0]):
            span = slice(rows.indptr[i], rows.indptr[i + 1])
            order = rng.permutation(span.stop - span.start)
            data[span], indices[span] = data[span][order], indices[span][order]
        rows = CsrRows(data, indices, rows.indptr, R0, R1)
    ranks.ssgsea(rows, n, n, sets, up_u, dn_u, union, 1, 0.25, 4, out, *NO_NULL)  # mode 1: raw values
    for i, row in enumerate(X[R0:R1]):
        for s in range(3):
            expected = _ssgsea_walk(row, UP[s], 0.25) - (_ssgsea_walk(row, DOWN[s], 0.25) if DOWN[s] else 0.0)
            assert out[i, s] == pytest.approx(expected, abs=1e-10), (i, s)


def _null_reference(observed, null_scores, seed, rows, column):
    """z and the randomised p as nulls.row_nulls documents them."""
    d = null_scores - observed[:, None]
    tol = nulls.TIE_TOLERANCE * (1 + np.abs(observed))[:, None]
    above, tied = (d > tol).sum(1), (np.abs(d) <= tol).sum(1)
    u = np.asarray([nulls.uniform(seed, r, column) for r in rows])
    p = (above + u * (tied + 1)) / (null_scores.shape[1] + 1)
    d = np.where(np.abs(d) <= tol, 0.0, d)
    with np.errstate(invalid="ignore", divide="ignore"):  # rows where every set ties: z is checked where finite
        return -d.mean(1) / d.std(1, ddof=1), p


@pytest.mark.parametrize("floor", [-np.inf, 0.0])
def test_linear_nulls_score_every_random_set_and_tally_z_and_p(floor):
    """An AFFINE statistic (with and without a floor, as UCell's clip) through the sparse null path
    equals the random sets' scores written out from the bundle's slots."""
    X = _matrix(10, n_genes=60)
    genes = np.array([0, 5, 9, 31, 40], np.int64)
    weights = np.array([1.0, 2.0, -1.5, 0.5, -0.25])
    c0 = np.array([0.3])
    sets = build_null_sets(
        ["s"],
        [genes],
        [weights],
        [np.zeros(5, np.int64)],
        means=X.mean(0),
        pool=np.ones(60, bool),
        n_null=40,
        n_bins=4,
        random_state=1,
        statistic=NullStatistic(c0=c0, floor=floor),
    )
    z, p = np.empty((R1 - R0, 1)), np.empty((R1 - R0, 1))
    nulls.linear_nulls(_rows(X), 60, sets.bundle, NullTables(0, z, p), 3)
    rows = X[R0:R1]
    clip = lambda v: np.maximum(v, floor)
    observed = clip(c0[0] + rows[:, genes] @ weights)
    ptr, lo, hi, w, _ = sets.runs
    null_scores = np.stack(
        [
            clip(c0[0] + sum(w[r] * rows[:, sets.slot_gene[k, lo[r] : hi[r]]].sum(1) for r in range(ptr[0], ptr[1])))
            for k in range(40)
        ],
        axis=1,
    )
    z_ref, p_ref = _null_reference(observed, null_scores, sets.seed, range(R0, R1), 0)
    np.testing.assert_allclose(p[:, 0], p_ref, rtol=1e-12)
    finite = np.isfinite(z_ref)
    np.testing.assert_allclose(z[finite, 0], z_ref[finite], rtol=1e-9)


def test_linear_moments_equal_the_enumerated_null():
    """The analytic null's z: the exact mean and variance over every draw of random genes (ordered,
    without replacement, within each bin, carrying the signature's weights), enumerated."""
    X = _matrix(11, n_genes=24)
    genes = np.array([1, 2, 7, 15, 22], np.int64)
    weights = np.array([1.0, -2.0, 0.5, 1.5, 1.0])
    moment = build_moment_null(
        ["s"], [genes], [weights], means=X.mean(0), pool=np.ones(24, bool), n_bins=3, random_state=0
    )
    z, p = np.empty((R1 - R0, 1)), np.empty((R1 - R0, 1))
    nulls.linear_moments(_rows(X), 24, moment.bundle, 0, 2, z, p)
    bin_of = moment.bundle.bin_of
    for i, row in enumerate(X[R0:R1]):
        mean = var = 0.0
        for b in np.unique(bin_of[genes]):
            members = np.flatnonzero(bin_of == b)
            w = weights[bin_of[genes] == b]
            draws = np.asarray([row[list(d)] @ w for d in itertools.permutations(members, len(w))])
            mean, var = mean + draws.mean(), var + draws.var()
        if var < 1e-20:
            assert z[i, 0] == 0.0  # every random set scores the same
            continue
        assert z[i, 0] == pytest.approx((row[genes] @ weights - mean) / np.sqrt(var), rel=1e-9, abs=1e-12), i
        assert 0.0 <= p[i, 0] <= 1.0


def test_uniform_depends_only_on_seed_row_and_column():
    draws = np.asarray([[nulls.uniform(7, r, c) for c in range(50)] for r in range(200)])
    assert np.all((draws > 0) & (draws < 1))
    assert draws[3, 4] == nulls.uniform(7, 3, 4) and draws[3, 4] != nulls.uniform(8, 3, 4)
    assert abs(draws.mean() - 0.5) < 0.01  # 10,000 draws: sd of the mean 0.003


def test_bh_rows_equals_the_step_up_definition():
    p = np.random.default_rng(12).random((5, 9)) ** 3
    p[1, 2] = np.nan  # not a test: stays NaN, not counted
    out = np.empty_like(p)
    nulls.bh_rows(p, out)
    for i, row in enumerate(p):
        ok = np.isfinite(row)
        m, q = ok.sum(), np.full(row.size, np.nan)
        order = np.argsort(row[ok])
        adjusted = np.minimum.accumulate((row[ok][order] * m / np.arange(1, m + 1))[::-1])[::-1]
        q[np.flatnonzero(ok)[order]] = np.minimum(adjusted, 1.0)
        np.testing.assert_allclose(out[i], q, rtol=1e-12)


def test_moment_tail_is_below_the_empirical_bound_and_falls_back_without_spread():
    """Beyond every null score the tail p is continuous, below 1 / (n_null + 1) and decreasing; it is the
    Pearson III (Wilson-Hilferty) survival with the draws' moments, skewness raised by half its SE, which
    for a gamma distribution's own large sample is close to the true tail; where the draws do not vary
    it is -1 (the caller keeps the empirical p)."""
    from scipy import stats

    rng = np.random.default_rng(13)
    draws = rng.normal(size=100)
    top = draws.max()
    ps = [nulls.moment_tail(draws, top + d, 100) for d in (0.01, 0.5, 1.0, 3.0)]
    assert all(0 < p <= 1 / 101 for p in ps) and ps == sorted(ps, reverse=True) and ps[-1] < 1e-4

    # the formula, written out independently
    def by_hand(sample, x):
        mean, sd = sample.mean(), sample.std()
        skew = stats.skew(sample) + nulls.SKEW_MARGIN * np.sqrt(6 / sample.size)
        if skew <= 1e-6:  # a light (left-skewed) upper tail: the normal one
            return stats.norm.sf((x - mean) / sd)
        k = 4 / skew**2
        y = k + (x - mean) / sd * np.sqrt(k)
        c = 1 / (9 * k)
        return stats.norm.sf(((y / k) ** (1 / 3) - (1 - c)) / np.sqrt(c))

    assert ps[2] == pytest.approx(min(by_hand(draws, top + 1.0), 1 / 101), rel=1e-9)
    skewed = rng.gamma(2.0, size=100)  # right-skewed draws take the gamma branch
    assert nulls.moment_tail(skewed, skewed.max() + 1.0, 100) == pytest.approx(
        min(by_hand(skewed, skewed.max() + 1.0), 1 / 101), rel=1e-9
    )
    # beyond a large gamma sample (skewness 1, max near the 5e-5 quantile): near the gamma's own tail
    gamma = stats.gamma(4.0)
    sample = gamma.rvs(size=20000, random_state=np.random.default_rng(1))
    for q in (1e-5, 1e-6, 1e-7):
        x = gamma.isf(q)
        assert q / 2 < nulls.moment_tail(sample, x, 20000) < q * 4  # never far below the truth
    assert nulls.moment_tail(np.zeros(100), 1.0, 100) == -1.0
    assert nulls.moment_tail(np.full(100, 3.0), 4.0, 100) == -1.0


def _bucketed(populations):
    """Populations of gene terms (one per bin, genes numbered bin after bin) as the null kernels hold
    a row's (nulls._bucket_terms): per bin, the non-zero terms and their genes."""
    n = len(populations)
    term = np.concatenate(populations)[None, :]
    bin_of = np.repeat(np.arange(n), [v.size for v in populations])
    ptr, val, val_gene = np.zeros(n + 1, np.int64), np.empty(term.size), np.empty(term.size, np.int64)
    listed = np.random.default_rng(0).permutation(term.size)  # in no particular order
    nulls._bucket_terms(term, listed, listed.size, bin_of, ptr, val, val_gene, np.zeros(n, np.int64))
    for b, v in enumerate(populations):  # the bucket, checked against its definition
        np.testing.assert_array_equal(np.sort(val[ptr[b] : ptr[b + 1]]), np.sort(v[v != 0]))
        np.testing.assert_array_equal(term[0, val_gene[ptr[b] : ptr[b + 1]]], val[ptr[b] : ptr[b + 1]])
    return ptr, val, val_gene


def _sources(populations, draws, cw, probs=None):
    """The tail's slot and source arrays: bin ``b`` is one source (probabilities ``probs[b]``, default
    uniform), drawn ``draws[b]`` times with weight x coefficient ``cw[b]``."""
    sizes = np.asarray([v.size for v in populations])
    probs = [np.full(n, 1 / n) for n in sizes] if probs is None else probs
    n = len(populations)
    return (
        np.repeat(np.asarray(cw, np.float64), draws),
        np.repeat(np.arange(n), draws),
        np.column_stack([np.arange(n), np.arange(1, n + 1)]),
        np.zeros(n, np.int64),  # probabilities laid out gene after gene: base 0
        sizes.astype(np.int64),
        np.concatenate(probs),
        np.arange(sizes.sum()),
    )


def _tail(x, populations, draws, cw, probs=None, n_null=0):
    slots = _sources(populations, draws, cw, probs)
    return nulls.saddlepoint_tail(float(x), 0, slots[0].size, *slots, *_bucketed(populations), n_null)


@pytest.mark.parametrize("tilted", [False, True], ids=["uniform", "tilted"])
@pytest.mark.parametrize(
    "sizes, draws, zeros, top, signs",
    [
        ([20] * 10, [1] * 10, 0.8, 100, [1] * 10),  # a 10-gene set, one gene per bin of 20, sparse terms
        ([20] * 30, [1] * 30, 0.85, 200, [1] * 30),  # AUCell-like: few genes of a set in the top ranks
        ([50, 40, 30], [3, 5, 2], 0.7, 100, [1, 1, -1]),  # several genes per bin; a down part
        ([100] * 5, [10] * 5, 0.5, 50, [1] * 5),
    ],
)
def test_saddlepoint_tail_is_the_sum_of_draws_exact_tail(sizes, draws, zeros, top, signs, tilted):
    """The saddlepoint tail of a sum of genes drawn independently from sources of integer terms
    (uniform or with unequal probabilities, some zero) is within 10% of the exact tail (the draws'
    distributions convolved) from 1e-3 down to 1e-6, and at 1e-8 with equal probabilities (unequal
    ones make lumpier sums: within 30% there; the kernel equals test_null's scipy reference)."""
    rng = np.random.default_rng(len(sizes))
    pops, probs = [], []
    for size in sizes:
        v = rng.integers(1, top, size).astype(np.float64)
        v[rng.random(size) < zeros] = 0.0
        pops.append(v)
        p = rng.exponential(size=size) * (rng.random(size) > 0.1) if tilted else np.ones(size)
        probs.append(p / p.sum())
    pmf, offset = np.ones(1), 0
    for v, p, n, sign in zip(pops, probs, draws, signs):
        terms = (sign * v).astype(np.int64)
        one = np.bincount(terms - terms.min(), weights=p)
        for _ in range(n):
            pmf, offset = np.convolve(pmf, one), offset + terms.min()
    survival = np.cumsum(pmf[::-1])[::-1]  # P(S >= offset + j)
    for level in (1e-3, 1e-4, 1e-6, 1e-8):
        j = int(np.argmax(survival <= level))
        p = _tail(offset + j, pops, draws, signs, probs)
        rel = 0.3 if tilted and level < 1e-6 else 0.1
        assert p == pytest.approx(survival[j], rel=rel), (level, p, survival[j])


@pytest.mark.parametrize("t", [0.003, 0.05, 0.4, 40.0])
def test_tail_cumulants_with_shared_exponentials_equal_the_per_slot_ones(t):
    """The tail's K(t) and its derivatives are the same (to rounding) whether a run of slots of one
    weight shares each value's exponential or every slot computes its own; at t = 40 the run's
    exponents span more than one scale allows and the shared runs fall back to per-slot scales."""
    rng = np.random.default_rng(7)
    pops = []
    for size in (60, 50, 40, 30):
        v = rng.integers(1, 30, size).astype(np.float64)
        v[rng.random(size) < 0.4] = 0.0
        pops.append(v)
    pops[3][:] = rng.integers(1, 30, pops[3].size)  # a bin without zeros: its slots have no zero mass
    probs = []
    for v in pops:
        p = rng.exponential(size=v.size) * (rng.random(v.size) > 0.2)
        probs.append(p / p.sum())
    draws, cw = [8, 6, 5, 4], [0.5, 0.5, -0.25, 1.0]  # two bins in one run of weight 0.5; a down part
    slot_cw, slot_source, source_bins, source_base, source_n, source_prob, gene_pos = _sources(pops, draws, cw, probs)
    ptr, val, val_gene = _bucketed(pops)
    lo, hi = 0, slot_cw.size
    x, p, at_val, el_ptr, zero = nulls._gather_sources(
        lo, hi, slot_cw, slot_source, source_bins, source_base, source_n, source_prob, gene_pos, ptr, val, val_gene
    )
    runs = nulls._shared_runs(lo, hi, slot_cw, slot_source, source_bins, ptr, el_ptr)
    first, v_lo, v_hi, run_cw, shared = runs
    np.testing.assert_array_equal(first, [0, 14, 19, 23])
    np.testing.assert_array_equal(run_cw, [0.5, -0.25, 1.0])
    assert shared.all()
    powers = np.empty((val.size, 4))
    got = nulls._tilted(t, x, p, at_val, el_ptr, zero, runs, val, powers)
    own = nulls._tilted(t, x, p, at_val, el_ptr, zero, (first, v_lo, v_hi, run_cw, np.zeros_like(shared)), val, powers)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, own, rtol=1e-11, atol=1e-11 * abs(own[0]))


def test_saddlepoint_tail_at_the_largest_sum_below_the_mean_and_without_spread():
    """At (or beyond) the largest sum a random set can reach: the probability of drawing only the
    largest terms; capped at 1 / (n_null + 1); -1 (the caller's moment tail) where no tail exists."""
    pops = [np.array([0.0, 0.0, 2.0, 5.0]), np.array([1.0, 3.0, 3.0, 0.0, 0.0])]
    draws, cw = [2, 1], [1.0, 1.0]
    top = 2 * 5.0 + 3.0
    assert _tail(top, pops, draws, cw) == pytest.approx((1 / 4) ** 2 * 2 / 5)
    assert _tail(top + 1, pops, draws, cw) == pytest.approx(1 / 40)
    assert _tail(top, pops, draws, cw, n_null=9) == pytest.approx(1 / 40)  # < 1/10
    assert _tail(top, pops, draws, cw, n_null=99) == pytest.approx(1 / 100)  # cap
    assert _tail(1.0, pops, draws, cw) == -1.0  # below the mean 5.2
    # unequal probabilities: the largest sum's chance is its genes' probability; a gene of
    # probability 0 is never drawn, whatever its term
    probs = [np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.0, 0.5, 0.25, 0.25, 0.0])]
    assert _tail(top, pops, draws, cw, probs) == pytest.approx(0.4**2 * 0.75)
    probs_no_top = [np.array([0.5, 0.0, 0.5, 0.0]), probs[1]]  # the 5 cannot be drawn: the largest sum is 2 + 2 + 3
    assert _tail(7.0, pops, draws, cw, probs_no_top) == pytest.approx(0.5**2 * 0.75)
    # a zero weight adds nothing, whatever its bin holds
    pops3 = [*pops, np.array([0.0, 4.0, 9.0])]
    for x in (top, 9.0):
        assert _tail(x, pops3, [2, 1, 2], [1.0, 1.0, 0.0]) == _tail(x, pops, draws, cw)
    assert _tail(1.0, [np.zeros(4), np.zeros(5)], draws, cw) == -1.0  # nothing varies
    # a source whose genes are all non-zero has no zero mass (not 1 - sum, which rounds)
    full = [np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0])]
    assert _tail(3.0 + 4.0, full, [1, 1], [1.0, 1.0], [np.full(3, 0.1) / 0.3, np.full(2, 0.5)]) == pytest.approx(1 / 6)
    # between the mean and the largest sum: decreasing, inside (0, 1)
    ps = [_tail(x, pops, draws, cw) for x in (7.0, 9.0, 11.0, 12.5)]
    assert all(0 < p < 1 for p in ps) and ps == sorted(ps, reverse=True)


@pytest.mark.parametrize("seed", range(6))
def test_tilt_to_mean_is_the_exponential_family_member_with_the_given_mean(seed):
    """tilt_to_mean's probabilities are proportional to prior x exp(a v) for one a (log p - log prior
    linear in v) and have mean ``center``; at the smallest or largest value, the values equal to it
    share them in proportion to the prior."""
    rng = np.random.default_rng(seed)
    v = np.sort(rng.lognormal(0, 2, 40))
    v[5:8] = v[5]  # ties
    out = np.empty(v.size)
    for log_prior in (np.zeros(v.size), -0.5 * ((np.arange(v.size) - 17) / 6.0) ** 2):
        for center in (v[1], v[5], np.median(v), v[-2], 0.5 * (v[-1] + v[-2]), v.mean()):
            nulls.tilt_to_mean(v, center, log_prior, out)
            assert out.sum() == pytest.approx(1.0) and out @ v == pytest.approx(center, rel=1e-9, abs=1e-12 * v.max())
            kept = out > 1e-250  # a steep tilt underflows far from the center
            log_ratio = np.log(out[kept]) - log_prior[kept]
            slope = np.polyfit(v[kept], log_ratio, 1)
            np.testing.assert_allclose(
                log_ratio, np.polyval(slope, v[kept]), atol=1e-6 * max(np.abs(log_ratio).max(), 1.0)
            )
        for edge in (v == v[0], v == v[-1]):
            nulls.tilt_to_mean(v, v[edge][0], log_prior, out)
            np.testing.assert_allclose(out, edge * np.exp(log_prior) / (edge * np.exp(log_prior)).sum())
    nulls.tilt_to_mean(v, v.mean(), np.zeros(v.size), out)
    np.testing.assert_allclose(out, 1 / v.size)  # already the mean, flat prior: uniform
    nulls.tilt_to_mean(np.full(4, 2.0), 2.0, np.array([0.0, 0.0, np.log(2), 0.0]), out[:4])  # all equal: the prior
    np.testing.assert_allclose(out[:4], [0.2, 0.2, 0.4, 0.2])


def test_every_cached_kernel_saves_and_loads_under_the_cache_lock():
    """numba's cache index is a read-modify-write: every kernel module wraps its dispatchers' cache in
    an OS file lock (see _kernels/caching.py), so processes compiling at once cannot interleave it."""
    import importlib

    unlocked = []
    for name in ("convert", "linear", "nulls", "ranks", "scan"):
        module = importlib.import_module(f"immunescape._kernels.{name}")
        for attr, obj in vars(module).items():
            cache = getattr(obj, "_cache", None)
            if (
                cache is not None
                and hasattr(cache, "save_overload")
                and not getattr(cache, "immunescape_locked", False)
            ):
                unlocked.append(f"{name}.{attr}")
    assert unlocked == []


def test_cache_lock_excludes_a_second_holder(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    from immunescape._kernels.caching import LOCK_NAME, cache_lock

    def try_exclusive() -> bool:
        fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    with cache_lock(str(tmp_path), exclusive=True) as held:
        assert held and not try_exclusive()  # a save in progress: nobody else may save or load
    with cache_lock(str(tmp_path), exclusive=False) as held:
        assert held and not try_exclusive()  # loads share, saves wait
    assert try_exclusive()
    (tmp_path / "file.txt").touch()
    with cache_lock(str(tmp_path / "file.txt" / "below"), exclusive=True) as held:  # no folder can be made there
        assert held is False  # the kernel still runs, unlocked
