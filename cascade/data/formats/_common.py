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


def drop_missing(frame: pd.DataFrame, root: Path, report: CleaningReport,
                 require_files: bool) -> pd.DataFrame:
    """The "missing file" rule for listing-based loaders; skipped (and said so) when the caller
    tests a metadata-only listing."""
    if not require_files:
        report.notes.append("require_files=False: listed files were not checked on disk")
        return frame
    return drop_rows(frame, ~existing_mask(root, frame["path"]), "missing file", report,
                     reason="missing file")


def scan_images(folder: Path) -> list[str]:
    """Image file names directly in ``folder``, sorted so the row order does not depend on
    the file system."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries
                      if e.is_file() and e.name.lower().endswith(IMAGE_EXTS))


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
    return DatasetTable(name=name, root=Path(root), frame=frame.reset_index(drop=True),
                        report=report, synthetic=is_synthetic(root))
