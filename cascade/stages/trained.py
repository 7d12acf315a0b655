"""A trained stage as an age model to apply: what `cascade predict` and `cascade export` use.

STAGE is a cascade prefix (`imdb,agedb`: the stage trained last in that chain), trained first
when the store lacks it, exactly as `cascade run` would; or, with `--fit-all`, a run's target
fitted once on all its images (see `fit_all_node`).

Why the model comes with more than its weights: what it outputs depends on its own label space
(the stage's `labels.json`; its classifier is never reset to another dataset's classes, as a
feature extractor's may be), on the crop its training images had (`crop`: a face box with a
margin, landmarks on a template, or ready-made crops) and on the input size; and a prediction
must be traceable to the stage key that made it.
"""
from __future__ import annotations

import copy
import dataclasses

from cascade import config as C
from cascade.data.datasets import LabelSpace
from cascade.models.age_model import AgeModel
from cascade.stages import plan as P
from cascade.stages.execute import Runner, model_source
from cascade.store import stable_hash


def stage_chain(spec: str, cfg: dict) -> tuple[str, ...]:
    """`pretrained` (the root's weights) or a comma-separated cascade prefix (`imdb,agedb`)."""
    chain = () if spec in ("pretrained", "") else tuple(s.strip() for s in spec.split(","))
    valid = C.choices(cfg)["stage"]
    bad = [s for s in chain if s not in valid or s == cfg["target"]]
    if bad:
        raise C.ConfigError(f"stage {spec!r}: {', '.join(bad)} is not an intermediate stage; give "
                            f"`pretrained` or a comma-separated chain of: "
                            f"{', '.join(s for s in valid if s != cfg['target'])}")
    return chain


def chain_plan(cfg: dict, chain: tuple[str, ...], progress: bool) -> tuple[P.Plan, Runner, P.Node]:
    """The plan of `chain` alone (no prefixes), every intermediate stage of it trained (those in
    the store are reused), its runner and the chain's own node."""
    cfg = copy.deepcopy(cfg)
    cfg["stage"], cfg["run"]["prefixes"] = list(chain), False
    plan = P.build(cfg)
    runner = Runner(plan, progress)
    for node in plan.nodes:
        if node.kind == "train":
            runner.run_train(node)
    return plan, runner, next(n for n in plan.nodes if n.kind != "target" and n.chain == chain)


def fit_all_node(target: P.Node) -> P.Node:
    """The target of a run fitted on all its images under its own stage settings (mode, lr,
    epochs, ...) from the same parent: what to apply after the protocol has measured it.  An
    intermediate-stage node (its `val_fraction` share, drawn by image, picks the epoch), keyed by
    what the target's key hashes less its test protocol, so it lives in the store beside the
    protocol's folds under a key of its own."""
    info = {k: v for k, v in target.info.items() if k not in ("protocol", "split_seed")}
    info["kind"] = "fit_all"
    return P.Node("train", target.chain + (target.stage,), target.stage, target.params, target.parent,
                  stable_hash(info), info)


@dataclasses.dataclass
class TrainedStage:
    """A trained model in eval mode with what its outputs depend on."""

    model: AgeModel
    labels: LabelSpace
    key: str
    label: str
    info: dict                   # what the key hashed (the stage's config.json)

    @property
    def size(self) -> int:
        """The square input size the stage trained at (its image cache's)."""
        return int(self.info["input_size"])

    @property
    def crop(self) -> dict:
        """The crop of the stage's training images (`cascade.data.datasets.crop_settings`)."""
        return self.info["crop"]

    def describe(self) -> dict:
        """The stage as a sidecar records it: enough to find it in the store and to feed it."""
        pre = self.model.preprocessing
        return {"stage": self.label, "stage_key": self.key, "backbone": self.info["backbone"],
                "input_size": self.size, "training_crop": self.crop,
                "labels": {"lo": list(self.labels.lo), "hi": list(self.labels.hi),
                           "values": self.labels.values.tolist()},
                "preprocessing": dataclasses.asdict(pre)}


def trained_stage(cfg: dict, spec: str, progress: bool = True, fit_all: bool = False) -> TrainedStage:
    """The model of STAGE `spec` (see the module docstring), trained first where the store lacks
    it.  `fit_all`: `spec` names a target, fitted from the cascade `cfg["stage"]`."""
    if fit_all:
        if spec not in C.targets(cfg):
            raise C.ConfigError(f"--fit-all {spec!r}: not a target; give one of {', '.join(C.targets(cfg))} "
                                f"(its cascade from the setting stage=..., now {','.join(cfg['stage']) or 'empty'})")
        cfg = copy.deepcopy(cfg)
        cfg["target"] = spec
        C.validate(cfg)
        plan, runner, _ = chain_plan(cfg, tuple(cfg["stage"]), progress)
        node = fit_all_node(next(n for n in plan.nodes if n.kind == "target"))
        runner.run_train(node)
        label = f"{node.label} (fitted on all {spec} images)"
    else:
        chain = stage_chain(spec, cfg)
        if not chain:
            raise C.ConfigError("STAGE pretrained has no trained age head (a face-recognition body and a random "
                                "head); give a trained chain such as imdb,agedb, or a target with --fit-all")
        plan, _, node = chain_plan(cfg, chain, progress)
        label = node.label
    folder = plan.home / "stages" / node.key
    labels = LabelSpace.from_json((folder / "labels.json").read_text())
    model = model_source(plan, node).build(labels, plan.cfg["seed"]).eval()
    return TrainedStage(model, labels, node.key, label, node.info)
