"""The run table: one row per cascade configuration, metrics from the fold predictions.

Why the header block: a number without its data version, cleaning counts, decision rule, MAE
aggregation, seed, backbone and weight source cannot be compared with anything, and a number
computed on the synthetic demo suite must never be mistaken for a real result.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from cascade import metrics as M
from cascade.report import figures, latex, literature
from cascade.stages.plan import Plan
from cascade.store import StageDir, atomic_write_json, atomic_write_text, stable_hash


def _fmt(x: float, nd: int = 2) -> str:
    return "–" if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _pct(mean: float, std: float) -> str:
    """A share in percent as mean ± std over folds (the std only where there are several folds)."""
    return f"{100 * mean:.2f}" + ("" if math.isnan(std) else f" ± {100 * std:.2f}")


def row_metrics(pred: pd.DataFrame, labels: dict, seed: int, tolerance=()) -> dict:
    """Age targets: expected-value MAE and the thesis Table 4 columns.  Group targets (Adience):
    exact and 1-off accuracy of the argmax group, mean ± std over folds.  Age ranges over images
    whose exact age is known (`labels.<stage>=bins:...`): the group columns plus quadratic kappa,
    class-index MAE and the MAE in years of the expected bin centre."""
    if labels["lo"] == labels["hi"]:
        s = M.regression_summary(pred["true_value"], pred["pred_expected"], pred["fold"],
                                 pred["subject"], seed=seed)
        return {"MAE": s["mae_pooled"], "MAE (fold mean)": s["mae_fold_mean"],
                "MedianAE (folds)": s["fold_mae_median"], "Lower Q": s["fold_mae_q1"],
                "Upper Q": s["fold_mae_q3"], "95% CI (subject bootstrap)":
                    f"[{_fmt(s['boot_ci_low'])}, {_fmt(s['boot_ci_high'])}]",
                "CS@5": s["cs5"],
                **{f"±{k} y (argmax)": M.tolerance_accuracy(pred["true_value"], pred["pred_argmax"], float(k))
                   for k in tolerance},
                "images": s["n_images"], "folds": s["n_folds"]}
    s = M.classification_summary(pred["true_class"], pred["pred_class"], pred["fold"], len(labels["lo"]))
    row = {"Accuracy": _pct(s["accuracy_fold_mean"], s["accuracy_fold_std"]),
           "1-off": _pct(s["one_off_fold_mean"], s["one_off_fold_std"]),
           "Balanced acc.": s["balanced_accuracy"]}
    if "true_age" in pred and pred["true_age"].notna().all():
        row.update({"κ (quadratic)": s["kappa_quadratic"], "class MAE": s["class_mae"],
                    "MAE (years, bin centres)": M.mae_pooled(pred["true_age"], pred["pred_expected"])})
    return {**row, "images": s["n_images"], "folds": s["n_folds"]}


def data_line(synthetic: bool) -> str:
    """The header line that says where the data came from: a number from the demo suite must
    never pass for a real result."""
    return ("Data: **synthetic data** (the embedded procedurally generated demo suite; not a real result)"
            if synthetic else "Data: user-supplied datasets (data.root.*)")


def cleaning_line(name: str, table, manifest: str | None = None) -> str:
    """The header line of one dataset: its rows read and used, and every cleaning rule's count."""
    steps = "; ".join(f"{r} −{n}" for r, n in table.report.steps) or "no rows dropped"
    at = f" (manifest {manifest[:12]})" if manifest else ""
    return f"Dataset {name}{at}: {table.report.n_raw} rows → {len(table)} used ({steps})"


def write_tables(folder: Path, title: str, table: pd.DataFrame, header: list[str], caption: str) -> str:
    """`table.md` (under `# title` with the header), `table.csv` and `table.tex` (booktabs) in
    `folder`; returns the Markdown."""
    name = Path(folder).name
    md = f"# {title} {name}\n\n" + to_markdown(table, header)
    atomic_write_text(Path(folder) / "table.md", md)
    atomic_write_text(Path(folder) / "table.csv", table.to_csv(index=False))
    atomic_write_text(Path(folder) / "table.tex", latex.to_latex(table, header, caption=f"{caption} ({name})",
                                                                 label=f"tab:{name}"))
    return md


def target_predictions(plan: Plan) -> dict[str, tuple[pd.DataFrame, dict]]:
    """{configuration name: (predictions, labels.json)} of every finished target, read once for
    the tables and the figures."""
    out = {}
    for node in plan.targets:
        folder = plan.home / "stages" / node.key
        out["pretrained" + "".join(f" → {s}" for s in node.chain)] = (
            pd.read_csv(folder / "predictions.csv", dtype={"subject": str, "fold": str}),
            json.loads((folder / "labels.json").read_text()))
    return out


