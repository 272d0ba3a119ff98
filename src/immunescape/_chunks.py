"""Row chunks of any supported matrix as CSR arrays for the kernels.

In-memory CSR is handed over as views of its own arrays (no copy). Dense, CSC and other inputs are
converted one chunk at a time, so memory is bounded by the chunk, not by the matrix.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._errors import InputError
from ._kernels.convert import csc_rows_to_csr
from ._kernels.types import CsrRows
from ._utils import split_reduce

DEFAULT_CHUNK_SIZE = 10_000
# what h5py, anndata and scipy raise when rows of a damaged file are read
DAMAGED_READ_ERRORS = (ValueError, IndexError, TypeError, OSError, KeyError, RuntimeError)


def read_failure(err: BaseException, default: str) -> str:
    """What a failed read of a file says to its user: ``default`` ("the file looks damaged"), unless the
    error says the file is sound but holds big-endian arrays, which scipy.sparse refuses (since 1.15)."""
    if isinstance(err, ValueError) and "does not support dtype >" in str(err):
        return (
            "the file stores its matrix in big-endian byte order, which scipy.sparse cannot hold; rewrite it "
            "little-endian (e.g. with h5py, each of X/data, X/indices, X/indptr as .astype('<f4') / '<i4' / '<i8')"
        )
    return f"{default} ({type(err).__name__}: {err})"


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
    def rows(self) -> CsrRows:
        """The chunk's rows as the kernels take them."""
        return CsrRows(self.data, self.indices, self.indptr, int(self.r0), int(self.r1))

    @property
    def max_nnz(self) -> int:
        counts = np.diff(self.indptr[self.r0 : self.r1 + 1])
        return int(counts.max()) if counts.size else 0


def check_chunk_size(chunk_size: int | None) -> int:
    """The chunk size to use, or a clear error for a non-positive one."""
    if chunk_size is None:
        return DEFAULT_CHUNK_SIZE
    if isinstance(chunk_size, (bool, np.bool_)) or not isinstance(chunk_size, (int, np.integer)) or chunk_size <= 0:
        raise InputError(f"chunk_size must be a positive number of rows, got {chunk_size!r}.")
    return int(chunk_size)


def _float(data: np.ndarray) -> np.ndarray:
    if data.dtype in (np.float32, np.float64):
        return data
    if data.dtype.kind not in "fiub":  # complex, text, objects: nothing a kernel can rank or add
        raise InputError(
            f"Expression values must be real numbers, got dtype {data.dtype}; convert X (or the layer) to float32."
        )
    return data.astype(np.float64)


def check_compressed(indptr, indices, data, n_major: int, n_minor: int, *, fmt: str = "csr") -> None:
    """Refuse compressed sparse arrays a kernel could read out of bounds with (vectorised, O(nnz)).

    ``n_major`` is the number of rows (CSR) or columns (CSC); every stored index must lie in
    ``[0, n_minor)``. A damaged or hostile file can hold anything here, and numba does not check
    bounds, so this runs before any kernel sees the arrays.
    """
    what = "column" if fmt == "csr" else "row"
    fix = "the file is damaged or was written by a faulty tool; re-create it from its source."
    if indptr.ndim != 1 or indices.ndim != 1 or data.ndim != 1:
        raise InputError(f"The sparse matrix's arrays are not one-dimensional: {fix}")
    if indptr.dtype.kind not in "iu" or indices.dtype.kind not in "iu":
        raise InputError(f"The sparse matrix's index arrays are not integers ({indptr.dtype}, {indices.dtype}): {fix}")
    if indptr.size != n_major + 1:
        raise InputError(
            f"The sparse matrix's indptr has {indptr.size} entries for {n_major} "
            f"{'rows' if fmt == 'csr' else 'columns'} (expected {n_major + 1}): {fix}"
        )
    steps = np.diff(indptr)
    if int(indptr[0]) != 0 or (steps.size and int(steps.min()) < 0):
        raise InputError(f"The sparse matrix's indptr must start at 0 and never decrease, and does not: {fix}")
    end = int(indptr[-1])
    if end > indices.size or end > data.size:
        raise InputError(
            f"The sparse matrix's indptr points past its stored values ({end} > {min(indices.size, data.size)}): {fix}"
        )
    if end:
        # one pass: read as unsigned (same size and byte order), a negative index is larger than any valid one
        stored = indices[:end]
        unsigned = stored.view(stored.dtype.str.replace("i", "u"))
        if max(split_reduce(unsigned, lambda part: int(part.max()))) >= n_minor:
            low, high = int(stored.min()), int(stored.max())
            bad = low if low < 0 else high
            raise InputError(f"The sparse matrix stores a {what} index {bad} outside [0, {n_minor}): {fix}")


def chunk_bounds(n_rows: int, chunk_size: int | None = None) -> list[tuple[int, int]]:
    """The chunk plan: consecutive ``(start, stop)`` row ranges covering ``n_rows`` rows, each at most
    ``chunk_size`` long (default :data:`DEFAULT_CHUNK_SIZE`). Every path (in memory, on disk, in a dask
    block) scores the chunks of this plan.

    Examples
    --------
    >>> chunk_bounds(25, 10)
    [(0, 10), (10, 20), (20, 25)]
    """
    size = check_chunk_size(chunk_size)
    return [(start, min(start + size, n_rows)) for start in range(0, n_rows, size)]


