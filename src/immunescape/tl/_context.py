"""The shipped immune-context model: its features, its reference distributions and its predictions.

The model is fitted on pathology (IMvigor210, pathologists' inflamed / excluded / desert calls; see
``scripts/fit_context_model.py``) and shipped as a versioned JSON file. Everything it reads is computed
inside one sample: singscore ranks of the signature genes among the model's gene panel, so a sample's
call does not depend on the other samples it is classified with, nor on the scale of its values
(TPM, counts, log or not: ranks are the same).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._anndata import get_expression
from .._errors import InputError
from .._utils import quiet_info

MODEL_PATH = Path(__file__).resolve().parent.parent / "data" / "immune_context_model.json"
#: probabilities of the quantiles shipped for each reference distribution (a summary, not the samples)
QUANTILE_PROBS = tuple(np.round(np.linspace(0.0, 1.0, 41), 4).tolist())


@dataclass(frozen=True)
class Distribution:
    """A reference distribution summarised by its median, robust spread and 41 quantiles."""

    median: float
    scale: float
    quantiles: tuple[float, ...]

    @classmethod
    def of(cls, values: np.ndarray, min_scale: float = 1e-6) -> Distribution:
        x = np.asarray(values, dtype=float)
        x = x[np.isfinite(x)]
        med = float(np.median(x))
        scale = robust_scale(x)
        return cls(med, max(scale, min_scale), tuple(float(q) for q in np.quantile(x, QUANTILE_PROBS)))

    def percentile(self, values: np.ndarray | pd.Series) -> np.ndarray:
        """Percentile (0-100) of each value in this distribution, interpolated between its quantiles."""
        q = np.asarray(self.quantiles)
        p = np.asarray(QUANTILE_PROBS)
        uniq, first = np.unique(q, return_index=True)
        last = len(q) - 1 - np.unique(q[::-1], return_index=True)[1]
        mid = (p[first] + p[last]) / 2  # a quantile repeated over a range of probabilities sits in its middle
        x = np.asarray(values, dtype=float)
        out = np.interp(x, uniq, mid, left=0.0, right=1.0) * 100.0 if uniq.size > 1 else np.full(x.shape, 50.0)
        return np.where(np.isfinite(x), out, np.nan)

    def z(self, values: np.ndarray | pd.Series) -> np.ndarray:
        return (np.asarray(values, dtype=float) - self.median) / self.scale


def robust_scale(x: np.ndarray) -> float:
    """1.4826 MAD, floored at half the standard deviation so that it never collapses.

    Where most values are equal (a small cohort, a feature that is zero in most samples) the MAD is
    near 0 and every other value would get an absurd z; half the SD bounds |z| by about 2 sqrt(n).
    """
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan")
    mad = 1.4826 * float(np.median(np.abs(x - np.median(x))))
    return max(mad, 0.5 * float(np.std(x, ddof=1)))


@dataclass(frozen=True)
class ContextModel:
    """A multinomial logistic model of the immune context on within-sample signature scores.

    ``probabilities`` standardises the features with the training ``center``/``scale`` and applies
    softmax(``coef`` @ x + ``intercept``). ``reference`` and ``gene_reference`` summarise the training
    cohort's distributions of every feature and gene rank the classifier compares samples against.
    """

    version: str
    classes: tuple[str, ...]
    features: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[tuple[float, ...], ...]
    intercept: tuple[float, ...]
    universe: tuple[str, ...]
    margin: float = 0.1
    min_universe_coverage: float = 0.8
    min_feature_coverage: float = 0.5
    reference: dict[str, Distribution] = field(default_factory=dict)
    gene_reference: dict[str, Distribution] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def probabilities(self, features: pd.DataFrame) -> pd.DataFrame:
        """Class probabilities for each row of ``features`` (NaN rows where a feature is missing)."""
        missing = [f for f in self.features if f not in features.columns]
        if missing:
            raise InputError(
                f"The context model needs the features {missing}; compute them with ie.tl.context_features."
            )
        x = (features[list(self.features)].to_numpy(dtype=float) - np.asarray(self.center)) / np.asarray(self.scale)
        logits = x @ np.asarray(self.coef).T + np.asarray(self.intercept)  # NaN rows stay NaN
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        return pd.DataFrame(p, index=features.index, columns=list(self.classes))

    def to_json(self) -> str:
        body = asdict(self)
        return json.dumps(body, indent=1, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> ContextModel:
        body = json.loads(text)
        for key in ("reference", "gene_reference"):
            body[key] = {
                k: Distribution(v["median"], v["scale"], tuple(v["quantiles"])) for k, v in body.get(key, {}).items()
            }
        for key in ("classes", "features", "center", "scale", "intercept", "universe"):
            body[key] = tuple(body[key])
        body["coef"] = tuple(tuple(row) for row in body["coef"])
        return cls(**body)


@lru_cache(maxsize=4)
def _load(path: str) -> ContextModel:
    try:
        return ContextModel.from_json(Path(path).read_text())
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"Cannot read the immune-context model {path}: {err}") from err


def load_context_model(path: str | Path | None = None) -> ContextModel:
    """The immune-context model shipped with immunescape (or one saved at ``path``).

    Examples
    --------
    >>> import immunescape as ie
    >>> model = ie.tl.load_context_model()
    >>> model.classes
    ('desert', 'excluded', 'inflamed')
    """
    return _load(str(path or MODEL_PATH))


@dataclass
class ContextInputs:
    """What the model reads of each sample: its features, the normalised ranks of the reference genes,
    and how much of the model's gene panel the sample holds."""

    features: pd.DataFrame
    gene_ranks: pd.DataFrame
    universe_coverage: float
    feature_coverage: pd.Series  # per feature: fraction of its genes inside the panel that the data hold


