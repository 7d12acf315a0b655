"""The related studies' training schedules: body frozen for the first epochs, only the top N
layers trained, AdamW with weight decay, a floor on the reduce-on-plateau schedule, and early
stopping that a resumed run repeats exactly."""
import numpy as np
import pytest
import torch

from cascade import config as C
from cascade.train import schedule as S
from cascade.train.trainer import fit

from test_trainer import AUG, PARAMS, _data, _model


def _body_state(model):
    return {k: v.clone() for k, v in model.body.state_dict().items()}


def test_freeze_epochs_trains_the_head_first_then_all(tmp_path):
    split, values = _data(), np.arange(4.0)
    model = _model()
    before = _body_state(model)
    head_before = model.classifier.weight.detach().clone()
    fit(model, split, {**PARAMS, "epochs": 1, "freeze_epochs": 1}, AUG, values, tmp_path / "a.pt", seed=0,
        log=lambda m: None)
    assert all(torch.equal(before[k], v) for k, v in model.body.state_dict().items())      # BN stats too
    assert not torch.equal(head_before, model.classifier.weight)
    fit(model, split, {**PARAMS, "epochs": 2, "freeze_epochs": 1}, AUG, values, tmp_path / "a.pt", seed=0,
        log=lambda m: None)                                                            # epoch 2 resumes
    assert not torch.equal(before["0.0.weight"], model.body.state_dict()["0.0.weight"])


def test_only_the_top_layers_train(tmp_path):
    split, values = _data(), np.arange(4.0)
    model = _model()
    layers = S.layers(model.body)
    before = [[p.detach().clone() for p in m.parameters(recurse=False)] for m in layers]
    stats = model.body[0][1].running_mean.clone()
    fit(model, split, {**PARAMS, "epochs": 1, "trainable_layers": 2}, AUG, values, tmp_path / "b.pt", seed=0,
        log=lambda m: None)
    changed = [any(not torch.equal(a, b) for a, b in zip(old, m.parameters(recurse=False)))
               for old, m in zip(before, layers)]
    assert changed == [False] * (len(layers) - 2) + [True, True]
    assert torch.equal(stats, model.body[0][1].running_mean)          # a frozen BN keeps its statistics


def test_adamw_with_decay_and_a_floor_on_the_schedule():
    model = _model()
    opt = S.optimizer(model, {**PARAMS, "optimizer": "adamw", "weight_decay": 0.05})
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["weight_decay"] == 0.05
    assert len(opt.param_groups[0]["params"]) == len(list(model.parameters()))
    head = S.optimizer(model, {**PARAMS, "mode": "head"})
    assert type(head) is torch.optim.Adam
    assert len(head.param_groups[0]["params"]) == len(list(model.parameters())) - len(list(model.body.parameters()))


def test_lr_floor(tmp_path):
    split, values = _data(), np.arange(4.0)
    h = fit(_model(), split, {**PARAMS, "epochs": 6, "patience": 0, "lr_factor": 0.1, "lr_min": 1e-4,
                              "select": "last"}, AUG, values, tmp_path / "c.pt", seed=0, log=lambda m: None)
    assert min(r["lr"] for r in h["history"]) >= 1e-4 - 1e-12


def test_early_stop_and_its_exact_resume(tmp_path):
    split, values = _data(), np.arange(4.0)
    params = {**PARAMS, "epochs": 12, "lr": 0.3, "early_stop": 2, "select": "best_loss"}   # diverges fast
    model = _model()
    h = fit(model, split, params, AUG, values, tmp_path / "d.pt", seed=0, log=lambda m: None)
    n = len(h["history"])
    losses = [r["val_loss"] for r in h["history"]]
    assert n < 12 and n - 1 - int(np.argmin(losses)) == 2
    again = fit(_model(seed=5), split, params, AUG, values, tmp_path / "d.pt", seed=0, log=lambda m: None)
    assert again["history"] == h["history"]                           # resumed: stopped, nothing more
    part = _model()
    fit(part, split, {**params, "epochs": 2}, AUG, values, tmp_path / "e.pt", seed=0, log=lambda m: None)
    resumed = _model(seed=7)
    h2 = fit(resumed, split, params, AUG, values, tmp_path / "e.pt", seed=0, log=lambda m: None)
    assert h2["history"] == h["history"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), resumed.state_dict().values()))


def test_schedule_settings_are_keyed_only_when_set_and_validated():
    cfg = C.load([])
    assert not set(C.SCHEDULE) & set(C.stage_params(cfg, "fgnet", "full"))
    params = C.stage_params(C.load(["train.optimizer=adamw", "train.trainable_layers=8"]), "fgnet", "full")
    assert params["optimizer"] == "adamw" and params["trainable_layers"] == 8
    for bad in ("train.optimizer=sgd", "train.trainable_layers=0", "train.weight_decay=-1"):
        with pytest.raises(C.ConfigError):
            C.load([bad])


