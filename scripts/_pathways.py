"""The ``tumour_intrinsic`` collection: PROGENy pathway footprints and MSigDB Hallmark sets.

Imported by ``scripts/build_signatures.py``; reads ``../shared/signatures/`` (see PATHWAYS.md there):

- PROGENy's human model (Schubert et al. 2018; Apache-2.0): per pathway the ``top`` genes with the
  smallest p-value (PROGENy's ``getModel``: ``top_n(top, wt = -p.value)``; no ties at 100), as signed
  weights, listed by ascending p-value so a smaller top-N is the first N genes;
- MSigDB Hallmarks v2024.1 (CC BY 4.0) for the review's pathways PROGENy lacks: MYC, KRAS (up minus
  down), PI3K/AKT/mTOR and IL-6/JAK/STAT3.

Each file carries ``compartment: malignant``, ``category: pathway`` and ``pathway`` (the review's
pathway it stands for, and the resource's own name).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PROGENY_TOP = 100
PROGENY_DOI = "10.1038/s41467-017-02391-6"
PROGENY_CITATION = (
    "Schubert M, Klinger B, Klunemann M, Sieber A, Uhlitz F, Sauer S, Garnett MJ, Bluthgen N, "
    "Saez-Rodriguez J. Perturbation-response genes reveal signaling footprints in cancer gene expression. "
    "Nat Commun 2018;9:20. doi:10.1038/s41467-017-02391-6; PMID 29295995"
)
HALLMARK_DOI = "10.1016/j.cels.2015.12.004"
HALLMARK_CITATION = (
    "Liberzon A, Birger C, Thorvaldsdottir H, Ghandi M, Mesirov JP, Tamayo P. The Molecular Signatures "
    "Database (MSigDB) hallmark gene set collection. Cell Syst 2015;1:417-425. doi:10.1016/j.cels.2015.12.004; "
    "PMID 26771021"
)
HALLMARK_LICENCE = (
    "MSigDB v2024.1.Hs Hallmark collection, (c) 2004-2023 Broad Institute, MIT and Regents of the University "
    "of California, under CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/); gene list unchanged "
    "except for outdated symbols replaced (symbol_updates)."
)
PROGENY_LICENCE = (
    "PROGENy model (R package progeny 1.20.0, data model_human_full), Apache License 2.0: see "
    "LICENSE.progeny.txt shipped beside this file. Authors: Michael Schubert, Alberto Valdeolivas, "
    "Christian H. Holland, Igor Bulanov, Aurelien Dugourd."
)

# PROGENy pathway -> (file name, title, the review's pathway, what a high score means)
PROGENY = {
    "Androgen": ("androgen", "Androgen receptor signalling", "(not in the review: hormone signalling)"),
    "EGFR": ("egfr", "EGFR signalling", "EGFR"),
    "Estrogen": ("estrogen", "Oestrogen receptor signalling", "(not in the review: hormone signalling)"),
    "Hypoxia": ("hypoxia", "Hypoxia", "hypoxia"),
    "JAK-STAT": ("jak_stat", "JAK-STAT signalling, interferon-like", "STAT3 (JAK-STAT; see notes)"),
    "MAPK": ("mapk", "MAPK signalling", "RAS/RAF/MAPK"),
    "NFkB": ("nfkb", "NF-kB signalling", "NF-kB"),
    "p53": ("p53", "p53 activity", "p53"),
    "PI3K": ("pi3k", "PI3K signalling", "PI3K/PTEN/AKT/mTOR"),
    "TGFb": ("tgfb", "TGF-beta signalling", "TGF-beta"),
    "TNFa": ("tnfa", "TNF-alpha signalling", "NF-kB (TNF-alpha)"),
    "Trail": ("trail", "TRAIL (apoptosis) signalling", "(not in the review: apoptosis)"),
    "VEGF": ("vegf", "VEGF signalling", "VEGF"),
    "WNT": ("wnt", "WNT signalling", "WNT/beta-catenin"),
}
PROGENY_NOTES = {
    "JAK-STAT": "PROGENy's JAK-STAT footprint is mostly interferon-driven (62 of its top 100 genes are shared "
    "with IFN-gamma sets, 5 with HALLMARK_IL6_JAK_STAT3_SIGNALING): use hallmark_il6_jak_stat3 for STAT3.",
    "WNT": "Shares no gene with HALLMARK_WNT_BETA_CATENIN_SIGNALING or wnt_target_mariathasan2018: a footprint "
    "of pathway activity, not a member list.",
    "PI3K": "92 of the top 100 weights are negative: genes PI3K activity lowers. Score it as weights, never as an "
    "unsigned set.",
}
# Hallmark set(s) -> (file name, title, the review's pathway); a second set is scored as down genes
HALLMARKS = {
    ("HALLMARK_MYC_TARGETS_V1",): ("hallmark_myc_targets_v1", "MYC targets (Hallmark V1)", "KRAS/MYC (MYC)"),
    ("HALLMARK_KRAS_SIGNALING_UP", "HALLMARK_KRAS_SIGNALING_DN"): (
        "hallmark_kras_signaling",
        "KRAS signalling, up minus down genes (Hallmark)",
        "KRAS/MYC (KRAS); RAS/RAF/MAPK",
    ),
    ("HALLMARK_PI3K_AKT_MTOR_SIGNALING",): (
        "hallmark_pi3k_akt_mtor",
        "PI3K/AKT/mTOR signalling (Hallmark)",
        "PI3K/PTEN/AKT/mTOR",
    ),
    ("HALLMARK_IL6_JAK_STAT3_SIGNALING",): ("hallmark_il6_jak_stat3", "IL-6/JAK/STAT3 signalling (Hallmark)", "STAT3"),
}
COLLECTION = "tumour_intrinsic"


def _base(title: str, review: str, resource: str, high_means: str) -> dict:
    return {
        "title": title,
        "category": "pathway",
        "organism": "human",
        "compartment": "malignant",
        "high_means": high_means,
        "pathway": {"review": review, "resource": resource},
    }


def progeny_entries(shared: Path, update) -> dict[str, dict]:
    """One weighted signature per PROGENy pathway: its top genes by p-value, with their weights."""
    model = pd.read_csv(shared / "progeny_human.csv.gz")
    out = {}
    for pathway, (short, title, review) in PROGENY.items():
        rows = model[model["pathway"] == pathway].sort_values(["p_value", "gene"], kind="stable").head(PROGENY_TOP)
        genes, updates, unknown = update(rows["gene"].tolist())
        if len(genes) != len(rows):
            raise SystemExit(
                f"PROGENy {pathway}: an updated symbol collides with another gene of the top {PROGENY_TOP}"
            )
        weights = {g: round(float(w), 10) for g, w in zip(genes, rows["weight"])}  # by ascending p-value
        entry = _base(
            f"{title} (PROGENy footprint, top {PROGENY_TOP})",
            review,
            f"PROGENy {pathway}",
            f"The {title} footprint is high: genes that respond to the pathway's activation move as they do when "
            "it is activated (weights: the model's z-scores).",
        )
        entry.update(
            {
                "genes_up": [g for g in genes if weights[g] > 0],
                "genes_down": [g for g in genes if weights[g] < 0],
                "weights": weights,
                "source": {
                    "citation": PROGENY_CITATION,
                    "doi": PROGENY_DOI,
                    "via": "R package progeny 1.20.0 (Bioconductor 3.16), data model_human_full",
                    "checked_against": "the source authors' package: its test input and expected scores "
                    "(inst/extdata, top = 10) are reproduced to 1e-6 (tests/test_pathways.py)",
                },
                "exact": True,  # the model's genes and weights; renames and LOC ids do not change them
                "exact_note": "The model's top genes and weights"
                + ("; outdated symbols renamed (symbol_updates)." if updates else ".")
                + (f" Not HGNC symbols (LOC ids), kept as published: {', '.join(unknown)}." if unknown else ""),
                "method_in_source": f"weighted sum of the top {PROGENY_TOP} genes (progeny(), top = {PROGENY_TOP}), "
                "scaled across samples (scale = TRUE); here: wmean, then z-score each pathway across samples "
                "(equal to PROGENy's scores)",
                "collections": [COLLECTION],
                "notes": " ".join(
                    [
                        "Weights are listed by ascending p-value: the first N genes are PROGENy's top N.",
                        PROGENY_NOTES.get(pathway, ""),
                        PROGENY_LICENCE,
                    ]
                ).replace("  ", " "),
            }
        )
        if updates:
            entry["symbol_updates"] = updates
        out[f"progeny_{short}"] = entry
    return out


def _gmt(path: Path) -> dict[str, list[str]]:
    sets = {}
    for line in path.read_text().splitlines():
        name, _url, *genes = line.split("\t")
        sets[name] = genes
    return sets


def hallmark_entries(shared: Path, update) -> dict[str, dict]:
    """The Hallmark sets for the review's pathways PROGENy lacks (KRAS: up genes minus down genes)."""
    gmt = _gmt(shared / "hallmarks_human.gmt")
    out = {}
    for names, (file_name, title, review) in HALLMARKS.items():
        up, up_updates, up_unknown = update(gmt[names[0]])
        down, dn_updates, dn_unknown = update(gmt[names[1]]) if len(names) > 1 else ([], {}, [])
        both = set(up) & set(down)
        up, down = [g for g in up if g not in both], [g for g in down if g not in both]
        updates = {**up_updates, **dn_updates}
        entry = _base(title, review, " - ".join(names), f"{title}: the set's genes are high in the malignant cells.")
        entry["genes_up"] = up
        if down:
            entry["genes_down"] = down
        entry.update(
            {
                "source": {
                    "citation": HALLMARK_CITATION,
                    "doi": HALLMARK_DOI,
                    "via": "MSigDB v2024.1.Hs h.all.v2024.1.Hs.symbols.gmt (byte-identical copy in CRAN massiveGST 1.2.4)",
                    "checked_against": "the source authors' file (the Broad's GMT, byte-identical: MD5 in "
                    "massiveGST's manifest, SHA-256 of an independent copy)",
                },
                "exact": not both and not up_unknown and not dn_unknown,
                "exact_note": "The Hallmark set"
                + ("s" if len(names) > 1 else "")
                + " as published"
                + ("; outdated symbols renamed (symbol_updates)" if updates else "")
                + (f"; {len(both)} genes in both the up and the down set left out" if both else "")
                + (
                    f"; not current HGNC symbols, kept: {', '.join(up_unknown + dn_unknown)}"
                    if up_unknown or dn_unknown
                    else ""
                )
                + ".",
                "method_in_source": "GSEA / ssGSEA gene set (unweighted)",
                "collections": [COLLECTION],
                "notes": HALLMARK_LICENCE,
            }
        )
        if updates:
            entry["symbol_updates"] = updates
        out[file_name] = entry
    return out
