"""Significance against matched random gene sets (score(..., null="matched")): exactness against an
explicit re-scoring of the null sets, calibration (also of the analytic null), power, determinism,
storage and bad input."""

from __future__ import annotations

import dataclasses

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

import immunescape as ie
from immunescape._engine import gene_stats as _scan
from immunescape._errors import InputError
from immunescape._kernels.nulls import TIE_TOLERANCE, moment_tail, uniform
from immunescape._null import benjamini_hochberg, expression_bins
from immunescape.genes import resolve
from immunescape.methods import NullSpec, get_method, method_names
from immunescape.signatures import load

from ._synthetic import library_scale, synthetic

# from the registry, so a new method is tested without editing these lists
LINEAR_METHODS = method_names(null="analytic")
RANK_METHODS = [m for m in method_names(chunked=True) if m not in LINEAR_METHODS]
ALL_METHODS = [*RANK_METHODS, *LINEAR_METHODS]


def _plan(adata, sigs, method, n_null, random_state=0, **params):
    """The method's plan with null sets, built as score_matrix builds it."""
    m = get_method(method)
    resolved = resolve(load(sigs), adata.var_names, min_coverage=0)
    stats_ = _scan(adata.X, dataclasses.replace(m, needs=(*m.needs, "null_means")))
    return resolved, m.prepare(resolved, stats_, m.check_params(params), random_state, NullSpec(n_null, m.null_bins))


def _null_signatures(adata, resolved, plan, s, n_missing=(0, 0)):
    """Signature ``s``'s null sets as explicit Signature objects (weights as the method used them)."""
    slot_gene, (run_ptr, run_lo, run_hi, run_w, run_part) = plan.null.slot_gene, plan.null.runs
    names = np.asarray(adata.var_names)
    out = []
    for k in range(slot_gene.shape[0]):
        up, dn, weights = [], [], {}
        for r in range(run_ptr[s], run_ptr[s + 1]):
            genes = names[slot_gene[k, run_lo[r] : run_hi[r]]].tolist()
            (up if run_part[r] == 0 and run_w[r] > 0 else dn).extend(genes)
            weights.update(dict.fromkeys(genes, float(run_w[r]) if run_part[r] == 0 else -1.0))
        up += [f"ABSENT{i}" for i in range(n_missing[0])]  # missing genes count as in the signature (UCell)
        dn += [f"ABSENTDN{i}" for i in range(n_missing[1])]
        out.append(ie.Signature(f"null{k}", tuple(up), tuple(dn)))
    return out, weights


def _gene_terms(method, X):
    """Each gene's term in each row (rows x genes), from the methods' definitions: what a null score
    sums (times each gene's weight and coefficient) - rank methods on data without ties for AUCell."""
    if method == "wmean":
        return X.astype(np.float64)
    if method == "singscore":  # ascending ranks, ties at their minimum
        return np.vstack([stats.rankdata(x, "min") for x in X])
    if method == "ucell":  # descending ranks of the non-zero values (ties averaged), capped; zeros at the cap
        top = 1500.0  # the default max_rank
        out = np.full(X.shape, top)
        for i, x in enumerate(X):
            nz = x != 0
            r = stats.rankdata(-x[nz])
            out[i, nz] = np.where(r <= top, r, top)
        return out
    if method == "aucell":  # tie-free: n_up - descending rank within the top n_up, else 0
        n_up = int(np.clip(np.ceil(0.05 * X.shape[1]), 2, X.shape[1]))
        r = np.vstack([stats.rankdata(-x) for x in X])
        return np.where(r <= n_up, n_up - r, 0.0)
    raise AssertionError(method)


def _saddlepoint_reference(populations, x):
    """P(S >= x), S the sum of one independent draw from each population (values, probabilities): the
    Lugannani-Rice formula solved with scipy's brentq; at the largest reachable sum, the
    probability of drawing it."""
    from scipy import optimize

    populations = [(v[p > 0], p[p > 0] / p.sum()) for v, p in populations]

    def cumulants(t):
        k0 = k1 = k2 = 0.0
        for v, p in populations:
            a = t * v
            w = p * np.exp(a - a.max())
            mean = (v * w).sum() / w.sum()
            k0 += a.max() + np.log(w.sum())
            k1 += mean
            k2 += (v * v * w).sum() / w.sum() - mean**2
        return k0, k1, k2

    s_max = sum(v.max() for v, _ in populations)
    if x >= s_max - 1e-12 * (1 + abs(s_max)):
        return float(np.prod([p[v == v.max()].sum() for v, p in populations]))
    hi = 1.0
    while cumulants(hi)[1] < x:
        hi *= 2
    t = optimize.brentq(lambda t: cumulants(t)[1] - x, 0.0, hi, xtol=1e-300, rtol=1e-15)
    k0, _, k2 = cumulants(t)
    w, u = np.sqrt(2 * (t * x - k0)), t * np.sqrt(k2)
    return float(stats.norm.sf(w) + stats.norm.pdf(w) * (1 / u - 1 / w))


def _source(bundle, u):
    """Source ``u``'s genes (those of its bins) and their probabilities, as documented."""
    b0, b1 = bundle.source_bins[u]
    genes = np.flatnonzero((bundle.bin_of >= b0) & (bundle.bin_of < b1))
    return genes, bundle.source_prob[bundle.source_base[u] + bundle.gene_pos[genes]]


