"""The results folder of `cascade regress`: thesis Table 5 (MAE, R² per feature extractor) as
Markdown, CSV and LaTeX, Figure 12 (per-fold MAE per extractor), and the fitted models.

Why the models file: an auto-sklearn result is an ensemble searched under a time budget; the
members and their weights per fold are what a reader needs to judge (and reproduce) the number.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cascade import runtime
from cascade.report import figures
from cascade.report.tables import write_tables
from cascade.store import atomic_write_json, stable_hash


def run_id(cfg: dict, table: pd.DataFrame) -> str:
    keys = sorted(table["stage key"] + ":" + table["layer"] + ":" + table["pooling"])
    engine = f"{table['engine version'].iloc[0]}|{table['budget'].iloc[0]}|{cfg['regress']['folds']}|{cfg['regress']['protocol']}"
    return f"regress-{cfg['target']}-{cfg['backbone'].replace(':', '-')}-{cfg['regress']['engine']}-" \
           + stable_hash([keys, engine, cfg["seed"]], 8)


def write(cfg: dict, table: pd.DataFrame, header: list[str], details: dict, out_dir: Path,
          words: list[str], synthetic: bool) -> tuple[str, Path]:
    """Write the folder `out_dir/<run-id>/`; `words` (the command's stages and settings) go
    into run.json, so `cascade report` rebuilds it (a rerun fits nothing: every fold is stored).
    `synthetic`: whether any dataset is the demo suite (the figures say so)."""
    rid = run_id(cfg, table)
    folder = Path(out_dir) / rid
    md = write_tables(folder, "Regression on pooled CNN features", table, header,
                      f"{cfg['target']}: regressors on pooled CNN features")
    preds = {name: d["predictions"].assign(pred_expected=d["predictions"]["pred"]) for name, d in details.items()}
    written = figures.fold_mae(preds, folder / "figures" / "fold_mae", synthetic,
                               title=f"MAE per fold, {table['engine'].iloc[0]} on pooled CNN features")
    atomic_write_json(folder / "models.json", {name: {"features": d["features"], "folds": d["models"]}
                                               for name, d in details.items()})
    atomic_write_json(folder / "run.json", {"command": "regress", "header": header, "words": words,
                                            "environment": runtime.fingerprint(cfg),
                                            "figures": [str(Path(p).relative_to(folder)) for p in written]})
    return md, folder


def words_of(folder: Path) -> list[str] | None:
    """The command words of a regression results folder (None: not one)."""
    meta = json.loads((Path(folder) / "run.json").read_text())
    return meta["words"] if meta.get("command") == "regress" else None
