"""Writers of the synthetic demo suite, in the exact on-disk formats of the real datasets.

``write_suite(out)`` writes six datasets that the real parsers (``cascade.data.formats``) read
unchanged:

=============  ===========================================================================
``imdb/``      ``NN/nm<7>_rm<9>_<Y-M-D>_<year>.jpg`` (~96 px in-the-wild canvases with the face
               at a known box) and ``imdb.mat`` in the real struct layout, with the real kinds of
               noise (impossible ages, no / weak face, second face, NaN gender) and label noise
               among the rows that survive cleaning.
``agedb/``     ``<id>_<Name>_<age>_<g>.jpg``, 64 px, subjects spanning decades, a third of them
               from childhood on; photographs taken before 1985 are archive scans (as FG-NET's).
``fgnet/``     ``images/NNNAyy.JPG`` (a few ``.jpg``, a few ``a``/``b`` duplicates), 82 subjects at
               every scale, ages 0-69, mostly young, ~30 % grayscale ('L') old scans.
``adience/``   ``fold_{0..4}_data.txt`` (the real 12-column header) and
               ``faces/<user_id>/coarse_tilt_aligned_face.<face_id>.<original_image>``; folds are
               user-exclusive; the real label noise (duplicates, ``(25, 23)`` in fold 0, ``None``,
               bare ages, off-grid ranges, genders 'u' and '').
``utkface/``   ``<age>_<gender>_<race>_<datetime>.jpg.chip.jpg`` (+3 names without the race field).
``wiki/``      the WIKI part of IMDB-WIKI: ``wiki.mat`` (struct key ``wiki``) and its images, written
               like ``imdb/`` with its own persons.
=============  ===========================================================================

All subjects are drawn from one rendering model (``render.py``), so what a network learns on the
IMDB-like set transfers to the small FG-NET-like target.

Counts: every dataset's size is ``scaled(BASE_COUNTS[ds][key], scale, MIN_COUNTS[ds][key])`` with
``scaled(n, s, lo) = max(lo, floor(n * s + 0.5))``, except FG-NET's 82 subjects (fixed); see
:func:`suite_counts`.  Noise counts are fractions of those, rounded the same way, with at least
one of each kind (:data:`NOISE`).

Planted overlaps (version 4): the real IMDB, WIKI and AgeDB share celebrities and press photos, so
the suite plants a few documented ones for the cross-dataset audit (``cascade.data.overlap``) to
find: shared persons (:data:`PLANTED_IDENTITIES`, the same name, gender and face in two datasets)
and photo copies (:data:`PLANTED_DUPLICATES`, a row's face crop re-encoded at
:data:`PLANT_QUALITY` and resized into another row's crop region).  ``suite.json`` lists them
under ``details.planted``; :func:`planted` reads them back.

Determinism: every random choice comes from ``np.random.default_rng([seed, ds_id, kind, ...])``
(``kind`` 0 = the dataset's plan, 1 = a subject's identity, 2 = one image, 3 = a planted
overlap), JPEGs are written with a fixed quality and ``imdb.mat`` with a fixed header, so the same
``seed`` and ``scale`` give byte-identical files.  ``suite.json`` is written last: its presence
means the suite is complete.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from cascade.data.records import SYNTHETIC_MARKER
from cascade.data.synth.render import Identity, render_background, render_face, render_face_wh, render_scene
from cascade.progress import bar as progress_bar

__all__ = ["write_suite", "suite_counts", "scaled", "planted", "BASE_COUNTS", "MIN_COUNTS", "NOISE", "DATASETS",
           "JPEG_QUALITY", "PLANT_QUALITY", "PLANTED_IDENTITIES", "PLANTED_DUPLICATES", "SUITE_VERSION",
           "ADIENCE_HEADER", "ADIENCE_GROUPS"]

#: The generator's version, written into the suite's suite.json and README (what each value
#: changed: CHANGELOG.md).
SUITE_VERSION = 4
#: Share of AgeDB subjects photographed from childhood on (the rest from their teens or later).
AGEDB_CHILDHOOD = 0.35
JPEG_QUALITY = 90
#: Quality a planted photo copy is re-encoded at (another quality than the suite's own).
PLANT_QUALITY = 75
#: Planted shared persons: (datasets, count); the name is spelled as each dataset spells names.
PLANTED_IDENTITIES = ((("imdb", "agedb"), 2), (("wiki", "agedb"), 1), (("imdb", "wiki"), 1))
#: Planted photo copies: (source, destination, count), in the order they are chosen.
PLANTED_DUPLICATES = (("fgnet", "imdb", 2), ("fgnet", "agedb", 2), ("imdb", "agedb", 3), ("imdb", "wiki", 2),
                      ("imdb", "imdb", 2))
DATASETS = ("imdb", "agedb", "fgnet", "adience", "utkface", "wiki")
_DS_ID = {name: i + 1 for i, name in enumerate(DATASETS)}

#: Sizes at scale 1.  ``images`` = image files, ``rows`` = metadata rows (IMDB: rows of imdb.mat,
#: one image each; Adience: rows of the fold files, exact duplicate rows included).
BASE_COUNTS: dict[str, dict[str, int]] = {
    "imdb": {"rows": 6000, "subjects": 400},
    "agedb": {"images": 2400, "subjects": 120},
    "fgnet": {"images": 1002, "subjects": 82},        # subjects: fixed at every scale
    "adience": {"rows": 3000, "users": 250},
    "utkface": {"images": 2000},
    "wiki": {"rows": 2000, "subjects": 300},
}
#: Floors applied after scaling (FG-NET: at least 2 images for each of its 82 subjects).
MIN_COUNTS: dict[str, dict[str, int]] = {
    "imdb": {"rows": 60, "subjects": 8},
    "agedb": {"images": 24, "subjects": 4},
    "fgnet": {"images": 164, "subjects": 82},
    "adience": {"rows": 60, "users": 10},
    "utkface": {"images": 20},
    "wiki": {"rows": 60, "subjects": 8},
}
#: Planted noise, as fractions of the dataset's rows (or persons, for Adience labels); each kind
#: is rounded like the counts and is at least 1.
NOISE: dict[str, dict[str, float]] = {
    # IMDB: wrong ages (7 %: subjects born before 1900 photographed after 1995 -> age > 100, plus
    # rows taken before the birth year), no face (face_score -inf), weak face (< 1), a second face,
    # NaN gender; label noise (age off by 5-15 years) is a fraction of the rows left clean.
    "imdb": {"wrong_age": 0.07, "historical": 0.03, "no_face": 0.06, "low_score": 0.04,
             "second_face": 0.10, "nan_gender": 0.03, "label_noise": 0.03},
    # WIKI: the same kinds and rates as IMDB (the same crawler and the same face detector).
    "wiki": {"wrong_age": 0.07, "historical": 0.03, "no_face": 0.06, "low_score": 0.04,
             "second_face": 0.10, "nan_gender": 0.03, "label_noise": 0.03},
    # Adience, per person: `None`, bare single ages, off-grid ranges, the fold-0 `(25, 23)` typo;
    # exact duplicate rows are a fraction of rows.
    "adience": {"none": 0.039, "bare": 0.06, "(27, 32)": 0.004, "(38, 42)": 0.0026, "(38, 48)": 0.0003,
                "(8, 23)": 0.0001, "(25, 23)": 0.0037, "duplicates": 0.006},
    # FG-NET: a/b duplicate pairs and lowercase .jpg names (14 each of 1,002 in the real set),
    # grayscale scans.
    "fgnet": {"pairs": 14 / 1002, "lowercase": 14 / 1002, "gray": 0.30},
}
UTK_MALFORMED = 3

ADIENCE_HEADER = ["user_id", "original_image", "face_id", "age", "gender", "x", "y", "dx", "dy",
                  "tilt_ang", "fiducial_yaw_angle", "fiducial_score"]
ADIENCE_GROUPS = [(0, 2), (4, 6), (8, 12), (15, 20), (25, 32), (38, 43), (48, 53), (60, 100)]
# group frequencies of the real release (rows)
_ADIENCE_GROUP_W = np.array([2519, 2163, 2132, 1655, 4950, 2300, 830, 875], dtype=np.float64)
# bare ages of the real release with their frequencies
_ADIENCE_BARE = {35: 294, 13: 169, 22: 149, 34: 105, 23: 96, 45: 88, 55: 77, 36: 57, 57: 24, 3: 18,
                 29: 12, 58: 5, 32: 3, 2: 3, 56: 2, 46: 1, 42: 1}


def scaled(n: int, scale: float, minimum: int = 1) -> int:
    """``max(minimum, floor(n * scale + 0.5))``: the suite's one rounding rule."""
    return max(int(minimum), int(math.floor(n * float(scale) + 0.5)))