def _tail_reference(terms, bundle, s):
    """The saddlepoint tail of signature ``s`` in each row from the rows' gene ``terms``: each of its
    slots draws one gene from its source (genes and probabilities), times the slot's weight x
    coefficient, as documented."""
    slots = range(bundle.slot_ptr[s], bundle.slot_ptr[s + 1])
    sources = [_source(bundle, bundle.slot_source[q]) for q in slots]

    def tail(i, observed, n_null):
        tail.rows += 1
        pops = [(bundle.slot_cw[q] * terms[i, g], p) for q, (g, p) in zip(slots, sources)]
        return min(_saddlepoint_reference(pops, observed - bundle.c0[s]), 1 / (n_null + 1))

    tail.rows = 0  # how many rows it was asked for: a test of the tail must see some
    return tail


def _reference(observed, null_scores, n_null, seed, rows, tail=None):
    """z and p from explicit null scores (n_cells x n_null), as documented: randomised empirical, and
    beyond every null score the saddlepoint tail (``tail(row, observed, n_null)``, as
    :func:`_tail_reference` computes it) or, for ratio statistics, the moment tail (tested on its own
    in test_kernels.py)."""
    d = null_scores - observed[:, None]
    tol = TIE_TOLERANCE * (1 + np.abs(observed))[:, None]
    above = (d > tol).sum(1)
    tied = (np.abs(d) <= tol).sum(1)
    u = np.asarray([uniform(seed, r, rows[1]) for r in rows[0]])
    p = (above + u * (tied + 1)) / (n_null + 1)
    for i in np.flatnonzero((above == 0) & (tied == 0) & np.isfinite(observed)):
        if tail is not None:
            p[i] = tail(rows[0][i], float(observed[i]), n_null)
            continue
        moment = moment_tail(np.ascontiguousarray(null_scores[i], dtype=np.float64), float(observed[i]), n_null)
        p[i] = moment if moment >= 0 else p[i]
    d = np.where(np.abs(d) <= tol, 0.0, d)
    sd = d.std(1, ddof=1)
    spread = sd > 1e-12 * np.sqrt((d**2).mean(1))  # above rounding noise
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(spread, -d.mean(1) / sd, np.where(d.mean(1) == 0, 0.0, np.nan))  # all null sets equal: 0 if tied
    return z, p


def _tie_free(adata):
    """The same data made dense and positive with distinct values: no ties, no zeros."""
    X = adata.X.toarray().astype(np.float64) + np.random.default_rng(0).uniform(0.01, 0.02, adata.shape)
    return ad.AnnData(X, obs=adata.obs.copy(), var=adata.var.copy())


@pytest.mark.parametrize(
    "n_genes", [300, 200], ids=["sorted", "counted"]
)  # rank kernels count rows of at most ranks.MAX_GROUPS distinct values (AUCell radix-sorts them)
@pytest.mark.parametrize("method", [*RANK_METHODS, "wmean", "gsva"])
def test_null_equals_explicit_rescoring_of_the_null_sets(method, n_genes):
    """Every null score the kernel tallies equals the method's own score of that random set.

    AUCell and ssGSEA average tied ranks for their null (the scores break ties in a fixed gene
    order); on data without ties the two agree, which is where they are compared."""
    if n_genes == 200 and method in ("wmean", "gsva"):
        pytest.skip("no ranks")
    adata, sets = synthetic(seed=3, n_cells=120, n_genes=n_genes)
    if method in ("aucell", "ssgsea"):
        adata = _tie_free(adata)
    sigs = {
        "small": sets["s0"],
        "signed": {"up": sets["s1"], "down": [g for g in sets["s2"] if g not in sets["s1"]][:7]},
        "absent": sets["with_absent_gene"],
    }
    n_null = 30
    resolved, plan = _plan(adata, sigs, method, n_null)
    X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    terms = _gene_terms(method, X) if method in ("ucell", "singscore", "aucell", "wmean") else None
    tail_rows = 0
    res = ie.tl.score(adata, sigs, method=method, null="matched", n_null=n_null, min_coverage=0, inplace=False)
    for s, name in enumerate(resolved.names):
        missing = (0, 0)
        if method == "ucell":
            row = resolved.coverage.loc[name]
            missing = (len(set(filter(None, row["missing"].split(";"))) & set(resolved.signatures[s].genes_up)), 0)
        null_sigs, _ = _null_signatures(adata, resolved, plan, s, missing)
        null_scores = ie.tl.score(adata, null_sigs, method=method, min_coverage=0, inplace=False).to_numpy()
        observed = res["score"][name].to_numpy()
        tail = None
        if terms is not None:
            tail = _tail_reference(terms, plan.null.bundle, s)
        z, p = _reference(observed, null_scores, n_null, plan.null.seed, (np.arange(adata.n_obs), s), tail)
        # rtol: the kernel solves the saddlepoint equation to 1e-7 of the null's sd (the tail rows)
        np.testing.assert_allclose(res["pval"][name], p, rtol=1e-7, atol=1e-12, err_msg=f"{method} {name}")
        finite = np.isfinite(z)
        np.testing.assert_allclose(res["z"][name][finite], z[finite], rtol=1e-6, atol=1e-9)
        tail_rows += tail.rows if tail is not None else 0
    if terms is not None and not (method == "aucell" and n_genes == 200):  # AUCell's top 10 of 200 genes: ties
        assert tail_rows > 0  # the saddlepoint tail was compared somewhere


