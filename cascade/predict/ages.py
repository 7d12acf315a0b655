"""From a face's class posterior to the ages a prediction row reports.

Every number comes from the harness's own decision rules (`metrics.decisions`: expected value,
argmax, posterior median; `metrics.posterior_quantile` for the interval), so an age printed by
`cascade predict` is the age a test fold would have stored for the same probabilities.

Why an interval and the top classes: the expected age alone hides how sure the model is; the
central 80 % of the posterior (its 10th to 90th percentile over the class values) and the most
probable classes show a flat or two-peaked posterior at a glance.
"""
from __future__ import annotations

import numpy as np

from cascade import metrics as M
from cascade.data.datasets import LabelSpace

#: The central posterior interval reported: its lower and upper quantile.
INTERVAL = (0.1, 0.9)
COLUMNS = ["expected_age", "argmax_age", "median_age", "age_p10", "age_p90"]


def class_name(labels: LabelSpace, i: int) -> str:
    """`35` for an exact-age class, `25-32` for an age range."""
    lo, hi = labels.lo[i], labels.hi[i]
    return str(lo) if lo == hi else f"{lo}-{hi}"


def ages(probs: np.ndarray, labels: LabelSpace, top: int) -> list[dict]:
    """One dict per row of `probs` (n, K): the COLUMNS, rounded to 0.01 year, and `top`, the
    `top` most probable classes as [(class name, probability)] in falling order."""
    if not len(probs):
        return []
    values = labels.values
    rule = M.decisions(probs, values)
    lo, hi = (M.posterior_quantile(probs, values, q) for q in INTERVAL)
    cols = dict(zip(COLUMNS, (rule["pred_expected"], rule["pred_argmax"], rule["pred_median"], lo, hi)))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
    return [{**{k: round(float(v[i]), 2) for k, v in cols.items()},
             "top": [(class_name(labels, int(c)), round(float(probs[i, c]), 4)) for c in order[i]]}
            for i in range(len(probs))]
