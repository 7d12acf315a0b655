"""Evaluation protocols: declarative files in `cascade/configs/protocols/`, one splitter per
`splitter:` name.

A protocol turns a dataset table into folds `(name, train_idx, test_idx)`, like a scikit-learn
splitter with `groups` = subject ids.  Why declarative files: a user adds a protocol by adding a
YAML file, and the protocol a table came from is recorded by name and content hash.  Every
subject-exclusive protocol is checked for leakage before anything trains.  The shipped files are
package data (pyproject's package-data), so an installed wheel has them as a checkout does.
"""
from __future__ import annotations

import itertools
import os
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import yaml
from sklearn.model_selection import (GroupShuffleSplit, LeaveOneGroupOut, ShuffleSplit, StratifiedGroupKFold,
                                     StratifiedShuffleSplit)

Fold = tuple[str, np.ndarray, np.ndarray]


#: The protocols the harness ships.
SHIPPED = Path(str(resources.files("cascade.configs").joinpath("protocols")))


def _folders() -> list[Path]:
    """The shipped protocols, then any folders in $CASCADE_PROTOCOLS (colon-separated): a user
    adds a protocol by dropping a YAML file into one of them."""
    extra = [Path(p) for p in os.environ.get("CASCADE_PROTOCOLS", "").split(os.pathsep) if p]
    return [SHIPPED, *extra]


def _protocol_files() -> dict[str, Path]:
    return {p.stem: p for folder in _folders() if folder.is_dir() for p in sorted(folder.glob("*.yaml"))}


def protocol_names() -> tuple[str, ...]:
    return tuple(sorted(_protocol_files()))


def load_protocol(name: str) -> dict:
    files = _protocol_files()
    if name not in files:
        raise ValueError(f"unknown protocol {name!r}; valid: {', '.join(sorted(files))}")
    spec = yaml.safe_load(files[name].read_text())
    if not isinstance(spec, dict):
        raise ValueError(f"{files[name]}: expected a mapping of settings, got {type(spec).__name__}")
    if spec.get("splitter") not in SPLITTERS:
        raise ValueError(f"{files[name]}: splitter {spec.get('splitter')!r} unknown; "
                         f"valid: {', '.join(SPLITTERS)}")
    _check_types(files[name], spec)
    return spec


#: Optional protocol settings and the types they must have (a wrong type is a clear error here,
#: not a TypeError inside a splitter).
_TYPES = {"name": (str,), "subject_exclusive": (bool,), "by_subject": (bool,),
          "test_fraction": (int, float), "test_subjects": (list,), "splits": (list,), "listing": (str,)}


def _check_types(path: Path, spec: dict) -> None:
    for key, types in _TYPES.items():
        value = spec.get(key)
        if value is not None and (not isinstance(value, types) or (bool in types) != isinstance(value, bool)):
            raise ValueError(f"{path}: {key}: {value!r} is a {type(value).__name__}; expected "
                             f"{' or '.join(t.__name__ for t in types)}")
    frac = spec.get("test_fraction")
    if frac is not None and not 0 < frac < 1:
        raise ValueError(f"{path}: test_fraction: {frac!r} must be between 0 and 1")
    if spec.get("splitter") == "listed_splits" and not spec.get("splits"):
        raise ValueError(f"{path}: splitter listed_splits needs splits: a list of {{trn, val, tst}} folder lists")
    for i, split in enumerate(spec.get("splits") or []):
        _check_split(path, i, split)


def _check_split(path: Path, i: int, split) -> None:
    """One entry of `splits:` as the benchmark writes it: trn / val / tst lists of folder
    numbers, no folder in two parts, something to test on."""
    if not isinstance(split, dict) or set(split) != set(SPLIT_PARTS):
        raise ValueError(f"{path}: splits[{i}]: {split!r} must be a mapping with exactly {', '.join(SPLIT_PARTS)}")
    for part in SPLIT_PARTS:
        if not all(isinstance(f, int) and not isinstance(f, bool) and f >= 0 for f in split[part]):
            raise ValueError(f"{path}: splits[{i}].{part}: {split[part]!r} must be a list of folder numbers >= 0")
    seen = [f for part in SPLIT_PARTS for f in split[part]]
    if len(seen) != len(set(seen)):
        raise ValueError(f"{path}: splits[{i}]: a folder is listed twice in {split!r}")
    if not split["tst"] or not split["trn"]:
        raise ValueError(f"{path}: splits[{i}]: trn and tst must each list at least one folder")


def _leave_one_group_out(frame: pd.DataFrame, spec: dict, seed: int) -> Iterator[Fold]:
    groups = frame["subject"].to_numpy()
    for train, test in LeaveOneGroupOut().split(np.zeros(len(frame)), groups=groups):
        yield str(groups[test[0]]), train, test


