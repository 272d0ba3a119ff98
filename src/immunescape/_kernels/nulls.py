"""Random gene-set nulls, evaluated inside the scoring kernels' row loop.

Every method's set statistic is a function of a few per-gene sums (ranks for UCell and
singscore, recovery-curve terms for AUCell, weight / position sums for ssGSEA, values for the
linear methods). A scoring kernel that has ranked a row fills ``feat`` (channels x genes) with each
gene's terms, ``zero`` with a per-row constant added to every gene, and calls :func:`row_nulls`.

The null sets are shared through *slots*: replicate ``k`` lists, bin after bin, the first genes of
a random ordering of each expression bin (``slot_gene[k]``). A signature's null set is a set of
slot ranges ("runs": its count of genes per bin, per part and per weight), so one prefix sum over
the slots per replicate serves every signature, and each signature's null costs one addition per
run instead of one per gene.

Methods whose score is an affine function of one per-gene term (all but ssGSEA; UCell clips at 0)
use the sparse path, :func:`row_nulls_sparse`: the term differs from a row constant only for the
row's stored genes (or, for AUCell, its top-ranked ones), so each of those genes adds its term to the
raw sums of the null runs it was drawn into (a precomputed list per gene of ``replicate x run``
indices, contiguous in memory); each null score is then a weighted sum of its runs' raw sums. The
cost grows with the row's non-zeros, not with the genes of the null sets. ssGSEA's score is a
ratio of three sums over a dense term (zeros are ordered by gene index), so it uses the prefix path
:func:`row_nulls`.

The bundle (see :func:`immunescape._null.build_null_sets`) is a tuple, in this order:
``slot_gene (n_null, M)``; ``run_ptr, run_lo, run_hi, run_w, run_part`` (runs per signature);
``obs_ptr, obs_gene, obs_w, obs_part`` (each signature's own genes); ``k_part (n_sig, 2)`` (genes per
part); ``sconst (n_sig, 2)`` and ``gconst (4,)`` (the method's constants, see :func:`finish`);
``ent_ptr, ent_idx`` (for each gene, the runs ``k * n_runs + r`` it is drawn into); ``run_cw`` (each
run's weight times the score's coefficient of its part); ``c0, shift_coef, obs_cw`` (the affine
score: ``c0 + shift * shift_coef + sum(cw * term)``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

LINEAR, UCELL, AUCELL, SINGSCORE, SSGSEA = 0, 1, 2, 3, 4
CHANNELS = {LINEAR: 1, UCELL: 1, AUCELL: 1, SINGSCORE: 1, SSGSEA: 3}
TIE_TOLERANCE = 1e-12  # relative: equal sets summed in another order may differ in the last bits


@njit(cache=True, nogil=True)
def _mix(x):  # pragma: no cover - numba
    """splitmix64's finaliser: a well-mixed 64-bit hash of ``x``."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(cache=True, nogil=True)
