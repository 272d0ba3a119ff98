"""``aucell``: AUCell as decoupler 2.x (area under the recovery curve within each cell's top ranks)."""

from __future__ import annotations

import math

import numpy as np

from .._chunks import Chunk
from .._errors import InputError
from .._kernels import ranks
from .._kernels.types import NO_NULL
from .._null import NullStatistic
from .common import genes_per_part, n_blocks, null_args, rank_null_sets, ranked_genes, split_sets
from .registry import GeneStats, Method, NullOut, NullSpec, Plan, register


def null_statistic(k_part: np.ndarray, up_max: np.ndarray, dn_max: np.ndarray) -> NullStatistic:
    """The score is each part's recovery-curve area over its largest possible area, up minus down:
    affine in the sums of the (tie-averaged) area terms."""
    n_sig = k_part.shape[0]
    coef = np.zeros((n_sig, 2))
    for s in range(n_sig):
        coef[s, 0] = 1.0 / up_max[s] if up_max[s] > 0 else 0.0
        coef[s, 1] = -1.0 / dn_max[s] if (k_part[s, 1] > 0 and dn_max[s] > 0) else 0.0
    return NullStatistic(c0=np.zeros(n_sig), coef=coef)


def prepare(resolved, stats: GeneStats, params, random_state, null: NullSpec | None = None) -> Plan:
    ranked = ranked_genes(stats, params["drop_empty_genes"])
    n_ranked = int(ranked.sum())
    if n_ranked < 2:
        raise InputError("AUCell needs at least two genes with non-zero values.")
    n_up = params["n_up"]
    if n_up is None:
        n_up = int(np.clip(math.ceil(0.05 * n_ranked), 2, n_ranked))
    else:
        n_up = int(math.ceil(n_up))
    if not 1 < n_up <= n_ranked:
        raise InputError(f"n_up must be between 2 and the number of ranked genes ({n_ranked}), got {params['n_up']!r}.")
    # decoupler shuffles the (non-empty) features once with default_rng(0) to break ties
    features = np.flatnonzero(ranked)
    shuffled = np.random.default_rng(random_state).choice(np.arange(n_ranked), n_ranked, replace=False)
    position = np.full(stats.n_genes, -1, np.int64)
    position[features[shuffled]] = np.arange(n_ranked)
    gene_at = features[shuffled].astype(np.int64)  # inverse: the gene at each position
    sets = split_sets(resolved, keep=ranked)
    up_ptr, up_idx, dn_ptr, dn_idx = sets

    def max_auc(ptr):
        k = np.minimum(np.diff(ptr), n_up - 1)
        return np.asarray([n_up * kk - kk * (kk + 1) / 2 for kk in k], np.float64)

    up_max, dn_max = max_auc(up_ptr), max_auc(dn_ptr)
    has_down = bool(dn_idx.size)
    statistic = null_statistic(genes_per_part(sets), up_max, dn_max)
    null_sets = rank_null_sets(null, resolved, stats, sets, ranked, random_state, statistic)

    def run(chunk: Chunk, out: np.ndarray, null_out: NullOut | None = None) -> None:
        ranking = (chunk.rows, stats.n_genes, max(chunk.max_nnz, 1), position, gene_at, n_ranked)
        ranks.aucell(
            *ranking, up_ptr, up_idx, up_max, n_up, n_blocks(chunk), out, *null_args(null_sets, chunk, null_out)
        )
        if has_down:
            down = np.empty_like(out)
            ranks.aucell(*ranking, dn_ptr, dn_idx, dn_max, n_up, n_blocks(chunk), down, *NO_NULL)
            out -= down

    return Plan(run=run, null=null_sets, details={"n_up": n_up, "n_ranked_genes": n_ranked})


register(
    Method(
        name="aucell",
        description="Area under the recovery curve of the signature genes within each cell's top n_up ranks",
        equals="decoupler 2.x mt.aucell (ordinal ranks, ties broken by decoupler's seeded shuffle; n_up = 5% of genes)",
        reference="Aibar et al., Nat Methods 2017, doi:10.1038/nmeth.4463",
        params={"n_up": None, "drop_empty_genes": True},
        rules={"n_up": ("optional int", 2)},
        needs=("nonempty", "unique_entries"),
        signed="AUC(up) minus AUC(down)",
        weighted=False,
        expects_log=False,
        value_range="[0, 1]",
        prepare=prepare,
    )
)
