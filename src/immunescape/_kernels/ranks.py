"""Rank-based scores computed from each row's stored values, never densifying the row.

Every kernel takes rows ``r0:r1`` of a CSR matrix (a :class:`.types.CsrRows`), the signature genes
as CSR-like index arrays (a :class:`.types.SplitSets`), and writes one score per row and signature
into ``out``; with null sets (a :class:`.types.NullBundle`), also each score's z and p into its
:class:`.types.NullTables`. Genes not stored in a row are zeros; their ranks follow in closed form
from the counts of stored values below/above zero, so a row costs O(nnz log nnz + signature genes).

Rows are split into ``n_blocks`` blocks processed in parallel (the caller passes a multiple of the
thread count); each block owns scratch buffers. Rows are independent, so the split (and the thread
count) cannot change any result.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import nulls
from .caching import lock_cache_files


@njit(cache=True, nogil=True)
def _gather(data, indices, start, stop, vals, genes):  # pragma: no cover - numba
    """Copy the row's non-zero, non-NaN values (as float64) and their genes; return the count."""
    c = 0
    for j in range(start, stop):
        v = np.float64(data[j])
        if v != 0.0 and v == v:
            vals[c] = v
            genes[c] = indices[j]
            c += 1
    return c


_TIE_BITS = 31
_TIE_MASK = (1 << _TIE_BITS) - 1


@njit(cache=True, nogil=True)
def _sort_entries(vals, ties, c, descending, fbuf, keys, out_ties, out_vals, top=-1):  # pragma: no cover - numba
    """Sort the row's first ``c`` entries by value (ascending, or descending), ties by ascending ``ties``
    (non-negative, < 2**31), writing the sorted tie keys and values to ``out_ties``/``out_vals``.
    Returns how many leading entries were sorted: ``c``, or ``top`` where only the first ``top`` of
    the order are wanted (``0 < top < c``) and the fast path selects them before sorting. With
    ``top >= 0`` only the order is wanted: the fast path leaves ``out_vals`` unwritten.

    Fast path: every value is exactly a float32, so value and tie key pack into one int64 (the
    value's order-preserving 32-bit pattern above the tie key) sorted in place, with no index array;
    the keys are distinct, so a partial selection of the ``top`` smallest then sorted equals the full
    sort's first ``top``. Otherwise: sort by tie key, then a stable sort by value (all ``c``)."""
    exact = True
    for t in range(c):
        v = -vals[t] if descending else vals[t]
        fbuf[t] = np.float32(v)
        if np.float64(fbuf[t]) != v:
            exact = False
            break
    if exact:
        bits = fbuf[:c].view(np.uint32)
        for t in range(c):
            u = np.int64(bits[t])
            u = (~u) & 0xFFFFFFFF if u & 0x80000000 else u | 0x80000000  # order-preserving float32 -> uint32
            keys[t] = (u << _TIE_BITS) | np.int64(ties[t])
        m = c
        if 0 < top < c:
            m = top
            keys[:m] = np.partition(keys[:c], m - 1)[:m]
        keys[:m].sort()
        for t in range(m):
            out_ties[t] = keys[t] & _TIE_MASK
        if top >= 0:  # only the order was asked for
            return m
        back = fbuf[:m].view(np.uint32)  # the sorted values, decoded from the packed patterns
        for t in range(m):
            u = keys[t] >> _TIE_BITS
            back[t] = np.uint32(u & 0x7FFFFFFF) if u & 0x80000000 else np.uint32((~u) & 0xFFFFFFFF)
        for t in range(m):
            out_vals[t] = -np.float64(fbuf[t]) if descending else np.float64(fbuf[t])
        return m
    by_tie = np.argsort(ties[:c])
    key = np.empty(c)
    for t in range(c):
        key[t] = -vals[by_tie[t]] if descending else vals[by_tie[t]]
    by_val = np.argsort(key, kind="mergesort")
    for t in range(c):
        out_ties[t] = ties[by_tie[by_val[t]]]
        out_vals[t] = vals[by_tie[by_val[t]]]
    return c


