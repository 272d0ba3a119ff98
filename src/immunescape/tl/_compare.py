"""Group differences of scores and calls (e.g. responders vs non-responders), and p-value adjustment."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import stats

from .._errors import InputError
from .._null import benjamini_hochberg
from .._utils import check_random_state, closest, physical_memory

_TESTS = ("rank", "permutation")
_CORRECTIONS = ("fdr_bh", "bonferroni", None)
_MAX_LEVELS = 20  # text columns with more distinct values (reasons, ids) are not features


def feature_table(data: AnnData | pd.DataFrame, key: str = "immunescape") -> pd.DataFrame:
    """Samples (or cells) x features: scores (sample X from :func:`aggregate`, else ``obsm[key]``)
    joined with the ``obs`` columns (composition, classes, clinical labels)."""
    if isinstance(data, pd.DataFrame):
        return data
    if not isinstance(data, AnnData):
        raise InputError(f"compare takes an AnnData or a DataFrame, got {type(data).__name__}.")
    from ._classify import sample_features

    if "immunescape_samples" in data.uns or key in data.obsm:
        scores = sample_features(data, key)
    else:
        scores = pd.DataFrame(index=data.obs_names)
    obs = data.obs[[c for c in data.obs.columns if c not in scores.columns]]
    return pd.concat([scores, obs], axis=1)


def _kind(values: pd.Series) -> str | None:
    """'numeric', 'categorical' or None (not a feature: free text, ids, a single value)."""
    present = values.dropna()
    if present.empty:
        return None
    if pd.api.types.is_bool_dtype(values) or set(present.unique()) <= {True, False}:
        return "categorical"
    if pd.api.types.is_numeric_dtype(values):
        return "numeric"
    if present.nunique() <= _MAX_LEVELS and present.nunique() < len(present):
        return "categorical"
    return None


def compare(
    data: AnnData | pd.DataFrame,
    groupby: str,
    *,
    features: str | Sequence[str] | None = None,
    key: str = "immunescape",
    groups: Sequence[str] | None = None,
    reference: str | None = None,
    test: str = "rank",
    n_permutations: int = 9999,
    correction: str | None = "fdr_bh",
    random_state: int | None = 0,
) -> pd.DataFrame:
    """Test every score, composition or call for a difference between groups of samples.

    Numeric features (scores, z-scores, fractions): with two groups the effect is the difference of
    means, Hedges' g and Cliff's delta (the rank-biserial correlation, ``P(X > Y) - P(X < Y)``);
    tested by the two-sided Mann-Whitney U (``test="rank"``) or a permutation test of the difference
    of means. With more groups: epsilon-squared, Kruskal-Wallis or a permutation test of its H.
    Categorical features (immune context, mechanism calls, classes): the difference of proportions
    and the odds ratio (two groups, yes/no feature) or Cramer's V; Fisher's exact test (2 x 2),
    chi-squared, or a permutation test of chi-squared. p-values are then adjusted over the features.

    Parameters
    ----------
    data
        Samples from :func:`aggregate` or a scored bulk AnnData (scores and ``obs``), or a DataFrame
        (e.g. :func:`classify`'s table joined with clinical labels). Cells work too, but cells of
        one sample are not independent: compare samples.
    groupby
        Column holding the groups (``obs`` column for AnnData).
    features
        Columns to test; default: every numeric, yes/no or few-level column except ``groupby``.
    key
        ``obsm`` key of the scores of a scored bulk AnnData.
    groups
        Groups to compare (default: all, sorted); rows in other groups are left out.
    reference
        Group the others are compared with (two groups: effect = other minus reference). Default:
        the first of ``groups``.
    test
        ``"rank"`` (Mann-Whitney / Kruskal-Wallis; Fisher / chi-squared) or ``"permutation"``.
    n_permutations
        Resamples of a permutation test (exact when fewer arrangements exist).
    correction
        ``"fdr_bh"`` (Benjamini-Hochberg), ``"bonferroni"`` or None, over the tested features.
    random_state
        Seed of the permutation test; the same seed gives the same p-values.

    Returns
    -------
    pandas.DataFrame
        One row per feature, most significant first: ``kind``, ``test``, ``n_<group>``,
        ``mean_<group>`` / ``median_<group>`` (numeric) or ``frac_<group>`` (yes/no: the fraction
        yes; other categories: the most common level), ``effect_measure``, ``effect_size`` and, for
        two groups, ``difference`` (and ``hedges_g``/``cliffs_delta`` or ``odds_ratio``),
        ``statistic``, ``pval``, ``padj``.

    Examples
    --------
    >>> import immunescape as ie
    >>> cells = ie.datasets.simulate_tumor(n_samples=8, cells_per_sample=120, seed=0)
    >>> ie.tl.score(cells, "cytolytic_activity_rooney2015,apm_mariathasan2018")
    >>> samples = ie.tl.aggregate(cells, "sample")
    >>> samples.obs["arm"] = ["a", "b"] * 4
    >>> table = ie.tl.compare(samples, "arm", features=["cytolytic_activity_rooney2015"])
    >>> [int(n) for n in table.loc["cytolytic_activity_rooney2015", ["n_a", "n_b"]]]
    [4, 4]
    """
    if test not in _TESTS:
        raise InputError(f"test must be one of {list(_TESTS)}, got {test!r}.")
    if correction not in _CORRECTIONS:
        raise InputError(f"correction must be one of {list(_CORRECTIONS)}, got {correction!r}.")
    if (
        isinstance(n_permutations, (bool, np.bool_))
        or not isinstance(n_permutations, (int, np.integer))
        or n_permutations < 99
    ):
        raise InputError(f"n_permutations must be an integer >= 99, got {n_permutations!r}.")
    most = physical_memory() // 4 // 8  # scipy keeps the null distribution: 8 bytes per permutation
    if n_permutations > most:  # 10**9 reached 6.8 GiB and was still growing when stopped
        raise InputError(
            f"n_permutations={n_permutations:,} keeps about {8 * n_permutations / 2**30:,.1f} GiB of permuted "
            f"statistics per feature; use at most {most:,} on this machine (9,999 resolves p down to 1e-4)."
        )
    check_random_state(random_state)
    table = feature_table(data, key)
    if groupby not in table:
        raise InputError(f"groupby={groupby!r} is not a column." + closest(groupby, table.columns))
    labels = table[groupby].astype("string")
    available = sorted(labels.dropna().unique())
    chosen = list(available if groups is None else groups)
    unknown = [g for g in chosen if g not in available]
    if unknown:
        raise InputError(f"Group {unknown[0]!r} is not in {groupby!r}; groups are {available}.")
    if reference is not None:
        if reference not in chosen:
            raise InputError(f"reference={reference!r} is not one of the groups {chosen}.")
        chosen = [reference] + [g for g in chosen if g != reference]
    if len(chosen) < 2:
        raise InputError(f"compare needs at least two groups in {groupby!r}; found {chosen}.")
    keep = labels.isin(chosen).fillna(False).to_numpy()
    table, labels = table.loc[keep], labels[keep]
    if features is None:
        names = [c for c in table.columns if c != groupby and _kind(table[c]) is not None]
    else:
        names = [features] if isinstance(features, str) else list(features)
        for name in names:
            if name not in table:
                raise InputError(f"Unknown feature {name!r}." + closest(name, table.columns))
    if not names:
        raise InputError("No numeric or categorical features to compare; pass features=[...].")
    rng = np.random.default_rng(random_state)
    rows = []
    for name in names:
        kind = _kind(table[name])
        if kind is None:
            raise InputError(f"Feature {name!r} is neither numeric nor a category with at most {_MAX_LEVELS} levels.")
        parts = [table.loc[(labels == g).to_numpy(), name].dropna() for g in chosen]
        row = {"feature": name, "kind": kind, **{f"n_{g}": int(p.size) for g, p in zip(chosen, parts)}}
        if min(p.size for p in parts) == 0 or sum(p.size for p in parts) < 3:
            rows.append({**row, "test": "not tested (a group without values)", "pval": np.nan})
            continue
        seed = int(rng.integers(2**31))  # one seed per feature, in feature order: reproducible
        rows.append(
            {**row, **(_numeric if kind == "numeric" else _categorical)(parts, chosen, test, n_permutations, seed)}
        )
    out = pd.DataFrame(rows).set_index("feature")
    out["padj"] = adjust(out["pval"].to_numpy(), correction)
    return out.sort_values("pval", kind="stable")


def adjust(pvals: np.ndarray, correction: str | None) -> np.ndarray:
    """Adjust a 1-D array of p-values (NaN stay NaN and are not counted)."""
    p = np.asarray(pvals, np.float64)
    if correction is None:
        return p.copy()
    if correction == "bonferroni":
        return np.minimum(p * np.isfinite(p).sum(), 1.0)
    return benjamini_hochberg(p[None, :])[0]


def adjust_pvalues(pvals: pd.DataFrame, across: str = "cells", correction: str = "fdr_bh") -> pd.DataFrame:
    """Adjust a cells x signatures table of p-values (e.g. ``obsm["immunescape_pval"]``).

    ``across="cells"`` adjusts each signature over all cells (which cells carry the programme?);
    ``across="signatures"`` adjusts each cell over its signatures (what ``score`` stores as ``_padj``).

    Examples
    --------
    >>> import pandas as pd, immunescape as ie
    >>> p = pd.DataFrame({"a": [0.01, 0.02, 0.5], "b": [0.04, 0.9, 0.01]})
    >>> ie.tl.adjust_pvalues(p, across="cells").round(3)["a"].tolist()
    [0.03, 0.03, 0.5]
    """
    if across not in ("cells", "signatures"):
        raise InputError(f"across must be 'cells' or 'signatures', got {across!r}.")
    if correction not in ("fdr_bh", "bonferroni"):
        raise InputError(f"correction must be 'fdr_bh' or 'bonferroni', got {correction!r}.")
    try:
        values = pvals.to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise InputError("pvals must hold numbers (p-values between 0 and 1).") from None
    finite = values[~np.isnan(values)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise InputError(
            f"p-values must lie between 0 and 1 (NaN for undefined); these range from {finite.min():g} to "
            f"{finite.max():g}. Pass p-values, not scores or z."
        )
    if across == "cells":
        values = values.T
    out = np.stack([adjust(row, correction) for row in values]) if values.size else values
    return pd.DataFrame(out.T if across == "cells" else out, index=pvals.index, columns=pvals.columns)


def _numeric(parts: list[pd.Series], groups: list[str], test: str, n_permutations: int, seed: int) -> dict:
    values = [p.to_numpy(dtype=float) for p in parts]
    row = {
        **{f"mean_{g}": v.mean() for g, v in zip(groups, values)},
        **{f"median_{g}": np.median(v) for g, v in zip(groups, values)},
    }
    if len(values) == 2:
        ref, other = values
        u = stats.mannwhitneyu(other, ref, alternative="two-sided")
        spread = (ref.size - 1) * (ref.var(ddof=1) if ref.size > 1 else 0) + (other.size - 1) * (
            other.var(ddof=1) if other.size > 1 else 0
        )
        pooled = np.sqrt(spread / (ref.size + other.size - 2))
        correction = 1 - 3 / (4 * (ref.size + other.size) - 9)  # Hedges' small-sample correction
        row.update(
            difference=other.mean() - ref.mean(),
            hedges_g=(other.mean() - ref.mean()) / pooled * correction if pooled > 0 else np.nan,
            cliffs_delta=2 * u.statistic / (ref.size * other.size) - 1,
            effect_measure="cliffs_delta",
        )
        row["effect_size"] = row["cliffs_delta"]
        if test == "rank":
            return {**row, "test": "Mann-Whitney U (two-sided)", "statistic": u.statistic, "pval": u.pvalue}
        res = stats.permutation_test(
            (other, ref),
            lambda a, b, axis: a.mean(axis=axis) - b.mean(axis=axis),
            vectorized=True,
            n_resamples=n_permutations,
            batch=max(1, _PERMUTATION_BLOCK // (ref.size + other.size)),  # bounded memory, the same draws
            random_state=seed,
            alternative="two-sided",
        )
        return {**row, "test": "permutation (difference of means)", "statistic": res.statistic, "pval": res.pvalue}
    h = stats.kruskal(*values)
    n = sum(v.size for v in values)
    row.update(effect_measure="epsilon_squared", effect_size=h.statistic / (n - 1))
    if test == "rank":
        return {**row, "test": "Kruskal-Wallis", "statistic": h.statistic, "pval": h.pvalue}
    res = stats.permutation_test(
        values,
        lambda *v: stats.kruskal(*v).statistic,
        n_resamples=n_permutations,
        random_state=seed,
        alternative="greater",
    )
    return {**row, "test": "permutation (Kruskal-Wallis H)", "statistic": res.statistic, "pval": res.pvalue}


_PERMUTATION_BLOCK = 2_000_000  # group labels held at once (permutations x observations)


def _permuted_chi2(codes: np.ndarray, groups: np.ndarray, n_levels: int, n_permutations: int, seed: int) -> np.ndarray:
    """Pearson chi-squared of the groups x levels table after each random relabelling of the groups.

    Group sizes and level counts do not change under relabelling, so the expected table is fixed and
    every permuted table is one bincount: vectorised over blocks of permutations."""
    n_groups, n = int(groups.max()) + 1, codes.size
    expected = np.bincount(groups, minlength=n_groups)[:, None] * np.bincount(codes, minlength=n_levels)[None, :] / n
    rng = np.random.default_rng(seed)
    per_block = max(1, _PERMUTATION_BLOCK // n)
    out = []
    for start in range(0, n_permutations, per_block):
        size = min(per_block, n_permutations - start)
        shuffled = rng.permuted(np.broadcast_to(groups, (size, n)), axis=1)
        cells = (np.arange(size)[:, None] * n_groups + shuffled) * n_levels + codes[None, :]
        tables = np.bincount(cells.ravel(), minlength=size * n_groups * n_levels).reshape(size, n_groups, n_levels)
        out.append((((tables - expected) ** 2) / expected).sum(axis=(1, 2)))
    return np.concatenate(out)


def _categorical(parts: list[pd.Series], groups: list[str], test: str, n_permutations: int, seed: int) -> dict:
    levels = sorted(pd.concat(parts).astype(str).unique())
    counts = np.asarray([[int((p.astype(str) == lev).sum()) for lev in levels] for p in parts])
    binary = set(levels) <= {"True", "False"}
    row = {}
    for g, p in zip(groups, parts):
        text = p.astype(str)
        row[f"frac_{g}"] = (
            float((text == "True").mean())
            if binary
            else f"{text.mode().iloc[0]} ({(text == text.mode().iloc[0]).mean():.0%})"
        )
    if len(levels) < 2:
        return {
            **row,
            "test": "not tested (one level)",
            "pval": 1.0,
            "effect_measure": "none",
            "effect_size": 0.0,
            "statistic": 0.0,
        }
    chi2 = stats.chi2_contingency(counts, correction=False)
    cramers_v = np.sqrt(chi2.statistic / (counts.sum() * (min(counts.shape) - 1)))
    row.update(effect_measure="cramers_v", effect_size=cramers_v)
    if binary and len(groups) == 2:
        yes, no = levels.index("True"), levels.index("False")
        frac = [row[f"frac_{g}"] for g in groups]
        by_group = [[counts[1, yes], counts[1, no]], [counts[0, yes], counts[0, no]]]  # other, then reference
        odds = stats.contingency.odds_ratio(by_group).statistic
        row.update(
            difference=frac[1] - frac[0],
            odds_ratio=odds,
            effect_measure="difference_of_proportions",
            effect_size=frac[1] - frac[0],
        )
    if test == "rank":
        if counts.shape == (2, 2):
            fisher = stats.fisher_exact(counts)
            return {**row, "test": "Fisher exact", "statistic": fisher.statistic, "pval": fisher.pvalue}
        return {**row, "test": "chi-squared", "statistic": chi2.statistic, "pval": chi2.pvalue}
    pooled = np.concatenate([p.astype(str).to_numpy() for p in parts])
    null = _permuted_chi2(
        np.searchsorted(levels, pooled),
        np.repeat(np.arange(len(parts)), [p.size for p in parts]),
        len(levels),
        n_permutations,
        seed,
    )
    pval = (1 + np.sum(null >= chi2.statistic - 1e-12)) / (n_permutations + 1)
    return {**row, "test": "permutation (chi-squared)", "statistic": chi2.statistic, "pval": pval}
