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
        assert [ax.get_title() for ax in fig.axes] == ["bagaev2021_NK_cells", "bagaev2021_B_cells"]
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
    strip_names = [t.get_text() for ax in fig.axes if ax is not main for t in ax.get_yticklabels()]
    assert strip_names[:3] == ["immune context", "Bagaev class", "context"]  # the calls in obs, then annotate=
    assert "Antigen presentation low" in strip_names  # one strip per mechanism
    assert "CD8 T-effector (Mariathasan 2018)" in [t.get_text() for t in main.get_yticklabels()]  # titles
    names = ie.pl.heatmap(samples, labels="name", show=False).axes
    assert "cd8_t_effector_mariathasan2018" in [t.get_text() for ax in names for t in ax.get_yticklabels()]


def test_escape_profile(cohort, tmp_path):
    _, _, calls = cohort
    sample = calls.index[0]
    fig = ie.pl.escape_profile(calls, sample, save=tmp_path / "p.png", show=False)
    not_blank(tmp_path / "p.png")
    ax = fig.axes[0]
    assert ax.get_title(loc="left") == sample and len(ax.get_yticklabels()) == len(ie.tl.MECHANISMS)
    shown = [t.get_text() for t in ax.get_yticklabels()]
    by_label = {ie.pl._palette.mechanism_name(m): m for m in ie.tl.MECHANISMS}
    hallmarks = [ie.tl.MECHANISMS[by_label[label]].hallmark for label in shown]
    assert hallmarks == sorted(hallmarks, key=list(ie.tl.HALLMARKS).index)  # grouped, in the three Cs' order
    assert {"camouflage", "coercion"} <= {t.get_text() for t in ax.texts}  # each group is labelled
    with pytest.raises(ie.InputError, match="not in the table"):
        ie.pl.escape_profile(calls, "nobody", show=False)


def _pixels(fig):
    import matplotlib.pyplot as plt

    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba()).copy()
    plt.close(fig)
    return pixels


def test_figures_from_stored_calls_equal_those_from_the_table(cohort, tmp_path):
    """heatmap's default calls and escape_profile(samples, ...) read what classify stored in the AnnData (calls
    as text there: h5ad keeps no mixed columns); they showed no mechanism as called, and not-assessed as not
    called, until the text was read back as True/False/NaN."""
    import anndata as ad

    _, samples, calls = cohort
    mechanisms = calls[list(ie.tl.MECHANISMS)]
    assert (mechanisms == True).any().any() and mechanisms.isna().any().any()  # noqa: E712 (object column)
    samples.write_h5ad(tmp_path / "s.h5ad")
    for stored in (samples, ad.read_h5ad(tmp_path / "s.h5ad")):
        np.testing.assert_array_equal(
            _pixels(ie.pl.heatmap(stored, show=False)), _pixels(ie.pl.heatmap(stored, calls=calls, show=False))
        )
        called = calls.index[(mechanisms == True).any(axis=1)][0]  # noqa: E712
        np.testing.assert_array_equal(
            _pixels(ie.pl.escape_profile(stored, called, show=False)),
            _pixels(ie.pl.escape_profile(calls, called, show=False)),
        )
    with pytest.raises(ie.InputError, match="run ie.tl.classify"):
        ie.pl.escape_profile(samples, calls.index[0], key_added="other", show=False)
    with pytest.raises(ie.InputError, match="calls must be the table"):
        ie.pl.escape_profile(samples.X, calls.index[0], show=False)


def test_coverage(cohort, pbmc, tmp_path):
    cells, _, _ = cohort
    fig = ie.pl.coverage(cells, save=tmp_path / "c.png", show=False)
    not_blank(tmp_path / "c.png")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "fraction of the signature's genes" and len(ax.get_yticklabels()) == 27
    fig.canvas.draw()
    frame = ax.get_window_extent()
    assert all(bar.get_window_extent().x1 <= frame.x1 + 0.5 for bar in ax.patches)  # no bar runs into the frame
    assert max(bar.get_x() + bar.get_width() for bar in ax.patches) <= 1.0 + 1e-9
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
        # long names: the groups go down the side, the first category on top
        assert [t.get_text().replace("\n", " ") for t in ax.get_yticklabels()] == order
        if kind == "violin":
            shapes = [c for c in ax.collections if isinstance(c, PolyCollection)]
            faces = [to_hex(c.get_facecolor()[0], keep_alpha=False) for c in shapes]
        else:
            faces = [to_hex(p.get_facecolor(), keep_alpha=False) for p in ax.patches]
        assert faces == adata.uns["bulk_labels_colors"], kind


