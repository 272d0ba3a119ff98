"""Random gene-set nulls, evaluated inside the scoring kernels' row loop.

Every method's set statistic is a function of per-part sums (up genes, down genes) of a per-gene
term: ranks for UCell and singscore, recovery-curve terms for AUCell, values for the linear methods
(for all of these the score is affine in the sums; UCell then clips at 0), and three terms for
ssGSEA (weight, weight x position, position; its score is a ratio of sums). A scoring kernel that
has ranked a row writes each gene's term minus a row constant (``shift``) into ``term``; the
difference is non-zero only for the row's stored genes, which it lists, and calls :func:`row_nulls`.

Null set ``k`` of a signature holds one random stand-in per signature gene (its *slot*), drawn from
the gene's *source*: a few expression bins' genes with their probabilities (see
:mod:`immunescape._null`). Each listed gene adds its term to the raw sums of the (replicate, group)
null sets it was drawn into - a group being a signature's genes of one part and weight - through a
precomputed, contiguous list per gene; each null score then combines its groups' raw sums. The cost
grows with the row's non-zeros, not with the genes of the null sets.

Beyond every null score, the p-value of a sum (AFFINE) comes from :func:`saddlepoint_tail`: the
null score is a sum of terms of genes drawn from their sources, so its distribution follows from
the sources' genes in the row, which the kernel has at hand (the row's non-zero terms, bucketed by
bin once per row that needs a tail). ``ES_RATIO`` scores keep :func:`moment_tail`, fitted to the
draws.

The null sets travel as one :class:`NullBundle` (built by :func:`immunescape._null.build_null_sets`),
and a kernel gets them beside the chunk's row offset and output tables (a :class:`NullTables`). The
kernels know statistic *shapes*, never method names: ``AFFINE`` scores are ``c0 + shift *
shift_coef + sum(cw * term)``, raised to ``floor`` (UCell's clip at 0; ``-inf`` for none);
``ES_RATIO`` scores are single-sample GSEA's ratio of sums over three channels. A method declares
its shape and coefficients (see :class:`immunescape._null.NullStatistic`).

The linear methods also have :func:`linear_moments`, a closed-form null (no sets drawn) for uniform
draws within bins.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .caching import lock_cache_files
from .types import ES_RATIO

TIE_TOLERANCE = 1e-12  # relative: equal sets summed in another order may differ in the last bits
#: The moment tail's skewness is raised by this many of its standard errors (chosen on seeds 100-103 of issue 17's
#: scenario: 0 gave random sets 1.3-2x nominal at 1e-3 and 1e-4; 0.5 nominal; 1 lost power).
SKEW_MARGIN = 0.5
MAX_REDRAWS = 50  # tries at a gene not yet in the null set before drawing from the genes left


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
def _ssgsea_part(sum_w, sum_wq, sum_q, k, n):  # pragma: no cover - numba
    hit = sum_wq / sum_w if sum_w != 0.0 else sum_q / k
    return hit - (n * (n + 1) / 2.0 - sum_q) / (n - k)


@njit(cache=True, nogil=True)
def scratch(bundle, n_ch):  # pragma: no cover - numba
    """Per-thread work arrays for :func:`row_nulls`."""
    n_null = bundle.slot_gene.shape[0]
    n_sig = bundle.c0.shape[0]
    n_groups = bundle.grp_cw.shape[0]
    # the tallies of _write (see tally_scratch), then raw group sums and the row's genes that enter null sets
    n_bins = bundle.bin_size.shape[0]
    # then the row's non-zero terms by bin for the saddlepoint tail: bucket starts, values, their genes, fill cursors
    return tally_scratch(n_sig, n_null, n_ch) + (
        np.zeros(n_ch * n_null * n_groups),
        np.empty(bundle.ent_ptr.shape[0], np.int64),  # the first entry of each of the row's genes that enter null sets
        np.zeros(n_bins + 1, np.int64),
        np.empty(bundle.bin_of.shape[0]),
        np.empty(bundle.bin_of.shape[0], np.int64),
        np.zeros(n_bins, np.int64),
        np.empty(bundle.ent_ptr.shape[0], np.int64),  # those genes again: the end of each one's entries
        np.empty(n_ch * bundle.ent_ptr.shape[0]),  # ... and each one's terms (n_ch each)
    )


@njit(cache=True, nogil=True)
def tally_scratch(n_sig, n_null, n_ch):  # pragma: no cover - numba
    """Sums by part and channel, then per signature: observed score, n_above, n_tied, sum and sum of
    squares of (null - observed), the tail p-value (-1: none); then one signature's null scores and a
    spare buffer of the same size."""
    return (
        np.zeros((2, n_ch)),
        np.zeros(n_sig),
        np.zeros(n_sig, np.int64),
        np.zeros(n_sig, np.int64),
        np.zeros(n_sig),
        np.zeros(n_sig),
        np.full(n_sig, -1.0),
        np.zeros(n_null),
        np.zeros(n_null),
    )


@njit(cache=True, nogil=True)
def moment_tail(draws, observed, n_null):  # pragma: no cover - numba
    """P(null >= observed) for a score beyond every one of the ``n_null`` null scores in ``draws``,
    from a Pearson type III (shifted gamma) distribution with the draws' mean, variance and
    skewness, the skewness raised by ``SKEW_MARGIN`` of its standard error ``sqrt(6 / n_null)``
    (a heavier tail where the estimate is uncertain; a right-skewed tail even for symmetric draws).
    Its survival comes from the Wilson-Hilferty cube-root normal approximation. The result is capped
    at ``1 / (n_null + 1)``, the empirical bound, and floored at the smallest normal double. Returns
    -1 where the draws do not vary (nothing to fit): the caller keeps the empirical p-value.

    The tail of ssGSEA's ratio statistic and of explicit null scores (GSVA), and the fallback of
    :func:`saddlepoint_tail`; sums of gene terms use the saddlepoint, which sees the bins' genes
    instead of 100 draws (this fit is too heavy where a few large terms sit among many zeros).
    Chosen over a generalised Pareto fit to the 10 largest draws (shape clamped at 0), which was
    conservative for these sums of many genes."""
    mean = 0.0
    for k in range(n_null):
        mean += draws[k]
    mean /= n_null
    m2, m3 = 0.0, 0.0
    for k in range(n_null):
        d = draws[k] - mean
        m2 += d * d
        m3 += d * d * d
    m2 /= n_null
    m3 /= n_null
    if not (m2 > 0.0) or n_null < 3:
        return -1.0
    sd = math.sqrt(m2)
    skew = m3 / (m2 * sd) + SKEW_MARGIN * math.sqrt(6.0 / n_null)
    t = (observed - mean) / sd
    if skew > 1e-6:  # gamma with shape k = 4 / skew^2, in units of its scale: k + t sqrt(k)
        k = 4.0 / (skew * skew)
        y = k + t * math.sqrt(k)
        if y <= 0.0:
            return 1.0 / (n_null + 1.0)
        c = 1.0 / (9.0 * k)
        w = (math.pow(y / k, 1.0 / 3.0) - (1.0 - c)) / math.sqrt(c)
    else:  # a left-skewed (light) upper tail: the normal one, lighter still would be a guess
        w = t
    p = 0.5 * math.erfc(w / math.sqrt(2.0))
    return min(max(p, 2.2250738585072014e-308), 1.0 / (n_null + 1.0))


@njit(cache=True, nogil=True)
def _bucket_terms(term, listed, n_listed, bin_of, ptr, val, val_gene, cursor):  # pragma: no cover - numba
    """The row's non-zero gene terms (channel 0) grouped by expression bin: bin ``b``'s are
    ``val[ptr[b]:ptr[b + 1]]``, of the genes ``val_gene[ptr[b]:ptr[b + 1]]``; every other gene of the
    bin has term 0."""
    n_bins = cursor.shape[0]
    ptr[:] = 0
    for j in range(n_listed):
        g = listed[j]
        if bin_of[g] >= 0 and term[0, g] != 0.0:
            ptr[bin_of[g] + 1] += 1
    for b in range(n_bins):
        ptr[b + 1] += ptr[b]
        cursor[b] = ptr[b]
    for j in range(n_listed):
        g = listed[j]
        b = bin_of[g]
        if b >= 0 and term[0, g] != 0.0:
            val[cursor[b]] = term[0, g]
            val_gene[cursor[b]] = g
            cursor[b] += 1


@njit(cache=True, nogil=True)
def _gather_sources(
    lo, hi, slot_cw, slot_source, source_bins, source_base, source_n, source_prob, gene_pos, ptr, val, val_gene
):  # pragma: no cover - numba
    """Each slot's possible terms in this row, gathered once per tail: for slot ``lo + i``, the values
    ``x[el_ptr[i]:el_ptr[i + 1]]`` (weight x coefficient x term) of its source's drawable genes of
    non-zero term, their probabilities ``p`` and positions ``at`` in ``val``, and ``zero[i]``, the
    probability of a gene of term 0 (exactly 0 when every gene of the source is non-zero: no
    cancellation). Slots of weight 0 get no values and no zero mass: they add nothing."""
    n = hi - lo
    bound = 0
    for q in range(lo, hi):
        src = slot_source[q]
        bound += ptr[source_bins[src, 1]] - ptr[source_bins[src, 0]]
    x, p, at_val = np.empty(bound), np.empty(bound), np.empty(bound, np.int64)
    el_ptr, zero = np.zeros(n + 1, np.int64), np.zeros(n)
    at = 0
    for i in range(n):
        q = lo + i
        cw, src = slot_cw[q], slot_source[q]
        if cw != 0.0:
            base = source_base[src]
            nonzero_mass, n_nonzero = 0.0, 0
            for j in range(ptr[source_bins[src, 0]], ptr[source_bins[src, 1]]):
                prob = source_prob[base + gene_pos[val_gene[j]]]
                n_nonzero += 1
                if prob > 0.0:
                    nonzero_mass += prob
                    x[at] = cw * val[j]
                    p[at] = prob
                    at_val[at] = j
                    at += 1
            zero[i] = 0.0 if n_nonzero >= source_n[src] else max(1.0 - nonzero_mass, 0.0)
        el_ptr[i + 1] = at
    return x, p, at_val, el_ptr, zero


@njit(cache=True, nogil=True)
def _shared_runs(lo, hi, slot_cw, slot_source, source_bins, ptr, el_ptr):  # pragma: no cover - numba
    """The slots ``lo:hi`` cut into runs of one weight x coefficient (the slots are ordered by part and
    weight): run ``r`` is slots ``first[r]:first[r + 1]`` (counted from ``lo``) of weight x coefficient
    ``cw[r]``, whose sources' values lie in ``val[v_lo[r]:v_hi[r]]``. ``shared[r]``: the run lists each
    value often enough (twice on average) that one exponential per value, shared by the run's slots,
    is cheaper than one per slot."""
    n = hi - lo
    first = np.empty(n + 1, np.int64)
    v_lo, v_hi, cw = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n)
    shared = np.zeros(n, np.bool_)
    n_runs = 0
    for i in range(n):
        q = lo + i
        src = slot_source[q]
        a, b = ptr[source_bins[src, 0]], ptr[source_bins[src, 1]]
        if i == 0 or slot_cw[q] != slot_cw[q - 1]:
            first[n_runs] = i
            v_lo[n_runs], v_hi[n_runs], cw[n_runs] = a, b, slot_cw[q]
            n_runs += 1
        else:
            v_lo[n_runs - 1] = min(v_lo[n_runs - 1], a)
            v_hi[n_runs - 1] = max(v_hi[n_runs - 1], b)
    first[n_runs] = n
    for r in range(n_runs):
        shared[r] = cw[r] != 0.0 and el_ptr[first[r + 1]] - el_ptr[first[r]] >= 2 * (v_hi[r] - v_lo[r])
    return first[: n_runs + 1], v_lo[:n_runs], v_hi[:n_runs], cw[:n_runs], shared[:n_runs]


@njit(cache=True, nogil=True)
def _slot_cgf(t, x, p, a, b, zero):  # pragma: no cover - numba
    """For X, a slot's drawn value (``x[a:b]`` with probabilities ``p[a:b]``, 0 with ``zero``):
    E[exp(t X)] as ``(top, m0)`` with E = exp(top) m0, and the mean, variance and third central
    moment of X under the tilt exp(t X). One pass: the sums are kept scaled by the largest exponent
    seen so far (no overflow), rescaled when it grows."""
    top = -math.inf
    m0, m1, m2, m3 = 0.0, 0.0, 0.0, 0.0
    for j in range(a, b):
        v = x[j]
        e_arg = t * v
        if e_arg > top:  # a new largest exponent: rescale what was summed
            if m0 > 0.0:
                r = math.exp(top - e_arg)
                m0, m1, m2, m3 = m0 * r, m1 * r, m2 * r, m3 * r
            top = e_arg
        e = p[j] * math.exp(e_arg - top)
        m0 += e
        ve = v * e
        m1 += ve
        m2 += v * ve
        m3 += v * v * ve
    if zero > 0.0:  # genes of term 0: exponent 0
        if top < 0.0:
            r = math.exp(top) if m0 > 0.0 else 0.0
            m0, m1, m2, m3 = m0 * r, m1 * r, m2 * r, m3 * r
            top = 0.0
        m0 += zero * math.exp(-top)
    mean, second, third = m1 / m0, m2 / m0, m3 / m0
    return top, m0, mean, max(second - mean * mean, 0.0), third - 3.0 * mean * second + 2.0 * mean**3


@njit(cache=True, nogil=True)
def _slot_start(x, p, a, b, zero):  # pragma: no cover - numba
    """For a slot's drawn value X: its mean and variance (no tilt: no exponentials), its largest
    value and the log of that value's probability."""
    m1, m2, total = 0.0, 0.0, zero
    top, top_mass = -math.inf, 0.0
    for j in range(a, b):
        v = x[j]
        m1 += p[j] * v
        m2 += p[j] * v * v
        total += p[j]
        if v > top:
            top, top_mass = v, p[j]
        elif v == top:
            top_mass += p[j]
    if zero > 0.0:
        if top < 0.0:
            top, top_mass = 0.0, zero
        elif top == 0.0:
            top_mass += zero
    mean = m1 / total  # total: 1 up to rounding
    return mean, max(m2 / total - mean * mean, 0.0), top, math.log(top_mass / total)


