"""Tools: scoring (and, later, aggregation and classification)."""

from ._score import methods, score, score_matrix

__all__ = ["methods", "score", "score_matrix"]
