"""Trainer: exact resume from a checkpoint, head-only fast path equal to the slow path,
augmentation shape, and learning on a tiny learnable task."""
import numpy as np
import pytest
import torch

from cascade.models import AgeModel, build_backbone
from cascade.train.augment import random_affine
from cascade.train.trainer import Split, fit, predict_proba

AUG = {"rotation": 10.0, "shift": 0.1, "crop": 0.1, "flip": True}


def _data(n=96, size=16, classes=4, seed=0):
    """Brightness encodes the class: learnable in a few epochs by a tiny CNN."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = (y[:, None, None, None] * 60 + rng.integers(0, 40, (n, size, size, 3))).astype(np.uint8)
    idx = np.arange(n)
    return Split(x, y, idx[: n * 3 // 4], idx[n * 3 // 4:])


def _model(classes=4, seed=0):
    torch.manual_seed(seed)
    return AgeModel(build_backbone("demo"), classes, [16], 0.1)


PARAMS = {"lr": 3e-3, "batch_size": 16, "epochs": 4, "patience": 1, "lr_factor": 0.5,
          "mode": "full", "augment": True}


def test_resume_after_interruption_is_bit_exact(tmp_path):
    split, values = _data(), np.arange(4.0)
    full = _model()
    h_full = fit(full, split, PARAMS, AUG, values, tmp_path / "a.pt", seed=1, log=lambda m: None)

    part = _model()
    fit(part, split, {**PARAMS, "epochs": 2}, AUG, values, tmp_path / "b.pt", seed=1, log=lambda m: None)
    resumed = _model(seed=99)             # a fresh process: different init, state comes from ckpt
    h_res = fit(resumed, split, PARAMS, AUG, values, tmp_path / "b.pt", seed=1, log=lambda m: None)
    assert h_res["history"] == h_full["history"]
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_training_learns_a_learnable_task(tmp_path):
    split, values = _data(n=160), np.arange(4.0)
    model = _model()
    before = predict_proba(model, split.images, split.val, "cpu")
    fit(model, split, {**PARAMS, "epochs": 8}, AUG, values, tmp_path / "c.pt", seed=0, log=lambda m: None)
    after = predict_proba(model, split.images, split.val, "cpu")
    y = split.targets[split.val]
    mae = lambda p: np.abs(p @ values - y).mean()
    assert mae(after) < 0.5 * mae(before)
    assert np.allclose(after.sum(1), 1, atol=1e-5)


def test_head_only_fast_path_equals_slow_path(tmp_path):
    """Mode a without augmentation trains on features computed once; the slow path recomputes
    the frozen body every batch.  Same predictions."""
    split, values = _data(), np.arange(4.0)
    head = {**PARAMS, "mode": "head", "augment": False}
    fast = _model()
    fit(fast, split, head, AUG, values, tmp_path / "f.pt", seed=2, log=lambda m: None)
    slow = _model()
    import cascade.train.trainer as T
    orig = T.embed
    T.embed = None                          # any use of the cache would now fail
    try:
        head_aug_free = {**head, "augment": True}
        fit(slow, split, head_aug_free, {**AUG, "rotation": 0.0, "shift": 0.0, "crop": 0.0, "flip": False},
            values, tmp_path / "s.pt", seed=2, log=lambda m: None)
    finally:
        T.embed = orig
    pf = predict_proba(fast, split.images, split.val, "cpu")
    ps = predict_proba(slow, split.images, split.val, "cpu")
    assert np.allclose(pf, ps, atol=1e-4)
    # the frozen body really is unchanged
    ref = _model()
    for (k, a), b in zip(ref.body.state_dict().items(), fast.body.state_dict().values()):
        assert torch.equal(a, b), k


def test_augmentation_keeps_shape_and_is_seeded():
    x = torch.rand(5, 3, 20, 20)
    a = random_affine(x, torch.Generator().manual_seed(0), **AUG)
    b = random_affine(x, torch.Generator().manual_seed(0), **AUG)
    assert a.shape == x.shape and torch.equal(a, b)
    ident = random_affine(x, torch.Generator().manual_seed(0), 0.0, 0.0, 0.0, False)
    assert torch.allclose(ident, x, atol=1e-5)


def test_select_keeps_the_named_epoch(tmp_path):
    """`select=best_mae` leaves the weights of the epoch with the lowest validation MAE (their
    predictions reproduce that MAE); `last` keeps the final epoch; best_* without validation
    rows keeps the last epoch and says so."""
    split, values = _data(), np.arange(4.0)
    y = split.targets[split.val]
    params = {**PARAMS, "epochs": 5, "lr": 3e-2}
    best = _model()
    h = fit(best, split, {**params, "select": "best_mae"}, AUG, values, tmp_path / "d.pt", seed=2, log=lambda m: None)
    maes = [r["val_mae"] for r in h["history"]]
    assert h["kept_epoch"] == 1 + int(np.argmin(maes))
    kept = np.abs(predict_proba(best, split.images, split.val, "cpu") @ values - y).mean()
    assert np.isclose(kept, min(maes), atol=1e-5)

    last = _model()
    h = fit(last, split, {**params, "select": "last"}, AUG, values, tmp_path / "e.pt", seed=2, log=lambda m: None)
    assert h["kept_epoch"] == 5
    final = np.abs(predict_proba(last, split.images, split.val, "cpu") @ values - y).mean()
    assert np.isclose(final, h["history"][-1]["val_mae"], atol=1e-5)

    # no validation rows (a fold with one training subject): the last epoch is kept, and said
    no_val = Split(split.images, split.targets, split.train, split.val[:0])
    said = []
    h = fit(_model(), no_val, {**params, "select": "best_loss", "early_stop": 1}, AUG, values, tmp_path / "f.pt",
            seed=2, log=said.append)
    assert h["select"] == "last (no validation rows)" and h["kept_epoch"] == 5
    assert any("keeping the last epoch" in m for m in said)


@pytest.mark.parametrize("loss,options", [("dldl", {"sigma": 0.5}), ("mean_variance", {})])
def test_every_loss_trains(tmp_path, loss, options):
    split, values = _data(n=160), np.arange(4.0)
    model = _model()
    before = predict_proba(model, split.images, split.val, "cpu")
    fit(model, split, {**PARAMS, "epochs": 8, "loss": loss, "loss_options": options}, AUG, values,
        tmp_path / "l.pt", seed=0, log=lambda m: None)
    after = predict_proba(model, split.images, split.val, "cpu")
    y = split.targets[split.val]
    mae = lambda p: np.abs(p @ values - y).mean()
    assert mae(after) < 0.5 * mae(before)


def test_a_two_stage_cascade_beats_training_the_target_alone(tmp_path):
    """Fine-tuning first on a larger related set, then on a small target, gives a lower target
    validation MAE than the same target training from the pretrained (random) model."""
    source, values = _data(n=320, seed=1), np.arange(4.0)
    target = _data(n=40, seed=2)
    quiet = dict(log=lambda m: None)
    params = {**PARAMS, "epochs": 2, "select": "last"}

    cascaded = _model()
    fit(cascaded, source, {**params, "epochs": 6}, AUG, values, tmp_path / "s.pt", seed=0, **quiet)
    cascaded.reset_classifier(4)
    fit(cascaded, target, params, AUG, values, tmp_path / "t1.pt", seed=0, **quiet)
    alone = _model()
    fit(alone, target, params, AUG, values, tmp_path / "t2.pt", seed=0, **quiet)

    y = target.targets[target.val]
    mae = lambda m: np.abs(predict_proba(m, target.images, target.val, "cpu") @ values - y).mean()
    assert mae(cascaded) < 0.75 * mae(alone)          # measured: 0.50 vs 1.00


def test_mixed_precision_trains_and_resumes_exactly(tmp_path):
    """`amp` (bfloat16 autocast on the CPU; float16 + loss scaling on CUDA) still learns, and a
    run interrupted after its checkpoint resumes to the uninterrupted run's history and weights."""
    split, values = _data(n=160), np.arange(4.0)
    params = {**PARAMS, "epochs": 6, "amp": "bfloat16"}
    quiet = dict(log=lambda m: None)
    model = _model()
    before = predict_proba(model, split.images, split.val, "cpu")
    h_full = fit(model, split, params, AUG, values, tmp_path / "a.pt", seed=0, **quiet)
    y = split.targets[split.val]
    mae = lambda p: np.abs(p @ values - y).mean()
    assert mae(predict_proba(model, split.images, split.val, "cpu")) < 0.5 * mae(before)

    part = _model()
    fit(part, split, {**params, "epochs": 3}, AUG, values, tmp_path / "b.pt", seed=0, **quiet)
    resumed = _model(seed=5)
    h_res = fit(resumed, split, params, AUG, values, tmp_path / "b.pt", seed=0, **quiet)
    assert h_res["history"] == h_full["history"]
    for (k, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_gpu_settings_are_resolved_per_device_and_keyed_only_off_the_cpu_defaults():
    """AMP, channels_last and cuDNN autotuning: nothing on the CPU by default (CPU keys stay what
    they were), bfloat16 + channels_last + autotuning on a GPU, autotuning off when deterministic;
    `on` / `off` force them.  The GPU count is faked: the rule is plain arithmetic."""
    from cascade import config as C
    from cascade.stages import plan as P

    def settings(*words, gpus=0):
        return P.accelerator_settings(C.load(list(words)), gpus=gpus)

    assert settings() == {} and settings("devices=cpu", gpus=2) == {}
    assert settings("train.amp=on") == {"amp": "bfloat16"}
    assert settings("train.channels_last=on") == {"channels_last": True}
    assert settings(gpus=1) == {"amp": "bfloat16", "channels_last": True, "cudnn_benchmark": True}
    assert settings("train.amp=off", "train.channels_last=off", "train.deterministic=true", gpus=1) == \
        {"channels_last": False, "cudnn_benchmark": False}
    with pytest.raises(ValueError, match="devices=cuda: no CUDA device"):
        settings("devices=cuda")


@pytest.mark.parametrize("augment", [False, True])
def test_gradient_accumulation_keeps_the_effective_batch(tmp_path, augment):
    """The retry of a fold out of GPU memory (`accumulate=2`): each batch forwarded in two halves
    with their gradients summed is the same step as the whole batch when nothing depends on the
    batch's composition (mode a: the body, its BatchNorm included, is frozen), with augmentation
    drawn for the whole batch as before; the history says which epochs accumulated."""
    split, values = _data(), np.arange(4.0)
    params = {**PARAMS, "mode": "head", "augment": augment}
    whole, halves = _model(), _model()
    h1 = fit(whole, split, params, AUG, values, tmp_path / "a.pt", seed=2, log=lambda m: None)
    h2 = fit(halves, split, params, AUG, values, tmp_path / "b.pt", seed=2, log=lambda m: None, accumulate=2)
    for (k, a), b in zip(whole.state_dict().items(), halves.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)
    assert all(r["accumulate"] == 2 for r in h2["history"]) and "accumulate" not in h1["history"][0]
    assert h2["history"][-1]["train_loss"] == pytest.approx(h1["history"][-1]["train_loss"], rel=1e-4)


def test_the_feed_gives_the_batches_in_order_and_passes_errors_on():
    """feed.Feed: the gathered batches, in the caller's order, from a background thread; an
    error while gathering is raised in the consumer; an epoch left early stops the thread."""
    import threading

    from cascade.train.feed import Feed

    images = np.random.default_rng(0).integers(0, 255, (50, 8, 8, 3), dtype=np.uint8)
    batches = [np.array([3, 1, 4]), np.array([15, 9]), np.array([26, 5, 35, 8])]
    got = list(Feed(images, batches, "cpu"))
    assert all(torch.equal(g, torch.from_numpy(images[b])) for g, b in zip(got, batches))
    with pytest.raises(IndexError):
        list(Feed(images, [np.array([1]), np.array([99])], "cpu"))
    for _ in Feed(images, [np.array([i]) for i in range(50)], "cpu", depth=1):
        break
    assert not any(t.name == "cascade-feed" for t in threading.enumerate())
