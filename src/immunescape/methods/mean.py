"""``mean``: scanpy's ``score_genes`` (Seurat's AddModuleScore), reproduced control gene by control gene.

A linear score (the signature genes' mean minus expression-matched controls' mean), so it has the
analytic null beside the matched one; the control term is shared by the signature and its random
sets and cancels in the null.
"""

from __future__ import annotations

import numpy as np

from .._errors import InputError
from .._null import expression_bins
from .common import linear_null_sets, linear_run, linear_weights, split_sets
from .registry import GeneStats, Method, NullSpec, Plan, register


def _scanpy_controls(
    gene_list: np.ndarray,
    bin_genes: dict[float, np.ndarray],
    bin_of: np.ndarray,
    *,
    ctrl_size: int,
    ctrl_as_ref: bool,
    random_state: int | None,
    rs: np.random.RandomState,
) -> np.ndarray:
    """scanpy.tl.score_genes' control genes for one gene list (positions), reproduced step by step.

    ``bin_genes`` holds each bin's pool genes in var order; ``bin_of`` maps a gene to its bin. ``rs``
    is re-seeded with ``random_state`` here.
    """
    in_list = np.zeros(bin_of.size, bool)
    in_list[gene_list] = True
    # scanpy seeds numpy's global legacy RNG on every call; a private RandomState seeded alike gives the
    # same stream (re-seeding one costs a microsecond, creating one 80)
    rs.seed(random_state)
    control: list[np.ndarray] = []
    for c in np.unique(bin_of[gene_list]):
        in_bin = bin_genes[c]  # every list gene has a bin: prepare refused a pool without one
        r_genes = in_bin if ctrl_as_ref else in_bin[~in_list[in_bin]]
        if ctrl_size < len(r_genes):
            # what rs.choice(len(r_genes), size=ctrl_size, replace=False) draws (numpy's legacy choice without
            # replacement takes a permutation's head), without its argument handling: one call per signature and bin
            r_genes = r_genes[rs.permutation(len(r_genes))[:ctrl_size]]
        if ctrl_as_ref:
            r_genes = r_genes[~in_list[r_genes]]
        control.append(r_genes)
    chosen = np.zeros(bin_of.size, bool)  # sorted and unique, as np.unique gives, for a fraction of its time
    for r_genes in control:
        chosen[r_genes] = True
    control_genes = np.flatnonzero(chosen)
    if control_genes.size == 0:
        raise InputError(
            "No control genes found in any expression bin" + (" (try ctrl_as_ref=False)." if ctrl_as_ref else ".")
        )
    return control_genes.astype(np.int64)


def prepare(resolved, stats: GeneStats, params, random_state, null: NullSpec | None = None) -> Plan:
    """scanpy's score: each part's mean minus its controls' mean, as one linear map of the row."""
    if params["ctrl_size"] < 1 or params["n_bins"] < 2:
        raise InputError("mean needs ctrl_size >= 1 and n_bins >= 2.")
    pool = np.arange(stats.n_genes) if params["gene_pool"] is None else np.asarray(params["gene_pool"], np.int64)
    if not np.isfinite(stats.means[pool]).all():  # scanpy's float32 sums overflow where float64 ones need not
        from .._engine.values import TOO_LARGE

        raise InputError(TOO_LARGE)
    pool_genes, cut = expression_bins(stats.means, pool, params["n_bins"])
    bin_of = np.full(stats.n_genes, np.nan)
    bin_of[pool_genes] = cut
    outside = [name for name, pos in zip(resolved.names, resolved.positions) if np.isnan(bin_of[pos]).any()]
    if outside:  # a gene without a bin has no controls; scanpy refuses it (a KeyError from its bins)
        raise InputError(
            f"gene_pool leaves out genes of {len(outside)} signature(s) ({', '.join(outside[:5])}): a signature gene "
            "needs the controls of its expression bin among the pool, and scanpy.tl.score_genes refuses one outside "
            "it. Add the signatures' genes to gene_pool, or pass gene_pool=None (every gene)."
        )
    # each bin's genes in var order, split once instead of masking the pool per signature and bin
    order = np.argsort(cut, kind="stable")
    bins, starts = np.unique(cut[order], return_index=True)
    bin_genes = dict(zip(bins.tolist(), np.split(pool_genes[order], starts[1:])))
    up_ptr, up_idx, dn_ptr, dn_idx = split_sets(resolved)
    genes, cols, n_controls, null_genes, null_cols = [], [], [], [], []
    rs = np.random.RandomState(0)  # re-seeded for every signature part, as scanpy seeds per call
    for s in range(len(resolved.signatures)):
        g_s, w_s, n_c = [], [], 0
        for ptr, idx, sign in ((up_ptr, up_idx, 1.0), (dn_ptr, dn_idx, -1.0)):
            part = idx[ptr[s] : ptr[s + 1]]
            if part.size == 0:
                continue
            ctrl = _scanpy_controls(
                part,
                bin_genes,
                bin_of,
                ctrl_size=params["ctrl_size"],
                ctrl_as_ref=params["ctrl_as_ref"],
                random_state=random_state,
                rs=rs,
            )
            g_s += [part, ctrl]
            w_s += [np.full(part.size, sign / part.size), np.full(ctrl.size, -sign / ctrl.size)]
            n_c += ctrl.size
        genes.append(np.concatenate(g_s))
        cols.append(np.concatenate(w_s))
        n_controls.append(n_c)
        # the null replaces the signature genes; the control term is the same for all and cancels
        null_genes.append(np.concatenate(g_s[::2]))
        null_cols.append(np.concatenate(w_s[::2]))
    in_pool = np.zeros(stats.n_genes, bool)
    in_pool[pool] = True
    null_sets = linear_null_sets(null, resolved, stats, null_genes, null_cols, in_pool, random_state)
    return Plan(
        run=linear_run(linear_weights(cols, genes, stats.n_genes), null_sets, stats.n_genes),
        null=null_sets,
        details={"n_control_genes": dict(zip(resolved.names, n_controls))},
    )


register(
    Method(
        name="mean",
        description="Mean of the signature genes minus the mean of expression-matched random control genes",
        equals="scanpy.tl.score_genes (Seurat AddModuleScore); same controls for the same random_state",
        reference="Tirosh et al., Science 2016, doi:10.1126/science.aad0501; Satija et al. 2015",
        params={"ctrl_size": 50, "n_bins": 25, "ctrl_as_ref": True, "gene_pool": None},
        rules={"ctrl_size": ("int", 1), "n_bins": ("int", 2), "gene_pool": ("any", None)},
        needs=("means",),
        signed="up minus down, each against its own controls",
        weighted=False,
        expects_log=True,
        value_range="(-inf, inf)",
        prepare=prepare,
        nulls=("matched", "analytic"),
        legacy_seed=True,
    )
)
