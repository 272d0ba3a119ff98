"""Fitting and judging the immune-context model: multinomial logistic regression and repeated CV.

Used by ``scripts/fit_context_model.py`` (which writes the shipped model) and by
``benchmarks/validate_icb.py`` (which reports its cross-validation); plain numpy and scipy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

CLASSES = ("desert", "excluded", "inflamed")


def fit_multinomial(x: np.ndarray, y: np.ndarray, n_classes: int, C: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """L2-penalised multinomial logistic regression (as scikit-learn's, penalty 1/(2C) ||W||^2, intercept free).

    ``x`` is samples x features (already standardised), ``y`` integer classes; returns (coef, intercept).
    """
    n, p = x.shape
    onehot = np.eye(n_classes)[y]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: n_classes * p].reshape(n_classes, p)
        b = theta[n_classes * p :]
        logits = x @ w.T + b
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        value = -(onehot * logp).sum() + 0.5 / C * (w**2).sum()
        resid = np.exp(logp) - onehot
        grad_w = resid.T @ x + w / C
        return float(value), np.concatenate([grad_w.ravel(), resid.sum(axis=0)])

    result = minimize(
        loss, np.zeros(n_classes * (p + 1)), jac=True, method="L-BFGS-B", options={"maxiter": 2000, "gtol": 1e-9}
    )
    return result.x[: n_classes * p].reshape(n_classes, p), result.x[n_classes * p :]


def _standardise(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    center = train.mean(axis=0)
    scale = train.std(axis=0)
    scale[scale == 0] = 1.0
    return center, scale


def predict_proba(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, n_classes: int, C: float) -> np.ndarray:
    """Fit on the training rows (standardised with their own mean and SD) and return test probabilities."""
    center, scale = _standardise(train_x)
    coef, intercept = fit_multinomial((train_x - center) / scale, train_y, n_classes, C)
    logits = ((test_x - center) / scale) @ coef.T + intercept
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def stratified_folds(y: np.ndarray, n_splits: int, rng: np.random.Generator) -> np.ndarray:
    """Fold number of each sample; every class is spread evenly over the folds."""
    fold = np.empty(len(y), dtype=np.int64)
    offset = 0
    for cls in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == cls))
        fold[members] = (np.arange(members.size) + offset) % n_splits
        offset += members.size
    return fold


def _inner_choice(
    x: pd.DataFrame, y: np.ndarray, candidates: Mapping[str, Sequence[str]], C: float, rng, n_classes: int
) -> str:
    """The candidate feature set with the best accuracy in a 5-fold x 3 CV of the given rows."""
    best, best_acc = None, -1.0
    folds = [stratified_folds(y, 5, rng) for _ in range(3)]
    for name, cols in candidates.items():
        values = x[list(cols)].to_numpy(dtype=float)
        correct = 0
        for fold in folds:
            for k in range(5):
                test = fold == k
                p = predict_proba(values[~test], y[~test], values[test], n_classes, C)
                correct += int((p.argmax(axis=1) == y[test]).sum())
        if correct > best_acc:
            best, best_acc = name, correct
    assert best is not None
    return best


def cross_validate(
    features: pd.DataFrame,
    labels: pd.Series,
    candidates: Mapping[str, Sequence[str]],
    *,
    C: float = 1.0,
    n_splits: int = 5,
    n_repeats: int = 20,
    margin: float = 0.1,
    seed: int = 0,
    n_boot: int = 2000,
) -> dict[str, Any]:
    """Repeated stratified CV of the whole procedure: the feature set is chosen inside each training fold.

    Returns accuracy, balanced accuracy, inflamed<->desert swaps (each with a bootstrap 95% interval
    over samples), the confusion matrix (rows: pathology, columns: model; mean counts per repeat), the
    share called indeterminate at ``margin`` and the accuracy of the rest, and how often each
    candidate set was chosen.
    """
    classes = list(CLASSES)
    y = labels.map({c: i for i, c in enumerate(classes)}).to_numpy()
    if np.isnan(y.astype(float)).any():
        raise ValueError(f"labels must be among {classes}")
    y = y.astype(np.int64)
    rng = np.random.default_rng(seed)
    n = len(y)
    pred = np.empty((n_repeats, n), dtype=np.int64)
    gap = np.empty((n_repeats, n))
    chosen: dict[str, int] = dict.fromkeys(candidates, 0)
    for r in range(n_repeats):
        fold = stratified_folds(y, n_splits, rng)
        for k in range(n_splits):
            test = fold == k
            train_x = features.iloc[~test]
            name = (
                _inner_choice(train_x, y[~test], candidates, C, rng, len(classes))
                if len(candidates) > 1
                else next(iter(candidates))
            )
            chosen[name] += 1
            cols = list(candidates[name])
            p = predict_proba(
                train_x[cols].to_numpy(float), y[~test], features.iloc[test][cols].to_numpy(float), len(classes), C
            )
            top = np.sort(p, axis=1)
            pred[r, test] = p.argmax(axis=1)
            gap[r, test] = top[:, -1] - top[:, -2]
    out = summarise_predictions(pred, y, classes, n_boot=n_boot, seed=seed)
    called = gap >= margin
    out["indeterminate_share"] = float(1 - called.mean())
    out["accuracy_called"] = float((pred == y)[called].mean())
    out["margin"] = margin
    out["chosen_sets"] = {k: v / (n_repeats * n_splits) for k, v in chosen.items()}
    out["design"] = (
        f"{n_repeats} x stratified {n_splits}-fold CV, n = {n}; feature set chosen by an inner 3 x 5-fold CV"
    )
    return out


def summarise_predictions(
    pred: np.ndarray, y: np.ndarray, classes: Sequence[str], *, n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Metrics of predictions (repeats x samples, or one row) against ``y``, with bootstrap 95% intervals."""
    pred = np.atleast_2d(pred)
    k_inf, k_des = classes.index("inflamed"), classes.index("desert")
    correct = (pred == y).mean(axis=0)  # per sample, averaged over repeats
    swap = (((pred == k_inf) & (y == k_des)) | ((pred == k_des) & (y == k_inf))).mean(axis=0)

    def balanced(idx: np.ndarray) -> float:
        return float(np.mean([correct[idx][y[idx] == c].mean() for c in range(len(classes)) if (y[idx] == c).any()]))

    rng = np.random.default_rng(seed + 1)
    boots = rng.integers(0, len(y), size=(n_boot, len(y)))
    acc_b = correct[boots].mean(axis=1)
    swap_b = swap[boots].mean(axis=1)
    bal_b = np.array([balanced(b) for b in boots])
    confusion = np.zeros((len(classes), len(classes)))
    for row in pred:
        np.add.at(confusion, (y, row), 1)
    confusion /= len(pred)

    def interval(x: np.ndarray) -> list[float]:
        return [float(np.quantile(x, 0.025)), float(np.quantile(x, 0.975))]

    return {
        "n": int(len(y)),
        "accuracy": float(correct.mean()),
        "accuracy_ci": interval(acc_b),
        "balanced_accuracy": balanced(np.arange(len(y))),
        "balanced_accuracy_ci": interval(bal_b),
        "inflamed_desert_swaps": float(swap.mean()),
        "inflamed_desert_swaps_ci": interval(swap_b),
        "confusion": {
            "rows (pathology)": list(classes),
            "columns (called)": list(classes),
            "mean counts": confusion.round(2).tolist(),
        },
    }


def tertile_baseline(score: pd.Series, labels: pd.Series, *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The simplest rule: one score cut at the cohort's tertiles (low desert, middle excluded, high inflamed)."""
    classes = list(CLASSES)
    y = labels.map({c: i for i, c in enumerate(classes)}).to_numpy().astype(np.int64)
    q1, q2 = np.quantile(score.to_numpy(float), [1 / 3, 2 / 3])
    x = score.to_numpy(float)
    pred = np.where(
        x < q1, classes.index("desert"), np.where(x < q2, classes.index("excluded"), classes.index("inflamed"))
    )
    return summarise_predictions(pred, y, classes, n_boot=n_boot, seed=seed)
