"""Paired tests between the configurations of one comparison table.

Why this module: a run table lists one MAE (or accuracy) per cascade configuration, each with its
own confidence interval, and the reader is left to infer "adding agedb helps" from two numbers
whose intervals overlap.  Those numbers come from the *same* test images (the same folds), so
the question is about their *paired difference*, which is far more precise than either number.
Each table therefore gets:

* :func:`comparisons` — one row per configuration that extends another (its ``parent``, e.g.
  "pretrained → imdb → agedb" vs "pretrained → imdb"): the paired Δ with a subject-bootstrap CI,
  a paired test and its Holm-adjusted p-value over the table's rows;
* :func:`rank_test` — with ≥ 3 configurations, Friedman + Nemenyi over blocks of images (the
  input of :func:`cascade.report.figures.critical_difference`);
* :func:`comparisons_markdown` — the rows rendered for a Markdown report.

Input: per configuration, one prediction frame per seed, as a stage's ``predictions.csv``
(columns ``row``, ``subject``, ``fold``, ``true_value``, ``pred_expected``, ``true_class``,
``pred_class``).  Every statistic comes from :mod:`cascade.metrics`.

Several seeds: each image's absolute error (exact-age targets) or correctness (group targets)
is first averaged over the configuration's seeds, so a configuration is one per-image vector
whatever its seed count; the tests then compare those vectors.  Configurations are aligned by
``row``; different row sets (or different subject / fold / truth on a row) mean they were not
evaluated on the same folds and raise ``ValueError`` — a paired test on unpaired data would be
silently wrong.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from cascade import metrics as M

#: Test names written into the ``test`` column.
WILCOXON = "Wilcoxon signed-rank, per-subject |error|"
MCNEMAR = "exact McNemar, per-image correctness"
SIGN_FLIP = "paired sign-flip permutation, per-image correctness (mean over seeds)"

EXACT_COLUMNS = ["configuration", "vs", "Δ MAE", "Δ CI low", "Δ CI high", "test", "statistic",
                 "p", "p (Holm)", "subjects", "seeds"]
GROUP_COLUMNS = ["configuration", "vs", "Δ accuracy", "Δ CI low", "Δ CI high", "test",
                 "statistic", "p", "p (Holm)", "subjects", "seeds"]

_NEEDED = {True: ("row", "subject", "fold", "true_value", "pred_expected"),
           False: ("row", "subject", "fold", "true_class", "pred_class")}


# --------------------------------------------------------------------------- per-image values

def _seed_frames(name: str, frames) -> list[pd.DataFrame]:
    if isinstance(frames, pd.DataFrame):
        return [frames]
    frames = list(frames)
    if not frames:
        raise ValueError(f"configuration {name!r} has no prediction frames")
    return frames


def per_image(name: str, frames: pd.DataFrame | Sequence[pd.DataFrame], exact: bool) -> pd.DataFrame:
    """One configuration's per-image values, averaged over its seeds.

    Returns a frame indexed by ``row`` (sorted) with columns ``subject`` and ``fold`` (str),
    ``truth`` (true age or class) and ``value``: the absolute error of the expected value
    (``exact=True``) or the 0/1 correctness of the predicted class (``exact=False``), averaged
    over the seeds (so a share in [0, 1] for several seeds).  The seeds must cover the same
    rows with the same subject, fold and truth."""
    frames = _seed_frames(name, frames)
    base, values = None, []
    for i, f in enumerate(frames):
        missing = [c for c in _NEEDED[exact] if c not in f.columns]
        if missing:
            raise ValueError(f"predictions of {name!r} (seed {i}) lack columns {missing}")
        if f["row"].duplicated().any():
            raise ValueError(f"predictions of {name!r} (seed {i}) repeat rows "
                             f"{f.loc[f['row'].duplicated(), 'row'].head(5).tolist()}")
        f = f.set_index("row").sort_index()
        truth = "true_value" if exact else "true_class"
        if exact:
            v = M.absolute_errors(f["true_value"], f["pred_expected"])
        else:
            v = (f["pred_class"].to_numpy() == f["true_class"].to_numpy()).astype(float)
        cur = pd.DataFrame({"subject": f["subject"].astype(str), "fold": f["fold"].astype(str),
                            "truth": f[truth]}, index=f.index)
        if base is None:
            base = cur
        else:
            _check_same(f"{name!r} seed 0", base, f"{name!r} seed {i}", cur)
        values.append(v)
    out = base.copy()
    out["value"] = np.mean(np.vstack(values), axis=0)
    out.attrs["seeds"] = len(frames)
    return out


def _check_same(name_a: str, a: pd.DataFrame, name_b: str, b: pd.DataFrame) -> None:
    """Raise unless two per-image tables cover the same rows with the same subject/fold/truth."""
    if not a.index.equals(b.index):
        only_a = a.index.difference(b.index)
        only_b = b.index.difference(a.index)
        raise ValueError(
            f"{name_a} and {name_b} were not evaluated on the same test images (not the same "
            f"folds?): {len(a)} vs {len(b)} rows, {len(only_a)} only in the first "
            f"(e.g. {list(only_a[:5])}), {len(only_b)} only in the second (e.g. {list(only_b[:5])})")
    for col in ("subject", "fold", "truth"):
        diff = a[col].to_numpy() != b[col].to_numpy()
        if diff.any():
            raise ValueError(f"{name_a} and {name_b} disagree on {col} for {int(diff.sum())} rows "
                             f"(e.g. row {a.index[np.argmax(diff)]}): not the same folds / data")


def _tables(preds: Mapping[str, Sequence[pd.DataFrame]], exact: bool) -> dict[str, pd.DataFrame]:
    return {name: per_image(name, frames, exact) for name, frames in preds.items()}


def _seeds(a: pd.DataFrame, b: pd.DataFrame) -> int | str:
    sa, sb = a.attrs["seeds"], b.attrs["seeds"]
    return sb if sa == sb else f"{sb} vs {sa}"


# --------------------------------------------------------------------------- pairwise rows

def comparisons(preds: Mapping[str, Sequence[pd.DataFrame]], parents: Mapping[str, str | None],
                exact: bool, seed: int = 0, *, confidence: float = 0.95, n_resamples: int = 2000,
                n_permutations: int = 9999) -> pd.DataFrame:
    """Paired comparison of each configuration with the one it extends.

    ``preds``: configuration → its prediction frames, one per seed (a single DataFrame is
    taken as one seed).  ``parents``: configuration → the configuration it extends, or None
    (a configuration missing from ``parents`` is treated as None).  One output row per
    configuration with a parent, in ``preds`` order; Δ is always *configuration − vs*.

    ``exact=True`` (exact-age targets, e.g. FG-NET LOPO) — columns ``configuration``, ``vs``,
    ``Δ MAE`` (pooled MAE over images; negative = the configuration is better), ``Δ CI low`` /
    ``Δ CI high`` (paired subject bootstrap, :func:`cascade.metrics.paired_delta_ci`),
    ``test`` (:data:`WILCOXON`: :func:`cascade.metrics.wilcoxon_paired` on the per-subject
    MAEs, the independent units), ``statistic``, ``p``, ``p (Holm)`` (Holm over all rows of
    the table), ``subjects``, ``seeds``.

    ``exact=False`` (group targets, e.g. Adience) — the same with ``Δ accuracy`` (a share;
    positive = better) instead of ``Δ MAE``; the test is :data:`MCNEMAR`
    (:func:`cascade.metrics.mcnemar_exact`, statistic min(b, c)) when both configurations have
    one seed, else :data:`SIGN_FLIP` (:func:`cascade.metrics.paired_permutation_test` on the
    seed-averaged correctness, statistic = Δ accuracy; it reduces to exact McNemar for 0/1
    values).

    ``seeds`` is the seed count (an int), or "n vs m" (configuration vs parent) when they
    differ.  ``seed`` seeds the bootstrap and the permutations (reproducible tables).  Raises
    ``ValueError`` if a parent has no predictions or two compared configurations were not
    evaluated on the same rows / folds.
    """
    tables = _tables(preds, exact)
    rows = []
    for name in preds:
        parent = parents.get(name)
        if parent is None:
            continue
        if parent not in tables:
            raise ValueError(f"{name!r} extends {parent!r}, which has no predictions in this table")
        a, b = tables[parent], tables[name]
        _check_same(repr(parent), a, repr(name), b)
        delta, lo, hi = M.paired_delta_ci(a["value"], b["value"], a["subject"], confidence=confidence,
                                          n_resamples=n_resamples, seed=seed)
        if exact:
            per_a = a.groupby("subject", sort=True)["value"].mean()
            per_b = b.groupby("subject", sort=True)["value"].mean()
            t = M.wilcoxon_paired(per_a, per_b)
            test, stat, p = WILCOXON, t["statistic"], t["pvalue"]
        elif a.attrs["seeds"] == 1 and b.attrs["seeds"] == 1:
            t = M.mcnemar_exact(a["value"], b["value"])
            test, stat, p = MCNEMAR, t["statistic"], t["pvalue"]
        else:
            t = M.paired_permutation_test(a["value"], b["value"], n_resamples=n_permutations, seed=seed)
            test, stat, p = SIGN_FLIP, t["statistic"], t["pvalue"]
        rows.append({"configuration": name, "vs": parent,
                     ("Δ MAE" if exact else "Δ accuracy"): delta, "Δ CI low": lo, "Δ CI high": hi,
                     "test": test, "statistic": float(stat), "p": float(p), "p (Holm)": math.nan,
                     "subjects": int(a["subject"].nunique()), "seeds": _seeds(a, b)})
    frame = pd.DataFrame(rows, columns=EXACT_COLUMNS if exact else GROUP_COLUMNS)
    if len(frame):
        frame["p (Holm)"] = M.holm(frame["p"].to_numpy(dtype=float))
    return frame


# --------------------------------------------------------------------------- rank test

def rank_test(preds: Mapping[str, Sequence[pd.DataFrame]], exact: bool, *,
              blocks: str = "auto", min_folds: int = 5, alpha: float = 0.05) -> dict | None:
    """Friedman test + Nemenyi post-hoc among ≥ 3 configurations over the same folds.

    Blocks (the rows of the Friedman design, each ranking the configurations once): with
    ``blocks="auto"``, the *folds* when there are at least ``min_folds`` (5) of them — FG-NET
    LOPO's 82 folds, which are its subjects, or Adience's 5 official folds: a fold is the
    experiment's unit of replication (one trained model per fold, so per-subject values within a
    fold are not independent of each other); otherwise the *subjects* — a hold-out split with
    1-4 folds would give a Friedman test with too few blocks to ever reject (k = 3 over 4 blocks
    cannot reach p < 0.05 by much).  Pass ``blocks="fold"`` or ``"subject"`` to force one.  The
    block value is the MAE (``exact=True``; lower is better) or the accuracy (``exact=False``;
    higher is better) of the block's images, each image's error / correctness first averaged over
    the seeds.

    Returns :func:`cascade.metrics.friedman_nemenyi`'s dict (``names``, ``k``, ``n``, ``alpha``,
    ``mean_ranks``, ``statistic``, ``pvalue``, ``cd``, ``pairwise_pvalues``, ``significant``,
    ...) plus ``blocks`` ("fold" / "subject"), ``metric`` ("MAE" / "accuracy") and ``seeds``
    (name → seed count); None with fewer than 3 configurations.  The test is deterministic (no
    seed).
    """
    if blocks not in ("auto", "fold", "subject"):
        raise ValueError(f"blocks must be 'auto', 'fold' or 'subject', got {blocks!r}")
    if len(preds) < 3:
        return None
    tables = _tables(preds, exact)
    names = list(tables)
    ref = tables[names[0]]
    for name in names[1:]:
        _check_same(repr(names[0]), ref, repr(name), tables[name])
    if blocks == "auto":
        blocks = "fold" if ref["fold"].nunique() >= min_folds else "subject"
    scores = pd.DataFrame({name: t.groupby(blocks, sort=True)["value"].mean()
                           for name, t in tables.items()})
    res = M.friedman_nemenyi(scores, names=names, alpha=alpha, higher_is_better=not exact)
    res.update(blocks=blocks, metric="MAE" if exact else "accuracy",
               seeds={name: t.attrs["seeds"] for name, t in tables.items()})
    return res


# --------------------------------------------------------------------------- Markdown

def format_p(p: float) -> str:
    """A p-value for a table: ``0.0031``; below 10⁻⁴ in scientific notation (``1.0e-08``: how
    far below matters when several tests are corrected at once); ``< 1e-300`` for an underflow;
    ``–`` when NaN."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    if p < 1e-300:
        return "< 1e-300"
    return f"{p:.1e}" if p < 1e-4 else f"{p:.4f}"


