"""immunescape: tumour immune-escape signatures for bulk and single-cell transcriptomes.

>>> import immunescape as ie
>>> ie.signatures.get("cytolytic_activity_rooney2015").genes
('GZMA', 'PRF1')
"""

from __future__ import annotations

from . import _logging, datasets, genes, io, pl, pp, signatures, tl
from ._errors import (
    CoverageWarning,
    DataWarning,
    GeneResolutionError,
    ImmunescapeError,
    ImmunescapeIOError,
    ImmunescapeWarning,
    InputError,
    SignatureError,
)
from ._version import __version__
from .signatures import Signature

_logging.follow_scanpy()

__all__ = [
    "CoverageWarning",
    "DataWarning",
    "GeneResolutionError",
    "ImmunescapeError",
    "ImmunescapeIOError",
    "ImmunescapeWarning",
    "InputError",
    "Signature",
    "SignatureError",
    "__version__",
    "datasets",
    "genes",
    "io",
    "pl",
    "pp",
    "signatures",
    "tl",
]
