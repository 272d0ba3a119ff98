"""Row-chunk extraction from CSC matrices without converting the whole matrix."""

from __future__ import annotations

import numpy as np
from numba import njit

from .caching import lock_cache_files


@njit(cache=True, nogil=True)
def csc_rows_to_csr(data, indices, indptr, r0, r1, n_cols):  # pragma: no cover - numba
    """Rows ``r0:r1`` of a CSC matrix with sorted row indices, as CSR arrays (data, indices, indptr)."""
    starts = np.empty(n_cols, np.int64)
    stops = np.empty(n_cols, np.int64)
    counts = np.zeros(r1 - r0 + 1, np.int64)
    for col in range(n_cols):
        a = np.searchsorted(indices[indptr[col] : indptr[col + 1]], r0) + indptr[col]
        b = np.searchsorted(indices[indptr[col] : indptr[col + 1]], r1) + indptr[col]
        starts[col] = a
        stops[col] = b
        for j in range(a, b):
            counts[indices[j] - r0 + 1] += 1
    out_indptr = np.cumsum(counts)
    fill = out_indptr[:-1].copy()
    out_data = np.empty(out_indptr[-1], data.dtype)
    out_indices = np.empty(out_indptr[-1], np.int64)
    for col in range(n_cols):  # columns in order, so each row's column indices come out sorted
        for j in range(starts[col], stops[col]):
            r = indices[j] - r0
            out_data[fill[r]] = data[j]
            out_indices[fill[r]] = col
            fill[r] += 1
    return out_data, out_indices, out_indptr


lock_cache_files(globals())  # see .caching: safe on-disk caches when processes compile at once
