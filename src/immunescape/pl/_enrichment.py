from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from .._errors import InputError
from ._utils import finish, new_axes


def enrichment(
    data: AnnData | pd.DataFrame,
    *,
    key: str = "immunescape_enrich",
    kind: str = "dot",
    fdr: float = 0.05,
    ax=None,
    show: bool | None = None,
    save: str | Path | bool | None = None,
):
    """Draw :func:`immunescape.tl.enrich` results: NES per group and signature.

    Parameters
    ----------
    data
        The table returned by ``enrich``, or an AnnData holding it in ``uns[key]``.
    key
        ``uns`` key of the table.
    kind
        ``"dot"``: groups x signatures, colour = NES, size = -log10(FDR), ringed when FDR < ``fdr``;
        ``"bar"``: NES bars per group, solid when FDR < ``fdr``.
    fdr
        Significance line drawn on the plot.
    ax
        Axes to draw into (a new figure otherwise).
    show
        Show the figure (default: when not saving).
    save
        File to write (PNG, PDF, SVG by suffix).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import pandas as pd, immunescape as ie
    >>> table = pd.DataFrame({"group": ["NK", "NK"], "signature": ["a", "b"], "nes": [2.0, -1.0], "fdr": [0.001, 0.4]})
    >>> fig = ie.pl.enrichment(table, show=False)
    >>> fig.axes[0].get_xlabel()
    'group'
    """
    table = data.uns[key] if isinstance(data, AnnData) else data
    if not isinstance(table, pd.DataFrame) or not {"group", "signature", "nes", "fdr"} <= set(table.columns):
        raise InputError(f"Expected the table of ie.tl.enrich (or an AnnData with it in uns[{key!r}]).")
    if table.empty:
        raise InputError("The enrichment table is empty: nothing to draw.")
    if kind not in ("dot", "bar"):
        raise InputError("kind must be 'dot' or 'bar'.")
    groups = list(dict.fromkeys(table["group"]))
    sigs = list(dict.fromkeys(table.sort_values("nes")["signature"]))
    own_figure = ax is None
    fig, ax = new_axes(
        ax, (max(3.5, 2.2 + 1.1 * len(groups)) if kind == "dot" else 6.5, max(2.6, 1.2 + 0.32 * len(sigs)))
    )
    limit = float(np.nanmax(np.abs(table["nes"]))) or 1.0
    if kind == "dot":
        x = table["group"].map({g: i for i, g in enumerate(groups)})
        y = table["signature"].map({s: i for i, s in enumerate(sigs)})
        size = 30 + 60 * -np.log10(table["fdr"].clip(lower=1e-3))
        significant = table["fdr"] < fdr
        points = ax.scatter(
            x,
            y,
            s=size,
            c=table["nes"],
            cmap="RdBu_r",
            vmin=-limit,
            vmax=limit,
            edgecolors=np.where(significant, "black", "none"),
            linewidths=1.2,
        )
        fig.colorbar(points, ax=ax, label="NES", shrink=0.7)
        ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
        ax.set_yticks(range(len(sigs)), sigs)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_xlabel("group")
        ax.set_title(f"Signature enrichment (ringed: FDR < {fdr:g}; size: -log10 FDR)", fontsize=9)
    else:
        width = 0.8 / len(groups)
        for k, group in enumerate(groups):
            sub = table[table["group"] == group].set_index("signature").reindex(sigs)
            pos = np.arange(len(sigs)) + (k - (len(groups) - 1) / 2) * width
            colors = [f"C{k}"] * len(sigs)
            alphas = np.where(sub["fdr"] < fdr, 1.0, 0.35)
            for p, v, c, a in zip(pos, sub["nes"], colors, alphas):
                ax.barh(p, v, height=width, color=c, alpha=a)
            ax.barh([], [], color=f"C{k}", label=group)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(sigs)), sigs)
        ax.set_xlabel("NES")
        ax.legend(title=f"group (faint: FDR >= {fdr:g})", fontsize=8)
        ax.set_title("Signature enrichment", fontsize=9)
    return finish(fig, show, save, name="enrichment", tight=own_figure)
