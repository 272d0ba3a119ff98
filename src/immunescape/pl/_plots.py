from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from .._errors import InputError
from .._utils import check_number, closest
from ._palette import (
    BAGAEV_COLOURS,
    CONTEXT_COLOURS,
    DISPLAY_ORDER,
    HALLMARK_COLOURS,
    MISSING,
    NOT_CALLED,
    category_colours,
    display_name,
    feature_axis,
    is_called,
    mechanism_colour,
    mechanism_name,
)
from ._utils import figure_grid, finish, new_axes, wrap_label


def _score_table(adata: AnnData, key: str) -> pd.DataFrame:
    if key not in adata.obsm:
        raise InputError(f"No scores in obsm[{key!r}]; run ie.tl.score first (or pass key=).")
    table = adata.obsm[key]
    return table if isinstance(table, pd.DataFrame) else pd.DataFrame(table, index=adata.obs_names)


def _pick(columns, wanted, what="signature") -> list[str]:
    if wanted is None:
        return list(columns)
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    for w in wanted:
        if w not in columns:
            raise InputError(f"Unknown {what} {w!r}." + closest(w, columns))
    return wanted


def scores(
    adata: AnnData,
    signatures: str | Sequence[str] | None = None,
    *,
    groupby: str | None = None,
    basis: str | None = None,
    kind: str = "violin",
    key: str = "immunescape",
    orientation: str | None = None,
    ax=None,
    show: bool | None = None,
    save: str | Path | bool | None = None,
):
    """Signature scores by group (violin, box or dot) or on an embedding.

    Groups follow the categorical's order and colours (``adata.uns[f"{groupby}_colors"]``), as in
    scanpy. Violins are scaled to the same width and cut at the data's range, with each cell as a
    jittered dot (as ``sc.pl.violin``; at most 2,000 dots per group, chosen with a fixed seed). Long
    group names do not squeeze the data: they are wrapped, and from 11 characters (or 16 groups) the
    groups go down the side (``orientation="horizontal"``).

    Parameters
    ----------
    adata
        Scored data (``obsm[key]``).
    signatures
        Which scores (default: all); one panel each.
    groupby
        ``obs`` column for ``kind="violin"``/``"box"``/``"dot"``.
    basis
        Embedding (e.g. ``"umap"``), drawn by :func:`scanpy.pl.embedding`; ``basis`` alone (no
        ``groupby``) selects ``kind="embedding"``, as ``sc.pl.embedding`` users expect.
    kind
        ``"violin"``, ``"box"``, ``"dot"`` (scanpy's dotplot of the scores by group) or ``"embedding"``.
    key
        ``obsm`` key of the scores.
    orientation
        ``"vertical"`` (groups along x) or ``"horizontal"`` (groups down the side); default by the
        length of the group names.
    ax
        A subplot to draw into (its area is divided when there are several signatures); violin and box only.
    show, save
        As elsewhere in ``ie.pl``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import scanpy as sc, immunescape as ie
    >>> pbmc = sc.datasets.pbmc68k_reduced()
    >>> ie.tl.score(pbmc, "bagaev2021_NK_cells", min_coverage=0.3)
    >>> fig = ie.pl.scores(pbmc, groupby="bulk_labels", show=False)
    >>> fig.axes[0].get_title()
    'bagaev2021_NK_cells'
    """
    table = _score_table(adata, key)
    names = _pick(table.columns, signatures)
    if basis is not None and groupby is None and kind == "violin":  # the default kind: basis alone means an embedding
        kind = "embedding"
    if kind in ("embedding", "dot") and ax is not None:
        raise InputError(f"ax= is for kind='violin' or 'box'; kind={kind!r} is drawn by scanpy in its own figure.")
    if kind == "embedding":
        import scanpy as sc

        if basis is None or f"X_{basis}" not in adata.obsm:
            raise InputError(
                f"kind='embedding' needs basis= naming an embedding in obsm (e.g. 'umap'); found {list(adata.obsm)}."
            )
        view = AnnData(obs=table[names].copy(), obsm={f"X_{basis}": adata.obsm[f"X_{basis}"]})
        fig = sc.pl.embedding(view, basis=basis, color=names, show=False, return_fig=True, color_map="viridis")
        return finish(fig, show, save, name="scores", tight=False)
    if kind not in ("violin", "box", "dot"):
        raise InputError("kind must be 'violin', 'box', 'dot' or 'embedding'.")
    if groupby is None or groupby not in adata.obs:
        raise InputError(
            f"kind={kind!r} needs groupby= naming an obs column." + closest(str(groupby), adata.obs.columns)
        )
    column = adata.obs[groupby]
    if pd.api.types.is_float_dtype(column) and column.nunique() > 50:  # one violin per distinct value: 64 inches
        raise InputError(
            f"groupby={groupby!r} holds {column.nunique():,} distinct numbers, not groups; bin it (pd.cut) or "
            f"colour an embedding by the scores (basis=...)."
        )
    if (
        kind == "dot"
    ):  # scanpy's dotplot on the scores as "genes": colour = mean (scaled per score), size = fraction > 0
        import scanpy as sc

        view = AnnData(
            X=table[names].to_numpy(dtype=np.float32), obs=adata.obs[[groupby]].copy(), var=pd.DataFrame(index=names)
        )
        dot = sc.pl.dotplot(
            view,
            names,
            groupby=groupby,
            standard_scale="var",
            return_fig=True,
            show=False,
            colorbar_title="mean score\n(scaled per score)",
            size_title="fraction of cells\nwith score > 0",
        )
        dot.make_figure()
        return finish(dot.fig, show, save, name="scores", tight=False)
    labels = adata.obs[groupby].astype(str).to_numpy()
    groups, palette = category_colours(adata.obs[groupby], groupby, adata.uns)
    colours = [palette[g] for g in groups]
    if orientation is None:
        long = max((len(g) for g in groups), default=0) > 10 or len(groups) > 15
        orientation = "horizontal" if long else "vertical"
    if orientation not in ("vertical", "horizontal"):
        raise InputError("orientation must be 'vertical' or 'horizontal'.")
    horizontal = orientation == "horizontal"
    ticks = [wrap_label(g, 24 if horizontal else 12) for g in groups]
    lines = max((t.count("\n") + 1 for t in ticks), default=1)
    if horizontal:  # groups down the side, one panel per signature side by side
        label_in = 0.075 * max((len(line) for t in ticks for line in t.split("\n")), default=4)
        height = max(2.6, 0.22 * sum(t.count("\n") + 1.6 for t in ticks) + 1.1)
        figsize = (label_in + 0.4 + len(names) * max(3.2, 2.2 * label_in), height)
        fig, grid = figure_grid(ax, figsize, 1, len(names), **({} if ax is None else {"wspace": 0.08}))
    else:  # groups along x, one panel per signature stacked
        per_group = max(0.75, 0.07 * max((len(line) for t in ticks for line in t.split("\n")), default=1) + 0.2)
        figsize = (max(4.0, per_group * len(groups) + 1.5), len(names) * 2.6 + 0.15 * lines)
        fig, grid = figure_grid(ax, figsize, len(names), 1, **({} if ax is None else {"hspace": 0.35}))
    rng = np.random.default_rng(0)
    axes = []
    for k, name in enumerate(names):
        cell = grid[0, k] if horizontal else grid[k, 0]
        panel = fig.add_subplot(cell, sharey=axes[0] if horizontal and axes else None)
        axes.append(panel)
        column = table[name].to_numpy(dtype=float)
        values = [column[labels == g] for g in groups]
        values = [v[np.isfinite(v)] for v in values]
        _draw_groups(panel, values, colours, kind, horizontal, rng)
        panel.set_title(name, fontsize=9)
        if horizontal:
            panel.set_yticks(range(len(groups)), ticks, fontsize=8)
            panel.tick_params(axis="y", labelleft=k == 0)
            panel.set_ylim(len(groups) - 0.5, -0.5)  # the first category on top
            panel.set_xlabel("score", fontsize=8)
            panel.grid(axis="x", color="#eeeeee", linewidth=0.6)
        else:
            last = k == len(names) - 1
            panel.set_xticks(range(len(groups)), ticks, fontsize=8)
            panel.tick_params(axis="x", labelbottom=last)
            panel.set_xlim(-0.5, len(groups) - 0.5)
            panel.set_ylabel("score", fontsize=8)
            panel.grid(axis="y", color="#eeeeee", linewidth=0.6)
            if last:
                panel.set_xlabel(groupby)
        panel.set_axisbelow(True)
        for side in ("top", "right"):
            panel.spines[side].set_visible(False)
    if horizontal:
        axes[0].set_ylabel(groupby)
    return finish(fig, show, save, name="scores", tight=ax is None)


