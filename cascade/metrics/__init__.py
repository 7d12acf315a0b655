"""The age-estimation field's metrics, each one a plain function on numpy arrays.

Why one package: the study's tables mix conventions that are easy to confuse — FG-NET papers
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

The functions live in one module per kind (:mod:`~cascade.metrics.rules` decision rules,
:mod:`~cascade.metrics.regression`, :mod:`~cascade.metrics.classification`,
:mod:`~cascade.metrics.comparisons` significance tests, :mod:`~cascade.metrics.summaries`; the
input checks in :mod:`~cascade.metrics.checks`) and are imported from here.
"""
from cascade.metrics import classification, comparisons, regression, rules, summaries
from cascade.metrics.classification import *  # noqa: F401,F403
from cascade.metrics.comparisons import *  # noqa: F401,F403
from cascade.metrics.regression import *  # noqa: F401,F403
from cascade.metrics.rules import *  # noqa: F401,F403
from cascade.metrics.summaries import *  # noqa: F401,F403

__all__ = [*rules.__all__, *regression.__all__, *classification.__all__, *comparisons.__all__, *summaries.__all__]
