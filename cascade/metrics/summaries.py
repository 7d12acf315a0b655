"""One dictionary of every number a results table reports, for regression and for
classification predictions.

Why: every table (run, regression, ensemble, comparison) reads its row from here, so the same
predictions always give the same numbers under the same names.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cascade.metrics.checks import _classes, _labels_1d, _pair
from cascade.metrics.classification import accuracy, balanced_accuracy, class_mae, cohen_kappa, confusion_matrix, one_off_accuracy, precision_recall_f1
from cascade.metrics.regression import bootstrap_mae_ci, cumulative_score, mae_pooled, mean_std, median_ae_images, per_fold_mae, per_fold_table, r2_score, t_interval

__all__ = ["regression_summary", "classification_summary"]


def regression_summary(y_true, y_pred, folds=None, subjects=None, seed: int = 0,
                       confidence: float = 0.95, n_resamples: int = 2000) -> dict:
    """The FG-NET table columns in one dict.

    Keys: ``n_images``, ``n_folds``, ``n_subjects``; ``mae_pooled`` (over images),
    ``mae_fold_mean`` / ``mae_fold_std`` (over per-fold MAEs), ``median_ae_images``;
    ``fold_mae_median``, ``fold_mae_q1``, ``fold_mae_q3`` (thesis Table 4's MedianAE / Lower /
    Upper Quartile, over per-fold MAEs); ``t_ci_low`` / ``t_ci_high`` (t-interval over per-fold
    MAEs, i.e. around ``mae_fold_mean``); ``boot_ci_low`` / ``boot_ci_high`` (subject bootstrap
    around ``mae_pooled``); ``cs5`` (CS@5, fraction); ``r2``.  ``folds=None`` treats all images
    as one fold (per-fold spread and t-CI then NaN); ``subjects=None`` bootstraps images.
    """
    t, p = _pair(y_true, y_pred)
    f = np.zeros(t.size, dtype=int) if folds is None else _labels_1d(folds, "folds", t.size)
    table = per_fold_mae(t, p, f)
    fold_maes = table["mae"].to_numpy()
    q = np.quantile(fold_maes, [0.25, 0.5, 0.75])
    m, s = mean_std(fold_maes)
    t_lo, t_hi = t_interval(fold_maes, confidence)
    b_lo, b_hi = bootstrap_mae_ci(t, p, subjects, confidence=confidence,
                                  n_resamples=n_resamples, seed=seed)
    n_sub = t.size if subjects is None else int(pd.Series(subjects).nunique())
    return {"n_images": int(t.size), "n_folds": int(len(table)), "n_subjects": n_sub,
            "mae_pooled": mae_pooled(t, p), "mae_fold_mean": m, "mae_fold_std": s,
            "median_ae_images": median_ae_images(t, p),
            "fold_mae_median": float(q[1]), "fold_mae_q1": float(q[0]),
            "fold_mae_q3": float(q[2]),
            "t_ci_low": t_lo, "t_ci_high": t_hi, "boot_ci_low": b_lo, "boot_ci_high": b_hi,
            "cs5": cumulative_score(t, p, 5), "r2": r2_score(t, p)}


def classification_summary(y_true, y_pred, folds=None, n_classes: int | None = None) -> dict:
    """The Adience table columns in one dict.

    Keys: ``n_images``, ``n_folds``; ``accuracy`` (pooled over images), ``accuracy_fold_mean``,
    ``accuracy_fold_std``; ``one_off``, ``one_off_fold_mean``, ``one_off_fold_std`` (the
    Adience "mean ± std over the 5 folds" convention, sample std); ``balanced_accuracy``;
    ``kappa``, ``kappa_quadratic``; ``class_mae``; ``macro_f1``; ``confusion_matrix``
    (counts, n_classes × n_classes).  ``folds=None`` → one fold (stds NaN).
    """
    t, p, k = _classes(y_true, y_pred, n_classes)
    f = np.zeros(t.size, dtype=int) if folds is None else _labels_1d(folds, "folds", t.size)
    acc = per_fold_table(t, p, f, accuracy)["value"].to_numpy()
    one = per_fold_table(t, p, f, one_off_accuracy)["value"].to_numpy()
    acc_m, acc_s = mean_std(acc)
    one_m, one_s = mean_std(one)
    return {"n_images": int(t.size), "n_folds": int(acc.size),
            "accuracy": accuracy(t, p), "accuracy_fold_mean": acc_m, "accuracy_fold_std": acc_s,
            "one_off": one_off_accuracy(t, p), "one_off_fold_mean": one_m,
            "one_off_fold_std": one_s,
            "balanced_accuracy": balanced_accuracy(t, p, k),
            "kappa": cohen_kappa(t, p, k), "kappa_quadratic": cohen_kappa(t, p, k, "quadratic"),
            "class_mae": class_mae(t, p),
            "macro_f1": precision_recall_f1(t, p, k)["macro"]["f1"],
            "confusion_matrix": confusion_matrix(t, p, k)}
