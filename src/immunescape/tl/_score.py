from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._anndata import get_expression, single_cell_evidence
from .._engine import NULL_SUFFIXES, check_key_is_ours, h5ad_safe, score_matrix, store_scores
from .._errors import DataWarning, InputError
from .._kernels.nulls import SKEW_MARGIN
from .._null import benjamini_hochberg, check_null_args
from .._utils import check_key, package_versions
from ..genes import check_coverage, resolve
from ..methods import NullSpec, get_method, method_names, methods_table
from ..signatures import SignatureLike, load, named_explicitly

__all__ = ["LOW_COVERAGE", "compute_scores", "methods", "score", "score_matrix"]

logger = logging.getLogger(__name__)


def methods() -> pd.DataFrame:
    """The scoring methods: what each equals, its parameters and defaults, and its reference.

    Examples
    --------
    >>> import immunescape as ie
    >>> sorted(ie.tl.methods().index)
    ['aucell', 'gsva', 'mean', 'singscore', 'ssgsea', 'ucell', 'wmean', 'zmean']
    """
    return methods_table()


LOW_COVERAGE = ("auto", "drop", "raise")


#: ``adjust=`` choices and the axis of the cells x signatures p table that Benjamini-Hochberg runs along
ADJUST_AXES = {"signatures": 1, "cells": 0}


#: Methods whose scores follow sequencing depth on sparse single-cell data (benchmarks/ROBUSTNESS.md,
#: section 1: random gene sets within a PBMC cell type, median abs(Spearman) with total counts).
DEPTH_BIASED = {"singscore": 0.38}


def _warn_depth_bias(adata: AnnData, method: str, layer, use_raw) -> None:
    """A method measured to follow depth, on rows that look like single cells: say so and what to do."""
    evidence = single_cell_evidence(adata, layer=layer, use_raw=use_raw)  # after score_matrix checked X
    if evidence is None:
        return
    warnings.warn(
        f"{method} scores follow sequencing depth on sparse single-cell data ({evidence}): within a PBMC cell "
        f"type, random gene sets' {method} scores correlate with total counts (median abs(Spearman) "
        f"{DEPTH_BIASED[method]:.2f}, beside about 0.10 for mean and 0.12 for aucell; benchmarks/ROBUSTNESS.md). "
        "Compare cells of different depth with null='matched' (its z and p set each cell against random genes "
        "in the same cell), or score with aucell or mean.",
        DataWarning,
        stacklevel=4,
    )


