"""Prediction rows as CSV or JSON Lines, with the header that traces them to their model.

A row is one face, or one file with the reason it has none (unreadable, no face found).  The
header (stage key and label space, crop, detector, settings, environment, counts) goes where each
format has room for it: JSON Lines opens with it as its first record, `{"header": {...}}`, so the
file stands alone; a CSV has no such place, so it goes to the sidecar `FILE.json` beside it.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cascade.predict.ages import COLUMNS
from cascade.store import atomic_write_json, atomic_write_text

FORMATS = (".csv", ".jsonl")
BOX = ["box_x1", "box_y1", "box_x2", "box_y2"]
#: The CSV's columns; `top` there is `class:probability` pairs separated by spaces.
CSV_COLUMNS = ["file", "face", *BOX, "face_prob", *COLUMNS, "top", "reason"]


def check_out(out: Path) -> None:
    """Refuse, before any training, an output format this module does not write."""
    if out.suffix not in FORMATS:
        raise ValueError(f"--out {out}: expected a .csv or .jsonl file (JSON Lines carries its header as "
                         f"its first record; a CSV gets a .json sidecar)")


def _csv_row(row: dict) -> dict:
    flat = {k: v for k, v in row.items() if k not in ("box", "top")}
    flat.update(zip(BOX, row.get("box") or [None] * 4))
    flat["top"] = " ".join(f"{name}:{p:.4f}" for name, p in row.get("top", []))
    return flat


def frame(rows: list[dict]) -> pd.DataFrame:
    """The rows as the CSV holds them (CSV_COLUMNS), and as the Python API returns them."""
    out = pd.DataFrame([_csv_row(r) for r in rows], columns=CSV_COLUMNS)
    out["face"] = out["face"].astype("Int64")                # a face-less file's row: empty, not NaN
    return out


def write(rows: list[dict], header: dict, out: Path) -> list[Path]:
    """Write `rows` and `header` to `out` (atomically); returns the files written."""
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".jsonl":
        atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [{"header": header}, *rows]))
        return [out]
    atomic_write_text(out, frame(rows).to_csv(index=False))
    atomic_write_json(out.with_suffix(".json"), header)
    return [out, out.with_suffix(".json")]
