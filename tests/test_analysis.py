"""Analyses of thesis section 6: Grad-CAM (shape, sign, localisation, facial regions), class
balancing (weights, oversampling, exact resume, keys), and the `explain` / `analyse` commands."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from cascade.analysis import cam as K
from cascade.models import AgeModel, build_backbone
from cascade.train import balance as B
from cascade.train.trainer import Split, fit

QUIET = dict(log=lambda m: None)


def _quadrant_task(n=192, size=48, square=8, seed=0):
    """Class 1 = a bright square somewhere in the top-left quadrant, class 0 = none; the
    background is noise in both classes, so only that quadrant carries the label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 61, (n, size, size, 3)).astype(np.uint8)
    for i in np.flatnonzero(y):
        r, c = rng.integers(0, size // 2 - 2 * square + 1, 2)
        x[i, r:r + square, c:c + square] = 255
    idx = np.arange(n)
    return Split(x, y, idx[: n * 3 // 4], idx[n * 3 // 4:])


def _model(classes=2, seed=0):
    torch.manual_seed(seed)
    return AgeModel(build_backbone("demo"), classes, [16])


PARAMS = {"lr": 3e-3, "batch_size": 16, "epochs": 6, "patience": 2, "mode": "full", "augment": False,
          "select": "last"}


@pytest.fixture(scope="module")
def quadrant_model(tmp_path_factory):
    split = _quadrant_task()
    model = _model()
    fit(model, split, PARAMS, {}, np.arange(2.0), tmp_path_factory.mktemp("q") / "c.pt", seed=0, **QUIET)
    return model, split


def _crops(model, images, rows):
    """The model's normalised input for `rows` of a uint8 image array."""
    return model.preprocessing.apply(torch.from_numpy(images[rows]))


@pytest.mark.parametrize("target", ["class", "expected", "embedding"])
def test_map_has_the_input_size_and_is_non_negative(quadrant_model, target):
    model, split = quadrant_model
    x = _crops(model, split.images, split.val[:5])
    maps, pred = K.gradcam(model, x, target, np.arange(2.0))
    assert maps.shape == (5, 48, 48) and pred.shape == (5,)
    top = maps.reshape(5, -1).max(1)
    assert (maps >= 0).all() and top.max() == pytest.approx(1.0)
    assert np.all(np.isclose(top, 1.0) | (top == 0))           # normalised, or no positive evidence


def test_map_concentrates_on_the_region_that_carries_the_label(quadrant_model):
    """Measured: mean share 0.68 of the map's mass in the top-left quadrant (its area: 0.25)."""
    model, split = quadrant_model
    rows = split.val[split.targets[split.val] == 1]
    maps, pred = K.gradcam(model, _crops(model, split.images, rows), "class")
    assert (pred == 1).mean() > 0.9                          # the model learned the task
    share = maps[:, :24, :24].sum((1, 2)) / maps.sum((1, 2))
    assert share.mean() > 0.5 and share.min() > 0.25


def test_regions_partition_the_image_and_follow_the_landmarks():
    pts = K.template_landmarks(64, 0.4)
    masks = K.region_masks(pts, 64, 64)
    assert list(masks) == list(K.REGIONS)
    stack = np.stack(list(masks.values()))
    assert (stack.sum(0) == 1).all()                         # disjoint and covering
    for (x, y), name in zip(pts.astype(int), ["eyes", "eyes", "nose", "mouth", "mouth"]):
        assert masks[name][y, x], name
    cam = np.zeros((64, 64))
    cam[int(pts[0, 1]), int(pts[0, 0])] = 1.0                # all mass on the left eye
    shares = K.region_shares(cam, masks)
    assert shares["eyes"] == 1.0 and sum(shares.values()) == pytest.approx(1.0)
    assert K.spread(cam) == 0.0
    assert K.spread(np.ones((64, 64))) == pytest.approx(np.sqrt(1 / 6), rel=1e-3)


def test_real_faces_get_mtcnn_landmarks_in_their_regions():
    """On real aligned Adience faces at a cache's size (64 px, upscaled for MTCNN) the landmarks come
    from MTCNN, sit in face order, and each falls in its own region."""
    from conftest import REFERENCE

    folder = REFERENCE / "faces" / "adience"
    files = sorted(folder.glob("*/*.jpg"))[:4] if folder.exists() else []
    if not files:
        pytest.skip("../shared/reference/faces/adience absent")
    from PIL import Image

    from cascade.data.cache import decode_rgb

    images = np.stack([np.asarray(decode_rgb(f).resize((64, 64), Image.BICUBIC)) for f in files])
    points, sources = K.landmarks(images, margin=0.4, min_prob=0.9)
    assert sources.count("mtcnn") >= 3
    for pts, src in zip(points, sources):
        le, re, nose, lm, rm = pts
        assert le[0] < re[0] and lm[0] < rm[0] and max(le[1], re[1]) < nose[1] < min(lm[1], rm[1])
        masks = K.region_masks(pts, 64, 64)
        for (x, y), name in zip(pts.astype(int), ["eyes", "eyes", "nose", "mouth", "mouth"]):
            assert masks[name][y, x], (src, name)


# ----------------------------------------------------------------------------- balancing
def test_inverse_weights_equal_sklearns_balanced_weights():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0, 0, 0, 0, 1, 1, 3, 3, 3, 3, 3, 3])      # class 2 absent
    w = B.class_weights(y, 4, "inverse")
    present = np.unique(y)
    assert np.allclose(w[present], compute_class_weight("balanced", classes=present, y=y))
    assert w[2] == 0 and B.class_weights(y, 4, "none") is None
    s = B.class_weights(y, 4, "inverse_sqrt")
    assert np.isclose((s[y]).sum(), len(y)) and s[1] > s[0] > s[3]


def test_oversampled_epoch_has_near_uniform_classes_and_is_seeded():
    y = np.repeat([0, 1, 2], [900, 90, 10])
    order = B.epoch_order(y, "oversample", torch.Generator().manual_seed(3))
    freq = np.bincount(y[order], minlength=3) / len(order)
    assert len(order) == len(y) and np.allclose(freq, 1 / 3, atol=0.05)
    again = B.epoch_order(y, "oversample", torch.Generator().manual_seed(3))
    assert np.array_equal(order, again)
    plain = B.epoch_order(y, "none", torch.Generator().manual_seed(3))
    assert np.array_equal(np.sort(plain), np.arange(len(y)))


def test_balanced_training_resumes_exactly(tmp_path):
    split = _quadrant_task(n=96, size=16, square=3)
    split.targets[split.train[:10]] = 2                      # a sparse third class
    params = {**PARAMS, "epochs": 4, "augment": True, "balance": {"weights": "inverse", "sampler": "oversample"}}
    aug = {"rotation": 10.0, "shift": 0.1, "crop": 0.1, "flip": True}
    full = _model(3)
    h_full = fit(full, split, params, aug, np.arange(3.0), tmp_path / "a.pt", seed=1, **QUIET)
    part = _model(3)
    fit(part, split, {**params, "epochs": 2}, aug, np.arange(3.0), tmp_path / "b.pt", seed=1, **QUIET)
    resumed = _model(3, seed=7)
    h_res = fit(resumed, split, params, aug, np.arange(3.0), tmp_path / "b.pt", seed=1, **QUIET)
    assert h_res["history"] == h_full["history"]
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    plain = _model(3)
    h_plain = fit(plain, split, {**params, "balance": {}}, aug, np.arange(3.0), tmp_path / "c.pt", seed=1, **QUIET)
    assert h_plain["history"] != h_full["history"]           # the setting does change training


def test_balance_is_keyed_only_when_set(home):
    from cascade import config as C
    from cascade.stages import plan as P

    from conftest import FAST

    base = P.build(C.load(FAST + [f"home={home}"]))
    same = P.build(C.load(FAST + [f"home={home}", "balance.weights=none", "balance.stages=all"]))
    assert [n.key for n in base.nodes] == [n.key for n in same.nodes]
    over = P.build(C.load(FAST + [f"home={home}", "balance.sampler=oversample"]))
    kinds = [(a.kind, a.key == b.key) for a, b in zip(base.nodes, over.nodes)]
    assert all(same_key == (kind != "target") for kind, same_key in kinds)
    assert over.targets[0].params["balance"] == {"weights": "none", "sampler": "oversample"}
    every = P.build(C.load(FAST + [f"home={home}", "balance.weights=inverse", "balance.stages=all"]))
    assert all(a.key != b.key for a, b in zip(base.nodes[1:], every.nodes[1:]))


# ----------------------------------------------------------------------------- subjects / groups
def test_support_counts_other_subjects_images_near_each_age():
    from cascade.analysis.subjects import age_bins, subject_table, support

    ages = np.array([1, 2, 2, 30, 31, 60])
    subjects = np.array(["a", "a", "b", "b", "c", "c"])
    assert support(ages, subjects, 1).tolist() == [1, 1, 2, 1, 1, 0]
    pred = pd.DataFrame({"subject": subjects, "true_value": ages, "pred_expected": [1, 2, 12, 30, 31, 20.0]})
    t = subject_table(pred, 1)
    assert t["subject"].tolist() == ["c", "b", "a"] and t["rank"].tolist() == [1, 2, 3]
    assert t.loc[0, "MAE"] == 20 and t.loc[0, "support"] == 0.5 and t.loc[0, "ages"] == "31-60"
    binned, labels = age_bins(pred, 10)
    assert binned["true_class"].tolist() == [0, 0, 0, 3, 3, 6] and binned["pred_class"].tolist()[2] == 1
    assert labels["lo"][:2] == [0, 10] and labels["hi"][-1] == 69


def test_thesis_table6_gives_the_precision_and_recall_it_quotes():
    from cascade.analysis.groups import thesis_rows

    t = thesis_rows(["0-12", "15-20", "25-100"]).set_index("group")
    assert t.loc["0-12", "precision"] == pytest.approx(0.95, abs=0.01)       # "0.95 and 0.98"
    assert t.loc["0-12", "recall"] == pytest.approx(0.98, abs=0.01)
    assert t.loc["25-100", "recall"] == pytest.approx(0.92, abs=0.005)        # "recall slightly drops to 0.92"
    from cascade.analysis.groups import THESIS_TABLE6

    cm = np.asarray(THESIS_TABLE6)
    assert np.trace(cm) / cm.sum() == pytest.approx(0.9212, abs=1e-4)      # the text says 92.59%


# ----------------------------------------------------------------------------- commands (FAST)
@pytest.fixture(scope="module")
def shared_home(suite_home, tmp_path_factory):
    """One store for the command tests: the imdb and agedb stages are trained once, as a user's
    store reuses them across analyses."""
    new = tmp_path_factory.mktemp("analysis") / "home"
    new.mkdir()
    (new / "demo").symlink_to(suite_home / "demo")
    return new


def _cli(home, tmp_path, *words):
    from cascade.cli import main

    from conftest import FAST

    assert main([*words, *FAST, f"home={home}", f"run.results_dir={tmp_path / 'results'}", "--quiet"]) == 0
    (folder,) = (tmp_path / "results").iterdir()
    readme = (folder / "README.md").read_text()
    assert "synthetic data" in readme
    for png in folder.glob("figures/*.png"):
        assert png.with_suffix(".pdf").exists()
    return folder, readme


def test_explain_cam_command(shared_home, tmp_path):
    folder, readme = _cli(shared_home, tmp_path, "explain", "cam", "cam.images=3", "cam.target=expected")
    assert (folder / "figures" / "cam_grid.png").exists()
    summary = pd.read_csv(folder / "cam_summary.csv")
    assert summary["model"].tolist() == ["uniform map (area share)", "demo: pretrained",
                                         "demo: pretrained → imdb → agedb"]
    assert summary["target"].tolist()[1:] == ["embedding", "expected"]
    shares = summary[[f"{r} %" for r in K.REGIONS]].fillna(0).sum(axis=1) / 100
    assert np.allclose(shares[shares > 0], 1.0) and (summary["images"] == 3).all()
    images = pd.read_csv(folder / "cam_images.csv")
    assert set(images["landmarks"]) <= {"mtcnn", "template"} and len(images) == 9


def test_analyse_groups_command(shared_home, tmp_path):
    folder, readme = _cli(shared_home, tmp_path, "analyse", "groups")
    groups = pd.read_csv(folder / "groups.csv")
    assert groups["group"].tolist()[:3] == ["0-12", "15-20", "25-100"]
    confusion = pd.read_csv(folder / "confusion.csv", index_col=0)
    assert int(confusion.iloc[:3, :3].to_numpy().sum()) == groups["images"].iloc[:3].sum()
    assert "recall" in confusion.columns and "precision" in confusion.index
    assert (folder / "figures" / "confusion.pdf").exists() and (folder / "figures" / "groups.png").exists()


def test_analyse_distributions_command(shared_home, tmp_path):
    folder, readme = _cli(shared_home, tmp_path, "analyse", "distributions")
    ages = pd.read_csv(folder / "ages.csv")
    assert ages["dataset"].tolist() == ["imdb", "agedb", "fgnet"]
    groups = pd.read_csv(folder / "adience_groups.csv")
    assert groups["share %"].sum() == pytest.approx(100)
    assert (folder / "figures" / "age_distributions.png").exists()
    assert (folder / "figures" / "adience_groups.pdf").exists()
    # `cascade report` of an analysis folder runs the analysis again into the same folder
    before = sorted(p.name for p in folder.parent.iterdir())
    (folder / "ages.csv").unlink()
    from cascade.cli import main
    assert main(["report", str(folder)]) == 0
    assert (folder / "ages.csv").exists() and sorted(p.name for p in folder.parent.iterdir()) == before
    assert "environment" in json.loads((folder / "run.json").read_text())


def test_analyse_subjects_command_compares_balance_settings(shared_home, tmp_path):
    folder, readme = _cli(shared_home, tmp_path, "analyse", "subjects", "balance.sampler=oversample")
    settings = pd.read_csv(folder / "settings.csv")
    assert settings["balance"].tolist() == ["none", "weights=none, sampler=oversample (target)"]
    subjects = pd.read_csv(folder / "subjects.csv", dtype={"subject": str})
    assert len(subjects) == 82 and subjects["MAE"].is_monotonic_decreasing
    assert "MAE (weights=none, sampler=oversample (target))" in subjects.columns
    assert (folder / "figures" / "hard_subjects_0.png").exists() and (folder / "hard_subjects_1.md").exists()
    assert "Spearman" in readme and "002, 003, 004, 005" in readme
