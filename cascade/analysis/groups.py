"""`cascade analyse groups`: which age group is hardest — the child 0-12 / teen 15-20 / adult
25-100 experiment on Adience (thesis section 6, Table 6).

Runs the full cascade with `target=adience3` (the 3-group label space on Adience's five
subject-exclusive folds) and reports precision, recall and F1 per group, accuracy per fold, the
confusion matrix (counts with precision / recall, as Table 6) and its heatmap.  The thesis's
own numbers (real Adience, fold 1) are printed beside them as `reported`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cascade import config as C
from cascade import metrics as M
from cascade.analysis import common
from cascade.report import figures
from cascade.report.tables import confusion_table
from cascade.stages.execute import Runner

#: Thesis Table 6 (real Adience, fold 1; rows true, columns predicted 0-12 / 15-20 / 25-100).
#: Its diagonal gives 92.12 % accuracy; the text quotes 92.59 %.
THESIS_TABLE6 = [[1646, 12, 9], [12, 36, 104], [66, 143, 2362]]


def group_table(pred: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Precision, recall, F1 and images per group (cascade.metrics, as scikit-learn's)."""
    prf = M.precision_recall_f1(pred["true_class"], pred["pred_class"], len(names))
    return pd.DataFrame({"group": names, "images": prf["support"], "precision": prf["precision"],
                         "recall": prf["recall"], "F1": prf["f1"]})


def thesis_rows(names: list[str]) -> pd.DataFrame:
    """The thesis's Table 6 as the same per-group precision / recall (status `reported`)."""
    cm = np.asarray(THESIS_TABLE6)
    pred = pd.DataFrame({"true_class": np.repeat(np.repeat(np.arange(3), 3), cm.ravel()),
                         "pred_class": np.repeat(np.tile(np.arange(3), 3), cm.ravel())})
    return group_table(pred, names).assign(status="reported (thesis Table 6, real Adience fold 1)")


def analyse(cfg: dict, settings: list[str], progress: bool = True) -> tuple[str, Path]:
    cfg = C.apply_overrides(cfg, ["target=adience3"])
    plan = common.full_plan(cfg)
    Runner(plan, progress=progress).run()
    node = plan.targets[0]
    folder_in = plan.home / "stages" / node.key
    pred = pd.read_csv(folder_in / "predictions.csv", dtype={"subject": str, "fold": str})
    labels = json.loads((folder_in / "labels.json").read_text())
    names = figures.group_names(labels)
    folder = Path(cfg["run"]["results_dir"]) / common.run_id("groups", cfg, [node.key])
    synthetic = common.synthetic(plan)
    groups = pd.concat([group_table(pred, names).assign(status="measured"), thesis_rows(names)],
                       ignore_index=True)
    folds = M.per_fold_table(pred["true_class"], pred["pred_class"], pred["fold"], M.accuracy, "accuracy")
    folds = folds.reset_index()
    s = M.classification_summary(pred["true_class"], pred["pred_class"], pred["fold"], len(names))
    head = common.header(plan, [node]) + [
        f"Accuracy {100 * s['accuracy']:.2f}% pooled, {100 * s['accuracy_fold_mean']:.2f} ± "
        f"{100 * s['accuracy_fold_std']:.2f}% over {s['n_folds']} folds; balanced accuracy "
        f"{100 * s['balanced_accuracy']:.2f}% (thesis, real Adience fold 1: 92.59% in the text, 92.12% from its Table 6)"]
    title = f"adience3: true vs. predicted group\n{node.label}"
    written = list(figures.confusion(pred, labels, folder / "figures" / "confusion", title, synthetic))
    written.append(confusion_table(pred, labels, folder / "confusion.md", title.replace("\n", ": ")))
    counts = pred["true_class"].value_counts().to_dict()
    written += figures.group_histogram(counts, labels, folder / "figures" / "groups", synthetic,
                                       title="adience3: images per group")
    notes = ["Confusion matrix with per-group precision and recall (thesis Table 6): `confusion.md` / "
             "`confusion.csv`; heatmap `figures/confusion`; images per group `figures/groups`."]
    md = common.write_outputs(folder, f"Child / teen / adult on Adience {folder.name}", head,
                              {"groups": groups, "folds": folds}, settings, written, notes, cfg=cfg)
    return md, folder
