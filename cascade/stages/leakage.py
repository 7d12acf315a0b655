"""Leakage across the datasets of one run: the people and photographs an earlier stage trains on
that a later split tests or validates on.

Why per run and not per pair of datasets: subject-exclusive folds hold within one dataset, but a
cascade pretrains on one dataset and tests on another, and what must stay unseen depends on the
run.  For each intermediate stage that is the target's images (every one is a test image in
some fold under LOPO or k-fold; for a holdout protocol, a superset of its test split) and every
later stage's validation split (the later stage selects its epoch on it).  The audit is made and
reported for every run; `data.exclude_overlap` also removes what it found from the earlier
stage's rows (never from a test or validation split), each removal a step of that stage's
cleaning report.  Stages are resolved last to first: an earlier stage is compared with the
validation split a later stage has after its own removals.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from cascade import config as C
from cascade.data.datasets import DATASETS
from cascade.data.overlap import (
    HASH_VERSION,
    FaceModel,
    cache_embeddings,
    cache_prints,
    identity_names,
    match_faces,
    match_prints,
    named_pairs,
    shared_identities,
)
from cascade.store import stable_hash

#: What each `data.exclude_overlap` value removes.
RULES = {"none": (), "identities": ("person",), "duplicates": ("photo",), "both": ("person", "photo")}


def face_model(cfg: dict) -> FaceModel | None:
    """The same-face test's model (`data.overlap.faces`), or None when it is off.  Its weight file
    is the backbone's registered one (`backbones.<b>.weights`); a missing file is the usual
    FileNotFoundError naming the import command."""
    from cascade.models import weights as W

    name = cfg["data"]["overlap"]["faces"]
    if not name:
        return None
    settings = cfg["backbones"][name]
    path = W.resolve("default", settings["weights"], C.cascade_home(cfg))
    if path is None:
        raise FileNotFoundError(f"data.overlap.faces={name}: backbones.{name}.weights is none; the same-face "
                                f"test needs face-recognition weights")
    return FaceModel(name, path, int(settings["input_size"]), float(cfg["data"]["overlap"]["cosine"]))


@dataclasses.dataclass
class Check:
    """One intermediate stage compared with one split it must not have seen."""

    stage: str
    other: str                       # the stage it is compared with
    against: str                     # e.g. "fgnet test images"
    n_against: int
    identities: list[str] | None     # None: one side carries no names
    unnamed: str                     # the side(s) without names ("" when both have them)
    pairs: pd.DataFrame              # path (in the stage), other (path), distance (bits), colour
    removed: dict[str, int]          # kind (person | photo) -> rows removed from the stage
    faces: pd.DataFrame | None = None   # path, other, cosine: same face (data.overlap.faces)
    face: FaceModel | None = None

    def line(self, rule: str) -> str:
        people = (f"identities not compared ({self.unnamed} carries no names)" if self.identities is None
                  else _count(len(self.identities), "identity", "identities"))
        if self.faces is not None:
            people += (f", {_count(len(self.faces), 'same face', 'same faces')} "
                       f"({self.face.backbone}, cosine ≥ {self.face.cosine:g})")
        photos = _count(len(self.pairs), "near-duplicate photo", "near-duplicate photos")
        done = (f"removed from {self.stage}: " + ", ".join(f"{_count(n, 'row', 'rows')} (same {k})"
                                                          for k, n in self.removed.items())
                if self.removed else "kept")
        return (f"Overlap of stage {self.stage} with the {self.against} ({self.n_against}): {people} and {photos} "
                f"— {done} (data.exclude_overlap={rule})")


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _loader(cfg: dict, stage: str) -> str:
    return DATASETS[C.stage_params(cfg, stage, "full")["dataset"]][0]


def _val_fraction(cfg: dict, stages: list[str], j: int) -> float:
    return C.stage_params(cfg, stages[j], C.stage_mode(cfg, False, j == 0, stages[j]))["val_fraction"]


def exclusion_keys(cfg: dict, manifest, crop) -> dict[str, dict]:
    """Per intermediate stage, what decides the rows `data.exclude_overlap` removes from it (part
    of its key; empty under `none`, so those keys stay what they were): the rule, the matching
    thresholds, and the data and crop of everything it is compared with, later stages' own
    removals included.  It hashes inputs, not findings, so a plan (and a dry run) knows the keys
    before any image is fingerprinted.  `manifest(stage)` / `crop(stage)`: the plan's."""
    rule = cfg["data"]["exclude_overlap"]
    if rule == "none":
        return {}
    stages = list(cfg["stage"])

    def seen(stage: str) -> dict:
        return {"stage": stage, "manifest": manifest(stage), "crop": crop(stage)}

    face = face_model(cfg)
    out: dict[str, dict] = {}
    for i in reversed(range(len(stages))):
        out[stages[i]] = {"rule": rule, "hamming": cfg["data"]["overlap"]["hamming"],
                          "colour": cfg["data"]["overlap"]["colour"], "fingerprints": HASH_VERSION,
                          **({"faces": face.key()} if face else {}),
                          "target": seen(cfg["target"]),
                          "validation": [{**seen(stages[j]), "val_fraction": _val_fraction(cfg, stages, j),
                                          "exclude": stable_hash(out[stages[j]])} for j in range(i + 1, len(stages))]}
    return out


