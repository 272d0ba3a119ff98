"""X @ W with W sparse by gene or dense: which is faster, and does the cost model pick it? Writes
benchmarks/RESULTS_linear_layout.md.

Usage::

    python benchmarks/bench_linear_layout.py            # 30,000 of the 100k benchmark cells

The linear methods (mean, wmean, zmean) score ``X @ W``. Their kernel reads W either sparse by gene
(``linear.csr_dot``: a gene's few weights, a loop whose length varies gene to gene) or dense
(``linear.csr_dot_dense``: each row's weighted values gathered without a branch, then every
signature's weight for each of them, vectorised). Both give
bit-identical scores; ``methods.common.dense_weights_are_faster`` chooses. This script times both on
a grid of signature counts and weights per gene, on the same rows in the same process (the minimum
of 3 calls after a warm-up), and reports whether the model's choice was the faster one.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

GRID_SIGNATURES = (5, 10, 20, 30, 50, 100)
GRID_WEIGHTS_PER_SIGNATURE = (100, 500, 1000, 2000)


def best_of(fn, *args, repeats: int = 3) -> float:
    fn(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=30_000)
    parser.add_argument("-o", "--output", default=str(HERE / "RESULTS_linear_layout.md"))
    args = parser.parse_args()

    import numba

    from immunescape._kernels import linear
    from immunescape._kernels.types import CsrRows
    from immunescape.methods.common import LinearWeights, dense_weights_are_faster

    X = common.load_dataset("cells100k")[: args.cells].tocsr()
    n, n_genes = X.shape
    rows = CsrRows(X.data, X.indices, X.indptr.astype(np.int64), 0, n)
    n_blocks = 8 * numba.get_num_threads()
    lines = []
    agree = 0
    for n_sig in GRID_SIGNATURES:
        for per_sig in GRID_WEIGHTS_PER_SIGNATURE:
            W = sp.random(n_genes, n_sig, density=per_sig / n_genes, format="csr", random_state=n_sig + per_sig)
            w_ptr, w_col = W.indptr.astype(np.int64), W.indices.astype(np.int64)
            row_of, dense = LinearWeights(w_ptr, w_col, W.data, n_sig).dense()  # W's weighted rows and a zero row
            out_sparse, out_dense = np.empty((n, n_sig)), np.empty((n, n_sig))
            t_sparse = best_of(linear.csr_dot, rows, w_ptr, w_col, W.data, n_sig, n_blocks, out_sparse)
            t_dense = best_of(linear.csr_dot_dense, rows, row_of, dense, n_blocks, out_dense)
            chosen = (
                "dense"
                if dense_weights_are_faster(n_sig, W.nnz, n_genes, np.count_nonzero(np.diff(w_ptr)))
                else "sparse"
            )
            faster = "dense" if t_dense < t_sparse else "sparse"
            agree += chosen == faster
            lost = max(t_sparse, t_dense) / min(t_sparse, t_dense) if chosen != faster else 1.0
            lines.append(
                f"| {n_sig} | {W.nnz / n_genes:.2f} | {t_sparse:.3f} | {t_dense:.3f} | {chosen} | {faster} | "
                f"{lost:.2f} | {'yes' if np.array_equal(out_sparse, out_dense) else 'NO'} |"
            )
            print(lines[-1], flush=True)
    machine = common.machine()
    text = [
        "# X @ W: sparse-by-gene or dense weights",
        "",
        f"Written by `benchmarks/bench_linear_layout.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"{n:,} cells x {n_genes:,} genes of the benchmark data ({X.nnz / n:,.0f} stored values per cell), "
        "random W (seeded). Seconds are the minimum of 3 calls in this one process.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
        "",
        "| signatures | weights per gene | sparse s | dense s | model chose | faster | "
        "time lost by the choice | bit-identical |",
        "|---|---|---|---|---|---|---|---|",
        *lines,
        "",
        f"The model chose the faster layout in {agree} of {len(lines)} cases; 'time lost' is the chosen layout's "
        "time over the faster one's where it chose wrong.",
        "",
    ]
    Path(args.output).write_text("\n".join(text))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
