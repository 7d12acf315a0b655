"""IMDB-WIKI (Rothe et al.): the released ``imdb.mat`` / ``wiki.mat`` struct, or the common CSV
export of it.

The .mat is a 1x1 struct whose fields are 1xN arrays: ``mat["imdb"][0, 0][field][0]``.  Ages
are not stored; they are derived from the date of birth (a MATLAB datenum) and the year the
photo was taken, and the raw labels are noisy (negative ages, several faces, no face), so each
cleaning rule is a named, counted step.  Rows are handled as whole columns: the IMDB part has
~460k rows and must load in seconds.
"""
from __future__ import annotations

import zlib
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io

from cascade.data.formats._common import (build_frame, drop_missing, drop_rows, make_table,
                                          require_dir)
from cascade.data.records import CleaningReport, DatasetTable

MAT_FIELDS = ("dob", "photo_taken", "full_path", "gender", "name", "face_location",
              "face_score", "second_face_score")

#: MATLAB datenum of 1970-01-01 (numpy's day zero), and the datenums Python's ``date`` can
#: hold, [start, end): datenum 1 is 1 January of year 0, which ``date`` cannot represent.
_DATENUM_1970 = 719529
_DATENUM_START = 367
_DATENUM_END = date.max.toordinal() + 367

#: Accepted column names of CSV exports (first match wins).
_CSV_ALIASES = {"age": ("ages", "age"), "gender": ("genders", "gender"),
                "path": ("img_paths", "full_path", "path"), "name": ("name", "names"),
                "face_score": ("face_score", "face_score1"),
                "second_face_score": ("second_face_score", "face_score2")}


def datenum_to_date(dn: float) -> date | None:
    """The calendar day of a MATLAB datenum, or None when it is not a representable day
    (NaN, before 1 January of year 1, or past year 9999): such dates occur in the real
    metadata and must become "invalid dob", not an exception."""
    if dn is None or not np.isfinite(dn) or not _DATENUM_START <= dn < _DATENUM_END:
        return None
    return date.fromordinal(int(dn) - 366)


def valid_datenums(dob: np.ndarray) -> np.ndarray:
    """Vectorised form of "``datenum_to_date`` gives a day" (no Python loop over 460k rows)."""
    dob = np.asarray(dob, dtype=float)
    return np.isfinite(dob) & (dob >= _DATENUM_START) & (dob < _DATENUM_END)


def ages_on_july_first(dob: np.ndarray, photo_year: np.ndarray) -> np.ndarray:
    """Completed years on 1 July of the photo year (the photo's day is unknown; mid-year is the
    dataset authors' convention).  Someone born on 1 July has completed the year.  NaN where
    the datenum is not a valid day.  Vectorised through ``datetime64`` (proleptic Gregorian,
    like ``date``) so 460k rows take milliseconds."""
    dob = np.asarray(dob, dtype=float)
    year = np.asarray(photo_year, dtype=float)
    valid = valid_datenums(dob)
    days = np.where(valid, np.floor(np.where(valid, dob, 0)) - _DATENUM_1970, 0).astype(np.int64)
    born = days.astype("datetime64[D]")
    month_start = born.astype("datetime64[M]")
    birth_year = born.astype("datetime64[Y]").astype(np.int64) + 1970
    month = month_start.astype(np.int64) % 12 + 1
    day = (born - month_start).astype(np.int64) + 1
    before_birthday = (month > 7) | ((month == 7) & (day > 1))
    age = year - birth_year - before_birthday
    return np.where(valid, age, np.nan)


def _cell_strings(cells: np.ndarray) -> list[str]:
    """A MATLAB cell array of strings arrives as 1-element arrays; empty cells (names missing
    in the real wiki.mat) become ''."""
    return [str(c.item(0)) if c.size else "" for c in cells]


