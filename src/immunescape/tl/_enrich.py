from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import pandas as pd
from anndata import AnnData

from .._anndata import get_expression, resolve_use_raw
from .._errors import CoverageWarning, InputError
from .._utils import check_random_state, check_whole, closest, physical_memory
from ..genes import resolve
from ..signatures import SignatureLike, load

logger = logging.getLogger(__name__)


def enrich(
    adata: AnnData,
    groupby: str,
    *,
    groups: Sequence[str] | None = None,
    reference: str = "rest",
    signatures: SignatureLike = "immune_escape",
    rank_method: str = "wilcoxon",
    layer: str | None = None,
    use_raw: bool | None = None,
    gene_symbols: str | None = None,
    min_coverage: float = 0.5,
    min_size: int = 5,
    permutation_num: int = 1000,
    random_state: int = 0,
    n_jobs: int = 2,
    key_added: str = "immunescape_enrich",
) -> pd.DataFrame:
    """Which signatures are enriched among the genes that distinguish groups (pre-ranked GSEA).

    Genes are ranked per group by scanpy's :func:`~scanpy.tl.rank_genes_groups` statistic (group vs
    ``reference``), then :func:`gseapy.prerank` tests every signature on each ranking (weighted
    running sum, gene-set permutations). Typical use: escape programmes that differ between
    responders and non-responders, or between immune contexts.

    Parameters
    ----------
    adata
        Cells or samples x genes (log-normalised).
    groupby
        ``obs`` column defining the groups.
    groups, reference
        Groups to test and what to compare them with (``"rest"`` or one group), as in scanpy.
    signatures
        Anything :func:`immunescape.signatures.load` takes; signed sets are tested as their up genes.
    rank_method
        scanpy's test: ``"wilcoxon"``, ``"t-test"``, ``"t-test_overestim_var"`` or ``"logreg"``.
    layer, use_raw, gene_symbols, min_coverage
        As in :func:`score`; signatures below ``min_coverage`` are left out with a warning.
    min_size
        gseapy leaves out sets with fewer matched genes than this.
    permutation_num, random_state, n_jobs
        gseapy's permutations, seed and threads.
    key_added
        The table goes to ``uns[key_added]``; scanpy's rankings to ``uns[key_added + "_rank_genes"]``.

    Returns
    -------
    pandas.DataFrame
        One row per group and signature: ``es``, ``nes``, ``pval``, ``fdr`` (gseapy's FDR q-value),
        ``n_genes`` (in the ranking), ``leading_edge`` (``;``-separated), ``title``.

    Examples
    --------
    >>> import scanpy as sc, immunescape as ie
    >>> pbmc = sc.datasets.pbmc68k_reduced()
    >>> table = ie.tl.enrich(pbmc, "bulk_labels", groups=["CD56+ NK"], signatures="bagaev2021_NK_cells",
    ...                      min_coverage=0.3, permutation_num=200)
    >>> bool(table.loc[0, "nes"] > 0)
    True
    """
    import gseapy
    import scanpy as sc

    if groupby not in adata.obs:
        raise InputError(f"groupby={groupby!r} is not an obs column." + closest(groupby, adata.obs.columns))
    labels = adata.obs[groupby].astype(str)
    known = set(labels)
    for g in [*(groups or []), *([reference] if reference != "rest" else [])]:
        if g not in known:
            raise InputError(
                f"Group {g!r} is not a value of obs[{groupby!r}] (values: {sorted(known)[:12]})." + closest(g, known)
            )
    _check_comparison(labels, groupby, groups, reference)
    check_whole(permutation_num, "permutation_num")
    check_random_state(random_state)
    _, names, used_raw = get_expression(adata, layer=layer, use_raw=use_raw, gene_symbols=gene_symbols)
    sigs = load(signatures)
    cover = resolve(sigs, names, min_coverage=min_coverage, check=False)
    usable = [
        (s, pos)
        for s, pos, (_, row) in zip(cover.signatures, cover.positions, cover.coverage.iterrows())
        if row["coverage"] >= min_coverage and row["n_found"] > 0
    ]
    left_out = [s.name for s in cover.signatures if s.name not in {u.name for u, _ in usable}]
    if left_out:
        warnings.warn(
            f"Left out below min_coverage={min_coverage:.0%}: {', '.join(left_out)}.", CoverageWarning, stacklevel=2
        )
    if not usable:
        raise InputError("No signature has enough genes in these data to test.")
    sets = {
        s.name: [str(names[p]) for p, w in zip(pos, w_) if w > 0]
        for (s, pos), w_ in zip(usable, [cover.weights[cover.names.index(s.name)] for s, _ in usable])
    }

    n_ranked = len(names)
    need = _PRERANK_BYTES * n_ranked * (permutation_num + 1)
    if need > physical_memory() // 2:  # gseapy keeps every permuted ranking: refuse before it takes the machine down
        most = max(1, physical_memory() // 2 // (_PRERANK_BYTES * n_ranked))
        raise InputError(
            f"permutation_num={permutation_num:,} needs about {need / 2**30:,.1f} GiB in gseapy.prerank for "
            f"{n_ranked:,} genes (this machine has {physical_memory() / 2**30:,.0f} GiB); use at most "
            f"about {most:,} permutations (1,000 is gseapy's default)."
        )

    rank_key = f"{key_added}_rank_genes"
    work = adata if gene_symbols is None else adata.copy()
    if gene_symbols is not None:  # rank on the symbol names the sets use
        (work.raw.var if used_raw else work.var).index = names
    sc.tl.rank_genes_groups(
        work,
        groupby,
        groups=list(groups) if groups else "all",
        reference=reference,
        method=rank_method,
        layer=layer,
        use_raw=resolve_use_raw(work, use_raw, layer),
        key_added=rank_key,
        n_genes=None,
    )
    if gene_symbols is not None:
        adata.uns[rank_key] = work.uns[rank_key]
    tested = list(groups) if groups else list(work.uns[rank_key]["names"].dtype.names)
    rows = []
    for group in tested:
        ranked = sc.get.rank_genes_groups_df(work, group=group, key=rank_key)
        ranking = ranked.set_index("names")["scores"].astype(float)
        ranking = ranking[~ranking.index.duplicated()].sort_values(ascending=False)
        res = _through_our_log(
            gseapy.prerank,
            rnk=ranking,
            gene_sets=sets,
            min_size=min_size,
            max_size=len(ranking) - 1,
            permutation_num=permutation_num,
            seed=random_state,
            threads=n_jobs,
            outdir=None,
            no_plot=True,
            verbose=False,
        ).res2d
        for _, r in res.iterrows():
            matched = [g for g in sets[r["Term"]] if g in ranking.index]
            rows.append(
                {
                    "group": group,
                    "signature": r["Term"],
                    "es": float(r["ES"]),
                    "nes": float(r["NES"]),
                    "pval": float(r["NOM p-val"]),
                    "fdr": float(r["FDR q-val"]),
                    "n_genes": len(matched),
                    "leading_edge": str(r["Lead_genes"]),
                }
            )
        skipped = [name for name in sets if name not in set(res["Term"])]
        if skipped:
            logger.info(
                "group %s: gseapy left out %s (fewer than min_size=%d genes)", group, ", ".join(skipped), min_size
            )
    table = pd.DataFrame(rows, columns=["group", "signature", "es", "nes", "pval", "fdr", "n_genes", "leading_edge"])
    titles = {s.name: s.meta.get("title", s.name) for s in sigs}
    table["title"] = table["signature"].map(titles)
    table = table.sort_values(["group", "fdr", "nes"], ascending=[True, True, False]).reset_index(drop=True)
    adata.uns[key_added] = table
    return table


def _through_our_log(call, **kwargs):
    """``call(**kwargs)`` with what gseapy writes to its own stderr handler (e.g. its warning about tied ranking
    values) passed to this package's logger instead, so ``-q`` and logging settings govern it."""
    import contextlib
    import io
    import re

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):  # gseapy's handler takes sys.stderr when prerank creates it
            return call(**kwargs)
    finally:
        entries = re.split(r"^\S+ \S+ \[(\w+)\] ", captured.getvalue(), flags=re.M)
        if entries[0].strip():  # text before any log record: passed on as it came
            logger.warning("gseapy: %s", entries[0].strip())
        for level, text in zip(entries[1::2], entries[2::2]):
            logger.log(logging.getLevelName(level) if level.isupper() else logging.INFO, "gseapy: %s", text.strip())


#: bytes gseapy.prerank holds per gene and permutation (measured: 4,000 genes x 50,000 permutations, 9.9 GB peak)
_PRERANK_BYTES = 48


def _check_comparison(labels: pd.Series, groupby: str, groups, reference: str) -> None:
    """A ranking needs two groups, each of at least two observations; otherwise gseapy would test noise."""
    counts = labels.value_counts()
    if len(counts) < 2:
        raise InputError(
            f"obs[{groupby!r}] has a single value ({counts.index[0]!r}); a comparison needs two groups or more."
        )
    tested = list(groups) if groups else list(counts.index)
    if reference != "rest" and reference in tested:
        if groups:
            raise InputError(f"Group {reference!r} is both tested and the reference; leave it out of groups.")
        tested.remove(reference)
    small = [g for g in [*tested, *([reference] if reference != "rest" else [])] if counts[g] < 2]
    if small:
        raise InputError(
            f"Groups with fewer than two observations cannot be ranked: {', '.join(map(repr, small))}; "
            "merge them or leave them out with groups=."
        )
    if reference == "rest" and len(tested) == 1 and counts.drop(tested).sum() < 2:
        raise InputError("The rest of the observations are fewer than two; nothing to compare with.")
