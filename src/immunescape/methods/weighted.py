"""``wmean`` and ``zmean``: decoupler's weighted mean and z-score, for weighted signatures.

Both are linear in the row within a cell (zmean is a positive affine map of the weighted mean), so
both share the weighted mean's matched and analytic nulls.
"""

from __future__ import annotations

import numpy as np

from .._chunks import Chunk
from .._errors import InputError
from .._kernels import linear
from .common import linear_null_sets, linear_run, linear_weights, ranked_genes
from .registry import GeneStats, Method, NullOut, NullSpec, Plan, register


def weight_shares(weights: np.ndarray) -> np.ndarray:
    """``weights / sum(abs(weights))`` (all zero: unchanged), the weights wmean and zmean apply.

    Weights near the float64 limit, whose absolute sum overflows, are first divided by their largest
    magnitude: the shares do not depend on it (before, the infinite sum made every score 0).
    """
    w = np.asarray(weights, np.float64)
    total = np.abs(w).sum()
    if not np.isfinite(total):
        w = w / np.abs(w).max()
        total = np.abs(w).sum()
    return w / total if total > 0 else w


def weighted_columns(resolved, keep):
    """Each signature's kept genes and their weights over the sum of absolute weights."""
    genes, cols = [], []
    for pos, w in zip(resolved.positions, resolved.weights):
        mask = keep[pos]
        genes.append(pos[mask])
        cols.append(weight_shares(w[mask]))
    return genes, cols


def prepare_wmean(resolved, stats: GeneStats, params, random_state, null: NullSpec | None = None) -> Plan:
    keep = ranked_genes(stats, params["drop_empty_genes"])
    genes, cols = weighted_columns(resolved, keep)
    null_sets = linear_null_sets(null, resolved, stats, genes, cols, keep, random_state)
    return Plan(run=linear_run(linear_weights(cols, genes, stats.n_genes), null_sets, stats.n_genes), null=null_sets)


register(
    Method(
        name="wmean",
        description="Weighted mean: sum of weight x expression over the sum of absolute weights",
        equals="decoupler 2.x mt.waggr(fun='wmean', times=0)",
        reference="Badia-i-Mompel et al., Bioinformatics Advances 2022, doi:10.1093/bioadv/vbac016",
        params={"drop_empty_genes": True},
        needs=("nonempty",),
        signed="weights' signs (+1 up, -1 down without weights)",
        weighted=True,
        expects_log=True,
        value_range="(-inf, inf)",
        prepare=prepare_wmean,
        nulls=("matched", "analytic"),
    )
)


def prepare_zmean(resolved, stats: GeneStats, params, random_state, null: NullSpec | None = None) -> Plan:
    if params["flavor"] not in ("RoKAI", "KSEA"):
        raise InputError("flavor must be 'RoKAI' or 'KSEA' (as decoupler's zscore).")
    keep = ranked_genes(stats, params["drop_empty_genes"])
    genes, cols = weighted_columns(resolved, keep)
    # z is a positive affine map of the weighted mean within a row: its null p and z are the weighted mean's
    null_sets = linear_null_sets(null, resolved, stats, genes, cols, keep, random_state)
    weighted_mean = linear_run(linear_weights(cols, genes, stats.n_genes), null_sets, stats.n_genes)
    n_targets = np.sqrt(np.asarray([np.count_nonzero(c) for c in cols], np.float64))
    n_features = int(keep.sum())
    subtract_mean = (
        params["flavor"] == "RoKAI"
    )  # decoupler 2.2 subtracts the mean for RoKAI (its code, not its docstring)

    def run(chunk: Chunk, out: np.ndarray, null_out: NullOut | None = None) -> None:
        weighted_mean(chunk, out, null_out)
        n = chunk.r1 - chunk.r0
        mean, std = np.empty(n), np.empty(n)
        linear.csr_row_moments(chunk.rows, n_features, mean, std)
        centred = out - mean[:, None] if subtract_mean else out
        with np.errstate(divide="ignore", invalid="ignore"):
            z = centred * n_targets[None, :] / std[:, None]
        out[:] = np.where(std[:, None] > 0, z, 0.0)

    return Plan(run=run, null=null_sets)


register(
    Method(
        name="zmean",
        description="z-score of the weighted mean against the cell's own mean and standard deviation over all genes",
        equals="decoupler 2.x mt.zscore (flavor='RoKAI' default, 'KSEA')",
        reference="Yilmaz et al., Nat Commun 2021 (RoKAI), doi:10.1038/s41467-021-21211-6",
        params={"flavor": "RoKAI", "drop_empty_genes": True},
        rules={"flavor": ("str", ("RoKAI", "KSEA"))},
        needs=("nonempty",),
        signed="weights' signs (+1 up, -1 down without weights)",
        weighted=True,
        expects_log=True,
        value_range="(-inf, inf)",
        prepare=prepare_zmean,
        nulls=("matched", "analytic"),
    )
)