@njit(cache=True, nogil=True)
def _tilted(t, x, p, at_val, el_ptr, zero, runs, val, powers):  # pragma: no cover - numba
    """The cumulant generating function K(t) of S = the sum of the slots' drawn values (independent;
    as :func:`_gather_sources` lists them) and its first three derivatives. In a ``shared`` run (see
    :func:`_shared_runs`) each value's exp(t x) and its products with x, x^2, x^3 are computed once
    (in ``powers``) for all the run's slots, scaled by the run's largest exponent; where the run's
    exponents span too wide a range for one scale (the smallest would lose digits), each slot keeps
    its own scale (:func:`_slot_cgf`)."""
    first, v_lo, v_hi, run_cw, shared = runs
    k0, k1, k2, k3 = 0.0, 0.0, 0.0, 0.0
    scaled = 1.0  # a running product of the slots' scaled E[exp(t X)]: one log per 1e-200, not per slot
    for r in range(v_lo.shape[0]):
        a, b = first[r], first[r + 1]
        use_shared, cw = shared[r], run_cw[r]
        if use_shared:  # the run's exponents t * cw * val[j], and 0 for genes of term 0
            top, low = 0.0, 0.0
            for j in range(v_lo[r], v_hi[r]):
                e_arg = t * (cw * val[j])
                top = max(top, e_arg)
                low = min(low, e_arg)
            use_shared = top - low < 500.0  # exp(-500) x a term's cube stays far above the denormals
        if use_shared:
            for j in range(v_lo[r], v_hi[r]):
                v = cw * val[j]
                e = math.exp(t * v - top)
                powers[j, 0] = e
                powers[j, 1] = v * e
                powers[j, 2] = v * v * e
                powers[j, 3] = v * v * v * e
            zero_e = math.exp(-top)
        for i in range(a, b):
            if el_ptr[i + 1] == el_ptr[i] and zero[i] == 0.0:  # weight 0: always 0
                continue
            if use_shared:
                m0, m1, m2, m3 = zero[i] * zero_e, 0.0, 0.0, 0.0
                for el in range(el_ptr[i], el_ptr[i + 1]):
                    j, pe = at_val[el], p[el]
                    m0 += pe * powers[j, 0]
                    m1 += pe * powers[j, 1]
                    m2 += pe * powers[j, 2]
                    m3 += pe * powers[j, 3]
                c1, second, third = m1 / m0, m2 / m0, m3 / m0
                c2, c3 = max(second - c1 * c1, 0.0), third - 3.0 * c1 * second + 2.0 * c1**3
                slot_top = top
            else:
                slot_top, m0, c1, c2, c3 = _slot_cgf(t, x, p, el_ptr[i], el_ptr[i + 1], zero[i])
            k0 += slot_top
            if m0 < 1e-100:
                k0 += math.log(m0)
            else:
                scaled *= m0
                if scaled < 1e-200:
                    k0 += math.log(scaled)
                    scaled = 1.0
            k1 += c1
            k2 += c2
            k3 += c3
    k0 += math.log(scaled)
    return k0, k1, k2, k3


