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
