"""Scoring one row chunk through a method's plan."""

from __future__ import annotations

import numba
import numpy as np

from .._errors import InputError
from .._kernels import scan
from ..methods import Method


def score_chunk(
    chunk, plan, method: Method, out: np.ndarray, null_out: tuple[np.ndarray, np.ndarray] | None = None
) -> None:
    """Score one row chunk into ``out`` (the rows of ``out`` match the chunk's rows); with
    ``null_out = (z, p)`` also the null statistics."""
    if "unique_entries" in method.needs:
        check_unique_entries(chunk)
    plan.run(chunk, out, null_out)


def check_unique_entries(chunk) -> None:
    row = scan.first_duplicate_row(
        chunk.indices,
        chunk.indptr,
        chunk.r0,
        chunk.r1,
        chunk.n_cols,
        max(1, min(chunk.r1 - chunk.r0, 8 * numba.get_num_threads())),
    )
    if row >= 0:
        raise InputError(
            f"Row {chunk.start + row - chunk.r0} of the sparse matrix stores a gene twice; "
            "call X.sum_duplicates() first."
        )
