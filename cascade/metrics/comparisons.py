"""Significance tests and intervals for comparing configurations on the same test images:
paired Wilcoxon, a subject-level bootstrap of the MAE difference, exact McNemar, a paired
permutation test, Holm's correction and Friedman + Nemenyi with its critical difference.

Why paired: two configurations tested on the same images differ by much less than their
spreads suggest; only the per-image (or per-subject) differences carry the comparison.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from cascade.metrics.checks import _float_1d
from cascade.metrics.regression import _subject_sums

__all__ = ["wilcoxon_paired", "paired_delta_ci", "mcnemar_exact", "paired_permutation_test",
           "holm", "nemenyi_q_alpha", "critical_difference", "friedman_nemenyi"]


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
