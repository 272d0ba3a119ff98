"""Every method equals its reference implementation on the same input (max abs difference <= 1e-5).

Peers come from the ``test`` extra: scanpy, pyucell, decoupler, gseapy. singscore has no Python
peer; it is checked against a plain transcription of the R package's code (DavisLaboratory/singscore,
R/rankAndScoring.R) written here with scipy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from scipy.stats import rankdata

import immunescape as ie

from ._synthetic import synthetic

TOL = 1e-5


def _pbmc_case():
    pbmc = sc.datasets.pbmc68k_reduced()
    adata = sc.AnnData(pbmc.raw.X.copy(), obs=pbmc.obs[[]], var=pbmc.raw.var[[]])
    sets = {}
    for sig in ie.signatures.load("immune_escape,bagaev2021_NK_cells,bagaev2021_T_cells,bagaev2021_B_cells"):
        genes = [g for g in sig.genes if g in adata.var_names]
        if len(genes) >= 5:
            sets[sig.name] = genes
    return adata, sets


CASES = {
    "pbmc68k_raw": _pbmc_case,
    "sparse": lambda: synthetic(0),
    "dense": lambda: synthetic(1, dense=True),
    "csc": lambda: synthetic(2, fmt="csc"),
    "float64": lambda: synthetic(3, dtype=np.float64),  # values not exact in float32: the kernels' two-sort path
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    adata, sets = CASES[request.param]()
    assert len(sets) >= 4
    return request.param, adata, sets


def ours(adata, sets, method, **kw):
    return ie.tl.score(adata, sets, method=method, inplace=False, min_coverage=0, **kw)


def _present(adata, genes):
    return [g for g in genes if g in adata.var_names]


def test_mean_equals_scanpy_score_genes(case):
    _, adata, sets = case
    # a pool of every other gene plus the signatures' own: scanpy refuses list genes outside its pool
    pool = list(dict.fromkeys([*adata.var_names[::2], *(g for genes in sets.values() for g in _present(adata, genes))]))
    for kwargs in (
        {},
        {"ctrl_size": 20, "n_bins": 10, "random_state": 7},
        {"ctrl_as_ref": False},
        {"gene_pool": pool, "ctrl_as_ref": False},
    ):
        got = ours(adata, sets, "mean", **kwargs)
        for name, genes in sets.items():
            ref = sc.tl.score_genes(adata, _present(adata, genes), score_name="ref", copy=True, **kwargs).obs["ref"]
            assert np.abs(ref.to_numpy() - got[name].to_numpy()).max() <= 1e-6, (name, kwargs)


def test_ucell_equals_pyucell(case):
    pyucell = pytest.importorskip("pyucell")
    _, adata, sets = case
    for kwargs in ({}, {"max_rank": 50}):
        ref = adata.copy()
        pyucell.compute_ucell_scores(ref, sets, n_jobs=1, **kwargs)
        got = ours(adata, sets, "ucell", **kwargs)
        for name in sets:
            assert np.abs(ref.obs[f"{name}_UCell"].to_numpy() - got[name].to_numpy()).max() <= TOL, name


def test_signed_ucell_equals_pyucell(case):
    pyucell = pytest.importorskip("pyucell")
    _, adata, sets = case
    names = list(sets)
    signed = {"mixed": [f"{g}+" for g in sets[names[0]]] + [f"{g}-" for g in sets[names[1]] if g not in sets[names[0]]]}
    ref = adata.copy()
    pyucell.compute_ucell_scores(ref, signed, n_jobs=1, w_neg=0.5)
    mine = {"mixed": {"up": sets[names[0]], "down": [g for g in sets[names[1]] if g not in sets[names[0]]]}}
    got = ours(adata, mine, "ucell", w_neg=0.5)
    assert np.abs(ref.obs["mixed_UCell"].to_numpy() - got["mixed"].to_numpy()).max() <= TOL


def _net(sets):
    net = pd.DataFrame([(k, g) for k, v in sets.items() for g in v], columns=["source", "target"])
    net["weight"] = 1.0
    return net


def _decoupler_scores(fn, adata, net_or_sets, key, **kw):
    """decoupler writes into the object, or returns a repaired copy when it drops all-zero cells."""
    net = net_or_sets if isinstance(net_or_sets, pd.DataFrame) else _net(net_or_sets)
    target = adata.copy()
    result = fn(target, net, tmin=0, **kw)
    return (result if result is not None else target).obsm[key]


def test_aucell_equals_decoupler(case):
    dc = pytest.importorskip("decoupler")
    _, adata, sets = case
    sets = {k: [g for g in v if g in adata.var_names] for k, v in sets.items()}
    for kwargs in ({}, {"n_up": 40}):
        ref = _decoupler_scores(dc.mt.aucell, adata, sets, "score_aucell", **kwargs)
        got = ours(adata, sets, "aucell", **kwargs).loc[ref.index, ref.columns]
        assert np.abs(ref.to_numpy() - got.to_numpy()).max() <= TOL


def test_wmean_and_zmean_equal_decoupler(case):
    dc = pytest.importorskip("decoupler")
    _, adata, sets = case
    sets = {k: [g for g in v if g in adata.var_names] for k, v in sets.items()}
    ref = _decoupler_scores(dc.mt.waggr, adata, sets, "score_waggr", fun="wmean", times=0)
    got = ours(adata, sets, "wmean").loc[ref.index, ref.columns]
    assert np.abs(ref.to_numpy() - got.to_numpy()).max() <= TOL
    for flavor in ("RoKAI", "KSEA"):
        ref = _decoupler_scores(dc.mt.zscore, adata, sets, "score_zscore", flavor=flavor)
        got = ours(adata, sets, "zmean", flavor=flavor).loc[ref.index, ref.columns]
        assert np.abs(ref.to_numpy() - got.to_numpy()).max() <= TOL, flavor


def test_weighted_signature_equals_decoupler_with_weights():
    dc = pytest.importorskip("decoupler")
    adata, sets = synthetic(4)
    rng = np.random.default_rng(0)
    net = pd.DataFrame([("w", g, float(rng.normal())) for g in sets["s3"]], columns=["source", "target", "weight"])
    ref = _decoupler_scores(dc.mt.waggr, adata, net, "score_waggr", fun="wmean", times=0)
    got = ours(adata, net, "wmean").loc[ref.index]
    assert np.abs(ref["w"].to_numpy() - got["w"].to_numpy()).max() <= TOL


@pytest.mark.parametrize("sample_norm", ["rank", None])
def test_ssgsea_equals_gseapy(case, sample_norm):
    gseapy = pytest.importorskip("gseapy")
    _, adata, sets = case
    sub = adata[:40].copy()
    X = sub.X.toarray() if sp.issparse(sub.X) else np.asarray(sub.X)
    frame = pd.DataFrame(X.T, index=sub.var_names, columns=sub.obs_names)
    res = gseapy.ssgsea(frame, sets, sample_norm_method=sample_norm, min_size=1, outdir=None, threads=1).res2d
    for column, normalize in (("ES", False), ("NES", True)):
        ref = res.pivot(index="Name", columns="Term", values=column).astype(float)
        got = ours(sub, sets, "ssgsea", sample_norm=sample_norm, normalize=normalize).loc[ref.index, ref.columns]
        defined = ref.notna().to_numpy()  # gseapy gives NaN (0/0) when every set gene is zero with the raw metric
        assert defined.mean() > 0.5
        if column == "ES" or defined.all():
            assert np.abs(ref.to_numpy()[defined] - got.to_numpy()[defined]).max() <= TOL


def _singscore_reference(X, genes_up, genes_down=None, center=True):
    """Plain transcription of singscore's simpleScore for dense X (cells x genes), known direction."""
    ranks = np.apply_along_axis(lambda r: rankdata(r, method="min"), 1, X)  # rankGenes: ties.method = "min"
    n = X.shape[1]

    def part(idx):
        k = len(idx)
        low, high = (k + 1) / 2, (2 * n - k + 1) / 2
        return (ranks[:, idx].mean(axis=1) - low) / (high - low)

    offset = -0.5 if center else 0.0
    score = part(genes_up) + offset
    if genes_down is not None:
        score = score + (1 - part(genes_down)) + offset
    return score


