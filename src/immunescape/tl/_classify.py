from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._errors import InputError
from .._utils import closest

MAD_SCALE = 1.4826  # makes the MAD a consistent estimate of the standard deviation for normal data


@dataclass(frozen=True)
class Rule:
    """An escape-mechanism call: the mean robust z of ``features`` beyond ``threshold`` in ``direction``.

    When none of ``features`` is available (e.g. no cell-type labels), ``fallback`` is used instead.
    """

    features: tuple[str, ...]
    direction: str  # "high" or "low"
    threshold: float
    label: str
    weak: bool = False  # an approximate signature: the call is flagged as weak evidence
    fallback: tuple[str, ...] = ()


MECHANISMS: dict[str, Rule] = {
    "antigen_presentation_loss": Rule(("apm_mariathasan2018", "bagaev2021_MHCI"), "low", -1.0, "antigen presentation"),
    "checkpoint_high": Rule(("immune_checkpoints_curated",), "high", 1.0, "immune checkpoints"),
    "suppressive_myeloid": Rule(("tam_trem2_xue2022", "tam_spp1_xue2022", "bagaev2021_MDSC"), "high", 1.0, "suppressive TAM/MDSC programmes"),
    "t_cell_exhaustion": Rule(("tex_cd8_chu2023", "tex_inhibitory_receptors_curated"), "high", 1.0, "T-cell exhaustion"),
    "ifn_sting_silenced": Rule(("ifn_type1_rooney2015", "cgas_sting_core"), "low", -1.0, "type I IFN / cGAS-STING"),
    "rloop_low": Rule(("rloop_regulators_core",), "low", -1.0, "R-loop regulators (approximate score)", weak=True),
    "wnt_active": Rule(("wnt_target_mariathasan2018",), "high", 1.0, "WNT/beta-catenin targets"),
    "tgfb_stromal_exclusion": Rule(("tgfb_pan_f_tbrs_mariathasan2018", "caf_ecm_mycaf_kieffer2020"), "high", 1.0, "TGF-beta / CAF programmes"),
    "treg_high": Rule(("frac_Treg_of_T",), "high", 1.0, "regulatory T cells", fallback=("bagaev2021_Treg",)),
    "immunosuppressive_metabolism": Rule(("kynurenine_rosario2018", "adenosine_core", "glycolysis_rosario2018"), "high", 1.0,
                                         "IDO/adenosine/glycolysis metabolism"),
}  # fmt: skip

INFILTRATION = ("cd8_t_effector_mariathasan2018", "cytolytic_activity_rooney2015", "tis_gep_ayers2017", "ifng_ayers2017", "frac_T")
EXCLUSION = ("tgfb_pan_f_tbrs_mariathasan2018", "caf_ecm_mycaf_kieffer2020", "bagaev2021_CAF", "frac_fibroblast")
BAGAEV_IMMUNE = tuple(f"bagaev2021_{n}" for n in (
    "MHCI", "MHCII", "Coactivation_molecules", "Effector_cells", "T_cell_traffic", "NK_cells", "T_cells", "B_cells",
    "M1_signatures", "Th1_signature", "Antitumor_cytokines", "Checkpoint_inhibition", "Treg", "T_reg_traffic",
    "Neutrophil_signature", "Granulocyte_traffic", "MDSC", "MDSC_traffic", "Macrophages", "Macrophage_DC_traffic",
    "Th2_signature", "Protumor_cytokines"))  # fmt: skip
BAGAEV_FIBROTIC = tuple(f"bagaev2021_{n}" for n in ("CAF", "Matrix", "Matrix_remodeling", "Angiogenesis", "Endothelium", "EMT_signature"))


