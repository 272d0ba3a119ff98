from __future__ import annotations

from pathlib import Path


def figure_path(save: str | Path | bool, name: str) -> Path:
    """Where ``save=`` writes, as in scanpy: ``True`` is ``{figdir}/{name}.{file_format_figs}``; a bare
    file name goes into ``sc.settings.figdir``; a path with a folder is used as given; the format comes
    from the suffix, else ``sc.settings.file_format_figs``."""
    import scanpy as sc

    fmt = str(sc.settings.file_format_figs or "png")
    if save is True:
        return Path(sc.settings.figdir) / f"{name}.{fmt}"
    path = Path(save)
    if not path.suffix:
        path = path.with_name(f"{path.name}.{fmt}")
    if not path.is_absolute() and path.parent == Path("."):
        path = Path(sc.settings.figdir) / path
    return path


def check_figure_format(path: Path, what: str) -> Path:
    """``path`` when matplotlib writes its format, else an InputError listing those it writes (``what``
    names the argument), instead of matplotlib's ValueError after the figure is drawn."""
    from matplotlib.backend_bases import FigureCanvasBase

    from .._errors import InputError

    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:  # e.g. "cells.h5ad"
        raise InputError(
            f"{what}: matplotlib writes no {path.suffix!r} figures; end the name with one of "
            f"{', '.join('.' + f for f in sorted(formats))}."
        )
    return path


def finish(fig, show: bool | None, save: str | Path | bool | None, *, tight: bool = True, name: str = "immunescape"):
    """scanpy's convention: save when asked (atomically, see :func:`figure_path`), show when asked or
    when not saving; return the figure.

    ``tight=False`` for figures whose layout is already set (scanpy's own plots, gridspec layouts).
    """
    import matplotlib.pyplot as plt

    if tight:
        fig.tight_layout()
    saving = save is not None and save is not False
    if saving:
        from ..io import atomic_path

        path = check_figure_format(figure_path(save, name), f"save={str(save)!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=150, format=path.suffix.lstrip("."), bbox_inches="tight")
    if show or (show is None and not saving):
        plt.show()
    return fig


def new_axes(ax, figsize):
    """A new figure and axes, or the given ``ax`` and its figure (scanpy's ``ax=``)."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def figure_grid(ax, figsize, nrows: int, ncols: int, **gridspec_kw):
    """A figure and a grid of panels: a new figure, or the area of the given ``ax`` divided.

    A multi-panel plot (one panel per signature, a heatmap with its strips and legend) can then still
    go into a cell of the caller's figure, as scanpy's ``ax=`` allows for single panels.
    """
    import matplotlib.pyplot as plt

    from .._errors import InputError

    if ax is None:
        fig = plt.figure(figsize=figsize)
        return fig, fig.add_gridspec(nrows, ncols, **gridspec_kw)
    spec = ax.get_subplotspec() if hasattr(ax, "get_subplotspec") else None
    if spec is None:
        raise InputError(
            "ax= must be a subplot (from plt.subplots or fig.add_subplot): its area is divided into panels."
        )
    fig = ax.figure
    ax.remove()
    return fig, spec.subgridspec(nrows, ncols, **gridspec_kw)


def wrap_label(text: str, width: int = 22) -> str:
    """A tick label on lines of at most ``width`` characters, broken after spaces, slashes or
    underscores (a longer unbroken piece is cut).

    Examples
    --------
    >>> wrap_label("CD4+/CD45RA+/CD25- Naive T", 14)
    'CD4+/CD45RA+/\\nCD25- Naive T'
    """
    import re

    text = str(text)
    pieces = [p for p in re.split(r"(?<=[ /_])", text) if p]
    lines, line = [], ""
    for piece in pieces:
        while len(piece) > width:  # an unbroken run longer than a line
            if line:
                lines.append(line)
                line = ""
            lines.append(piece[:width])
            piece = piece[width:]
        if len(line) + len(piece.rstrip()) > width and line:
            lines.append(line)
            line = ""
        line += piece
    lines.append(line)
    return "\n".join(x.rstrip() for x in lines if x.strip())
