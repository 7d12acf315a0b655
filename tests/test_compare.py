"""Paired tests between configurations: McNemar, Holm, the paired subject bootstrap of Δ, the
sign-flip permutation test, :mod:`cascade.report.compare` and the critical-difference figure."""
from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cascade import metrics as M
from cascade.report import compare as C
from cascade.report import figures as F

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- synthetic frames

def _age_frame(err: np.ndarray, n_sub: int = 30, per: int = 6, seed: int = 0,
               folds: int | None = None) -> pd.DataFrame:
    """FG-NET-shaped predictions whose signed errors are ``err`` (one per image); one fold per
    subject unless ``folds`` groups the subjects into that many folds."""
    rng = np.random.default_rng(seed)
    n = n_sub * per
    true = rng.integers(0, 70, n).astype(float)
    subj = np.repeat([f"{i:03d}" for i in range(n_sub)], per)
    fold = subj if folds is None else np.repeat(np.arange(n_sub) % folds, per).astype(str)
    return pd.DataFrame({"row": np.arange(n), "subject": subj, "fold": fold, "true_value": true,
                         "pred_expected": true + err, "true_class": true.astype(int),
                         "pred_class": true.astype(int)})


def _group_frame(correct: np.ndarray, seed: int = 0, n_sub: int = 50) -> pd.DataFrame:
    """Adience-shaped predictions over 8 groups, 5 folds; ``correct`` per image."""
    rng = np.random.default_rng(seed)
    n = correct.size
    true = rng.integers(0, 8, n)
    pred = np.where(correct, true, (true + 1) % 8)
    subj = np.arange(n) % n_sub
    return pd.DataFrame({"row": np.arange(n), "subject": subj.astype(str),
                         "fold": (subj % 5).astype(str), "true_value": true.astype(float),
                         "pred_expected": pred.astype(float), "true_class": true,
                         "pred_class": pred})


# --------------------------------------------------------------------------- metrics

def test_mcnemar_hand_counted():
    # 10 both right, 3 only A right (b), 9 only B right (c), 5 both wrong
    a = np.array([1] * 10 + [1] * 3 + [0] * 9 + [0] * 5)
    b = np.array([1] * 10 + [0] * 3 + [1] * 9 + [0] * 5)
    res = M.mcnemar_exact(a, b)
    assert (res["b"], res["c"], res["n"]) == (3, 9, 27)
    # two-sided exact binomial: 2 · P(X ≤ 3 | 12, ½) = 2 · (1 + 12 + 66 + 220) / 4096
    assert res["pvalue"] == pytest.approx(2 * 299 / 4096)
    assert res["pvalue"] == pytest.approx(stats.binomtest(3, 12, 0.5).pvalue)
    assert res["statistic"] == 3.0
    # order of images does not matter; bools work; no discordant pairs → p = 1
    perm = np.random.default_rng(0).permutation(a.size)
    assert M.mcnemar_exact(a[perm].astype(bool), b[perm].astype(bool))["pvalue"] == res["pvalue"]
    assert M.mcnemar_exact(a, a)["pvalue"] == 1.0
    with pytest.raises(ValueError, match="correctness"):
        M.mcnemar_exact([0.5, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="differ in length"):
        M.mcnemar_exact([1, 0], [1, 0, 1])


def test_holm_hand_computed():
    # sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → monotone 0.06
    np.testing.assert_allclose(M.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    # NaN stays NaN and is not counted: m = 2
    out = M.holm([0.01, math.nan, 0.04])
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.04])
    np.testing.assert_allclose(M.holm([0.5, 0.9]), [1.0, 1.0])        # capped at 1
    s = M.holm(pd.Series([0.01, 0.02], index=["x", "y"]))
    assert list(s.index) == ["x", "y"] and s["x"] == pytest.approx(0.02)
    assert M.holm([]).size == 0 and np.isnan(M.holm([math.nan])).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.holm([1.5])