def _orientation(horizontal: bool) -> dict:
    """matplotlib's orientation argument: ``orientation=`` from 3.10 (``vert=`` is deprecated in 3.11)."""
    import matplotlib

    if tuple(int(x) for x in matplotlib.__version__.split(".")[:2]) >= (3, 10):
        return {"orientation": "horizontal" if horizontal else "vertical"}
    return {"vert": not horizontal}


def _draw_groups(ax, values, colours, kind: str, horizontal: bool, rng, max_dots: int = 2000) -> None:
    """Violins (width-scaled, cut at the data's range, jittered dots) or boxes, one per group."""
    positions = np.arange(len(values))
    if kind == "violin":
        present = [i for i, v in enumerate(values) if v.size > 1 and np.ptp(v) > 0]
        if present:
            parts = ax.violinplot(
                [values[i] for i in present],
                positions=present,
                widths=0.8,
                showextrema=False,
                **_orientation(horizontal),
            )
            for body, i in zip(parts["bodies"], present):
                body.set_facecolor(colours[i])
                body.set_edgecolor("#333333")
                body.set_linewidth(0.6)
                body.set_alpha(1.0)
        for i, v in enumerate(values):
            dots = v if v.size <= max_dots else rng.choice(v, max_dots, replace=False)
            jitter = i + rng.uniform(-0.3, 0.3, dots.size)
            xy = (dots, jitter) if horizontal else (jitter, dots)
            ax.scatter(*xy, s=1, color="black", alpha=0.6, linewidths=0, rasterized=True)
    else:
        boxes = ax.boxplot(
            values,
            positions=positions,
            showfliers=False,
            **_orientation(horizontal),
            patch_artist=True,
            widths=0.6,
            medianprops={"color": "black"},
        )
        for patch, colour in zip(boxes["boxes"], colours):
            patch.set_facecolor(colour)
            patch.set_edgecolor("#333333")


