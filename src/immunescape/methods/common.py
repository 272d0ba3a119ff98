"""What the method modules share: signature genes split by sign, the linear methods' sparse weights
and runner, null sets built as a method scores its genes, and the kernels' arguments for a chunk."""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
import scipy.sparse as sp

from .._chunks import Chunk
from .._kernels import linear, nulls
from .._kernels.types import NO_NULL, NullBundle, NullTables, SplitSets
from .._null import MomentNull, NullSets, NullStatistic, build_moment_null, build_null_sets
from ..genes import ResolvedSignatures
from .registry import GeneStats, NullOut, NullSpec


def split_sets(resolved: ResolvedSignatures, keep: np.ndarray | None = None) -> SplitSets:
    """Each signature's up genes and down genes (positions) as CSR-like arrays; ``keep`` masks genes."""
    up, dn = [], []
    for pos, w in zip(resolved.positions, resolved.weights):
        mask = np.ones(pos.shape, bool) if keep is None else keep[pos]
        up.append(pos[(w > 0) & mask])
        dn.append(pos[(w < 0) & mask])

    def pack(parts):
        ptr = np.zeros(len(parts) + 1, np.int64)
        ptr[1:] = np.cumsum([len(p) for p in parts])
        idx = np.concatenate(parts).astype(np.int64) if parts and ptr[-1] else np.zeros(0, np.int64)
        return ptr, idx

    return SplitSets(*pack(up), *pack(dn))


def n_blocks(chunk: Chunk) -> int:
    """Parallel blocks for a chunk: several per thread, so uneven rows balance out."""
    return max(1, min(chunk.r1 - chunk.r0, 8 * numba.get_num_threads()))


def null_args(null_sets: NullSets | None, chunk: Chunk, null_out: NullOut | None) -> tuple[NullBundle, NullTables]:
    """A kernel's last two arguments for a chunk: the null sets and where z and p go (none wanted: empty)."""
    if null_sets is None or null_out is None:
        return NO_NULL
    return null_sets.bundle, NullTables(chunk.start - chunk.r0, null_out[0], null_out[1])


def missing_counts(resolved: ResolvedSignatures) -> tuple[np.ndarray, np.ndarray]:
    """Each signature's up and down genes that the data lack."""
    up, dn = [], []
    for sig, (_, row) in zip(resolved.signatures, resolved.coverage.iterrows()):
        missing = set(filter(None, row["missing"].split(";")))
        up.append(len(missing & set(sig.genes_up)))
        dn.append(len(missing & set(sig.genes_down)))
    return np.asarray(up, np.int64), np.asarray(dn, np.int64)


def ranked_genes(stats: GeneStats, drop_empty: bool) -> np.ndarray:
    """The genes a method ranks or weighs: all, or (decoupler's rule) those non-zero in some row."""
    return stats.nonempty if drop_empty else np.ones(stats.n_genes, bool)


# ------------------------------------------------------------------------------ linear scores
def linear_weights(weight_columns: list[np.ndarray], gene_lists: list[np.ndarray], n_genes: int):
    """W (genes x signatures) stored sparse by gene: (w_ptr, w_col, w_val, n_sig); repeated genes add up."""
    n_sig = len(weight_columns)
    W = sp.csr_matrix(
        (
            np.concatenate(weight_columns) if weight_columns else np.zeros(0),
            (
                np.concatenate(gene_lists) if gene_lists else np.zeros(0, np.int64),
                np.repeat(np.arange(n_sig), [len(g) for g in gene_lists]),
            ),
        ),
        shape=(n_genes, n_sig),
    )
    W.sum_duplicates()
    return W.indptr.astype(np.int64), W.indices.astype(np.int64), W.data.astype(np.float64), n_sig


def linear_run(
    w_ptr, w_col, w_val, n_sig, null_sets: NullSets | MomentNull | None = None, n_genes: int = 0
) -> Callable[[Chunk, np.ndarray, NullOut | None], None]:
    """A plan's ``run`` for a linear score X @ W, with its matched or analytic null."""

    def run(chunk: Chunk, out: np.ndarray, null_out: NullOut | None = None) -> None:
        linear.csr_dot(chunk.rows, w_ptr, w_col, w_val, n_sig, n_blocks(chunk), out)
        if isinstance(null_sets, MomentNull) and null_out is not None:
            nulls.linear_moments(
                chunk.rows, n_genes, null_sets.bundle, chunk.start - chunk.r0, n_blocks(chunk), *null_out
            )
        elif null_sets is not None and null_out is not None:
            nulls.linear_nulls(chunk.rows, n_genes, *null_args(null_sets, chunk, null_out), n_blocks(chunk))

    return run


def linear_null_sets(
    null: NullSpec | None, resolved: ResolvedSignatures, stats: GeneStats, genes, cols, pool, random_state
):
    """The matched or analytic null of a linear score of ``genes`` with weights ``cols`` per signature."""
    if null is None:
        return None
    if null.kind == "analytic":
        return build_moment_null(
            resolved.names,
            genes,
            cols,
            means=stats.null_means,
            pool=pool,
            n_bins=null.n_bins,
            random_state=random_state,
        )
    return build_null_sets(
        resolved.names,
        genes,
        cols,
        [np.zeros(len(g), np.int64) for g in genes],
        means=stats.null_means,
        pool=pool,
        n_null=null.n_null,
        n_bins=null.n_bins,
        random_state=random_state,
    )


# ------------------------------------------------------------------------------ rank scores
def part_sets(sets: SplitSets, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signature ``s``'s genes as (genes, weights 1, parts 0 up / 1 down)."""
    up, dn = sets.up_idx[sets.up_ptr[s] : sets.up_ptr[s + 1]], sets.dn_idx[sets.dn_ptr[s] : sets.dn_ptr[s + 1]]
    return np.concatenate([up, dn]), np.ones(up.size + dn.size), np.repeat([0, 1], [up.size, dn.size])


def genes_per_part(sets: SplitSets) -> np.ndarray:
    """(n_sig, 2): each signature's number of up and of down genes."""
    return np.column_stack([np.diff(sets.up_ptr), np.diff(sets.dn_ptr)]).astype(np.int64)


def rank_null_sets(
    null: NullSpec | None,
    resolved: ResolvedSignatures,
    stats: GeneStats,
    sets: SplitSets,
    pool: np.ndarray,
    random_state,
    statistic: NullStatistic | None = None,
) -> NullSets | None:
    """Null sets for a rank method that scores each signature's up and down genes (weights 1);
    ``statistic`` is how the method's score follows from their term sums."""
    if null is None:
        return None
    triples = [part_sets(sets, s) for s in range(len(resolved.names))]
    return build_null_sets(
        resolved.names,
        *map(list, zip(*triples)),
        means=stats.null_means,
        pool=pool,
        n_null=null.n_null,
        n_bins=null.n_bins,
        random_state=random_state,
        statistic=statistic,
    )
