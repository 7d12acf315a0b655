"""The run table: one row per cascade configuration, metrics from the fold predictions.

Why the header block: a number without its data version, cleaning counts, decision rule, MAE
aggregation, seed, backbone and weight source cannot be compared with anything, and a number
computed on the synthetic demo suite must never be mistaken for a real result.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from cascade import metrics as M
from cascade.stages.plan import Plan
from cascade.store import atomic_write_json, atomic_write_text, stable_hash


def _fmt(x: float, nd: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def row_metrics(pred: pd.DataFrame, exact_ages: bool, n_classes: int, seed: int) -> dict:
    """Age targets: expected-value MAE and the thesis Table 4 columns.  Group targets (Adience):
    exact and 1-off accuracy of the argmax group, mean ± std over folds."""
    if exact_ages:
        s = M.regression_summary(pred["true_value"], pred["pred_expected"], pred["fold"],
                                 pred["subject"], seed=seed)
        return {"MAE": s["mae_pooled"], "MAE (fold mean)": s["mae_fold_mean"],
                "MedianAE (folds)": s["fold_mae_median"], "Lower Q": s["fold_mae_q1"],
                "Upper Q": s["fold_mae_q3"], "95% CI (subject bootstrap)":
                    f"[{_fmt(s['boot_ci_low'])}, {_fmt(s['boot_ci_high'])}]",
                "CS@5": s["cs5"], "images": s["n_images"], "folds": s["n_folds"]}
    s = M.classification_summary(pred["true_class"], pred["pred_class"], pred["fold"], n_classes)
    return {"Accuracy": f"{100 * s['accuracy_fold_mean']:.2f} ± {100 * s['accuracy_fold_std']:.2f}",
            "1-off": f"{100 * s['one_off_fold_mean']:.2f} ± {100 * s['one_off_fold_std']:.2f}",
            "Balanced acc.": s["balanced_accuracy"], "images": s["n_images"], "folds": s["n_folds"]}


def run_table(plan: Plan) -> tuple[pd.DataFrame, list[str], str]:
    cfg = plan.cfg
    rows = []
    for node in plan.targets:
        folder = plan.home / "stages" / node.key
        pred = pd.read_csv(folder / "predictions.csv", dtype={"subject": str, "fold": str})
        labels = json.loads((folder / "labels.json").read_text())
        exact = labels["lo"] == labels["hi"]
        if not rows:            # every target shares the folds: one image-blind baseline row
            blind = pred.assign(pred_expected=pred["base_mean"], pred_class=pred["base_class"])
            rows.append({"configuration": "baseline: training-set mean age" if exact
                         else "baseline: commonest training group", "mode": "no image",
                         **row_metrics(blind, exact, len(labels["lo"]), cfg["seed"]), "stage key": "–"})
        cascade = "pretrained" + "".join(f" → {s}" for s in node.chain)
        rows.append({"configuration": cascade, "mode": node.params["mode"],
                     **row_metrics(pred, exact, len(labels["lo"]), cfg["seed"]), "stage key": node.key})
    table = pd.DataFrame(rows)
    synthetic = any(t.synthetic for t in plan.tables.values())
    target = plan.targets[0]
    proto = target.info["protocol"]["name"]
    header = [
        f"Target: {cfg['target']} — protocol `{proto}` ({table['folds'].iloc[0]} folds)",
        "Data: **synthetic data** (the embedded procedurally generated demo suite; not a real result)"
        if synthetic else "Data: user-supplied datasets (data.root.*)",
        f"Backbone: {cfg['backbone']}; weights: {plan.nodes[0].info['weights']} (weights={cfg['weights']})",
        "Decision rule: expected value Σ age·p (MAE); argmax group (accuracy)",
        "MAE aggregation: `MAE` pooled over all test images; `MAE (fold mean)` = mean of per-fold MAEs;"
        " MedianAE / quartiles over per-fold MAEs (thesis Table 4)",
        f"Seed: {cfg['seed']}",
    ]
    for name, t in plan.tables.items():
        steps = "; ".join(f"{r} −{n}" for r, n in t.report.steps) or "no rows dropped"
        header.append(f"Dataset {name}: {t.report.n_raw} rows → {len(t)} used ({steps})")
    run_id = f"{cfg['target']}-{cfg['backbone'].replace(':', '-')}-" + stable_hash([n.key for n in plan.targets], 8)
    return table, header, run_id


def to_markdown(table: pd.DataFrame, header: list[str]) -> str:
    cols = list(table.columns)
    cells = [[_fmt(v) if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join([*(f"- {h}" for h in header), "", *lines]) + "\n"


def write_run(plan: Plan, out_dir: Path) -> tuple[str, Path]:
    table, header, run_id = run_table(plan)
    folder = Path(out_dir) / run_id
    md = f"# Results {run_id}\n\n" + to_markdown(table, header)
    atomic_write_text(folder / "table.md", md)
    atomic_write_text(folder / "table.csv", table.to_csv(index=False))
    atomic_write_json(folder / "run.json", {"header": header, "stages": {n.label: n.key for n in plan.nodes},
                                            "config": {k: v for k, v in plan.cfg.items()}})
    return md, folder
