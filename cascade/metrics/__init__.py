"""Age-estimation metrics (regression, classification, fold statistics, significance tests).

Everything lives in :mod:`cascade.metrics.core`; see its module docstring for the shared
conventions (pooled vs per-fold MAE, class indices in age order, NaN vs ValueError).
"""
from cascade.metrics.core import *  # noqa: F401,F403
from cascade.metrics.core import __all__  # noqa: F401
