"""The main job end to end on the bundled examples (``immunescape demo``)."""

from __future__ import annotations

import logging
from pathlib import Path

from . import datasets
from .io import atomic_write_text
from .pp import coverage
from .signatures import list_signatures

logger = logging.getLogger(__name__)


def run_demo(outdir: Path) -> dict[str, Path]:
    """Run the demo into ``outdir`` and return what was written, by label."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, Path] = {}
    library = outdir / "signature_library.csv"
    atomic_write_text(library, list_signatures().to_csv())
    outputs["signature library"] = library
    logger.info("simulating a 12-patient tumour cohort ...")
    tumour = datasets.simulate_tumor(seed=0)
    for label, adata in [("pbmc68k_reduced", datasets.pbmc68k_reduced()), ("simulated tumour", tumour)]:
        table = coverage(adata, "immune_escape")
        path = outdir / f"coverage_{label.replace(' ', '_')}.csv"
        atomic_write_text(path, table.to_csv())
        outputs[f"gene coverage ({label})"] = path
    return outputs