def test_weighted_signature_null_keeps_the_weights():
    """wmean's null sets carry the signature's weights onto bin-matched random genes."""
    adata, sets = synthetic(seed=4, n_cells=80, n_genes=300)
    genes = sets["s1"]
    sig = ie.Signature(
        "weighted",
        tuple(genes[:8]),
        tuple(genes[8:]),
        weights={**{g: 0.5 + i for i, g in enumerate(genes[:8])}, **dict.fromkeys(genes[8:], -2.0)},
    )
    n_null = 25
    resolved, plan = _plan(adata, [sig], "wmean", n_null)
    slot_gene, (run_ptr, run_lo, run_hi, run_w, _) = plan.null.slot_gene, plan.null.runs
    X = adata.X.toarray().astype(np.float64)
    null_scores = np.stack(
        [
            sum(run_w[r] * X[:, slot_gene[k, run_lo[r] : run_hi[r]]].sum(1) for r in range(run_ptr[0], run_ptr[1]))
            for k in range(n_null)
        ],
        axis=1,
    )
    np.testing.assert_array_equal(
        np.unique(run_w), np.unique(plan.null.weights[0])
    )  # each weight carried to random genes
    assert np.unique(run_w).size >= 6
    res = ie.tl.score(adata, [sig], method="wmean", null="matched", n_null=n_null, min_coverage=0, inplace=False)
    observed = X[:, plan.null.genes[0]] @ plan.null.weights[0]
    tail = _tail_reference(X, plan.null.bundle, 0)
    z, p = _reference(observed, null_scores, n_null, plan.null.seed, (np.arange(adata.n_obs), 0), tail)
    np.testing.assert_allclose(res["pval"]["weighted"], p, rtol=1e-7)
    assert tail.rows > 0


def test_mean_null_compares_signature_genes_with_random_genes():
    """For scanpy's score the control term is common to the signature and its null sets and cancels."""
    adata, sets = synthetic(seed=5, n_cells=90, n_genes=300)
    n_null = 20
    resolved, plan = _plan(adata, {"a": sets["s1"]}, "mean", n_null)
    slot_gene, (run_ptr, run_lo, run_hi, run_w, _) = plan.null.slot_gene, plan.null.runs
    X = adata.X.toarray().astype(np.float64)
    null_scores = np.stack(
        [
            sum(run_w[r] * X[:, slot_gene[k, run_lo[r] : run_hi[r]]].sum(1) for r in range(run_ptr[0], run_ptr[1]))
            for k in range(n_null)
        ],
        axis=1,
    )
    observed = X[:, resolved.positions[0]].mean(1)
    res = ie.tl.score(adata, {"a": sets["s1"]}, method="mean", null="matched", n_null=n_null, inplace=False)
    tail = _tail_reference(X, plan.null.bundle, 0)
    z, p = _reference(observed, null_scores, n_null, plan.null.seed, (np.arange(adata.n_obs), 0), tail)
    np.testing.assert_allclose(res["pval"]["a"], p, rtol=1e-7)
    assert tail.rows > 0
    np.testing.assert_allclose(res["z"]["a"], z, rtol=1e-6)


def test_zmean_null_equals_wmean_null():
    """zmean is a positive affine map of wmean within each cell: same p-values and z-scores."""
    adata, sets = synthetic(seed=6, n_cells=100)
    sigs = {k: sets[k] for k in ("s0", "s1", "s2")}
    a = ie.tl.score(adata, sigs, method="wmean", null="matched", n_null=40, inplace=False)
    b = ie.tl.score(adata, sigs, method="zmean", null="matched", n_null=40, inplace=False)
    pd.testing.assert_frame_equal(a["pval"], b["pval"])


# ------------------------------------------------------------------------------- calibration and power
def _counts(seed: int, n_cells: int, n_genes: int) -> np.ndarray:
    """Poisson counts with gene-specific means spread over three orders of magnitude."""
    rng = np.random.default_rng(seed)
    gene_rate = np.exp(rng.normal(-1.5, 1.5, n_genes))
    size = rng.lognormal(0, 0.3, (n_cells, 1))
    return rng.poisson(gene_rate * size).astype(np.float64)


def _lognorm(counts: np.ndarray) -> ad.AnnData:
    X = np.log1p(counts / np.maximum(counts.sum(1, keepdims=True), 1) * 1e4)
    n_cells, n_genes = X.shape
    return ad.AnnData(
        sp.csr_matrix(X.astype(np.float32)),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]),
        var=pd.DataFrame(index=[f"G{i}" for i in range(n_genes)]),
    )


def _permuted_within_cells(seed: int, n_cells: int = 600, n_genes: int = 1500) -> ad.AnnData:
    """No signal: each cell's values shuffled across genes, so every gene set is a random one."""
    counts = _counts(seed, n_cells, n_genes)
    rng = np.random.default_rng(seed + 100)
    return _lognorm(rng.permuted(counts, axis=1))


