"""Every plot renders to a PNG that is not blank and carries the expected axes and labels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from PIL import Image

import immunescape as ie


@pytest.fixture(scope="module")
def cohort():
    cells = ie.datasets.simulate_tumor(n_samples=9, cells_per_sample=150, seed=6)
    ie.tl.score(cells, "immune_escape")
    samples = ie.tl.aggregate(cells, "sample", celltype_key="cell_type")
    calls = ie.tl.classify(samples)
    samples.obs["context"] = calls["immune_context"]
    return cells, samples, calls


def not_blank(path):
    image = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert image.std() > 5 and image.shape[0] > 100


def test_scores_violin_box_and_embedding(pbmc, tmp_path):
    adata = pbmc.copy()
    ie.tl.score(adata, "bagaev2021_NK_cells,bagaev2021_B_cells", min_coverage=0.3)
    for kind in ("violin", "box"):
        fig = ie.pl.scores(adata, groupby="bulk_labels", kind=kind, save=tmp_path / f"{kind}.png", show=False)
        not_blank(tmp_path / f"{kind}.png")
        assert [ax.get_ylabel() for ax in fig.axes] == ["bagaev2021_NK_cells", "bagaev2021_B_cells"]
    fig = ie.pl.scores(adata, groupby="bulk_labels", kind="dot", save=tmp_path / "dot.png", show=False)
    not_blank(tmp_path / "dot.png")
    assert any("bagaev2021_NK_cells" in [t.get_text() for t in ax.get_xticklabels()] for ax in fig.axes)
    fig = ie.pl.scores(
        adata, "bagaev2021_NK_cells", basis="umap", kind="embedding", save=tmp_path / "umap.png", show=False
    )
    not_blank(tmp_path / "umap.png")
    with pytest.raises(ie.InputError, match="groupby"):
        ie.pl.scores(adata, show=False)
    with pytest.raises(ie.InputError, match="Did you mean"):
        ie.pl.scores(adata, "bagaev2021_NK_cell", groupby="bulk_labels", show=False)


def test_heatmap(cohort, tmp_path):
    _, samples, calls = cohort
    fig = ie.pl.heatmap(samples, annotate=["context"], cluster=True, save=tmp_path / "h.png", show=False)
    not_blank(tmp_path / "h.png")
    main = [ax for ax in fig.axes if ax.get_xlabel() == "sample"][0]
    assert len(main.get_xticklabels()) == samples.n_obs and len(main.get_yticklabels()) == 27
    assert any(ax.get_yticklabels() and ax.get_yticklabels()[0].get_text() == "context" for ax in fig.axes)


def test_escape_profile(cohort, tmp_path):
    _, _, calls = cohort
    sample = calls.index[0]
    fig = ie.pl.escape_profile(calls, sample, save=tmp_path / "p.png", show=False)
    not_blank(tmp_path / "p.png")
    ax = fig.axes[0]
    assert ax.get_title().startswith(sample) and len(ax.get_yticklabels()) == len(ie.tl.MECHANISMS)
    order = [t.get_text().replace(" ", "_") for t in ax.get_yticklabels()]
    hallmarks = [ie.tl.MECHANISMS[m].hallmark for m in order]
    assert hallmarks == sorted(hallmarks, key=list(ie.tl.HALLMARKS).index)  # grouped, in the three Cs' order
    assert {"camouflage", "coercion"} <= {t.get_text() for t in ax.texts}  # each group is labelled
    with pytest.raises(ie.InputError, match="not in the table"):
        ie.pl.escape_profile(calls, "nobody", show=False)


def test_coverage(cohort, pbmc, tmp_path):
    cells, _, _ = cohort
    fig = ie.pl.coverage(cells, save=tmp_path / "c.png", show=False)
    not_blank(tmp_path / "c.png")
    assert fig.axes[0].get_xlabel() == "genes" and len(fig.axes[0].get_yticklabels()) == 27
    ie.pl.coverage(ie.pp.coverage(pbmc, "immune_escape"), show=False)


def test_compare(cohort, tmp_path):
    _, samples, _ = cohort
    fig = ie.pl.compare(samples, "cd8_t_effector_mariathasan2018", "context", save=tmp_path / "k.png", show=False)
    not_blank(tmp_path / "k.png")
    ax = fig.axes[0]
    assert ("Kruskal" in ax.get_title() or "Mann-Whitney" in ax.get_title()) and "(n=" in ax.get_xticklabels()[
        0
    ].get_text()
    with pytest.raises(ie.InputError, match="Unknown feature"):
        ie.pl.compare(samples, "nope", "context", show=False)


def test_save_follows_scanpys_figdir_and_format(cohort, tmp_path, monkeypatch):
    """save=True and bare file names go into sc.settings.figdir; a path with a folder is used as
    given; without a suffix the format is sc.settings.file_format_figs."""
    import scanpy as sc

    _, _, calls = cohort
    sample = calls.index[0]
    monkeypatch.chdir(tmp_path)
    before = sc.settings.figdir, sc.settings.file_format_figs
    sc.settings.figdir, sc.settings.file_format_figs = tmp_path / "figs", "pdf"  # scanpy's settings: no monkeypatch
    try:
        ie.pl.escape_profile(calls, sample, save=True, show=False)
        ie.pl.escape_profile(calls, sample, save="bare.png", show=False)
        ie.pl.escape_profile(calls, sample, save="nosuffix", show=False)
        ie.pl.escape_profile(calls, sample, save=tmp_path / "here" / "given.svg", show=False)
    finally:
        sc.settings.figdir, sc.settings.file_format_figs = before
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == sorted(
        [f"escape_profile_{sample}.pdf", "bare.png", "nosuffix.pdf"]
    )
    assert (tmp_path / "figs" / "bare.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "here" / "given.svg").read_text().lstrip().startswith("<?xml")
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.pdf"))  # nothing in the working folder


def test_basis_alone_draws_the_embedding(pbmc):
    adata = pbmc.copy()
    ie.tl.score(adata, "bagaev2021_NK_cells", min_coverage=0.3)
    fig = ie.pl.scores(adata, basis="umap", show=False)
    assert any("UMAP" in ax.get_xlabel() for ax in fig.axes)


def test_score_groups_follow_the_categorical_order_and_scanpys_colours(pbmc):
    """Groups in the order of the categorical (not alphabetical), coloured by uns[f"{groupby}_colors"]."""
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_hex

    adata = pbmc.copy()
    ie.tl.score(adata, "bagaev2021_NK_cells", min_coverage=0.3)
    order = list(reversed(adata.obs["bulk_labels"].cat.categories))
    adata.obs["bulk_labels"] = adata.obs["bulk_labels"].cat.reorder_categories(order)
    adata.uns["bulk_labels_colors"] = [f"#{i:02x}{255 - i:02x}40" for i in range(len(order))]
    for kind in ("violin", "box"):
        fig = ie.pl.scores(adata, groupby="bulk_labels", kind=kind, show=False)
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_xticklabels()] == order
        if kind == "violin":
            shapes = [c for c in ax.collections if isinstance(c, PolyCollection)]
            faces = [to_hex(c.get_facecolor()[0], keep_alpha=False) for c in shapes]
        else:
            faces = [to_hex(p.get_facecolor(), keep_alpha=False) for p in ax.patches]
        assert faces == adata.uns["bulk_labels_colors"], kind