def test_paired_delta_ci():
    rng = np.random.default_rng(4)
    n_sub, per = 40, 5
    subjects = np.repeat(np.arange(n_sub), per)
    level = np.repeat(rng.gamma(2.0, 3.0, n_sub), per)             # subject-level difficulty
    a = 2.0 + level + np.abs(rng.normal(0, 1, subjects.size))       # |errors| ≥ 2 years
    b = a - 1.0 + rng.normal(0, 0.3, a.size)                          # B: 1 year better
    delta, lo, hi = M.paired_delta_ci(a, b, subjects, seed=3)
    assert delta == pytest.approx(b.mean() - a.mean())
    assert lo < delta < hi and lo < -1.0 < hi and hi < 0              # contains the true Δ = −1
    # the paired CI is much narrower than the unpaired MAE CIs' spread
    lo_a, hi_a = M.bootstrap_mae_ci(np.zeros_like(a), a, subjects, seed=3)
    assert hi - lo < (hi_a - lo_a) / 3
    # exactly reproducible for a seed; another seed moves the ends
    assert M.paired_delta_ci(a, b, subjects, seed=3) == (delta, lo, hi)
    assert M.paired_delta_ci(a, b, subjects, seed=4)[1:] != (lo, hi)
    # identical inputs → zero-width interval at 0
    assert M.paired_delta_ci(a, a, subjects) == (0.0, 0.0, 0.0)
    # a share (accuracy): Δ = accuracy_b − accuracy_a
    ca, cb = (rng.random(a.size) < 0.5).astype(float), (rng.random(a.size) < 0.8).astype(float)
    d, lo, hi = M.paired_delta_ci(ca, cb, subjects, n_resamples=500)
    assert d == pytest.approx(cb.mean() - ca.mean()) and lo < d < hi and lo > 0
    # degenerate: one subject → no interval
    d1 = M.paired_delta_ci(a[:5], b[:5], subjects[:5])
    assert math.isnan(d1[1]) and math.isnan(d1[2])
    with pytest.raises(ValueError, match="differ in length"):
        M.paired_delta_ci(a, b[:-1], subjects)


def test_paired_permutation_test_is_mcnemar_for_binary():
    a = np.array([1] * 10 + [1] * 3 + [0] * 9 + [0] * 5, dtype=float)
    b = np.array([1] * 10 + [0] * 3 + [1] * 9 + [0] * 5, dtype=float)
    res = M.paired_permutation_test(a, b)
    assert res["exact"] and res["n_nonzero"] == 12
    assert res["pvalue"] == pytest.approx(M.mcnemar_exact(a, b)["pvalue"])
    assert res["statistic"] == pytest.approx(b.mean() - a.mean())
    assert M.paired_permutation_test(a, a) == {"statistic": 0.0, "n": 27, "n_nonzero": 0,
                                               "pvalue": 1.0, "exact": True}
    # shares (3 seeds): a clear improvement is detected, reproducibly
    rng = np.random.default_rng(2)
    sa = rng.integers(0, 4, 400) / 3
    sb = np.clip(sa + rng.choice([0, 1 / 3], 400, p=[0.6, 0.4]), 0, 1)
    r1 = M.paired_permutation_test(sa, sb, n_resamples=2000, seed=1)
    assert not r1["exact"] and r1["pvalue"] < 0.01 and r1["statistic"] > 0
    assert M.paired_permutation_test(sa, sb, n_resamples=2000, seed=1) == r1
    assert M.paired_permutation_test(sa, sb, n_resamples=2000, alternative="less")["pvalue"] > 0.5


def test_friedman_nemenyi_pairwise_matches_demsar_formula():
    rng = np.random.default_rng(5)
    m = rng.normal(size=(15, 4)) + np.array([0, 0.3, 1.0, 0.1])
    res = M.friedman_nemenyi(m)
    k, n = 4, 15
    r = stats.rankdata(m, axis=1).mean(0)
    diff = np.abs(r[:, None] - r[None, :])
    ref = stats.studentized_range.sf(diff / math.sqrt(k * (k + 1) / (6 * n)) * math.sqrt(2), k, np.inf)
    ref = np.where(diff == 0, 1.0, ref)
    np.testing.assert_allclose(res["pairwise_pvalues"].to_numpy(), ref, rtol=1e-9)
    assert res["alpha"] == 0.05


