from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from tqdm.auto import tqdm

from .._anndata import get_expression
from .._chunks import check_chunk_size, iter_chunks, verified
from .._errors import DataWarning, InputError
from .._kernels import scan
from .._null import benjamini_hochberg, check_null_args
from .._utils import check_key, check_random_state, package_versions, physical_memory
from ..genes import ResolvedSignatures, resolve
from ..methods import GeneStats, Method, NullSpec, get_method, methods_table
from ..signatures import SignatureLike, load, named_explicitly

logger = logging.getLogger(__name__)
_SCAN_BLOCK = 4_000_000  # stored values per block of the validation scan
_INT_CHECK = 1_000_000  # values inspected to tell integer counts from normalised data


def methods() -> pd.DataFrame:
    """The scoring methods: what each equals, its parameters and defaults, and its reference.

    Examples
    --------
    >>> import immunescape as ie
    >>> sorted(ie.tl.methods().index)
    ['aucell', 'gsva', 'mean', 'singscore', 'ssgsea', 'ucell', 'wmean', 'zmean']
    """
    return methods_table()


LOW_COVERAGE = ("auto", "drop", "raise")

#: obsm key suffixes of the null statistics (the keys of ``score(..., inplace=False)``'s dict without the "_")
NULL_SUFFIXES = ("_z", "_pval", "_padj")


