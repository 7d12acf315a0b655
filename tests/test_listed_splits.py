"""A benchmark's fixed splits (`listed_splits`, protocol `paplhjak`): the folds are the ones the
benchmark's files list, read from the published `folder` of each image, checked on the real
AgeDB listing against a count made from the JSON itself."""
import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from cascade.protocols import MissingFolders, folds, load_protocol
from test_formats import reference

#: The benchmark's five splits (its Databases README, "Data Splits"; facebase/benchmarks/AgeDB.yaml).
TESTED = [[8, 9], [0, 1], [2, 3], [3, 4], [4, 5]]
VALIDATED = [[6, 7], [8, 9], [0, 1], [1, 2], [2, 3]]


def _frame(subjects=40, per=3):
    """Subjects spread over folders 0-9, all images of one subject in one folder."""
    subject = np.repeat([f"s{i}" for i in range(subjects)], per)
    return pd.DataFrame({"path": [f"{i}.jpg" for i in range(subjects * per)], "subject": subject,
                         "fold": np.repeat(np.arange(subjects) % 10, per)})


def test_each_fold_tests_the_splits_tst_folders_and_trains_on_the_rest():
    frame = _frame()
    out = folds(frame, load_protocol("paplhjak"), seed=0)
    assert [name for name, _, _ in out] == ["0", "1", "2", "3", "4"]
    for (name, train, test), tst, val in zip(out, TESTED, VALIDATED):
        assert sorted(set(frame["fold"].iloc[test])) == tst
        assert set(frame["fold"].iloc[train]) == set(range(10)) - set(tst)     # trn and val folders
        assert set(val) <= set(frame["fold"].iloc[train])


def test_the_seed_does_not_move_a_fixed_split():
    a, b = (folds(_frame(), load_protocol("paplhjak"), seed=s) for s in (0, 7))
    assert all(np.array_equal(x[2], y[2]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b))


def test_a_table_without_published_folders_names_the_listing():
    frame = _frame().assign(fold=-1)
    with pytest.raises(MissingFolders, match=r"reads each image's published folder \(0-9\) from .*AgeDB.json.*"
                                             r"120 of 120 rows have none"):
        folds(frame, load_protocol("paplhjak"), seed=0)


def test_a_subject_in_two_folders_is_refused():
    frame = _frame()
    frame.loc[0, "fold"] = 9                   # s0's first image in folder 9, the rest in folder 0
    with pytest.raises(ValueError, match=r"fold 0 has subjects in both train and test: \['s0'\]"):
        folds(frame, load_protocol("paplhjak"), seed=0)


def test_an_empty_test_folder_is_a_dataset_too_small():
    frame = _frame(subjects=6)                 # folders 6-9 empty: split 0 tests nothing
    with pytest.raises(ValueError, match=r"cannot split 18 usable image\(s\) of 6 subject\(s\): split 0 has no "
                                         r"image in its test folders \[8, 9\]"):
        folds(frame, load_protocol("paplhjak"), seed=0)


@pytest.mark.parametrize("splits, needle", [
    ("[]", "needs splits"),
    ("[{trn: [0], tst: [1]}]", "exactly trn, val, tst"),
    ("[{trn: [0, 1], val: [1], tst: [2]}]", "a folder is listed twice"),
    ("[{trn: [0], val: [], tst: [x]}]", r"splits\[0\].tst: \['x'\] must be a list of folder numbers"),
    ("[{trn: [], val: [0], tst: [1]}]", "trn and tst must each list at least one folder"),
])
def test_a_bad_splits_list_is_named(tmp_path, monkeypatch, splits, needle):
    monkeypatch.setenv("CASCADE_PROTOCOLS", str(tmp_path))
    (tmp_path / "mine.yaml").write_text(f"name: mine\nsplitter: listed_splits\nsplits: {splits}\n")
    with pytest.raises(ValueError, match=needle):
        load_protocol("mine")


