from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._anndata import joined_scores, single_cell_evidence
from .._errors import DataWarning, InputError, SignatureError
from .._utils import check_key, closest, package_versions
from ..signatures import get as get_signature
from ._context import (
    ContextInputs,
    ContextModel,
    compute_context_inputs,
    load_context_model,
    predict_context,
    robust_scale,
)

#: obsm keys of aggregate()'s output read by classify
CONTEXT_FEATURES = "immunescape_context_features"
CONTEXT_RANKS = "immunescape_context_ranks"
GENE_MEANS = "immunescape_gene_means"


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
    hallmark: str = ""  # its "three Cs" hallmark of immune evasion (see HALLMARKS) ...
    why: str = ""  # ... and why it belongs there

    @property
    def signatures(self) -> tuple[str, ...]:
        """The library signatures behind the call (composition features such as ``frac_Treg_of_T`` excluded)."""
        return tuple(f for f in self.features if not f.startswith("frac_")) or self.fallback


# The "three Cs" of Galassi, Chan, Vitale & Galluzzi, "The hallmarks of cancer immune evasion", Cancer Cell
# 2024;42:1825-1863 (doi:10.1016/j.ccell.2024.09.010): how a tumour escapes, in their words' sense.
HALLMARKS = {
    "camouflage": "hides cancer cells from immune recognition",
    "coercion": "directly or indirectly interferes with immune effector cells",
    "cytoprotection": "shields malignant cells from immune cytotoxicity",
}

MECHANISMS: dict[str, Rule] = {
    "antigen_presentation_loss": Rule(
        ("apm_mariathasan2018", "bagaev2021_MHCI"),
        "low",
        -1.0,
        "antigen presentation",
        hallmark="camouflage",
        why="without MHC-I and its peptide loading, T cells cannot see the tumour's antigens",
    ),
    "checkpoint_high": Rule(
        ("immune_checkpoints_curated",),
        "high",
        1.0,
        "immune checkpoints",
        hallmark="coercion",
        why="inhibitory ligands and receptors (PD-L1, CTLA-4, ...) switch off effector T cells",
    ),
    "suppressive_myeloid": Rule(
        ("tam_trem2_xue2022", "tam_spp1_xue2022", "bagaev2021_MDSC"),
        "high",
        1.0,
        "suppressive TAM/MDSC programmes",
        hallmark="coercion",
        why="suppressive macrophages and MDSCs restrain effector cells",
    ),
    "t_cell_exhaustion": Rule(
        ("tex_cd8_chu2023", "tex_inhibitory_receptors_curated"),
        "high",
        1.0,
        "T-cell exhaustion",
        hallmark="coercion",
        why="effector T cells driven into dysfunction by chronic stimulation and inhibitory signals",
    ),
    "ifn_sting_silenced": Rule(
        ("ifn_type1_rooney2015", "cgas_sting_core"),
        "low",
        -1.0,
        "type I IFN / cGAS-STING",
        hallmark="camouflage",
        why="without cytosolic-DNA sensing and type I IFN the tumour sends no danger signal to recruit and "
        "prime T cells (our reading: sensing, not IFN response, which would be cytoprotection)",
    ),
    "rloop_low": Rule(
        ("rloop_regulators_core",),
        "low",
        -1.0,
        "R-loop regulators (approximate score)",
        weak=True,
        hallmark="camouflage",
        why="R-loop-derived nucleic acids feed cGAS-STING sensing; the R-loop score (Zhang 2024) tracks an "
        "immunogenic state (our reading, through the sensing it feeds)",
    ),
    "wnt_active": Rule(
        ("wnt_target_mariathasan2018",),
        "high",
        1.0,
        "WNT/beta-catenin targets",
        hallmark="coercion",
        why="tumour WNT/beta-catenin signalling keeps dendritic cells and so T cells out (Spranger 2015): an "
        "indirect interference with effector cells",
    ),
    "tgfb_stromal_exclusion": Rule(
        ("tgfb_pan_f_tbrs_mariathasan2018", "caf_ecm_mycaf_kieffer2020"),
        "high",
        1.0,
        "TGF-beta / CAF programmes",
        hallmark="coercion",
        why="TGF-beta suppresses effector cells and its fibroblasts keep T cells in the stroma (Mariathasan 2018)",
    ),
    "treg_high": Rule(
        ("frac_Treg_of_T",),
        "high",
        1.0,
        "regulatory T cells",
        fallback=("bagaev2021_Treg",),
        hallmark="coercion",
        why="regulatory T cells suppress effector T cells",
    ),
    "immunosuppressive_metabolism": Rule(
        ("kynurenine_rosario2018", "adenosine_core", "glycolysis_rosario2018"),
        "high",
        1.0,
        "IDO/adenosine/glycolysis metabolism",
        hallmark="coercion",
        why="kynurenine, adenosine and lactate/nutrient competition blunt effector cells",
    ),
}


def escape_hallmarks() -> pd.DataFrame:
    """The escape mechanisms :func:`classify` calls, grouped by the "three Cs" hallmarks of immune
    evasion (Galassi et al., Cancer Cell 2024): camouflage, coercion, cytoprotection.

    Returns
    -------
    pandas.DataFrame
        One row per mechanism: ``hallmark``, ``why`` it belongs there, what it reads (``label``,
        ``direction``) and its ``signatures``. Cytoprotection (resistance to being killed) has no
        mechanism yet: the library has no signature of it.

    Examples
    --------
    >>> import immunescape as ie
    >>> ie.tl.escape_hallmarks().loc["antigen_presentation_loss", "hallmark"]
    'camouflage'
    """
    return pd.DataFrame(
        {
            name: {
                "hallmark": rule.hallmark,
                "why": rule.why,
                "label": rule.label,
                "direction": rule.direction,
                "signatures": ", ".join(rule.signatures),
            }
            for name, rule in MECHANISMS.items()
        }
    ).T.rename_axis("mechanism")


