"""Tools: scoring, per-sample aggregation and immune-escape classification."""

from ._aggregate import aggregate, compartments_from_labels, compartments_from_markers
from ._classify import MECHANISMS, ReferenceProfile, Thresholds, classify, reference_profile, sample_features
from ._enrich import enrich
from ._score import compute_scores, methods, score, score_matrix

__all__ = [
    "MECHANISMS",
    "ReferenceProfile",
    "Thresholds",
    "aggregate",
    "classify",
    "compartments_from_labels",
    "compartments_from_markers",
    "compute_scores",
    "enrich",
    "methods",
    "reference_profile",
    "sample_features",
    "score",
    "score_matrix",
]
