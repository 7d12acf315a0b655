"""Real-format parsers: facts of the real public metadata (read from ../shared/reference, skipped
when absent) and tiny hand-made files that hit every cleaning rule with a known count."""
from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from cascade.data.formats import LOADERS, load
from cascade.data.formats.adience import AgeLabel, parse_age_label, resolve_age_label
from cascade.data.formats.fgnet import parse_fgnet_names
from cascade.data.formats.imdb import ages_on_july_first, datenum_to_date
from cascade.data.records import COLUMNS, SYNTHETIC_MARKER

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def reference(*parts: str) -> Path:
    """A path in the real reference material, or a clean skip when it is not on this machine."""
    path = REFERENCE.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real reference data not available: {path}")
    return path


def touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")


def steps(table) -> dict[str, int]:
    return dict(table.report.steps)


def quarantined(table, reason: str) -> list[str]:
    return [q.get("path", q.get("row")) for q in table.report.quarantine if q["reason"] == reason]


# --------------------------------------------------------------------------- registry


def test_unknown_loader_lists_valid_names(tmp_path):
    with pytest.raises(ValueError) as err:
        load("morph", tmp_path)
    for name in ("imdb", "wiki", "agedb", "fgnet", "adience", "utkface"):
        assert name in str(err.value)
    assert set(LOADERS) == {"imdb", "wiki", "agedb", "fgnet", "adience", "utkface", "appareal"}


def test_unknown_option_lists_valid_options(tmp_path):
    with pytest.raises(TypeError, match="policy.*groups|groups.*policy"):
        load("adience", tmp_path, polcy="strict")


def test_bad_option_value_lists_valid_values(tmp_path):
    with pytest.raises(ValueError, match="strict"):
        load("adience", tmp_path, policy="loose")


# --------------------------------------------------------------------------- IMDB-WIKI


def test_datenum_to_date():
    assert datenum_to_date(719529) == date(1970, 1, 1)
    assert datenum_to_date(719529.75) == date(1970, 1, 1)       # fraction of a day
    assert datenum_to_date(367) == date(1, 1, 1)               # datenum 1 = 1 Jan of year 0 (leap)
    assert datenum_to_date(737791) == date(2020, 1, 1)
    for bad in (1, 366, 0, -5, math.nan, math.inf, 1e9):
        assert datenum_to_date(bad) is None


def test_vectorised_ages_match_scalar_rule():
    rng = np.random.default_rng(0)
    dob = np.concatenate([rng.uniform(367, 740000, 2000), [1, 200, math.nan]])
    year = rng.integers(1900, 2020, dob.size)
    ages = ages_on_july_first(dob, year)
    for dn, y, age in zip(dob, year, ages):
        born = datenum_to_date(dn)
        if born is None:
            assert math.isnan(age)
        else:
            assert age == y - born.year - ((born.month, born.day) > (7, 1))


def _dn(y: int, m: int, d: int) -> float:
    return float(date(y, m, d).toordinal() + 366)


def _cells(values) -> np.ndarray:
    out = np.empty((1, len(values)), dtype=object)
    for i, v in enumerate(values):
        out[0, i] = v
    return out


def write_imdb_mat(path: Path, rows: list[dict], key: str = "imdb") -> None:
    """The released struct layout: a 1x1 struct whose fields are 1xN arrays / cells."""
    def col(field):
        return np.array([[r[field] for r in rows]], dtype=float)
    struct = {"dob": col("dob"), "photo_taken": np.array([[r["year"] for r in rows]], dtype=np.uint16),
              "full_path": _cells([r["path"] for r in rows]), "gender": col("gender"),
              "name": _cells([r["name"] for r in rows]),
              "face_location": _cells([np.array([[10.0, 20.0, 110.0, 140.0]]) for _ in rows]),
              "face_score": col("face"), "second_face_score": col("second")}
    scipy.io.savemat(path, {key: struct})


def imdb_row(path, dob=(1960, 3, 1), year=1990, gender=1.0, face=3.5, second=math.nan, name="X"):
    return {"path": path, "dob": dob if isinstance(dob, float) else _dn(*dob), "year": year,
            "gender": gender, "face": face, "second": second, "name": name}