def heatmap(
    samples: AnnData | pd.DataFrame,
    *,
    features: Sequence[str] | None = None,
    annotate: Sequence[str] = (),
    calls: pd.DataFrame | None = None,
    mechanisms: bool = True,
    group_features: bool = True,
    cluster: bool = False,
    labels: str = "title",
    key_added: str = "immunescape_class",
    ax=None,
    show: bool | None = None,
    save: str | Path | bool | None = None,
):
    """Samples x signatures, each signature scaled (robust z) across samples, with annotation strips.

    Above the map, colour strips for the immune context, the Bagaev TME class and each escape
    mechanism (filled in its hallmark's colour where called), with legends; the signatures are
    grouped by the axis of immune escape they read (infiltration, T-cell dysfunction, myeloid,
    exclusion, antigen presentation, IFN/STING, R-loop, metabolism, ...). Colours are the package's
    (:mod:`immunescape.pl` palette), the same in the profile and the report.

    Parameters
    ----------
    samples
        :func:`immunescape.tl.aggregate` output (or a scored bulk AnnData / DataFrame of features).
    features
        Columns to show (default: all signature features).
    annotate
        More ``obs`` columns drawn as strips (a response column, a batch), coloured as scanpy
        (``uns[f"{col}_colors"]``, else scanpy's palette).
    calls
        A :func:`~immunescape.tl.classify` table; default: the calls ``classify`` wrote to ``obs``
        (``obs[key_added]`` and ``obs[f"{key_added}_<column>"]``), when there.
    mechanisms
        Draw a strip per escape mechanism (when calls are available).
    group_features
        Group the signatures by immune-escape axis (the axis named at the right); otherwise one block.
    cluster
        Order samples, and the signatures within each group, by hierarchical clustering (average
        linkage, Euclidean on the robust z).
    labels
        ``"title"``: signatures labelled by the title in their file; ``"name"``: by their column name.
    key_added
        The ``key_added`` that :func:`~immunescape.tl.classify` used.
    ax
        A subplot whose area the map, its strips and legends are drawn into.
    show, save
        As elsewhere in ``ie.pl``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import immunescape as ie
    >>> cells = ie.datasets.simulate_tumor(n_samples=6, cells_per_sample=80, seed=1)
    >>> ie.tl.score(cells, "immune_escape")
    >>> samples = ie.tl.aggregate(cells, "sample", celltype_key="cell_type")
    >>> calls = ie.tl.classify(samples)
    >>> fig = ie.pl.heatmap(samples, show=False)
    >>> "immune context" in [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()]
    True
    """
    from matplotlib.colors import to_rgb

    from ..tl._classify import MECHANISMS, ReferenceProfile, sample_features, stored_calls

    if labels not in ("title", "name"):
        raise InputError("labels must be 'title' or 'name'.")
    frame = sample_features(samples)
    frame = (
        frame[[c for c in frame.columns if not c.startswith("frac_")]]
        if features is None
        else frame[_pick(frame.columns, features, "feature")]
    )
    if frame.empty:
        raise InputError("No features to draw: score the samples first (ie.tl.score) or pass features=.")
    z = ReferenceProfile.from_features(frame).z(frame).reindex(columns=frame.columns).clip(-3, 3).fillna(0.0)
    rows = list(z.index)
    if cluster and len(rows) > 2:
        rows = [rows[i] for i in _leaves(z.to_numpy())]
    groups = _feature_groups(list(z.columns), group_features)
    if cluster:
        groups = {
            g: [cols[i] for i in _leaves(z[cols].to_numpy().T)] if len(cols) > 2 else cols for g, cols in groups.items()
        }
    cols = [c for g in groups.values() for c in g]
    z = z.loc[rows, cols]

    obs = samples.obs if isinstance(samples, AnnData) else pd.DataFrame(index=frame.index)
    uns = samples.uns if isinstance(samples, AnnData) else {}
    calls = stored_calls(samples, key_added) if calls is None and isinstance(samples, AnnData) else calls
    strips: dict[str, tuple[np.ndarray, dict[str, str]]] = {}  # name -> (RGB per sample, legend label -> colour)
    categorical = []
    if calls is not None:
        missing = [r for r in rows if r not in calls.index]
        if missing:
            raise InputError(
                f"calls has no row for {len(missing)} sample(s), e.g. {missing[0]!r}: pass the calls of these samples."
            )
        categorical += [("immune context", calls.loc[rows, "immune_context"], "immune_context")]
        if "bagaev_class" in calls:
            categorical += [("Bagaev class", calls.loc[rows, "bagaev_class"], "bagaev_class")]
    for col in annotate:
        if col not in obs:
            raise InputError(f"annotate: {col!r} is not an obs column." + closest(str(col), obs.columns))
        categorical.append((col, obs.loc[rows, col], col))
    for name, values, palette_key in categorical:
        order, palette = category_colours(values, palette_key, uns)
        text = values.astype(str).where(values.notna(), None)
        strips[name] = (np.array([to_rgb(palette.get(v, MISSING)) if v else to_rgb(MISSING) for v in text]), palette)
    mechanism_rows = []
    if calls is not None and mechanisms:
        for m in MECHANISMS:
            if m in calls:
                called = calls.loc[rows, m]
                colour = to_rgb(mechanism_colour(m))
                rgb = [
                    colour if is_called(c) else to_rgb(MISSING) if pd.isna(c) else to_rgb(NOT_CALLED) for c in called
                ]
                strips[mechanism_name(m)] = (np.array(rgb), {})
                mechanism_rows.append(m)

    tick_labels = [wrap_label(display_name(c) if labels == "title" else c, 64) for c in cols]
    row_h = 0.28 if any("\n" in t for t in tick_labels) else 0.2  # inches per signature: room for two lines
    label_in = 0.065 * max(len(line) for t in tick_labels + list(strips) for line in t.split("\n"))
    n_strip = len(strips)
    map_h = row_h * len(cols) + 0.12 * (len(groups) - 1)
    width = label_in + 0.25 + 0.22 * len(rows) + 1.6 + 2.4
    height = 0.2 * n_strip + map_h + 1.4
    fig, grid = figure_grid(
        ax,
        (max(6.0, width), max(4.0, height)),
        2,
        3,
        height_ratios=[max(0.2 * n_strip, 0.01), map_h],
        width_ratios=[0.22 * len(rows), 1.6, 2.4],
        hspace=0.12 / max((0.2 * n_strip + map_h) / 2, 0.1),  # about 0.12 inch between strips and map
        wspace=0.03,
    )
    map_ax = fig.add_subplot(grid[1, 0])
    gaps = np.cumsum([len(g) for g in groups.values()])[:-1]
    image = map_ax.imshow(z.T.to_numpy(), aspect="auto", cmap="RdBu_r", vmin=-3, vmax=3, interpolation="nearest")
    for gap in gaps:
        map_ax.axhline(gap - 0.5, color="white", linewidth=3)
    map_ax.set_xticks(range(len(rows)), [str(r) for r in rows], rotation=90, fontsize=7)
    map_ax.set_yticks(range(len(cols)), tick_labels, fontsize=7)
    map_ax.set_xlabel("sample")
    for side in map_ax.spines.values():
        side.set_visible(False)
    if n_strip:
        strip_ax = fig.add_subplot(grid[0, 0], sharex=map_ax)
        strip_ax.imshow(np.stack([rgb for rgb, _ in strips.values()]), aspect="auto", interpolation="nearest")
        for k in range(1, n_strip):
            strip_ax.axhline(k - 0.5, color="white", linewidth=1)
        strip_ax.set_yticks(range(n_strip), list(strips), fontsize=7)
        strip_ax.tick_params(axis="x", labelbottom=False, length=0)
        strip_ax.tick_params(axis="y", length=0)
        for side in strip_ax.spines.values():
            side.set_visible(False)
    group_ax = fig.add_subplot(grid[1, 1], sharey=map_ax)
    group_ax.axis("off")
    if group_features:
        start = 0
        for name, members in groups.items():
            end = start + len(members) - 1
            group_ax.plot([0.08, 0.08], [start - 0.3, end + 0.3], color="#555555", linewidth=1.2)
            group_ax.text(0.16, (start + end) / 2, wrap_label(name, 18), va="center", fontsize=7, color="#333333")
            start = end + 1
    group_ax.set_xlim(0, 1)
    total_h = 0.2 * n_strip + map_h  # inches: the legend on top, a short colour bar under it
    legend_grid = grid[:, 2].subgridspec(3, 1, height_ratios=[max(total_h - 0.8, 0.5), 0.12, 0.68], hspace=0)
    legend_ax = fig.add_subplot(legend_grid[0, 0])
    legend_ax.axis("off")
    _strip_legend(legend_ax, {n: p for n, (_, p) in strips.items() if p}, bool(mechanism_rows))
    bar_grid = legend_grid[1, 0].subgridspec(1, 3, width_ratios=[0.5, 6, 2.5])
    colorbar = fig.colorbar(image, cax=fig.add_subplot(bar_grid[0, 1]), orientation="horizontal")
    colorbar.set_label("robust z (clipped at +/-3)", fontsize=7)
    colorbar.ax.tick_params(labelsize=7)
    if ax is None:
        fig.subplots_adjust(left=min(0.6, (label_in + 0.2) / max(6.0, width)), right=0.98, bottom=0.1, top=0.97)
    return finish(fig, show, save, name="heatmap", tight=False)  # margins are set from the label lengths