def iter_chunks(matrix, chunk_size: int | None = None) -> Iterator[Chunk]:
    """Yield the row chunks of ``matrix`` planned by :func:`chunk_bounds`, as :class:`Chunk`."""
    n_rows = matrix.shape[0]
    plan = chunk_bounds(n_rows, chunk_size)
    if sp.issparse(matrix) and matrix.format == "csr":  # views of the matrix's own arrays: no copy
        matrix = check_sparse(matrix)
        data = _float(matrix.data)
        indptr = matrix.indptr.astype(np.int64, copy=False)
        for start, stop in plan:
            yield Chunk(data, matrix.indices, indptr, start, stop, start, stop, matrix.shape[1])
        return
    if sp.issparse(matrix) and matrix.format == "csc":
        matrix = check_sparse(matrix)
        if not matrix.has_sorted_indices:
            matrix = matrix.sorted_indices()
        for start, stop in plan:
            d, i, p = csc_rows_to_csr(
                _float(matrix.data), matrix.indices, matrix.indptr.astype(np.int64), start, stop, matrix.shape[1]
            )
            yield Chunk(d, i, p, 0, stop - start, start, stop, matrix.shape[1])
        return
    in_memory = isinstance(matrix, np.ndarray)

    def read(bounds: tuple[int, int]) -> Chunk:
        start, stop = bounds
        block = _read_block(matrix, start, stop)
        return Chunk(
            _float(block.data),
            block.indices,
            block.indptr.astype(np.int64),
            0,
            stop - start,
            start,
            stop,
            matrix.shape[1],
        )

    if in_memory or len(plan) < 2:
        for bounds in plan:
            yield read(bounds)
        return
    # On disk: read the next chunk in a background thread while this one is scored (the numba kernels
    # release the GIL), so time is about max(reading, scoring) instead of their sum. Two chunks at most.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="immunescape-prefetch") as pool:
        pending = pool.submit(read, plan[0])
        for nxt in [*plan[1:], None]:
            chunk = pending.result()
            if nxt is not None:
                pending = pool.submit(read, nxt)
            yield chunk


def check_sparse(matrix):
    """``matrix`` after :func:`check_compressed` when it is an in-memory CSR or CSC matrix, as
    :func:`native_arrays` gives it.

    Call it before scipy or a kernel touches a matrix that may come from a file (and use what it
    returns): scipy's own arithmetic and slicing do not check the stored indices either.
    """
    if sp.issparse(matrix) and matrix.format in ("csr", "csc"):
        fixed = native_arrays(matrix)
        if id(matrix) not in _VERIFIED.get():  # converted arrays hold the same values: checked once for both
            major, minor = fixed.shape if fixed.format == "csr" else fixed.shape[::-1]
            check_compressed(fixed.indptr, fixed.indices, fixed.data, major, minor, fmt=fixed.format)
        return fixed
    return matrix


def native_values(values: np.ndarray) -> np.ndarray:
    """``values`` in a dtype scipy.sparse and the kernels take: float16 as float32, another byte order
    as the native one (a dense block from a file can be either); other arrays as they are."""
    if values.dtype == np.float16:
        values = values.astype(np.float32)
    if not values.dtype.isnative:
        values = values.astype(values.dtype.newbyteorder("="))
    return values


def native_arrays(matrix):
    """``matrix`` itself, or, where a CSR/CSC matrix's arrays are not what the kernels take (another
    byte order, index types other than int32 and int64: a file can store any), the same matrix with
    its arrays converted (nothing checked here: :func:`check_compressed` comes next)."""
    if not (sp.issparse(matrix) and matrix.format in ("csr", "csc")):
        return matrix
    data, indices, indptr = matrix.data, matrix.indices, matrix.indptr
    if data.dtype.isnative and all(
        a.dtype.kind not in "iu" or a.dtype in (np.int32, np.int64) for a in (indices, indptr)
    ):
        return matrix
    fixed = matrix.__class__(matrix.shape, dtype=data.dtype.newbyteorder("="))
    fixed.data = data.astype(data.dtype.newbyteorder("="), copy=False)
    # out-of-range uint64 values wrap to negative here and are refused as such
    fixed.indices, fixed.indptr = (
        a.astype(np.int64) if a.dtype.kind in "iu" and a.dtype not in (np.int32, np.int64) else a
        for a in (indices, indptr)
    )
    return fixed


# Matrices checked once for the whole of one scoring call; its passes over the rows skip the check.
_VERIFIED: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar("immunescape_verified", default=frozenset())


@contextlib.contextmanager
def verified(matrix) -> Iterator[None]:
    """Check ``matrix`` now and not again inside the block (one scoring call that reads it several times)."""
    check_sparse(matrix)
    token = _VERIFIED.set(_VERIFIED.get() | {id(matrix)})
    try:
        yield
    finally:
        _VERIFIED.reset(token)


def read_rows(matrix, start: int, stop: int) -> sp.csr_matrix:
    """Rows ``start:stop`` of any supported matrix (in memory, backed, dask) as a checked CSR matrix."""
    return _read_block(matrix, start, stop)


def _read_block(matrix, start: int, stop: int) -> sp.csr_matrix:
    """Rows ``start:stop`` as a checked CSR matrix (backed files, dask blocks, dense and other formats)."""
    try:
        block = matrix[start:stop]
        if hasattr(block, "compute") and hasattr(block, "chunks"):  # a dask array: its blocks, joined (CSR or dense)
            block = block.compute()
        if sp.issparse(block):
            return check_sparse(block).tocsr()
        dense = np.asarray(block)
        if dense.dtype.kind not in "fiub":
            raise InputError(
                f"Expression values must be real numbers, got dtype {dense.dtype}; convert X (or the layer) to float32."
            )
        return sp.csr_matrix(native_values(dense))
    except InputError:
        raise
    except DAMAGED_READ_ERRORS as err:
        raise InputError(
            f"Could not read rows {start}-{stop} of the matrix: {read_failure(err, 'the file looks damaged')}."
        ) from err