IMDB_ROWS = [
    imdb_row("01/nm0000001_rm1_1960-3-1_1990.jpg", name="Fred"),                # kept, age 30
    imdb_row("01/nm0000001_rm2_1960-7-1_1990.jpg", dob=(1960, 7, 1)),            # kept, age 30
    imdb_row("02/nm0000002_rm3_1960-7-2_1990.jpg", dob=(1960, 7, 2), gender=0.0),  # kept, age 29
    imdb_row("02/nm0000003_rm4_1995-1-1_1990.jpg", dob=(1995, 1, 1)),            # age -5
    imdb_row("02/nm0000004_rm5_1800-1-1_1990.jpg", dob=(1800, 1, 1)),            # age 190
    imdb_row("02/nm0000005_rm6_0-1-1_1990.jpg", dob=100.0),                      # invalid dob
    imdb_row("03/nm0000006_rm7.jpg", face=-math.inf),                            # no face
    imdb_row("03/nm0000007_rm8.jpg", face=0.5),
    imdb_row("03/nm0000008_rm9.jpg", face=math.nan),
    imdb_row("03/nm0000009_rm10.jpg", second=2.1),
    imdb_row("04/nm0000010_rm11.jpg", gender=math.nan),
    imdb_row("04/nm0000011_rm12.jpg"),                                           # file absent
    imdb_row("04/12345_1960-3-1_1990.jpg", name="Wiki Person"),                  # no nm id
]


def imdb_root(tmp_path: Path, key: str = "imdb") -> Path:
    root = tmp_path / key
    root.mkdir()
    write_imdb_mat(root / f"{key}.mat", IMDB_ROWS, key)
    touch(root, *[r["path"] for r in IMDB_ROWS if "rm12" not in r["path"]])
    return root


def test_savemat_writes_the_real_nested_layout(tmp_path):
    root = imdb_root(tmp_path)
    struct = scipy.io.loadmat(root / "imdb.mat")["imdb"][0, 0]
    assert struct["full_path"][0].shape == (len(IMDB_ROWS),)
    assert struct["full_path"][0][0][0] == IMDB_ROWS[0]["path"]
    assert struct["face_location"][0][0].shape == (1, 4)
    assert struct["dob"][0].dtype == float


def test_imdb_mat_rules_and_counts(tmp_path):
    table = load("imdb", imdb_root(tmp_path))
    assert table.report.n_raw == len(IMDB_ROWS)
    assert table.report.steps == [("age outside 0-100", 3), ("face_score below 1.0", 3),
                                  ("second face present", 1), ("missing gender", 1),
                                  ("missing file", 1)]
    assert quarantined(table, "invalid dob") == ["02/nm0000005_rm6_0-1-1_1990.jpg"]
    assert quarantined(table, "missing file") == ["04/nm0000011_rm12.jpg"]
    f = table.frame
    assert list(f.columns) == COLUMNS and len(table) == 4
    assert f["age"].tolist() == [30, 30, 29, 30]                 # born 1 July: year completed
    assert f["subject"].tolist() == ["nm0000001", "nm0000001", "nm0000002", "Wiki Person"]
    assert f["gender"].tolist() == ["m", "m", "f", "m"]
    assert (f["age_lo"] == f["age"]).all() and (f["fold"] == -1).all()
    assert f.loc[0, ["box_x1", "box_y1", "box_x2", "box_y2"]].tolist() == [10, 20, 110, 140]
    assert not table.synthetic


def test_imdb_thresholds_are_options(tmp_path):
    table = load("imdb", imdb_root(tmp_path), min_face_score=0.0, age_range=(0, 200),
                 require_files=False)
    assert table.report.steps == [("age outside 0-200", 2), ("face_score below 0.0", 2),
                                  ("second face present", 1), ("missing gender", 1)]


def test_wiki_uses_its_own_struct_key(tmp_path):
    root = imdb_root(tmp_path, key="wiki")
    (root / SYNTHETIC_MARKER).write_text("synthetic")
    table = load("wiki", root)
    assert len(table) == 4 and table.report.dataset == "wiki" and table.synthetic


