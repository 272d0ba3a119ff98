"""Random gene sets matched to each signature's size and expression bins, shared across signatures.

Genes are put in expression bins by their mean over all cells (scanpy's control-gene bins). For
replicate ``k`` every bin gets one random ordering of its genes; a signature's ``k``-th null set takes,
in each bin, as many genes from the front of that ordering as the signature has in the bin (its up
genes first, then its down genes, then genes of other weights). So each signature's null sets are
independent uniform draws within its bins, while all signatures share the same drawn genes, and the
kernels sum them with one prefix sum per replicate (see :mod:`immunescape._kernels.nulls`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ._errors import InputError
from ._kernels.nulls import bh_rows
from ._kernels.types import AFFINE, MomentBundle, NullBundle
from ._utils import physical_memory

NULL_KINDS = ("matched", "analytic")


@dataclass(frozen=True)
class NullStatistic:
    """How a method's score follows from per-part sums of its gene terms, declared by the method.

    ``shape=AFFINE`` (the default): score = ``c0[s] + coef[s, 0] * (up sum) + coef[s, 1] * (down
    sum)``, raised to ``floor`` (UCell clips at 0); ``c0``/``coef`` None mean 0 and 1 (a plain sum,
    as the linear methods). ``shape=ES_RATIO``: single-sample GSEA's ratio of sums over ``n_genes``
    ranked genes. The kernels evaluate shapes; no method name reaches them.
    """

    shape: int = AFFINE
    c0: np.ndarray | None = None
    coef: np.ndarray | None = None
    floor: float = -math.inf
    n_genes: int = 0

    def coefficients(self, n_sig: int) -> tuple[np.ndarray, np.ndarray]:
        c0 = np.zeros(n_sig) if self.c0 is None else np.asarray(self.c0, np.float64).reshape(n_sig)
        coef = np.ones((n_sig, 2)) if self.coef is None else np.asarray(self.coef, np.float64).reshape(n_sig, 2)
        return c0, coef


class NullRuns(NamedTuple):
    """Signature ``s``'s null set in replicate ``k`` is, for each run ``r`` in ``ptr[s]:ptr[s + 1]``,
    the genes ``slot_gene[k, lo[r]:hi[r]]`` with that weight and part (0 up, 1 down)."""

    ptr: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    weight: np.ndarray
    part: np.ndarray


@dataclass
class NullSets:
    """The kernels' null bundle, the sets it encodes, and what to record about it.

    ``genes``/``weights`` are the signatures' own genes as the method scores them.
    """

    bundle: NullBundle
    slot_gene: np.ndarray
    runs: NullRuns
    genes: list
    weights: list
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        """The seed of the tie-breaking uniforms."""
        return self.bundle.seed


def check_null_args(null: str | None, n_null: int, null_bins: int | None) -> None:
    if null is None:
        return
    if null not in NULL_KINDS:
        raise InputError(f"null must be None or one of {list(NULL_KINDS)}, got {null!r}.")
    if not isinstance(n_null, (int, np.integer)) or isinstance(n_null, bool) or n_null < 2:
        raise InputError(
            f"n_null must be an integer >= 2 (random gene sets per signature), got {n_null!r}; 100 to 1000 is usual."
        )
    if null_bins is not None and (
        not isinstance(null_bins, (int, np.integer)) or isinstance(null_bins, bool) or null_bins < 2
    ):
        raise InputError(
            f"null_bins must be an integer >= 2 (expression bins the random genes are matched in), got {null_bins!r}."
        )


def _check_null_memory(n_null: int, n_slots: int) -> None:
    """Refuse, before drawing, random gene sets that would not fit in half of this machine's memory."""
    need = 8 * int(n_null) * max(int(n_slots), 1)
    if need > physical_memory() // 2:
        raise InputError(
            f"n_null={n_null:,} random sets of {n_slots:,} genes need {need / 2**30:,.1f} GiB, more than half of this "
            f"machine's memory; lower n_null (100 to 10,000 is usual), or use null='analytic' with mean, wmean "
            "or zmean."
        )