@njit(cache=True, nogil=True)
def saddlepoint_tail(
    x,
    lo,
    hi,
    slot_cw,
    slot_source,
    source_bins,
    source_base,
    source_n,
    source_prob,
    gene_pos,
    ptr,
    val,
    val_gene,
    n_null,
):  # pragma: no cover - numba
    """P(S >= x) for a random-set sum S (a null score minus its row constant; the set's slots are
    ``lo:hi``, see :class:`.types.NullBundle`), where x lies beyond every one of the ``n_null`` null
    scores: the Lugannani-Rice saddlepoint approximation (Daniels 1987) to the sum of the random
    genes' terms, each slot's gene drawn from its source (bins and per-gene probabilities) in this
    row (``ptr``/``val``/``val_gene``: the row's non-zero terms by bin, as :func:`_bucket_terms`
    leaves them). Slots are taken as independent (the null keeps one set's genes distinct), which
    makes it slightly conservative. Unlike a fit to the null scores, it sees the population they
    come from: sums of a few large terms among many zeros (AUCell's top genes) keep their light
    tail. Where x is the largest sum a random set can reach: the probability of drawing only genes
    with the largest term. Capped at ``1 / (n_null + 1)`` (``n_null=0``: no cap); -1 where no
    saddlepoint exists (nothing varies, x not above the null mean): the caller falls back to the
    moment tail."""
    cap = 1.0 / (n_null + 1.0)
    values, probs, at_val, el_ptr, zero = _gather_sources(
        lo, hi, slot_cw, slot_source, source_bins, source_base, source_n, source_prob, gene_pos, ptr, val, val_gene
    )
    runs = _shared_runs(lo, hi, slot_cw, slot_source, source_bins, ptr, el_ptr)
    powers = np.empty((ptr[ptr.shape[0] - 1], 4))
    mean, var, s_max, log_p_max = 0.0, 0.0, 0.0, 0.0
    for i in range(hi - lo):
        if el_ptr[i + 1] > el_ptr[i] or zero[i] > 0.0:  # weight 0: always 0
            m, v, top, log_p = _slot_start(values, probs, el_ptr[i], el_ptr[i + 1], zero[i])
            mean += m
            var += v
            s_max += top
            log_p_max += log_p
    if not (var > 0.0) or not (x > mean):
        return -1.0
    if x >= s_max - TIE_TOLERANCE * (1.0 + abs(s_max)):
        return min(max(math.exp(log_p_max), 2.2250738585072014e-308), cap)
    # K'(t) = x: Halley steps (cubic convergence, from the normal guess) kept inside a bracket. The
    # formula's w^2 = 2 (t x - K(t)) is stationary at the root; 1e-9 sd (one more step at most) keeps p within 1e-7.
    sd = math.sqrt(var)
    t_lo, t_hi = 0.0, math.inf
    t = (x - mean) / var
    k0, k1, k2, k3 = 0.0, 0.0, 0.0, 0.0
    for _ in range(100):
        k0, k1, k2, k3 = _tilted(t, values, probs, at_val, el_ptr, zero, runs, val, powers)
        g = k1 - x
        if abs(g) <= 1e-9 * sd:
            break
        if g > 0.0:
            t_hi = t
        else:
            t_lo = t
        den = 2.0 * k2 * k2 - g * k3
        step = t - 2.0 * g * k2 / den if den > 0.0 else -1.0
        if not (t_lo < step < t_hi):
            step = 0.5 * (t_lo + t_hi) if t_hi < math.inf else 2.0 * t
        if t_hi < math.inf and t_hi - t_lo <= 1e-14 * t_hi:
            break
        t = step
    else:  # no convergence (not seen): the caller's moment tail
        return -1.0
    w2 = 2.0 * (t * x - k0)
    if not (w2 > 0.0) or not (k2 > 0.0):
        return -1.0
    w = math.sqrt(w2)
    u = t * math.sqrt(k2)
    p = 0.5 * math.erfc(w / math.sqrt(2.0)) + math.exp(-0.5 * w2) / math.sqrt(2.0 * math.pi) * (1.0 / u - 1.0 / w)
    if not (p > 0.0):
        return -1.0
    return min(max(p, 2.2250738585072014e-308), cap)


