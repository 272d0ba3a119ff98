"""Preprocessing helpers: gene-identifier coverage and pseudobulk."""

from ._coverage import coverage
from ._pseudobulk import pseudobulk

__all__ = ["coverage", "pseudobulk"]
