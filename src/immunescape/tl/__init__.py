"""Tools: scoring, per-sample aggregation and immune-escape classification."""

from ._aggregate import aggregate, compartments_from_labels, compartments_from_markers, label_compartments
from ._classify import (
    HALLMARKS,
    MECHANISMS,
    ReferenceProfile,
    Thresholds,
    classify,
    escape_hallmarks,
    reference_profile,
    sample_features,
)
from ._compare import adjust_pvalues, compare
from ._context import ContextModel, context_features, load_context_model
from ._contributions import contributions
from ._drivers import exclusion_drivers
from ._enrich import enrich
from ._score import compute_scores, methods, score, score_matrix

__all__ = [
    "HALLMARKS",
    "MECHANISMS",
    "ReferenceProfile",
    "Thresholds",
    "adjust_pvalues",
    "aggregate",
    "classify",
    "compartments_from_labels",
    "compare",
    "ContextModel",
    "context_features",
    "contributions",
    "label_compartments",
    "load_context_model",
    "compartments_from_markers",
    "compute_scores",
    "enrich",
    "escape_hallmarks",
    "exclusion_drivers",
    "methods",
    "reference_profile",
    "sample_features",
    "score",
    "score_matrix",
]