def test_real_agedb_listing_gives_the_benchmarks_folds():
    """On the real AgeDB.json (16,488 rows): each fold's test images are exactly the files whose
    `folder` is in the split's tst list, counted here from the JSON alone; folds are
    subject-exclusive; folders 6 and 7 are never tested and 3, 4 twice, as the benchmark lists."""
    from cascade.data.formats import load

    path = reference("agedb", "AgeDB.json")
    records = json.loads(path.read_text())
    per_folder = Counter(r["folder"] for r in records)
    table = load("agedb", path.parent, listing="json", require_files=False)
    out = folds(table.frame, load_protocol("paplhjak"), seed=0)
    subjects = table.frame["subject"].to_numpy()
    for (name, train, test), tst in zip(out, TESTED):
        files = {r["img_path"].rsplit("/", 1)[-1] for r in records if r["folder"] in tst}
        assert set(table.frame["path"].iloc[test]) == files
        assert len(test) == sum(per_folder[f] for f in tst)
        assert len(train) == len(records) - len(test)
        assert not set(subjects[train]) & set(subjects[test])
    tested = Counter(f for tst in TESTED for f in tst)
    assert set(per_folder) - set(tested) == {6, 7} and tested[3] == tested[4] == 2


def test_real_fgnet_listing_has_no_split_of_its_own():
    """FG-Net.json's folder is the subject (the benchmark only tests on FG-NET, all 82 folders):
    the loader keeps fold -1, and the protocol says which listing it needs."""
    from cascade.data.formats import load

    table = load("fgnet", reference("fgnet", "FG-Net.json").parent, listing="json", require_files=False)
    with pytest.raises(MissingFolders, match="1002 of 1002 rows have none"):
        folds(table.frame, load_protocol("paplhjak"), seed=0)


def _synthetic_agedb(folder, subjects=30, per=4):
    """An AgeDB-named folder of empty image files, marked synthetic (a stand-in of the suite's)."""
    from cascade.data.records import SYNTHETIC_MARKER

    folder.mkdir()
    (folder / SYNTHETIC_MARKER).write_text("synthetic")
    for s in range(subjects):
        for k in range(per):
            (folder / f"{s * per + k + 1}_Person{s}_{20 + s + 3 * k}_{'mf'[s % 2]}.jpg").write_bytes(b"")
    return folder


def test_a_synthetic_listing_is_read_like_the_real_one_and_splits(tmp_path):
    from cascade.data.formats import load
    from cascade.data.synth.listings import write_agedb_listing

    folder = _synthetic_agedb(tmp_path / "agedb")
    scanned = load("agedb", folder, listing="files")
    write_agedb_listing(folder, seed=0)
    listed = load("agedb", folder)                      # auto: the JSON now
    assert listed.report.source.endswith("AgeDB.json") and len(listed) == len(scanned) == 120
    cols = ["path", "age", "subject", "gender"]
    assert listed.frame[cols].sort_values("path").values.tolist() == scanned.frame[cols].sort_values("path").values.tolist()
    assert (listed.frame.groupby("subject")["fold"].nunique() == 1).all()
    assert sorted(listed.frame["fold"].unique()) == list(range(10))
    out = folds(listed.frame, load_protocol("paplhjak"), seed=0)
    assert len(out) == 5 and all(len(test) for _, _, test in out)
    write_agedb_listing(folder, seed=0)
    assert load("agedb", folder).frame.equals(listed.frame)          # seeded: the same folders


def test_the_demo_suite_gets_no_listing_of_its_own(suite_home, tmp_path):
    """The generated suite's agedb/ keeps its files (golden bytes, stage keys): a listing is
    written into a copy, and the loader reads the copy's rows as the suite's."""
    import shutil

    from cascade.data.formats import load
    from cascade.data.synth.listings import write_agedb_listing

    [suite] = [p.parent for p in (suite_home / "demo").glob("*/GENERATED.json")]
    assert not (suite / "agedb" / "AgeDB.json").exists()
    with pytest.raises(ValueError, match="is the generated demo suite"):
        write_agedb_listing(suite / "agedb")
    copy = shutil.copytree(suite / "agedb", tmp_path / "agedb")
    write_agedb_listing(copy)
    listed, scanned = load("agedb", copy), load("agedb", suite / "agedb")
    assert sorted(listed.frame["path"]) == sorted(scanned.frame["path"])
    assert (listed.frame.groupby("subject")["fold"].nunique() == 1).all()


def test_a_real_folder_gets_no_synthetic_listing(tmp_path):
    from cascade.data.synth.listings import write_agedb_listing

    (tmp_path / "1_Ann_30_f.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="not a synthetic AgeDB folder"):
        write_agedb_listing(tmp_path)