@dataclass
class Thresholds:
    """Every number the classifier compares against; pass a dict with any of these keys to override.

    The defaults were read off simulated cohorts (seeds 1-5 of :func:`~immunescape.datasets.simulate_tumor`,
    not the seeds the tests use): excluded and desert samples have infiltration z below ~0.55, inflamed
    ones above ~0.65; exclusion z is below ~0.6 outside excluded samples and above ~4.8 inside them.

    Attributes
    ----------
    inflamed
        Infiltration robust z at or above which a sample is ``inflamed``.
    excluded
        Exclusion (stroma/TGF-beta) robust z at or above which a non-inflamed sample is ``excluded``
        (below it, ``desert``).
    margin
        A context decided by less than this distance from a threshold is ``indeterminate``.
    mechanisms
        ``{mechanism: z threshold}``; the sign follows the rule's direction (see ``MECHANISMS``).
    bagaev_clip
        Bagaev 2021 scaling clips robust z at +/- this value before averaging.
    """

    inflamed: float = 0.6
    excluded: float = 1.0
    margin: float = 0.05
    mechanisms: dict[str, float] = field(default_factory=lambda: {k: r.threshold for k, r in MECHANISMS.items()})
    bagaev_clip: float = 2.0

    @classmethod
    def from_user(cls, given: Mapping[str, Any] | Thresholds | None) -> Thresholds:
        if given is None:
            return cls()
        if isinstance(given, Thresholds):
            return given
        base = cls()
        for key, value in given.items():
            if key in MECHANISMS:
                base.mechanisms[key] = float(value)
            elif key == "mechanisms":
                for m, v in value.items():
                    if m not in MECHANISMS:
                        raise InputError(f"Unknown mechanism {m!r}." + closest(m, MECHANISMS))
                    base.mechanisms[m] = float(v)
            elif key in ("inflamed", "excluded", "margin", "bagaev_clip"):
                setattr(base, key, float(value))
            else:
                raise InputError(f"Unknown threshold {key!r}; use inflamed, excluded, margin, bagaev_clip or a mechanism name."
                                 + closest(key, [*MECHANISMS, "inflamed", "excluded", "margin", "bagaev_clip"]))  # fmt: skip
        return base


# ------------------------------------------------------------------------------------------ features
def sample_features(samples: AnnData | pd.DataFrame, key: str = "immunescape") -> pd.DataFrame:
    """The sample x feature table the classifier reads.

    From :func:`aggregate`'s output: signature features (X) and composition (``frac_*`` in obs);
    from a scored bulk AnnData: ``obsm[key]``; a DataFrame is used as it is.
    """
    if isinstance(samples, pd.DataFrame):
        return samples.apply(pd.to_numeric, errors="coerce")
    if not isinstance(samples, AnnData):
        raise InputError(f"classify takes an AnnData or a DataFrame of sample features, got {type(samples).__name__}.")
    if "immunescape_samples" in samples.uns:
        X = samples.X.toarray() if hasattr(samples.X, "toarray") else np.asarray(samples.X)
        frame = pd.DataFrame(X, index=samples.obs_names, columns=samples.var_names)
        extra = samples.obs[[c for c in samples.obs.columns if c.startswith("frac_")]]
        return pd.concat([frame, extra.astype(float)], axis=1)
    if key in samples.obsm:
        table = samples.obsm[key]
        return table.copy() if isinstance(table, pd.DataFrame) else pd.DataFrame(table, index=samples.obs_names)
    raise InputError(f"No sample features found: run ie.tl.aggregate(cells, sample_key) for single cells, or "
                     f"ie.tl.score(bulk) so that obsm[{key!r}] holds the scores of bulk samples.")  # fmt: skip


