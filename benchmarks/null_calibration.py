"""Calibration and power of the matched null at library scale (issue 17): the default bins beside scanpy's.

Usage::

    python benchmarks/null_calibration.py -o benchmarks/RESULTS_null_calibration.md

Issue 17's scenario (``tests/_synthetic.library_scale``: 2,000 cells x 4,000 genes, Poisson counts,
log1p CP10k; 12 random signatures of 10-100 genes and one whose 30 genes are raised 3-fold in 10% of
the cells; ``n_null=100``), for ucell, mean, aucell and singscore, on seeds 7 (the tests' seed), 100-101
(on which the default bins were chosen) and 102-105 (used for nothing else). Per seed and binning:

- random sets: share of cells at p < 0.05 and < 0.01 (pooled), and of the worst single random set at
  p < 0.05;
- planted cells found at BH FDR 0.05 (per cell over its signatures) beside the 12 random sets, and
  beside the 27 ``immune_escape`` signatures as well (40 signatures);
- with a 10-fold depth range: the largest |Spearman| between a random set's p-values and the cells'
  total counts;
- with n_null=10,000 (default bins): planted cells found beside 40 signatures, the statistic's own ceiling.

The tail's calibration: random signatures on seeds 100-119, the rates of p <= 1e-3, 1e-4 and 1e-5.

Then, on real data (scanpy's bundled PBMCs; IMvigor210's development half when ``../shared`` is
there): 40 random gene sets scored with both binnings, the share of rows each set is called in.

This is a simulator: it shows how the null behaves where the truth is known, not accuracy on real data.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests._synthetic import library_scale  # noqa: E402

import immunescape as ie  # noqa: E402

METHODS = ["ucell", "mean", "aucell", "singscore"]
BINNINGS = {"scanpy's 25 (aucell 50)": "before", "default: 200 quantiles, >= 20 genes": None}
BEFORE = {"aucell": 50}  # the defaults before the change: scanpy's 25 bins, 50 for aucell
SEED_ROLES = {7: "tests", 100: "chose the bins", 101: "chose the bins"}


def _rates(res, active) -> dict[str, float]:
    p, padj = res["pval"], res["padj"]
    random = [c for c in p.columns if c.startswith("random")]
    return {
        "pooled5": float((p[random] < 0.05).to_numpy().mean()),
        "pooled1": float((p[random] < 0.01).to_numpy().mean()),
        "worst5": float((p[random] < 0.05).mean().max()),
        "found": float((padj["planted"][active] < 0.05).mean()),
        "false": float((padj["planted"][~active] < 0.05).mean()),
    }


def measure(seed: int, method: str, bins: int | str | None) -> dict[str, float]:
    if bins == "before":
        bins = BEFORE.get(method, 25)
    kw = {"method": method, "null": "matched", "n_null": 100, "null_bins": bins, "min_coverage": 0, "inplace": False}
    adata, sets, active, _ = library_scale(seed=seed)
    row = _rates(ie.tl.score(adata, sets, **kw), active)
    adata, sets, active, _ = library_scale(seed=seed, library_genes=True)
    sets = {**sets, **{sig.name: sig for sig in ie.signatures.collection("immune_escape")}}
    beside = _rates(ie.tl.score(adata, sets, **kw), active)
    row["found40"], row["false40"] = beside["found"], beside["false"]
    # the same with 10x the random sets: how much of the shortfall the tail at n_null=100 costs
    row["found40_1000"] = _rates(ie.tl.score(adata, sets, **{**kw, "n_null": 1000}), active)["found"]
    # and with 100x (p-values resolved empirically down to 1e-4): the statistic's own ceiling, which no
    # tail at n_null=100 can pass without being anti-conservative (default bins only: it is slow)
    row["found40_10000"] = (
        _rates(ie.tl.score(adata, sets, **{**kw, "n_null": 10000}), active)["found"] if bins is None else np.nan
    )
    adata, sets, _, total = library_scale(seed=seed, depth_range=10.0)
    p = ie.tl.score(adata, sets, **kw)["pval"]
    row["depth_rho"] = max(abs(stats.spearmanr(p[c], total).correlation) for c in p.columns if c.startswith("random"))
    return row


def tail_calibration(method: str, seeds: list[int]) -> tuple[int, list[int]]:
    """Random signatures only (40 per data set): how many p-values, and how many at or below 1e-3,
    1e-4 and 1e-5 - levels only the tail beyond every random set reaches at n_null=100."""
    n, counts = 0, [0, 0, 0]
    for seed in seeds:
        adata, sets, _, _ = library_scale(seed=seed, n_random=40)
        p = ie.tl.score(adata, sets, method=method, null="matched", n_null=100, min_coverage=0, inplace=False)["pval"]
        p = p[[c for c in p.columns if c.startswith("random")]].to_numpy()
        n += p.size
        counts = [c + int((p <= level).sum()) for c, level in zip(counts, TAIL_LEVELS)]
    return n, counts


TAIL_LEVELS = (1e-3, 1e-4, 1e-5)
TAIL_SEEDS = list(range(100, 120))


def real_datasets() -> dict[str, object]:
    """Real expression data: scanpy's bundled PBMCs (log-normalised counts, .raw) and, when
    ``../shared/data`` is there, the IMvigor210 development half (bulk log2 TPM, a 1,768-gene panel)."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    pbmc = sc.datasets.pbmc68k_reduced()
    out = {"pbmc68k_reduced (700 cells x 765 genes)": pbmc.raw.to_adata()}
    imvigor = ROOT.parent / "shared" / "data" / "icb_phenotype" / "IMvigor210_dev_expr_log2tpm.csv.gz"
    if imvigor.exists():
        expr = pd.read_csv(imvigor, index_col=0)
        expr = expr[~expr.index.duplicated()]
        bulk = ad.AnnData(expr.T.to_numpy(np.float32), obs=pd.DataFrame(index=expr.columns))
        bulk.var_names = expr.index.astype(str)
        out[f"IMvigor210 dev ({bulk.n_obs} tumours x {bulk.n_vars} genes)"] = bulk
    return out


