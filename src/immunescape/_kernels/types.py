"""The kernels' input types: NamedTuples of plain arrays and numbers (numba compiles them as tuples).

They give the kernels' arguments names instead of positions: a chunk's CSR rows, a method's up and
down gene sets, and the null's random sets (see :mod:`.nulls`).

Two rules of numba's parallel loops shape them (both found the hard way):

- a NamedTuple used inside a ``prange`` body must be a *direct, flat* argument of the kernel: numba
  cannot rebuild one that was unpacked from another tuple, nor a nested one, for the loop body;
- arrays are taken out of a tuple *before* the ``prange`` (``data, indices, ... = rows``): a write
  through ``tuple.field[i]`` inside the loop is silently lost.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

AFFINE, ES_RATIO = 0, 1  # null statistic shapes (see :mod:`.nulls`)


class CsrRows(NamedTuple):
    """Rows ``r0:r1`` of a CSR matrix given as (data, indices, indptr)."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    r0: int
    r1: int


class SplitSets(NamedTuple):
    """Each signature's up genes and down genes, CSR-like by signature: signature ``s``'s up genes are
    ``up_idx[up_ptr[s]:up_ptr[s + 1]]`` (gene positions), likewise its down genes."""

    up_ptr: np.ndarray
    up_idx: np.ndarray
    dn_ptr: np.ndarray
    dn_idx: np.ndarray


class NullBundle(NamedTuple):
    """A method's random gene sets as the kernels read them (built by :func:`immunescape._null.build_null_sets`)."""

    slot_gene: np.ndarray  # (n_null, n_slots): the gene drawn into each slot of each replicate
    obs_ptr: np.ndarray  # each signature's own genes (CSR by signature) ...
    obs_gene: np.ndarray
    obs_part: np.ndarray  # ... their part (0 up, 1 down)
    obs_cw: np.ndarray  # ... and weight x coefficient
    k_part: np.ndarray  # (n_sig, 2): genes per part
    ent_ptr: np.ndarray  # for each gene (CSR by gene), the entries k * n_groups + group it adds to
    ent_idx: np.ndarray
    grp_ptr: np.ndarray  # each signature's groups (one part and weight), CSR by signature ...
    grp_cw: np.ndarray  # ... their weight x coefficient
    grp_part: np.ndarray  # ... and part
    c0: np.ndarray  # (n_sig,): AFFINE scores' constant
    shift_coef: np.ndarray  # (n_sig,): AFFINE scores' coefficient of the row's shift
    statistic: int  # AFFINE or ES_RATIO
    floor: float  # AFFINE scores below it are raised to it (-inf: none)
    n_genes: float  # ES_RATIO: the number of ranked genes
    seed: int  # the seed of the tie-breaking uniforms
    # where each null-set slot draws its gene from, for the saddlepoint tail (AFFINE shapes): a slot's
    # source is a range of expression bins and a probability for each of their genes
    bin_of: np.ndarray  # each gene's expression bin, -1 outside the pool
    bin_size: np.ndarray  # genes per bin
    gene_pos: np.ndarray  # each gene's position in the pool ordered by bin, -1 outside the pool
    slot_ptr: np.ndarray  # each signature's slots, CSR by signature: ...
    slot_cw: np.ndarray  # ... their weight x coefficient
    slot_source: np.ndarray  # ... and source
    source_bins: np.ndarray  # (n_sources, 2): the bins [lo, hi) a source draws from ...
    source_base: np.ndarray  # ... gene g's probability is source_prob[source_base + gene_pos[g]] ...
    source_n: np.ndarray  # ... and its number of genes
    source_prob: np.ndarray


class NullTables(NamedTuple):
    """Where a kernel writes one chunk's z and p (rows x signatures): ``row_offset`` is the chunk's
    first matrix row minus its first CSR row (the tie-breaking uniforms depend on the matrix row)."""

    row_offset: int
    z: np.ndarray
    p: np.ndarray


class MomentBundle(NamedTuple):
    """The analytic null of the linear methods (see :func:`immunescape._kernels.nulls.linear_moments`)."""

    bin_of: np.ndarray  # each gene's expression bin, -1 outside the pool
    bin_size: np.ndarray  # genes per bin
    reciprocal: np.ndarray  # 1 / k for k = 0.. (1 for k = 0): no divisions in the row loop
    zero_ptr: np.ndarray  # where each bin's "c random genes all unexpressed" probabilities start
    sb_ptr: np.ndarray  # each signature's bins, CSR by signature: ...
    sb_bin: np.ndarray  # ... the bin
    sb_zero_at: np.ndarray  # ... where its "none expressed" probability sits
    sb_coef: np.ndarray  # ... (n, 3): coefficients of the bin's mean, variance and third central moment
    obs_ptr: np.ndarray  # each signature's own genes (CSR by signature) ...
    obs_gene: np.ndarray
    obs_w: np.ndarray  # ... and weights, as the method scores them
    nonneg: np.ndarray  # per signature: all weights >= 0 (the "nothing expressed" atom exists)
    seed: int  # the seed of the tie-breaking uniforms


def empty_bundle() -> NullBundle:
    """A bundle with no null sets (kernels skip the null work); the same field types as a real one."""
    i0, f0, i1 = np.zeros(0, np.int64), np.zeros(0), np.zeros(1, np.int64)
    return NullBundle(
        np.zeros((0, 0), np.int64),
        i1,
        i0,
        i0,
        f0,
        np.zeros((0, 2), np.int64),
        i1,
        np.zeros(0, np.int32),
        i1,
        f0,
        i0,
        f0,
        f0,
        AFFINE,
        -math.inf,
        0.0,
        0,
        i0,
        i0,
        i0,
        i1,
        f0,
        i0,
        np.zeros((0, 2), np.int64),
        i0,
        i0,
        f0,
    )


NO_NULL = (
    empty_bundle(),
    NullTables(0, np.zeros((0, 0)), np.zeros((0, 0))),
)  # a kernel's null arguments without a null
