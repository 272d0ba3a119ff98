"""One pass over the stored values: checks (NaN, negatives, counts for methods that expect logs) and
the gene statistics some methods need (means, non-empty genes, the null's expression bins)."""

from __future__ import annotations

import contextvars
import logging
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from .._chunks import iter_chunks, native_values
from .._errors import DataWarning, InputError
from .._kernels import scan
from .._utils import split_reduce
from ..methods import GeneStats, Method

logger = logging.getLogger(__name__)
_SCAN_BLOCK = 4_000_000  # stored values per block of the validation scan
_INT_CHECK = 1_000_000  # values inspected to tell integer counts from normalised data


def is_in_memory(matrix) -> bool:
    return isinstance(matrix, np.ndarray) or sp.issparse(matrix)


@dataclass
class ValueSummary:
    """What one pass over the stored values found (combinable across blocks in order)."""

    n_bad: int = 0
    minimum: float = np.inf
    total: float = 0.0  # sum of the float values: infinite when finite values are too large to add up
    integer_like: bool = True
    checked: int = 0
    sums: np.ndarray | None = None
    nonempty: np.ndarray | None = None
    n_rows: int = 0
    # scanpy's gene means add the stored values row after row in their own dtype (float32 for most
    # files); a file streamed in order can repeat that exactly, blocks summed apart (dask) cannot
    native_sums: np.ndarray | None = None

    def add_values(self, values: np.ndarray, *, max_parts: int | None = None) -> None:
        """Count the bad values and update the minimum and integer check (``max_parts``: see
        :func:`split_reduce`)."""
        if values.size == 0:
            return
        if values.dtype.kind not in "fiub":
            raise InputError(
                f"Expression values must be real numbers, got dtype {values.dtype}; "
                "convert X (or the layer) to float32."
            )
        values = native_values(values)
        n_bad, block_min, block_int, block_total = _summarize_values(
            values, max(0, _INT_CHECK - self.checked), max_parts
        )
        self.n_bad += int(n_bad)
        self.total += block_total
        self.minimum = min(self.minimum, float(block_min))
        self.integer_like = self.integer_like and (bool(block_int) or self.checked >= _INT_CHECK)
        self.checked += min(values.size, _INT_CHECK)

    def merge(self, other: ValueSummary) -> None:
        self.n_bad += other.n_bad
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        if self.checked < _INT_CHECK:
            self.integer_like = self.integer_like and other.integer_like
            self.checked += other.checked
        self.n_rows += other.n_rows
        self.native_sums = None  # partial sums added block to block are not scanpy's running sum
        if other.sums is not None:
            self.sums = other.sums.copy() if self.sums is None else self.sums + other.sums
        if other.nonempty is not None:
            self.nonempty = other.nonempty.copy() if self.nonempty is None else self.nonempty | other.nonempty


def _summarize_values(
    values: np.ndarray, n_integer_check: int, max_parts: int | None = None
) -> tuple[int, float, bool, float]:
    """(number of NaN/inf, minimum, whether the first ``n_integer_check`` values are integers, their sum).

    Fast path for floats: a sum is finite only if every value is (NaN and inf propagate, inf - inf is
    NaN), and numpy's SIMD sum and min run at memory speed, about twice the branching kernel's (and
    parts of the values at once, one per thread). A non-finite sum (a bad value, or an overflow)
    falls back to the kernel, which counts exactly; finite values whose sum overflows give an infinite
    sum (gene means would overflow too). Integer values report a sum of 0: they cannot overflow it.
    """
    if values.dtype.kind == "f":
        parts = split_reduce(values, _finite_sum_and_min, max_parts=max_parts)
        if all(np.isfinite(total) for total, _ in parts):
            head = values[:n_integer_check]
            total = float(np.sum([total for total, _ in parts], dtype=np.float64))
            return 0, min(low for _, low in parts), bool(np.array_equal(head, np.floor(head))), total
    n_bad, minimum, integer = scan.value_summary(values, 8 * numba.get_num_threads(), n_integer_check)
    total = 0.0
    if values.dtype.kind == "f" and n_bad == 0:  # every value finite, yet a sum in their dtype was not
        with np.errstate(over="ignore"):
            total = float(values.sum(dtype=np.float64))  # float32's range is too narrow to judge by
    return int(n_bad), float(minimum), bool(integer), total


