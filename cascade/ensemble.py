"""`cascade ensemble RUN RUN ...`: average the class probabilities of finished runs over the
same test images and report the ensemble beside its members (e.g. the VGG-19 + ResNet ensemble
of ../shared/papers/003_27229cee134be5db.txt), or a stacked meta-model (`--stack`: an MLP with
the `ensemble.*` settings, trained per fold on the members' validation probabilities).

Why the checks: an average is only meaningful over the same images, folds and classes; members
that differ in any of them are refused with what differs, never silently aligned.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cascade import metrics as M
from cascade import runtime
from cascade.data.datasets import LabelSpace
from cascade.report.header import opening
from cascade.report.tables import finished_plans, row_metrics, target_predictions, write_tables
from cascade.stages import plan as P
from cascade.store import atomic_write_json, atomic_write_text, stable_hash

KEY = ["path", "fold"]


def member(run: Path) -> tuple[str, pd.DataFrame, dict, P.Plan]:
    """The full cascade's predictions of a finished `cascade run` results folder (the plan's
    last target, whose stage folder also holds its validation predictions)."""
    plan = finished_plans(Path(run))[0]          # the first seed's
    name, (pred, labels) = list(target_predictions(plan).items())[-1]
    return f"{Path(run).name}: {plan.cfg['backbone']} {name}", pred, labels, plan


def _columns(labels: dict) -> list[str]:
    return [f"p{i}" for i in range(len(labels["lo"]))]


def with_probabilities(frame: pd.DataFrame, probs: np.ndarray, labels: dict) -> pd.DataFrame:
    """`frame` (one row per test image) with new class probabilities and the decision rules
    (expected value, argmax, posterior median) recomputed from them, as a fold writes them."""
    values = LabelSpace(tuple(labels["lo"]), tuple(labels["hi"])).values
    out = frame.copy()
    out[_columns(labels)] = probs
    for column, decided in M.decisions(probs, values).items():
        out[column] = decided
    return out


def average(preds: list[pd.DataFrame], labels: dict) -> pd.DataFrame:
    """Mean class probabilities of aligned members, with the decision rules recomputed."""
    first = preds[0].sort_values(KEY).reset_index(drop=True)
    mean = np.mean([p.sort_values(KEY)[_columns(labels)].to_numpy() for p in preds], axis=0)
    return with_probabilities(first, mean, labels)


def stack(preds: list[pd.DataFrame], vals: list[pd.DataFrame], labels: dict, seed: int,
          meta: dict) -> pd.DataFrame:
    """The stacked meta-model of ../shared/papers/003: per fold, an MLP trained on the members'
    concatenated class probabilities for the fold's validation images (never its test images)
    predicts the test images from the members' test probabilities."""
    from sklearn.neural_network import MLPClassifier

    cols, k = _columns(labels), len(labels["lo"])
    first = preds[0].sort_values(KEY).reset_index(drop=True)
    test = np.hstack([p.sort_values(KEY)[cols].to_numpy() for p in preds])
    val_x = np.hstack([v.sort_values(["fold", "row"])[cols].to_numpy() for v in vals])
    val = vals[0].sort_values(["fold", "row"]).reset_index(drop=True)
    out = np.zeros((len(first), k))
    for fold in first["fold"].unique():
        rows, train = (first["fold"] == fold).to_numpy(), (val["fold"] == fold).to_numpy()
        y = val.loc[train, "true_class"].to_numpy()
        if len(np.unique(y)) < 2:          # nothing to learn from: the members' average
            out[rows] = test[rows].reshape(rows.sum(), len(preds), k).mean(1)
            continue
        mlp = MLPClassifier(hidden_layer_sizes=tuple(meta["hidden"]), max_iter=meta["max_iter"],
                            random_state=seed).fit(val_x[train], y)
        out[np.ix_(rows, mlp.classes_)] = mlp.predict_proba(test[rows])
    return with_probabilities(first, out, labels)


