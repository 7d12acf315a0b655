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

#: Types of leaves whose default is null (null = "not set; use the stage's own value").
NULLABLE_TYPES: dict[str, type] = {
    "train.lr": float, "train.batch_size": int, "train.epochs": int, "train.patience": int,
    "train.mode": str, "train.augment": bool, "train.select": str, "train.fraction": float,
    "train.optimizer": str, "train.weight_decay": float, "train.lr_min": float, "train.early_stop": int,
    "train.freeze_epochs": int, "train.trainable_layers": int, "train.unfreeze": str,
    "train.body_lr": float, "train.cut_cache": bool, "train.tta": str,
}

#: Item types of list leaves whose default is empty.
LIST_ITEM_TYPES: dict[str, type] = {"seeds": int}

#: Null-default leaves of every stage table (`stages.<name>.<leaf>`, and a backbone's
#: `backbones.<b>.stages.<name>.<leaf>`): null = the thesis rule decides.
STAGE_NULLABLE_TYPES: dict[str, type] = {"mode": str}


def _nullable_type(key: str) -> type | None:
    """The declared type of a leaf whose default is null (None: not a nullable leaf)."""
    parts = key.split(".")
    if (len(parts) == 3 and parts[0] == "stages") or (len(parts) == 5 and parts[0] == "backbones"):
        return STAGE_NULLABLE_TYPES.get(parts[-1]) or NULLABLE_TYPES.get(key)
    return NULLABLE_TYPES.get(key)


#: Training losses (cascade.train.losses) and the options each one reads.
LOSSES = ("ce", "dldl", "mean_variance")
LOSS_OPTIONS = {"ce": (), "dldl": ("sigma",), "mean_variance": ("lambda_mean", "lambda_var")}

#: Optimiser and layer-freezing settings (cascade.train.schedule), added to a stage only when set.
SCHEDULE = ("optimizer", "weight_decay", "lr_min", "early_stop", "freeze_epochs", "trainable_layers", "unfreeze",
            "body_lr", "cut_cache", "tta")

#: Settings about training the body, meaningless (and not keyed) in a head-only stage.
BODY_ONLY = ("body_lr", "cut_cache")