class Leakage:
    """The audit of one plan, computed once (the Runner trains from its rows, the report prints
    its lines).  Fingerprints come from the stages' image caches (`cascade.data.overlap`)."""

    def __init__(self, plan, progress: bool = False):
        self.plan, self.cfg, self.progress = plan, plan.cfg, progress
        self.rule = self.cfg["data"]["exclude_overlap"]
        self.face = face_model(self.cfg)
        self._splits: dict[str, tuple[np.ndarray, np.ndarray, list[Check]]] = {}
        self._names: dict[str, pd.Series | None] = {}

    def rows(self, node) -> tuple[np.ndarray, np.ndarray]:
        """An intermediate stage's (train, validation) rows of its cache, after the removals."""
        train, val, _ = self._split(node)
        return train, val

    def checks(self) -> list[Check]:
        return [c for node in self.plan.nodes if node.kind == "train" for c in self._split(node)[2]]

    def lines(self) -> list[str]:
        return [c.line(self.rule) for c in self.checks()]

    def findings(self) -> pd.DataFrame:
        """Every finding, one row each: stage, against, kind (person | photo | face), path, other,
        distance, colour, and cosine with the same-face test (person rows name the identity)."""
        parts = []
        for c in self.checks():
            parts.append(pd.DataFrame({"stage": c.stage, "against": c.against, "kind": "person",
                                       "path": c.identities or [], "other": c.identities or [],
                                       "distance": np.nan, "colour": np.nan}))
            parts.append(c.pairs.assign(stage=c.stage, against=c.against, kind="photo"))
            if c.faces is not None:
                parts.append(c.faces.assign(stage=c.stage, against=c.against, kind="face"))
        cols = ["stage", "against", "kind", "path", "other", "distance", "colour"] + (["cosine"] if self.face else [])
        return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)

    def examples(self, n: int = 6) -> list[tuple[np.ndarray, np.ndarray, str]]:
        """Up to `n` same-photo pairs as (crop in the stage, crop in the other split, caption),
        the closest first, taken from every check in turn."""
        def crop(stage: str, path: str) -> np.ndarray:
            cache = self._cache(stage)
            return np.asarray(cache.images[int(np.flatnonzero(cache.table.frame["path"].to_numpy() == path)[0])])

        ranked = [[(c, r) for r in c.pairs.sort_values(["distance", "colour"]).itertuples(index=False)]
                  for c in self.checks()]
        order = [pair for column in zip(*[r + [None] * (n - len(r)) for r in ranked]) for pair in column if pair]
        return [(crop(c.stage, r.path), crop(c.other, r.other),
                 f"{c.stage}: {r.path}\n{c.other}: {r.other}\n{r.distance} bits, colour {r.colour:g}")
                for c, r in order[:n]]

    # ------------------------------------------------------------------------------------
    def _cache(self, stage: str):
        return self.plan.cache(stage, self.progress)

    def _identity_names(self, stage: str) -> pd.Series | None:
        if stage not in self._names:
            self._names[stage] = identity_names(self._cache(stage).table, _loader(self.cfg, stage))
        return self._names[stage]

    def _later(self, node) -> list:
        return [n for n in self.plan.nodes if n.kind == "train" and len(n.chain) > len(node.chain)
                and n.chain[:len(node.chain)] == node.chain]

    def _split(self, node):
        if node.key in self._splits:
            return self._splits[node.key]
        from cascade.stages.execute import stage_split

        cache = self._cache(node.stage)
        target = self.cfg["target"]
        against = [(f"{target} test images", target, np.arange(len(self._cache(target))))]
        against += [(f"{n.stage} validation split", n.stage, self.rows(n)[1]) for n in self._later(node)]
        kinds = RULES[self.rule]
        drop = np.zeros(len(cache), dtype=bool)
        checks = []
        paths = cache.table.frame["path"]
        mine = cache_prints(cache, self.plan.home, self.progress)
        for label, other, rows in against:
            found = match_prints(mine, cache_prints(self._cache(other), self.plan.home, self.progress).take(rows),
                                 self.cfg["data"]["overlap"]["hamming"], self.cfg["data"]["overlap"]["colour"])
            names, theirs = self._identity_names(node.stage), self._identity_names(other)
            identities = None if names is None or theirs is None else shared_identities(names, theirs.iloc[rows])
            hit = {"person": names.isin(identities or []).to_numpy(copy=True) if identities is not None
                   else np.zeros(len(cache), dtype=bool),
                   "photo": np.isin(np.arange(len(cache)), found["i"].to_numpy())}
            same = None
            if self.face:                        # same face: counted with the same person
                same = match_faces(cache_embeddings(cache, self.face, self.plan.home, self.progress),
                                   cache_embeddings(self._cache(other), self.face, self.plan.home, self.progress)[rows],
                                   self.face.cosine)
                hit["person"] |= np.isin(np.arange(len(cache)), same["i"].to_numpy())
            removed = {}
            for kind in kinds:
                removed[kind] = int((hit[kind] & ~drop).sum())
                drop |= hit[kind]
            other_paths = self._cache(other).table.frame["path"].iloc[rows]
            pairs = named_pairs(found, paths, other_paths, ("path", "other"))
            faces = None if same is None else named_pairs(same, paths, other_paths, ("path", "other"))
            unnamed = " and ".join(s for s, n in ((node.stage, names), (other, theirs)) if n is None)
            checks.append(Check(node.stage, other, label, len(rows), identities, unnamed, pairs, removed,
                                faces, self.face))
        for c in checks:                         # counted like every other cleaning rule
            for kind, n in c.removed.items():
                cache.table.report.drop(f"same {kind} as the {c.against} (data.exclude_overlap)", n)
        keep = np.flatnonzero(~drop)
        train, val = stage_split(cache.table.frame["subject"].to_numpy()[keep], node.params, self.cfg["seed"])
        self._splits[node.key] = (keep[train], keep[val], checks)
        return self._splits[node.key]


def leakage(plan, progress: bool = False) -> Leakage:
    """The plan's one audit (made on first use and kept on the plan)."""
    if plan.leakage is None:
        plan.leakage = Leakage(plan, progress)
    return plan.leakage
