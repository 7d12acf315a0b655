"""The input checks every metric runs first, and the tolerances they share.

Why one place: each metric must reject an empty, mismatched, NaN or out-of-range input with a
message naming the argument, alike, rather than return a number computed from a caller's bug.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


#: Tolerance (years) for ``|error| <= k`` comparisons, so that decimal round-off such as
#: ``25.3 - 20.3 == 5.000000000000002`` does not turn an exact hit at k = 5 into a miss.
CS_TOLERANCE = 1e-9

#: How far a probability row may sum from 1 before it is rejected (float32 softmax rows sum to
#: 1 within ~1e-6; logits, scores or raw counts are far off and almost surely a caller's bug).
PROB_SUM_ATOL = 1e-3


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
