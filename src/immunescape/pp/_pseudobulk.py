from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._anndata import sample_labels
from .._chunks import check_sparse
from .._errors import DataWarning, InputError
from .._utils import check_number, closest


def pseudobulk(adata: AnnData, sample_key: str, *, layer: str | None = "counts", target_sum: float = 1e4) -> AnnData:
    """Sum raw counts per sample and normalise them like bulk RNA-seq (counts per ``target_sum``, log1p).

    Parameters
    ----------
    adata
        Cells x genes with raw counts in ``layer`` (None: ``X``).
    sample_key
        ``obs`` column naming each cell's sample.
    layer
        Layer holding raw counts.
    target_sum
        Library size after normalisation.

    Returns
    -------
    anndata.AnnData
        Samples x genes: ``X`` log1p-normalised, ``layers["counts"]`` the summed counts,
        ``obs["n_cells"]``; other ``obs`` columns constant within a sample are kept.

    Examples
    --------
    >>> import immunescape as ie
    >>> cells = ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=50, seed=0)
    >>> ie.pp.pseudobulk(cells, "sample").shape[0]
    3
    """
    if sample_key not in adata.obs:
        raise InputError(f"sample_key={sample_key!r} is not an obs column." + closest(sample_key, adata.obs.columns))
    if layer is not None and layer not in adata.layers:
        raise InputError(f"Layer {layer!r} with raw counts not found; pass layer=None to sum X.")
    target_sum = check_number(target_sum, "target_sum", positive=True, hint=" (1e4: counts per 10,000)")
    X = check_sparse(adata.layers[layer] if layer is not None else adata.X)
    check_counts(X, "X" if layer is None else f"layers[{layer!r}]")
    groups = pd.Categorical(sample_labels(adata, sample_key))  # missing labels: code -1, left out
    summed, normalised = summed_profiles(X, groups.codes, len(groups.categories), target_sum)
    obs = pd.DataFrame(index=pd.Index(groups.categories.astype(str)))
    labelled = groups.codes >= 0
    obs["n_cells"] = np.bincount(groups.codes[labelled], minlength=len(groups.categories))
    for col in adata.obs.columns:
        if col == sample_key:
            continue
        values = adata.obs[col].astype(str)[labelled].groupby(groups.codes[labelled])
        if (values.nunique() == 1).all():
            obs[col] = values.first().to_numpy()
    out = AnnData(normalised.astype(np.float32), obs=obs, var=adata.var[[]].copy())
    out.layers["counts"] = summed.astype(np.float32)
    return out


def check_counts(X, where: str) -> None:
    """Refuse what cannot be summed as counts (NaN, inf, negative values) and warn on values that are not
    whole numbers (log-normalised data summed across cells is not a pseudobulk)."""
    from .._engine.values import ValueSummary, value_blocks

    summary = ValueSummary()
    for block in value_blocks(X):
        summary.add_values(block)
    if summary.n_bad:
        raise InputError(
            f"{where} holds {summary.n_bad:,} NaN or infinite value(s); pseudobulk sums raw counts. Pass the layer "
            "with raw counts (layer=...), or replace them (e.g. np.nan_to_num)."
        )
    if summary.minimum < 0:
        raise InputError(
            f"{where} holds negative values (minimum {summary.minimum:.3g}), so it is not raw counts (scaled data?); "
            "pseudobulk sums raw counts: pass the layer that holds them (layer=...)."
        )
    if not summary.integer_like:
        warnings.warn(
            f"{where} holds values that are not whole numbers; pseudobulk sums raw counts, and summing log-normalised "
            "values across cells gives a different profile. Pass the raw counts layer (layer=...), or ignore this "
            "for corrected counts (e.g. ambient-RNA removal).",
            DataWarning,
            stacklevel=3,
        )


def summed_profiles(X, codes: np.ndarray, n_groups: int, target_sum: float = 1e4) -> tuple[np.ndarray, np.ndarray]:
    """Sum the rows of ``X`` by group code (-1: left out); return the sums and their
    log1p(counts per ``target_sum``)."""
    rows = np.flatnonzero(codes >= 0)
    indicator = sp.csr_matrix((np.ones(rows.size), (codes[rows], rows)), shape=(n_groups, X.shape[0]))
    summed = indicator @ (X if sp.issparse(X) else np.asarray(X))
    summed = summed.toarray() if sp.issparse(summed) else np.asarray(summed)
    lib = summed.sum(axis=1, keepdims=True)
    lib[lib == 0] = 1.0
    return summed, np.log1p(summed / lib * target_sum)
