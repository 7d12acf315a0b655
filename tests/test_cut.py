"""Partial fine-tuning above a cached cut (`train.cut_cache`), a lower body learning rate
(`train.body_lr`) and flip test-time augmentation (`train.tta`)."""
import numpy as np
import pytest
import torch

from cascade import config as C
from cascade.models.mobilefacenet import MobileFaceNet
from cascade.train import cut as K
from cascade.train import schedule as S
from cascade.train.trainer import cut_of, fit, normalised_batches, predict_proba
from test_trainer import AUG, PARAMS, _data, _model

PARTIAL = {**PARAMS, "trainable_layers": 5, "augment": False}


def test_the_cut_is_below_the_top_layers_and_above_the_rest():
    model = _model()
    steps = K.body_sequence(model.body)
    for k in (1, 3, 5, 9):
        cut = K.cut_index(model.body, k)
        inside = {id(m) for s in steps[cut:] for m in s.modules()}
        below = {id(m) for s in steps[:cut] for m in s.modules()}
        assert {id(m) for m in S.layers(model.body)[-k:]} <= inside       # every trainable layer runs
        assert not any(id(m) in below for m in S.layers(model.body)[-k:])
        if cut + 1 < len(steps):                                          # and the cut is as high as it goes
            higher = {id(m) for s in steps[cut + 1:] for m in s.modules()}
            assert not {id(m) for m in S.layers(model.body)[-k:]} <= higher


def test_mobilefacenets_steps_are_its_forward():
    torch.manual_seed(0)
    body = MobileFaceNet().eval()
    x = torch.randn(2, 3, 112, 112)
    y = x
    for step in K.body_sequence(body):
        y = step(y)
    assert torch.equal(y, body(x)) and y.shape == (2, 128, 1, 1)
    assert K.cut_index(body, 7) == len(K.body_sequence(body)) - 3       # conv2, linear7, linear1


def test_training_above_a_cached_cut_matches_training_through_the_whole_body(tmp_path):
    """Without augmentation the cached path trains the same layers on the same activations: the
    same predictions as recomputing the frozen layers in every step."""
    split, values = _data(), np.arange(4.0)
    slow = _model()
    fit(slow, split, PARTIAL, AUG, values, tmp_path / "a.pt", seed=1, log=lambda m: None)
    fast = _model()
    fit(fast, split, {**PARTIAL, "cut_cache": True}, AUG, values, tmp_path / "b.pt", seed=1, log=lambda m: None)
    cut = cut_of(fast, {**PARTIAL, "cut_cache": True})
    assert cut > 0
    acts = K.prefix_activations(fast, normalised_batches(fast, split.images, np.arange(len(split.images)), "cpu", 64),
                                cut)
    p_slow = predict_proba(slow, split.images, split.val, "cpu")
    p_fast = predict_proba(fast, split.images, split.val, "cpu", features=acts, cut=cut)
    assert np.abs(p_slow - p_fast).max() < 1e-4
    assert np.abs(predict_proba(fast, split.images, split.val, "cpu") - p_fast).max() < 1e-4
    frozen = S.layers(fast.body)[:-PARTIAL["trainable_layers"]]
    untouched = _model()
    for a, b in zip(S.layers(untouched.body)[:len(frozen)], frozen):
        for pa, pb in zip(a.parameters(), b.parameters()):
            assert torch.equal(pa, pb)                                  # nothing below the top K moved


def test_the_cut_cache_with_flips_trains_and_resumes_exactly(tmp_path):
    split, values = _data(), np.arange(4.0)
    params = {**PARTIAL, "augment": True, "cut_cache": True}
    full = _model()
    h_full = fit(full, split, params, AUG, values, tmp_path / "a.pt", seed=1, log=lambda m: None)
    part = _model()
    fit(part, split, {**params, "epochs": 2}, AUG, values, tmp_path / "b.pt", seed=1, log=lambda m: None)
    resumed = _model(seed=7)
    h_res = fit(resumed, split, params, AUG, values, tmp_path / "b.pt", seed=1, log=lambda m: None)
    assert h_res["history"] == h_full["history"]
    no_flip = _model()
    fit(no_flip, split, {**params, "augment": False}, AUG, values, tmp_path / "c.pt", seed=1, log=lambda m: None)
    assert not torch.equal(no_flip.classifier.weight, full.classifier.weight)     # the flips were used