@pytest.mark.parametrize(
    ("method", "null"), [(m, "matched") for m in ALL_METHODS] + [(m, "analytic") for m in LINEAR_METHODS]
)
def test_pvalues_are_uniform_for_random_signatures(method, null):
    """Real-like data, a different random signature (5-40 genes, some signed) for each cell: the
    p-values are uniform (KS), for every method. One p per signature keeps them independent. The
    analytic null's p is an approximation (Edgeworth): over all cells and signatures its tails also
    hold their nominal rates."""
    adata = _lognorm(_counts(11, 400, 1500))
    rng = np.random.default_rng(12)
    genes = np.asarray(adata.var_names)
    sigs = {}
    for j in range(400):
        picked = rng.choice(genes, rng.integers(5, 41), replace=False)
        sigs[f"r{j}"] = (
            {"up": list(picked[: len(picked) * 2 // 3]), "down": list(picked[len(picked) * 2 // 3 :])}
            if j % 4 == 0
            else list(picked)
        )
    res = ie.tl.score(adata, sigs, method=method, null=null, n_null=100, min_coverage=0, inplace=False)
    p = res["pval"].to_numpy()[np.arange(400), np.arange(400)]
    assert stats.kstest(p, "uniform").pvalue > 0.01, method
    assert abs(np.nanmean(res["z"].to_numpy()[np.arange(400), np.arange(400)])) < 0.2
    if null == "analytic":
        for alpha in (0.05, 0.01):
            rate = (res["pval"].to_numpy() < alpha).mean()
            assert 0.75 * alpha < rate < 1.25 * alpha, (method, alpha, rate)


def test_gsva_pvalues_are_uniform_for_random_signatures():
    """GSVA (gseapy) scores its random sets in the same call: calibrated like the others (smaller
    data: gseapy walks every random set in every sample)."""
    adata = _lognorm(_counts(13, 150, 600))
    rng = np.random.default_rng(14)
    genes = np.asarray(adata.var_names)
    sigs = {f"r{j}": list(rng.choice(genes, rng.integers(5, 31), replace=False)) for j in range(150)}
    res = ie.tl.score(adata, sigs, method="gsva", null="matched", n_null=40, min_coverage=0, inplace=False)
    assert stats.kstest(res["pval"].to_numpy()[np.arange(150), np.arange(150)], "uniform").pvalue > 0.01


@pytest.mark.parametrize(
    ("method", "null"),
    [(m, "matched") for m in ["ucell", "aucell", "singscore", *LINEAR_METHODS]]
    + [(m, "analytic") for m in LINEAR_METHODS],
)
def test_pvalues_are_uniform_across_cells_when_genes_are_permuted_within_cells(method, null):
    """Genes shuffled within each cell: a fixed signature's p-values over cells are uniform.
    (Not ssGSEA: as gseapy, it orders a cell's zeros by gene position, so a fixed gene set carries the
    same position bias in every cell; its calibration holds over random signatures, tested above.)"""
    adata = _permuted_within_cells(21)
    rng = np.random.default_rng(22)
    genes = np.asarray(adata.var_names)
    sigs = {
        "small": list(rng.choice(genes, 8, replace=False)),
        "large": list(rng.choice(genes, 60, replace=False)),
        "signed": {
            "up": list(rng.choice(genes, 20, replace=False)),
            "down": list(rng.choice(genes, 10, replace=False)),
        },
    }
    res = ie.tl.score(adata, sigs, method=method, null=null, n_null=100, min_coverage=0, inplace=False)
    for name in sigs:
        assert stats.kstest(res["pval"][name], "uniform").pvalue > 0.01, (method, name)


def planted_programme():
    """450 cells; 25 genes raised in a known third of them. Returns the data, the planted signature
    with four random ones, and the cells where it is active."""
    counts = _counts(31, 450, 1500)
    rng = np.random.default_rng(32)
    planted_genes = rng.choice(1500, 25, replace=False)
    active = np.zeros(450, bool)
    active[rng.choice(450, 150, replace=False)] = True
    counts[np.ix_(active, planted_genes)] += rng.poisson(6.0, (active.sum(), planted_genes.size))
    adata = _lognorm(counts)
    genes = np.asarray(adata.var_names)
    sigs = {"planted": list(genes[planted_genes])}
    sigs.update({f"random{j}": list(rng.choice(genes, 25, replace=False)) for j in range(4)})
    return adata, sigs, active


@pytest.mark.parametrize("method", [*ALL_METHODS, "gsva"])
def test_planted_signature_is_detected_at_fdr_005(method):
    """A programme raised in a known third of the cells is found there (BH within each cell over the
    planted and four random signatures) with high sensitivity and few false positives."""
    adata, sigs, active = planted_programme()
    res = ie.tl.score(adata, sigs, method=method, null="matched", n_null=200, min_coverage=0, inplace=False)
    hit = res["padj"]["planted"].to_numpy() < 0.05
    sensitivity, false_rate = hit[active].mean(), hit[~active].mean()
    assert sensitivity > 0.9, (method, sensitivity)
    assert false_rate < 0.1, (method, false_rate)
    random_hits = (res["padj"].drop(columns="planted").to_numpy() < 0.05).mean()
    assert random_hits < 0.05, (method, random_hits)


# ------------------------------------------------------------------------------- significance at library scale
def _library_scale_rates(res, active):
    p, padj = res["pval"], res["padj"]
    random = [c for c in p.columns if c.startswith("random")]
    return {
        "pooled5": (p[random] < 0.05).to_numpy().mean(),
        "pooled1": (p[random] < 0.01).to_numpy().mean(),
        "below_bound": (p[random] < 1e-3).to_numpy().mean(),  # below 1/(n_null + 1): the fitted tail
        "worst5": (p[random] < 0.05).mean().max(),
        "found": (padj["planted"][active] < 0.05).mean(),
        "false_planted": (padj["planted"][~active] < 0.05).mean(),
        "false_random": (padj[random] < 0.05).to_numpy().mean(),
        "smallest": p["planted"][active].min(),
    }


# Issue 17's scenario (tests/_synthetic.library_scale, seed 7; the default bins were chosen on seeds
# 100-101). A measured shortfall: singscore finds fewer planted cells (its mean rank over all genes
# dilutes 30 raised genes: 0.77-0.86 on seeds 7, 100-105; 0.78 on seed 7 even with n_null=10,000, so
# the statistic, not the null, is the limit), so it is not held to the 90% target here.
FOUND = {"ucell": 0.9, "mean": 0.9, "aucell": 0.9, "singscore": 0.8}


@pytest.mark.slow
@pytest.mark.parametrize("method", list(FOUND))
def test_tail_pvalues_find_planted_cells_among_12_random_signatures(method):
    """n_null=100 and 13 signatures: BH per cell needs p <= 0.05/13 < 1/(n_null + 1) for a first
    rejection, which only the fitted tail gives. Random sets keep their nominal rates."""
    adata, sets, active, _ = library_scale(seed=7)
    res = ie.tl.score(adata, sets, method=method, null="matched", n_null=100, min_coverage=0, inplace=False)
    r = _library_scale_rates(res, active)
    assert r["found"] >= FOUND[method], r
    assert r["false_planted"] <= 0.01 and r["false_random"] <= 0.01, r
    assert 0.04 <= r["pooled5"] <= 0.06 and 0.007 <= r["pooled1"] <= 0.013, r
    assert r["below_bound"] <= 2e-3, r  # the tail below 1/(n_null + 1): near nominal, not anti-conservative
    assert r["smallest"] < 1e-4, r  # far below the empirical bound 1/101
    assert r["worst5"] <= 0.08, r  # no fixed random set is called far more often than the level (tilted matching)


@pytest.mark.slow
@pytest.mark.parametrize("method", list(FOUND))
def test_tail_pvalues_find_planted_cells_beside_the_immune_escape_collection(method):
    """The whole immune_escape collection scored beside the planted and the random sets (40 signatures:
    BH needs p <= 0.00125 for a first rejection, which only the saddlepoint tail gives at n_null=100).
    Measured on this seed: 0.96 (ucell), 0.97 (mean), 0.95 (aucell), 0.77 (singscore); the moment tail
    of the null scores before it found 0.94, 0.96, 0.90, 0.71. On other seeds AUCell finds as few as
    0.30 - and no more than 0.45 with n_null=10,000: its planted genes rarely reach its top 5%
    (benchmarks/RESULTS_null_calibration.md)."""
    adata, sets, active, _ = library_scale(seed=7, library_genes=True)
    sets = {**sets, **{sig.name: sig for sig in ie.signatures.collection("immune_escape")}}
    res = ie.tl.score(adata, sets, method=method, null="matched", n_null=100, min_coverage=0, inplace=False)
    assert res["pval"].shape[1] == 40
    r = _library_scale_rates(res, active)
    assert r["found"] >= FOUND[method] - 0.05 and r["false_planted"] <= 0.01 and r["false_random"] <= 0.01, r


@pytest.mark.slow
@pytest.mark.parametrize("method", list(FOUND))
def test_tail_pvalues_are_calibrated_far_below_the_empirical_bound(method):
    """Random signatures (40 per data set, 4 data sets: 320,000 p-values): p <= 1e-3 and <= 1e-4, which
    only the saddlepoint tail reaches at n_null=100, happen at most about as often as nominal - and not
    far less often, which would cost power. Measured with tilted matching: 0.61-0.82x nominal at 1e-3
    (aucell the lowest), 0.37-0.94x at 1e-4 (about 30 expected); with uniform draws within bins it
    was 0.87-0.94x and 0.53-1.09x."""
    n, at3, at4 = 0, 0, 0
    for seed in (100, 101, 102, 103):
        adata, sets, _, _ = library_scale(seed=seed, n_random=40)
        p = ie.tl.score(adata, sets, method=method, null="matched", n_null=100, min_coverage=0, inplace=False)["pval"]
        p = p[[c for c in p.columns if c.startswith("random")]].to_numpy()
        n, at3, at4 = n + p.size, at3 + (p <= 1e-3).sum(), at4 + (p <= 1e-4).sum()
    assert 0.6 <= at3 / n / 1e-3 <= 1.2, (at3, n)
    assert at4 / n / 1e-4 <= 1.6, (at4, n)


@pytest.mark.slow
@pytest.mark.parametrize("method", list(FOUND))
def test_random_set_pvalues_do_not_follow_sequencing_depth(method):
    """Cells spanning a 10-fold depth range: a random set's p-values do not correlate with the cell's
    total counts (|Spearman| < 0.1). Tilted matching met it for every method on 7 seeds (largest
    0.086); uniform draws within bins reached 0.15 for mean and aucell (a set holding top genes, above
    their bin-mates in mean: benchmarks/RESULTS_null_calibration.md)."""
    adata, sets, _, total = library_scale(seed=7, depth_range=10.0)
    res = ie.tl.score(adata, sets, method=method, null="matched", n_null=100, min_coverage=0, inplace=False)
    random = [c for c in res["pval"].columns if c.startswith("random")]
    rho = [stats.spearmanr(res["pval"][c], total).correlation for c in random]
    assert np.max(np.abs(rho)) < 0.1, (method, np.round(rho, 3))


def test_adjust_chooses_the_axis_of_benjamini_hochberg(tmp_path):
    """adjust="signatures" (default): each cell over its signatures; adjust="cells": each signature over
    the cells, as ie.tl.adjust_pvalues(across="cells"); recorded in uns; the CLI offers both."""
    adata, sets = synthetic(seed=6, n_cells=120, n_genes=300)
    sigs = {"a": sets["s1"], "b": sets["s2"], "c": sets["s0"]}
    per_cell = ie.tl.score(adata, sigs, null="matched", n_null=30, min_coverage=0, inplace=False)
    per_signature = ie.tl.score(adata, sigs, null="matched", n_null=30, min_coverage=0, inplace=False, adjust="cells")
    pd.testing.assert_frame_equal(per_cell["pval"], per_signature["pval"])
    pd.testing.assert_frame_equal(per_cell["padj"], ie.tl.adjust_pvalues(per_cell["pval"], across="signatures"))
    pd.testing.assert_frame_equal(per_signature["padj"], ie.tl.adjust_pvalues(per_cell["pval"], across="cells"))
    assert not np.allclose(per_cell["padj"], per_signature["padj"])
    ie.tl.score(adata, sigs, null="matched", n_null=30, min_coverage=0, adjust="cells", key_added="k")
    assert "across the cells of each signature" in adata.uns["k"]["details"]["null"]["adjustment"]
    with pytest.raises(ie.InputError, match="adjust must be one of"):
        ie.tl.score(adata, sigs, null="matched", adjust="genes")
    from immunescape.cli import main

    path, sets_file, out = tmp_path / "x.h5ad", tmp_path / "s.yaml", tmp_path / "p.h5ad"
    adata.write_h5ad(path)
    ie.signatures.to_yaml(sigs, sets_file)
    args = ["-q", "score", str(path), "-s", str(sets_file), "--null", "matched", "--n-null", "30", "--adjust", "cells"]
    assert main([*args, "--min-coverage", "0", "-o", str(out)]) == 0
    written = ie.io.read_h5ad(out)
    np.testing.assert_allclose(written.obsm["immunescape_padj"], per_signature["padj"].to_numpy())


# ------------------------------------------------------------------------------- determinism and storage
@pytest.mark.parametrize("method", ["ucell", "ssgsea", "wmean", "aucell"])
def test_same_seed_same_pvalues_whatever_chunks_and_threads(method):
    adata, sets = synthetic(seed=7, n_cells=150)
    sigs = {k: sets[k] for k in ("s0", "s1", "s3")}
    base = ie.tl.score(
        adata, sigs, method=method, null="matched", n_null=50, null_bins=10, random_state=3, inplace=False
    )
    other = ie.tl.score(
        adata,
        sigs,
        method=method,
        null="matched",
        n_null=50,
        null_bins=10,
        random_state=3,
        chunk_size=7,
        n_jobs=1,
        inplace=False,
    )
    for a, b in zip(base.values(), other.values()):
        pd.testing.assert_frame_equal(a, b)
    changed = ie.tl.score(
        adata, sigs, method=method, null="matched", n_null=50, null_bins=10, random_state=4, inplace=False
    )
    assert not np.allclose(base["pval"], changed["pval"])
    if method != "aucell":  # aucell's tie-breaking order depends on random_state too
        pd.testing.assert_frame_equal(base["score"], changed["score"])


@pytest.mark.parametrize("method", ["ucell", "wmean"])
def test_backed_and_dask_give_the_in_memory_pvalues(tmp_path, method):
    """The null's expression bins come from float64 gene sums added row after row on every path
    (scanpy's in-memory means accumulate in float32, which streamed data cannot repeat)."""
    import dask.array as da

    adata, sets = synthetic(seed=8, n_cells=130)
    sigs = {k: sets[k] for k in ("s0", "s2")}
    memory = ie.tl.score(adata, sigs, method=method, null="matched", n_null=40, inplace=False)
    path = tmp_path / "x.h5ad"
    adata.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    on_disk = ie.tl.score(backed, sigs, method=method, null="matched", n_null=40, chunk_size=50, inplace=False)
    lazy = adata.copy()
    lazy.X = da.from_array(adata.X.toarray(), chunks=(40, -1))
    in_dask = ie.tl.score(lazy, sigs, method=method, null="matched", n_null=40, inplace=False)
    for other in (on_disk, in_dask):
        for a, b in zip(memory.values(), other.values()):
            pd.testing.assert_frame_equal(a, b)


def test_results_are_stored_next_to_the_scores():
    adata, sets = synthetic(seed=9, n_cells=60)
    ie.tl.score(adata, {"a": sets["s1"], "b": sets["s2"]}, method="ucell", null="matched", n_null=30, key_added="esc")
    for suffix in ("", "_z", "_pval", "_padj"):
        assert list(adata.obsm["esc" + suffix].columns) == ["a", "b"]
    np.testing.assert_allclose(adata.obsm["esc_padj"], benjamini_hochberg(adata.obsm["esc_pval"].to_numpy()))
    record = adata.uns["esc"]["details"]["null"]
    assert record["n_null"] == 30 and record["null_bins"] == "auto" and "Benjamini" in record["adjustment"]
    p = adata.obsm["esc_pval"].to_numpy()
    assert ((p > 0) & (p <= 1)).all()
    assert "esc_pval" not in adata.obsm or "esc_a_pval" not in adata.obs  # obs gets the scores only


def test_benjamini_hochberg_leaves_undefined_pvalues_out():
    """Per row (one cell's signatures): NaN p-values stay NaN and do not count as tests; ties and an
    all-NaN row are handled; equal to scipy on the defined ones."""
    rng = np.random.default_rng(40)
    p = rng.random((50, 12))
    p[rng.random(p.shape) < 0.2] = np.nan
    p[3] = np.nan
    p[4, :6] = 0.02
    adjusted = benjamini_hochberg(p)
    for row, adj in zip(p, adjusted):
        defined = np.isfinite(row)
        np.testing.assert_array_equal(np.isfinite(adj), defined)
        if defined.any():
            np.testing.assert_allclose(adj[defined], stats.false_discovery_control(row[defined]), rtol=1e-12)
    np.testing.assert_allclose(benjamini_hochberg(p.T, axis=0), adjusted.T)


def test_dataframe_input_returns_the_four_tables():
    adata, sets = synthetic(seed=10, n_cells=40, dense=True)
    frame = adata.to_df()
    res = ie.tl.score(frame, {"a": sets["s1"]}, method="singscore", null="matched", n_null=20)
    assert list(res) == ["score", "z", "pval", "padj"]
    assert all(isinstance(t, pd.DataFrame) and t.shape == (40, 1) for t in res.values())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"null": "permuted"}, "null must be None or one of"),
        ({"null": "matched", "n_null": 1}, "n_null must be an integer >= 2"),
        ({"null": "matched", "null_bins": 1}, "null_bins must be an integer >= 2"),
    ],
)
def test_bad_null_arguments_get_clear_errors(kwargs, message):
    adata, sets = synthetic(seed=11, n_cells=30)
    with pytest.raises(InputError, match=message):
        ie.tl.score(adata, {"a": sets["s1"]}, **{"method": "ucell", **kwargs})


