"""Regressors on pooled CNN features under a protocol (thesis Table 5, Figure 12).

`cascade regress STAGE [STAGE ...]`: for each stage (the pretrained face-recognition model, or a
fine-tuned cascade prefix such as `imdb,agedb`) and each feature mode (`last:max`, `first:max`,
`last:none`, ...), the features of the target's images are extracted once, then every protocol
fold fits the engine on the other subjects' features and predicts the held-out subject.

Each fold's predictions and the fitted model's description are written atomically the moment the
fold ends (under `$CASCADE_HOME/regress/<key>/folds/`), so a rerun fits only missing folds; the
folds run through the same runner as fine-tuning folds (forked or loky processes, or a dask cluster), a
failing fold is retried once and then reported while the others finish.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from cascade import config as C
from cascade import metrics as M
from cascade.data.datasets import LabelSpace
from cascade.protocols import folds as protocol_folds
from cascade.protocols import load_protocol
from cascade.regress import engines
from cascade.regress.features import Features, Mode, extract
from cascade.report.header import cleaning_line, opening
from cascade.stages import read_folds
from cascade.runtime import device
from cascade.stages.execute import fold_seed, model_source
from cascade.stages.trained import chain_plan, stage_chain
from cascade.stages.placement import cpu_placement
from cascade.stages.workers import run_fold_stage
from cascade.store import StageDir, atomic_write_json, atomic_write_text, stable_hash

REGRESS_VERSION = 1


# ----------------------------------------------------------------------------- stages as extractors
def stage_extractor(cfg: dict, spec: str, progress: bool):
    """The trained model of a cascade prefix (training what is missing, like `cascade run`),
    the target's image cache, and the plan node it came from."""
    plan, runner, node = chain_plan(cfg, stage_chain(spec, cfg), progress)
    cache = runner.cache(cfg["target"])
    model = model_source(plan, node).build(LabelSpace.of(cache.table), cfg["seed"])
    return plan, node, model, cache


# ----------------------------------------------------------------------------- folds
@dataclasses.dataclass
class RegressFold:
    """One fold of one regression (picklable: runs in a forked, loky or dask worker)."""

    name: str
    train: np.ndarray
    test: np.ndarray
    features: str                # features.npy, memory-mapped by every fold
    ages: np.ndarray
    subjects: np.ndarray
    out: str                     # folds/<name>.csv, written last
    engine: dict
    seed: int
    threads: int

    def run(self, jobs: int) -> None:
        X = np.load(self.features, mmap_mode="r")
        out = Path(self.out)
        pred, description = engines.fit_predict(
            self.engine, np.asarray(X[self.train]), self.ages[self.train], np.asarray(X[self.test]),
            self.seed, out.parent / f".{self.name}.work", self.threads)
        atomic_write_json(out.with_suffix(".json"), {"fold": self.name, "n_train": int(len(self.train)),
                                                     **description})
        frame = pd.DataFrame({"row": self.test, "subject": self.subjects[self.test], "fold": self.name,
                              "true_value": self.ages[self.test], "pred": pred})
        atomic_write_text(out, frame.to_csv(index=False))


def protocol_of(cfg: dict) -> dict:
    name = cfg["regress"]["protocol"] or C.stage_params(cfg, cfg["target"], "full")["protocol"]
    return load_protocol(name)


def regress_features(cfg: dict, feats: Features, engine: dict, progress: bool, desc: str) -> tuple[pd.DataFrame, dict]:
    """All folds of the protocol on one feature array; returns the pooled predictions (every
    fold's test rows) and the per-fold model descriptions.  Finished folds are not refitted."""
    index = feats.index
    if not (index["age_lo"] == index["age_hi"]).all():
        raise ValueError(f"regress: the {feats.meta['dataset']} labels are age groups; regression "
                         f"needs exact ages (fgnet, agedb, utkface)")
    spec = protocol_of(cfg)
    folds = protocol_folds(index, spec, cfg["split_seed"])
    if cfg["regress"]["folds"]:
        folds = folds[:cfg["regress"]["folds"]]
    key = stable_hash({"v": REGRESS_VERSION, "features": feats.path.name, "protocol": spec,
                       "folds": cfg["regress"]["folds"], "engine": {k: v for k, v in engine.items() if k != "env"},
                       "seed": cfg["seed"]})
    d = StageDir(C.cascade_home(cfg) / "regress", key)
    ages = index["age_lo"].to_numpy(float)
    subjects = index["subject"].astype(str).to_numpy()
    where = cpu_placement(cfg, len(folds))
    threads = where.threads

    def write() -> list[str]:
        atomic_write_json(d.file("config.json"), {"features": feats.meta, "protocol": spec,
                                                  "engine": engine, "seed": cfg["seed"]})
        todo = [RegressFold(name, train, test, str(feats.path / "features.npy"), ages, subjects,
                            str(d.path / "folds" / f"{name}.csv"), engine, fold_seed(cfg["seed"], name), threads)
                for name, train, test in folds
                if not all((d.path / "folds" / f"{name}.{ext}").exists() for ext in ("csv", "json"))]
        run_fold_stage(todo, cfg, progress, desc, d.file("log.txt"), where)
        pred = read_folds(d.path / "folds" / f"{name}.csv" for name, _, _ in folds)
        atomic_write_text(d.file("predictions.csv"), pred.to_csv(index=False))
        models = {name: json.loads((d.path / "folds" / f"{name}.json").read_text())
                  for name, _, _ in folds}
        atomic_write_json(d.file("models.json"), models)
        return ["predictions.csv", "models.json", "config.json",       # and every fold's
                *(f"folds/{name}.{ext}" for name, _, _ in folds for ext in ("csv", "json"))]

    d.fill("regression", write)
    return (pd.read_csv(d.file("predictions.csv"), dtype={"subject": str, "fold": str}),
            json.loads(d.file("models.json").read_text()))