#: Test-time augmentations (`train.tta`): the mean of the probabilities over the crop's views.
TTA = ("flip",)

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
    from cascade.train.balance import SAMPLERS, WEIGHTS

    stage_names = tuple(k for k in cfg["stages"] if k != "head_only")
    return {
        "target": targets(cfg),
        "stage": stage_names,
        "backbone": tuple(BACKBONES) + ("timm:<model name>",),
        "train.mode": ("head", "full"),
        **{f"stages.{s}.mode": ("head", "full") for s in stage_names},
        "train.select": SELECT,
        "train.amp": ("auto", "on", "off"),
        "train.numerics": ("native", "portable"),
        "train.optimizer": ("adam", "adamw"),
        "balance.weights": WEIGHTS,
        "balance.sampler": SAMPLERS,
        "balance.stages": ("target", "all"),
        "cam.target": ("class", "expected"),
        "train.channels_last": ("auto", "on", "off"),
        "backend": ("auto", "fork", "loky", "dask"),
        "loss": LOSSES,
        "data.adience_policy": ("strict", "lenient"),
        "data.demo": ("allow", "forbid"),
        "data.adience_variant": ("faces", "aligned"),
        "data.crop": ("auto", "box", "mtcnn", "align", "none"),
        "data.no_face": ("quarantine", "centre"),
        "data.face_select": ("central", "probability"),
        "data.outside_labels": ("error", "drop"),
        "data.exclude_overlap": ("none", "identities", "duplicates", "both"),
        "data.overlap.faces": ("",) + tuple(BACKBONES),
        "head.reinit": ("output", "all"),
        **{f"stages.{s}.protocol": protocol_names() for s in stage_names if "protocol" in cfg["stages"][s]},
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
    declared = _nullable_type(key)
    target = (declared or type(like)) if like is None else type(like)
    if (like is None or declared) and text.lower() in ("null", "none", ""):
        return None                    # a nullable leaf set by an earlier word can be unset again
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
            item = LIST_ITEM_TYPES.get(key) or (type(like[0]) if like else str)
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
            opens, like = _extends_open_table(cfg, parts)
            if not opens:
                _unknown_key(key, valid)
        else:
            like = node[leaf]
        node[leaf] = parse_value(text, like, key)
    validate(cfg)
    return cfg


def _extends_open_table(cfg: dict, parts: list[str]) -> tuple[bool, Any]:
    """Whether a key adds an entry to a table that is open to additions, and the default the new
    value's type comes from: `backbones.<b>.stages.<s>.<hp>=v` (a stage hyper-parameter the
    backbone's table does not list yet) and `plan.gpus.<class>=TFLOPS` (a GPU class to price)."""
    if len(parts) == 5 and parts[0] == "backbones" and parts[2] == "stages":
        if parts[1] in cfg["backbones"] and parts[3] in cfg["stages"] and parts[4] in cfg["stages"][parts[3]]:
            cfg["backbones"][parts[1]].setdefault("stages", {}).setdefault(parts[3], {})
            return True, cfg["stages"][parts[3]][parts[4]]
    if len(parts) == 3 and parts[:2] == ["plan", "gpus"]:
        return True, 0.0
    return False, None


def did_you_mean(value: Any, valid) -> str:
    """' Did you mean: x?' for a mistyped choice (empty when nothing is close)."""
    near = difflib.get_close_matches(str(value), [str(v) for v in valid], n=3, cutoff=0.6)
    return f" Did you mean: {', '.join(near)}?" if near else ""


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
            raise ConfigError(f"stage={s!r} is not a stage.{did_you_mean(s, ch['stage'])} Valid: {', '.join(ch['stage'])}")
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
            grid = (f" Several {key}s are a study: `cascade study FILE` runs backbones x targets from one file "
                    f"(configs/studies/thesis.yaml)." if key in ("backbone", "target") and "," in str(value) else "")
            raise ConfigError(f"{key}={value!r} is not valid.{did_you_mean(value, valid)} "
                              f"Valid values: {', '.join(valid)}.{grid}")
    if not re.fullmatch(r"auto|cpu|cuda|\d+(,\d+)*", str(cfg["devices"])):
        raise ConfigError(f"devices={cfg['devices']!r}: expected auto, cpu, cuda or GPU ordinals like 0,1,3")
    for k in cfg["report"]["tolerance"]:
        if not re.fullmatch(r"\d+(\.\d+)?", str(k)):
            raise ConfigError(f"report.tolerance={','.join(map(str, cfg['report']['tolerance']))}: expected "
                              f"non-negative numbers of years (e.g. 1,2,3)")
    for k in ("weight_decay", "lr_min", "early_stop", "freeze_epochs", "trainable_layers"):
        if cfg["train"][k] is not None and cfg["train"][k] < (1 if k in ("early_stop", "trainable_layers") else 0):
            raise ConfigError(f"train.{k}={cfg['train'][k]} is out of range (see cascade/configs/defaults.yaml)")
    from cascade.train.schedule import parse_unfreeze
    try:
        parse_unfreeze(cfg["train"]["unfreeze"])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    t = cfg["train"]
    if t["body_lr"] is not None and not t["body_lr"] > 0:
        raise ConfigError(f"train.body_lr={t['body_lr']}: expected a factor > 0 of the head's learning rate")
    if t["tta"] is not None and t["tta"] not in TTA:
        raise ConfigError(f"train.tta={t['tta']!r}; valid: {', '.join(TTA)} (or null: none)")
    from cascade.train.cut import fixed_top_problem
    if t["cut_cache"] and (problem := fixed_top_problem(t)):
        raise ConfigError(problem)
    if cfg["balance"]["minority_augment"] < 0:
        raise ConfigError(f"balance.minority_augment={cfg['balance']['minority_augment']}: expected a factor >= 0")
    if cfg["balance"]["cap"] < 0:
        raise ConfigError(f"balance.cap={cfg['balance']['cap']}: expected a share of the mean class count >= 0")
    if cfg["balance"]["remove"]:
        from cascade.train.balance import parse_remove
        try:
            parse_remove(cfg["balance"]["remove"], [0.0])
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    overlap = cfg["data"]["overlap"]
    if not 0 <= overlap["hamming"] <= 64 or not 0 <= overlap["colour"] <= 255 or not -1 <= overlap["cosine"] <= 1:
        raise ConfigError(f"data.overlap.hamming={overlap['hamming']} / colour={overlap['colour']} / cosine="
                          f"{overlap['cosine']}: expected 0-64 bits, 0-255 (255 turns the colour test off) and a "
                          f"cosine similarity in [-1, 1]")
    if cfg["track"]["mlflow_uri"] and not cfg["track"]["mlflow"]:
        raise ConfigError(f"track.mlflow_uri={cfg['track']['mlflow_uri']} is set but track.mlflow=false: "
                          f"add track.mlflow=true to log there")
    fraction = cfg["train"]["fraction"]
    if fraction is not None and not 0 < fraction <= 1:
        raise ConfigError(f"train.fraction={fraction}: expected a share of the training rows in (0, 1]")
    for name in cfg["cam"]["backbones"]:
        if name not in ch["backbone"] and not (name.startswith("timm:") and len(name) > 5):
            raise ConfigError(f"cam.backbones: {name!r} is not a backbone; valid: {', '.join(ch['backbone'])}")
    if len(set(cfg["seeds"])) != len(cfg["seeds"]) or any(s < 0 for s in cfg["seeds"]):
        raise ConfigError(f"seeds={','.join(map(str, cfg['seeds']))}: expected distinct seeds >= 0 (e.g. 0,1,2)")
    if not 0 < cfg["plan"]["utilisation"] <= 1 or any(not v > 0 for v in cfg["plan"]["gpus"].values()):
        raise ConfigError("plan.utilisation must be in (0, 1] and every plan.gpus.<class> peak > 0 TFLOP/s")
    if any(h < 1 for h in cfg["ensemble"]["hidden"]):
        raise ConfigError(f"ensemble.hidden={','.join(map(str, cfg['ensemble']['hidden']))}: expected layer sizes >= 1")
    lo_hi = cfg["data"]["imdb_clean"]["age_range"]
    if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
        raise ConfigError(f"data.imdb_clean.age_range={','.join(map(str, lo_hi))}: expected two ages LO,HI with LO <= HI")
    for key, low in (("seed", 0), ("split_seed", 0), ("jobs", 0), ("folds_per_device", 1), ("cam.images", 1), ("analyse.window", 0), ("analyse.bin", 1),
                     ("analyse.hard", 1), ("regress.folds", 0), ("regress.time_left", 0), ("regress.per_run_time", 0),
                     ("regress.memory_mb", 0), ("ensemble.max_iter", 1), ("predict.top", 1)):
        if _get(cfg, key) < low:
            raise ConfigError(f"{key}={_get(cfg, key)} must be >= {low}")
    for key in _leaves(cfg):                   # hyper-parameters wherever they are set
        rule = _RANGES.get(key.rsplit(".", 1)[-1])
        value = _get(cfg, key)
        if rule and isinstance(value, (int, float)) and not isinstance(value, bool) and not rule[0](value):
            raise ConfigError(f"{key}={value!r} {rule[1]}")
    from cascade.regress.features import Mode
    for mode in cfg["regress"]["modes"]:
        Mode.parse(mode)
    from cascade.data.datasets import label_ranges
    for stage, spec in cfg["labels"].items():
        try:
            if spec:                   # equal:W takes its range from the data: checked with a stand-in
                label_ranges(str(spec), 0, 1)
        except ValueError as exc:
            raise ConfigError(f"labels.{stage}: {exc}. Valid: an age span A-B (one class per year), "
                              f"bins:A-B,C-D,... (ranges), equal:W or equal:W:A-B (W-year ranges), or empty "
                              f"for the dataset's own range") from None


#: Ranges of the training hyper-parameters, checked at every level (stages.*, backbones.*.stages.*,
#: train.*): a negative epoch count or a zero learning rate is a clear error, not a silent no-op.
_RANGES = {"epochs": (lambda v: v >= 0, "must be >= 0"), "patience": (lambda v: v >= 0, "must be >= 0"),
           "batch_size": (lambda v: v >= 1, "must be >= 1"), "lr": (lambda v: v > 0, "must be > 0"),
           "lr_factor": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
           "val_fraction": (lambda v: 0 < v < 1, "must be between 0 and 1"),
           "processes": (lambda v: v >= 1, "must be >= 1")}


def _get(cfg: dict, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def settings_file(path: Path) -> list[str]:
    """A YAML settings file (e.g. `configs/studies/001.yaml`) as `key=value` words in file order:
    its `settings:` mapping (or the whole file), nested keys dotted, lists comma-joined.  Why
    YAML: a study's configuration is read, diffed and cited as a file, and it goes through the
    same validation as the command line."""
    try:
        tree = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"settings file {path}: {exc}") from None
    tree = tree.get("settings", tree) if isinstance(tree, dict) else tree
    if not isinstance(tree, dict):
        raise ConfigError(f"settings file {path}: expected a mapping of settings (or a `settings:` mapping)")
    return mapping_words(tree)


def mapping_words(tree: dict, prefix: str = "") -> list[str]:
    """A mapping of settings as `key=value` words in its order: nested keys dotted, lists and
    tuples comma-joined, None as null, booleans lower-case.  A settings file and the Python API's
    keyword settings (cascade.api) both become words this way, so they are checked as the command
    line's are."""
    out = []
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out += mapping_words(v, key + ".")
        elif isinstance(v, (list, tuple)):
            out.append(f"{key}={','.join(str(x) for x in v)}")
        else:
            out.append(f"{key}={'null' if v is None else str(v).lower() if isinstance(v, bool) else v}")
    return out


def expand(words: list[str]) -> list[str]:
    """Settings words with every `FILE.yaml` word replaced by the file's settings (in place, so
    later words override it)."""
    out = []
    for w in words:
        out += settings_file(Path(w)) if "=" not in w and w.endswith((".yaml", ".yml")) else [w]
    return out


def load(overrides: list[str] | None = None) -> dict:
    return apply_overrides(defaults(), expand(overrides or []))


def per_seed(cfg: dict) -> list[dict]:
    """One configuration per seed of `seeds` (each its own stage keys: the seed is hashed), or
    the configuration itself when `seeds` is empty."""
    if not cfg["seeds"]:
        return [cfg]
    out = []
    for seed in cfg["seeds"]:
        one = copy.deepcopy(cfg)
        one["seed"] = seed
        out.append(one)
    return out


def targets(cfg: dict) -> tuple[str, ...]:
    """The stages that can be a run's target: those whose table in stages.yaml names the
    `protocol` that tests them (a stage without one, like IMDB, only ever pre-trains)."""
    return tuple(k for k, v in cfg["stages"].items() if k != "head_only" and "protocol" in v)


def list_keys(cfg: dict) -> list[str]:
    return [f"{k}={_get(cfg, k)!r}" for k in _leaves(cfg)]


# ----------------------------------------------------------------------------- resolution
def backbone_settings(cfg: dict) -> dict:
    name = cfg["backbone"]
    return cfg["backbones"]["timm" if name.startswith("timm:") else name]


def stage_mode(cfg: dict, is_target: bool, parent_is_root: bool, stage: str | None = None) -> str:
    """Which parameters a stage trains: `head` (the body frozen, thesis mode a) or `full`.

    `train.mode=` is the global override; else the stage's own `stages.<name>.mode` (or its
    backbone's `backbones.<b>.stages.<name>.mode`), so "fine-tune the body on UTKFace, then train
    only the head on each FG-NET fold" is `stages.fgnet.mode=head` and leaves the UTKFace stage —
    and its key — as it was; else the thesis rule: a target trained straight from the pretrained
    model is mode a (head only), every other stage fine-tunes the full network (modes b, c)."""
    if cfg["train"]["mode"]:
        return cfg["train"]["mode"]
    if stage is not None:
        own = (backbone_settings(cfg).get("stages") or {}).get(stage) or {}
        declared = own.get("mode") or cfg["stages"][stage].get("mode")
        if declared:
            return declared
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
    if cfg["train"]["fraction"] is not None:           # keyed only when set
        params["train_fraction"] = cfg["train"]["fraction"]
    for k in SCHEDULE:                                 # the related studies' schedules: keyed only when set
        if cfg["train"][k] is not None and not (mode == "head" and k in BODY_ONLY):
            params[k] = cfg["train"][k]
    return params


def cascade_home(cfg: dict) -> Path:
    home = cfg.get("home") or os.environ.get("CASCADE_HOME") or "~/.cache/cascade"
    return Path(home).expanduser().resolve()
