"""``ucell``: UCell as pyUCell 0.8 (Mann-Whitney U of the signature genes' ranks, capped at max_rank)."""

from __future__ import annotations

import numpy as np

from .._chunks import Chunk
from .._errors import InputError
from .._kernels import ranks
from .._null import NullStatistic
from .common import genes_per_part, missing_counts, n_blocks, null_args, rank_null_sets, split_sets
from .registry import GeneStats, Method, NullOut, NullSpec, Plan, register


def null_statistic(
    k_part: np.ndarray, up_missing: np.ndarray, dn_missing: np.ndarray, max_rank: int, w_neg: float
) -> NullStatistic:
    """U of a part is ``1 - (rank sum + missing * max_rank - s_min) / (s_max - s_min)``: affine in the
    sum of the rank terms (rank - max_rank) with the row shift max_rank; up minus ``w_neg`` times
    down, clipped at 0. Missing genes count as max_rank ("impute"), as in the score."""
    n_sig = k_part.shape[0]
    c0, coef = np.zeros(n_sig), np.zeros((n_sig, 2))
    top = np.float64(max_rank)
    for s in range(n_sig):
        parts = (
            (int(k_part[s, 0]), np.float64(up_missing[s]), 1.0),
            (int(k_part[s, 1]), np.float64(dn_missing[s]), -np.float64(w_neg)),
        )
        for part, (k, missing, sign) in enumerate(parts):
            length = k + missing
            span = length * top - length * (length + 1) / 2.0
            if length == 0 or span == 0:
                continue
            coef[s, part] = -sign / span
            c0[s] += sign * (1.0 - (missing * top - length * (length + 1) / 2.0) / span)
    return NullStatistic(c0=c0, coef=coef, floor=0.0)


def prepare(resolved, stats: GeneStats, params, random_state, null: NullSpec | None = None) -> Plan:
    max_rank = params["max_rank"]
    if not (isinstance(max_rank, (int, np.integer)) and max_rank > 0):
        raise InputError(f"max_rank must be a positive integer, got {max_rank!r}.")
    if params["missing_genes"] not in ("impute", "skip"):
        raise InputError("missing_genes must be 'impute' (count as max_rank, as pyUCell) or 'skip'.")
    sets = split_sets(resolved)
    up_miss, dn_miss = missing_counts(resolved)
    if params["missing_genes"] == "skip":
        up_miss, dn_miss = np.zeros_like(up_miss), np.zeros_like(dn_miss)
    w_neg = float(params["w_neg"])
    statistic = null_statistic(genes_per_part(sets), up_miss, dn_miss, max_rank, w_neg) if null is not None else None
    null_sets = rank_null_sets(null, resolved, stats, sets, np.ones(stats.n_genes, bool), random_state, statistic)

    def run(chunk: Chunk, out: np.ndarray, null_out: NullOut | None = None) -> None:
        ranks.ucell(
            chunk.rows,
            stats.n_genes,
            max(chunk.max_nnz, 1),
            sets,
            up_miss,
            dn_miss,
            int(max_rank),
            w_neg,
            n_blocks(chunk),
            out,
            *null_args(null_sets, chunk, null_out),
        )

    return Plan(run=run, null=null_sets)


register(
    Method(
        name="ucell",
        description="Mann-Whitney U statistic of the signature genes' ranks within each cell, capped at max_rank",
        equals="pyUCell 0.8 compute_ucell_scores (ties averaged; zeros and missing genes at max_rank)",
        reference="Andreatta & Carmona, Comput Struct Biotechnol J 2021, doi:10.1016/j.csbj.2021.06.043",
        params={"max_rank": 1500, "w_neg": 1.0, "missing_genes": "impute"},
        rules={"max_rank": ("int", 1), "w_neg": ("number", 0), "missing_genes": ("str", ("impute", "skip"))},
        needs=("unique_entries",),
        signed="up score minus w_neg * down score, clipped at 0 (UCell's +/- sets)",
        weighted=False,
        expects_log=False,
        value_range="[0, 1]",
        prepare=prepare,
    )
)
