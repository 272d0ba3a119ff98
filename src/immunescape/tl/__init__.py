"""Tools: scoring (and, later, aggregation and classification)."""

from ._score import compute_scores, methods, score, score_matrix

__all__ = ["compute_scores", "methods", "score", "score_matrix"]
