"""`cascade study FILE`: a whole study from one YAML file — backbones × targets, each a cascade
run with every prefix and seed the file's settings name — ending in one comparison table per
target with the paired tests and the critical-difference figure.

Why a command: the thesis's Table 4 is three backbones × three cascade prefixes on FG-NET, and by
hand that is several runs and a `cascade compare` that must name the right folders.  A study file
is read, diffed and cited as one file (`configs/studies/thesis.yaml` is the thesis's).  Shared
prefixes train once without any bookkeeping here: a stage's key hashes what it depends on, so
one backbone's IMDB stage has the same key under every target and is found cached the second
time.  Every cell is checked (settings, data, weights) before anything trains, and each cell's
folds are placed as `cascade run` places them (`devices`, `backend=dask` for a cluster).

The file: a `study:` mapping with `backbones` and `targets` (lists), an optional `name`, and the
usual `settings:` mapping (the cascade as `stage`, the `seeds`, anything else), e.g.

    study: {name: thesis, backbones: [vgg16, resnet50_keras, senet50_keras], targets: [fgnet]}
    settings: {stage: [imdb, agedb], seeds: [0, 1, 2]}
"""
from __future__ import annotations

from pathlib import Path

import yaml

from cascade import config as C
from cascade.store import stable_hash

#: The keys of a study file's `study:` mapping.
STUDY_KEYS = ("name", "backbones", "targets")


def read(path: Path) -> dict:
    """The `study:` mapping of a study file, checked: backbones and targets are non-empty lists."""
    try:
        tree = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise C.ConfigError(f"study file {path}: {exc}") from None
    study = tree.get("study") if isinstance(tree, dict) else None
    if not isinstance(study, dict):
        raise C.ConfigError(f"study file {path}: expected a `study:` mapping with backbones and targets "
                            "(configs/studies/thesis.yaml is an example)")
    unknown = [k for k in study if k not in STUDY_KEYS]
    if unknown:
        raise C.ConfigError(f"study file {path}: unknown key(s) {', '.join(map(str, unknown))} under `study:`; "
                            f"valid: {', '.join(STUDY_KEYS)}")
    for key in ("backbones", "targets"):
        if not isinstance(study.get(key), list) or not study[key] or not all(isinstance(v, str) for v in study[key]):
            raise C.ConfigError(f"study file {path}: `study.{key}` must be a non-empty list of names")
    return {"name": str(study.get("name") or Path(path).stem), "backbones": study["backbones"],
            "targets": study["targets"]}


def cells(path: Path, words: list[str]) -> list[tuple[str, str, list[str]]]:
    """(target, backbone, settings words) of every cell, targets outermost: the file's settings,
    then the cell's backbone and target, then the command line's words (which may not set
    either: the file's grid names them)."""
    grid = [w for w in words if w.split("=", 1)[0] in ("backbone", "target")]
    if grid:
        raise C.ConfigError(f"{', '.join(grid)}: a study's backbones and targets are its file's `study:` lists")
    study = read(path)
    base = C.settings_file(Path(path))
    return [(t, b, [*base, f"backbone={b}", f"target={t}", *words]) for t in study["targets"] for b in study["backbones"]]


def study_id(name: str, target: str, folders: list[Path]) -> str:
    return f"study-{name}-{target}-" + stable_hash(sorted(Path(f).name for f in folders), 8)