def test_singscore_equals_the_r_definition(case):
    _, adata, sets = case
    X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    names = list(sets)
    got = ours(adata, sets, "singscore")
    for name, genes in sets.items():
        idx = [adata.var_names.get_loc(g) for g in genes if g in adata.var_names]
        assert np.abs(_singscore_reference(X, idx) - got[name].to_numpy()).max() <= 1e-10
    up, down = sets[names[0]], [g for g in sets[names[1]] if g not in sets[names[0]]]
    got = ours(adata, {"ud": {"up": up, "down": down}}, "singscore", center=False)["ud"].to_numpy()
    ref = _singscore_reference(
        X, [adata.var_names.get_loc(g) for g in up], [adata.var_names.get_loc(g) for g in down], center=False
    )
    assert np.abs(ref - got).max() <= 1e-10


def test_singscore_hand_computed_example():
    # 1 sample, 4 genes with values 3, 1, 2, 2 -> min ranks 4, 1, 2, 2; set {g0, g2}: mean rank 3,
    # bounds (2+1)/2 = 1.5 and (8-2+1)/2 = 3.5 -> (3 - 1.5) / 2 - 0.5 = 0.25
    frame = pd.DataFrame([[3.0, 1.0, 2.0, 2.0]], columns=["g0", "g1", "g2", "g3"], index=["s"])
    assert ie.tl.score(frame, {"x": ["g0", "g2"]}, method="singscore", min_coverage=0)["x"].iloc[0] == pytest.approx(
        0.25
    )
