"""Adience (Eidinger et al.): ``fold_{0..4}_data.txt``, tab-separated, one header line, 12 columns.

The released age labels are not clean: besides the 8 canonical groups they contain ``None``,
bare ages (``35``), ranges off the grid (``(27, 32)``, ``(38, 48)``), a typo ``(25, 23)``, and
exact duplicate rows.  Published image counts differ because papers treat these differently,
so the treatment is an explicit ``policy`` and every rule's count lands in the report:

* ``strict`` keeps only rows already labelled with a canonical group;
* ``lenient`` maps a label into the canonical group that contains it, and drops it only when no
  single group does (an age in a gap between groups, or a range spanning several groups).

Rules run in this order: malformed line, exact duplicate row, typo (25, 23), age None, bare single
age, off-grid range, unparseable age, then missing file.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cascade.data.formats._common import (build_frame, check_choice, drop_missing, drop_rows,
                                          make_table, require_dir)
from cascade.data.records import CleaningReport, DatasetTable

FIELDS = ("user_id", "original_image", "face_id", "age", "gender", "x", "y", "dx", "dy",
          "tilt_ang", "fiducial_yaw_angle", "fiducial_score")
N_FOLDS = 5
GROUPS_8 = ((0, 2), (4, 6), (8, 12), (15, 20), (25, 32), (38, 43), (48, 53), (60, 100))
#: 3-class variant: child / teen / adult, each the union of consecutive canonical groups.
GROUPS_3 = ((0, 12), (15, 20), (25, 100))
TYPO = (25, 23)
TYPO_FIX = (25, 32)
POLICIES = ("strict", "lenient")
VARIANTS = {"faces": ("faces", "coarse_tilt_aligned_face"),
            "aligned": ("aligned", "landmark_aligned_face")}

#: Label kinds, in the order their rules run (``group`` is already clean).
KINDS = ("group", "typo", "none", "single", "range", "unparseable")
RULES = {"typo": "typo (25, 23)", "none": "age None", "single": "bare single age",
         "range": "off-grid range", "unparseable": "unparseable age"}

#: Reference image counts printed next to ours (the study quotes both).
PUBLISHED = {"thesis": 17417, "original paper": 17643}

_RANGE = re.compile(r"\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)")
_SINGLE = re.compile(r"\d{1,3}")


@dataclasses.dataclass(frozen=True)
class AgeLabel:
    """One raw label, classified: ``kind`` is one of ``KINDS``; lo/hi the numbers it names."""

    kind: str
    lo: int | None = None
    hi: int | None = None


def parse_age_label(text) -> AgeLabel:
    """Classify a raw label string.  Total: any input (also non-strings) gives a label, never an
    exception, so it can be fuzzed."""
    text = text.strip() if isinstance(text, str) else ""
    if text == "None":
        return AgeLabel("none")
    if m := _RANGE.fullmatch(text):
        lo, hi = int(m[1]), int(m[2])
        if (lo, hi) in GROUPS_8:
            return AgeLabel("group", lo, hi)
        if (lo, hi) == TYPO:
            return AgeLabel("typo", lo, hi)
        return AgeLabel("range", lo, hi) if lo <= hi else AgeLabel("unparseable")
    if _SINGLE.fullmatch(text):
        return AgeLabel("single", int(text), int(text))
    return AgeLabel("unparseable")


def containing_group(lo: int, hi: int) -> tuple[int, int] | None:
    """The canonical group holding all of [lo, hi], or None (gap, or spans several groups)."""
    return next((g for g in GROUPS_8 if g[0] <= lo and hi <= g[1]), None)


def resolve_age_label(text, policy: str = "strict") -> tuple[AgeLabel, tuple[int, int] | None]:
    """The label's kind and the canonical group it ends in under ``policy`` (None: dropped)."""
    check_choice("policy", policy, POLICIES)
    label = parse_age_label(text)
    if label.kind == "group":
        return label, (label.lo, label.hi)
    if policy == "strict" or label.kind in ("none", "unparseable"):
        return label, None
    if label.kind == "typo":
        return label, TYPO_FIX
    return label, containing_group(label.lo, label.hi)


def to_three_groups(lo: int, hi: int) -> tuple[int, int]:
    """The 3-class group that contains a canonical 8-class group."""
    return next(g for g in GROUPS_3 if g[0] <= lo and hi <= g[1])


def read_fold(path: Path, fold: int) -> tuple[pd.DataFrame, list[str]]:
    """One fold file as string columns plus ``fold`` and ``row`` ("file:line", 1-based, what
    the quarantine names), and the rows of lines with the wrong number of fields (not parsed)."""
    # Rows end at "\n" (and "\r\n") only: str.splitlines would also break a row at a form feed
    # or a Unicode line separator inside a value and turn one row into two malformed lines.
    lines = [line.rstrip("\r") for line in path.read_text(encoding="utf-8", errors="replace").split("\n")]
    # Skip the header only when it is one: a file without it must not lose its first row.
    start = 1 if lines and lines[0].split("\t")[0].strip() == FIELDS[0] else 0
    good, bad = [], []
    for number, line in enumerate(lines[start:], start=start + 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) == len(FIELDS):
            good.append((f"{path.name}:{number}", fields))
        else:
            bad.append(f"{path.name}:{number}")
    frame = pd.DataFrame([f for _, f in good], columns=list(FIELDS), dtype=str)
    frame["row"] = pd.Series([row for row, _ in good], dtype=str)
    frame["fold"] = fold
    return frame, bad


