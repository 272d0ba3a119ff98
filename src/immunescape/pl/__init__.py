"""Plotting (matplotlib), following scanpy's conventions; every function returns the figure.

``show``: show the figure (default: when not saving). ``save``: ``True`` writes
``{sc.settings.figdir}/{plot name}.{sc.settings.file_format_figs}``; a bare file name goes into
``sc.settings.figdir``; a path with a folder is used as given; the format follows the suffix.
Figures are written to a temporary file and renamed, so a failed save leaves nothing behind.
"""

from ._enrichment import enrichment
from ._plots import compare, coverage, escape_profile, exclusion_drivers, heatmap, scores

__all__ = ["compare", "coverage", "enrichment", "escape_profile", "exclusion_drivers", "heatmap", "scores"]