def test_imdb_csv_export(tmp_path):
    (tmp_path / "imdb.csv").write_text(
        "genders,ages,img_paths\n1.0,30,01/nm0000001_rm1.jpg\n0.0,120,01/nm0000002_rm2.jpg\n"
        ",40,01/nm0000003_rm3.jpg\n0.0,x,01/nm0000004_rm4.jpg\n0.0,25,01/nm0000005_rm5.jpg\n")
    table = load("imdb", tmp_path, require_files=False)
    assert table.report.steps == [("age outside 0-100", 2), ("missing gender", 1)]
    assert any("face_score" in n for n in table.report.notes)
    assert table.frame["subject"].tolist() == ["nm0000001", "nm0000005"]
    assert table.frame["gender"].tolist() == ["m", "f"]


def test_imdb_mat_wins_over_csv_unless_csv_given(tmp_path):
    root = imdb_root(tmp_path)
    (root / "other.csv").write_text("genders,ages,img_paths\n1.0,30,a.jpg\n")
    (root / "imdb.csv").write_text("genders,ages,img_paths\n1.0,30,a.jpg\n")
    assert load("imdb", root, require_files=False).report.source.endswith("imdb.mat")
    assert len(load("imdb", root, csv="other.csv", require_files=False)) == 1


# --------------------------------------------------------------------------- AgeDB


@pytest.mark.parametrize("listing", ["json", "mat"])
def test_agedb_real_listings(listing):
    table = load("agedb", reference("agedb"), listing=listing, require_files=False)
    f = table.frame
    assert table.report.n_raw == len(table) == 16488
    assert f["subject"].nunique() == 567
    assert (f["age"].min(), f["age"].max()) == (1, 101)
    assert set(f["gender"]) == {"m", "f"}
    if listing == "json":
        assert sorted(f["fold"].unique()) == list(range(10))
        assert (f.groupby("subject")["fold"].nunique() == 1).all()   # subject-exclusive folds
    print(f"\nAgeDB ({listing}):\n{table.report.summary()}")


def test_agedb_json_and_mat_list_the_same_files():
    root = reference("agedb")
    a = load("agedb", root, listing="json", require_files=False).frame
    b = load("agedb", root, listing="mat", require_files=False).frame
    assert set(a["path"]) == set(b["path"])
    merged = a.merge(b, on="path")
    assert (merged["age_x"] == merged["age_y"]).all() and (merged["subject_x"] == merged["subject_y"]).all()


def test_agedb_real_image_names():
    table = load("agedb", reference("faces", "agedb"))
    assert len(table) == 41 and table.report.steps == [("unparseable name", 0)]
    assert table.frame.loc[0, "path"] == "10644_LuiseRainer_26_f.jpg"
    assert table.frame.loc[0, "subject"] == "LuiseRainer"


def test_agedb_files_quarantines_bad_names(tmp_path):
    touch(tmp_path, "1_Ann_Lee_30_f.jpg", "2_Bob_41_m.JPG", "3_Bob_x_m.jpg", "notes.txt", "4_Cy_20_q.jpg")
    table = load("agedb", tmp_path)
    assert table.report.steps == [("unparseable name", 2)]
    assert sorted(quarantined(table, "unparseable name")) == ["3_Bob_x_m.jpg", "4_Cy_20_q.jpg"]
    assert table.frame["subject"].tolist() == ["Ann_Lee", "Bob"]
    assert table.frame["age"].tolist() == [30, 41]


def test_agedb_json_listing_missing_file(tmp_path):
    touch(tmp_path, "1_Ann_30_f.jpg")
    rows = [{"img_path": "AgeDB/AgeDB/1_Ann_30_f.jpg", "name": "Ann", "age": 30, "gender": "F", "folder": 3},
            {"img_path": "AgeDB/AgeDB/2_Bob_40_m.jpg", "name": "Bob", "age": 40, "gender": "M", "folder": 1},
            {"img_path": "AgeDB/AgeDB/3_Cy_x_m.jpg", "name": "Cy", "age": "x", "gender": "M", "folder": 1}]
    (tmp_path / "AgeDB.json").write_text(json.dumps(rows))
    table = load("agedb", tmp_path)                       # auto picks the JSON
    assert table.report.steps == [("unparseable label", 1), ("missing file", 1)]
    assert table.frame[["path", "fold", "gender"]].values.tolist() == [["1_Ann_30_f.jpg", 3, "f"]]
    with pytest.raises(FileNotFoundError):
        load("agedb", tmp_path, listing="mat")


# --------------------------------------------------------------------------- FG-NET


