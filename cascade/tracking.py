"""Experiment tracking: every trained stage and fold of a run as an MLflow run and TensorBoard
event files, beside each stage's log.txt (docs/tracking.md).  Off by default (`track.*`).

Why a handle of plain strings and MLflow's client with explicit run ids (not its fluent "active
run", which is a global of one process): the folds train in worker processes, so each fold job
carries its stage's handle (it pickles) and opens its own child run from it.  MLflow's file store
keeps each run in a folder of its own, so separate runs from separate processes do not race.

Why nothing here is keyed: tracking changes no number, so `track.*` is read from the
configuration only by this module, never by the plan (stages/plan.py).

Why a failure warns once and goes on: the stage store, not the tracker, is the record of a run's
results; a tracking server that goes down must not lose the hours a stage has trained.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from cascade import config as C

INSTALL = "pip install 'cascade-age[tracking]'"

#: In this process: the first failure of a tracker (after it, tracking is off here).
_failed: list[str] = []

#: In this process: the open TensorBoard writer of each event folder.
_writers: dict[str, object] = {}


def _safely(call: Callable, default=None):
    """`call()`, which cannot stop training: the first failure of a tracker in a process is said
    once on stderr, and every later call in that process does nothing."""
    if _failed:
        return default
    try:
        return call()
    except Exception as exc:               # a server down, a full disk, a refused value
        _failed.append(f"{type(exc).__name__}: {exc}")
        print(f"cascade: warning: experiment tracking failed ({_failed[0]}); training goes on without it "
              f"(the stage store keeps every result)", file=sys.stderr)
        return default


def _guarded(method: Callable) -> Callable:
    """A method of a handle made safe (:func:`_safely`), and a no-op on a handle that is off."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        return _safely(lambda: method(self, *args, **kwargs)) if self.on else None
    return call


@dataclasses.dataclass(frozen=True)
class Track:
    """Where one tracked run logs: its MLflow store, experiment and run id, and its TensorBoard
    event folder.  Empty strings turn a part off; `Track()` does nothing at all."""

    uri: str = ""                      # MLflow tracking URI ("" = MLflow off)
    experiment: str = ""               # MLflow experiment id
    run_id: str = ""
    board: str = ""                    # this run's TensorBoard event folder ("" = TensorBoard off)

    @property
    def on(self) -> bool:
        return bool(self.run_id or self.board)

    def child(self, name: str, folder: str, tags: dict, params: dict | None = None):
        """A nested run (a stage under the cascade run, a fold under its target stage), its events
        in `board/folder`, as a context: ended FINISHED, or FAILED when its block raises."""
        return _until_done(self._open(name, folder, tags, params or {}) or Track())

    @_guarded
    def _open(self, name: str, folder: str, tags: dict, params: dict) -> Track:
        run_id = ""
        if self.run_id:
            client = _client(self.uri)
            run_id = client.create_run(self.experiment, run_name=name,
                                       tags={**_strings(tags), "mlflow.parentRunId": self.run_id}).info.run_id
            _log_params(client, run_id, params)
        board = str(Path(self.board) / folder) if self.board else ""
        if board:
            _writer(board).add_text("settings", "\n\n".join(f"{k}: {v}" for k, v in {**tags, **params}.items()))
        return Track(self.uri, self.experiment, run_id, board)

    def stage(self, node):
        """A stage node's run (stages/plan.py's Node): its label, key and parameters; its events
        in `<label>-<key>` (one folder per seed)."""
        return self.child(node.label, f"{slug(node.label)}-{node.key}",
                          {"stage_key": node.key, "label": node.label, "kind": node.kind, "stage": node.stage,
                           "seed": node.info["seed"]}, node.params)

    def fold(self, name: str, subjects):
        """A fold's run under its target stage's: the fold's name and its test subjects."""
        listed = ",".join(sorted(set(map(str, subjects))))
        if len(listed) > 500:              # a tag holds a few thousand characters at most
            listed = f"{listed[:480]}… ({len(set(subjects))} subjects)"
        return self.child(f"fold {name}", name, {"fold": name, "test_subjects": listed})

    def epoch(self, record: dict) -> None:
        """One epoch's record of the training loop (train_loss, val_loss, val_mae, lr), at the step
        of its epoch; flushed, so the curves are live."""
        self.metrics({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])

    @_guarded
    def metrics(self, values: dict, step: int = 0) -> None:
        """Numbers at a step (final metrics: step 0); values that are not numbers are left out."""
        values = {metric_name(k): float(v) for k, v in values.items() if _number(v)}
        if self.run_id:
            from mlflow.entities import Metric
            now = int(time.time() * 1000)
            _client(self.uri).log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])
        if self.board:
            writer = _writer(self.board)
            for k, v in values.items():
                writer.add_scalar(k, v, step)
            writer.flush()

    @_guarded
    def artifacts(self, path: Path) -> None:
        """A file, or a folder's files (not its hidden ones: the writers' lock), as artifacts of
        the run, in the folder's layout (MLflow only)."""
        if self.run_id:
            client, path = _client(self.uri), Path(path)
            for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
                inside = f.relative_to(path).parent.as_posix() if path.is_dir() else "."
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(path.parent).parts):
                    client.log_artifact(self.run_id, str(f), None if inside == "." else inside)

    @_guarded
    def _end(self, status: str) -> None:
        if self.run_id:
            _client(self.uri).set_terminated(self.run_id, status)
        if self.board and (writer := _writers.pop(self.board, None)):
            writer.close()


