from __future__ import annotations

import pandas as pd
from anndata import AnnData

from .._anndata import get_expression
from ..genes import resolve
from ..signatures import SignatureLike, load


def coverage(
    adata: AnnData,
    signatures: SignatureLike = "immune_escape",
    *,
    layer: str | None = None,
    use_raw: bool | None = None,
    gene_symbols: str | None = None,
    organism: str | None = None,
) -> pd.DataFrame:
    """Report how many of each signature's genes the data hold, and under which names.

    Parameters
    ----------
    adata
        Annotated data (cells or samples x genes).
    signatures
        Names, a collection, a file or user sets (anything :func:`immunescape.signatures.load` takes).
    layer, use_raw
        Which matrix's genes to check, as in scanpy (``use_raw=None`` uses ``.raw`` when present).
    gene_symbols
        Column of ``var`` holding gene symbols when ``var_names`` are ids.
    organism
        ``"human"``/``"mouse"``; None detects it from the gene names.

    Returns
    -------
    pandas.DataFrame
        One row per signature: ``n_genes``, ``n_found``, ``n_exact``, ``n_alias``, ``n_ensembl``,
        ``n_ortholog``, ``n_missing``, ``coverage``, ``missing`` and ``matched_as``. It never raises
        for low coverage: it is the report that tells you what is missing.

    Examples
    --------
    >>> import scanpy as sc, immunescape as ie
    >>> table = ie.pp.coverage(sc.datasets.pbmc68k_reduced(), "cytolytic_activity_rooney2015")
    >>> int(table.loc["cytolytic_activity_rooney2015", "n_genes"])
    2
    """
    _, names, _ = get_expression(adata, layer=layer, use_raw=use_raw, gene_symbols=gene_symbols)
    return resolve(load(signatures), names, organism=organism, check=False).coverage