def _finite_sum_and_min(values: np.ndarray) -> tuple[float, float]:
    with np.errstate(over="ignore", invalid="ignore"):  # per thread: numpy's error state is thread-local
        return float(values.sum()), float(values.min())


def summarize_chunks(matrix, needs: tuple[str, ...], chunk_size: int | None, *, progress: bool = False) -> ValueSummary:
    """Stream the rows once: validate values and collect gene sums and non-empty genes."""
    n_genes = matrix.shape[1]
    summary = ValueSummary(n_rows=matrix.shape[0])
    summary.sums = np.zeros(n_genes) if {"means", "null_means"} & set(needs) else None
    summary.nonempty = np.zeros(n_genes, np.bool_) if "nonempty" in needs else None
    native = "means" in needs and getattr(matrix, "format", None) == "csr"  # a CSR file or matrix, read in order
    with tqdm(total=matrix.shape[0], unit="cells", disable=not progress, desc="checking values") as bar:
        for chunk in iter_chunks(matrix, chunk_size):
            lo, hi = chunk.indptr[chunk.r0], chunk.indptr[chunk.r1]
            summary.add_values(chunk.data[lo:hi])
            if native and summary.native_sums is None:  # chunks hold float32 or float64 (see _chunks._float)
                summary.native_sums = np.zeros(n_genes, chunk.data.dtype)
            if summary.native_sums is not None:
                scan.add_column_sums_twice(
                    chunk.data, chunk.indices, chunk.indptr, chunk.r0, chunk.r1, summary.native_sums, summary.sums
                )
            elif summary.sums is not None:
                scan.add_column_sums(chunk.data, chunk.indices, chunk.indptr, chunk.r0, chunk.r1, summary.sums)
            if summary.nonempty is not None:
                scan.mark_nonzero(chunk.data, chunk.indices, lo, hi, summary.nonempty)
            bar.update(chunk.stop - chunk.start)
    return summary


def value_blocks(matrix) -> Iterator[np.ndarray]:
    """The stored values, in blocks that never copy more than ``_SCAN_BLOCK`` values at once."""
    if sp.issparse(matrix):
        yield matrix.data[: int(matrix.indptr[-1])] if matrix.format in ("csr", "csc") else matrix.data
        return
    rows = max(1, _SCAN_BLOCK // max(matrix.shape[1], 1))
    for start in range(0, matrix.shape[0], rows):
        yield np.ascontiguousarray(matrix[start : start + rows]).ravel()


def gene_stats(
    matrix, method: Method, chunk_size: int | None = None, progress: bool = False, pool: np.ndarray | None = None
) -> GeneStats:
    """Validate the values and compute the gene statistics the method needs.

    In-memory matrices are read in place, the statistics in a second thread while this one checks the
    values; backed (on-disk) matrices are streamed once in row chunks. ``pool`` (column positions) is
    the gene pool ``means`` are taken over, as scanpy takes them.
    """
    n_rows, n_genes = matrix.shape
    if is_in_memory(matrix):
        # the gene statistics are computed in a second thread while this one checks the values (numpy,
        # scipy and the kernels release the GIL): a bad value still stops the call, and the statistics
        # of a refused matrix are never used. The structure was checked before (verified), so every
        # pass reads in bounds. A pass for statistics keeps one core busy: the check takes the other alone.
        max_parts = 1 if {"means", "null_means", "nonempty"} & set(method.needs) else None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="immunescape-stats") as worker:
            job = worker.submit(contextvars.copy_context().run, _in_memory_stats, matrix, method.needs, pool)
            summary = ValueSummary(n_rows=n_rows)
            for block in value_blocks(matrix):
                summary.add_values(block, max_parts=max_parts)
            report_values(summary, method)
            return job.result()
    summary = summarize_chunks(matrix, method.needs, chunk_size, progress=progress)
    report_values(summary, method)
    return stats_from_summary(summary, n_genes, method)