def _predefined_folds(frame: pd.DataFrame, spec: dict, seed: int) -> Iterator[Fold]:
    folds = frame["fold"].to_numpy()
    if (folds < 0).any():
        raise ValueError("protocol 'predefined_folds' needs the dataset's official folds; "
                         f"{int((folds < 0).sum())} rows have none")
    for f in np.unique(folds):
        yield str(int(f)), np.flatnonzero(folds != f), np.flatnonzero(folds == f)


#: The parts of one of a benchmark's fixed splits, named as its YAML files name them.
SPLIT_PARTS = ("trn", "val", "tst")


class MissingFolders(ValueError):
    """A table without the published folders a `listed_splits` protocol reads: a dataset read
    from the wrong listing (or from its image names), not one too small to split."""


def _listed_splits(frame: pd.DataFrame, spec: dict, seed: int) -> Iterator[Fold]:
    """A benchmark's fixed splits over the `folder` its listing gives each image (the table's
    `fold`): fold i trains on split i's `trn` and `val` folders and tests on its `tst` folders,
    exactly as the file lists them, so each fold's test images are the benchmark's.

    Why `val` goes into training: a fold here is (train, test) and its validation share is drawn
    from the training rows (`val_fraction`, subject-exclusive, see `validation_split`), so the
    protocol file sets `val_fraction` / `test_fraction` to the shares the val / tst folders hold,
    and training and validation get the benchmark's sizes (not its very validation images)."""
    folder = frame["fold"].to_numpy()
    listed = sorted({f for split in spec["splits"] for part in SPLIT_PARTS for f in split[part]})
    outside = ~np.isin(folder, listed)
    if outside.any():
        example = frame.iloc[int(np.flatnonzero(outside)[0])]
        raise MissingFolders(
            f"protocol {spec.get('name', spec['splitter'])} reads each image's published folder "
            f"({listed[0]}-{listed[-1]}) from {spec.get('listing', 'the dataset listing')}; {int(outside.sum())} of "
            f"{len(frame)} rows have none or another (e.g. {example.get('path', example.name)}: folder "
            f"{int(example['fold'])}): point the dataset's root at a folder holding that listing")
    for i, split in enumerate(spec["splits"]):
        test = np.flatnonzero(np.isin(folder, split["tst"]))
        if not len(test):
            raise ValueError(f"split {i} has no image in its test folders {split['tst']}")
        yield str(i), np.flatnonzero(np.isin(folder, split["trn"] + split["val"])), test


def _holdout(frame: pd.DataFrame, spec: dict, seed: int) -> Iterator[Fold]:
    frac = spec.get("test_fraction", 0.2)
    x = np.zeros(len(frame))
    if spec.get("by_subject"):
        split = GroupShuffleSplit(n_splits=1, test_size=frac, random_state=seed)
        train, test = next(split.split(x, groups=frame["subject"].to_numpy()))
    else:
        train, test = next(ShuffleSplit(n_splits=1, test_size=frac, random_state=seed).split(x))
    yield "0", np.sort(train), np.sort(test)


def _fixed_test_subjects(frame: pd.DataFrame, spec: dict, seed: int) -> Iterator[Fold]:
    wanted = {str(s) for s in spec["test_subjects"]}
    subjects = frame["subject"].astype(str)
    missing = wanted - set(subjects)
    if missing:
        raise ValueError(f"protocol test subjects not in the data: {sorted(missing)}")
    test = subjects.isin(wanted).to_numpy()
    yield "test", np.flatnonzero(~test), np.flatnonzero(test)


def _folds_for_share(frac: float, n_groups: int) -> tuple[int, int]:
    """(folds, folds held out) whose ratio is `frac`: 0.15 is 3 of 20 folds, 0.15 / 0.85 (a
    validation share of the rest) 3 of 17.  Why not one fold of round(1 / frac): that holds out
    1/7 = 14.3 % for 0.15, so "70-15-15" would be 71.4 / 14.3 / 14.3.  With fewer subjects than
    folds, as many folds as subjects (the share is then as close as whole subjects allow)."""
    share = Fraction(frac).limit_denominator(20)
    n_splits = min(max(2, share.denominator), n_groups)
    return n_splits, min(n_splits - 1, max(1, round(frac * n_splits)))


