"""AnnData handling shared by tools: choose the matrix and the gene names as scanpy does."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ._chunks import check_sparse, read_rows
from ._errors import InputError


def resolve_use_raw(adata: AnnData, use_raw: bool | None, layer: str | None) -> bool:
    """scanpy's rule: explicit value wins; a layer means no raw; otherwise raw when it exists."""
    if use_raw and layer is not None:
        raise InputError(f"Pass either layer={layer!r} or use_raw=True, not both: .raw has no layers.")
    if use_raw is not None:
        if use_raw and adata.raw is None:
            raise InputError("use_raw=True but adata.raw is None. Drop use_raw, or set adata.raw first.")
        return bool(use_raw)
    return layer is None and adata.raw is not None


def get_expression(
    adata: AnnData,
    *,
    layer: str | None = None,
    use_raw: bool | None = None,
    gene_symbols: str | None = None,
    check: bool = True,
) -> tuple[Any, pd.Index, bool]:
    """Return the matrix to score, its gene names and whether ``.raw`` was used.

    ``check=False`` leaves the sparse structure check to the caller (``score_matrix`` makes it once).

    ``gene_symbols`` names a column of ``var`` (``raw.var`` with ``use_raw``) that holds the gene names
    to match, as in scanpy's plotting functions.
    """
    if not isinstance(adata, AnnData):
        raise InputError(
            f"Expected an AnnData object, got {type(adata).__name__}. Wrap a matrix with anndata.AnnData(X)."
        )
    use_raw = resolve_use_raw(adata, use_raw, layer)
    if use_raw:
        matrix, var = adata.raw.X, adata.raw.var
        names = adata.raw.var_names
    elif layer is not None:
        if layer not in adata.layers:
            raise InputError(
                f"Layer {layer!r} not found; adata.layers has {sorted(adata.layers.keys()) or 'no layers'}."
            )
        matrix, var, names = adata.layers[layer], adata.var, adata.var_names
    else:
        try:
            matrix = adata.X
        except KeyError:  # a backed file stored without X
            matrix = None
        var, names = adata.var, adata.var_names
    if matrix is None:
        raise InputError("adata.X is None (the file stores no X); pass layer= (--layer) to score a layer.")
    if tuple(matrix.shape) != (adata.n_obs, len(names)):  # a damaged or hand-made file: rows and names must line up
        raise InputError(
            f"The matrix is {matrix.shape[0]:,} x {matrix.shape[1]:,} but the data name {adata.n_obs:,} rows and "
            f"{len(names):,} genes; the file is damaged or inconsistent."
        )
    if check:
        matrix = check_sparse(matrix)  # before scipy or a kernel indexes with what a file stored
    if gene_symbols is not None:
        if gene_symbols not in var.columns:
            where = "adata.raw.var" if use_raw else "adata.var"
            raise InputError(
                f"gene_symbols={gene_symbols!r} is not a column of {where} (columns: {list(var.columns)[:12]})."
            )
        names = pd.Index(var[gene_symbols].astype(str))
    return matrix, pd.Index(names.astype(str)), use_raw


_EMBEDDINGS = ("X_umap", "X_tsne", "X_pca", "X_scVI", "X_harmony")
_SAMPLED_ROWS = 500  # rows inspected to tell single cells from bulk samples
_CELL_DETECTION = 0.35  # median share of genes detected per row below which rows look like single cells


def single_cell_evidence(adata: AnnData, *, layer: str | None = None, use_raw: bool | None = None) -> str | None:
    """Why ``adata``'s rows look like single cells rather than samples, or None when they do not.

    Evidence: a cell embedding or neighbour graph, or (with 20 rows or more) a median share of genes
    detected per row under 35% (bulk profiles detect most genes; 3' single cells a few percent).
    """
    for key in _EMBEDDINGS:
        if key in adata.obsm:
            return f"obsm holds a cell embedding ({key})"
    if "neighbors" in adata.uns:
        return "uns holds a neighbour graph"
    if adata.n_obs < 20 or adata.n_vars == 0:
        return None
    matrix, _, _ = get_expression(adata, layer=layer, use_raw=use_raw)
    rows = read_rows(matrix, 0, min(adata.n_obs, _SAMPLED_ROWS))
    detected = np.asarray((rows != 0).sum(axis=1)).ravel()  # explicit zeros do not count
    share = float(np.median(detected)) / matrix.shape[1]
    if share < _CELL_DETECTION:
        return f"a median {share:.0%} of genes detected per row, where bulk samples detect most"
    return None


def sample_labels(adata: AnnData, sample_key: str) -> pd.Series:
    """``obs[sample_key]`` as text, with missing labels (NaN, None, empty) as None and one warning counting them.

    A cell without a sample must not become a sample called "nan": callers leave the None rows out.
    """
    import warnings

    from ._errors import DataWarning

    raw = adata.obs[sample_key]
    missing = raw.isna().to_numpy() | (raw.astype(str).str.strip() == "").to_numpy()
    labels = raw.astype(str).where(~missing, None)
    if missing.any():
        warnings.warn(
            f"{int(missing.sum()):,} of {adata.n_obs:,} rows have no label in obs[{sample_key!r}] and are left out.",
            DataWarning,
            stacklevel=3,
        )
    if missing.all():
        raise InputError(f"obs[{sample_key!r}] holds no sample labels (all missing).")
    return labels


def joined_scores(adata: AnnData, keys: Sequence[str]) -> pd.DataFrame:
    """The score tables of several ``obsm`` keys side by side (e.g. signatures scored with different
    methods), refused when a signature appears under two keys."""
    tables = [stored_scores(adata, k) for k in keys]
    columns = [c for t in tables for c in t.columns]
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise InputError(
            f"{', '.join(twice[:5])} scored under more than one of the keys {list(keys)}: keep one key per signature."
        )
    return pd.concat(tables, axis=1) if len(tables) > 1 else tables[0]


def stored_scores(adata: AnnData, key: str) -> pd.DataFrame:
    """A float64 copy of ``adata.obsm[key]``, a samples/cells x signatures table of numbers, refused with
    a clear message when it is not one (a file from another tool, or damaged, may hold anything there)."""
    if key not in adata.obsm:
        raise InputError(f"No scores in adata.obsm[{key!r}]; run ie.tl.score(adata, ...) first (or pass key=).")
    table = adata.obsm[key]
    if not isinstance(table, pd.DataFrame):
        raise InputError(
            f"adata.obsm[{key!r}] is a {type(table).__name__}, not the score table ie.tl.score writes (a DataFrame "
            "with one column per signature); score again with another key_added, or pass key= for the scores."
        )
    if not all(isinstance(c, str) for c in table.columns):
        raise InputError(
            f"adata.obsm[{key!r}] has column names that are not signature names ({list(table.columns[:5])}); "
            "it is not a score table written by ie.tl.score."
        )
    not_numeric = [
        c
        for c in table.columns
        if not (pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c]))
    ]
    if not_numeric:
        raise InputError(
            f"adata.obsm[{key!r}] holds columns that are not numbers ({', '.join(map(str, not_numeric[:5]))}); "
            "it is not a score table written by ie.tl.score."
        )
    return table.astype(np.float64)