def _leaves(matrix: np.ndarray) -> list[int]:
    from scipy.cluster.hierarchy import leaves_list, linkage

    return list(leaves_list(linkage(matrix, "average")))


def _feature_groups(columns: list[str], grouped: bool) -> dict[str, list[str]]:
    """Features by immune-escape axis in display order (one block when not grouped)."""
    if not grouped:
        return {"": columns}
    by_axis: dict[str, list[str]] = {}
    for c in columns:
        by_axis.setdefault(feature_axis(c), []).append(c)
    return {a: by_axis[a] for a in DISPLAY_ORDER if a in by_axis}


def _strip_legend(ax, palettes: dict[str, dict[str, str]], with_mechanisms: bool) -> None:
    """One legend for every strip: a bold heading per strip, then its categories with their colours."""
    from matplotlib.patches import Patch

    handles, heads = [], []
    for name, palette in palettes.items():
        heads.append(len(handles))
        handles.append(Patch(visible=False, label=name))
        handles += [Patch(facecolor=colour, edgecolor="none", label=str(cat)) for cat, colour in palette.items()]
    if with_mechanisms:
        heads.append(len(handles))
        handles.append(Patch(visible=False, label="escape mechanism"))
        handles += [Patch(facecolor=c, edgecolor="none", label=f"called: {h}") for h, c in HALLMARK_COLOURS.items()]
        handles.append(Patch(facecolor=NOT_CALLED, edgecolor="none", label="not called"))
        handles.append(Patch(facecolor=MISSING, edgecolor="#cccccc", label="not assessed"))
    if not handles:
        return
    legend = ax.legend(handles=handles, loc="upper left", fontsize=7, frameon=False, handlelength=1.2, borderaxespad=0)
    for i in heads:
        legend.get_texts()[i].set_fontweight("bold")


