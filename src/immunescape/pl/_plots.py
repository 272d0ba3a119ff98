from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from .._errors import InputError
from .._utils import closest
from ._utils import finish, new_axes


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
    show: bool | None = None,
    save: str | Path | bool | None = None,
):
    """Signature scores by group (violin or box) or on an embedding.

    Parameters
    ----------
    adata
        Scored data (``obsm[key]``).
    signatures
        Which scores (default: all).
    groupby
        ``obs`` column for ``kind="violin"``/``"box"``.
    basis
        Embedding (e.g. ``"umap"``), drawn by :func:`scanpy.pl.embedding`; ``basis`` alone (no
        ``groupby``) selects ``kind="embedding"``, as ``sc.pl.embedding`` users expect.
    kind
        ``"violin"``, ``"box"``, ``"dot"`` (scanpy's dotplot of the scores by group) or ``"embedding"``.
    key, show, save
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
    >>> fig.axes[0].get_ylabel()
    'bagaev2021_NK_cells'
    """
    import matplotlib.pyplot as plt

    table = _score_table(adata, key)
    names = _pick(table.columns, signatures)
    if basis is not None and groupby is None and kind == "violin":  # the default kind: basis alone means an embedding
        kind = "embedding"
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
    labels = adata.obs[groupby].astype(str)
    groups, colours = _groups_and_colours(adata, groupby)
    fig, axes = plt.subplots(
        len(names), 1, figsize=(max(4.0, 0.7 * len(groups) + 1.5), 2.4 * len(names)), squeeze=False
    )
    for ax, name in zip(axes[:, 0], names):
        values = [table.loc[(labels == g).to_numpy(), name].dropna().to_numpy() for g in groups]
        if kind == "violin":
            present = [i for i, v in enumerate(values) if v.size > 1]
            if present:
                parts = ax.violinplot([values[i] for i in present], positions=present, showmedians=True)
                for body, i in zip(parts["bodies"], present):
                    body.set_facecolor(colours[i])
                    body.set_edgecolor("black")
                    body.set_linewidth(0.5)
                    body.set_alpha(0.85)
        else:
            boxes = ax.boxplot(values, positions=range(len(groups)), showfliers=False, patch_artist=True)
            for patch, colour in zip(boxes["boxes"], colours):
                patch.set_facecolor(colour)
        ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
        ax.set_ylabel(name)
    axes[-1, 0].set_xlabel(groupby)
    return finish(fig, show, save, name="scores")


def _groups_and_colours(adata: AnnData, groupby: str) -> tuple[list[str], list]:
    """The groups in the categorical's order (else sorted), with scanpy's colours from
    ``uns[f"{groupby}_colors"]`` when they match the categories (else matplotlib's cycle)."""
    import matplotlib.pyplot as plt

    column = adata.obs[groupby]
    present = set(column.dropna().astype(str))
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = [str(c) for c in column.cat.categories]
        stored = adata.uns.get(f"{groupby}_colors")
        palette = dict(zip(categories, stored)) if stored is not None and len(stored) == len(categories) else {}
        groups = [c for c in categories if c in present]
    else:
        groups, palette = sorted(present), {}
    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    return groups, [palette.get(g, cycle[i % len(cycle)]) for i, g in enumerate(groups)]


