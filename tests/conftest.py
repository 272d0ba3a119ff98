from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("NUMBA_NUM_THREADS", "2")
# A hermetic numba cache for the session (inherited by the CLI and notebook subprocesses): the suite
# neither loads kernels that other runs compiled into the installed package's cache nor writes its
# test-only specialisations there. Set before anything imports numba.
if "IMMUNESCAPE_TEST_KEEP_NUMBA_CACHE" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="immunescape-numba-cache-")
    os.environ["NUMBA_CACHE_DIR"] = _CACHE
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def pbmc():
    """scanpy's bundled real data (700 cells x 765 genes, .raw set)."""
    import scanpy as sc

    return sc.datasets.pbmc68k_reduced()


@pytest.fixture(scope="session")
def tumour():
    import immunescape as ie

    return ie.datasets.simulate_tumor(n_samples=6, cells_per_sample=200, seed=3)
