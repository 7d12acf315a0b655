"""Protocols: LOPO equals scikit-learn's LeaveOneGroupOut, Adience folds are subject-exclusive,
leaky splits are refused, and a user adds a protocol by adding a file."""
import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import LeaveOneGroupOut

from cascade.protocols import folds, load_protocol, protocol_names, validation_split


def _frame(n=60, subjects=12, seed=0):
    rng = np.random.default_rng(seed)
    subj = rng.integers(0, subjects, n).astype(str)
    return pd.DataFrame({"subject": subj, "fold": rng.integers(0, 5, n)})


def test_lopo_gives_the_folds_of_leave_one_group_out():
    frame = _frame()
    ours = folds(frame, load_protocol("lopo"), seed=0)
    ref = list(LeaveOneGroupOut().split(np.zeros(len(frame)), groups=frame["subject"]))
    assert len(ours) == len(ref) == frame["subject"].nunique()
    for (name, train, test), (rtrain, rtest) in zip(ours, ref):
        assert np.array_equal(train, rtrain) and np.array_equal(test, rtest)
        assert set(frame["subject"].iloc[test]) == {name}


def test_adience_folds_are_the_official_ones_and_subject_exclusive():
    frame = pd.DataFrame({"subject": [f"u{i // 3}" for i in range(30)], "fold": [(i // 6) for i in range(30)]})
    out = folds(frame, load_protocol("adience"), seed=0)
    assert [name for name, _, _ in out] == ["0", "1", "2", "3", "4"]
    for name, train, test in out:
        assert set(frame["fold"].iloc[test]) == {int(name)}
        assert not set(frame["subject"].iloc[train]) & set(frame["subject"].iloc[test])
        assert len(train) + len(test) == len(frame)


def test_leaky_official_folds_are_refused():
    """A subject listed in two official folds (a leaky split file) stops the run before training."""
    frame = pd.DataFrame({"subject": ["a", "a", "b", "c"], "fold": [0, 1, 1, 0]})
    with pytest.raises(ValueError, match="subjects in both train and test: \\['a'\\]"):
        folds(frame, load_protocol("adience"), seed=0)


def test_hard_subjects_and_holdout():
    frame = pd.DataFrame({"subject": ["001", "002", "002", "003", "004", "005", "006"], "fold": -1})
    [(name, train, test)] = folds(frame, load_protocol("hard-subjects"), seed=0)
    assert set(frame["subject"].iloc[test]) == {"002", "003", "004", "005"}
    assert set(frame["subject"].iloc[train]) == {"001", "006"}
    frame = _frame(100)
    [(_, train, test)] = folds(frame, load_protocol("holdout"), seed=3)
    assert len(train) + len(test) == 100 and not set(train) & set(test)
    assert not set(frame["subject"].iloc[train]) & set(frame["subject"].iloc[test])    # by subject
    assert np.array_equal(test, folds(frame, load_protocol("holdout"), seed=3)[0][2])   # seeded


def test_validation_split_keeps_subjects_apart_inside_folds():
    subjects = _frame(200, 20)["subject"].to_numpy()
    train, val = validation_split(subjects, 0.2, seed=1, by_subject=True)
    assert len(val) and not set(subjects[train]) & set(subjects[val])


def test_a_user_protocol_is_a_file(tmp_path, monkeypatch):
    (tmp_path / "two-out.yaml").write_text(
        "name: two-out\nsplitter: fixed_test_subjects\ntest_subjects: ['1', '2']\nsubject_exclusive: true\n")
    monkeypatch.setenv("CASCADE_PROTOCOLS", str(tmp_path))
    assert "two-out" in protocol_names()
    [(_, _, test)] = folds(_frame(), load_protocol("two-out"), seed=0)
    assert set(_frame()["subject"].iloc[test]) == {"1", "2"}
    with pytest.raises(ValueError, match="unknown protocol 'kfold'; valid: .*lopo"):
        load_protocol("kfold")
    (tmp_path / "bad.yaml").write_text("name: bad\nsplitter: magic\n")
    with pytest.raises(ValueError, match="splitter 'magic' unknown"):
        load_protocol("bad")