def heatmap(
    samples: AnnData | pd.DataFrame,
    *,
    features: Sequence[str] | None = None,
    annotate: Sequence[str] = ("immunescape_class",),
    calls: pd.DataFrame | None = None,
    cluster: bool = False,
    show: bool | None = None,
    save: str | Path | bool | None = None,
):
    """Samples x signatures, each signature scaled (robust z) across samples, with annotation strips.

    Parameters
    ----------
    samples
        :func:`immunescape.tl.aggregate` output (or a scored bulk AnnData / DataFrame of features).
    features
        Columns to show (default: all signature features).
    annotate
        ``obs`` columns drawn as colour strips above the map (e.g. the immune context that
        :func:`~immunescape.tl.classify` writes to ``obs["immunescape_class"]``, or a response column).
    calls
        A :func:`~immunescape.tl.classify` table to take ``immune_context`` from instead.
    cluster
        Order samples and signatures by hierarchical clustering (average linkage, Euclidean).
    show, save
        As elsewhere in ``ie.pl``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    from ..tl._classify import ReferenceProfile, sample_features

    frame = sample_features(samples)
    frame = (
        frame[[c for c in frame.columns if not c.startswith("frac_")]]
        if features is None
        else frame[_pick(frame.columns, features, "feature")]
    )
    z = ReferenceProfile.from_features(frame).z(frame).reindex(columns=frame.columns).clip(-3, 3).fillna(0.0)
    rows, cols = list(z.index), list(z.columns)
    if cluster and len(rows) > 2 and len(cols) > 2:
        from scipy.cluster.hierarchy import leaves_list, linkage

        rows = [rows[i] for i in leaves_list(linkage(z.to_numpy(), "average"))]
        cols = [cols[i] for i in leaves_list(linkage(z.to_numpy().T, "average"))]
    z = z.loc[rows, cols]
    strips = {}
    obs = samples.obs if isinstance(samples, AnnData) else pd.DataFrame(index=frame.index)
    for col in annotate:
        if col in obs:
            strips[col] = obs.loc[rows, col].astype(str)
    if calls is not None:
        strips["immune context"] = calls.loc[rows, "immune_context"].astype(str)
    n_strip = len(strips)
    fig = plt.figure(figsize=(max(5.0, 0.28 * len(rows) + 3.5), max(3.5, 0.22 * len(cols) + 1.2 + 0.3 * n_strip)))
    grid = fig.add_gridspec(
        n_strip + 1, 2, height_ratios=[0.6] * n_strip + [max(4, len(cols) * 0.6)], width_ratios=[30, 1], hspace=0.05
    )
    for k, (name, values) in enumerate(strips.items()):
        ax = fig.add_subplot(grid[k, 0])
        levels = sorted(values.unique())
        ax.imshow(
            values.map({v: i for i, v in enumerate(levels)}).to_numpy()[None, :],
            aspect="auto",
            cmap="tab10",
            vmin=0,
            vmax=9,
            interpolation="nearest",
        )
        ax.set_xticks([])
        ax.set_yticks([0], [name])
        ax.set_title(", ".join(f"{lv}: C{i}" for i, lv in enumerate(levels))[:120], fontsize=7, loc="left")
    ax = fig.add_subplot(grid[n_strip, 0])
    image = ax.imshow(z.T.to_numpy(), aspect="auto", cmap="RdBu_r", vmin=-3, vmax=3, interpolation="nearest")
    ax.set_xticks(range(len(rows)), rows, rotation=90, fontsize=7)
    ax.set_yticks(range(len(cols)), cols, fontsize=7)
    ax.set_xlabel("sample")
    fig.colorbar(image, cax=fig.add_subplot(grid[n_strip, 1]), label="robust z")
    longest = max([len(str(c)) for c in cols] + [len(n) for n in strips] + [1])
    fig.subplots_adjust(left=min(0.5, 0.08 + 0.0105 * longest), right=0.9, bottom=0.12, top=0.95)
    return finish(fig, show, save, name="heatmap", tight=False)  # margins are set from the label lengths


def escape_profile(
    calls: pd.DataFrame, sample: str, *, show: bool | None = None, save: str | Path | bool | None = None
):
    """One sample's panel: each escape mechanism's robust z against its threshold, with the calls and reasons.

    Mechanisms are grouped by the "three Cs" hallmark of immune evasion they belong to (camouflage,
    coercion, cytoprotection; see :func:`immunescape.tl.escape_hallmarks`).

    Parameters
    ----------
    calls
        The table of :func:`immunescape.tl.classify`.
    sample
        Row to draw.
    show, save
        As elsewhere in ``ie.pl``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    from ..tl._classify import HALLMARKS, MECHANISMS

    if sample not in calls.index:
        raise InputError(f"Sample {sample!r} is not in the table." + closest(str(sample), calls.index.astype(str)))
    row = calls.loc[sample]
    thresholds = calls.attrs.get("thresholds", {}).get("mechanisms", {m: r.threshold for m, r in MECHANISMS.items()})
    names = [m for h in HALLMARKS for m in MECHANISMS if MECHANISMS[m].hallmark == h]  # grouped by hallmark
    names += [m for m in MECHANISMS if m not in names]
    fig, (ax, text_ax) = plt.subplots(
        1, 2, figsize=(12, 0.45 * len(names) + 1.8), gridspec_kw={"width_ratios": [1.1, 1.6]}
    )
    clip = 5.0  # bars are clipped so that thresholds stay readable; the true value is written at the bar
    for i, name in enumerate(names):
        z = row.get(f"{name}_z", np.nan)
        called = row.get(name) is True
        shown = float(np.clip(z, -clip, clip)) if np.isfinite(z) else 0.0
        ax.barh(i, shown, color="firebrick" if called else "lightgrey")
        ax.plot([thresholds.get(name, np.nan)] * 2, [i - 0.4, i + 0.4], color="black", linewidth=1.2)
        label = "n/a" if not np.isfinite(z) else f"{z:+.1f}"
        ax.text(
            shown + (0.15 if shown >= 0 else -0.15),
            i,
            label,
            va="center",
            ha="left" if shown >= 0 else "right",
            fontsize=7,
        )
    ax.set_xlim(-clip - 1.5, clip + 1.5)
    for hallmark in HALLMARKS:  # a group label above each hallmark's first mechanism, a rule between groups
        rows = [i for i, n in enumerate(names) if MECHANISMS[n].hallmark == hallmark]
        if rows:
            ax.text(-clip - 1.4, rows[0] - 0.45, hallmark, fontsize=7, style="italic", color="dimgrey", va="bottom")
            if rows[0] > 0:
                ax.axhline(rows[0] - 0.5, color="lightgrey", linewidth=0.8)
    ax.axvline(0, color="grey", linewidth=0.6)
    ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"robust z, bars clipped at +/-{clip:g} (black tick: threshold; red: called)")
    ax.set_title(f"{sample}: {row.get('immune_context', '?')} ({row.get('bagaev_class', '')})", fontsize=10)
    text_ax.axis("off")
    lines = [f"context: {row.get('context_reason', '')}"] + [
        f"- {row.get(f'{n}_reason', '')}" for n in names if row.get(n) is True
    ]
    text_ax.text(0, 1, "\n".join(_wrap(line, 78) for line in lines), va="top", fontsize=7.5, family="monospace")
    return finish(fig, show, save, name=f"escape_profile_{sample}")


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(str(text), width)) or str(text)


