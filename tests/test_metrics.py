"""Each metric in cascade.metrics against its scikit-learn / scipy reference or a hand example."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm

import cascade.metrics as M


# --------------------------------------------------------------------------- fixtures

@pytest.fixture
def ages():
    """FG-NET-like data: 30 subjects with 3..12 images each, LOPO folds (fold = subject)."""
    rng = np.random.default_rng(7)
    sizes = rng.integers(3, 13, 30)
    subjects = np.repeat(np.arange(30), sizes)
    y = rng.uniform(0, 69, subjects.size)
    pred = y + rng.normal(0, 4, y.size) + rng.normal(0, 2, 30)[subjects]
    return y, pred, subjects


@pytest.fixture
def groups():
    """Adience-like data: 8 ordered classes, 5 folds, predictions mostly near the truth."""
    rng = np.random.default_rng(11)
    n = 600
    t = rng.integers(0, 8, n)
    p = np.clip(t + rng.choice([-2, -1, 0, 0, 0, 1, 2], n), 0, 7)
    fold = rng.integers(0, 5, n)
    return t, p, fold


# --------------------------------------------------------------------------- decision rules

def test_expected_value_and_argmax_by_hand():
    probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0]])
    values = [10.0, 20.0, 30.0]
    np.testing.assert_allclose(M.expected_value(probs, values), [26.0, 15.0])
    assert M.expected_value([0.0, 1.0, 0.0], values) == 20.0
    np.testing.assert_array_equal(M.argmax_value(probs, values), [30.0, 10.0])  # tie → lowest


def test_posterior_median_by_hand():
    values = [1.0, 2.0, 3.0, 4.0]
    assert M.posterior_median([0.25, 0.25, 0.25, 0.25], values) == 2.0   # cdf hits 0.5 exactly
    assert M.posterior_median([0.1, 0.2, 0.2, 0.5], values) == 3.0       # 0.1+0.2+0.2 round-off
    assert M.posterior_median([0.6, 0.0, 0.0, 0.4], values) == 1.0
    assert M.posterior_median([0.0, 0.3, 0.1, 0.6], values) == 4.0
    # the median differs from the mean on a skewed posterior
    p = [0.5, 0.0, 0.0, 0.5]
    assert M.posterior_median(p, values) == 1.0 and M.expected_value(p, values) == 2.5


def test_decision_rules_reject_bad_probabilities():
    with pytest.raises(ValueError, match="logits"):
        M.expected_value([-1.0, 2.0], [0, 1])
    with pytest.raises(ValueError, match="sum to 1"):
        M.expected_value([3.0, 2.0], [0, 1])
    with pytest.raises(ValueError, match="one value per class"):
        M.expected_value([0.5, 0.5], [0, 1, 2])
    with pytest.raises(ValueError, match="increasing"):
        M.posterior_median([0.5, 0.5], [2, 1])


# --------------------------------------------------------------------------- regression

def test_mae_and_median_ae_vs_sklearn(ages):
    y, p, _ = ages
    assert M.mae_pooled(y, p) == pytest.approx(skm.mean_absolute_error(y, p))
    assert M.median_ae_images(y, p) == pytest.approx(skm.median_absolute_error(y, p))
    np.testing.assert_allclose(M.absolute_errors(list(y), list(p)), np.abs(p - y))


def test_per_fold_mae_table_and_fold_statistics(ages):
    y, p, subj = ages
    table = M.per_fold_mae(y, p, subj)
    assert list(table.columns) == ["mae", "n"] and len(table) == 30
    assert table["n"].sum() == y.size
    for f in (0, 13, 29):
        m = subj == f
        assert table.loc[f, "mae"] == pytest.approx(skm.mean_absolute_error(y[m], p[m]))
        assert table.loc[f, "n"] == m.sum()
    fold_maes = table["mae"].to_numpy()
    assert M.mae_fold_mean(y, p, subj) == pytest.approx(fold_maes.mean())
    # pooled and per-fold-mean MAEs differ when fold sizes differ
    assert M.mae_fold_mean(y, p, subj) != pytest.approx(M.mae_pooled(y, p), abs=1e-12)
    q = M.fold_mae_quartiles(y, p, subj)
    assert q == pytest.approx({"q1": np.percentile(fold_maes, 25),
                               "median": np.median(fold_maes),
                               "q3": np.percentile(fold_maes, 75)})
    assert M.fold_mean_std(y, p, subj) == pytest.approx((fold_maes.mean(), fold_maes.std(ddof=1)))
    assert M.mean_std(fold_maes, ddof=0)[1] == pytest.approx(fold_maes.std())


def test_per_fold_string_labels():
    t = M.per_fold_mae([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 3.0, 6.0], ["b", "a", "b", "a"])
    assert list(t.index) == ["a", "b"]
    assert t.loc["a", "mae"] == 1.5 and t.loc["b", "mae"] == 0.0


def test_t_interval_vs_scipy(ages):
    y, p, subj = ages
    v = M.per_fold_mae(y, p, subj)["mae"].to_numpy()
    for conf in (0.9, 0.95, 0.99):
        ref = stats.t.interval(conf, v.size - 1, loc=v.mean(), scale=stats.sem(v))
        assert M.t_interval(v, conf) == pytest.approx(ref)


def test_t_interval_degenerate():
    assert all(math.isnan(x) for x in M.t_interval([3.0]))
    assert M.t_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)
    with pytest.raises(ValueError, match="empty"):
        M.t_interval([])


def test_bootstrap_over_subjects(ages):
    y, p, subj = ages
    lo, hi = M.bootstrap_mae_ci(y, p, subj, n_resamples=2000, seed=3)
    assert lo < M.mae_pooled(y, p) < hi
    assert M.bootstrap_mae_ci(y, p, subj, n_resamples=2000, seed=3) == (lo, hi)  # seeded
    assert M.bootstrap_mae_ci(y, p, subj, n_resamples=2000, seed=4) != (lo, hi)
    # against a plain numpy subject bootstrap with the percentile method (different draws,
    # so only approximately equal)
    rng = np.random.default_rng(0)
    err = np.abs(p - y)
    sums = np.bincount(subj, weights=err)
    cnts = np.bincount(subj)
    draws = rng.integers(0, 30, (4000, 30))
    boot = sums[draws].sum(1) / cnts[draws].sum(1)
    ref = np.percentile(boot, [2.5, 97.5])
    assert (lo, hi) == pytest.approx(tuple(ref), abs=0.15)
    # when errors cluster by subject, resampling images as if independent understates the
    # uncertainty: the subject interval is clearly wider
    s2 = np.repeat(np.arange(20), 10)
    e2 = rng.uniform(0, 10, 20)[s2] + rng.normal(0, 0.1, s2.size)
    lo_s, hi_s = M.bootstrap_mae_ci(np.zeros(s2.size), e2, s2, seed=1)
    lo_i, hi_i = M.bootstrap_mae_ci(np.zeros(s2.size), e2, None, seed=1)
    assert hi_i - lo_i < 0.6 * (hi_s - lo_s)
    lo_b, hi_b = M.bootstrap_mae_ci(y, p, subj, n_resamples=500, seed=3, method="BCa")
    assert lo_b < M.mae_pooled(y, p) < hi_b


def test_bootstrap_degenerate():
    assert all(math.isnan(x) for x in M.bootstrap_mae_ci([1.0, 2.0], [2.0, 4.0], ["s", "s"]))
    assert M.bootstrap_mae_ci([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [1, 2, 3]) == (1.0, 1.0)
    with pytest.raises(ValueError, match="subjects has 2 entries"):
        M.bootstrap_mae_ci([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [1, 2])


def test_cumulative_score_by_hand():
    y = np.array([20.0, 20.0, 20.0, 20.0, 25.3])
    p = np.array([20.0, 21.0, 23.5, 31.0, 20.3])   # errors 0, 1, 3.5, 11, 5 (round-off)
    assert M.cumulative_score(y, p, 0) == 0.2
    assert M.cumulative_score(y, p, 1) == 0.4
    assert M.cumulative_score(y, p, 3) == 0.4
    assert M.cumulative_score(y, p, 5) == 0.8     # 25.3 - 20.3 counts as exactly 5
    assert M.tolerance_accuracy(y, p, 5) == 0.8
    cs = M.cumulative_scores(y, p)
    assert list(cs) == list(range(11))
    assert [cs[k] for k in range(11)] == [0.2, 0.4, 0.4, 0.4, 0.6, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]
    assert M.cumulative_scores(y, p, ks=[11])[11] == 1.0


def test_r2_vs_sklearn(ages):
    y, p, _ = ages
    assert M.r2_score(y, p) == pytest.approx(skm.r2_score(y, p))
    const = np.full_like(y, y.mean() + 1)               # constant predictions: fine, R² < 0
    assert M.r2_score(y, const) == pytest.approx(skm.r2_score(y, const))
    assert math.isnan(M.r2_score([5.0, 5.0, 5.0], [4.0, 5.0, 6.0]))   # constant truth


def test_regression_input_errors():
    with pytest.raises(ValueError, match="empty"):
        M.mae_pooled([], [])
    with pytest.raises(ValueError, match="differ in length"):
        M.mae_pooled([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        M.mae_pooled([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="fold has 1 entries"):
        M.per_fold_mae([1.0, 2.0], [1.0, 2.0], [0])


# --------------------------------------------------------------------------- classification

def test_accuracy_balanced_and_confusion_vs_sklearn(groups):
    t, p, _ = groups
    assert M.accuracy(t, p) == pytest.approx(skm.accuracy_score(t, p))
    assert M.balanced_accuracy(t, p, 8) == pytest.approx(skm.balanced_accuracy_score(t, p))
    np.testing.assert_array_equal(M.confusion_matrix(t, p, 8),
                                  skm.confusion_matrix(t, p, labels=range(8)))
    np.testing.assert_allclose(M.confusion_matrix(t, p, 8, normalize=True),
                               skm.confusion_matrix(t, p, labels=range(8), normalize="true"))


def test_confusion_with_absent_class():
    t, p = [0, 0, 1, 3], [0, 1, 1, 2]                  # class 2 never true
    cm = M.confusion_matrix(t, p, 5)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(t, p, labels=range(5)))
    norm = M.confusion_matrix(t, p, 5, normalize=True)
    assert np.isnan(norm[2]).all() and np.isnan(norm[4]).all()
    np.testing.assert_allclose(norm[[0, 1, 3]].sum(axis=1), 1.0)
    with pytest.warns(UserWarning):                    # sklearn warns about y_pred-only class
        ref = skm.balanced_accuracy_score(t, p)
    assert M.balanced_accuracy(t, p, 5) == pytest.approx(ref)


@pytest.mark.parametrize("zero_division", [0.0, 1.0, np.nan])
def test_precision_recall_f1_vs_sklearn(groups, zero_division):
    t, p, _ = groups
    p = np.where(p == 6, 5, p)                          # class 6 never predicted
    k = 9                                               # class 8 neither true nor predicted
    res = M.precision_recall_f1(t, p, k, zero_division=zero_division)
    P, R, F, S = skm.precision_recall_fscore_support(t, p, labels=range(k),
                                                     zero_division=zero_division)
    np.testing.assert_allclose(res["precision"], P)
    np.testing.assert_allclose(res["recall"], R)
    np.testing.assert_allclose(res["f1"], F)
    np.testing.assert_array_equal(res["support"], S)
    for avg in ("macro", "weighted"):
        P, R, F, _ = skm.precision_recall_fscore_support(t, p, labels=range(k), average=avg,
                                                         zero_division=zero_division)
        assert res[avg] == pytest.approx({"precision": P, "recall": R, "f1": F})


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_kappa_vs_sklearn(groups, weights):
    t, p, _ = groups
    assert M.cohen_kappa(t, p, 8, weights) == pytest.approx(
        skm.cohen_kappa_score(t, p, labels=list(range(8)), weights=weights))
    # with an absent middle class the labels must span all classes for weighted kappa
    t2, p2 = np.where(t == 3, 4, t), np.where(p == 3, 4, p)
    assert M.cohen_kappa(t2, p2, 8, weights) == pytest.approx(
        skm.cohen_kappa_score(t2, p2, labels=list(range(8)), weights=weights))


def test_kappa_degenerate():
    assert math.isnan(M.cohen_kappa([2, 2, 2], [2, 2, 2], 4))
    with pytest.raises(ValueError, match="weights"):
        M.cohen_kappa([0, 1], [0, 1], 2, weights="cubic")


def test_one_off_and_class_mae_by_hand():
    t = [0, 1, 2, 3, 4, 7, 7]
    p = [0, 2, 0, 4, 7, 6, 5]          # diffs 0, 1, 2, 1, 3, 1, 2
    assert M.accuracy(t, p) == pytest.approx(1 / 7)
    assert M.one_off_accuracy(t, p) == pytest.approx(4 / 7)
    assert M.off_by_k_accuracy(t, p, 2) == pytest.approx(6 / 7)
    assert M.class_mae(t, p) == pytest.approx(10 / 7)


def test_classification_input_errors():
    with pytest.raises(ValueError, match="out of range"):
        M.confusion_matrix([0, 8], [0, 1], 8)
    with pytest.raises(ValueError, match="integer class indices"):
        M.accuracy([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="negative"):
        M.accuracy([-1, 1], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        M.accuracy([], [])


# --------------------------------------------------------------------------- comparisons

def test_wilcoxon_vs_scipy():
    rng = np.random.default_rng(5)
    a = rng.normal(5, 1, 40)
    b = a + rng.normal(0.3, 0.5, 40)
    res = M.wilcoxon_paired(a, b)
    ref = stats.wilcoxon(a, b)
    assert res["statistic"] == pytest.approx(ref.statistic)
    assert res["pvalue"] == pytest.approx(ref.pvalue)
    assert res["n"] == 40 and res["mean_diff"] == pytest.approx(np.mean(a - b))
    # dicts keyed by fold are aligned by key, not by order
    da = {f"f{i}": v for i, v in enumerate(a)}
    db = dict(reversed([(f"f{i}", v) for i, v in enumerate(b)]))
    assert M.wilcoxon_paired(da, db)["pvalue"] == pytest.approx(ref.pvalue)
    with pytest.raises(ValueError, match="same folds"):
        M.wilcoxon_paired(da, {"x": 1.0})
    same = M.wilcoxon_paired([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same["pvalue"] == 1.0 and same["n_nonzero"] == 0


def test_nemenyi_critical_values_demsar_table5a():
    # Demšar (2006), Table 5(a), q_0.05 for k = 2..10
    table = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031,
             9: 3.102, 10: 3.164}
    for k, q in table.items():
        assert M.nemenyi_q_alpha(k, 0.05) == pytest.approx(q, abs=1e-3)
    # Table 5(a) q_0.10, k = 3 and 4
    assert M.nemenyi_q_alpha(3, 0.10) == pytest.approx(2.052, abs=1e-3)
    assert M.nemenyi_q_alpha(4, 0.10) == pytest.approx(2.291, abs=1e-3)
    # Demšar's worked example: k = 4 methods, N = 14 data sets → CD = 2.569·√(20/84) ≈ 1.25
    assert M.critical_difference(4, 14) == pytest.approx(2.569 * math.sqrt(20 / 84), abs=1e-3)
    assert M.critical_difference(4, 14) == pytest.approx(1.25, abs=0.01)


def test_friedman_nemenyi_vs_scipy():
    rng = np.random.default_rng(9)
    n = 20
    base = rng.normal(6, 1, n)
    scores = {"a": base, "b": base + rng.normal(0.1, 0.3, n), "c": base + rng.normal(1.5, 0.3, n),
              "d": base + rng.normal(0.2, 0.3, n)}
    res = M.friedman_nemenyi(scores)
    ref = stats.friedmanchisquare(*scores.values())
    assert res["statistic"] == pytest.approx(ref.statistic)
    assert res["pvalue"] == pytest.approx(ref.pvalue)
    m = np.column_stack(list(scores.values()))
    ranks = stats.rankdata(m, axis=1).mean(0)
    np.testing.assert_allclose(res["mean_ranks"].to_numpy(), ranks)
    assert res["mean_ranks"]["c"] == 4.0                     # c is worst (highest MAE) everywhere
    assert res["cd"] == pytest.approx(M.critical_difference(4, n))
    sig = res["significant"]
    assert sig.loc["a", "c"] and sig.loc["c", "a"] and not sig.loc["a", "a"]
    # p-values agree with the CD rule, and are symmetric with 1 on the diagonal
    pw = res["pairwise_pvalues"].to_numpy()
    np.testing.assert_allclose(pw, pw.T)
    np.testing.assert_allclose(np.diag(pw), 1.0)
    np.testing.assert_array_equal(pw < 0.05, sig.to_numpy())
    # higher_is_better flips the ranks; a DataFrame input gives the same test
    flipped = M.friedman_nemenyi(pd.DataFrame(scores), higher_is_better=True)
    np.testing.assert_allclose(flipped["mean_ranks"].to_numpy(), 5 - ranks)
    assert flipped["statistic"] == pytest.approx(ref.statistic)


def test_friedman_degenerate():
    with pytest.raises(ValueError, match=">= 3 configurations"):
        M.friedman_nemenyi(np.ones((5, 2)))
    with pytest.raises(ValueError, match=">= 2 folds"):
        M.friedman_nemenyi(np.ones((1, 3)))
    res = M.friedman_nemenyi(np.ones((5, 3)))                # every fold ties everything
    assert math.isnan(res["statistic"]) and not res["significant"].to_numpy().any()


# --------------------------------------------------------------------------- summaries

def test_regression_summary(ages):
    y, p, subj = ages
    s = M.regression_summary(y, p, subj, subj, seed=1, n_resamples=500)
    fold_maes = M.per_fold_mae(y, p, subj)["mae"]
    assert s["n_folds"] == 30 and s["n_subjects"] == 30 and s["n_images"] == y.size
    assert s["mae_pooled"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert s["mae_fold_mean"] == pytest.approx(fold_maes.mean())
    assert s["fold_mae_median"] == pytest.approx(fold_maes.median())
    assert s["fold_mae_q1"] <= s["fold_mae_median"] <= s["fold_mae_q3"]
    assert s["t_ci_low"] < s["mae_fold_mean"] < s["t_ci_high"]
    assert s["boot_ci_low"] < s["mae_pooled"] < s["boot_ci_high"]
    assert s["cs5"] == M.cumulative_score(y, p, 5)
    assert s["r2"] == pytest.approx(skm.r2_score(y, p))
    # one fold, constant predictions: NaN spreads, no crash
    one = M.regression_summary(y, np.full_like(y, 30.0), None, None, n_resamples=100)
    assert one["n_folds"] == 1 and math.isnan(one["mae_fold_std"])
    assert math.isnan(one["t_ci_low"]) and one["r2"] < 0


def test_classification_summary(groups):
    t, p, fold = groups
    s = M.classification_summary(t, p, fold, 8)
    accs = [skm.accuracy_score(t[fold == f], p[fold == f]) for f in range(5)]
    assert s["n_folds"] == 5
    assert s["accuracy"] == pytest.approx(skm.accuracy_score(t, p))
    assert s["accuracy_fold_mean"] == pytest.approx(np.mean(accs))
    assert s["accuracy_fold_std"] == pytest.approx(np.std(accs, ddof=1))
    assert s["one_off"] == pytest.approx(np.mean(np.abs(t - p) <= 1))
    assert s["kappa_quadratic"] == pytest.approx(
        skm.cohen_kappa_score(t, p, labels=list(range(8)), weights="quadratic"))
    assert s["confusion_matrix"].shape == (8, 8) and s["confusion_matrix"].sum() == t.size
    const = M.classification_summary(t, np.zeros_like(t), None, 8)
    assert math.isnan(const["one_off_fold_std"]) and const["kappa"] == pytest.approx(0.0)


def test_decisions_are_the_tested_rules_in_one_call():
    """metrics.decisions is what every fold, ensemble and re-scored run writes: the same numbers
    as the three rules called one by one, with the median's tolerance and renormalisation."""
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(7), size=50).astype(np.float32)      # float32 rows, as a softmax gives
    v = np.arange(7) * 10.0 + 5
    got = M.decisions(p, v)
    assert np.allclose(got["pred_expected"], M.expected_value(p, v))
    assert np.array_equal(got["pred_argmax"], M.argmax_value(p, v))
    assert np.array_equal(got["pred_median"], M.posterior_median(p, v))
    assert np.array_equal(got["pred_class"], p.argmax(1))
    tie = np.array([[0.1, 0.2, 0.2, 0.5]])                          # cumulative 0.1 + 0.2 + 0.2 reaches 0.5
    assert M.decisions(tie, [1, 2, 3, 4])["pred_median"][0] == 3


def test_expected_value_torch_is_the_numpy_rule_and_differentiable():
    import torch

    logits = torch.randn(5, 4, requires_grad=True)
    v = torch.tensor([1.0, 2.0, 3.0, 4.0])
    e = M.expected_value_torch(torch.softmax(logits, 1), v)
    assert np.allclose(e.detach().numpy(), M.expected_value(torch.softmax(logits, 1).detach().numpy(), v.numpy()), atol=1e-6)
    e.sum().backward()
    assert logits.grad is not None