def uniform(seed, row, column):  # pragma: no cover - numba
    """A uniform number in (0, 1) that depends only on (seed, row, column): chunking and threads
    cannot change it."""
    x = _mix(np.uint64(seed) ^ _mix(np.uint64(row) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(column)))
    return (np.float64(x >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True, nogil=True)
def finish(kind, u0, u1, u2, d0, d1, d2, k_up, k_dn, sc, gc):  # pragma: no cover - numba
    """A set's score from its per-part sums: ``u*`` over the up genes, ``d*`` over the down genes,
    by channel (most methods use channel 0 only).

    LINEAR: the weighted sum. UCELL: pyUCell's normalised U per part (``sc`` = missing genes per
    part, ``gc[0]`` max_rank, ``gc[1]`` w_neg), up - w_neg * down clipped at 0. AUCELL: area / maximum
    area per part (``sc``). SINGSCORE: scaled mean rank (``gc[2]`` genes, ``gc[3]`` centre).
    SSGSEA: the closed-form enrichment score from (sum w, sum w (q + 1), sum (q + 1)) (``gc[2]`` genes).
    """
    if kind == LINEAR:
        return u0
    if kind == UCELL:
        return max(_ucell_part(u0, k_up, sc[0], gc[0]) - gc[1] * _ucell_part(d0, k_dn, sc[1], gc[0]), 0.0)
    if kind == AUCELL:
        up = u0 / sc[0] if sc[0] > 0 else 0.0
        return up - (d0 / sc[1] if (k_dn > 0 and sc[1] > 0) else 0.0)
    if kind == SINGSCORE:
        if k_up == 0 and k_dn == 0:
            return np.nan
        centre = 0.5 if gc[3] != 0 else 0.0
        total = 0.0
        if k_up > 0:
            total += _singscore_part(u0, k_up, gc[2]) - centre
        if k_dn > 0:
            total += 1.0 - _singscore_part(d0, k_dn, gc[2]) - centre
        return total
    # SSGSEA
    es = _ssgsea_part(u0, u1, u2, k_up, gc[2]) if k_up > 0 else 0.0
    return es - (_ssgsea_part(d0, d1, d2, k_dn, gc[2]) if k_dn > 0 else 0.0)


@njit(cache=True, nogil=True)
def _ucell_part(rank_sum, n_present, n_missing, max_rank):  # pragma: no cover - numba
    """pyUCell's U for one part: ``rank_sum`` over the present genes, max_rank for each missing one."""
    length = n_present + n_missing
    if length == 0:
        return 0.0
    s_min = length * (length + 1) / 2.0
    s_max = length * max_rank
    if s_max == s_min:
        return 0.0
    return 1.0 - (rank_sum + n_missing * max_rank - s_min) / (s_max - s_min)


@njit(cache=True, nogil=True)
def _singscore_part(rank_sum, k, n):  # pragma: no cover - numba
    low = (k + 1) / 2.0
    high = (2.0 * n - k + 1) / 2.0
    return (rank_sum / k - low) / (high - low)


@njit(cache=True, nogil=True)
def _ssgsea_part(sum_w, sum_wq, sum_q, k, n):  # pragma: no cover - numba
    hit = sum_wq / sum_w if sum_w != 0.0 else sum_q / k
    return hit - (n * (n + 1) / 2.0 - sum_q) / (n - k)


@njit(cache=True, nogil=True)
def scratch(bundle, n_ch):  # pragma: no cover - numba
    """Per-thread work arrays for :func:`row_nulls` and :func:`row_nulls_sparse`."""
    n_null, m = bundle[0].shape
    n_sig = bundle[1].shape[0] - 1
    return (np.zeros((n_ch, m + 1)), np.zeros((2, n_ch)), np.zeros(n_sig), np.zeros(n_sig, np.int64),
            np.zeros(n_sig, np.int64), np.zeros(n_sig), np.zeros(n_sig), np.zeros(n_null * bundle[2].shape[0]))  # fmt: skip


@njit(cache=True, nogil=True)
def _reset(work, n_sig):  # pragma: no cover - numba
    for s in range(n_sig):
        work[3][s] = 0
        work[4][s] = 0
        work[5][s] = 0.0
        work[6][s] = 0.0


@njit(cache=True, nogil=True)
def _tally(work, s, value):  # pragma: no cover - numba
    """Count one null score of signature ``s`` against its observed score."""
    observed = work[2][s]
    d = value - observed
    tol = TIE_TOLERANCE * (1.0 + abs(observed))
    if d > tol:
        work[3][s] += 1
    elif d >= -tol:
        work[4][s] += 1
        d = 0.0
    work[5][s] += d
    work[6][s] += d * d


@njit(cache=True, nogil=True)
def _write(work, n_sig, n_null, row, seed, z_out, p_out):  # pragma: no cover - numba
    """z and the randomised p-value of each signature from its tallies."""
    observed, n_above, n_tied, d_sum, d_sq = work[2], work[3], work[4], work[5], work[6]
    for s in range(n_sig):
        if observed[s] != observed[s]:  # undefined score (no genes): undefined statistics
            p_out[s] = np.nan
            z_out[s] = np.nan
            continue
        p_out[s] = (n_above[s] + uniform(seed, row, s) * (n_tied[s] + 1)) / (n_null + 1)
        mean_d = d_sum[s] / n_null
        var = (d_sq[s] - n_null * mean_d * mean_d) / (n_null - 1) if n_null > 1 else 0.0
        if var > 1e-24 * d_sq[s] / n_null:  # a spread above rounding noise
            z_out[s] = -mean_d / np.sqrt(var)
        else:  # every null set scores the same: no spread to measure against
            z_out[s] = 0.0 if mean_d == 0.0 else np.nan


@njit(cache=True, nogil=True)
def row_nulls_sparse(term, shift, listed, n_listed, clip, bundle, work, row, seed, z_out, p_out):  # pragma: no cover - numba
    """The sparse path: gene ``g``'s term is ``term[g] + shift``, and ``term`` is 0 except for the
    ``n_listed`` genes in ``listed`` (each listed once). Scores are ``c0 + shift * shift_coef +
    sum(cw * term)``, clipped at 0 when ``clip``. Writes z and p as :func:`row_nulls`."""
    slot_gene = bundle[0]
    obs_ptr, obs_gene = bundle[6], bundle[7]
    run_ptr = bundle[1]
    ent_ptr, ent_idx, run_cw = bundle[13], bundle[14], bundle[15]
    c0, shift_coef, obs_cw = bundle[16], bundle[17], bundle[18]
    n_runs = run_cw.shape[0]
    n_null = slot_gene.shape[0]
    n_sig = c0.shape[0]
    observed = work[2]
    acc = work[7]
    for s in range(n_sig):
        v = c0[s] + shift * shift_coef[s]
        for t in range(obs_ptr[s], obs_ptr[s + 1]):
            v += obs_cw[t] * term[obs_gene[t]]
        observed[s] = max(v, 0.0) if clip else v
    _reset(work, n_sig)
    acc[:] = 0.0
    for j in range(n_listed):
        g = listed[j]
        d = term[g]
        if d == 0.0:
            continue
        for e in range(ent_ptr[g], ent_ptr[g + 1]):
            acc[ent_idx[e]] += d
    for k in range(n_null):
        raw = acc[k * n_runs : (k + 1) * n_runs]
        for s in range(n_sig):
            v = c0[s] + shift * shift_coef[s]
            for r in range(run_ptr[s], run_ptr[s + 1]):
                v += run_cw[r] * raw[r]
            _tally(work, s, max(v, 0.0) if clip else v)
    _write(work, n_sig, n_null, row, seed, z_out, p_out)


@njit(cache=True, nogil=True)
def row_nulls(feat, zero, kind, bundle, work, row, seed, z_out, p_out):  # pragma: no cover - numba
    """The prefix path: score the signatures and their ``n_null`` random sets on one row's gene
    terms ``feat[channel, gene] + zero[channel]``; write each signature's z-score against its null
    sets and the randomised empirical p-value (upper tail).

    p = (#null > observed + U (#null == observed + 1)) / (n_null + 1) with U uniform from
    (seed, row, signature): exactly uniform when the signature is exchangeable with its null sets.
    """
    slot_gene, run_ptr, run_lo, run_hi, run_w, run_part, obs_ptr, obs_gene, obs_w, obs_part, k_part, sconst, gconst = bundle[:13]
    prefix, sums, observed = work[0], work[1], work[2]
    n_null, m = slot_gene.shape
    n_ch = feat.shape[0]
    n_sig = run_ptr.shape[0] - 1
    for s in range(n_sig):
        sums[:, :] = 0.0
        for t in range(obs_ptr[s], obs_ptr[s + 1]):
            g = obs_gene[t]
            for ch in range(n_ch):
                sums[obs_part[t], ch] += obs_w[t] * (feat[ch, g] + zero[ch])
        observed[s] = _finish_sums(kind, sums, n_ch, k_part[s, 0], k_part[s, 1], sconst[s], gconst)
    _reset(work, n_sig)
    for k in range(n_null):
        genes_k = slot_gene[k]
        for ch in range(n_ch):
            f = feat[ch]
            pre = prefix[ch]
            acc = 0.0
            for t in range(m):
                acc += f[genes_k[t]]
                pre[t + 1] = acc
        for s in range(n_sig):
            sums[:, :] = 0.0
            for r in range(run_ptr[s], run_ptr[s + 1]):
                lo = run_lo[r]
                hi = run_hi[r]
                for ch in range(n_ch):
                    sums[run_part[r], ch] += run_w[r] * (prefix[ch, hi] - prefix[ch, lo] + (hi - lo) * zero[ch])
            _tally(work, s, _finish_sums(kind, sums, n_ch, k_part[s, 0], k_part[s, 1], sconst[s], gconst))
    _write(work, n_sig, n_null, row, seed, z_out, p_out)


@njit(cache=True, nogil=True)
def _finish_sums(kind, sums, n_ch, k_up, k_dn, sc, gc):  # pragma: no cover - numba
    if n_ch == 1:
        return finish(kind, sums[0, 0], 0.0, 0.0, sums[1, 0], 0.0, 0.0, k_up, k_dn, sc, gc)
    return finish(kind, sums[0, 0], sums[0, 1], sums[0, 2], sums[1, 0], sums[1, 1], sums[1, 2], k_up, k_dn, sc, gc)


@njit(parallel=True, cache=True, nogil=True)
def linear_nulls(data, indices, indptr, r0, r1, n_genes, bundle, row_offset, seed, n_blocks, z_out, p_out):  # pragma: no cover - numba
    """Nulls for the linear methods (mean, wmean, zmean): the gene terms are the row's values
    (repeated entries of a gene add up, as in the scores)."""
    n_rows = r1 - r0
    nb = max(1, min(n_rows, n_blocks))
    for b in prange(nb):
        lo = r0 + b * n_rows // nb
        hi = r0 + (b + 1) * n_rows // nb
        term = np.zeros(n_genes)
        seen = np.zeros(n_genes, np.bool_)
        listed = np.empty(n_genes, np.int64)
        work = scratch(bundle, 1)
        for i in range(lo, hi):
            n_listed = 0
            for j in range(indptr[i], indptr[i + 1]):
                g = indices[j]
                term[g] += data[j]
                if not seen[g]:
                    seen[g] = True
                    listed[n_listed] = g
                    n_listed += 1
            row_nulls_sparse(term, 0.0, listed, n_listed, False, bundle, work, i + row_offset, seed, z_out[i - r0], p_out[i - r0])
            for t in range(n_listed):
                term[listed[t]] = 0.0
                seen[listed[t]] = False