def suite_counts(scale: float = 1.0) -> dict[str, dict[str, int]]:
    """The sizes ``write_suite(scale=scale)`` plans, per dataset and key (see BASE_COUNTS)."""
    out = {}
    for ds, keys in BASE_COUNTS.items():
        out[ds] = {k: scaled(n, scale, MIN_COUNTS[ds][k]) for k, n in keys.items()}
    out["fgnet"]["subjects"] = BASE_COUNTS["fgnet"]["subjects"]
    return out


def _noise_n(frac: float, n: int) -> int:
    return scaled(n, frac, 1)


def _rng(seed: int, ds: str, kind: int, *idx: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _DS_ID[ds], int(kind), *[int(i) for i in idx]])


def _alloc(total: int, k: int, minimum: int, weights: np.ndarray, rng: np.random.Generator,
           cap: int | None = None) -> np.ndarray:
    """``k`` integers >= minimum (<= cap) summing to ``total``, the surplus spread ~ weights."""
    minimum = min(minimum, total // k)
    counts = np.full(k, minimum, dtype=np.int64)
    left = total - counts.sum()
    w = np.asarray(weights, dtype=np.float64)
    while left > 0:
        p = w * (counts < cap) if cap else w.copy()
        if p.sum() <= 0:
            p = np.ones(k)
        add = rng.multinomial(left, p / p.sum())
        if cap:
            add = np.minimum(add, cap - counts)
        counts += add
        left = total - counts.sum()
        if cap and left > 0 and (counts >= cap).all():
            cap = None
    return counts


def _save_jpeg(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=JPEG_QUALITY)


# --------------------------------------------------------------------------------------------
# names

_SYL = ["al", "an", "ar", "bel", "ber", "bo", "ca", "cor", "da", "del", "den", "do", "el", "fa", "fer",
        "ga", "gor", "ha", "hel", "il", "ja", "jo", "ka", "ker", "la", "lan", "lo", "ma", "mar", "mel",
        "mi", "mo", "na", "nel", "no", "ol", "pa", "per", "ra", "ren", "ri", "ro", "sa", "sel", "so",
        "ta", "ter", "to", "va", "ver", "vi", "wal", "wil", "za"]
_END = {"m": ["o", "an", "er", "us", "en", "ard", "el", "on", "ik"],
        "f": ["a", "ia", "ine", "elle", "ora", "ie", "ette", "ina", "ey"]}
_LAST_END = ["son", "man", "ley", "ton", "ez", "ski", "berg", "ford", "ini", "ard", "well", "by", "ov"]


def _fake_name(rng: np.random.Generator, gender: str, taken: set) -> tuple[str, str]:
    """(first, last), letters only, capitalised, unique within ``taken``."""
    while True:
        first = "".join(rng.choice(_SYL, int(rng.integers(1, 3)))) + rng.choice(_END[gender if gender in _END else "m"])
        last = "".join(rng.choice(_SYL, int(rng.integers(1, 3)))) + rng.choice(_LAST_END)
        first, last = first.capitalize(), last.capitalize()
        if (first, last) not in taken:
            taken.add((first, last))
            return first, last


def _unique_ints(rng: np.random.Generator, n: int, lo: int, hi: int) -> list[int]:
    seen, out = set(), []
    while len(out) < n:
        for v in rng.integers(lo, hi, n - len(out) + 8).tolist():
            if v not in seen and len(out) < n:
                seen.add(v)
                out.append(v)
    return out


# --------------------------------------------------------------------------------------------
# IMDB


def _datenum(d: _dt.date) -> float:
    return float(d.toordinal() + 366)


def _write_imdb(root: Path, n_rows: int, n_sub: int, seed: int, progress, part: str = "imdb",
                plant: dict | None = None) -> dict:
    """One part of IMDB-WIKI (`part` = imdb | wiki: `<part>.mat` with struct key `<part>`, the
    same fields and kinds of noise, its own persons).

    `plant` (the suite's planting state, see :func:`_plant_duplicates`): the names already taken
    by earlier datasets are avoided; IMDB then chooses the persons it shares (``imdb_share``),
    WIKI takes over the persons listed in ``wiki_take``; the rows are recorded for the post-pass."""
    from scipy.io import savemat

    plant = {} if plant is None else plant
    rng = _rng(seed, part, 0)
    n_sub = min(n_sub, n_rows)
    rows_per = _alloc(n_rows, n_sub, 1, rng.pareto(1.6, n_sub) + 0.4, rng)
    names, nm_ids = set(plant.get("taken", ())), _unique_ints(rng, n_sub, 1, 10**7)
    rm_ids = _unique_ints(rng, n_rows, 10**8, 10**9)
    subjects = []
    for j in range(n_sub):
        gender = "m" if rng.random() < 0.55 else "f"
        first, last = _fake_name(rng, gender, names)
        career = float(rng.uniform(8, 16) if rng.random() < 0.05 else np.clip(rng.normal(37, 11), 19, 68))
        lo_year = max(1900, int(1962 - career))
        hi_year = max(lo_year + 1, int(2012 - career))
        year = int(rng.integers(lo_year, hi_year))
        month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
        if (month, day) == (7, 1):
            day = 2
        subjects.append(dict(gender=gender, name=f"{first} {last}", first=first, last=last, nm=nm_ids[j],
                             career=career, dob=_dt.date(year, month, day), historical=False))

    # --- noise plan (exclusive kinds per row; label noise among the rows left clean)
    subj_of = np.repeat(np.arange(n_sub), rows_per)
    kinds = np.array(["clean"] * n_rows, dtype=object)
    n_wrong = _noise_n(NOISE[part]["wrong_age"], n_rows)
    target_hist = _noise_n(NOISE[part]["historical"], n_rows)
    hist_rows = 0
    for j in rng.permutation(n_sub):
        if hist_rows + rows_per[j] <= target_hist and rows_per[j] < n_rows // 4:
            subjects[j]["historical"] = True
            hist_rows += int(rows_per[j])
    if hist_rows == 0:
        j = int(np.argmin(rows_per))
        subjects[j]["historical"] = True
        hist_rows = int(rows_per[j])
    hist_mask = np.array([subjects[j]["historical"] for j in subj_of])
    for s in subjects:
        if s["historical"]:
            s["dob"] = _dt.date(int(rng.integers(1850, 1895)), int(rng.integers(1, 13)), int(rng.integers(2, 29)))
    kinds[hist_mask] = "wrong_age"
    free = list(rng.permutation(np.flatnonzero(~hist_mask)))
    plan = [("wrong_age", max(1, n_wrong - hist_rows)), ("no_face", _noise_n(NOISE[part]["no_face"], n_rows)),
            ("low_score", _noise_n(NOISE[part]["low_score"], n_rows)),
            ("second_face", _noise_n(NOISE[part]["second_face"], n_rows)),
            ("nan_gender", _noise_n(NOISE[part]["nan_gender"], n_rows))]
    for kind, k in plan:
        for _ in range(min(k, len(free))):
            kinds[free.pop()] = kind
    clean = np.flatnonzero(kinds == "clean")
    n_label = _noise_n(NOISE[part]["label_noise"], len(clean))
    label_noise = set(rng.choice(clean, min(n_label, len(clean)), replace=False).tolist())

    # --- planted shared identities (kind 3): persons whose rows survive cleaning
    good = np.array([kinds[i] == "clean" and i not in label_noise for i in range(n_rows)])
    face = {j: (part, j) for j in range(n_sub)}     # subject -> (dataset, subject) its face is drawn as
    if part == "imdb":
        chosen = _share_subjects(_rng(seed, part, 3, 0), subjects, subj_of, good, 3)
        plant["imdb_share"] = [dict(first=subjects[j]["first"], last=subjects[j]["last"],
                                    gender=subjects[j]["gender"], face=(part, j)) for j in chosen]
    else:
        chosen = _share_subjects(_rng(seed, part, 3, 0), subjects, subj_of, good, len(plant.get("wiki_take", ())))
        for j, person in zip(chosen, plant.get("wiki_take", ())):
            subjects[j].update(first=person["first"], last=person["last"], gender=person["gender"],
                               name=f"{person['first']} {person['last']}")
            face[j] = person["face"]
    shared = set(chosen)
    plant.setdefault("taken", set()).update((s["first"], s["last"]) for s in subjects)

    # --- rows
    f = {k: [] for k in ["dob", "photo_taken", "full_path", "gender", "name", "face_location",
                         "face_score", "second_face_score", "celeb_id"]}
    celeb_names = sorted(s["name"] for s in subjects)
    celeb_index = {nm: i + 1 for i, nm in enumerate(celeb_names)}
    identities = [Identity.random(_rng(seed, face[j][0], 1, face[j][1]), gender=s["gender"])
                  for j, s in enumerate(subjects)]
    wild = {"preset": "wild"}
    plant[f"{part}_rows"] = rows_out = []
    counts = {k: 0 for k in ["wrong_age", "no_face", "low_score", "second_face", "nan_gender", "label_noise"]}
    for i in range(n_rows):
        j = int(subj_of[i])
        s, kind = subjects[j], kinds[i]
        r = _rng(seed, part, 2, i)
        dob = s["dob"]
        adj = 1 if (dob.month, dob.day) > (7, 1) else 0
        true_age = float(np.clip(r.normal(s["career"], 7.0), 4, 92))
        if kind == "wrong_age" and s["historical"]:
            taken = int(r.integers(1995, 2016))
            true_age = float(r.uniform(25, 80))
        elif kind == "wrong_age":
            taken = dob.year - int(r.integers(1, 16))
        else:
            lo = max(1, 1961 - dob.year)
            hi = max(lo, 2015 - dob.year - adj)
            label = int(np.clip(round(true_age), lo, hi))
            true_age = label + float(r.uniform(0.0, 0.999))
            if i in label_noise:
                delta = int(r.integers(5, 16))
                up_ok = label + delta <= min(hi, 99)
                label = label + delta if (label - delta < 1 or (up_ok and r.random() < 0.5)) else label - delta
                counts["label_noise"] += 1
            taken = dob.year + label + adj
        if kind != "clean":
            counts[kind] += 1
        W, H = int(r.integers(90, 103)), int(r.integers(90, 103))
        fsize = float(r.uniform(56, 64))
        center = (W / 2 + float(r.uniform(-5, 5)), H / 2 + float(r.uniform(-3, 6)))
        score, second = float(np.clip(r.normal(3.7, 1.0), 1.2, 7.0)), float("nan")
        if kind == "no_face":
            img = render_background(r, (W, H), {"preset": "wild", "clutter": 9})
            score, box = float("-inf"), (1.0, 1.0, 1.0, 1.0)
        else:
            others = ()
            style = wild
            if kind == "second_face":
                o_idt = Identity.random(r)
                o_size = float(r.uniform(26, 40))
                o_cx = float(r.choice([-0.05, 1.05])) * W + float(r.uniform(-4, 4))
                others = ((o_idt, float(r.uniform(5, 80)), o_size, (o_cx, float(r.uniform(0.3, 0.7)) * H)),)
                second = float(np.round(r.uniform(0.8, 4.5), 6))
            if kind == "low_score":
                style = {"preset": "wild", "rotate": 24.0, "blur": (1.2, 2.2), "light": 0.6, "yaw": 1.5}
                score = float(r.uniform(0.02, 0.98))
            img, box = render_scene(identities[j], true_age, r, (W, H), fsize, center, style, others)
        gname = "" if kind == "nan_gender" else s["gender"]
        rel = f"{s['nm'] % 100:02d}/nm{s['nm']:07d}_rm{rm_ids[i]:09d}_{dob.year}-{dob.month}-{dob.day}_{taken}.jpg"
        _save_jpeg(img, root / rel)
        f["dob"].append(_datenum(dob))
        f["photo_taken"].append(taken)
        f["full_path"].append(rel)
        f["gender"].append({"m": 1.0, "f": 0.0, "": float("nan")}[gname])
        f["name"].append(s["name"])
        f["face_location"].append(np.round(np.array([box], dtype=np.float64), 3))
        f["face_score"].append(score)
        f["second_face_score"].append(second)
        f["celeb_id"].append(celeb_index[s["name"]])
        rows_out.append(dict(rel=rel, subject=j, good=bool(good[i]) and kind != "no_face", shared=j in shared,
                             box=tuple(float(v) for v in f["face_location"][-1][0]), size=(W, H)))
        progress(1)

    def cell(items) -> np.ndarray:
        arr = np.empty(len(items), dtype=object)
        for k, v in enumerate(items):
            arr[k] = v
        return arr

    struct = {
        "dob": np.array(f["dob"], dtype=np.float64),
        "photo_taken": np.array(f["photo_taken"], dtype=np.int32),
        "full_path": cell(f["full_path"]),
        "gender": np.array(f["gender"], dtype=np.float64),
        "name": cell(f["name"]),
        "face_location": cell(f["face_location"]),
        "face_score": np.array(f["face_score"], dtype=np.float64),
        "second_face_score": np.array(f["second_face_score"], dtype=np.float64),
        "celeb_names": cell(celeb_names),
        "celeb_id": np.array(f["celeb_id"], dtype=np.int32),
    }
    mat = root / f"{part}.mat"
    savemat(mat, {part: struct}, format="5", oned_as="row")
    _fix_mat_header(mat, seed)
    return {"rows": n_rows, "images": n_rows, "subjects": n_sub,
            "noise": {**counts, "historical_rows": hist_rows, "clean": int(len(clean))}}


def _share_subjects(rng: np.random.Generator, subjects: list[dict], subj_of: np.ndarray, good: np.ndarray,
                    k: int) -> list[int]:
    """`k` subjects to plant as shared persons: not historical, with several rows that survive
    cleaning (>= 3 first, then >= 1); the smallest such subjects first (random order among
    equals), so the big ones stay free for the planted photo copies."""
    n_good = np.bincount(subj_of[good], minlength=len(subjects))
    rows = np.bincount(subj_of, minlength=len(subjects))
    rank = rng.permutation(len(subjects))
    cands = [j for j in np.lexsort((rank, rows)) if not subjects[j]["historical"] and n_good[j] >= 1]
    cands = sorted(cands, key=lambda j: n_good[j] < 3)          # stable: those with >= 3 first
    if len(cands) < k:
        raise RuntimeError(f"synthetic suite: {len(cands)} persons to plant as shared, {k} needed")
    return [int(j) for j in cands[:k]]


def _fix_mat_header(path: Path, seed: int) -> None:
    """savemat stamps the creation time into the 116-byte text header; make it constant."""
    text = f"MATLAB 5.0 MAT-file, Platform: posix, Created by: cascade synthetic suite (seed {seed})"
    with open(path, "r+b") as fh:
        fh.seek(0)
        fh.write(text.encode("ascii")[:116].ljust(116, b" "))


# --------------------------------------------------------------------------------------------
# AgeDB


def _write_agedb(root: Path, n_img: int, n_sub: int, seed: int, progress, plant: dict | None = None) -> dict:
    """AgeDB; with `plant`, the IMDB persons in ``imdb_share[:2]`` take over two of its subjects
    (name, gender and face) and one more subject is chosen to be shared with WIKI (``wiki_take``)."""
    plant = {} if plant is None else plant
    rng = _rng(seed, "agedb", 0)
    n_sub = min(n_sub, n_img // 2)
    per = _alloc(n_img, n_sub, 2, rng.lognormal(0, 0.5, n_sub), rng)
    names: set = set(plant.get("taken", ()))
    items = []                       # (subject, age)
    subs = []
    for j in range(n_sub):
        gender = "m" if rng.random() < 0.58 else "f"
        first, last = _fake_name(rng, gender, names)
        if rng.random() < AGEDB_CHILDHOOD:     # a life in photographs from childhood on, young years first
            lo, hi = int(rng.integers(1, 6)), int(rng.integers(25, 61))
            span = np.arange(lo, hi + 1)
            w = np.exp(-(span - lo) / 14.0) + 0.1
            ages = rng.choice(span, int(per[j]), p=w / w.sum())
        else:
            lo = int(np.clip(rng.normal(27, 10), 12, 80))
            hi = int(min(101, lo + rng.uniform(15, 65)))
            ages = rng.integers(lo, hi + 1, int(per[j]))
        subs.append(dict(gender=gender, name=first + last, first=first, last=last, lo=lo, hi=hi,
                         born=int(rng.integers(1925, 1996))))
        items += [(j, int(a)) for a in rng.permutation(ages)]
    # planted shared identities (kind 3): never the subject with the most images, which stays free
    # for the planted photo copies
    face = {j: ("agedb", j) for j in range(n_sub)}
    shared: list[int] = []
    if "imdb_share" in plant:
        order = [int(j) for j in _rng(seed, "agedb", 3, 0).permutation(n_sub) if j != int(np.argmax(per))]
        shared = order[:3]
        if len(shared) < 3:
            raise RuntimeError(f"synthetic suite: AgeDB has {n_sub} subjects, 4 needed to plant shared persons")
        for j, person in zip(shared, plant["imdb_share"][:2]):
            subs[j].update(first=person["first"], last=person["last"], gender=person["gender"],
                           name=person["first"] + person["last"])
            face[j] = person["face"]
        x = subs[shared[2]]
        plant["wiki_take"] = [plant["imdb_share"][2],
                              dict(first=x["first"], last=x["last"], gender=x["gender"], face=("agedb", shared[2]))]
    plant.setdefault("taken", set()).update((x["first"], x["last"]) for x in subs)
    identities = [Identity.random(_rng(seed, face[j][0], 1, face[j][1]), gender=s["gender"]) for j, s in enumerate(subs)]
    plant["agedb_rows"] = rows_out = []
    ages_all = []
    for i, (j, age) in enumerate(items):
        r = _rng(seed, "agedb", 2, i)
        # archive photographs: pictures taken before 1985 are scans (some faded gray), as in AgeDB's
        # historical images and in FG-NET's; later ones studio portraits
        style = ({"preset": "scan", "sepia": 0.0} if r.random() < 0.5 else
                 {"preset": "scan", "gray": 0.0, "grain": 5.0, "fade": 0.25, "dust": 2}) \
            if subs[j]["born"] + age < 1985 else {"preset": "studio", "rotate": 3.0, "yaw": 0.15}
        img = render_face(identities[j], age + float(r.uniform(0, 0.999)), r, 64, style)
        s = subs[j]
        rel = f"{i + 1}_{s['name']}_{age}_{s['gender']}.jpg"
        _save_jpeg(img, root / rel)
        rows_out.append(dict(rel=rel, subject=j, good=True, shared=j in shared, box=None, size=(64, 64)))
        ages_all.append(age)
        progress(1)
    return {"images": len(items), "subjects": n_sub, "age_min": int(min(ages_all)), "age_max": int(max(ages_all))}


# --------------------------------------------------------------------------------------------
# FG-NET


def _fgnet_base_counts(seed: int) -> np.ndarray:
    """Images per subject at scale 1: 6-18 each, 1,002 in all."""
    rng = _rng(seed, "fgnet", 0, 1)
    return _alloc(BASE_COUNTS["fgnet"]["images"], 82, 6, rng.lognormal(0, 0.4, 82), rng, cap=18)


def _write_fgnet(root: Path, n_img: int, seed: int, progress, plant: dict | None = None) -> dict:
    rng = _rng(seed, "fgnet", 0)
    base = _fgnet_base_counts(seed)
    n_sub = 82
    # largest remainder on the scale-1 counts above the floor of 2
    extra = (base - 2) * (n_img - 2 * n_sub) / max(1, (base - 2).sum())
    per = 2 + np.floor(extra).astype(np.int64)
    rem = n_img - per.sum()
    order = np.lexsort((np.arange(n_sub), -(extra - np.floor(extra))))
    per[order[:rem]] += 1
    n_pairs = min(_noise_n(NOISE["fgnet"]["pairs"], n_img), n_sub)
    pair_subj = set(rng.choice(n_sub, n_pairs, replace=False).tolist())
    plan = []                                  # (subject, age, suffix)
    birth = {}
    for j in range(n_sub):
        u = rng.random()
        max_age = int(rng.integers(18, 31) if u < 0.55 else (rng.integers(31, 51) if u < 0.87 else rng.integers(51, 70)))
        birth[j] = 2001 - max_age - int(rng.integers(0, 4))
        n_distinct = int(per[j]) - (1 if j in pair_subj else 0)
        a = np.arange(max_age + 1)
        w = np.exp(-a / 12.0) + 0.16
        ages = np.sort(rng.choice(a, n_distinct, replace=False, p=w / w.sum()))
        dup = int(rng.choice(ages)) if j in pair_subj else None
        for age in ages:
            if age == dup:
                plan += [(j, int(age), "a"), (j, int(age), "b")]
            else:
                plan.append((j, int(age), ""))
    n = len(plan)
    years = np.array([birth[j] + age for j, age, _ in plan], dtype=np.float64)
    w_gray = np.exp(-(years - years.min()) / 12.0)
    gray = set(rng.choice(n, _noise_n(NOISE["fgnet"]["gray"], n), replace=False, p=w_gray / w_gray.sum()).tolist())
    plain = [k for k, (_, _, suf) in enumerate(plan) if not suf]
    lower = set(rng.choice(plain, min(len(plain), _noise_n(NOISE["fgnet"]["lowercase"], n)), replace=False).tolist())
    identities = [Identity.random(_rng(seed, "fgnet", 1, j)) for j in range(n_sub)]
    names, n_gray = [], 0
    rows_out = [] if plant is None else plant.setdefault("fgnet_rows", [])
    for k, (j, age, suf) in enumerate(plan):
        r = _rng(seed, "fgnet", 2, k)
        w = int(r.integers(56, 73))
        h = w if r.random() < 0.2 else int(r.integers(w, 81))
        if k in gray:
            style = {"preset": "scan", "sepia": 0.0}
        elif years[k] < 1988:
            style = {"preset": "scan", "gray": 0.0, "grain": 5.0, "fade": 0.25, "dust": 2}
        else:
            style = {"preset": "studio", "gray": 0.0, "rotate": 3.0, "yaw": 0.15}
        img = render_face_wh(identities[j], age + float(r.uniform(0, 0.999)), r, (w, h), style)
        if k in gray:
            img = img.convert("L")
            n_gray += 1
        name = f"{j + 1:03d}A{age:02d}{suf}." + ("jpg" if k in lower else "JPG")
        _save_jpeg(img, root / "images" / name)
        rows_out.append(dict(rel=f"images/{name}", subject=j, good=not suf, shared=False, box=None, size=(w, h)))
        names.append(name)
        progress(1)
    ages = [a for _, a, _ in plan]
    return {"images": n, "subjects": n_sub, "pairs": len(pair_subj), "lowercase": len(lower), "gray": n_gray,
            "under_20": int(sum(a < 20 for a in ages)), "age_min": int(min(ages)), "age_max": int(max(ages))}


# --------------------------------------------------------------------------------------------
# Adience


def _group_age(rng: np.random.Generator, lo: int, hi: int) -> float:
    if (lo, hi) == (60, 100):
        return float(min(99.0, 60 + rng.exponential(9.0)))
    return float(rng.uniform(lo, hi + 0.999))


def _write_adience(root: Path, n_rows: int, n_users: int, seed: int, progress) -> dict:
    rng = _rng(seed, "adience", 0)
    n_dup = _noise_n(NOISE["adience"]["duplicates"], n_rows)
    n_base = n_rows - n_dup
    n_users = min(n_users, n_base // 2)
    per_user = _alloc(n_base, n_users, 2, rng.lognormal(0, 0.6, n_users), rng)
    # folds: users (largest first) to the fold with the fewest rows
    fold_rows, fold_of = [0] * 5, {}
    for u in sorted(range(n_users), key=lambda u: (-per_user[u], u)):
        k = min(range(5), key=lambda f: (fold_rows[f], f))
        fold_of[u] = k
        fold_rows[k] += int(per_user[u])
    user_ids = [f"{v}@N0{int(rng.integers(0, 9))}" for v in _unique_ints(rng, n_users, 10**7, 2 * 10**8)]
    # persons
    persons = []                                   # dict(user, identity_idx, label, lo, hi, age, gender)
    gw = _ADIENCE_GROUP_W / _ADIENCE_GROUP_W.sum()
    for u in range(n_users):
        k = int(min(per_user[u], 1 + min(3, rng.poisson(0.9))))
        for _ in range(k):
            g = int(rng.choice(8, p=gw))
            persons.append(dict(user=u, group=ADIENCE_GROUPS[g]))
    P = len(persons)
    labels = [None] * P
    order = list(rng.permutation(P))
    fold0 = [p for p in order if fold_of[persons[p]["user"]] == 0]
    take = lambda pool, n: [pool.pop() for _ in range(min(n, len(pool)))]   # noqa: E731
    noise_count = {}
    for p in take(fold0, _noise_n(NOISE["adience"]["(25, 23)"], P)):
        labels[p] = ("(25, 23)", 25, 32)
        order.remove(p)
    noise_count["(25, 23)"] = sum(1 for x in labels if x)
    for name in ["(27, 32)", "(38, 42)", "(38, 48)", "(8, 23)"]:
        lo, hi = (int(v) for v in name.strip("()").split(","))
        got = take(order, _noise_n(NOISE["adience"][name], P))
        for p in got:
            labels[p] = (name, lo, hi)
        noise_count[name] = len(got)
    bare_ages = np.array(list(_ADIENCE_BARE))
    bare_w = np.array(list(_ADIENCE_BARE.values()), dtype=np.float64)
    got = take(order, _noise_n(NOISE["adience"]["bare"], P))
    for p in got:
        a = int(rng.choice(bare_ages, p=bare_w / bare_w.sum()))
        labels[p] = (str(a), a, a)
    noise_count["bare"] = len(got)
    got = take(order, _noise_n(NOISE["adience"]["none"], P))
    for p in got:
        labels[p] = ("None", *persons[p]["group"])
    noise_count["None"] = len(got)
    for p, person in enumerate(persons):
        lo, hi = person["group"]
        if labels[p] is None:
            labels[p] = (f"({lo}, {hi})", lo, hi)
        text, lo, hi = labels[p]
        person["label"], person["lo"], person["hi"] = text, lo, hi
        person["age"] = float(lo) + 0.5 if lo == hi else _group_age(rng, lo, hi)
        person["identity"] = Identity.random(_rng(seed, "adience", 1, p))
        g = person["identity"].gender
        if text == "None":
            g = "" if rng.random() < 0.7 else g
        elif hi <= 2 and rng.random() < 0.4 or hi == 6 and rng.random() < 0.15:
            g = "u"
        elif rng.random() < 0.01:
            g = ""
        person["gender"] = g
    by_user: dict[int, list[int]] = {}
    for p, person in enumerate(persons):
        by_user.setdefault(person["user"], []).append(p)
    # rows
    photo_ids = iter(_unique_ints(rng, n_base, 10**9, 2 * 10**10))
    face_id = {}
    for p in range(P):                              # running face ids in file order
        face_id[p] = len(face_id) + 1
    rows = []                                       # (fold, fields, person)
    for u in range(n_users):
        left, mine = int(per_user[u]), by_user[u]
        while left > 0:
            size = min(left, len(mine), 1 + int(rng.random() < 0.3) + int(rng.random() < 0.1))
            who = rng.choice(mine, size, replace=False)
            hexs = "".join("0123456789abcdef"[v] for v in rng.integers(0, 16, 10))
            orig = f"{next(photo_ids)}_{hexs}_o.jpg"
            for p in who:
                p = int(p)
                dx = int(rng.integers(150, 900))
                fields = [user_ids[u], orig, str(face_id[p]), persons[p]["label"], persons[p]["gender"],
                          str(int(rng.integers(0, 2600))), str(int(rng.integers(0, 1900))), str(dx),
                          str(dx + int(rng.integers(0, 2))), str(int(np.clip(round(rng.normal(0, 45) / 5) * 5, -180, 180))),
                          str(int(rng.choice([-60, -45, -30, -15, 0, 0, 0, 15, 30, 45, 60]))),
                          str(int(rng.integers(0, 200)))]
                rows.append((fold_of[u], fields, p))
            left -= size
    dup_idx = set(rng.choice(len(rows), min(n_dup, len(rows)), replace=False).tolist())
    # images
    n_img = 0
    for i, (fold, fields, p) in enumerate(rows):
        r = _rng(seed, "adience", 2, i)
        person = persons[p]
        lo, hi = person["lo"], person["hi"]
        age = person["age"] + float(r.uniform(-0.7, 0.7))
        age = float(np.clip(age, lo, hi + 0.999)) if person["label"] != "None" else max(0.0, age)
        img = render_face(person["identity"], age, r, 64, {"preset": "wild", "tilt_corners": 0.5})
        _save_jpeg(img, root / "faces" / fields[0] / f"coarse_tilt_aligned_face.{fields[2]}.{fields[1]}")
        # the in-plane aligned release (aligned/landmark_aligned_face.*): the same photograph,
        # its roll and shift undone (the same draws, with rotation and shift set to zero)
        again = _rng(seed, "adience", 2, i)
        again.uniform(-0.7, 0.7)
        upright = render_face(person["identity"], age, again, 64,
                              {"preset": "wild", "tilt_corners": 0.5, "rotate": 0.0, "shift": 0.0})
        _save_jpeg(upright, root / "aligned" / fields[0] / f"landmark_aligned_face.{fields[2]}.{fields[1]}")
        n_img += 1
        progress(1 + (i in dup_idx))
    per_fold = [[] for _ in range(5)]
    for i, (fold, fields, p) in enumerate(rows):
        per_fold[fold].append(fields)
        if i in dup_idx:
            per_fold[fold].append(list(fields))
    for k in range(5):
        text = "\t".join(ADIENCE_HEADER) + "\n" + "".join("\t".join(f) + "\n" for f in per_fold[k])
        (root / f"fold_{k}_data.txt").write_text(text, encoding="utf-8", newline="\n")
    return {"rows": n_rows, "images": n_img, "users": n_users, "persons": P, "duplicates": len(dup_idx),
            "fold_rows": [len(x) for x in per_fold], "noise_persons": noise_count}


# --------------------------------------------------------------------------------------------
# UTKFace

# relative frequency per year of age, shaped like the real set (many babies, a 20-35 bulk, long tail)
_UTK_AGE_W = [((1, 1), 45.0), ((2, 4), 12.0), ((5, 14), 3.5), ((15, 19), 6.0), ((20, 29), 22.0),
              ((30, 39), 15.0), ((40, 49), 8.0), ((50, 59), 8.0), ((60, 69), 5.0), ((70, 79), 3.0),
              ((80, 89), 2.0), ((90, 99), 0.5), ((100, 116), 0.06)]


def _write_utkface(root: Path, n_img: int, seed: int, progress) -> dict:
    rng = _rng(seed, "utkface", 0)
    ages = np.arange(1, 117)
    w = np.zeros(ages.size)
    for (lo, hi), v in _UTK_AGE_W:
        w[lo - 1:hi] = v
    start = _dt.datetime(2017, 1, 4)
    n_bad = min(UTK_MALFORMED, n_img)
    bad = set(rng.choice(n_img, n_bad, replace=False).tolist())
    names, plan = set(), []
    for i in range(n_img):
        while True:
            age = int(rng.choice(ages, p=w / w.sum()))
            gender = int(rng.random() < 0.48)
            race = int(rng.choice(5, p=[0.45, 0.19, 0.14, 0.17, 0.05]))
            t = start + _dt.timedelta(seconds=float(rng.integers(0, 16 * 86400)))
            stamp = t.strftime("%Y%m%d%H%M%S") + f"{int(rng.integers(0, 1000)):03d}"
            name = (f"{age}_{gender}_{stamp}.jpg.chip.jpg" if i in bad
                    else f"{age}_{gender}_{race}_{stamp}.jpg.chip.jpg")
            if name not in names:
                names.add(name)
                plan.append((name, age, gender, race))
                break
    for i, (name, age, gender, race) in enumerate(plan):
        r = _rng(seed, "utkface", 2, i)
        idt = Identity.random(_rng(seed, "utkface", 1, i), gender="m" if gender == 0 else "f", race=race)
        style = {"preset": "studio" if r.random() < 0.5 else "default"}
        img = render_face(idt, age + float(r.uniform(0, 0.999)), r, 64, style)
        _save_jpeg(img, root / name)
        progress(1)
    return {"images": n_img, "malformed": n_bad}


# --------------------------------------------------------------------------------------------
# planted overlaps


def _crop_region(row: dict) -> tuple[tuple[int, int, int, int], tuple[float, float, float, float]]:
    """A row's face-crop region as the image cache takes it (``square_box``: the face box grown
    by the default margin, else the centred square) and the part of it inside the canvas, in
    fractions of the region (x_lo, y_lo, x_hi, y_hi)."""
    from cascade.data.cache import square_box

    W, H = row["size"]
    box = square_box(row["box"], W, H, 0.4) if row["box"] is not None else square_box(None, W, H, 0)
    x0, y0, x1, y1 = box
    sw, sh = x1 - x0, y1 - y0
    return box, (max(0, -x0) / sw, max(0, -y0) / sh, 1 - max(0, x1 - W) / sw, 1 - max(0, y1 - H) / sh)


def _uncovered(src: tuple, dst: np.ndarray) -> np.ndarray:
    """Share of a region whose source part lies in its canvas while the destination's does not
    (there the copy's crop shows black where the source's shows the photo)."""
    area = (src[2] - src[0]) * (src[3] - src[1])
    w = np.clip(np.minimum(src[2], dst[:, 2]) - np.maximum(src[0], dst[:, 0]), 0, None)
    h = np.clip(np.minimum(src[3], dst[:, 3]) - np.maximum(src[1], dst[:, 1]), 0, None)
    return area - w * h


def _copy_photo(out: Path, src_ds: str, src: dict, dst_ds: str, dst: dict) -> None:
    """Paste `src`'s crop region, resized, over `dst`'s and save `dst` again at PLANT_QUALITY."""
    sbox, _ = _crop_region(src)
    dbox, _ = _crop_region(dst)
    with Image.open(out / src_ds / src["rel"]) as im:
        piece = im.convert("RGB").crop(sbox)                      # outside the canvas: black
    piece = piece.resize((dbox[2] - dbox[0], dbox[3] - dbox[1]), Image.BICUBIC)
    with Image.open(out / dst_ds / dst["rel"]) as im:
        canvas = im.convert("RGB")
    canvas.paste(piece, (dbox[0], dbox[1]))
    canvas.save(out / dst_ds / dst["rel"], "JPEG", quality=PLANT_QUALITY)


def _free_rows(plant: dict, ds: str, order: np.ndarray, used: set, limit: int = 400) -> list[dict]:
    """The first `limit` rows of `ds` in `order` that may take part in a planted copy."""
    rows = plant[f"{ds}_rows"]
    return [rows[i] for i in order
            if rows[i]["good"] and not rows[i]["shared"] and (ds, rows[i]["rel"]) not in used][:limit]


def _plant_duplicates(out: Path, seed: int, plant: dict) -> list[dict]:
    """The planted photo copies (PLANTED_DUPLICATES), after every dataset is written.

    Both rows of a copy survive cleaning (IMDB/WIKI: clean rows without label noise; FG-NET: not
    an a/b pair), belong to no planted shared person and serve no other copy; the two rows of an
    IMDB->IMDB copy are different persons.  IMDB/WIKI crop regions overrun their canvas, so a
    pair is chosen whose destination keeps (nearly) all of the source's in-canvas part: among the
    first candidates of a kind-3 random order, the pair with the least uncovered share."""
    used: set[tuple[str, str]] = set()
    found = []
    for t, (a, b, n) in enumerate(PLANTED_DUPLICATES):
        src_order = _rng(seed, a, 3, 10 + t).permutation(len(plant[f"{a}_rows"]))
        dst_order = _rng(seed, b, 3, 20 + t).permutation(len(plant[f"{b}_rows"]))
        for _ in range(n):
            srcs, dsts = _free_rows(plant, a, src_order, used), _free_rows(plant, b, dst_order, used)
            inside = np.array([_crop_region(r)[1] for r in dsts])
            best = None
            for src in srcs[:100]:
                cost = _uncovered(_crop_region(src)[1], inside)
                if a == b:
                    cost = np.where([d["subject"] == src["subject"] for d in dsts], np.inf, cost)
                k = int(np.argmin(cost))
                if best is None or cost[k] < best[0] - 1e-12:
                    best = (float(cost[k]), src, dsts[k])
            if best is None or not np.isfinite(best[0]):
                raise RuntimeError(f"synthetic suite: no rows left to plant a {a}->{b} photo copy")
            _, src, dst = best
            _copy_photo(out, a, src, b, dst)
            used |= {(a, src["rel"]), (b, dst["rel"])}
            found.append({"a": f"{a}/{src['rel']}", "b": f"{b}/{dst['rel']}", "kind": f"{a}->{b}"})
    return found


def _planted_identities(plant: dict) -> list[dict]:
    take = plant.get("wiki_take", [])
    out = [{"name": f"{p['first']} {p['last']}", "datasets": ["imdb", "agedb"]} for p in plant["imdb_share"][:2]]
    out += [{"name": f"{p['first']} {p['last']}", "datasets": ["wiki", "agedb"]} for p in take[1:2]]
    out += [{"name": f"{p['first']} {p['last']}", "datasets": ["imdb", "wiki"]} for p in take[:1]]
    return out


def planted(suite_root: Path) -> dict:
    """What the suite at `suite_root` planted across datasets (``suite.json``'s
    ``details.planted``): ``{"identities": [{"name", "datasets"}], "duplicates": [{"a", "b",
    "kind"}]}``, paths relative to the suite root.  Suites older than version 4 planted nothing
    (empty lists)."""
    meta = json.loads((Path(suite_root) / "suite.json").read_text())
    return meta.get("details", {}).get("planted", {"identities": [], "duplicates": []})


# --------------------------------------------------------------------------------------------


def _marker_text(ds: str | None, seed: int, scale: float) -> str:
    where = f"the {ds!r} dataset folder" if ds else "the top of the suite"
    return (
        "SYNTHETIC DATA - procedurally generated demo data, not real faces.\n\n"
        f"This is {where} of the synthetic face-aging suite written by cascade.data.synth "
        f"(version {SUITE_VERSION}) with seed={seed} scale={scale!r}.\n"
        "Every face was drawn by a procedural renderer (cascade/data/synth/render.py); the files mimic\n"
        "the on-disk formats of IMDB-WIKI, AgeDB, FG-NET, Adience and UTKFace so that the real loaders\n"
        "read them unchanged.  Numbers computed on this data demonstrate the harness only: they are not\n"
        "comparable with results on the real datasets.  Regenerate with\n"
        f"cascade.data.synth.write_suite(out, scale={scale!r}, seed={seed}).\n"
    )


def write_suite(out: Path, scale: float = 1.0, seed: int = 0, progress: bool = True) -> dict:
    """Write the synthetic suite under ``out`` and return ``{dataset: count}``.

    Counts: IMDB and Adience count metadata rows, the others image files (see :func:`suite_counts`).
    Existing dataset folders that carry the synthetic marker are replaced; any other non-empty
    folder in the way is an error (the suite never overwrites real data).
    """

    out = Path(out)
    scale = float(scale)
    seed = int(seed)
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    out.mkdir(parents=True, exist_ok=True)
    for ds in DATASETS:
        d = out / ds
        if d.exists() and any(d.iterdir()):
            if not (d / SYNTHETIC_MARKER).exists():
                raise FileExistsError(f"{d} exists, is not empty and is not a synthetic suite folder")
            shutil.rmtree(d)
    (out / "suite.json").unlink(missing_ok=True)
    (out / SYNTHETIC_MARKER).write_text(_marker_text(None, seed, scale))
    for ds in DATASETS:
        (out / ds).mkdir(parents=True, exist_ok=True)
        (out / ds / SYNTHETIC_MARKER).write_text(_marker_text(ds, seed, scale))

    plan = suite_counts(scale)
    details = {}
    state: dict = {}                          # planting state shared by the writers (not written)
    for ds in DATASETS:
        c = plan[ds]
        total = c.get("rows", c.get("images"))
        with progress_bar(total=total, desc=f"synthetic {ds}", unit="img", enabled=progress) as bar:
            tick = bar.update
            root = out / ds
            if ds == "imdb":
                details[ds] = _write_imdb(root, c["rows"], c["subjects"], seed, tick, plant=state)
            elif ds == "agedb":
                details[ds] = _write_agedb(root, c["images"], c["subjects"], seed, tick, plant=state)
            elif ds == "fgnet":
                details[ds] = _write_fgnet(root, c["images"], seed, tick, plant=state)
            elif ds == "adience":
                details[ds] = _write_adience(root, c["rows"], c["users"], seed, tick)
            elif ds == "utkface":
                details[ds] = _write_utkface(root, c["images"], seed, tick)
            else:
                details[ds] = _write_imdb(root, c["rows"], c["subjects"], seed, tick, part="wiki", plant=state)
    counts = {ds: int(details[ds].get("rows", details[ds].get("images"))) for ds in DATASETS}
    details["planted"] = {"identities": _planted_identities(state),
                          "duplicates": _plant_duplicates(out, seed, state)}
    meta = {"generator": "cascade.data.synth", "version": SUITE_VERSION, "seed": seed, "scale": scale,
            "jpeg_quality": JPEG_QUALITY, "counts": counts, "details": details,
            "base_counts": BASE_COUNTS, "min_counts": MIN_COUNTS,
            "count_rule": "max(MIN_COUNTS, floor(BASE_COUNTS * scale + 0.5)); FG-NET subjects fixed at 82"}
    (out / "suite.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return counts
