"""Random gene sets matched to each signature gene's mean expression, drawn for every signature.

Genes are put in expression bins by their mean over all cells (by default 200 narrow quantile bins of
at least 20 genes; scanpy's control-gene bins when ``null_bins`` is given, see :func:`null_bins`).
Each signature gene then gets a *source* of stand-ins: the genes of its bin and of the two bins beside
it, nearer genes (in rank of mean expression) weighing more, tilted by exp(a x mean) so that a
stand-in's expected mean is the gene's own (:func:`tilted_sources`). A signature's ``k``-th null set
takes one stand-in per gene (its *slot*) from that gene's source, the set's genes kept distinct; the
slots of its genes of one part and weight form a *run*. The kernels add each drawn gene's term into
the sets it was drawn into through a list per gene (see :mod:`immunescape._kernels.nulls`).
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


def _check_null_memory(n_null: int, n_slots: int, n_source_genes: int = 0) -> None:
    """Refuse, before drawing, random gene sets (and their sources' probabilities) that would not fit
    in half of this machine's memory."""
    sets, sources = 8 * int(n_null) * max(int(n_slots), 1), 16 * int(n_source_genes)
    if sets + sources > physical_memory() // 2:
        advice = (
            "lower n_null (100 to 10,000 is usual), or use null='analytic' with mean, wmean or zmean"
            if sets >= sources
            else "use more null_bins (each gene's stand-ins come from its bin and the two beside it), or the default"
        )
        raise InputError(
            f"n_null={n_null:,} random sets of {n_slots:,} genes drawn from {n_source_genes:,} candidate genes need "
            f"{(sets + sources) / 2**30:,.1f} GiB, more than half of this machine's memory; {advice}."
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
    bins = null_bins(means, pool, n_bins, names, genes)
    bin_of = bins.bin_of
    n_sig = len(names)
    c0, coef = statistic.coefficients(n_sig)
    # each signature's genes ordered by part and weight: its slots, in runs of one part and weight
    slot_gene_of, run_ptr, run_lo, run_hi, run_w, run_part = [], [0], [], [], [], []
    for g, w, p in zip(genes, weights, parts):
        g, w, p = np.asarray(g, np.int64), np.asarray(w, np.float64), np.asarray(p, np.int64)
        order = np.lexsort((w, p))
        g, w, p = g[order], w[order], p[order]
        start = len(slot_gene_of)
        slot_gene_of.extend(g.tolist())
        cut = np.flatnonzero((np.diff(p) != 0) | (np.diff(w) != 0)) + 1
        for lo, hi in zip(np.concatenate([[0], cut]), np.concatenate([cut, [g.size]])):
            if hi > lo:
                run_lo.append(start + int(lo))
                run_hi.append(start + int(hi))
                run_w.append(float(w[lo]))
                run_part.append(int(p[lo]))
        run_ptr.append(len(run_lo))
    slot_gene_of = np.asarray(slot_gene_of, np.int64)
    n_slots = slot_gene_of.size
    sources = tilted_sources(means, bins, slot_gene_of, n_null)
    rng, seed = null_seeds(random_state)
    obs_ptr = np.concatenate([[0], np.cumsum([len(g) for g in genes])]).astype(np.int64)  # also each one's slots
    slot_gene = sources.draw(rng, n_null, obs_ptr)
    k_part = np.asarray([[np.sum(p == 0), np.sum(p == 1)] for p in parts], np.int64).reshape(-1, 2)
    # the sparse path: score = c0 + shift * shift_coef + sum(coef[part] * weight * term)
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
    # groups: a signature's runs of one part and weight share one raw sum per replicate
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
        bin_of=bin_of,
        bin_size=np.asarray([m.size for m in bins.members], np.int64),
        gene_pos=sources.gene_pos,
        slot_ptr=obs_ptr,
        slot_cw=np.repeat(np.asarray(run_cw, np.float64), runs.hi - runs.lo),
        slot_source=sources.slot_source,
        source_bins=sources.bins,
        source_base=sources.base,
        source_n=sources.n,
        source_prob=sources.prob,
    )
    details = {"n_null": int(n_null), **bins.details, "matching": MATCHING, "n_slots": n_slots}
    return NullSets(
        bundle=bundle, slot_gene=slot_gene, runs=runs, genes=list(genes), weights=list(weights), details=details
    )


MATCHING = (
    "tilted: each gene's stand-ins are drawn from its expression bin and the two beside it, nearer genes "
    "weighing more, tilted by exp(a x mean) so their expected mean expression equals the gene's own"
)


@dataclass
class TiltedSources:
    """Where each slot draws its gene from (see :func:`tilted_sources`); ``prob[base[u] + gene_pos[g]]``
    is source ``u``'s probability of gene ``g`` of its bins ``bins[u]`` (the pool ordered by bin is
    ``pool_order``)."""

    gene_pos: np.ndarray
    pool_order: np.ndarray
    bin_start: np.ndarray
    slot_source: np.ndarray
    bins: np.ndarray
    base: np.ndarray
    n: np.ndarray
    prob: np.ndarray

    def draw(self, rng: np.random.Generator, n_null: int, slot_ptr: np.ndarray) -> np.ndarray:
        """``n_null`` null sets: each slot's gene drawn from its source, a set's genes distinct (see
        :func:`.nulls.draw_null_sets`); ``slot_ptr`` gives each signature's slots."""
        from ._kernels.nulls import draw_null_sets

        slot_gene = np.empty((n_null, self.slot_source.size), np.int64)
        draw_null_sets(
            self._cum,
            self._first,
            self._last,
            self.base,
            self.pool_order,
            self.prob,
            self.slot_source,
            np.asarray(slot_ptr, np.int64),
            int(rng.integers(0, 2**63 - 1)),
            slot_gene,
        )
        if slot_gene.size and slot_gene.min() < 0:  # a set larger than the pool: the crowding check prevents it
            raise InputError(
                "A random gene set could not be completed from the gene pool; this is a bug, please report it."
            )
        return slot_gene

    def __post_init__(self) -> None:
        # source u's cumulative probabilities, shifted by u: one increasing array for all sources (a zero
        # probability leaves the running sum unchanged, so it is never drawn)
        start = self.base + self.bin_start[self.bins[:, 0]]
        source_of = np.repeat(np.arange(self.n.size), self.n)
        running = np.cumsum(self.prob)
        before = np.where(start > 0, running[np.maximum(start - 1, 0)], 0.0)
        self._cum = running - before[source_of] + source_of
        positive = np.flatnonzero(self.prob > 0)  # each source's first and last drawable gene
        self._first = positive[np.searchsorted(positive, start)]
        self._last = positive[np.searchsorted(positive, start + self.n) - 1]


def tilted_sources(means: np.ndarray, bins: NullBins, slot_gene_of: np.ndarray, n_null: int) -> TiltedSources:
    """Each signature gene's source of random stand-ins: the genes of its expression bin and the bins
    beside it, drawn with probabilities proportional to exp(-d^2 / 2 w^2) exp(a m), where d is a
    gene's distance in rank of mean expression, w half the signature gene's bin size (about a bin's
    genes on each side carry the weight) and m its mean expression, with ``a`` such that the
    expected mean equals the signature gene's own (:func:`.nulls.tilt_to_mean`).

    Uniform draws from a bin leave a fixed set's genes systematically above or below their stand-ins
    (bins at the top of the expression range are wide), so one random set is called in too many
    cells and p-values follow sequencing depth (issue 17). Tilted draws match the mean exactly and
    stay random; the weight on nearness keeps the stand-ins' spread in expression small, which
    matters for statistics that are not linear in it (AUCell's top 5%). The neighbouring bins keep
    a gene at the edge of its bin from drawing mostly itself; only the pool's extreme genes do (no
    other gene can match them). The means are the float32 means the bins were cut on: every path
    draws alike. Refuses, before drawing, sets and sources that would not fit in memory."""
    from ._kernels.nulls import tilted_probabilities

    m = means.astype(np.float32).astype(np.float64)
    n_bins = len(bins.members)
    # the pool ordered by bin, then by mean expression within each bin: a gene's position is its rank
    pool = np.flatnonzero(bins.bin_of >= 0)
    pool_order = pool[np.lexsort((pool, m[pool], bins.bin_of[pool]))]
    sizes = np.bincount(bins.bin_of[pool], minlength=n_bins)
    bin_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    gene_pos = np.full(means.size, -1, np.int64)
    gene_pos[pool_order] = np.arange(pool_order.size)
    distinct, slot_source = np.unique(slot_gene_of, return_inverse=True)
    bin_of = bins.bin_of
    b = bin_of[distinct]
    src_bins = np.column_stack([np.maximum(b - 1, 0), np.minimum(b + 2, n_bins)]).astype(np.int64).reshape(-1, 2)
    n = bin_start[src_bins[:, 1]] - bin_start[src_bins[:, 0]]
    offset = np.concatenate([[0], np.cumsum(n)]).astype(np.int64)
    _check_null_memory(n_null, slot_gene_of.size, int(offset[-1]))
    prob = np.empty(int(offset[-1]))
    # nearer genes weigh more: about a bin's genes on each side
    width = 0.5 * sizes[b].astype(np.float64)
    tilted_probabilities(
        m[pool_order], bin_start[src_bins[:, 0]], bin_start[src_bins[:, 1]], gene_pos[distinct], width, offset, prob
    )
    base = offset[:-1] - bin_start[src_bins[:, 0]]
    return TiltedSources(
        gene_pos=gene_pos,
        pool_order=pool_order,
        bin_start=bin_start,
        slot_source=slot_source.astype(np.int64).ravel(),
        bins=src_bins,
        base=base.astype(np.int64),
        n=n.astype(np.int64),
        prob=prob,
    )


# The default bins: 200 quantiles of mean expression (0.5% of the genes each), at least 20 genes each.
# Narrow quantiles keep a fixed set's genes level with their random stand-ins (issue 17's scenario
# over 7 seeds: with scanpy's 25 bins a fixed random set was called in up to 30% of cells at
# p < 0.05, with these up to 10%; benchmarks/RESULTS_null_calibration.md); at least 20 genes keep a
# signature's own genes rare in its random sets, which would otherwise cost power.
AUTO_BINS = 200
MIN_BIN_GENES = 20


@dataclass
class NullBins:
    """The expression bins random genes are drawn in: ``bin_of`` gives every gene's bin (-1 outside
    the pool), ``members[b]`` the genes of bin ``b`` (bins numbered 0.. in increasing mean)."""

    bin_of: np.ndarray
    members: list[np.ndarray]
    details: dict[str, Any]


def null_bins(
    means: np.ndarray, pool: np.ndarray, n_bins: int | None, names: list[str], genes: list[np.ndarray]
) -> NullBins:
    """Bins of genes of similar mean expression, in which a signature's genes get their random
    stand-ins.

    ``n_bins=None``: :data:`AUTO_BINS` bins by rank of the mean, each at least :data:`MIN_BIN_GENES`
    genes, so each gene is matched with its nearest genes (scanpy's 25 bins put a signature's genes
    among hundreds whose means span a wide range, and a fixed set above its bin-mates beats its
    random sets in far more cells than the level promises). An integer gives scanpy's ``n_bins``
    bins. A last bin with less than half the genes of the others (the remainder of rank // size)
    joins the one before. Then, wherever a signature holds more than half of a bin's genes (its
    random sets would mostly repeat them), the bin joins its nearer neighbour in mean expression,
    until no bin is crowded. The null draws from whole bins, the signature's own genes included:
    that keeps a random signature exchangeable with its random sets, so p-values stay uniform.
    On float32 means: float64 sums added in another association (dask blocks) still give the same
    bins."""
    pool_idx = np.flatnonzero(pool)
    n_cut = (
        max(2, min(AUTO_BINS, pool_idx.size // MIN_BIN_GENES) + 1) if n_bins is None else n_bins
    )  # scanpy: n - 1 cuts
    pool_genes, cut = expression_bins(means.astype(np.float32), pool_idx, n_cut)
    cut = np.unique(cut, return_inverse=True)[1].astype(np.int64)  # numbered 0.. without gaps
    counts = np.bincount(cut)
    if counts.size > 1 and 2 * counts[-1] < np.median(counts):
        cut = np.where(cut == counts.size - 1, counts.size - 2, cut)
    bin_of = np.full(means.size, -1, np.int64)
    bin_of[pool_genes] = cut
    for name, g in zip(names, genes):
        if np.any(bin_of[np.asarray(g, np.int64)] < 0):
            raise InputError(
                f"Signature {name!r} has genes outside the null gene pool; this is a bug, please report it."
            )
    # the float32 means the bins were cut on: in memory, backed and dask runs merge alike
    n_merged = _merge_crowded_bins(bin_of, means.astype(np.float32).astype(np.float64), names, genes)
    bins = np.unique(bin_of[bin_of >= 0])
    order = np.argsort(bin_of, kind="stable")
    starts = np.searchsorted(bin_of[order], bins)
    ends = np.append(starts[1:], order.size)
    members = [order[lo:hi] for lo, hi in zip(starts, ends)]
    details = {"null_bins": "auto" if n_bins is None else int(n_bins), "n_bins_used": len(members)}
    if n_bins is None:
        details["auto_bins"] = f"{AUTO_BINS} quantiles of mean expression, at least {MIN_BIN_GENES} genes each"
    if n_merged:
        details["bins_merged"] = int(n_merged)
    return NullBins(bin_of=bin_of, members=members, details=details)


def _merge_crowded_bins(bin_of: np.ndarray, means: np.ndarray, names: list[str], genes: list[np.ndarray]) -> int:
    """Merge, in place, each bin where some signature holds more than half of the genes with its
    nearer neighbour (in mean expression) until none is crowded; return the number of merges."""
    in_pool = bin_of >= 0
    n_bins = int(bin_of.max()) + 1 if in_pool.any() else 0
    size = np.bincount(bin_of[in_pool], minlength=n_bins)
    lo = np.full(n_bins, np.inf)
    hi = np.full(n_bins, -np.inf)
    np.minimum.at(lo, bin_of[in_pool], means[in_pool])
    np.maximum.at(hi, bin_of[in_pool], means[in_pool])
    own = np.zeros((len(genes), n_bins), np.int64)
    for s, g in enumerate(genes):
        np.add.at(own[s], bin_of[np.asarray(g, np.int64)], 1)
    label = np.arange(n_bins)  # old bin -> merged bin (merged bins keep the lower number)
    alive = list(range(n_bins))
    merges = 0
    while True:
        crowded = np.flatnonzero((2 * own[:, alive] > size[alive][None, :]).any(0))
        if crowded.size == 0:
            break
        at = int(crowded[0])
        if len(alive) == 1:
            s = int(np.flatnonzero(2 * own[:, alive[0]] > size[alive[0]])[0])
            raise InputError(
                f"Signature {names[s]!r} holds {own[s, alive[0]]} of the {size[alive[0]]} genes random sets are drawn "
                "from, so they would mostly repeat its own genes; score it without a null, or on more genes (a "
                "larger gene pool or the full matrix)."
            )
        if at == 0:
            left = False
        elif at == len(alive) - 1:
            left = True
        else:  # the neighbour nearer in mean expression
            left = lo[alive[at]] - hi[alive[at - 1]] <= lo[alive[at + 1]] - hi[alive[at]]
        keep, gone = (alive[at - 1], alive[at]) if left else (alive[at], alive[at + 1])
        size[keep] += size[gone]
        own[:, keep] += own[:, gone]
        lo[keep], hi[keep] = min(lo[keep], lo[gone]), max(hi[keep], hi[gone])
        label[label == gone] = keep
        alive.remove(gone)
        merges += 1
    if merges:
        renumber = np.full(n_bins, -1, np.int64)
        renumber[alive] = np.arange(len(alive))
        bin_of[in_pool] = renumber[label[bin_of[in_pool]]]
    return merges


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
    bins = null_bins(means, pool, n_bins, names, genes)
    bin_of = bins.bin_of
    bin_size = np.asarray([m.size for m in bins.members], np.float64)
    sb_ptr, sb_bin, sb_count, sb_coef = [0], [], [], []
    for g, w in zip(genes, weights):
        b = bin_of[g]
        for bb in np.unique(b):
            ww = np.asarray(w, np.float64)[b == bb]
            n, size = ww.size, bin_size[bb]
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
    most = np.zeros(bin_size.size, np.int64)  # the most genes any signature draws in each bin
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
    return MomentNull(bundle=bundle, details=dict(bins.details))


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
