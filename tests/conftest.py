from __future__ import annotations

import os

import pytest

os.environ.setdefault("NUMBA_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def pbmc():
    """scanpy's bundled real data (700 cells x 765 genes, .raw set)."""
    import scanpy as sc

    return sc.datasets.pbmc68k_reduced()


@pytest.fixture(scope="session")
def tumour():
    import immunescape as ie

    return ie.datasets.simulate_tumor(n_samples=6, cells_per_sample=200, seed=3)
