"""Class balancing for sparse age regions: loss weights, an over- or undersampling epoch order,
and fixed reductions of over-represented classes (a cap relative to the mean class count, or N
images removed from one class: the related studies 002 and 003).

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
#: with replacement, with probability ∝ 1 / its class's count: every present class equally often)
#: | undersample (each epoch draws, without replacement, the rarest present class's count from
#: every class: a shorter, exactly balanced epoch, a new draw every epoch).
SAMPLERS = ("none", "oversample", "undersample")


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
    if rule == "oversample":
        p = torch.from_numpy(1.0 / counts[targets])
        return torch.multinomial(p, len(targets), replacement=True, generator=gen).numpy()
    least = counts[counts > 0].min()
    picked = [pos[torch.randperm(len(pos), generator=gen).numpy()[:least]]
              for pos in (np.flatnonzero(targets == c) for c in np.flatnonzero(counts))]
    order = np.concatenate(picked)
    return order[torch.randperm(len(order), generator=gen).numpy()]


def reduce_rows(targets: np.ndarray, cap: float, remove: tuple[int, int] | None, seed: int) -> np.ndarray:
    """Positions of the training rows kept after the fixed reductions, drawn once with `seed`:
    `cap` > 0 keeps at most ceil(cap x the mean count of the present classes) rows of each class
    (003: 0.6); `remove` = (class, n) drops n rows of that class (002's undersampling of its
    commonest age)."""
    rng = np.random.default_rng(seed)
    keep = np.ones(len(targets), bool)
    if remove:
        cls, n = remove
        pos = np.flatnonzero(targets == cls)
        keep[rng.choice(pos, min(n, len(pos)), replace=False)] = False
    if cap:
        counts = np.bincount(targets[keep])
        limit = int(np.ceil(cap * counts[counts > 0].mean()))
        for c in np.flatnonzero(counts > limit):
            pos = np.flatnonzero(keep & (targets == c))
            keep[rng.choice(pos, len(pos) - limit, replace=False)] = False
    return np.flatnonzero(keep)


def parse_remove(spec: str, class_values: np.ndarray) -> tuple[int, int] | None:
    """`balance.remove=AGE:N` as (class, N): the class whose value (the age, or a range's centre)
    is nearest AGE."""
    if not spec:
        return None
    age, _, n = spec.partition(":")
    try:
        age_f, n_i = float(age), int(n)
    except ValueError:
        raise ValueError(f"balance.remove={spec!r}: expected AGE:N (e.g. 26:1000)") from None
    if n_i < 0:
        raise ValueError(f"balance.remove={spec!r}: N must be >= 0")
    return int(np.argmin(np.abs(np.asarray(class_values, float) - age_f))), n_i


def augment_strength(targets: np.ndarray, train_targets: np.ndarray, factor: float) -> torch.Tensor | None:
    """Per image (indexed like `targets`) augmentation strength: `factor` for the classes with
    fewer training images than the mean present class, 1 for the others (003's stronger
    augmentation of minority classes); None when off (factor 0 or 1)."""
    if factor in (0, 1):
        return None
    counts = np.bincount(train_targets, minlength=int(targets.max()) + 1)
    minority = counts < counts[counts > 0].mean()
    return torch.from_numpy(np.where(minority[targets], factor, 1.0).astype(np.float32))
