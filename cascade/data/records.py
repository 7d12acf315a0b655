"""The one table every dataset loader returns, and the cleaning report that travels with it.

Why one shape: stages, protocols and caches must not care which dataset they read, and every
row dropped by a cleaning rule must be counted (the study's numbers depend on it), so the
report is part of the return value rather than a log line.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

#: Columns of ``DatasetTable.frame``, in order.  ``path`` is POSIX, relative to the dataset root.
#: ``age`` is the exact age in years (NaN when only an age group is known, e.g. Adience).
#: ``age_lo``/``age_hi`` is the age range the label stands for (equal to ``age`` for exact ages;
#: the canonical group's bounds for group labels).  ``subject`` identifies the person (the unit
#: protocols keep apart).  ``fold`` is the dataset's official fold (-1 when it has none).
#: ``gender`` is 'm', 'f' or ''.  ``box_*`` is a face box in pixels of the original image
#: (NaN when the format gives none).
COLUMNS = ["path", "age", "age_lo", "age_hi", "subject", "fold", "gender",
           "box_x1", "box_y1", "box_x2", "box_y2"]


@dataclasses.dataclass
class CleaningReport:
    """What a loader read and what each named rule removed, in the order the rules ran."""

    dataset: str
    source: str                      # file(s) the rows came from
    n_raw: int = 0
    steps: list[tuple[str, int]] = dataclasses.field(default_factory=list)   # (rule, rows dropped)
    quarantine: list[dict] = dataclasses.field(default_factory=list)         # {"row"|"path", "reason"}
    notes: list[str] = dataclasses.field(default_factory=list)

    def drop(self, rule: str, n: int) -> None:
        self.steps.append((rule, int(n)))

    @property
    def n_kept(self) -> int:
        return self.n_raw - sum(n for _, n in self.steps)

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "source": self.source, "n_raw": self.n_raw,
                "steps": [list(s) for s in self.steps], "n_kept": self.n_kept,
                "quarantine": self.quarantine, "notes": self.notes}

    def summary(self) -> str:
        lines = [f"{self.dataset}: {self.n_raw} rows read from {self.source}"]
        lines += [f"  - {rule}: -{n}" for rule, n in self.steps]
        lines.append(f"  = {self.n_kept} kept")
        lines += [f"  note: {n}" for n in self.notes]
        by_reason: dict[str, list[str]] = {}
        for q in self.quarantine:
            by_reason.setdefault(q["reason"], []).append(str(q.get("path", q.get("row"))))
        lines += [f"  quarantined for {reason} ({len(names)}), e.g. {', '.join(names[:3])}"
                  for reason, names in by_reason.items()]
        return "\n".join(lines)


@dataclasses.dataclass
class DatasetTable:
    """A parsed, cleaned dataset: one row per usable image."""

    name: str
    root: Path
    frame: pd.DataFrame
    report: CleaningReport
    synthetic: bool = False          # True when root carries the synthetic suite's marker file

    def __post_init__(self) -> None:
        missing = [c for c in COLUMNS if c not in self.frame.columns]
        if missing:
            raise ValueError(f"dataset {self.name}: loader returned a frame without columns {missing}")
        self.frame = self.frame[COLUMNS].reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.frame)

    def manifest_records(self) -> list[list]:
        """File list + sizes + labels: what a stage key hashes (see ``cascade.hashing``)."""
        out = []
        for row in self.frame.itertuples(index=False):
            size = (self.root / row.path).stat().st_size if (self.root / row.path).exists() else -1
            out.append([row.path, size, _num(row.age), int(row.age_lo), int(row.age_hi),
                        str(row.subject), int(row.fold)])
        return out

    def write_report(self, path: Path) -> None:
        path.write_text(json.dumps(self.report.to_dict(), indent=1))


def _num(x):
    return None if pd.isna(x) else float(x)


SYNTHETIC_MARKER = "SYNTHETIC_DATA.txt"


def is_synthetic(root: Path) -> bool:
    """The synthetic suite writes a marker at its top and in each dataset folder."""
    root = Path(root)
    return any((p / SYNTHETIC_MARKER).exists() for p in [root, *root.parents][:3])