def run_table(plan: Plan, preds: dict | None = None) -> tuple[pd.DataFrame, list[str], str]:
    cfg = plan.cfg
    preds = preds or target_predictions(plan)
    rows = []
    for node, (cascade, (pred, labels)) in zip(plan.targets, preds.items()):
        exact = labels["lo"] == labels["hi"]
        if not rows:            # every target shares the folds: one image-blind baseline row
            blind = pred.assign(pred_expected=pred["base_mean"], pred_class=pred["base_class"])
            rows.append({"configuration": "baseline: training-set mean age" if exact
                         else "baseline: commonest training group", "mode": "no image",
                         **row_metrics(blind.assign(pred_argmax=blind["base_mean"]), labels, cfg["seed"],
                                      cfg["report"]["tolerance"]), "stage key": "–"})
        rows.append({"configuration": cascade, "mode": node.params["mode"],
                     **row_metrics(pred, labels, cfg["seed"], cfg["report"]["tolerance"]), "stage key": node.key})
    table = pd.DataFrame(rows)
    synthetic = any(t.synthetic for t in plan.tables.values())
    target = plan.targets[0]
    proto = target.info["protocol"]["name"]
    header = [
        f"Target: {cfg['target']} — protocol `{proto}` ({table['folds'].iloc[0]} folds)",
        data_line(synthetic),
        f"Backbone: {cfg['backbone']}; weights: {plan.nodes[0].info['weights']} (weights={cfg['weights']})",
        "Decision rule: expected value Σ age·p (MAE); argmax group (accuracy)",
        "MAE aggregation: `MAE` pooled over all test images; `MAE (fold mean)` = mean of per-fold MAEs;"
        " MedianAE / quartiles over per-fold MAEs (thesis Table 4)",
        f"Seed: {cfg['seed']}",
    ]
    for name, t in plan.tables.items():
        manifest = next(n.info["manifest"] for n in plan.nodes if n.stage == name)   # what the keys hashed
        header.append(cleaning_line(name, t, manifest))
    prefix = f"{cfg['run']['name']}-" if cfg["run"]["name"] else ""
    run_id = f"{prefix}{cfg['target']}-{cfg['backbone'].replace(':', '-')}-" + stable_hash([n.key for n in plan.targets], 8)
    return table, header, run_id