def test_a_last_bin_of_one_gene_joins_the_bin_before():
    """scanpy's rank // size bins leave the remainder in a last bin, often the single most expressed
    gene; the null merges it so that a signature holding that gene can still be matched."""
    adata = _lognorm(_counts(15, 50, 600))
    top = adata.var_names[np.argmax(np.asarray(adata.X.mean(0)).ravel())]
    scanpy_bins = expression_bins(np.asarray(adata.X.mean(0)).ravel(), np.arange(600), 25)[1]
    assert np.sum(scanpy_bins == scanpy_bins.max()) == 1  # the case at hand
    sig = [top, *adata.var_names[:4]]
    res = ie.tl.score(adata, {"top": sig}, method="ucell", null="matched", n_null=20, inplace=False)
    assert np.isfinite(res["pval"].to_numpy()).all()


def test_signature_holding_most_of_the_gene_pool_is_refused_with_advice():
    adata, sets = synthetic(seed=12, n_cells=30, n_genes=100)
    with pytest.raises(InputError, match="holds 77 of the 100 genes.*without a null"):
        ie.tl.score(adata, {"big": list(adata.var_names[3:80])}, method="ucell", null="matched", null_bins=30)


def test_default_bins_match_each_gene_with_its_nearest_genes_in_mean_expression():
    from immunescape._null import null_bins

    for n_genes, n_bins in ((4000, 200), (20000, 200), (1000, 50)):  # 200 quantiles, at least 20 genes each
        means = np.random.default_rng(0).lognormal(0, 1.5, n_genes)
        bins = null_bins(means, np.ones(n_genes, bool), None, ["s"], [np.arange(10)])
        sizes = np.asarray([m.size for m in bins.members])
        assert len(sizes) == n_bins and sizes.min() >= 0.9 * n_genes / n_bins and sizes.max() <= 1.6 * n_genes / n_bins
        assert all(means[a].max() <= means[b].min() for a, b in zip(bins.members, bins.members[1:]))  # ordered
        assert bins.details["null_bins"] == "auto" and bins.details["n_bins_used"] == n_bins


