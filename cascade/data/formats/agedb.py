"""AgeDB (Moschoglou et al.): images ``<id>_<Name>_<age>_<g>.jpg`` directly in the root.

The labels live in the file names; two public listings of the same 16,488 files exist and are
read when present: ``AgeDB.json`` (also carries a subject-exclusive 10-fold ``folder`` split)
and ``AgeDB_metadata.mat`` (cell arrays fileno/filename/name/age/gender).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io

from cascade.data.formats._common import (build_frame, check_choice, drop_implausible_ages, drop_missing,
                                          drop_rows, make_table, number_field, read_records, require_dir,
                                          require_images, scan_images, text_field, whole_numbers)
from cascade.data.records import CleaningReport, DatasetTable

LISTINGS = ("auto", "files", "json", "mat")
JSON_NAME = "AgeDB.json"
MAT_NAME = "AgeDB_metadata.mat"

#: ``<id>_<Name>_<age>_<g>.jpg``; the name is greedy so a name containing '_' still parses.
NAME_PATTERN = r"^(?P<id>\d+)_(?P<name>.+)_(?P<age>\d+)_(?P<g>[mfMF])\.(?i:jpe?g|png)$"


def parse_agedb_names(names: pd.Series) -> pd.DataFrame:
    """Columns name/age/gender per file name, NaN where the name does not fit the pattern."""
    parts = names.str.extract(NAME_PATTERN)
    return pd.DataFrame({"name": parts["name"], "age": pd.to_numeric(parts["age"]),
                         "gender": parts["g"].str.lower()})


def _rows_from_files(root: Path) -> pd.DataFrame:
    names = pd.Series(scan_images(root), dtype=str)
    parsed = parse_agedb_names(names)
    return pd.DataFrame({"path": names, "name": parsed["name"], "age": parsed["age"],
                         "gender": parsed["gender"], "fold": -1})


def _rows_from_json(path: Path) -> pd.DataFrame:
    """The listing's own name/age/gender fields; its ``img_path`` keeps the publisher's folder
    prefix (``AgeDB/AgeDB/``), so only the file name is kept: images sit directly in root."""
    raw = read_records(path)
    return pd.DataFrame({"path": text_field(raw, "img_path").str.rsplit("/", n=1).str[-1],
                         "name": text_field(raw, "name"),
                         "age": number_field(raw, "age"),
                         "gender": text_field(raw, "gender").str.lower(),
                         "fold": whole_numbers(number_field(raw, "folder"), -1).astype(np.int64)},
                        index=raw.index)


def _mat_cells(mat: dict, field: str) -> list[str]:
    return [str(np.ravel(c)[0]) if np.size(c) else "" for c in np.ravel(mat[field])]


def _rows_from_mat(path: Path) -> pd.DataFrame:
    mat = scipy.io.loadmat(path)
    return pd.DataFrame({"path": _mat_cells(mat, "filename"), "name": _mat_cells(mat, "name"),
                         "age": pd.to_numeric(pd.Series(_mat_cells(mat, "age")), errors="coerce"),
                         "gender": pd.Series(_mat_cells(mat, "gender")).str.lower(), "fold": -1})


def _pick_listing(root: Path, listing: str) -> tuple[str, Path]:
    """``auto`` prefers the JSON (it has the folds), then the .mat, then a folder scan."""
    check_choice("listing", listing, LISTINGS)
    files = {"json": root / JSON_NAME, "mat": root / MAT_NAME, "files": root}
    if listing == "auto":
        listing = next((k for k in ("json", "mat") if files[k].is_file()), "files")
    elif listing != "files" and not files[listing].is_file():
        raise FileNotFoundError(f"agedb: listing={listing!r} but {files[listing]} does not exist")
    return listing, files[listing]


def required_files(root: Path) -> None:
    """A listing, or else image files to parse: an error saying which when there is neither."""
    if _pick_listing(root, "auto")[0] == "files":
        require_images(root, "agedb", f"{JSON_NAME}, {MAT_NAME} nor image <id>_<Name>_<age>_<g>.jpg")


def load_agedb(root: Path, *, listing: str = "auto", require_files: bool = True) -> DatasetTable:
    """AgeDB rows; subject = the person's name (567 identities), fold = the JSON's folder or -1."""
    root = require_dir(root, "agedb")
    kind, source = _pick_listing(root, listing)
    reader = {"files": _rows_from_files, "json": _rows_from_json, "mat": _rows_from_mat}[kind]
    rows = reader(source)
    report = CleaningReport(dataset="agedb", source=str(source), n_raw=len(rows))
    # A file name that misses the pattern, or a listing row without a usable name/age.
    rule = "unparseable name" if kind == "files" else "unparseable label"
    rows = drop_rows(rows, rows["name"].isna() | (rows["name"] == "") | rows["age"].isna(), rule,
                     report, reason=rule)
    rows = drop_implausible_ages(rows, report)
    if kind != "files":
        rows = drop_missing(rows, root, report, require_files)
    gender = rows["gender"].where(rows["gender"].isin(["m", "f"]), "").fillna("")
    age = rows["age"].to_numpy(dtype=float)
    frame = build_frame(len(rows), path=rows["path"].to_numpy(), age=age, age_lo=age, age_hi=age,
                        subject=rows["name"].to_numpy(), fold=rows["fold"].to_numpy(),
                        gender=gender.to_numpy())
    if kind == "files":
        report.notes.append("no listing file: labels parsed from the image names, fold -1")
    return make_table("agedb", root, frame, report)