def to_markdown(table: pd.DataFrame, header: list[str]) -> str:
    cols = list(table.columns)
    cells = [[_fmt(v) if isinstance(v, float) or v is pd.NA else str(v) for v in row]
             for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join([*(f"- {h}" for h in header), "", *lines]) + "\n"


def write_run(plan: Plan, out_dir: Path, settings: list[str] | None = None) -> tuple[str, Path]:
    """Tables (Markdown, CSV, LaTeX, with the literature's reported rows where the thesis gives
    them) and figures of a finished plan under `out_dir/<run-id>/`.  `settings` (the key=value
    words of the run) go into run.json, so `cascade report` can rebuild the same plan."""
    preds = target_predictions(plan)
    table, header, run_id = run_table(plan, preds)
    # One writer per results folder at a time (two runs of one cascade end here together); under
    # the lock, temporary files of a writer killed mid-write are garbage and are removed.
    with StageDir(Path(out_dir), run_id).lock():
        _sweep(Path(out_dir) / run_id)
        return _write_run(plan, preds, table, header, run_id, Path(out_dir) / run_id, settings)


def _sweep(folder: Path) -> None:
    for sub in (folder, folder / "figures"):
        if sub.is_dir():
            for p in sub.glob(".*.tmp*"):
                p.unlink(missing_ok=True)


def _write_run(plan: Plan, preds: dict, table: pd.DataFrame, header: list[str], run_id: str, folder: Path,
               settings: list[str] | None) -> tuple[str, Path]:
    table.insert(len(table.columns) - 1, "status", "measured")
    if plan.cfg["target"] in ("fgnet", "adience"):
        lit = literature.rows(plan.cfg["target"])
        lit["configuration"] = lit["configuration"] + " " + lit["reference"] + " (" + lit["source"] + ")"
        table = pd.concat([table, lit.drop(columns=["reference", "source"])], ignore_index=True)
        header = header + ["Rows with status `reported` are published results (thesis Tables 2-3), "
                           "not computed here"]
        for col in ("images", "folds"):                  # counts stay integers beside empty cells
            table[col] = table[col].astype("Int64")
    md = write_tables(folder, "Results", table, header, f"{plan.cfg['target']}: cascade configurations")
    figures = write_figures(plan, preds, folder / "figures")
    atomic_write_json(folder / "run.json", {"header": header, "settings": settings or [],
                                            "stages": {n.label: n.key for n in plan.nodes},
                                            "figures": [str(p.relative_to(folder)) for p in figures],
                                            "config": {k: v for k, v in plan.cfg.items()}})
    return md, folder


def _confusion_table(pred: pd.DataFrame, labels: dict, path: Path, name: str) -> Path:
    """Counts of true (rows) vs. predicted (columns) groups with per-group precision and recall
    (thesis Table 6), as Markdown and CSV."""
    counts, _, names = figures.confusion_data(pred, labels)
    frame = pd.DataFrame(counts, index=[f"true {n}" for n in names], columns=names, dtype=float)
    tp = counts.diagonal().astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["recall"] = tp / counts.sum(1)
        precision = tp / counts.sum(0)
    frame.loc["precision"] = list(precision) + [float("nan")]
    cells = [[str(int(v)) for v in row] + [_fmt(r)] for row, r in zip(counts, frame["recall"].iloc[:-1])]
    cells.append([_fmt(p) for p in precision] + ["–"])
    shown = pd.DataFrame(cells, index=list(frame.index), columns=list(frame.columns)).reset_index(names="")
    atomic_write_text(path, f"# Confusion matrix: {name}\n\n" + to_markdown(shown, []))
    atomic_write_text(path.with_suffix(".csv"), frame.to_csv(float_format="%.6g"))
    return path


def _class_report(pred: pd.DataFrame, labels: dict, path: Path, name: str) -> Path:
    """Per-class precision, recall, F1 and support with macro and support-weighted averages, and
    the row-normalised confusion matrix (each row: where that class's images went), as Markdown
    and CSV: the per-class view the related studies report."""
    names = figures.group_names(labels)
    k = len(names)
    r = M.precision_recall_f1(pred["true_class"], pred["pred_class"], k)
    frame = pd.DataFrame({"precision": r["precision"], "recall": r["recall"], "f1": r["f1"],
                          "support": r["support"]}, index=names)
    for avg in ("macro", "weighted"):
        frame.loc[f"{avg} avg"] = [r[avg]["precision"], r[avg]["recall"], r[avg]["f1"], int(r["support"].sum())]
    frame["support"] = frame["support"].astype(int)
    rows = pd.DataFrame(M.confusion_matrix(pred["true_class"], pred["pred_class"], k, normalize=True),
                        index=[f"true {n}" for n in names], columns=names)
    atomic_write_text(path, f"# Per-class report: {name}\n\n" + to_markdown(frame.reset_index(names="class"), [])
                      + "\n## Confusion matrix, rows normalised (recall on the diagonal)\n\n"
                      + to_markdown(rows.reset_index(names=""), []))
    atomic_write_text(path.with_suffix(".csv"), frame.to_csv(float_format="%.6g", index_label="class"))
    atomic_write_text(path.with_name(path.stem + "_confusion_rows.csv"), rows.to_csv(float_format="%.6g"))
    return path


def write_figures(plan: Plan, preds: dict[str, tuple[pd.DataFrame, dict]], folder: Path) -> list[Path]:
    """The run's figures: per-fold MAE, error vs. age and cumulative scores for age targets
    (thesis Figures 10-12), a confusion heatmap per configuration for group targets (Table 6 /
    Figure 13), and the age distributions of the datasets in use (Figures 5-6)."""
    synthetic = any(t.synthetic for t in plan.tables.values())
    labels = next(iter(preds.values()))[1]
    preds = {name: pred for name, (pred, _) in preds.items()}
    written: list[Path] = []
    if labels["lo"] == labels["hi"]:
        written += figures.fold_mae(preds, folder / "fold_mae", synthetic)
        written += figures.error_vs_age(preds, folder / "error_vs_age", synthetic)
        written += figures.cumulative_score(preds, folder / "cumulative_score", synthetic)
    else:
        for i, (name, pred) in enumerate(preds.items()):
            written += figures.confusion(pred, labels, folder / f"confusion_{i}", name, synthetic)
            written.append(_confusion_table(pred, labels, folder.parent / f"confusion_{i}.md", name))
            written.append(_class_report(pred, labels, folder.parent / f"classes_{i}.md", name))
        counts = next(iter(preds.values()))["true_class"].value_counts().to_dict()
        written += figures.group_histogram(counts, labels, folder / "groups", synthetic)
    ages = {name: t.frame["age_lo"].to_numpy() for name, t in plan.tables.items()
            if (t.frame["age_lo"] == t.frame["age_hi"]).all()}
    if ages:
        written += figures.age_distributions(ages, folder / "age_distributions", synthetic)
    return [Path(p) for p in written]
