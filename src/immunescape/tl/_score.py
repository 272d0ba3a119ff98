from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from tqdm.auto import tqdm

from .._anndata import get_expression
from .._chunks import check_chunk_size, iter_chunks
from .._errors import DataWarning, InputError
from .._kernels import scan
from ..genes import ResolvedSignatures, resolve
from ..methods import GeneStats, Method, get_method, methods_table
from ..signatures import SignatureLike, load

logger = logging.getLogger(__name__)
_SCAN_BLOCK = 4_000_000  # stored values per block of the validation scan


def methods() -> pd.DataFrame:
    """The scoring methods: what each equals, its parameters and defaults, and its reference.

    Examples
    --------
    >>> import immunescape as ie
    >>> sorted(ie.tl.methods().index)
    ['aucell', 'mean', 'singscore', 'ssgsea', 'ucell', 'wmean', 'zmean']
    """
    return methods_table()


def score(
    adata: AnnData | pd.DataFrame,
    signatures: SignatureLike = "immune_escape",
    method: str = "ucell",
    *,
    layer: str | None = None,
    use_raw: bool | None = None,
    gene_symbols: str | None = None,
    key_added: str = "immunescape",
    obs: bool = True,
    min_coverage: float = 0.5,
    organism: str | None = None,
    chunk_size: int | None = None,
    n_jobs: int | None = None,
    random_state: int | None = 0,
    progress: bool | None = None,
    inplace: bool = True,
    copy: bool = False,
    **method_params: Any,
) -> AnnData | pd.DataFrame | None:
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
        ``"ssgsea"``, ``"singscore"``, ``"wmean"``, ``"zmean"``.
    layer, use_raw
        Which matrix to score, as in scanpy: ``use_raw=None`` uses ``.raw`` when it exists and no
        layer is given.
    gene_symbols
        Column of ``var`` (``raw.var``) with gene symbols, when ``var_names`` are other ids.
    key_added
        Scores go to ``obsm[key_added]`` and, with ``obs=True``, to ``obs[f"{key_added}_{name}"]``;
        parameters, versions and the gene coverage report to ``uns[key_added]``.
    obs
        Also write one ``obs`` column per signature.
    min_coverage
        Smallest fraction of each signature's genes that must be found (see
        :func:`immunescape.genes.resolve`).
    organism
        ``"human"`` or ``"mouse"``; None detects it from the gene names.
    chunk_size
        Cells per chunk (default 10,000). Results do not depend on it.
    n_jobs
        Threads for the numba kernels (default: all cores). Results do not depend on it.
    random_state
        Seed of the method's randomness (control genes for ``mean``, tie-breaking order for
        ``aucell``). The same seed gives the same scores.
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
    None, the scored copy (``copy=True``) or the score DataFrame (``inplace=False`` or DataFrame input).

    Examples
    --------
    >>> import scanpy as sc, immunescape as ie
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> ie.tl.score(adata, "cytolytic_activity_rooney2015,bagaev2021_NK_cells", method="ucell")
    >>> adata.obsm["immunescape"].shape
    (700, 2)
    """
    if isinstance(adata, pd.DataFrame):
        frame = adata
        adata = AnnData(X=frame.to_numpy(), obs=pd.DataFrame(index=frame.index.astype(str)),
                        var=pd.DataFrame(index=frame.columns.astype(str)))  # fmt: skip
        inplace, copy = False, False
    m = get_method(method)
    params = m.check_params(method_params)
    if copy:
        adata = adata.copy()
    matrix, names, used_raw = get_expression(adata, layer=layer, use_raw=use_raw, gene_symbols=gene_symbols)
    sigs = load(signatures)
    resolved = resolve(sigs, names, min_coverage=min_coverage, organism=organism)
    scores, details = score_matrix(
        matrix, resolved, m, params, chunk_size=chunk_size, n_jobs=n_jobs, random_state=random_state, progress=progress
    )
    table = pd.DataFrame(scores, index=adata.obs_names.copy(), columns=pd.Index(resolved.names))
    if not inplace:
        return table
    adata.obsm[key_added] = table
    if obs:
        for name in resolved.names:
            adata.obs[f"{key_added}_{name}"] = table[name].to_numpy()
    adata.uns[key_added] = _h5ad_safe(
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
            "details": details,
            "versions": _versions(),
        }
    )
    logger.info("added obsm[%r] (%d signatures, method %s)", key_added, len(resolved.names), m.name)
    return adata if copy else None


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
) -> tuple[np.ndarray, dict[str, Any]]:
    """Score a cells x genes matrix (dense, CSR or CSC) with resolved signatures: the array-level core."""
    n_rows, n_genes = matrix.shape
    if n_rows == 0:
        raise InputError("The data have no cells/samples (0 rows); nothing to score.")
    if n_genes == 0:
        raise InputError("The data have no genes (0 columns); nothing to score.")
    check_chunk_size(chunk_size)
    stats = _scan(matrix, method)
    plan = method.prepare(resolved, stats, params, random_state)
    out = np.empty((n_rows, len(resolved.signatures)), dtype=np.float64)
    show = progress if progress is not None else n_rows > 100_000
    with numba_threads(n_jobs), tqdm(total=n_rows, unit="cells", disable=not show, desc=f"scoring ({method.name})") as bar:
        for chunk in iter_chunks(matrix, chunk_size):
            if "unique_entries" in method.needs:
                _check_unique_entries(chunk)
            plan.run(chunk, out[chunk.start : chunk.stop])
            bar.update(chunk.stop - chunk.start)
    return plan.finish(out), plan.details


def _check_unique_entries(chunk) -> None:
    row = scan.first_duplicate_row(chunk.indices, chunk.indptr, chunk.r0, chunk.r1, int(chunk.indices.max(initial=0)) + 1,
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


def _value_blocks(matrix) -> Iterator[np.ndarray]:
    """The stored values, in blocks that never copy more than ``_SCAN_BLOCK`` values at once."""
    if sp.issparse(matrix):
        yield matrix.data
        return
    rows = max(1, _SCAN_BLOCK // max(matrix.shape[1], 1))
    for start in range(0, matrix.shape[0], rows):
        yield np.ascontiguousarray(matrix[start : start + rows]).ravel()


def _scan(matrix, method: Method) -> GeneStats:
    """Validate the values in one streaming pass and compute the gene statistics the method needs."""
    n_rows, n_genes = matrix.shape
    minimum, integer_like, checked = np.inf, True, 0
    for block in _value_blocks(matrix):
        if block.dtype.kind not in "fiub":
            raise InputError(f"Expression values must be numeric, got dtype {block.dtype}.")
        if block.size == 0:
            continue
        n_bad, block_min, block_int = scan.value_summary(block, 8 * numba.get_num_threads(), max(0, 1_000_000 - checked))
        if n_bad:
            raise InputError("The matrix contains NaN or infinite values. Replace them (e.g. X = np.nan_to_num(X)) "
                             "or remove the affected cells/genes before scoring.")  # fmt: skip
        minimum = min(minimum, block_min)
        integer_like = integer_like and (block_int or checked >= 1_000_000)
        checked += min(block.size, 1_000_000)
    if minimum < 0:
        warnings.warn(
            f"The matrix has negative values (minimum {minimum:.3g}); scaled or centred data change what rank "
            "methods and means measure. Score log-normalised values (adata.raw, or a layer) unless this is intended.",
            DataWarning,
            stacklevel=3,
        )
    if method.expects_log and integer_like and checked > 0:
        warnings.warn(
            f"The matrix holds integer counts, but '{method.name}' expects log-normalised expression. Run "
            "sc.pp.normalize_total(adata) and sc.pp.log1p(adata) first, or pass the normalised layer.",
            DataWarning,
            stacklevel=3,
        )
    stats = GeneStats(n_rows=n_rows, n_genes=n_genes)
    if "means" in method.needs:
        stats.means = _scanpy_gene_means(matrix)
    if "nonempty" in method.needs:
        stats.nonempty = _nonempty_genes(matrix)
    return stats


def _scanpy_gene_means(matrix) -> np.ndarray:
    """Gene means computed exactly as scanpy.tl.score_genes does (its bins depend on ties)."""
    if sp.issparse(matrix):
        return np.asarray(matrix.sum(axis=0, dtype="float64")).ravel() / matrix.shape[0]
    return np.nanmean(np.asarray(matrix), axis=0)


def _nonempty_genes(matrix) -> np.ndarray:
    """Genes with a non-zero value in some row (decoupler drops the others)."""
    n_genes = matrix.shape[1]
    if sp.issparse(matrix) and matrix.format == "csr":
        return scan.nonzero_genes(matrix.data, matrix.indices, n_genes)
    if sp.issparse(matrix):
        csc = matrix if matrix.format == "csc" else matrix.tocsc()
        return scan.nonzero_columns_csc(csc.data, csc.indptr)
    out = np.zeros(n_genes, bool)
    rows = max(1, _SCAN_BLOCK // max(n_genes, 1))
    for start in range(0, matrix.shape[0], rows):
        out |= np.asarray(matrix[start : start + rows] != 0).any(axis=0)
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("immunescape", "numpy", "scipy", "numba", "anndata", "scanpy", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
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