# --- The evidence issue 16 asks for: layouts that hold at any label length, one palette, nothing hidden ---


def _long_label_data(n_groups: int = 10, length: int = 40, seed: int = 0):
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(seed)
    names = [f"group {k} " + "x" * (length - len(f"group {k} ")) for k in range(n_groups)]
    labels = pd.Categorical(rng.choice(names, 400), categories=names)
    adata = ad.AnnData(
        np.zeros((400, 1), np.float32), obs=pd.DataFrame({"g": labels}, index=[f"c{i}" for i in range(400)])
    )
    adata.obsm["immunescape"] = pd.DataFrame({"sig": rng.normal(size=400)}, index=adata.obs_names)
    return adata


def _overlaps(texts, renderer) -> list[tuple[str, str]]:
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_visible() and t.get_text()]
    return [
        (a, b)
        for i, (a, box_a) in enumerate(boxes)
        for b, box_b in boxes[i + 1 :]
        if box_a.overlaps(box_b)
        and box_a.intersection(box_a, box_b).width > 0.5
        and box_a.intersection(box_a, box_b).height > 0.5
    ]


@pytest.mark.parametrize("kind", ["violin", "box"])
def test_long_group_names_leave_the_data_half_the_figure_and_never_overlap(kind):
    """10 groups with 40-character names: the data axes take at least half the figure's area, and no two
    tick labels overlap (renderer bounding boxes), in the default layout and in both orientations."""
    adata = _long_label_data()
    for orientation in (None, "vertical", "horizontal"):
        fig = ie.pl.scores(adata, groupby="g", kind=kind, orientation=orientation, show=False)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        full = fig.bbox.width * fig.bbox.height
        tight = fig.get_tightbbox(renderer)  # what bbox_inches="tight" saves
        area = ax.get_window_extent(renderer)
        if orientation is None:
            saved = tight.width * tight.height * fig.dpi**2
            assert area.width * area.height >= 0.5 * min(full, saved), (area, fig.bbox, tight)
        for axis in (ax.xaxis, ax.yaxis):
            assert not _overlaps(axis.get_ticklabels(), renderer), (orientation, axis)
        labels = [t for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
        assert all(t.get_window_extent(renderer).x0 >= -1 for t in labels)  # nothing cut at the figure's edge


def test_heatmap_and_profile_labels_do_not_overlap(cohort):
    _, samples, calls = cohort
    for fig in (
        ie.pl.heatmap(samples, calls=calls, show=False),
        ie.pl.escape_profile(calls, calls.index[0], show=False),
    ):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                assert not _overlaps(axis.get_ticklabels(), renderer)
        legends = [child for ax in fig.axes for child in ax.get_children() if child.__class__.__name__ == "Legend"]
        assert not _overlaps([t for legend in legends for t in legend.get_texts()], renderer)


def test_no_text_is_a_colour_code(cohort):
    """Legends name categories, not matplotlib colour codes ("C0", "C1", ...)."""
    import re

    _, samples, calls = cohort
    figures = [
        ie.pl.heatmap(samples, calls=calls, annotate=["context"], show=False),
        ie.pl.escape_profile(calls, calls.index[0], show=False),
        ie.pl.compare(samples, "cd8_t_effector_mariathasan2018", "context", show=False),
    ]
    for fig in figures:
        texts = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
        assert texts and not [t for t in texts if re.search(r"\bC\d+\b", t)]
    legend = figures[0].findobj(matplotlib.legend.Legend)[0]
    entries = [t.get_text() for t in legend.get_texts()]
    assert {"immune context", "inflamed", "Bagaev class", "escape mechanism", "called: coercion"} <= set(entries)


def test_a_category_has_one_colour_in_heatmap_profile_and_report(cohort):
    """The same immune context (and Bagaev class) is drawn in the same colour in the heatmap's strip,
    the profile's badge and the report's table."""
    from matplotlib.colors import to_hex

    from immunescape.pl._palette import BAGAEV_COLOURS, CONTEXT_COLOURS
    from immunescape.report import build_report

    _, samples, calls = cohort
    fig = ie.pl.heatmap(samples, calls=calls, show=False)
    strip = [ax for ax in fig.axes if ax.get_yticklabels() and ax.get_yticklabels()[0].get_text() == "immune context"][
        0
    ]
    rgb = strip.images[0].get_array()  # rows: strips; columns: samples in the map's order
    main = [ax for ax in fig.axes if ax.get_xlabel() == "sample"][0]
    order = [t.get_text() for t in main.get_xticklabels()]
    page = build_report(samples, calls, max_profiles=len(calls))
    for column, sample in enumerate(order):
        context, bagaev = calls.loc[sample, "immune_context"], calls.loc[sample, "bagaev_class"]
        heat_context = to_hex(rgb[0, column])
        heat_bagaev = to_hex(rgb[1, column])
        profile = ie.pl.escape_profile(calls, sample, show=False)
        badges = {a.get_gid(): to_hex(a.get_bbox_patch().get_facecolor()) for a in profile.axes[0].texts if a.get_gid()}
        assert heat_context == badges["badge-context"] == CONTEXT_COLOURS[context]
        assert heat_bagaev == badges["badge-Bagaev"] == BAGAEV_COLOURS[bagaev]
        assert f"background:{CONTEXT_COLOURS[context]}'>{context}</span>" in page
        matplotlib.pyplot.close(profile)


def test_profile_never_clips_a_bar_silently(cohort):
    """A bar beyond the axis ends in a marker and carries its value; the axis reaches every smaller value."""
    _, _, calls = cohort
    calls = calls.copy()
    sample = calls.index[0]
    calls.loc[sample, "checkpoint_high_z"] = 50.7
    calls.loc[sample, "rloop_low_z"] = -14.7
    calls.loc[sample, "wnt_active_z"] = 6.5
    fig = ie.pl.escape_profile(calls, sample, show=False)
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    bars = [p for p in ax.patches if p.get_width() != 0]
    beyond = [b for b in bars if not low <= b.get_x() + b.get_width() <= high]
    assert not beyond
    markers = [line for line in ax.lines if line.get_gid() == "clipped"]
    assert len(markers) == 2  # 50.7 and -14.7 beyond the default limit of 8; 6.5 drawn in full
    texts = {t.get_text() for t in ax.texts}
    assert {"+50.7", "-14.7", "+6.5"} <= texts
    assert high >= 6.5
    assert any(abs(b.get_width() - 6.5) < 1e-9 for b in bars)


@pytest.mark.parametrize("name", ["scores", "heatmap", "escape_profile", "coverage", "compare", "enrichment"])
def test_every_plot_draws_into_a_given_ax(name, cohort, pbmc):
    """ax= as scanpy: the plot goes into the caller's figure, in the area of that axes."""
    import pandas as pd

    cells, samples, calls = cohort
    fig, axes = matplotlib.pyplot.subplots(2, 2, figsize=(14, 10))
    target = axes[1, 1]
    box = target.get_position()
    calls_by_name = {
        "scores": lambda ax: ie.pl.scores(
            cells, "cd8_t_effector_mariathasan2018", groupby="cell_type", ax=ax, show=False
        ),
        "heatmap": lambda ax: ie.pl.heatmap(samples, calls=calls, ax=ax, show=False),
        "escape_profile": lambda ax: ie.pl.escape_profile(calls, calls.index[0], ax=ax, show=False),
        "coverage": lambda ax: ie.pl.coverage(cells, ax=ax, show=False),
        "compare": lambda ax: ie.pl.compare(samples, "cd8_t_effector_mariathasan2018", "context", ax=ax, show=False),
        "enrichment": lambda ax: ie.pl.enrichment(
            pd.DataFrame({"group": ["a", "a"], "signature": ["x", "y"], "nes": [2.0, -1.0], "fdr": [0.01, 0.5]}),
            ax=ax,
            show=False,
        ),
    }
    returned = calls_by_name[name](target)
    assert returned is fig
    drawn = [ax for ax in fig.axes if ax not in axes.ravel()[:3] and ax.has_data() or ax.images]
    assert drawn
    for ax in drawn:  # inside the given axes' area (colour bars and legends included)
        pos = ax.get_position()
        assert (
            pos.x0 >= box.x0 - 1e-6 and pos.x1 <= box.x1 + 1e-6 and pos.y0 >= box.y0 - 1e-6 and pos.y1 <= box.y1 + 1e-6
        )
    for ax in axes.ravel()[:3]:
        assert not ax.has_data()
    matplotlib.pyplot.close(fig)
