"""FG-NET: 1,002 images of 82 people, named ``NNNAyy[a|b].JPG`` (subject NNN, age yy).

The ``a``/``b`` suffix marks a second/third image of the same person at the same age; they are
distinct photos and stay separate rows.  Images sit in ``root/images/`` (the usual layout) or
directly in root.  A JSON listing (``FG-Net.json``) of the same files exists; it writes the
extension in lower case while most real files end in ``.JPG``, so its paths are resolved
case-insensitively against the folder.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cascade.data.formats._common import (build_frame, check_choice, drop_implausible_ages, drop_missing,
                                          drop_rows, make_table, number_field, read_records, require_dir,
                                          require_images, scan_images, text_field, whole_numbers)
from cascade.data.records import CleaningReport, DatasetTable

LISTINGS = ("auto", "files", "json")
JSON_NAME = "FG-Net.json"

#: ``NNNAyy[a|b].jpg``, extension in any case; matched against the file name only.
NAME_PATTERN = r"^(?P<subject>\d{3})[aA](?P<age>\d{2})(?P<dup>[abAB])?\.(?i:jpe?g)$"


def parse_fgnet_names(names: list[str], dataset: str = "fgnet") -> tuple[pd.DataFrame, CleaningReport]:
    """Rows for root-relative image paths (labels from the file name); names that miss the
    pattern are dropped under "unparseable name" and quarantined.  Public so tests and tools
    can check a bare list of names (e.g. the real 1,002) without the images."""
    paths = pd.Series(list(names), dtype=str)
    parts = paths.str.rsplit("/", n=1).str[-1].str.extract(NAME_PATTERN)
    report = CleaningReport(dataset=dataset, source=f"{len(paths)} file names", n_raw=len(paths))
    rows = pd.DataFrame({"path": paths, "subject": parts["subject"], "age": pd.to_numeric(parts["age"])})
    rows = drop_rows(rows, rows["subject"].isna(), "unparseable name", report, reason="unparseable name")
    return _frame(rows), report


def _frame(rows: pd.DataFrame) -> pd.DataFrame:
    age = rows["age"].to_numpy(dtype=float)
    return build_frame(len(rows), path=rows["path"].to_numpy(), age=age, age_lo=age, age_hi=age,
                       subject=rows["subject"].to_numpy())


def image_folder(root: Path) -> Path:
    """``root/images`` when it exists (the distributed layout), else root itself."""
    return root / "images" if (root / "images").is_dir() else root


def _json_rows(path: Path, prefix: str, folder: Path, require_files: bool) -> pd.DataFrame:
    """Listing rows with subject/age from its own fields; file names matched to the folder's
    real case when the files are there (``009A16b.jpg`` in the listing is ``009A16B.JPG`` or
    ``009A16b.JPG`` on disk)."""
    raw = read_records(path)
    names = text_field(raw, "img_path").str.rsplit("/", n=1).str[-1]
    if require_files and folder.is_dir():
        with os.scandir(folder) as entries:
            on_disk = {e.name.lower(): e.name for e in entries if e.is_file()}
        names = names.map(lambda n: on_disk.get(n.lower(), n))
    subject = whole_numbers(number_field(raw, "id_num"))
    # an empty name stays empty (the escaping-path rule quarantines it) instead of becoming
    # the prefix alone, which would name the folder itself
    return pd.DataFrame({"path": names.map(lambda n: prefix + n if n else ""),
                         "subject": subject.map(lambda s: f"{int(s):03d}" if pd.notna(s) else np.nan),
                         "age": number_field(raw, "age")}, index=raw.index)


def _json_listing(root: Path, folder: Path) -> Path | None:
    return next((p for p in (root / JSON_NAME, folder / JSON_NAME) if p.is_file()), None)


def required_files(root: Path) -> None:
    """The JSON listing, or else image files to parse: an error saying so when there is neither."""
    folder = image_folder(root)
    if _json_listing(root, folder) is None:
        require_images(folder, "fgnet", f"{JSON_NAME} nor image NNNAyy.JPG (in images/ or the root)")


def load_fgnet(root: Path, *, listing: str = "auto", require_files: bool = True) -> DatasetTable:
    """FG-NET rows; subject = "NNN", fold -1 (its protocol is leave-one-person-out, which
    protocols derive from ``subject``)."""
    check_choice("listing", listing, LISTINGS)
    root = require_dir(root, "fgnet")
    folder = image_folder(root)
    prefix = "images/" if folder != root else ""
    json_path = _json_listing(root, folder)
    if listing == "json" and json_path is None:
        raise FileNotFoundError(f"fgnet: listing='json' but no {JSON_NAME} in {root} or {folder}")
    if listing == "files" or (listing == "auto" and json_path is None):
        frame, report = parse_fgnet_names([prefix + n for n in scan_images(folder)])
        report.source = str(folder)
        return make_table("fgnet", root, frame, report)
    rows = _json_rows(json_path, prefix, folder, require_files)
    report = CleaningReport(dataset="fgnet", source=str(json_path), n_raw=len(rows))
    rows = drop_rows(rows, rows["subject"].isna() | rows["age"].isna(), "unparseable label", report,
                     reason="unparseable label")
    rows = drop_implausible_ages(rows, report)
    rows = drop_missing(rows, root, report, require_files)
    report.notes.append("FG-Net.json's folder field equals the subject id; fold left -1")
    return make_table("fgnet", root, _frame(rows), report)
