"""Reported literature numbers (thesis Tables 2-3, optionally the thesis's own results).

Why: a reproduction is only meaningful next to the numbers it reproduces, and those must be
visibly *reported* (copied from a paper) rather than *measured* (computed by this harness).
The values live in ``literature.yaml`` beside this module, transcribed verbatim with the table
each came from; this module only loads them into rows shaped like the run table's.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import pandas as pd
import yaml

PATH = Path(__file__).with_name("literature.yaml")


@lru_cache(maxsize=1)
def load() -> dict:
    """The parsed YAML (cached: the file ships with the package and never changes at run time)."""
    return yaml.safe_load(PATH.read_text(encoding="utf-8"))


def _metrics(raw: dict) -> dict:
    """Numbers as floats (None → NaN); a metric reported with a std ("Accuracy" + "Accuracy
    std") gets the run table's spread column ("Accuracy sd (folds)"), so the columns line up."""
    out = {}
    for k, v in raw.items():
        if k.endswith(" std"):
            out[k[: -len(" std")] + " sd (folds)"] = math.nan if v is None else float(v)
        else:
            out[k] = math.nan if v is None else float(v)
    return out


def rows(target: str, include_thesis: bool = False) -> pd.DataFrame:
    """Literature rows for ``target`` ("fgnet" or "adience"), one per method.

    Columns: ``configuration`` (= the method), ``mode`` ("–": not a harness mode), the metric columns named as
    in the run table (``MAE`` for FG-NET; ``Accuracy`` / ``1-off`` in percent for Adience; NaN
    where the source gives nothing; a reported std in "<metric> sd (folds)", as the run
    table keeps Adience's), ``reference``, ``source`` and ``status`` = "reported", so a
    report can ``pd.concat`` them under the run table's own rows (status "measured").
    ``include_thesis`` appends the thesis's own results (Table 4 / section 5), labelled
    "<method> (thesis)".
    """
    data = load()
    if target not in data or target == "thesis":
        known = sorted(k for k in data if k != "thesis")
        raise ValueError(f"no literature baselines for target {target!r}; known: {known}")
    entries = [dict(e) for e in data[target]["entries"]]
    if include_thesis:
        entries += [{**e, "method": f"{e['method']} (thesis)", "reference": "this thesis"}
                    for e in data["thesis"].get(target, [])]
    out = []
    for e in entries:
        out.append({"configuration": e["method"], "mode": "–", **_metrics(e["metrics"]),
                    "stage key": "–", "reference": e.get("reference", ""),
                    "source": e["source"], "status": "reported"})
    return pd.DataFrame(out)
