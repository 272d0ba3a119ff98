"""Tumour-intrinsic pathways against T-cell exclusion on real tumours (issue 20's real-data evidence).

Usage::

    python benchmarks/pathways_exclusion.py [--data ../shared/data] [-o benchmarks/RESULTS_pathways_exclusion.md]

IMvigor210's development half (Mariathasan et al. 2018; ``../shared/data/icb_phenotype``): 97 urothelial
tumours, bulk log2 TPM over a 1,768-gene panel, 83 with the pathologists' CD8 phenotype (inflamed,
excluded, desert). Every ``tumour_intrinsic`` signature and the library's TGF-beta and WNT sets are
scored with ``wmean`` (PROGENy's definition up to scaling) on the genes the panel has. Per signature:

- excluded vs inflamed and excluded vs desert: AUC (the chance that an excluded tumour scores higher),
  95% bootstrap interval (2,000 resamples within each group), Mann-Whitney p, BH FDR over signatures;
- T-cell infiltration: Spearman correlation with CD8 T-effector (Mariathasan 2018) over all 97 tumours,
  bootstrap interval, p, FDR.

Bulk scores mix tumour, stroma and immune cells: a footprint here is not yet "in the malignant cells"
(issue 20 asks ``exclusion_drivers`` to adjust for that); this table is what the data show unadjusted,
with the panel's coverage of each footprint, whatever it shows.
"""

from __future__ import annotations

import argparse
import logging
import platform
import warnings
from datetime import datetime, timezone
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import stats

import immunescape as ie
from immunescape.tl import adjust_pvalues

ROOT = Path(__file__).resolve().parents[1]
EXTRA = {"tgfb_pan_f_tbrs_mariathasan2018": "TGF-beta", "wnt_target_mariathasan2018": "WNT/beta-catenin"}  # -> review
INFILTRATION = "cd8_t_effector_mariathasan2018"
N_BOOT = 2000


def _auc(x: np.ndarray, y: np.ndarray) -> float:
    return stats.mannwhitneyu(x, y).statistic / (len(x) * len(y))


def _auc_row(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float, float]:
    boot = [_auc(rng.choice(x, len(x)), rng.choice(y, len(y))) for _ in range(N_BOOT)]
    test = stats.mannwhitneyu(x, y)
    return test.statistic / (len(x) * len(y)), *np.quantile(boot, [0.025, 0.975]), test.pvalue


def _rho_row(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float, float]:
    rho, p = stats.spearmanr(x, y)
    boot = []
    for _ in range(N_BOOT):
        at = rng.integers(0, len(x), len(x))
        boot.append(stats.spearmanr(x[at], y[at]).correlation)
    return rho, *np.nanquantile(boot, [0.025, 0.975]), p


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "benchmarks" / "RESULTS_pathways_exclusion.md")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("immunescape").setLevel(logging.ERROR)
    folder = args.data / "icb_phenotype"
    expr = pd.read_csv(folder / "IMvigor210_dev_expr_log2tpm.csv.gz", index_col=0)
    expr = expr[~expr.index.duplicated()]
    clinical = pd.read_csv(folder / "IMvigor210_dev_clinical.csv", index_col=0)
    bulk = ad.AnnData(expr.T.to_numpy(np.float64), obs=pd.DataFrame(index=expr.columns.astype(str)))
    bulk.var_names = expr.index.astype(str)
    names = [s.name for s in ie.signatures.collection("tumour_intrinsic")] + list(EXTRA)
    scores = ie.tl.score(bulk, [*names, INFILTRATION], method="wmean", min_coverage=0, inplace=False)
    phenotype = clinical["Immune.phenotype"].reindex(scores.index)
    rng = np.random.default_rng(0)
    rows = []
    for name in names:
        x = scores[name].to_numpy()
        sig = ie.signatures.get(name)
        present = sum(g in set(bulk.var_names) for g in sig.genes)
        excl, infl, desert = (x[(phenotype == k).to_numpy()] for k in ("excluded", "inflamed", "desert"))
        rows.append(
            {
                "signature": name,
                "review": sig.meta["pathway"]["review"] if "pathway" in sig.meta else EXTRA[name],
                "genes": f"{present}/{len(sig.genes)}",
                "ex_vs_in": _auc_row(excl, infl, rng),
                "ex_vs_de": _auc_row(excl, desert, rng),
                "cd8": _rho_row(x, scores[INFILTRATION].to_numpy(), rng),
            }
        )
    for key in ("ex_vs_in", "ex_vs_de", "cd8"):
        fdr = adjust_pvalues(pd.DataFrame({r["signature"]: [r[key][3]] for r in rows}), across="signatures")
        for r in rows:
            r[key] = (*r[key], float(fdr[r["signature"]].iloc[0]))
    counts = phenotype.value_counts().to_dict()
    lines = [
        "# Tumour-intrinsic pathways and T-cell exclusion in IMvigor210 (bulk, unadjusted)",
        "",
        f"Written by `benchmarks/pathways_exclusion.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"{platform.platform()}, Python {platform.python_version()}, immunescape {ie.__version__}, signature library "
        f"{ie.signatures.library_version()}. Bootstrap: {N_BOOT} resamples, seed 0.",
        "",
        f"IMvigor210 development half: {len(scores)} tumours, {bulk.n_vars} genes; pathologists' phenotype: "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + f". Scores: `wmean` on the panel's genes. Infiltration: `{INFILTRATION}`. AUC > 0.5: excluded tumours score "
        "higher. FDR: Benjamini-Hochberg over the signatures of each column. Bulk: footprints mix tumour, stroma and "
        "immune cells, and most are only partly on the panel (genes column): read them as associations in bulk, not "
        "as pathway activity in malignant cells.",
        "",
        "| signature | review's pathway | genes on panel | excluded vs inflamed: AUC [95% CI], p, FDR "
        "| excluded vs desert: AUC [95% CI], p, FDR | Spearman with CD8 T-effector [95% CI], p, FDR |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            f"{v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}], p {v[3]:.2g}, FDR {v[4]:.2g}"
            for v in (r["ex_vs_in"], r["ex_vs_de"], r["cd8"])
        ]
        lines.append(f"| {r['signature']} | {r['review']} | {r['genes']} | " + " | ".join(cells) + " |")
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
