"""The one registry of scoring methods: name -> parameters, reference, kernel plan.

Each method turns resolved signatures (and, when it needs them, gene statistics computed in one
extra pass) into a *plan*; the plan scores any row chunk with a numba kernel and finishes the full
score matrix. :func:`immunescape.tl.methods` shows the registry as a table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._chunks import Chunk
from ._errors import InputError
from ._kernels import linear, nulls, ranks
from ._null import EMPTY, MomentNull, NullSets, build_moment_null, build_null_sets, expression_bins
from ._utils import closest
from .genes import ResolvedSignatures


@dataclass
class GeneStats:
    """Statistics over all rows that some methods need before scoring."""

    n_rows: int
    n_genes: int
    means: np.ndarray | None = None  # scanpy-compatible gene means (dtype as scanpy computes them)
    nonempty: np.ndarray | None = None  # genes with a non-zero value in some row
    # float64 sums row after row: the null's expression bins, the same in memory, on disk and in dask
    # (scanpy's in-memory means accumulate float32 data in float32, streamed sums cannot repeat that)
    null_means: np.ndarray | None = None


@dataclass(frozen=True)
class NullSpec:
    """What null the caller asked for: ``n_null`` random gene sets per signature, matched in
    ``n_bins`` expression bins (``kind="matched"``), or their exact moments (``"analytic"``,
    linear methods)."""

    n_null: int = 100
    n_bins: int = 25
    kind: str = "matched"


NullOut = tuple[np.ndarray, np.ndarray]  # (z, p) rows of one chunk


@dataclass
class Plan:
    """Everything a kernel needs, prepared once; ``run(chunk, out, null_out)`` scores one chunk into
    ``out`` and, when the plan has null sets and ``null_out = (z, p)`` is given, writes each
    signature's z-score and p-value against its random gene sets.

    A method whose scores depend on all samples at once (GSVA's per-gene kernel CDF) gives
    ``run_all(matrix, null_out) -> scores`` instead and is not chunked.
    """

    run: Callable[[Chunk, np.ndarray, NullOut | None], None] | None = None
    finish: Callable[[np.ndarray], np.ndarray] = field(default=lambda scores: scores)
    details: dict[str, Any] = field(default_factory=dict)
    run_all: Callable[[Any, NullOut | None], np.ndarray] | None = None
    null: NullSets | MomentNull | None = None


@dataclass(frozen=True)
class Method:
    """A registered scoring method."""

    name: str
    description: str
    equals: str
    reference: str
    params: dict[str, Any]
    needs: tuple[str, ...]
    signed: str
    weighted: bool
    expects_log: bool
    value_range: str
    prepare: Callable[..., Plan]
    null_bins: int = 25  # expression bins of the null's random genes (scanpy's control bins: 25)
    # what each parameter accepts, beyond the type of its default: {name: (kind, lowest value or choices)}
    rules: dict[str, tuple[str, Any]] = field(default_factory=dict)
    # capabilities, read by the runner, the checks, the CLI, the docs and the tests' parametrisation
    nulls: tuple[str, ...] = ("matched",)  # null kinds it supports ("analytic": exact moments of linear scores)
    chunked: bool = True  # False: scores depend on all rows at once (run_all), so no chunks, backed streaming or dask

    def check_params(self, given: dict[str, Any]) -> dict[str, Any]:
        """The method's parameters with ``given`` applied, each checked by type and range before any work."""
        unknown = set(given) - set(self.params)
        if unknown:
            name = sorted(unknown)[0]
            raise InputError(
                f"Method {self.name!r} has no parameter {name!r}; its parameters are {sorted(self.params) or 'none'}."
                + closest(name, self.params)
            )
        for name, value in given.items():
            kind, bound = self.rules.get(name, (_kind_of(self.params[name]), None))
            problem = _param_problem(value, kind, bound)
            if problem:
                raise InputError(f"Method {self.name!r}: {name}={value!r} is not valid; {name} must be {problem}.")
        return {**self.params, **given}


def _kind_of(default: Any) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "number"
    return "str" if isinstance(default, str) else "any"


def _param_problem(value: Any, kind: str, bound: Any) -> str | None:
    """What ``value`` should have been (None when it is fine). Booleans are never numbers here."""
    optional = kind.startswith("optional ")
    kind = kind.removeprefix("optional ")
    if optional and value is None:
        return None
    or_none = ", or None" if optional else ""
    if kind == "bool":
        return None if isinstance(value, (bool, np.bool_)) else "True or False" + or_none
    if kind in ("int", "number"):
        wanted = ("a whole number" if kind == "int" else "a number") + (f" >= {bound}" if bound is not None else "") + or_none
        numeric = isinstance(value, (int, np.integer)) or (kind == "number" and isinstance(value, (float, np.floating)))
        if isinstance(value, (bool, np.bool_)) or not numeric or not math.isfinite(value):
            return wanted
        return wanted if bound is not None and value < bound else None
    if kind == "str":
        choices = list(bound or ())
        return None if isinstance(value, str) and (not choices or value in choices) else f"one of {choices}{or_none}"
    return None


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method to the registry: ``score``, the CLI's ``-m``, ``ie.tl.methods()`` and the tests find it there."""
    if not method.name or not method.name.isidentifier():
        raise InputError(f"A method name must be a Python identifier, got {method.name!r}.")
    _REGISTRY[method.name] = method
    return method


def unregister(name: str) -> Method:
    """Remove a registered method (for plug-ins and tests); returns it."""
    return _REGISTRY.pop(get_method(name).name)


def method_names(*, null: str | None = None, chunked: bool | None = None, weighted: bool | None = None) -> list[str]:
    """Names of the registered methods, in registration order, optionally only those with a capability:
    ``null`` (a null kind they support), ``chunked`` (row-independent scores), ``weighted`` (use weights).

    The CLI's choices and help, the docs and the tests' parametrisation all read this list.

    Examples
    --------
    >>> method_names(null="analytic")
    ['mean', 'wmean', 'zmean']
    """
    return [
        name for name, m in _REGISTRY.items()
        if (null is None or null in m.nulls) and (chunked is None or m.chunked == chunked)
        and (weighted is None or m.weighted == weighted)
    ]  # fmt: skip


def get_method(name: str) -> Method:
    if name not in _REGISTRY:
        raise InputError(f"Unknown method {name!r}; choose from {sorted(_REGISTRY)}." + closest(str(name), _REGISTRY))
    return _REGISTRY[name]


def methods_table() -> pd.DataFrame:
    """The registry as a DataFrame: one row per method."""
    rows = [
        {
            "method": m.name,
            "description": m.description,
            "equals": m.equals,
            "parameters": ", ".join(f"{k}={v!r}" for k, v in m.params.items()) or "-",
            "signed_sets": m.signed,
            "uses_weights": m.weighted,
            "range": m.value_range,
            "reference": m.reference,
        }
        for m in _REGISTRY.values()
    ]
    return pd.DataFrame(rows).set_index("method")


# ----------------------------------------------------------------------------------- helpers
def _split_sets(resolved: ResolvedSignatures, keep: np.ndarray | None = None):
    """CSR-like (ptr, idx) arrays of up genes and of down genes per signature."""
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

    return pack(up), pack(dn)


def _linear_plan(weight_columns: list[np.ndarray], gene_lists: list[np.ndarray], n_genes: int):
    """W (genes x signatures) stored sparse by gene: (w_ptr, w_col, w_val); repeated genes add up."""
    n_sig = len(weight_columns)
    W = sp.csr_matrix(
        (np.concatenate(weight_columns) if weight_columns else np.zeros(0),
         (np.concatenate(gene_lists) if gene_lists else np.zeros(0, np.int64),
          np.repeat(np.arange(n_sig), [len(g) for g in gene_lists]))),
        shape=(n_genes, n_sig),
    )  # fmt: skip
    W.sum_duplicates()
    return W.indptr.astype(np.int64), W.indices.astype(np.int64), W.data.astype(np.float64), n_sig


def _run_linear(w_ptr, w_col, w_val, n_sig, null_sets: NullSets | MomentNull | None = None, n_genes: int = 0):
    def run(chunk: Chunk, out: np.ndarray, null_out: NullOut | None = None) -> None:
        linear.csr_dot(chunk.data, chunk.indices, chunk.indptr, chunk.r0, chunk.r1, w_ptr, w_col, w_val, n_sig, _blocks(chunk), out)
        if isinstance(null_sets, MomentNull) and null_out is not None:
            nulls.linear_moments(chunk.data, chunk.indices, chunk.indptr, chunk.r0, chunk.r1, n_genes, *null_sets.arrays,
                                 chunk.start - chunk.r0, null_sets.seed, _blocks(chunk), *null_out)  # fmt: skip
        elif null_sets is not None and null_out is not None:
            nulls.linear_nulls(chunk.data, chunk.indices, chunk.indptr, chunk.r0, chunk.r1, n_genes,
                               *_null_args(null_sets, chunk, null_out)[:3], _blocks(chunk), *null_out)  # fmt: skip

    return run


_NO_OUT = np.zeros((0, 0))


def _null_args(null_sets: NullSets | None, chunk: Chunk, null_out: NullOut | None) -> tuple:
    """(bundle, row_offset, seed, z, p) for a kernel; an empty bundle when no null is wanted."""
    if null_sets is None or null_out is None:
        return EMPTY, 0, 0, _NO_OUT, _NO_OUT
    return null_sets.bundle, chunk.start - chunk.r0, null_sets.seed, null_out[0], null_out[1]


def _part_sets(ptrs, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signature ``s``'s genes as (genes, weights 1, parts 0 up / 1 down) from _split_sets' arrays."""
    (up_ptr, up_idx), (dn_ptr, dn_idx) = ptrs
    up, dn = up_idx[up_ptr[s] : up_ptr[s + 1]], dn_idx[dn_ptr[s] : dn_ptr[s + 1]]
    return np.concatenate([up, dn]), np.ones(up.size + dn.size), np.repeat([0, 1], [up.size, dn.size])


def _rank_null_sets(null: NullSpec | None, resolved, stats: GeneStats, ptrs, pool, random_state, kind, sconst=None, gconst=None):
    """Null sets for a rank method scoring each signature's up and down genes (weights 1)."""
    if null is None:
        return None
    if null.kind == "analytic":
        raise InputError("null='analytic' exists for the linear methods (mean, wmean, zmean), whose random-set scores have "
                         "exact moments; rank methods need null='matched'.")  # fmt: skip
    triples = [_part_sets(ptrs, s) for s in range(len(resolved.names))]
    return build_null_sets(resolved.names, *map(list, zip(*triples)), means=stats.null_means, pool=pool, n_null=null.n_null,
                           n_bins=null.n_bins, random_state=random_state, kind=kind, sconst=sconst, gconst=gconst)  # fmt: skip


def _linear_null_sets(null: NullSpec | None, resolved, stats: GeneStats, genes, cols, pool, random_state):
    if null is None:
        return None
    if null.kind == "analytic":
        return build_moment_null(resolved.names, genes, cols, means=stats.null_means, pool=pool, n_bins=null.n_bins,
                                 random_state=random_state)  # fmt: skip
    return build_null_sets(resolved.names, genes, cols, [np.zeros(len(g), np.int64) for g in genes], means=stats.null_means,
                           pool=pool, n_null=null.n_null, n_bins=null.n_bins, random_state=random_state, kind=nulls.LINEAR)  # fmt: skip


def _blocks(chunk: Chunk) -> int:
    """Parallel blocks for a chunk: several per thread, so uneven rows balance out."""
    return max(1, min(chunk.r1 - chunk.r0, 8 * numba.get_num_threads()))


def _missing_counts(resolved: ResolvedSignatures) -> tuple[np.ndarray, np.ndarray]:
    up, dn = [], []
    for sig, (_, row) in zip(resolved.signatures, resolved.coverage.iterrows()):
        missing = set(filter(None, row["missing"].split(";")))
        up.append(len(missing & set(sig.genes_up)))
        dn.append(len(missing & set(sig.genes_down)))
    return np.asarray(up, np.int64), np.asarray(dn, np.int64)


# ------------------------------------------------------------------------------------ mean
def _scanpy_controls(gene_list: np.ndarray, genes: np.ndarray, cut: np.ndarray, bin_of: np.ndarray, *, ctrl_size: int,
                     ctrl_as_ref: bool, random_state: int | None) -> np.ndarray:  # fmt: skip
    """scanpy.tl.score_genes' control genes for one gene list (positions), reproduced step by step.

    ``genes``/``cut`` are the pool in var order with their bins; ``bin_of`` maps a gene to its bin.
    """
    in_list = np.zeros(bin_of.size, bool)
    in_list[gene_list] = True
    # scanpy seeds numpy's global legacy RNG on every call; a private RandomState gives the same stream
    rs = np.random.RandomState(random_state)
    control: list[np.ndarray] = []
    for c in np.unique(bin_of[gene_list]):
        r_genes = genes[(cut == c) & (True if ctrl_as_ref else ~in_list[genes])]
        if ctrl_size < len(r_genes):
            r_genes = r_genes[rs.choice(len(r_genes), size=ctrl_size, replace=False)]
        if ctrl_as_ref:
            r_genes = r_genes[~in_list[r_genes]]
        control.append(r_genes)
    control_genes = np.unique(np.concatenate(control)) if control else np.zeros(0, np.int64)
    if control_genes.size == 0:
        raise InputError("No control genes found in any expression bin" + (" (try ctrl_as_ref=False)." if ctrl_as_ref else "."))
    return control_genes.astype(np.int64)


def _prepare_mean(resolved, stats: GeneStats, params, random_state, null: NullSpec | None = None):
    if params["ctrl_size"] < 1 or params["n_bins"] < 2:
        raise InputError("mean needs ctrl_size >= 1 and n_bins >= 2.")
    pool = np.arange(stats.n_genes) if params["gene_pool"] is None else np.asarray(params["gene_pool"], np.int64)
    pool_genes, cut = expression_bins(stats.means, pool, params["n_bins"])
    bin_of = np.full(stats.n_genes, np.nan)
    bin_of[pool_genes] = cut
    (up_ptr, up_idx), (dn_ptr, dn_idx) = _split_sets(resolved)
    genes, cols, n_controls, null_genes, null_cols = [], [], [], [], []
    for s in range(len(resolved.signatures)):
        g_s, w_s, n_c = [], [], 0
        for ptr, idx, sign in ((up_ptr, up_idx, 1.0), (dn_ptr, dn_idx, -1.0)):
            part = idx[ptr[s] : ptr[s + 1]]
            if part.size == 0:
                continue
            ctrl = _scanpy_controls(part, pool_genes, cut, bin_of, ctrl_size=params["ctrl_size"],
                                    ctrl_as_ref=params["ctrl_as_ref"], random_state=random_state)  # fmt: skip
            g_s += [part, ctrl]
            w_s += [np.full(part.size, sign / part.size), np.full(ctrl.size, -sign / ctrl.size)]
            n_c += ctrl.size
        genes.append(np.concatenate(g_s))
        cols.append(np.concatenate(w_s))
        n_controls.append(n_c)
        # the null replaces the signature genes; the control term is the same for all and cancels
        null_genes.append(np.concatenate(g_s[::2]))
        null_cols.append(np.concatenate(w_s[::2]))
    in_pool = np.zeros(stats.n_genes, bool)
    in_pool[pool] = True
    null_sets = _linear_null_sets(null, resolved, stats, null_genes, null_cols, in_pool, random_state)
    return Plan(run=_run_linear(*_linear_plan(cols, genes, stats.n_genes), null_sets, stats.n_genes), null=null_sets,
                details={"n_control_genes": dict(zip(resolved.names, n_controls))})  # fmt: skip


register(Method(
    name="mean",
    description="Mean of the signature genes minus the mean of expression-matched random control genes",
    equals="scanpy.tl.score_genes (Seurat AddModuleScore); same controls for the same random_state",
    reference="Tirosh et al., Science 2016, doi:10.1126/science.aad0501; Satija et al. 2015",
    params={"ctrl_size": 50, "n_bins": 25, "ctrl_as_ref": True, "gene_pool": None},
    rules={"ctrl_size": ("int", 1), "n_bins": ("int", 2), "gene_pool": ("any", None)},
    needs=("means",),
    signed="up minus down, each against its own controls",
    weighted=False,
    expects_log=True,
    value_range="(-inf, inf)",
    prepare=_prepare_mean,
    nulls=("matched", "analytic"),
))  # fmt: skip


# ------------------------------------------------------------------------------------ UCell
def _prepare_ucell(resolved, stats: GeneStats, params, random_state, null: NullSpec | None = None):
    max_rank = params["max_rank"]
    if not (isinstance(max_rank, (int, np.integer)) and max_rank > 0):
        raise InputError(f"max_rank must be a positive integer, got {max_rank!r}.")
    if params["missing_genes"] not in ("impute", "skip"):
        raise InputError("missing_genes must be 'impute' (count as max_rank, as pyUCell) or 'skip'.")
    ptrs = _split_sets(resolved)
    (up_ptr, up_idx), (dn_ptr, dn_idx) = ptrs
    up_miss, dn_miss = _missing_counts(resolved)
    if params["missing_genes"] == "skip":
        up_miss, dn_miss = np.zeros_like(up_miss), np.zeros_like(dn_miss)
    w_neg = float(params["w_neg"])
    null_sets = _rank_null_sets(null, resolved, stats, ptrs, np.ones(stats.n_genes, bool), random_state, nulls.UCELL,
                                sconst=np.column_stack([up_miss, dn_miss]), gconst=[max_rank, w_neg, 0, 0])  # fmt: skip

    def run(chunk: Chunk, out: np.ndarray, null_out: NullOut | None = None) -> None:
        ranks.ucell(chunk.data, chunk.indices, chunk.indptr, chunk.r0, chunk.r1, stats.n_genes, max(chunk.max_nnz, 1),
                    up_ptr, up_idx, up_miss, dn_ptr, dn_idx, dn_miss, int(max_rank), w_neg, _blocks(chunk), out,
                    *_null_args(null_sets, chunk, null_out))  # fmt: skip

    return Plan(run=run, null=null_sets)


register(Method(
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
    prepare=_prepare_ucell,
))  # fmt: skip


# ------------------------------------------------------------------------------------ AUCell
def _ranked_genes(stats: GeneStats, drop_empty: bool) -> np.ndarray:
    return stats.nonempty if drop_empty else np.ones(stats.n_genes, bool)


def _prepare_aucell(resolved, stats: GeneStats, params, random_state, null: NullSpec | None = None):
    ranked = _ranked_genes(stats, params["drop_empty_genes"])
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
    ptrs = _split_sets(resolved, keep=ranked)
    (up_ptr, up_idx), (dn_ptr, dn_idx) = ptrs

    def max_auc(ptr):
        k = np.minimum(np.diff(ptr), n_up - 1)
        return np.asarray([n_up * kk - kk * (kk + 1) / 2 for kk in k], np.float64)

    up_max, dn_max = max_auc(up_ptr), max_auc(dn_ptr)
    has_down = bool(dn_idx.size)
    null_sets = _rank_null_sets(null, resolved, stats, ptrs, ranked, random_state, nulls.AUCELL, sconst=np.column_stack([up_max, dn_max]))

    def run(chunk: Chunk, out: np.ndarray, null_out: NullOut | None = None) -> None:
        args = (chunk.data, chunk.indices, chunk.indptr, chunk.r0, chunk.r1, stats.n_genes, max(chunk.max_nnz, 1), position, gene_at, n_ranked)
        ranks.aucell(*args, up_ptr, up_idx, up_max, n_up, _blocks(chunk), out, *_null_args(null_sets, chunk, null_out))
        if has_down:
            down = np.empty_like(out)
            ranks.aucell(*args, dn_ptr, dn_idx, dn_max, n_up, _blocks(chunk), down, *_null_args(None, chunk, None))
            out -= down

    return Plan(run=run, null=null_sets, details={"n_up": n_up, "n_ranked_genes": n_ranked})


register(Method(
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
    prepare=_prepare_aucell,
    null_bins=50,  # only the top n_up ranks count, so random genes must match expression closely
))  # fmt: skip


# ------------------------------------------------------------------------------------ ssGSEA
_SAMPLE_NORM = {"rank": 0, None: 1, "none": 1, "log_rank": 2, "log": 3}


def _prepare_ssgsea(resolved, stats: GeneStats, params, random_state, null: NullSpec | None = None):
    if params["sample_norm"] not in _SAMPLE_NORM:
        raise InputError(f"sample_norm must be one of {[k for k in _SAMPLE_NORM if k != 'none']}, got {params['sample_norm']!r}.")
    mode = _SAMPLE_NORM[params["sample_norm"]]
    alpha = float(params["alpha"])
    ptrs = _split_sets(resolved)
    (up_ptr, up_idx), (dn_ptr, dn_idx) = ptrs
    if np.any(np.diff(up_ptr) >= stats.n_genes):
        raise InputError("ssGSEA needs fewer signature genes than genes in the data.")
    union = np.unique(np.concatenate([up_idx, dn_idx])).astype(np.int64)
    up_u = np.searchsorted(union, up_idx).astype(np.int64)
    dn_u = np.searchsorted(union, dn_idx).astype(np.int64)
    null_sets = _rank_null_sets(null, resolved, stats, ptrs, np.ones(stats.n_genes, bool), random_state, nulls.SSGSEA,
                                gconst=[0, 0, stats.n_genes, 0])  # fmt: skip

    def run(chunk: Chunk, out: np.ndarray, null_out: NullOut | None = None) -> None:
        ranks.ssgsea(chunk.data, chunk.indices, chunk.indptr, chunk.r0, chunk.r1, stats.n_genes, max(chunk.max_nnz, 1),
                     up_ptr, up_idx, up_u, dn_ptr, dn_idx, dn_u, union, mode, alpha, _blocks(chunk), out,
                     *_null_args(null_sets, chunk, null_out))  # fmt: skip

    def finish(scores: np.ndarray) -> np.ndarray:
        if not params["normalize"]:
            return scores
        span = np.nanmax(scores) - np.nanmin(scores)
        return scores / span if span > 0 else scores

    return Plan(run=run, finish=finish, null=null_sets)


register(Method(
    name="ssgsea",
    description="Single-sample GSEA: integral of the rank-weighted running sum (weights |metric|^alpha)",
    equals="gseapy.ssgsea ES (normalize=True: NES, i.e. GSVA's ssgsea.norm, divided by the range over all cells and sets)",
    reference="Barbie et al., Nature 2009, doi:10.1038/nature08460; Hanzelmann et al. 2013 (GSVA)",
    params={"alpha": 0.25, "sample_norm": "rank", "normalize": False},
    rules={"alpha": ("number", 0), "sample_norm": ("optional str", ("rank", "none", "log_rank", "log"))},
    needs=("unique_entries",),
    signed="ES(up) minus ES(down)",
    weighted=False,
    expects_log=False,
    value_range="(-1, 1) before normalisation",
    prepare=_prepare_ssgsea,
))  # fmt: skip


# ------------------------------------------------------------------------------------ singscore
def _prepare_singscore(resolved, stats: GeneStats, params, random_state, null: NullSpec | None = None):
    ptrs = _split_sets(resolved)
    (up_ptr, up_idx), (dn_ptr, dn_idx) = ptrs
    center = bool(params["center"])
    null_sets = _rank_null_sets(null, resolved, stats, ptrs, np.ones(stats.n_genes, bool), random_state, nulls.SINGSCORE,
                                gconst=[0, 0, stats.n_genes, float(center)])  # fmt: skip

    def run(chunk: Chunk, out: np.ndarray, null_out: NullOut | None = None) -> None:
        ranks.singscore(chunk.data, chunk.indices, chunk.indptr, chunk.r0, chunk.r1, stats.n_genes, max(chunk.max_nnz, 1),
                        up_ptr, up_idx, dn_ptr, dn_idx, center, _blocks(chunk), out, *_null_args(null_sets, chunk, null_out))  # fmt: skip

    return Plan(run=run, null=null_sets)


register(Method(
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
    prepare=_prepare_singscore,
))  # fmt: skip


# ------------------------------------------------------------------------------------ wmean / zmean
def _weighted_columns(resolved, keep):
    genes, cols = [], []
    for pos, w in zip(resolved.positions, resolved.weights):
        mask = keep[pos]
        g, ww = pos[mask], w[mask]
        denom = np.abs(ww).sum()
        genes.append(g)
        cols.append(ww / denom if denom > 0 else ww)
    return genes, cols


def _prepare_wmean(resolved, stats: GeneStats, params, random_state, null: NullSpec | None = None):
    keep = _ranked_genes(stats, params["drop_empty_genes"])
    genes, cols = _weighted_columns(resolved, keep)
    null_sets = _linear_null_sets(null, resolved, stats, genes, cols, keep, random_state)
    return Plan(run=_run_linear(*_linear_plan(cols, genes, stats.n_genes), null_sets, stats.n_genes), null=null_sets)


register(Method(
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
    prepare=_prepare_wmean,
    nulls=("matched", "analytic"),
))  # fmt: skip


def _prepare_zmean(resolved, stats: GeneStats, params, random_state, null: NullSpec | None = None):
    if params["flavor"] not in ("RoKAI", "KSEA"):
        raise InputError("flavor must be 'RoKAI' or 'KSEA' (as decoupler's zscore).")
    keep = _ranked_genes(stats, params["drop_empty_genes"])
    genes, cols = _weighted_columns(resolved, keep)
    # z is a positive affine map of the weighted mean within a row: its null p and z are the weighted mean's
    null_sets = _linear_null_sets(null, resolved, stats, genes, cols, keep, random_state)
    weighted_mean = _run_linear(*_linear_plan(cols, genes, stats.n_genes), null_sets, stats.n_genes)
    n_targets = np.sqrt(np.asarray([np.count_nonzero(c) for c in cols], np.float64))
    n_features = int(keep.sum())
    subtract_mean = params["flavor"] == "RoKAI"  # decoupler 2.2 subtracts the mean for RoKAI (its code, not its docstring)

    def run(chunk: Chunk, out: np.ndarray, null_out: NullOut | None = None) -> None:
        weighted_mean(chunk, out, null_out)
        n = chunk.r1 - chunk.r0
        mean, std = np.empty(n), np.empty(n)
        linear.csr_row_moments(chunk.data, chunk.indptr, chunk.r0, chunk.r1, n_features, mean, std)
        centred = out - mean[:, None] if subtract_mean else out
        with np.errstate(divide="ignore", invalid="ignore"):
            z = centred * n_targets[None, :] / std[:, None]
        out[:] = np.where(std[:, None] > 0, z, 0.0)

    return Plan(run=run, null=null_sets)


register(Method(
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
    prepare=_prepare_zmean,
    nulls=("matched", "analytic"),
))  # fmt: skip


# ------------------------------------------------------------------------------------ GSVA (gseapy)
def _prepare_gsva(resolved, stats: GeneStats, params, random_state, null: NullSpec | None = None):
    if stats.n_rows > params["max_samples"]:
        raise InputError(
            f"GSVA scores every sample against all others and needs the whole matrix dense; {stats.n_rows:,} rows is more "
            f"than max_samples={params['max_samples']:,}. It is meant for bulk or pseudobulk data: use "
            "ie.pp.pseudobulk(...) first, a per-cell method (ucell, aucell, singscore), or raise max_samples."
        )
    if params["kcdf"] not in ("Gaussian", "Poisson", None):
        raise InputError("kcdf must be 'Gaussian' (log-normalised data), 'Poisson' (counts) or None.")
    ptrs = _split_sets(resolved)
    (up_ptr, up_idx), (dn_ptr, dn_idx) = ptrs
    labels = np.asarray([f"G{i}" for i in range(stats.n_genes)])  # neutral upper-case ids: no renaming inside gseapy
    sets: dict[str, list[str]] = {}
    for s, name in enumerate(resolved.names):
        sets[f"{name}__UP"] = labels[up_idx[up_ptr[s] : up_ptr[s + 1]]].tolist()
        if dn_ptr[s + 1] > dn_ptr[s]:
            sets[f"{name}__DN"] = labels[dn_idx[dn_ptr[s] : dn_ptr[s + 1]]].tolist()
    # GSVA's gene statistics depend on all samples, not on the sets: the random sets join the one gseapy call
    null_sets = _rank_null_sets(null, resolved, stats, ptrs, np.ones(stats.n_genes, bool), random_state, nulls.LINEAR)
    if null_sets is not None:
        run_ptr, run_lo, run_hi, _, run_part = null_sets.runs
        for k in range(null_sets.slot_gene.shape[0]):
            for s, name in enumerate(resolved.names):
                for r in range(run_ptr[s], run_ptr[s + 1]):
                    key = f"{name}__N{k}__{'UP' if run_part[r] == 0 else 'DN'}"
                    sets.setdefault(key, []).extend(labels[null_sets.slot_gene[k, run_lo[r] : run_hi[r]]].tolist())
    sets = {k: v for k, v in sets.items() if v}

    def run_all(matrix, null_out: NullOut | None = None) -> np.ndarray:
        import gseapy

        dense = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)
        frame = pd.DataFrame(dense.T.astype(np.float64), index=labels, columns=[f"s{i}" for i in range(dense.shape[0])])
        res = gseapy.gsva(frame, sets, kcdf=params["kcdf"], weight=params["tau"], mx_diff=params["mx_diff"],
                          min_size=1, max_size=stats.n_genes, threads=int(params["threads"]), outdir=None, verbose=False).res2d  # fmt: skip
        table = res.pivot(index="Name", columns="Term", values="ES").astype(float).reindex(index=frame.columns)

        def es(prefix: str) -> np.ndarray:  # ES(up) - ES(down) of the sets named prefix__UP / prefix__DN
            up = table[f"{prefix}__UP"].to_numpy() if f"{prefix}__UP" in table else np.zeros(dense.shape[0])
            return up - (table[f"{prefix}__DN"].to_numpy() if f"{prefix}__DN" in table else 0.0)

        out = np.stack([es(name) for name in resolved.names], axis=1)
        if null_sets is not None and null_out is not None:
            n_null = null_sets.slot_gene.shape[0]
            random = np.stack([np.stack([es(f"{name}__N{k}") for k in range(n_null)], axis=1) for name in resolved.names], 1)
            nulls.explicit_nulls(out, random, null_sets.seed, 0, *null_out)
        return out

    return Plan(run_all=run_all, null=null_sets)


register(Method(
    name="gsva",
    description="GSVA: kernel-CDF gene statistics across samples, then a rank random walk per sample (gseapy's Rust code)",
    equals="gseapy.gsva ES (delegated); bulk and pseudobulk only, slower than the per-cell methods",
    reference="Hanzelmann, Castelo & Guinney, BMC Bioinformatics 2013, doi:10.1186/1471-2105-14-7",
    params={"kcdf": "Gaussian", "tau": 1.0, "mx_diff": True, "max_samples": 5000, "threads": 2},
    rules={"kcdf": ("optional str", ("Gaussian", "Poisson")), "tau": ("number", 0), "max_samples": ("int", 1), "threads": ("int", 1)},
    needs=(),
    signed="ES(up) minus ES(down)",
    weighted=False,
    expects_log=False,
    value_range="(-1, 1) with mx_diff",
    prepare=_prepare_gsva,
    chunked=False,
))  # fmt: skip
