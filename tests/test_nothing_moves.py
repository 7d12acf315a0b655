"""Nothing moves: every committed results folder made by `cascade run` (or a `cascade study`
cell) rebuilds, from the settings words its run.json recorded, the stage keys it recorded, and
the opening lines of its table's header (target, data, backbone and weights).

Why: a stage key hashes the settings, the code's version constants and the data's manifest, so
a refactor that moves one (a renamed setting, a default that changed, a protocol file read
another way, a different demo suite) silently orphans every stored stage and makes the
committed tables unreproducible.  Planning alone is enough to see it (`plan.build` hashes every
key without training), so this runs in minutes where `cascade verify` would take hours.

Which folders: those whose run.json has both `settings` and `stages` (what
:func:`cascade.verify.recorded` accepts).  The others are not plans and are left out here:
analysis folders (cam-, distributions-, subjects-, groups-: settings, no stage keys), `cascade
compare` / `cascade ensemble` folders (built from other folders, which are checked themselves),
`cascade regress` folders (their words, no stage keys recorded), and folders without a run.json
(benchmarks/, overlap-demo/, predict-demo/).

Folders made on real data (a `data.root.*` word) rebuild where that data is present, relative
paths read from the repository root as the run read them, and skip cleanly where it is not;
their default weights are imported here from the reference checkpoint, as the run's store had
them.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REFERENCE

ROOT = Path(__file__).resolve().parents[1]
#: Default weight files a recorded folder's store held, with the source `cascade weights import`
#: made each from: (source, format, backbone).
IMPORTABLE = {"mobilefacenet_casia": (REFERENCE / "weights" / "mobilefacenet_casia_068.ckpt",
                                      "mobilefacenet-ckpt", "mobilefacenet")}


def plan_folders() -> list[Path]:
    """The results folders that record a plan: settings words and stage keys."""
    out = []
    for meta_path in sorted((ROOT / "results").glob("*/run.json")):
        meta = json.loads(meta_path.read_text())
        if "settings" in meta and "stages" in meta:
            out.append(meta_path.parent)
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One store for every folder: planning writes nothing but the demo suite (generated once,
    at the default scale every recorded demo run used) and imported weights."""
    from cascade import config as C
    from cascade.data.datasets import demo_suite

    home = tmp_path_factory.mktemp("nothing-moves")
    cfg = C.load([f"home={home}"])
    demo_suite(home, cfg["data"]["synth"]["scale"], cfg["data"]["synth"]["seed"], progress=False)
    return home


def _weights_in(home: Path, cfg: dict) -> None:
    """The folder's default weight file in `home`, imported from the reference copy of its
    source (skip where that source is absent)."""
    from cascade import config as C
    from cascade.models.importers import import_weights

    name = C.backbone_settings(cfg)["weights"] if cfg["weights"] == "default" else cfg["weights"]
    if name not in IMPORTABLE or (home / "weights" / f"{name}.safetensors").exists():
        return
    source, fmt, backbone = IMPORTABLE[name]
    if not source.exists():
        pytest.skip(f"{source} absent: the weights {name!r} this folder's store held")
    import_weights(source, fmt, name, backbone, home)


@pytest.mark.slow
@pytest.mark.parametrize("folder", plan_folders(), ids=lambda p: p.name)
def test_a_recorded_plan_rebuilds_its_stage_keys(folder, store, monkeypatch):
    from cascade import config as C
    from cascade.report.header import opening
    from cascade.report.tables import stage_keys
    from cascade.stages import plan as P
    from cascade.verify import key_differences

    meta = json.loads((folder / "run.json").read_text())
    device = meta["environment"].get("device", "cpu")
    if device != "cpu":
        pytest.skip(f"{folder.name} was made on {device}: its keys hash that device's settings")
    monkeypatch.chdir(ROOT)                          # relative data roots, as `cascade run` read them
    cfg = C.load(list(meta["settings"]) + [f"home={store}", "devices=cpu"])
    roots = {k: v for k, v in cfg["data"]["root"].items() if v and not Path(v).expanduser().is_dir()}
    if roots:
        pytest.skip(f"{folder.name} reads data that is absent here: {roots}")
    _weights_in(store, cfg)
    plans = [P.build(c) for c in C.per_seed(cfg)]
    moved = key_differences(meta["stages"], stage_keys(plans))
    assert not moved, f"{folder}: stage keys moved:\n" + "\n".join(moved)
    # the header's opening lines, rebuilt from the plan, read as the committed table wrote them
    plan = plans[0]
    target, *rest = opening(plan.cfg, plan.targets[0].info["protocol"]["name"], "", plan.tables,
                            plan.nodes[0].info["weights"])
    assert meta["header"][0].startswith(target) and meta["header"][1:3] == rest


def test_every_run_folder_is_a_plan_or_named_as_not_one():
    """A new kind of results folder is decided on here (rebuilt above, or left out with its
    reason in the module docstring), not silently skipped."""
    not_plans = {"compare", "ensemble", "regress"}          # run.json "command"
    analyses = ("cam-", "distributions-", "subjects-", "groups-")
    plans = set(plan_folders())
    for folder in sorted(p for p in (ROOT / "results").iterdir() if p.is_dir()):
        meta_path = folder / "run.json"
        if folder in plans or not meta_path.exists():
            continue
        meta = json.loads(meta_path.read_text())
        assert meta.get("command") in not_plans or folder.name.startswith(analyses), (
            f"{folder}: a run.json that is neither a plan (settings + stages) nor a known other kind; "
            f"decide in tests/test_nothing_moves.py whether its keys must rebuild")
