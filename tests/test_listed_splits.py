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
