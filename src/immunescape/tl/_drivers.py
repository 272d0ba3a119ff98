"""Which tumour-intrinsic pathway goes with T-cell exclusion in a cohort (issue 20).

Across samples, each pathway footprint's activity is related to T-cell infiltration and to the
exclusion axis by a partial Spearman correlation (ranks, with the covariates' ranks regressed out),
with a Fisher-z interval, a t-test p-value and Benjamini-Hochberg FDR over the pathways.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import stats

from .._errors import DataWarning, InputError
from .._utils import check_share, closest

#: Fewer samples than this (with the pathway, the outcome and the covariates all known) are refused:
#: below it a rank correlation's 95% interval spans most of [-1, 1] whatever the data say.
MIN_SAMPLES = 10
#: Stromal content in bulk: fibroblast and endothelial abundance signatures (Bagaev 2021).
STROMAL_CONTENT = ("bagaev2021_CAF", "bagaev2021_Endothelium")
INFILTRATION = "cd8_t_effector_mariathasan2018"
#: Spearman's rho is less efficient than Pearson's r: Fisher-z standard error sqrt(1.06 / (n - 3))
#: (Fieller, Hartley & Pearson 1957), with one degree of freedom less per covariate.
_FIELLER = 1.06


def partial_spearman(x: np.ndarray, y: np.ndarray, covariates: np.ndarray | None = None) -> tuple[float, float, int]:
    """Spearman correlation of ``x`` and ``y`` with the covariates' ranks regressed out of both ranks.

    Returns ``(rho, p, n)`` over the rows where everything is finite; p from the t distribution with
    ``n - 2 - k`` degrees of freedom (k covariates).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(12.0); y = x ** 2
    >>> rho, p, n = partial_spearman(x, y)
    >>> round(rho, 6), n
    (1.0, 12)
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    cov = np.zeros((x.size, 0)) if covariates is None else np.asarray(covariates, float).reshape(x.size, -1)
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(cov).all(axis=1)
    n, k = int(keep.sum()), cov.shape[1]
    if n - 2 - k < 1 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:  # too few rows, or nothing varies
        return np.nan, np.nan, n
    ranks = [stats.rankdata(v[keep]) for v in (x, y)]
    design = np.column_stack([np.ones(n)] + [stats.rankdata(c) for c in cov[keep].T])
    resid = [r - design @ np.linalg.lstsq(design, r, rcond=None)[0] for r in ranks]
    spread = np.sqrt((resid[0] ** 2).sum() * (resid[1] ** 2).sum())
    if spread == 0:
        return np.nan, np.nan, n
    rho = float(np.clip((resid[0] * resid[1]).sum() / spread, -1.0, 1.0))
    df = n - 2 - k
    t = rho * np.sqrt(df / max(1.0 - rho**2, 1e-300))
    return rho, float(2 * stats.t.sf(abs(t), df)), n


