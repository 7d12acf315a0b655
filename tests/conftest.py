"""Shared fixtures: one tiny synthetic suite per test session, and settings for fast runs."""
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"

#: Small, fast settings for end-to-end runs (tiny images, few epochs).
FAST = ["data.synth.scale=0.05", "backbones.demo.input_size=16",
        "backbones.demo.stages.imdb.epochs=2", "backbones.demo.stages.agedb.epochs=2",
        "backbones.demo.stages.fgnet.epochs=1", "backbones.demo.stages.adience.epochs=1",
        "backbones.demo.stages.adience3.epochs=1", "backbones.demo.stages.utkface.epochs=1",
        "backbones.demo.stages.head_only.epochs=2", "head.hidden=16"]


@pytest.fixture(scope="session")
def suite_home(tmp_path_factory) -> Path:
    """A CASCADE_HOME whose demo suite (scale 0.05) is generated once for the session."""
    from cascade import config as C
    from cascade.data.datasets import demo_suite

    home = tmp_path_factory.mktemp("home")
    cfg = C.load(FAST + [f"home={home}"])
    demo_suite(home, cfg["data"]["synth"]["scale"], cfg["data"]["synth"]["seed"], progress=False)
    return home


@pytest.fixture()
def home(suite_home, tmp_path) -> Path:
    """A fresh store that shares the session's generated suite (stages are not shared)."""
    new = tmp_path / "home"
    new.mkdir()
    (new / "demo").symlink_to(suite_home / "demo")
    return new


def import_demo_weights(tmp_path: Path, home: Path, name: str = "mydemo") -> Path:
    """`home/weights/<name>.safetensors` made by the real import path (`cascade weights import`'s
    function) from the demo backbone's random body: a tiny weight file with its sidecar."""
    from safetensors.torch import save_file

    from cascade.models import build_backbone
    from cascade.models.importers import import_weights

    src = tmp_path / f"{name}-source.safetensors"
    save_file({k: v.contiguous() for k, v in build_backbone("demo").body.state_dict().items()}, src)
    return import_weights(src, "safetensors", name, "demo", home, preprocessing=build_backbone("demo").preprocessing)


def snapshot(root: Path) -> dict:
    """Every file under `root` (links followed) with its bytes' sha256: equal before and after a
    command that must write nothing."""
    import hashlib
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}