def measure_real(adata, method: str, bins: int | str | None, n_sets: int = 40, seed: int = 0) -> dict[str, float]:
    """Random gene sets of 10-100 genes on real data: per set, the share of rows (cells or samples)
    called at p < 0.05. Real random sets carry biology too (a set holding a cell type's markers is
    rightly high in that cell type), so the worst set is not expected at 5%; the bins' part is the
    difference between the two binnings."""
    if bins == "before":
        bins = BEFORE.get(method, 25)
    rng = np.random.default_rng(seed)
    genes = np.asarray(adata.var_names)
    sets = {
        f"r{k}": list(rng.choice(genes, size, replace=False))
        for k, size in enumerate(np.linspace(10, 100, n_sets).astype(int))
    }
    p = ie.tl.score(
        adata, sets, method=method, null="matched", n_null=100, null_bins=bins, min_coverage=0, inplace=False
    )["pval"]
    per_set = (p < 0.05).mean()
    return {
        "pooled5": float((p < 0.05).to_numpy().mean()),
        "q90": float(per_set.quantile(0.9)),
        "worst5": float(per_set.max()),
    }


def _span(values: list[float], fmt: str) -> str:
    return f"{fmt.format(np.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(ROOT / "benchmarks" / "RESULTS_null_calibration.md"))
    parser.add_argument("--seeds", default="7,100,101,102,103,104,105")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("immunescape").setLevel(logging.ERROR)
    seeds = [int(s) for s in args.seeds.split(",")]
    start = time.time()
    results = {}
    for label, bins in BINNINGS.items():
        for method in METHODS:
            for seed in seeds:
                results[label, method, seed] = measure(seed, method, bins)
                print(
                    label, method, seed, {k: round(v, 4) for k, v in results[label, method, seed].items()}, flush=True
                )
    lines = [
        "# The matched null at library scale: scanpy's bins (25; aucell 50) and the default bins",
        "",
        f"Written by `benchmarks/null_calibration.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC in "
        f"{time.time() - start:.0f} s; {platform.platform()}, Python {platform.python_version()}, immunescape "
        f"{ie.__version__}, numpy {np.__version__}.",
        "",
        "Issue 17's scenario (see the script's docstring), `n_null=100`. Seeds: "
        + ", ".join(f"{s} ({SEED_ROLES.get(s, 'used for nothing else')})" for s in seeds)
        + ". Each cell: median [min-max] over the seeds. Targets from the issue: pooled 5% in [4%, 6%], 1% in "
        "[0.7%, 1.3%], worst random set <= 8%, planted found >= 90% with <= 1% false, depth |rho| < 0.1.",
        "",
        "A simulator: it shows how the null behaves where the truth is known; it is not a claim about real data.",
        "",
        "Each signature gene's stand-ins are drawn from its bin and the two beside it with probabilities ~ exp(a x "
        "mean) whose expected mean is the gene's own (tilted matching, `_null.tilted_sources`). The previous run of "
        "this script (2026-12-07 06:42, commit 67544f1), with uniform draws within the gene's own bin, gave with the "
        "default bins: worst random set ucell 0.058 [0.056-0.061], mean 0.063 [0.055-0.090], aucell 0.065 "
        "[0.056-0.101], singscore 0.057 [0.053-0.059]; depth max abs(rho) ucell 0.052 [0.045-0.090], mean 0.084 "
        "[0.047-0.149], aucell 0.094 [0.063-0.151], singscore 0.058 [0.032-0.089]; found beside 40 sets ucell 0.90 "
        "[0.87-0.99], mean 0.92 [0.85-1.00], aucell 0.87 [0.30-1.00], singscore 0.76 [0.68-0.82].",
        "",
        "Beyond every random set the p-value is the saddlepoint tail of a random set's score, computed from the "
        "genes its stand-ins are drawn from, in the cell (`_kernels/nulls.saddlepoint_tail`). `found (40 sets, "
        "n_null=10,000)` resolves p-values empirically down to 1e-4: it is what the statistic itself can find, the "
        "ceiling for any tail at n_null=100.",
        "",
        "| method | bins | pooled p<0.05 | pooled p<0.01 | worst set p<0.05 | found (13 sets) | found (40 sets) "
        "| false (40 sets) | found (40 sets, n_null=1000) | found (40 sets, n_null=10,000) | depth max abs(rho) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        for label in BINNINGS:
            rows = [results[label, method, s] for s in seeds]
            col = {k: [r[k] for r in rows] for k in rows[0]}
            lines.append(
                f"| {method} | {label} | {_span(col['pooled5'], '{:.3f}')} | {_span(col['pooled1'], '{:.4f}')} | "
                f"{_span(col['worst5'], '{:.3f}')} | {_span(col['found'], '{:.2f}')} | {_span(col['found40'], '{:.2f}')} "
                f"| {_span(col['false40'], '{:.4f}')} | {_span(col['found40_1000'], '{:.2f}')} "
                f"| {_span(col['found40_10000'], '{:.2f}') if np.isfinite(col['found40_10000']).all() else '-'} "
                f"| {_span(col['depth_rho'], '{:.3f}')} |"
            )
    lines += [
        "",
        "Per seed:",
        "",
        "| method | bins | seed | worst set | found (13) | found (40) | found (40, n_null=10,000) | depth rho |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        for label in BINNINGS:
            for s in seeds:
                r = results[label, method, s]
                lines.append(
                    f"| {method} | {label} | {s} | {r['worst5']:.3f} | {r['found']:.2f} | {r['found40']:.2f} | "
                    f"{r['found40_10000']:.2f} | {r['depth_rho']:.3f} |".replace("| nan |", "| - |")
                )
    lines += [
        "",
        "## The tail's calibration",
        "",
        f"Random signatures only: 40 per data set (10-100 genes), seeds {TAIL_SEEDS[0]}-{TAIL_SEEDS[-1]} (4 of them, "
        "100-103, are also the tests'), default bins, `n_null=100`. p-values this small come only from the tail "
        "beyond every random set. Rate / nominal, with the count:",
        "",
        "| method | p-values | p <= 1e-3 | p <= 1e-4 | p <= 1e-5 |",
        "|---|---|---|---|---|",
    ]
    for method in METHODS:
        n, counts = tail_calibration(method, TAIL_SEEDS)
        print("tail calibration", method, n, counts, flush=True)
        cells = " | ".join(f"{c / n / level:.2f} ({c})" for c, level in zip(counts, TAIL_LEVELS))
        lines.append(f"| {method} | {n:,} | {cells} |")
    lines += [
        "",
        "## On real data",
        "",
        "40 random gene sets (10-100 genes, seed 0) per data set, `n_null=100`: share of rows (cells or tumours) "
        "at p < 0.05, pooled, for the 90th-percentile set and for the worst set. Random sets on real data carry "
        "biology (a set holding a cell type's markers is rightly high there), so only the difference between the "
        "binnings is the bins' doing.",
        "",
        "| data | method | bins | pooled p<0.05 | 90th-percentile set | worst set |",
        "|---|---|---|---|---|---|",
    ]
    for data_name, adata in real_datasets().items():
        for method in METHODS:
            for label, bins in BINNINGS.items():
                r = measure_real(adata, method, bins)
                print(data_name, method, label, r, flush=True)
                lines.append(
                    f"| {data_name} | {method} | {label} | {r['pooled5']:.3f} | {r['q90']:.3f} | {r['worst5']:.3f} |"
                )
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("wrote", args.output)


if __name__ == "__main__":
    main()