def _interval(rho: float, n: int, k: int, level: float = 0.95) -> tuple[float, float]:
    if not np.isfinite(rho) or n - 3 - k < 1:
        return np.nan, np.nan
    half = stats.norm.ppf(0.5 + level / 2) * np.sqrt(_FIELLER / (n - 3 - k))
    z = np.arctanh(np.clip(rho, -0.999999, 0.999999))
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def exclusion_drivers(
    samples: AnnData | pd.DataFrame,
    *,
    pathways: str | Sequence[str] = "tumour_intrinsic",
    infiltration: str = INFILTRATION,
    exclusion: str | pd.Series | None = None,
    adjust: str | Sequence[str] | None = "auto",
    key: str = "immunescape",
    key_added: str = "immunescape_class",
    min_samples: int = MIN_SAMPLES,
    level: float = 0.95,
) -> pd.DataFrame:
    """Which tumour-intrinsic pathway goes with T-cell exclusion in this cohort.

    For each pathway footprint (the ``tumour_intrinsic`` collection: PROGENy and Hallmark sets,
    scored in malignant cells), across samples: its partial Spearman correlation with T-cell
    infiltration (``infiltration``, the CD8 T-effector score by default) and with the exclusion axis
    (excluded coded 1, inflamed 0; desert and indeterminate samples left out), with a 95% interval
    (Fisher z, standard error ``sqrt(1.06 / (n - 3 - k))``), p (t test on ``n - 2 - k`` degrees of
    freedom; k covariates) and Benjamini-Hochberg FDR over the pathways, per outcome.

    Where the pathway is read: single cells aggregated by :func:`aggregate` give each footprint's
    mean over the malignant compartment (the signature files say ``compartment: malignant``), so
    nothing is adjusted by default. Bulk (and pseudobulk) samples mix tumour, stroma and immune
    cells, so a footprint partly reads how much stroma a sample holds (TGF-beta above all): by
    default each association is adjusted for stromal content (the ranks of the fibroblast and
    endothelium abundance signatures, ``STROMAL_CONTENT``). Immune content is not adjusted for: it
    is what the infiltration outcome measures, and adjusting for it would remove the association
    asked about.

    Parameters
    ----------
    samples
        Samples x features: :func:`aggregate` output, or a scored bulk AnnData (``obsm[key]``), or
        a DataFrame of features (samples as rows).
    pathways
        A collection name or the pathway features to test (scored beforehand, e.g.
        ``ie.tl.score(adata, "tumour_intrinsic", method="wmean")``).
    infiltration
        Feature measuring T-cell infiltration.
    exclusion
        The exclusion axis: an ``obs`` column (or a Series by sample) of labels (``"excluded"`` vs
        ``"inflamed"``; pathologists' calls where there are any) or numbers (higher: more excluded).
        Default: the immune context that :func:`classify` wrote to ``obs[key_added]`` (run
        ``classify`` first). The context model reads T-cell and TGF-beta features, so against its
        calls TGF-beta is partly circular; pathologists' calls are not.
    adjust
        ``"auto"`` (stromal content in bulk; nothing for malignant-compartment aggregates), None, or
        features to adjust for.
    key
        ``obsm`` key of the scores (bulk AnnData).
    key_added
        Where :func:`classify` wrote its calls.
    min_samples
        An outcome with fewer samples that have everything known is left out (with a warning); with
        neither outcome possible the call is refused (InputError).
    level
        Confidence level of the intervals.

    Returns
    -------
    pandas.DataFrame
        One row per pathway and outcome: ``pathway``, ``review`` (the pathway in the review's
        terms), ``outcome`` (``"infiltration"`` or ``"exclusion"``), ``rho``, ``ci_low``,
        ``ci_high``, ``pval``, ``fdr``, ``n``, ``adjusted_for``, sorted by outcome and p. The
        attrs record the outcome definitions.

    Examples
    --------
    >>> import immunescape as ie
    >>> cells = ie.datasets.simulate_tumor(n_samples=12, cells_per_sample=60, seed=3,
    ...                                    pathways={"progeny_tgfb": "t_cell_poor"})
    >>> ie.tl.score(cells, "immune_escape")
    >>> ie.tl.score(cells, "tumour_intrinsic", method="wmean", key_added="pathways")
    >>> samples = ie.tl.aggregate(cells, "sample", celltype_key="cell_type", key=["immunescape", "pathways"])
    >>> _ = ie.tl.classify(samples)
    >>> table = ie.tl.exclusion_drivers(samples)
    >>> tgfb = table.set_index(["pathway", "outcome"]).loc[("progeny_tgfb", "infiltration")]
    >>> bool(tgfb["rho"] < 0)
    True
    """
    from ..signatures import collection, collection_names
    from ._classify import sample_features

    check_share(level, "level", open_ends=True)
    if not isinstance(min_samples, (int, np.integer)) or min_samples < 5:
        raise InputError(f"min_samples must be an integer of at least 5, got {min_samples!r}.")
    if not isinstance(samples, (AnnData, pd.DataFrame)):
        raise InputError(
            f"exclusion_drivers takes an AnnData or a DataFrame of sample features, got {type(samples).__name__}."
        )
    frame = sample_features(samples, key)  # numbers; text in a DataFrame becomes NaN, left out per pathway
    if not frame.index.is_unique:
        twice = frame.index[frame.index.duplicated()][0]
        raise InputError(
            f"Sample names are not unique (e.g. {twice!r}): each sample must have its own row; "
            "call obs_names_make_unique() or aggregate by a sample column."
        )
    if isinstance(pathways, str) and pathways in collection_names():
        wanted = [s.name for s in collection(pathways)]
        names = [p for p in wanted if p in frame.columns]
        if not names:
            raise InputError(
                f"None of the {pathways!r} pathways is scored here: score them first, e.g. "
                f"ie.tl.score(adata, {pathways!r}, method='wmean') (then aggregate single cells)."
            )
    else:
        names = [pathways] if isinstance(pathways, str) else list(pathways)
        for p in names:
            if p not in frame.columns:
                raise InputError(f"Pathway feature {p!r} is not scored here." + closest(p, frame.columns))
    if infiltration not in frame.columns:
        raise InputError(
            f"infiltration={infiltration!r} is not a feature here: score it (it is in the immune_escape "
            "collection) or name another." + closest(infiltration, frame.columns)
        )
    outcomes = {"infiltration": frame[infiltration].astype(float)}
    outcomes["exclusion"], exclusion_text = _exclusion_axis(samples, frame.index, exclusion, key_added)
    covariates, adjusted = _covariates(samples, frame, names, adjust)

    rows, short = [], {}
    k = covariates.shape[1] if covariates is not None else 0
    for outcome, y in outcomes.items():
        results = []
        for name in names:
            rho, p, n = partial_spearman(frame[name].to_numpy(float), y.to_numpy(float), covariates)
            low, high = _interval(rho, n, k, level)
            results.append(
                {
                    "pathway": name,
                    "review": _review_name(name),
                    "outcome": outcome,
                    "rho": rho,
                    "ci_low": low,
                    "ci_high": high,
                    "pval": p,
                    "n": n,
                    "adjusted_for": ", ".join(adjusted) or "nothing",
                }
            )
        fewest = min(r["n"] for r in results)
        if fewest < min_samples:
            short[outcome] = fewest
        else:
            rows += results
    if not rows:
        detail = "; ".join(f"{o}: {n}" for o, n in short.items())
        raise InputError(
            f"Too few samples with the pathways, the outcome{' and the covariates' if adjusted else ''} all known "
            f"({detail}); exclusion_drivers needs at least {min_samples} (min_samples) for an interval that says "
            "anything. Add samples, or give exclusion labels for more of them (exclusion=...)."
        )
    for outcome, n in short.items():
        warnings.warn(
            f"The {outcome} outcome is left out: only {n} samples have it known (at least {min_samples}, "
            f"min_samples, are needed)"
            + (": desert and indeterminate samples carry no exclusion label." if outcome == "exclusion" else "."),
            DataWarning,
            stacklevel=2,
        )
    table = pd.DataFrame(rows)
    table["fdr"] = np.nan
    from .._null import benjamini_hochberg

    for outcome in table["outcome"].unique():
        part = table["outcome"] == outcome
        pvals = table.loc[part, "pval"].to_numpy(float)
        table.loc[part, "fdr"] = benjamini_hochberg(pvals[None, :], axis=1)[0]
    table = table[["pathway", "review", "outcome", "rho", "ci_low", "ci_high", "pval", "fdr", "n", "adjusted_for"]]
    table = table.sort_values(["outcome", "pval"], ascending=[False, True], kind="stable").reset_index(drop=True)
    table.attrs["outcomes"] = {
        "infiltration": f"{infiltration} (higher: more T-cell infiltration)",
        "exclusion": exclusion_text,
    }
    table.attrs["effect"] = (
        f"partial Spearman rho, {level:.0%} interval from Fisher's z with SE sqrt(1.06 / (n - 3 - k)), "
        "p from t on n - 2 - k df, BH FDR over the pathways per outcome"
    )
    return table