def _null_sets_on(means, signature_genes, n_null, random_state=0):
    from immunescape._null import build_null_sets

    genes = [np.asarray(g, np.int64) for g in signature_genes]
    return build_null_sets(
        [f"s{i}" for i in range(len(genes))],
        genes,
        [np.ones(g.size) for g in genes],
        [np.zeros(g.size, np.int64) for g in genes],
        means=means,
        pool=np.ones(means.size, bool),
        n_null=n_null,
        n_bins=None,
        random_state=random_state,
    )


def test_null_sets_draw_each_gene_from_its_tilted_source():
    """Each slot's gene comes from its source: the genes of the signature gene's bin and the two beside
    it, at the documented probabilities (frequencies over 4,000 sets; falling with the distance in
    rank, tilted by exp(a x mean)), whose expected mean expression is the signature gene's own -
    uniform draws from its bin would miss it where the bin is wide."""
    rng = np.random.default_rng(5)
    means = np.sort(rng.lognormal(-1, 1.5, 2000))
    sig = np.arange(30, 2000, 200)  # one gene per bin region: their sources do not overlap
    null = _null_sets_on(means, [sig], 4000)
    bundle = null.bundle
    assert null.details["matching"].startswith("tilted")
    m32 = means.astype(np.float32).astype(np.float64)
    uniform_miss = []
    for q, g in enumerate(sig):
        src = bundle.slot_source[q]
        genes, prob = _source(bundle, src)
        b = bundle.bin_of[g]
        assert set(np.unique(bundle.bin_of[genes])) == set(range(max(b - 1, 0), min(b + 2, bundle.bin_size.size)))
        assert prob @ m32[genes] == pytest.approx(m32[g], rel=1e-9)  # the expected mean is the gene's
        # nearer genes weigh more: log p = a x mean - (rank distance / half the gene's bin)^2 / 2 + const
        rank = np.lexsort((genes, m32[genes], bundle.bin_of[genes])).argsort()
        distance = rank - rank[genes == g][0]
        log_ratio = np.log(prob) + 0.5 * (distance / (0.5 * bundle.bin_size[b])) ** 2
        fit = np.polyfit(m32[genes], log_ratio, 1)
        np.testing.assert_allclose(log_ratio, np.polyval(fit, m32[genes]), atol=1e-6 * np.abs(log_ratio).max())
        drawn = np.bincount(np.searchsorted(genes, null.slot_gene[:, q]), minlength=genes.size) / 4000
        assert np.all(np.isin(null.slot_gene[:, q], genes))
        assert np.abs(drawn - prob).max() < 4 * np.sqrt(prob.max() / 4000) + 1e-3
        own_bin = np.flatnonzero(bundle.bin_of == b)
        uniform_miss.append(abs(m32[own_bin].mean() - m32[g]) / m32[own_bin].std())
    assert max(uniform_miss) > 0.3  # the case the tilt is for: some gene far from its bin's mean


