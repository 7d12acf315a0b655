"""Stand-ins for the benchmark listings (paplhjak et al.'s JSON databases) of a synthetic folder.

Why not part of ``write_suite``: the agedb loader prefers ``AgeDB.json`` when it is there, and the
demo suite's bytes are held to golden values, so a listing in the suite's ``agedb/`` would move
its manifest and every demo stage key.  A listing is written on request into a copy of a
synthetic AgeDB folder instead (never into the generated demo suite itself), giving the
``paplhjak`` protocol the published folders it reads.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from cascade.data.formats._common import scan_images
from cascade.data.formats.agedb import JSON_NAME, parse_agedb_names
from cascade.data.records import is_synthetic
from cascade.store import atomic_write_text

#: Folders a benchmark listing cuts a set into (its 5 splits use 6 / 2 / 2 of them).
N_FOLDERS = 10


def assign_folders(subjects: list[str], ages: list[int], seed: int) -> dict[str, int]:
    """Each subject's folder by the benchmark's rule (its facebase/to_json scripts): subjects in a
    seeded random order, each to the folder holding the fewest images so far at the subject's most
    frequent age, so folders stay subject-exclusive with like ages.  Ties go to the folder with
    fewest images (the benchmark's scripts take the lowest folder, which on a small set of spread
    ages, as the synthetic ones are, fills folder 0 first and leaves the last ones empty)."""
    by_subject: dict[str, list[int]] = {}
    for s, a in zip(subjects, ages):
        by_subject.setdefault(s, []).append(int(a))
    order = sorted(by_subject)
    held = [Counter() for _ in range(N_FOLDERS)]
    out = {}
    for i in np.random.default_rng(seed).permutation(len(order)):
        s = order[i]
        common = Counter(by_subject[s]).most_common(1)[0][0]
        out[s] = min(range(N_FOLDERS), key=lambda f: (held[f][common], held[f].total(), f))
        held[out[s]].update(by_subject[s])
    return out


def write_agedb_listing(folder: Path, seed: int = 0) -> Path:
    """Write ``AgeDB.json`` beside the synthetic AgeDB images in `folder`, with the fields of the
    published listing (img_path under ``AgeDB/AgeDB/``, name, age, gender M/F, number, database,
    folder); returns its path.  Refuses a folder that is not synthetic, and the demo suite's own
    folder (whose keys it would move): copy the images out first."""
    folder = Path(folder)
    if not is_synthetic(folder):
        raise ValueError(f"{folder}: not a synthetic AgeDB folder (no synthetic marker); the real listing "
                         f"is paplhjak/Facial-Age-Estimation-Benchmark-Databases' {JSON_NAME}")
    if (folder.parent / "GENERATED.json").exists():
        raise ValueError(f"{folder} is the generated demo suite: a listing there would move its manifest and "
                         f"every demo stage key; copy the folder and write the listing into the copy")
    names = scan_images(folder)
    parsed = parse_agedb_names(pd.Series(names, dtype=str))
    keep = parsed["name"].notna().to_numpy()
    rows = [(n, p) for n, p, k in zip(names, parsed.itertuples(), keep) if k]
    folders = assign_folders([p.name for _, p in rows], [int(p.age) for _, p in rows], seed)
    records = [{"img_path": f"AgeDB/AgeDB/{n}", "name": p.name, "age": int(p.age), "gender": p.gender.upper(),
                "number": n.split("_", 1)[0], "database": "AgeDB", "folder": folders[p.name]} for n, p in rows]
    path = folder / JSON_NAME
    atomic_write_text(path, json.dumps(records, indent=1))
    return path