@njit(cache=True, nogil=True)
def _tilt_weights(values, center, scale, log_prior, a, out):  # pragma: no cover - numba
    """``out[j]`` = exp(log_prior[j] + a z_j) with z = (values - center) / scale, divided by the
    largest (no overflow); returns their sum and the sums of z and z^2 times them."""
    n = values.shape[0]
    top = -math.inf
    for j in range(n):
        top = max(top, log_prior[j] + a * ((values[j] - center) / scale))
    m0, m1, m2 = 0.0, 0.0, 0.0
    for j in range(n):
        z = (values[j] - center) / scale
        e = math.exp(log_prior[j] + a * z - top)
        out[j] = e
        m0 += e
        m1 += z * e
        m2 += z * z * e
    return m0, m1, m2


@njit(cache=True, nogil=True)
def tilt_to_mean(values, center, log_prior, out):  # pragma: no cover - numba
    """Probabilities ``out`` over ``values`` proportional to exp(log_prior + a values) whose mean is
    ``center`` (the distribution nearest the prior, in relative entropy, with that mean). Where
    ``center`` is the smallest or largest value, no finite a reaches it: the values equal to it
    share the probability, in proportion to the prior."""
    n = values.shape[0]
    low, high = values.min(), values.max()
    if center <= low or center >= high:
        edge = low if center <= low else high
        top = -math.inf
        for j in range(n):
            if values[j] == edge:
                top = max(top, log_prior[j])
        total = 0.0
        for j in range(n):
            out[j] = math.exp(log_prior[j] - top) if values[j] == edge else 0.0
            total += out[j]
        for j in range(n):
            out[j] /= total
        return
    scale = max(high - center, center - low)  # z = (v - center) / scale in [-1, 1]
    a_lo, a_hi = -math.inf, math.inf
    a = 0.0
    m0 = 1.0
    for _ in range(200):
        m0, m1, m2 = _tilt_weights(values, center, scale, log_prior, a, out)
        f = m1 / m0  # the tilted mean of z; its derivative in a is the tilted variance
        if abs(f) <= 1e-13:
            break
        if f > 0.0:
            a_hi = a
        else:
            a_lo = a
        slope = m2 / m0 - f * f
        step = a - f / slope if slope > 0.0 else math.nan
        if not (a_lo < step < a_hi):  # Newton left the bracket: bisect, or widen an open side
            if a_lo > -math.inf and a_hi < math.inf:
                step = 0.5 * (a_lo + a_hi)
            else:
                step = 2.0 * a_lo + 1.0 if a_hi == math.inf else 2.0 * a_hi - 1.0
        if a_lo > -math.inf and a_hi < math.inf and a_hi - a_lo <= 1e-15 * max(abs(a_lo), abs(a_hi), 1.0):
            break
        a = step
    m0 = _tilt_weights(values, center, scale, log_prior, a, out)[0]
    for j in range(n):
        out[j] /= m0


