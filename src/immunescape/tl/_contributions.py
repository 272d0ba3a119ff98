"""Which genes drive a score: each gene's exact additive share of a signature score, per group."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._anndata import get_expression
from .._chunks import check_chunk_size
from .._errors import InputError
from .._utils import closest
from ..genes import resolve
from ..methods import get_method
from ..methods.weighted import weight_shares
from ..signatures import SignatureLike, load
from ._context import matched_symbols

#: methods whose score is a sum of per-gene terms (the rest, e.g. ssGSEA's running maximum, are not)
ADDITIVE = ("mean", "wmean", "ucell", "singscore")
MISSING_ROW = "(genes missing from the data)"


def contributions(
    adata: AnnData,
    signature: SignatureLike,
    *,
    groupby: str | None = None,
    method: str | None = None,
    key: str = "immunescape",
    layer: str | None = None,
    use_raw: bool | None = None,
    gene_symbols: str | None = None,
    chunk_size: int = 2000,
    **method_params: Any,
) -> pd.DataFrame:
    """Each gene's contribution to a signature's score, averaged per group (genes x groups).

    The contributions of a cell add up to its score exactly (the test suite checks it against
    :func:`score`), so a gene's value is its share of the group's mean score:

    - ``mean`` (scanpy's score_genes): (x_g - mean of the control genes) / n, the controls being the
      ones the score drew (``random_state``, ``ctrl_size`` as in :func:`score`);
    - ``wmean``: ``w_g x_g / sum(|w|)``;
    - ``ucell``: 1/n - (rank_g - (n + 1) / 2) / (n max_rank - n (n + 1) / 2), with UCell's ranks
      (descending, zeros and ranks beyond ``max_rank`` at ``max_rank``; genes absent from the data,
      counted at ``max_rank``, form one row);
    - ``singscore``: (rank_g - (k + 1) / 2) / (k (high - low)) minus 0.5 / k when centred (down
      genes with the opposite sign), singscore's ranks (ascending, ties at their minimum).

    AUCell, ssGSEA, GSVA and zmean scores are not sums of per-gene terms and are refused. Signed
    sets are supported by ``wmean`` and ``singscore`` (UCell clips up - down at 0; scanpy's score
    has separate controls per part).

    Parameters
    ----------
    adata
        Cells (or samples) x genes.
    signature
        One signature: a library name, a :class:`~immunescape.signatures.Signature`, or a gene list.
    groupby
        ``obs`` column; None: one column ``"all"``.
    method
        Default: the method of the scores in ``uns[key]`` when there are some, else ``"ucell"``.
    key
        Where earlier scores' method and parameters are read from.
    layer, use_raw, gene_symbols
        Which matrix and gene names, as in :func:`score`.
    chunk_size
        Rows ranked at once (memory: ``chunk_size`` x genes floats).
    method_params
        As in :func:`score` (e.g. ``max_rank=1500``).

    Returns
    -------
    pandas.DataFrame
        Genes (signature order) x groups, mean contribution; ``attrs["score"]`` the groups' mean
        scores (the columns' sums), ``attrs["method"]``.

    Examples
    --------
    >>> import immunescape as ie
    >>> cells = ie.datasets.simulate_tumor(n_samples=2, cells_per_sample=100, seed=0)
    >>> table = ie.tl.contributions(cells, "cytolytic_activity_rooney2015", groupby="cell_type", method="ucell")
    >>> list(table.index)
    ['GZMA', 'PRF1']
    """
    sigs = load(signature)
    if len(sigs) != 1:
        raise InputError(f"contributions takes one signature, got {len(sigs)}: {[s.name for s in sigs][:5]}.")
    sig = sigs[0]
    record = adata.uns.get(key) if isinstance(adata, AnnData) else None
    if method is None:
        method = str(record["method"]) if isinstance(record, dict) and "method" in record else "ucell"
        if isinstance(record, dict) and record.get("method") == method and not method_params:
            stored = record.get("params", {})
            method_params = {k: v for k, v in dict(stored).items() if k in get_method(method).params}
    if method not in ADDITIVE:
        raise InputError(
            f"No per-gene decomposition for method {method!r}: its score is not a sum of gene terms. "
            f"Use one of {', '.join(ADDITIVE)}." + closest(str(method), ADDITIVE)
        )
    m = get_method(method)
    params = m.check_params(method_params)
    chunk_size = check_chunk_size(chunk_size)
    if sig.signed and method in ("mean", "ucell"):
        raise InputError(
            f"Signature {sig.name!r} has down genes; {method}'s signed score is not a sum of gene terms "
            "(use method='wmean' or 'singscore')."
        )
    if groupby is not None and (not isinstance(adata, AnnData) or groupby not in adata.obs):
        raise InputError(f"groupby={groupby!r} is not an obs column." + closest(str(groupby), adata.obs.columns))
    matrix, names, _ = get_expression(adata, layer=layer, use_raw=use_raw, gene_symbols=gene_symbols)
    resolved = resolve([sig], names, min_coverage=0.0, check=False)
    positions, weights = resolved.positions[0], resolved.weights[0]
    if positions.size == 0:
        raise InputError(f"None of the genes of {sig.name!r} are in the data." + _hint(names))
    labels = matched_symbols(positions, names, resolved.coverage.iloc[0]["matched_as"])
    n_missing = int(resolved.coverage.iloc[0]["n_missing"])
    per_cell = _per_cell(matrix, positions, weights, n_missing, method, params, chunk_size)
    if method == "mean":  # (x_g - control mean) / n: the control mean is what the score subtracted
        from ._score import score

        total = (
            score(
                adata,
                [sig],
                method="mean",
                layer=layer,
                use_raw=use_raw,
                gene_symbols=gene_symbols,
                min_coverage=0.0,
                inplace=False,
                progress=False,
                **params,
            )
            .iloc[:, 0]
            .to_numpy()
        )
        n = positions.size
        control = per_cell.sum(axis=1) - total  # per_cell holds x_g / n
        per_cell = per_cell - (control / n)[:, None]
    columns = [*labels, MISSING_ROW] if per_cell.shape[1] > len(labels) else labels
    frame = pd.DataFrame(per_cell, index=adata.obs_names, columns=columns)
    groups = adata.obs[groupby].astype(str).to_numpy() if groupby is not None else np.full(adata.n_obs, "all")
    table = frame.groupby(groups, sort=True).mean().T
    table.index.name = "gene"
    table.columns.name = groupby
    table.attrs["score"] = table.sum(axis=0).to_dict()
    table.attrs["method"] = method
    table.attrs["signature"] = sig.name
    return table


def _hint(names: pd.Index) -> str:
    return f" The data's genes look like {list(names[:3])}; pass gene_symbols= to name a var column of symbols."


def _dense_rows(matrix, lo: int, hi: int) -> np.ndarray:
    block = matrix[lo:hi]
    return np.asarray(block.toarray() if sp.issparse(block) else block, dtype=np.float64)


def _per_cell(matrix, positions, weights, n_missing, method, params, chunk_size) -> np.ndarray:
    """cells x genes (+ one column for missing genes under UCell) of additive score terms."""
    from scipy.stats import rankdata

    n_cells, n_genes = matrix.shape
    up = weights > 0
    out = np.zeros((n_cells, positions.size + (1 if method == "ucell" and n_missing else 0)))
    keep = None
    if method == "wmean" and params.get("drop_empty_genes", True):
        keep = _nonempty(matrix, positions, chunk_size)
    for lo in range(0, n_cells, chunk_size):  # checked by contributions
        hi = min(n_cells, lo + chunk_size)
        if method in ("mean", "wmean"):
            block = matrix[lo:hi][:, positions]
            x = np.asarray(block.toarray() if sp.issparse(block) else block, dtype=np.float64)
            if method == "mean":
                out[lo:hi, : positions.size] = x / positions.size
            else:
                kept = weights if keep is None else np.where(keep, weights, 0.0)  # None: every gene kept
                out[lo:hi, : positions.size] = x * weight_shares(kept)
            continue
        rows = _dense_rows(matrix, lo, hi)
        if method == "ucell":
            max_rank = float(params["max_rank"])
            masked = np.where(rows != 0, -rows, np.nan)
            ranks = rankdata(masked, axis=1, method="average", nan_policy="omit")
            ranks = np.where(np.isnan(ranks) | (ranks > max_rank), max_rank, ranks)
            n = positions.size + (n_missing if params.get("missing_genes", "impute") == "impute" else 0)
            denom = n * max_rank - n * (n + 1) / 2.0
            out[lo:hi, : positions.size] = 1.0 / n - (ranks[:, positions] - (n + 1) / 2.0) / denom
            if out.shape[1] > positions.size:
                out[lo:hi, -1] = n_missing * (1.0 / n - (max_rank - (n + 1) / 2.0) / denom)
        else:  # singscore
            ranks = rankdata(rows, axis=1, method="min")[:, positions]
            center = 0.5 if params.get("center", True) else 0.0
            for part, sign in ((up, 1.0), (~up, -1.0)):
                k = int(part.sum())
                if k == 0:
                    continue
                low, high = (k + 1) / 2.0, (2.0 * n_genes - k + 1) / 2.0
                scaled = (ranks[:, part] - low) / (k * (high - low))
                out[lo:hi, np.flatnonzero(part)] = (
                    sign * scaled - center / k if sign > 0 else 1.0 / k - scaled - center / k
                )
    return out


def _nonempty(matrix, positions, chunk_size) -> np.ndarray:
    seen = np.zeros(positions.size, dtype=bool)
    for lo in range(0, matrix.shape[0], chunk_size):
        block = matrix[lo : lo + chunk_size][:, positions]
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        seen |= (block != 0).any(axis=0)
    return seen
