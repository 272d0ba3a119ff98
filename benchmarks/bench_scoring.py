"""Time immunescape's scoring methods and the peers side by side; write benchmarks/RESULTS.md.

Usage::

    pip install ".[test]" psutil
    python benchmarks/bench_scoring.py            # bulk, 2k, 10k and 100k cells (about 30 minutes with the peers)
    python benchmarks/bench_scoring.py --quick    # bulk and 10k only
    python benchmarks/bench_scoring.py --datasets cells100k --only ours_mean bound_spmm -o RESULTS_part.md

Each measurement runs in a fresh process (see common.run_child). Warm-up: two calls on the first
1,000 rows (JIT compilation, numba cache loading, worker start-up show there), then the full call,
median of 3 when the first full run took under 20 s. Ratios compare numbers from this same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

OURS = ["mean", "ucell", "aucell", "ssgsea", "singscore", "wmean", "zmean"]
LINEAR = ["mean", "wmean", "zmean"]  # methods with the analytic null
N_NULL = 100  # random gene sets per signature in the null_* tasks (issue 8: at most 3x scoring alone)
PEERS = [
    "scanpy_score_genes_x20",
    "pyucell",
    "decoupler_aucell",
    "decoupler_ulm",
    "decoupler_zscore",
    "decoupler_wmean",
]
# bound_spmm: X @ W in float32 with fastmath (the fastest a matrix product can be); bound_spmm64: the same
# in float64 without reassociation, the arithmetic the linear methods keep to stay equal to their peers;
# bound_spmm64c: bound_spmm64 reading only W's weighted rows (the unweighted genes share one zero row,
# the layout the linear methods' dense kernel reads)
# bound_rank: a per-row argsort of the non-zeros (ordinal ranks, no tie averaging); bound_count: the same
# rows ranked by counting their distinct values (issue 21's histogram ranking: the rank kernels' own
# ranks._value_groups, ties averaged; rows with more than ranks.MAX_GROUPS values are sorted instead)
LOWER_BOUNDS = ["bound_spmm", "bound_spmm64", "bound_spmm64c", "bound_rank", "bound_count"]
# (ours, peer it is compared with, target speed-up at 100k cells)
TARGETS = [
    ("mean", "scanpy_score_genes_x20", 50),
    ("ucell", "pyucell", 5),
    ("aucell", "decoupler_aucell", 10),
    ("wmean", "decoupler_ulm", 20),
]
BOUND_OF = {
    "mean": "bound_spmm",
    "wmean": "bound_spmm",
    "zmean": "bound_spmm",
    "ucell": "bound_rank",
    "aucell": "bound_rank",
    "ssgsea": "bound_rank",
    "singscore": "bound_rank",
}


# --------------------------------------------------------------------------------- child side
def _adata(dataset: str):
    import anndata as ad
    import pandas as pd

    X = common.load_dataset(dataset)
    return ad.AnnData(
        X,
        var=pd.DataFrame(index=common.gene_names(X.shape[1])),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(X.shape[0])]),
    )


def _task(name: str):
    """Return a function adata -> None that runs one measurement."""
    sigs = common.make_library_sized_signatures() if name.startswith("lib") else common.make_signatures()
    name = name.removeprefix("lib")
    if name.startswith("ours_"):
        import immunescape as ie

        method = name.removeprefix("ours_")
        return lambda a: ie.tl.score(a, sigs, method=method, inplace=False, min_coverage=0)
    if name.startswith(("null_", "analytic_")):
        import immunescape as ie

        kind, method = name.split("_", 1)
        null = "matched" if kind == "null" else "analytic"
        return lambda a: ie.tl.score(a, sigs, method=method, inplace=False, min_coverage=0, null=null, n_null=N_NULL)
    if name == "scanpy_score_genes_x20":
        import scanpy as sc

        def run(a):
            for k, genes in sigs.items():
                sc.tl.score_genes(a, genes, score_name=k)

        return run
    if name == "pyucell":
        import pyucell

        return lambda a: pyucell.compute_ucell_scores(a, sigs)
    if name.startswith("decoupler_"):
        import decoupler as dc
        import pandas as pd

        net = pd.DataFrame([(k, g) for k, v in sigs.items() for g in v], columns=["source", "target"])
        net["weight"] = 1.0
        which = name.removeprefix("decoupler_")
        if which == "aucell":
            return lambda a: dc.mt.aucell(a, net)
        if which == "wmean":
            return lambda a: dc.mt.waggr(a, net, fun="wmean", times=0, bsize=10_000)
        return lambda a: getattr(dc.mt, which)(a, net, bsize=10_000)
    if name == "gseapy_ssgsea":
        import gseapy
        import pandas as pd
        import scipy.sparse as sp

        def run(a):
            X = a.X.toarray() if sp.issparse(a.X) else a.X
            frame = pd.DataFrame(X.T, index=a.var_names, columns=a.obs_names)
            gseapy.ssgsea(frame, sigs, min_size=5, max_size=1000, threads=2, outdir=None)

        return run
    if name in LOWER_BOUNDS:
        return _bound(name, sigs)
    raise SystemExit(f"unknown task {name}")


def _bound(name, sigs):
    """Physical limits: one numba pass X @ W (float32 fastmath, and float64), and a per-row argsort rank
    of the non-zeros."""
    import numpy as np
    import scipy.sparse as sp
    from numba import njit, prange

    @njit(parallel=True, fastmath=True)
    def spmm(data, indices, indptr, W, out):
        for i in prange(indptr.size - 1):
            for j in range(indptr[i], indptr[i + 1]):
                v = data[j]
                for s in range(W.shape[1]):
                    out[i, s] += v * W[indices[j], s]

    @njit(parallel=True)
    def rank_rows(data, indptr, out):
        for i in prange(indptr.size - 1):
            a, b = indptr[i], indptr[i + 1]
            order = np.argsort(-data[a:b])
            for t in range(b - a):
                out[a + order[t]] = t + 1

    from immunescape._kernels.ranks import _value_groups, value_table

    @njit(parallel=True)
    def count_rows(data, indptr, out, n_blocks):
        n_rows = indptr.size - 1
        for b in prange(n_blocks):
            table = value_table()
            vals = np.empty(np.diff(indptr).max())
            group_of = np.empty(vals.size, np.int64)
            for i in range(b * n_rows // n_blocks, (b + 1) * n_rows // n_blocks):
                a, c = indptr[i], indptr[i + 1] - indptr[i]
                for t in range(c):
                    vals[t] = data[a + t]
                d = _value_groups(vals, c, i + 1, table, group_of)
                if d >= 0:  # descending average rank of each group: the entries above it, then its middle
                    size, start = table[4], table[5]
                    for t in range(c):
                        g = group_of[t]
                        above = c - start[g] - size[g]
                        out[a + t] = above + (size[g] + 1) / 2.0
                else:
                    order = np.argsort(-vals[:c])
                    for t in range(c):
                        out[a + order[t]] = t + 1

    names = {g: i for i, g in enumerate(common.gene_names())}
    W = np.zeros((common.N_GENES, len(sigs)), np.float32)
    for s, genes in enumerate(sigs.values()):
        W[[names[g] for g in genes], s] = 1.0 / len(genes)

    @njit(parallel=True)
    def spmm64(data, indices, indptr, W, out):
        for i in prange(indptr.size - 1):
            for j in range(indptr[i], indptr[i + 1]):
                v = np.float64(data[j])
                for s in range(W.shape[1]):
                    out[i, s] += v * W[indices[j], s]

    W64 = W.astype(np.float64)

    @njit(parallel=True)
    def spmm64c(data, indices, indptr, row_of, W, out):
        for i in prange(indptr.size - 1):
            for j in range(indptr[i], indptr[i + 1]):
                v = np.float64(data[j])
                w = row_of[indices[j]]
                for s in range(W.shape[1]):
                    out[i, s] += v * W[w, s]

    weighted = np.flatnonzero(W64.any(axis=1))
    row_of = np.zeros(W64.shape[0], np.int64)
    row_of[weighted] = np.arange(1, weighted.size + 1)
    W64c = np.vstack([np.zeros((1, W64.shape[1])), W64[weighted]])

    def run(a):
        X = a.X if sp.issparse(a.X) else sp.csr_matrix(a.X)
        if name == "bound_spmm":
            spmm(X.data, X.indices, X.indptr, W, np.zeros((X.shape[0], W.shape[1]), np.float32))
        elif name == "bound_spmm64":
            spmm64(X.data, X.indices, X.indptr, W64, np.zeros((X.shape[0], W.shape[1])))
        elif name == "bound_spmm64c":
            spmm64c(X.data, X.indices, X.indptr, row_of, W64c, np.zeros((X.shape[0], W.shape[1])))
        elif name == "bound_count":
            count_rows(X.data, X.indptr, np.empty(X.data.size), 64)
        else:
            rank_rows(X.data, X.indptr, np.empty(X.data.size, np.int32))

    return run


def child(task: str, dataset: str) -> None:
    import psutil

    adata = _adata(dataset)
    rss_loaded = psutil.Process().memory_info().rss / 2**30
    fn = _task(task)
    small = adata[: min(1000, adata.n_obs)].copy()
    warm = []
    for _ in range(2):
        t = time.perf_counter()
        fn(small.copy())
        warm.append(time.perf_counter() - t)
    times = []
    for _ in range(3):
        target = adata if not task.startswith(("scanpy", "pyucell", "decoupler")) else adata.copy()
        t = time.perf_counter()
        fn(target)
        times.append(time.perf_counter() - t)
        if times[0] >= 20:
            break
    print(
        json.dumps(
            {
                "seconds": statistics.median(times),
                "runs": len(times),
                "warmup": warm,
                "rss_after_load_gib": rss_loaded,
                "matrix_gib": _matrix_gib(adata.X),
                "shape": list(adata.shape),
            }
        )
    )


def _matrix_gib(X) -> float:
    import scipy.sparse as sp

    if sp.issparse(X):
        return (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 2**30
    return X.nbytes / 2**30


# -------------------------------------------------------------------------------- parent side
def plan(quick: bool, peers: bool):
    runs = [
        (
            "bulk",
            [f"ours_{m}" for m in OURS]
            + (
                ["scanpy_score_genes_x20", "pyucell", "decoupler_aucell", "decoupler_ulm", "gseapy_ssgsea"]
                if peers
                else []
            ),
        )
    ]
    runs.append(("cells2k", ["ours_ssgsea"] + (["gseapy_ssgsea"] if peers else [])))
    sizes = ["cells10k"] if quick else ["cells10k", "cells100k"]
    for size in sizes:
        analytic = [f"analytic_{m}" for m in LINEAR]
        library_sized = (
            [f"lib{kind}_{m}" for m in OURS for kind in ("ours", "null")] + [f"lib{t}" for t in analytic]
            if size == "cells100k"
            else []
        )
        runs.append(
            (
                size,
                [f"ours_{m}" for m in OURS]
                + [f"null_{m}" for m in OURS]
                + analytic
                + library_sized
                + (PEERS if peers else [])
                + LOWER_BOUNDS,
            )
        )
    if not quick:  # issue 21's largest size: the engine against its bounds only (peers would take hours)
        runs.append(("cells500k", [f"ours_{m}" for m in OURS] + LOWER_BOUNDS))
    return runs


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in (
        "immunescape",
        "numpy",
        "scipy",
        "numba",
        "anndata",
        "scanpy",
        "pandas",
        "decoupler",
        "pyucell",
        "gseapy",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "-"
    return out


def write_results(results: list[dict], path: Path) -> None:
    lines = [
        "# Benchmark results: scoring",
        "",
        f"Written by `benchmarks/bench_scoring.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
        "Every row ran in its own process in the same session; compare ratios, not absolute seconds, across machines.",
        "",
        "## Machine and versions",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in common.machine().items()]
    lines += [
        "- " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        "",
        "Data: seeded 10x-like log1p(CP10k) CSR float32, 20,000 genes, ~7% non-zero (benchmarks/common.py); bulk: dense "
        "500 x 20,000 log1p(CPM). 20 signatures of 10-200 genes. `peak RSS` is the whole process tree; `extra` is peak "
        "minus "
        "the RSS after loading the data, as a fraction of the matrix size.",
        "",
        "## All measurements",
        "",
        "| data | task | status | seconds | runs | warm-up 1st / 2nd s | peak RSS GiB | extra / matrix |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.get("status") != "ok":
            lines.append(
                f"| {r['dataset']} | {r['task']} | {r['status']} | - | - | - | {r.get('peak_rss_gib', 0):.2f} | - |"
            )
            continue
        extra = (r["peak_rss_gib"] - r["rss_after_load_gib"]) / r["matrix_gib"] if r["matrix_gib"] else float("nan")
        lines.append(
            f"| {r['dataset']} | {r['task']} | ok | {r['seconds']:.3g} | {r['runs']} | {r['warmup'][0]:.2f} / {r['warmup'][1]:.2f} "
            f"| {r['peak_rss_gib']:.2f} | {extra:+.0%} |"
        )
    by = {(r["dataset"], r["task"]): r for r in results if r.get("status") == "ok"}
    lines += [
        "",
        "## Targets (issue 3), ratios from this run",
        "",
        "| data | ours | peer | peer s | ours s | speed-up | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dataset in ("cells10k", "cells100k", "cells500k"):
        for method, peer, target in TARGETS:
            o, p = by.get((dataset, f"ours_{method}")), by.get((dataset, peer))
            if o and p:
                ratio = p["seconds"] / o["seconds"]
                lines.append(
                    f"| {dataset} | {method} | {peer} | {p['seconds']:.3g} | {o['seconds']:.3g} | {ratio:.1f}x | {target}x "
                    "| "
                    f"{'yes' if ratio >= target else 'no'} |"
                )
    lines += [
        "",
        "Lower bounds: one pass of the kernel alone, no validation or gene statistics. The linear methods are also "
        "compared with `bound_spmm64`, X @ W in the float64 arithmetic they keep (mean adds float64 products in row "
        "order; scanpy adds each cell's genes in float32, and the two differ by up to 4e-7), "
        "and with `bound_spmm64c`, the same reading only W's weighted rows (the genes without a weight share one zero "
        "row, which stays in cache): the layout their dense kernel reads. Here W holds the 20 signatures' genes "
        "(2,100 rows); mean's W also holds its control genes (about 8,000 rows), so `bound_spmm64c` is a tighter "
        "bound than the work mean must do.",
        "",
        "| data | ours | lower bound | bound s | ours s | ours / bound | within 1.5x |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset in ("cells10k", "cells100k", "cells500k"):
        for method in OURS:
            bounds = [BOUND_OF[method]] + (
                ["bound_spmm64", "bound_spmm64c"] if BOUND_OF[method] == "bound_spmm" else []
            )
            for bound in bounds:
                o, b = by.get((dataset, f"ours_{method}")), by.get((dataset, bound))
                if o and b:
                    ratio = o["seconds"] / b["seconds"]
                    lines.append(
                        f"| {dataset} | {method} | {bound} | {b['seconds']:.3g} | {o['seconds']:.3g} | {ratio:.2f} | "
                        f"{'yes' if ratio <= 1.5 else 'no'} |"
                    )
    lines += [
        "",
        "Ranks by counting (issue 21): `bound_count` ranks the same non-zeros as `bound_rank` by counting each row's "
        "distinct values (the rank kernels' `ranks._value_groups`, ties averaged - more than the sort bound gives), "
        "sorting only rows with more than 256 distinct values. Target: at least 2x faster than the sort bound. The "
        "methods use it (UCell, singscore and ssGSEA for their average ranks; AUCell to radix-sort its ordinal ranks); "
        "what they spend beyond it is their own per-row work (the set-gene loops; ssGSEA's walk over the union of "
        "set genes; AUCell's zeros within its top n_up).",
        "",
        "| data | histogram ranking s | sort bound s | sort / histogram | at least 2x |",
        "|---|---|---|---|---|",
    ]
    for dataset in ("cells10k", "cells100k", "cells500k"):
        c, r = by.get((dataset, "bound_count")), by.get((dataset, "bound_rank"))
        if c and r:
            gain = r["seconds"] / c["seconds"]
            lines.append(
                f"| {dataset} | {c['seconds']:.3g} | {r['seconds']:.3g} | {gain:.2f} | {'yes' if gain >= 2 else 'no'} |"
            )
    lines += [
        "",
        f"## Significance (issue 8): scoring with a null vs scoring alone (matched: n_null={N_NULL})",
        "",
        "Default null bins (200 quantiles of mean expression, at least 20 genes each). Beyond every random set, the "
        "saddlepoint tail. Target: at most 3x scoring alone at 100k cells. `bench` signatures: the 20 "
        "above (10-200 genes, 2,100 in all); `library-sized`: 20 signatures with the sizes of the built-in immune_escape "
        "collection (median 10 genes). The matched null's extra cost grows with the cells' non-zeros times the signatures' "
        "total genes, so it is relatively largest for the cheapest methods (wmean, zmean, mean); those also have the "
        "analytic null (exact moments, no sets drawn).",
        "",
        "| data | signatures | method | null | scoring s | with null s | ratio | within 3x |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dataset in ("cells10k", "cells100k", "cells500k"):
        for label, prefix in (("bench", ""), ("library-sized", "lib")):
            for method in OURS:
                for null, task in (("matched", "null"), ("analytic", "analytic")):
                    o, n = by.get((dataset, f"{prefix}ours_{method}")), by.get((dataset, f"{prefix}{task}_{method}"))
                    if o and n:
                        ratio = n["seconds"] / o["seconds"]
                        lines.append(
                            f"| {dataset} | {label} | {method} | {null} | {o['seconds']:.3g} | {n['seconds']:.3g} | "
                            f"{ratio:.2f} | {'yes' if ratio <= 3 else 'no'} |"
                        )
    o, g = by.get(("cells2k", "ours_ssgsea")), by.get(("cells2k", "gseapy_ssgsea"))
    if o and g:
        lines += [
            "",
            (
                f"ssGSEA on 2,000 cells: gseapy {g['seconds']:.3g} s, ours {o['seconds']:.3g} s "
                f"({g['seconds'] / o['seconds']:.0f}x)."
            ),
        ]
    lines += ["", "## Raw results", "", "```json", json.dumps(results, indent=1), "```", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("TASK", "DATASET"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="bulk and 10k cells only")
    parser.add_argument("--no-peers", action="store_true", help="time only immunescape and the lower bounds")
    parser.add_argument(
        "--only", nargs="+", metavar="TASK", help="run only these tasks (e.g. ours_mean scanpy_score_genes_x20)"
    )
    parser.add_argument("--datasets", nargs="+", metavar="DATA", help="run only these data sets (e.g. cells100k)")
    parser.add_argument("-o", "--output", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    results = []
    for dataset, tasks in plan(args.quick, not args.no_peers):
        if args.datasets and dataset not in args.datasets:
            continue
        tasks = [t for t in tasks if not args.only or t in args.only]
        if not tasks:
            continue
        common.load_dataset(dataset)  # generate once, outside the timed children
        for task in tasks:
            r = common.run_child(Path(__file__), ["--child", task, dataset])
            r.update(dataset=dataset, task=task)
            results.append(r)
            print(
                f"{dataset:10s} {task:28s} {r.get('status')} {r.get('seconds', float('nan')):.3f} s peak {r['peak_rss_gib']:.2f} "
                "GiB",
                flush=True,
            )
    write_results(results, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