# ------------------------------------------------------------------------- ranks by counting values
#: most distinct values per row ranked by counting; beyond, the row is sorted. Log-normalised counts
#: take few distinct values per cell (a handful of small counts times one size factor: 15 in the
#: median cell of the 10x-like benchmark data); continuous values (bulk, imputed) exceed it quickly.
MAX_GROUPS = 256
_TABLE_BITS = 9  # hash table of 512 slots: at most half full
_TABLE_SIZE = 1 << _TABLE_BITS


@njit(cache=True, nogil=True)
def value_table():  # pragma: no cover - numba
    """Scratch for :func:`_value_groups`: slot keys, slot groups, slot stamps, and per-group arrays."""
    return (
        np.zeros(_TABLE_SIZE, np.int64),
        np.zeros(_TABLE_SIZE, np.int64),
        np.zeros(_TABLE_SIZE, np.int64),
        np.empty(MAX_GROUPS),
        np.empty(MAX_GROUPS, np.int64),
        np.empty(MAX_GROUPS, np.int64),
        np.empty(MAX_GROUPS, np.int64),
    )


@njit(cache=True, nogil=True)
def _value_groups(vals, c, stamp, table, group_of):  # pragma: no cover - numba
    """Group the row's first ``c`` values by exact value (a hash of their bits; zeros and NaN are never
    among them), then order the groups by value. ``stamp`` must differ from row to row (it marks the
    table's slots as this row's, so the table is never cleared).

    Returns the number of groups ``d``, with ``group_of[t]`` entry t's group, ``size[g]`` and
    ``value[g]`` each group's size and value, ``start[g]`` the number of entries in groups of
    smaller value and ``level[u]`` the group of the u-th smallest value; or -1 when the row has more
    than :data:`MAX_GROUPS` distinct values (then the caller sorts). Equal ranks by counting and by
    sorting: a rank depends only on how many entries are smaller and how many are tied.
    """
    slot_key, slot_group, slot_stamp, value, size, start, level = table
    bits = vals.view(np.int64)
    d = 0
    for t in range(c):
        key = bits[t]
        h = (np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - _TABLE_BITS)
        while True:
            if slot_stamp[h] != stamp:  # empty for this row: a new value
                if d == MAX_GROUPS:
                    return -1
                slot_stamp[h] = stamp
                slot_key[h] = key
                slot_group[h] = d
                value[d] = vals[t]
                size[d] = 0
                d += 1
            if slot_key[h] == key:
                g = slot_group[h]
                group_of[t] = g
                size[g] += 1
                break
            h = (h + np.uint64(1)) & np.uint64(_TABLE_SIZE - 1)
    order = np.argsort(value[:d])
    below = 0
    for u in range(d):
        g = order[u]
        level[u] = g
        start[g] = below
        below += size[g]
    return d


@njit(cache=True, nogil=True)
def _radix_sort(keys, spare, c, n_bits, counts):  # pragma: no cover - numba
    """Sort the first ``c`` non-negative ``keys`` (below ``2**n_bits``) in place: least significant
    byte first, one counting pass per byte; ``spare`` (as long) and ``counts`` (256) are scratch.
    Branch-free and linear, where a comparison sort of a row's ~1,000 keys mispredicts half its
    branches."""
    src, dst = keys, spare
    n_pass = 0
    for shift in range(0, n_bits, 8):
        counts[:] = 0
        for t in range(c):
            counts[(src[t] >> shift) & 255] += 1
        total = 0
        for b in range(256):
            n_b = counts[b]
            counts[b] = total
            total += n_b
        for t in range(c):
            k = src[t]
            b = (k >> shift) & 255
            dst[counts[b]] = k
            counts[b] += 1
        src, dst = dst, src
        n_pass += 1
    if n_pass % 2 == 1:  # the sorted keys are in ``spare``
        keys[:c] = spare[:c]


