"""Plotting (matplotlib), following scanpy's conventions: ``ax``, ``show``, ``save``; the figure is returned."""

from ._enrichment import enrichment

__all__ = ["enrichment"]