def escape_profile(
    calls: pd.DataFrame | AnnData,
    sample: str,
    *,
    key_added: str = "immunescape_class",
    limit: float = 8.0,
    ax=None,
    show: bool | None = None,
    save: str | Path | bool | None = None,
):
    """One sample's panel: each escape mechanism's robust z against its threshold, with the calls,
    the genes that drive them and the reasons.

    Mechanisms are grouped by the "three Cs" hallmark of immune evasion they belong to (camouflage,
    coercion, cytoprotection; see :func:`immunescape.tl.escape_hallmarks`); a called mechanism is
    drawn in its hallmark's colour, as in :func:`heatmap` and the report.

    Parameters
    ----------
    calls
        The table of :func:`immunescape.tl.classify`, or the samples it classified in place.
    sample
        Row to draw.
    key_added
        Where ``classify`` stored its calls (its ``key_added``), when ``calls`` is an AnnData.
    limit
        The axis reaches the largest value, up to ``+/-limit``; a bar beyond it ends in an arrow
        head and is labelled with its value (so nothing is cut silently).
    ax
        A subplot whose area the bars and the reasons are drawn into.
    show, save
        As elsewhere in ``ie.pl``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import immunescape as ie
    >>> cells = ie.datasets.simulate_tumor(n_samples=6, cells_per_sample=80, seed=1)
    >>> ie.tl.score(cells, "immune_escape")
    >>> calls = ie.tl.classify(ie.tl.aggregate(cells, "sample", celltype_key="cell_type"))
    >>> fig = ie.pl.escape_profile(calls, calls.index[0], show=False)
    >>> fig.axes[0].get_yticklabels()[0].get_text()
    'Antigen presentation low'
    """
    from ..tl._classify import HALLMARKS, MECHANISMS, stored_calls

    limit = check_number(limit, "limit", positive=True, hint=" (the axis' largest robust z)")
    if isinstance(calls, AnnData):
        table = stored_calls(calls, key_added)
        if table is None:
            raise InputError(
                f"No calls under key_added={key_added!r}: run ie.tl.classify(samples) first, or pass its table."
            )
        calls = table
    if not isinstance(calls, pd.DataFrame):
        raise InputError(f"calls must be the table of ie.tl.classify or its AnnData, got {type(calls).__name__}.")
    if sample not in calls.index:
        raise InputError(f"Sample {sample!r} is not in the table." + closest(str(sample), calls.index.astype(str)))
    row = calls.loc[sample]
    thresholds = calls.attrs.get("thresholds", {}).get("mechanisms", {m: r.threshold for m, r in MECHANISMS.items()})
    names = [m for h in HALLMARKS for m in MECHANISMS if MECHANISMS[m].hallmark == h]  # grouped by hallmark
    names += [m for m in MECHANISMS if m not in names]
    z = np.array([float(row.get(f"{m}_z", np.nan)) for m in names], dtype=float)
    finite = np.abs(z[np.isfinite(z)])
    cuts = [abs(float(thresholds.get(m, 1.0))) for m in names]
    reach = min(float(limit), max(3.0, float(finite.max()) if finite.size else 0.0, max(cuts))) * 1.08
    reasons = _reason_lines(row, names)
    bars_h = 0.42 * len(names) + 1.4
    text_h = 0.17 * len(reasons) + 0.8
    fig, grid = figure_grid(ax, (12.5, max(bars_h, text_h)), 1, 2, width_ratios=[1.0, 1.25], wspace=0.05)
    bar_ax = fig.add_subplot(grid[0, 0])
    for i, name in enumerate(names):
        value = z[i]
        called = is_called(row.get(name))
        colour = mechanism_colour(name) if called else NOT_CALLED
        if not np.isfinite(value):
            bar_ax.text(0.1, i, "not assessed", va="center", fontsize=7, color="dimgrey", style="italic")
            continue
        shown = float(np.clip(value, -reach, reach))
        bar_ax.barh(i, shown, color=colour, height=0.7)
        if shown != value:  # beyond the axis: an arrow head at the bar's end and the value written
            bar_ax.plot(
                shown, i, marker=">" if value > 0 else "<", color="black", markersize=7, gid="clipped", clip_on=False
            )
        bar_ax.plot([float(thresholds.get(name, np.nan))] * 2, [i - 0.42, i + 0.42], color="black", linewidth=1.2)
        inside = abs(shown) > 0.55 * reach  # a long bar carries its value inside, a short one beside it
        offset = (-0.12 - 0.6 * (shown != value) if inside else 0.12) * (1 if shown >= 0 else -1) * reach / 8
        bar_ax.text(
            shown + offset,
            i,
            f"{value:+.1f}",
            va="center",
            ha=("right" if inside else "left") if shown >= 0 else ("left" if inside else "right"),
            fontsize=7,
            color="white" if inside and called else "black",
        )
    bar_ax.set_xlim(-reach * 1.12, reach * 1.12)
    for hallmark in HALLMARKS:  # a group label above each hallmark's first mechanism, a rule between groups
        rows = [i for i, n in enumerate(names) if MECHANISMS[n].hallmark == hallmark]
        if rows:
            bar_ax.text(
                -reach * 1.1,
                rows[0] - 0.5,
                hallmark,
                fontsize=7,
                style="italic",
                color=HALLMARK_COLOURS.get(hallmark, "dimgrey"),
                va="center",
                bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"},
            )
            if rows[0] > 0:
                bar_ax.axhline(rows[0] - 0.5, color="lightgrey", linewidth=0.8)
    bar_ax.axvline(0, color="grey", linewidth=0.6)
    bar_ax.set_yticks(range(len(names)), [mechanism_name(n) for n in names], fontsize=8)
    bar_ax.set_ylim(len(names) - 0.4, -0.9)
    bar_ax.set_xlabel("robust z against the reference (black tick: threshold; coloured: called)", fontsize=8)
    for side in ("top", "right"):
        bar_ax.spines[side].set_visible(False)
    context, bagaev = str(row.get("immune_context", "?")), str(row.get("bagaev_class", ""))
    bar_ax.set_title(f"{sample}", fontsize=11, loc="left", fontweight="bold")
    anchor = bar_ax.title  # badges follow the title, each placed after the one before
    for kind, label, colour in (
        ("context", context, CONTEXT_COLOURS.get(context, MISSING)),
        ("Bagaev", bagaev, BAGAEV_COLOURS.get(bagaev, MISSING)),
    ):
        if label and label != "nan":
            anchor = bar_ax.annotate(
                f"{kind}: {label}",
                xy=(1, 0),
                xycoords=anchor,
                xytext=(10, 0),
                textcoords="offset points",
                va="bottom",
                fontsize=8,
                color="white",
                bbox={"boxstyle": "round,pad=0.3", "facecolor": colour, "edgecolor": "none"},
                gid=f"badge-{kind}",
            )
    text_ax = fig.add_subplot(grid[0, 1])
    text_ax.axis("off")
    for k, (line, bold) in enumerate(reasons):  # a line every 11 points from the top
        text_ax.annotate(
            line,
            xy=(0.02, 1),
            xycoords="axes fraction",
            xytext=(0, -11 * k),
            textcoords="offset points",
            va="top",
            fontsize=7.5,
            fontweight="bold" if bold else "normal",
            color="#222222" if bold else "#444444",
        )
    if ax is None:
        fig.subplots_adjust(left=0.2, right=0.99, top=0.9, bottom=1.0 / max(bars_h, text_h))
    return finish(fig, show, save, name=f"escape_profile_{sample}", tight=False)


def _reason_lines(row: pd.Series, names: list[str], width: int = 95) -> list[tuple[str, bool]]:
    """The reasons beside a profile: a bold heading per call (with its driving genes), then the reason wrapped."""
    import textwrap

    context = str(row.get("immune_context", "?"))
    lines = [(f"Immune context: {context}", True)]
    lines += [(t, False) for t in textwrap.wrap(str(row.get("context_reason", "")), width)]
    called = [n for n in names if is_called(row.get(n))]
    if not called:
        lines += [("", False), ("No escape mechanism called.", True)]
    for name in called:
        genes = row.get(f"{name}_genes")
        head = mechanism_name(name) + (f": {genes}" if isinstance(genes, str) and genes else "")
        lines += [("", False)] + [(t, True) for t in textwrap.wrap(head, width)]
        lines += [(t, False) for t in textwrap.wrap(str(row.get(f"{name}_reason", "")), width)]
    return lines


def coverage(
    table_or_adata: pd.DataFrame | AnnData,
    *,
    key: str = "immunescape",
    ax=None,
    show: bool | None = None,
    save: str | Path | bool | None = None,
):
    """Per-signature gene coverage as fractions of each signature's genes: found as named, found
    through an alias/id/ortholog, missing; each bar labelled with its counts.

    Accepts :func:`immunescape.pp.coverage` output or a scored AnnData (``uns[key]["coverage"]``).

    Parameters
    ----------
    table_or_adata
        The coverage table, or a scored AnnData holding it.
    key
        ``uns`` key of the scoring record.
    ax
        Axes to draw into (a new figure otherwise).
    show, save
        As elsewhere in ``ie.pl``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import scanpy as sc, immunescape as ie
    >>> table = ie.pp.coverage(sc.datasets.pbmc68k_reduced(), "immune_escape")
    >>> ie.pl.coverage(table, show=False).axes[0].get_xlabel()
    "fraction of the signature's genes"
    """
    if isinstance(table_or_adata, AnnData):
        if key not in table_or_adata.uns or "coverage" not in table_or_adata.uns[key]:
            raise InputError(f"No coverage report in uns[{key!r}]; pass ie.pp.coverage(...) output instead.")
        table = table_or_adata.uns[key]["coverage"].set_index("signature")
    else:
        table = table_or_adata
    total = (table["n_found"] + table["n_missing"]).to_numpy(dtype=float)
    share = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
    exact = table["n_exact"].to_numpy() * share
    other = (table["n_found"] - table["n_exact"]).to_numpy() * share
    missing = table["n_missing"].to_numpy() * share
    own_figure = ax is None
    fig, ax = new_axes(ax, (7.5, 0.26 * len(table) + 1.6))
    y = np.arange(len(table))
    ax.barh(y, exact, color="#1b9e77", label="found as named")
    ax.barh(y, other, left=exact, color="#e6ab02", label="via alias / Ensembl / ortholog")
    ax.barh(y, missing, left=exact + other, color="#dddddd", label="missing")
    for i, (found, n) in enumerate(zip(table["n_found"], total)):
        ax.text(1.02, i, f"{int(found)}/{int(n)}", va="center", fontsize=6.5, color="#444444")
    ax.set_xlim(0, 1.12)  # room for the counts; no bar reaches the frame
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_yticks(y, table.index, fontsize=7)
    ax.set_ylim(len(table) - 0.5, -0.5)
    ax.set_xlabel("fraction of the signature's genes")
    ax.legend(
        fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.08 - 1.2 / (0.26 * len(table) + 1.6)),
        ncol=3,
        frameon=False,
    )
    ax.set_title("Signature gene coverage (found / all genes at the right)", fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return finish(fig, show, save, name="coverage", tight=own_figure)


def compare(
    data: AnnData | pd.DataFrame,
    feature: str,
    groupby: str,
    *,
    key: str = "immunescape",
    ax=None,
    show: bool | None = None,
    save: str | Path | bool | None = None,
):
    """A score or feature between groups (e.g. responders vs non-responders), with the test and n.

    The test is :func:`immunescape.tl.compare`'s rank test: two groups, two-sided Mann-Whitney U;
    more, Kruskal-Wallis. Works on cells (``obsm[key]``), sample AnnData from
    :func:`~immunescape.tl.aggregate`, or a DataFrame with both columns. Groups in the
    categorical's order and colours (``uns[f"{groupby}_colors"]``; the immune context in the
    package's context colours).

    Parameters
    ----------
    data
        Cells, samples or a table.
    feature
        Score or feature to compare.
    groupby
        Column of the groups.
    key
        ``obsm`` key of the scores (cells).
    ax
        Axes to draw into (a new figure otherwise).
    show, save
        As elsewhere in ``ie.pl``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ..tl._compare import compare as compare_groups
    from ..tl._compare import feature_table

    frame = feature_table(data, key)
    if groupby not in frame:
        raise InputError(f"groupby={groupby!r} is not a column." + closest(groupby, frame.columns))
    if feature not in frame:
        raise InputError(f"Unknown feature {feature!r}." + closest(feature, frame.columns))
    groups, palette = category_colours(frame[groupby], groupby, getattr(data, "uns", None))
    values = [frame.loc[frame[groupby].astype(str) == g, feature].dropna().to_numpy(dtype=float) for g in groups]
    if len(groups) < 2 or min(v.size for v in values) == 0:
        raise InputError("compare needs at least two groups with values.")
    result = compare_groups(frame, groupby, features=[feature]).iloc[0]
    test = f"{result['test'].split(' (')[0]} p = {result['pval']:.3g}"
    own_figure = ax is None
    fig, ax = new_axes(ax, (max(3.5, 1.2 * len(groups) + 1.5), 3.6))
    ax.boxplot(values, positions=range(len(groups)), showfliers=False, widths=0.5, medianprops={"color": "black"})
    rng = np.random.default_rng(0)
    for i, v in enumerate(values):
        ax.scatter(i + rng.uniform(-0.12, 0.12, v.size), v, s=14, alpha=0.85, color=palette[groups[i]], linewidths=0)
    ax.set_xticks(range(len(groups)), [f"{g}\n(n={v.size})" for g, v in zip(groups, values)])
    ax.set_ylabel(feature)
    ax.set_xlabel(groupby)
    ax.set_title(test, fontsize=9)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return finish(fig, show, save, name="compare", tight=own_figure)


def exclusion_drivers(
    table: pd.DataFrame,
    *,
    fdr: float = 0.05,
    labels: str = "review",
    ax=None,
    show: bool | None = None,
    save: str | Path | bool | None = None,
):
    """Forest plot of :func:`immunescape.tl.exclusion_drivers`: each pathway's partial Spearman rho
    with its interval, one panel per outcome (T-cell infiltration, exclusion), filled where FDR <
    ``fdr``.

    Parameters
    ----------
    table
        The table of :func:`immunescape.tl.exclusion_drivers`.
    fdr
        Rows below this FDR are drawn filled (and named in bold).
    labels
        ``"review"``: pathways named as in the review with the footprint in brackets; ``"name"``:
        by feature name.
    ax
        A subplot whose area the panels divide.
    show, save
        As elsewhere in ``ie.pl``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import pandas as pd, immunescape as ie
    >>> table = pd.DataFrame({"pathway": ["progeny_tgfb", "progeny_wnt"], "review": ["TGF-beta", "WNT"],
    ...                       "outcome": "exclusion", "rho": [0.5, 0.1], "ci_low": [0.2, -0.3],
    ...                       "ci_high": [0.7, 0.45], "fdr": [0.01, 0.6], "n": 30})
    >>> ie.pl.exclusion_drivers(table, show=False).axes[0].get_xlabel()
    'partial Spearman rho (95% interval)'
    """
    needed = {"pathway", "outcome", "rho", "ci_low", "ci_high", "fdr", "n"}
    if not isinstance(table, pd.DataFrame) or not needed <= set(table.columns):
        raise InputError("Expected the table of ie.tl.exclusion_drivers.")
    if table.empty:
        raise InputError("The exclusion-drivers table is empty: nothing to draw.")
    if labels not in ("review", "name"):
        raise InputError("labels must be 'review' or 'name'.")
    outcomes = [o for o in ("infiltration", "exclusion") if o in set(table["outcome"])]
    outcomes += [o for o in dict.fromkeys(table["outcome"]) if o not in outcomes]
    first = table[table["outcome"] == outcomes[0]].sort_values("rho")
    order = list(first["pathway"]) + [p for p in dict.fromkeys(table["pathway"]) if p not in set(first["pathway"])]

    def name_of(row) -> str:
        review = str(row.get("review", "") or "")
        if labels == "name" or not review or review.startswith("("):
            return str(row["pathway"])
        return f"{review} ({row['pathway']})"

    names = {r["pathway"]: name_of(r) for _, r in table.iterrows()}
    height = 0.28 * len(order) + 1.5
    fig, grid = figure_grid(
        ax, (4.2 + 3.3 * len(outcomes), height), 1, len(outcomes), **({} if ax is None else {"wspace": 0.08})
    )
    panels = []
    for k, outcome in enumerate(outcomes):
        panel = fig.add_subplot(grid[0, k], sharey=panels[0] if panels else None)
        panels.append(panel)
        part = table[table["outcome"] == outcome].set_index("pathway").reindex(order)
        y = np.arange(len(order))
        strong = (part["fdr"] < fdr).to_numpy()
        colour = "#b2182b" if outcome == "exclusion" else "#2166ac"
        panel.hlines(y, part["ci_low"], part["ci_high"], color=colour, linewidth=1.4)
        panel.scatter(part["rho"][~strong], y[~strong], s=28, facecolor="white", edgecolor=colour, zorder=3)
        panel.scatter(part["rho"][strong], y[strong], s=34, color=colour, zorder=3, label=f"FDR < {fdr:g}")
        panel.axvline(0, color="grey", linewidth=0.7)
        panel.set_xlim(-1.02, 1.02)
        n = part["n"].dropna()
        what = {"infiltration": "T-cell infiltration", "exclusion": "exclusion (excluded vs inflamed)"}
        panel.set_title(f"{what.get(outcome, outcome)}, n = {int(n.max()) if len(n) else 0}", fontsize=9)
        panel.set_xlabel("partial Spearman rho (95% interval)", fontsize=8)
        panel.set_yticks(y, [names.get(p, p) for p in order], fontsize=8)
        panel.tick_params(axis="y", labelleft=k == 0)
        for label, hit in zip(panel.get_yticklabels(), strong):
            label.set_fontweight("bold" if hit and k == 0 else "normal")
        panel.set_ylim(len(order) - 0.5, -0.5)
        panel.grid(axis="x", color="#eeeeee", linewidth=0.6)
        panel.set_axisbelow(True)
        for side in ("top", "right"):
            panel.spines[side].set_visible(False)
    adjusted = str(table["adjusted_for"].iloc[0]) if "adjusted_for" in table else ""
    if adjusted and adjusted != "nothing" and ax is None:
        fig.suptitle(f"adjusted for {adjusted}", fontsize=8, x=0.99, ha="right", color="dimgrey")
    return finish(fig, show, save, name="exclusion_drivers", tight=ax is None)