#: rows with fewer values are sorted by comparison (a radix pass clears 256 counters)
_RADIX_MIN = 128


# ----------------------------------------------------------------------------------------- UCell
@njit(parallel=True, cache=True, nogil=True)
def ucell(
    rows, n_genes, max_nnz, sets, up_missing, dn_missing, max_rank, w_neg, n_blocks, out, bundle, tables
):  # pragma: no cover - numba
    """UCell as pyUCell 0.8: ranks of non-zero values (descending, ties averaged), ranks above
    ``max_rank`` and zeros count as ``max_rank``; U-statistic normalised to [0, 1]; the down set's
    score times ``w_neg`` is subtracted and the result clipped at 0. ``*_missing`` genes (absent
    from the data) count as ``max_rank`` too ("impute"). With null sets in ``bundle``
    (:class:`.types.NullBundle`), z-scores and p-values against random gene sets go to ``tables``."""
    data, indices, indptr, r0, r1 = rows
    up_ptr, up_idx, dn_ptr, dn_idx = sets
    row_offset, z_out, p_out = tables
    n_rows = r1 - r0
    n_sig = up_ptr.shape[0] - 1
    nb = max(1, min(n_rows, n_blocks))
    has_null = bundle.slot_gene.shape[0] > 0
    for b in prange(nb):
        lo = r0 + b * n_rows // nb
        hi = r0 + (b + 1) * n_rows // nb
        rank = np.full(n_genes, np.float64(max_rank))
        term = np.zeros((1, n_genes if has_null else 1))  # rank - max_rank: the null's gene terms
        shift = np.full(1, np.float64(max_rank))
        work = nulls.scratch(bundle, 1)
        vals = np.empty(max_nnz)
        genes = np.empty(max_nnz, np.int64)
        table = value_table()
        group_of = np.empty(max_nnz, np.int64)
        for i in range(lo, hi):
            c = _gather(data, indices, indptr[i], indptr[i + 1], vals, genes)
            d = _value_groups(vals, c, i + 1, table, group_of)
            if d >= 0:  # descending rank of a group: the entries above it, then its average place
                size, start = table[4], table[5]
                for t in range(c):
                    g = group_of[t]
                    a = c - start[g] - size[g]
                    r = (a + 1 + a + size[g]) / 2.0
                    if a < max_rank and r <= max_rank:
                        rank[genes[t]] = r
            else:
                order = np.argsort(-vals[:c])  # tie order is irrelevant: tied values share their average rank
                a = 0
                while a < c and a < max_rank:  # later groups rank above max_rank and stay at max_rank
                    e = a + 1
                    while e < c and vals[order[e]] == vals[order[a]]:
                        e += 1
                    r = (a + 1 + e) / 2.0
                    if r <= max_rank:
                        for t in range(a, e):
                            rank[genes[order[t]]] = r
                    a = e
            for s in range(n_sig):
                pos = _u_score(rank, up_idx, up_ptr[s], up_ptr[s + 1], up_missing[s], max_rank)
                neg = _u_score(rank, dn_idx, dn_ptr[s], dn_ptr[s + 1], dn_missing[s], max_rank)
                score = pos - w_neg * neg
                out[i - r0, s] = score if score > 0.0 else 0.0
            if has_null:
                for t in range(c):
                    term[0, genes[t]] = rank[genes[t]] - max_rank
                nulls.row_nulls(term, shift, genes, c, bundle, work, i + row_offset, z_out[i - r0], p_out[i - r0])
                for t in range(c):
                    term[0, genes[t]] = 0.0
            for t in range(c):
                rank[genes[t]] = max_rank


@njit(cache=True, nogil=True)
def _u_score(rank, idx, start, stop, n_missing, max_rank):  # pragma: no cover - numba
    length = stop - start + n_missing
    if length == 0:
        return 0.0
    total = n_missing * np.float64(max_rank)
    for t in range(start, stop):
        total += rank[idx[t]]
    s_min = length * (length + 1) / 2.0
    s_max = length * np.float64(max_rank)
    if s_max == s_min:
        return 0.0
    return 1.0 - (total - s_min) / (s_max - s_min)


