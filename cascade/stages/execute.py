"""Running a plan: each node under its stage folder, skipped when complete, resumed when not.

Target nodes run their protocol's folds (in parallel when `jobs` > 1, see stages/workers.py); each fold
writes its predictions atomically the moment it ends, so a rerun only trains missing folds.
"""
from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cascade import metrics as M
from cascade.data.datasets import LabelSpace
from cascade.models import AgeModel, build_backbone
from cascade.models.backbones import Preprocessing
from cascade.models import weights as W
from cascade.protocols import folds as protocol_folds
from cascade.protocols import validation_split
from cascade.runtime import configure, device, numeric_environment
from cascade.stages import log_to, read_folds
from cascade.stages.leakage import leakage
from cascade.stages.placement import gpu_count, placement, resolve_devices
from cascade.stages.plan import Node, Plan
from cascade.stages.workers import run_fold_stage
from cascade.store import StageDir, atomic_write_bytes, atomic_write_json, atomic_write_text, stable_hash
from cascade.tracking import Track, kept
from cascade.train import distributed as D
from cascade.train.trainer import Split, cut_of, fit, predict_proba, shared_features, shares_features


@dataclasses.dataclass
class ModelSource:
    """Where a node's starting weights come from (picklable, so fold workers can rebuild it)."""

    backbone: str
    head: dict
    body_weights: str | None = None      # root: a safetensors body file (None = random init)
    stage_dir: str | None = None         # trained parent: its folder (weights + labels)
    preprocessing: dict | None = None    # the root weights' recorded preprocessing (None: backbone's)

    def _backbone(self):
        bb = build_backbone(self.backbone)
        if self.preprocessing:
            bb.preprocessing = Preprocessing(self.preprocessing["channels"], self.preprocessing["scale"],
                                             tuple(self.preprocessing["mean"]), tuple(self.preprocessing["std"]))
        return bb

    def build(self, labels: LabelSpace, seed: int, head_seed: int | None = None) -> AgeModel:
        """The starting model: the body from the source (a random body drawn with `seed`, the
        same for every fold of a protocol), the newly made layers drawn with `head_seed`."""
        head_seed = seed if head_seed is None else head_seed
        torch.manual_seed(seed)
        if self.stage_dir is None:
            bb = self._backbone()
            if self.body_weights:
                W.load_body(bb.body, Path(self.body_weights))
            torch.manual_seed(head_seed)
            return AgeModel(bb, len(labels), self.head["hidden"], self.head["dropout"])
        folder = Path(self.stage_dir)
        parent_labels = LabelSpace.from_json((folder / "labels.json").read_text())
        model = AgeModel(self._backbone(), len(parent_labels), self.head["hidden"],
                         self.head["dropout"])
        from safetensors.torch import load_file
        model.load_state_dict(load_file(folder / "weights.safetensors"))
        torch.manual_seed(head_seed)
        if parent_labels != labels:
            if self.head["reinit"] == "all":
                fresh = AgeModel(self._backbone(), len(labels), self.head["hidden"],
                                 self.head["dropout"])
                fresh.body.load_state_dict(model.body.state_dict())
                return fresh
            model.reset_classifier(len(labels))
        return model


def model_source(plan: Plan, node: Node) -> ModelSource:
    cfg = plan.cfg
    if node.kind == "root":
        return ModelSource(cfg["backbone"], cfg["head"],
                           str(plan.weights_path) if plan.weights_path else None,
                           preprocessing=plan.preprocessing)
    return ModelSource(cfg["backbone"], cfg["head"], stage_dir=str(plan.home / "stages" / node.key),
                       preprocessing=plan.preprocessing)


