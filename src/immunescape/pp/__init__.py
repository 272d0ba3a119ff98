"""Preprocessing helpers: gene-identifier resolution and coverage."""

from ._coverage import coverage

__all__ = ["coverage"]
