"""Linear scores: one sparse pass computing X @ W for every signature, plus per-row moments.

Plain arrays in, plain arrays out. Rows ``r0:r1`` of a CSR matrix given as (data, indices, indptr).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True, nogil=True)
def csr_dot(data, indices, indptr, r0, r1, slot, weights, n_blocks, out):  # pragma: no cover - numba
    """``out[i - r0, :] = X[i, :] @ W`` for rows ``r0:r1``.

    ``slot[g]`` is the row of ``weights`` holding gene ``g``'s weights, or -1 for genes in no
    signature, so genes outside every signature cost one lookup. Accumulates in float64, in a
    block-local buffer so the inner loop over signatures vectorises.
    """
    n_sig = weights.shape[1]
    n_rows = r1 - r0
    for b in prange(n_blocks):
        acc = np.empty(n_sig)
        lo = r0 + b * n_rows // n_blocks
        hi = r0 + (b + 1) * n_rows // n_blocks
        for i in range(lo, hi):
            acc[:] = 0.0
            for j in range(indptr[i], indptr[i + 1]):
                k = slot[indices[j]]
                if k >= 0:
                    v = np.float64(data[j])
                    w = weights[k]
                    for s in range(n_sig):
                        acc[s] += v * w[s]
            out[i - r0, :] = acc


@njit(parallel=True, cache=True, nogil=True)
def csr_row_moments(data, indptr, r0, r1, n_features, mean, std):  # pragma: no cover - numba
    """Mean and sample standard deviation (ddof=1) of each row over ``n_features`` columns.

    Columns not stored are zeros. Two passes over the row's stored values for accuracy.
    """
    for i in prange(r0, r1):
        s = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            s += data[j]
        m = s / n_features
        ss = 0.0
        nnz = indptr[i + 1] - indptr[i]
        for j in range(indptr[i], indptr[i + 1]):
            d = data[j] - m
            ss += d * d
        ss += (n_features - nnz) * m * m
        mean[i - r0] = m
        std[i - r0] = np.sqrt(ss / (n_features - 1)) if n_features > 1 else 0.0
