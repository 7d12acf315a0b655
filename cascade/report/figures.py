"""The study's figures (thesis Figures 5-6 and 10-14) from stage predictions, as PNG + PDF.

Why these choices:

* Every number plotted comes from :mod:`cascade.metrics` (per-fold MAE, CS@k, confusion
  matrices), so a figure can never disagree with the run table it illustrates.
* Figures are built on a bare :class:`matplotlib.figure.Figure` attached to the Agg canvas, not
  through ``pyplot``: no display backend is needed on a headless worker, there is no global
  figure registry (nothing to leak or forget to close across a long report run), and — unlike
  ``matplotlib.use("Agg")`` — importing this module does not switch the backend of a notebook
  or GUI session that imports it.
* Each file is written to a temporary name in the target folder and renamed into place, so a
  report killed mid-write never leaves a truncated PNG/PDF that looks finished.  The temporary
  name keeps the real extension because matplotlib picks the PNG/PDF backend from it.
* ``synthetic=True`` puts "synthetic data" into the visible title *and* the files' Title
  metadata: a plot of the procedurally generated demo suite must never pass for a real result.

Inputs: a "predictions" DataFrame is a stage's ``predictions.csv`` (columns ``fold``,
``true_class``, ``true_value``, ``pred_expected``, ``pred_class``, ...); ``labels`` is its
``labels.json`` (``{"lo": [...], "hi": [...]}``).  Each function returns a :class:`FigureFiles`
— the list of written paths, carrying the figure for inspection.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cascade import metrics as M

SYNTHETIC = "synthetic data"
FORMATS = ("png", "pdf")


def _file_mode() -> int:
    """What a plain ``open(path, "w")`` would give: mkstemp's private 0600 would hide shared
    figures from the rest of a research group (same rule as :mod:`cascade.store`)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


class FigureFiles(list):
    """The written paths (``[<stem>.png, <stem>.pdf]``) plus the rendered ``figure`` and its
    ``title``, so callers and tests can check what a figure says without parsing images."""

    def __init__(self, paths: Sequence[Path], figure: Figure, title: str):
        super().__init__(paths)
        self.figure = figure
        self.title = title


# --------------------------------------------------------------------------- helpers

