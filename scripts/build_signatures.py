"""Build ``signatures/*.yaml`` from the researched lists in ``../shared/signatures/reference.json``.

Run by a developer when the reference or the curation below changes; the YAML files it writes are
committed and shipped in the wheel, so nothing here runs for users. What this script adds to the
reference, and where it disagrees with it, is written into each file (``notes``, ``symbol_updates``,
``exact_note``) and summarised in ``signatures/README.md``.

Usage::

    python scripts/build_signatures.py [--reference ../shared/signatures/reference.json]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "signatures"

# Cristescu et al., Science 2018 (doi:10.1126/science.aar3593) per-gene weights of the 18-gene
# T-cell-inflamed GEP. The reference left them null; checked against two independent public
# implementations (the `easier` R package's compute.Tcell_inflamed and a Python port), which agree.
GEP_WEIGHTS = {
    "CCL5": 0.008346,
    "CD27": 0.072293,
    "CD274": 0.042853,
    "CD276": -0.0239,
    "CD8A": 0.031021,
    "CMKLR1": 0.151253,
    "CXCL9": 0.074135,
    "CXCR6": 0.004313,
    "HLA-DQA1": 0.020091,
    "HLA-DRB1": 0.058806,
    "HLA-E": 0.07175,
    "IDO1": 0.060679,
    "LAG3": 0.123895,
    "NKG7": 0.075524,
    "PDCD1LG2": 0.003734,
    "PSMB10": 0.032999,
    "STAT1": 0.250229,
    "TIGIT": 0.084767,
}

# The same gene list appears under two names in the reference: ship it once, keep both names.
DUPLICATES = {
    "ifn_module3_thorsson2018": "thorsson2018_Module3_IFN_score",
    "mhc1_bagaev2021": "bagaev2021_MHCI",
    "tam_bagaev2021": "bagaev2021_Macrophages",
    "treg_bagaev2021": "bagaev2021_Treg",
    "mdsc_bagaev2021": "bagaev2021_MDSC",
    "mdsc_traffic_bagaev2021": "bagaev2021_MDSC_traffic",
    "neutrophil_bagaev2021": "bagaev2021_Neutrophil_signature",
    "granulocyte_traffic_bagaev2021": "bagaev2021_Granulocyte_traffic",
    "checkpoint_bagaev2021": "bagaev2021_Checkpoint_inhibition",
    "tgfb_response_thorsson2018": "thorsson2018_TGFB_score_21050467",
    "caf_bagaev2021": "bagaev2021_CAF",
    "t_cell_traffic_bagaev2021": "bagaev2021_T_cell_traffic",
}
# Reference-only entries without genes (MSigDB hallmarks are not redistributed; the exact Zhang 2024
# list was not obtainable), and stand-ins renamed so users do not type "standin".
SKIP = {
    "rloop_zhang2024_exact",
    "rloop_rloopbase_human_regulators_1185",
    "hallmark_interferon_alpha_response",
    "hallmark_interferon_gamma_response",
    "hallmark_glycolysis",
    "hallmark_il6_jak_stat3",
}
RENAME = {
    "rloop_core_regulators_standin": "rloop_regulators_core",
    "cgas_sting_core_standin": "cgas_sting_core",
    "adenosine_core_standin": "adenosine_core",
    "stat3_axis_core_standin": "stat3_axis_core",
    # not TIDE's dysfunction signature (see SOURCE_NOTES): named for what it is
    "t_cell_dysfunction_tide_iobr50": "t_cell_exhaustion_iobr50",
}

IE = "immune_escape"
# name -> (title, category, compartment, collections, what a HIGH score means)
CURATION: dict[str, tuple[str, str, str, list[str], str]] = {
    "rloop_regulators_core": (
        "R-loop resolving regulators (core, approximation of Zhang 2024)",
        "escape_mechanism",
        "malignant",
        [IE],
        "High expression of R-loop resolving/suppressing factors. Zhang 2024 links a LOW R-loop score in malignant cells "
        "to immune escape and T-cell exhaustion; see notes for the direction caveat.",
    ),
    "ifn_type1_rooney2015": (
        "Type I interferon response (Rooney 2015)",
        "escape_mechanism",
        "malignant",
        [IE],
        "Active type I IFN signalling; LOW in malignant cells suggests silenced IFN/cGAS-STING sensing.",
    ),
    "ifng_ayers2017": (
        "IFN-gamma 6-gene signature (Ayers 2017)",
        "immune_context",
        "any",
        [IE],
        "IFN-gamma-driven inflammation, associated with response to PD-1 blockade.",
    ),
    "cgas_sting_core": (
        "cGAS-STING pathway components",
        "escape_mechanism",
        "malignant",
        [IE],
        "Expression of the cytosolic DNA-sensing machinery; LOW in malignant cells suggests silenced STING.",
    ),
    "apm_mariathasan2018": (
        "Antigen processing machinery (Mariathasan 2018)",
        "escape_mechanism",
        "malignant",
        [IE],
        "Intact MHC-I antigen presentation; LOW in malignant cells marks antigen-presentation loss.",
    ),
    "mhc1_rooney2015": (
        "MHC class I (Rooney 2015)",
        "escape_mechanism",
        "malignant",
        [],
        "MHC-I expression; LOW in malignant cells marks antigen-presentation loss.",
    ),
    "ribosomal_p_stalk_curated": (
        "Ribosomal P-stalk",
        "escape_mechanism",
        "malignant",
        [IE],
        "Ribosomal P-stalk expression, discussed as a regulator of HLA-I presentation.",
    ),
    "ayers2017_expanded_immune_18": (
        "Expanded immune signature, 18 genes (Ayers 2017)",
        "immune_context",
        "any",
        [],
        "T-cell and IFN-gamma inflammation.",
    ),
    "tis_gep_ayers2017": (
        "T-cell-inflamed GEP, 18 genes with weights (Ayers 2017 / Cristescu 2018)",
        "immune_context",
        "any",
        [IE],
        "A T-cell-inflamed microenvironment, predictive of response to PD-1 blockade.",
    ),
    "cytolytic_activity_rooney2015": (
        "Cytolytic activity, CYT (Rooney 2015)",
        "immune_context",
        "any",
        [IE],
        "Cytotoxic T/NK activity (GZMA, PRF1).",
    ),
    "cd8_t_effector_mariathasan2018": (
        "CD8 T-effector (Mariathasan 2018)",
        "immune_context",
        "any",
        [IE],
        "CD8 T-cell effector infiltration.",
    ),
    "wnt_target_mariathasan2018": (
        "WNT/beta-catenin targets (Mariathasan 2018)",
        "escape_mechanism",
        "malignant",
        [IE],
        "Active WNT/beta-catenin signalling, associated with T-cell exclusion.",
    ),
    "tam_trem2_xue2022": (
        "TREM2+ tumour-associated macrophages (Xue 2022)",
        "escape_mechanism",
        "myeloid",
        [IE],
        "Immunosuppressive TREM2+ TAM programme.",
    ),
    "tam_spp1_xue2022": (
        "SPP1+ tumour-associated macrophages (Xue 2022)",
        "escape_mechanism",
        "myeloid",
        [IE],
        "Immunosuppressive, angiogenic SPP1+ TAM programme.",
    ),
    "macrophages_danaher2017": ("Macrophages (Danaher 2017)", "cell_type", "myeloid", [], "Macrophage abundance."),
    "tam_m2_tide_top50": (
        "M2 TAM exclusion signature, top 50 (TIDE)",
        "escape_mechanism",
        "myeloid",
        [],
        "M2-like TAM programme used by TIDE for T-cell exclusion.",
    ),
    "tex_cd8_chu2023": (
        "CD8 terminal exhaustion (Chu 2023)",
        "escape_mechanism",
        "T",
        [IE],
        "Terminally exhausted CD8 T-cell state.",
    ),
    "tex_danaher2017": (
        "Exhausted CD8 T cells (Danaher 2017)",
        "cell_state",
        "T",
        [],
        "Exhausted CD8 T-cell abundance.",
    ),
    "tex_inhibitory_receptors_curated": (
        "Canonical inhibitory receptors of exhausted T cells",
        "escape_mechanism",
        "T",
        [IE],
        "Inhibitory receptor expression on T cells (PD-1, TIM-3, LAG-3, TIGIT, CTLA-4, TOX).",
    ),
    "t_cell_exhaustion_iobr50": (
        "T-cell exhaustion, 50 genes (IOBR 'T_cell_exhaustion_Peng_et_al')",
        "cell_state",
        "T",
        [],
        "Expression of the 50 genes IOBR lists as T-cell exhaustion (origin untraced); kept for comparison only.",
    ),
    "treg_chu2023": ("Regulatory T cells (Chu 2023)", "cell_state", "T", [], "CD4 Treg programme."),
    "treg_danaher2017": (
        "Regulatory T cells, FOXP3 (Danaher 2017)",
        "cell_type",
        "T",
        [],
        "FOXP3 expression (Treg abundance).",
    ),
    "mdsc_wang2016": (
        "MDSC-related genes (Wang 2016)",
        "escape_mechanism",
        "myeloid",
        [],
        "Myeloid-derived suppressor cell programme.",
    ),
    "mdsc_tide_top50": (
        "MDSC exclusion signature, top 50 (TIDE)",
        "escape_mechanism",
        "any",
        [],
        "Bulk expression correlated with MDSC abundance in TIDE (mostly tumour-intrinsic genes).",
    ),
    "neutrophils_danaher2017": ("Neutrophils (Danaher 2017)", "cell_type", "myeloid", [], "Neutrophil abundance."),
    "tan_spp1_xue2022": (
        "SPP1+ tumour-associated neutrophils (Xue 2022)",
        "escape_mechanism",
        "myeloid",
        [IE],
        "Pro-tumour SPP1+ neutrophil programme.",
    ),
    "immune_checkpoints_curated": (
        "Immune checkpoint ligands and receptors",
        "escape_mechanism",
        "any",
        [IE],
        "High checkpoint expression (PD-L1/PD-L2, CD47, galectin-9, PVR, B7-H4, CD73/CD39, PD-1, CTLA-4, TIGIT, LAG-3, "
        "TIM-3).",
    ),
    "immune_checkpoint_mariathasan2018": (
        "Immune checkpoint (Mariathasan 2018)",
        "escape_mechanism",
        "any",
        [],
        "High checkpoint expression.",
    ),
    "kynurenine_rosario2018": (
        "Kynurenine pathway (Rosario 2018)",
        "escape_mechanism",
        "any",
        [IE],
        "Tryptophan catabolism via IDO/TDO (immunosuppressive metabolism).",
    ),
    "adenosine_core": (
        "Adenosine axis (CD39/CD73/A2A)",
        "escape_mechanism",
        "any",
        [IE],
        "Adenosine-generating and -sensing machinery (immunosuppressive metabolism).",
    ),
    "tgfb_pan_f_tbrs_mariathasan2018": (
        "Pan-fibroblast TGF-beta response, pan-F-TBRS (Mariathasan 2018)",
        "escape_mechanism",
        "fibroblast",
        [IE],
        "TGF-beta response in fibroblasts, associated with T-cell exclusion and non-response to PD-L1 blockade.",
    ),
    "caf_tide_top50": (
        "CAF exclusion signature, top 50 (TIDE)",
        "escape_mechanism",
        "fibroblast",
        [],
        "CAF programme used by TIDE for T-cell exclusion.",
    ),
    "caf_ecm_mycaf_kieffer2020": (
        "ECM-myCAF (Kieffer 2020)",
        "escape_mechanism",
        "fibroblast",
        [IE],
        "ECM-myCAF programme linked to immunotherapy resistance.",
    ),
    "caf_tgfb_mycaf_kieffer2020": (
        "TGF-beta-myCAF (Kieffer 2020)",
        "escape_mechanism",
        "fibroblast",
        [],
        "TGF-beta-myCAF programme.",
    ),
    "glycolysis_rosario2018": (
        "Glycolysis enzymes (Rosario 2018)",
        "escape_mechanism",
        "malignant",
        [IE],
        "High glycolytic enzyme expression (lactate-producing, immunosuppressive metabolism).",
    ),
    "lactate_export_curated": (
        "Lactate production and export",
        "escape_mechanism",
        "malignant",
        [],
        "LDHA and MCT1/MCT4 expression.",
    ),
    "tcell_recruiting_chemokines_curated": (
        "T-cell recruiting chemokines",
        "immune_context",
        "any",
        [IE],
        "Chemokines that recruit effector T cells (CCL4, CCL5, CXCL9, CXCL10).",
    ),
    "stat3_axis_core": (
        "IL-6/JAK/STAT3 axis",
        "escape_mechanism",
        "any",
        [IE],
        "IL-6/JAK/STAT3 signalling components.",
    ),
    "rloop_rloopbase_tier1": (
        "R-loopBase tier-1 human R-loop regulators",
        "cell_state",
        "malignant",
        [],
        "Expression of the 53 tier-1 R-loopBase regulators (broader R-loop approximation).",
    ),
    "rloop_rloopbase_human_regulators": (
        "R-loopBase human R-loop regulators (all 1,185)",
        "cell_state",
        "malignant",
        [],
        "Expression of all R-loopBase human regulators; the gene universe Zhang 2024 started from.",
    ),
}

BAGAEV_CATEGORY = {
    "MHCI": ("escape_mechanism", "malignant", [IE]),
    "MHCII": ("immune_context", "any", []),
    "Coactivation_molecules": ("immune_context", "any", []),
    "Effector_cells": ("immune_context", "any", []),
    "T_cell_traffic": ("immune_context", "any", []),
    "NK_cells": ("cell_type", "NK", []),
    "T_cells": ("cell_type", "T", []),
    "B_cells": ("cell_type", "B", []),
    "M1_signatures": ("cell_state", "myeloid", []),
    "Th1_signature": ("cell_state", "T", []),
    "Antitumor_cytokines": ("immune_context", "any", []),
    "Checkpoint_inhibition": ("escape_mechanism", "any", []),
    "Treg": ("escape_mechanism", "T", [IE]),
    "T_reg_traffic": ("escape_mechanism", "any", []),
    "Neutrophil_signature": ("cell_type", "myeloid", []),
    "Granulocyte_traffic": ("immune_context", "any", []),
    "MDSC": ("escape_mechanism", "myeloid", [IE]),
    "MDSC_traffic": ("escape_mechanism", "any", []),
    "Macrophages": ("escape_mechanism", "myeloid", []),
    "Macrophage_DC_traffic": ("immune_context", "any", []),
    "Th2_signature": ("cell_state", "T", []),
    "Protumor_cytokines": ("escape_mechanism", "any", []),
    "CAF": ("cell_type", "fibroblast", [IE]),
    "Matrix": ("escape_mechanism", "fibroblast", []),
    "Matrix_remodeling": ("escape_mechanism", "fibroblast", []),
    "Angiogenesis": ("cell_state", "endothelial", []),
    "Endothelium": ("cell_type", "endothelial", []),
    "Proliferation_rate": ("cell_state", "malignant", []),
    "EMT_signature": ("cell_state", "malignant", []),
}
THORSSON_TITLES = {
    "LIexpression_score": ("Lymphocyte infiltration", "immune_context", "any"),
    "CSF1_response": ("Macrophage / CSF1 response", "immune_context", "myeloid"),
    "Module3_IFN_score": ("IFN-gamma response (Wolf 2014 Module 3)", "immune_context", "any"),
    "TGFB_score_21050467": ("TGF-beta response", "escape_mechanism", "any"),
    "CHANG_CORE_SERUM_RESPONSE_UP": ("Wound healing (Chang core serum response)", "cell_state", "any"),
}
# Curated stand-ins cite no paper in the reference ("curated per brief"); the schema requires a DOI or
# PMID, so each gets the primary paper or review that establishes its components.
SOURCE_OVERRIDES = {
    "immune_checkpoints_curated": "Pardoll DM. The blockade of immune checkpoints in cancer immunotherapy. Nat Rev Cancer 2012;12:252-264. doi:10.1038/nrc3239",
    "tex_inhibitory_receptors_curated": "Wherry EJ, Kurachi M. Molecular and cellular insights into T cell exhaustion. Nat Rev Immunol 2015;15:486-499. doi:10.1038/nri3862",
    "tcell_recruiting_chemokines_curated": "Harlin H, Meng Y, Peterson AC, et al., Gajewski TF. Chemokine expression in melanoma metastases associated with CD8+ T-cell recruitment. Cancer Res 2009;69:3077-3085. doi:10.1158/0008-5472.CAN-08-2281",
    "lactate_export_curated": "Brand A, Singer K, Koehl GE, et al. LDHA-associated lactic acid production blunts tumor immunosurveillance by T and NK cells. Cell Metab 2016;24:657-671. doi:10.1016/j.cmet.2016.08.011",
    "stat3_axis_core": "Johnson DE, O'Keefe RA, Grandis JR. Targeting the IL-6/JAK/STAT3 signalling axis in cancer. Nat Rev Clin Oncol 2018;15:234-248. doi:10.1038/nrclinonc.2018.8",
    "adenosine_core": "Allard B, Allard D, Buisseret L, Stagg J. The adenosine pathway in immuno-oncology. Nat Rev Clin Oncol 2020;17:611-629. doi:10.1038/s41571-020-0382-2",
    "ribosomal_p_stalk_curated": "Wei J, Kishton RJ, Angel M, et al., Yewdell JW. Ribosomal proteins regulate MHC class I peptide generation for immunosurveillance. Mol Cell 2019;73:1162-1173. doi:10.1016/j.molcel.2018.12.020",
    "t_cell_exhaustion_iobr50": "Zeng D, Ye Z, Shen R, et al. IOBR: multi-omics immuno-oncology biological research to decode tumor microenvironment and signatures. Front Immunol 2021;12:687975. doi:10.3389/fimmu.2021.687975",
}
SOURCE_NOTES = {
    "immune_checkpoints_curated": "The reference cited only 'two lung-cancer immune-escape reviews'; we cite Pardoll 2012 for the checkpoint axis.",
    "tex_inhibitory_receptors_curated": "The reference gave no citation; Wherry & Kurachi 2015 reviews these receptors and TOX's role.",
    "tcell_recruiting_chemokines_curated": "Harlin 2009 found six chemokines (CCL2, CCL3, CCL4, CCL5, CXCL9, CXCL10) in T-cell-infiltrated melanoma; this set keeps four of them as in the reference. The DOI was not checked against the journal page here.",
    "lactate_export_curated": "The reference gave no citation; Brand 2016 establishes LDHA-driven lactate as T/NK suppressive.",
    "stat3_axis_core": "The reference gave no citation; components from Johnson 2018.",
    "adenosine_core": "The Sidders 2020 adenosine signature named in the reference was not retrieved; components from Allard 2020.",
    "ribosomal_p_stalk_curated": "We disagree with treating this as an established signature: no published P-stalk expression signature was found. Wei 2019 shows ribosomal proteins tune MHC-I peptide supply; the P-stalk link comes from the reviews the reference mentions. The DOI was not checked against the journal page here.",
    "t_cell_exhaustion_iobr50": "IOBR's 'T_cell_exhaustion_Peng_et_al' (50 genes); heat-shock, NR4A and RGS genes rather than canonical exhaustion markers, so keep it for comparison only. We disagree with the reference file here: it cites this list as TIDE's T-cell dysfunction signature (Jiang 2018), but an independent audit found it shares none of the 50 genes with the largest weights of TIDE's dysfunction model (TIDEpy). It is IOBR's 'T_cell_exhaustion_Peng_et_al', whose original source IOBR does not cite, so IOBR is the source given. Renamed from t_cell_dysfunction_tide_iobr50 (still accepted as an alias).",
}

EXTRA_NOTES = {
    "rloop_regulators_core": (
        "APPROXIMATION. Zhang et al. 2024 (Mol Cancer 23:11) built their R-loop score from 92 of the 1,185 "
        "R-loopBase regulators (WGCNA on LUAD malignant cells); the 92 genes, weights, algorithm and cut-off "
        "were not obtainable. This is the curated core of experimentally supported R-loop resolvers, all in "
        "R-loopBase. Direction: HIGH = high resolver expression. Many of these genes (FANCI, FANCD2, BRCA1/2, "
        "RNASEH2A, TOP1) also track proliferation, while Zhang report LOW scores in proliferative malignant "
        "cells, so this list can run opposite to the published score; validate the sign on a reference before "
        "using 'R-loop low' calls, and load the exact list with ie.signatures.load() when you have it."
    ),
    "tis_gep_ayers2017": (
        "Final 18-gene T-cell-inflamed GEP (TIS) with the per-gene weights of Cristescu 2018 (CD276 negative). "
        "We disagree with the reference file here: it left the weights null and marked the list unverified. "
        "Genes and weights were checked against the easier R package (compute.Tcell_inflamed) and a Python "
        "port, which agree with each other, not against the paper's supplement. The source score is a weighted "
        "sum of housekeeping-normalised log10 NanoString counts; use method='wmean' for the closest analogue."
    ),
    "ifn_type1_rooney2015": (
        "Kept as published. DDX4 (a germ-cell helicase) looks like a transcription slip for DDX58 (RIGI) in the "
        "source table; we keep the source list and flag it here."
    ),
    "rloop_rloopbase_tier1": "Tier 1 of R-loopBase v2021-03-31 as redistributed in a public repository; tier meaning undocumented there.",
}


# The reference's notes that ours replace (they describe a state of the file that is no longer true).
NOTES_REPLACED = {"tis_gep_ayers2017", "t_cell_exhaustion_iobr50"}

# What each list was compared with. An independent audit (2026-11) compared the library with the source
# authors' code (IMvigor210CoreBiologies, BostonGene/MFP, TIDEpy) and with the intermediaries IOBR and
# easier: every list equal up to symbol renames. An intermediary is not the paper.
AUTHORS_CODE = {
    "mariathasan2018": "IMvigor210CoreBiologies (the source authors' R package)",
    "bagaev2021_": "BostonGene/MFP signatures/gene_signatures.gmt (the source authors' repository)",
    "tide_top50": "TIDEpy (the source authors' package), top 50 genes by weight",
}
CHECKED_EQUAL = "genes equal up to symbol renames"


def _checked_against(name: str, via: str | None) -> str:
    for key, where in AUTHORS_CODE.items():
        if key in name:
            return f"{where}: {CHECKED_EQUAL}"
    if name == "t_cell_exhaustion_iobr50":
        return f"IOBR signature_collection ('T_cell_exhaustion_Peng_et_al'), the source given: {CHECKED_EQUAL}"
    if name.startswith("rloop_rloopbase_"):
        return "R-loopBase v2021-03-31 as redistributed in a public repository, not R-loopBase itself"
    if name == "tis_gep_ayers2017":
        return "easier R package (compute.Tcell_inflamed), an intermediary, and a Python port: genes and weights equal"
    if via and via.startswith("IOBR"):
        return f"IOBR signature_collection, an intermediary, not the paper: {CHECKED_EQUAL}"
    if via:
        return f"{via.split(' (')[0]}, an intermediary, not the paper"
    return "not compared with another copy: curated here from the cited source (see notes)"


def _doi(text: str) -> str | None:
    m = re.search(r"doi[:\s]*(10\.\d{4,9}/[^\s;,)]+)", text, flags=re.I)
    return m.group(1).rstrip(".") if m else None


def _pmid(text: str) -> str | None:
    m = re.search(r"PMID[:\s]*(\d{6,9})", text)
    return m.group(1) if m else None


def _split_source(text: str) -> tuple[str, str | None]:
    citation, _, via = text.partition("; via ")
    return citation.strip(), (via.strip() or None)


class SymbolUpdater:
    """Map outdated symbols to current HGNC symbols when the mapping is unique."""

    def __init__(self) -> None:
        table = pd.read_csv(ROOT / "src/immunescape/data/human_genes.tsv.gz", sep="\t", keep_default_na=False)
        self.current = set(table["symbol"])
        self.previous: dict[str, set[str]] = {}
        for sym, prev in zip(table["symbol"], table["previous"]):
            for p in filter(None, prev.split(";")):
                self.previous.setdefault(p, set()).add(sym)

    def __call__(self, genes: list[str]) -> tuple[list[str], dict[str, str], list[str]]:
        out, updates, unknown = [], {}, []
        for g in genes:
            if g in self.current:
                out.append(g)
            elif len(self.previous.get(g, ())) == 1:
                new = next(iter(self.previous[g]))
                updates[g] = new
                out.append(new)
            else:
                unknown.append(g)
                out.append(g)
        return list(dict.fromkeys(out)), updates, unknown


def _entry(name: str, ref: dict, update: SymbolUpdater) -> dict:
    if name.startswith("bagaev2021_"):
        short = name.removeprefix("bagaev2021_")
        category, compartment, colls = BAGAEV_CATEGORY[short]
        label = re.search(r"'([^']+)'", ref["notes"])
        title = f"{label.group(1) if label else short} (Bagaev 2021)"
        collections, high = ["bagaev2021", *colls], f"High '{label.group(1) if label else short}' activity/abundance."
    elif name.startswith("thorsson2018_"):
        short = name.removeprefix("thorsson2018_")
        label, category, compartment = THORSSON_TITLES[short]
        title, collections, high = f"{label} (Thorsson 2018)", ["thorsson2018"], f"High {label.lower()}."
    else:
        title, category, compartment, collections, high = CURATION[name]
    genes_up, up_updates, up_unknown = update(ref["genes_up"])
    genes_down, dn_updates, dn_unknown = update(ref.get("genes_down") or [])
    weights = ref.get("weights")
    if name == "tis_gep_ayers2017":
        weights = dict(GEP_WEIGHTS)
    source_text = SOURCE_OVERRIDES.get(name, ref["source"])
    citation, via = _split_source(source_text)
    ref_notes = "" if name in NOTES_REPLACED else ref.get("notes", "").strip()
    notes = " ".join(filter(None, [ref_notes, SOURCE_NOTES.get(name, ""), EXTRA_NOTES.get(name, "")]))
    if up_unknown or dn_unknown:
        notes += f" Symbols not recognised as current or previous HGNC symbols: {', '.join(up_unknown + dn_unknown)}."
    exact = bool(ref.get("exact")) or name == "tis_gep_ayers2017"
    exact_note = (
        "Matches the cited source."
        if exact
        else "Approximation or stand-in; see notes for what differs from the source."
    )
    if name == "tis_gep_ayers2017":
        exact_note = "Genes and weights as published; the source normalises to housekeeping genes, which we do not."
    entry = {
        "name": name,
        "title": title,
        "category": category,
        "organism": "human",
        "compartment": compartment,
        "high_means": high,
        "genes_up": genes_up,
    }
    if genes_down:
        entry["genes_down"] = genes_down
    if weights:
        weights = {update([g])[0][0]: float(w) for g, w in weights.items()}
        entry["genes_up"] = [g for g in genes_up + genes_down if weights[g] > 0]
        negative = [g for g in genes_up + genes_down if weights[g] < 0]
        if negative:
            entry["genes_down"] = negative
        entry["weights"] = weights
    source = {
        "citation": citation,
        "doi": _doi(source_text),
        "pmid": _pmid(source_text),
        "via": via,
        "checked_against": _checked_against(name, via),
    }
    entry["source"] = {k: v for k, v in source.items() if v}
    entry["exact"] = exact
    entry["exact_note"] = exact_note
    entry["method_in_source"] = ref.get("method_in_source") or "not stated"
    entry["collections"] = collections
    aliases = [old for old, new in DUPLICATES.items() if new == name] + [
        old for old, new in RENAME.items() if new == name
    ]
    if aliases:
        entry["aliases"] = aliases
    if up_updates or dn_updates:
        entry["symbol_updates"] = {**up_updates, **dn_updates}
    if notes:
        entry["notes"] = notes
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=ROOT.parent / "shared/signatures/reference.json")
    parser.add_argument("--version", help="new library version (default: keep the one in signatures/VERSION)")
    parser.add_argument(
        "--stamp", action="store_true", help="only rewrite signatures/VERSION's checksum (after a hand edit)"
    )
    args = parser.parse_args()
    if args.stamp:
        stamp_version(args.version)
        write_citation()
        return
    ref = json.loads(args.reference.read_text())
    sigs = dict(ref["signatures"])
    rl = ref["rloop_lists"]
    for key, name in [
        ("rloopbase_human_regulators_tier1", "rloop_rloopbase_tier1"),
        ("rloopbase_human_regulators", "rloop_rloopbase_human_regulators"),
    ]:
        src = rl[key]
        sigs[name] = {
            "genes_up": src["genes"],
            "genes_down": [],
            "weights": None,
            "source": src["source"],
            "exact": key == "rloopbase_human_regulators",
            "method_in_source": "curation list (literature mining + multi-omics), not a scoring signature",
            "notes": src.get("notes", ""),
        }
    update = SymbolUpdater()
    entries = {RENAME.get(key, key): body for key, body in sigs.items() if key not in SKIP and key not in DUPLICATES}
    built = {name: _entry(name, body, update) for name, body in entries.items()}
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _pathways import hallmark_entries, progeny_entries  # the tumour_intrinsic collection

    shared = args.reference.parent
    for name, entry in {**progeny_entries(shared, update), **hallmark_entries(shared, update)}.items():
        built[name] = {"name": name, **entry}
    generated = write_generated(built)
    shutil.copyfile(shared / "LICENSE.progeny.txt", OUT / "LICENSE.progeny.txt")  # Apache-2.0: ship the text
    print(f"wrote {len(generated)} signature files to {OUT}")
    stamp_version(args.version)
    write_citation()


MANIFEST = "GENERATED.txt"  # the files this script wrote last time; every other file is hand-written and never touched


def write_generated(entries: dict[str, dict]) -> list[str]:
    """Write the generated signature files; remove only files this script generated before and no longer
    generates. A hand-written file (not in the manifest) is never deleted, and never overwritten."""
    manifest = OUT / MANIFEST
    before = set(manifest.read_text().split()) if manifest.exists() else set()
    names = [f"{name}.yaml" for name in entries]
    clash = [n for n in names if (OUT / n).exists() and n not in before]
    if clash and before:
        raise SystemExit(
            f"hand-written signature files would be overwritten: {', '.join(clash)}; rename them or the sources"
        )
    for name, entry in entries.items():
        with open(OUT / f"{name}.yaml", "w") as fh:
            yaml.safe_dump(entry, fh, sort_keys=False, allow_unicode=True, width=100)
    for stale in sorted(before - set(names)):
        (OUT / stale).unlink(missing_ok=True)
        print(f"removed {stale} (generated before, no longer in the reference)")
    manifest.write_text("".join(f"{n}\n" for n in sorted(names)))
    return names


def stamp_version(version: str | None) -> None:
    """Write signatures/VERSION: the library version and the SHA-256 of its files (a test compares them)."""
    from immunescape.signatures import library_checksum, read_version_file

    old = read_version_file(OUT) if (OUT / "VERSION").exists() else {}
    version = version or old.get("version")
    if not version:
        raise SystemExit("signatures/VERSION is missing: give --version")
    checksum = library_checksum(OUT)
    if old.get("sha256") not in (None, checksum) and version == old.get("version"):
        print(f"warning: the library changed but its version is still {version}; pass --version")
    (OUT / "VERSION").write_text(f"version: {version}\nsha256: {checksum}\n")
    print(f"signatures/VERSION: {version}, sha256 {checksum[:12]}")


# Sources whose citation text is a list of papers, not "Authors. Title. Journal": the first paper, whose DOI the file carries.
CITATION_OVERRIDES = {
    "10.1126/science.1232458": (
        "Sun L, Wu J, Du F, Chen X, Chen ZJ",
        "Cyclic GMP-AMP synthase is a cytosolic DNA sensor that activates the type I interferon pathway",
    ),
}


def write_citation() -> None:
    """CITATION.cff: the tool, and as references every source the signature library wraps (one per DOI)."""
    from immunescape import __version__
    from immunescape.signatures import library_version

    refs = {}
    for path in sorted(OUT.glob("*.yaml")):
        source = yaml.safe_load(path.read_text())["source"]
        doi = source.get("doi")
        if doi and doi not in refs:
            authors, _, rest = source["citation"].partition(". ")
            title = rest.partition(". ")[0] or source["citation"]
            authors, title = CITATION_OVERRIDES.get(doi, (authors, title))
            refs[doi] = {"type": "article", "authors": [{"name": authors.strip()}], "title": title.strip(), "doi": doi}
    cff = {
        "cff-version": "1.2.0",
        "message": "If you use immunescape, cite it and the papers of the signatures you score (listed under references).",
        "title": "immunescape: tumour immune-escape signatures for bulk and single-cell transcriptomes",
        "type": "software",
        "authors": [{"name": "immunescape developers"}],
        "version": __version__,
        "license": "BSD-3-Clause",
        "keywords": ["gene signatures", "single-cell", "immune escape", "scanpy", "anndata"],
        "notes": f"Signature library {library_version()}",
        "references": list(refs.values()),
    }
    header = "# Written by scripts/build_signatures.py from the signature library; do not edit by hand.\n"
    (ROOT / "CITATION.cff").write_text(header + yaml.safe_dump(cff, sort_keys=False, allow_unicode=True, width=100))
    print(f"CITATION.cff: {len(refs)} references")


if __name__ == "__main__":
    main()
