"""Pieces every format loader shares: building the fixed-column frame, dropping rows under a
named, counted rule, and checking file existence without one stat() per row.

Why shared: the study's numbers depend on each rule's count, so "drop and count" must be one
operation that cannot be half-done (rows removed but not reported, or the reverse).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cascade.data.records import COLUMNS, CleaningReport, DatasetTable, is_synthetic

#: File extensions a folder scan treats as images (compared case-insensitively: FG-NET ships
#: ``.JPG``, listings of it say ``.jpg``).
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")

_FLOAT_COLUMNS = ("age", "box_x1", "box_y1", "box_x2", "box_y2")
_INT_COLUMNS = ("age_lo", "age_hi", "fold")


def check_choice(option: str, value, allowed) -> None:
    """Reject a bad option value up front, naming the valid ones, instead of failing later
    in a way that hides which option was wrong."""
    if value not in allowed:
        raise ValueError(f"{option}={value!r} is not valid; valid values: {list(allowed)}")


def build_frame(n: int, **columns) -> pd.DataFrame:
    """A frame with exactly ``COLUMNS`` and their dtypes; columns not given get the
    "unknown" value the records docstring defines (NaN age/box, fold -1, gender '')."""
    defaults = {"age": np.nan, "subject": "", "fold": -1, "gender": "",
                "box_x1": np.nan, "box_y1": np.nan, "box_x2": np.nan, "box_y2": np.nan}
    data = {}
    for col in COLUMNS:
        value = columns.get(col, defaults.get(col))
        if value is None:
            raise ValueError(f"build_frame: column {col!r} has no default and was not given")
        data[col] = np.asarray(value) if not np.isscalar(value) else np.full(n, value, dtype=object)
    frame = pd.DataFrame(data)
    for col in _FLOAT_COLUMNS:
        frame[col] = frame[col].astype(float)
    for col in _INT_COLUMNS:
        frame[col] = frame[col].astype(np.int64)
    for col in ("path", "subject", "gender"):
        frame[col] = frame[col].astype(str)
    return frame


def read_records(path: Path) -> pd.DataFrame:
    """A JSON listing (a list of objects) as a frame of raw values; anything else is a clear error."""
    import json

    try:
        records = json.loads(Path(path).read_text(encoding="utf-8", errors="replace"))
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path}: expected a list of records (JSON objects), got {type(records).__name__}")
    return pd.DataFrame.from_records(records) if records else pd.DataFrame()


def text_field(raw: pd.DataFrame, name: str) -> pd.Series:
    """A listing field as text: absent, null or NaN -> '' (a row a rule then drops), else str()."""
    values = raw[name] if name in raw else [None] * len(raw)
    return pd.Series(["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values],
                     index=raw.index, dtype=object)


def number_field(raw: pd.DataFrame, name: str) -> pd.Series:
    """A listing field as a float: numbers and numeric strings; anything else (null, bool, list,
    text) -> NaN, so a rule drops the row instead of a type error stopping the load."""
    def one(v):
        if isinstance(v, bool) or v is None:
            return np.nan
        if isinstance(v, (int, float, np.integer, np.floating)):
            return float(v) if abs(float(v)) < 1e300 else np.nan
        if isinstance(v, str):
            try:
                return float(v)
            except ValueError:
                return np.nan
        return np.nan
    values = raw[name] if name in raw else [None] * len(raw)
    return pd.Series([one(v) for v in values], index=raw.index, dtype=float)


def whole_numbers(values: pd.Series, default: float = np.nan) -> pd.Series:
    """Finite non-negative whole numbers kept, anything else -> `default` (ids, fold numbers)."""
    ok = np.isfinite(values) & (values >= 0) & (values == np.floor(values)) & (values < 1e15)
    return values.where(ok, default)


def drop_rows(frame: pd.DataFrame, mask, rule: str, report: CleaningReport,
              reason: str | None = None, key: str = "path") -> pd.DataFrame:
    """Remove the rows where ``mask`` holds and count them under ``rule``; with ``reason``,
    also list each one in the quarantine (for bad rows, not for rows a threshold removes)."""
    mask = np.asarray(mask, dtype=bool)
    report.drop(rule, int(mask.sum()))
    if reason is not None and mask.any():
        report.quarantine.extend({key: v, "reason": reason} for v in frame.loc[mask, key])
    return frame.loc[~mask]


def existing_mask(root: Path, paths: pd.Series) -> np.ndarray:
    """Which root-relative POSIX paths are files, using one ``os.scandir`` per folder: IMDB
    lists ~460k images in 100 folders, and a stat() per row would take minutes on slow disks."""
    paths = paths.astype(str)
    if paths.empty:                       # (rpartition of no rows has no columns to index)
        return np.zeros(0, dtype=bool)
    parts = paths.str.rpartition("/")
    found: set[str] = set()
    for folder in parts[0].unique():
        base = Path(root, folder) if folder else Path(root)
        prefix = f"{folder}/" if folder else ""
        try:
            with os.scandir(base) as entries:
                found.update(prefix + e.name for e in entries if e.is_file())
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
    return paths.isin(found).to_numpy()


#: Ages a person can have: a label outside (or NaN) is a broken row, not a person.
PLAUSIBLE_AGES = (0, 120)
ESCAPES_ROOT = "path escapes the dataset root"


def escapes_root(path) -> bool:
    """True for a listed path that could name a file outside the dataset root: absolute (POSIX
    or Windows), a `..` component (either separator), empty, or with a NUL byte.  Paths come
    from metadata files a user downloaded, so they are not trusted."""
    text = str(path)
    drive = len(text) > 1 and text[0].isalpha() and text[1] == ":"
    if not text or "\x00" in text or text.startswith(("/", "\\")) or drive:
        return True
    return any(part == ".." for part in text.replace("\\", "/").split("/"))


def drop_escaping(frame: pd.DataFrame, report: CleaningReport, key: str = "path") -> pd.DataFrame:
    """Listed paths that escape the root are quarantined under their own rule and never opened.
    A safety rule: it appears in the report when it removed rows (clean data's reports, and
    the tables quoting them, stay as they were)."""
    mask = np.array([escapes_root(p) for p in frame[key]], dtype=bool)
    if not mask.any():
        return frame
    return drop_rows(frame, mask, ESCAPES_ROOT, report, reason=ESCAPES_ROOT, key=key)


def drop_implausible_ages(frame: pd.DataFrame, report: CleaningReport, key: str = "path",
                          column: str = "age") -> pd.DataFrame:
    """Ages outside `PLAUSIBLE_AGES` or not a number (-5, 250, NaN) are quarantined with the rule
    (a safety rule, in the report when it removed rows)."""
    lo, hi = PLAUSIBLE_AGES
    rule = f"age outside {lo}-{hi} or not a number"
    mask = ~pd.to_numeric(frame[column], errors="coerce").between(lo, hi).to_numpy(dtype=bool)
    if not mask.any():
        return frame
    return drop_rows(frame, mask, rule, report, reason=rule, key=key)


def drop_missing(frame: pd.DataFrame, root: Path, report: CleaningReport,
                 require_files: bool) -> pd.DataFrame:
    """The "missing file" rule for listing-based loaders; skipped (and said so) when the caller
    tests a metadata-only listing.  Paths escaping the root are quarantined first, always."""
    frame = drop_escaping(frame, report)
    if not require_files:
        report.notes.append("require_files=False: listed files were not checked on disk")
        return frame
    return drop_rows(frame, ~existing_mask(root, frame["path"]), "missing file", report,
                     reason="missing file")


def _is_image(entry: os.DirEntry) -> bool:
    return entry.is_file() and entry.name.lower().endswith(IMAGE_EXTS)


def scan_images(folder: Path) -> list[str]:
    """Image file names directly in ``folder``, sorted so the row order does not depend on
    the file system."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if _is_image(e))