def test_null_sets_keep_each_sets_genes_distinct_where_sources_crowd():
    """A signature of the most expressed genes: their sources overlap and concentrate on the top genes
    (the most expressed gene can only draw itself), yet every null set holds distinct genes, each
    from the pool, and the same seed gives the same sets."""
    rng = np.random.default_rng(6)
    means = np.sort(rng.lognormal(-1, 1.5, 1000))
    sigs = [np.arange(985, 1000), np.arange(400, 1000, 60), np.arange(995, 1000)]
    null = _null_sets_on(means, sigs, 300)
    for lo, hi in zip(null.bundle.slot_ptr[:-1], null.bundle.slot_ptr[1:]):
        block = np.sort(null.slot_gene[:, lo:hi], axis=1)
        assert not (block[:, 1:] == block[:, :-1]).any()
    assert null.slot_gene.min() >= 0 and null.slot_gene.max() < 1000
    assert np.all(null.slot_gene[:, null.bundle.slot_ptr[2]] >= 900)  # the top gene's stand-ins stay at the top
    np.testing.assert_array_equal(_null_sets_on(means, sigs, 300).slot_gene, null.slot_gene)


def test_a_repeat_no_redraw_can_resolve_takes_the_sources_remaining_genes_or_the_nearest_free_one():
    """Where a source keeps drawing a gene the set already holds (almost all its probability there),
    the repeat is drawn from the source's other genes, renormalised; where the source has none left,
    it takes the free gene nearest in the pool's order."""
    from immunescape._null import TiltedSources

    sources = TiltedSources(
        gene_pos=np.arange(6),
        pool_order=np.arange(6),
        bin_start=np.array([0, 3, 6]),
        slot_source=np.array([0, 0, 1]),
        bins=np.array([[0, 1], [0, 2]]),
        base=np.array([0, 3]),
        n=np.array([3, 6]),
        prob=np.array([1.0, 0.0, 0.0, 1 - 1e-12, 0.0, 0.0, 0.0, 1e-12, 0.0]),
    )
    sets = sources.draw(np.random.default_rng(0), 4, np.array([0, 3]))
    np.testing.assert_array_equal(sets, np.tile([0, 1, 4], (4, 1)))


