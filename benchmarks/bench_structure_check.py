"""Cost of the sparse structure check (issue 22) beside the scoring it protects, in one run.

Every score call checks the CSR arrays before a kernel sees them (indptr monotone and consistent,
indices within [0, n_vars)). This times that check alone and whole scoring runs (ucell, wmean,
mean) on the same seeded 10x-like matrix, and appends a section to benchmarks/RESULTS.md.

Usage::

    python benchmarks/bench_structure_check.py [--cells 100000]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402


def best_of(fn, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100_000)
    args = parser.parse_args()

    import anndata as ad
    import pandas as pd

    import immunescape as ie
    from immunescape._chunks import check_sparse

    matrix = common.make_cells(args.cells)
    adata = ad.AnnData(matrix, var=pd.DataFrame(index=common.gene_names()))
    sets = common.make_signatures()
    check = best_of(lambda: check_sparse(matrix))
    rows = []
    for method in ("ucell", "wmean", "mean"):
        ie.tl.score(adata[:200].copy(), sets, method=method, inplace=False, min_coverage=0)  # compile
        seconds = best_of(
            lambda method=method: ie.tl.score(
                adata, sets, method=method, inplace=False, min_coverage=0, progress=False
            ),
            runs=2,
        )
        rows.append((method, seconds))
    info = common.machine()
    lines = [
        "",
        f"## Structure check (issue 22): written by `benchmarks/bench_structure_check.py` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"{args.cells:,} cells x {matrix.shape[1]:,} genes, {matrix.nnz:,} stored values (CSR float32), 20 signatures; "
        f"{info.get('cpus', '?')} cores. The check (indptr length, start, monotone, end; min and max of the used "
        "indices) runs once per score call, before any kernel (dask and backed: once per block); best of 5 (check) and "
        "of 2 (scoring) in the same process.",
        "",
        f"check alone: {check:.3f} s",
        "",
        "| method | scoring s (check included) | check / scoring |",
        "|---|---|---|",
        *[f"| {m} | {s:.2f} | {check / s:.1%} |" for m, s in rows],
        "",
    ]
    with open(HERE / "RESULTS.md", "a") as handle:
        handle.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
