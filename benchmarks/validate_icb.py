"""Real-data validation on immunotherapy cohorts; writes benchmarks/VALIDATION.md.

Usage::

    python benchmarks/validate_icb.py --data ../shared/data

The cohorts (bulk RNA-seq with response labels; see ../shared/data/README.md) are read from
``--data`` and never copied into the repository. For each cohort: the AUC of GEP / IFN-gamma /
cytolytic / exhaustion scores and of the classifier's infiltration axis for response (R vs NR), the
response rate by immune context, and the published reference points.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SIGNATURES = {
    "T-cell-inflamed GEP": "tis_gep_ayers2017",
    "IFN-gamma 6-gene": "ifng_ayers2017",
    "cytolytic activity": "cytolytic_activity_rooney2015",
    "CD8 T-effector": "cd8_t_effector_mariathasan2018",
    "T-cell exhaustion (Chu)": "tex_cd8_chu2023",
    "antigen presentation": "apm_mariathasan2018",
    "pan-F-TBRS": "tgfb_pan_f_tbrs_mariathasan2018",
    "type I IFN": "ifn_type1_rooney2015",
    "cGAS-STING": "cgas_sting_core",
    "R-loop regulators (approx.)": "rloop_regulators_core",
}
PUBLISHED = {
    "Hugo": "T-cell signatures near 0.5 (innate anti-PD-1 resistance, IPRES; Hugo 2016): a negative control.",
    "Liu": "inflamed/GEP-type signatures are expected around the pan-cancer summary AUC ~0.65 (Lu 2019).",
    "Van_Allen": "cytolytic markers associate with benefit from anti-CTLA-4 (Van Allen 2015).",
    "Hugo_wholetranscriptome": "as Hugo; the only labelled matrix here with cGAS-STING and R-loop regulator genes.",
}


def auc(scores: pd.Series, responder: pd.Series) -> float:
    """Probability that a responder outscores a non-responder (Mann-Whitney AUC; ties count half)."""
    from scipy.stats import rankdata

    s, y = scores.to_numpy(dtype=float), responder.to_numpy(dtype=bool)
    ok = np.isfinite(s)
    s, y = s[ok], y[ok]
    n1, n0 = y.sum(), (~y).sum()
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def load_cohorts(data: Path) -> dict[str, tuple[pd.DataFrame, pd.Series]]:
    """name -> (samples x genes log2(TPM+1) or log2(FPKM+1), responder boolean)."""
    cohorts = {}
    for name in ("Hugo", "Liu", "Van_Allen"):
        expr = pd.read_csv(data / "icb" / f"ICB_{name}_expr_log2tpm.csv.gz", index_col=0)
        expr = np.log2(2.0**expr - 0.001 + 1.0).clip(lower=0)  # log2(TPM + 0.001) -> log2(TPM + 1)
        clinical = pd.read_csv(data / "icb" / f"ICB_{name}_clinical.csv", index_col=0)
        labelled = clinical["response"].isin(["R", "NR"])
        samples = [s for s in clinical.index[labelled] if s in expr.columns]
        cohorts[name] = (expr[samples].T, clinical.loc[samples, "response"] == "R")
    fpkm = pd.read_csv(data / "icb_wholetranscriptome" / "Hugo2016_fpkm_expr.csv.gz", index_col=0)
    labels = pd.read_csv(data / "icb_wholetranscriptome" / "Hugo2016_fpkm_labels.csv", index_col=0)["Labels"]
    samples = [s for s in labels.index if s in fpkm.columns]
    cohorts["Hugo_wholetranscriptome"] = (np.log2(fpkm[samples].T + 1.0), labels[samples] == "Responder")
    return cohorts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--methods", default="singscore,ssgsea,wmean", help="scoring methods to compare (bulk)")
    parser.add_argument("-o", "--output", type=Path, default=HERE / "VALIDATION.md")
    args = parser.parse_args()
    if not (args.data / "icb").is_dir():
        sys.exit(f"no cohorts under {args.data}; pass --data ../shared/data")
    import anndata as ad

    import immunescape as ie

    methods = args.methods.split(",")
    lines = ["# Validation on immunotherapy cohorts", "",
             f"Written by `benchmarks/validate_icb.py` on {datetime.now(timezone.utc):%Y-%m-%d} from the cohorts in "
             "`../shared/data` (not in this repository). AUC = probability that a responder (R: CR/PR) scores higher "
             "than a non-responder (NR); 0.5 is chance. Small cohorts: with 27-74 patients an AUC has a standard error "
             "of roughly 0.06-0.11, so differences of 0.1 are within noise.", ""]  # fmt: skip
    context_rows = []
    for name, (expr, responder) in load_cohorts(args.data).items():
        bulk = ad.AnnData(expr.to_numpy(dtype=np.float32), obs=pd.DataFrame(index=expr.index.astype(str)),
                          var=pd.DataFrame(index=expr.columns.astype(str)))  # fmt: skip
        bulk.var_names_make_unique()
        lines += [f"## {name}: {bulk.n_obs} patients ({int(responder.sum())} R / {int((~responder).sum())} NR), "
                  f"{bulk.n_vars} genes", "", f"Published: {PUBLISHED[name]}", "",
                  "| signature | genes found | " + " | ".join(f"AUC {m}" for m in methods) + " |",
                  "|---|---|" + "---|" * len(methods)]  # fmt: skip
        cover = ie.pp.coverage(bulk, list(SIGNATURES.values()))
        per_method = {}
        for m in methods:
            sigs = [s for s in SIGNATURES.values() if cover.loc[s, "n_found"] >= 2]
            per_method[m] = ie.tl.score(bulk, sigs, method=m, min_coverage=0.0, inplace=False)
        for label, sig in SIGNATURES.items():
            row = f"| {label} | {cover.loc[sig, 'n_found']}/{cover.loc[sig, 'n_genes']} |"
            for m in methods:
                table = per_method[m]
                row += f" {auc(table[sig], responder):.2f} |" if sig in table else " - |"
            lines.append(row)
        # the classifier on this cohort (scores with the default single-cell method, ucell, and with singscore)
        ie.tl.score(bulk, "immune_escape,bagaev2021", method="singscore", min_coverage=0.3, low_coverage="drop")
        calls = ie.tl.classify(bulk, inplace=False)
        lines += ["", f"Classifier (singscore features, cohort as its own reference): AUC of the infiltration axis "
                  f"{auc(calls['infiltration_z'], responder):.2f}; of the Bagaev immune axis "
                  f"{auc(calls['bagaev_immune'], responder):.2f}.", "",
                  "| immune context | patients | responders | response rate |", "|---|---|---|---|"]  # fmt: skip
        for ctx in ("inflamed", "excluded", "desert", "indeterminate"):
            mask = calls["immune_context"] == ctx
            n, r = int(mask.sum()), int(responder[mask].sum())
            lines.append(f"| {ctx} | {n} | {r} | {r / n:.0%} |" if n else f"| {ctx} | 0 | 0 | - |")
            context_rows.append((name, ctx, n, r))
        bag = calls["bagaev_class"].value_counts()
        lines += ["", "Bagaev classes: " + ", ".join(f"{k} {v}" for k, v in bag.items()) + ".", ""]
        print(f"{name}: done", flush=True)
    lines += ["## Reading", "",
              "- Inflamed-type signatures (GEP, IFN-gamma, cytolytic, CD8 T-effector) are the ones with prior evidence; "
              "their AUCs should sit near the literature's ~0.65 on anti-PD-1 cohorts other than Hugo, and near 0.5 on Hugo.",
              "- Escape-mechanism signatures are not response predictors by themselves; their AUCs are reported for completeness.",
              "- The R-loop and cGAS-STING scores can only be judged on the whole-transcriptome Hugo matrix (the other "
              "files hold signature-gene subsets), where anti-PD-1 response is known to be T-cell-independent.", ""]  # fmt: skip
    from immunescape.io import atomic_write_text

    atomic_write_text(args.output, "\n".join(lines))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