def score(
    adata: AnnData | pd.DataFrame,
    signatures: SignatureLike = "immune_escape",
    method: str = "ucell",
    *,
    null: str | None = None,
    n_null: int = 100,
    null_bins: int | None = None,
    layer: str | None = None,
    use_raw: bool | None = None,
    gene_symbols: str | None = None,
    key_added: str = "immunescape",
    obs: bool = True,
    min_coverage: float = 0.5,
    low_coverage: str = "auto",
    organism: str | None = None,
    chunk_size: int | None = None,
    n_jobs: int | None = None,
    random_state: int | None = 0,
    progress: bool | None = None,
    inplace: bool = True,
    copy: bool = False,
    **method_params: Any,
) -> AnnData | pd.DataFrame | dict[str, pd.DataFrame] | None:
    """Score every cell (or sample) with every requested signature in one pass over the matrix.

    Parameters
    ----------
    adata
        Cells (or bulk samples) x genes. A pandas DataFrame (samples x genes) is scored the same way
        and the scores are returned.
    signatures
        Built-in names or collections (``"immune_escape"``, ``"bagaev2021"``, ``"all"``, comma
        separated names), a YAML/JSON/GMT file, a dict, a decoupler-style DataFrame, or
        :class:`~immunescape.Signature` objects.
    method
        One of :func:`methods`: ``"ucell"``, ``"aucell"``, ``"mean"`` (scanpy's score_genes),
        ``"ssgsea"``, ``"singscore"``, ``"wmean"``, ``"zmean"``, or ``"gsva"`` (gseapy; bulk and
        pseudobulk only: it needs all samples at once and refuses more than ``max_samples`` rows).
    null
        ``"matched"`` also tests every score against ``n_null`` random gene sets drawn for each
        signature with the same number of genes in each expression bin (genes binned by their mean
        over all cells, as scanpy's control genes; up, down and differently weighted genes each
        matched) and scored by the same method in the same pass. Adds, per cell and signature,
        ``obsm[key_added + "_z"]`` (the score minus the null sets' mean, over their standard
        deviation), ``obsm[key_added + "_pval"]`` (upper-tail empirical p-value) and
        ``obsm[key_added + "_padj"]`` (Benjamini-Hochberg over the signatures of each cell; use
        :func:`immunescape.tl.adjust_pvalues` to adjust across cells instead). The p-value is
        randomised: ``(n_above + U (n_tied + 1)) / (n_null + 1)`` with ``U`` uniform, so it is
        exactly uniform for a signature that is no different from random genes, even where many
        scores tie (sparse cells); its resolution is ``1 / (n_null + 1)``. ``aucell`` and ``ssgsea``
        break rank ties in a fixed gene order (as decoupler and gseapy), which would favour a fixed
        gene set in every cell, so their z and p are for the tie-averaged statistic (the scores are
        unchanged). ``gsva`` (gseapy) scores the random sets in its one call with the signatures:
        its cost grows with ``n_null`` times the signatures.

        ``"analytic"`` (``mean``, ``wmean``, ``zmean``): the same null without drawing sets. A linear
        score of random genes drawn without replacement within bins has exact moments, computed per
        cell from its per-bin sums of values, squares and cubes: z is exact (the limit of
        ``"matched"``'s as ``n_null`` grows) and the p-value is the Edgeworth approximation (normal
        tail corrected for the exact skewness); where all of a signature's genes are zero in a cell
        the exact probability of that atom is used, randomised as above. About one scoring pass of
        extra work whatever the signatures' sizes. Tested calibrated (KS, and the 5% and 1% tails
        within 25% of nominal) on sparse counts with 5-40 gene signatures; ``"matched"`` stays
        exact by construction for any data.
    n_null
        Random gene sets per signature (default 100; unused by ``"analytic"``). They are shared
        across signatures (each signature's sets are independent draws within its own bins), so the
        cost grows with the cells' non-zeros and the signatures' genes.
    null_bins
        Expression bins the random genes are matched in. Default 25 (scanpy's control bins), 50 for
        ``aucell``: it counts only each cell's top-ranked genes, so a signature of genes at the top
        of a coarse bin would beat its random sets in every cell.
    layer, use_raw
        Which matrix to score, as in scanpy: ``use_raw=None`` uses ``.raw`` when it exists and no
        layer is given.
    gene_symbols
        Column of ``var`` (``raw.var``) with gene symbols, when ``var_names`` are other ids.
    key_added
        Scores go to ``obsm[key_added]`` and, with ``obs=True``, to ``obs[f"{key_added}_{name}"]``;
        parameters, versions and the gene coverage report to ``uns[key_added]``. Scoring again with
        the same key replaces everything the earlier run wrote: its ``obs`` columns and null tables
        that this run does not rewrite are removed (listed in ``uns[key_added]["removed_previous"]``).
    obs
        Also write one ``obs`` column per signature.
    min_coverage
        Smallest fraction of each signature's genes that must be found (see
        :func:`immunescape.genes.resolve`).
    low_coverage
        What to do with signatures below ``min_coverage``: ``"raise"`` an error naming the missing
        genes; ``"drop"`` them with one :class:`~immunescape.CoverageWarning` naming each with its
        coverage (recorded in ``uns[key_added]["left_out"]``); ``"auto"`` (default) drops members of
        a collection, a file or a table of sets (a targeted gene panel covers some of them) but
        raises for a signature named one by one. Nothing left to score is always an error.
    organism
        ``"human"`` or ``"mouse"``; None detects it from the gene names.
    chunk_size
        Cells per chunk (default 10,000). Results do not depend on it.
    n_jobs
        Threads for the numba kernels (default: all cores). Results do not depend on it.
    random_state
        Seed of the method's randomness (control genes for ``mean``, tie-breaking order for
        ``aucell``, the random gene sets and tie-breaking of the null). The same seed gives the
        same scores and p-values, whatever ``chunk_size`` and ``n_jobs``.
    progress
        Show a progress bar; None shows one for more than 100,000 cells.
    inplace
        Write into ``adata``; False returns the scores as a DataFrame and leaves ``adata`` untouched.
    copy
        Score a copy of ``adata`` and return it.
    **method_params
        The method's parameters (e.g. ``max_rank`` for ucell, ``ctrl_size`` for mean).

    Returns
    -------
    None, the scored copy (``copy=True``) or the score DataFrame (``inplace=False`` or DataFrame input;
    with a null, a dict of DataFrames ``{"score", "z", "pval", "padj"}``, cells x signatures each).

    Examples
    --------
    >>> import scanpy as sc, immunescape as ie
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> ie.tl.score(adata, "cytolytic_activity_rooney2015,bagaev2021_NK_cells", method="ucell", min_coverage=0.3)
    >>> adata.obsm["immunescape"].shape
    (700, 2)
    >>> ie.tl.score(adata, "cytolytic_activity_rooney2015", null="matched", n_null=50, min_coverage=0.3)
    >>> bool((adata.obsm["immunescape_pval"].to_numpy() <= 1).all())
    True
    """
    if isinstance(adata, pd.DataFrame):
        frame = adata
        adata = AnnData(X=frame.to_numpy(), obs=pd.DataFrame(index=frame.index.astype(str)),
                        var=pd.DataFrame(index=frame.columns.astype(str)))  # fmt: skip
        inplace, copy = False, False
    if inplace:
        check_key(key_added)
    if copy:
        adata = adata.copy()
    table, record, null_tables = compute_scores(
        adata, signatures, method, null=null, n_null=n_null, null_bins=null_bins, layer=layer, use_raw=use_raw,
        gene_symbols=gene_symbols, min_coverage=min_coverage, low_coverage=low_coverage, organism=organism,
        chunk_size=chunk_size, n_jobs=n_jobs, random_state=random_state, progress=progress, **method_params,
    )  # fmt: skip
    if not inplace:
        return {"score": table, **{suffix[1:]: frame for suffix, frame in null_tables.items()}} if null_tables else table
    store_scores(adata, table, record, null_tables, key_added, obs=obs)
    logger.info("added obsm[%r] (%d signatures, method %s)", key_added, table.shape[1], record["method"])
    return adata if copy else None


