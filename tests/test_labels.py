"""Label spaces as config (age spans, explicit bins, equal-width bins; always ordered by age),
images outside the classes (error or counted drop), binned targets' metrics, and ensembles of
finished runs (probability averaging)."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cascade import config as C
from cascade.cli import main
from cascade.data.datasets import LabelSpace, label_ranges, open_dataset
from cascade.ensemble import average

from conftest import FAST

#: The related studies' label spaces (papers 000-003 in ../shared/papers).
STUDIES = {
    "000 5-year bins": ("equal:5:0-119", 24),
    "000 10-year bins": ("equal:10:0-119", 12),
    "001 four ranges": ("bins:0-25,26-50,51-75,76-116", 4),
    "002 100 years": ("0-99", 100),
    "002 eleven ranges": ("bins:0-2,3-5,6-9,10-12,13-17,18-24,25-34,35-44,45-54,55-64,65-75", 11),
    "003 20-year classes": ("bins:0-19,20-39,40-59,60-79,80-99", 5),
}


@pytest.mark.parametrize("study", STUDIES)
def test_the_studies_label_spaces_parse_in_age_order(study):
    spec, n = STUDIES[study]
    ranges = label_ranges(spec)
    assert len(ranges) == n and ranges == sorted(ranges)
    assert all(a <= b for a, b in ranges) and all(b < c for (_, b), (c, _) in zip(ranges, ranges[1:]))
    C.load([f"labels.utkface={spec}"])                                   # valid as a setting


def test_bins_are_ordered_by_age_not_text():
    assert label_ranges("bins:10-19,3-9,0-2,100-116,20-99") == [(0, 2), (3, 9), (10, 19), (20, 99), (100, 116)]
    assert label_ranges("equal:5", 3, 21) == [(0, 4), (5, 9), (10, 14), (15, 19), (20, 21)]


@pytest.mark.parametrize("spec,message", [("bins:0-5,3-9", "overlap"), ("equal:0", "width"),
                                          ("5-5", "A < B"), ("bins:9-3,10-12", "A <= B"), ("ten-twenty", "age range")])
def test_bad_label_spaces_are_clear_errors(spec, message):
    with pytest.raises(C.ConfigError, match=message):
        C.load([f"labels.imdb={spec}"])


def _table(ages):
    frame = pd.DataFrame({"path": [f"{i}.jpg" for i in range(len(ages))], "age": ages, "age_lo": ages,
                          "age_hi": ages})
    return SimpleNamespace(frame=frame, name="utkface")


def test_encode_puts_each_age_in_its_range_and_values_are_bin_centres():
    space = LabelSpace.of(_table([1, 2, 3, 25, 26, 70, 116]), "bins:0-25,26-50,51-75,76-116")
    assert space.lo == (0, 26, 51, 76) and space.hi == (25, 50, 75, 116)
    assert list(space.encode(np.array([1, 2, 3, 25, 26, 70, 116]), np.array([1, 2, 3, 25, 26, 70, 116]))) == \
        [0, 0, 0, 0, 1, 2, 3]
    assert list(space.values) == [12.5, 38.0, 63.0, 96.0]
    exact = LabelSpace.of(_table([3, 5, 9]))                              # default: one class per year
    assert exact.lo == (3, 4, 5, 6, 7, 8, 9) and list(exact.encode(np.array([5]), np.array([5]))) == [2]


def test_ages_outside_the_classes_are_an_error_or_a_counted_drop(home):
    cfg = C.load(FAST + [f"home={home}", "labels.utkface=bins:0-19,20-39"])
    table = open_dataset(cfg, "utkface", home)
    outside = int((table.frame["age_lo"] > 39).sum())
    assert outside > 0
    with pytest.raises(ValueError, match=f"{outside} images have ages in none of its classes"):
        LabelSpace.of(table, "bins:0-19,20-39")
    dropped = open_dataset(C.load(FAST + [f"home={home}", "labels.utkface=bins:0-19,20-39",
                                          "data.outside_labels=drop"]), "utkface", home)
    assert len(dropped) == len(table) - outside
    assert ("age outside labels.utkface=bins:0-19,20-39", outside) in dropped.report.steps
    assert len(LabelSpace.of(dropped, "bins:0-19,20-39")) == 2


def _run(home, *extra):
    args = ["run", *FAST, f"home={home}", f"run.results_dir={home}/results", "stage=", "target=utkface",
            "labels.utkface=bins:0-25,26-50,51-75,76-116", "--quiet", *extra]
    assert main(args) == 0


def test_binned_target_reports_group_metrics_and_mae_in_years(home, capsys):
    _run(home)
    out = capsys.readouterr().out
    for col in ("| Accuracy |", "| 1-off |", "| Balanced acc. |", "| κ (quadratic) |", "| class MAE |",
                "| MAE (years, bin centres) |"):
        assert col in out
    pred = pd.read_csv(next((home / "stages").glob("*/predictions.csv")))
    assert pred["true_age"].notna().all()
    assert set(pred["true_value"]) <= {12.5, 38.0, 63.0, 96.0}          # class values: bin centres
    table = pd.read_csv(next((home / "results").glob("utkface-*/table.csv")))
    mae = table.loc[table["configuration"] == "pretrained", "MAE (years, bin centres)"].iloc[0]
    assert mae == pytest.approx(np.mean(np.abs(pred["true_age"] - pred["pred_expected"])))


def test_ensemble_averages_member_probabilities(home, capsys):
    _run(home)
    _run(home, "head.hidden=8")                  # another model, the same seed: the same split
    runs = sorted((home / "results").glob("utkface-*"))
    assert len(runs) == 2
    assert main(["ensemble", *map(str, runs), "--out", str(home / "results")]) == 0
    out = capsys.readouterr().out
    assert "ensemble: mean probabilities of 2" in out and "synthetic data" in out
    folder = next((home / "results").glob("ensemble-*"))
    table = pd.read_csv(folder / "table.csv")
    assert list(table["members"]) == [1, 1, 2]
    ens = pd.read_csv(folder / "predictions.csv")
    members = [pd.read_csv(p).sort_values(["path", "fold"]).reset_index(drop=True)
               for p in sorted((home / "stages").glob("*/predictions.csv"))]
    probs = [c for c in ens.columns if c.startswith("p") and c[1:].isdigit()]
    assert np.allclose(ens[probs].to_numpy(), (members[0][probs].to_numpy() + members[1][probs].to_numpy()) / 2)
    assert np.array_equal(ens["pred_class"], ens[probs].to_numpy().argmax(1))
    assert main(["report", str(folder)]) == 0                           # rebuilt from the members
    assert pd.read_csv(folder / "table.csv").equals(table)

    # stacked: an MLP per fold on the members' validation probabilities (validation never test)
    assert main(["ensemble", *map(str, runs), "--stack", "--out", str(home / "results")]) == 0
    stacked = pd.read_csv(next(f for f in (home / "results").glob("ensemble-*") if f != folder) / "table.csv")
    assert list(stacked["members"]) == [1, 1, 2, 2] and "stacked MLP" in stacked["configuration"].iloc[-1]
    for stage in (home / "stages").glob("*/validation.csv"):
        val, test = pd.read_csv(stage), pd.read_csv(stage.with_name("predictions.csv"))
        assert not set(val["row"]) & set(test["row"])
        assert np.allclose(val[probs].sum(axis=1), 1, atol=1e-5)


def test_ensemble_refuses_members_on_other_images(home, capsys):
    _run(home)
    _run(home, "data.max_images=60")
    runs = sorted((home / "results").glob("utkface-*"))
    assert main(["ensemble", *map(str, runs), "--out", str(home / "results")]) == 2
    assert "differ in" in capsys.readouterr().err


def test_average_recomputes_the_decision_rules():
    labels = {"lo": [0, 10], "hi": [9, 19]}
    a = pd.DataFrame({"path": ["x", "y"], "fold": ["0", "0"], "true_class": [0, 1], "p0": [0.9, 0.2], "p1": [0.1, 0.8]})
    b = a.assign(p0=[0.3, 0.6], p1=[0.7, 0.4])
    ens = average([a, b], labels)
    assert np.allclose(ens["p0"], [0.6, 0.4]) and list(ens["pred_class"]) == [0, 1]
    assert np.allclose(ens["pred_expected"], [0.6 * 4.5 + 0.4 * 14.5, 0.4 * 4.5 + 0.6 * 14.5])


# ------------------------------------------------------------------ the related studies' splits
def _frame(n=600, subjects=None, seed=0):
    rng = np.random.default_rng(seed)
    ages = rng.choice([5, 15, 30, 50, 70], size=n, p=[0.1, 0.2, 0.4, 0.2, 0.1])
    subj = np.arange(n) if subjects is None else rng.integers(0, subjects, n)
    return pd.DataFrame({"age_lo": ages, "age_hi": ages, "subject": subj.astype(str), "fold": -1,
                         "label": np.searchsorted([10, 20, 40, 60], ages, side="right")})


@pytest.mark.parametrize("name,test_share", [("split-64-16-20", 0.20), ("split-70-15-15", 0.15),
                                             ("split-80-10-10", 0.10)])
@pytest.mark.parametrize("subjects", [None, 150])
def test_stratified_splits_keep_class_shares_and_subjects_apart(name, test_share, subjects):
    from cascade.protocols import folds, load_protocol

    frame = _frame(subjects=subjects)
    [(fold, train, test)] = folds(frame, load_protocol(name), seed=3)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(frame)
    assert abs(len(test) / len(frame) - test_share) < (0.01 if subjects is None else 0.06)
    shares = lambda rows: np.bincount(frame["label"].to_numpy()[rows], minlength=5) / len(rows)
    assert np.abs(shares(test) - shares(np.arange(len(frame)))).max() < 0.05   # stratified by class
    if subjects:
        assert not set(frame["subject"].iloc[train]) & set(frame["subject"].iloc[test])
    again = folds(frame, load_protocol(name), seed=3)[0]
    assert np.array_equal(again[2], test)                                       # seeded


def test_a_single_image_class_goes_to_training():
    from cascade.protocols import folds, load_protocol

    frame = _frame(n=100)
    frame.loc[0, "label"] = 9
    [(_, train, test)] = folds(frame, load_protocol("split-80-10-10"), seed=0)
    assert 0 in train and 0 not in test


def test_protocol_validation_share_and_training_fraction(home):
    """A train/val/test protocol's val_fraction is a share of all images; train.fraction keeps
    that share of each fold's training rows (seeded), the validation rows whole."""
    from cascade.stages import plan as P
    from cascade.stages.execute import fold_split

    cfg = C.load(FAST + [f"home={home}", "stage=", "target=utkface", "stages.utkface.protocol=split-70-15-15"])
    node = P.build(cfg).targets[0]
    assert node.params["val_fraction"] == pytest.approx(0.15 / 0.85)
    subjects = np.arange(1000).astype(str)
    rows = np.arange(1000)
    full_train, full_val = fold_split(subjects, rows, node.params, 0, "0")
    tenth_train, tenth_val = fold_split(subjects, rows, {**node.params, "train_fraction": 0.1}, 0, "0")
    assert np.array_equal(full_val, tenth_val) and len(tenth_train) == round(0.1 * len(full_train))
    assert set(tenth_train) <= set(full_train)
    keyed = P.build(C.load(FAST + [f"home={home}", "stage=", "target=utkface", "train.fraction=0.5"])).targets[0]
    assert keyed.params["train_fraction"] == 0.5 and keyed.key != P.build(
        C.load(FAST + [f"home={home}", "stage=", "target=utkface"])).targets[0].key
    with pytest.raises(C.ConfigError, match="train.fraction"):
        C.load(["train.fraction=1.5"])