def expression_bins(means: np.ndarray, pool: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """scanpy's bins: genes of the pool (finite means) and their bin, rank(method="min") // round(n / (n_bins - 1))."""
    obs_avg = pd.Series(means[pool], index=pool)
    obs_avg = obs_avg[np.isfinite(obs_avg)]
    n_items = int(np.round(len(obs_avg) / (n_bins - 1)))
    if n_items == 0:
        raise InputError(f"Too few genes ({len(obs_avg)}) for n_bins={n_bins}; lower n_bins.")
    cut = (obs_avg.rank(method="min") // n_items).to_numpy()
    return obs_avg.index.to_numpy(), cut


def null_seeds(random_state: int | None) -> tuple[np.random.Generator, int]:
    """The generator drawing the null genes and the 64-bit seed of the tie-breaking uniforms."""
    seq = np.random.SeedSequence(random_state)
    genes_seq, ties_seq = seq.spawn(2)
    return np.random.default_rng(genes_seq), int(ties_seq.generate_state(1, np.uint64)[0] >> np.uint64(1))  # fits int64


def build_null_sets(
    names: list[str],
    genes: list[np.ndarray],
    weights: list[np.ndarray],
    parts: list[np.ndarray],
    *,
    means: np.ndarray,
    pool: np.ndarray,
    n_null: int,
    n_bins: int,
    random_state: int | None,
    statistic: NullStatistic | None = None,
) -> NullSets:
    """Null sets for the genes each signature is scored on (as the method scores them).

    ``genes[s]``, ``weights[s]`` and ``parts[s]`` (0 up, 1 down) list signature ``s``'s genes as the
    method uses them; ``pool`` marks the genes a null set may draw (the genes the method ranks);
    ``statistic`` is how the method's score follows from the sums (default: a plain affine sum).
    """
    statistic = statistic or NullStatistic()
    pool_genes, cut, bin_of = _null_bins(means, pool, n_bins)
    bins = np.unique(cut).astype(np.int64)
    members = {int(b): pool_genes[cut == b] for b in bins}
    # each signature's genes by (bin, part, weight): one run of slots each
    sig_runs: list[list[tuple[int, int, float, int]]] = []
    demand: dict[int, int] = {}
    for name, g, w, p in zip(names, genes, weights, parts):
        b = bin_of[g]
        if np.any(b < 0):
            raise InputError(
                f"Signature {name!r} has genes outside the null gene pool; this is a bug, please report it."
            )
        keys = pd.DataFrame({"bin": b, "part": p, "weight": w}).value_counts(sort=False).sort_index()
        runs_s = [(int(bb), int(pp), float(ww), int(n)) for (bb, pp, ww), n in keys.items()]
        sig_runs.append(runs_s)
        per_bin: dict[int, int] = {}
        for bb, _, _, n in runs_s:
            per_bin[bb] = per_bin.get(bb, 0) + n
        for bb, n in per_bin.items():
            _check_bin_share(name, n, members[bb].size, n_bins)
            demand[bb] = max(demand.get(bb, 0), n)
    used = sorted(demand)
    offset = dict(zip(used, np.concatenate([[0], np.cumsum([demand[b] for b in used])[:-1]]).astype(int)))
    n_slots = int(sum(demand.values()))
    _check_null_memory(n_null, n_slots)
    rng, seed = null_seeds(random_state)
    slot_gene = np.empty((n_null, n_slots), np.int64)
    for k in range(n_null):
        for b in used:
            slot_gene[k, offset[b] : offset[b] + demand[b]] = rng.choice(members[b], demand[b], replace=False)
    run_ptr, run_lo, run_hi, run_w, run_part = [0], [], [], [], []
    for runs_s in sig_runs:
        cursor: dict[int, int] = {}
        for bb, pp, ww, n in runs_s:
            lo = offset[bb] + cursor.get(bb, 0)
            cursor[bb] = cursor.get(bb, 0) + n
            run_lo.append(lo)
            run_hi.append(lo + n)
            run_w.append(ww)
            run_part.append(pp)
        run_ptr.append(len(run_lo))
    obs_ptr = np.concatenate([[0], np.cumsum([len(g) for g in genes])]).astype(np.int64)
    k_part = np.asarray([[np.sum(p == 0), np.sum(p == 1)] for p in parts], np.int64).reshape(-1, 2)
    n_sig = len(names)
    # the sparse path: score = c0 + shift * shift_coef + sum(coef[part] * weight * term)
    c0, coef = statistic.coefficients(n_sig)
    part_w = [np.asarray([np.sum(w[p == 0]), np.sum(w[p == 1])]) for w, p in zip(weights, parts)]
    shift_coef = np.asarray([coef[s] @ part_w[s] for s in range(n_sig)], np.float64).reshape(n_sig)
    obs_cw = _concat([w * coef[s][p] for s, (w, p) in enumerate(zip(weights, parts))], np.float64)
    runs = NullRuns(
        np.asarray(run_ptr, np.int64),
        np.asarray(run_lo, np.int64),
        np.asarray(run_hi, np.int64),
        np.asarray(run_w, np.float64),
        np.asarray(run_part, np.int64),
    )
    # groups: a signature's runs of one part and weight (across bins) share one raw sum per replicate
    run_sig = np.repeat(np.arange(n_sig), np.diff(runs.ptr))
    run_cw = runs.weight * coef[run_sig, runs.part] if run_sig.size else np.zeros(0)
    keys = pd.DataFrame({"sig": run_sig, "part": runs.part, "cw": run_cw})
    run_group = keys.groupby(["sig", "part", "cw"], sort=True).ngroup().to_numpy().astype(np.int64)
    groups = keys.drop_duplicates(["sig", "part", "cw"]).sort_values(["sig", "part", "cw"])
    grp_ptr = np.searchsorted(groups["sig"].to_numpy(), np.arange(n_sig + 1)).astype(np.int64)
    ent_ptr, ent_idx = _gene_entries(slot_gene, means.size, runs.lo, runs.hi, run_group, len(groups))
    bundle = NullBundle(
        slot_gene=slot_gene,
        obs_ptr=obs_ptr,
        obs_gene=_concat(genes, np.int64),
        obs_part=_concat(parts, np.int64),
        obs_cw=obs_cw,
        k_part=k_part,
        ent_ptr=ent_ptr,
        ent_idx=ent_idx,
        grp_ptr=grp_ptr,
        grp_cw=groups["cw"].to_numpy(np.float64),
        grp_part=groups["part"].to_numpy(np.int64),
        c0=c0,
        shift_coef=shift_coef,
        statistic=int(statistic.shape),
        floor=float(statistic.floor),
        n_genes=float(statistic.n_genes),
        seed=seed,
    )
    details = {"n_null": int(n_null), "null_bins": int(n_bins), "n_bins_used": len(bins), "n_slots": n_slots}
    return NullSets(
        bundle=bundle, slot_gene=slot_gene, runs=runs, genes=list(genes), weights=list(weights), details=details
    )


def _null_bins(means: np.ndarray, pool: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pool's genes, their expression bin, and every gene's bin (-1 outside the pool).

    scanpy's bins, except that a last bin with less than half the genes of the others (the remainder
    of rank // size: often the single most expressed gene) joins the one before, so a signature
    holding the top genes still has random genes to be matched with. On float32 means: float64 sums
    added in another association (dask blocks) still give the same bins."""
    pool_genes, cut = expression_bins(means.astype(np.float32), np.flatnonzero(pool), n_bins)
    counts = np.bincount(cut.astype(np.int64))
    if counts.size > 1 and 2 * counts[-1] < np.median(counts[counts > 0]):
        cut = np.where(cut == counts.size - 1, counts.size - 2, cut)
    bin_of = np.full(means.size, -1, np.int64)
    bin_of[pool_genes] = cut.astype(np.int64)
    return pool_genes, cut.astype(np.int64), bin_of


def _check_bin_share(name: str, n_in_bin: int, bin_size: int, n_bins: int) -> None:
    if 2 * n_in_bin > bin_size:  # random sets would mostly repeat the signature's own genes
        raise InputError(
            f"Signature {name!r} holds {n_in_bin} of the {bin_size} genes of an expression bin, so random sets matched "
            f"to it would mostly repeat its own genes; lower null_bins (now {n_bins})."
        )


@dataclass
class MomentNull:
    """The analytic null of a linear score (see :func:`immunescape._kernels.nulls.linear_moments`):
    the kernel's bundle and what to record."""

    bundle: MomentBundle
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        """The seed of the tie-breaking uniforms."""
        return self.bundle.seed


def build_moment_null(
    names: list[str],
    genes: list[np.ndarray],
    weights: list[np.ndarray],
    *,
    means: np.ndarray,
    pool: np.ndarray,
    n_bins: int,
    random_state: int | None,
) -> MomentNull:
    """The exact moments of a linear score over random gene sets drawn as the matched null draws
    them: in each expression bin of ``N`` genes, as many genes as the signature has there, without
    replacement, carrying its weights ``w`` (power sums p1, p2, p3). With the bin's population
    moments in a row (mean mu, central m2, m3), the set's sum over that bin has mean ``p1 mu``,
    variance ``m2 (p2 - (p1^2 - p2) / (N - 1))`` and third cumulant ``m3 (p3 - 3 (p1 p2 - p3) / (N - 1)
    + 2 (p1^3 - 3 p1 p2 + 2 p3) / ((N - 1)(N - 2)))``; bins are drawn independently, so they add."""
    pool_genes, cut, _ = _null_bins(means, pool, n_bins)
    used, cut = np.unique(cut, return_inverse=True)  # numbered 0.. without gaps
    bin_of = np.full(means.size, -1, np.int64)
    bin_of[pool_genes] = cut
    bin_size = np.bincount(cut, minlength=used.size).astype(np.float64)
    sb_ptr, sb_bin, sb_count, sb_coef = [0], [], [], []
    for name, g, w in zip(names, genes, weights):
        b = bin_of[g]
        if np.any(b < 0):
            raise InputError(
                f"Signature {name!r} has genes outside the null gene pool; this is a bug, please report it."
            )
        for bb in np.unique(b):
            ww = np.asarray(w, np.float64)[b == bb]
            n, size = ww.size, bin_size[bb]
            _check_bin_share(name, n, int(size), n_bins)
            p1, p2, p3 = ww.sum(), (ww**2).sum(), (ww**3).sum()
            pairs = (p1 * p1 - p2) / (size - 1) if n > 1 else 0.0  # sums over distinct draws, 0 when there are none
            triples = (p1**3 - 3 * p1 * p2 + 2 * p3) / ((size - 1) * (size - 2)) if n > 2 else 0.0
            third_pairs = (p1 * p2 - p3) / (size - 1) if n > 1 else 0.0
            sb_bin.append(int(bb))
            sb_count.append(n)
            sb_coef.append((p1, p2 - pairs, p3 - 3 * third_pairs + 2 * triples))
        sb_ptr.append(len(sb_bin))
    obs_ptr = np.concatenate([[0], np.cumsum([len(g) for g in genes])]).astype(np.int64)
    nonneg = np.asarray([bool(np.all(np.asarray(w) >= 0)) for w in weights], np.bool_)
    reciprocal = 1.0 / np.maximum(np.arange(int(bin_size.max()) + 1), 1)
    sb_bin, sb_count = np.asarray(sb_bin, np.int64), np.asarray(sb_count, np.int64)
    most = np.zeros(used.size, np.int64)  # the most genes any signature draws in each bin
    np.maximum.at(most, sb_bin, sb_count)
    zero_ptr = np.concatenate([[0], np.cumsum(most + 1)]).astype(np.int64)
    bundle = MomentBundle(
        bin_of=bin_of,
        bin_size=bin_size,
        reciprocal=reciprocal,
        zero_ptr=zero_ptr,
        sb_ptr=np.asarray(sb_ptr, np.int64),
        sb_bin=sb_bin,
        sb_zero_at=zero_ptr[sb_bin] + sb_count,
        sb_coef=np.asarray(sb_coef, np.float64).reshape(-1, 3),
        obs_ptr=obs_ptr,
        obs_gene=_concat(genes, np.int64),
        obs_w=_concat(weights, np.float64),
        nonneg=nonneg,
        seed=null_seeds(random_state)[1],
    )
    details = {"null_bins": int(n_bins), "n_bins_used": int(used.size)}
    return MomentNull(bundle=bundle, details=details)


def _gene_entries(
    slot_gene: np.ndarray, n_genes: int, lo: np.ndarray, hi: np.ndarray, run_group: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each gene (CSR by gene), the entries ``k * n_groups + group`` it adds to: the gene at slot
    ``t`` of replicate ``k`` belongs to every run (of any signature) whose slots cover ``t``."""
    n_null, n_slots = slot_gene.shape
    lengths = hi - lo
    run_of_entry = np.repeat(np.arange(lo.size), lengths)
    slot_of_entry = np.repeat(lo, lengths) + np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cover = np.argsort(slot_of_entry, kind="stable")  # runs grouped by the slot they cover
    cover_ptr = np.zeros(n_slots + 1, np.int64)
    np.add.at(cover_ptr, slot_of_entry + 1, 1)
    cover_ptr = np.cumsum(cover_ptr)
    cover_group = run_group[run_of_entry[cover]]
    genes = slot_gene.ravel()
    by_gene = np.argsort(genes, kind="stable")
    k_occ, t_occ = np.divmod(by_gene, n_slots)
    counts = cover_ptr[t_occ + 1] - cover_ptr[t_occ]
    first = (
        np.repeat(cover_ptr[t_occ], counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    )
    idx = np.repeat(k_occ * n_groups, counts) + cover_group[first]
    ptr = np.zeros(n_genes + 1, np.int64)
    np.add.at(ptr, genes[by_gene] + 1, counts)
    dtype = (
        np.int16 if n_null * n_groups < 2**15 else np.int32 if n_null * n_groups < 2**31 else np.int64
    )  # small: cache-resident
    return np.cumsum(ptr), idx.astype(dtype)


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts and sum(len(p) for p in parts) else np.zeros(0, dtype)


def benjamini_hochberg(pvals: np.ndarray, axis: int = 1) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values along ``axis`` (NaN p-values are left out and stay NaN).

    Examples
    --------
    >>> import numpy as np
    >>> benjamini_hochberg(np.array([[0.01, 0.04, 0.03, 0.5]])).round(3).tolist()
    [[0.04, 0.053, 0.053, 0.5]]
    """
    p = np.moveaxis(np.asarray(pvals, np.float64), axis, -1)
    rows = np.ascontiguousarray(p.reshape(-1, p.shape[-1]) if p.size else np.zeros((0, p.shape[-1])))
    out = np.empty_like(rows)
    bh_rows(rows, out)
    return np.moveaxis(out.reshape(p.shape), -1, axis)
