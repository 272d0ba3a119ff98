"""Plotting (matplotlib), following scanpy's conventions: ``show``, ``save``; every function returns the figure."""

from ._enrichment import enrichment
from ._plots import compare, coverage, escape_profile, heatmap, scores

__all__ = ["compare", "coverage", "enrichment", "escape_profile", "heatmap", "scores"]