def _exclusion_axis(samples, index: pd.Index, exclusion, key_added: str) -> tuple[pd.Series, str]:
    """The exclusion outcome by sample: 1 excluded, 0 inflamed (labels), or numbers as given."""
    obs = samples.obs if isinstance(samples, AnnData) else samples
    if exclusion is None:
        if key_added not in obs:
            raise InputError(
                f"No exclusion axis: run ie.tl.classify(samples) first (it writes obs[{key_added!r}]), or pass "
                "exclusion= an obs column of labels (excluded / inflamed) or numbers."
            )
        values, source = obs[key_added], f"the immune context of ie.tl.classify (obs[{key_added!r}])"
    elif isinstance(exclusion, pd.Series):
        values, source = exclusion, "the given Series"
    elif isinstance(exclusion, str):
        if exclusion not in obs:
            raise InputError(f"exclusion={exclusion!r} is not a column." + closest(exclusion, obs.columns))
        values, source = obs[exclusion], f"column {exclusion!r}"
    else:
        raise InputError(f"exclusion must be a column name or a Series, got {type(exclusion).__name__}.")
    values = values.reindex(index)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype(float), f"{source}, as numbers (higher: more excluded)"
    text = values.astype(str).str.strip().str.lower()
    coded = text.map({"excluded": 1.0, "inflamed": 0.0})
    if coded.notna().sum() == 0:
        seen = ", ".join(sorted(set(text.dropna()))[:6])
        raise InputError(
            f"The exclusion axis ({source}) has no 'excluded' or 'inflamed' label (seen: {seen}); give labels "
            "of that kind or numbers."
        )
    return coded.astype(float), f"{source}: excluded 1, inflamed 0 (other labels left out)"


