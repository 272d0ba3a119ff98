"""Small synthetic expression data with the awkward cases: ties, all-zero cells and genes, absent genes."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp


def synthetic(
    seed: int = 0, n_cells: int = 300, n_genes: int = 400, dense: bool = False, fmt: str = "csr", dtype=np.float32
):
    rng = np.random.default_rng(seed)
    lam = rng.gamma(0.3, 2, (1, n_genes)) * rng.gamma(2, 0.5, (n_cells, 1))
    X = np.log1p(rng.poisson(lam)).astype(dtype)  # integer counts -> many tied values
    X[:5] = 0  # all-zero cells
    X[:, :3] = 0  # all-zero genes
    genes = [f"G{i}" for i in range(n_genes)]
    matrix = X if dense else (sp.csr_matrix(X) if fmt == "csr" else sp.csc_matrix(X))
    adata = ad.AnnData(matrix, obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]), var=pd.DataFrame(index=genes))
    sets = {f"s{k}": list(rng.choice(genes[3:], size=s, replace=False)) for k, s in enumerate([5, 12, 30, 60])}
    sets["with_empty_gene"] = sets["s1"][:6] + ["G0", "G1"]  # genes that are zero everywhere
    sets["with_absent_gene"] = sets["s2"][:8] + ["NOTHERE1", "NOTHERE2"]
    return adata, sets


def library_scale(
    seed: int = 0,
    n_cells: int = 2000,
    n_genes: int = 4000,
    n_random: int = 12,
    fold: float = 3.0,
    depth_range: float = 1.0,
    library_genes: bool = False,
):
    """Issue 17's scenario: Poisson counts (gene rates lognormal, cell depth log-uniform over
    ``depth_range``-fold), log1p(CP10k); ``n_random`` random signatures of 10-100 genes and one,
    ``planted`` (30 genes), whose genes' rates are ``fold`` times higher in 10% of the cells.

    With ``library_genes``, the first genes are named after the signature library's genes (so its
    collections can be scored beside; planted and random sets never use them).

    Returns (adata, signatures, planted cell mask, total counts per cell)."""
    rng = np.random.default_rng(seed)
    genes = np.asarray([f"G{i}" for i in range(n_genes)], dtype=object)
    if library_genes:  # the first genes carry the symbols of the signature library, so collections can be scored
        import immunescape as ie

        library = [s for s in ie.signatures.collection("all") if "tumour_intrinsic" not in s.meta["collections"]]
        symbols = sorted({g for sig in library for g in sig.genes})[: n_genes // 2]  # as before the pathways came
        genes[: len(symbols)] = symbols
    genes = genes.astype(str)
    rate = rng.lognormal(-1.0, 1.5, n_genes)
    depth = np.exp(rng.uniform(0, np.log(depth_range), n_cells)) if depth_range > 1 else np.ones(n_cells)
    pool = np.arange(n_genes // 2, n_genes) if library_genes else np.arange(n_genes)  # never the library's genes
    planted_genes = pool[rng.choice(pool.size, 30, replace=False)]
    active = rng.random(n_cells) < 0.10
    lam = depth[:, None] * rate[None, :]
    lam[np.ix_(active, planted_genes)] *= fold
    counts = rng.poisson(lam)
    total = counts.sum(1)
    X = np.log1p(counts / np.maximum(total, 1)[:, None] * 1e4).astype(np.float32)
    adata = ad.AnnData(
        sp.csr_matrix(X), obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]), var=pd.DataFrame(index=genes)
    )
    others = np.setdiff1d(pool, planted_genes)
    sizes = np.linspace(10, 100, n_random).astype(int)
    sets = {f"random{k}": list(genes[rng.choice(others, s, replace=False)]) for k, s in enumerate(sizes)}
    sets["planted"] = list(genes[planted_genes])
    return adata, sets, active, total
