"""The Python API: what `cascade run --dry-run`, `cascade run` and `cascade predict` do, called
from Python and answered with pandas frames (`import cascade; cascade.run(...)`).

Settings are given as on the command line, or as keyword arguments:

    cascade.run("stage=imdb,agedb", "target=fgnet", home="/data/cascade")
    cascade.run(stage="imdb,agedb", target="fgnet", train={"epochs": 2})
    cascade.run(stage=["imdb", "agedb"], target="fgnet", **{"train.epochs": 2})

Positional words are `key=value` words or settings files (`configs/studies/001.yaml`), in order;
keyword settings follow them (so they win), each named by its top-level key, a nested mapping or
a dotted key passed with `**{...}`, lists comma-joined: a settings file's rules
(`cascade.config.mapping_words`).  Why words underneath: the API goes through the very parser,
checks and messages of the command line, so a mistyped key raises the `ConfigError` the command
prints (with its did-you-mean), and a run is the command's own code path (`cascade.cli`), not a
second copy of it.

As with the command, `train.numerics=portable` must be set before the process computes
anything (`cascade.runtime.numerics`): give it in the first call of a fresh interpreter, or a
`RuntimeError` says what already computed.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from cascade import cli
from cascade import config as C
from cascade import progress as bars
from cascade.report import run_record
from cascade.stages.plan import status

__all__ = ["plan", "run", "predict", "load_results", "Results"]


@dataclasses.dataclass(frozen=True)
class Results:
    """The numbers of a results folder as frames, read from its files alone (no store needed).

    `table` is table.csv (the main table, one row per configuration, `reported` rows included),
    `comparisons` comparisons.csv (each configuration against the one it extends; empty with a
    single configuration), `seeds` seeds.csv (one row per configuration and seed); `header`,
    `settings` and `stages` (node label: stage key) are run.json's."""
    folder: Path
    table: pd.DataFrame
    comparisons: pd.DataFrame
    seeds: pd.DataFrame
    header: list[str]
    settings: list[str]
    stages: dict[str, str]


def plan(*words: str | Path, **settings) -> pd.DataFrame:
    """The stage graph a run of these settings would train, as `cascade run --dry-run` lists it;
    nothing is trained or written (the demo suite is not generated either).

    One row per node and seed: `seed`, `key` (the stage key; missing while the demo suite the
    keys hash is not generated), `label` (`pretrained → imdb ⇒ fgnet`) and `status` (`cached`,
    `will run`, `partial: will resume`, or the root's weight identity)."""
    planned = cli.plan_run(_words(words, settings), True, _silent)
    rows = [{"seed": p.cfg["seed"], "key": n.key, "label": n.label, "status": status(p, n)}
            for p in planned.plans for n in p.nodes]
    rows += [{"seed": planned.cfg["seed"], "key": None, "label": label, "status": "will run"}
             for label in planned.waiting]
    return pd.DataFrame(rows, columns=["seed", "key", "label", "status"])


def run(*words: str | Path, progress: bool = True, **settings) -> Results:
    """Everything `cascade run` does with these settings (train what the store misses, write
    `results/<run-id>/`), then that folder's frames (`load_results`).  `progress`: the
    progress bars (`--quiet` is `progress=False`); the command's printed lines are not printed."""
    bars.silence(not progress)
    folder = cli.finish_run(cli.plan_run(_words(words, settings), False, _silent), progress, _silent)
    return load_results(folder)


def predict(stage: str, paths: str | Path | Iterable[str | Path], /, *words: str | Path, faces: str = "central",
            fit_all: bool = False, out: str | Path | None = None, annotate: str | Path | None = None,
            progress: bool = True, **settings) -> pd.DataFrame:
    """Ages of the faces in `paths` (image files or folders) from `stage`, a trained cascade
    prefix such as `"imdb,agedb"` (trained first where the store lacks it), or with
    `fit_all=True` a target fitted on all its images: `cascade predict`'s rows as its CSV holds
    them, one per face (per file, with its `reason`, where there is none).

    `faces`: `central` (MTCNN's central face), `all` or `given` (the files are face crops);
    `out`: also write FILE.csv (+ FILE.json) or FILE.jsonl as the command does; `annotate`: a
    folder for the photographs with boxes and ages.  `stage` and `paths` are positional, so
    `stage=...` stays the setting (the cascade a `fit_all` target is fitted from)."""
    from cascade.predict import writers

    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    bars.silence(not progress)
    _, rows, _ = cli.predict_files([stage, *map(str, paths)], _words(words, settings),
                                   None if out is None else Path(out), faces,
                                   None if annotate is None else Path(annotate), fit_all, progress)
    return writers.frame(rows)


def load_results(folder: str | Path) -> Results:
    """The frames of an existing results folder (`results/<run-id>/` of `cascade run`), read
    from table.csv, comparisons.csv, seeds.csv and run.json."""
    folder = Path(folder)
    record = run_record(folder)
    if not (folder / "table.csv").exists():
        raise FileNotFoundError(f"{folder / 'table.csv'}: missing; `cascade report {folder}` rebuilds the folder")
    return Results(folder, _csv(folder / "table.csv"), _csv(folder / "comparisons.csv"), _csv(folder / "seeds.csv"),
                   record.get("header", []), record.get("settings", []), record.get("stages", {}))


def _words(words: tuple, settings: dict) -> list[str]:
    """The command line's settings words: the positional ones, then the keyword settings."""
    return [str(w) for w in words] + C.mapping_words(settings)


def _silent(line: str) -> None:
    """Where the command prints a line, the API prints nothing: its answer is the frames."""


def _csv(path: Path) -> pd.DataFrame:
    """A results CSV (empty when the folder has none); stage keys stay text (`0123...` is a key)."""
    return pd.read_csv(path, dtype={"stage key": str}) if path.exists() else pd.DataFrame()
