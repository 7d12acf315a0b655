"""Degenerate shapes that real folds produce: a trailing batch of one (BatchNorm cannot train
on it: a real FG-NET LOPO lost 4 of 82 folds), a single training subject, a validation share
that rounds below one image, a class with one image in a stratified split, a subject with a
single photo, and a fold whose training rows lack the test subject's classes."""
import numpy as np
import pandas as pd
import pytest
import torch

from cascade import config as C
from cascade.models import AgeModel, build_backbone
from cascade.models.backbones import BACKBONES
from cascade.protocols import folds, load_protocol, stratified_split, validation_split
from cascade.stages import plan as P
from cascade.stages.execute import FoldJob, ModelSource, run_fold
from cascade.data.datasets import LabelSpace
from cascade.train.trainer import Split, fit, predict_proba, train_batches

from conftest import FAST

AUG = {"rotation": 10.0, "shift": 0.1, "crop": 0.1, "flip": True}
PARAMS = {"lr": 1e-3, "batch_size": 2, "epochs": 1, "patience": 1, "lr_factor": 0.5, "mode": "full",
          "augment": True, "select": "best_mae"}


def test_a_trailing_batch_of_one_joins_the_batch_before_it():
    order = np.arange(2 * 16 + 1)
    sizes = [len(b) for b in train_batches(order, 16)]
    assert sizes == [16, 17]
    assert np.array_equal(np.concatenate(train_batches(order, 16)), order)      # every row, in order
    for n in (32, 34, 47, 15, 1, 0):           # no trailing one: the batches are exactly as before
        assert [len(b) for b in train_batches(np.arange(n), 16)] == [min(16, n - i) for i in range(0, n, 16)]


def _bn_backbones():
    names = [n for n in BACKBONES if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                                         for m in build_backbone(n).body.modules())]
    assert {"demo", "resnet50", "senet50", "mobilefacenet", "inception_resnet_v1"} <= set(names)
    return names + ["timm:resnet10t"]


#: the smallest input each body accepts (MobileFaceNet centre-crops 112 x 96; Inception-ResNet-v1
#: reduces by 32 with valid convolutions)
_SIZE = {"mobilefacenet": 112, "inception_resnet_v1": 80}


@pytest.mark.parametrize("backbone", _bn_backbones())
@pytest.mark.parametrize("mode,augment", [("full", True), ("head", True), ("head", False)])
def test_every_batchnorm_backbone_trains_on_k_batches_plus_one(tmp_path, backbone, mode, augment):
    """k x batch + 1 training images: full fine-tuning, head-only with the body run per batch
    (augmented), and head-only on cached features; evaluation still sees every image."""
    size = _SIZE.get(backbone, 32)
    rng = np.random.default_rng(0)
    n_train, n_val = 2 * PARAMS["batch_size"] + 1, 3
    images = rng.integers(0, 255, (n_train + n_val, size, size, 3), dtype=np.uint8)
    targets = rng.integers(0, 3, n_train + n_val)
    split = Split(images, targets, np.arange(n_train), np.arange(n_train, n_train + n_val))
    torch.manual_seed(0)
    model = AgeModel(build_backbone(backbone), 3, [8])
    h = fit(model, split, {**PARAMS, "mode": mode, "augment": augment}, AUG, np.arange(3.0),
            tmp_path / "c.pt", seed=0, log=lambda m: None)
    assert len(h["history"]) == 1 and np.isfinite(h["history"][0]["train_loss"])
    probs = predict_proba(model, images, np.arange(len(images)), "cpu")
    assert probs.shape == (len(images), 3) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_resume_stays_exact_with_a_merged_batch(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (40, 16, 16, 3), dtype=np.uint8)
    split = Split(images, rng.integers(0, 3, 40), np.arange(33), np.arange(33, 40))    # 33 = 2 x 16 + 1
    params = {**PARAMS, "batch_size": 16, "epochs": 3}

    def model(seed=0):
        torch.manual_seed(seed)
        return AgeModel(build_backbone("demo"), 3, [8])
    full = model()
    h_full = fit(full, split, params, AUG, np.arange(3.0), tmp_path / "a.pt", seed=1, log=lambda m: None)
    fit(model(), split, {**params, "epochs": 1}, AUG, np.arange(3.0), tmp_path / "b.pt", seed=1, log=lambda m: None)
    resumed = model(7)
    h_res = fit(resumed, split, params, AUG, np.arange(3.0), tmp_path / "b.pt", seed=1, log=lambda m: None)
    assert h_res["history"] == h_full["history"]
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), resumed.state_dict().values()))


def test_one_training_image_with_a_training_batchnorm_is_a_clear_error(tmp_path):
    images = np.zeros((3, 16, 16, 3), np.uint8)
    split = Split(images, np.array([0, 1, 2]), np.array([0]), np.array([1, 2]))
    with pytest.raises(ValueError, match="single image.*BatchNorm.*mode=head"):
        fit(AgeModel(build_backbone("demo"), 3, [8]), split, PARAMS, AUG, np.arange(3.0), tmp_path / "c.pt", seed=0)
    # the head alone trains on it
    fit(AgeModel(build_backbone("demo"), 3, [8]), split, {**PARAMS, "mode": "head"}, AUG, np.arange(3.0),
        tmp_path / "d.pt", seed=0, log=lambda m: None)


