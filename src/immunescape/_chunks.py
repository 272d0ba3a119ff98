"""Row chunks of any supported matrix as CSR arrays for the kernels.

In-memory CSR is handed over as views of its own arrays (no copy). Dense, CSC and other inputs are
converted one chunk at a time, so memory is bounded by the chunk, not by the matrix.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._errors import InputError
from ._kernels.convert import csc_rows_to_csr

DEFAULT_CHUNK_SIZE = 10_000


@dataclass
class Chunk:
    """Rows ``r0:r1`` of the CSR arrays correspond to matrix rows ``start:stop``."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    r0: int
    r1: int
    start: int
    stop: int
    n_cols: int = 0

    @property
    def max_nnz(self) -> int:
        counts = np.diff(self.indptr[self.r0 : self.r1 + 1])
        return int(counts.max()) if counts.size else 0


def check_chunk_size(chunk_size: int | None) -> int:
    """The chunk size to use, or a clear error for a non-positive one."""
    if chunk_size is None:
        return DEFAULT_CHUNK_SIZE
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size <= 0:
        raise InputError(f"chunk_size must be a positive number of rows, got {chunk_size!r}.")
    return int(chunk_size)


def _float(data: np.ndarray) -> np.ndarray:
    return data if data.dtype in (np.float32, np.float64) else data.astype(np.float64)


def iter_chunks(matrix, chunk_size: int | None = None) -> Iterator[Chunk]:
    """Yield consecutive row chunks of ``matrix`` as :class:`Chunk`."""
    n_rows = matrix.shape[0]
    size = check_chunk_size(chunk_size)
    if sp.issparse(matrix) and matrix.format == "csr":  # views of the matrix's own arrays: no copy
        data = _float(matrix.data)
        indptr = matrix.indptr.astype(np.int64, copy=False)
        for start in range(0, n_rows, size):
            stop = min(start + size, n_rows)
            yield Chunk(data, matrix.indices, indptr, start, stop, start, stop, matrix.shape[1])
        return
    if sp.issparse(matrix) and matrix.format == "csc":
        if not matrix.has_sorted_indices:
            matrix = matrix.sorted_indices()
        for start in range(0, n_rows, size):
            stop = min(start + size, n_rows)
            d, i, p = csc_rows_to_csr(_float(matrix.data), matrix.indices, matrix.indptr.astype(np.int64), start, stop, matrix.shape[1])
            yield Chunk(d, i, p, 0, stop - start, start, stop, matrix.shape[1])
        return
    in_memory = isinstance(matrix, np.ndarray)
    starts = list(range(0, n_rows, size))

    def read(start: int) -> Chunk:
        stop = min(start + size, n_rows)
        block = matrix[start:stop]
        block = block.tocsr() if sp.issparse(block) else sp.csr_matrix(np.asarray(block))
        return Chunk(_float(block.data), block.indices, block.indptr.astype(np.int64), 0, stop - start, start, stop, matrix.shape[1])

    if in_memory or len(starts) < 2:
        for start in starts:
            yield read(start)
        return
    # On disk: read the next chunk in a background thread while this one is scored (the numba kernels
    # release the GIL), so time is about max(reading, scoring) instead of their sum. Two chunks at most.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="immunescape-prefetch") as pool:
        pending = pool.submit(read, starts[0])
        for nxt in [*starts[1:], None]:
            chunk = pending.result()
            if nxt is not None:
                pending = pool.submit(read, nxt)
            yield chunk
