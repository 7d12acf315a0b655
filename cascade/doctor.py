"""`cascade doctor [key=value ...]`: one screen to read after installing and before a long run.

It checks what `cascade run` with the same settings needs — the libraries and devices, MTCNN's
weights, every dataset the run reads, the backbone's weight file, the auto-sklearn environment,
free disk under `$CASCADE_HOME` — and lists every problem with its fix.  Why one command: each
of these otherwise shows up on its own, some after an hour of work (a full disk at the last
checkpoint, a wrong sha256 after the demo suite was generated).  It writes nothing (no demo
suite, no cache, no store folder), so it is safe to run anywhere, any time.

The exit status is 0 exactly when the run can start: no problem `plan.problems` finds, every
dataset readable, MTCNN's weights present where a dataset is cropped with it, the auto-sklearn
environment ready when `regress.engine=autosklearn` is given (the regression needs it; otherwise
it is a note), and enough free disk for the rough estimate of what the run writes.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

from cascade import config as C
from cascade.data.datasets import DemoSuiteMissing, configured_root, crop_settings, missing_root, open_dataset
from cascade.models import weights as W
from cascade.stages import plan as P

MTCNN_FILES = ("pnet.pt", "rnet.pt", "onet.pt")
FACENET = "pip install --force-reinstall facenet-pytorch==2.5.3"


def libraries() -> str:
    """The installed version of each library whose version can move a run's numbers (the
    fingerprint's list; "not installed" when absent), Pillow's libjpeg and numpy's BLAS."""
    from cascade.runtime import LIBRARIES, blas_library, libjpeg_version, package_version

    return ", ".join([f"{name} {package_version(name)}" for name in LIBRARIES] +
                     [f"libjpeg {libjpeg_version()}", f"BLAS {blas_library()}"])


def devices(cfg: dict) -> str:
    """CPU cores and the CUDA devices torch sees, and where the run trains (stages/placement.py)."""
    import torch

    from cascade.stages.placement import placement

    n = torch.cuda.device_count()
    cuda = ", ".join(torch.cuda.get_device_name(i) for i in range(n)) if n else "none"
    try:
        where = placement(cfg, 1 << 30)
    except ValueError as exc:                  # a devices= this machine cannot give: listed as a problem too
        return f"{os.cpu_count()} CPU cores; CUDA devices: {cuda}; {exc}"
    return (f"{os.cpu_count()} CPU cores; CUDA devices: {cuda}; the run trains on {', '.join(where.devices)}, "
            f"folds {where.workers} at a time with {where.threads} CPU thread(s) each")