def test_validation_share_of_degenerate_training_rows():
    # one training subject: no subject-exclusive validation share is possible -> none, not a leaky one
    tr, va = validation_split(np.array(["a"] * 5), 0.1, 0, by_subject=True)
    assert list(tr) == [0, 1, 2, 3, 4] and len(va) == 0
    # one image: nothing to hold out
    tr, va = validation_split(np.array(["a"]), 0.1, 0, by_subject=False)
    assert list(tr) == [0] and len(va) == 0
    # a share that rounds below one image (0.1 x 3) still holds out one subject
    tr, va = validation_split(np.array(["a", "b", "c"]), 0.1, 0, by_subject=True)
    assert len(va) == 1 and len(tr) == 2
    tr, va = validation_split(np.array(["a", "a", "b"]), 0.1, 0, by_subject=True)
    assert set(np.array(["a", "a", "b"])[va]).isdisjoint(np.array(["a", "a", "b"])[tr]) and len(va) >= 1


def test_stratified_split_with_single_image_classes_and_few_subjects():
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3])           # class 3 has one image
    rest, held = stratified_split(y, np.arange(10).astype(str), 0.2, 0)
    assert 9 in rest and len(held) == 2 and not set(rest) & set(held)
    # a share below one row per class (0.05 x 10): one row held out, not scikit-learn's error
    rest, held = stratified_split(y, np.arange(10).astype(str), 0.05, 0)
    assert len(held) == 1 and len(rest) == 9
    # subjects with several images, fewer subjects than 1 / frac folds: as many folds as subjects
    groups = np.array(list("aabbccddee"))
    rest, held = stratified_split(y, groups, 0.05, 0)
    assert len(held) and set(groups[held]).isdisjoint(groups[rest])
    # a single subject: nothing can be held out subject-exclusively
    rest, held = stratified_split(y, np.array(["a"] * 10), 0.2, 0)
    assert len(held) == 0 and len(rest) == 10
    # the validation share of a stratified protocol goes through the same rules
    tr, va = validation_split(np.array(["a"] * 4), 0.1, 0, by_subject=True, labels=np.array([0, 0, 1, 1]))
    assert len(va) == 0


def _fold_job(tmp_path, frame_subjects, ages, test_subject, params=None):
    """One LOPO fold of a tiny dataset through the real fold runner (run_fold)."""
    n = len(ages)
    rng = np.random.default_rng(0)
    cache = tmp_path / "cache"
    cache.mkdir(parents=True)
    np.save(cache / "images.npy", rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8))
    classes = tuple(int(a) for a in np.unique(ages))
    labels = LabelSpace(classes, classes)
    values = labels.values
    targets = labels.encode(np.asarray(ages), np.asarray(ages))
    subjects = np.asarray(frame_subjects)
    test = np.flatnonzero(subjects == test_subject)
    train = np.flatnonzero(subjects != test_subject)
    cfg = C.load(["devices=cpu", "head.hidden=8"])
    out = tmp_path / "folds" / f"{test_subject}.csv"
    job = FoldJob(test_subject, train, test, str(out), str(cache), targets, subjects, labels,
                  {**PARAMS, **(params or {}), "val_fraction": 0.2}, cfg,
                  ModelSource("demo", {"hidden": [8], "dropout": 0.0, "reinit": "output"}),
                  ages=np.asarray(ages, float))
    run_fold(job, 1, False)
    return pd.read_csv(out, dtype={"subject": str, "fold": str}), values


