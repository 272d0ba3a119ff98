"""Shared benchmark helpers: seeded 10x-like data (cached outside git) and child-process measurement.

Every measurement runs in its own Python process; the parent samples the resident memory of the
child and its children every 50 ms, so peak RSS and wall time come from the same run.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("IMMUNESCAPE_BENCH_CACHE", HERE / "_cache"))
N_GENES = 20_000
N_SIGNATURES = 20


def gene_names(n_genes: int = N_GENES) -> list[str]:
    return [f"GENE{i:05d}" for i in range(n_genes)]


def make_cells(n_cells: int, seed: int = 0, n_genes: int = N_GENES) -> sp.csr_matrix:
    """log1p(CP10k) of gamma-Poisson counts; lognormal gene abundance, 10 clusters, ~7% non-zero.

    Cells are generated in blocks of 2,000 from per-block seeds, so the first rows of a larger set
    equal a smaller set (the 10k data are the first rows of the 100k data).
    """
    root = np.random.default_rng(seed)
    abundance = root.lognormal(0.0, 1.6, n_genes)
    abundance = abundance / abundance.sum()
    cluster_genes = [root.choice(n_genes, 300, replace=False) for _ in range(10)]
    blocks = []
    for b, start in enumerate(range(0, n_cells, 2000)):
        rng = np.random.default_rng([seed, b])
        n = min(2000, n_cells - start)
        cluster = rng.integers(0, 10, n)
        lam = np.tile(abundance, (n, 1)).astype(np.float32)
        for c in range(10):
            rows = np.flatnonzero(cluster == c)
            lam[np.ix_(rows, cluster_genes[c])] *= 4.0
        lam *= rng.lognormal(np.log(1900.0), 0.35, (n, 1)).astype(np.float32)
        counts = rng.poisson(rng.gamma(0.8, lam / 0.8)).astype(np.float32)
        m = sp.csr_matrix(counts)
        total = np.asarray(m.sum(axis=1)).ravel()
        total[total == 0] = 1
        m = sp.diags((1e4 / total).astype(np.float32)) @ m
        m.data = np.log1p(m.data)
        blocks.append(m.astype(np.float32).tocsr())
    return sp.vstack(blocks).tocsr()


_POOLS: dict[tuple[int, int], sp.csr_matrix] = {}  # per process: pools of cells made once


def pool_block(block: int, n_rows: int, seed: int, pool_cells: int = 10_000) -> sp.csr_matrix:
    """Rows of a lazily made block (bench_distributed.py): ``n_rows`` cells of a pool of ``make_cells``
    cells, drawn with ``default_rng([seed, block])``; the pool is made once per process. Defined here,
    not in the script, so that dask ships the function by reference and never a process's pool."""
    if (seed, pool_cells) not in _POOLS:
        _POOLS[seed, pool_cells] = make_cells(pool_cells, seed=seed)
    rows = np.random.default_rng([seed, block]).integers(0, pool_cells, n_rows)
    return _POOLS[seed, pool_cells][rows]


def make_bulk(n_samples: int = 500, seed: int = 1, n_genes: int = N_GENES) -> np.ndarray:
    rng = np.random.default_rng(seed)
    abundance = rng.lognormal(0.0, 1.6, n_genes)
    counts = rng.poisson(abundance[None, :] * rng.lognormal(np.log(30.0), 0.3, (n_samples, 1)))
    cpm = counts / counts.sum(axis=1, keepdims=True) * 1e6
    return np.log1p(cpm).astype(np.float32)


def make_signatures(n_genes: int = N_GENES, seed: int = 2) -> dict[str, list[str]]:
    """20 signatures, sizes evenly spread over 10-200 genes, genes drawn with probability ~ sqrt(abundance)."""
    rng = np.random.default_rng(seed)
    names = gene_names(n_genes)
    weights = np.sqrt(np.random.default_rng(0).lognormal(0.0, 1.6, n_genes))
    weights /= weights.sum()
    sizes = rng.permutation(np.linspace(10, 200, N_SIGNATURES).astype(int))
    return {
        f"sig{k:02d}": [names[i] for i in rng.choice(n_genes, s, replace=False, p=weights)] for k, s in enumerate(sizes)
    }


def make_library_sized_signatures(n_genes: int = N_GENES, seed: int = 3) -> dict[str, list[str]]:
    """20 signatures with the sizes of the built-in immune_escape collection (median 10 genes), genes
    drawn as in make_signatures: the null benchmark on signatures the size users score."""
    import immunescape as ie

    sizes = sorted(len(s.genes) for s in ie.signatures.load("immune_escape"))
    sizes = [sizes[i] for i in np.linspace(0, len(sizes) - 1, N_SIGNATURES).astype(int)]
    rng = np.random.default_rng(seed)
    names = gene_names(n_genes)
    weights = np.sqrt(np.random.default_rng(0).lognormal(0.0, 1.6, n_genes))
    weights /= weights.sum()
    return {
        f"lib{k:02d}": [names[i] for i in rng.choice(n_genes, s, replace=False, p=weights)] for k, s in enumerate(sizes)
    }


def load_dataset(name: str):
    """'cells2k', 'cells10k', 'cells100k', 'cells500k' (CSR) or 'bulk' (dense), from the cache or generated once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{name}.npz"
    if name == "bulk":
        if not path.exists():
            np.savez(path, X=make_bulk())
        return np.load(path)["X"]
    if not path.exists():
        n = {"cells2k": 2_000, "cells10k": 10_000, "cells100k": 100_000, "cells500k": 500_000}[name]
        sp.save_npz(path, make_cells(n), compressed=False)
    X = sp.load_npz(path).tocsr()
    X.sort_indices()  # canonical CSR, genes in order within each cell, as 10x readers and scanpy write it
    return X


def machine() -> dict[str, str]:
    import numba

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
        "numba_threads": str(numba.config.NUMBA_NUM_THREADS),
    }
    try:
        import psutil

        info["memory_gib"] = f"{psutil.virtual_memory().total / 2**30:.1f}"
    except ImportError:
        pass
    return info


def run_child(script: Path, args: list[str], timeout: float = 1800, expect_json: bool = True) -> dict:
    """Run ``python script args`` and return its JSON result (if ``expect_json``) plus the peak RSS of its process tree."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    parent = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            rss = parent.memory_info().rss + sum(c.memory_info().rss for c in parent.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        if time.perf_counter() - start > timeout:
            proc.kill()
            return {"status": f"killed after {timeout:.0f} s", "peak_rss_gib": peak / 2**30}
        time.sleep(0.05)
    out, err = proc.communicate()
    if not expect_json:
        status = (
            "ok"
            if proc.returncode == 0
            else f"failed ({proc.returncode}): {err.strip().splitlines()[-1] if err.strip() else ''}"
        )
        return {"status": status, "peak_rss_gib": peak / 2**30}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {
            "status": f"failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}",
            "peak_rss_gib": peak / 2**30,
        }
    result = json.loads(lines[-1])
    result["peak_rss_gib"] = peak / 2**30
    result.setdefault("status", "ok")
    return result