# ----------------------------------------------------------------------------- the table
def modes_of(cfg: dict) -> list[Mode]:
    given = cfg["regress"]["modes"]
    return [Mode.parse(m) for m in given] if given else [Mode(cfg["features"]["layer"], cfg["features"]["pooling"])]


def row(pred: pd.DataFrame, seed: int) -> dict:
    """Table 5's MAE and R², each pooled over images and as the mean over folds."""
    s = M.regression_summary(pred["true_value"], pred["pred"], pred["fold"], pred["subject"], seed=seed)
    fold_r2 = M.per_fold_table(pred["true_value"], pred["pred"], pred["fold"], M.r2_score, "r2")["r2"]
    return {"MAE": s["mae_pooled"], "MAE (fold mean)": s["mae_fold_mean"], "MedianAE (folds)": s["fold_mae_median"],
            "R²": s["r2"], "R² (fold mean)": float(fold_r2.mean()), "CS@5": s["cs5"],
            "images": s["n_images"], "folds": s["n_folds"]}


def ensemble_summary(models: dict) -> str:
    """How much auto-sklearn found per fold: the ensemble size, and the folds where its budget
    bought nothing but the dummy regressor (a number from those is "predict the mean")."""
    members = [fold.get("models") for fold in models.values()]
    if not all(members):
        return "one pipeline per fold"
    dummy = sum(all(m["class"] == "MyDummyRegressor" for m in ms) for ms in members)
    return f"median {np.median([len(ms) for ms in members]):g} models per fold; dummy only in {dummy}/{len(members)} folds"


def regress(cfg: dict, stages: list[str], progress: bool = True) -> tuple[pd.DataFrame, list[str], dict, bool]:
    """Every (stage, feature mode) under the protocol; the table rows, its header, and the
    predictions and model descriptions per row (for figures and the results folder)."""
    engine = engines.spec(cfg)
    fcfg = cfg["features"]
    rows, details, tables, backbone_weights = [], {}, {}, None
    for stage in stages:
        plan, node, model, cache = stage_extractor(cfg, stage, progress)
        tables.update(plan.tables)
        backbone_weights = plan.nodes[0].info["weights"]
        label = node.label
        for mode in modes_of(cfg):
            feats = extract(model, cache, mode, node.key, label, C.cascade_home(cfg), device(cfg),
                            fcfg["batch_size"], fcfg["max_gb"], progress, cfg["train"]["numerics"])
            name = f"{label} [{mode}]"
            pred, models = regress_features(cfg, feats, engine, progress, name)
            rows.append({"feature extractor": label, "layer": mode.layer, "pooling": mode.pooling,
                         "dims": feats.meta["shape"][1], **row(pred, cfg["seed"]),
                         "engine": engine["name"], "engine version": engine["version"],
                         "budget": engine["budget"], "fitted": ensemble_summary(models), "seed": cfg["seed"],
                         "stage key": node.key})
            details[name] = {"predictions": pred, "models": models, "features": feats.meta}
    synthetic = any(t.synthetic for t in tables.values())
    spec = protocol_of(cfg)
    scope = (f" ({rows[0]['folds']} folds"
             + (f", the first {cfg['regress']['folds']} only: regress.folds" if cfg["regress"]["folds"] else "") + ")")
    header = opening(cfg, spec["name"], scope, tables, backbone_weights) + [
        "Features: the stage's body on the target's cached images, no augmentation; `last` = the body's "
        "last convolutional output, `first` = the first convolutional layer after its activation; pooled "
        "per channel by global max / average, or flattened (`none`)",
        f"Engine: {engine['name']} — {engine['version']}; budget {engine['budget']}; seed {cfg['seed']}",
        "Decision rule: the regressor's continuous age output (no classes)",
        "MAE / R² aggregation: `MAE`, `R²` pooled over all test images; `(fold mean)` = mean of per-fold values "
        "(R² undefined for a fold whose test ages are all equal: left out of its mean)",
    ]
    header += [cleaning_line(name, t) for name, t in tables.items()]
    return pd.DataFrame(rows), header, details, synthetic
