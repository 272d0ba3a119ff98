"""One-pass summaries of stored values: validation, non-empty genes, duplicate entries."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .caching import lock_cache_files


@njit(parallel=True, cache=True, nogil=True)
def value_summary(values, n_blocks, n_integer_check):  # pragma: no cover - numba
    """(number of NaN/inf, minimum finite value, whether the first ``n_integer_check`` values are integers)."""
    n = values.size
    bad = np.zeros(n_blocks, np.int64)
    mins = np.full(n_blocks, np.inf)
    for b in prange(n_blocks):
        lo = b * n // n_blocks
        hi = (b + 1) * n // n_blocks
        for j in range(lo, hi):
            v = np.float64(values[j])
            if not np.isfinite(v):
                bad[b] += 1
            elif v < mins[b]:
                mins[b] = v
    integer = True
    for j in range(min(n, n_integer_check)):
        v = np.float64(values[j])
        if np.isfinite(v) and v != np.floor(v):
            integer = False
            break
    return bad.sum(), mins.min(), integer


@njit(cache=True, nogil=True)
def nonzero_genes(data, indices, n_genes):  # pragma: no cover - numba
    """Genes with at least one stored non-zero value."""
    out = np.zeros(n_genes, np.bool_)
    for j in range(data.size):
        if data[j] != 0:
            out[indices[j]] = True
    return out


@njit(parallel=True, cache=True, nogil=True)
def first_duplicate_row(indices, indptr, r0, r1, n_genes, n_blocks):  # pragma: no cover - numba
    """The first row in ``r0:r1`` that stores a gene twice, or -1."""
    n_rows = r1 - r0
    found = np.full(n_blocks, -1, np.int64)
    for b in prange(n_blocks):
        seen = np.zeros(n_genes, np.int64)  # row stamp + 1
        lo = r0 + b * n_rows // n_blocks
        hi = r0 + (b + 1) * n_rows // n_blocks
        for i in range(lo, hi):
            for j in range(indptr[i], indptr[i + 1]):
                g = indices[j]
                if seen[g] == i + 1:
                    found[b] = i
                    break
                seen[g] = i + 1
            if found[b] >= 0:
                break
    for b in range(n_blocks):
        if found[b] >= 0:
            return found[b]
    return -1


@njit(cache=True, nogil=True)
def nonzero_columns_csc(data, indptr):  # pragma: no cover - numba
    """Columns of a CSC matrix with at least one stored non-zero value."""
    n_cols = indptr.size - 1
    out = np.zeros(n_cols, np.bool_)
    for col in range(n_cols):
        for j in range(indptr[col], indptr[col + 1]):
            if data[j] != 0:
                out[col] = True
                break
    return out


@njit(cache=True, nogil=True)
def add_column_sums(data, indices, indptr, r0, r1, sums):  # pragma: no cover - numba
    """Add rows ``r0:r1`` to per-gene float64 sums, row after row (the order scipy's X.sum(axis=0) uses),
    so that streaming the rows in chunks gives the same sums as one in-memory call."""
    for i in range(r0, r1):
        for j in range(indptr[i], indptr[i + 1]):
            sums[indices[j]] += np.float64(data[j])


@njit(cache=True, nogil=True)
def add_column_sums_twice(data, indices, indptr, r0, r1, native, wide):  # pragma: no cover - numba
    """One pass, two sums per gene, both row after row: ``native`` in the data's own dtype (as scipy's
    X.sum(axis=0), so scanpy's gene means) and ``wide`` in float64 (as :func:`add_column_sums`)."""
    for i in range(r0, r1):
        for j in range(indptr[i], indptr[i + 1]):
            g = indices[j]
            native[g] += data[j]
            wide[g] += np.float64(data[j])


@njit(cache=True, nogil=True)
def mark_nonzero(data, indices, start, stop, out):  # pragma: no cover - numba
    for j in range(start, stop):
        if data[j] != 0:
            out[indices[j]] = True


lock_cache_files(globals())  # see .caching: safe on-disk caches when processes compile at once
