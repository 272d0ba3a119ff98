"""Scoring a dask array (in-process or on a dask.distributed cluster).

Blocks of rows are summarised in parallel (values checked, gene sums and non-empty genes), the
summaries are combined in block order on the client, the method's plan is prepared there, and every
row block is scored with ``map_blocks`` by the same numba kernels as in memory. Nothing here starts
its own workers: the scheduler that is active (threads, processes or a distributed Client) runs it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._chunks import iter_chunks
from .._errors import InputError
from ..genes import ResolvedSignatures
from ..methods import Method
from .chunk import score_chunk
from .values import ValueSummary, report_values, stats_from_summary, summarize_chunks


def _block_summary(block, needs: tuple[str, ...], chunk_size: int | None):
    return summarize_chunks(block, needs, chunk_size)


def _score_block(block, plan, method: Method, n_sig: int, chunk_size: int | None, block_info=None) -> np.ndarray:
    """Scores of one row block; with a null, [scores | z | p] side by side."""
    with_null = plan.null is not None
    first_row = block_info[0]["array-location"][0][0] if block_info else 0  # the null's tie-breaking uses row numbers
    out = np.empty((block.shape[0], n_sig * (3 if with_null else 1)), dtype=np.float64)
    scores, z, p = out[:, :n_sig], out[:, n_sig : 2 * n_sig], out[:, 2 * n_sig :]
    for chunk in iter_chunks(block, chunk_size):
        rows = slice(chunk.start, chunk.stop)
        chunk.start += first_row
        chunk.stop += first_row
        score_chunk(chunk, plan, method, scores[rows], (z[rows], p[rows]) if with_null else None)
    return out


def gather_blocks(blocks, offsets: np.ndarray, out: np.ndarray) -> None:
    """Compute row blocks into ``out[offsets[k]:offsets[k + 1]]``, each block's rows moving to this process
    as soon as they exist.

    On a dask.distributed cluster, ``compute()`` of the whole array would join every block in one task
    on a worker, and ``dask.compute`` of the blocks keeps each result on its worker until all are done:
    either way a worker ends up holding a large share of every cell's scores (1.6 GB for 10M cells x 20
    signatures). ``as_completed`` takes each block as it finishes and lets the worker forget it.
    """
    import dask

    try:
        from distributed import as_completed, default_client

        client = default_client()
    except (ImportError, ValueError):  # no cluster: the scheduler runs in this process anyway
        client = None
    if client is None:
        for k, part in enumerate(dask.compute(*blocks)):
            out[offsets[k] : offsets[k + 1]] = part
        return
    futures = client.compute(list(blocks))
    block_of = {future.key: k for k, future in enumerate(futures)}
    for future, part in as_completed(futures, with_results=True):
        k = block_of[future.key]
        out[offsets[k] : offsets[k + 1]] = part
        futures[k] = None
        future.release()


def score_dask(
    matrix,
    resolved: ResolvedSignatures,
    method: Method,
    params: dict[str, Any],
    *,
    chunk_size=None,
    random_state=0,
    null=None,
) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    import dask
    import dask.array as da

    if matrix.ndim != 2:
        raise InputError(f"Expected a 2-D cells x genes dask array, got {matrix.ndim} dimensions.")
    if len(matrix.chunks[1]) > 1:  # kernels need whole rows
        matrix = matrix.rechunk({1: -1})
    blocks = matrix.to_delayed().ravel()
    parts = dask.compute(*[dask.delayed(_block_summary)(b, method.needs, chunk_size) for b in blocks])
    summary = ValueSummary(n_rows=0)
    for part in parts:  # block order: deterministic combination
        summary.merge(part)
    report_values(summary, method)
    stats = stats_from_summary(summary, matrix.shape[1], method)
    plan = method.prepare(resolved, stats, params, random_state, null)
    n_sig = len(resolved.signatures)
    width = n_sig * (3 if null is not None else 1)
    scored = da.map_blocks(
        _score_block,
        matrix,
        plan,
        method,
        n_sig,
        chunk_size,
        dtype=np.float64,
        chunks=(matrix.chunks[0], (width,)),
        meta=np.empty((0, 0)),
    )
    result = np.empty((matrix.shape[0], width))
    gather_blocks(scored.to_delayed().ravel(), np.cumsum((0, *matrix.chunks[0])), result)
    if null is None:
        return plan.finish(result), plan.details, {}
    null_stats = {"z": result[:, n_sig : 2 * n_sig], "pval": result[:, 2 * n_sig :], "details": plan.null.details}
    return plan.finish(result[:, :n_sig]), plan.details, null_stats
