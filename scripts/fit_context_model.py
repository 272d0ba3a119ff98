"""Fit the shipped immune-context model on the IMvigor210 development half; write it into the package.

Usage::

    python scripts/fit_context_model.py --data ../shared/data

Reads ``icb_phenotype/`` (97 patients, 1,768 genes, log2(TPM + 0.001); pathologists' inflamed /
excluded / desert calls for 83 of them) from ``--data``; nothing from it is copied into the
repository except the fitted coefficients and quantile summaries of the reference distributions.
Steps: within-sample features (singscore over the 1,768-gene panel) for every sample; repeated
stratified cross-validation of the whole procedure (feature set chosen inside each training fold
among a few candidates, see CANDIDATES); the final choice and fit on all labelled samples; reference
distributions (median, robust spread, 41 quantiles) of every feature and gene rank the classifier
compares samples against. Writes ``src/immunescape/data/immune_context_model.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
VERSION = "1.0"
INFILTRATION = [
    "cd8_t_effector_mariathasan2018",
    "tis_gep_ayers2017",
    "cytolytic_activity_rooney2015",
    "ifng_ayers2017",
]
CANDIDATES = {
    "CD8 T-effector": ["cd8_t_effector_mariathasan2018"],
    "CD8 T-effector + GEP": ["cd8_t_effector_mariathasan2018", "tis_gep_ayers2017"],
    "infiltration (CD8 T-effector, GEP, cytolytic, IFN-gamma)": INFILTRATION,
    "infiltration + stroma (pan-F-TBRS, ECM-myCAF)": [
        *INFILTRATION,
        "tgfb_pan_f_tbrs_mariathasan2018",
        "caf_ecm_mycaf_kieffer2020",
    ],
}
C = 1.0  # L2 penalty 1/(2C): scikit-learn's default, not tuned
MARGIN = 0.1  # a call whose top probability leads the next by less is indeterminate (fixed before fitting)
MIN_REFERENCE_GENES = 3  # a signature enters the shipped reference with at least this many genes in the panel


def load_dev(data: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Samples x genes log2(TPM + 0.001) and the clinical table of the development half."""
    folder = data / "icb_phenotype"
    expr = pd.read_csv(folder / "IMvigor210_dev_expr_log2tpm.csv.gz", index_col=0)
    clinical = pd.read_csv(folder / "IMvigor210_dev_clinical.csv", index_col=0)
    samples = [s for s in clinical.index if s in expr.columns]
    return expr[samples].T, clinical.loc[samples]


