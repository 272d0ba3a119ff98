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

        path = figure_path(save, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=150, format=path.suffix.lstrip("."), bbox_inches="tight")
    if show or (show is None and not saving):
        plt.show()
    return fig


def new_axes(ax, figsize):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax
