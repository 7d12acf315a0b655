"""Pooled CNN features and regressors under LOPO (thesis Table 5): feature shapes per layer and
pooling, resumable extraction, Table-5 rows for the three feature modes, skipped finished folds,
a failing fold reported while the others finish, and auto-sklearn run for real in its own
environment."""
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cascade import config as C
from cascade.cli import main
from cascade.models import AgeModel, build_backbone
from cascade.regress import engine_env, engines
from cascade.regress import features as Fe
from cascade.regress.run import stage_extractor

from conftest import FAST

#: auto-sklearn's wheel cache: a setting the caller passes (.ci/run sets it), never a guessed path
WHEELS = Path(os.environ.get("CASCADE_AUTOSKLEARN_WHEELS", "/nonexistent"))


def _demo_model(size=16):
    torch.manual_seed(0)
    return AgeModel(build_backbone("demo"), 5, [8])


@pytest.mark.parametrize("mode,dim", [("last:max", 96), ("last:avg", 96), ("first:max", 16), ("first:avg", 16),
                                      ("last:none", 96 * 2 * 2), ("first:none", 16 * 16 * 16)])
def test_feature_shapes_per_layer_and_pooling(mode, dim):
    model = _demo_model()
    x = torch.randn(3, 3, 16, 16)
    feats = Fe.extract_batch(model, x, Fe.Mode.parse(mode))
    assert feats.shape == (3, dim) and feats.dtype == torch.float32


def test_first_layer_is_the_first_conv_after_its_activation():
    """Demo body: conv -> BN -> ReLU is the first layer; its global max equals the hooked one."""
    model = _demo_model().eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        manual = model.body[0](x).amax(dim=(2, 3))
    assert torch.allclose(Fe.extract_batch(model, x, Fe.Mode("first", "max")), manual)
    assert (Fe.extract_batch(model, x, Fe.Mode("first", "max")) >= 0).all()       # after the ReLU


@pytest.mark.parametrize("name,size", [("resnet50", 64), ("mobilefacenet", 112), ("timm:resnet18", 64)])
def test_first_and_last_layers_of_registered_backbones(name, size):
    bb = build_backbone(name)
    model = AgeModel(bb, 3, [8])
    x = torch.randn(1, 3, size, size)
    first = Fe.extract_batch(model, x, Fe.Mode("first", "max"))
    last = Fe.extract_batch(model, x, Fe.Mode("last", "max"))
    assert last.shape == (1, bb.channels)
    assert first.shape[1] == next(m for m in bb.body.modules() if isinstance(m, torch.nn.Conv2d)).out_channels


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(C.ConfigError, match="LAYER:POOLING"):
        C.load(["regress.modes=last:max,middle:max"])


def _stage(home, *extra):
    cfg = C.load(FAST + [f"home={home}", *extra])
    return cfg, stage_extractor(cfg, "pretrained", progress=False)


