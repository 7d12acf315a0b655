"""The age-estimation field's metrics, in one place, each one a plain function on numpy arrays.

Why one module: the study's tables mix conventions that are easy to confuse — FG-NET papers
report the MAE pooled over all test images *and* statistics of the 82 leave-one-person-out
per-fold MAEs (thesis Table 4: "MAE, MedianAE, Upper Quartile, Lower Quartile" are computed
over those per-fold MAEs), while Adience papers report exact and 1-off accuracy as mean ± std
over the 5 official folds.  Every function here says which convention it implements in its
name and docstring, and each is checked against its scikit-learn / scipy reference in
``tests/test_metrics.py``.

Conventions shared by all functions:

* Inputs are array-likes (numpy arrays, lists, pandas Series).  Age-regression metrics take
  ``y_true`` / ``y_pred`` in years (float); classification metrics take integer class indices
  ordered by age (class 0 = youngest) and an optional ``n_classes`` (inferred as
  ``max(y_true, y_pred) + 1`` when omitted — pass it whenever a class may be absent, since
  confusion matrices, macro averages and weighted kappas depend on it).
* ``fold`` / ``subjects`` are arrays of hashable labels, one per image (ints or strings).
* Empty input, mismatched lengths, NaN values, or class indices out of range raise
  ``ValueError`` with a message naming the argument.  Quantities that are *undefined* on valid
  but degenerate input (a std or t-interval over one fold, R² with constant ``y_true``, kappa
  when both raters use one class, a bootstrap over one subject) return NaN, as documented
  per function — never an obscure crash.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    # decision rules
    "expected_value", "argmax_value", "posterior_median", "posterior_quantile", "decisions", "expected_value_torch",
    # age regression
    "absolute_errors", "mae_pooled", "median_ae_images", "per_fold_table", "per_fold_mae",
    "mae_fold_mean", "fold_mae_quartiles", "mean_std", "fold_mean_std", "t_interval",
    "bootstrap_mae_ci", "cumulative_score", "cumulative_scores", "tolerance_accuracy",
    "r2_score",
    # classification
    "accuracy", "off_by_k_accuracy", "one_off_accuracy", "class_mae", "confusion_matrix",
    "precision_recall_f1", "balanced_accuracy", "cohen_kappa",
    # comparisons
    "wilcoxon_paired", "paired_delta_ci", "mcnemar_exact", "paired_permutation_test", "holm",
    "nemenyi_q_alpha", "critical_difference", "friedman_nemenyi",
    # summaries
    "regression_summary", "classification_summary",
]

#: Tolerance (years) for ``|error| <= k`` comparisons, so that decimal round-off such as
#: ``25.3 - 20.3 == 5.000000000000002`` does not turn an exact hit at k = 5 into a miss.
CS_TOLERANCE = 1e-9

#: How far a probability row may sum from 1 before it is rejected (float32 softmax rows sum to
#: 1 within ~1e-6; logits, scores or raw counts are far off and almost surely a caller's bug).
PROB_SUM_ATOL = 1e-3


# --------------------------------------------------------------------------- input checking

def _float_1d(x, name: str) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numeric: {e}") from None
    if a.ndim == 2 and a.shape[1] == 1:      # a column vector, e.g. a model's (n, 1) output
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty: cannot compute a metric on no images")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf ({int(np.sum(~np.isfinite(a)))} values); "
                         "drop or impute them before scoring")
    return a


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = _float_1d(y_true, "y_true"), _float_1d(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    return t, p


def _labels_1d(x, name: str, n: int) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size != n:
        raise ValueError(f"{name} has {a.size} entries but there are {n} images")
    if pd.isna(pd.Series(a)).any():
        raise ValueError(f"{name} contains missing labels")
    return a


def _classes(y_true, y_pred, n_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate two arrays of class indices; return them as int arrays and the class count."""
    out = []
    for x, name in ((y_true, "y_true"), (y_pred, "y_pred")):
        a = np.asarray(x)
        if a.ndim != 1:
            raise ValueError(f"{name} must be a 1-D array of class indices, got shape {a.shape}")
        if a.size == 0:
            raise ValueError(f"{name} is empty: cannot compute a metric on no images")
        if a.dtype.kind == "b" or a.dtype.kind not in "iuf":
            raise ValueError(f"{name} must hold integer class indices, got dtype {a.dtype}")
        if a.dtype.kind == "f":
            if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
                raise ValueError(f"{name} must hold integer class indices (found non-integral "
                                 "or NaN values); map ages to classes first")
        a = a.astype(np.int64)
        if np.any(a < 0):
            raise ValueError(f"{name} has negative class indices (min {a.min()})")
        out.append(a)
    t, p = out
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    k_seen = int(max(t.max(), p.max())) + 1
    if n_classes is None:
        n_classes = k_seen
    n_classes = int(n_classes)
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    if k_seen > n_classes:
        raise ValueError(f"class index {k_seen - 1} out of range for n_classes={n_classes}")
    return t, p, n_classes