def mtcnn_missing() -> tuple[Path | None, list[str]]:
    """(facenet-pytorch's data folder, the MTCNN weight files missing there); the folder is None
    when facenet-pytorch is not installed.  Found without importing the package."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None, list(MTCNN_FILES)
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    return data, [f for f in MTCNN_FILES if not (data / f).is_file()]


def datasets(cfg: dict) -> list[str]:
    """The datasets the run reads: its stages' and its target's, each once."""
    return list(dict.fromkeys(C.stage_params(cfg, s, "full")["dataset"] for s in [*cfg["stage"], cfg["target"]]))


def dataset_status(cfg: dict, name: str, home: Path):
    """(the screen's text, the opened table or None, a problem or None) of dataset `name`, read
    without writing (a demo suite not generated yet is said so, not generated)."""
    key, given = configured_root(cfg, name)
    where = f"data.root.{key}={given}" if given else "demo suite"
    if missing_root(cfg, name):
        return f"{where}: see the problems below", None, None      # one of plan.problems
    try:
        table = open_dataset(cfg, name, home, generate=False)
    except DemoSuiteMissing:
        return f"{where}: not generated yet (a run generates it first; doctor writes nothing)", None, None
    except (OSError, ValueError) as exc:      # an unusable folder's error names its rules and examples
        return f"{where}: cannot be read", None, f"dataset {name} ({where}): {exc}"
    return (f"{where}: {len(table):,} images, {table.frame['subject'].nunique():,} subjects, "
            f"crop {crop_settings(cfg, table)['mode']}"), table, None


def weights_status(cfg: dict, home: Path) -> str:
    """The backbone's weight file: present, its sha256 against the sidecar, the preprocessing it
    records (a missing or damaged file is one of plan.problems, with its command)."""
    try:
        path = W.resolve(cfg["weights"], C.backbone_settings(cfg)["weights"], home)
    except FileNotFoundError:
        return "missing: see the problems below (the import command)"
    if path is None:
        return "none: random initialisation"
    if W.problem(path):
        return f"{path}: see the problems below"
    from cascade.models.importers import sidecar_path

    side = sidecar_path(path)
    recorded = side.exists() and json.loads(side.read_text()).get("sha256")
    sha = f"sha256 matches {side.name}" if recorded else "sha256 not recorded (no sidecar): not checked"
    pre = W.recorded_preprocessing(path)
    pre = (f"preprocessing recorded: {pre['channels']}, scale {pre['scale']:.4g}, mean {pre['mean']}, std {pre['std']}"
           if pre else "no preprocessing recorded: the backbone's own")
    return f"{path}: present, {sha}, {pre}"


def engine_status(cfg: dict, required: bool) -> tuple[str, str | None]:
    """(the screen's text, a problem or None) of auto-sklearn's environment: a problem only when
    the run needs it (`required`), else a note with the command that sets it up."""
    from cascade.regress import engine_env

    try:
        engine_env.python(cfg)
    except FileNotFoundError as exc:
        if required:
            return "not set up: see the problems below", str(exc)
        return f"not set up (only `cascade regress` with engine=autosklearn needs it): {exc}", None
    return f"ready at {engine_env.env_dir(cfg)} ({engine_env.versions(cfg)})", None


def _parameter_bytes(cfg: dict) -> int:
    """The backbone's parameter bytes, counted on the meta device (no memory, no weights read)."""
    import torch

    from cascade.models import build_backbone

    with torch.device("meta"):
        body = build_backbone(cfg["backbone"]).body
    return sum(p.numel() * p.element_size() for p in body.parameters())


def _nearest_existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def _size(n: float) -> str:
    """Bytes as a reader wants them (3 significant digits, decimal units like `df -H`)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


def disk_status(cfg: dict, home: Path, images: int, complete: bool) -> tuple[str, str | None]:
    """(the screen's text, a problem or None): free disk under the home against a rough estimate
    of what the run writes — the image cache (images × size² × 3 bytes) and a checkpoint of
    twice the parameter bytes (weights and optimiser state) per trained node and seed.  Rough on
    purpose: fold checkpoints, tables and the demo suite itself are not counted, nor the images
    of a dataset that is not readable yet (`complete` False)."""
    size = C.backbone_settings(cfg)["input_size"]
    nodes = (len(cfg["stage"]) + len(P.target_chains(cfg))) * len(C.per_seed(cfg))
    need = images * size * size * 3 + nodes * 2 * _parameter_bytes(cfg)
    where = _nearest_existing(home)
    free = shutil.disk_usage(where).free
    text = (f"{_size(free)} free under {where}; the run writes about {_size(need)} (rough: an image cache of "
            f"{images:,} images × {size}² × 3 bytes{'' if complete else ', datasets not readable yet not counted'}, "
            f"and 2 × parameter bytes per trained node)")
    if free >= need:
        return text, None
    return text, (f"disk: {_size(free)} free under {where}, the run writes about {_size(need)}: "
                  f"free some space, or point home= ($CASCADE_HOME) at a larger disk")


def mtcnn_status(cfg: dict, tables: dict) -> tuple[str, str | None]:
    """(the screen's text, a problem or None) of MTCNN's weights: a problem only when a dataset of
    the run (`tables`: name -> opened table or None) is cropped with MTCNN."""
    folder, missing = mtcnn_missing()
    cropped = [n for n, t in tables.items() if t is not None and crop_settings(cfg, t)["mode"] in ("mtcnn", "align")]
    if not missing:
        return f"{', '.join(MTCNN_FILES)} present in {folder}", None
    text = f"missing {', '.join(missing)} ({f'in {folder}' if folder else 'facenet-pytorch is not installed'})"
    if not cropped:
        return f"{text}; no dataset of this run is cropped with MTCNN", None
    return text, f"MTCNN: {text}; the run crops {', '.join(cropped)} with it: {FACENET}"


def doctor(words: list[str]) -> tuple[str, bool]:
    """The screen for the run `words` configure, and whether that run can start."""
    words = C.expand(words)
    cfg = C.load(words)
    home = C.cascade_home(cfg)
    problems = P.problems(cfg)
    status = {name: dataset_status(cfg, name, home) for name in datasets(cfg)}
    tables = {name: s[1] for name, s in status.items()}
    # autosklearn is the default engine, yet `cascade run` never regresses: naming it says you will
    required = cfg["regress"]["engine"] == "autosklearn" and any(w.startswith("regress.engine=") for w in words)
    checks = [("MTCNN", mtcnn_status(cfg, tables)), ("auto-sklearn", engine_status(cfg, required)),
              ("disk", disk_status(cfg, home, sum(len(t) for t in tables.values() if t is not None),
                                   None not in tables.values()))]
    problems += [s[2] for s in status.values() if s[2]] + [problem for _, (_, problem) in checks if problem]
    lines = [f"cascade doctor: the run stage={','.join(cfg['stage'])} target={cfg['target']} "
             f"backbone={cfg['backbone']} weights={cfg['weights']} (home {home})",
             f"{'libraries':<14}{libraries()}", f"{'devices':<14}{devices(cfg)}",
             *(f"{'data' if i == 0 else '':<14}{name:<9} {s[0]}" for i, (name, s) in enumerate(status.items())),
             f"{'weights':<14}{weights_status(cfg, home)}",
             *(f"{label:<14}{text}" for label, (text, _) in checks)]
    readable = [name for name, t in tables.items() if t is not None]
    if readable:
        lines.append(f"{'crops':<14}see what each stage trains on before it does: "
                     + "; ".join(f"`cascade data sheet {name}`" for name in readable)
                     + " with these settings (a PNG of random crops with their ages and quarantined rows)")
    if problems:
        lines += ["", f"{len(problems)} problem(s); the run cannot start until each is fixed:",
                  *(f"  - {p}" for p in problems)]
    else:
        lines += ["", "no problems: the run can start"]
    return "\n".join(lines), not problems
