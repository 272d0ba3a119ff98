from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._anndata import joined_scores, sample_labels
from .._chunks import check_sparse
from .._errors import DataWarning, InputError, SignatureError
from .._utils import check_number, check_share, check_whole, closest, package_versions
from ..signatures import get as get_signature

logger = logging.getLogger(__name__)

COMPARTMENTS = ("malignant", "T", "NK", "B", "myeloid", "fibroblast", "endothelial")
# Cell-type words, matched against whole words of a label (lower-cased, split at anything but letters,
# digits and "+"). A cell-type word always wins over a location word: "Tumour-infiltrating CD8+ T cells"
# are T cells, "Cancer-associated fibroblasts" fibroblasts.
_CELL_WORDS: dict[str, str] = {
    "T": r"t|tcells?|tregs?|tfh|th\d+|thelper|tex|tem|tcm|trm|tconv|tn|cd[348]\+?|cd[48]t\w*|mait|nkt|gdt|"
    r"gammadelta|foxp3\+?",
    "NK": r"nk|nks|nkcells?|killer|cd56\+?|cd56(?:bright|dim)\w*",
    "B": r"b|bcells?|plasma|plasmablasts?|plasmacytes?|cd19\+?|cd20\+?",
    "myeloid": r"myeloid|monocytes?|monos?|macrophages?|macros?|dcs?|cdc\d*|pdcs?|moc?dcs?|dendritic|"
    r"neutrophils?|neutros?|mast|"
    r"tams?|mdscs?|cd14\+?|cd68\+?|granulocytes?|kupffer|microglia|histiocytes?|langerhans",
    "fibroblast": r"fibroblasts?|fibros?|cafs?|mycafs?|icafs?|stroma|stromal|mesenchymal|pericytes?|smooth|"
    r"myofibroblasts?|vsmcs?",
    "endothelial": r"endothelial|endothelium|ecs?|lymphatic|hevs?",
}
# Words of tumour cells themselves; only used when no cell-type word is present.
_MALIGNANT_WORDS = (
    r"malignant|tumou?rs?|cancers?|cancerous|epithelial|epithelium|carcinomas?|adenocarcinomas?|neoplastic|aneuploid"
)
# Words that place a cell in or near the tumour without saying what it is ("tumour-infiltrating lymphocytes").
_PLACE_WORDS = r"infiltrating|associated|derived|resident|adjacent|educated|tils?|lymphocytes?|immune|leukocytes?"
_WORD_SPLIT = re.compile(r"[^a-z0-9+]+")
# built-in signatures whose markers assign coarse compartments when no labels exist
FALLBACK_MARKERS = {
    "T": ("bagaev2021_T_cells",),
    "NK": ("bagaev2021_NK_cells",),
    "B": ("bagaev2021_B_cells",),
    "myeloid": ("macrophages_danaher2017", "bagaev2021_Macrophages"),
    "fibroblast": ("bagaev2021_CAF",),
    "endothelial": ("bagaev2021_Endothelium",),
}


def _compartment_of_label(label: str) -> tuple[str, tuple[str, ...]]:
    """The compartment of one label, and every compartment whose cell-type words it holds (more than one: ambiguous)."""
    words = [w for w in _WORD_SPLIT.split(str(label).lower()) if w]
    found = tuple(c for c, pattern in _CELL_WORDS.items() if any(re.fullmatch(pattern, w) for w in words))
    if len(found) == 1:
        return found[0], found
    if found:
        return "other", found
    if any(re.fullmatch(_MALIGNANT_WORDS, w) for w in words) and not any(re.fullmatch(_PLACE_WORDS, w) for w in words):
        return "malignant", ()
    return "other", ()


