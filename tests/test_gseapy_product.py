"""gseapy inside the product: GSVA as a method, pre-ranked enrichment of the library, the plot and CLI."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

import immunescape as ie
from immunescape.cli import main

gseapy = pytest.importorskip("gseapy")


@pytest.fixture(scope="module")
def bulk():
    cells = ie.datasets.simulate_tumor(n_samples=10, cells_per_sample=100, seed=1)
    return ie.pp.pseudobulk(cells, "sample")


def test_gsva_method_equals_gseapy(bulk):
    adata = bulk.copy()
    ie.tl.score(adata, "ifng_ayers2017,apm_mariathasan2018,tis_gep_ayers2017", method="gsva")
    got = adata.obsm["immunescape"]
    frame = pd.DataFrame(adata.X.T, index=adata.var_names, columns=adata.obs_names)
    for name in ("ifng_ayers2017", "apm_mariathasan2018"):
        genes = [g for g in ie.signatures.get(name).genes if g in adata.var_names]
        ref = gseapy.gsva(frame, {name: genes}, min_size=1, max_size=5000, outdir=None, threads=1).res2d
        ref = ref.set_index("Name")["ES"].astype(float).reindex(adata.obs_names)
        np.testing.assert_allclose(got[name].to_numpy(), ref.to_numpy(), atol=1e-10)
    # signed: the GEP has CD276 down -> ES(up) - ES(down)
    gep = ie.signatures.get("tis_gep_ayers2017")
    up = (
        gseapy.gsva(
            frame,
            {"u": [g for g in gep.genes_up if g in adata.var_names], "d": list(gep.genes_down)},
            min_size=1,
            max_size=5000,
            outdir=None,
            threads=1,
        )
        .res2d.pivot(index="Name", columns="Term", values="ES")
        .astype(float)
    )
    np.testing.assert_allclose(
        got["tis_gep_ayers2017"].to_numpy(), (up["u"] - up["d"]).reindex(adata.obs_names).to_numpy(), atol=1e-10
    )
    assert adata.uns["immunescape"]["method"] == "gsva" and "immunescape_ifng_ayers2017" in adata.obs


def test_gsva_guards_single_cell_sized_input(bulk):
    with pytest.raises(ie.InputError, match="pseudobulk"):
        ie.tl.score(bulk, "ifng_ayers2017", method="gsva", max_samples=5)
    assert "gsva" in ie.tl.methods().index


def test_enrich_finds_nk_and_b_programmes_in_real_pbmcs(pbmc):
    adata = pbmc.copy()
    table = ie.tl.enrich(
        adata,
        "bulk_labels",
        groups=["CD56+ NK", "CD19+ B"],
        min_coverage=0.3,
        permutation_num=300,
        signatures="bagaev2021_NK_cells,bagaev2021_Effector_cells,bagaev2021_B_cells",
    )
    row = table.set_index(["group", "signature"])
    assert (
        row.loc[("CD56+ NK", "bagaev2021_Effector_cells"), "nes"] > 0
        and row.loc[("CD56+ NK", "bagaev2021_Effector_cells"), "fdr"] < 0.05
    )
    assert row.loc[("CD56+ NK", "bagaev2021_NK_cells"), "fdr"] < 0.05
    assert (
        row.loc[("CD19+ B", "bagaev2021_B_cells"), "nes"] > 0
        and row.loc[("CD19+ B", "bagaev2021_B_cells"), "fdr"] < 0.05
    )
    assert row.loc[("CD19+ B", "bagaev2021_NK_cells"), "nes"] < 0
    assert {"es", "pval", "leading_edge", "n_genes", "title"} <= set(table.columns)
    assert adata.uns["immunescape_enrich"].equals(table) and "immunescape_enrich_rank_genes" in adata.uns


def test_enrich_recovers_planted_programmes():
    cells = ie.datasets.simulate_tumor(n_samples=12, cells_per_sample=150, seed=2)
    truth = cells.uns["simulation"]["truth"]
    malignant = cells[cells.obs["cell_type"] == "malignant"].copy()
    malignant.obs["apm_loss"] = malignant.obs["sample"].map(truth["antigen_presentation_loss"]).astype(str)
    malignant.obs["ifn_silenced"] = malignant.obs["sample"].map(truth["ifn_sting_silenced"]).astype(str)
    apm = ie.tl.enrich(
        malignant,
        "apm_loss",
        groups=["True"],
        reference="False",
        signatures="apm_mariathasan2018,bagaev2021_B_cells",
        permutation_num=300,
        min_coverage=0.3,
    )
    row = apm.set_index("signature").loc["apm_mariathasan2018"]
    assert row["nes"] < 0 and row["fdr"] < 0.05
    ifn = ie.tl.enrich(
        malignant,
        "ifn_silenced",
        groups=["True"],
        reference="False",
        signatures="ifn_type1_rooney2015",
        permutation_num=300,
    )
    assert ifn.loc[0, "nes"] < 0 and ifn.loc[0, "fdr"] < 0.05


def test_enrich_errors(pbmc):
    with pytest.raises(ie.InputError, match="Did you mean 'bulk_labels'"):
        ie.tl.enrich(pbmc, "bulk_label")
    with pytest.raises(ie.InputError, match="not a value"):
        ie.tl.enrich(pbmc, "bulk_labels", groups=["NK"])


@pytest.mark.parametrize("kind", ["dot", "bar"])
def test_enrichment_plot_renders(tmp_path, kind):
    from PIL import Image

    table = pd.DataFrame(
        {
            "group": ["NK", "NK", "B", "B"],
            "signature": ["nk", "b", "nk", "b"],
            "nes": [2.1, -1.3, -0.9, 1.8],
            "fdr": [0.001, 0.2, 0.3, 0.004],
        }
    )
    path = tmp_path / f"e_{kind}.png"
    fig = ie.pl.enrichment(table, kind=kind, save=path, show=False)
    image = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert image.std() > 5  # not blank
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert set(labels) == {"nk", "b"} and (ax.get_xlabel() in ("group", "NES"))
    with pytest.raises(ie.InputError):
        ie.pl.enrichment(pd.DataFrame({"x": [1]}), show=False)


def test_cli_enrich(pbmc, tmp_path):
    path = tmp_path / "pbmc.h5ad"
    pbmc.write_h5ad(path)
    out, plot = tmp_path / "enrich.csv", tmp_path / "enrich.png"
    assert (
        main(
            [
                "-q",
                "enrich",
                str(path),
                "--groupby",
                "bulk_labels",
                "--groups",
                "CD56+ NK",
                "-s",
                "bagaev2021_NK_cells",
                "--min-coverage",
                "0.3",
                "--permutations",
                "200",
                "-o",
                str(out),
                "--plot",
                str(plot),
            ]
        )
        == 0
    )
    table = pd.read_csv(out)
    assert table.loc[0, "signature"] == "bagaev2021_NK_cells" and plot.stat().st_size > 1000
    assert main(["enrich", str(path), "--groupby", "nope", "-o", str(tmp_path / "x.csv")]) == 1


def test_gseapys_own_messages_follow_our_logging(caplog, capsys):
    """gseapy writes its warning about tied ranking values through its own stderr handler (with its time stamp,
    whatever scanpy's verbosity); it goes through this package's logger instead, so logging settings govern it."""
    import logging

    cells = ie.datasets.simulate_tumor(n_samples=2, cells_per_sample=60, seed=1)  # many genes tie at zero
    ours = logging.getLogger("immunescape")  # it does not propagate to the root logger caplog listens on
    ours.addHandler(caplog.handler)
    try:
        ie.tl.enrich(cells, "sample", signatures="immune_escape", permutation_num=100)
    finally:
        ours.removeHandler(caplog.handler)
    assert any(r.name.startswith("immunescape") and "Duplicated values" in r.getMessage() for r in caplog.records)
    assert "[WARNING]" not in capsys.readouterr().err
