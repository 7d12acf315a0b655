"""Pooled CNN features of a trained stage and regressors fitted on them per protocol fold (thesis Table 5)."""