def p_text(p: float) -> str:
    """`= 0.0031` (or `< 1e-300`), to follow a "p" in prose."""
    text = format_p(p)
    return text if text.startswith("<") else f"= {text}"


def _num(x: float, fmt: str) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _stat(x: float) -> str:
    if x is None or math.isnan(x):
        return "–"
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.4g}" if abs(x) < 1000 else f"{x:.1f}"


def rank_test_markdown(ranked: dict, heading: str) -> str:
    """:func:`rank_test`'s result as a Markdown section under `heading` (its blocks and metric
    appended): the Friedman statistic and p-value, the mean ranks, Nemenyi's critical difference
    and where the critical-difference figure is."""
    ranks = ", ".join(f"{n} {r:.2f}" for n, r in ranked["mean_ranks"].items())
    return (f"\n## {heading} over {ranked['n']} {ranked['blocks']}s ({ranked['metric']})\n\n"
            f"χ² = {ranked['statistic']:.3f}, p {p_text(ranked['pvalue'])}; mean ranks (1 = best): {ranks}; "
            f"Nemenyi critical difference {ranked['cd']:.3f} (α = {ranked['alpha']}); "
            f"figure `figures/critical_difference.png`.\n")


def comparisons_markdown(frame: pd.DataFrame) -> str:
    """:func:`comparisons`' rows as a Markdown table plus a one-line legend ("" for no rows).

    Δ is written with its sign and 2 decimals (Δ accuracy in percentage points), the CI as
    ``[low, high]``, p-values as ``0.0031`` / ``< 1e-4``."""
    if frame is None or len(frame) == 0:
        return ""
    acc = "Δ accuracy" in frame.columns
    dcol, scale = ("Δ accuracy", 100.0) if acc else ("Δ MAE", 1.0)
    header = ["configuration", "vs", "Δ accuracy (pp)" if acc else "Δ MAE (years)", "95% CI (Δ)",
              "test", "statistic", "p", "p (Holm)", "subjects", "seeds"]

    def cell(s) -> str:
        return str(s).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * 2 + ["---"]
                                                            + ["---:"] * 5) + "|"]
    for r in frame.itertuples(index=False):
        r = dict(zip(frame.columns, r))
        lo, hi = r["Δ CI low"] * scale, r["Δ CI high"] * scale
        ci = "–" if math.isnan(lo) or math.isnan(hi) else f"[{lo:.2f}, {hi:.2f}]"
        lines.append("| " + " | ".join(cell(v) for v in [
            r["configuration"], r["vs"], _num(r[dcol] * scale, "+.2f"), ci, r["test"],
            _stat(r["statistic"]), format_p(r["p"]), format_p(r["p (Holm)"]), r["subjects"],
            r["seeds"]]) + " |")
    legend = ("Δ = configuration − vs on the same test images"
              + (" (positive = more accurate)" if acc else " (negative = lower MAE)")
              + "; 95% CI: paired bootstrap over subjects; p (Holm): adjusted over this table's rows.")
    return "\n".join(lines) + "\n\n" + legend + "\n"