def coverage(
    table_or_adata: pd.DataFrame | AnnData,
    *,
    key: str = "immunescape",
    show: bool | None = None,
    save: str | Path | bool | None = None,
):
    """Per-signature gene coverage: found as named, found through an alias/id/ortholog, missing.

    Accepts :func:`immunescape.pp.coverage` output or a scored AnnData (``uns[key]["coverage"]``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(table_or_adata, AnnData):
        if key not in table_or_adata.uns or "coverage" not in table_or_adata.uns[key]:
            raise InputError(f"No coverage report in uns[{key!r}]; pass ie.pp.coverage(...) output instead.")
        table = table_or_adata.uns[key]["coverage"].set_index("signature")
    else:
        table = table_or_adata
    exact = table["n_exact"].to_numpy()
    other = (table["n_found"] - table["n_exact"]).to_numpy()
    missing = table["n_missing"].to_numpy()
    fig, ax = new_axes(None, (7.0, 0.3 * len(table) + 1.5))
    y = np.arange(len(table))
    ax.barh(y, exact, color="seagreen", label="found as named")
    ax.barh(y, other, left=exact, color="goldenrod", label="via alias / Ensembl / ortholog")
    ax.barh(y, missing, left=exact + other, color="lightgrey", label="missing")
    ax.set_yticks(y, table.index, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("genes")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Signature gene coverage", fontsize=10)
    return finish(fig, show, save, name="coverage")


def compare(
    data: AnnData | pd.DataFrame,
    feature: str,
    groupby: str,
    *,
    key: str = "immunescape",
    show: bool | None = None,
    save: str | Path | bool | None = None,
):
    """A score or feature between groups (e.g. responders vs non-responders), with the test and n.

    The test is :func:`immunescape.tl.compare`'s rank test: two groups, two-sided Mann-Whitney U;
    more, Kruskal-Wallis. Works on cells (``obsm[key]``), sample AnnData from
    :func:`~immunescape.tl.aggregate`, or a DataFrame with both columns.

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
    groups = sorted(frame[groupby].dropna().astype(str).unique())
    values = [frame.loc[frame[groupby].astype(str) == g, feature].dropna().to_numpy(dtype=float) for g in groups]
    if len(groups) < 2 or min(v.size for v in values) == 0:
        raise InputError("compare needs at least two groups with values.")
    result = compare_groups(frame, groupby, features=[feature]).iloc[0]
    test = f"{result['test'].split(' (')[0]} p = {result['pval']:.3g}"
    fig, ax = new_axes(None, (max(3.5, 1.2 * len(groups) + 1.5), 3.6))
    ax.boxplot(values, positions=range(len(groups)), showfliers=False, widths=0.5)
    rng = np.random.default_rng(0)
    for i, v in enumerate(values):
        ax.scatter(i + rng.uniform(-0.12, 0.12, v.size), v, s=12, alpha=0.7, color=f"C{i}")
    ax.set_xticks(range(len(groups)), [f"{g}\n(n={v.size})" for g, v in zip(groups, values)])
    ax.set_ylabel(feature)
    ax.set_xlabel(groupby)
    ax.set_title(test, fontsize=9)
    return finish(fig, show, save, name="compare")
