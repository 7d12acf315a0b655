"""Configuration: readable YAML defaults, `key=value` overrides, and per-stage resolution.

Why a schema derived from the defaults: every setting a user can change is visible in one tree
(`cascade/configs/*.yaml`), an override of a key that does not exist or of the wrong type fails
loudly with the valid keys or values, and the resolved tree is what a stage key hashes — so a
typo can never silently run the default.
"""
from __future__ import annotations

import copy
import difflib
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

TARGETS = ("fgnet", "adience", "adience3", "utkface", "agedb")

#: Types of leaves whose default is null (null = "not set; use the stage's own value").
NULLABLE_TYPES: dict[str, type] = {
    "train.lr": float, "train.batch_size": int, "train.epochs": int, "train.patience": int,
    "train.mode": str, "train.augment": bool, "train.select": str,
}

#: Training losses (cascade.train.losses) and the options each one reads.
LOSSES = ("ce", "dldl", "mean_variance")
LOSS_OPTIONS = {"ce": (), "dldl": ("sigma",), "mean_variance": ("lambda_mean", "lambda_var")}

#: Which epoch's weights a stage keeps (see stages.yaml `select`).
SELECT = ("last", "best_loss", "best_mae")


class ConfigError(ValueError):
    """A bad key or value; the message lists what would have been valid."""


def _load_yaml(name: str) -> dict:
    return yaml.safe_load(resources.files("cascade.configs").joinpath(name).read_text())


def defaults() -> dict:
    """The full default tree: defaults.yaml plus the stage and backbone tables."""
    cfg = _load_yaml("defaults.yaml")
    cfg["stages"] = _load_yaml("stages.yaml")
    cfg["backbones"] = _load_yaml("backbones.yaml")
    return cfg


def choices(cfg: dict) -> dict[str, tuple[str, ...]]:
    """Enumerated leaves and their valid values (registries are the source of truth)."""
    from cascade.models.backbones import BACKBONES
    from cascade.protocols import protocol_names
    from cascade.regress.engines import ENGINES
    from cascade.regress.features import LAYERS, POOLINGS

    stage_names = tuple(k for k in cfg["stages"] if k != "head_only")
    return {
        "target": TARGETS,
        "stage": stage_names,
        "backbone": tuple(BACKBONES) + ("timm:<model name>",),
        "train.mode": ("head", "full"),
        "train.select": SELECT,
        "train.amp": ("auto", "on", "off"),
        "device": ("auto", "cpu", "cuda"),
        "backend": ("loky", "dask"),
        "loss": LOSSES,
        "data.adience_policy": ("strict", "lenient"),
        "data.crop": ("auto", "box", "mtcnn", "none"),
        "data.no_face": ("quarantine", "centre"),
        "data.face_select": ("central", "probability"),
        "head.reinit": ("output", "all"),
        **{f"stages.{s}.protocol": protocol_names() for s in stage_names if "protocol" in cfg["stages"][s]},
        **{f"stages.{s}.split": ("holdout",) for s in stage_names if "split" in cfg["stages"][s]},
        **{f"stages.{s}.select": SELECT for s in cfg["stages"]},
        "tune.stage": ("",) + stage_names,
        "features.layer": LAYERS,
        "features.pooling": POOLINGS,
        "regress.engine": ENGINES,
        "regress.protocol": ("",) + protocol_names(),
        "regress.metric": ("r2", "mean_absolute_error"),
    }


# ----------------------------------------------------------------------------- overrides
def parse_value(text: str, like: Any, key: str) -> Any:
    """Parse `text` into the type of the default `like` (or the declared type of a null leaf)."""
    target = NULLABLE_TYPES.get(key, type(like)) if like is None else type(like)
    if like is None and text.lower() in ("null", "none", ""):
        return None
    try:
        if target is bool:
            low = text.lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return low in ("true", "1", "yes")
        if target is int:
            return int(text)
        if target is float:
            return float(text)
        if target is list:
            item = type(like[0]) if like else str
            return [item(t.strip()) for t in text.split(",") if t.strip()]
        if target is str:
            return text
    except ValueError:
        pass
    raise ConfigError(f"{key}={text!r}: expected {target.__name__} (default is {like!r})")