def test_settings_files_expand_in_place(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text("description: a study\nsettings:\n  target: utkface\n  stage: []\n"
                     "  labels: {utkface: 'bins:0-25,26-50,51-75,76-116'}\n  train: {mode: head, augment: false}\n")
    cfg = C.load([str(study), "train.mode=full"])                      # later words win
    assert cfg["target"] == "utkface" and cfg["stage"] == [] and cfg["train"]["mode"] == "full"
    assert cfg["labels"]["utkface"] == "bins:0-25,26-50,51-75,76-116" and cfg["train"]["augment"] is False
    study.write_text("settings:\n  train: {lr: fast}\n")
    with pytest.raises(C.ConfigError, match="train.lr"):
        C.load([str(study)])


def test_per_class_report_and_row_normalised_confusion(home):
    from sklearn.metrics import precision_recall_fscore_support

    _run(home)
    run = next((home / "results").glob("utkface-*"))
    report = pd.read_csv(run / "classes_0.csv", index_col="class")        # the one configuration
    pred = pd.read_csv(next((home / "stages").glob("*/predictions.csv")))
    p, r, f, s = precision_recall_fscore_support(pred["true_class"], pred["pred_class"], labels=range(4),
                                                 zero_division=0)
    assert np.allclose(report[["precision", "recall", "f1"]].iloc[:4].to_numpy(), np.c_[p, r, f], atol=1e-5)
    assert list(report.index[-2:]) == ["macro avg", "weighted avg"]
    assert report.loc["weighted avg", "support"] == len(pred)
    rows = pd.read_csv(run / "classes_0_confusion_rows.csv", index_col=0)
    present = rows.notna().all(axis=1)
    assert np.allclose(rows[present].sum(axis=1), 1.0)
    assert "macro avg" in (run / "classes_0.md").read_text()


def test_tolerance_accuracy_columns(home, capsys):
    args = ["run", *FAST, f"home={home}", f"run.results_dir={home}/results", "stage=", "target=utkface",
            "report.tolerance=1,3", "--quiet"]
    assert main(args) == 0
    table = pd.read_csv(next((home / "results").glob("utkface-*/table.csv")))
    pred = pd.read_csv(next((home / "stages").glob("*/predictions.csv")))
    within3 = np.mean(np.abs(pred["pred_argmax"] - pred["true_value"]) <= 3)
    assert table.loc[table["configuration"] == "pretrained", "±3 y (argmax)"].iloc[0] == pytest.approx(within3)
    assert "±1 y (argmax)" in table.columns
    with pytest.raises(C.ConfigError, match="report.tolerance"):
        C.load(["report.tolerance=one"])


def test_more_classes_than_test_images_share_strata_with_their_age_neighbours():
    from cascade.protocols import folds, load_protocol

    rng = np.random.default_rng(0)
    ages = rng.integers(0, 100, 80)
    frame = pd.DataFrame({"age_lo": ages, "age_hi": ages, "subject": np.arange(80).astype(str), "fold": -1,
                          "label": ages})
    [(_, train, test)] = folds(frame, load_protocol("split-80-10-10"), seed=0)
    assert len(test) == 8 and not set(train) & set(test)
    assert np.ptp(np.sort(ages[test])) > 50                 # spread over the ages, not one corner


def test_stratified_protocols_stratify_the_validation_share_too(home):
    from cascade.stages import plan as P
    from cascade.stages.execute import fold_split

    node = P.build(C.load(FAST + [f"home={home}", "stage=", "target=utkface",
                                  "stages.utkface.protocol=split-70-15-15"])).targets[0]
    assert node.params["stratify"] is True
    rng = np.random.default_rng(1)
    targets = rng.choice(5, 1000, p=[0.05, 0.15, 0.5, 0.2, 0.1])
    subjects = np.arange(1000).astype(str)
    train, val = fold_split(subjects, np.arange(1000), node.params, 0, "0", targets)
    share = lambda rows: np.bincount(targets[rows], minlength=5) / len(rows)
    assert abs(len(val) / 1000 - node.params["val_fraction"]) < 0.01
    assert np.abs(share(val) - share(np.arange(1000))).max() < 0.01
    assert not set(train) & set(val)


@pytest.mark.parametrize("name,shares", [("split-70-15-15", (0.70, 0.15, 0.15)), ("split-64-16-20", (0.64, 0.16, 0.20)),
                                         ("split-80-10-10", (0.80, 0.10, 0.10))])
def test_stratified_splits_give_the_fractions_they_name_when_identities_repeat(name, shares):
    """With several images per subject the shares are unions of StratifiedGroupKFold folds: 70-15-15
    is 70 / 15 / 15 (one fold of round(1 / 0.15) = 7 would give 71.4 / 14.3 / 14.3)."""
    from cascade.protocols import folds, load_protocol, validation_split

    frame = _frame(n=6000, subjects=1200)
    spec = load_protocol(name)
    [(_, rest, test)] = folds(frame, spec, seed=1)
    val_share = spec["val_fraction"] / (1 - spec["test_fraction"])      # as the planner passes it
    subjects, labels = frame["subject"].to_numpy(), frame["label"].to_numpy()
    train, val = validation_split(subjects[rest], val_share, 2, True, labels=labels[rest])
    got = np.array([len(train), len(val), len(test)]) / len(frame)
    assert np.abs(got - np.array(shares)).max() < 0.01, got
    assert not set(subjects[rest][val]) & set(subjects[rest][train])
