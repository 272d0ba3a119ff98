"""Real-data validation: the immune-context model on pathology, and scores on immunotherapy cohorts.

Usage::

    python benchmarks/validate_icb.py --data ../shared/data

The cohorts (see ../shared/data/README.md) are read from ``--data`` and never copied into the
repository. First the context model's repeated cross-validation on the IMvigor210 development half
(pathologists' phenotypes) beside a one-score baseline, and its robustness to missing genes; then,
per cohort, the response AUC of GEP / IFN-gamma / cytolytic / exhaustion scores, of the model's
P(inflamed) with bootstrap 95% intervals, and the response rate by immune context. Takes ~2 minutes.
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
    "IMvigor210_dev": (
        "CD8 T-effector and IFN-gamma associate with response to atezolizumab (Mariathasan 2018); "
        "TGF-beta with non-response."
    ),
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


def auc_interval(
    scores: pd.Series, responder: pd.Series, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """AUC with a bootstrap 95% interval (patients resampled within responders and non-responders)."""
    rng = np.random.default_rng(seed)
    s, y = scores.reset_index(drop=True), responder.reset_index(drop=True).astype(bool)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    boots = []
    for _ in range(n_boot):
        idx = np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]
        boots.append(auc(s.iloc[idx], y.iloc[idx]))
    return auc(s, y), float(np.nanquantile(boots, 0.025)), float(np.nanquantile(boots, 0.975))


def _fmt_metric(m: dict, key: str, pct: bool = False) -> str:
    lo, hi = m[f"{key}_ci"]
    f = (lambda x: f"{100 * x:.1f}%") if pct else (lambda x: f"{x:.3f}")
    return f"{f(m[key])} [{f(lo)}, {f(hi)}]"


def context_section(data: Path) -> list[str]:
    """The context model's repeated cross-validation on the IMvigor210 development half, beside the baseline."""
    import importlib.util

    import immunescape as ie
    from immunescape.tl._context_fit import CLASSES, cross_validate, tertile_baseline

    spec = importlib.util.spec_from_file_location("fit_context_model", HERE.parent / "scripts" / "fit_context_model.py")
    fit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit)
    expr, clinical = fit.load_dev(data)
    model = ie.tl.load_context_model()
    features = ie.tl.context_features(expr)
    labels = clinical["Immune.phenotype"][clinical["Immune.phenotype"].isin(CLASSES)]
    x = features.loc[labels.index]
    cv = cross_validate(x, labels, fit.CANDIDATES, C=fit.C, n_repeats=20, margin=fit.MARGIN, seed=0)
    base = tertile_baseline(x["cd8_t_effector_mariathasan2018"], labels)
    shipped = model.metrics["cross_validation"]
    same = abs(cv["accuracy"] - shipped["accuracy"]) < 1e-12
    calls = ie.tl.classify(_anndata(expr), inplace=False)
    lines = [
        "## Immune context: the shipped model on IMvigor210 pathology",
        "",
        f"Development half of IMvigor210 (Mariathasan 2018; `../shared/data/icb_phenotype`): {len(expr)} patients, "
        f"{len(labels)} with the pathologists' CD8-IHC phenotype ({', '.join(f'{k} {v}' for k, v in labels.value_counts().items())}). "
        "The other half is held out by the project and was never read. Features: singscore of each signature over the "
        "model's 1,768-gene panel, computed in each sample alone.",
        "",
        f"Model v{model.version}: multinomial logistic regression on {', '.join(model.features)} "
        f"(chosen among {len(fit.CANDIDATES)} candidate feature sets; C = {fit.C}). "
        f"Cross-validation: {cv['design']}; the feature set is chosen again inside every training fold, so the "
        "numbers include the cost of choosing. Intervals: bootstrap over patients (2,000 draws). "
        f"{'Reproduces' if same else 'DIFFERS FROM'} the metrics stored in the shipped model file.",
        "",
        "| | model (cross-validated) | baseline: CD8 T-effector cut at the cohort's tertiles |",
        "|---|---|---|",
        f"| accuracy | {_fmt_metric(cv, 'accuracy')} | {_fmt_metric(base, 'accuracy')} |",
        f"| balanced accuracy | {_fmt_metric(cv, 'balanced_accuracy')} | {_fmt_metric(base, 'balanced_accuracy')} |",
        f"| inflamed <-> desert swaps | {_fmt_metric(cv, 'inflamed_desert_swaps', pct=True)} | "
        f"{_fmt_metric(base, 'inflamed_desert_swaps', pct=True)} |",
        f"| called indeterminate (margin {cv['margin']}) | {cv['indeterminate_share']:.1%} | - |",
        f"| accuracy of the calls made | {cv['accuracy_called']:.3f} | - |",
        "",
        "Confusion matrices (rows: pathology; columns: call; mean counts per repeat for the model):",
        "",
        "| pathology | model: desert | excluded | inflamed | baseline: desert | excluded | inflamed |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, c in enumerate(CLASSES):
        mrow, brow = cv["confusion"]["mean counts"][i], base["confusion"]["mean counts"][i]
        lines.append(
            f"| {c} | " + " | ".join(f"{v:.1f}" for v in mrow) + " | " + " | ".join(f"{v:.0f}" for v in brow) + " |"
        )
    lines += [
        "",
        "How often each candidate set was chosen inside the folds: "
        + ", ".join(f"{k} {v:.0%}" for k, v in cv["chosen_sets"].items())
        + ".",
        "",
        f"Before this model (cohort-relative thresholds read off the simulator) the classifier agreed with pathology "
        f"for 0.49 of 167 IMvigor210 patients. The shipped model called on all {len(expr)} development patients "
        "(in-sample, for the record): "
        + ", ".join(f"{k} {v}" for k, v in calls["immune_context"].value_counts().items())
        + ".",
        "",
    ]
    lines += robustness_lines(expr, calls)
    return lines


def robustness_lines(expr: pd.DataFrame, calls: pd.DataFrame) -> list[str]:
    """Call agreement when a share of the model's panel is missing from the data."""
    import immunescape as ie

    rng = np.random.default_rng(0)
    rows = ["| panel genes removed | calls unchanged | became indeterminate |", "|---|---|---|"]
    for share in (0.05, 0.1, 0.2):
        same, indet = [], []
        for _ in range(5):
            drop = rng.choice(expr.columns, size=int(share * expr.shape[1]), replace=False)
            again = ie.tl.classify(_anndata(expr.drop(columns=drop)), inplace=False)["immune_context"]
            same.append((again == calls["immune_context"]).mean())
            indet.append(((again == "indeterminate") & (calls["immune_context"] != "indeterminate")).mean())
        rows.append(f"| {share:.0%} (random, 5 draws) | {np.mean(same):.1%} | {np.mean(indet):.1%} |")
    return [
        "Robustness to genes missing from the data (development half; calls compared with the full panel):",
        "",
        *rows,
        "",
    ]


def drivers_section(data: Path) -> list[str]:
    """ie.tl.exclusion_drivers on the IMvigor210 development half, against the pathologists' calls
    (issue 20): every pathway footprint, adjusted for stromal content (the default for bulk) and not."""
    import importlib.util

    import immunescape as ie

    spec = importlib.util.spec_from_file_location("fit_context_model", HERE.parent / "scripts" / "fit_context_model.py")
    fit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit)
    expr, clinical = fit.load_dev(data)
    bulk = _anndata(expr)
    ie.tl.score(bulk, "immune_escape,bagaev2021", method="singscore", min_coverage=0.3, low_coverage="drop")
    ie.tl.score(bulk, "tumour_intrinsic", method="wmean", key_added="pathways", min_coverage=0.0)
    found = bulk.uns["pathways"]["coverage"].set_index("signature")
    pathology = clinical["Immune.phenotype"].reindex(bulk.obs_names)
    tables = {
        adjust: ie.tl.exclusion_drivers(bulk, key=["immunescape", "pathways"], exclusion=pathology, adjust=adjust)
        for adjust in ("auto", None)
    }
    lines = [
        "## Tumour-intrinsic pathways and exclusion: ie.tl.exclusion_drivers on IMvigor210 pathology",
        "",
        f"IMvigor210 development half, {bulk.n_obs} tumours (bulk RNA, a {bulk.n_vars}-gene panel). Pathway "
        "footprints scored with `wmean` (PROGENy's definition; the panel holds only some of each footprint's genes: "
        "column 'genes'), T-cell infiltration = CD8 T-effector (singscore), exclusion = the pathologists' calls "
        "(excluded 1, inflamed 0; desert left out). Partial Spearman rho with 95% interval (Fisher z), p, and FDR over "
        "the 18 pathways per outcome; 'stroma-adjusted' removes the ranks of the fibroblast and endothelium "
        "abundance scores (the default for bulk), 'unadjusted' does not. Expected from the literature: TGF-beta with "
        "exclusion (Mariathasan 2018), WNT with T-cell exclusion (Spranger 2015). Reported whatever it shows; an "
        "association across tumours, not a cause.",
        "",
        "| pathway (review) | genes | outcome | stroma-adjusted rho [95% CI] | p | FDR | unadjusted rho [95% CI] | p | FDR | n |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    adjusted, raw = (t.set_index(["pathway", "outcome"]) for t in (tables["auto"], tables[None]))
    first = ["progeny_tgfb", "progeny_wnt"]
    order = first + sorted(p for p in adjusted.index.get_level_values(0).unique() if p not in first)
    for outcome in ("exclusion", "infiltration"):
        for name in order:
            if (name, outcome) not in adjusted.index:
                continue
            a, r = adjusted.loc[(name, outcome)], raw.loc[(name, outcome)]
            bold = "**" if name in first else ""
            lines.append(
                f"| {bold}{name}{bold} ({a['review']}) | {int(found.loc[name, 'n_found'])}/"
                f"{int(found.loc[name, 'n_found'] + found.loc[name, 'n_missing'])} | {outcome} | "
                f"{a['rho']:+.2f} [{a['ci_low']:+.2f}, {a['ci_high']:+.2f}] | {a['pval']:.2g} | {a['fdr']:.2g} | "
                f"{r['rho']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] | {r['pval']:.2g} | {r['fdr']:.2g} | "
                f"{int(a['n'])} |"
            )
    return lines + [""]


def _anndata(frame: pd.DataFrame):
    import anndata as ad

    out = ad.AnnData(
        frame.to_numpy(dtype=np.float32),
        obs=pd.DataFrame(index=frame.index.astype(str)),
        var=pd.DataFrame(index=frame.columns.astype(str)),
    )
    out.var_names_make_unique()
    return out


def response_section(name: str, expr: pd.DataFrame, responder: pd.Series, methods: list[str]) -> list[str]:
    import immunescape as ie

    bulk = _anndata(expr)
    lines = [
        (
            f"## {name}: {bulk.n_obs} patients ({int(responder.sum())} R / {int((~responder).sum())} NR), "
            f"{bulk.n_vars} genes"
        ),
        "",
        f"Published: {PUBLISHED[name]}",
        "",
        "| signature | genes found | " + " | ".join(f"AUC {m}" for m in methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
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
    calls = ie.tl.classify(bulk, inplace=False)
    single = (
        per_method["singscore"]
        if "singscore" in per_method
        else ie.tl.score(bulk, list(SIGNATURES.values())[:4], method="singscore", min_coverage=0.0, inplace=False)
    )
    lines += [
        "",
        "Response AUC with bootstrap 95% intervals (singscore; the model's P(inflamed) reads each sample alone):",
        "",
        "| score | AUC [95% CI] |",
        "|---|---|",
    ]
    for label, values in (
        ("context model P(inflamed)", calls["p_inflamed"]),
        ("cytolytic activity (CYT)", single.get("cytolytic_activity_rooney2015")),
        ("IFN-gamma 6-gene", single.get("ifng_ayers2017")),
        ("T-cell-inflamed GEP", single.get("tis_gep_ayers2017")),
    ):
        if values is None:
            lines.append(f"| {label} | - |")
            continue
        a, lo, hi = auc_interval(values, responder)
        lines.append(f"| {label} | {a:.2f} [{lo:.2f}, {hi:.2f}] |")
    lines += [
        "",
        f"Immune context (shipped model, {calls.attrs.get('context_model_coverage', float('nan')):.0%} of its panel in "
        "these data):",
        "",
        "| immune context | patients | responders | response rate |",
        "|---|---|---|---|",
    ]
    for ctx in ("inflamed", "excluded", "desert", "indeterminate"):
        mask = (calls["immune_context"] == ctx).to_numpy()
        n, r = int(mask.sum()), int(responder.to_numpy()[mask].sum())
        lines.append(f"| {ctx} | {n} | {r} | {r / n:.0%} |" if n else f"| {ctx} | 0 | 0 | - |")
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--methods", default="singscore,ssgsea,wmean", help="scoring methods to compare (bulk)")
    parser.add_argument("-o", "--output", type=Path, default=HERE / "VALIDATION.md")
    args = parser.parse_args()
    if not (args.data / "icb").is_dir() or not (args.data / "icb_phenotype").is_dir():
        sys.exit(f"no cohorts under {args.data}; pass --data ../shared/data")
    methods = args.methods.split(",")
    lines = [
        "# Validation on real tumours",
        "",
        f"Written by `benchmarks/validate_icb.py` on {datetime.now(timezone.utc):%Y-%m-%d} from the cohorts in "
        "`../shared/data` (not in this repository). First the immune-context model against pathology, then response "
        "to immune checkpoint blockade. AUC = probability that a responder (R: CR/PR) scores higher than a "
        "non-responder (NR); 0.5 is chance. Small cohorts: with 27-74 patients an AUC has a standard error of "
        "roughly 0.06-0.11, so differences of 0.1 are within noise.",
        "",
    ]
    lines += context_section(args.data)
    print("context model: done", flush=True)
    lines += drivers_section(args.data)
    print("exclusion drivers: done", flush=True)
    cohorts = load_cohorts(args.data)
    expr, clinical = _imvigor_response(args.data)
    cohorts = {"IMvigor210_dev": (expr, clinical), **cohorts}
    for name, (expr, responder) in cohorts.items():
        lines += response_section(name, expr, responder, methods)
        print(f"{name}: done", flush=True)
    lines += [
        "## Reading",
        "",
        "- The context model adds little over its baseline: one within-sample CD8 T-effector score carries almost all "
        "of what these 1,768 genes say about the pathologists' phenotype; stromal (TGF-beta, CAF) scores did not "
        "separate excluded from desert tumours here and were never chosen. Excluded tumours are the hard class.",
        "- The model is fitted on urothelial cancer. On the melanoma cohorts it calls few tumours inflamed (context tables "
        "above): "
        "the within-sample rank of CD8 T-effector genes differs between tissues, and no melanoma pathology is here to "
        "recalibrate it. Its calls outside urothelial cancer are a transfer, not a validated result.",
        "- Missing genes move calls: ranks are taken among the panel genes present, so a sample near a class boundary "
        "can change class when 5-20% of the panel is absent (table above); below 80% coverage the call is indeterminate.",
        "- Inflamed-type signatures (GEP, IFN-gamma, cytolytic, CD8 T-effector) are the ones with prior evidence; "
        "their AUCs should sit near the literature's ~0.65 on anti-PD-1 cohorts other than Hugo, and near 0.5 on Hugo.",
        "- IMvigor210_dev: the model was fitted on these patients' phenotypes (not on their response); its response AUC "
        "there is not independent of the fit.",
        "- Escape-mechanism signatures are not response predictors by themselves.",
        "- Tumour-intrinsic pathways: PROGENy TGF-beta and WNT show no association with the pathologists' exclusion "
        "calls on this panel (rho near 0, intervals about +/-0.27 wide; 24 and 21 of their 100 footprint genes "
        "present), adjusted or not: the literature's expectation is neither confirmed nor refuted at this power. "
        "JAK-STAT, IL-6/JAK/STAT3 and TRAIL go with infiltration and against exclusion, as bulk RNA would show "
        "immune cells' own IFN/cytokine signalling; bulk cannot place them in the tumour cells. Single-cell "
        "cohorts, where the footprints are read in malignant cells only, are the test this section cannot make.",
        "- The R-loop and cGAS-STING scores can only be judged on the whole-transcriptome Hugo matrix (the other "
        "files hold signature-gene subsets), where anti-PD-1 response is known to be T-cell-independent.",
        "",
    ]
    from immunescape.io import atomic_write_text

    atomic_write_text(args.output, "\n".join(lines))
    print(f"wrote {args.output}")


def _imvigor_response(data: Path) -> tuple[pd.DataFrame, pd.Series]:
    folder = data / "icb_phenotype"
    expr = pd.read_csv(folder / "IMvigor210_dev_expr_log2tpm.csv.gz", index_col=0)
    expr = np.log2(2.0**expr - 0.001 + 1.0).clip(lower=0)
    clinical = pd.read_csv(folder / "IMvigor210_dev_clinical.csv", index_col=0)
    samples = [s for s in clinical.index[clinical["response"].isin(["R", "NR"])] if s in expr.columns]
    return expr[samples].T, clinical.loc[samples, "response"] == "R"


if __name__ == "__main__":
    main()
