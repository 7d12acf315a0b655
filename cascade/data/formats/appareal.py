"""APPA-REAL (Agustsson et al. 2017; the ChaLearn LAP 2016 images): 7,591 images with a real and
an apparent age, in ``train/``, ``valid/`` and ``test/`` (4,113 / 1,500 / 1,978 as released),
listed by ``gt_avg_train.csv``, ``gt_avg_valid.csv`` and ``gt_avg_test.csv`` with the columns
``file_name, num_ratings, apparent_age_avg, apparent_age_std, real_age``.

The published train / valid / test split is the row's ``fold`` 0 / 1 / 2, the folders the
benchmark of paplhjak et al. gives it (its CLAP2016 listing), so protocol ``paplhjak-single``
evaluates on the released test images.  ``age="apparent"`` takes the mean apparent age rounded
to whole years (numpy's rint, as that listing does) instead of the real age.  The set has no
identity labels: each image is its own subject.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cascade.data.formats._common import (build_frame, check_choice, drop_implausible_ages, drop_missing,
                                          drop_rows, make_table, require_dir)
from cascade.data.records import CleaningReport, DatasetTable

#: (folder, listing) of each published part, in fold order.
PARTS = (("train", "gt_avg_train.csv"), ("valid", "gt_avg_valid.csv"), ("test", "gt_avg_test.csv"))
COLUMNS = ("file_name", "apparent_age_avg", "real_age")
AGES = {"real": "real_age", "apparent": "apparent_age_avg"}


def required_files(root: Path) -> None:
    """The three listings: an error naming the ones missing."""
    missing = [name for _, name in PARTS if not (Path(root) / name).is_file()]
    if missing:
        raise FileNotFoundError(f"appareal: no {', '.join(missing)} in {root}")


def _part(root: Path, fold: int) -> pd.DataFrame:
    folder, name = PARTS[fold]
    raw = pd.read_csv(root / name, dtype=str, keep_default_na=False)
    absent = [c for c in COLUMNS if c not in raw.columns]
    if absent:
        raise ValueError(f"{root / name}: no column(s) {absent}; APPA-REAL's gt_avg_*.csv has "
                         f"file_name, num_ratings, apparent_age_avg, apparent_age_std, real_age")
    return pd.DataFrame({"path": folder + "/" + raw["file_name"].str.strip(), "name": raw["file_name"].str.strip(),
                         "real_age": pd.to_numeric(raw["real_age"], errors="coerce"),
                         "apparent_age_avg": pd.to_numeric(raw["apparent_age_avg"], errors="coerce"),
                         "fold": fold, "row": [f"{name}:{i + 2}" for i in range(len(raw))]})


def load_appareal(root: Path, *, age: str = "real", require_files: bool = True) -> DatasetTable:
    """APPA-REAL rows; fold = 0 / 1 / 2 for the published train / valid / test."""
    check_choice("age", age, tuple(AGES))
    root = require_dir(root, "appareal")
    required_files(root)
    rows = pd.concat([_part(root, k) for k in range(len(PARTS))], ignore_index=True)
    report = CleaningReport(dataset="appareal", source=", ".join(f"{root / n}" for _, n in PARTS), n_raw=len(rows))
    rows["age"] = rows[AGES[age]] if age == "real" else np.rint(rows[AGES[age]])
    rows = drop_rows(rows, (rows["name"] == "") | rows["age"].isna(), "unparseable label", report,
                     reason="unparseable label", key="row")
    rows = drop_implausible_ages(rows, report, key="row")
    rows = drop_rows(rows, rows["path"].duplicated(), "listed twice", report, reason="listed twice", key="row")
    rows = drop_missing(rows, root, report, require_files)
    report.notes.append(f"age = {AGES[age]}" + (" rounded to whole years" if age == "apparent" else "")
                        + "; APPA-REAL has no identity labels: subject = the file (every image its own subject)")
    values = rows["age"].to_numpy(dtype=float)
    frame = build_frame(len(rows), path=rows["path"].to_numpy(), age=values, age_lo=values, age_hi=values,
                        subject=rows["path"].to_numpy(), fold=rows["fold"].to_numpy())
    return make_table("appareal", root, frame, report)