def context_features(
    data: AnnData | pd.DataFrame,
    *,
    model: ContextModel | None = None,
    layer: str | None = None,
    use_raw: bool | None = None,
    gene_symbols: str | None = None,
) -> pd.DataFrame:
    """The within-sample features the immune-context model reads (one row per sample).

    Each signature of the model's reference is scored with singscore over the model's gene panel
    (the genes it was fitted on) in each sample alone, so the values compare with the shipped
    reference whatever the other samples are.

    Parameters
    ----------
    data
        Bulk samples x genes (AnnData, or a DataFrame with genes as columns): TPM, counts, or their
        logarithm; a pseudobulk of single cells (:func:`immunescape.pp.pseudobulk`).
    model
        Default: the shipped model (:func:`load_context_model`).
    layer, use_raw, gene_symbols
        Which matrix and gene names to read, as in :func:`score`.

    Examples
    --------
    >>> import immunescape as ie
    >>> cells = ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=100, seed=0)
    >>> feats = ie.tl.context_features(ie.pp.pseudobulk(cells, "sample"))
    >>> feats.shape[0]
    3
    """
    return compute_context_inputs(data, model=model, layer=layer, use_raw=use_raw, gene_symbols=gene_symbols).features


def compute_context_inputs(
    data: AnnData | pd.DataFrame,
    *,
    model: ContextModel | None = None,
    layer: str | None = None,
    use_raw: bool | None = None,
    gene_symbols: str | None = None,
    signatures: list[str] | None = None,
) -> ContextInputs:
    """Model features, reference gene ranks and panel coverage of every sample (see :func:`context_features`).

    ``signatures`` (default: the model's features and reference features) are the ones scored.
    """
    from ..genes import resolve
    from ..signatures import Signature
    from ._score import score

    model = model or load_context_model()
    if isinstance(data, pd.DataFrame):
        matrix, names, index = (
            data.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float),
            pd.Index(data.columns.astype(str)),
            data.index,
        )
    else:
        matrix, names, _ = get_expression(data, layer=layer, use_raw=use_raw, gene_symbols=gene_symbols)
        index = data.obs_names
    found = resolve([Signature("model_panel", tuple(model.universe))], names, min_coverage=0.0, check=False)
    positions = found.positions[0]
    if positions.size == 0:
        raise InputError(
            "None of the immune-context model's genes are in the data: are var_names gene symbols or "
            "Ensembl ids? Pass gene_symbols= to name a var column of symbols."
        )
    matched = matched_symbols(positions, names, found.coverage.iloc[0]["matched_as"])
    sub = matrix[:, positions]
    sub = sub.toarray() if hasattr(sub, "toarray") else np.asarray(sub, dtype=float)
    sub = np.asarray(sub, dtype=np.float64)
    if not np.isfinite(sub).all():
        raise InputError(
            "The data hold NaN or infinite values in the model's genes; the context model needs finite expression."
        )
    # ranks are what the model reads; shifting each row to a minimum of 0 keeps them and keeps the data non-negative
    sub = sub - sub.min(axis=1, keepdims=True)
    panel_data = AnnData(
        sub.astype(np.float32),
        obs=pd.DataFrame(index=pd.Index(index.astype(str))),
        var=pd.DataFrame(index=pd.Index(matched)),
    )
    from ..signatures import get as get_signature

    wanted = list(dict.fromkeys(signatures or [*model.features, *model.reference]))
    sigs = [get_signature(name) for name in wanted]
    cover = resolve(sigs, panel_data.var_names, min_coverage=0.0, check=False).coverage
    in_panel = {s.name: sum(g in set(model.universe) for g in s.genes) for s in sigs}
    feature_coverage = pd.Series({n: cover.loc[n, "n_found"] / max(in_panel[n], 1) for n in wanted})
    scorable = [n for n in wanted if cover.loc[n, "n_found"] >= 1]
    features = pd.DataFrame(np.nan, index=panel_data.obs_names, columns=wanted)
    if scorable:
        with quiet_info():
            table = score(panel_data, scorable, method="singscore", min_coverage=0.0, inplace=False, progress=False)
        features[scorable] = table.to_numpy()
    features.index = index
    ranks = _normalised_ranks(sub)
    gene_ranks = pd.DataFrame(ranks, index=index, columns=matched)
    gene_ranks = (
        gene_ranks[[g for g in model.gene_reference if g in gene_ranks.columns]] if model.gene_reference else gene_ranks
    )
    return ContextInputs(features, gene_ranks, len(matched) / len(model.universe), feature_coverage)