def label_compartments(labels: Sequence[str], mapping: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """How each distinct label maps to a compartment, and why: one row per label.

    Columns ``compartment``, ``rule`` (``"mapping"`` for ``mapping``, ``"words"`` for the name rules,
    ``"ambiguous"`` when the label names cell types of several compartments, ``"unmapped"``) and
    ``matched`` (the compartments its words name).

    Examples
    --------
    >>> labels = ["Tumour-infiltrating CD8+ T cells", "Cancer-associated fibroblasts", "NK/T"]
    >>> label_compartments(labels)["compartment"].tolist()
    ['T', 'fibroblast', 'other']
    """
    explicit: dict[str, str] = {}
    for compartment, members in (mapping or {}).items():
        if compartment not in COMPARTMENTS:
            raise InputError(
                f"Unknown compartment {compartment!r}; use one of {COMPARTMENTS}." + closest(compartment, COMPARTMENTS)
            )
        for label in [members] if isinstance(members, str) else members:
            explicit[str(label)] = compartment
    if isinstance(labels, str):  # its characters would each be taken for a label
        raise InputError(f"labels must be a list of labels (e.g. adata.obs['cell_type']), got one string {labels!r}.")
    rows = []
    for label in pd.unique(pd.Series([str(x) for x in labels], dtype=object)):
        if label in explicit:
            rows.append((label, explicit[label], "mapping", ""))
            continue
        compartment, found = _compartment_of_label(label)
        rule = "ambiguous" if len(found) > 1 else ("unmapped" if compartment == "other" else "words")
        rows.append((label, compartment, rule, ", ".join(found)))
    return pd.DataFrame(rows, columns=["label", "compartment", "rule", "matched"]).set_index("label")


def compartments_from_labels(labels: pd.Series, mapping: Mapping[str, Sequence[str]] | None = None) -> pd.Series:
    """Map cell-type labels to compartments: an explicit ``{compartment: [labels]}`` mapping first, then
    whole-word rules in which cell-type words outrank location words (:func:`label_compartments`).

    Labels that name no compartment, or cell types of several (``"NK/T"``), become ``"other"``, with
    one warning naming them; pass ``mapping`` to place them.

    Examples
    --------
    >>> compartments_from_labels(pd.Series(["CD8 T", "Malignant", "TAM", "CAF", "weird"])).tolist()
    ['T', 'malignant', 'myeloid', 'fibroblast', 'other']
    """
    text = labels.astype(str)
    table = label_compartments(pd.unique(text), mapping)
    ambiguous = table[table["rule"] == "ambiguous"]
    unmapped = table[table["rule"] == "unmapped"]
    if len(ambiguous) or len(unmapped):
        parts = (
            [f"ambiguous (several cell types): {', '.join(f'{k!r} ({v})' for k, v in ambiguous['matched'].items())}"]
            if len(ambiguous)
            else []
        )
        if len(unmapped):
            parts.append(
                f"unrecognised: {', '.join(map(repr, unmapped.index[:20]))}{' ...' if len(unmapped) > 20 else ''}"
            )
        warnings.warn(
            "Cell-type labels left in compartment 'other': "
            + "; ".join(parts)
            + ". Place them with compartments={'T': [...], ...} (ie.tl.aggregate) if they belong to one.",
            DataWarning,
            stacklevel=3,
        )
    logger.info(
        "cell-type labels -> compartments: %s", "; ".join(f"{k} -> {v}" for k, v in table["compartment"].items())
    )
    return text.map(table["compartment"]).rename(labels.name)


def compartments_from_markers(
    adata: AnnData, *, layer=None, use_raw=None, min_z: float = 1.5, min_gap: float = 0.5, **score_kw
) -> pd.Series:
    """Coarse compartments from built-in cell-type signatures, for data without labels.

    Each compartment's marker genes (``FALLBACK_MARKERS``) are scored with UCell and put on a robust z
    scale across all cells (median/MAD), so sets of different sizes compare fairly. A cell takes the
    compartment with the highest z when it is at least ``min_z`` and leads the next by ``min_gap``;
    a cell with no clear immune or stromal signal is called ``malignant``. A fallback for a first
    look, not a replacement for annotation: on the simulated cohorts it recovers B, NK, fibroblast and
    myeloid cells well but only about half of the T cells (the Bagaev T-cell set is short), and on
    scanpy's pbmc68k_reduced about two thirds of the T cells.
    """
    from ..signatures import load
    from ._score import score

    min_z, min_gap = check_number(min_z, "min_z"), check_number(min_gap, "min_gap")
    sets = {}
    for compartment, names in FALLBACK_MARKERS.items():
        genes = [g for sig in load(list(names)) for g in sig.genes]
        sets[compartment] = list(dict.fromkeys(genes))
    from ..pp import coverage

    cover = coverage(adata, sets, layer=layer, use_raw=use_raw)
    usable = [c for c in sets if cover.loc[c, "coverage"] >= 0.3 and cover.loc[c, "n_found"] >= 2]
    if len(usable) < len(sets):
        warnings.warn(
            f"Marker genes of {sorted(set(sets) - set(usable))} are mostly absent from the data; those compartments "
            "cannot be assigned (their cells fall back to 'malignant'). Pass celltype_key= if you have labels.",
            DataWarning,
            stacklevel=3,
        )
    if len(usable) < 2:
        raise InputError(
            "Too few marker genes in the data to assign compartments; pass celltype_key= with cell-type labels."
        )
    table = score(
        adata,
        {c: sets[c] for c in usable},
        method="ucell",
        layer=layer,
        use_raw=use_raw,
        inplace=False,
        min_coverage=0.3,
        **score_kw,
    )
    values = table.to_numpy()
    median = np.median(values, axis=0)
    mad = np.median(np.abs(values - median), axis=0) * 1.4826
    mad[mad == 0] = values.std(axis=0)[mad == 0] + 1e-12
    z = (values - median) / mad
    order = np.argsort(z, axis=1)
    best, second = order[:, -1], order[:, -2]
    rows = np.arange(len(z))
    top, gap = z[rows, best], z[rows, best] - z[rows, second]
    names = np.asarray(table.columns)
    return pd.Series(np.where((top >= min_z) & (gap >= min_gap), names[best], "malignant"), index=adata.obs_names)


def aggregate(
    adata: AnnData,
    sample_key: str,
    *,
    celltype_key: str | None = None,
    compartments: Mapping[str, Sequence[str]] | None = None,
    key: str | Sequence[str] = "immunescape",
    mode: str = "scores",
    min_cells: int = 10,
    high_quantile: float = 0.75,
    signatures: Any = "immune_escape",
    method: str = "ucell",
    counts_layer: str | None = "counts",
    **score_kw: Any,
) -> AnnData:
    """Summarise single cells into one row per sample (samples x signature features).

    Parameters
    ----------
    adata
        Scored cells (``obsm[key]`` from :func:`score`) with a sample column in ``obs``.
    sample_key
        ``obs`` column naming each cell's sample (patient).
    celltype_key
        ``obs`` column of cell-type labels. Labels are mapped to compartments (malignant, T, NK, B,
        myeloid, fibroblast, endothelial) by ``compartments`` and then by name rules. Without it,
        compartments come from built-in marker signatures (see :func:`compartments_from_markers`)
        and the result says so in ``uns``.
    compartments
        ``{compartment: [label, ...]}`` for labels the name rules do not know.
    key
        Where the cell scores are (``obsm[key]``, ``uns[key]``); several keys are read side by side
        (e.g. ``["immunescape", "pathways"]``: the ``tumour_intrinsic`` footprints scored with
        ``method="wmean"`` under their own key).
    mode
        ``"scores"``: each signature's mean, median and fraction of high cells over the cells of
        the compartment where it is meaningful (from the signature file: exhaustion over T cells,
        TAM over myeloid cells, antigen presentation over malignant cells; "any" over all cells).
        ``"pseudobulk"``: counts summed per sample and compartment, normalised (CP10k, log1p) and
        scored like bulk with ``method``.
    min_cells
        A sample with fewer cells is dropped; a compartment with fewer cells in a sample gives NaN.
    high_quantile
        "Fraction high" counts cells above this quantile of the signature in its compartment, over
        the whole cohort.
    signatures, method, counts_layer, score_kw
        For ``mode="pseudobulk"``: what to score, how, and which layer holds raw counts.

    Returns
    -------
    anndata.AnnData
        Samples x signatures. ``X``: compartment means (scores mode) or pseudobulk scores;
        ``layers["median"]``, ``layers["frac_high"]`` (scores mode); ``obs``: ``n_cells`` and
        composition (``frac_<compartment>``, ``frac_CD8``, ``frac_Treg`` when labels allow);
        ``var``: each signature's ``compartment`` and ``category``; ``uns["immunescape_samples"]``.

    Examples
    --------
    >>> import immunescape as ie
    >>> cells = ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=120, seed=0)
    >>> ie.tl.score(cells, "immune_escape")
    >>> ie.tl.aggregate(cells, "sample", celltype_key="cell_type").shape
    (3, 27)
    """
    check_whole(min_cells, "min_cells")
    check_share(high_quantile, "high_quantile")
    if sample_key not in adata.obs:
        raise InputError(
            f"sample_key={sample_key!r} is not an obs column (columns: {list(adata.obs.columns)[:12]})."
            + closest(sample_key, adata.obs.columns)
        )
    if mode not in ("scores", "pseudobulk"):
        raise InputError(f"mode must be 'scores' or 'pseudobulk', got {mode!r}.")
    if celltype_key is not None and celltype_key not in adata.obs:
        raise InputError(
            f"celltype_key={celltype_key!r} is not an obs column." + closest(celltype_key, adata.obs.columns)
        )
    if compartments is not None and celltype_key is None:  # it maps labels; without them it was ignored
        raise InputError(
            "compartments= maps cell-type labels to compartments; pass celltype_key= naming the obs column of labels."
        )
    label_map = None
    if celltype_key is not None:
        compartment = compartments_from_labels(adata.obs[celltype_key], compartments)
        label_map = label_compartments(pd.unique(adata.obs[celltype_key].astype(str)), compartments)
        source = f"labels in obs[{celltype_key!r}]"
    else:
        compartment = compartments_from_markers(adata)
        source = "fallback: built-in marker signatures (no cell-type labels given)"
        logger.warning("no celltype_key: compartments assigned from marker signatures (coarse)")
    samples = sample_labels(adata, sample_key)
    counts = samples.value_counts()  # missing labels (None) are not counted, so never kept
    small = counts[counts < min_cells]
    if len(small):
        warnings.warn(
            f"{len(small)} sample(s) have fewer than min_cells={min_cells} cells and are left out: "
            f"{', '.join(small.index[:10])}.",
            DataWarning,
            stacklevel=2,
        )
    keep = samples.isin(counts[counts >= min_cells].index).to_numpy()
    if not keep.any():
        raise InputError(f"No sample has at least min_cells={min_cells} cells; lower min_cells.")
    sample_order = list(pd.unique(samples[keep]))
    composition = _composition(
        samples[keep], compartment[keep], adata.obs[celltype_key][keep] if celltype_key else None, min_cells
    )
    if mode == "scores":
        features, median, frac_high, var = _score_features(
            adata, key, samples, compartment, keep, sample_order, min_cells, high_quantile
        )
        layers = {"median": median, "frac_high": frac_high}
    else:
        features, var = _pseudobulk_features(
            adata, samples, compartment, keep, sample_order, min_cells, signatures, method, counts_layer, score_kw
        )
        layers = {}
    obs = composition.loc[sample_order]
    out = AnnData(X=features.loc[sample_order].to_numpy(dtype=np.float64), obs=obs, var=var)
    for name, frame in layers.items():
        out.layers[name] = frame.loc[sample_order].to_numpy(dtype=np.float64)
    out.uns["immunescape_samples"] = {
        "mode": mode,
        "sample_key": sample_key,
        "celltype_key": str(celltype_key),
        "compartments_from": source,
        "min_cells": min_cells,
        "key": key if isinstance(key, str) else list(key),
        "versions": package_versions(),
        **({"compartment_map": label_map.reset_index()} if label_map is not None else {}),
    }
    _add_context_inputs(out, adata, samples, keep, sample_order, counts_layer)
    _add_gene_means(out, adata, key, samples, compartment, keep, sample_order, min_cells)
    return out


def _add_context_inputs(
    out: AnnData,
    adata: AnnData,
    samples: pd.Series,
    keep: np.ndarray,
    sample_order: list[str],
    counts_layer: str | None,
) -> None:
    """The context model's features of each sample's pseudobulk (all its cells), for classify."""
    from ._classify import CONTEXT_FEATURES, CONTEXT_RANKS
    from ._context import compute_context_inputs, load_context_model

    use_counts = counts_layer is not None and counts_layer in adata.layers
    X = check_sparse(adata.layers[counts_layer] if use_counts else adata.X)
    unlog = not use_counts and _looks_logged(X[: min(adata.n_obs, 2000)])  # log-normalised X: cells add up as counts
    codes = np.full(adata.n_obs, -1, np.int64)
    codes[keep] = pd.Categorical(samples[keep], categories=sample_order).codes
    summed = _summed_rows(X, codes, len(sample_order), np.expm1 if unlog else None)
    bulk = AnnData(
        summed.astype(np.float32),
        obs=pd.DataFrame(index=pd.Index(sample_order)),
        var=pd.DataFrame(index=adata.var_names),
    )
    model = load_context_model()
    try:
        inputs = compute_context_inputs(bulk, model=model)
    except InputError as err:
        warnings.warn(
            f"The immune-context model cannot read these data ({err}); contexts will be indeterminate.",
            DataWarning,
            stacklevel=3,
        )
        return
    out.obsm[CONTEXT_FEATURES] = inputs.features.set_axis(out.obs_names)
    out.obsm[CONTEXT_RANKS] = inputs.gene_ranks.set_axis(out.obs_names)
    out.uns["immunescape_samples"]["context_model"] = {
        "version": model.version,
        "universe_coverage": inputs.universe_coverage,
        "feature_coverage": json.dumps(inputs.feature_coverage.to_dict()),
        "source": "pseudobulk of all cells per sample "
        f"({'layer ' + repr(counts_layer) if use_counts else 'expm1 of X' if unlog else 'X'})",
    }


_ROW_BLOCK = 50_000  # rows summed at once: bounds the copy that expm1 needs (and reads of backed X)


def _summed_rows(X, codes: np.ndarray, n_groups: int, transform=None, columns: np.ndarray | None = None) -> np.ndarray:
    """Sum rows of ``X`` (optionally only ``columns``, after ``transform`` of the stored values) by group
    code (-1: none)."""
    n_cols = X.shape[1] if columns is None else columns.size
    total = np.zeros((n_groups, n_cols))
    for lo in range(0, X.shape[0], _ROW_BLOCK):
        hi = min(X.shape[0], lo + _ROW_BLOCK)
        rows = np.flatnonzero(codes[lo:hi] >= 0)
        if rows.size == 0:
            continue
        block = X[lo:hi]
        block = block[:, columns] if columns is not None else block
        if transform is not None:
            block = block.copy() if sp.issparse(block) else np.asarray(block, dtype=np.float64)
            if sp.issparse(block):
                block.data = transform(block.data)
            else:
                block = transform(block)
        indicator = sp.csr_matrix((np.ones(rows.size), (codes[lo:hi][rows], rows)), shape=(n_groups, hi - lo))
        part = indicator @ block
        total += part.toarray() if sp.issparse(part) else np.asarray(part)
    return total


def _looks_logged(X) -> bool:
    values = X.data if sp.issparse(X) else np.asarray(X).ravel()
    sample = values[:1_000_000]
    return bool(sample.size) and not np.allclose(sample, np.round(sample)) and float(np.max(sample)) < 50


def _add_gene_means(
    out: AnnData,
    adata: AnnData,
    key: str,
    samples: pd.Series,
    compartment: pd.Series,
    keep: np.ndarray,
    sample_order: list[str],
    min_cells: int,
) -> None:
    """Mean expression of each mechanism gene over the cells of its signature's compartment ("compartment:GENE")."""
    from .._anndata import get_expression
    from ..genes import resolve
    from ._classify import GENE_MEANS, MECHANISMS
    from ._context import matched_symbols

    first = key if isinstance(key, str) else key[0]
    record = adata.uns.get(first, {}) if isinstance(adata.uns.get(first), Mapping) else {}
    try:
        matrix, names, _ = get_expression(
            adata, layer=record.get("layer"), use_raw=record.get("use_raw"), gene_symbols=record.get("gene_symbols")
        )
    except InputError:
        matrix, names, _ = get_expression(adata, use_raw=False)
    signatures = []
    wanted = [n for rule in MECHANISMS.values() for n in (*rule.features, *rule.fallback)]
    if "category" in out.var:  # scored pathway footprints: their genes name the drivers of a pathway call
        wanted += [n for n in out.var_names[out.var["category"].astype(str) == "pathway"] if n not in wanted]
    for name in wanted:
        try:
            signatures.append(get_signature(name))
        except SignatureError:
            continue  # composition features (frac_*) have no genes
    comps = _signature_compartments([s.name for s in signatures])["compartment"]
    resolved = resolve(signatures, names, min_coverage=0.0, check=False)
    columns: dict[str, np.ndarray] = {}
    for sig, positions in zip(signatures, resolved.positions):
        comp = comps[sig.name]
        mask = keep & ((compartment == comp).to_numpy() if comp != "any" else np.ones(len(keep), bool))
        cells = np.flatnonzero(mask)
        if cells.size == 0 or positions.size == 0:
            continue
        symbols = matched_symbols(positions, names, resolved.coverage.loc[sig.name, "matched_as"])
        todo = [(p, g) for p, g in zip(positions, symbols) if f"{comp}:{g}" not in columns]
        if not todo:
            continue
        codes = np.full(adata.n_obs, -1, np.int64)
        codes[cells] = pd.Categorical(samples.iloc[cells], categories=sample_order).codes
        n = np.bincount(codes[codes >= 0], minlength=len(sample_order)).astype(float)
        sums = _summed_rows(matrix, codes, len(sample_order), columns=np.asarray([p for p, _ in todo]))
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where((n >= min_cells)[:, None], sums / n[:, None], np.nan)
        for j, (_, g) in enumerate(todo):
            columns[f"{comp}:{g}"] = means[:, j]
    if columns:
        out.obsm[GENE_MEANS] = pd.DataFrame(columns, index=out.obs_names)


def _composition(
    samples: pd.Series, compartment: pd.Series, labels: pd.Series | None, min_cells: int = 10
) -> pd.DataFrame:
    frame = pd.crosstab(samples, compartment, normalize="index")
    out = pd.DataFrame(index=frame.index)
    out["n_cells"] = samples.value_counts().reindex(frame.index).astype(int)
    for c in COMPARTMENTS:
        out[f"frac_{c}"] = frame.get(c, 0.0)
    if labels is not None:
        distinct = pd.unique(labels.astype(str))
        for name, pattern in (
            ("CD8", r"cd8[ab]?\+?|cd8t\w*"),
            ("Treg", r"tregs?|regulatory|foxp3\+?"),
        ):  # whole words: not CD80
            has = {u: any(re.fullmatch(pattern, w) for w in _WORD_SPLIT.split(u.lower()) if w) for u in distinct}
            hits = labels.astype(str).map(has).astype(bool)
            if hits.any():
                out[f"frac_{name}"] = hits.groupby(samples).mean().reindex(out.index).fillna(0.0)
        if (
            "frac_Treg" in out
        ):  # Treg share of T cells, independent of infiltration; NaN when T cells are too few to tell
            n_t = out["frac_T"] * out["n_cells"]
            out["frac_Treg_of_T"] = np.where(
                n_t >= min_cells, out["frac_Treg"] / out["frac_T"].replace(0, np.nan), np.nan
            )
    out.index.name = None
    return out


def _signature_compartments(names: Sequence[str]) -> pd.DataFrame:
    rows = []
    for name in names:
        try:
            meta = get_signature(name).meta
        except SignatureError:  # user signatures: meaningful everywhere unless they say otherwise
            meta = {}
        rows.append({"compartment": meta.get("compartment", "any"), "category": meta.get("category", "user")})
    return pd.DataFrame(rows, index=pd.Index(list(names)))


def _score_features(adata, key, samples, compartment, keep, sample_order, min_cells, high_quantile):
    scores = joined_scores(adata, [key] if isinstance(key, str) else list(key))
    var = _signature_compartments(scores.columns)
    mean = pd.DataFrame(np.nan, index=sample_order, columns=scores.columns)
    median, frac_high = mean.copy(), mean.copy()
    absent = set()
    for comp, names in var.groupby("compartment").groups.items():
        mask = keep & ((compartment == comp).to_numpy() if comp != "any" else np.ones(len(keep), bool))
        if not mask.any():
            absent.add(comp)
            continue
        sub = scores.loc[mask, list(names)]
        threshold = sub.quantile(high_quantile)
        grouped = sub.groupby(samples[mask].to_numpy())
        n = grouped.size()
        ok = n[n >= min_cells].index
        mean.loc[ok, list(names)] = grouped.mean().loc[ok]
        median.loc[ok, list(names)] = grouped.median().loc[ok]
        frac_high.loc[ok, list(names)] = (sub > threshold).groupby(samples[mask].to_numpy()).mean().loc[ok]
    if absent:
        warnings.warn(
            f"No cells of compartment(s) {sorted(absent)}: their signatures are NaN for every sample.",
            DataWarning,
            stacklevel=3,
        )
    return mean, median, frac_high, var


def _pseudobulk_features(
    adata, samples, compartment, keep, sample_order, min_cells, signatures, method, counts_layer, score_kw
):
    from ..pp._pseudobulk import check_counts, summed_profiles
    from ..signatures import load
    from ._score import score

    if counts_layer is not None and counts_layer not in adata.layers:
        raise InputError(
            f"Pseudobulk needs raw counts: layer {counts_layer!r} not found; pass counts_layer= (None uses X)."
        )
    X = check_sparse(adata.layers[counts_layer] if counts_layer is not None else adata.X)
    check_counts(X, "X" if counts_layer is None else f"layers[{counts_layer!r}]")
    sigs = load(signatures)
    var = _signature_compartments([s.name for s in sigs])
    features = pd.DataFrame(np.nan, index=sample_order, columns=var.index)
    for comp, names in var.groupby("compartment").groups.items():
        mask = keep & ((compartment == comp).to_numpy() if comp != "any" else np.ones(len(keep), bool))
        groups = samples[mask]
        n = groups.value_counts()
        ok = [s for s in sample_order if n.get(s, 0) >= min_cells]
        if not ok:
            continue
        codes = np.full(adata.n_obs, -1, np.int64)  # -1: other compartments, and samples with too few cells here
        codes[mask] = pd.Categorical(groups, categories=ok).codes
        _, normalised = summed_profiles(X, codes, len(ok))
        bulk = AnnData(normalised, var=pd.DataFrame(index=adata.var_names))
        bulk.obs_names = ok
        table = score(bulk, [s for s in sigs if s.name in set(names)], method=method, inplace=False, **score_kw)
        features.loc[ok, table.columns] = table.to_numpy()
    return features, var