# --------------------------------------------------------------------------- comparisons

def _cascade(a, b):
    return {"pretrained → imdb": a, "pretrained → imdb → agedb": b}


PARENTS = {"pretrained → imdb": None, "pretrained → imdb → agedb": "pretrained → imdb"}


def test_comparisons_exact_clear_improvement_and_identity():
    rng = np.random.default_rng(0)
    err = rng.normal(0, 6, 180)
    better = err.copy()
    better[:150] *= 0.5                                     # errors halved for 25 of 30 subjects
    out = C.comparisons(_cascade([_age_frame(err)], [_age_frame(better)]), PARENTS, exact=True)
    assert list(out.columns) == C.EXACT_COLUMNS and len(out) == 1
    r = out.iloc[0]
    assert r["configuration"] == "pretrained → imdb → agedb" and r["vs"] == "pretrained → imdb"
    assert r["Δ MAE"] == pytest.approx(np.abs(better).mean() - np.abs(err).mean())
    assert r["Δ MAE"] < 0 and r["Δ CI low"] < r["Δ MAE"] < r["Δ CI high"] < 0
    assert r["test"] == C.WILCOXON and r["p"] < 0.01 and r["p (Holm)"] == pytest.approx(r["p"])
    assert r["subjects"] == 30 and r["seeds"] == 1
    # the Wilcoxon pairs per-subject MAEs
    sub = np.repeat(np.arange(30), 6)
    per_a = pd.Series(np.abs(err)).groupby(sub).mean()
    per_b = pd.Series(np.abs(better)).groupby(sub).mean()
    assert r["p"] == pytest.approx(stats.wilcoxon(per_a, per_b).pvalue)
    # identical frames: Δ = 0, zero-width CI, p = 1; the frame's row order does not matter
    f = _age_frame(err)
    same = C.comparisons(_cascade([f], [f.sample(frac=1, random_state=1)]), PARENTS, exact=True)
    s = same.iloc[0]
    assert s["Δ MAE"] == 0 and s["Δ CI low"] == 0 and s["Δ CI high"] == 0
    assert s["p"] == 1.0 and s["p (Holm)"] == 1.0
    # reproducible for a seed
    again = C.comparisons(_cascade([_age_frame(err)], [_age_frame(better)]), PARENTS, exact=True)
    pd.testing.assert_frame_equal(out, again)


def test_comparisons_rows_must_match():
    err = np.random.default_rng(1).normal(0, 5, 180)
    a, b = _age_frame(err), _age_frame(err).iloc[:-6]
    with pytest.raises(ValueError, match="not evaluated on the same test images"):
        C.comparisons(_cascade([a], [b]), PARENTS, exact=True)
    moved = _age_frame(err)
    moved.loc[0, "fold"] = "999"
    with pytest.raises(ValueError, match="disagree on fold"):
        C.comparisons(_cascade([a], [moved]), PARENTS, exact=True)
    with pytest.raises(ValueError, match="seed 1"):                 # seeds of one configuration
        C.comparisons(_cascade([a, b], [a]), PARENTS, exact=True)
    with pytest.raises(ValueError, match="no predictions"):
        C.comparisons({"x": [a]}, {"x": "missing"}, exact=True)
    dup = pd.concat([a, a.iloc[:1]])
    with pytest.raises(ValueError, match="repeat rows"):
        C.comparisons(_cascade([dup], [a]), PARENTS, exact=True)


