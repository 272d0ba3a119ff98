"""Time two source trees of immunescape side by side (a refactor's speed check); write a markdown table.

Usage::

    git worktree add /tmp/before <commit before the change>
    python benchmarks/bench_trees.py --before /tmp/before/src --after src -o benchmarks/RESULTS_trees.md

Every method alone and with its nulls (matched, n_null=100; analytic for the linear methods) scores
the 100k-cell benchmark data (benchmarks/common.py) with the 20 bench signatures. Each measurement
runs in a fresh process with ``PYTHONPATH`` set to one tree: two warm-up calls on 1,000 rows (JIT
compilation, cache loading), then the median of ``--repeats`` full calls. The trees alternate
measurement by measurement, so drifting machine load hits both alike; compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

METHODS = ["mean", "ucell", "aucell", "ssgsea", "singscore", "wmean", "zmean"]
LINEAR = {"mean", "wmean", "zmean"}


def tasks() -> list[tuple[str, str | None]]:
    out = []
    for method in METHODS:
        out += [(method, None), (method, "matched")]
        if method in LINEAR:
            out.append((method, "analytic"))
    return out


def child(method: str, null: str | None, dataset: str, repeats: int) -> None:
    import anndata as ad

    import immunescape as ie

    X = common.load_dataset(dataset)
    adata = ad.AnnData(X)
    adata.var_names = common.gene_names(X.shape[1])
    sigs = common.make_signatures(X.shape[1])
    kwargs = {"method": method, "inplace": False, "min_coverage": 0, "progress": False, "null": null, "n_null": 100}
    for _ in range(2):
        ie.tl.score(adata[:1000].copy(), sigs, **kwargs)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        ie.tl.score(adata, sigs, **kwargs)
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"seconds": statistics.median(seconds), "runs": seconds, "module": ie.__file__}))


def measure(tree: Path, method: str, null: str | None, dataset: str, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    args = [sys.executable, __file__, "--child", method, str(null), dataset, str(repeats)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        return {"status": "failed", "error": done.stderr[-500:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not result["module"].startswith(str(tree.resolve())):
        raise RuntimeError(f"the child imported {result['module']}, not the tree {tree}")
    return {"status": "ok", **result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="the src/ folder of the tree before the change")
    parser.add_argument("--after", type=Path, default=HERE.parent / "src")
    parser.add_argument("--dataset", default="cells100k", choices=["cells10k", "cells100k"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--nulls", default="none,matched,analytic", help="which tasks: comma-separated of none, matched, analytic"
    )
    parser.add_argument("--methods", default=",".join(METHODS), help="which methods: comma-separated")
    parser.add_argument("-o", "--output", type=Path, default=HERE / "RESULTS_trees.md")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        method, null, dataset, repeats = args.child
        child(method, None if null == "None" else null, dataset, int(repeats))
        return 0
    if args.before is None:
        parser.error("--before is required")
    common.load_dataset(args.dataset)  # generated once, before any timing
    rows = []
    wanted = set(args.nulls.split(","))
    methods = set(args.methods.split(","))
    for method, null in [t for t in tasks() if (t[1] or "none") in wanted and t[0] in methods]:
        before = measure(args.before, method, null, args.dataset, args.repeats)
        after = measure(args.after, method, null, args.dataset, args.repeats)
        ratio = after["seconds"] / before["seconds"] if before["status"] == after["status"] == "ok" else float("nan")
        rows.append(
            (method, null or "-", before.get("seconds", float("nan")), after.get("seconds", float("nan")), ratio)
        )
        print(f"{method:10s} {null or '-':9s} before {rows[-1][2]:.3f} s  after {rows[-1][3]:.3f} s  ratio {ratio:.3f}")
    lines = [
        "# Two source trees, same run",
        "",
        f"Written by `benchmarks/bench_trees.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: "
        f"`{args.before}` (before) against `{args.after}` (after), {args.dataset}, 20 bench signatures, "
        f"median of {args.repeats} calls after two warm-up calls, each measurement in a fresh process, "
        "trees alternating. Ratio = after / before (below 1: the change is faster).",
        "",
        "- " + ", ".join(f"{k} {v}" for k, v in common.machine().items()),
        "",
        "| method | null | before (s) | after (s) | ratio |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {m} | {n} | {b:.3f} | {a:.3f} | {r:.3f} |" for m, n, b, a, r in rows]
    ratios = [r for *_, r in rows if r == r]
    lines += ["", f"Geometric mean ratio: {statistics.geometric_mean(ratios):.3f} over {len(ratios)} measurements."]
    args.output.write_text("\n".join(lines) + "\n")
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
