"""The main job end to end on the bundled examples (``immunescape demo``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from . import datasets
from ._errors import ImmunescapeIOError
from .io import all_or_nothing, atomic_path, atomic_write_text
from .pp import coverage
from .signatures import list_signatures
from .tl import aggregate, classify, score

logger = logging.getLogger(__name__)


RECOVERY_CSV = "tumour_mechanism_recovery.csv"


def mechanism_recovery(calls: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per mechanism: planted, called, recall, precision, and which samples were missed or falsely called."""
    from .tl import MECHANISMS

    rows = []
    for m in MECHANISMS:
        called = calls[m].eq(True)
        planted = truth[m].astype(bool)
        hits = called & planted
        rows.append(
            {
                "mechanism": m,
                "planted": int(planted.sum()),
                "called": int(called.sum()),
                "found": int(hits.sum()),
                "recall": hits.sum() / planted.sum() if planted.any() else float("nan"),
                "precision": hits.sum() / called.sum() if called.any() else float("nan"),
                "missed": " ".join(calls.index[planted & ~called]),
                "false_calls": " ".join(calls.index[called & ~planted]),
            }
        )
    return pd.DataFrame(rows).set_index("mechanism")


def run_demo(outdir: Path, *, n_samples: int = 12, cells_per_sample: int = 400) -> dict[str, Path]:
    """Score, aggregate and classify the bundled examples; write tables, plots and an HTML report to ``outdir``.

    1. scanpy's real PBMC data (pbmc68k_reduced, ``.raw``): UCell scores of the library's immune
       signatures, and the gene coverage of each signature;
    2. a simulated 12-patient tumour cohort with planted escape phenotypes: UCell scores for every
       cell, per-patient features (:func:`immunescape.tl.aggregate`), immune context and escape
       mechanisms with their reasons (:func:`immunescape.tl.classify`) next to the planted truth,
       and the cell- and patient-level ``.h5ad`` files.

    Returns the written files by label.
    """
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise ImmunescapeIOError(f"{str(outdir)!r} is a file; give the demo a folder (it is created if missing).")
    created = not outdir.exists()
    outdir.mkdir(parents=True, exist_ok=True)
    try:
        with all_or_nothing():  # every file of the demo appears, or none
            return _write_demo(outdir, n_samples, cells_per_sample)
    except BaseException:
        if created and not any(outdir.iterdir()):
            outdir.rmdir()
        raise


def _write_demo(outdir: Path, n_samples: int, cells_per_sample: int) -> dict[str, Path]:
    outputs: dict[str, Path] = {}

    def write_csv(label: str, name: str, frame) -> None:
        path = outdir / name
        atomic_write_text(path, frame.to_csv())
        outputs[label] = path

    write_csv("signature library", "signature_library.csv", list_signatures())

    logger.info("scoring scanpy's pbmc68k_reduced (700 real PBMCs) ...")
    pbmc = datasets.pbmc68k_reduced()
    immune = "immune_escape,bagaev2021_T_cells,bagaev2021_NK_cells,bagaev2021_B_cells,macrophages_danaher2017"
    write_csv("gene coverage (pbmc68k_reduced)", "coverage_pbmc68k.csv", coverage(pbmc, immune))
    # pbmc68k_reduced keeps only 765 variable genes: signatures it barely covers are left out (with a warning)
    pbmc_scores = score(pbmc, immune, method="ucell", min_coverage=0.3, low_coverage="drop", inplace=False)
    pbmc_scores.insert(0, "cell_type", pbmc.obs["bulk_labels"].astype(str))
    write_csv("UCell scores (pbmc68k_reduced)", "scores_pbmc68k.csv", pbmc_scores)
    write_csv(
        "mean score per PBMC type", "scores_pbmc68k_by_celltype.csv", pbmc_scores.groupby("cell_type").mean().round(4)
    )

    logger.info("simulating, scoring and classifying a %d-patient tumour cohort ...", n_samples)
    tumour = datasets.simulate_tumor(n_samples=n_samples, cells_per_sample=cells_per_sample, seed=0)
    write_csv("gene coverage (simulated tumour)", "coverage_tumour.csv", coverage(tumour, "immune_escape"))
    score(tumour, "immune_escape,bagaev2021", method="ucell")
    write_csv("UCell scores (simulated tumour)", "scores_tumour.csv", tumour.obsm["immunescape"])
    samples = aggregate(tumour, "sample", celltype_key="cell_type")
    calls = classify(samples)
    write_csv("per-patient immune context and escape mechanisms, with reasons", "tumour_calls.csv", calls)
    truth = tumour.uns["simulation"]["truth"]
    summary = calls[["immune_context", "mechanisms", "bagaev_class"]].join(truth.add_prefix("planted_"))
    write_csv("calls next to the planted truth", "tumour_calls_vs_truth.csv", summary)
    write_csv(
        "recall and precision per planted mechanism", RECOVERY_CSV, mechanism_recovery(calls, truth.loc[calls.index])
    )
    contexts = pd.crosstab(truth.loc[calls.index, "context"], calls["immune_context"])
    write_csv("planted context (rows) vs the context model's call (columns)", "tumour_context_vs_truth.csv", contexts)

    import matplotlib

    matplotlib.use("Agg")
    from . import pl
    from .report import write_report

    samples.obs["immune context"] = calls["immune_context"]
    plots = {
        "heatmap of patient features": (
            "tumour_heatmap.png",
            lambda p: pl.heatmap(samples, calls=calls, cluster=True, save=p, show=False),
        ),
        "escape profile of patient P01": (
            "tumour_profile_P01.png",
            lambda p: pl.escape_profile(calls, "P01", save=p, show=False),
        ),
        "CD8 T-effector by immune context": (
            "tumour_compare.png",
            lambda p: pl.compare(samples, "cd8_t_effector_mariathasan2018", "immune context", save=p, show=False),
        ),
        "NK signature by PBMC type": (
            "pbmc_scores.png",
            lambda p: pl.scores(pbmc_scored, "bagaev2021_NK_cells", groupby="bulk_labels", save=p, show=False),
        ),
    }
    pbmc_scored = pbmc.copy()
    pbmc_scored.obsm["immunescape"] = pbmc_scores.drop(columns="cell_type")
    import matplotlib.pyplot as plt

    for label, (name, draw) in plots.items():
        draw((outdir / name).resolve())  # a path as given, never into scanpy's figdir (also for -o .)
        plt.close("all")
        outputs[label] = outdir / name
    report = write_report(
        outdir / "tumour_report.html",
        samples,
        calls,
        coverage=coverage(tumour, "immune_escape"),
        parameters={"data": "simulated 12-patient cohort (seed 0)", "method": "ucell"},
        overwrite=True,
    )
    outputs["HTML report"] = report
    for label, name, adata in (
        ("scored tumour cells", "tumour_cells.h5ad", tumour),
        ("patient-level AnnData", "tumour_samples.h5ad", samples),
    ):
        path = outdir / name
        with atomic_path(path) as tmp:
            adata.write_h5ad(tmp)
        outputs[label] = path
    return outputs
