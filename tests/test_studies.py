"""Each related study's configuration (configs/studies/) is valid as written and runs on the demo
suite with the demo backbone, its table in the results folder under the study's name."""
from pathlib import Path

import pandas as pd
import pytest

from cascade import config as C
from cascade.cli import main

from conftest import FAST

STUDIES = sorted((Path(__file__).resolve().parents[1] / "configs" / "studies").glob("[0-9]*.yaml"))   # the related studies (a grid study file: test_study.py)


def test_one_configuration_per_related_study():
    assert [p.name[:3] for p in STUDIES] == ["000", "001", "002", "003"]


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.name[:3])
def test_study_runs_on_the_demo_suite(study, home):
    cfg = C.load([str(study)])                                          # valid as written
    assert cfg["run"]["name"] == f"study-{study.name[:3]}" and cfg["stage"] == []
    args = ["run", str(study), "backbone=demo", "weights=none", *FAST, "backbones.demo.stages.wiki.epochs=1",
            "train.epochs=1", f"home={home}", f"run.results_dir={home}/results", "--quiet"]
    assert main(args) == 0
    folder = next((home / "results").glob(f"study-{study.name[:3]}-*"))
    table = pd.read_csv(folder / "table.csv")
    assert len(table) == 2 and table["status"].eq("measured").all()
    assert ("Accuracy" in table.columns) != ("MAE" in table.columns)
    assert "synthetic data" in (folder / "table.md").read_text()


@pytest.mark.parametrize("name", ["mobilenetv2_100", "efficientnet_b0", "resnetv2_50"])
def test_the_studies_imagenet_backbones_import_like_the_face_weights(name, tmp_path):
    """An ImageNet timm checkpoint (a pickled `.pth` state dict, as released) goes through
    `cascade weights import --format timm` and the body then computes what timm's model does."""
    import timm
    import torch

    from cascade.models import importers as I
    from test_import import _body_output

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(model.state_dict(), path)
    out = I.import_weights(path, "timm", f"imagenet_{name}", f"timm:{name}", tmp_path / "home")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(_body_output(out, f"timm:{name}", x), model.forward_features(x))