def test_comparisons_several_seeds_averaged():
    rng = np.random.default_rng(2)
    errs_a = [rng.normal(0, 6, 180) for _ in range(3)]
    errs_b = [0.6 * e for e in errs_a]
    out = C.comparisons(_cascade([_age_frame(e) for e in errs_a], [_age_frame(e) for e in errs_b]),
                        PARENTS, exact=True)
    r = out.iloc[0]
    mean_a = np.mean([np.abs(e) for e in errs_a], axis=0)
    mean_b = np.mean([np.abs(e) for e in errs_b], axis=0)
    assert r["Δ MAE"] == pytest.approx(mean_b.mean() - mean_a.mean())
    assert r["seeds"] == 3 and r["p"] < 0.01
    mixed = C.comparisons(_cascade([_age_frame(errs_a[0])], [_age_frame(e) for e in errs_b]),
                          PARENTS, exact=True)
    assert mixed.iloc[0]["seeds"] == "3 vs 1"


def test_comparisons_adience_uses_mcnemar_then_sign_flip():
    rng = np.random.default_rng(3)
    ca = rng.random(600) < 0.55
    cb = ca | (rng.random(600) < 0.25)                         # B fixes a quarter of A's misses
    out = C.comparisons(_cascade([_group_frame(ca)], [_group_frame(cb)]), PARENTS, exact=False)
    assert list(out.columns) == C.GROUP_COLUMNS
    r = out.iloc[0]
    assert r["test"] == C.MCNEMAR
    ref = M.mcnemar_exact(ca, cb)
    assert r["p"] == pytest.approx(ref["pvalue"]) and r["statistic"] == ref["statistic"]
    assert r["Δ accuracy"] == pytest.approx(cb.mean() - ca.mean())
    assert r["Δ accuracy"] > 0 and 0 < r["Δ CI low"] < r["Δ CI high"] and r["p"] < 0.01
    # several seeds: seed-averaged correctness, sign-flip permutation test
    seeds_a = [ca, rng.random(600) < 0.55, rng.random(600) < 0.55]
    seeds_b = [s | (rng.random(600) < 0.25) for s in seeds_a]
    many = C.comparisons(_cascade([_group_frame(s) for s in seeds_a],
                                  [_group_frame(s) for s in seeds_b]), PARENTS, exact=False)
    m = many.iloc[0]
    assert m["test"] == C.SIGN_FLIP and m["seeds"] == 3 and m["p"] < 0.01
    assert m["Δ accuracy"] == pytest.approx(np.mean(seeds_b) - np.mean(seeds_a))
    # identical: p = 1
    same = C.comparisons(_cascade([_group_frame(ca)], [_group_frame(ca)]), PARENTS, exact=False)
    assert same.iloc[0]["p"] == 1.0 and same.iloc[0]["Δ accuracy"] == 0


def test_comparisons_holm_over_rows_and_markdown():
    rng = np.random.default_rng(6)
    err = rng.normal(0, 6, 180)
    preds = {"p": [_age_frame(err)], "p → i": [_age_frame(err * 0.5)],
             "p → i → a": [_age_frame(err * 0.5 + rng.normal(0, 0.05, 180))], "alone": [_age_frame(err)]}
    parents = {"p": None, "p → i": "p", "p → i → a": "p → i", "alone": None}
    out = C.comparisons(preds, parents, exact=True)
    assert list(out["configuration"]) == ["p → i", "p → i → a"]
    np.testing.assert_allclose(out["p (Holm)"], M.holm(out["p"].to_numpy()))
    md = C.comparisons_markdown(out)
    lines = md.splitlines()
    assert lines[0].startswith("| configuration | vs | Δ MAE (years) | 95% CI (Δ)")
    assert "| p → i | p | -" in lines[2] and f"| {out.iloc[0]['p']:.1e} |" in lines[2]
    lo, hi = out.iloc[0][["Δ CI low", "Δ CI high"]]
    assert f"[{lo:.2f}, {hi:.2f}]" in lines[2]
    assert f"| {out.iloc[1]['p (Holm)']:.4f} |" in lines[3]
    assert C.format_p(0.00312) == "0.0031" and C.format_p(3e-6) == "3.0e-06" and C.format_p(0.0) == "< 1e-300"
    assert C.format_p(math.nan) == "–"
    assert C.comparisons_markdown(C.comparisons(preds, {}, exact=True)) == ""
    acc = C.comparisons(_cascade([_group_frame(np.arange(100) % 2 == 0)],
                                 [_group_frame(np.arange(100) % 3 != 0)]), PARENTS, exact=False)
    amd = C.comparisons_markdown(acc)
    assert "Δ accuracy (pp)" in amd
    assert f"{100 * acc.iloc[0]['Δ accuracy']:+.2f}" in amd