def _boxes(cells: np.ndarray) -> np.ndarray:
    """Stack the 1x4 ``face_location`` cells (one concatenate when all are well formed, which
    is ~6x faster on 460k rows); a malformed cell gives a NaN box, not a crash."""
    sizes = np.fromiter((c.size for c in cells), dtype=np.int64, count=len(cells))
    if (sizes == 4).all():
        return np.concatenate([c.reshape(-1) for c in cells]).astype(float).reshape(-1, 4)
    nan = np.full(4, np.nan)
    return np.array([c.reshape(-1).astype(float) if n == 4 else nan
                     for c, n in zip(cells, sizes)]).reshape(-1, 4)


def read_mat(path: Path, key: str) -> pd.DataFrame:
    """The struct's fields as columns, one row per listed image."""
    try:
        mat = scipy.io.loadmat(path)
    except (ValueError, TypeError, OSError, NotImplementedError, zlib.error) as exc:   # MatReadError is a ValueError
        raise ValueError(f"{path}: not a readable MATLAB file ({type(exc).__name__}: {exc}); the IMDB-WIKI "
                         f"metadata is the {key}.mat of the {key}_crop or {key}_meta release (docs/data.md): "
                         f"download it again, or give its CSV export") from exc
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path}: no struct {key!r} (variables found: {found})")
    struct = mat[key][0, 0]
    missing = [f for f in MAT_FIELDS if f not in struct.dtype.names]
    if missing:
        raise ValueError(f"{path}: struct {key!r} lacks fields {missing}")
    field = {f: np.ravel(struct[f]) for f in MAT_FIELDS}
    boxes = _boxes(field["face_location"])
    return pd.DataFrame({
        "path": _cell_strings(field["full_path"]), "name": _cell_strings(field["name"]),
        "age": ages_on_july_first(field["dob"], field["photo_taken"]),
        "dob_valid": valid_datenums(field["dob"]),
        "gender_code": field["gender"].astype(float),
        "face_score": field["face_score"].astype(float),
        "second_face_score": field["second_face_score"].astype(float),
        "box_x1": boxes[:, 0], "box_y1": boxes[:, 1], "box_x2": boxes[:, 2], "box_y2": boxes[:, 3]})


def _csv_column(raw: pd.DataFrame, what: str):
    """The first alias of ``what`` present in the CSV, or None."""
    return next((raw[c] for c in _CSV_ALIASES[what] if c in raw.columns), None)


def _csv_gender(values: pd.Series) -> np.ndarray:
    """Exports write gender as 1.0/0.0 (the .mat coding) or as words; anything else is ''."""
    text = values.astype(str).str.strip().str.lower()
    male = text.isin(["1", "1.0", "m", "male"])
    female = text.isin(["0", "0.0", "f", "female"])
    return np.where(male, 1.0, np.where(female, 0.0, np.nan))


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV export (``genders,ages,img_paths``; a few common aliases accepted) as the same
    columns ``read_mat`` gives; face scores only when the export kept them."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    required = {"age": _csv_column(raw, "age"), "path": _csv_column(raw, "path"),
                "gender": _csv_column(raw, "gender")}
    absent = [f"{k} (one of {_CSV_ALIASES[k]})" for k, v in required.items() if v is None]
    if absent:
        raise ValueError(f"{path}: CSV lacks columns {absent}; has {list(raw.columns)}")
    n = len(raw)
    name = _csv_column(raw, "name")
    out = pd.DataFrame({
        "path": required["path"].str.strip().str.lstrip("/").to_numpy(),
        "name": name.to_numpy() if name is not None else np.full(n, ""),
        "age": pd.to_numeric(required["age"], errors="coerce").to_numpy(dtype=float),
        "dob_valid": np.ones(n, dtype=bool),
        "gender_code": _csv_gender(required["gender"])})
    for score in ("face_score", "second_face_score"):
        column = _csv_column(raw, score)
        if column is not None:
            out[score] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    return out


def _subjects(rows: pd.DataFrame) -> pd.Series:
    """The IMDb person id in the file name (``nm0000001``) identifies the person; WIKI names
    carry no id, so the person's name stands in, then the path (one image, one subject)."""
    ids = rows["path"].str.extract(r"(?:^|/)(nm\d+)_", expand=False)
    named = ids.fillna(rows["name"].where(rows["name"] != "", other=np.nan))
    return named.fillna(rows["path"])