def _in_memory_stats(matrix, needs: tuple[str, ...], pool: np.ndarray | None) -> GeneStats:
    n_rows, n_genes = matrix.shape
    stats = GeneStats(n_rows=n_rows, n_genes=n_genes)
    if {"means", "null_means"} <= set(needs) and _sums_in_one_pass(matrix):
        # scanpy's means and the null's float64 means from one read of the matrix, each bit-identical
        # to its own computation below
        native, wide = np.zeros(n_genes, matrix.data.dtype), np.zeros(n_genes)
        scan.add_column_sums_twice(matrix.data, matrix.indices, matrix.indptr, 0, n_rows, native, wide)
        stats.means, stats.null_means = native.astype(np.float64) / n_rows, wide / n_rows
    else:
        if "means" in needs:
            stats.means = scanpy_gene_means(matrix, pool)
        if "null_means" in needs:
            stats.null_means = streamed_gene_means(matrix)
    if "nonempty" in needs:
        stats.nonempty = nonempty_genes(matrix)
    return stats


def stats_from_summary(summary: ValueSummary, n_genes: int, method: Method) -> GeneStats:
    stats = GeneStats(n_rows=summary.n_rows, n_genes=n_genes)
    if "means" in method.needs:
        sums = summary.sums if summary.native_sums is None else summary.native_sums.astype(np.float64)
        stats.means = sums / summary.n_rows
    if "nonempty" in method.needs:
        stats.nonempty = summary.nonempty
    if "null_means" in method.needs:
        stats.null_means = summary.sums / summary.n_rows
    return stats


TOO_LARGE = (
    "The matrix holds values too large to add up (their sum overflows the float range); expression is expected "
    "as counts or log-normalised values. Rescale it (e.g. sc.pp.normalize_total, sc.pp.log1p)."
)


def report_values(summary: ValueSummary, method: Method) -> None:
    if summary.n_bad:
        raise InputError(
            "The matrix contains NaN or infinite values. Replace them (e.g. X = np.nan_to_num(X)) "
            "or remove the affected cells/genes before scoring."
        )
    if not np.isfinite(summary.total):  # gene means overflowed: NaN scores or bins without genes followed
        raise InputError(TOO_LARGE)
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


def _sums_in_one_pass(matrix) -> bool:
    """CSR with float32/float64 values: where scipy's column sums are a row-order sum in the data's dtype."""
    return sp.issparse(matrix) and matrix.format == "csr" and matrix.data.dtype in (np.float32, np.float64)


def scanpy_gene_means(matrix, pool: np.ndarray | None = None) -> np.ndarray:
    """Gene means computed exactly as scanpy.tl.score_genes does (its bins depend on ties).

    With a ``pool``, dense means are those of the pool's columns taken out in pool order, as scanpy
    takes them: numpy's float32 sums down the rows depend on the array's shape; genes outside it are NaN.
    """
    if sp.issparse(matrix):  # row-order column sums, whatever the columns around them
        return np.asarray(matrix.sum(axis=0, dtype="float64")).ravel() / matrix.shape[0]
    dense = np.asarray(matrix)
    if pool is None or len(pool) == dense.shape[1]:
        return np.nanmean(dense, axis=0)
    means = np.full(dense.shape[1], np.nan)
    means[pool] = np.nanmean(dense[:, pool], axis=0)
    return means


def streamed_gene_means(matrix) -> np.ndarray:
    """Gene means from float64 sums added row after row, as :func:`summarize_chunks` adds them."""
    sums = np.zeros(matrix.shape[1])
    for chunk in iter_chunks(matrix):
        scan.add_column_sums(chunk.data, chunk.indices, chunk.indptr, chunk.r0, chunk.r1, sums)
    return sums / matrix.shape[0]


def nonempty_genes(matrix) -> np.ndarray:
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