# --------------------------------------------------------------------------- rank test and figure

def test_rank_test_and_critical_difference_figure(tmp_path):
    rng = np.random.default_rng(7)
    err = rng.normal(0, 6, 180)
    preds = {"a": [_age_frame(err)], "b": [_age_frame(err * 0.5)],
             "c": [_age_frame(err * 0.8 + rng.normal(0, 0.5, 180))]}
    res = C.rank_test(preds, exact=True)
    ref = M.friedman_nemenyi(pd.DataFrame({k: np.abs(v[0]["pred_expected"] - v[0]["true_value"])
                                           .groupby(v[0]["fold"]).mean() for k, v in preds.items()}))
    assert res["blocks"] == "fold" and res["n"] == 30 and res["metric"] == "MAE"
    assert res["pvalue"] == pytest.approx(ref["pvalue"]) and res["pvalue"] < 0.01
    assert res["mean_ranks"].idxmin() == "b"
    # fewer than 5 folds → subjects are the blocks; forcing folds gives the 3 folds
    few = {k: [_age_frame(e, folds=3) for e in (err * s,)] for k, s in (("a", 1), ("b", .5), ("c", .8))}
    assert C.rank_test(few, exact=True)["blocks"] == "subject"
    assert C.rank_test(few, exact=True)["n"] == 30
    assert C.rank_test(few, exact=True, blocks="fold")["n"] == 3
    assert C.rank_test({"a": preds["a"], "b": preds["b"]}, exact=True) is None
    # accuracy: higher is better
    ca = rng.random(500) < 0.5
    g = {"a": [_group_frame(ca)], "b": [_group_frame(ca | (rng.random(500) < 0.5))],
         "c": [_group_frame(ca & (rng.random(500) < 0.7))]}
    gres = C.rank_test(g, exact=False)
    assert gres["blocks"] == "fold" and gres["n"] == 5 and gres["mean_ranks"]["b"] == 1.0

    files = F.critical_difference(res, tmp_path / "cd", synthetic=True)
    assert [p.suffix for p in files] == [".png", ".pdf"]
    assert files[0].read_bytes()[:8] == PNG_SIGNATURE
    assert "synthetic data" in files.title
    assert not list(tmp_path.glob(".*tmp*"))


def test_critical_difference_figure_is_the_same_bytes_under_any_hash_seed(tmp_path):
    """scikit-posthocs draws each crossbar through a *set* of labels, so its points came in an
    order that changes with PYTHONHASHSEED: the same result gave other PDF bytes per process."""
    import subprocess
    import sys

    script = (
        "import sys, numpy as np, pandas as pd\n"
        "from cascade.report import figures as F\n"
        "names = ['resnet50', 'senet50', 'vgg16', 'mobilenet', 'demo']\n"
        "ranks = pd.Series([1.9, 2.4, 2.9, 3.3, 4.5], index=names)\n"
        "p = pd.DataFrame(0.9, index=names, columns=names)\n"
        "p.loc['demo', ['resnet50', 'senet50']] = p.loc[['resnet50', 'senet50'], 'demo'] = 0.001\n"
        "F.critical_difference({'mean_ranks': ranks, 'pairwise_pvalues': p, 'cd': 1.2, 'statistic': 9.1,\n"
        "                       'pvalue': 0.03, 'n': 30}, sys.argv[1])\n")
    pdfs = []
    for seed in range(4):
        stem = tmp_path / f"cd{seed}"
        subprocess.run([sys.executable, "-c", script, str(stem)], check=True,
                       env={**os.environ, "PYTHONHASHSEED": str(seed)})
        pdfs.append(stem.with_suffix(".pdf").read_bytes())
    assert all(pdf == pdfs[0] for pdf in pdfs)