class Runner:
    """Runs a plan's nodes; `track`: the tracked run each stage trained is logged under
    (cascade/tracking.py; `Track()`: none)."""

    def __init__(self, plan: Plan, progress: bool = True, track: Track = Track()):
        self.plan, self.cfg, self.progress, self.track = plan, plan.cfg, progress, track

    def cache(self, stage: str):
        return self.plan.cache(stage, self.progress)

    def run(self) -> None:
        for node in self.plan.nodes:
            if node.kind == "train":
                self.run_train(node)
            elif node.kind == "target":
                self.run_target(node)

    # ------------------------------------------------------------------ intermediate stage
    def run_train(self, node: Node) -> None:
        """Train the stage once; a killed run resumes from its checkpoint, removed once the
        stage is complete."""
        d = StageDir(self.plan.home / "stages", node.key)
        d.fill(node.label, lambda: self._train(node, d), scratch=("ckpt.pt",))

    def _train(self, node: Node, d: StageDir) -> list[str]:
        with self.track.stage(node) as run:
            atomic_write_json(d.file("config.json"), node.info)
            log = log_to(d.file("log.txt"))
            cache = self.cache(node.stage)
            table, labels = cache.table, LabelSpace.of(cache.table, node.params.get("classes"))
            targets = labels.encode(table.frame["age_lo"], table.frame["age_hi"])
            p = node.params
            # its train / validation split, less what data.exclude_overlap removes (stages/leakage.py)
            train, val = leakage(self.plan, self.progress).rows(node)
            source = model_source(self.plan, node.parent)
            model = source.build(labels, self.cfg["seed"])
            log(f"start {node.label}: {len(train)} train / {len(val)} val images, {len(labels)} classes")
            threads = configure(self.cfg, 1)
            processes, why_not = self.cfg["train"]["processes"], D.unsupported(p)
            if processes > 1 and why_not:
                log(f"train.processes={processes}: trained in one process ({why_not})")
            if processes > 1 and not why_not:
                ranks, threads = D.rank_devices(resolve_devices(self.cfg["devices"], gpu_count()), processes)
                log(f"{processes} processes ({D.backend(ranks[0])}): {', '.join(ranks)}, {threads} thread(s) each")
                state, result = D.train_stage(D.StageJob(
                    str(cache.path / "images.npy"), targets, train, val, source, labels, p, self.cfg["augment"],
                    self.cfg["seed"], str(d.file("ckpt.pt")), ranks, threads, str(d.file("ranks")),
                    str(d.file("log.txt")), node.label, self.progress, self.cfg["train"]["numerics"],
                    bool(self.cfg["train"]["deterministic"]), run))
                model.load_state_dict(state)
            else:
                result = fit(model, Split(cache.images, targets, train, val), p, self.cfg["augment"],
                             labels.values, d.file("ckpt.pt"), self.cfg["seed"], device(self.cfg),
                             log, self.progress, desc=node.label, on_epoch=run.epoch)
            _save_model(d, model, labels)
            atomic_write_json(d.file("metrics.json"), {**result, "threads": threads,
                                                       "report": portable(table.report.to_dict(), self.plan.home),
                                                       "environment": numeric_environment(self.cfg)})
            run.metrics(kept(result))
            run.artifacts(d.file("config.json"))
            return ["weights.safetensors", "labels.json", "metrics.json", "config.json"]

    # ------------------------------------------------------------------ target protocol
    def run_target(self, node: Node) -> None:
        """Every fold of the protocol, each written the moment it ends (a rerun trains only the
        missing ones); the shared features, if any, are removed once the stage is complete."""
        d = StageDir(self.plan.home / "stages", node.key)
        d.fill(node.label, lambda: self._folds(node, d), scratch=("features.npy",))

    def _folds(self, node: Node, d: StageDir) -> list[str]:
        with self.track.stage(node) as run:
            atomic_write_json(d.file("config.json"), node.info)
            cache = self.cache(node.stage)
            table, labels = cache.table, LabelSpace.of(cache.table, node.params.get("classes"))
            targets = labels.encode(table.frame["age_lo"], table.frame["age_hi"])
            features = self.shared_features(node, d, cache, labels)
            jobs = []
            folds = protocol_folds(table.frame.assign(label=targets), node.info["protocol"], self.cfg["split_seed"])
            for name, train, test in folds:
                out = d.path / "folds" / f"{name}.csv"
                if not out.exists():
                    jobs.append(FoldJob(name, train, test, str(out), str(cache.path), targets,
                                        table.frame["subject"].to_numpy(), labels, node.params,
                                        self.cfg, model_source(self.plan, node.parent), features,
                                        table.frame["age"].to_numpy(float), run))
            # placed by the protocol's fold count, not the folds left: a resumed run trains its
            # remaining folds with the threads an uninterrupted one would (see workers._ended)
            run_fold_stage(jobs, self.cfg, self.progress, node.label, d.file("log.txt"),
                           placement(self.cfg, len(folds)))
            preds = read_folds(sorted((d.path / "folds").glob("*.csv"))).copy()   # one block: cheap insert
            preds.insert(1, "path", table.frame["path"].to_numpy()[preds["row"]])
            atomic_write_text(d.file("predictions.csv"), preds.to_csv(index=False))
            atomic_write_json(d.file("labels.json"), json.loads(labels.to_json()))
            atomic_write_json(d.file("metrics.json"), {"report": portable(table.report.to_dict(), self.plan.home),
                                                       "n_folds": int(preds["fold"].nunique()),
                                                       "environment": numeric_environment(self.cfg)})
            files = ["predictions.csv", "labels.json", "metrics.json", "config.json"]
            val_files = [d.path / "folds" / "validation" / f.name for f in sorted((d.path / "folds").glob("*.csv"))]
            if all(f.exists() for f in val_files):   # folds finished by an older version have none
                atomic_write_text(d.file("validation.csv"),
                                  pd.concat([pd.read_csv(f, dtype={"fold": str}) for f in val_files]).to_csv(index=False))
                files.append("validation.csv")
            # the fold files are listed too: a deleted or damaged one is recomputed alone
            files += sorted(f"folds/{p.name}" for p in (d.path / "folds").glob("*.csv"))
            run.metrics({"test_mae": M.mae_pooled(preds["true_value"], preds["pred_expected"]),
                         "test_mae_fold_mean": M.mae_fold_mean(preds["true_value"], preds["pred_expected"],
                                                               preds["fold"])})
            run.artifacts(d.file("config.json"))
            return files

    def shared_features(self, node: Node, d: StageDir, cache, labels: LabelSpace) -> str | None:
        """What every fold would compute alike, computed once and memory-mapped by every fold:
        mode a without augmentation, the frozen body's features of every image
        (`train.feature_cache`); a partial fine-tuning with `train.cut_cache`, the activations
        below the cut of every image and of its mirror image (cascade/train/cut.py)."""
        if not shares_features(node.params, self.cfg["train"]["feature_cache"]):
            return None
        path = d.file("features.npy")
        if not path.exists():
            model = model_source(self.plan, node.parent).build(labels, self.cfg["seed"])
            configure(self.cfg, 1)
            buf = io.BytesIO()
            np.save(buf, shared_features(model, cache.images, node.params, device(self.cfg)))
            atomic_write_bytes(path, buf.getvalue())
        return str(path)


