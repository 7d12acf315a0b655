"""The thesis's hyper-parameter search (section 4): every learning rate × batch size of a grid,
each trained for one epoch from the stage's parent, chosen by validation loss.

For an intermediate stage the trials use its 80/20 split; for the target they use the training
sets of its first `tune.folds` protocol folds (thesis: the first 6 FG-NET folds, the first
Adience fold), each with its subject-exclusive validation share, and average over them.  Each
trial's result is stored under `$CASCADE_HOME/tune/<key>/` as it ends, so a rerun (or a crash)
only trains the missing trials.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from cascade import config as C
from cascade.data.datasets import LabelSpace
from cascade.progress import bar as progress_bar
from cascade.protocols import folds as protocol_folds
from cascade.stages import plan as P
from cascade.runtime import configure, device
from cascade.stages.execute import Runner, fold_split, model_source, stage_split
from cascade.store import atomic_write_json, atomic_write_text, stable_hash
from cascade.train.trainer import Split, fit


def _node(plan: P.Plan, stage: str) -> P.Node:
    """The node that trains `stage`: an intermediate stage, or (by default) the full cascade's target."""
    for node in plan.nodes:
        if node.kind == "train" and node.stage == stage:
            return node
    if stage == plan.cfg["target"]:
        return plan.targets[-1]
    raise C.ConfigError(f"tune.stage={stage} is not in this run's stages "
                        f"({', '.join(plan.cfg['stage'])}) nor its target ({plan.cfg['target']})")


def _splits(runner: Runner, node: P.Node, n_folds: int, targets: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    cfg, frame = runner.cfg, runner.cache(node.stage).table.frame
    subjects = frame["subject"].to_numpy()
    if node.kind == "train":
        return [stage_split(subjects, node.params, cfg["seed"])]
    return [fold_split(subjects, train, node.params, cfg["seed"], name, targets)      # the folds' own splits
            for name, train, _ in protocol_folds(frame.assign(label=targets), node.info["protocol"],
                                                 cfg["split_seed"])[:n_folds]]


def tune(cfg: dict, progress: bool = True) -> tuple[pd.DataFrame, Path]:
    """Run (or resume) the grid; write and return the table of all trials."""

    t = cfg["tune"]
    plan = P.build(cfg)
    stage = t["stage"] or cfg["target"]
    node = _node(plan, stage)
    runner = Runner(plan, progress=progress)
    for parent in plan.nodes:                       # the parent chain must exist first
        if parent.kind == "train" and parent.chain == node.chain[:len(parent.chain)] and parent is not node:
            runner.run_train(parent)
    cache = runner.cache(node.stage)
    labels = LabelSpace.of(cache.table, node.params.get("classes"))
    targets = labels.encode(cache.table.frame["age_lo"], cache.table.frame["age_hi"])
    splits = _splits(runner, node, t["folds"], targets)
    key = stable_hash({"node": node.info, "folds": len(splits), "epochs": t["epochs"]})
    folder = plan.home / "tune" / key
    grid = list(itertools.product(t["lr"], t["batch_size"]))
    configure(cfg, 1)
    rows = []
    for lr, bs in progress_bar(grid, desc=f"tune {stage}", enabled=progress):
        out = folder / f"lr{lr:g}_bs{bs}.json"
        if not out.exists():
            params = {**node.params, "lr": float(lr), "batch_size": int(bs), "epochs": int(t["epochs"]),
                      "select": "last"}
            runs = []
            for i, (train, val) in enumerate(splits):
                model = model_source(plan, node.parent).build(labels, cfg["seed"])
                ckpt = folder / f".lr{lr:g}_bs{bs}_{i}.ckpt.pt"
                h = fit(model, Split(cache.images, targets, train, val), params, cfg["augment"],
                        labels.values, ckpt, cfg["seed"], device(cfg), log=lambda m: None)["history"][-1]
                ckpt.unlink(missing_ok=True)
                runs.append(h)
            atomic_write_json(out, {"lr": lr, "batch_size": bs, "val_loss": float(np.mean([r["val_loss"] for r in runs])),
                                    "val_mae": float(np.mean([r["val_mae"] for r in runs])), "splits": len(runs)})
        rows.append(json.loads(out.read_text()))
    table = pd.DataFrame(rows).sort_values(["lr", "batch_size"], ascending=[False, True]).reset_index(drop=True)
    best = table["val_loss"].idxmin()
    table["chosen"] = ["← lowest validation loss" if i == best else "" for i in table.index]
    results = Path(cfg["run"]["results_dir"]) / f"tune-{stage}-{cfg['backbone'].replace(':', '-')}-{key[:8]}"
    synthetic = any(x.synthetic for x in plan.tables.values())
    head = [f"Grid search for stage {node.label} ({len(splits)} split(s), {t['epochs']} epoch(s) per trial, "
            f"chosen by validation loss; thesis section 4)",
            f"Data: {'**synthetic data**' if synthetic else 'user-supplied datasets'}; backbone {cfg['backbone']}; "
            f"seed {cfg['seed']}"]
    from cascade.report.tables import to_markdown
    md = f"# Tune {stage}\n\n" + to_markdown(table, head)
    atomic_write_text(results / "table.md", md)
    atomic_write_text(results / "table.csv", table.to_csv(index=False))
    return table, results