def test_cut_cache_settings_are_checked_before_any_work():
    with pytest.raises(C.ConfigError, match="trainable_layers"):
        C.load(["train.cut_cache=true"])
    with pytest.raises(C.ConfigError, match="freeze_epochs"):
        C.load(["train.cut_cache=true", "train.trainable_layers=4", "train.freeze_epochs=1"])
    with pytest.raises(C.ConfigError, match="body_lr"):
        C.load(["train.body_lr=0"])
    with pytest.raises(C.ConfigError, match="tta"):
        C.load(["train.tta=rotate"])
    with pytest.raises(ValueError, match="chain of steps"):
        K.cut_index(_Branchy(), 1)
    cfg = C.load(["train.cut_cache=true", "train.trainable_layers=4", "train.body_lr=0.1", "train.tta=flip"])
    head = C.stage_params(cfg, "fgnet", "head")
    full = C.stage_params(cfg, "fgnet", "full")
    assert "cut_cache" not in head and "body_lr" not in head and head["tta"] == "flip"
    assert full["cut_cache"] is True and full["body_lr"] == 0.1


class _Branchy(torch.nn.Module):
    """A body whose forward is not a chain of its children."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.a(x) + self.b(x)


def test_body_lr_gives_the_body_its_own_rate_through_the_schedule():
    model = _model()
    opt = S.optimizer(model, {**PARAMS, "body_lr": 0.1})
    head, body = opt.param_groups
    assert body["lr"] == pytest.approx(PARAMS["lr"] * 0.1) and head["lr"] == PARAMS["lr"]
    assert {id(p) for p in body["params"]} == {id(p) for p in model.body.parameters()}
    single = S.optimizer(model, PARAMS)
    assert len(single.param_groups) == 1                         # unset: the thesis's one rate


def test_flip_tta_averages_the_crop_and_its_mirror_image():
    split = _data()
    model = _model().eval()
    rows = split.val
    both = predict_proba(model, split.images, rows, "cpu", tta="flip")
    plain = predict_proba(model, split.images, rows, "cpu")
    mirrored = predict_proba(model, split.images[:, :, ::-1].copy(), rows, "cpu")
    assert np.allclose(both, (plain + mirrored) / 2, atol=1e-6)


def test_real_mobilefacenet_on_real_fgnet_photos_is_the_same_above_a_cut():
    """The real checkpoint on a handful of real FG-NET photographs: the steps above the cut on the
    cached activations give the body's own embedding, and a mirrored photo's cached view is the
    mirrored photo's."""
    from PIL import Image

    from conftest import REFERENCE
    from cascade.models.mobilefacenet import PREPROCESSING, import_mobilefacenet

    ckpt, photos = REFERENCE / "weights" / "mobilefacenet_casia_068.ckpt", REFERENCE / "fgnet" / "images"
    if not ckpt.exists() or not photos.is_dir():
        pytest.skip("the real MobileFaceNet checkpoint or FG-NET photographs are not in ../shared/reference")
    tensors, _ = import_mobilefacenet(ckpt)
    body = MobileFaceNet()
    body.load_state_dict(tensors)
    body.eval()
    names = sorted(p for p in photos.iterdir() if p.suffix.lower() == ".jpg")[:6]
    crops = np.stack([np.asarray(Image.open(p).convert("RGB").resize((112, 112))) for p in names])
    x = PREPROCESSING.apply(torch.from_numpy(crops))

    class Whole(torch.nn.Module):                     # the harness's model around the body
        def __init__(self):
            super().__init__()
            self.body, self.pool = body, torch.nn.Identity()

        def head(self, feats):
            return feats

    model = Whole()
    cut = K.cut_index(body, 15)                        # above the last bottleneck
    acts = torch.from_numpy(K.prefix_activations(model, [x], cut))
    with torch.no_grad():
        whole, mirrored = body(x).flatten(1), body(x.flip(-1)).flatten(1)
        above = K.suffix_logits(model, cut, acts[:, 0])
        above_mirror = K.suffix_logits(model, cut, acts[:, 1])
    assert torch.allclose(above, whole, atol=1e-4) and torch.allclose(above_mirror, mirrored, atol=1e-4)
    assert not torch.allclose(whole, mirrored, atol=1e-3)       # real faces are not symmetric to the bit
