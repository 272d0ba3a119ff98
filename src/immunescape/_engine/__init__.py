"""The scoring engine: plain matrices in, score arrays out, no AnnData.

- :mod:`.values`: one pass over the stored values (checks, gene statistics);
- :mod:`.chunk`: one row chunk through a method's plan;
- :mod:`.runner`: in memory and backed (chunked, prefetching) and the hand-over to :mod:`.dask`;
- :mod:`.record`: the provenance record a run leaves in ``uns`` and what a re-run removes.

``immunescape.tl`` holds the public functions on AnnData; they call :func:`score_matrix`.
"""

from .record import (
    NULL_SUFFIXES,
    check_key_is_ours,
    h5ad_safe,
    obs_columns,
    previous_outputs,
    removed_record,
    store_scores,
)
from .runner import is_dask, numba_threads, score_matrix
from .values import gene_stats, is_in_memory

__all__ = [
    "NULL_SUFFIXES",
    "gene_stats",
    "h5ad_safe",
    "is_dask",
    "is_in_memory",
    "numba_threads",
    "obs_columns",
    "check_key_is_ours",
    "previous_outputs",
    "removed_record",
    "score_matrix",
    "store_scores",
]
