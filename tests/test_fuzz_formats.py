"""Fuzzing the metadata parsers with hypothesis: Adience fold rows, FG-NET / AgeDB /
UTKFace file names and listings, IMDB records (.mat struct and CSV export).  No input crashes
them: every loader returns a table in which each raw row is either kept (with a plausible label
and a path inside the dataset root) or dropped under a named rule, bad rows quarantined with a
reason; the only exceptions are the documented clear errors for a whole file (Adience folds that
are not subject-exclusive, a listing without its required columns)."""
from __future__ import annotations

import json
import math
import string
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascade.data.formats import load
from cascade.data.formats._common import escapes_root
from cascade.data.formats.adience import FIELDS, read_fold
from cascade.data.formats.agedb import parse_agedb_names
from cascade.data.formats.fgnet import parse_fgnet_names
from cascade.data.formats.utkface import parse_utkface_names

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Text that looks like metadata: digits, letters, separators, parentheses, path pieces, unicode.
PIECES = st.sampled_from(["", "0", "7", "25", "-5", "250", "NaN", "None", "(25, 32)", "(25, 23)", "(0, 2)",
                          "(38, 48)", "..", "../..", "/", "/etc/passwd", "\\", "C:\\x", "_", ".jpg", ".JPG",
                          ".chip.jpg", "a", "A", "m", "f", "nm0000001", " ", "\t", "é", "\x00", "1e400"])
TEXT = st.one_of(st.text(max_size=20), st.lists(PIECES, max_size=6).map("".join))
NAME_CHARS = st.sampled_from(list(string.ascii_letters + string.digits + "_.-() é"))
FILE_NAME = st.one_of(st.lists(PIECES.filter(lambda p: "/" not in p and "\\" not in p and "\x00" not in p),
                               min_size=1, max_size=6).map("".join),
                      st.text(NAME_CHARS, min_size=1, max_size=30)).filter(lambda n: n not in (".", "..") and n)


def check(table, n_raw: int) -> None:
    """The invariants every loader promises on any input."""
    r = table.report
    assert r.n_raw == n_raw
    assert len(table.frame) == r.n_kept == n_raw - sum(n for _, n in r.steps)
    assert all(n >= 0 and isinstance(rule, str) and rule for rule, n in r.steps)
    for q in r.quarantine:
        assert isinstance(q.get("reason"), str) and q["reason"], q
    f = table.frame
    assert not any(escapes_root(p) for p in f["path"])
    assert ((f["age_lo"] >= 0) & (f["age_lo"] <= f["age_hi"]) & (f["age_hi"] <= 120)).all()
    assert f["age"].isna().all() or f["age"].between(0, 120).all()


# ----------------------------------------------------------------------------- Adience

ADIENCE_VALUE = {"age": st.one_of(PIECES, TEXT), "user_id": st.one_of(st.sampled_from(["u1", "u2", "u3"]), TEXT),
                 "original_image": st.one_of(st.just("img.jpg"), TEXT), "face_id": st.one_of(st.just("1"), TEXT)}


