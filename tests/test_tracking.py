"""Experiment tracking (cascade/tracking.py): a tiny run logged to a real local MLflow store and
TensorBoard event files, read back with their own readers and checked against the stage store and
the results folder; off by default; never in a key; a missing package or a tracker that fails."""
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from cascade import config as C
from cascade import metrics as M
from cascade import tracking
from cascade.cli import main
from cascade.stages import plan as P
from conftest import FAST

#: One intermediate stage and the full cascade's target (FG-NET LOPO on 30 images: every subject a
#: fold), folds in two spawned worker processes: each logs its own child runs into the store.
RUN = ["stage=imdb", "target=fgnet", "run.prefixes=false", "data.max_images=30", "jobs=2", "backend=loky", "--quiet"]
#: The smallest run: the target alone, one holdout split.
SMALL = ["stage=", "target=utkface", "--quiet"]


@pytest.fixture(autouse=True)
def fresh_tracker(monkeypatch):
    """Each test starts with no failure remembered by this process's tracker."""
    monkeypatch.setattr(tracking, "_failed", [])


def _run(home: Path, tmp_path: Path, *words: str) -> Path:
    results = tmp_path / "results"
    assert main(["run", *FAST, f"home={home}", f"run.results_dir={results}", *words]) == 0
    (folder,) = results.iterdir()
    return folder


@pytest.mark.slow
def test_a_run_in_mlflow_and_tensorboard(home, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    folder = _run(home, tmp_path, *RUN, "track.mlflow=true", "track.tensorboard=true", "track.experiment=tiny")
    plan = P.build(C.load(FAST + [f"home={home}", *RUN[:-1]]))
    stage, target = plan.nodes[1:]
    tracking.allow_file_store()
    client = mlflow.tracking.MlflowClient((home / "mlruns").as_uri())
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], max_results=1000)
    parent = {r.info.run_id: r.data.tags.get("mlflow.parentRunId") for r in runs}
    (top,) = [r for r in runs if parent[r.info.run_id] is None]
    assert top.info.run_name == folder.name and top.info.status == "FINISHED"
    assert top.data.params["target"] == "fgnet" and top.data.params["stage"] == "imdb"
    stages = {r.data.tags["stage_key"]: r for r in runs if parent[r.info.run_id] == top.info.run_id}
    assert set(stages) == {stage.key, target.key}
    assert stages[stage.key].data.tags["label"] == stage.label
    assert stages[target.key].data.params["batch_size"] == str(target.params["batch_size"])

    # the intermediate stage: every epoch's metrics, as its metrics.json keeps them
    history = json.loads((home / "stages" / stage.key / "metrics.json").read_text())["history"]
    assert len(history) == 2
    for key in ("train_loss", "val_loss", "val_mae", "lr"):
        logged = client.get_metric_history(stages[stage.key].info.run_id, key)
        assert [(m.step, m.value) for m in sorted(logged, key=lambda m: m.step)] == \
            [(h["epoch"], pytest.approx(h[key])) for h in history]
    assert stages[stage.key].data.metrics["kept_epoch"] == 2

    # every fold a child run of the target's, with its test subject and its test MAE
    preds = pd.read_csv(home / "stages" / target.key / "predictions.csv", dtype={"subject": str, "fold": str})
    per_fold = M.per_fold_mae(preds["true_value"], preds["pred_expected"], preds["fold"])
    folds = {r.data.tags["fold"]: r for r in runs if parent[r.info.run_id] == stages[target.key].info.run_id}
    assert set(folds) == set(preds["fold"]) and len(folds) > 2
    for name, run in folds.items():
        assert run.info.status == "FINISHED"
        assert run.data.tags["test_subjects"] == ",".join(sorted(set(preds.loc[preds["fold"] == name, "subject"])))
        assert run.data.metrics["test_mae"] == pytest.approx(per_fold.loc[name, "mae"])
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1]

    # the target's MAE, and the results folder's table as an artifact of the top run, byte for byte
    table = pd.read_csv(folder / "table.csv")
    assert stages[target.key].data.metrics["test_mae"] == \
        pytest.approx(table.loc[table["stage key"] == target.key, "MAE"].item())
    got = Path(client.download_artifacts(top.info.run_id, "table.csv", str(tmp_path)))
    assert got.read_bytes() == (folder / "table.csv").read_bytes()
    artifacts = {a.path for a in client.list_artifacts(top.info.run_id)}
    assert {"table.md", "table.csv", "run.json", "figures"} <= artifacts and ".lock" not in artifacts

    # TensorBoard: the same epochs, in the stage's folder and each fold's
    board = home / "tensorboard" / folder.name
    events = event_accumulator.EventAccumulator(str(board / f"{tracking.slug(stage.label)}-{stage.key}"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("val_mae")] == \
        [(h["epoch"], pytest.approx(h["val_mae"], rel=1e-6)) for h in history]
    fold_boards = list((board / f"{tracking.slug(target.label)}-{target.key}").iterdir())
    assert {p.name for p in fold_boards if p.is_dir()} == set(folds)


def test_off_by_default_and_never_keyed(home, tmp_path):
    words = FAST + [f"home={home}", *RUN[:-1]]
    on = ["track.mlflow=true", "track.tensorboard=true", "track.mlflow_uri=file:/elsewhere", "track.experiment=x"]
    assert [n.key for n in P.build(C.load(words)).nodes] == [n.key for n in P.build(C.load(words + on)).nodes]
    _run(home, tmp_path, *SMALL)
    assert not (home / "mlruns").exists() and not (home / "tensorboard").exists()


def test_a_uri_without_mlflow_on_is_an_error():
    with pytest.raises(C.ConfigError, match="track.mlflow=true"):
        C.load(["track.mlflow_uri=http://localhost:5000"])


@pytest.mark.parametrize("setting, module", [("track.mlflow=true", "mlflow"),
                                             ("track.tensorboard=true", "torch.utils.tensorboard")])
def test_a_missing_package_is_named_before_anything_trains(home, tmp_path, monkeypatch, capsys, setting, module):
    monkeypatch.setitem(sys.modules, module, None)          # `import` of it raises ImportError
    results = tmp_path / "results"
    assert main(["run", *FAST, f"home={home}", f"run.results_dir={results}", *SMALL, setting]) == 2
    assert "pip install 'cascade-age[tracking]'" in capsys.readouterr().err
    assert not (home / "stages").exists() and not results.exists()


def test_a_tracker_that_fails_warns_once_and_training_goes_on(home, tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    folder = _run(home, tmp_path, *SMALL, "track.mlflow=true", "track.mlflow_uri=http://127.0.0.1:9")  # nothing listens
    assert (folder / "table.csv").exists()
    assert capsys.readouterr().err.count("experiment tracking failed") == 1


def test_a_failure_mid_run_is_said_once_then_tracking_is_off(capsys):
    calls = []

    def broken():
        calls.append(1)
        raise ConnectionError("server down")
    assert tracking._safely(broken, "default") == "default"
    assert tracking._safely(broken) is None
    assert len(calls) == 1 and capsys.readouterr().err.count("server down") == 1
