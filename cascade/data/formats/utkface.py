"""UTKFace (Zhang et al.): ``[age]_[gender]_[race]_[date&time].jpg.chip.jpg`` directly in root
(plain ``.jpg`` names of the "in the wild" release are accepted too).

A few real names lack a field, e.g. ``39_1_20170116174525125.jpg.chip.jpg``: the age (first
field) is still readable, so such rows are kept with what can be read and counted in the notes;
only names without a readable age are quarantined.  The set has no identity labels, so each
image is its own subject.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from cascade.data.formats._common import (build_frame, drop_rows, make_table, require_dir, require_images,
                                          scan_images)
from cascade.data.records import CleaningReport, DatasetTable

#: Released age range; a parsed age outside it is a broken name, not a person.
AGE_RANGE = (1, 116)
GENDERS = {"0": "m", "1": "f"}
_SUFFIX = r"(?i:\.jpg\.chip\.jpg|\.jpg)$"
#: Four fields: age, gender, race, 17-digit timestamp.
FULL_PATTERN = r"^(?P<age>\d{1,3})_(?P<gender>\d)_(?P<race>\d)_(?P<time>\d{8,})" + _SUFFIX
#: What a malformed name still gives: the leading age and, when a second field follows, a
#: candidate gender (only 0/1 accepted: in ``61_3_...`` the 3 is a race code, not a gender).
AGE_PATTERN = r"^(?P<age>\d{1,3})(?:_(?P<second>\d+))?(?:_|\.)"


def parse_utkface_names(names: pd.Series) -> pd.DataFrame:
    """Per name: age (NaN if unreadable), gender ('m'/'f'/''), and whether it was well formed."""
    full = names.str.extract(FULL_PATTERN)
    loose = names.str.extract(AGE_PATTERN)
    well_formed = full["age"].notna()
    age = pd.to_numeric(full["age"].fillna(loose["age"]))
    code = full["gender"].fillna(loose["second"])
    gender = code.map(GENDERS).fillna("")
    return pd.DataFrame({"age": age, "gender": gender, "well_formed": well_formed})


def _note_malformed(rows: pd.DataFrame, report: CleaningReport) -> None:
    """Kept-but-malformed names are not errors to quarantine, but their count must be visible."""
    malformed = rows.loc[~rows["well_formed"], "path"]
    if len(malformed):
        examples = ", ".join(malformed.head(3))
        report.notes.append(f"{len(malformed)} malformed names kept (age read from the first field, "
                            f"gender only when the second field is 0/1), e.g. {examples}")
    no_gender = int((rows["gender"] == "").sum())
    if no_gender:
        report.notes.append(f"{no_gender} kept rows have no readable gender")


def required_files(root: Path) -> None:
    """Image files to parse: an error saying what is expected when there are none."""
    require_images(root, "utkface", "image [age]_[gender]_[race]_[date].jpg.chip.jpg")


def load_utkface(root: Path, *, age_range: tuple[int, int] = AGE_RANGE,
                 require_files: bool = True) -> DatasetTable:
    """UTKFace rows; ``require_files`` is accepted for a uniform interface (rows come from a
    folder scan, so every listed file exists)."""
    root = require_dir(root, "utkface")
    names = pd.Series(scan_images(root), dtype=str)
    rows = pd.concat([names.rename("path"), parse_utkface_names(names)], axis=1)
    report = CleaningReport(dataset="utkface", source=str(root), n_raw=len(rows))
    rows = drop_rows(rows, rows["age"].isna(), "unparseable name", report, reason="unparseable name")
    lo, hi = age_range
    rows = drop_rows(rows, ~rows["age"].between(lo, hi), f"age outside {lo}-{hi}", report,
                     reason=f"age outside {lo}-{hi}")
    _note_malformed(rows, report)
    report.notes.append("UTKFace has no identity labels: subject = the file name "
                        "(every image its own subject)")
    age = rows["age"].to_numpy(dtype=float)
    frame = build_frame(len(rows), path=rows["path"].to_numpy(), age=age, age_lo=age, age_hi=age,
                        subject=rows["path"].to_numpy(), gender=rows["gender"].to_numpy())
    return make_table("utkface", root, frame, report)
