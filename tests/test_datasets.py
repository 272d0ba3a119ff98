from __future__ import annotations

import numpy as np

import immunescape as ie


def test_simulator_is_seeded_and_documents_truth(tumour):
    again = ie.datasets.simulate_tumor(n_samples=6, cells_per_sample=200, seed=3)
    assert (tumour.X != again.X).nnz == 0
    truth = tumour.uns["simulation"]["truth"]
    assert list(truth.index) == sorted(tumour.obs["sample"].unique())
    assert set(truth["context"]) == {"inflamed", "excluded", "desert"}
    assert truth.loc[truth["context"] == "excluded", "tgfb_stromal_exclusion"].all()
    assert tumour.layers["counts"].sum() > 0 and np.isfinite(tumour.X.data).all()


def test_contexts_shape_composition(tumour):
    truth = tumour.uns["simulation"]["truth"]
    t_frac = tumour.obs.groupby("sample", observed=True)["compartment"].apply(lambda c: (c == "T").mean())
    assert (
        t_frac[truth.index[truth["context"] == "inflamed"]].min()
        > t_frac[truth.index[truth["context"] == "desert"]].max()
    )


def test_pbmc_example_is_real_scanpy_data():
    adata = ie.datasets.pbmc68k_reduced()
    assert adata.shape == (700, 765) and adata.raw is not None
