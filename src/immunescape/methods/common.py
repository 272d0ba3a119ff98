"""What the method modules share: signature genes split by sign, the linear methods' sparse weights
and runner, null sets built as a method scores its genes, and the kernels' arguments for a chunk."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

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
@dataclass(frozen=True)
class LinearWeights:
    """W (genes x signatures) stored sparse by gene (``w_ptr``, ``w_col``, ``w_val``); with
    ``use_dense`` the kernel reads a dense copy instead, built on first use where the scoring runs
    (a dask worker) and never pickled with the plan. Both layouts give bit-identical scores."""

    w_ptr: np.ndarray
    w_col: np.ndarray
    w_val: np.ndarray
    n_sig: int
    use_dense: bool = False
    _dense: list = field(default_factory=list, compare=False, repr=False)  # [the dense W] once built

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_dense"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _dense=[])

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """W's rows dense, as :func:`.linear.csr_dot_dense` reads them: ``(row_of, rows)``, gene ``g``'s
        weights being ``rows[row_of[g]]`` (a C-ordered float64 array whose row 0, of zeros, is shared by
        the genes without a weight)."""
        if not self._dense:
            n_weights = np.diff(self.w_ptr)
            weighted = np.flatnonzero(n_weights)
            row_of = np.zeros(n_weights.size, np.int32)  # int32: the kernel's gathered rows stay small
            row_of[weighted] = np.arange(1, weighted.size + 1)
            rows = np.zeros((weighted.size + 1, self.n_sig))
            genes = np.repeat(np.arange(n_weights.size), n_weights)
            rows[row_of[genes], self.w_col] = self.w_val  # entries are unique: sum_duplicates ran
            self._dense.append((row_of, rows))
        return self._dense[0]

    def dot(self, chunk: Chunk, out: np.ndarray) -> None:
        """``out = X[chunk] @ W``."""
        if self.use_dense:
            linear.csr_dot_dense(chunk.rows, *self.dense(), n_blocks(chunk), out)
        else:
            linear.csr_dot(chunk.rows, self.w_ptr, self.w_col, self.w_val, self.n_sig, n_blocks(chunk), out)


#: a dense W is used up to this many signatures and this size (beyond, its per-value work always loses)
DENSE_MAX_SIGNATURES = 64
DENSE_MAX_BYTES = 64 * 2**20


def dense_weights_are_faster(n_sig: int, n_weights: int, n_genes: int, n_weighted_genes: int | None = None) -> bool:
    """Whether ``X @ W`` runs faster with W's rows dense than with W sparse by gene.

    A cost model in units of one multiply-add per stored value, fitted to
    ``benchmarks/bench_linear_layout.py`` (RESULTS_linear_layout.md): the dense kernel costs about
    ``4.3 + q * n_sig * (1 + 0.0035 * q * n_sig)`` per stored value of X, ``q`` being the fraction of
    genes with a weight (each row's weighted values are gathered without a branch, then added
    vectorised; the weighted rows it reads grow out of cache with ``q`` and ``n_sig``); the sparse one
    ``5`` plus a mispredicted branch that grows with the weights per gene up to one (``30``), then
    ``6`` per further weight. So up to a few dozen signatures W is dense (mean's W, whose controls
    spread over every expression bin, and short signatures alike), and beyond it sparse. Without
    ``n_weighted_genes``, ``q`` is that of weights spread at random.
    """
    if n_sig > DENSE_MAX_SIGNATURES or n_genes * n_sig * 8 > DENSE_MAX_BYTES or n_genes == 0:
        return False
    per_gene = n_weights / n_genes
    q = n_weighted_genes / n_genes if n_weighted_genes is not None else 1.0 - math.exp(-per_gene)
    sparse_cost = 5 + 30 * min(per_gene, 1.0) + 6 * max(per_gene - 1.0, 0.0)
    return 4.3 + q * n_sig * (1.0 + 0.0035 * q * n_sig) < sparse_cost


def linear_weights(weight_columns: list[np.ndarray], gene_lists: list[np.ndarray], n_genes: int) -> LinearWeights:
    """W (genes x signatures) for :func:`linear_run`; repeated genes add up."""
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
    return LinearWeights(
        W.indptr.astype(np.int64),
        W.indices.astype(np.int64),
        W.data.astype(np.float64),
        n_sig,
        dense_weights_are_faster(n_sig, W.nnz, n_genes, np.count_nonzero(np.diff(W.indptr))),
    )


def linear_run(
    weights: LinearWeights, null_sets: NullSets | MomentNull | None = None, n_genes: int = 0
) -> Callable[[Chunk, np.ndarray, NullOut | None], None]:
    """A plan's ``run`` for a linear score X @ W, with its matched or analytic null."""

    def run(chunk: Chunk, out: np.ndarray, null_out: NullOut | None = None) -> None:
        weights.dot(chunk, out)
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
