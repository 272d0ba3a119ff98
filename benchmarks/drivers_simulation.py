"""exclusion_drivers on simulated cohorts (issue 20): a pathway planted in the malignant cells of T-cell-poor
tumours is found, a pathway planted independently of infiltration is not.

Usage::

    python benchmarks/drivers_simulation.py -o benchmarks/RESULTS_drivers_simulation.md

Seeds 201-220 (the tests use seed 5): each a 24-patient ``simulate_tumor`` cohort (80 cells per patient)
with ``progeny_tgfb`` planted in every excluded and desert tumour and ``progeny_wnt`` planted in each
tumour with probability 0.35, independently of its context. immune_escape scored with ucell, the
tumour_intrinsic footprints with wmean, aggregated over malignant cells. The exclusion outcome is the
planted context (what a pathologist would call) and, separately, classify's call. A simulator: it shows
the method finds what is planted and not what is not; it says nothing about real tumours.
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import immunescape as ie

HERE = Path(__file__).resolve().parent
PLANTS = {"progeny_tgfb": "t_cell_poor", "progeny_wnt": "random"}


def one_seed(seed: int) -> dict[str, float]:
    cells = ie.datasets.simulate_tumor(n_samples=24, cells_per_sample=80, seed=seed, pathways=PLANTS)
    ie.tl.score(cells, "immune_escape")
    ie.tl.score(cells, "tumour_intrinsic", method="wmean", key_added="pathways")
    samples = ie.tl.aggregate(cells, "sample", celltype_key="cell_type", key=["immunescape", "pathways"])
    ie.tl.classify(samples)
    truth = cells.uns["simulation"]["truth"]
    row = {}
    for label, exclusion in (("planted context", truth["context"]), ("classify's context", None)):
        table = ie.tl.exclusion_drivers(samples, exclusion=exclusion).set_index(["pathway", "outcome"])
        for name in PLANTS:
            for outcome in ("infiltration", "exclusion"):
                if (name, outcome) in table.index:
                    hit = table.loc[(name, outcome)]
                    row[label, name, outcome, "found"] = float(hit["fdr"] < 0.05)
                    row[label, name, outcome, "rho"] = float(hit["rho"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=HERE / "RESULTS_drivers_simulation.md")
    parser.add_argument("--seeds", default="201-220")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("immunescape").setLevel(logging.ERROR)
    lo, hi = (int(x) for x in args.seeds.split("-"))
    seeds = list(range(lo, hi + 1))
    start = time.time()
    rows = []
    for seed in seeds:
        rows.append(one_seed(seed))
        print(seed, flush=True)
    lines = [
        "# exclusion_drivers on simulated cohorts: planted pathways found, independent ones not",
        "",
        f"Written by `benchmarks/drivers_simulation.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC in "
        f"{time.time() - start:.0f} s; {platform.platform()}, Python {platform.python_version()}, immunescape "
        f"{ie.__version__}. Seeds {seeds[0]}-{seeds[-1]} ({len(seeds)} cohorts; the tests use seed 5). See the "
        "script's docstring for the design. A simulator: no claim about real tumours.",
        "",
        "| exclusion labels | pathway (planted) | outcome | found at FDR 0.05 | median rho [range] |",
        "|---|---|---|---|---|",
    ]
    for label in ("planted context", "classify's context"):
        for name, how in PLANTS.items():
            for outcome in ("infiltration", "exclusion"):
                found = [r[label, name, outcome, "found"] for r in rows if (label, name, outcome, "found") in r]
                rho = [r[label, name, outcome, "rho"] for r in rows if (label, name, outcome, "rho") in r]
                if not found or (label == "classify's context" and outcome == "infiltration"):
                    continue  # infiltration does not depend on the labels: shown once
                k, n = int(sum(found)), len(found)
                lines.append(
                    f"| {label} | {name} ({how.replace('_', '-')}) | {outcome} | {k}/{n} ({k / n:.0%}) | "
                    f"{np.median(rho):+.2f} [{min(rho):+.2f}, {max(rho):+.2f}] |"
                )
    lines += [
        "",
        "The t-cell-poor pathway should be found (negative with infiltration, positive with exclusion); the "
        "independent one should be found at about the FDR level or less (its FDR is over the 18 pathways, most "
        "of them absent from the simulated genes). Against the planted labels the t-cell-poor footprint separates "
        "excluded from inflamed tumours completely, so rho is the largest a binary outcome allows (+0.87 with 8 "
        "and 8). Against classify's context it is found in few cohorts: the context model, fitted on bulk "
        "pathology, calls few simulated tumours excluded, so few tumours enter that comparison; pathologists' "
        "labels (exclusion=) are the better axis where there are any.",
        "",
    ]
    args.output.write_text("\n".join(lines))
    print(args.output)


if __name__ == "__main__":
    main()
