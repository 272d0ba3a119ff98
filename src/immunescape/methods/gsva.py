"""``gsva``: GSVA delegated to gseapy (its Rust code); bulk and pseudobulk, not chunked.

GSVA's gene statistics depend on all samples at once, so the method has ``run_all`` instead of a
chunk ``run`` (capability ``chunked=False``). Its null sets join the one gseapy call and are
compared by the kernels' own rules (:func:`immunescape._kernels.nulls.explicit_nulls`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._errors import InputError
from .._kernels import nulls
from .common import rank_null_sets, split_sets
from .registry import GeneStats, Method, NullOut, NullSpec, Plan, register


def prepare(resolved, stats: GeneStats, params, random_state, null: NullSpec | None = None) -> Plan:
    if stats.n_rows > params["max_samples"]:
        raise InputError(
            f"GSVA scores every sample against all others and needs the whole matrix dense; {stats.n_rows:,} rows is "
            "more "
            f"than max_samples={params['max_samples']:,}. It is meant for bulk or pseudobulk data: use "
            "ie.pp.pseudobulk(...) first, a per-cell method (ucell, aucell, singscore), or raise max_samples."
        )
    if params["kcdf"] not in ("Gaussian", "Poisson", None):
        raise InputError("kcdf must be 'Gaussian' (log-normalised data), 'Poisson' (counts) or None.")
    split = split_sets(resolved)
    up_ptr, up_idx, dn_ptr, dn_idx = split
    labels = np.asarray([f"G{i}" for i in range(stats.n_genes)])  # neutral upper-case ids: no renaming inside gseapy
    sets: dict[str, list[str]] = {}
    for s, name in enumerate(resolved.names):
        sets[f"{name}__UP"] = labels[up_idx[up_ptr[s] : up_ptr[s + 1]]].tolist()
        if dn_ptr[s + 1] > dn_ptr[s]:
            sets[f"{name}__DN"] = labels[dn_idx[dn_ptr[s] : dn_ptr[s + 1]]].tolist()
    # GSVA's gene statistics depend on all samples, not on the sets: the random sets join the one gseapy call
    null_sets = rank_null_sets(null, resolved, stats, split, np.ones(stats.n_genes, bool), random_state)
    if null_sets is not None:
        run_ptr, run_lo, run_hi, _, run_part = null_sets.runs
        for k in range(null_sets.slot_gene.shape[0]):
            for s, name in enumerate(resolved.names):
                for r in range(run_ptr[s], run_ptr[s + 1]):
                    key = f"{name}__N{k}__{'UP' if run_part[r] == 0 else 'DN'}"
                    sets.setdefault(key, []).extend(labels[null_sets.slot_gene[k, run_lo[r] : run_hi[r]]].tolist())
    sets = {k: v for k, v in sets.items() if v}

    def run_all(matrix, null_out: NullOut | None = None) -> np.ndarray:
        import gseapy

        dense = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)
        frame = pd.DataFrame(dense.T.astype(np.float64), index=labels, columns=[f"s{i}" for i in range(dense.shape[0])])
        res = gseapy.gsva(
            frame,
            sets,
            kcdf=params["kcdf"],
            weight=params["tau"],
            mx_diff=params["mx_diff"],
            min_size=1,
            max_size=stats.n_genes,
            threads=int(params["threads"]),
            outdir=None,
            verbose=False,
        ).res2d
        table = res.pivot(index="Name", columns="Term", values="ES").astype(float).reindex(index=frame.columns)

        def es(prefix: str) -> np.ndarray:  # ES(up) - ES(down) of the sets named prefix__UP / prefix__DN
            up = table[f"{prefix}__UP"].to_numpy() if f"{prefix}__UP" in table else np.zeros(dense.shape[0])
            return up - (table[f"{prefix}__DN"].to_numpy() if f"{prefix}__DN" in table else 0.0)

        out = np.stack([es(name) for name in resolved.names], axis=1)
        if null_sets is not None and null_out is not None:
            n_null = null_sets.slot_gene.shape[0]
            random = np.stack(
                [np.stack([es(f"{name}__N{k}") for k in range(n_null)], axis=1) for name in resolved.names], 1
            )
            nulls.explicit_nulls(out, random, null_sets.seed, 0, *null_out)
        return out

    return Plan(run_all=run_all, null=null_sets)


register(
    Method(
        name="gsva",
        description=(
            "GSVA: kernel-CDF gene statistics across samples, then a rank random walk per sample (gseapy's Rust code)"
        ),
        equals="gseapy.gsva ES (delegated); bulk and pseudobulk only, slower than the per-cell methods",
        reference="Hanzelmann, Castelo & Guinney, BMC Bioinformatics 2013, doi:10.1186/1471-2105-14-7",
        params={"kcdf": "Gaussian", "tau": 1.0, "mx_diff": True, "max_samples": 5000, "threads": 2},
        rules={
            "kcdf": ("optional str", ("Gaussian", "Poisson")),
            "tau": ("number", 0),
            "max_samples": ("int", 1),
            "threads": ("int", 1),
        },
        needs=(),
        signed="ES(up) minus ES(down)",
        weighted=False,
        expects_log=False,
        value_range="(-1, 1) with mx_diff",
        prepare=prepare,
        chunked=False,
    )
)