BAGAEV_IMMUNE = tuple(
    f"bagaev2021_{n}"
    for n in (
        "MHCI",
        "MHCII",
        "Coactivation_molecules",
        "Effector_cells",
        "T_cell_traffic",
        "NK_cells",
        "T_cells",
        "B_cells",
        "M1_signatures",
        "Th1_signature",
        "Antitumor_cytokines",
        "Checkpoint_inhibition",
        "Treg",
        "T_reg_traffic",
        "Neutrophil_signature",
        "Granulocyte_traffic",
        "MDSC",
        "MDSC_traffic",
        "Macrophages",
        "Macrophage_DC_traffic",
        "Th2_signature",
        "Protumor_cytokines",
    )
)
BAGAEV_FIBROTIC = tuple(
    f"bagaev2021_{n}" for n in ("CAF", "Matrix", "Matrix_remodeling", "Angiogenesis", "Endothelium", "EMT_signature")
)


@dataclass
class Thresholds:
    """Every number the classifier compares against; pass a dict with any of these keys to override.

    The immune context comes from the shipped model (:func:`load_context_model`), fitted on pathology;
    only its indeterminate margin is a threshold here. Mechanism thresholds are on the robust z scale
    of the reference (shipped or cohort): +/-1 (about the 16th/84th percentile of a normal reference),
    a convention, not a value fitted to any data.

    Attributes
    ----------
    context_margin
        A context whose top probability leads the next by less is ``indeterminate``; None: the
        model's own margin (0.1).
    mechanisms
        ``{mechanism: z threshold}``; the sign follows the rule's direction (see ``MECHANISMS``).
    bagaev_clip
        Bagaev 2021 scaling clips robust z at +/- this value before averaging.
    pathway
        An oncogenic pathway (a scored ``tumour_intrinsic`` footprint) is called active at this
        robust z or above.
    """

    context_margin: float | None = None
    mechanisms: dict[str, float] = field(default_factory=lambda: {k: r.threshold for k, r in MECHANISMS.items()})
    bagaev_clip: float = 2.0
    pathway: float = 1.0

    @classmethod
    def from_user(cls, given: Mapping[str, Any] | Thresholds | None) -> Thresholds:
        if given is None:
            return cls()
        if isinstance(given, Thresholds):
            return given
        if not isinstance(given, Mapping):
            raise InputError(f"thresholds must be a dict or a Thresholds, got {type(given).__name__}.")
        base = cls()
        names = [*MECHANISMS, "context_margin", "bagaev_clip", "pathway"]
        for key, value in given.items():
            if key in MECHANISMS:
                base.mechanisms[key] = _number(key, value)
            elif key == "mechanisms":
                for m, v in value.items():
                    if m not in MECHANISMS:
                        raise InputError(f"Unknown mechanism {m!r}." + closest(m, MECHANISMS))
                    base.mechanisms[m] = _number(m, v)
            elif key in ("context_margin", "bagaev_clip", "pathway"):
                setattr(base, key, _number(key, value))
            elif key in ("inflamed", "excluded", "margin"):
                raise InputError(
                    f"Threshold {key!r} is gone: the immune context now comes from a model fitted on pathology "
                    "(ie.tl.load_context_model()); its only threshold is 'context_margin'."
                )
            else:
                raise InputError(
                    f"Unknown threshold {key!r}; use context_margin, bagaev_clip or a mechanism name."
                    + closest(key, names)
                )
        return base


