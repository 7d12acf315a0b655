"""Age-regression metrics in years: MAE pooled over images or over folds, their spread and
intervals, cumulative scores and R².

Why the two MAEs side by side: FG-NET papers report the MAE pooled over all test images *and*
statistics of the per-fold MAEs of leave-one-person-out (thesis Table 4); each function's name
says which one it is.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from cascade.metrics.checks import CS_TOLERANCE, _float_1d, _labels_1d, _pair

__all__ = ["absolute_errors", "mae_pooled", "median_ae_images", "per_fold_table", "per_fold_mae",
           "mae_fold_mean", "fold_mae_quartiles", "mean_std", "fold_mean_std", "t_interval",
           "bootstrap_mae_ci", "cumulative_score", "cumulative_scores", "tolerance_accuracy",
           "r2_score"]


def absolute_errors(y_true, y_pred) -> np.ndarray:
    """Per-image absolute errors ``|y_pred − y_true|`` in years (validated inputs)."""
    t, p = _pair(y_true, y_pred)
    return np.abs(p - t)


def mae_pooled(y_true, y_pred) -> float:
    """MAE pooled over all test images: ``mean_i |ŷ_i − y_i|``.

    The usual headline MAE (MORPH, Adience-as-regression, and FG-NET papers that pool the LOPO
    predictions).  Each *image* weighs the same, so subjects with many images count more than in
    :func:`mae_fold_mean`.  Equals ``sklearn.metrics.mean_absolute_error``.
    """
    return float(np.mean(absolute_errors(y_true, y_pred)))


def median_ae_images(y_true, y_pred) -> float:
    """Median absolute error over *images* (``sklearn.metrics.median_absolute_error``).

    Not the thesis's "MedianAE" column, which is the median of the per-fold MAEs — see
    :func:`fold_mae_quartiles`.
    """
    return float(np.median(absolute_errors(y_true, y_pred)))


def per_fold_table(y_true, y_pred, fold, metric: Callable, name: str = "value") -> pd.DataFrame:
    """Apply ``metric(y_true_f, y_pred_f)`` within each fold.

    Returns a DataFrame indexed by fold label (sorted) with columns ``[name, "n"]`` (``n`` =
    images in the fold).  Works for regression metrics (ages) and classification metrics (class
    indices) alike; the arrays are passed through to ``metric`` unchanged.
    """
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError("y_true and y_pred must be 1-D")
    if t.size == 0:
        raise ValueError("y_true is empty: cannot compute per-fold metrics on no images")
    if t.size != p.size:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    f = _labels_1d(fold, "fold", t.size)
    codes, uniques = pd.factorize(f, sort=True)
    rows = []
    for c, label in enumerate(uniques):
        m = codes == c
        rows.append((label, float(metric(t[m], p[m])), int(m.sum())))
    df = pd.DataFrame(rows, columns=["fold", name, "n"]).set_index("fold")
    return df


def per_fold_mae(y_true, y_pred, fold) -> pd.DataFrame:
    """Per-fold MAE table: index = fold label, columns ``mae`` and ``n`` (images in the fold).

    For FG-NET leave-one-person-out there is one row per subject (82 rows)."""
    return per_fold_table(y_true, y_pred, fold, mae_pooled, name="mae")


def mae_fold_mean(y_true, y_pred, fold) -> float:
    """MAE as the unweighted mean of the per-fold MAEs (each *fold* weighs the same).

    For FG-NET LOPO this is the mean over the 82 per-subject MAEs; it differs from
    :func:`mae_pooled` whenever folds differ in size.  With one fold it equals the pooled MAE.
    """
    return float(per_fold_mae(y_true, y_pred, fold)["mae"].mean())


def fold_mae_quartiles(y_true, y_pred, fold, method: str = "linear") -> dict[str, float]:
    """Lower quartile, median and upper quartile of the *per-fold* MAEs.

    This is thesis Table 4's "MedianAE, Lower Quartile, Upper Quartile": statistics over the 82
    per-fold (per-subject) MAEs of FG-NET LOPO, not over images (for the per-image median use
    :func:`median_ae_images`).  The thesis does not name a quantile definition; we use numpy's
    default ``method="linear"`` (Hyndman & Fan type 7, also R's default) — pass another numpy
    ``method`` to change it.  Returns ``{"q1", "median", "q3"}``.
    """
    v = per_fold_mae(y_true, y_pred, fold)["mae"].to_numpy()
    q1, med, q3 = np.quantile(v, [0.25, 0.5, 0.75], method=method)
    return {"q1": float(q1), "median": float(med), "q3": float(q3)}


def mean_std(values, ddof: int = 1) -> tuple[float, float]:
    """Mean and standard deviation of per-fold values (``ddof=1``: sample std by default).

    Papers rarely say which std they report; the sample std (``ddof=1``) is the estimate of the
    fold-to-fold spread, pass ``ddof=0`` for numpy's population std.  With fewer than
    ``ddof + 1`` values the std is NaN (e.g. one fold), never an error.
    """
    v = _float_1d(values, "values")
    std = float(np.std(v, ddof=ddof)) if v.size > ddof else math.nan
    return float(np.mean(v)), std


def fold_mean_std(y_true, y_pred, fold, metric: Callable = mae_pooled,
                  ddof: int = 1) -> tuple[float, float]:
    """Per-fold mean ± std of ``metric`` (default MAE; use :func:`accuracy` or
    :func:`one_off_accuracy` for the Adience "accuracy ± std over the 5 folds" convention)."""
    v = per_fold_table(y_true, y_pred, fold, metric)["value"].to_numpy()
    return mean_std(v, ddof=ddof)


def t_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval for the mean of per-fold values.

    ``mean ± t_{1-α/2, n-1} · s / √n`` with ``s`` the sample std — identical to
    ``scipy.stats.t.interval(confidence, n-1, loc=mean, scale=sem)``.  Applied to per-fold MAEs
    it is an interval for :func:`mae_fold_mean` (folds weighted equally, treated as independent
    draws).  One value → ``(nan, nan)`` (no spread to estimate); all values equal →
    ``(mean, mean)`` (scipy would give NaN for a zero scale).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    v = _float_1d(values, "values")
    n = v.size
    if n < 2:
        return math.nan, math.nan
    m = float(np.mean(v))
    sem = float(np.std(v, ddof=1)) / math.sqrt(n)
    if sem == 0:
        return m, m
    h = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem
    return m - h, m + h


def _subject_sums(subjects, *values: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-subject sums of each per-image array, and per-subject image counts: the clusters the
    subject bootstraps resample (`subjects=None`: every image its own cluster)."""
    n = values[0].size
    codes = np.arange(n) if subjects is None else pd.factorize(_labels_1d(subjects, "subjects", n))[0]
    n_sub = int(codes.max()) + 1
    return ([np.bincount(codes, weights=v, minlength=n_sub) for v in values],
            np.bincount(codes, minlength=n_sub).astype(float))


def bootstrap_mae_ci(y_true, y_pred, subjects=None, *, confidence: float = 0.95,
                     n_resamples: int = 2000, seed: int = 0,
                     method: str = "percentile") -> tuple[float, float]:
    """Subject-level (cluster) bootstrap confidence interval for the pooled MAE.

    Images of one person are correlated, so we resample *subjects* with replacement and
    recompute the pooled MAE over all images of the drawn subjects.  Implemented with
    ``scipy.stats.bootstrap`` on paired per-subject (sum of |error|, image count) data with the
    ratio statistic Σ sums / Σ counts, which is exactly that pooled MAE.  ``method`` is passed to
    scipy: ``"percentile"`` (default; the plain α/2 and 1−α/2 quantiles of the resampled MAEs),
    ``"basic"`` or ``"BCa"``.  Seeded: the same ``seed`` gives the same interval.

    ``subjects=None`` resamples images (each image its own cluster) — only right when every
    subject has one image.  Fewer than 2 subjects → ``(nan, nan)``; identical errors everywhere
    → ``(mae, mae)``.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    err = absolute_errors(y_true, y_pred)
    (sums,), counts = _subject_sums(subjects, err)
    n_sub = counts.size
    point = float(sums.sum() / counts.sum())
    if n_sub < 2:
        return math.nan, math.nan
    if np.all(err == err[0]):
        return point, point

    def ratio(s, c, axis=-1):
        return s.sum(axis=axis) / c.sum(axis=axis)

    res = stats.bootstrap((sums, counts), ratio, paired=True, vectorized=True,
                          n_resamples=int(n_resamples), confidence_level=confidence,
                          method=method, rng=np.random.default_rng(seed),
                          batch=min(int(n_resamples), max(1, 2_000_000 // n_sub)))
    ci = res.confidence_interval
    return float(ci.low), float(ci.high)


def cumulative_score(y_true, y_pred, k: float) -> float:
    """Cumulative score CS@k: share of images with ``|error| ≤ k`` years (Geng et al., 2007).

    A fraction in [0, 1] (multiply by 100 for the usual percentage plots).  Comparisons allow
    ``CS_TOLERANCE`` (1e-9 years) for decimal round-off."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    return float(np.mean(absolute_errors(y_true, y_pred) <= k + CS_TOLERANCE))


def cumulative_scores(y_true, y_pred, ks: Sequence[float] = tuple(range(11))) -> dict:
    """CS@k for each k in ``ks`` (default 0..10 years) → ``{k: CS}``, for CS curves."""
    err = absolute_errors(y_true, y_pred)
    if any(k < 0 for k in ks):
        raise ValueError("every k must be >= 0")
    return {k: float(np.mean(err <= k + CS_TOLERANCE)) for k in ks}


def tolerance_accuracy(age_true, age_pred, k: float) -> float:
    """Accuracy within ±k years on *ages* (e.g. "accuracy ±5 years"): the same number as
    :func:`cumulative_score` at ``k``, under the name classification-style papers use."""
    return cumulative_score(age_true, age_pred, k)


def r2_score(y_true, y_pred) -> float:
    """Coefficient of determination ``1 − SS_res / SS_tot`` (as ``sklearn.metrics.r2_score``).

    Constant ``y_true`` (SS_tot = 0) makes R² undefined → NaN (scikit-learn's default would
    report 1.0 or 0.0 instead).  Constant *predictions* are fine (R² ≤ 0).
    """
    t, p = _pair(y_true, y_pred)
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    if ss_tot == 0:
        return math.nan
    return 1.0 - float(np.sum((t - p) ** 2)) / ss_tot