# ---------------------------------------------------------------------------------------- AUCell
@njit(parallel=True, cache=True, nogil=True)
def aucell(
    rows, n_genes, max_nnz, position, gene_at, n_ranked, set_ptr, set_idx, max_auc, n_up, n_blocks, out, bundle, tables
):  # pragma: no cover - numba
    """AUCell as decoupler 2.x: ordinal ranks (descending values, ties broken by ``position``, the
    gene's place in a fixed random order); area under the recovery curve of the set's genes within
    the top ``n_up`` ranks, divided by the maximum possible area (``max_auc``). The area telescopes
    to the sum of ``n_up - rank`` over set genes ranked at most ``n_up``. ``n_ranked`` genes take
    part in the ranking (decoupler drops genes that are zero in every row). All-zero rows score 0.
    With null sets in ``bundle``, each gene's term ``n_up - rank`` (0 beyond ``n_up``), averaged within
    tie groups, feeds :mod:`.nulls`."""
    data, indices, indptr, r0, r1 = rows
    row_offset, z_out, p_out = tables
    n_rows = r1 - r0
    n_sig = set_ptr.shape[0] - 1
    nb = max(1, min(n_rows, n_blocks))
    has_null = bundle.slot_gene.shape[0] > 0
    pos_bits = 1  # positions 0 .. n_ranked - 1 fit in pos_bits bits
    while (1 << pos_bits) < n_ranked:
        pos_bits += 1
    pos_mask = (1 << pos_bits) - 1
    for b in prange(nb):
        lo = r0 + b * n_rows // nb
        hi = r0 + (b + 1) * n_rows // nb
        rank = np.zeros(n_genes, np.int64)
        term = np.zeros((1, n_genes if has_null else 1))
        shift = np.zeros(1)
        work = nulls.scratch(bundle, 1)
        listed = np.empty(max_nnz if has_null else 0, np.int64)
        vals = np.empty(max_nnz)
        genes = np.empty(max_nnz, np.int64)
        pos = np.empty(max_nnz, np.int64)
        walked = np.empty(n_ranked, np.int64)
        fbuf = np.empty(max_nnz, np.float32)
        keys = np.empty(max_nnz, np.int64)
        s_pos = np.empty(max_nnz, np.int64)
        s_vals = np.empty(max_nnz)
        table = value_table()
        group_of = np.empty(max_nnz, np.int64)
        from_top = np.empty(MAX_GROUPS, np.int64)
        spare = np.empty(max_nnz, np.int64)
        counts = np.empty(256, np.int64)
        for i in range(lo, hi):
            c = _gather(data, indices, indptr[i], indptr[i + 1], vals, genes)
            if c == 0:
                for s in range(n_sig):
                    out[i - r0, s] = 0.0
                if has_null:  # every set scores 0 (no terms)
                    shift[0] = 0.0
                    nulls.row_nulls(term, shift, listed, 0, bundle, work, i + row_offset, z_out[i - r0], p_out[i - r0])
                continue
            n_pos = 0
            for t in range(c):
                pos[t] = position[genes[t]]
                if vals[t] > 0:
                    n_pos += 1
            # descending value, ties by position. Few distinct values (counts): each entry's key is its value's
            # level from the top, then its position, radix-sorted. Otherwise a comparison sort, of which
            # without a null only the top n_up entries are needed (the rest rank beyond n_up: n_up + 1, no term)
            d = _value_groups(vals, c, i + 1, table, group_of) if c >= _RADIX_MIN else -1
            if c >= _RADIX_MIN and d >= 0:
                value, level = table[3], table[6]
                for u in range(d):
                    from_top[level[u]] = d - 1 - u
                for t in range(c):
                    keys[t] = (from_top[group_of[t]] << pos_bits) | pos[t]
                _radix_sort(keys, spare, c, 8 + pos_bits, counts)
                for t in range(c):
                    s_pos[t] = keys[t] & pos_mask
                if has_null:
                    for t in range(c):
                        s_vals[t] = value[level[d - 1 - (keys[t] >> pos_bits)]]
                n_sorted = c
            else:
                n_sorted = _sort_entries(vals, pos, c, True, fbuf, keys, s_pos, s_vals, -1 if has_null else n_up)
            n_zero = n_ranked - c
            for t in range(n_sorted):
                rank[gene_at[s_pos[t]]] = t + 1 if t < n_pos else t + 1 + n_zero
            if n_sorted < c:
                for t in range(c):
                    if rank[genes[t]] == 0:
                        rank[genes[t]] = n_up + 1
            # the zeros rank after the positives, by position: walk the positions up to the last zero within n_up
            n_walked = 0
            zero_rank = n_pos + 1
            p = 0
            while zero_rank <= n_up and p < n_ranked:
                g = gene_at[p]
                if rank[g] == 0:
                    rank[g] = zero_rank
                    walked[n_walked] = g
                    n_walked += 1
                    zero_rank += 1
                p += 1
            for s in range(n_sig):
                acc = 0.0
                for u in range(set_ptr[s], set_ptr[s + 1]):
                    r = rank[set_idx[u]]
                    if 0 < r <= n_up:  # 0: a zero ranked beyond n_up
                        acc += n_up - r
                out[i - r0, s] = acc / max_auc[s] if max_auc[s] > 0 else 0.0
            if has_null:
                n_listed, zero_term = _aucell_terms(s_vals, s_pos, c, gene_at, n_pos, n_zero, n_up, term[0], listed)
                shift[0] = zero_term
                nulls.row_nulls(
                    term, shift, listed, n_listed, bundle, work, i + row_offset, z_out[i - r0], p_out[i - r0]
                )
                for t in range(n_listed):
                    term[0, listed[t]] = 0.0
            for t in range(c):
                rank[genes[t]] = 0
            for t in range(n_walked):
                rank[walked[t]] = 0


@njit(cache=True, nogil=True)
def _expected_area(first, last, n_up):  # pragma: no cover - numba
    """Mean of ``max(0, n_up - r)`` over the ranks r = first..last: a tie group's recovery-curve term
    averaged over every order of breaking its ties."""
    top = min(last, n_up - 1)
    if top < first:
        return 0.0
    count = top - first + 1
    return (count * n_up - (first + top) * count / 2.0) / (last - first + 1)


@njit(cache=True, nogil=True)
def _aucell_terms(s_vals, s_pos, c, gene_at, n_pos, n_zero, n_up, terms, listed):  # pragma: no cover - numba
    """Tie-averaged recovery-curve terms for the null: each tie group (the zeros are one) gets its
    terms averaged over its ranks, so a gene set cannot win ties by its place in decoupler's fixed
    tie-breaking order (which would make a fixed set look significant in every cell). Stored genes
    get ``term - zero_term`` in ``terms`` (listed in ``listed``); returns (their number, zero_term)."""
    zero_term = _expected_area(n_pos + 1, n_pos + n_zero, n_up) if n_zero > 0 else 0.0
    n_written = 0
    a = 0
    while a < c:
        e = a + 1
        while e < c and s_vals[e] == s_vals[a] and (e < n_pos) == (a < n_pos):
            e += 1
        shift = 0 if a < n_pos else n_zero  # values below zero rank after the zeros
        term = _expected_area(a + 1 + shift, e + shift, n_up) - zero_term
        for t in range(a, e):
            g = gene_at[s_pos[t]]
            terms[g] = term
            listed[n_written] = g
            n_written += 1
        a = e
    return n_written, zero_term


# ---------------------------------------------------------------------------------------- ssGSEA
@njit(cache=True, nogil=True)
def _ss_metric(rank_or_value, mode, n_genes, alpha):  # pragma: no cover - numba
    """gseapy's sample normalisation (0 rank, 1 none, 2 log_rank, 3 log) then |m| ** alpha."""
    if mode == 0:
        m = 10000.0 * rank_or_value / n_genes
    elif mode == 2:
        m = np.log(10000.0 * rank_or_value / n_genes + np.e)
    elif mode == 3:
        m = np.log(max(rank_or_value, 1.0) + np.e)
    else:
        m = rank_or_value
    return np.abs(m) ** alpha


@njit(parallel=True, cache=True, nogil=True)
def ssgsea(
    rows, n_genes, max_nnz, sets, up_u, dn_u, union, mode, alpha, n_blocks, out, bundle, tables
):  # pragma: no cover - numba
    """Single-sample GSEA as gseapy 1.x (GSVA's ssgsea without the final range normalisation).

    Genes are ordered by their metric (see ``_ss_metric``), descending, ties by descending gene
    index (gseapy reverses a stable ascending sort). With q the ascending position, the running-sum
    integral has the closed form
    ES = sum_h w_h (q_h + 1) / sum_h w_h - (N (N + 1) / 2 - sum_h (q_h + 1)) / (N - k).
    Signed signatures score ES(up) - ES(down). ``union`` holds every signature gene once, ascending;
    ``up_u``/``dn_u`` give each set gene's place in it: one merge per row counts, for all of them, the
    stored genes below them (what a zero gene's position needs). With null sets in ``bundle``, every
    gene's (w, w (q + 1), q + 1), with q its tie group's mean position, feeds :mod:`.nulls`."""
    data, indices, indptr, r0, r1 = rows
    up_ptr, up_idx, dn_ptr, dn_idx = sets
    row_offset, z_out, p_out = tables
    n_rows = r1 - r0
    n_sig = up_ptr.shape[0] - 1
    nb = max(1, min(n_rows, n_blocks))
    has_null = bundle.slot_gene.shape[0] > 0
    for b in prange(nb):
        lo = r0 + b * n_rows // nb
        hi = r0 + (b + 1) * n_rows // nb
        term = np.zeros((3, n_genes if has_null else 1))
        shift = np.zeros(3)
        work = nulls.scratch(bundle, 3)
        q = np.full(n_genes, -1, np.int64)  # ascending position of stored genes, -1 for zeros
        w = np.zeros(n_genes)
        vals = np.empty(max_nnz)
        genes = np.empty(max_nnz, np.int64)
        key = np.empty(max_nnz)
        sorted_genes = np.empty(max_nnz, np.int64)
        fbuf = np.empty(max_nnz, np.float32)
        keys = np.empty(max_nnz, np.int64)
        s_genes = np.empty(max_nnz, np.int64)
        s_key = np.empty(max_nnz)
        below = np.empty(union.size, np.int64)
        table = value_table()
        group_of = np.empty(max_nnz, np.int64)
        filled = np.zeros(MAX_GROUPS, np.int64)
        for i in range(lo, hi):
            c0 = _gather(data, indices, indptr[i], indptr[i + 1], vals, genes)
            c = 0
            for t in range(c0):  # in "log" mode values <= 1 share the zeros' metric: join their block
                if mode != 3 or vals[t] > 1.0:
                    vals[c] = vals[t]
                    genes[c] = genes[t]
                    c += 1
            n_zero = n_genes - c
            for t in range(c):
                key[t] = np.abs(vals[t]) if mode == 1 else vals[t]
            in_order = True
            for t in range(1, c):
                if genes[t] < genes[t - 1]:
                    in_order = False
                    break
            # ascending key, ties by ascending gene. Genes stored in order (canonical CSR): a counting sort
            # by key, stable, so each tie group keeps that order; otherwise (or too many distinct keys) a sort
            d = _value_groups(key, c, i + 1, table, group_of) if in_order else -1
            if d >= 0:
                start = table[5]
                filled[:d] = 0
                for t in range(c):
                    g = group_of[t]
                    p = start[g] + filled[g]
                    filled[g] += 1
                    s_genes[p] = genes[t]
                    s_key[p] = key[t]
            else:
                _sort_entries(key, genes, c, False, fbuf, keys, s_genes, s_key)
            sorted_genes[:c] = genes[:c] if in_order else np.sort(genes[:c])
            p = 0
            for u in range(union.size):  # stored genes below each signature gene, in one merge
                while p < c and sorted_genes[p] < union[u]:
                    p += 1
                below[u] = p
            n_below = 0
            for t in range(c):
                if key[t] < 0:
                    n_below += 1
            # metric of the zero block (average rank of the zeros in rank modes)
            if mode == 0 or mode == 2:
                w_zero = _ss_metric(n_below + (n_zero + 1) / 2.0, mode, n_genes, alpha)
            else:
                w_zero = _ss_metric(0.0, mode, n_genes, alpha)
            a = 0
            while a < c:
                e = a + 1
                while e < c and s_key[e] == s_key[a]:
                    e += 1
                if mode == 0 or mode == 2:
                    avg = (a + 1 + e) / 2.0 + (n_zero if a >= n_below else 0)
                    m = _ss_metric(avg, mode, n_genes, alpha)
                else:  # the key is |value| (raw metric) or the value (log): both give the metric
                    m = _ss_metric(s_key[a], mode, n_genes, alpha)
                for t in range(a, e):
                    g = s_genes[t]
                    q[g] = t if t < n_below else t + n_zero
                    w[g] = m
                a = e
            for s in range(n_sig):
                es = _ss_es(q, w, up_idx, up_u, up_ptr[s], up_ptr[s + 1], below, n_below, n_genes, w_zero)
                if dn_ptr[s + 1] > dn_ptr[s]:
                    es -= _ss_es(q, w, dn_idx, dn_u, dn_ptr[s], dn_ptr[s + 1], below, n_below, n_genes, w_zero)
                out[i - r0, s] = es
            if has_null:
                # the null's terms use each tie group's mean position (zeros are one group): ordering ties
                # by gene index, as the score does, would favour a fixed set of genes in every cell
                shift[0] = w_zero
                shift[1] = w_zero * (n_below + (n_zero - 1) / 2.0 + 1)
                shift[2] = n_below + (n_zero - 1) / 2.0 + 1
                a = 0
                while a < c:
                    e = a + 1
                    while e < c and s_key[e] == s_key[a] and (e < n_below) == (a < n_below):
                        e += 1
                    q_mean = (a + e - 1) / 2.0 + (0 if a < n_below else n_zero)
                    for t in range(a, e):
                        g = s_genes[t]
                        term[0, g] = w[g] - shift[0]
                        term[1, g] = w[g] * (q_mean + 1) - shift[1]
                        term[2, g] = q_mean + 1 - shift[2]
                    a = e
                nulls.row_nulls(term, shift, genes, c, bundle, work, i + row_offset, z_out[i - r0], p_out[i - r0])
                for t in range(c):
                    g = genes[t]
                    term[0, g] = 0.0
                    term[1, g] = 0.0
                    term[2, g] = 0.0
            for t in range(c):
                q[genes[t]] = -1
                w[genes[t]] = 0.0


@njit(cache=True, nogil=True)
def _ss_es(q, w, idx, uidx, start, stop, below, n_below, n_genes, w_zero):  # pragma: no cover - numba
    k = stop - start
    if k == 0:
        return 0.0
    sum_w = 0.0
    sum_wq = 0.0
    sum_q = 0.0
    for t in range(start, stop):
        g = idx[t]
        if q[g] >= 0:
            qg = q[g]
            wg = w[g]
        else:  # zero: after the values below zero, among zeros by ascending gene index
            qg = n_below + g - below[uidx[t]]
            wg = w_zero
        sum_w += wg
        sum_wq += wg * (qg + 1)
        sum_q += qg + 1
    n = np.float64(n_genes)
    if sum_w == 0.0:  # all weights zero (raw metric, all genes zero): uniform weights as fgsea does
        hit = sum_q / k
    else:
        hit = sum_wq / sum_w
    return hit - (n * (n + 1) / 2.0 - sum_q) / (n - k)


# ------------------------------------------------------------------------------------- singscore
@njit(parallel=True, cache=True, nogil=True)
def singscore(rows, n_genes, max_nnz, sets, center, n_blocks, out, bundle, tables):  # pragma: no cover - numba
    """singscore (Foroutan 2018, R package 1.2x): ascending ranks with ties at their minimum;
    the set's mean rank scaled by its theoretical bounds (n + 1) / 2 and (2N - n + 1) / 2; the down
    set contributes 1 - its scaled score; each part minus 0.5 when centred. With null sets in
    ``null``, the ranks (as offsets from the zeros' rank) feed :mod:`.nulls`."""
    data, indices, indptr, r0, r1 = rows
    up_ptr, up_idx, dn_ptr, dn_idx = sets
    row_offset, z_out, p_out = tables
    n_rows = r1 - r0
    n_sig = up_ptr.shape[0] - 1
    nb = max(1, min(n_rows, n_blocks))
    has_null = bundle.slot_gene.shape[0] > 0
    for b in prange(nb):
        lo = r0 + b * n_rows // nb
        hi = r0 + (b + 1) * n_rows // nb
        term = np.zeros((1, n_genes if has_null else 1))
        shift = np.zeros(1)
        work = nulls.scratch(bundle, 1)
        rank = np.zeros(n_genes)  # 0 marks a zero in this row
        vals = np.empty(max_nnz)
        genes = np.empty(max_nnz, np.int64)
        table = value_table()
        group_of = np.empty(max_nnz, np.int64)
        for i in range(lo, hi):
            c = _gather(data, indices, indptr[i], indptr[i + 1], vals, genes)
            n_neg = 0
            for t in range(c):
                if vals[t] < 0:
                    n_neg += 1
            n_zero = n_genes - c
            d = _value_groups(vals, c, i + 1, table, group_of)
            if d >= 0:  # a group's minimum rank: the entries below it, plus the zeros below positive values
                start = table[5]
                for t in range(c):
                    rank[genes[t]] = start[group_of[t]] + 1.0 + (n_zero if vals[t] > 0 else 0)
            else:
                order = np.argsort(vals[:c])  # tied values share their minimum rank
                a = 0
                while a < c:
                    e = a + 1
                    while e < c and vals[order[e]] == vals[order[a]]:
                        e += 1
                    r = a + 1.0 + (n_zero if vals[order[a]] > 0 else 0)
                    for t in range(a, e):
                        rank[genes[order[t]]] = r
                    a = e
            zero_rank = n_neg + 1.0
            for s in range(n_sig):
                total = 0.0
                parts = 0
                for sign in range(2):
                    ptr = up_ptr if sign == 0 else dn_ptr
                    idx = up_idx if sign == 0 else dn_idx
                    k = ptr[s + 1] - ptr[s]
                    if k == 0:
                        continue
                    acc = 0.0
                    for t in range(ptr[s], ptr[s + 1]):
                        rg = rank[idx[t]]
                        acc += rg if rg > 0 else zero_rank
                    low = (k + 1) / 2.0
                    high = (2.0 * n_genes - k + 1) / 2.0
                    scaled = (acc / k - low) / (high - low)
                    if sign == 1:
                        scaled = 1.0 - scaled
                    total += scaled - (0.5 if center else 0.0)
                    parts += 1
                out[i - r0, s] = total if parts > 0 else np.nan
            if has_null:
                shift[0] = zero_rank
                for t in range(c):
                    term[0, genes[t]] = rank[genes[t]] - zero_rank
                nulls.row_nulls(term, shift, genes, c, bundle, work, i + row_offset, z_out[i - r0], p_out[i - r0])
                for t in range(c):
                    term[0, genes[t]] = 0.0
            for t in range(c):
                rank[genes[t]] = 0.0


lock_cache_files(globals())  # see .caching: safe on-disk caches when processes compile at once