def store_scores(adata: AnnData, table: pd.DataFrame, record: dict, null_tables: dict[str, pd.DataFrame], key_added: str,
                 *, obs: bool = True) -> None:  # fmt: skip
    """Write scores, null tables and the record into ``adata`` as :func:`score` does, first removing what an
    earlier run with the same ``key_added`` wrote and this one does not rewrite."""
    new_obs = obs_columns(table, key_added) if obs else {}
    stale_obs, stale_obsm = previous_outputs(adata, key_added, new_obs, [key_added + s for s in null_tables])
    adata.obs.drop(columns=stale_obs, inplace=True)
    for name in stale_obsm:
        del adata.obsm[name]
    adata.obsm[key_added] = table
    for suffix, frame in null_tables.items():
        adata.obsm[key_added + suffix] = frame
    for name, values in new_obs.items():
        adata.obs[name] = values
    record["removed_previous"] = removed_record(stale_obs, stale_obsm)
    adata.uns[key_added] = record


def removed_record(stale_obs: list[str], stale_obsm: list[str]) -> dict[str, np.ndarray]:
    """How ``uns[key_added]["removed_previous"]`` lists what a re-run removed."""
    return {"obs": np.asarray(stale_obs, dtype=str), "obsm": np.asarray(stale_obsm, dtype=str)}


def previous_outputs(adata: AnnData, key_added: str, new_obs, new_obsm) -> tuple[list[str], list[str]]:
    """The ``obs`` columns and ``obsm`` entries an earlier ``score`` run with ``key_added`` wrote that this
    run does not rewrite: removed, so obs and obsm never disagree (the run's ``uns`` lists them)."""
    previous = adata.uns.get(key_added)
    names = previous.get("signatures", []) if isinstance(previous, dict) else []
    stale_obs = [c for c in (f"{key_added}_{n}" for n in np.asarray(names, dtype=str).ravel()) if c in adata.obs and c not in new_obs]
    stale_obsm = [k for k in (key_added + s for s in NULL_SUFFIXES) if k in adata.obsm and k not in new_obsm]
    if stale_obs or stale_obsm:
        logger.info("removed %d obs column(s) and %d obsm entr(ies) of the previous %r run", len(stale_obs), len(stale_obsm), key_added)
    return stale_obs, stale_obsm