def stratified_split(y: np.ndarray, groups: np.ndarray, frac: float, seed: int,
                     by_subject: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One seeded split of rows into (rest, held-out share `frac`) stratified by the classes `y`:
    subject-exclusive whenever identities are known (a subject with several images), via
    StratifiedGroupKFold; classes with a single image stay in the rest (they cannot be
    stratified; the share is a union of StratifiedGroupKFold folds, see `_folds_for_share`); with
    more classes than held-out rows, classes neighbouring in age share a
    stratum (classes are ordered by age).

    Degenerate inputs real folds produce: a share that rounds below one row still holds out one
    (all classes one stratum); fewer subjects than 1/frac folds uses as many folds as there are
    subjects; nothing left to split (one subject, or under two stratifiable rows) holds out
    nothing — the caller decides what an empty share means (see `validation_split`)."""
    strata = np.unique(y)
    k = min(len(strata), int(np.floor(frac * len(y))), len(y) - int(np.ceil(frac * len(y))))
    if k == 0 and frac * len(y) > 0:
        k = 1                          # the share rounds below one row: one row, any class
    if 0 < k < len(strata):
        y = np.searchsorted(strata, y) * k // len(strata)
    values, counts = np.unique(y, return_counts=True)
    rare = np.isin(y, values[counts < 2])
    rows = np.flatnonzero(~rare)
    x = np.zeros(len(rows))
    nothing = (np.arange(len(y)), np.zeros(0, dtype=int))
    if by_subject and len(np.unique(groups)) < len(groups):
        n_groups = len(np.unique(groups[rows]))
        if n_groups < 2:
            return nothing
        n_splits, held = _folds_for_share(frac, n_groups)
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        test = np.concatenate([t for _, t in itertools.islice(splitter.split(x, y[rows], groups[rows]), held)])
        train = np.setdiff1d(np.arange(len(rows)), test)
    else:
        if len(rows) < 2:
            return nothing
        train, test = next(StratifiedShuffleSplit(n_splits=1, test_size=frac, random_state=seed).split(x, y[rows]))
    return np.sort(np.concatenate([rows[train], np.flatnonzero(rare)])), np.sort(rows[test])


def _stratified_holdout(frame: pd.DataFrame, spec: dict, seed: int) -> Iterator[Fold]:
    """The related studies' 64/16/20, 70/15/15, 80/10/10 splits: stratified by the frame's
    `label` column (the stage's classes, added by the runner) or else the age."""
    y = (frame["label"] if "label" in frame else frame["age_lo"]).to_numpy()
    train, test = stratified_split(y, frame["subject"].astype(str).to_numpy(), spec.get("test_fraction", 0.2),
                                   seed, spec.get("by_subject", True))
    yield "0", train, test


SPLITTERS: dict[str, Callable[[pd.DataFrame, dict, int], Iterator[Fold]]] = {
    "leave_one_group_out": _leave_one_group_out,
    "predefined_folds": _predefined_folds,
    "holdout": _holdout,
    "fixed_test_subjects": _fixed_test_subjects,
    "stratified_holdout": _stratified_holdout,
    "listed_splits": _listed_splits,
}


def folds(frame: pd.DataFrame, spec: dict, seed: int) -> list[Fold]:
    """All folds of `spec` on `frame`, leakage-checked before anything trains: every protocol is
    subject-exclusive unless its file says `subject_exclusive: false` (then leaky by declaration)."""
    name = spec.get("name", spec["splitter"])
    try:
        out = list(SPLITTERS[spec["splitter"]](frame, spec, seed))
    except MissingFolders:            # the wrong listing, whatever the dataset's size
        raise
    except ValueError as exc:         # scikit-learn's words, with what they were said about
        raise ValueError(f"protocol {name} cannot split {len(frame)} usable image(s) of "
                         f"{frame['subject'].nunique()} subject(s): {exc}  A dataset this small cannot be "
                         f"evaluated under it: give the whole dataset, or another protocol ({SHIPPED})") from exc
    if spec.get("subject_exclusive", True):
        subjects = frame["subject"].to_numpy()
        for fold, train, test in out:
            shared = set(subjects[train]) & set(subjects[test])
            if shared:
                raise ValueError(f"protocol {name}: fold {fold} has subjects in both train and test: {sorted(shared)[:5]}")
    return out


def validation_split(subjects: np.ndarray, fraction: float, seed: int, by_subject: bool,
                     labels: np.ndarray | None = None):
    """Split a fold's training rows into train/validation (for the lr schedule and best epoch);
    stratified by `labels` when given (the stratified protocols' validation share).

    Why subject-exclusive inside target folds: a validation image of a training subject would
    reward memorising identities, the very leak the protocol exists to prevent.  So a fold whose
    training rows hold a single subject (or a stage of a single image) gets no validation rows
    rather than a leaky share; the trainer then keeps the last epoch and says so in the history.
    A share that rounds below one row still takes one (scikit-learn rounds the test share up).
    """
    subjects = np.asarray(subjects)
    if labels is not None:
        return stratified_split(labels, subjects.astype(str), fraction, seed, by_subject)
    x = np.zeros(len(subjects))
    distinct = len(np.unique(subjects))
    if len(subjects) < 2 or (by_subject and distinct < 2):
        return np.arange(len(subjects)), np.zeros(0, dtype=int)
    if by_subject:
        split = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        train, val = next(split.split(x, groups=subjects))
    else:
        train, val = next(ShuffleSplit(n_splits=1, test_size=fraction, random_state=seed).split(x))
    return np.sort(train), np.sort(val)