def reference_signatures(universe: set[str]) -> list[str]:
    """Signatures of the context and mechanism rules with enough genes in the panel to be referenced."""
    from immunescape.signatures import get
    from immunescape.tl._classify import MECHANISMS

    out = list(dict.fromkeys(f for cols in CANDIDATES.values() for f in cols))  # candidates: always
    names = [f for rule in MECHANISMS.values() for f in (*rule.features, *rule.fallback) if not f.startswith("frac_")]
    for name in dict.fromkeys(n for n in names if n not in out):
        if sum(g in universe for g in get(name).genes) >= MIN_REFERENCE_GENES:
            out.append(name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument(
        "-o", "--output", type=Path, default=ROOT / "src" / "immunescape" / "data" / "immune_context_model.json"
    )
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if not (args.data / "icb_phenotype").is_dir():
        sys.exit(f"no icb_phenotype/ under {args.data}; pass --data ../shared/data")
    from immunescape.io import atomic_write_text
    from immunescape.signatures import get
    from immunescape.tl._context import ContextModel, Distribution, compute_context_inputs
    from immunescape.tl._context_fit import (
        CLASSES,
        _inner_choice,
        _standardise,
        cross_validate,
        fit_multinomial,
        tertile_baseline,
    )

    expr, clinical = load_dev(args.data)
    universe = tuple(expr.columns.astype(str))
    signatures = reference_signatures(set(universe))
    genes = sorted({g for s in signatures for g in get(s).genes if g in set(universe)})
    scaffold = ContextModel(VERSION, CLASSES, (), (), (), (), (), universe, gene_reference=dict.fromkeys(genes))  # type: ignore[arg-type]
    inputs = compute_context_inputs(expr, model=scaffold, signatures=signatures)
    features = inputs.features
    labelled = clinical["Immune.phenotype"].isin(CLASSES)
    labels = clinical.loc[labelled, "Immune.phenotype"]
    x = features.loc[labels.index]
    print(
        f"{len(features)} samples, {len(labels)} labelled {labels.value_counts().to_dict()}; {len(universe)} genes",
        flush=True,
    )

    cv = cross_validate(x, labels, CANDIDATES, C=C, n_repeats=args.repeats, margin=MARGIN, seed=0)
    baseline = tertile_baseline(x["cd8_t_effector_mariathasan2018"], labels)
    print(
        f"CV accuracy {cv['accuracy']:.3f} {cv['accuracy_ci']}, swaps {cv['inflamed_desert_swaps']:.3f}; "
        f"tertile baseline {baseline['accuracy']:.3f}",
        flush=True,
    )

    y = labels.map({c: i for i, c in enumerate(CLASSES)}).to_numpy().astype(np.int64)
    choice = _inner_choice(x, y, CANDIDATES, C, np.random.default_rng(1), len(CLASSES))
    cols = CANDIDATES[choice]
    values = x[cols].to_numpy(float)
    center, scale = _standardise(values)
    coef, intercept = fit_multinomial((values - center) / scale, y, len(CLASSES), C)
    digest = hashlib.sha256(
        (args.data / "icb_phenotype" / "IMvigor210_dev_expr_log2tpm.csv.gz").read_bytes()
    ).hexdigest()[:16]
    model = ContextModel(
        version=VERSION,
        classes=CLASSES,
        features=tuple(cols),
        center=tuple(center.tolist()),
        scale=tuple(scale.tolist()),
        coef=tuple(tuple(r) for r in coef.tolist()),
        intercept=tuple(intercept.tolist()),
        universe=universe,
        margin=MARGIN,
        reference={s: Distribution.of(features[s].to_numpy()) for s in signatures},
        gene_reference={g: Distribution.of(inputs.gene_ranks[g].to_numpy()) for g in genes if g in inputs.gene_ranks},
        provenance={
            "data": "IMvigor210 (Mariathasan et al., Nature 2018, PMID 29443960; metastatic urothelial cancer, atezolizumab), "
            "development half: 97 patients drawn at random within each pathology phenotype, as redistributed by PredictioR "
            "(ICB_small_Mariathasan, 1,768 genes, log2(TPM + 0.001)); the other half is held out by the project.",
            "data_sha256_16": digest,
            "labels": "Immune.phenotype: pathologists' inflamed / excluded / desert call from CD8 immunohistochemistry "
            f"({labels.value_counts().to_dict()}; {int((~labelled).sum())} unlabelled samples enter the reference distributions "
            "only)",
            "features": (
                "singscore (centred, Foroutan 2018) of each signature over the 1,768-gene panel, in each sample alone"
            ),
            "model": f"multinomial logistic regression, L2 penalty 1/(2C) with C={C}, features standardised on the training "
            f"samples; chosen set: {choice}; candidates: {list(CANDIDATES)}",
            "indeterminate": f"top probability ahead of the second by less than {MARGIN} (fixed before fitting)",
            "reference": (
                "median, spread = max(1.4826 MAD, SD/2), and 41 quantiles of each feature and gene "
                "rank over all 97 samples"
            ),
            "fitted": f"{datetime.now(timezone.utc):%Y-%m-%d} by scripts/fit_context_model.py",
        },
        metrics={"cross_validation": cv, "baseline_cd8_tertiles": baseline},
    )
    atomic_write_text(args.output, model.to_json())
    print(f"chose {choice}; wrote {args.output}")


if __name__ == "__main__":
    main()