def obs_columns(table: pd.DataFrame, key_added: str) -> dict[str, np.ndarray]:
    """The ``obs`` columns ``score`` adds: one per signature, named ``{key_added}_{signature}``."""
    return {f"{key_added}_{name}": table[name].to_numpy() for name in table.columns}


def compute_scores(
    adata: AnnData, signatures: SignatureLike, method: str, *, null=None, n_null=100, null_bins=None, layer=None,
    use_raw=None, gene_symbols=None, min_coverage=0.5, low_coverage="auto", organism=None, chunk_size=None, n_jobs=None,
    random_state=0, progress=None, **method_params: Any,
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, pd.DataFrame]]:  # fmt: skip
    """Scores, the provenance record ``score`` stores in ``uns``, and (with a null) the z, p and
    adjusted p tables keyed by their obsm suffix; ``adata`` is not touched."""
    m = get_method(method)
    params = m.check_params(method_params)
    check_null_args(null, n_null, null_bins)
    check_random_state(random_state)
    spec = NullSpec(n_null=int(n_null), n_bins=int(null_bins or m.null_bins), kind=null) if null else None
    if not isinstance(adata, AnnData):
        raise InputError(f"Expected an AnnData object, got {type(adata).__name__}. Wrap a matrix with anndata.AnnData(X).")
    if not adata.obs_names.is_unique:
        warnings.warn("obs names are not unique; scores are still per row, but call adata.obs_names_make_unique() before "
                      "joining them with other tables.", DataWarning, stacklevel=3)  # fmt: skip
    if low_coverage not in LOW_COVERAGE:
        raise InputError(f"low_coverage must be one of {LOW_COVERAGE}, got {low_coverage!r}.")
    # score_matrix checks the sparse structure once, before its first pass
    matrix, names, used_raw = get_expression(adata, layer=layer, use_raw=use_raw, gene_symbols=gene_symbols, check=False)
    sigs = load(signatures)
    left_out = pd.DataFrame(columns=["name", "n_found", "n_genes", "coverage"])
    if low_coverage != "raise":
        keep = named_explicitly(signatures) if low_coverage == "auto" else set()
        sigs, left_out = _drop_low_coverage(sigs, names, min_coverage, organism, keep=keep)
    resolved = resolve(sigs, names, min_coverage=min_coverage, organism=organism)
    scores, details, null_stats = score_matrix(
        matrix, resolved, m, _kernel_params(params, names), null=spec, chunk_size=chunk_size, n_jobs=n_jobs, random_state=random_state,
        progress=progress,
    )  # fmt: skip

    def frame(values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(values, index=pd.Index(adata.obs_names.copy()), columns=pd.Index(resolved.names))

    table = frame(scores)
    null_tables = {}
    if spec is not None:
        null_tables = dict(zip(NULL_SUFFIXES, map(frame, (null_stats["z"], null_stats["pval"], benjamini_hochberg(null_stats["pval"])))))
        p_value = "randomised empirical, upper tail" if null == "matched" else "Edgeworth (exact mean, variance, skewness), upper tail"
        details = {**details, "null": {"kind": null, **null_stats["details"], "p_value": p_value,
                                       "adjustment": "Benjamini-Hochberg across the signatures of each cell"}}  # fmt: skip
    record = _h5ad_safe(
        {
            "method": m.name,
            "params": params,
            "signatures": resolved.names,
            "coverage": resolved.coverage.reset_index(),
            "layer": layer,
            "use_raw": used_raw,
            "gene_symbols": gene_symbols,
            "organism": resolved.organism,
            "gene_id_type": resolved.id_type,
            "random_state": random_state,
            "min_coverage": min_coverage,
            "low_coverage": low_coverage,
            "left_out": left_out,
            "details": details,
            "versions": package_versions(),
        }
    )
    return table, record, null_tables


def _kernel_params(params: dict[str, Any], names: pd.Index) -> dict[str, Any]:
    """The parameters as the kernels take them: ``gene_pool`` (gene names, as in scanpy) as column positions."""
    pool = params.get("gene_pool")
    if pool is None:
        return params
    if isinstance(pool, str) or not all(isinstance(g, str) for g in pool):
        raise InputError("gene_pool must be a list of gene names (as in scanpy.tl.score_genes).")
    position = pd.Series(np.arange(len(names)), index=names)
    position = position[~position.index.duplicated()]
    missing = [g for g in pool if g not in position.index]
    if missing or not len(pool):
        raise InputError(f"gene_pool names {len(missing)} gene(s) not in the data ({', '.join(missing[:5])}...)"
                         if missing else "gene_pool is empty; give gene names or None for all genes.")  # fmt: skip
    return {**params, "gene_pool": position.loc[list(dict.fromkeys(pool))].to_numpy(np.int64)}


def _drop_low_coverage(sigs, names, min_coverage, organism, *, keep=frozenset()):
    """The signatures that reach ``min_coverage`` (and those in ``keep``, left for ``resolve`` to judge),
    and a table of the ones left out, announced in one warning."""
    from .._errors import CoverageWarning

    cover = resolve(sigs, names, min_coverage=min_coverage, organism=organism, check=False).coverage
    low = cover[((cover["coverage"] < min_coverage) | (cover["n_found"] == 0)) & ~cover.index.isin(list(keep))]
    if len(low) == len(cover):  # nothing would be left: resolve's error names every signature and its missing genes
        return sigs, low.iloc[:0][["n_found", "n_genes", "coverage"]].rename_axis("name").reset_index()
    if len(low):
        warnings.warn(f"{len(low)} of {len(cover)} signatures below min_coverage={min_coverage:.0%} were left out: "
                      + ", ".join(f"{n} ({r.n_found}/{r.n_genes})" for n, r in low.iterrows())
                      + " (low_coverage='raise' to stop instead).", CoverageWarning, stacklevel=4)  # fmt: skip
    table = low[["n_found", "n_genes", "coverage"]].rename_axis("name").reset_index()
    return [s for s in sigs if s.name not in set(low.index)], table


def score_matrix(
    matrix,
    resolved: ResolvedSignatures,
    method: Method,
    params: dict[str, Any],
    *,
    chunk_size: int | None = None,
    n_jobs: int | None = None,
    random_state: int | None = 0,
    progress: bool | None = None,
    null: NullSpec | None = None,
) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    """Score a cells x genes matrix (dense, CSR or CSC) with resolved signatures: the array-level core.

    Returns the scores, the method's details and, with a ``null``, ``{"z", "pval", "details"}``
    (an empty dict without)."""
    with verified(matrix):  # checked once here; the passes over the rows below do not repeat it
        return _score_matrix(matrix, resolved, method, params, chunk_size=chunk_size, n_jobs=n_jobs, random_state=random_state,
                             progress=progress, null=null)  # fmt: skip


def _score_matrix(matrix, resolved: ResolvedSignatures, method: Method, params: dict[str, Any], *, chunk_size, n_jobs, random_state,
                  progress, null) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:  # fmt: skip
    n_rows, n_genes = matrix.shape
    if n_rows == 0:
        raise InputError("The data have no cells/samples (0 rows); nothing to score.")
    if n_genes == 0:
        raise InputError("The data have no genes (0 columns); nothing to score.")
    check_chunk_size(chunk_size)
    tables = 3 if null is not None else 1  # scores, and with a null z and p
    need = 8 * n_rows * len(resolved.signatures) * tables
    if need > physical_memory() // 2:
        raise InputError(f"{n_rows:,} rows x {len(resolved.signatures):,} signatures of scores{' with a null' if null else ''} need "
                         f"{need / 2**30:,.1f} GiB, more than half of this machine's memory; score fewer signatures per run "
                         "or a subset of the rows.")  # fmt: skip
    show = progress if progress is not None else n_rows > 100_000
    if null is not None:  # the null's expression bins need gene means
        method = dataclasses.replace(method, needs=(*method.needs, "null_means"))
    if method.name == "gsva":  # needs all samples at once: validate, then hand the whole matrix over
        if null is not None and not is_in_memory(matrix):  # GSVA loads every row anyway; the null's bins need means
            matrix = matrix.compute() if is_dask(matrix) else matrix[:]
        stats = _scan(matrix, method, chunk_size) if is_in_memory(matrix) else GeneStats(n_rows=n_rows, n_genes=n_genes)
        plan = method.prepare(resolved, stats, params, random_state, null)
        z, pval = (np.empty((n_rows, len(resolved.signatures))), np.empty((n_rows, len(resolved.signatures)))) if null else (None, None)
        scores = plan.run_all(matrix if is_in_memory(matrix) else matrix[:], None if null is None else (z, pval))
        null_stats = {"z": z, "pval": pval, "details": plan.null.details} if null is not None else {}
        return plan.finish(scores), plan.details, null_stats
    if is_dask(matrix):
        from .._dask import score_dask

        return score_dask(matrix, resolved, method, params, chunk_size=chunk_size, random_state=random_state, null=null)
    # On disk, a method that needs no statistic over all rows validates each chunk as it scores it: one
    # pass over the file instead of two. Nothing is written before the end, so a bad value still
    # stops the run before any output exists.
    one_pass = not is_in_memory(matrix) and not ({"means", "nonempty", "null_means"} & set(method.needs))
    with numba_threads(n_jobs):
        if one_pass:
            stats = GeneStats(n_rows=n_rows, n_genes=matrix.shape[1])
            summary = ValueSummary(n_rows=n_rows)
        else:
            stats = _scan(matrix, method, chunk_size, progress=show)
        plan = method.prepare(resolved, stats, params, random_state, null)
        shape = (n_rows, len(resolved.signatures))
        out = np.empty(shape, dtype=np.float64)
        z, pval = (np.empty(shape), np.empty(shape)) if null is not None else (None, None)
        desc = f"scoring ({method.name}{', null' if null is not None else ''})"
        with tqdm(total=n_rows, unit="cells", disable=not show, desc=desc) as bar:
            for chunk in iter_chunks(matrix, chunk_size):
                if one_pass:
                    summary.add_values(chunk.data[chunk.indptr[chunk.r0] : chunk.indptr[chunk.r1]])
                    if summary.n_bad:
                        _report(summary, method)
                rows = slice(chunk.start, chunk.stop)
                score_chunk(chunk, plan, method, out[rows], None if z is None else (z[rows], pval[rows]))
                bar.update(chunk.stop - chunk.start)
        if one_pass:
            _report(summary, method)
    null_stats = {"z": z, "pval": pval, "details": plan.null.details} if null is not None else {}
    return plan.finish(out), plan.details, null_stats


def score_chunk(chunk, plan, method: Method, out: np.ndarray, null_out: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Score one row chunk into ``out`` (the rows of ``out`` match the chunk's rows); with
    ``null_out = (z, p)`` also the null statistics."""
    if "unique_entries" in method.needs:
        _check_unique_entries(chunk)
    plan.run(chunk, out, null_out)


def _check_unique_entries(chunk) -> None:
    row = scan.first_duplicate_row(chunk.indices, chunk.indptr, chunk.r0, chunk.r1, chunk.n_cols,
                                   max(1, min(chunk.r1 - chunk.r0, 8 * numba.get_num_threads())))  # fmt: skip
    if row >= 0:
        raise InputError(f"Row {chunk.start + row - chunk.r0} of the sparse matrix stores a gene twice; call X.sum_duplicates() first.")


@contextlib.contextmanager
def numba_threads(n_jobs: int | None) -> Iterator[None]:
    """Run the block with ``n_jobs`` numba threads (None or -1: all), restoring the previous count."""
    available = numba.config.NUMBA_NUM_THREADS
    if n_jobs is not None and (not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0 or n_jobs < -1):
        raise InputError(f"n_jobs must be a positive number of threads or -1 (all), got {n_jobs!r}.")
    wanted = available if n_jobs in (None, -1) else min(int(n_jobs), available)
    previous = numba.get_num_threads()
    numba.set_num_threads(wanted)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def is_in_memory(matrix) -> bool:
    return isinstance(matrix, np.ndarray) or sp.issparse(matrix)


def is_dask(matrix) -> bool:
    return type(matrix).__module__.startswith("dask")


@dataclass
class ValueSummary:
    """What one pass over the stored values found (combinable across blocks in order)."""

    n_bad: int = 0
    minimum: float = np.inf
    integer_like: bool = True
    checked: int = 0
    sums: np.ndarray | None = None
    nonempty: np.ndarray | None = None
    n_rows: int = 0

    def add_values(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        if values.dtype.kind not in "fiub":
            raise InputError(f"Expression values must be real numbers, got dtype {values.dtype}; convert X (or the layer) to float32.")
        if values.dtype == np.float16:  # the kernels take float32/float64
            values = values.astype(np.float32)
        n_bad, block_min, block_int = scan.value_summary(values, 8 * numba.get_num_threads(), max(0, _INT_CHECK - self.checked))
        self.n_bad += int(n_bad)
        self.minimum = min(self.minimum, float(block_min))
        self.integer_like = self.integer_like and (bool(block_int) or self.checked >= _INT_CHECK)
        self.checked += min(values.size, _INT_CHECK)

    def merge(self, other: ValueSummary) -> None:
        self.n_bad += other.n_bad
        self.minimum = min(self.minimum, other.minimum)
        if self.checked < _INT_CHECK:
            self.integer_like = self.integer_like and other.integer_like
            self.checked += other.checked
        self.n_rows += other.n_rows
        if other.sums is not None:
            self.sums = other.sums.copy() if self.sums is None else self.sums + other.sums
        if other.nonempty is not None:
            self.nonempty = other.nonempty.copy() if self.nonempty is None else self.nonempty | other.nonempty


def summarize_chunks(matrix, needs: tuple[str, ...], chunk_size: int | None, *, progress: bool = False) -> ValueSummary:
    """Stream the rows once: validate values and collect gene sums and non-empty genes."""
    n_genes = matrix.shape[1]
    summary = ValueSummary(n_rows=matrix.shape[0])
    summary.sums = np.zeros(n_genes) if {"means", "null_means"} & set(needs) else None
    summary.nonempty = np.zeros(n_genes, np.bool_) if "nonempty" in needs else None
    with tqdm(total=matrix.shape[0], unit="cells", disable=not progress, desc="checking values") as bar:
        for chunk in iter_chunks(matrix, chunk_size):
            lo, hi = chunk.indptr[chunk.r0], chunk.indptr[chunk.r1]
            summary.add_values(chunk.data[lo:hi])
            if summary.sums is not None:
                scan.add_column_sums(chunk.data, chunk.indices, chunk.indptr, chunk.r0, chunk.r1, summary.sums)
            if summary.nonempty is not None:
                scan.mark_nonzero(chunk.data, chunk.indices, lo, hi, summary.nonempty)
            bar.update(chunk.stop - chunk.start)
    return summary


def _value_blocks(matrix) -> Iterator[np.ndarray]:
    """The stored values, in blocks that never copy more than ``_SCAN_BLOCK`` values at once."""
    if sp.issparse(matrix):
        yield matrix.data[: int(matrix.indptr[-1])] if matrix.format in ("csr", "csc") else matrix.data
        return
    rows = max(1, _SCAN_BLOCK // max(matrix.shape[1], 1))
    for start in range(0, matrix.shape[0], rows):
        yield np.ascontiguousarray(matrix[start : start + rows]).ravel()


def _scan(matrix, method: Method, chunk_size: int | None = None, progress: bool = False) -> GeneStats:
    """Validate the values and compute the gene statistics the method needs.

    In-memory matrices are read in place; backed (on-disk) matrices are streamed once in row chunks.
    """
    n_rows, n_genes = matrix.shape
    stats = GeneStats(n_rows=n_rows, n_genes=n_genes)
    if is_in_memory(matrix):
        summary = ValueSummary(n_rows=n_rows)
        for block in _value_blocks(matrix):
            summary.add_values(block)
        _report(summary, method)
        if "means" in method.needs:
            stats.means = _scanpy_gene_means(matrix)
        if "nonempty" in method.needs:
            stats.nonempty = _nonempty_genes(matrix)
        if "null_means" in method.needs:
            stats.null_means = _streamed_gene_means(matrix)
        return stats
    summary = summarize_chunks(matrix, method.needs, chunk_size, progress=progress)
    _report(summary, method)
    return _stats_from_summary(summary, n_genes, method)


def _stats_from_summary(summary: ValueSummary, n_genes: int, method: Method) -> GeneStats:
    stats = GeneStats(n_rows=summary.n_rows, n_genes=n_genes)
    if "means" in method.needs:
        stats.means = summary.sums / summary.n_rows
    if "nonempty" in method.needs:
        stats.nonempty = summary.nonempty
    if "null_means" in method.needs:
        stats.null_means = summary.sums / summary.n_rows
    return stats


def _report(summary: ValueSummary, method: Method) -> None:
    if summary.n_bad:
        raise InputError("The matrix contains NaN or infinite values. Replace them (e.g. X = np.nan_to_num(X)) "
                         "or remove the affected cells/genes before scoring.")  # fmt: skip
    if summary.minimum < 0:
        warnings.warn(
            f"The matrix has negative values (minimum {summary.minimum:.3g}); scaled or centred data change what rank "
            "methods and means measure. Score log-normalised values (adata.raw, or a layer) unless this is intended.",
            DataWarning,
            stacklevel=4,
        )
    if method.expects_log and summary.integer_like and summary.checked > 0:
        warnings.warn(
            f"The matrix holds integer counts, but '{method.name}' expects log-normalised expression. Run "
            "sc.pp.normalize_total(adata) and sc.pp.log1p(adata) first, or pass the normalised layer.",
            DataWarning,
            stacklevel=4,
        )


def _scanpy_gene_means(matrix) -> np.ndarray:
    """Gene means computed exactly as scanpy.tl.score_genes does (its bins depend on ties)."""
    if sp.issparse(matrix):
        return np.asarray(matrix.sum(axis=0, dtype="float64")).ravel() / matrix.shape[0]
    return np.nanmean(np.asarray(matrix), axis=0)


def _streamed_gene_means(matrix) -> np.ndarray:
    """Gene means from float64 sums added row after row, as :func:`summarize_chunks` adds them."""
    sums = np.zeros(matrix.shape[1])
    for chunk in iter_chunks(matrix):
        scan.add_column_sums(chunk.data, chunk.indices, chunk.indptr, chunk.r0, chunk.r1, sums)
    return sums / matrix.shape[0]


def _nonempty_genes(matrix) -> np.ndarray:
    """Genes with a non-zero value in some row (decoupler drops the others)."""
    n_genes = matrix.shape[1]
    if sp.issparse(matrix) and matrix.format == "csr":
        end = int(matrix.indptr[-1])  # arrays may hold slack past the last row's values
        return scan.nonzero_genes(matrix.data[:end], matrix.indices[:end], n_genes)
    if sp.issparse(matrix):
        csc = matrix if matrix.format == "csc" else matrix.tocsc()
        return scan.nonzero_columns_csc(csc.data, csc.indptr)
    out = np.zeros(n_genes, bool)
    rows = max(1, _SCAN_BLOCK // max(n_genes, 1))
    for start in range(0, matrix.shape[0], rows):
        out |= np.asarray(matrix[start : start + rows] != 0).any(axis=0)
    return out


def _h5ad_safe(value: Any) -> Any:
    """Make ``uns`` content writable to .h5ad (no None, plain containers)."""
    if value is None:
        return "None"
    if isinstance(value, dict):
        return {str(k): _h5ad_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_h5ad_safe(v) for v in value]
        return np.asarray(items) if items and all(isinstance(v, (str, int, float, np.number)) for v in items) else items
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value