def _covariates(samples, frame: pd.DataFrame, names: list[str], adjust) -> tuple[np.ndarray | None, list[str]]:
    if adjust is None:
        return None, []
    if isinstance(adjust, str) and adjust == "auto":
        if _malignant_aggregate(samples, names):
            return None, []
        missing = [c for c in STROMAL_CONTENT if c not in frame.columns]
        if missing:
            raise InputError(
                f"Bulk samples are adjusted for stromal content ({', '.join(STROMAL_CONTENT)}), and "
                f"{', '.join(missing)} is not scored: score the immune_escape collection as well, or pass "
                "adjust=None (unadjusted) or adjust=[features]."
            )
        features = list(STROMAL_CONTENT)
    else:
        features = [adjust] if isinstance(adjust, str) else list(adjust)
        for f in features:
            if f not in frame.columns:
                raise InputError(f"adjust: {f!r} is not a feature here." + closest(f, frame.columns))
    return frame[features].to_numpy(float), features


def _malignant_aggregate(samples, names: list[str]) -> bool:
    """True for :func:`aggregate` output whose pathway features are malignant-compartment means."""
    if not isinstance(samples, AnnData) or "immunescape_samples" not in samples.uns:
        return False
    mode = str(samples.uns["immunescape_samples"].get("mode", "scores"))
    compartments = samples.var["compartment"] if "compartment" in samples.var else pd.Series(dtype=str)
    return mode == "scores" and all(str(compartments.get(n, "")) == "malignant" for n in names)


def _review_name(name: str) -> str:
    from .. import signatures
    from .._errors import SignatureError

    try:
        pathway = signatures.get(name).meta.get("pathway") or {}
    except SignatureError:
        return ""
    return str(pathway.get("review", "")) if isinstance(pathway, Mapping) else ""
