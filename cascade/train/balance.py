"""Class balancing for sparse age regions: loss weights and an oversampling epoch order.

Why: the thesis (section 6) traces FG-NET's worst subjects to ages with few training images
and names weighting as the remedy it did not try.  Both remedies are settings
(`balance.weights`, `balance.sampler`) so their effect on the hard subjects can be measured on
the same folds.  Both are computed from a stage's *training* rows only; validation stays
unweighted, so the epoch selection still judges the true objective.
"""
from __future__ import annotations

import numpy as np
import torch

#: `balance.weights`: none | inverse (n / (K·n_c), scikit-learn's `compute_class_weight("balanced")`)
#: | inverse_sqrt (∝ 1/√n_c, a milder remedy).  Both are scaled so that Σ_c n_c·w_c = n: the mean
#: weight of a training image is 1, so the learning rate keeps its meaning.
WEIGHTS = ("none", "inverse", "inverse_sqrt")
#: `balance.sampler`: none (a permutation per epoch) | oversample (each epoch draws as many rows,
#: with replacement, with probability ∝ 1 / its class's count: every present class equally often).
SAMPLERS = ("none", "oversample")


def class_weights(targets: np.ndarray, n_classes: int, rule: str) -> np.ndarray | None:
    """Per-class loss weights from the training targets (None for `none`).  Classes without
    training images get weight 0: no training image carries them, so the value never matters."""
    if rule == "none":
        return None
    if rule not in WEIGHTS:
        raise ValueError(f"balance.weights={rule!r}; valid: {', '.join(WEIGHTS)}")
    counts = np.bincount(targets, minlength=n_classes).astype(float)
    present = counts > 0
    raw = np.zeros(n_classes)
    raw[present] = 1.0 / (counts[present] if rule == "inverse" else np.sqrt(counts[present]))
    return raw * len(targets) / float((counts * raw).sum())


def epoch_order(targets: np.ndarray, rule: str, gen: torch.Generator) -> np.ndarray:
    """Positions into the training rows for one epoch, drawn from `gen` (seeded by the epoch, so
    a resumed run draws the same order)."""
    if rule == "none":
        return torch.randperm(len(targets), generator=gen).numpy()
    if rule not in SAMPLERS:
        raise ValueError(f"balance.sampler={rule!r}; valid: {', '.join(SAMPLERS)}")
    counts = np.bincount(targets)
    p = torch.from_numpy(1.0 / counts[targets])
    return torch.multinomial(p, len(targets), replacement=True, generator=gen).numpy()