def _probs(probs, values) -> tuple[np.ndarray, np.ndarray, bool]:
    p = np.asarray(probs, dtype=float)
    single = p.ndim == 1
    if single:
        p = p[None, :]
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"probs must be (n_classes,) or (n_images, n_classes), got {np.shape(probs)}")
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size != p.shape[1]:
        raise ValueError(f"values must be 1-D with one value per class ({p.shape[1]}), "
                         f"got shape {v.shape}")
    if not np.all(np.isfinite(p)) or not np.all(np.isfinite(v)):
        raise ValueError("probs and values must be finite")
    if np.any(p < 0):
        raise ValueError("probs has negative entries: pass probabilities (softmax), not logits")
    s = p.sum(axis=1)
    bad = np.abs(s - 1.0) > PROB_SUM_ATOL
    if np.any(bad):
        raise ValueError(f"probability rows must sum to 1 (row {int(np.argmax(bad))} sums to "
                         f"{s[bad][0]:.6g}); pass probabilities, not scores or counts")
    return p / s[:, None], v, single


# --------------------------------------------------------------------------- decision rules

def expected_value(probs, values) -> np.ndarray | float:
    """Expected value Σ_i values_i · p_i of a class posterior.

    The thesis's decision rule, after Rothe et al. (DEX, 2015/2018): a softmax over age bins
    (e.g. 0..100 years) is turned into a real-valued age by its expectation, which was found to
    beat the arg-max.  ``probs`` is ``(K,)`` or ``(n, K)``; rows are renormalised after a check
    that they sum to 1 within ``PROB_SUM_ATOL``.  Returns a float for one row, else ``(n,)``.
    """
    p, v, single = _probs(probs, values)
    out = p @ v
    return float(out[0]) if single else out


def argmax_value(probs, values) -> np.ndarray | float:
    """``values[argmax_i p_i]``: the most probable class's value (ties go to the lowest index,
    as ``numpy.argmax`` breaks them).  The classic classification decision rule, used as the
    baseline that DEX's expected value improves on."""
    p, v, single = _probs(probs, values)
    out = v[np.argmax(p, axis=1)]
    return float(out[0]) if single else out


def posterior_median(probs, values) -> np.ndarray | float:
    """Posterior median: the smallest value whose cumulative probability is ≥ 0.5.

    The decision rule that minimises the expected absolute error (i.e. the MAE-optimal rule for
    a calibrated posterior).  ``values`` must be strictly increasing (age order).  A 1e-9
    tolerance on the cumulative sum keeps ``0.1 + 0.2 + 0.2`` counted as reaching 0.5.
    """
    return posterior_quantile(probs, values, 0.5)


def posterior_quantile(probs, values, q: float) -> np.ndarray | float:
    """The posterior's ``q``-quantile over the class values: the smallest value whose cumulative
    probability is ≥ ``q`` (1e-9 tolerance, as for the median).  ``q`` = 0.1 and 0.9 bound the
    central 80 % interval `cascade predict` reports: an interval the model's own class
    distribution gives, so a flat posterior shows as a wide interval."""
    if not 0 < q <= 1:
        raise ValueError(f"quantile q={q} must be in (0, 1]")
    p, v, single = _probs(probs, values)
    if v.size > 1 and np.any(np.diff(v) <= 0):
        raise ValueError("posterior quantiles need strictly increasing values (classes in age order)")
    cdf = np.cumsum(p, axis=1)
    idx = np.argmax(cdf >= q - 1e-9, axis=1)
    out = v[idx]
    return float(out[0]) if single else out


