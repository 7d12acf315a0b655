"""APPA-REAL: the three published gt_avg_*.csv listings read as they are released, each
cleaning rule counted, and the published train / valid / test split as protocol paplhjak-single.
The files are written here (no real data in the repository)."""
from pathlib import Path

import pytest

from cascade.data.formats import load, missing_files
from cascade.protocols import MissingFolders, folds, load_protocol

HEADER = "file_name,num_ratings,apparent_age_avg,apparent_age_std,real_age\n"


def _write(root: Path, parts: dict[str, list[str]], images: bool = True) -> Path:
    for part, lines in parts.items():
        (root / f"gt_avg_{part}.csv").write_text(HEADER + "".join(line + "\n" for line in lines))
        (root / part).mkdir(exist_ok=True)
        for line in lines:
            name = line.split(",")[0]
            if images and name:
                (root / part / name).write_bytes(b"")
    return root


def _three(root: Path) -> Path:
    return _write(root, {"train": ["000000.jpg,36,5.0,1.1,4", "000001.jpg,40,20.5,3.2,18"],
                         "valid": ["005613.jpg,38,33.4,4.0,35"],
                         "test": ["005613.jpg,30,61.5,5.1,70", "005614.jpg,30,44.5,5.1,40"]})


def test_the_published_parts_are_folds_0_1_2_with_real_ages(tmp_path):
    table = load("appareal", _three(tmp_path))
    f = table.frame
    assert f["path"].tolist() == ["train/000000.jpg", "train/000001.jpg", "valid/005613.jpg",
                                  "test/005613.jpg", "test/005614.jpg"]
    assert f["fold"].tolist() == [0, 0, 1, 2, 2] and f["age"].tolist() == [4, 18, 35, 70, 40]
    assert (f["subject"] == f["path"]).all() and (f["age_lo"] == f["age_hi"]).all()
    assert table.report.n_raw == table.report.n_kept == 5


def test_apparent_age_is_the_rounded_mean_as_the_benchmark_listing_has_it(tmp_path):
    f = load("appareal", _three(tmp_path), age="apparent").frame
    assert f["age"].tolist() == [5, 20, 33, 62, 44]        # numpy's rint: 20.5 -> 20, 61.5 -> 62


def test_each_rule_counts_its_rows(tmp_path):
    _write(tmp_path, {"train": ["000000.jpg,36,5.0,1.1,4", ",3,1,1,9", "000002.jpg,3,1,1,x",
                                "000003.jpg,3,1,1,150", "000000.jpg,36,5.0,1.1,4"],
                      "valid": ["000010.jpg,3,1,1,30"], "test": ["000020.jpg,3,1,1,30"]})
    (tmp_path / "valid" / "000010.jpg").unlink()
    table = load("appareal", tmp_path)
    assert table.report.steps == [("unparseable label", 2), ("age outside 0-120 or not a number", 1),
                                  ("listed twice", 1), ("missing file", 1)]
    reasons = {q["reason"] for q in table.report.quarantine}
    assert reasons == {"unparseable label", "age outside 0-120 or not a number", "listed twice", "missing file"}
    assert {q["row"] for q in table.report.quarantine if q["reason"] == "listed twice"} == {"gt_avg_train.csv:6"}
    assert len(table) == table.report.n_kept == 2


def test_missing_listings_and_columns_are_named(tmp_path):
    assert missing_files("appareal", tmp_path) == (f"appareal: no gt_avg_train.csv, gt_avg_valid.csv, "
                                                   f"gt_avg_test.csv in {tmp_path}")
    _three(tmp_path)
    (tmp_path / "gt_avg_valid.csv").write_text("image,mean,stdv\n1.jpg,3,1\n")
    with pytest.raises(ValueError, match=r"gt_avg_valid.csv: no column\(s\) \['file_name', 'apparent_age_avg', "
                                         r"'real_age'\]"):
        load("appareal", tmp_path)
    with pytest.raises(ValueError, match="age='median' is not valid"):
        load("appareal", tmp_path, age="median")


def test_the_published_split_is_protocol_paplhjak_single(tmp_path):
    f = load("appareal", _three(tmp_path)).frame
    [(name, train, test)] = folds(f, load_protocol("paplhjak-single"), seed=0)
    assert name == "0" and f["path"].iloc[test].tolist() == ["test/005613.jpg", "test/005614.jpg"]
    assert f["fold"].iloc[train].tolist() == [0, 0, 1]
    with pytest.raises(MissingFolders, match="gt_avg_train.csv"):
        folds(f.assign(fold=-1), load_protocol("paplhjak-single"), seed=0)
