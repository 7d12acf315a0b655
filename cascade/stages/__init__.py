"""The stage graph: pretrained -> intermediate fine-tuning stages -> target protocol."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd


class FoldsFailed(RuntimeError):
    """Some folds of a protocol failed twice; the others finished and are kept for the next run."""


def log_to(path: Path):
    """A logger appending time-stamped lines to a stage's `log.txt` (kept across reruns: a
    resumed stage's history stays readable)."""
    def log(msg: str) -> None:
        with open(path, "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")
    return log


def read_folds(paths) -> pd.DataFrame:
    """Every fold's prediction file as one table in image-row order (subject and fold ids stay
    strings: `007` is not 7)."""
    return (pd.concat([pd.read_csv(p, dtype={"subject": str, "fold": str}) for p in paths])
            .sort_values("row").reset_index(drop=True))