def score(
    adata: AnnData | pd.DataFrame,
    signatures: SignatureLike = "immune_escape",
    method: str = "ucell",
    *,
    null: str | None = None,
    n_null: int = 100,
    null_bins: int | None = None,
    adjust: str = "signatures",
    layer: str | None = None,
    use_raw: bool | None = None,
    gene_symbols: str | None = None,
    key_added: str = "immunescape",
    obs: bool = True,
    min_coverage: float = 0.5,
    low_coverage: str = "auto",
    organism: str | None = None,
    chunk_size: int | None = None,
    n_jobs: int | None = None,
    random_state: int | None = 0,
    progress: bool | None = None,
    inplace: bool = True,
    copy: bool = False,
    **method_params: Any,
) -> AnnData | pd.DataFrame | dict[str, pd.DataFrame] | None:
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
        One of :func:`methods` (the registry): |methods|. ``"mean"`` is scanpy's score_genes;
        |whole_matrix| score all samples at once (bulk and pseudobulk only; ``gsva`` refuses more than
        ``max_samples`` rows).
    null
        ``"matched"`` also tests every score against ``n_null`` random gene sets drawn for each
        signature, one stand-in per signature gene (up, down and differently weighted genes each
        matched), scored by the same method in the same pass. A gene's stand-ins come from its
        expression bin and the two beside it (genes binned by their mean over all cells, as scanpy's
        control genes), nearer genes in rank of mean expression weighing more, with probabilities
        tilted by ``exp(a * mean)`` so that their expected mean expression is the gene's own
        ("tilted" matching: uniform draws from a bin leave a fixed set's genes above or below their
        stand-ins where bins are wide, which called one random set in up to 10% of cells at p < 0.05
        and made p-values follow sequencing depth); a set's genes are distinct. Adds, per cell and signature,
        ``obsm[key_added + "_z"]`` (the score minus the null sets' mean, over their standard
        deviation), ``obsm[key_added + "_pval"]`` (upper-tail empirical p-value) and
        ``obsm[key_added + "_padj"]`` (Benjamini-Hochberg, see ``adjust``). The p-value is
        randomised: ``(n_above + U (n_tied + 1)) / (n_null + 1)`` with ``U`` uniform, so it is
        exactly uniform for a signature that is no different from random genes, even where many
        scores tie (sparse cells). Where a score is beyond every random set (where that formula
        would only give ``U / (n_null + 1)``), the p-value is the saddlepoint (Lugannani-Rice)
        approximation to the tail of the random-set score itself: a random set's score is a sum of
        its genes' terms (ranks, recovery-curve terms, values), each gene drawn as above, so the
        distribution comes from the stand-ins' possible genes in that cell, not from a fit to the
        ``n_null`` scores; capped at ``1 / (n_null + 1)``. p-values go far below ``1 / (n_null +
        1)``, so a cell can be significant after adjustment over a whole collection. Measured on
        random sets (1.6 million p-values per method), p <= 1e-3, 1e-4 and 1e-5 occur at 0.39-0.75x
        their nominal rate (tested on 320,000); every level at or above ``1 / (n_null + 1)`` keeps
        the empirical p's exact calibration. It replaced a Pearson type III tail fitted to the random-set scores'
        moments, whose heavy tail for AUCell's few top-ranked genes among many zeros cost most of
        its power beside a collection (benchmarks/RESULTS_null_calibration.md); that moment tail
        remains for ``ssgsea`` (a ratio, not a sum) and ``gsva``. Where the random-set scores do
        not vary, the empirical p stays. ``aucell`` and ``ssgsea`` break rank ties in a fixed gene
        order (as decoupler and gseapy), which would favour a fixed gene set in every cell, so their z and p
        are for the tie-averaged statistic (the scores are unchanged). ``gsva`` (gseapy) scores the
        random sets in its one call with the signatures: its cost grows with ``n_null`` times the
        signatures.

        ``"analytic"`` (|analytic|): a null without drawing sets, for uniform draws within bins (the
        matched null before tilted matching). A linear
        score of random genes drawn without replacement within bins has exact moments, computed per
        cell from its per-bin sums of values, squares and cubes: z is exact (the limit of
        ``"matched"``'s as ``n_null`` grows) and the p-value is the Edgeworth approximation (normal
        tail corrected for the exact skewness); where all of a signature's genes are zero in a cell
        the exact probability of that atom is used, randomised as above. About one scoring pass of
        extra work whatever the signatures' sizes. Tested calibrated (KS, and the 5% and 1% tails
        within 25% of nominal) on sparse counts with 5-40 gene signatures; ``"matched"`` stays
        exact by construction for any data.
    n_null
        Random gene sets per signature (default 100; unused by ``"analytic"``). The cost grows with
        the cells' non-zeros and the signatures' genes.
    adjust
        The axis of the Benjamini-Hochberg adjustment in ``_padj``: ``"signatures"`` (default), each
        cell over its signatures - which programmes does this cell carry? A cell's adjusted values
        then do not depend on which or how many other cells are scored (a sample scored alone gets
        the same call), and a streamed or distributed run needs no second pass. ``"cells"``, each
        signature over all cells - which cells carry this programme? (as
        :func:`immunescape.tl.adjust_pvalues` with ``across="cells"``).
    null_bins
        Expression bins the random genes are drawn from (scanpy's bins by rank of the gene mean; a
        gene's stand-ins come from its bin and the two beside it). Default None: 200 bins of at
        least 20 genes each, so each gene's stand-ins are its nearest genes in mean expression. In
        issue 17's simulated scenario over 7 seeds, the most-called fixed random set was called at
        p < 0.05 in at most 6.6% of cells (uniform draws within scanpy's 25 bins: up to 30%;
        benchmarks/RESULTS_null_calibration.md). A bin where a signature
        holds more than half of the genes joins its nearer neighbour, so random sets do not mostly
        repeat the signature's genes.
    layer, use_raw
        Which matrix to score, as in scanpy: ``use_raw=None`` uses ``.raw`` when it exists and no
        layer is given.
    gene_symbols
        Column of ``var`` (``raw.var``) with gene symbols, when ``var_names`` are other ids.
    key_added
        Scores go to ``obsm[key_added]`` and, with ``obs=True``, to ``obs[f"{key_added}_{name}"]``;
        parameters, versions and the gene coverage report to ``uns[key_added]``. Scoring again with
        the same key replaces everything the earlier run wrote: its ``obs`` columns and null tables
        that this run does not rewrite are removed (listed in ``uns[key_added]["removed_previous"]``).
    obs
        Also write one ``obs`` column per signature.
    min_coverage
        Smallest fraction of each signature's genes that must be found (see
        :func:`immunescape.genes.resolve`).
    low_coverage
        What to do with signatures below ``min_coverage``: ``"raise"`` an error naming the missing
        genes; ``"drop"`` them with one :class:`~immunescape.CoverageWarning` naming each with its
        coverage (recorded in ``uns[key_added]["left_out"]``); ``"auto"`` (default) drops members of
        a collection, a file or a table of sets (a targeted gene panel covers some of them) but
        raises for a signature named one by one. Nothing left to score is always an error.
    organism
        ``"human"`` or ``"mouse"``; None detects it from the gene names.
    chunk_size
        Cells per chunk (default 10,000). Results do not depend on it.
    n_jobs
        Threads for the numba kernels (default: all cores). Results do not depend on it.
    random_state
        Seed of the method's randomness (control genes for ``mean``, tie-breaking order for
        ``aucell``, the random gene sets and tie-breaking of the null). The same seed gives the
        same scores and p-values, whatever ``chunk_size`` and ``n_jobs``.
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
    None, the scored copy (``copy=True``) or the score DataFrame (``inplace=False`` or DataFrame input;
    with a null, a dict of DataFrames ``{"score", "z", "pval", "padj"}``, cells x signatures each).

    Examples
    --------
    >>> import scanpy as sc, immunescape as ie
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> ie.tl.score(adata, "cytolytic_activity_rooney2015,bagaev2021_NK_cells", method="ucell", min_coverage=0.3)
    >>> adata.obsm["immunescape"].shape
    (700, 2)
    >>> ie.tl.score(adata, "cytolytic_activity_rooney2015", null="matched", n_null=50, min_coverage=0.3)
    >>> bool((adata.obsm["immunescape_pval"].to_numpy() <= 1).all())
    True
    """
    if isinstance(adata, pd.DataFrame):
        frame = adata
        adata = AnnData(
            X=frame.to_numpy(),
            obs=pd.DataFrame(index=frame.index.astype(str)),
            var=pd.DataFrame(index=frame.columns.astype(str)),
        )
        inplace, copy = False, False
    if inplace:
        check_key(key_added)
        if isinstance(adata, AnnData):
            check_key_is_ours(adata, key_added)  # before the work; obs columns are checked again once known
    if copy:
        adata = adata.copy()
    table, record, null_tables = compute_scores(
        adata,
        signatures,
        method,
        null=null,
        n_null=n_null,
        null_bins=null_bins,
        adjust=adjust,
        layer=layer,
        use_raw=use_raw,
        gene_symbols=gene_symbols,
        min_coverage=min_coverage,
        low_coverage=low_coverage,
        organism=organism,
        chunk_size=chunk_size,
        n_jobs=n_jobs,
        random_state=random_state,
        progress=progress,
        **method_params,
    )
    if not inplace:
        return (
            {"score": table, **{suffix[1:]: frame for suffix, frame in null_tables.items()}} if null_tables else table
        )
    store_scores(adata, table, record, null_tables, key_added, obs=obs)
    logger.info("added obsm[%r] (%d signatures, method %s)", key_added, table.shape[1], record["method"])
    return adata if copy else None


def compute_scores(
    adata: AnnData,
    signatures: SignatureLike,
    method: str,
    *,
    null=None,
    n_null=100,
    null_bins=None,
    adjust="signatures",
    layer=None,
    use_raw=None,
    gene_symbols=None,
    min_coverage=0.5,
    low_coverage="auto",
    organism=None,
    chunk_size=None,
    n_jobs=None,
    random_state=0,
    progress=None,
    **method_params: Any,
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, pd.DataFrame]]:
    """Scores, the provenance record ``score`` stores in ``uns``, and (with a null) the z, p and
    adjusted p tables keyed by their obsm suffix; ``adata`` is not touched."""
    m = get_method(method)
    params = m.check_params(method_params)
    check_null_args(null, n_null, null_bins)
    if adjust not in ADJUST_AXES:
        raise InputError(f"adjust must be one of {list(ADJUST_AXES)}, got {adjust!r}.")
    if null is not None and null not in m.nulls:
        raise InputError(
            f"Method {m.name!r} has no null={null!r}; it supports {list(m.nulls)}. null='analytic' exists for "
            f"the linear methods ({', '.join(method_names(null='analytic'))}), whose random-set scores have exact "
            "moments; rank methods need null='matched'."
        )
    m.check_random_state(random_state)
    bins = null_bins if null_bins is not None else m.null_bins
    spec = NullSpec(n_null=int(n_null), n_bins=None if bins is None else int(bins), kind=null) if null else None
    if not isinstance(adata, AnnData):
        raise InputError(
            f"Expected an AnnData object, got {type(adata).__name__}. Wrap a matrix with anndata.AnnData(X)."
        )
    if not adata.obs_names.is_unique:
        warnings.warn(
            "obs names are not unique; scores are still per row, but call adata.obs_names_make_unique() before "
            "joining them with other tables.",
            DataWarning,
            stacklevel=3,
        )
    if low_coverage not in LOW_COVERAGE:
        raise InputError(f"low_coverage must be one of {LOW_COVERAGE}, got {low_coverage!r}.")
    # score_matrix checks the sparse structure once, before its first pass
    matrix, names, used_raw = get_expression(
        adata, layer=layer, use_raw=use_raw, gene_symbols=gene_symbols, check=False
    )
    sigs = load(signatures)
    left_out = pd.DataFrame(columns=["name", "n_found", "n_genes", "coverage"])
    resolved = None
    if low_coverage != "raise":
        keep = named_explicitly(signatures) if low_coverage == "auto" else set()
        sigs, left_out, resolved = _drop_low_coverage(sigs, names, min_coverage, organism, keep=keep)
    if resolved is None:
        resolved = resolve(sigs, names, min_coverage=min_coverage, organism=organism)
    scores, details, null_stats = score_matrix(
        matrix,
        resolved,
        m,
        _kernel_params(params, names),
        null=spec,
        chunk_size=chunk_size,
        n_jobs=n_jobs,
        random_state=random_state,
        progress=progress,
    )

    def frame(values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(values, index=pd.Index(adata.obs_names.copy()), columns=pd.Index(resolved.names))

    table = frame(scores)
    if m.name in DEPTH_BIASED and spec is None:
        _warn_depth_bias(adata, m.name, layer, use_raw)
    null_tables = {}
    if spec is not None:
        null_tables = dict(
            zip(
                NULL_SUFFIXES,
                map(
                    frame,
                    (
                        null_stats["z"],
                        null_stats["pval"],
                        benjamini_hochberg(null_stats["pval"], axis=ADJUST_AXES[adjust]),
                    ),
                ),
            )
        )
        p_value = (
            "randomised empirical, upper tail; beyond every random set, the saddlepoint tail of a random set's "
            "score from its bins' genes in the cell (ssgsea, gsva: a Pearson type III tail with the random-set "
            f"scores' mean, variance and skewness +{SKEW_MARGIN:g} of its standard error), at most 1/(n_null + 1)"
            if null == "matched"
            else "Edgeworth (exact mean, variance, skewness), upper tail"
        )
        details = {
            **details,
            "null": {
                "kind": null,
                **null_stats["details"],
                "p_value": p_value,
                "adjustment": f"Benjamini-Hochberg across the {adjust} of each "
                + ("cell" if adjust == "signatures" else "signature"),
            },
        }
    record = h5ad_safe(
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
            "low_coverage": low_coverage,
            "left_out": left_out,
            "details": details,
            "versions": package_versions(),
        }
    )
    return table, record, null_tables


def _kernel_params(params: dict[str, Any], names: pd.Index) -> dict[str, Any]:
    """The parameters as the kernels take them: ``gene_pool`` (gene names, as in scanpy) as column positions."""
    pool = params.get("gene_pool")
    if pool is None:
        return params
    if isinstance(pool, str) or not all(isinstance(g, str) for g in pool):
        raise InputError("gene_pool must be a list of gene names (as in scanpy.tl.score_genes).")
    position = pd.Series(np.arange(len(names)), index=names)
    position = position[~position.index.duplicated()]
    missing = [g for g in pool if g not in position.index]
    if missing or not len(pool):
        raise InputError(
            f"gene_pool names {len(missing)} gene(s) not in the data ({', '.join(missing[:5])}...)"
            if missing
            else "gene_pool is empty; give gene names or None for all genes."
        )
    return {**params, "gene_pool": position.loc[list(dict.fromkeys(pool))].to_numpy(np.int64)}


def _drop_low_coverage(sigs, names, min_coverage, organism, *, keep=frozenset()):
    """The signatures that reach ``min_coverage`` (and those in ``keep``, left for ``resolve`` to judge),
    a table of the ones left out, announced in one warning, and, when none is, their checked resolution
    (else None: the kept ones are resolved again)."""
    from .._errors import CoverageWarning

    found = resolve(sigs, names, min_coverage=min_coverage, organism=organism, check=False)
    cover = found.coverage
    low = cover[((cover["coverage"] < min_coverage) | (cover["n_found"] == 0)) & ~cover.index.isin(list(keep))]
    if len(low) == len(cover):  # nothing would be left: resolve's error names every signature and its missing genes
        return sigs, low.iloc[:0][["n_found", "n_genes", "coverage"]].rename_axis("name").reset_index(), None
    if not len(low):
        check_coverage(cover, min_coverage, names)  # what resolve(check=True) would raise for a kept signature
        return sigs, low[["n_found", "n_genes", "coverage"]].rename_axis("name").reset_index(), found
    if len(low):
        warnings.warn(
            f"{len(low)} of {len(cover)} signatures below min_coverage={min_coverage:.0%} were left out: "
            + ", ".join(f"{n} ({r.n_found}/{r.n_genes})" for n, r in low.iterrows())
            + " (low_coverage='raise' to stop instead).",
            CoverageWarning,
            stacklevel=4,
        )
    table = low[["n_found", "n_genes", "coverage"]].rename_axis("name").reset_index()
    return [s for s in sigs if s.name not in set(low.index)], table, None


def _fill_method_lists(doc: str | None) -> str | None:
    """Method lists in docstrings come from the registry, so a new method is documented where it is offered."""
    if doc is None:
        return None
    quoted = lambda names: ", ".join(f'``"{n}"``' for n in names)
    return (
        doc.replace("|methods|", quoted(method_names()))
        .replace("|analytic|", quoted(method_names(null="analytic")))
        .replace("|whole_matrix|", quoted(method_names(chunked=False)))
    )


score.__doc__ = _fill_method_lists(score.__doc__)
