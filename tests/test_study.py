"""`cascade study FILE`: backbones x targets from one file, every cell checked before anything
trains, shared prefixes trained once, one table per target with paired tests and the rank test."""
from pathlib import Path

import pandas as pd
import yaml

from cascade import config as C
from cascade import study as S
from cascade.cli import main

from conftest import FAST

STUDIES = Path(__file__).resolve().parents[1] / "configs" / "studies"


def _file(tmp_path: Path, study: dict, settings: dict) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"study": study, "settings": settings}))
    return path


def test_the_shipped_study_files_are_valid_cells():
    for name, backbones in (("thesis", ["vgg16", "resnet50_keras", "senet50_keras"]),
                            ("demo-study", ["demo", "timm:resnet10t", "timm:mobilenetv3_small_050"])):
        path = STUDIES / f"{name}.yaml"
        assert S.read(path)["backbones"] == backbones
        for target, backbone, words in S.cells(path, []):
            cfg = C.load(words)                                       # every cell's settings are valid
            assert (cfg["backbone"], cfg["target"], cfg["stage"]) == (backbone, target, ["imdb", "agedb"])


def test_a_study_runs_every_cell_and_ends_in_one_table(tmp_path, home, capsys):
    path = _file(tmp_path, {"name": "t", "backbones": ["demo", "timm:resnet10t"], "targets": ["fgnet"]},
                 {"stage": ["imdb"], "weights": "none", "backbones": {"timm": {"input_size": 16}}})
    args = ["study", str(path), *FAST, "train.epochs=1",
            "stages.fgnet.protocol=hard-subjects", f"home={home}", f"run.results_dir={home}/results", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "study t: 2 cells, 6 trained nodes, 6 distinct" in out
    folder = next((home / "results").glob("study-t-fgnet-*"))
    table = pd.read_csv(folder / "table.csv")
    assert len(table) == 4 and table["configuration"].str.startswith(("demo: ", "timm:resnet10t: ")).all()
    pairs = pd.read_csv(folder / "comparisons.csv")
    # each configuration against the one it extends, the second backbone's pretrained row against the first's
    short = [(c.split(" [")[0], v.split(" [")[0]) for c, v in zip(pairs["configuration"], pairs["vs"])]
    assert short == [("demo: pretrained → imdb", "demo: pretrained"), ("timm:resnet10t: pretrained", "demo: pretrained"),
                     ("timm:resnet10t: pretrained → imdb", "timm:resnet10t: pretrained")]
    assert "Friedman" in (folder / "table.md").read_text()
    assert list((folder / "figures").glob("critical_difference*"))
    # rebuilt by cascade report like a comparison
    before = (folder / "table.csv").read_bytes()
    assert main(["report", str(folder)]) == 0
    assert (folder / "table.csv").read_bytes() == before


def test_shared_prefixes_are_counted_once_and_nothing_runs_in_a_dry_run(tmp_path, home, capsys):
    path = _file(tmp_path, {"backbones": ["demo"], "targets": ["fgnet", "utkface"]}, {"stage": ["imdb"], "weights": "none"})
    assert main(["study", str(path), *FAST, f"home={home}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 cells, 6 trained nodes, 5 distinct" in out          # the IMDB stage is one node for both targets
    assert not (home / "stages").exists() or not any((home / "stages").iterdir())


def test_every_cell_is_checked_before_anything_trains(tmp_path, home, capsys):
    path = _file(tmp_path, {"backbones": ["demo", "nosuchnet"], "targets": ["fgnet"]}, {"stage": ["imdb"]})
    assert main(["study", str(path), *FAST, f"home={home}"]) == 2
    err = capsys.readouterr().err
    assert "study s cannot start" in err and "nosuchnet ⇒ fgnet" in err
    assert not (home / "stages").exists() or not any((home / "stages").iterdir())
    assert main(["study", str(path), "backbone=demo"]) == 2
    assert "a study's backbones and targets are its file's" in capsys.readouterr().err
    assert main(["run", "backbone=demo,timm:resnet10t", "--dry-run"]) == 2
    assert "Several backbones are a study: `cascade study FILE`" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: {backbones: demo}\n")
    assert main(["study", str(bad)]) == 2
    assert "must be a non-empty list" in capsys.readouterr().err