def test_a_crowded_bin_joins_its_nearer_neighbour_instead_of_refusing():
    """A signature holding more than half of a bin (here 30 genes adjacent in mean expression) would
    see its own genes in most random sets: that bin merges with its neighbours until the signature
    holds at most half of it; other bins keep their size."""
    from immunescape._null import null_bins

    means = np.arange(600, dtype=float)
    crowd = np.arange(300, 330)
    bins = null_bins(means, np.ones(600, bool), None, ["crowd", "spread"], [crowd, np.arange(0, 600, 40)])
    for m in bins.members:
        assert 2 * np.isin(m, crowd).sum() <= m.size
        assert np.all(np.diff(np.sort(m)) == 1)  # still runs of neighbours in mean expression
    assert bins.details["bins_merged"] >= 2 and max(m.size for m in bins.members) <= 80
    assert {m.size for m in bins.members if not np.isin(m, crowd).any()} <= {19, 20, 21}  # rank // 20
    adata = _lognorm(_counts(16, 40, 600))
    order = np.argsort(np.asarray(adata.X.mean(0)).ravel())
    res = ie.tl.score(
        adata,
        {"crowd": list(adata.var_names[order[300:330]])},
        method="ucell",
        null="matched",
        n_null=20,
        inplace=False,
    )
    assert np.isfinite(res["pval"].to_numpy()).all() and adata.n_vars == 600


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gene_means_for_scores_and_null_from_one_pass_equal_their_own_computations(dtype):
    # mean with a null needs scanpy's gene means (its control bins) and the null's float64 means; one
    # read of the matrix gives both, bit for bit, also with rows whose genes are not sorted
    from immunescape._engine.values import gene_stats, scanpy_gene_means, streamed_gene_means
    from immunescape.methods import get_method

    rng = np.random.default_rng(3)
    X = sp.random(400, 300, density=0.2, format="csr", random_state=4, dtype=dtype)
    X.data = np.log1p(rng.poisson(3.0, X.nnz) * 1000.0 / 7).astype(dtype)
    X.indices = X.indices.copy()
    X.indices[: X.indptr[1]] = X.indices[: X.indptr[1]][::-1]  # an unsorted row
    X.has_sorted_indices = False
    method = dataclasses.replace(get_method("mean"), needs=("means", "null_means"))
    stats = gene_stats(X, method)
    assert np.array_equal(stats.means, scanpy_gene_means(X))
    assert np.array_equal(stats.null_means, streamed_gene_means(X))
