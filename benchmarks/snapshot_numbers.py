"""Snapshot every method's numbers on fixed data, to show that a refactor changes none of them.

Scores, null z and p of every registered method and null kind, in memory (two chunk sizes), backed
on disk and (when dask is installed) as dask blocks, on seeded sparse log-counts with up-only,
signed and weighted signatures. Writes one ``.npz``; ``--compare OLD.npz`` checks a new snapshot
against an old one bit for bit (NaN equal to NaN) and exits 1 on any difference.

Run it on the tree before and after a change::

    git worktree add /tmp/before HEAD
    PYTHONPATH=/tmp/before/src python benchmarks/snapshot_numbers.py -o /tmp/before.npz
    python benchmarks/snapshot_numbers.py -o /tmp/after.npz --compare /tmp/before.npz
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

import immunescape as ie
from immunescape.methods import get_method, method_names


def data(seed: int = 7, n_cells: int = 300, n_genes: int = 400) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    depth = rng.lognormal(0.0, 0.6, n_cells)[:, None]
    rate = rng.gamma(0.3, 2.0, n_genes)[None, :] * depth
    counts = rng.poisson(rate)
    adata = ad.AnnData(sp.csr_matrix(np.log1p(counts).astype(np.float32)))
    adata.var_names = [f"G{i}" for i in range(n_genes)]
    adata.obs_names = [f"c{i}" for i in range(n_cells)]
    return adata


def signatures(n_genes: int = 400) -> pd.DataFrame:
    """A decoupler-style table: up-only sets, a signed set and a weighted set."""
    rng = np.random.default_rng(11)
    rows = []
    for s, size in enumerate((5, 12, 30)):
        rows += [(f"up{s}", f"G{g}", 1.0) for g in rng.choice(n_genes, size, replace=False)]
    signed = rng.choice(n_genes, 20, replace=False)
    rows += [("signed", f"G{g}", 1.0 if k < 12 else -1.0) for k, g in enumerate(signed)]
    weighted = rng.choice(n_genes, 15, replace=False)
    rows += [("weighted", f"G{g}", float(w)) for g, w in zip(weighted, rng.normal(0, 1, 15).round(3))]
    return pd.DataFrame(rows, columns=["source", "target", "weight"])


def runs() -> list[tuple[str, str | None]]:
    out = []
    for name in method_names():
        for null in (None, *get_method(name).nulls):
            out.append((name, null))
    return out


def snapshot(out_path: Path) -> dict[str, np.ndarray]:
    adata, sets = data(), signatures()
    arrays: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.h5ad"
        adata.write_h5ad(path)
        for name, null in runs():
            method = get_method(name)
            params = {"max_samples": 10_000} if name == "gsva" else {}
            variants = {"memory": (adata, None), "chunks": (adata, 37)}
            if method.chunked:
                variants["backed"] = (ad.read_h5ad(path, backed="r"), 53)
                try:
                    import dask.array as da

                    lazy = adata.copy()
                    lazy.X = da.from_array(adata.X, chunks=(64, -1))
                    variants["dask"] = (lazy, None)
                except ImportError:  # pragma: no cover - dask is a test extra
                    pass
            for variant, (data_in, chunk) in variants.items():
                result = ie.tl.score(
                    data_in,
                    sets,
                    method=name,
                    null=null,
                    n_null=30,
                    inplace=False,
                    min_coverage=0,
                    chunk_size=chunk,
                    random_state=3,
                    n_jobs=2,
                    **params,
                )
                tables = result if isinstance(result, dict) else {"scores": result}
                for table_name, table in tables.items():
                    arrays[f"{name}|{null}|{variant}|{table_name}"] = table.to_numpy(np.float64)
    np.savez_compressed(out_path, **arrays)
    return arrays


def compare(new: dict[str, np.ndarray], old_path: Path) -> int:
    old = dict(np.load(old_path))
    problems = [f"missing before: {k}" for k in sorted(set(new) - set(old))]
    problems += [f"missing now: {k}" for k in sorted(set(old) - set(new))]
    for key in sorted(set(new) & set(old)):
        a, b = new[key], old[key]
        if a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
            worst = np.nanmax(np.abs(a - b)) if a.shape == b.shape else "shape"
            problems.append(f"differs: {key} (largest difference {worst})")
    for line in problems:
        print(line)
    print(f"{len(set(new) & set(old))} arrays compared, {len(problems)} problems")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--compare", type=Path, help="an earlier snapshot: exit 1 unless every array is identical")
    args = parser.parse_args(argv)
    arrays = snapshot(args.output)
    print(f"{len(arrays)} arrays written to {args.output}")
    return compare(arrays, args.compare) if args.compare else 0


if __name__ == "__main__":
    sys.exit(main())