def test_fgnet_real_file_names():
    names = reference("fgnet", "filenames.txt").read_text().split()
    frame, report = parse_fgnet_names(names)
    per_subject = frame["subject"].value_counts()
    assert report.n_raw == len(frame) == 1002 and report.steps == [("unparseable name", 0)]
    assert frame["subject"].nunique() == 82 and "001" in per_subject
    assert (frame["age"].min(), frame["age"].max()) == (0, 69)
    assert (per_subject.min(), per_subject.max()) == (6, 18)


def test_fgnet_real_json_listing():
    table = load("fgnet", reference("fgnet"), listing="json", require_files=False)
    assert len(table) == 1002 and table.frame["subject"].nunique() == 82
    assert (table.frame["age"].min(), table.frame["age"].max()) == (0, 69)


def test_fgnet_files_in_images_folder(tmp_path):
    touch(tmp_path / "images", "001A02.JPG", "001A02a.JPG", "002A10b.jpg", "2A10.JPG", "x.png", "readme.txt")
    table = load("fgnet", tmp_path)
    assert table.report.steps == [("unparseable name", 2)]
    assert sorted(quarantined(table, "unparseable name")) == ["images/2A10.JPG", "images/x.png"]
    f = table.frame
    assert f["path"].tolist() == ["images/001A02.JPG", "images/001A02a.JPG", "images/002A10b.jpg"]
    assert f["subject"].tolist() == ["001", "001", "002"] and f["age"].tolist() == [2, 2, 10]


def test_fgnet_json_resolves_extension_case(tmp_path):
    touch(tmp_path / "images", "001A02.JPG", "009A16B.JPG")
    rows = [{"img_path": f"FG-NET/images/{n}", "id_num": s, "age": a, "folder": s}
            for n, s, a in [("001A02.jpg", 1, 2), ("009A16b.jpg", 9, 16), ("010A07.jpg", 10, 7)]]
    (tmp_path / "FG-Net.json").write_text(json.dumps(rows))
    table = load("fgnet", tmp_path)
    assert table.report.steps == [("unparseable label", 0), ("missing file", 1)]
    assert table.frame["path"].tolist() == ["images/001A02.JPG", "images/009A16B.JPG"]
    assert table.frame["subject"].tolist() == ["001", "009"]


# --------------------------------------------------------------------------- Adience

#: Per-rule counts measured on the real fold files (require_files=False).
ADIENCE_REAL = {
    "strict": [("malformed line", 0), ("exact duplicate row", 117), ("typo (25, 23)", 72),
               ("age None", 748), ("bare single age", 1099), ("off-grid range", 130),
               ("unparseable age", 0)],
    "lenient": [("malformed line", 0), ("exact duplicate row", 117), ("typo (25, 23) (dropped)", 0),
                ("age None", 748), ("bare single age (dropped)", 1081),
                ("off-grid range (dropped)", 7), ("unparseable age", 0)],
}


@pytest.mark.parametrize("policy", ["strict", "lenient"])
def test_adience_real_rule_counts(policy):
    table = load("adience", reference("adience"), policy=policy, require_files=False)
    print(f"\n{table.report.summary()}")
    assert table.report.n_raw == 19487
    assert table.report.steps == ADIENCE_REAL[policy]
    assert len(table) == (17321 if policy == "strict" else 17534)
    f = table.frame
    assert (f.groupby("subject")["fold"].nunique() == 1).all()
    assert f["age"].isna().all() and sorted(f["fold"].unique()) == [0, 1, 2, 3, 4]
    assert set(zip(f["age_lo"], f["age_hi"])) == {(0, 2), (4, 6), (8, 12), (15, 20), (25, 32),
                                                   (38, 43), (48, 53), (60, 100)}
    assert any("17,417" in n and "17,643" in n for n in table.report.notes)
    if policy == "lenient":
        assert any("72 rows mapped to (25, 32)" in n for n in table.report.notes)


def test_adience_real_typo_sits_in_fold_0():
    root = reference("adience")
    counts = {k: (root / f"fold_{k}_data.txt").read_text().count("\t(25, 23)\t") for k in range(5)}
    assert counts == {0: 72, 1: 0, 2: 0, 3: 0, 4: 0}


