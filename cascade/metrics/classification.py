"""Classification metrics on integer age classes ordered by age (class 0 = youngest): exact and
off-by-k accuracy, class MAE, confusion matrix, precision / recall / F1, balanced accuracy and
Cohen's kappa.

Why `n_classes` everywhere: a class absent from a fold still counts in a confusion matrix, a
macro average or a weighted kappa, so it must be passed, not inferred.
"""
from __future__ import annotations

import math

import numpy as np

from cascade.metrics.checks import _classes

__all__ = ["accuracy", "off_by_k_accuracy", "one_off_accuracy", "class_mae", "confusion_matrix",
           "precision_recall_f1", "balanced_accuracy", "cohen_kappa"]


def accuracy(y_true, y_pred) -> float:
    """Exact accuracy: share of images whose predicted class equals the true class."""
    t, p, _ = _classes(y_true, y_pred, None)
    return float(np.mean(t == p))


def off_by_k_accuracy(y_true, y_pred, k: int = 1) -> float:
    """Share of images with ``|pred class − true class| ≤ k`` (class indices in age order)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    t, p, _ = _classes(y_true, y_pred, None)
    return float(np.mean(np.abs(t - p) <= k))


def one_off_accuracy(y_true, y_pred) -> float:
    """1-off accuracy: prediction within one *adjacent age group* of the truth.

    The Adience convention (Levi & Hassner, 2015): with the 8 groups 0-2, 4-6, 8-13, 15-20,
    25-32, 38-43, 48-53, 60+, predicting 25-32 for a true 15-20 counts as correct."""
    return off_by_k_accuracy(y_true, y_pred, 1)


def class_mae(y_true, y_pred) -> float:
    """MAE measured in class indices, ``mean |pred class − true class|`` (an ordinal error for
    group labels, where ages are unknown)."""
    t, p, _ = _classes(y_true, y_pred, None)
    return float(np.mean(np.abs(t - p)))


def confusion_matrix(y_true, y_pred, n_classes: int | None = None,
                     normalize: bool = False) -> np.ndarray:
    """Confusion matrix ``C[i, j]`` = images of true class i predicted as class j.

    Shape ``(n_classes, n_classes)`` (rows: truth, columns: prediction), as
    ``sklearn.metrics.confusion_matrix(labels=range(n_classes))``.  ``normalize=True`` divides
    each row by its total (rows sum to 1, diagonal = per-class recall); a class with no true
    images gets a row of NaN (scikit-learn would write zeros).
    """
    t, p, k = _classes(y_true, y_pred, n_classes)
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    if not normalize:
        return cm
    rows = cm.sum(axis=1, keepdims=True).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, cm / rows, np.nan)


def precision_recall_f1(y_true, y_pred, n_classes: int | None = None,
                        zero_division: float = 0.0) -> dict:
    """Per-class precision, recall and F1 with macro and support-weighted averages.

    Matches ``sklearn.metrics.precision_recall_fscore_support(labels=range(n_classes),
    zero_division=...)``: a ratio with a zero denominator (class never predicted / never true)
    is set to ``zero_division`` (0.0, 1.0 or NaN); F1 is ``2·TP / (2·TP + FP + FN)``.  Macro =
    unweighted mean over all ``n_classes`` classes (NaN entries skipped); weighted = mean
    weighted by true-class support.  Returns ``{"precision", "recall", "f1", "support"}``
    (arrays of length n_classes) plus ``"macro"`` and ``"weighted"`` dicts of the three.
    """
    t, p, k = _classes(y_true, y_pred, n_classes)
    cm = confusion_matrix(t, p, k).astype(float)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    support = cm.sum(axis=1)

    def ratio(num, den):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1), zero_division)

    per = {"precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn),
           "f1": ratio(2 * tp, 2 * tp + fp + fn)}
    out: dict = {**per, "support": support.astype(int)}
    out["macro"] = {m: float(np.nanmean(v)) if np.any(~np.isnan(v)) else math.nan
                    for m, v in per.items()}
    weighted = {}
    for m, v in per.items():
        ok = ~np.isnan(v)
        w = support[ok]
        weighted[m] = float(np.sum(v[ok] * w) / w.sum()) if w.sum() > 0 else math.nan
    out["weighted"] = weighted
    return out


def balanced_accuracy(y_true, y_pred, n_classes: int | None = None) -> float:
    """Balanced accuracy: mean per-class recall over the classes present in ``y_true``
    (as ``sklearn.metrics.balanced_accuracy_score``; classes with no true images are skipped,
    since their recall is undefined)."""
    cm = confusion_matrix(y_true, y_pred, n_classes).astype(float)
    rows = cm.sum(axis=1)
    present = rows > 0
    return float(np.mean(np.diag(cm)[present] / rows[present]))


def cohen_kappa(y_true, y_pred, n_classes: int | None = None,
                weights: str | None = None) -> float:
    """Cohen's kappa: agreement beyond chance, plain or weighted.

    ``weights=None`` (plain), ``"linear"`` (|i − j|) or ``"quadratic"`` ((i − j)²; the usual
    choice for ordinal age groups, penalising far-off groups more).  Weights use the class
    *indices* 0..n_classes−1, so pass ``n_classes`` when a class may be absent — otherwise
    scikit-learn, which indexes only the labels it sees, would shrink the distances.  Same as
    ``sklearn.metrics.cohen_kappa_score(labels=range(n_classes))``.  Undefined (NaN) when the
    chance disagreement is zero, e.g. both raters always use the same single class.
    """
    cm = confusion_matrix(y_true, y_pred, n_classes).astype(float)
    k = cm.shape[0]
    i, j = np.indices((k, k))
    if weights is None:
        w = (i != j).astype(float)
    elif weights == "linear":
        w = np.abs(i - j).astype(float)
    elif weights == "quadratic":
        w = ((i - j) ** 2).astype(float)
    else:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    expected = np.outer(cm.sum(axis=1), cm.sum(axis=0)) / cm.sum()
    den = float(np.sum(w * expected))
    if den == 0:
        return math.nan
    return 1.0 - float(np.sum(w * cm)) / den
