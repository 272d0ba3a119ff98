"""The runner: score a matrix (in memory, backed on disk, or dask) with resolved signatures."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import numba
import numpy as np
from tqdm.auto import tqdm

from .._chunks import check_chunk_size, iter_chunks, native_arrays, verified
from .._errors import InputError
from .._utils import physical_memory
from ..genes import ResolvedSignatures
from ..methods import GeneStats, Method, NullSpec
from .chunk import score_chunk
from .dask import score_dask
from .values import ValueSummary, gene_stats, is_in_memory, report_values


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
    method.check_random_state(random_state)
    matrix = native_arrays(matrix)  # once, not in every pass below
    # checked once here, with n_jobs threads; the passes over the rows below do not repeat it
    with numba_threads(n_jobs), verified(matrix):
        return _score_matrix(
            matrix,
            resolved,
            method,
            params,
            chunk_size=chunk_size,
            random_state=random_state,
            progress=progress,
            null=null,
        )


def _score_matrix(
    matrix,
    resolved: ResolvedSignatures,
    method: Method,
    params: dict[str, Any],
    *,
    chunk_size,
    random_state,
    progress,
    null,
) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    n_rows, n_genes = matrix.shape
    if n_rows == 0:
        raise InputError("The data have no cells/samples (0 rows); nothing to score.")
    if n_genes == 0:
        raise InputError("The data have no genes (0 columns); nothing to score.")
    check_chunk_size(chunk_size)
    tables = 3 if null is not None else 1  # scores, and with a null z and p
    need = 8 * n_rows * len(resolved.signatures) * tables
    if need > physical_memory() // 2:
        raise InputError(
            f"{n_rows:,} rows x {len(resolved.signatures):,} signatures of scores{' with a null' if null else ''} need "
            f"{need / 2**30:,.1f} GiB, more than half of this machine's memory; score fewer signatures per run "
            "or a subset of the rows."
        )
    show = progress if progress is not None else n_rows > 100_000
    if null is not None:  # the null's expression bins need gene means
        method = dataclasses.replace(method, needs=(*method.needs, "null_means"))
    if not method.chunked:  # scores depend on all rows at once (gsva): validate, then hand the whole matrix over
        if null is not None and not is_in_memory(matrix):  # GSVA loads every row anyway; the null's bins need means
            matrix = matrix.compute() if is_dask(matrix) else matrix[:]
        stats = (
            gene_stats(matrix, method, chunk_size)
            if is_in_memory(matrix)
            else GeneStats(n_rows=n_rows, n_genes=n_genes)
        )
        plan = method.prepare(resolved, stats, params, random_state, null)
        z, pval = (
            (np.empty((n_rows, len(resolved.signatures))), np.empty((n_rows, len(resolved.signatures))))
            if null
            else (None, None)
        )
        scores = plan.run_all(matrix if is_in_memory(matrix) else matrix[:], None if null is None else (z, pval))
        null_stats = {"z": z, "pval": pval, "details": plan.null.details} if null is not None else {}
        return plan.finish(scores), plan.details, null_stats
    if is_dask(matrix):
        return score_dask(matrix, resolved, method, params, chunk_size=chunk_size, random_state=random_state, null=null)
    # On disk, a method that needs no statistic over all rows validates each chunk as it scores it: one
    # pass over the file instead of two. Nothing is written before the end, so a bad value still
    # stops the run before any output exists.
    one_pass = not is_in_memory(matrix) and not ({"means", "nonempty", "null_means"} & set(method.needs))
    if one_pass:
        stats = GeneStats(n_rows=n_rows, n_genes=matrix.shape[1])
        summary = ValueSummary(n_rows=n_rows)
    else:
        stats = gene_stats(matrix, method, chunk_size, progress=show, pool=params.get("gene_pool"))
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
                    report_values(summary, method)
            rows = slice(chunk.start, chunk.stop)
            score_chunk(chunk, plan, method, out[rows], None if z is None else (z[rows], pval[rows]))
            bar.update(chunk.stop - chunk.start)
    if one_pass:
        report_values(summary, method)
    null_stats = {"z": z, "pval": pval, "details": plan.null.details} if null is not None else {}
    return plan.finish(out), plan.details, null_stats


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


def is_dask(matrix) -> bool:
    return type(matrix).__module__.startswith("dask")