# ------------------------------------------------------------------ the related studies' balancing
def test_undersampled_epochs_are_exactly_balanced_and_redrawn():
    from cascade.train import balance as B

    targets = np.repeat([0, 1, 2, 4], [50, 10, 30, 7])
    a = B.epoch_order(targets, "undersample", torch.Generator().manual_seed(1))
    b = B.epoch_order(targets, "undersample", torch.Generator().manual_seed(2))
    assert np.array_equal(np.bincount(targets[a], minlength=5), [7, 7, 7, 0, 7])
    assert len(set(a)) == len(a) and not np.array_equal(np.sort(a), np.sort(b))


def test_cap_and_remove_reduce_the_training_rows_once():
    from cascade.train import balance as B

    targets = np.repeat([0, 1, 2], [100, 20, 30])                # mean count 50
    kept = B.reduce_rows(targets, 0.6, None, seed=0)
    assert np.array_equal(np.bincount(targets[kept]), [30, 20, 30])   # cap ceil(0.6 x 50) = 30
    assert np.array_equal(kept, B.reduce_rows(targets, 0.6, None, seed=0))
    removed = B.reduce_rows(targets, 0.0, B.parse_remove("26:40", np.array([10.0, 26.0, 40.0])), seed=0)
    assert np.array_equal(np.bincount(targets[removed]), [100, 0, 30])   # class nearest 26 loses min(40, 20)
    with pytest.raises(C.ConfigError, match="AGE:N"):
        C.load(["balance.remove=twenty"])


def test_reductions_reach_training_and_keys(tmp_path, monkeypatch):
    from cascade.stages import plan as P
    from cascade.train import balance as B

    split, values = _data(n=120), np.arange(4.0)
    real, kept = B.reduce_rows, []
    monkeypatch.setattr(B, "reduce_rows", lambda *a: kept.append(real(*a)) or kept[-1])
    orders = []
    monkeypatch.setattr(B, "epoch_order", lambda t, r, g: orders.append(len(t)) or np.arange(len(t)))
    fit(_model(), split, {**PARAMS, "epochs": 1, "balance": {"weights": "none", "sampler": "none", "cap": 0.5}},
        AUG, values, tmp_path / "f.pt", seed=0, log=lambda m: None)
    assert len(kept) == 1 and orders == [len(kept[0])] and len(kept[0]) < len(split.train)
    assert not set(C.load([])["balance"]) - {"weights", "sampler", "stages", "cap", "remove", "minority_augment"}
    assert P._balanced(C.load([]), "target") is None
    assert P._balanced(C.load(["balance.cap=0.6"]), "target") == {"weights": "none", "sampler": "none", "cap": 0.6}
    assert P._balanced(C.load(["balance.cap=0.6"]), "train") is None


def test_gradual_unfreezing_cycles_layers_learning_rate_and_stop(tmp_path):
    model = _model()
    params = {**PARAMS, "epochs": 12, "unfreeze": "2:2:0.1:2", "select": "best_loss"}
    sizes = [len(S.trainable_body_layers(model.body, params, e)) for e in range(8)]
    assert sizes == [2, 2, 4, 4, 6, 6, 8, 8]                          # 2 more layers every 2 epochs
    assert [S.cycle_lr(params, e) for e in (0, 1, 2, 4)] == [None, None, pytest.approx(3e-4), pytest.approx(3e-5)]
    split, values = _data(), np.arange(4.0)
    h = fit(model, split, params, AUG, values, tmp_path / "g.pt", seed=0, log=lambda m: None)
    lrs = [r["lr"] for r in h["history"]]
    assert lrs[2] <= 3e-4 + 1e-12 and (len(lrs) < 5 or lrs[4] <= 3e-5 + 1e-12)
    stalled = S.cycles_stalled(h["history"], "val_loss", params)
    assert stalled == (len(h["history"]) < 12)                        # stopped only by stalled cycles
    part = _model()
    fit(part, split, {**params, "epochs": 3}, AUG, values, tmp_path / "h.pt", seed=0, log=lambda m: None)
    resumed = _model(seed=3)
    assert fit(resumed, split, params, AUG, values, tmp_path / "h.pt", seed=0,
               log=lambda m: None)["history"] == h["history"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), resumed.state_dict().values()))


def test_minority_classes_get_stronger_augmentation(tmp_path):
    from cascade.train import balance as B

    targets = np.array([0] * 10 + [1] * 2 + [2] * 6)                 # mean 6: class 1 is a minority
    strength = B.augment_strength(targets, targets, 2.0)
    assert strength.tolist() == [1.0] * 10 + [2.0] * 2 + [1.0] * 6
    assert B.augment_strength(targets, targets, 0.0) is None
    split, values = _data(), np.arange(4.0)
    h = fit(_model(), split, {**PARAMS, "epochs": 1, "balance": {"weights": "none", "sampler": "none",
                                                                  "minority_augment": 2.0}},
            AUG, values, tmp_path / "i.pt", seed=0, log=lambda m: None)
    assert np.isfinite(h["history"][0]["train_loss"])
