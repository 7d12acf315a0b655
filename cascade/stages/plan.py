"""Planning: the nodes a run needs and the key of each.

A node's key hashes its resolved config, its parent's key and the manifest of its input data
(files, sizes, labels), like a DVC stage.  Why: a stage whose key exists is reused by every run
that needs it (imdb,agedb -> fgnet and -> adience share the agedb stage), and any change to a
setting, a parent or a data file produces a new key instead of a stale result.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from cascade import config as C
from cascade.data.align import TEMPLATES
from cascade.stages.leakage import exclusion_keys, face_model
from cascade.stages.placement import gpu_count, resolve_devices
from cascade.data.datasets import (UnusableDataset, cleaning_settings, configured_root, crop_settings, missing_root,
                                   open_dataset, synthetic_sources)
from cascade.data.records import DatasetTable
from cascade.models import weights as W
from cascade.protocols import folds as protocol_folds
from cascade.protocols import load_protocol
from cascade.store import StageDir, stable_hash

#: Bump when a change to the training code changes results, so old artifacts are not reused
#: (tests/test_golden.py fails until it is; what each value changed: CHANGELOG.md).
TRAINER_VERSION = 5


@dataclasses.dataclass
class Node:
    kind: str                          # root | train | target
    chain: tuple[str, ...]             # intermediate stages up to and including this one
    stage: str | None                  # stages.yaml entry (None for the root)
    params: dict
    parent: "Node | None"
    key: str
    info: dict                         # what the key hashed, written as the stage's config.json

    @property
    def label(self) -> str:
        return chain_label(self.chain, self.stage if self.kind == "target" else None)


def chain_label(chain: tuple[str, ...], target: str | None = None) -> str:
    """'pretrained → imdb → agedb', with '⇒ fgnet' for the target trained from that chain."""
    name = " → ".join(("pretrained",) + tuple(chain))
    return f"{name} ⇒ {target}" if target else name


def target_chains(cfg: dict) -> list[tuple[str, ...]]:
    """The chains a target is trained from: every prefix of the cascade (thesis Table 4's rows,
    `run.prefixes`) or only the full one."""
    stages = tuple(cfg["stage"])
    return [stages[:i] for i in range(len(stages) + 1)] if cfg["run"]["prefixes"] else [stages]


@dataclasses.dataclass
class Plan:
    cfg: dict
    home: Path
    nodes: list[Node]                  # in execution order, each once
    targets: list[Node]                # one per table row
    tables: dict[str, DatasetTable]    # each stage's dataset, in the plan's order (stages, then the target)
    weights_path: Path | None
    preprocessing: dict | None = None  # recorded by `cascade weights import` beside the weights
    caches: dict = dataclasses.field(default_factory=dict)    # stage -> its ImageCache, opened once
    leakage: object = None             # the run's overlap audit (stages/leakage.py), made on first use

    def keyed(self, stage: str) -> Node:
        """The first node that reads `stage`'s dataset: its info holds what the keys hashed of
        that dataset (manifest, crop, cleaning rules)."""
        return next(n for n in self.nodes if n.stage == stage)

    def cache(self, stage: str, progress: bool = True):
        """The image cache of a stage's dataset, built once (prepare() drops the quarantined rows
        from the table, so it must run once per table) with the crop the keys hashed."""
        if stage not in self.caches:
            from cascade.data.cache import prepare

            self.caches[stage] = prepare(self.tables[stage], C.backbone_settings(self.cfg)["input_size"],
                                         self.keyed(stage).info["crop"], self.home, progress=progress)
        return self.caches[stage]


def _shared_settings(cfg: dict) -> dict:
    """Settings every trained node depends on besides its own stage parameters."""
    bb = C.backbone_settings(cfg)
    return {"backbone": cfg["backbone"], "input_size": bb["input_size"], "head": cfg["head"],
            "augment": cfg["augment"], "seed": cfg["seed"], "trainer": TRAINER_VERSION}


def accelerator_settings(cfg: dict, gpus: int | None = None) -> dict:
    """How the devices train, resolved and keyed: `amp` (the autocast dtype) when mixed precision
    is on, on a GPU `channels_last` and `cudnn_benchmark`, and portable CPU numerics when asked
    for.  Empty for the CPU defaults, so CPU keys stay what they were.  `gpus`: the visible GPU count (tests fake it; None asks torch)."""
    devices = resolve_devices(cfg["devices"], gpu_count() if gpus is None else gpus)
    on_gpu = devices[0] != "cpu"
    t = cfg["train"]
    out = {}
    if t["amp"] == "on" or (t["amp"] == "auto" and on_gpu):
        out["amp"] = "bfloat16" if not on_gpu or _bf16(devices) else "float16"
    if on_gpu:
        out["channels_last"] = t["channels_last"] != "off"
        out["cudnn_benchmark"] = not t["deterministic"]
    elif t["channels_last"] == "on":
        out["channels_last"] = True
    if t["numerics"] == "portable":       # only when set: native keys stay what they were
        out["numerics"] = "portable"
    return out


def distributed_settings(cfg: dict, kind: str, gpus: int | None = None) -> dict:
    """`train.processes` where it moves an intermediate stage's numbers: on the CPU, whose
    processes normalise their own share of each batch (on GPUs BatchNorm is synchronised, so the
    key does not depend on the count).  Empty otherwise."""
    processes = cfg["train"]["processes"]
    on_gpu = resolve_devices(cfg["devices"], gpu_count() if gpus is None else gpus)[0] != "cpu"
    return {"processes": processes} if kind == "train" and processes > 1 and not on_gpu else {}


def _bf16(devices: tuple[str, ...]) -> bool:
    """Every chosen GPU computes in bfloat16 natively (compute capability 8.0, Ampere, or later)."""
    import torch
    if not torch.cuda.is_available():     # a faked GPU count (tests): the common case today
        return True
    return all(torch.cuda.get_device_capability(d) >= (8, 0) for d in devices)


def _balanced(cfg: dict, kind: str) -> dict | None:
    """The `balance.*` settings a node of `kind` trains with (None: unbalanced, keys unchanged)."""
    b = cfg["balance"]
    on = {k: b[k] for k in ("weights", "sampler")}
    on.update({k: b[k] for k in ("cap", "remove", "minority_augment") if b[k]})     # keyed only when set
    if (on["weights"], on["sampler"]) == ("none", "none") and len(on) == 2:
        return None
    return on if b["stages"] == "all" or kind == "target" else None


def problems(cfg: dict) -> list[str]:
    """Everything that would stop this run, found before anything is generated, decoded or
    trained: every dataset folder it reads and the listing its loader needs there, its weight
    file (present, readable, the sha256 its sidecar recorded) and its target's protocol file.
    All of them at once, each with its fix (not the first, after a minute of work)."""
    home = C.cascade_home(cfg)
    datasets = [C.stage_params(cfg, s, "full")["dataset"] for s in dict.fromkeys([*cfg["stage"], cfg["target"]])]
    found = [p for name in datasets if (p := missing_root(cfg, name))]
    if cfg["data"]["demo"] == "forbid":
        keys = dict.fromkeys(configured_root(cfg, C.stage_params(cfg, stage, "full")["dataset"])[0]
                             for stage, synthetic in synthetic_sources(cfg).items() if synthetic)
        found += [f"data.root.{key} is empty or holds the synthetic demo suite, and data.demo=forbid: give the "
                  f"folder of your copy (data.root.{key}=/path/to/{key}; docs/data.md), or data.demo=allow"
                  for key in keys]
    try:
        if weight_problem := W.problem(W.resolve(cfg["weights"], C.backbone_settings(cfg)["weights"], home)):
            found.append(weight_problem)
    except FileNotFoundError as exc:
        found.append(str(exc))
    try:
        load_protocol(C.stage_params(cfg, cfg["target"], "full")["protocol"])
    except ValueError as exc:
        found.append(str(exc))
    try:
        resolve_devices(cfg["devices"], gpu_count())
    except ValueError as exc:
        found.append(str(exc))
    try:
        face_model(cfg)
    except FileNotFoundError as exc:
        found.append(f"data.overlap.faces: {exc}")
    template = C.backbone_settings(cfg).get("align_template")
    if template is not None and template not in TEMPLATES:
        found.append(f"backbones.{cfg['backbone']}.align_template={template!r} is not an alignment template."
                     f"{C.did_you_mean(template, TEMPLATES)} Valid: {', '.join(TEMPLATES)} (cascade/data/align.py)")
    return found


def build(cfg: dict, generate: bool = True) -> Plan:
    """The plan of `cfg`.  `generate=False` (a dry run) writes nothing: a demo suite that is not
    generated yet raises DemoSuiteMissing instead (keys hash the data, so there are none yet)."""
    if found := problems(cfg):
        raise C.ConfigError("this run cannot start:\n" + "\n".join(f"  - {p}" for p in found))
    home = C.cascade_home(cfg)
    bb = C.backbone_settings(cfg)
    wpath = W.resolve(cfg["weights"], bb["weights"], home)
    pre = W.recorded_preprocessing(wpath)
    root_info = {"kind": "root", "backbone": cfg["backbone"], "weights": W.identity(wpath)}
    if pre:                            # weights fed another way than the backbone's default
        root_info["preprocessing"] = pre
    root = Node("root", (), None, {}, None, stable_hash(root_info), root_info)
    tables: dict[str, DatasetTable] = {}
    manifests: dict[str, str] = {}
    crops: dict[str, dict] = {}

    def table(name: str) -> DatasetTable:
        if name not in tables:
            tables[name] = open_dataset(cfg, C.stage_params(cfg, name, "full")["dataset"], home, generate=generate)
        return tables[name]

    def manifest(name: str) -> str:
        if name not in manifests:
            manifests[name] = stable_hash(table(name).manifest_records())
        return manifests[name]

    def crop(name: str) -> dict:
        if name not in crops:
            crops[name] = crop_settings(cfg, table(name))
        return crops[name]

    # every dataset read before any key is hashed: folders that leave no usable row are named
    # together, like the problems above, instead of one per attempt
    unusable = {}
    for stage in dict.fromkeys([*cfg["stage"], cfg["target"]]):
        try:
            table(stage)
        except UnusableDataset as exc:
            unusable[stage] = str(exc)
    if cfg["target"] not in unusable:      # its folds, which a dataset of a few images cannot give
        try:
            protocol_folds(table(cfg["target"]).frame,
                           load_protocol(C.stage_params(cfg, cfg["target"], "full")["protocol"]), cfg["split_seed"])
        except ValueError as exc:
            unusable[cfg["target"]] = f"{cfg['target']}: {exc}"
    if unusable:
        raise C.ConfigError("this run cannot start:\n" + "\n".join(f"  - {p}" for p in unusable.values()))
    exclusions = exclusion_keys(cfg, manifest, crop)

    def child(kind: str, parent: Node, stage: str) -> Node:
        mode = C.stage_mode(cfg, kind == "target", parent.kind == "root", stage)
        params = C.stage_params(cfg, stage, mode)
        params.update(accelerator_settings(cfg))     # empty on the CPU: CPU keys stay as they were
        params.update(distributed_settings(cfg, kind))  # likewise empty unless several CPU processes
        if cfg["train"]["deterministic"]:          # only when on, likewise
            params["deterministic"] = True
        if cfg["labels"].get(stage):   # only when set: the default label space is the data's range
            params["classes"] = cfg["labels"][stage]
        if balance := _balanced(cfg, kind):       # only when set: unbalanced keys stay what they were
            params["balance"] = balance
        info = {"kind": kind, "stage": stage, "params": params, "parent": parent.key,
                "manifest": manifest(stage),
                "crop": crop(stage), **_shared_settings(cfg)}
        if cleaning := cleaning_settings(cfg, C.stage_params(cfg, stage, "full")["dataset"]):
            info["cleaning"] = cleaning            # only the rules of the dataset this stage reads
        if kind == "train" and stage in exclusions:
            info["exclude_overlap"] = exclusions[stage]    # only when on: other keys stay as they were
        if kind == "target":
            info["protocol"] = load_protocol(params["protocol"])
            info["split_seed"] = cfg["split_seed"]
            if "val_fraction" in info["protocol"]:    # a train/val/test protocol: val is a share of all images
                spec = info["protocol"]
                params["val_fraction"] = spec["val_fraction"] / (1 - spec.get("test_fraction", 0.0))
            if info["protocol"]["splitter"] == "stratified_holdout":
                params["stratify"] = True             # the validation share stratified like the test share
        chain = parent.chain + ((stage,) if kind == "train" else ())
        return Node(kind, chain, stage, params, parent, stable_hash(info), info)

    nodes, targets, parent = [root], [], root
    chain_nodes = {(): root}
    for stage in cfg["stage"]:
        parent = child("train", parent, stage)
        chain_nodes[parent.chain] = parent
        nodes.append(parent)
    for chain in target_chains(cfg):
        t = child("target", chain_nodes[chain], cfg["target"])
        nodes.append(t)
        targets.append(t)
    # in the plan's order (stages, then the target), whatever order the keys opened them in:
    # the header and the figures list datasets so
    ordered = {n.stage: tables[n.stage] for n in nodes if n.kind != "root"}
    return Plan(cfg, home, nodes, targets, ordered, wpath, pre)


def status(plan: Plan, node: Node) -> str:
    if node.kind == "root":
        return "weights " + node.info["weights"][:27]
    d = StageDir(plan.home / "stages", node.key)
    if d.is_complete():
        return "cached"
    if (d.path / "ckpt.pt").exists() or (d.path / "folds").exists():
        return "partial: will resume"
    return "will run"