def _leaves(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        path = f"{prefix}{k}"
        out += _leaves(v, path + ".") if isinstance(v, dict) and v else [path]
    return out


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """Return a copy of `cfg` with `key=value` strings applied and validated."""
    cfg = copy.deepcopy(cfg)
    valid = _leaves(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, text = item.split("=", 1)
        node, parts = cfg, key.split(".")
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part) if isinstance(node, dict) else None
            if not isinstance(nxt, dict):
                _unknown_key(key, valid)
            node = nxt
        leaf = parts[-1]
        if not isinstance(node, dict) or leaf not in node or isinstance(node[leaf], dict) and node[leaf]:
            # per-backbone stage tables start empty for some stages; allow adding known stage keys
            if not _extends_backbone_table(cfg, parts):
                _unknown_key(key, valid)
            like = cfg["stages"][parts[3]].get(leaf) if len(parts) == 5 else {}
        else:
            like = node[leaf]
        node[leaf] = parse_value(text, like, key)
    validate(cfg)
    return cfg


def _extends_backbone_table(cfg: dict, parts: list[str]) -> bool:
    """`backbones.<b>.stages.<s>.<hp>=v` may add a hyper-parameter the table does not list yet."""
    if len(parts) == 5 and parts[0] == "backbones" and parts[2] == "stages":
        if parts[1] in cfg["backbones"] and parts[3] in cfg["stages"] and parts[4] in cfg["stages"][parts[3]]:
            cfg["backbones"][parts[1]].setdefault("stages", {}).setdefault(parts[3], {})
            return True
    return False


def _unknown_key(key: str, valid: list[str]):
    near = difflib.get_close_matches(key, valid, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(near)}?" if near else ""
    top = sorted({v.split(".")[0] for v in valid})
    raise ConfigError(f"unknown setting {key!r}.{hint} Top-level settings: {', '.join(top)}. "
                      f"Every valid key: `cascade run --list-keys`.")


def validate(cfg: dict) -> None:
    """Check enumerated values against their registries; errors list the valid values."""
    ch = choices(cfg)
    for s in cfg["stage"]:
        if s not in ch["stage"]:
            raise ConfigError(f"stage={s!r} is not a stage; valid: {', '.join(ch['stage'])}")
    if len(set(cfg["stage"])) != len(cfg["stage"]):
        raise ConfigError(f"stage={','.join(cfg['stage'])} repeats a stage")
    if cfg["target"] in cfg["stage"]:
        raise ConfigError(f"target={cfg['target']} is also in stage={','.join(cfg['stage'])}: the "
                          f"target's test images would have been trained on in that stage")
    for key, valid in ch.items():
        if key == "stage":
            continue
        value = _get(cfg, key)
        if value is None:
            continue
        if key == "backbone" and str(value).startswith("timm:") and len(value) > 5:
            continue
        if value not in valid:
            raise ConfigError(f"{key}={value!r} is not valid; valid values: {', '.join(valid)}")
    for key in ("seed", "jobs", "regress.folds", "regress.time_left", "regress.per_run_time", "regress.memory_mb"):
        if _get(cfg, key) < 0:
            raise ConfigError(f"{key}={_get(cfg, key)} must be >= 0")
    for key in _leaves(cfg):                   # hyper-parameters wherever they are set
        rule = _RANGES.get(key.rsplit(".", 1)[-1])
        value = _get(cfg, key)
        if rule and isinstance(value, (int, float)) and not isinstance(value, bool) and not rule[0](value):
            raise ConfigError(f"{key}={value!r} {rule[1]}")
    from cascade.regress.features import Mode
    for mode in cfg["regress"]["modes"]:
        Mode.parse(mode)
    for stage, span in cfg["labels"].items():
        m = re.fullmatch(r"(\d+)-(\d+)", str(span)) if span else None
        if span and not (m and int(m[1]) < int(m[2])):
            raise ConfigError(f"labels.{stage}={span!r}: expected an age span A-B with A < B (e.g. 0-100), "
                              f"or empty for the dataset's own range")


#: Ranges of the training hyper-parameters, checked at every level (stages.*, backbones.*.stages.*,
#: train.*): a negative epoch count or a zero learning rate is a clear error, not a silent no-op.
_RANGES = {"epochs": (lambda v: v >= 0, "must be >= 0"), "patience": (lambda v: v >= 0, "must be >= 0"),
           "batch_size": (lambda v: v >= 1, "must be >= 1"), "lr": (lambda v: v > 0, "must be > 0"),
           "lr_factor": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
           "val_fraction": (lambda v: 0 < v < 1, "must be between 0 and 1")}


def _get(cfg: dict, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def load(overrides: list[str] | None = None) -> dict:
    return apply_overrides(defaults(), overrides or [])


def list_keys(cfg: dict) -> list[str]:
    return [f"{k}={_get(cfg, k)!r}" for k in _leaves(cfg)]


# ----------------------------------------------------------------------------- resolution
def backbone_settings(cfg: dict) -> dict:
    name = cfg["backbone"]
    return cfg["backbones"]["timm" if name.startswith("timm:") else name]


def stage_mode(cfg: dict, is_target: bool, parent_is_root: bool) -> str:
    """Thesis rule: a target trained straight from the pretrained model is mode a (head only);
    every other stage fine-tunes the full network (modes b, c).  `train.mode=` overrides it."""
    if cfg["train"]["mode"]:
        return cfg["train"]["mode"]
    return "head" if is_target and parent_is_root else "full"


def stage_params(cfg: dict, stage: str, mode: str) -> dict:
    """Hyper-parameters of one stage: thesis table <- backbone table <- head-only <- train.*.

    Why this order: the thesis's values are the defaults, the backbone changes the learning rate,
    mode a (head only) has its own lr/batch/epochs, and an explicit `train.x=` wins over all.
    """
    bb = backbone_settings(cfg).get("stages", {}) or {}
    params = copy.deepcopy(cfg["stages"][stage])
    params.update(bb.get(stage, {}) or {})
    if mode == "head":
        params.update(cfg["stages"]["head_only"])
        params.update(bb.get("head_only", {}) or {})
    params["mode"] = mode
    params["loss"] = cfg["loss"]
    params["loss_options"] = {k: cfg["loss_options"][k] for k in LOSS_OPTIONS[cfg["loss"]]}
    for k in ("lr", "batch_size", "epochs", "patience", "augment", "select"):
        if cfg["train"][k] is not None:
            params[k] = cfg["train"][k]
    return params


def cascade_home(cfg: dict) -> Path:
    home = cfg.get("home") or os.environ.get("CASCADE_HOME") or "~/.cache/cascade"
    return Path(home).expanduser().resolve()