def session(cfg: dict, name: str, settings: list[str]):
    """The top-level run of one `cascade run` (or study cell, or verify rebuild) named `name`
    (the results folder's run-id), its settings words as parameters, as a context (see
    :meth:`Track.child`); `Track()` when tracking is off.  Raises ConfigError naming the package to
    install when a tracker is on but missing, before anything trains."""
    return _until_done(_start(cfg, name, settings))


def _start(cfg: dict, name: str, settings: list[str]) -> Track:
    t = cfg["track"]
    if not (t["mlflow"] or t["tensorboard"]):
        return Track()
    home = C.cascade_home(cfg)
    board = str(home / "tensorboard" / name) if t["tensorboard"] else ""
    if board:
        _needs("torch.utils.tensorboard", "track.tensorboard=true", "TensorBoard")
    if not t["mlflow"]:
        return Track(board=board)
    _needs("mlflow", "track.mlflow=true", "MLflow")
    uri = mlflow_uri(cfg)
    params = dict(w.split("=", 1) for w in settings if "=" in w)
    return _safely(lambda: _top_run(uri, t["experiment"], name, params, board), Track(board=board))


def mlflow_uri(cfg: dict) -> str:
    """`track.mlflow_uri`, or the local file store under $CASCADE_HOME/mlruns."""
    return cfg["track"]["mlflow_uri"] or (C.cascade_home(cfg) / "mlruns").as_uri()


def allow_file_store() -> None:
    """MLflow 3 refuses its file store unless `MLFLOW_ALLOW_FILE_STORE` is set (it prefers a
    database); the file store is what keeps runs written by separate fold processes apart, and
    MLflow's database backends need the full `mlflow`, so it is opted into here (before any
    client is made: worker processes inherit it)."""
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


@contextlib.contextmanager
def _until_done(run: Track) -> Iterator[Track]:
    try:
        yield run
    except BaseException:
        run._end("FAILED")
        raise
    run._end("FINISHED")


def kept(result: dict) -> dict:
    """The final metrics of a trained stage or fold (trainer.fit's result): the epoch it kept and
    that epoch's train loss, validation loss and MAE."""
    record = next((h for h in result["history"] if h["epoch"] == result["kept_epoch"]), {})
    return {"kept_epoch": result["kept_epoch"],
            **{f"kept_{k}": record[k] for k in ("train_loss", "val_loss", "val_mae") if k in record}}


def metric_name(key: str) -> str:
    """A table column or record key as an MLflow metric name (letters, digits and _-. /: `CS@5`
    is `CS_5`, `MAE (fold mean)` is `MAE _fold mean_`)."""
    return re.sub(r"[^\w\-. /]", "_", str(key))


def slug(label: str) -> str:
    """A node label as a folder name: 'pretrained → imdb ⇒ fgnet' is 'pretrained-imdb-fgnet'."""
    return re.sub(r"\W+", "-", label).strip("-")


def _needs(module: str, setting: str, what: str) -> None:
    import importlib
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise C.ConfigError(f"{setting} needs {what}, which is not installed ({exc}): {INSTALL}") from None


def _top_run(uri: str, experiment: str, name: str, params: dict, board: str) -> Track:
    """The top-level MLflow run, in `experiment` (made on first use)."""
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    exp = found.experiment_id if found else client.create_experiment(experiment)
    run_id = client.create_run(exp, run_name=name).info.run_id
    _log_params(client, run_id, params)
    return Track(uri, exp, run_id, board)


def _client(uri: str):
    from mlflow.tracking import MlflowClient
    if uri.startswith("file:") or "://" not in uri:
        allow_file_store()
    return MlflowClient(tracking_uri=uri)


def _log_params(client, run_id: str, params: dict) -> None:
    """Parameters flattened (`balance.weights`), in batches of MLflow's 100 per request."""
    from mlflow.entities import Param
    flat = [Param(k, v) for k, v in _strings(_flatten(params)).items()]
    for i in range(0, len(flat), 100):
        client.log_batch(run_id, params=flat[i:i + 100])


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


def _strings(values: dict) -> dict[str, str]:
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _writer(folder: str):
    if folder not in _writers:
        from torch.utils.tensorboard import SummaryWriter
        _writers[folder] = SummaryWriter(folder)
    return _writers[folder]
