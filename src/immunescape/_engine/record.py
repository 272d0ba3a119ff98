"""Provenance and storage: the record every score run leaves in ``uns``, and what a re-run removes."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

logger = logging.getLogger(__name__)

#: obsm key suffixes of the null statistics (the keys of ``score(..., inplace=False)``'s dict without the "_")
NULL_SUFFIXES = ("_z", "_pval", "_padj")


def store_scores(
    adata: AnnData,
    table: pd.DataFrame,
    record: dict,
    null_tables: dict[str, pd.DataFrame],
    key_added: str,
    *,
    obs: bool = True,
) -> None:
    """Write scores, null tables and the record into ``adata`` as :func:`score` does, first removing what an
    earlier run with the same ``key_added`` wrote and this one does not rewrite."""
    new_obs = obs_columns(table, key_added) if obs else {}
    stale_obs, stale_obsm = previous_outputs(adata, key_added, new_obs, [key_added + s for s in null_tables])
    adata.obs.drop(columns=stale_obs, inplace=True)
    for name in stale_obsm:
        del adata.obsm[name]
    adata.obsm[key_added] = table
    for suffix, frame in null_tables.items():
        adata.obsm[key_added + suffix] = frame
    for name, values in new_obs.items():
        adata.obs[name] = values
    record["removed_previous"] = removed_record(stale_obs, stale_obsm)
    adata.uns[key_added] = record


def removed_record(stale_obs: list[str], stale_obsm: list[str]) -> dict[str, np.ndarray]:
    """How ``uns[key_added]["removed_previous"]`` lists what a re-run removed."""
    return {"obs": np.asarray(stale_obs, dtype=str), "obsm": np.asarray(stale_obsm, dtype=str)}


def is_score_record(value: Any) -> bool:
    """Whether ``value`` is the ``uns`` record a :func:`score` run leaves (what makes a key ours to replace)."""
    return isinstance(value, dict) and {"method", "signatures", "versions"} <= set(value)


def check_key_is_ours(adata: AnnData, key_added: str, obs_names=()) -> None:
    """Refuse a ``key_added`` whose ``obsm``/``uns`` entries or ``obs`` columns hold data no earlier score run
    with that key wrote: scoring replaces its own earlier outputs, never a user's UMAP or notes."""
    from .._errors import InputError

    previous = adata.uns.get(key_added)
    ours = is_score_record(previous)
    taken = [f"obsm[{k!r}]" for k in (key_added + s for s in ("", *NULL_SUFFIXES)) if k in adata.obsm and not ours]
    if key_added in adata.uns and not ours:
        taken.append(f"uns[{key_added!r}]")
    earlier = (
        {f"{key_added}_{n}" for n in np.asarray(previous.get("signatures", []), dtype=str).ravel()} if ours else set()
    )
    taken += [f"obs[{c!r}]" for c in obs_names if c in adata.obs and c not in earlier]
    if taken:
        raise InputError(
            f"key_added={key_added!r} would replace {', '.join(taken[:5])}{' ...' if len(taken) > 5 else ''}, which no "
            "immunescape score run with that key wrote. Choose another key_added (CLI --key-added), or remove "
            "those entries first if they are yours to drop."
        )


def previous_outputs(adata: AnnData, key_added: str, new_obs, new_obsm) -> tuple[list[str], list[str]]:
    """The ``obs`` columns and ``obsm`` entries an earlier ``score`` run with ``key_added`` wrote that this
    run does not rewrite: removed, so obs and obsm never disagree (the run's ``uns`` lists them). Entries
    that run did not write are refused (:func:`check_key_is_ours`)."""
    check_key_is_ours(adata, key_added, new_obs)
    previous = adata.uns.get(key_added)
    names = previous.get("signatures", []) if isinstance(previous, dict) else []
    stale_obs = [
        c
        for c in (f"{key_added}_{n}" for n in np.asarray(names, dtype=str).ravel())
        if c in adata.obs and c not in new_obs
    ]
    stale_obsm = [k for k in (key_added + s for s in NULL_SUFFIXES) if k in adata.obsm and k not in new_obsm]
    if stale_obs or stale_obsm:
        logger.info(
            "removed %d obs column(s) and %d obsm entr(ies) of the previous %r run",
            len(stale_obs),
            len(stale_obsm),
            key_added,
        )
    return stale_obs, stale_obsm


def obs_columns(table: pd.DataFrame, key_added: str) -> dict[str, np.ndarray]:
    """The ``obs`` columns ``score`` adds: one per signature, named ``{key_added}_{signature}``."""
    return {f"{key_added}_{name}": table[name].to_numpy() for name in table.columns}


def h5ad_safe(value: Any) -> Any:
    """Make ``uns`` content writable to .h5ad (no None, plain containers)."""
    if value is None:
        return "None"
    if isinstance(value, dict):
        return {str(k): h5ad_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [h5ad_safe(v) for v in value]
        return np.asarray(items) if items and all(isinstance(v, (str, int, float, np.number)) for v in items) else items
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value