def portable(record: dict, home: Path) -> dict:
    """`record` with every path inside the store written as `$CASCADE_HOME/...`: a stage's
    artifacts are the same bytes in every home (the demo suite lives inside the home), and a
    store moved or shared between machines still reads right."""
    text, h = json.dumps(record), json.dumps(str(home))[1:-1]       # as the path appears inside JSON
    return json.loads(text.replace(h + "/", "$CASCADE_HOME/").replace(f'"{h}"', '"$CASCADE_HOME"'))


def _save_model(d: StageDir, model: AgeModel, labels: LabelSpace) -> None:
    from safetensors.torch import save
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(d.file("weights.safetensors"), save(state))
    atomic_write_text(d.file("labels.json"), labels.to_json())


@dataclasses.dataclass
class FoldJob:
    name: str
    train: np.ndarray
    test: np.ndarray
    out: str
    cache: str
    targets: np.ndarray
    subjects: np.ndarray
    labels: LabelSpace
    params: dict
    cfg: dict
    source: ModelSource
    features: str | None = None          # shared frozen-body features (mode a), memory-mapped
    ages: np.ndarray | None = None       # exact ages (NaN for group labels): MAE in years under age bins
    track: Track = Track()               # the target stage's tracked run; the fold logs a child run under it

    def run(self, jobs: int, accumulate: int = 1) -> None:
        with self.track.fold(self.name, self.subjects[self.test]) as run:
            run_fold(self, jobs, False, accumulate, run)


