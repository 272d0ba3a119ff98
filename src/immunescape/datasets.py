"""Example data reachable offline: scanpy's bundled PBMCs and a simulated tumour cohort.

Examples
--------
>>> import immunescape as ie
>>> adata = ie.datasets.simulate_tumor(n_samples=4, cells_per_sample=100, seed=1)
>>> sorted(adata.obs["compartment"].unique())[:3]
['B', 'NK', 'T']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ._errors import InputError
from ._utils import check_number, check_random_state, check_share, check_whole
from .genes import gene_tables
from .signatures import get
from .tl import MECHANISMS as RULES

CONTEXTS = ("inflamed", "excluded", "desert")
MECHANISMS = tuple(RULES)  # the classifier's table is the one list of mechanisms

# cell type -> (compartment, marker genes raised in it)
CELL_TYPES = {
    "malignant": ("malignant", ["EPCAM", "KRT8", "KRT18", "KRT19", "MUC1", "CDH1", "SOX2", "NKX2-1"]),
    "CD8 T": (
        "T",
        [
            "PTPRC",
            "CD3D",
            "CD3E",
            "CD3G",
            "CD2",
            "CD8A",
            "CD8B",
            "GZMA",
            "GZMB",
            "GZMK",
            "PRF1",
            "NKG7",
            "CCL5",
            "IFNG",
            "CD247",
        ],
    ),
    "CD4 T": ("T", ["PTPRC", "CD3D", "CD3E", "CD3G", "CD2", "CD4", "IL7R", "CD28", "TRAT1"]),
    "Treg": ("T", ["PTPRC", "CD3D", "CD3E", "CD4", "FOXP3", "IL2RA", "CTLA4", "IKZF2", "IKZF4", "TNFRSF18", "CCR8"]),
    "NK": ("NK", ["PTPRC", "NKG7", "GNLY", "KLRF1", "NCR1", "KLRD1", "PRF1", "GZMB", "FGFBP2"]),
    "B": ("B", ["PTPRC", "CD19", "MS4A1", "CD79A", "CD79B", "PAX5", "BLK"]),
    "myeloid": (
        "myeloid",
        ["PTPRC", "CD68", "CD14", "LYZ", "CSF1R", "C1QA", "C1QB", "C1QC", "FCGR3A", "CD163", "MRC1", "APOE"],
    ),
    "fibroblast": (
        "fibroblast",
        ["COL1A1", "COL1A2", "COL3A1", "DCN", "LUM", "PDGFRB", "PDGFRA", "FAP", "COL6A3", "FBLN1"],
    ),
    "endothelial": ("endothelial", ["PECAM1", "VWF", "CDH5", "KDR", "CLDN5"]),
}
UBIQUITOUS_HIGH = ("B2M", "HLA-A", "HLA-B", "HLA-C", "HLA-E", "TAP1", "TAP2", "TAPBP", "NLRC5")
# context -> cell-type proportions
PROPORTIONS = {
    "inflamed": {
        "malignant": 0.35,
        "CD8 T": 0.18,
        "CD4 T": 0.10,
        "Treg": 0.03,
        "NK": 0.05,
        "B": 0.05,
        "myeloid": 0.12,
        "fibroblast": 0.08,
        "endothelial": 0.04,
    },
    "excluded": {
        "malignant": 0.45,
        "CD8 T": 0.045,
        "CD4 T": 0.03,
        "Treg": 0.008,
        "NK": 0.01,
        "B": 0.02,
        "myeloid": 0.12,
        "fibroblast": 0.27,
        "endothelial": 0.05,
    },
    "desert": {
        "malignant": 0.78,
        "CD8 T": 0.012,
        "CD4 T": 0.008,
        "Treg": 0.002,
        "NK": 0.005,
        "B": 0.01,
        "myeloid": 0.07,
        "fibroblast": 0.06,
        "endothelial": 0.04,
    },
}
# mechanism -> (cell types whose expression changes, fold change); the genes are those of the classifier's rule
_TARGETS = {
    "antigen_presentation_loss": (["malignant"], 0.15),
    "checkpoint_high": (
        ["malignant", "myeloid"],
        5.0,
    ),  # ligands on tumour and myeloid cells (PD-L1 TC/IC); receptors on T cells are exhaustion
    "suppressive_myeloid": (["myeloid"], 5.0),
    "t_cell_exhaustion": (["CD8 T"], 5.0),
    "ifn_sting_silenced": (["malignant"], 0.15),
    "rloop_low": (["malignant"], 0.2),
    "wnt_active": (["malignant"], 6.0),
    "tgfb_stromal_exclusion": (["fibroblast"], 5.0),
    "treg_high": (["Treg"], 1.0),  # acts through cell proportions (see below)
    "immunosuppressive_metabolism": (["malignant", "myeloid"], 4.0),
}
# mechanism -> (signatures whose genes change, cell types affected, fold change)
PLANTS = {m: (list(RULES[m].signatures), *_TARGETS[m]) for m in MECHANISMS}


def pbmc68k_reduced() -> AnnData:
    """scanpy's bundled 700 PBMCs x 765 genes (real data, log-normalised, ``.raw`` set).

    Examples
    --------
    >>> pbmc68k_reduced().shape
    (700, 765)
    """
    import scanpy as sc

    return sc.datasets.pbmc68k_reduced()


def simulate_tumor(
    n_samples: int = 12,
    cells_per_sample: int = 400,
    *,
    n_background_genes: int = 1500,
    mechanism_rate: float = 0.35,
    pathways: Mapping[str, str] | None = None,
    pathway_fold: float = 3.0,
    seed: int = 0,
) -> AnnData:
    """Simulate a single-cell tumour cohort with planted immune-escape phenotypes.

    Each sample is given an immune context (cycled through inflamed, excluded, desert) that sets
    its cell-type proportions (T-cell-rich; fibroblast-rich with a TGF-beta programme; or almost
    only malignant cells; Tregs are about 10% of T cells in each), and each escape mechanism
    independently with probability ``mechanism_rate``. A mechanism multiplies the expression of its
    signature genes in the cell types where it acts (e.g. antigen-presentation genes x0.15 in
    malignant cells, exhaustion genes x5 in CD8 T cells); ``treg_high`` triples the Treg fraction.
    MHC class I genes get a high baseline in every cell, as in real tissue. The ground truth is kept
    coherent: ``tgfb_stromal_exclusion`` is planted exactly in the excluded
    samples (it defines that context), and the T-cell mechanisms (exhaustion, Treg-high) only where
    T cells infiltrate (inflamed, excluded), since no assay can see them in a desert. Counts are
    negative binomial around gene- and cell-type-specific means with log-normal library sizes.

    Parameters
    ----------
    n_samples
        Number of patients.
    cells_per_sample
        Cells per patient.
    n_background_genes
        Extra real human genes, not in any signature, so that ranks and control genes behave as in
        real data.
    mechanism_rate
        Probability that a sample carries each mechanism.
    pathways
        Tumour-intrinsic pathway activity to plant in malignant cells (off by default, which leaves
        the data as without it): ``{footprint: "t_cell_poor"}`` activates the footprint (a
        ``tumour_intrinsic`` signature) in the excluded and desert samples, ``"random"`` in each
        sample with probability ``mechanism_rate``, independently of its context. Active means the
        footprint's up genes (positive weights) times ``pathway_fold`` and its down genes divided by
        it; the truth table gets a ``pathway_<name>`` column.
    pathway_fold
        Fold change of a planted pathway's genes.
    seed
        Seed of everything random.

    Returns
    -------
    anndata.AnnData
        ``X`` log1p of counts per 10,000 (float32, CSR); ``layers["counts"]`` raw counts; ``obs``
        with ``sample``, ``cell_type`` and ``compartment``; ``uns["simulation"]`` the ground truth:
        a table with one row per sample, its ``context`` and one boolean column per mechanism.
    """
    n_samples = check_whole(n_samples, "n_samples")
    cells_per_sample = check_whole(cells_per_sample, "cells_per_sample")
    n_background_genes = check_whole(n_background_genes, "n_background_genes", lowest=0)
    mechanism_rate = check_share(mechanism_rate, "mechanism_rate")
    pathway_fold = check_number(pathway_fold, "pathway_fold", positive=True, hint=" (3.0 triples the genes)")
    check_random_state(seed, name="seed")
    rng = np.random.default_rng(seed)
    planted = _pathway_plants(pathways)
    genes = _simulation_genes(n_background_genes, rng, [sig for sig, _ in planted.values()])
    gidx = {g: i for i, g in enumerate(genes)}
    n_genes = len(genes)
    base = rng.lognormal(mean=-1.2, sigma=1.3, size=n_genes)  # mean counts per cell before scaling
    for g in UBIQUITOUS_HIGH:  # MHC class I machinery is highly expressed in every cell of real tissue
        if g in gidx:
            base[gidx[g]] = max(base[gidx[g]], 1.0) * 8.0
    type_means = {}
    for ct, (_, markers) in CELL_TYPES.items():
        mu = base * rng.lognormal(0.0, 0.35, size=n_genes)
        for g in markers:
            if g in gidx:
                mu[gidx[g]] = max(mu[gidx[g]], 1.0) * 12.0
        type_means[ct] = mu
    # IFN-gamma-driven genes are induced by infiltrating T cells in inflamed tumours
    ifng_genes = [gidx[g] for g in get("ifng_ayers2017").genes if g in gidx]

    truth_rows, blocks, obs_rows = [], [], []
    for s in range(n_samples):
        context = CONTEXTS[s % len(CONTEXTS)]
        mech = {m: bool(rng.random() < mechanism_rate) for m in MECHANISMS}
        mech["tgfb_stromal_exclusion"] = context == "excluded"
        if context == "desert":
            mech["t_cell_exhaustion"] = mech["treg_high"] = False
        active = {  # drawn only when pathways are planted, so that the default data stay as they were
            name: (context != "inflamed") if how == "t_cell_poor" else bool(rng.random() < mechanism_rate)
            for name, (_, how) in planted.items()
        }
        props = dict(PROPORTIONS[context])
        if mech["treg_high"]:
            props["Treg"] *= 3.0
        total = sum(props.values())
        types = list(props)
        counts_per_type = rng.multinomial(cells_per_sample, [props[t] / total for t in types])
        for ct, n in zip(types, counts_per_type):
            if n == 0:
                continue
            mu = type_means[ct].copy()
            if context == "inflamed":
                mu[ifng_genes] *= 4.0
            for m, on in mech.items():
                sigs, cts, fold = PLANTS[m]
                if on and ct in cts and fold != 1.0:
                    idx = sorted({gidx[g] for name in sigs for g in get(name).genes if g in gidx})
                    mu[idx] *= fold
            if ct == "malignant":
                for name, on in active.items():
                    if on:
                        for g, w in planted[name][0].gene_weights().items():
                            if g in gidx:
                                mu[gidx[g]] *= pathway_fold if w > 0 else 1.0 / pathway_fold
            size = rng.lognormal(0.0, 0.3, size=n)[:, None]
            lam = mu[None, :] * size
            r = 2.0  # NB dispersion
            counts = rng.poisson(rng.gamma(r, lam / r))
            blocks.append(sp.csr_matrix(counts.astype(np.float32)))
            obs_rows += [(f"P{s:02d}", ct, CELL_TYPES[ct][0])] * n
        truth_rows.append(
            {"sample": f"P{s:02d}", "context": context, **mech, **{f"pathway_{k}": v for k, v in active.items()}}
        )

    counts = sp.vstack(blocks).tocsr()
    obs = pd.DataFrame(obs_rows, columns=["sample", "cell_type", "compartment"])
    obs.index = [f"cell{i}" for i in range(len(obs))]
    for col in obs.columns:
        obs[col] = obs[col].astype("category")
    adata = AnnData(X=counts.copy(), obs=obs, var=pd.DataFrame(index=pd.Index(genes, name="gene")))
    adata.layers["counts"] = counts
    libsize = np.asarray(counts.sum(axis=1)).ravel()
    libsize[libsize == 0] = 1.0
    x = sp.diags((1e4 / libsize).astype(np.float32)) @ counts
    x.data = np.log1p(x.data)
    adata.X = x.astype(np.float32).tocsr()
    truth = pd.DataFrame(truth_rows).set_index("sample")
    adata.uns["simulation"] = {
        "truth": truth,
        "seed": seed,
        "description": (
            "Planted immune context and escape mechanisms per sample; see immunescape.datasets.simulate_tumor."
        ),
    }
    return adata


def _pathway_plants(pathways: Mapping[str, str] | None) -> dict:
    """``{name: (signature, how)}`` for the pathways to plant, checked."""
    if not pathways:
        return {}
    if not isinstance(pathways, Mapping):
        raise InputError('pathways must be a dict such as {"progeny_tgfb": "t_cell_poor"}.')
    out = {}
    for name, how in pathways.items():
        sig = get(name)
        if sig.meta.get("category") != "pathway":
            raise InputError(f"{name!r} is not a tumour-intrinsic pathway footprint (category: pathway).")
        if how not in ("t_cell_poor", "random"):
            raise InputError(f"pathways[{name!r}] must be 't_cell_poor' or 'random', got {how!r}.")
        out[name] = (sig, how)
    return out


def _simulation_genes(n_background: int, rng: np.random.Generator, planted: Sequence = ()) -> list[str]:
    from .signatures import collection

    wanted: dict[str, None] = {}
    for _, markers in CELL_TYPES.values():
        wanted.update(dict.fromkeys(markers))
    for sig in collection("all"):
        # the simulator plants no tumour-intrinsic pathway activity; its footprints' ~1,500 genes would
        # only change every simulated data set
        if sig.name == "rloop_rloopbase_human_regulators" or "tumour_intrinsic" in sig.meta.get("collections", ()):
            continue
        wanted.update(dict.fromkeys(sig.genes))
    for sig in planted:  # planted footprints need their genes (only then: the default gene set is unchanged)
        wanted.update(dict.fromkeys(sig.genes))
    # the context model's gene panel, so that its within-sample ranks can be read from simulated data
    from .tl._context import load_context_model

    wanted.update(dict.fromkeys(g for g in load_context_model().universe if g in gene_tables().current))
    current = gene_tables().current
    pool = sorted(
        g for g in current if g not in wanted and g.isalnum() and not g.startswith(("LINC", "MIR", "LOC", "SNOR"))
    )
    background = rng.choice(pool, size=min(n_background, len(pool)), replace=False).tolist()
    return list(wanted) + sorted(background)