def require_images(folder: Path, dataset: str, expected: str) -> None:
    """A folder-scan loader's one need, checked before a run: at least one image directly in
    ``folder`` (else an error saying what the loader expected there).  Stops at the first image,
    so checking a 23k-file folder costs next to nothing."""
    with os.scandir(folder) as entries:
        if not any(_is_image(e) for e in entries):
            raise FileNotFoundError(f"{dataset}: no {expected} in {folder}")


def require_dir(root: Path, dataset: str) -> Path:
    """Fail with the dataset's name when the root is wrong, rather than with an empty table."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{dataset}: dataset root {root} is not a folder")
    return root


def make_table(name: str, root: Path, frame: pd.DataFrame, report: CleaningReport) -> DatasetTable:
    """Wrap a cleaned frame, checking the report's arithmetic so a miscounted rule fails here
    rather than silently skewing the study's tables."""
    if report.n_kept != len(frame):
        raise AssertionError(f"{name}: report keeps {report.n_kept} rows but the frame has "
                             f"{len(frame)}: a rule dropped rows without counting them")
    # Last line of defence (a loader bug, not bad data, would trip these): no row may name a
    # file outside the root or carry an impossible label.
    escaping = [p for p in frame["path"] if escapes_root(p)]
    if escaping:
        raise ValueError(f"{name}: {len(escaping)} listed paths escape the dataset root {root}, "
                         f"e.g. {escaping[:3]}")
    # (upper bounds are each loader's rule and option, e.g. imdb age_range; below 0 never is)
    bad = ~((frame["age_lo"] >= 0) & (frame["age_lo"] <= frame["age_hi"]))
    if bad.any():
        row = frame.loc[bad].iloc[0]
        raise ValueError(f"{name}: {int(bad.sum())} rows have an impossible age label (negative, or "
                         f"lower bound above upper), e.g. {row['path']}: {row['age_lo']}-{row['age_hi']}")
    return DatasetTable(name=name, root=Path(root), frame=frame.reset_index(drop=True),
                        report=report, synthetic=is_synthetic(root))