def check_subject_exclusive(rows: pd.DataFrame) -> None:
    """Adience's folds are defined to keep each person in one fold; a loader that let one slip
    into two would leak identities between train and test, so it stops."""
    folds = rows.groupby("user_id")["fold"].unique()
    shared = folds[folds.map(len) > 1]
    if len(shared):
        who = ", ".join(f"{u} in folds {sorted(int(f) for f in fs)}" for u, fs in shared.head(5).items())
        raise ValueError(f"adience: folds are not subject-exclusive ({len(shared)} subjects): {who}")


def _apply_label_rules(rows: pd.DataFrame, report: CleaningReport, policy: str) -> pd.DataFrame:
    """Classify each distinct label once, then run one rule per label kind, in ``KINDS`` order;
    adds ``_group``, the canonical group each kept row ends in."""
    resolved = {t: resolve_age_label(t, policy) for t in rows["age"].unique()}
    rows = rows.assign(_kind=rows["age"].map(lambda t: resolved[t][0].kind),
                       _group=rows["age"].map(lambda t: resolved[t][1]))
    for kind in KINDS[1:]:
        hit = rows["_kind"] == kind
        dropped = hit & rows["_group"].isna()
        partial = policy == "lenient" and kind in ("typo", "single", "range")
        if partial and hit.sum() > dropped.sum():
            target = " to (25, 32)" if kind == "typo" else " into the canonical group containing it"
            report.notes.append(f"lenient: {RULES[kind]}: {int(hit.sum() - dropped.sum())} rows "
                                f"mapped{target}")
        rule = f"{RULES[kind]} (dropped)" if partial else RULES[kind]
        rows = drop_rows(rows, dropped, rule, report, key="row",
                         reason="unparseable age" if kind == "unparseable" else None)
    return rows


def _layout(rows: pd.DataFrame, variant: str) -> pd.Series:
    folder, prefix = VARIANTS[variant]
    return folder + "/" + rows["user_id"] + f"/{prefix}." + rows["face_id"] + "." + rows["original_image"]


def _fold_notes(frame: pd.DataFrame, report: CleaningReport) -> None:
    per_fold = frame["fold"].value_counts().reindex(range(N_FOLDS), fill_value=0)
    report.notes.append("kept per fold: " + ", ".join(f"{k}: {n}" for k, n in per_fold.items()))
    report.notes.append(f"kept {len(frame)} in total; for comparison: "
                        + ", ".join(f"{who} {n:,}" for who, n in PUBLISHED.items()))


def fold_listings(root: Path) -> list[Path]:
    """The five fold listings under `root`; an error naming each one that is missing."""
    paths = [root / f"fold_{k}_data.txt" for k in range(N_FOLDS)]
    absent = [p.name for p in paths if not p.is_file()]
    if absent:
        raise FileNotFoundError(f"adience: {root} lacks {absent} (the release's fold listings; images under "
                                f"faces/ or aligned/)")
    return paths


def load_adience(root: Path, *, policy: str = "strict", groups: int = 8, variant: str = "faces",
                 require_files: bool = True) -> DatasetTable:
    """Adience rows with group labels (age NaN, age_lo/age_hi the group), subject = user_id,
    fold = the file's fold number."""
    check_choice("policy", policy, POLICIES)
    check_choice("groups", groups, (8, 3))
    check_choice("variant", variant, tuple(VARIANTS))
    root = require_dir(root, "adience")
    paths = fold_listings(root)
    parts, malformed = zip(*(read_fold(p, k) for k, p in enumerate(paths)))
    rows = pd.concat(parts, ignore_index=True)
    bad = [row for rows_of_fold in malformed for row in rows_of_fold]
    report = CleaningReport(dataset="adience", source=", ".join(str(p) for p in paths),
                            n_raw=len(rows) + len(bad))
    report.quarantine.extend({"row": row, "reason": "malformed line"} for row in bad)
    report.drop("malformed line", len(bad))
    check_subject_exclusive(rows)
    rows = drop_rows(rows, rows.duplicated(subset=list(FIELDS)), "exact duplicate row", report)
    rows = _apply_label_rules(rows, report, policy)
    rows = rows.assign(path=_layout(rows, variant))
    rows = drop_missing(rows, root, report, require_files)
    lo = np.array([g[0] for g in rows["_group"]], dtype=np.int64)
    hi = np.array([g[1] for g in rows["_group"]], dtype=np.int64)
    if groups == 3:
        three = [to_three_groups(a, b) for a, b in zip(lo, hi)]
        lo, hi = (np.array([g[i] for g in three], dtype=np.int64) for i in (0, 1))
    box = {c: pd.to_numeric(rows[c], errors="coerce").to_numpy() for c in ("x", "y", "dx", "dy")}
    frame = build_frame(len(rows), path=rows["path"].to_numpy(), age_lo=lo, age_hi=hi,
                        subject=rows["user_id"].to_numpy(), fold=rows["fold"].to_numpy(),
                        gender=rows["gender"].where(rows["gender"].isin(["m", "f"]), "").to_numpy(),
                        box_x1=box["x"], box_y1=box["y"], box_x2=box["x"] + box["dx"],
                        box_y2=box["y"] + box["dy"])
    _fold_notes(frame, report)
    return make_table("adience", root, frame, report)