def test_adience_three_groups():
    table = load("adience", reference("adience"), groups=3, require_files=False)
    pairs = set(zip(table.frame["age_lo"], table.frame["age_hi"]))
    assert pairs == {(0, 12), (15, 20), (25, 100)} and len(table) == 17321


@pytest.mark.parametrize("policy, kept", [("lenient", 19), ("strict", 11)])
def test_adience_real_images_found(tmp_path, policy, kept):
    """The 19 real crops all have a row in fold 0; 8 of them carry the (25, 23) typo."""
    faces = reference("faces", "adience")
    for k in range(5):
        (tmp_path / f"fold_{k}_data.txt").symlink_to(reference("adience", f"fold_{k}_data.txt"))
    (tmp_path / "faces").symlink_to(faces)
    table = load("adience", tmp_path, policy=policy)
    f = table.frame
    assert len(table) == kept and set(f["subject"]) == {"30601258@N03"}
    on_disk = {f"faces/30601258@N03/{p.name}" for p in (faces / "30601258@N03").iterdir()}
    assert set(f["path"]) <= on_disk and len(on_disk) == 19
    assert table.report.steps[-1][0] == "missing file"
    assert all(np.isfinite(f[c]).all() for c in ("box_x1", "box_y1", "box_x2", "box_y2"))


HEADER = "\t".join(["user_id", "original_image", "face_id", "age", "gender", "x", "y", "dx", "dy",
                    "tilt_ang", "fiducial_yaw_angle", "fiducial_score"])


def adience_line(user, image, face, age, gender="f"):
    return "\t".join([user, image, str(face), age, gender, "10", "20", "100", "120", "0", "0", "50"])


def write_folds(root: Path, folds: dict[int, list[str]]) -> Path:
    for k in range(5):
        (root / f"fold_{k}_data.txt").write_text("\n".join([HEADER, *folds.get(k, [])]) + "\n")
    return root


SYNTH_FOLDS = {
    0: [adience_line("u1", "a.jpg", 1, "(25, 32)", "m"),
        adience_line("u1", "a.jpg", 1, "(25, 32)", "m"),          # exact duplicate
        adience_line("u1", "b.jpg", 1, "(25, 23)"),                # typo
        adience_line("u1", "c.jpg", 1, "None"),
        adience_line("u1", "d.jpg", 1, "35"),                      # gap between groups
        adience_line("u1", "e.jpg", 1, "29", "u"),                 # inside (25, 32)
        "u1\tbroken line"],
    1: [adience_line("u2", "f.jpg", 2, "(27, 32)", ""),            # inside (25, 32)
        adience_line("u2", "g.jpg", 2, "(38, 48)"),                # spans two groups
        adience_line("u2", "h.jpg", 2, "(0, 2)"),
        adience_line("u2", "i.jpg", 2, "twenty")],
}


def test_adience_strict_rules(tmp_path):
    table = load("adience", write_folds(tmp_path, SYNTH_FOLDS), require_files=False)
    assert table.report.n_raw == 11
    assert table.report.steps == [("malformed line", 1), ("exact duplicate row", 1), ("typo (25, 23)", 1),
                                  ("age None", 1), ("bare single age", 2), ("off-grid range", 2),
                                  ("unparseable age", 1)]
    assert quarantined(table, "malformed line") == ["fold_0_data.txt:8"]
    assert quarantined(table, "unparseable age") == ["fold_1_data.txt:5"]
    f = table.frame
    assert f["path"].tolist() == ["faces/u1/coarse_tilt_aligned_face.1.a.jpg",
                                  "faces/u2/coarse_tilt_aligned_face.2.h.jpg"]
    assert f["fold"].tolist() == [0, 1] and f["gender"].tolist() == ["m", "f"]
    assert f.loc[0, ["box_x1", "box_y1", "box_x2", "box_y2"]].tolist() == [10, 20, 110, 140]


def test_adience_lenient_rules(tmp_path):
    table = load("adience", write_folds(tmp_path, SYNTH_FOLDS), policy="lenient", require_files=False)
    assert table.report.steps == [("malformed line", 1), ("exact duplicate row", 1),
                                  ("typo (25, 23) (dropped)", 0), ("age None", 1),
                                  ("bare single age (dropped)", 1), ("off-grid range (dropped)", 1),
                                  ("unparseable age", 1)]
    notes = " | ".join(table.report.notes)
    assert "typo (25, 23): 1 rows mapped" in notes and "bare single age: 1 rows" in notes
    assert "off-grid range: 1 rows" in notes and "kept per fold: 0: 3, 1: 2" in notes
    f = table.frame
    assert list(zip(f["age_lo"], f["age_hi"])) == [(25, 32)] * 4 + [(0, 2)]
    assert f["gender"].tolist() == ["m", "f", "", "", "f"]