def decisions(probs, values) -> dict[str, np.ndarray]:
    """Every decision rule of a batch of class posteriors ``(n, K)``, as the columns a fold's
    prediction file stores: ``pred_expected``, ``pred_argmax``, ``pred_median`` and the argmax
    class index ``pred_class``.  One validation and renormalisation serves all four, so a fold,
    an ensemble and a re-scored run compute the same numbers from the same probabilities."""
    p, v, _ = _probs(np.atleast_2d(probs), values)
    return {"pred_expected": expected_value(p, v), "pred_argmax": argmax_value(p, v),
            "pred_median": posterior_median(p, v), "pred_class": np.argmax(p, axis=1)}


def expected_value_torch(probs, values):
    """:func:`expected_value` on torch tensors, differentiable and on the tensors' device: the
    training-time form (validation MAE, the mean-variance loss, Grad-CAM of the expected age).
    ``probs`` ``(n, K)`` are softmax outputs; ``values`` ``(K,)`` is moved to their device."""
    return probs @ values.to(device=probs.device, dtype=probs.dtype)


# --------------------------------------------------------------------------- age regression

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


# --------------------------------------------------------------------------- classification

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


# --------------------------------------------------------------------------- comparisons

def _aligned(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Pair two per-fold value collections: mappings/Series are aligned by fold key (the key
    sets must match), sequences by position."""
    if isinstance(a, (Mapping, pd.Series)) or isinstance(b, (Mapping, pd.Series)):
        if not (isinstance(a, (Mapping, pd.Series)) and isinstance(b, (Mapping, pd.Series))):
            raise ValueError("pass both a and b keyed by fold (dict/Series), or both as sequences")
        sa, sb = pd.Series(dict(a)), pd.Series(dict(b))
        if set(sa.index) != set(sb.index):
            raise ValueError("a and b are not over the same folds: "
                             f"only in a {sorted(set(sa.index) - set(sb.index), key=str)[:5]}, "
                             f"only in b {sorted(set(sb.index) - set(sa.index), key=str)[:5]}")
        sb = sb.reindex(sa.index)
        a, b = sa.to_numpy(), sb.to_numpy()
    x, y = _float_1d(a, "a"), _float_1d(b, "b")
    if x.size != y.size:
        raise ValueError(f"a and b differ in length: {x.size} vs {y.size} (not the same folds?)")
    return x, y


def wilcoxon_paired(a, b, alternative: str = "two-sided") -> dict:
    """Paired Wilcoxon signed-rank test between two configurations' per-fold values.

    The test Demšar (2006) recommends for two methods over the same folds/datasets.  ``a`` and
    ``b`` are per-fold values (e.g. MAEs) as same-order sequences, or dicts/Series keyed by fold
    (aligned by key).  Uses ``scipy.stats.wilcoxon(a, b, zero_method="wilcox")`` (zero
    differences dropped; exact p-values for small samples).  Returns ``statistic``,
    ``pvalue``, ``n`` (pairs), ``n_nonzero``, ``mean_diff`` and ``median_diff`` (a − b).
    If every difference is zero the test has nothing to rank: ``statistic`` 0.0, ``pvalue``
    1.0 (what scipy returns, without its warning).
    """
    x, y = _aligned(a, b)
    d = x - y
    out = {"n": int(d.size), "n_nonzero": int(np.count_nonzero(d)),
           "mean_diff": float(np.mean(d)), "median_diff": float(np.median(d))}
    if out["n_nonzero"] == 0:
        return {"statistic": 0.0, "pvalue": 1.0, **out}
    res = stats.wilcoxon(x, y, zero_method="wilcox", alternative=alternative)
    return {"statistic": float(res.statistic), "pvalue": float(res.pvalue), **out}


def paired_delta_ci(err_a, err_b, subjects=None, confidence: float = 0.95,
                    n_resamples: int = 2000, seed: int = 0,
                    method: str = "percentile") -> tuple[float, float, float]:
    """Paired difference of two pooled means, ``Δ = mean(err_b) − mean(err_a)``, with a
    subject-level (cluster) bootstrap confidence interval.

    What it is for: "configuration B improves on A" is a statement about the *difference* of
    two numbers measured on the same test images, and two overlapping per-configuration CIs
    (e.g. MAE [5.01, 6.60] vs [4.84, 6.33]) say nothing about it — the two MAEs are strongly
    correlated, so the CI of their difference is much narrower than either.  This function
    resamples *subjects* with replacement (images of one person are correlated, as in
    :func:`bootstrap_mae_ci`) and recomputes *both* pooled means over the *same* drawn subjects,
    so each resample's Δ keeps the pairing.

    ``err_a`` / ``err_b`` are per-image values in the same image order: absolute errors (Δ =
    MAE_b − MAE_a, negative = B better), 0/1 correctness (Δ = accuracy_b − accuracy_a, positive
    = B better), or any per-image share such as correctness averaged over seeds.  Implemented
    with ``scipy.stats.bootstrap(paired=True, vectorized=True)`` on per-subject (Σ a, Σ b, image
    count) with the statistic ``(Σ sums_b − Σ sums_a) / Σ counts`` — exactly the difference of
    the two pooled means over the drawn images.  ``method`` as in :func:`bootstrap_mae_ci`;
    seeded (the same ``seed`` gives the same interval).

    Returns ``(delta, low, high)``.  ``subjects=None`` resamples images.  Fewer than 2 subjects
    → ``(delta, nan, nan)``; the same difference on every image (e.g. identical inputs, Δ = 0)
    → ``(delta, delta, delta)``.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    a, b = _float_1d(err_a, "err_a"), _float_1d(err_b, "err_b")
    if a.size != b.size:
        raise ValueError(f"err_a and err_b differ in length: {a.size} vs {b.size} "
                         "(not the same test images?)")
    (sums_a, sums_b), counts = _subject_sums(subjects, a, b)
    n_sub = counts.size
    delta = float(np.mean(b) - np.mean(a))
    if n_sub < 2:
        return delta, math.nan, math.nan
    d = b - a
    if np.all(d == d[0]):
        return delta, delta, delta

    def diff(sa, sb, c, axis=-1):
        return (sb.sum(axis=axis) - sa.sum(axis=axis)) / c.sum(axis=axis)

    res = stats.bootstrap((sums_a, sums_b, counts), diff, paired=True, vectorized=True,
                          n_resamples=int(n_resamples), confidence_level=confidence,
                          method=method, rng=np.random.default_rng(seed),
                          batch=min(int(n_resamples), max(1, 2_000_000 // n_sub)))
    ci = res.confidence_interval
    return delta, float(ci.low), float(ci.high)


def _binary(x, name: str) -> np.ndarray:
    """Per-image correctness as a bool array (bool, or numbers that are all 0 or 1)."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty: cannot test on no images")
    if a.dtype.kind == "b":
        return a
    v = _float_1d(a, name)
    if not np.all((v == 0) | (v == 1)):
        raise ValueError(f"{name} must be per-image correctness (0/1 or bool); for shares such as "
                         "correctness averaged over seeds use paired_permutation_test")
    return v == 1


def mcnemar_exact(correct_a, correct_b) -> dict:
    """Exact McNemar test of two classifiers' paired per-image correctness.

    Why: on the same test images two configurations' accuracies are paired; only the
    *discordant* images (one right, the other wrong) carry information about which is better.
    Under H0 (equal accuracy) each discordant image is equally likely to favour either side, so
    ``b`` (A right, B wrong) is Binomial(b + c, 1/2) — the exact (binomial) McNemar test, which
    stays valid for few discordant pairs where the χ² version does not.  Computed with
    ``statsmodels.stats.contingency_tables.mcnemar(table, exact=True)`` on the 2×2 table
    ``[[both right, only A right], [only B right, both wrong]]``; the two-sided p-value equals
    ``scipy.stats.binomtest(b, b + c, 0.5).pvalue``.

    Returns ``statistic`` (statsmodels' ``min(b, c)``), ``b``, ``c``, ``n`` (images) and
    ``pvalue`` (1.0 when there are no discordant images).
    """
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = _binary(correct_a, "correct_a"), _binary(correct_b, "correct_b")
    if a.size != b.size:
        raise ValueError(f"correct_a and correct_b differ in length: {a.size} vs {b.size} "
                         "(not the same test images?)")
    n11, n10 = int(np.sum(a & b)), int(np.sum(a & ~b))
    n01, n00 = int(np.sum(~a & b)), int(np.sum(~a & ~b))
    res = mcnemar([[n11, n10], [n01, n00]], exact=True)
    return {"statistic": float(res.statistic), "b": n10, "c": n01, "n": int(a.size),
            "pvalue": float(min(1.0, res.pvalue))}


def paired_permutation_test(values_a, values_b, n_resamples: int = 9999, seed: int = 0,
                            alternative: str = "two-sided") -> dict:
    """Paired sign-flip permutation test of ``mean(values_b − values_a)`` over images.

    For a configuration trained with several seeds, each image's correctness averaged over the
    seeds is a share in [0, 1] (e.g. 2/3), so McNemar's 2×2 table no longer applies.  Under H0
    (no difference between the two configurations) each image's difference ``d_i = b_i − a_i``
    is as likely to have either sign, so the null distribution of the mean difference is
    obtained by flipping the signs of the ``d_i`` at random (``scipy.stats.permutation_test``
    with ``permutation_type="samples"``, i.e. swapping a_i and b_i within each pair).  Chosen
    over the Wilcoxon signed-rank test because it tests the very quantity the table reports
    (Δ accuracy = mean difference), needs no rank-tie handling for the many equal shares
    (0, 1/S, ..., 1), and for 0/1 correctness (one seed) it *is* the exact McNemar test: the
    nonzero d_i are ±1 and their sum is then Binomial(b + c, 1/2) under H0.

    Zero differences do not change under a sign flip, so they are dropped before the test
    (the p-value is unchanged, and with ≤ log2(n_resamples) discordant images scipy enumerates
    all sign patterns exactly).  Otherwise ``n_resamples`` random flips, seeded by ``seed``
    (p-value ≥ 1 / (n_resamples + 1)).  ``alternative``: "two-sided", "less" (B lower) or
    "greater" (B higher).

    Returns ``statistic`` (mean difference b − a over *all* images), ``pvalue``, ``n`` (pairs),
    ``n_nonzero`` and ``exact`` (True when all sign patterns were enumerated).  No nonzero
    difference → statistic 0.0, pvalue 1.0.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if alternative not in ("two-sided", "less", "greater"):
        raise ValueError(f"alternative must be 'two-sided', 'less' or 'greater', got {alternative!r}")
    a, b = _float_1d(values_a, "values_a"), _float_1d(values_b, "values_b")
    if a.size != b.size:
        raise ValueError(f"values_a and values_b differ in length: {a.size} vs {b.size} "
                         "(not the same test images?)")
    d = b - a
    nz = d != 0
    out = {"statistic": float(np.mean(d)), "n": int(d.size), "n_nonzero": int(nz.sum())}
    if out["n_nonzero"] == 0:
        return {**out, "statistic": 0.0, "pvalue": 1.0, "exact": True}
    x, y = a[nz], b[nz]

    def mean_diff(x, y, axis=-1):
        return np.mean(y - x, axis=axis)

    exact = 2 ** min(x.size, 64) <= n_resamples
    res = stats.permutation_test((x, y), mean_diff, permutation_type="samples", vectorized=True,
                                 n_resamples=int(n_resamples), alternative=alternative,
                                 rng=np.random.default_rng(seed),
                                 batch=max(1, 2_000_000 // x.size))
    return {**out, "pvalue": float(min(1.0, res.pvalue)), "exact": bool(exact)}


def holm(pvalues) -> np.ndarray | pd.Series:
    """Holm–Bonferroni adjusted p-values (step-down; controls the family-wise error rate).

    Why: a comparison table tests several configuration pairs at once; with m tests at α = 0.05
    one of them is "significant" by chance far more often than 5 % of the time.  Holm's method
    keeps the family-wise error at α under any dependence between the tests and is uniformly
    more powerful than Bonferroni.  Computed by
    ``statsmodels.stats.multitest.multipletests(p, method="holm")``.  NaN entries (tests that
    could not be run) stay NaN and are not counted in m.  Returns an array (a Series with the
    same index for a Series input); compare the adjusted values with α directly.
    """
    from statsmodels.stats.multitest import multipletests

    index = pvalues.index if isinstance(pvalues, pd.Series) else None
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be 1-D, got shape {p.shape}")
    ok = ~np.isnan(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("pvalues must lie in [0, 1] (or be NaN)")
    out = np.full(p.shape, np.nan)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return pd.Series(out, index=index, name=getattr(pvalues, "name", None)) if index is not None else out


def nemenyi_q_alpha(k: int, alpha: float = 0.05) -> float:
    """Nemenyi critical value q_α for k methods: the studentized range quantile
    ``q(1−α; k, ∞) / √2`` (Demšar 2006, Table 5(a): k=3 → 2.343, k=4 → 2.569)."""
    if k < 2:
        raise ValueError(f"need k >= 2 methods, got {k}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of mean ranks: ``CD = q_α · √(k(k+1) / (6N))`` for k methods
    over N folds (Demšar 2006, eq. in §3.2.2)."""
    if n < 1:
        raise ValueError(f"need N >= 1 folds, got {n}")
    return nemenyi_q_alpha(k, alpha) * math.sqrt(k * (k + 1) / (6.0 * n))


def friedman_nemenyi(scores, names: Sequence[str] | None = None, alpha: float = 0.05,
                     higher_is_better: bool = False) -> dict:
    """Friedman test among ≥ 3 configurations over the same folds, with Nemenyi post-hoc.

    ``scores``: a 2-D array ``(N folds, k configurations)``, a DataFrame with one column per
    configuration, or a dict ``name → per-fold values`` (same fold order).  Within each fold the
    configurations are ranked (1 = best; ``higher_is_better=False`` suits MAE, set True for
    accuracy; ties get average ranks).  The Friedman statistic and p-value come from
    ``scipy.stats.friedmanchisquare`` (tie-corrected χ²; NaN if every fold ties all
    configurations).  Nemenyi (Demšar 2006): two configurations differ when their mean ranks
    differ by more than ``CD = q_α √(k(k+1)/(6N))``; the pairwise p-value
    ``P(Q_{k,∞} ≥ √2 · |R_i − R_j| / √(k(k+1)/(6N)))`` comes from
    ``scikit_posthocs.posthoc_nemenyi_friedman`` (the same studentized-range formula, from a
    maintained reference implementation), so ``p < α`` ⇔ ``|R_i − R_j| > CD``.

    Returns ``names``, ``k``, ``n``, ``alpha``, ``mean_ranks`` (Series), ``statistic``, ``pvalue``,
    ``q_alpha``, ``cd``, ``pairwise_pvalues`` (k×k DataFrame, 1 on the diagonal) and
    ``significant`` (k×k bool DataFrame, ``|R_i − R_j| > CD``).
    """
    if isinstance(scores, pd.DataFrame):
        names = list(scores.columns) if names is None else list(names)
        m = scores.to_numpy(dtype=float)
    elif isinstance(scores, Mapping):
        names = list(scores.keys()) if names is None else list(names)
        cols = [np.asarray(v, dtype=float) for v in scores.values()]
        if len({c.size for c in cols}) > 1:
            raise ValueError("every configuration needs one value per fold (lengths differ)")
        m = np.column_stack(cols) if cols else np.empty((0, 0))
    else:
        m = np.asarray(scores, dtype=float)
    if m.ndim != 2:
        raise ValueError(f"scores must be 2-D (folds × configurations), got shape {m.shape}")
    n, k = m.shape
    if k < 3:
        raise ValueError(f"the Friedman test needs >= 3 configurations, got {k}; "
                         "use wilcoxon_paired for two")
    if n < 2:
        raise ValueError(f"the Friedman test needs >= 2 folds, got {n}")
    if not np.all(np.isfinite(m)):
        raise ValueError("scores contain NaN or inf")
    names = [f"c{i}" for i in range(k)] if names is None else list(names)
    if len(names) != k:
        raise ValueError(f"{len(names)} names for {k} configurations")

    ranks = stats.rankdata(-m if higher_is_better else m, axis=1)
    mean_ranks = ranks.mean(axis=0)
    if np.all(ranks == (k + 1) / 2):          # every fold ties every configuration
        stat, p = math.nan, math.nan
    else:
        res = stats.friedmanchisquare(*m.T)
        stat, p = float(res.statistic), float(res.pvalue)
    import scikit_posthocs as sp

    q = nemenyi_q_alpha(k, alpha)
    cd = q * math.sqrt(k * (k + 1) / (6.0 * n))
    diff = np.abs(mean_ranks[:, None] - mean_ranks[None, :])
    # The rank matrix in (its own ranks are the same), so scikit-posthocs sees the same ranking
    # whichever direction is better; it returns the p-values of the studentized range statistic.
    pw = sp.posthoc_nemenyi_friedman(ranks).to_numpy(dtype=float)
    pw = np.where(diff == 0, 1.0, np.clip(pw, 0.0, 1.0))
    return {"names": names, "k": k, "n": n, "alpha": alpha,
            "mean_ranks": pd.Series(mean_ranks, index=names, name="mean_rank"),
            "statistic": stat, "pvalue": p, "q_alpha": q, "cd": cd,
            "pairwise_pvalues": pd.DataFrame(pw, index=names, columns=names),
            "significant": pd.DataFrame(diff > cd, index=names, columns=names)}


# --------------------------------------------------------------------------- summaries

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