def _adience_row():
    return st.fixed_dictionaries({f: ADIENCE_VALUE.get(f, st.one_of(st.just("1"), TEXT)) for f in FIELDS})


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 4), _adience_row(), st.integers(-3, 3)), max_size=25))
def test_adience_fold_rows(rows):
    """Rows with any values, any number of fields (a field count other than 12 is a malformed
    line) and tabs/newlines inside values, spread over the five fold files."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lines = {k: ["\t".join(FIELDS)] for k in range(5)}
        for fold, row, extra in rows:
            values = [row[f].replace("\n", " ").replace("\r", " ") for f in FIELDS]
            values = values[:extra] if extra < 0 else values + ["x"] * extra
            lines[fold].append("\t".join(values))
        for k, body in lines.items():
            (root / f"fold_{k}_data.txt").write_text("\n".join(body) + "\n", encoding="utf-8")
        n_raw = sum(1 for body in lines.values() for line in body[1:] if line.strip())
        for policy in ("strict", "lenient"):
            try:
                table = load("adience", root, policy=policy, require_files=False)
            except ValueError as exc:
                assert "not subject-exclusive" in str(exc)
                continue
            check(table, n_raw)


@FUZZ
@given(st.text(max_size=400))
def test_adience_read_fold_on_any_text(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fold_0_data.txt"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        frame, bad = read_fold(path, 0)
        assert len(frame) + len(bad) <= max(1, len(path.read_text(errors="replace").splitlines()))
        assert list(frame.columns[:12]) == list(FIELDS)


# ----------------------------------------------------------------------------- file names

@FUZZ
@given(st.lists(st.one_of(TEXT, FILE_NAME), max_size=30))
def test_fgnet_agedb_utkface_name_parsers(names):
    frame, report = parse_fgnet_names(names)
    assert len(frame) + len(report.quarantine) == len(names) == report.n_raw
    assert all(q["reason"] == "unparseable name" for q in report.quarantine)
    assert frame["age"].between(0, 99).all()
    series = pd.Series(names, dtype=str)
    agedb = parse_agedb_names(series)
    assert len(agedb) == len(names) and (agedb["age"].isna() | (agedb["age"] >= 0)).all()
    utk = parse_utkface_names(series)
    assert len(utk) == len(names) and set(utk["gender"]) <= {"m", "f", ""}


@FUZZ
@given(st.lists(FILE_NAME, max_size=15, unique=True))
def test_agedb_utkface_fgnet_folders_of_any_names(names):
    """Folders whose files have arbitrary names: each is kept with its label or quarantined."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        made = []
        for name in names:
            try:
                (root / name).write_bytes(b"")
                made.append(name)
            except OSError:                       # a name the file system refuses (too long, ...)
                continue
        images = [n for n in made if n.lower().endswith((".jpg", ".jpeg", ".png", ".bmp"))]
        for loader in ("agedb", "utkface", "fgnet"):
            check(load(loader, root), len(images))


JSON_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                       TEXT, st.lists(st.integers(), max_size=2))


@FUZZ
@given(st.lists(st.fixed_dictionaries({"img_path": JSON_VALUE, "name": JSON_VALUE, "age": JSON_VALUE,
                                       "gender": JSON_VALUE, "folder": JSON_VALUE, "id_num": JSON_VALUE}),
                min_size=1, max_size=12))
def test_agedb_and_fgnet_json_listings_of_any_values(records):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "AgeDB.json").write_text(json.dumps(records))
        (root / "FG-Net.json").write_text(json.dumps(records))
        for loader in ("agedb", "fgnet"):
            for require_files in (True, False):
                check(load(loader, root, listing="json", require_files=require_files), len(records))


# ----------------------------------------------------------------------------- IMDB

NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**7, 10**7).map(float),
                   st.sampled_from([math.nan, -math.inf, 0.0, 1.0, 719529.0, 711000.5, 1e300]))


@FUZZ
@given(st.lists(st.fixed_dictionaries({
    "path": st.one_of(TEXT.filter(lambda t: "\x00" not in t), st.just("01/nm0000001_rm1.jpg")),
    "dob": NUMBER, "year": st.integers(0, 65535), "gender": NUMBER, "face": NUMBER, "second": NUMBER,
    "name": TEXT.filter(lambda t: "\x00" not in t)}), min_size=1, max_size=15))
def test_imdb_mat_records(rows):
    from test_formats import write_imdb_mat

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_imdb_mat(root / "imdb.mat", rows)
        for require_files in (True, False):
            check(load("imdb", root, require_files=require_files), len(rows))


@FUZZ
@given(st.lists(st.tuples(TEXT, TEXT, TEXT, TEXT), min_size=1, max_size=15))
def test_imdb_csv_export_records(rows):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        frame = pd.DataFrame(rows, columns=["genders", "ages", "img_paths", "face_score"])
        frame = frame.map(lambda v: v.replace("\x00", ""))
        frame.to_csv(root / "imdb.csv", index=False)
        n_raw = len(pd.read_csv(root / "imdb.csv", dtype=str, keep_default_na=False))
        check(load("imdb", root, require_files=False), n_raw)
