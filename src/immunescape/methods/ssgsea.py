"""``ssgsea``: single-sample GSEA as gseapy 1.x (GSVA's ssgsea without the final range normalisation)."""

from __future__ import annotations

import numpy as np

from .._chunks import Chunk
from .._errors import InputError
from .._kernels import ranks
from .._kernels.types import ES_RATIO
from .._null import NullStatistic
from .common import n_blocks, null_args, rank_null_sets, split_sets
from .registry import GeneStats, Method, NullOut, NullSpec, Plan, register

_SAMPLE_NORM = {"rank": 0, None: 1, "none": 1, "log_rank": 2, "log": 3}


def prepare(resolved, stats: GeneStats, params, random_state, null: NullSpec | None = None) -> Plan:
    if params["sample_norm"] not in _SAMPLE_NORM:
        raise InputError(
            f"sample_norm must be one of {[k for k in _SAMPLE_NORM if k != 'none']}, got {params['sample_norm']!r}."
        )
    mode = _SAMPLE_NORM[params["sample_norm"]]
    alpha = float(params["alpha"])
    sets = split_sets(resolved)
    up_ptr, up_idx, dn_ptr, dn_idx = sets
    if np.any(np.diff(up_ptr) >= stats.n_genes):
        raise InputError("ssGSEA needs fewer signature genes than genes in the data.")
    union = np.unique(np.concatenate([up_idx, dn_idx])).astype(np.int64)
    up_u = np.searchsorted(union, up_idx).astype(np.int64)
    dn_u = np.searchsorted(union, dn_idx).astype(np.int64)
    # the score is a ratio of sums (weights, weights x positions, positions), not affine in them
    statistic = NullStatistic(shape=ES_RATIO, n_genes=stats.n_genes)
    null_sets = rank_null_sets(null, resolved, stats, sets, np.ones(stats.n_genes, bool), random_state, statistic)

    def run(chunk: Chunk, out: np.ndarray, null_out: NullOut | None = None) -> None:
        ranks.ssgsea(
            chunk.rows,
            stats.n_genes,
            max(chunk.max_nnz, 1),
            sets,
            up_u,
            dn_u,
            union,
            mode,
            alpha,
            n_blocks(chunk),
            out,
            *null_args(null_sets, chunk, null_out),
        )

    def finish(scores: np.ndarray) -> np.ndarray:
        if not params["normalize"]:
            return scores
        span = np.nanmax(scores) - np.nanmin(scores)
        return scores / span if span > 0 else scores

    return Plan(run=run, finish=finish, null=null_sets)


register(
    Method(
        name="ssgsea",
        description="Single-sample GSEA: integral of the rank-weighted running sum (weights |metric|^alpha)",
        equals=(
            "gseapy.ssgsea ES (normalize=True: NES, i.e. GSVA's ssgsea.norm, divided by the range over all cells "
            "and sets)"
        ),
        reference="Barbie et al., Nature 2009, doi:10.1038/nature08460; Hanzelmann et al. 2013 (GSVA)",
        params={"alpha": 0.25, "sample_norm": "rank", "normalize": False},
        rules={"alpha": ("number", 0), "sample_norm": ("optional str", ("rank", "none", "log_rank", "log"))},
        needs=("unique_entries",),
        signed="ES(up) minus ES(down)",
        weighted=False,
        expects_log=False,
        value_range="(-1, 1) before normalisation",
        prepare=prepare,
    )
)