def _new_figure(width: float = 7.0, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _title(text: str, synthetic: bool) -> str:
    """The visible title; the marker goes in the title itself, not a caption that gets cropped."""
    return f"{text} ({SYNTHETIC})" if synthetic else text


def _save(fig: Figure, stem: str | os.PathLike, title: str, tight: bool = False,
          formats: Sequence[str] = FORMATS) -> FigureFiles:
    """Write ``<stem>.png`` and ``<stem>.pdf`` (or `formats`) atomically (temp file in the same
    folder, then ``os.replace``); fixed metadata dates keep reruns byte-stable.  ``tight``: the
    page grows to every artist, for labels drawn outside the axes (the critical-difference
    diagram's)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for ext in formats:
        final = stem.parent / f"{stem.name}.{ext}"
        fd, tmp = tempfile.mkstemp(dir=stem.parent, prefix=f".{stem.name}.", suffix=f".tmp.{ext}")
        os.fchmod(fd, _file_mode())
        os.close(fd)
        meta = {"Title": title}
        if ext == "pdf":
            meta.update(CreationDate=None, ModDate=None)
        try:
            fig.savefig(tmp, format=ext, dpi=150, metadata=meta, **({"bbox_inches": "tight"} if tight else {}))
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        written.append(final)
    return FigureFiles(written, fig, title)


def _fold_order(folds) -> list:
    """Fold ids in natural order ("2" before "10"; FG-NET's "001".."082" as numbers)."""
    def key(f):
        s = str(f)
        return (0, int(s), s) if s.lstrip("-").isdigit() else (1, 0, s)
    return sorted(pd.unique(pd.Series(folds).astype(str)), key=key)


def group_names(labels: Mapping) -> list[str]:
    """Tick labels for classes: "0-2", "4-6", ... for age groups, "25" for exact ages."""
    return [f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in zip(labels["lo"], labels["hi"])]


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", frameon=False)


# --------------------------------------------------------------------------- per-fold MAE

def fold_mae_table(preds_by_config: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per-fold MAE (expected value vs. true age), folds × configurations, folds in natural
    order — the numbers behind thesis Figures 10-12 (via :func:`cascade.metrics.per_fold_mae`)."""
    cols = {}
    for name, pred in preds_by_config.items():
        t = M.per_fold_mae(pred["true_value"], pred["pred_expected"], pred["fold"].astype(str))
        cols[name] = t["mae"]
    table = pd.DataFrame(cols)
    return table.loc[_fold_order(table.index)]


def fold_mae(preds_by_config: Mapping[str, pd.DataFrame], stem, synthetic: bool = False,
             baselines: Mapping[str, float] | None = None,
             title: str = "MAE per fold (expected value)",
             seeds: Mapping[str, Sequence[pd.DataFrame]] | None = None) -> FigureFiles:
    """Thesis Figures 10-12: one marker series per configuration over the folds (left) and the
    spread of per-fold MAEs as box plots (right; outliers are what the thesis discusses).
    ``baselines`` (name → MAE, e.g. literature values) are drawn as dotted lines, as in Fig. 11.
    ``seeds`` (name → one prediction frame per seed): each fold's marker is the mean over the
    seeds and a bar spans the seeds' lowest to highest MAE of that fold."""
    per_seed = [fold_mae_table({n: frames[i] for n, frames in seeds.items()})
                for i in range(len(next(iter(seeds.values()))))] if seeds else None
    table = sum(per_seed) / len(per_seed) if per_seed else fold_mae_table(preds_by_config)
    fig = _new_figure(10.0, 4.5)
    ax, box = fig.subplots(1, 2, width_ratios=[3, 1])
    x = np.arange(len(table))
    for name in table.columns:
        if per_seed:
            lo = np.min([t[name].to_numpy() for t in per_seed], axis=0)
            hi = np.max([t[name].to_numpy() for t in per_seed], axis=0)
            mean = table[name].to_numpy()
            ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], marker="o", ms=3, lw=0.8, capsize=1.5,
                        label=f"{name} (mean, range over {len(per_seed)} seeds)")
        else:
            ax.plot(x, table[name].to_numpy(), marker="o", ms=3, lw=0.8, label=name)
    for i, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, ls=":", lw=1.2, color=f"C{(len(table.columns) + i) % 10}", label=name)
    step = max(1, len(x) // 20)
    ax.set_xticks(x[::step], table.index[::step], rotation=90, fontsize="x-small")
    ax.set(xlabel="fold (held-out subject / split)", ylabel="MAE (years)")
    _legend(ax)
    box.boxplot([table[c].dropna().to_numpy() for c in table.columns])
    box.set_xticks(np.arange(1, len(table.columns) + 1), [str(c) for c in table.columns],
                   rotation=30, ha="right", fontsize="x-small")
    box.set(ylabel="per-fold MAE (years)")
    full = _title(title, synthetic)
    fig.suptitle(full)
    return _save(fig, stem, full)


# --------------------------------------------------------------------------- error vs. age

def error_by_age_table(pred: pd.DataFrame, bin_width: int = 5) -> pd.DataFrame:
    """MAE (expected value) per true-age bin ``[a, a + bin_width)``: index = bin start, columns
    ``mae`` and ``n`` — sparse bins are where the thesis (Fig. 13) locates the large errors."""
    bins = (np.floor(pred["true_value"].to_numpy(float) / bin_width) * bin_width).astype(int)
    return M.per_fold_table(pred["true_value"], pred["pred_expected"], bins, M.mae_pooled, "mae")


def error_vs_age(preds_by_config: Mapping[str, pd.DataFrame], stem, synthetic: bool = False,
                 bin_width: int = 5, title: str = "MAE vs. true age") -> FigureFiles:
    """Mean absolute error of the expected value per true-age bin, one line per configuration,
    with the image count per bin underneath (why errors grow where the label space is sparse)."""
    fig = _new_figure(7.0, 5.0)
    ax, hist = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    counts = None
    for name, pred in preds_by_config.items():
        t = error_by_age_table(pred, bin_width)
        ax.plot(t.index + bin_width / 2, t["mae"], marker="o", ms=3, label=name)
        counts = t["n"] if counts is None else counts
    if counts is not None:
        hist.bar(counts.index + bin_width / 2, counts.to_numpy(), width=bin_width * 0.9, color="0.6")
    ax.set(ylabel="MAE (years)")
    hist.set(xlabel=f"true age (years, {bin_width}-year bins)", ylabel="images")
    _legend(ax)
    full = _title(title, synthetic)
    ax.set_title(full)
    return _save(fig, stem, full)


# --------------------------------------------------------------------------- cumulative score

def cumulative_score(preds_by_config: Mapping[str, pd.DataFrame], stem, synthetic: bool = False,
                     ks: Sequence[int] = tuple(range(11)),
                     title: str = "Cumulative score") -> FigureFiles:
    """CS@k (share of images with |error| ≤ k years, expected value) for k = 0..10 per
    configuration — the curve the age-estimation literature uses besides the MAE."""
    fig = _new_figure(6.0, 4.5)
    ax = fig.subplots()
    for name, pred in preds_by_config.items():
        cs = M.cumulative_scores(pred["true_value"], pred["pred_expected"], ks)
        ax.plot(list(cs), [100 * v for v in cs.values()], marker="o", ms=3, label=name)
    ax.set(xlabel="error tolerance k (years)", ylabel="CS@k (% of images)", ylim=(0, 100))
    ax.set_xticks(list(ks))
    _legend(ax)
    full = _title(title, synthetic)
    ax.set_title(full)
    return _save(fig, stem, full)


# --------------------------------------------------------------------------- confusion matrix

def confusion_data(pred: pd.DataFrame, labels: Mapping,
                   pred_col: str = "pred_class") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(counts, row-normalised matrix, tick labels) via :func:`cascade.metrics.confusion_matrix`;
    rows = true class, columns = predicted (thesis Table 6 / Fig. 13).  A class with no true
    images gets a NaN row rather than a fake row of zeros."""
    n = len(labels["lo"])
    counts = M.confusion_matrix(pred["true_class"], pred[pred_col], n)
    norm = M.confusion_matrix(pred["true_class"], pred[pred_col], n, normalize=True)
    return counts, norm, group_names(labels)


def confusion(pred: pd.DataFrame, labels: Mapping, stem, title: str = "Confusion matrix",
              synthetic: bool = False, pred_col: str = "pred_class") -> FigureFiles:
    """Row-normalised confusion heatmap (colour = share of the true class), counts annotated
    when the matrix is small enough to read (group targets: Adience 8 or 3 groups)."""
    counts, norm, names = confusion_data(pred, labels, pred_col)
    n = len(names)
    side = min(12.0, max(4.5, 0.55 * n + 2))
    fig = _new_figure(side + 1, side)
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="share of true class")
    if n <= 12:
        for i in range(n):
            for j in range(n):
                v = norm[i, j]
                dark = np.isfinite(v) and v > 0.5
                ax.text(j, i, f"{counts[i, j]}\n{v:.2f}" if np.isfinite(v) else "–",
                        ha="center", va="center", fontsize="x-small",
                        color="white" if dark else "black")
    fs = "small" if n <= 12 else "xx-small"
    ax.set_xticks(range(n), names, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center",
                  fontsize=fs)
    ax.set_yticks(range(n), names, fontsize=fs)
    ax.set(xlabel="predicted", ylabel="true")
    full = _title(title, synthetic)
    ax.set_title(full)
    return _save(fig, stem, full)


# --------------------------------------------------------------------------- label distributions

def age_distributions(ages_by_dataset: Mapping[str, Sequence[float]], stem,
                      synthetic: bool = False,
                      title: str = "Cumulative age distribution") -> FigureFiles:
    """Thesis Figure 5: empirical CDF of image ages per dataset (IMDB, AgeDB, FG-NET-AD) — why
    a source dataset whose ages sit elsewhere transfers less to the target."""
    fig = _new_figure(6.0, 4.5)
    ax = fig.subplots()
    for name, ages in ages_by_dataset.items():
        a = np.sort(np.asarray(ages, dtype=float))
        a = a[np.isfinite(a)]
        if a.size:
            ax.step(a, 100 * np.arange(1, a.size + 1) / a.size, where="post",
                    label=f"{name} (n={a.size})")
    ax.set(xlabel="age (years)", ylabel="images with age ≤ x (%)", ylim=(0, 100))
    ax.grid(alpha=0.3)
    _legend(ax)
    full = _title(title, synthetic)
    ax.set_title(full)
    return _save(fig, stem, full)


def group_histogram(counts: Sequence[int] | Mapping[int, int], labels: Mapping | Sequence[str],
                    stem, synthetic: bool = False,
                    title: str = "Images per age group") -> FigureFiles:
    """Thesis Figure 6: images per Adience age group, counts on the bars (the imbalance that
    makes accuracy alone misleading).  ``counts`` is per class index (a sequence, or a mapping
    class → count with missing classes meaning 0); ``labels`` a labels.json dict or names."""
    names = group_names(labels) if isinstance(labels, Mapping) else [str(s) for s in labels]
    if isinstance(counts, Mapping):
        counts = [int(counts.get(i, 0)) for i in range(len(names))]
    values = np.asarray(counts, dtype=int)
    if values.size != len(names):
        raise ValueError(f"{values.size} counts for {len(names)} groups")
    fig = _new_figure(6.5, 4.5)
    ax = fig.subplots()
    bars = ax.bar(range(len(names)), values, color="C0")
    ax.bar_label(bars, fontsize="x-small")
    ax.set_xticks(range(len(names)), names)
    ax.set(xlabel="age group (years)", ylabel="images")
    full = _title(title, synthetic)
    ax.set_title(full)
    return _save(fig, stem, full)


# --------------------------------------------------------------------------- class activation maps

def cam_grid(rows: Mapping[str, tuple[np.ndarray, np.ndarray]], columns: Sequence[str], stem,
             synthetic: bool = False, title: str = "Grad-CAM") -> FigureFiles:
    """Thesis Figure 14: one row per model (``rows``: name → (images (N, H, W, 3) uint8, maps
    (N, H, W) in [0, 1])), one column per image (the same images in every row, each at its
    model's input size), the map over the face as a translucent heat map."""
    n_rows, n_cols = len(rows), len(columns)
    fig = _new_figure(1.6 * n_cols + 1.6, 1.6 * n_rows + 0.6)
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    for r, (name, (images, maps)) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.imshow(images[c])
            ax.imshow(maps[c], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize="small")
        axes[r, 0].set_ylabel(name, fontsize="x-small", rotation=0, ha="right", va="center")
    full = _title(title, synthetic)
    fig.suptitle(full, fontsize="medium")
    return _save(fig, stem, full)


# --------------------------------------------------------------------------- overlap examples

def overlap_pairs(pairs: Sequence[tuple[np.ndarray, np.ndarray, str]], stem, synthetic: bool = False,
                  title: str = "Same photo in an earlier stage and a later split") -> FigureFiles:
    """The leakage audit's figure: each found pair as two cached crops side by side (the earlier
    stage's left), captioned with both paths, the pHash distance and the colour difference."""
    per_row = min(2, len(pairs))
    rows = -(-len(pairs) // per_row)
    fig = _new_figure(3.6 * per_row, 2.4 * rows + 0.5)
    axes = np.asarray(fig.subplots(rows, 2 * per_row, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for k, (left, right, caption) in enumerate(pairs):
        for ax, image in zip(axes[2 * k:2 * k + 2], (left, right)):
            ax.set_axis_on()
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[2 * k].set_xlabel(caption, fontsize="xx-small", loc="left")
    full = _title(title, synthetic)
    fig.suptitle(full, fontsize="medium")
    return _save(fig, stem, full)


# --------------------------------------------------------------------------- critical difference

def critical_difference(result: Mapping, stem, synthetic: bool = False,
                        title: str = "Critical difference (Friedman + Nemenyi)") -> FigureFiles:
    """Critical-difference diagram (Demšar 2006) of a Friedman + Nemenyi result.

    ``result`` is :func:`cascade.metrics.friedman_nemenyi`'s dict (or
    :func:`cascade.report.compare.rank_test`'s): each configuration sits at its mean rank
    (1 = best) on the axis, and a bar joins configurations whose Nemenyi p-value is ≥ α, i.e.
    that the test cannot tell apart; the CD segment above the axis shows the critical
    difference of mean ranks.  Drawn by ``scikit_posthocs.critical_difference_diagram`` on this
    module's own figure (no pyplot state); the Friedman result goes underneath."""
    import scikit_posthocs as sp

    ranks = pd.Series(result["mean_ranks"], dtype=float)
    alpha = float(result.get("alpha", 0.05))
    k = len(ranks)
    fig = _new_figure(8.0, 1.8 + 0.32 * k)
    fig.set_layout_engine("none")          # the labels sit outside the axes: the tight page holds them
    ax = fig.subplots()
    drawn = sp.critical_difference_diagram(ranks, result["pairwise_pvalues"], cd=result.get("cd"),
                                           alpha=alpha, ax=ax, label_fmt_left="{label} ({rank:.2f})",
                                           label_fmt_right="({rank:.2f}) {label}",
                                           label_props={"fontsize": "small"})
    # it draws each crossbar through a set of labels, in an order that changes with the hash
    # seed: the same bar, left to right, gives the same bytes in every process
    for line in (ln for bar in drawn["crossbars"] for ln in bar):
        line.set_xdata(np.sort(line.get_xdata()))
    stat, p = result.get("statistic", np.nan), result.get("pvalue", np.nan)
    blocks = result.get("blocks", "fold")
    from cascade.report.compare import p_text as said
    p_text = "= –" if not np.isfinite(p) else said(p)
    stat_text = "–" if not np.isfinite(stat) else f"{stat:.2f}"
    fig.supxlabel(f"mean rank (1 = best) over N = {result.get('n', '?')} {blocks}s; Friedman "
                  f"χ² = {stat_text}, p {p_text}; bars join configurations not different at "
                  f"α = {alpha:g} (Nemenyi)", fontsize="small")
    full = _title(title, synthetic)
    fig.suptitle(full)
    return _save(fig, stem, full, tight=True)