def test_a_fold_whose_training_rows_lack_the_test_subjects_classes(tmp_path):
    """The label space is the dataset's: a test subject aged where no training image is still
    gets a probability over every class, and the fold finishes."""
    subjects = ["a"] * 4 + ["b"] * 4 + ["c"] * 4 + ["old"] * 2
    ages = [10, 11, 12, 13] * 3 + [70, 71]
    pred, values = _fold_job(tmp_path, subjects, ages, "old")
    assert len(pred) == 2 and set(pred["true_value"]) == {70.0, 71.0}
    probs = pred[[f"p{i}" for i in range(len(values))]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (pred["base_class"] < np.searchsorted(values, 70)).all()     # the commonest training class


def test_a_subject_with_a_single_photo_and_a_fold_with_one_training_subject(tmp_path):
    # LOPO where one subject has a single photo: its fold tests one image
    pred, _ = _fold_job(tmp_path / "one", ["a"] * 5 + ["b"] * 5 + ["solo"], list(range(10, 20)) + [15], "solo")
    assert len(pred) == 1 and pred["subject"].iloc[0] == "solo"
    # the training rows of a fold hold one subject: no validation share, the last epoch kept
    pred, _ = _fold_job(tmp_path / "two", ["a"] * 5 + ["b"] * 3, list(range(10, 18)), "b")
    hist = (tmp_path / "two" / "folds" / "b.history.json").read_text()
    assert len(pred) == 3 and "last (no validation rows)" in hist


def test_lopo_folds_equal_leave_one_group_out_with_single_photo_subjects():
    from sklearn.model_selection import LeaveOneGroupOut
    frame = pd.DataFrame({"subject": ["a", "a", "b", "c", "c", "c", "d"]})
    ours = folds(frame, load_protocol("lopo"), 0)
    ref = list(LeaveOneGroupOut().split(np.zeros(7), groups=frame["subject"]))
    assert [(list(a), list(b)) for _, a, b in ours] == [(list(a), list(b)) for a, b in ref]


def test_stage_mode_per_stage_and_the_global_override(tmp_path):
    base = ["home=" + str(tmp_path), "data.synth.scale=0.05", "stage=imdb", "target=fgnet"]
    plan = P.build(C.load(base))
    keys = {n.label: n.key for n in plan.nodes}
    mixed = P.build(C.load(base + ["stages.fgnet.mode=head"]))
    mk = {n.label: n.key for n in mixed.nodes}
    modes = {n.label: n.params.get("mode") for n in mixed.nodes}
    assert mk["pretrained → imdb"] == keys["pretrained → imdb"]         # the full IMDB stage is reused
    assert modes["pretrained → imdb"] == "full" and modes["pretrained → imdb ⇒ fgnet"] == "head"
    assert mk["pretrained → imdb ⇒ fgnet"] != keys["pretrained → imdb ⇒ fgnet"]
    assert mk["pretrained ⇒ fgnet"] == keys["pretrained ⇒ fgnet"]       # already head-only by the thesis rule
    head = next(n for n in mixed.nodes if n.label == "pretrained → imdb ⇒ fgnet").params
    assert head["batch_size"] == C.stage_params(C.load(base), "fgnet", "head")["batch_size"]   # mode a's own
    # a full target straight from the pretrained model; train.mode still overrides every stage
    full = {n.label: n.params.get("mode") for n in P.build(C.load(base + ["stages.fgnet.mode=full"])).nodes}
    assert full["pretrained ⇒ fgnet"] == "full"
    forced = {n.label: n.params.get("mode") for n in
              P.build(C.load(base + ["stages.fgnet.mode=head", "train.mode=full"])).nodes}
    assert forced["pretrained → imdb ⇒ fgnet"] == "full"
    with pytest.raises(C.ConfigError, match="stages.fgnet.mode"):
        C.load(["stages.fgnet.mode=frozen"])
    assert "stages.fgnet.mode=None" in C.list_keys(C.load())


def test_the_batch_of_one_configuration_runs_end_to_end_and_a_head_only_target_reuses_the_stage(home, capsys):
    """configs/batch-of-one.yaml: the demo CNN at 8 px (a 1 x 1 last feature map, as in the real
    failure) with FG-NET folds at batch 13; at this suite size every LOPO fold ends in a batch of
    one, and the IMDB stage is given a batch size that leaves one too.  Every fold finishes.  Then `stages.fgnet.mode=head` reuses the full IMDB stage and
    trains only heads on the folds."""
    from pathlib import Path
    from cascade.cli import main
    from cascade.protocols import folds as protocol_folds
    from cascade.stages.execute import fold_split

    from cascade.stages.execute import stage_split

    settings = Path(__file__).resolve().parents[1] / "configs" / "batch-of-one.yaml"
    args = [*FAST, str(settings), f"home={home}", f"run.results_dir={home}/results"]
    plan = P.build(C.load(args))
    imdb = plan.nodes[1]                   # the intermediate stage ends in a batch of one too
    n_imdb = len(stage_split(plan.tables["imdb"].frame["subject"].to_numpy(), imdb.params, 0)[0])
    args.append(f"backbones.demo.stages.imdb.batch_size={n_imdb - 1}")
    plan = P.build(C.load(args))
    target = plan.targets[-1]
    frame = plan.tables["fgnet"].frame
    subjects = frame["subject"].to_numpy()
    sizes = [len(fold_split(subjects, tr, target.params, 0, name)[0])
             for name, tr, _ in protocol_folds(frame, target.info["protocol"], 0)]
    assert sum(n % 13 == 1 for n in sizes) >= len(sizes) // 2          # the configuration hits the case
    assert main(["run", *args, "--quiet"]) == 0
    assert len(list((home / "stages" / target.key / "folds").glob("*.csv"))) == len(sizes)

    mixed = P.build(C.load(args + ["stages.fgnet.mode=head"]))
    status = {n.label: P.status(mixed, n) for n in mixed.nodes}
    assert status["pretrained → imdb"] == "cached" and status["pretrained → imdb ⇒ fgnet"] == "will run"
    capsys.readouterr()
    assert main(["run", *args, "stages.fgnet.mode=head", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| pretrained → imdb | head |" in out