def matched_symbols(positions: np.ndarray, names: pd.Index, matched_as: str) -> list[str]:
    """The model's symbol for each matched data column (data names differ where matched via alias or Ensembl id)."""
    renamed = dict(pair.split("->", 1)[::-1] for pair in matched_as.split(";")) if matched_as else {}
    return [renamed.get(names[p], names[p]) for p in positions]


def _normalised_ranks(matrix: np.ndarray) -> np.ndarray:
    """Within-row ranks (ties averaged) divided by the number of genes: 1 = most expressed."""
    from scipy.stats import rankdata

    return rankdata(matrix, axis=1, method="average") / matrix.shape[1]


def predict_context(inputs: ContextInputs, model: ContextModel) -> pd.DataFrame:
    """Immune context with its probabilities, margin and a reason, one row per sample."""
    probs = model.probabilities(inputs.features)
    short = [f for f in model.features if inputs.feature_coverage.get(f, 0.0) < model.min_feature_coverage]
    low_panel = inputs.universe_coverage < model.min_universe_coverage
    values = probs.to_numpy()
    order = np.argsort(-values, axis=1)
    rows = np.arange(len(values))
    top, second = values[rows, order[:, 0]], values[rows, order[:, 1]]
    classes = np.asarray(model.classes)
    out = pd.DataFrame(index=probs.index)
    contexts, reasons = [], []
    z = {f: model.reference[f].z(inputs.features[f]) if f in model.reference else None for f in model.features}
    for i in range(len(probs.index)):
        shown = ", ".join(f"P({c}) {values[i, k]:.2f}" for k, c in enumerate(classes))
        drivers = "; ".join(f"{f} {z[f][i]:+.2f} z" for f in model.features if z[f] is not None)
        if low_panel or short:
            why = (
                f"only {inputs.universe_coverage:.0%} of the model's {len(model.universe)} genes are in the data "
                f"(needs {model.min_universe_coverage:.0%})"
                if low_panel
                else f"features {', '.join(short)} have under {model.min_feature_coverage:.0%} of their genes"
            )
            contexts.append("indeterminate")
            reasons.append(f"{why}: indeterminate (closest: {classes[order[i, 0]]}; {shown})")
        elif not np.isfinite(top[i]):
            contexts.append("indeterminate")
            reasons.append("model features could not be scored: indeterminate")
        elif top[i] - second[i] < model.margin:
            contexts.append("indeterminate")
            reasons.append(
                f"{shown}: {classes[order[i, 0]]} leads {classes[order[i, 1]]} by {top[i] - second[i]:.2f} "
                f"(< {model.margin:.2f}): indeterminate ({drivers} vs the reference)"
            )
        else:
            contexts.append(str(classes[order[i, 0]]))
            reasons.append(f"{shown} ({drivers} vs the reference)")
    out["immune_context"] = contexts
    out["context_confidence"] = np.clip(top - second, 0, 1)
    for c in classes:
        out[f"p_{c}"] = probs[c].to_numpy()
    out["context_reason"] = reasons
    return out