def test_adience_options(tmp_path):
    root = write_folds(tmp_path, SYNTH_FOLDS)
    table = load("adience", root, policy="lenient", groups=3, variant="aligned", require_files=False)
    assert list(zip(table.frame["age_lo"], table.frame["age_hi"])) == [(25, 100)] * 4 + [(0, 12)]
    assert table.frame["path"][0] == "aligned/u1/landmark_aligned_face.1.a.jpg"
    missing = load("adience", root)
    assert missing.report.steps[-1] == ("missing file", 2) and len(missing) == 0


def test_adience_folds_must_be_subject_exclusive(tmp_path):
    folds = {0: [adience_line("u1", "a.jpg", 1, "(0, 2)")], 3: [adience_line("u1", "b.jpg", 1, "(0, 2)")]}
    with pytest.raises(ValueError, match=r"u1 in folds \[0, 3\]"):
        load("adience", write_folds(tmp_path, folds), require_files=False)


@pytest.mark.parametrize("text, kind, strict, lenient", [
    ("(25, 32)", "group", (25, 32), (25, 32)),
    (" (60, 100) ", "group", (60, 100), (60, 100)),
    ("(25, 23)", "typo", None, (25, 32)),
    ("None", "none", None, None),
    ("35", "single", None, None),
    ("3", "single", None, None),
    ("13", "single", None, None),
    ("2", "single", None, (0, 2)),
    ("(27, 32)", "range", None, (25, 32)),
    ("(38, 42)", "range", None, (38, 43)),
    ("(38, 48)", "range", None, None),
    ("(8, 23)", "range", None, None),
    ("(30, 20)", "unparseable", None, None),
    ("", "unparseable", None, None),
    ("(25,", "unparseable", None, None),
    (None, "unparseable", None, None),
    (17, "unparseable", None, None),
])
def test_age_label_classification(text, kind, strict, lenient):
    assert parse_age_label(text).kind == kind
    assert resolve_age_label(text, "strict")[1] == strict
    assert resolve_age_label(text, "lenient")[1] == lenient


def test_age_label_parser_is_total():
    rng = np.random.default_rng(1)
    alphabet = list("()0123456789, -Nonex\t")
    for _ in range(500):
        text = "".join(rng.choice(alphabet, rng.integers(0, 12)))
        label, group = resolve_age_label(text, "lenient")
        assert isinstance(label, AgeLabel) and (group is None or len(group) == 2)


# --------------------------------------------------------------------------- UTKFace


def test_utkface_names(tmp_path):
    touch(tmp_path, "25_0_2_20170116174525125.jpg.chip.jpg", "1_1_0_20170109150557335.jpg",
          "39_1_20170116174525125.jpg.chip.jpg", "61_1_20170109142408075.jpg.chip.jpg",
          "61_3_20170109150557335.jpg.chip.jpg", "abc_0_0_2017.jpg.chip.jpg",
          "200_0_0_20170109150557335.jpg.chip.jpg", "0_1_0_20170109150557335.jpg.chip.jpg",
          "labels.csv")
    table = load("utkface", tmp_path)
    assert table.report.n_raw == 8
    assert table.report.steps == [("unparseable name", 1), ("age outside 1-116", 2)]
    assert quarantined(table, "unparseable name") == ["abc_0_0_2017.jpg.chip.jpg"]
    f = table.frame.set_index("path")
    assert f.loc["25_0_2_20170116174525125.jpg.chip.jpg", "gender"] == "m"
    assert f.loc["39_1_20170116174525125.jpg.chip.jpg", ["age", "gender"]].tolist() == [39, "f"]
    assert f.loc["61_3_20170109150557335.jpg.chip.jpg", ["age", "gender"]].tolist() == [61, ""]
    assert (f.index == f["subject"]).all() and len(f) == 5
    notes = " | ".join(table.report.notes)
    assert "3 malformed names kept" in notes and "own subject" in notes
