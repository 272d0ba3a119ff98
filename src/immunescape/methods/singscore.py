"""``singscore``: singscore (R) simpleScore, the centred mean rank of up and down sets."""

from __future__ import annotations

import numpy as np

from .._chunks import Chunk
from .._kernels import ranks
from .._null import NullStatistic
from .common import genes_per_part, n_blocks, null_args, rank_null_sets, split_sets
from .registry import GeneStats, Method, NullOut, NullSpec, Plan, register


def null_statistic(k_part: np.ndarray, n_genes: int, center: bool) -> NullStatistic:
    """Each part's mean rank scaled by its bounds ``(k + 1) / 2`` and ``(2N - k + 1) / 2`` (the down part
    as 1 minus that), centred: affine in the sums of the rank terms. No genes: undefined (NaN)."""
    n_sig = k_part.shape[0]
    c0, coef = np.zeros(n_sig), np.zeros((n_sig, 2))
    n, centre = np.float64(n_genes), (0.5 if center else 0.0)
    for s in range(n_sig):
        k_up, k_dn = (int(x) for x in k_part[s])
        if k_up == 0 and k_dn == 0:
            c0[s] = np.nan
        for part, k in enumerate((k_up, k_dn)):
            if k == 0:
                continue
            low, high = (k + 1) / 2.0, (2.0 * n - k + 1) / 2.0
            sign = 1.0 if part == 0 else -1.0
            coef[s, part] = sign / (k * (high - low))
            c0[s] += -sign * low / (high - low) + (1.0 if part == 1 else 0.0) - centre
    return NullStatistic(c0=c0, coef=coef)


def prepare(resolved, stats: GeneStats, params, random_state, null: NullSpec | None = None) -> Plan:
    sets = split_sets(resolved)
    center = bool(params["center"])
    statistic = null_statistic(genes_per_part(sets), stats.n_genes, center)
    null_sets = rank_null_sets(null, resolved, stats, sets, np.ones(stats.n_genes, bool), random_state, statistic)

    def run(chunk: Chunk, out: np.ndarray, null_out: NullOut | None = None) -> None:
        ranks.singscore(
            chunk.rows,
            stats.n_genes,
            max(chunk.max_nnz, 1),
            sets,
            center,
            n_blocks(chunk),
            out,
            *null_args(null_sets, chunk, null_out),
        )

    return Plan(run=run, null=null_sets)


register(
    Method(
        name="singscore",
        description="Mean rank of the signature genes scaled by its theoretical bounds, up and down sets",
        equals="singscore (R) simpleScore(rankGenes(x), upSet, downSet) TotalScore, known direction",
        reference="Foroutan et al., BMC Bioinformatics 2018, doi:10.1186/s12859-018-2435-4",
        params={"center": True},
        needs=("unique_entries",),
        signed="up score plus (1 - down score), as singscore",
        weighted=False,
        expects_log=False,
        value_range="[-1, 1] signed, [-0.5, 0.5] up only (centred)",
        prepare=prepare,
    )
)