@njit(cache=True, nogil=True)
def draw_null_sets(
    cum, first, last, base, pool_order, prob, slot_source, slot_ptr, seed, out
):  # pragma: no cover - numba
    """Fill ``out`` (n_null x slots): for replicate ``k`` and each signature's slots
    ``slot_ptr[s]:slot_ptr[s + 1]``, one gene per slot drawn from its source by inverse CDF (source
    ``u``'s cumulative probabilities, shifted by ``u``, are ``cum[first[u]:last[u] + 1]``; the gene at
    ``cum[i]`` is ``pool_order[i - base[u]]``), a set's genes distinct: a repeat is drawn again, and
    after :data:`MAX_REDRAWS` tries from the source's genes left, renormalised, or, where none has a
    probability, the free gene of the pool nearest in rank. The uniforms come from (seed, slot of
    replicate, try): the same sets whatever the block sizes or threads."""
    n_null, n_slots = out.shape
    n_sig = slot_ptr.shape[0] - 1
    n_genes = pool_order.max() + 1 if pool_order.shape[0] else 0
    stamp = np.full(n_genes, -1, np.int64)  # the set each gene was last drawn into
    for k in range(n_null):
        for s in range(n_sig):
            set_id = k * n_sig + s
            for q in range(slot_ptr[s], slot_ptr[s + 1]):
                u = slot_source[q]
                counter = k * n_slots + q
                gene = -1
                for attempt in range(MAX_REDRAWS):
                    target = u + uniform(seed, counter, attempt)
                    lo, hi = first[u], last[u]
                    while lo < hi:  # the first cum above target (rounding: within the source's drawable genes)
                        mid = (lo + hi) // 2
                        if cum[mid] > target:
                            hi = mid
                        else:
                            lo = mid + 1
                    g = pool_order[lo - base[u]]
                    if stamp[g] != set_id:
                        gene = g
                        break
                if gene < 0:
                    gene = _draw_left(
                        u, first, last, base, pool_order, prob, stamp, set_id, uniform(seed, counter, MAX_REDRAWS)
                    )
                if gene < 0:
                    gene = _nearest_free((first[u] + last[u]) // 2 - base[u], pool_order, stamp, set_id)
                stamp[gene] = set_id
                out[k, q] = gene


@njit(cache=True, nogil=True)
def _draw_left(u, first, last, base, pool_order, prob, stamp, set_id, r):  # pragma: no cover - numba
    """A gene from source ``u``'s drawable genes not yet in the set, renormalised; -1 if none."""
    total = 0.0
    for i in range(first[u], last[u] + 1):
        if stamp[pool_order[i - base[u]]] != set_id:
            total += prob[i]
    if not (total > 0.0):
        return -1
    acc, chosen = 0.0, -1
    for i in range(first[u], last[u] + 1):
        g = pool_order[i - base[u]]
        if stamp[g] != set_id and prob[i] > 0.0:
            chosen = g
            acc += prob[i]
            if acc > r * total:
                break
    return chosen


@njit(cache=True, nogil=True)
def _nearest_free(at, pool_order, stamp, set_id):  # pragma: no cover - numba
    """The gene of the pool nearest position ``at`` (in rank) not yet in the set."""
    n = pool_order.shape[0]
    for d in range(n):
        for pos in (at - d, at + d):
            if 0 <= pos < n and stamp[pool_order[pos]] != set_id:
                return pool_order[pos]
    return -1


@njit(cache=True, nogil=True)
def tilted_probabilities(values, lo, hi, center_at, width, offset, out):  # pragma: no cover - numba
    """For each source ``u``: over ``values[lo[u]:hi[u]]`` (means in increasing order), the
    probabilities of :func:`tilt_to_mean` with mean ``values[center_at[u]]`` and the prior
    exp(-d^2 / 2 width[u]^2), d the distance from ``center_at[u]`` in positions; into
    ``out[offset[u]:offset[u + 1]]``."""
    log_prior = np.empty(out.shape[0])
    for u in range(lo.shape[0]):
        n = hi[u] - lo[u]
        for j in range(n):
            d = (lo[u] + j - center_at[u]) / width[u]
            log_prior[j] = -0.5 * d * d
        tilt_to_mean(values[lo[u] : hi[u]], values[center_at[u]], log_prior[:n], out[offset[u] : offset[u] + n])


@njit(cache=True, nogil=True)
def _write(work, n_sig, n_null, row, seed, z_out, p_out):  # pragma: no cover - numba
    """z and the p-value of each signature from its tallies: randomised empirical, or the fitted tail
    where the score is beyond every null score."""
    observed, n_above, n_tied, d_sum, d_sq, tail = work[1], work[2], work[3], work[4], work[5], work[6]
    for s in range(n_sig):
        if observed[s] != observed[s]:  # undefined score (no genes): undefined statistics
            p_out[s] = np.nan
            z_out[s] = np.nan
            continue
        if tail[s] >= 0.0:
            p_out[s] = tail[s]
        else:
            p_out[s] = (n_above[s] + uniform(seed, row, s) * (n_tied[s] + 1)) / (n_null + 1)
        mean_d = d_sum[s] / n_null
        var = (d_sq[s] - n_null * mean_d * mean_d) / (n_null - 1) if n_null > 1 else 0.0
        if var > 1e-24 * d_sq[s] / n_null:  # a spread above rounding noise
            z_out[s] = -mean_d / np.sqrt(var)
        else:  # every null set scores the same: no spread to measure against
            z_out[s] = 0.0 if mean_d == 0.0 else np.nan


@njit(cache=True, nogil=True, inline="always")
def _compare(v, obs, tol):  # pragma: no cover - numba
    """One null score ``v`` against the observed score: (above, tied, v - obs with ties set to 0).
    Branch-free: in sparse rows ties and wins come in no predictable order."""
    d = v - obs
    tie = abs(d) <= tol
    return d > tol, tie, 0.0 if tie else d


@njit(cache=True, nogil=True)
def explicit_nulls(observed, random, seed, first_row, z_out, p_out):  # pragma: no cover - numba
    """z and randomised p of ``observed`` (rows x signatures) against explicit random-set scores
    ``random`` (rows x signatures x n_null), by :func:`row_nulls`' rules: for methods scored outside
    the kernels (GSVA)."""
    n_rows, n_sig, n_null = random.shape
    work = tally_scratch(n_sig, n_null, 1)
    draws = work[7]
    for i in range(n_rows):
        for s in range(n_sig):
            obs = observed[i, s]
            tol = TIE_TOLERANCE * (1.0 + abs(obs))
            above, tied, total, squares = 0, 0, 0.0, 0.0
            for k in range(n_null):
                v = random[i, s, k]
                win, tie, d = _compare(v, obs, tol)
                above += win
                tied += tie
                total += d
                squares += d * d
                draws[k] = v
            work[1][s] = obs
            work[2][s] = above
            work[3][s] = tied
            work[4][s] = total
            work[5][s] = squares
            work[6][s] = moment_tail(draws, obs, n_null) if above == 0 and tied == 0 and obs == obs else -1.0
        _write(work, n_sig, n_null, first_row + i, seed, z_out[i], p_out[i])


@njit(cache=True, nogil=True)
def row_nulls(term, shift, listed, n_listed, bundle, work, row, z_out, p_out):  # pragma: no cover - numba
    """Score the signatures and their random sets on one row; write each signature's z-score against
    its null sets and the randomised empirical p-value (upper tail).

    Gene ``g``'s term in channel ``ch`` is ``term[ch, g] + shift[ch]``; ``term`` is 0 except for the
    ``n_listed`` genes in ``listed`` (each listed once). p = (#null > observed + U (#null == observed
    + 1)) / (n_null + 1) with U uniform from (seed, row, signature): exactly uniform when the
    signature is exchangeable with its null sets.
    """
    slot_gene, obs_ptr, obs_gene, obs_part, obs_cw, k_part = (
        bundle.slot_gene,
        bundle.obs_ptr,
        bundle.obs_gene,
        bundle.obs_part,
        bundle.obs_cw,
        bundle.k_part,
    )
    ent_ptr, ent_idx, grp_ptr, grp_cw, grp_part = (
        bundle.ent_ptr,
        bundle.ent_idx,
        bundle.grp_ptr,
        bundle.grp_cw,
        bundle.grp_part,
    )
    c0, shift_coef = bundle.c0, bundle.shift_coef
    ratio, floor, n_genes, seed = bundle.statistic == ES_RATIO, bundle.floor, bundle.n_genes, bundle.seed
    n_null = slot_gene.shape[0]
    n_sig = c0.shape[0]
    n_groups = grp_cw.shape[0]
    n_ch = term.shape[0]
    sums, observed, acc = work[0], work[1], work[9]  # acc[(k * n_groups + group) * n_ch + ch]
    for s in range(n_sig):
        if ratio:
            sums[:, :] = 0.0
            for t in range(obs_ptr[s], obs_ptr[s + 1]):
                for ch in range(n_ch):
                    sums[obs_part[t], ch] += term[ch, obs_gene[t]] + shift[ch]
            observed[s] = _ssgsea_score(sums, k_part[s, 0], k_part[s, 1], n_genes)
        else:
            v = c0[s] + shift[0] * shift_coef[s]
            for t in range(obs_ptr[s], obs_ptr[s + 1]):
                v += obs_cw[t] * term[0, obs_gene[t]]
            observed[s] = floor if v < floor else v
    acc[:] = 0.0
    # first the listed genes that change some null sum, in a branch-free pass (the tests mispredict
    # often), then all their entries in one flat loop: for one channel 20% faster than a loop per gene
    # (about 25 entries each on the benchmark's 100k cells), whose set-up and exit came once per gene;
    # for ssGSEA's three channels, where the adds dominate, as fast
    hits, hit_end, hit_term = work[10], work[15], work[16]
    n_hits, n_entries = 0, 0
    for j in range(n_listed):
        g = listed[j]
        start, end = ent_ptr[g], ent_ptr[g + 1]
        hits[n_hits], hit_end[n_hits] = start, end
        for ch in range(n_ch):
            hit_term[n_hits * n_ch + ch] = term[ch, g]
        hit = (end != start) & ((n_ch > 1) | (term[0, g] != 0.0))
        n_entries += (end - start) * hit
        n_hits += hit
    if n_hits > 0:
        hits[n_hits], hit_end[n_hits] = 0, 0  # read past the last gene, never used
        h, e, end = 0, hits[0], hit_end[0]
        if n_ch == 1:
            d = hit_term[0]
            for _ in range(n_entries):
                acc[ent_idx[e]] += d
                e += 1
                if e == end:
                    h += 1
                    e, end, d = hits[h], hit_end[h], hit_term[h]
        else:  # ssGSEA's three terms
            d0, d1, d2 = hit_term[0], hit_term[1], hit_term[2]
            for _ in range(n_entries):
                at = 3 * np.int64(ent_idx[e])
                acc[at] += d0
                acc[at + 1] += d1
                acc[at + 2] += d2
                e += 1
                if e == end:
                    h += 1
                    e, end = hits[h], hit_end[h]
                    d0, d1, d2 = hit_term[3 * h], hit_term[3 * h + 1], hit_term[3 * h + 2]
    n_above, n_tied, d_sum, d_sq, tail, draws = work[2], work[3], work[4], work[5], work[6], work[7]
    bucketed = False  # the row's terms by bin, built the first time a score is beyond all its null scores
    for s in range(n_sig):  # signature outer, replicates inner: the tallies stay in registers
        obs = observed[s]
        tol = TIE_TOLERANCE * (1.0 + abs(obs))
        above, tied, total, squares = 0, 0, 0.0, 0.0
        fixed = c0[s] + shift[0] * shift_coef[s]
        for k in range(n_null):
            # the same score as _null_score, written out: the hot loop compiled 1.4-1.75x slower through the helper
            base = k * n_groups
            if ratio:
                for ch in range(n_ch):
                    sums[0, ch] = shift[ch] * k_part[s, 0]
                    sums[1, ch] = shift[ch] * k_part[s, 1]
                for q in range(grp_ptr[s], grp_ptr[s + 1]):
                    for ch in range(n_ch):
                        sums[grp_part[q], ch] += grp_cw[q] * acc[(base + q) * n_ch + ch]
                v = _ssgsea_score(sums, k_part[s, 0], k_part[s, 1], n_genes)
            else:
                v = fixed
                for q in range(grp_ptr[s], grp_ptr[s + 1]):
                    v += grp_cw[q] * acc[base + q]
                if v < floor:
                    v = floor
            win, tie, d = _compare(v, obs, tol)
            above += win
            tied += tie
            total += d
            squares += d * d
        n_above[s] = above
        n_tied[s] = tied
        d_sum[s] = total
        d_sq[s] = squares
        tail[s] = -1.0
        if above == 0 and tied == 0 and obs == obs:  # beyond every null score: a fitted tail, not U / (n_null + 1)
            if not ratio and bundle.slot_ptr.shape[0] > 1:  # a sum of drawn terms: its saddlepoint tail
                if not bucketed:
                    _bucket_terms(term, listed, n_listed, bundle.bin_of, work[11], work[12], work[13], work[14])
                    bucketed = True
                tail[s] = saddlepoint_tail(
                    obs - fixed,
                    bundle.slot_ptr[s],
                    bundle.slot_ptr[s + 1],
                    bundle.slot_cw,
                    bundle.slot_source,
                    bundle.source_bins,
                    bundle.source_base,
                    bundle.source_n,
                    bundle.source_prob,
                    bundle.gene_pos,
                    work[11],
                    work[12],
                    work[13],
                    n_null,
                )
            if tail[s] < 0.0:  # ssGSEA's ratio, or no saddlepoint: the moment tail of the null scores
                for k in range(n_null):  # rare: the null scores again (not kept in the loop above, which stays lean)
                    draws[k] = _null_score(
                        s,
                        k,
                        ratio,
                        sums,
                        shift,
                        k_part,
                        grp_ptr,
                        grp_part,
                        grp_cw,
                        acc,
                        n_groups,
                        n_genes,
                        fixed,
                        floor,
                    )
                tail[s] = moment_tail(draws, obs, n_null)
    _write(work, n_sig, n_null, row, seed, z_out, p_out)


@njit(cache=True, nogil=True)
def _null_score(
    s, k, ratio, sums, shift, k_part, grp_ptr, grp_part, grp_cw, acc, n_groups, n_genes, fixed, floor
):  # pragma: no cover - numba
    """Signature ``s``'s ``k``-th null score from the row's raw group sums ``acc``."""
    base = k * n_groups
    if ratio:
        n_ch = sums.shape[1]
        for ch in range(n_ch):
            sums[0, ch] = shift[ch] * k_part[s, 0]
            sums[1, ch] = shift[ch] * k_part[s, 1]
        for q in range(grp_ptr[s], grp_ptr[s + 1]):
            for ch in range(n_ch):
                sums[grp_part[q], ch] += grp_cw[q] * acc[(base + q) * n_ch + ch]
        return _ssgsea_score(sums, k_part[s, 0], k_part[s, 1], n_genes)
    v = fixed
    for q in range(grp_ptr[s], grp_ptr[s + 1]):
        v += grp_cw[q] * acc[base + q]
    return floor if v < floor else v


@njit(cache=True, nogil=True)
def _ssgsea_score(sums, k_up, k_dn, n):  # pragma: no cover - numba
    """ES(up) - ES(down) from the parts' (sum w, sum w (q + 1), sum (q + 1))."""
    es = _ssgsea_part(sums[0, 0], sums[0, 1], sums[0, 2], k_up, n) if k_up > 0 else 0.0
    return es - (_ssgsea_part(sums[1, 0], sums[1, 1], sums[1, 2], k_dn, n) if k_dn > 0 else 0.0)


@njit(parallel=True, cache=True, nogil=True)
def linear_nulls(rows, n_genes, bundle, tables, n_blocks):  # pragma: no cover - numba
    """Nulls for the linear methods (mean, wmean, zmean): the gene terms are the row's values
    (repeated entries of a gene add up, as in the scores)."""
    data, indices, indptr, r0, r1 = rows
    row_offset, z_out, p_out = tables
    n_rows = r1 - r0
    nb = max(1, min(n_rows, n_blocks))
    for b in prange(nb):
        lo = r0 + b * n_rows // nb
        hi = r0 + (b + 1) * n_rows // nb
        term = np.zeros((1, n_genes))
        shift = np.zeros(1)
        seen = np.zeros(n_genes, np.bool_)
        listed = np.empty(n_genes, np.int64)
        work = scratch(bundle, 1)
        for i in range(lo, hi):
            n_listed = 0
            for j in range(indptr[i], indptr[i + 1]):
                g = indices[j]
                term[0, g] += data[j]
                if not seen[g]:
                    seen[g] = True
                    listed[n_listed] = g
                    n_listed += 1
            row_nulls(term, shift, listed, n_listed, bundle, work, i + row_offset, z_out[i - r0], p_out[i - r0])
            for t in range(n_listed):
                term[0, listed[t]] = 0.0
                seen[listed[t]] = False


@njit(parallel=True, cache=True, nogil=True)
def bh_rows(p, out):  # pragma: no cover - numba
    """Benjamini-Hochberg adjusted p-values of each row of ``p`` (rows in parallel: one cell's
    signatures). Non-finite p-values are not tests: they stay NaN and do not count in m."""
    n_rows, n = p.shape
    for i in prange(n_rows):
        row = p[i]
        order = np.argsort(np.where(np.isfinite(row), row, np.inf), kind="mergesort")
        m = 0
        for j in range(n):
            m += np.isfinite(row[j])
        running = 1.0
        for r in range(n - 1, -1, -1):
            j = order[r]
            if r >= m:
                out[i, j] = np.nan
                continue
            running = min(running, row[j] * m / (r + 1))
            out[i, j] = running


@njit(cache=True, nogil=True)
def _edgeworth_upper(z, skew):  # pragma: no cover - numba
    """P(Z >= z) for a standardised sum with skewness ``skew``: the normal tail plus the first
    Edgeworth term, clipped to [0, 1]."""
    normal = 0.5 * math.erfc(z / math.sqrt(2.0))
    density = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return min(max(normal + skew / 6.0 * (z * z - 1.0) * density, 0.0), 1.0)


@njit(parallel=True, cache=True, nogil=True)
def linear_moments(rows, n_genes, moments_of, row_offset, n_blocks, z_out, p_out):  # pragma: no cover - numba
    """The analytic null of the linear methods: for each signature, the exact mean, variance and
    third cumulant of the score of a random gene set drawn like the matched null (in each expression
    bin, as many genes as the signature has there, without replacement, carrying its weights),
    from the row's per-bin power sums. z is exact; the upper-tail p-value is the Edgeworth
    approximation (normal plus skewness), except where all the signature's genes are zero in a row
    of non-negative values and weights: then the score sits on the atom "no gene of the set
    expressed", whose probability ``pi0`` is exact, and p = (1 - pi0) + U pi0 with U uniform from
    (seed, row, signature), as the empirical null randomises ties.

    ``moments_of`` (a :class:`.types.MomentBundle`) lists each signature's bins (CSR by signature):
    bin, where its "c genes drawn, none expressed" probability sits in the row's table
    (``zero_ptr[bin] + c``) and the coefficients of the bin's mean, variance and third central
    moment; ``obs_*``: each signature's genes and weights as the method scores them."""
    data, indices, indptr, r0, r1 = rows
    bin_of, bin_size, reciprocal, zero_ptr = (
        moments_of.bin_of,
        moments_of.bin_size,
        moments_of.reciprocal,
        moments_of.zero_ptr,
    )
    sb_ptr, sb_bin, sb_zero_at, sb_coef = (
        moments_of.sb_ptr,
        moments_of.sb_bin,
        moments_of.sb_zero_at,
        moments_of.sb_coef,
    )
    obs_ptr, obs_gene, obs_w, nonneg, seed = (
        moments_of.obs_ptr,
        moments_of.obs_gene,
        moments_of.obs_w,
        moments_of.nonneg,
        moments_of.seed,
    )
    n_rows = r1 - r0
    n_sig = obs_ptr.shape[0] - 1
    n_bins = bin_size.shape[0]
    nb = max(1, min(n_rows, n_blocks))
    for b in prange(nb):
        lo = r0 + b * n_rows // nb
        hi = r0 + (b + 1) * n_rows // nb
        term = np.zeros(n_genes)
        seen = np.zeros(n_genes, np.bool_)
        listed = np.empty(n_genes, np.int64)
        power = np.zeros((n_bins, 4))  # per bin: non-zero genes, sum, sum of squares, sum of cubes
        moments = np.zeros((n_bins, 3))  # per bin: mean, second and third central moments
        all_zero = np.zeros(zero_ptr[n_bins])
        for i in range(lo, hi):
            n_listed = 0
            for j in range(indptr[i], indptr[i + 1]):
                g = indices[j]
                term[g] += data[j]
                if not seen[g]:
                    seen[g] = True
                    listed[n_listed] = g
                    n_listed += 1
            power[:, :] = 0.0
            negative = False
            for t in range(n_listed):
                g = listed[t]
                v = term[g]
                negative |= v < 0.0
                bb = bin_of[g]
                if bb >= 0 and v != 0.0:
                    power[bb, 0] += 1.0
                    power[bb, 1] += v
                    power[bb, 2] += v * v
                    power[bb, 3] += v * v * v
            for bb in range(n_bins):  # the bin's population moments, and P(c random genes all unexpressed) for each c
                n = bin_size[bb]
                mu = power[bb, 1] / n
                moments[bb, 0] = mu
                moments[bb, 1] = max(power[bb, 2] / n - mu * mu, 0.0)
                moments[bb, 2] = power[bb, 3] / n - 3.0 * mu * power[bb, 2] / n + 2.0 * mu * mu * mu
                unexpressed = n - power[bb, 0]
                size = np.int64(n)
                none = 1.0
                all_zero[zero_ptr[bb]] = 1.0
                for d in range(zero_ptr[bb + 1] - zero_ptr[bb] - 1):  # reciprocal table: no divisions
                    none *= max(unexpressed - d, 0.0) * reciprocal[size - d]
                    all_zero[zero_ptr[bb] + d + 1] = none
            row = i + row_offset
            for s in range(n_sig):
                observed, n_expressed = 0.0, 0
                for t in range(obs_ptr[s], obs_ptr[s + 1]):
                    v = term[obs_gene[t]]
                    observed += obs_w[t] * v
                    n_expressed += v != 0.0
                mean, var, k3, pi0 = 0.0, 0.0, 0.0, 1.0
                for q in range(sb_ptr[s], sb_ptr[s + 1]):
                    bb = sb_bin[q]
                    mean += sb_coef[q, 0] * moments[bb, 0]
                    var += sb_coef[q, 1] * moments[bb, 1]
                    k3 += sb_coef[q, 2] * moments[bb, 2]
                    pi0 *= all_zero[sb_zero_at[q]]
                u = uniform(seed, row, s)
                tol = TIE_TOLERANCE * (1.0 + abs(observed) + abs(mean))
                if var <= (tol * tol):  # every random set scores the same (all its bins' values equal)
                    z_out[i - r0, s] = 0.0
                    p_out[i - r0, s] = u
                    continue
                sd = math.sqrt(var)
                z = (observed - mean) / sd
                z_out[i - r0, s] = z
                on_atom = nonneg[s] and not negative
                if on_atom and n_expressed == 0:
                    p_out[i - r0, s] = (1.0 - pi0) + u * pi0
                else:
                    p = _edgeworth_upper(z, k3 / (var * sd))
                    p_out[i - r0, s] = min(p, 1.0 - pi0) if on_atom else p
            for t in range(n_listed):
                term[listed[t]] = 0.0
                seen[listed[t]] = False


lock_cache_files(globals())  # see .caching: safe on-disk caches when processes compile at once
