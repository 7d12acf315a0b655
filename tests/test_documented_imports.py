"""Every `cascade weights import` line of docs/backbones-and-weights.md, run as written on a file
generated in that release's format and under its public name, writes the weights a run of that
backbone looks for (`weights=default`, or the name the line says to pass), and they load into the
body: a user who follows the page for any backbone gets a run."""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest
import torch

from cascade import config as C
from cascade.cli import main
from cascade.models import build_backbone
from cascade.models import weights as W

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "keras_equivalence"))
LINES = re.findall(r"^(cascade weights import [^#\n]*?)\s*(?:#.*)?$",
                   (ROOT / "docs" / "backbones-and-weights.md").read_text(), re.M)


def _release(name: str, path: Path) -> None:
    """A file in the format and layout of the public release `name` (random weights)."""
    from test_import import _vgg_face_dag, _write_pkl, pkl_names, random_resnet
    from test_mobilefacenet import random_state, save_legacy

    if name.endswith(".h5"):
        from h5_layout import load_layout, write
        model = re.search(r"(vgg16|resnet50|senet50)\.h5", name).group(1)
        tag = f"{model}_{'notop' if 'notop' in name else 'top'}"
        write(path, load_layout(ROOT / "tests" / "keras_equivalence" / "fixtures" / f"{tag}.layout.json"), 0)
    elif name.endswith("_ft_weight.pkl"):
        _write_pkl(path, random_resnet(pkl_names, se=name.startswith("senet")))
    elif name == "vgg_face_dag.pth":
        torch.save(_vgg_face_dag(), path)
    elif name == "068.ckpt":
        save_legacy({"epoch": 68, "net_state_dict": random_state()}, path)
    elif name.startswith("2018"):
        from facenet_pytorch import InceptionResnetV1
        classes = 10575 if "casia" in name else 8631
        torch.save(InceptionResnetV1(pretrained=None, classify=True, num_classes=classes).state_dict(), path)
    elif name == "resnet50.pth":
        import timm
        torch.save(timm.create_model("resnet50", pretrained=False).state_dict(), path)
    else:
        raise AssertionError(f"docs name a release this test cannot generate: {name}")


def test_the_page_lists_an_import_for_every_default_weight_file():
    made = {shlex.split(line)[shlex.split(line).index("--name") + 1] for line in LINES}
    defaults = {b["weights"] for b in C.load([])["backbones"].values() if b["weights"] != "none"}
    assert defaults <= made, defaults - made


@pytest.mark.slow
@pytest.mark.parametrize("line", LINES, ids=lambda line: shlex.split(line)[3])
def test_each_documented_import_gives_a_runnable_backbone(line, tmp_path, monkeypatch):
    words = shlex.split(line)[1:]
    _release(words[2], tmp_path / words[2])
    home = tmp_path / "home"
    monkeypatch.setenv("CASCADE_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert main(words) == 0
    name = words[words.index("--name") + 1]
    sidecar = (home / "weights" / f"{name}.json").read_text()
    backbone = re.search(r'"backbone": "([^"]+)"', sidecar).group(1)
    cfg = C.load([f"backbone={backbone}"])
    table = cfg["backbones"]["timm" if backbone.startswith("timm:") else backbone]
    spec = "default" if table["weights"] == name else name
    path = W.resolve(spec, table["weights"], home)
    body = build_backbone(backbone).body
    W.load_body(body, path)
    size = 112 if backbone == "mobilefacenet" else 80 if backbone == "inception_resnet_v1" else 64
    with torch.no_grad():
        out = body.eval()(torch.randn(1, 3, size, size))
    assert out.ndim == 4 and torch.isfinite(out).all()
