"""Decision rules: from a model's class probabilities to one predicted age or class per image.

Why apart from the metrics: the same probabilities give different predictions under different
rules (expected value for MAE, argmax for accuracy, the posterior median or a quantile), and a
table must say which rule each number used.
"""
from __future__ import annotations

import numpy as np

from cascade.metrics.checks import _probs

__all__ = ["expected_value", "argmax_value", "posterior_median", "posterior_quantile", "decisions",
           "expected_value_torch"]


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