def validation_of(plan: P.Plan, name: str) -> pd.DataFrame:
    path = plan.home / "stages" / plan.targets[-1].key / "validation.csv"
    if not path.exists():
        raise FileNotFoundError(f"{name}: no validation predictions ({path}); its folds were trained by a version "
                                f"that did not store them: remove its target stage folder and rerun it to stack")
    return pd.read_csv(path, dtype={"fold": str})


def check_aligned(members: list[tuple[str, pd.DataFrame, dict, P.Plan]]) -> None:
    name0, pred0, labels0, _ = members[0]
    keys0 = set(map(tuple, pred0[KEY].astype(str).to_numpy()))
    for name, pred, labels, _ in members[1:]:
        if labels != labels0:
            raise ValueError(f"ensemble: {name} classifies over other classes than {name0}")
        keys = set(map(tuple, pred[KEY].astype(str).to_numpy()))
        if keys != keys0:
            raise ValueError(f"ensemble: {name} and {name0} differ in {len(keys ^ keys0)} (image, fold) pairs; "
                             f"members must predict the same test images under the same folds")
        truth = pred.sort_values(KEY)["true_class"].to_numpy()
        if not np.array_equal(truth, pred0.sort_values(KEY)["true_class"].to_numpy()):
            raise ValueError(f"ensemble: {name} and {name0} disagree on the true labels")


def ensemble(runs: list[str], out_dir: Path, stacked: bool, meta: dict) -> tuple[str, Path]:
    """The members' table with their average (and, `stacked`, the meta-model `meta`: the
    `ensemble.*` settings) under `out_dir/ensemble-<hash>/`."""
    if len(runs) < 2:
        raise ValueError("cascade ensemble needs at least two finished runs")
    members = [member(Path(r)) for r in runs]
    check_aligned(members)
    labels, seed, tol = members[0][2], members[0][3].cfg["seed"], members[0][3].cfg["report"]["tolerance"]
    ens = average([m[1] for m in members], labels)
    rows = [{"configuration": name, "members": 1, **row_metrics(pred, labels, seed, tol)}
            for name, pred, _, _ in members]
    rows.append({"configuration": f"ensemble: mean probabilities of {len(members)}", "members": len(members),
                 **row_metrics(ens, labels, seed, tol)})
    if stacked:
        vals = [validation_of(plan, name) for name, _, _, plan in members]
        if any(not v[["fold", "row"]].equals(vals[0][["fold", "row"]]) for v in vals[1:]):
            raise ValueError("ensemble --stack: the members validated on other images (other seeds or "
                             "val_fraction); stacking needs the same validation images")
        stacked_pred = stack([m[1] for m in members], vals, labels, seed, meta)
        rows.append({"configuration": f"ensemble: stacked MLP on {len(members)} members' validation "
                                      f"probabilities", "members": len(members),
                     **row_metrics(stacked_pred, labels, seed, tol)})
    table = pd.DataFrame(rows)
    plan = members[0][3]
    header = opening(plan.cfg, plan.targets[-1].info["protocol"]["name"],
                     f", the same {table['folds'].iloc[0]} folds and {table['images'].iloc[0]} test images for "
                     f"every member", {n: t for m in members for n, t in m[3].tables.items()}) + [
        "Ensemble: the members' class probabilities averaged per image; decision rules (expected value, "
        "argmax) applied to the average" + (f"; stacked: per fold an MLP (hidden units {meta['hidden']}, at most "
        f"{meta['max_iter']} iterations) trained on the members' probabilities for the fold's validation "
        f"images" if stacked else ""),
        *[f"Member {name}: seed {m.cfg['seed']}, weights {m.nodes[0].info['weights']}"
          for name, _, _, m in members]
    ]
    rid = "ensemble-" + stable_hash([sorted(Path(r).name for r in runs), stacked, meta if stacked else None], 8)
    folder = Path(out_dir) / rid
    md = write_tables(folder, "Ensemble", table, header, "Ensemble")
    atomic_write_text(folder / "predictions.csv", ens.to_csv(index=False))
    atomic_write_json(folder / "run.json", {"command": "ensemble", "runs": [str(r) for r in runs],
                                            "stacked": stacked, "meta_model": meta, "header": header,
                                            "environment": runtime.fingerprint(members[0][3].cfg)})
    return md, folder