def _clean(rows: pd.DataFrame, report: CleaningReport, age_range: tuple[int, int],
           min_face_score: float) -> pd.DataFrame:
    """The named rules, in the order the study applies them."""
    lo, hi = age_range
    bad_dob = ~rows["dob_valid"].to_numpy()
    report.quarantine.extend({"path": p, "reason": "invalid dob"} for p in rows.loc[bad_dob, "path"])
    if bad_dob.any():
        report.notes.append(f"{int(bad_dob.sum())} rows with an invalid dob (quarantined) are "
                            f"counted under 'age outside {lo}-{hi}'")
    rows = drop_rows(rows, ~rows["age"].between(lo, hi), f"age outside {lo}-{hi}", report)
    if "face_score" in rows:
        rows = drop_rows(rows, ~(rows["face_score"] >= min_face_score),
                         f"face_score below {min_face_score}", report)
    else:
        report.notes.append("CSV export has no face_score: the face_score rule could not be applied")
    if "second_face_score" in rows:
        rows = drop_rows(rows, rows["second_face_score"].notna(), "second face present", report)
    else:
        report.notes.append("CSV export has no second_face_score: the second-face rule could "
                            "not be applied")
    rows = drop_rows(rows, rows["gender_code"].isna(), "missing gender", report)
    report.notes.append(f"kept {len(rows)} of {report.n_raw} by these rules; for comparison: thesis "
                        f"IMDB 460,723 -> 171,858")
    return rows


def metadata_file(root: Path, key: str, csv: str | Path | None = None) -> Path:
    """The .mat when present, else the CSV export: the .mat carries the face scores the
    cleaning rules need, so it wins when both exist.  None there: an error naming both."""
    if csv is not None:
        path = Path(csv) if Path(csv).is_absolute() else root / csv
        if not path.is_file():
            raise FileNotFoundError(f"{key}: csv={csv} does not exist")
        return path
    for candidate in (root / f"{key}.mat", root / f"{key}.csv"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{key}: neither {key}.mat nor {key}.csv in {root} (the IMDB-WIKI metadata, struct "
                            f"{key!r}, or its CSV export with columns genders, ages, img_paths)")


def _load(key: str, root: Path, *, min_face_score: float, age_range: tuple[int, int],
          require_files: bool, csv: str | Path | None) -> DatasetTable:
    root = require_dir(root, key)
    source = metadata_file(root, key, csv)
    rows = read_mat(source, key) if source.suffix.lower() == ".mat" else read_csv(source)
    report = CleaningReport(dataset=key, source=str(source), n_raw=len(rows))
    rows = _clean(rows, report, tuple(age_range), float(min_face_score))
    rows = drop_missing(rows, root, report, require_files)
    gender = np.where(rows["gender_code"] == 1.0, "m", np.where(rows["gender_code"] == 0.0, "f", ""))
    age = np.floor(rows["age"].to_numpy())
    boxes = {c: rows[c].to_numpy() if c in rows else np.nan
             for c in ("box_x1", "box_y1", "box_x2", "box_y2")}
    frame = build_frame(len(rows), path=rows["path"].to_numpy(), age=age, age_lo=age, age_hi=age,
                        subject=_subjects(rows).to_numpy(), gender=gender, **boxes)
    return make_table(key, root, frame, report)


def load_imdb(root: Path, *, min_face_score: float = 1.0, age_range: tuple[int, int] = (0, 100),
              require_files: bool = True, csv: str | Path | None = None) -> DatasetTable:
    """IMDB part: ``root/imdb.mat`` (or ``root/imdb.csv``, or the CSV named by ``csv``)."""
    return _load("imdb", root, min_face_score=min_face_score, age_range=age_range,
                 require_files=require_files, csv=csv)


def load_wiki(root: Path, *, min_face_score: float = 1.0, age_range: tuple[int, int] = (0, 100),
              require_files: bool = True, csv: str | Path | None = None) -> DatasetTable:
    """WIKI part: ``root/wiki.mat`` (struct key "wiki"), or its CSV export."""
    return _load("wiki", root, min_face_score=min_face_score, age_range=age_range,
                 require_files=require_files, csv=csv)