def _train_share(rows: np.ndarray, params: dict, seed: int) -> np.ndarray:
    """`train_fraction` < 1 keeps that share of the training rows (the related studies' 10 / 50 /
    100 % data experiments), drawn with the split's seed; the validation rows stay whole."""
    if params.get("train_fraction", 1.0) >= 1.0:
        return rows
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(rows, max(1, round(len(rows) * params["train_fraction"])), replace=False))


def stage_split(subjects: np.ndarray, params: dict, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An intermediate stage's random train/validation split (thesis: 80/20, not by subject)."""
    train, val = validation_split(subjects, params["val_fraction"], seed, by_subject=False)
    return _train_share(train, params, seed), val


def fold_seed(seed: int, name: str) -> int:
    """Each fold's own seed (its validation subjects, new layers, batch order)."""
    return int(stable_hash([seed, name], 8), 16)


def fold_split(subjects: np.ndarray, train: np.ndarray, params: dict, seed: int,
               name: str, targets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A fold's training rows split into train / validation by subject, with the fold's seed;
    stratified by class under a stratified protocol (`params["stratify"]`)."""
    labels = targets[train] if params.get("stratify") and targets is not None else None
    tr, va = validation_split(subjects[train], params["val_fraction"], fold_seed(seed, name), by_subject=True,
                              labels=labels)
    return _train_share(train[tr], params, fold_seed(seed, name)), train[va]


def run_fold(job: FoldJob, jobs: int, progress: bool, accumulate: int = 1, track: Track = Track()) -> None:
    """Fine-tune from the parent on the fold's training subjects, predict its test subjects,
    write the predictions atomically.  Runs in a worker process.  `accumulate` > 1: the retry of a
    fold that ran out of GPU memory (each batch in that many steps, see trainer.fit).  `track`:
    the fold's tracked run (its epochs, then what it kept and its test MAE)."""
    threads = configure(job.cfg, jobs)
    out = Path(job.out)
    seed = fold_seed(job.cfg["seed"], job.name)
    images = np.load(Path(job.cache) / "images.npy", mmap_mode="r")
    train, val = fold_split(job.subjects, job.train, job.params, job.cfg["seed"], job.name, job.targets)
    model = job.source.build(job.labels, job.cfg["seed"], head_seed=seed)
    feats = np.load(job.features, mmap_mode="r") if job.features else None
    ckpt = out.with_suffix(".ckpt.pt")
    history = fit(model, Split(images, job.targets, train, val), job.params,
                  job.cfg["augment"], job.labels.values, ckpt, seed, device(job.cfg),
                  log=lambda m: None, progress=False, features=feats, accumulate=accumulate, on_epoch=track.epoch)
    atomic_write_json(out.with_suffix(".history.json"), {**history, "threads": threads})
    # the validation rows' probabilities: what a stacked ensemble's meta-model trains on
    cut, tta = cut_of(model, job.params), job.params.get("tta")
    val_probs = predict_proba(model, images, val, device(job.cfg), features=feats, cut=cut, tta=tta)
    atomic_write_text(out.parent / "validation" / out.name, pd.concat(
        [pd.DataFrame({"row": val, "fold": job.name, "true_class": job.targets[val]}),
         pd.DataFrame(val_probs, columns=[f"p{i}" for i in range(val_probs.shape[1])])], axis=1).to_csv(index=False))
    probs = predict_proba(model, images, job.test, device(job.cfg), features=feats, cut=cut, tta=tta)
    values = job.labels.values
    frame = pd.DataFrame({
        "row": job.test, "subject": job.subjects[job.test], "fold": job.name,
        "true_class": job.targets[job.test], "true_value": values[job.targets[job.test]],
        "true_age": job.ages[job.test] if job.ages is not None else np.nan,
        **M.decisions(probs, values),
        # image-blind baselines from the fold's training labels: every table shows how far the
        # model is above "predict the mean age" / "predict the commonest group"
        "base_mean": float(values[job.targets[job.train]].mean()),
        "base_class": int(np.bincount(job.targets[job.train]).argmax()),
    })
    frame = pd.concat([frame, pd.DataFrame(probs, columns=[f"p{i}" for i in range(probs.shape[1])])], axis=1)
    atomic_write_text(out, frame.to_csv(index=False))
    ckpt.unlink(missing_ok=True)
    track.metrics({**kept(history), "test_mae": M.mae_pooled(frame["true_value"], frame["pred_expected"])})