def _number(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)):
        raise InputError(f"Threshold {name!r} must be a number, got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"Threshold {name!r} must be a number, got {value!r}.") from None
    if not np.isfinite(number):
        raise InputError(f"Threshold {name!r} must be finite, got {value!r}.")
    return number


# ------------------------------------------------------------------------------------------ features
def _numeric_features(table: pd.DataFrame) -> pd.DataFrame:
    """A user's feature table as numbers: text and infinite values count as missing, each kind
    announced in one warning (a table read with the wrong decimal mark would otherwise classify every
    sample as indeterminate without a word). A table of numbers passes silently."""
    numbers = table.apply(pd.to_numeric, errors="coerce").astype(float)
    text = numbers.isna() & table.notna()
    if text.to_numpy().any():
        columns = text.columns[text.any()].astype(str).tolist()
        example = table.where(text).stack().iloc[0]
        warnings.warn(
            f"{int(text.to_numpy().sum()):,} value(s) of the feature table are not numbers (e.g. {example!r} in "
            f"{', '.join(columns[:5])}) and count as missing; read the table with the right decimal mark "
            "(pd.read_csv(..., decimal=',')) or clean those columns.",
            DataWarning,
            stacklevel=3,
        )
    infinite = np.isinf(numbers.to_numpy())
    if infinite.any():
        columns = numbers.columns[infinite.any(axis=0)].astype(str).tolist()
        warnings.warn(
            f"{int(infinite.sum()):,} value(s) of the feature table are infinite (in {', '.join(columns[:5])}) and "
            "count as missing.",
            DataWarning,
            stacklevel=3,
        )
        numbers = numbers.mask(np.isinf(numbers))
    return numbers


def sample_features(samples: AnnData | pd.DataFrame, key: str | Sequence[str] = "immunescape") -> pd.DataFrame:
    """The sample x feature table the classifier reads.

    From :func:`aggregate`'s output: signature features (X) and composition (``frac_*`` in obs);
    from a scored bulk AnnData: ``obsm[key]`` (several keys side by side, e.g. the ``immune_escape``
    scores and the ``tumour_intrinsic`` footprints scored with another method); a DataFrame is used
    as it is.
    """
    if isinstance(samples, pd.DataFrame):
        return _numeric_features(samples)
    if not isinstance(samples, AnnData):
        raise InputError(f"classify takes an AnnData or a DataFrame of sample features, got {type(samples).__name__}.")
    if "immunescape_samples" in samples.uns:
        X = samples.X.toarray() if hasattr(samples.X, "toarray") else np.asarray(samples.X)
        frame = pd.DataFrame(X, index=samples.obs_names, columns=samples.var_names)
        extra = samples.obs[[c for c in samples.obs.columns if c.startswith("frac_")]]
        return pd.concat([frame, extra.astype(float)], axis=1)
    keys = [key] if isinstance(key, str) else list(key)
    if keys and all(k in samples.obsm for k in keys):
        return joined_scores(samples, keys)  # a float64 copy
    raise InputError(
        f"No sample features found: run ie.tl.aggregate(cells, sample_key) for single cells, or "
        f"ie.tl.score(bulk) so that obsm[{key!r}] holds the scores of bulk samples."
    )


# ------------------------------------------------------------------------------------------ reference
@dataclass
class ReferenceProfile:
    """Per-feature medians, spreads and sorted values of a reference cohort (JSON-serialisable).

    The spread is 1.4826 MAD floored at half the standard deviation (:func:`robust_scale`), so that a
    feature equal in most samples never gives absurd z-scores.
    """

    median: dict[str, float]
    mad: dict[str, float]
    values: dict[str, list[float]]
    n_samples: int
    description: str = "reference cohort"
    split: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_features(
        cls, features: pd.DataFrame, description: str = "reference cohort", directions: Mapping[str, str] | None = None
    ) -> ReferenceProfile:
        """Summarise ``features``; with ``directions`` ({feature: "high" or "low"}), a cohort that falls into
        two clearly separated groups is judged against the group on the unaffected side (see
        :func:`unaffected_group`)."""
        med, mad, values, split = {}, {}, {}, {}
        for col in features.columns:
            x = pd.to_numeric(features[col], errors="coerce").dropna().to_numpy(dtype=float)
            if x.size == 0:
                continue
            center, scale = float(np.median(x)), robust_scale(x)
            direction = (directions or {}).get(col)
            if direction is not None:
                group = unaffected_group(x, direction)
                if group is not None:
                    center = float(np.median(group))
                    scale = max(robust_scale(group), 0.5 * float(np.std(x, ddof=1)))
                    split[col] = (
                        f"the cohort splits in two; judged against the {group.size} of {x.size} samples on the "
                        f"{'low' if direction == 'high' else 'high'} "
                        "side"
                    )
            med[col], mad[col], values[col] = (
                center,
                (scale if np.isfinite(scale) and scale > 0 else 1.0),
                np.sort(x).tolist(),
            )
        return cls(med, mad, values, len(features), description, split)

    def save(self, path: str | Path) -> None:
        from ..io import atomic_write_text

        atomic_write_text(path, json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        from ..signatures import MAX_FILE_BYTES

        try:
            if Path(path).stat().st_size > MAX_FILE_BYTES:  # profiles are a few MB; refuse before reading a huge file
                raise ValueError(f"{Path(path).stat().st_size / 2**20:,.0f} MiB is larger than any reference profile")
            body = json.loads(Path(path).read_text())
            return cls(**body)
        except (OSError, ValueError, TypeError) as err:
            raise InputError(f"{path} is not a reference profile saved by ReferenceProfile.save ({err}).") from err

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


#: a split is taken when the two groups are this many pooled SDs apart (Ashman's D); under normal, t3 and
#: log-normal data without groups such splits are rare and move the share of calls by under 2 points
SPLIT_D = 5.0
SPLIT_MIN_SAMPLES = 10
SPLIT_MIN_UNAFFECTED = 0.25


def unaffected_group(x: np.ndarray, direction: str) -> np.ndarray | None:
    """The samples on the unaffected side when a cohort falls into two clearly separated groups, else None.

    Judged against its own median, a cohort in which half the samples carry a mechanism cannot single
    them out. When the sorted values split into two groups at least ``SPLIT_D`` pooled SDs apart
    (each of 3 or more samples), the group on the side opposite to the mechanism's direction
    (the low group for a "high" rule) is the reference, provided it holds at least 25% of the samples.
    """
    x = np.sort(np.asarray(x, dtype=float))
    n = x.size
    if n < SPLIT_MIN_SAMPLES:
        return None
    best_d, best_k = 0.0, 0
    for k in range(3, n - 2):
        a, b = x[:k], x[k:]
        pooled = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
        d = (b.mean() - a.mean()) / pooled if pooled > 0 else np.inf
        if d > best_d:
            best_d, best_k = d, k
    if best_d < SPLIT_D:
        return None
    group = x[:best_k] if direction == "high" else x[best_k:]
    return group if group.size >= SPLIT_MIN_UNAFFECTED * n else None


def reference_profile(
    samples: AnnData | pd.DataFrame, key: str = "immunescape", description: str = "reference cohort"
) -> ReferenceProfile:
    """Summarise a cohort as a reference for :func:`classify` (save it with ``.save(path)``).

    Examples
    --------
    >>> import pandas as pd
    >>> profile = reference_profile(pd.DataFrame({"cd8": [0.1, 0.2, 0.3, 0.4]}))
    >>> profile.n_samples, round(profile.median["cd8"], 2)
    (4, 0.25)
    """
    return ReferenceProfile.from_features(sample_features(samples, key), description)


class _Scale:
    """Where a sample's features and gene values are placed: z, percentile, and which genes exist."""

    def __init__(
        self,
        values: pd.DataFrame,
        z: pd.DataFrame,
        pct: pd.DataFrame,
        genes: pd.DataFrame | None,
        gene_pct: pd.DataFrame | None,
        description: str,
        kind: str,
    ) -> None:
        self.values, self.z, self.pct = values, z, pct
        self.genes, self.gene_pct = genes, gene_pct
        self.description, self.kind = description, kind
        self.split: dict[str, str] = {}


def _shipped_scale(inputs: ContextInputs, model: ContextModel) -> _Scale:
    feats = inputs.features[[c for c in inputs.features.columns if c in model.reference]]
    z = pd.DataFrame({c: model.reference[c].z(feats[c]) for c in feats.columns}, index=feats.index)
    pct = pd.DataFrame({c: model.reference[c].percentile(feats[c]) for c in feats.columns}, index=feats.index)
    genes = inputs.gene_ranks[[g for g in inputs.gene_ranks.columns if g in model.gene_reference]]
    gene_pct = pd.DataFrame({g: model.gene_reference[g].percentile(genes[g]) for g in genes.columns}, index=genes.index)
    src = model.provenance.get("data", "")
    return _Scale(
        feats,
        z,
        pct,
        genes,
        gene_pct,
        f"shipped reference v{model.version} ({src.split(';')[0].split(' (')[0]}, "
        f"{model.provenance.get('features', 'within-sample scores')})",
        "shipped",
    )


def _cohort_scale(
    values: pd.DataFrame,
    profile: ReferenceProfile,
    genes: pd.DataFrame | None,
    gene_profile: ReferenceProfile | None,
    counts: pd.DataFrame | None = None,
) -> _Scale:
    z = profile.z(values)
    for col, n in counts.items() if counts is not None else ():
        if col in z.columns:  # a share counted in few cells: its binomial error joins the cohort's spread
            p = float(np.clip(profile.median[col], 0.0, 1.0))
            se = np.sqrt(p * (1 - p) / n.where(n > 0)).to_numpy()
            z[col] = (values[col] - profile.median[col]) / np.sqrt(profile.mad[col] ** 2 + se**2)
    pct = pd.DataFrame({c: [profile.percentile(c, v) for v in values[c]] for c in z.columns}, index=values.index)
    gene_pct = None
    if genes is not None and gene_profile is not None:
        cols = [g for g in genes.columns if g in gene_profile.values]
        gene_pct = pd.DataFrame({g: [gene_profile.percentile(g, v) for v in genes[g]] for g in cols}, index=genes.index)
    scale = _Scale(values, z, pct, genes, gene_pct, profile.description, "cohort")
    scale.split = dict(profile.split)
    return scale


# ------------------------------------------------------------------------------------------ classify
MIN_COHORT = 5  # fewer samples cannot serve as their own reference


def classify(
    samples: AnnData | pd.DataFrame,
    *,
    reference: AnnData | pd.DataFrame | ReferenceProfile | str | Path | None = None,
    thresholds: Mapping[str, Any] | Thresholds | None = None,
    model: ContextModel | str | Path | None = None,
    key: str = "immunescape",
    key_added: str = "immunescape_class",
    layer: str | None = None,
    use_raw: bool | None = None,
    gene_symbols: str | None = None,
    rows_are_samples: bool = False,
    inplace: bool = True,
) -> pd.DataFrame:
    """Call each sample's immune context and escape mechanisms, with the numbers and genes behind every call.

    - **Immune context** (inflamed / excluded / desert, or ``indeterminate``) from the shipped model
      fitted on pathologists' calls (IMvigor210; :func:`load_context_model`, its cross-validation in
      ``model.metrics``): class probabilities from within-sample singscore features over the model's
      gene panel, so a sample's context does not depend on the other samples. ``indeterminate`` when
      the top class leads the next by less than the margin, or when the data hold too few of the
      model's genes (the reason says which). Bulk samples and pseudobulks are read from their
      expression; :func:`aggregate` output carries the features of each sample's pseudobulk.
    - **Escape mechanisms** (multi-label): each rule in ``MECHANISMS`` averages the robust z of its
      features and calls the mechanism beyond its threshold. The scale (``reference``):

      - ``None`` (default): bulk and pseudobulk samples against the shipped reference distributions
        (single-sample; rules whose genes the panel lacks are not assessable, and say so); aggregated
        single cells against their own cohort (no real single-cell reference ships), which assumes
        that fewer than half of the samples carry a mechanism and needs at least 5 samples.
      - ``"shipped"`` or ``"cohort"`` to choose; another cohort (AnnData or DataFrame like
        ``samples``) or a saved :class:`ReferenceProfile` (or its JSON path) to compare against it.

      Spreads are 1.4826 MAD floored at half the SD, so small cohorts never give absurd z.
    - **Bagaev 2021 TME class** (IE, IE/F, F, D), re-derived from the paper's description (29
      signatures scaled by median/MAD against the cohort, clipped at +/-2, immune and fibrotic axes).

    Every call comes with its z, percentile, confidence, the genes that drive it (``<mechanism>_genes``:
    the three signature genes furthest in the rule's direction, with their percentiles) and a reason.

    Parameters
    ----------
    samples
        :func:`aggregate` output, a bulk (or pseudobulk) AnnData of samples x genes, optionally scored
        (``obsm[key]``), or a samples x features DataFrame (mechanisms only, against the cohort).
    reference
        See above.
    thresholds
        Overrides of :class:`Thresholds` fields or mechanism thresholds, e.g. ``{"checkpoint_high": 1.5}``.
    model
        A :class:`ContextModel` or its JSON path; default: the shipped one.
    key
        ``obsm`` key of bulk scores (used against a cohort reference).
    key_added
        With an AnnData and ``inplace``: calls go to ``obs`` and the full table to ``uns[key_added]``.
    layer, use_raw, gene_symbols
        Which expression of a bulk AnnData the model reads, as in :func:`score`.
    rows_are_samples
        An AnnData whose rows look like single cells (a cell embedding, a neighbour graph, or few
        genes detected per row) is refused: aggregate the cells into samples first. True classifies
        each row as a sample anyway (with a warning saying so).
    inplace
        Write into ``samples`` when it is an AnnData.

    Returns
    -------
    pandas.DataFrame
        One row per sample; ``attrs`` hold the thresholds, the reference and the model version.

    Examples
    --------
    >>> import immunescape as ie
    >>> cells = ie.datasets.simulate_tumor(n_samples=6, cells_per_sample=150, seed=0)
    >>> bulk = ie.pp.pseudobulk(cells, "sample")
    >>> calls = ie.tl.classify(bulk)
    >>> alone = ie.tl.classify(bulk[:1].copy())
    >>> bool(alone["immune_context"].iloc[0] == calls["immune_context"].iloc[0])
    True
    """
    th = Thresholds.from_user(thresholds)
    if inplace and isinstance(samples, AnnData):
        check_key(key_added)
    if isinstance(samples, pd.DataFrame):  # once: text and infinite values announced here, not per use
        samples = _numeric_features(samples)
        if not samples.index.is_unique:
            warnings.warn(
                "The feature table's sample names are not unique; each row is classified on its own, but give "
                "them unique names before joining the verdicts with other tables.",
                DataWarning,
                stacklevel=2,
            )
    if not isinstance(model, ContextModel):
        model = load_context_model(model)
    if th.context_margin is not None:
        model = replace(model, margin=th.context_margin)
    kind = _input_kind(samples)
    if kind == "bulk":
        _check_rows_are_samples(samples, rows_are_samples, layer, use_raw)
    inputs = _context_inputs(samples, kind, model, layer, use_raw, gene_symbols)
    index = _sample_index(samples)
    if len(index) == 0:
        raise InputError("No samples to classify.")
    if inputs is not None:
        out = predict_context(inputs, model)
    else:
        out = pd.DataFrame({"immune_context": "indeterminate", "context_confidence": 0.0}, index=index)
        for c in model.classes:
            out[f"p_{c}"] = np.nan
        out["context_reason"] = (
            "no expression to read the context model from: classify a bulk AnnData (samples x genes), "
            "a pseudobulk, or ie.tl.aggregate output"
        )
    scale = _mechanism_scale(samples, kind, reference, inputs, model, key)
    for name, rule in MECHANISMS.items():
        _mechanism(out, name, rule, scale, th.mechanisms[name])
    called = list(MECHANISMS)
    out.insert(1, "mechanisms", out[called].apply(lambda r: ", ".join(m for m in called if r[m] is True), axis=1))
    for at, hallmark in enumerate(HALLMARKS, start=2):  # the called mechanisms by "three Cs" hallmark
        members = [m for m in called if MECHANISMS[m].hallmark == hallmark]
        listed = [", ".join(m for m in members if row[m] is True) for _, row in out[members].iterrows()]
        out.insert(at, hallmark, listed if members else "")
    cohort_z = _cohort_z_for_bagaev(samples, kind, key, inputs)
    _bagaev(out, cohort_z, th)
    out = _pathway_calls(out, scale, th.pathway, _scored_pathways(samples, key, scale))
    th_record = asdict(th) | {"context_margin": model.margin}
    out.attrs["thresholds"] = th_record
    out.attrs["reference"] = scale.description
    out.attrs["context_model"] = f"immunescape immune-context model v{model.version}"
    if inputs is not None:
        out.attrs["context_model_coverage"] = round(inputs.universe_coverage, 4)
    if inplace and isinstance(samples, AnnData):
        for col in ["immune_context", "mechanisms", *HALLMARKS, "bagaev_class", *MECHANISMS, "pathways_active"]:
            samples.obs[f"{key_added}_{col}" if col != "immune_context" else key_added] = (
                out[col].astype(str).to_numpy()
            )
        samples.uns[key_added] = {
            "table": out.astype({c: str for c in out.columns if out[c].dtype == object}),
            "thresholds": json.dumps(th_record),
            "reference": scale.description,
            "context_model": out.attrs["context_model"],
            "versions": package_versions(),
        }
    return out


def stored_calls(samples: AnnData, key_added: str = "immunescape_class") -> pd.DataFrame | None:
    """The calls :func:`classify` stored in ``samples`` (``inplace=True``), as the table it returned, or None.

    The full table comes from ``uns[key_added]`` (its thresholds in ``attrs``), else the calls from ``obs``.
    Both hold the calls as text ("True", "False", "nan": h5ad stores no mixed columns); they are read back
    as True, False and NaN, so a figure drawn from them equals one drawn from the returned table.
    """
    record = samples.uns.get(key_added)
    if isinstance(record, Mapping) and isinstance(record.get("table"), pd.DataFrame):
        table = record["table"].copy()
        try:
            thresholds = json.loads(str(record.get("thresholds", "{}")))
        except ValueError:
            thresholds = None
        if isinstance(thresholds, dict):
            table.attrs["thresholds"] = thresholds
        else:  # a damaged record: the default thresholds are drawn
            table.attrs.pop("thresholds", None)
        for name in ("reference", "context_model"):
            if name in record:
                table.attrs[name] = str(record[name])
    elif key_added in samples.obs:
        table = pd.DataFrame({"immune_context": samples.obs[key_added].astype(str)}, index=samples.obs.index)
        for col in ["bagaev_class", *MECHANISMS]:
            if f"{key_added}_{col}" in samples.obs:
                table[col] = samples.obs[f"{key_added}_{col}"]
    else:
        return None
    for col in [m for m in MECHANISMS if m in table]:
        table[col] = table[col].astype(str).map({"True": True, "False": False}).astype(object)
    return table


def _input_kind(samples) -> str:
    if isinstance(samples, pd.DataFrame):
        return "table"
    if not isinstance(samples, AnnData):
        raise InputError(f"classify takes an AnnData or a DataFrame of sample features, got {type(samples).__name__}.")
    return "cells" if "immunescape_samples" in samples.uns else "bulk"


def _check_rows_are_samples(samples: AnnData, rows_are_samples: bool, layer, use_raw) -> None:
    evidence = single_cell_evidence(samples, layer=layer, use_raw=use_raw)
    if evidence is None:
        return
    if not rows_are_samples:
        raise InputError(
            f"These rows look like single cells ({evidence}), and classify calls samples: aggregate them first "
            "with ie.tl.aggregate(adata, sample_key, celltype_key=...) (CLI: --sample-key), or pass "
            "rows_are_samples=True (CLI: --rows-are-samples) to classify each row as a sample."
        )
    warnings.warn(
        f"Classifying each of the {samples.n_obs} rows as a sample although they look like single cells ({evidence}).",
        DataWarning,
        stacklevel=4,
    )


def _sample_index(samples) -> pd.Index:
    return samples.index if isinstance(samples, pd.DataFrame) else samples.obs_names


def _context_inputs(samples, kind, model, layer, use_raw, gene_symbols) -> ContextInputs | None:
    if kind == "bulk":
        try:
            return compute_context_inputs(samples, model=model, layer=layer, use_raw=use_raw, gene_symbols=gene_symbols)
        except InputError as err:
            if "None of the immune-context model's genes" not in str(err):
                raise
            warnings.warn(
                f"{err} Contexts are indeterminate; mechanisms are judged against this cohort.",
                DataWarning,
                stacklevel=4,
            )
            return None
    if kind == "cells":
        stored = samples.uns["immunescape_samples"].get("context_model")
        if CONTEXT_FEATURES not in samples.obsm or not stored:
            return None
        if str(stored.get("version")) != model.version:
            raise InputError(
                f"These samples carry features of context model v{stored.get('version')}, not v{model.version}; "
                "rerun ie.tl.aggregate."
            )
        coverage = pd.Series(json.loads(stored["feature_coverage"]), dtype=float)
        ranks = samples.obsm.get(CONTEXT_RANKS)
        return ContextInputs(
            samples.obsm[CONTEXT_FEATURES].copy(),
            ranks.copy() if ranks is not None else pd.DataFrame(index=samples.obs_names),
            float(stored["universe_coverage"]),
            coverage,
        )
    return None


def _mechanism_scale(samples, kind, reference, inputs, model, key) -> _Scale:
    if isinstance(reference, str) and reference in ("shipped", "cohort"):
        choice = reference
    elif reference is None:
        choice = "shipped" if kind == "bulk" and inputs is not None else "cohort"
    else:
        choice = "given"
    if choice == "shipped":
        if inputs is None:
            raise InputError(
                "reference='shipped' needs expression: classify a bulk AnnData, a pseudobulk, "
                "or ie.tl.aggregate output."
            )
        return _shipped_scale(inputs, model)
    values, genes = _cohort_values(samples, kind, key, inputs)
    if choice == "cohort":
        n = len(values)
        profile = ReferenceProfile.from_features(values, "this cohort", _directions())
        gene_profile = ReferenceProfile.from_features(genes, "this cohort") if genes is not None else None
        if n < MIN_COHORT:
            profile = ReferenceProfile({}, {}, {}, n, f"this cohort ({n} samples: too few to judge against itself)")
        elif n < 10:
            warnings.warn(
                f"Mechanisms are judged against this cohort of {n} samples; with fewer than 10 a reference cohort "
                "(reference=...) or the shipped reference (bulk or pseudobulk samples) is more reliable.",
                DataWarning,
                stacklevel=3,
            )
        return _cohort_scale(values, profile, genes, gene_profile, _share_denominators(samples, kind))
    if isinstance(reference, ReferenceProfile):
        profile, gene_profile = reference, None
    elif isinstance(reference, (str, Path)):
        profile, gene_profile = ReferenceProfile.load(reference), None
    elif isinstance(reference, (AnnData, pd.DataFrame)):
        ref_kind = _input_kind(reference)
        evidence = single_cell_evidence(reference) if ref_kind == "bulk" else None
        if evidence:  # 300 cells are no cohort of 300 samples
            raise InputError(
                f"The reference cohort looks like single cells ({evidence}); aggregate it first with "
                "ie.tl.aggregate(reference_cells, sample_key) and pass that (CLI: save it as samples.h5ad "
                "with immunescape classify ... -o samples.h5ad)."
            )
        ref_inputs = _context_inputs(reference, ref_kind, model, None, None, None)
        ref_values, ref_genes = _cohort_values(reference, ref_kind, key, ref_inputs)
        profile = ReferenceProfile.from_features(ref_values, "given reference cohort", _directions())
        gene_profile = (
            ReferenceProfile.from_features(ref_genes, "given reference cohort") if ref_genes is not None else None
        )
    else:
        raise InputError(
            f"reference must be None, 'shipped', 'cohort', a cohort (AnnData/DataFrame), a ReferenceProfile or "
            f"its JSON path; got {type(reference).__name__}."
        )
    if profile.n_samples < MIN_COHORT:  # one sample's MAD is 0: every z came out near 0 and nothing was called
        raise InputError(
            f"The reference summarises {profile.n_samples} sample(s); judging against it needs at least {MIN_COHORT} "
            "(10 or more is reliable). Use a larger reference cohort or reference='shipped'."
        )
    if profile.n_samples < 10:
        warnings.warn(
            f"Mechanisms are judged against a reference of {profile.n_samples} samples; with fewer than 10 the "
            "shipped reference (bulk or pseudobulk samples) is more reliable.",
            DataWarning,
            stacklevel=3,
        )
    return _cohort_scale(values, profile, genes, gene_profile, _share_denominators(samples, kind))


def _share_denominators(samples, kind) -> pd.DataFrame | None:
    """Cells counted behind each composition share of aggregate() output (Tregs among T cells)."""
    if kind != "cells" or not {"frac_T", "n_cells", "frac_Treg_of_T"} <= set(samples.obs.columns):
        return None
    return pd.DataFrame({"frac_Treg_of_T": samples.obs["frac_T"].astype(float) * samples.obs["n_cells"].astype(float)})


def _directions() -> dict[str, str]:
    return {f: rule.direction for rule in MECHANISMS.values() for f in (*rule.features, *rule.fallback)}


def _cohort_values(samples, kind, key, inputs) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Features and per-gene values to judge against a cohort: the user's scores where they exist."""
    if kind == "cells":
        genes = samples.obsm.get(GENE_MEANS)
        return sample_features(samples, key), (genes.copy() if genes is not None else None)
    if kind == "bulk":
        if all(k in samples.obsm for k in ([key] if isinstance(key, str) else key)):
            return sample_features(samples, key), (inputs.gene_ranks if inputs is not None else None)
        if inputs is None:
            raise InputError(
                f"No scores in obsm[{key!r}] and none of the context model's genes: score the samples first "
                "(ie.tl.score) to judge their mechanisms against the cohort."
            )
        return inputs.features, inputs.gene_ranks
    return sample_features(samples, key), None


def _cohort_z_for_bagaev(samples, kind, key, inputs) -> pd.DataFrame:
    values, _ = _cohort_values(samples, kind, key, inputs)
    if len(values) < MIN_COHORT:
        return pd.DataFrame(index=values.index)
    return ReferenceProfile.from_features(values).z(values)


def _rule_genes(present: list[str], scale: _Scale, compartment_of: Mapping[str, str]) -> list[str]:
    """Columns of the scale's gene table that belong to the rule's signatures."""
    if scale.gene_pct is None:
        return []
    wanted: list[str] = []
    for name in present:
        try:
            sig = get_signature(name)
        except SignatureError:  # a user feature such as frac_Treg_of_T has no genes
            continue
        comp = compartment_of.get(name)
        for g in sig.genes_up if sig.genes_up else sig.genes:
            col = f"{comp}:{g}" if comp else g
            if col in scale.gene_pct.columns and col not in wanted:
                wanted.append(col)
    return wanted


def _mechanism(out: pd.DataFrame, name: str, rule: Rule, scale: _Scale, threshold: float) -> None:
    def usable(names):
        return [n for n in names if n in scale.z.columns and scale.z[n].notna().any()]

    present = usable(rule.features) or usable(rule.fallback)
    index = out.index
    high = rule.direction == "high"
    compartment_of = (
        _compartments(present)
        if scale.genes is not None and scale.kind == "cohort" and _has_compartment_genes(scale)
        else {}
    )
    gene_cols = _rule_genes(present, scale, compartment_of)
    score = scale.z[present].mean(axis=1, skipna=True) if present else pd.Series(np.nan, index=index)
    pct = scale.pct[present].mean(axis=1, skipna=True) if present else pd.Series(np.nan, index=index)
    calls, reasons, drivers = [], [], []
    word = "high" if high else "low"
    for sample in index:
        s = score.get(sample, np.nan)
        if not present or not np.isfinite(s):
            calls.append(np.nan)
            drivers.append("")
            reasons.append(
                f"{rule.label}: not assessable against {scale.description} "
                f"(none of {', '.join((*rule.features, *rule.fallback))} available there)"
            )
            continue
        hit = bool(s >= threshold) if high else bool(s <= threshold)
        calls.append(hit)
        genes_text = _driving_genes(scale.gene_pct.loc[sample, gene_cols] if gene_cols else None, high)
        drivers.append(genes_text)
        cmp = ">=" if high else "<="
        verdict = "called" if hit else "not called"
        weak = " (weak: approximate signature)" if rule.weak and hit else ""
        lead = f"{rule.label} {word}: {genes_text}; " if genes_text else f"{rule.label}: "
        notes: dict[str, list[str]] = {}
        for f in present:
            if f in scale.split:
                notes.setdefault(scale.split[f], []).append(f)
        split = "".join(f" ({note}: {', '.join(fs)})" for note, fs in notes.items())
        reasons.append(
            f"{lead}{', '.join(present)} at {_ordinal(pct[sample])}, robust z {s:+.2f} "
            f"({cmp} {threshold:+.2f} to call): {verdict}{weak}{split}"
        )
    out[name] = pd.Series(calls, index=index, dtype=object)
    out[f"{name}_z"] = score
    out[f"{name}_percentile"] = pct
    out[f"{name}_confidence"] = np.clip((score - threshold).abs(), 0, 1)
    out[f"{name}_genes"] = drivers
    out[f"{name}_reason"] = reasons


def _is_pathway(name: str) -> bool:
    try:
        return get_signature(name).meta.get("category") == "pathway"
    except SignatureError:
        return False


def _scored_pathways(samples, key, scale: _Scale) -> list[str]:
    """The tumour-intrinsic footprints among the features the mechanisms are judged on."""
    names = [c for c in scale.values.columns if _is_pathway(c)]
    if not names and scale.kind != "cohort" and isinstance(samples, AnnData):
        try:
            scored = [c for c in sample_features(samples, key).columns if _is_pathway(c)]
        except InputError:
            scored = []
        if scored:
            warnings.warn(
                f"{len(scored)} pathway footprints are scored, but {scale.description} has no distribution for "
                "them: pass reference='cohort' (or a reference cohort) to call oncogenic pathways.",
                DataWarning,
                stacklevel=4,
            )
    return names


def _pathway_calls(out: pd.DataFrame, scale: _Scale, threshold: float, names: list[str]) -> pd.DataFrame:
    """Oncogenic-pathway-active calls: a scored footprint at or above ``threshold`` robust z against
    the reference, with the pathway's genes furthest up (``pathway_<name>``, ``_z``, ``_genes``,
    ``_reason``, ...), and ``pathways_active`` listing them per sample; returned as ``out`` with
    these columns at its end."""
    part = pd.DataFrame(index=out.index)
    for name in names:
        title = str(get_signature(name).meta.get("title") or name)
        _mechanism(part, f"pathway_{name}", Rule((name,), "high", threshold, title), scale, threshold)
    part["pathways_active"] = [
        ", ".join(n for n in names if part.at[sample, f"pathway_{n}"] is True) for sample in out.index
    ]
    return pd.concat([out, part], axis=1)


def _has_compartment_genes(scale: _Scale) -> bool:
    return scale.genes is not None and any(":" in str(c) for c in scale.genes.columns)


def _compartments(names: list[str]) -> dict[str, str]:
    from ._aggregate import _signature_compartments

    if not names:
        return {}
    table = _signature_compartments(names)
    return table["compartment"].to_dict()


def _driving_genes(pct: pd.Series | None, high: bool, n: int = 3) -> str:
    """'B2M, HLA-A, TAP1 at the 3rd-8th percentile': the genes furthest in the rule's direction."""
    if pct is None:
        return ""
    pct = pct.dropna()
    if pct.empty:
        return ""
    top = pct.sort_values(ascending=not high).iloc[:n]
    names = [str(g).split(":", 1)[-1] for g in top.index]
    lo, hi = sorted((top.min(), top.max()))
    span = _ordinal(lo) if round(lo) == round(hi) else f"{_ordinal(lo)[: -len(' percentile')]}-{_ordinal(hi)[4:]}"
    return f"{', '.join(names)} at {span}"


def _ordinal(p: float) -> str:
    if not np.isfinite(p):
        return "an unknown percentile"
    n = int(round(p))
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"the {n}{suffix} percentile"


def _bagaev(out, z, th: Thresholds):
    imm = [c for c in BAGAEV_IMMUNE if c in z.columns]
    fib = [c for c in BAGAEV_FIBROTIC if c in z.columns]
    if len(imm) < 5 or len(fib) < 3:
        out["bagaev_class"] = "not assessed"
        out["bagaev_immune"] = np.nan
        out["bagaev_fibrotic"] = np.nan
        out["bagaev_reason"] = (
            "Bagaev classes are relative to the cohort: they need at least 5 samples"
            if z.shape[1] == 0
            else "score the 'bagaev2021' collection to get the Bagaev 2021 TME class"
        )
        return
    clipped = z.clip(-th.bagaev_clip, th.bagaev_clip)
    immune = clipped[imm].mean(axis=1)
    fibrotic = clipped[fib].mean(axis=1)
    cls = np.where(immune > 0, np.where(fibrotic > 0, "IE/F", "IE"), np.where(fibrotic > 0, "F", "D"))
    out["bagaev_class"] = cls
    out["bagaev_immune"] = immune
    out["bagaev_fibrotic"] = fibrotic
    out["bagaev_reason"] = [
        f"immune axis {i:+.2f}, fibrotic axis {f:+.2f} (median/MAD-scaled, clipped at +/-{th.bagaev_clip:g})"
        for i, f in zip(immune, fibrotic)
    ]