# ------------------------------------------------------------------------------------------ reference
@dataclass
class ReferenceProfile:
    """Per-feature medians, MADs and sorted values of a reference cohort (JSON-serialisable)."""

    median: dict[str, float]
    mad: dict[str, float]
    values: dict[str, list[float]]
    n_samples: int
    description: str = "reference cohort"

    @classmethod
    def from_features(cls, features: pd.DataFrame, description: str = "reference cohort") -> ReferenceProfile:
        med, mad, values = {}, {}, {}
        for col in features.columns:
            x = features[col].dropna().to_numpy(dtype=float)
            if x.size == 0:
                continue
            m = float(np.median(x))
            d = float(np.median(np.abs(x - m))) * MAD_SCALE
            if d == 0:  # fall back to the standard deviation, then to 1 (a constant feature)
                d = float(np.std(x)) or 1.0
            med[col], mad[col], values[col] = m, d, np.sort(x).tolist()
        return cls(med, mad, values, len(features), description)

    def save(self, path: str | Path) -> None:
        from ..io import atomic_write_text

        atomic_write_text(path, json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        return cls(**json.loads(Path(path).read_text()))

    def z(self, features: pd.DataFrame) -> pd.DataFrame:
        cols = [c for c in features.columns if c in self.median]
        med = pd.Series(self.median)[cols]
        mad = pd.Series(self.mad)[cols]
        return (features[cols] - med) / mad

    def percentile(self, column: str, value: float) -> float:
        ref = np.asarray(self.values.get(column, []))
        if ref.size == 0 or not np.isfinite(value):
            return float("nan")
        below = np.searchsorted(ref, value, side="left")
        equal = np.searchsorted(ref, value, side="right") - below
        return 100.0 * (below + 0.5 * equal) / ref.size


def reference_profile(samples: AnnData | pd.DataFrame, key: str = "immunescape", description: str = "reference cohort") -> ReferenceProfile:
    """Summarise a cohort as a reference for :func:`classify` (save it with ``.save(path)``)."""
    return ReferenceProfile.from_features(sample_features(samples, key), description)


# ------------------------------------------------------------------------------------------ classify
def classify(
    samples: AnnData | pd.DataFrame,
    *,
    reference: AnnData | pd.DataFrame | ReferenceProfile | str | Path | None = None,
    thresholds: Mapping[str, Any] | Thresholds | None = None,
    key: str = "immunescape",
    key_added: str = "immunescape_class",
    inplace: bool = True,
) -> pd.DataFrame:
    """Call each sample's immune context and escape mechanisms, with the numbers behind every call.

    Features are placed on a robust z scale, (value - median) / (1.4826 MAD), against the cohort
    itself or against ``reference`` (a second cohort, or a saved :class:`ReferenceProfile`), and
    reported with their percentile in that reference.

    - **Immune context** (operational definitions after Mariathasan 2018 and Bagaev 2021):
      infiltration = mean z of CD8 T-effector, cytolytic activity, T-cell-inflamed GEP, IFN-gamma (and
      the T-cell fraction for single cells); exclusion = mean z of pan-F-TBRS, ECM-myCAF and CAF (and
      the fibroblast fraction). ``inflamed`` if infiltration >= ``thresholds.inflamed``; otherwise
      ``excluded`` if exclusion >= ``thresholds.excluded``, else ``desert``; ``indeterminate`` when
      the deciding value is within ``thresholds.margin`` of its threshold. This is a transcriptomic
      stand-in for the spatial definition (T cells in the parenchyma vs. the stroma).
    - **Escape mechanisms** (multi-label): each rule in ``MECHANISMS`` averages the z of its
      features and calls the mechanism beyond its threshold (e.g. antigen presentation z <= -1).
    - **Bagaev 2021 TME class** (IE, IE/F, F, D), re-derived from the paper's description rather
      than its code (non-commercial licence): the 29 signatures scaled by median/MAD and clipped
      at +/-2, an immune axis and a fibrotic axis averaged from them, and the four quadrants.

    Every call comes with its value(s), z, percentile, threshold, a confidence in [0, 1]
    (distance from the threshold in z units, capped at 1) and a one-line reason.

    Calls against the cohort itself assume that a mechanism is present in a minority of its samples:
    when most samples carry it, the median sits among them and robust z cannot single them out.
    Pass a ``reference`` cohort (or a saved profile) to judge small or homogeneous cohorts.

    Parameters
    ----------
    samples
        :func:`aggregate` output, a scored bulk AnnData (``obsm[key]``), or a samples x features DataFrame.
    reference
        Cohort to compare against (AnnData/DataFrame like ``samples``, a ReferenceProfile or its
        JSON path); default: the samples themselves.
    thresholds
        Overrides of :class:`Thresholds` fields or mechanism thresholds, e.g. ``{"inflamed": 0.8,
        "checkpoint_high": 1.5}``. The thresholds used are saved with the result.
    key
        ``obsm`` key of bulk scores.
    key_added
        With an AnnData and ``inplace``: calls go to ``obs`` (context, mechanisms, Bagaev class) and
        the full table and thresholds to ``uns[key_added]``.
    inplace
        Write into ``samples`` when it is an AnnData.

    Returns
    -------
    pandas.DataFrame
        One row per sample; ``attrs["thresholds"]`` holds the thresholds used.

    Examples
    --------
    >>> import immunescape as ie
    >>> cells = ie.datasets.simulate_tumor(n_samples=6, cells_per_sample=150, seed=0)
    >>> ie.tl.score(cells, "immune_escape")
    >>> calls = ie.tl.classify(ie.tl.aggregate(cells, "sample", celltype_key="cell_type"))
    >>> bool(calls["immune_context"].isin(["inflamed", "excluded", "desert", "indeterminate"]).all())
    True
    """
    th = Thresholds.from_user(thresholds)
    features = sample_features(samples, key)
    if features.empty:
        raise InputError("No samples to classify.")
    profile = _reference(reference, features, key)
    z = profile.z(features)
    out = pd.DataFrame(index=features.index)
    _context(out, features, z, profile, th)
    for name, rule in MECHANISMS.items():
        _mechanism(out, name, rule, features, z, profile, th.mechanisms[name])
    called = [m for m in MECHANISMS]
    out.insert(1, "mechanisms", out[called].apply(lambda r: ", ".join(m for m in called if r[m] is True), axis=1))
    _bagaev(out, z, th)
    out.attrs["thresholds"] = asdict(th)
    out.attrs["reference"] = profile.description
    if inplace and isinstance(samples, AnnData):
        for col in ["immune_context", "mechanisms", "bagaev_class", *MECHANISMS]:
            samples.obs[f"{key_added}_{col}" if col != "immune_context" else key_added] = out[col].astype(str).to_numpy()
        samples.uns[key_added] = {"table": out.astype({c: str for c in out.columns if out[c].dtype == object}),
                                  "thresholds": json.dumps(asdict(th)), "reference": profile.description}  # fmt: skip
    return out


def _reference(reference, features, key) -> ReferenceProfile:
    if reference is None:
        return ReferenceProfile.from_features(features, "this cohort")
    if isinstance(reference, ReferenceProfile):
        return reference
    if isinstance(reference, (str, Path)):
        return ReferenceProfile.load(reference)
    return ReferenceProfile.from_features(sample_features(reference, key), "given reference cohort")


def _combined(z: pd.DataFrame, names) -> tuple[pd.Series, list[str]]:
    present = [n for n in names if n in z.columns and z[n].notna().any()]
    if not present:
        return pd.Series(np.nan, index=z.index), []
    return z[present].mean(axis=1, skipna=True), present


def _percentile_of_combined(profile: ReferenceProfile, present: list[str], values: pd.Series) -> pd.Series:
    # the reference's own combined scores, recomputed from its sorted values per feature is not possible
    # (rows are not kept), so the percentile is the mean of the features' percentiles
    pct = pd.DataFrame({n: [profile.percentile(n, v) for v in values[n]] for n in present}, index=values.index)
    return pct.mean(axis=1)


def _ordinal(p: float) -> str:
    if not np.isfinite(p):
        return "an unknown percentile"
    n = int(round(p))
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"the {n}{suffix} percentile"


def _mechanism(out, name, rule: Rule, features, z, profile, threshold):
    score, present = _combined(z, rule.features)
    if not present and rule.fallback:
        score, present = _combined(z, rule.fallback)
    pct = _percentile_of_combined(profile, present, features) if present else pd.Series(np.nan, index=z.index)
    high = rule.direction == "high"
    calls, reasons = [], []
    for sample in z.index:
        s = score[sample]
        if not np.isfinite(s):
            calls.append(np.nan)
            reasons.append(f"{rule.label}: not assessable (none of {', '.join(rule.features)} scored)")
            continue
        hit = bool(s >= threshold) if high else bool(s <= threshold)
        calls.append(hit)
        cmp = ">=" if high else "<="
        verdict = "called" if hit else "not called"
        weak = " (weak: approximate signature)" if rule.weak and hit else ""
        reasons.append(f"{rule.label} ({', '.join(present)}) at {_ordinal(pct[sample])}, robust z {s:+.2f} "
                       f"({cmp} {threshold:+.2f} to call): {verdict}{weak}")  # fmt: skip
    out[name] = pd.Series(calls, index=z.index, dtype=object)
    out[f"{name}_z"] = score
    out[f"{name}_percentile"] = pct
    out[f"{name}_confidence"] = np.clip((score - threshold).abs(), 0, 1)
    out[f"{name}_reason"] = reasons


def _context(out, features, z, profile, th: Thresholds):
    infil, infil_present = _combined(z, INFILTRATION)
    excl, excl_present = _combined(z, EXCLUSION)
    contexts, confidence, reasons = [], [], []
    for sample in z.index:
        i, e = infil[sample], excl[sample]
        if not np.isfinite(i):
            contexts.append("indeterminate")
            confidence.append(0.0)
            reasons.append("no T-cell infiltration features scored")
            continue
        e = e if np.isfinite(e) else -np.inf
        if i >= th.inflamed:
            ctx, dist = "inflamed", i - th.inflamed
            why = f"T-cell infiltration z {i:+.2f} >= {th.inflamed:+.2f}"
        elif e >= th.excluded:
            ctx, dist = "excluded", min(th.inflamed - i, e - th.excluded)
            why = f"T-cell infiltration z {i:+.2f} < {th.inflamed:+.2f} with stromal/TGF-beta exclusion z {e:+.2f} >= {th.excluded:+.2f}"
        else:
            ctx, dist = "desert", min(th.inflamed - i, th.excluded - e if np.isfinite(e) else np.inf)
            why = f"T-cell infiltration z {i:+.2f} < {th.inflamed:+.2f} and exclusion z {e:+.2f} < {th.excluded:+.2f}"
        if dist < th.margin:
            why += f"; within {th.margin} of a threshold, so indeterminate (closest call: {ctx})"
            ctx = "indeterminate"
        contexts.append(ctx)
        confidence.append(float(np.clip(dist, 0, 1)))
        reasons.append(why)
    out["immune_context"] = contexts
    out["context_confidence"] = confidence
    out["infiltration_z"] = infil
    out["exclusion_z"] = excl
    out["context_features"] = f"infiltration: {', '.join(infil_present) or '-'}; exclusion: {', '.join(excl_present) or '-'}"
    out["context_reason"] = reasons


def _bagaev(out, z, th: Thresholds):
    imm = [c for c in BAGAEV_IMMUNE if c in z.columns]
    fib = [c for c in BAGAEV_FIBROTIC if c in z.columns]
    if len(imm) < 5 or len(fib) < 3:
        out["bagaev_class"] = "not assessed"
        out["bagaev_immune"] = np.nan
        out["bagaev_fibrotic"] = np.nan
        out["bagaev_reason"] = "score the 'bagaev2021' collection to get the Bagaev 2021 TME class"
        return
    clipped = z.clip(-th.bagaev_clip, th.bagaev_clip)
    immune = clipped[imm].mean(axis=1)
    fibrotic = clipped[fib].mean(axis=1)
    cls = np.where(immune > 0, np.where(fibrotic > 0, "IE/F", "IE"), np.where(fibrotic > 0, "F", "D"))
    out["bagaev_class"] = cls
    out["bagaev_immune"] = immune
    out["bagaev_fibrotic"] = fibrotic
    out["bagaev_reason"] = [f"immune axis {i:+.2f}, fibrotic axis {f:+.2f} (median/MAD-scaled, clipped at +/-{th.bagaev_clip:g})"
                            for i, f in zip(immune, fibrotic)]  # fmt: skip