def test_extraction_is_stored_once_and_resumes_after_a_crash(home, monkeypatch):
    cfg, (_, node, model, cache) = _stage(home)
    mode = Fe.Mode("last", "max")
    ref = Fe.extract(model, cache, mode, node.key, "pretrained", home / "ref", batch_size=16, progress=False)
    expected = np.asarray(ref.array).copy()
    assert expected.shape == (len(cache), 96) and len(ref.index) == len(cache)

    real, calls = Fe.extract_batch, []

    def crash_after_three(*args):         # call 1 probes the feature size, 2-4 are batches
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt("killed")
        return real(*args)

    monkeypatch.setattr(Fe, "extract_batch", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        Fe.extract(model, cache, mode, node.key, "pretrained", home, batch_size=16, progress=False)
    monkeypatch.setattr(Fe, "extract_batch", real)
    done = json.loads(next((home / "features").glob("*/progress.json")).read_text())["rows"]
    assert done == 48
    counted = []
    monkeypatch.setattr(Fe, "extract_batch", lambda *a: counted.append(1) or real(*a))
    feats = Fe.extract(model, cache, mode, node.key, "pretrained", home, batch_size=16, progress=False)
    assert len(counted) == 1 + -(-(len(cache) - 48) // 16)            # the probe + the missing batches
    assert np.array_equal(np.asarray(feats.array), expected)
    counted.clear()
    Fe.extract(model, cache, mode, node.key, "pretrained", home, batch_size=16, progress=False)
    assert not counted                                               # stored: nothing recomputed


def test_oversized_flattened_features_are_refused(home):
    cfg, (_, node, model, cache) = _stage(home)
    with pytest.raises(ValueError, match="features.max_gb"):
        Fe.extract(model, cache, Fe.Mode("first", "none"), node.key, "pretrained", home, max_gb=1e-6,
                   progress=False)


def _regress_args(home, *extra, stages=("pretrained", "imdb")):
    return ["regress", *stages, *FAST, f"home={home}", f"run.results_dir={home}/results",
            "engine=ridge", "modes=last:max,first:max,last:none", "--quiet", *extra]


def test_regress_table5_rows_and_rerun_fits_nothing(home, capsys, monkeypatch):
    assert main(_regress_args(home, "--jobs", "2")) == 0
    out = capsys.readouterr().out
    assert "synthetic data" in out and "Engine: ridge" in out
    folder = next((home / "results").glob("regress-fgnet-demo-ridge-*"))
    table = pd.read_csv(folder / "table.csv")
    assert len(table) == 6                                            # 2 extractors x 3 feature modes
    assert set(zip(table["layer"], table["pooling"])) == {("last", "max"), ("first", "max"), ("last", "none")}
    assert table["folds"].eq(82).all() and table["images"].eq(164).all()
    for col in ("MAE", "MAE (fold mean)", "R²", "engine version", "budget", "seed"):
        assert table[col].notna().all()
    assert (folder / "figures" / "fold_mae.pdf").exists() and (folder / "table.tex").exists()

    # every row's MAE / R² equal scikit-learn's on its stored predictions
    from sklearn.metrics import mean_absolute_error, r2_score
    models = json.loads((folder / "models.json").read_text())
    assert len(models) == 6 and all(len(m["folds"]) == 82 for m in models.values())
    table = pd.read_csv(folder / "table.csv", dtype={"stage key": str})
    for pred_file in (home / "regress").glob("*/predictions.csv"):
        meta = json.loads((pred_file.parent / "config.json").read_text())["features"]
        frame = pd.read_csv(pred_file)
        row = table[(table["stage key"] == meta["stage_key"]) & (table["layer"] == meta["layer"])
                    & (table["pooling"] == meta["pooling"])].iloc[0]
        assert row["MAE"] == pytest.approx(mean_absolute_error(frame["true_value"], frame["pred"]))
        assert row["R²"] == pytest.approx(r2_score(frame["true_value"], frame["pred"]))

    fits = []
    monkeypatch.setattr(engines, "fit_predict", lambda *a, **k: fits.append(1))
    assert main(_regress_args(home)) == 0                             # every fold stored: nothing fitted
    assert main(["report", str(folder)]) == 0                         # rebuilt from the store
    assert not fits


def test_missing_fold_refitted_and_failed_fold_reported(home, capsys, monkeypatch):
    args = _regress_args(home, "modes=last:max", "--jobs", "1", stages=("pretrained",))
    real, calls = engines.fit_predict, []

    def flaky(engine, X, y, X_test, seed, work, threads):
        calls.append(work.name)
        if work.name == ".005.work":
            raise RuntimeError("injected failure")
        return real(engine, X, y, X_test, seed, work, threads)

    monkeypatch.setattr(engines, "fit_predict", flaky)
    assert main(args) == 1                                            # reported, exit status 1
    err = capsys.readouterr().err
    assert "1 fold(s) failed (005)" in err
    assert calls.count(".005.work") == 2                              # retried once
    stored = sorted(p.name for p in (home / "regress").glob("*/folds/*.csv"))
    assert len(stored) == 81 and "005.csv" not in stored              # the other folds finished
    assert "injected failure" in next((home / "regress").glob("*/log.txt")).read_text()

    calls.clear()
    monkeypatch.setattr(engines, "fit_predict", lambda *a: calls.append(a[5].name) or real(*a))
    assert main(args) == 0
    assert calls == [".005.work"]                                     # only the missing fold


def test_group_targets_are_refused(home, capsys):
    assert main(_regress_args(home, "target=adience", "modes=last:max", stages=("pretrained",))) == 2
    assert "age groups" in capsys.readouterr().err


def test_autosklearn_without_its_environment_names_the_setup_command(home, capsys):
    assert main(_regress_args(home, "engine=autosklearn", f"regress.engine_env={home}/none",
                              stages=("pretrained",))) == 2
    assert "cascade regress --setup-engine autosklearn" in capsys.readouterr().err


@pytest.mark.slow
def test_autosklearn_fits_a_real_ensemble_per_fold(home, tmp_path_factory, capsys):
    """auto-sklearn 0.15.0 in its own environment (built here from the wheel cache), driven
    through arrays and JSON: a LOPO fold gets a searched ensemble, recorded with its weights."""
    env = tmp_path_factory.getbasetemp() / "autosklearn-env"
    if not WHEELS.is_dir() and not (env / engine_env.READY).exists():
        pytest.skip("no auto-sklearn wheel cache in $CASCADE_AUTOSKLEARN_WHEELS (building from source takes ~25 min)")
    settings = [f"regress.engine_env={env}", f"regress.find_links={WHEELS}"]
    assert main(["regress", "--setup-engine", "autosklearn", *settings, f"home={home}", "--quiet"]) == 0
    assert main(["regress", "pretrained", *FAST, *settings, f"home={home}", f"run.results_dir={home}/results",
                 "engine=autosklearn", "folds=2", "regress.time_left=40", "regress.per_run_time=12",
                 "--jobs", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "auto-sklearn 0.15.0 (scikit-learn 0.24.2)" in out and "40 s per fold, 12 s per model" in out
    folder = next((home / "results").glob("regress-fgnet-demo-autosklearn-*"))
    table = pd.read_csv(folder / "table.csv")
    assert table["folds"].iloc[0] == 2 and np.isfinite(table["MAE"].iloc[0])
    folds = next(iter(json.loads((folder / "models.json").read_text()).values()))["folds"]
    for fold in folds.values():
        assert fold["engine"] == "auto-sklearn 0.15.0" and "Number of target algorithm runs" in fold["statistics"]
        assert sum(m["weight"] for m in fold["models"]) == pytest.approx(1.0)
        assert all(m["class"] for m in fold["models"])


def test_features_command_prints_the_stored_array(home, capsys):
    assert main(["features", "imdb", *FAST, f"home={home}", "layer=first", "pooling=avg", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "pretrained → imdb [first:avg]: features (164, 16) of fgnet" in out
    path = Path(out.split(" at ")[1].split()[0])
    assert np.load(path, mmap_mode="r").shape == (164, 16)
    assert main(["features", "pretrained", "imdb", *FAST, f"home={home}"]) == 2        # one STAGE
