from __future__ import annotations

from pathlib import Path


def finish(fig, show: bool | None, save: str | Path | None, *, tight: bool = True):
    """scanpy's convention: save when asked (atomically), show when asked or when not saving; return the figure.

    ``tight=False`` for figures whose layout is already set (scanpy's own plots, gridspec layouts).
    """
    import matplotlib.pyplot as plt

    if tight:
        fig.tight_layout()
    if save is not None:
        from ..io import atomic_path

        with atomic_path(save) as tmp:
            fig.savefig(tmp, dpi=150, format=Path(save).suffix.lstrip(".") or "png", bbox_inches="tight")
    if show or (show is None and save is None):
        plt.show()
    return fig


def new_axes(ax, figsize):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax
