"""End to end on the synthetic suite: plan keys, skip of complete stages, shared prefixes,
kill -9 and resume, and the table."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cascade import config as C
from cascade.cli import main
from cascade.stages import plan as P
from cascade.store import MARKER, file_sha256

from conftest import FAST


def _cfg(home, *extra):
    return C.load(FAST + [f"home={home}", f"run.results_dir={home}/results", *extra])


def _statuses(cfg):
    plan = P.build(cfg)
    return {n.label: P.status(plan, n) for n in plan.nodes if n.kind != "root"}, plan


def test_run_skips_complete_stages_and_shares_prefixes(home, capsys):
    args = FAST + [f"home={home}", f"run.results_dir={home}/results", "stages.fgnet.protocol=hard-subjects"]
    before, plan = _statuses(C.load(args))
    assert set(before.values()) == {"will run"}
    assert main(["run", *args, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "synthetic data" in out and "pretrained → imdb → agedb" in out
    after, _ = _statuses(C.load(args))
    assert set(after.values()) == {"cached"}

    # a second run trains nothing: no stage folder changes
    stamps = {p: p.stat().st_mtime_ns for p in (home / "stages").rglob("*") if p.is_file()}
    assert main(["run", *args, "--quiet"]) == 0
    assert stamps == {p: p.stat().st_mtime_ns for p in (home / "stages").rglob("*") if p.is_file()}

    # another target reuses the imdb and agedb stages (same keys, already cached)
    other, _ = _statuses(C.load(args + ["target=adience"]))
    assert other["pretrained → imdb"] == "cached" and other["pretrained → imdb → agedb"] == "cached"
    assert all(v == "will run" for k, v in other.items() if "⇒" in k)


@pytest.mark.parametrize("target", ["agedb", "adience", "adience3", "utkface"])
def test_every_target_runs_and_prints_its_table(home, capsys, target):
    """Each target runs under its own protocol from the pretrained model and after IMDB; the table
    has the image-blind baseline and the target's metric (MAE, or accuracy for age groups)."""
    args = FAST + [f"home={home}", f"run.results_dir={home}/results", "stage=imdb", f"target={target}"]
    assert main(["run", *args, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "synthetic data" in out and "pretrained → imdb |" in out and "| pretrained |" in out
    assert ("| Accuracy |" if target.startswith("adience") else "| MAE |") in out
    assert "baseline: commonest training group" in out if target.startswith("adience") \
        else "baseline: training-set mean age" in out
    run = next((home / "results").iterdir())
    if target.startswith("adience"):                    # thesis Table 6: confusion + precision / recall
        confusion = (run / "confusion_1.md").read_text()
        assert "| true 0-12 |" in confusion if target == "adience3" else "| true 0-2 |" in confusion
        assert "| precision |" in confusion and (run / "figures" / "confusion_1.pdf").exists()


def test_keys_change_with_config_parent_and_data(home):
    base = P.build(_cfg(home))
    keys = {n.label: n.key for n in base.nodes}
    assert keys == {n.label: n.key for n in P.build(_cfg(home)).nodes}          # deterministic
    lr = {n.label: n.key for n in P.build(_cfg(home, "stages.agedb.lr_factor=0.25")).nodes}
    assert lr["pretrained → imdb"] == keys["pretrained → imdb"]                  # upstream unchanged
    assert lr["pretrained → imdb → agedb"] != keys["pretrained → imdb → agedb"]   # changed stage
    assert lr["pretrained → imdb → agedb ⇒ fgnet"] != keys["pretrained → imdb → agedb ⇒ fgnet"]  # child
    seed = {n.label: n.key for n in P.build(_cfg(home, "seed=1")).nodes}
    assert set(seed.values()).isdisjoint(set(keys.values()) - {keys["pretrained"]})
    sub = {n.label: n.key for n in P.build(_cfg(home, "data.max_images=50")).nodes}
    assert sub["pretrained → imdb"] != keys["pretrained → imdb"]                  # input manifest


def test_dry_run_prints_every_stage_with_key_and_status(home, capsys):
    assert main(["run", *FAST, f"home={home}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for label in ("pretrained → imdb ", "pretrained → imdb → agedb ", "pretrained ⇒ fgnet",
                  "pretrained → imdb ⇒ fgnet", "pretrained → imdb → agedb ⇒ fgnet"):
        assert label in out
    assert out.count("will run") == 5
    assert not (home / "stages").exists() or not any((home / "stages").iterdir())


def _cli(home, *extra):
    return [sys.executable, "-m", "cascade.cli", "run", *FAST, f"home={home}",
            f"run.results_dir={home}/results", "--quiet", *extra]


def _wait_for(path: Path, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        if path.exists():
            return
        time.sleep(0.005)
    raise TimeoutError(path)


def test_kill_9_mid_stage_then_resume_equals_uninterrupted(home, tmp_path):
    """SIGKILL a stage after its first epoch checkpoint; the rerun resumes from it and ends
    with the same weights and metrics as an uninterrupted run in a separate store."""
    extra = ["stage=imdb", "target=fgnet", "run.prefixes=false", "stages.fgnet.protocol=hard-subjects",
             "backbones.demo.input_size=32", "backbones.demo.stages.imdb.epochs=25"]
    key = next(n.key for n in P.build(_cfg(home, *extra)).nodes if n.kind == "train")
    stage = home / "stages" / key
    proc = subprocess.Popen(_cli(home, *extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(stage / "ckpt.pt")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (stage / MARKER).exists()
    statuses, _ = _statuses(_cfg(home, *extra))
    assert statuses["pretrained → imdb"] == "partial: will resume"
    subprocess.run(_cli(home, *extra), check=True, stdout=subprocess.DEVNULL)
    assert "resumed from ckpt.pt" in (stage / "log.txt").read_text()

    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "demo").symlink_to((home / "demo").resolve())
    subprocess.run(_cli(clean, *extra), check=True, stdout=subprocess.DEVNULL)
    assert file_sha256(stage / "weights.safetensors") == file_sha256(clean / "stages" / key / "weights.safetensors")
    resumed, fresh = (json.loads((h / "stages" / key / "metrics.json").read_text()) for h in (home, clean))
    for m in (resumed, fresh):
        m["report"].pop("source")        # the dataset path differs between the two stores
    assert resumed == fresh              # every epoch's losses, lr and MAE, to the last digit


def test_kill_9_during_folds_keeps_finished_folds(home, tmp_path):
    """SIGKILL a `--jobs 2` LOPO run after some folds finished: they are not recomputed, and the
    final predictions and table equal an uninterrupted run's."""
    extra = ["stage=", "target=fgnet", "stages.fgnet.protocol=lopo", "jobs=2"]
    node = P.build(_cfg(home, *extra)).targets[0]
    folds = home / "stages" / node.key / "folds"
    proc = subprocess.Popen(_cli(home, *extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + 120
    while time.time() < end and len(list(folds.glob("*.csv"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p: p.stat().st_mtime_ns for p in folds.glob("*.csv")}
    assert len(done) >= 3
    subprocess.run(_cli(home, *extra), check=True, stdout=subprocess.DEVNULL)
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())
    assert len(list(folds.glob("*.csv"))) == 82
    table = (next((home / "results").iterdir()) / "table.csv").read_text()
    assert "pretrained" in table and ",82," in table

    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "demo").symlink_to((home / "demo").resolve())
    subprocess.run(_cli(clean, *extra), check=True, stdout=subprocess.DEVNULL)
    assert (folds.parent / "predictions.csv").read_bytes() == \
        (clean / "stages" / node.key / "predictions.csv").read_bytes()
    assert table == (next((clean / "results").iterdir()) / "table.csv").read_text()


def test_mode_a_shared_features_give_the_slow_paths_predictions(home, tmp_path):
    """Mode a: features computed once and shared by all folds give the predictions of the path
    that recomputes them in every fold."""
    import numpy as np
    import pandas as pd

    extra = ["stage=", "target=fgnet", "stages.fgnet.protocol=lopo", "data.max_images=120", "jobs=1"]
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "demo").symlink_to((home / "demo").resolve())
    preds = {}
    for h, flag in ((home, "true"), (slow, "false")):
        cfg = _cfg(h, *extra, f"train.feature_cache={flag}")
        node = P.build(cfg).targets[0]
        assert node.params["mode"] == "head"
        assert main(["run", *FAST, f"home={h}", f"run.results_dir={h}/results", "--quiet", *extra,
                     f"train.feature_cache={flag}"]) == 0
        folder = h / "stages" / node.key
        assert not (folder / "features.npy").exists()              # removed once complete
        preds[flag] = pd.read_csv(folder / "predictions.csv")
    fast, ref = preds["true"], preds["false"]
    assert len(fast) == 120 and fast["fold"].nunique() > 10
    cols = [c for c in fast.columns if c.startswith("p") and c[1:].isdigit()]
    assert np.allclose(fast[cols].to_numpy(), ref[cols].to_numpy(), atol=1e-5)
    assert np.allclose(fast["pred_expected"], ref["pred_expected"], atol=1e-3)


def test_a_failing_fold_is_reported_while_the_others_finish(home, monkeypatch, capsys):
    """One fold raises (in both attempts): every other fold is written, the run exits 1 naming
    the fold, and the next run trains only that fold."""
    from cascade.stages import execute

    extra = ["stage=", "target=fgnet", "stages.fgnet.protocol=lopo", "data.max_images=60", "jobs=1"]
    args = ["run", *FAST, f"home={home}", f"run.results_dir={home}/results", "--quiet", *extra]
    node = P.build(_cfg(home, *extra)).targets[0]
    folds = home / "stages" / node.key / "folds"
    real, calls = execute.run_fold, []

    def flaky(job, *args):
        calls.append(job.name)
        if job.name == "002":
            raise OSError("injected failure")
        return real(job, *args)

    monkeypatch.setattr(execute, "run_fold", flaky)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "1 fold(s) failed (002)" in err and "Finished folds are kept" in err
    assert calls.count("002") == 2                                     # retried once
    done = {p.name: p.stat().st_mtime_ns for p in folds.glob("*.csv")}
    assert "002.csv" not in done and len(done) == len(set(calls)) - 1
    assert "injected failure" in (folds.parent / "log.txt").read_text()
    assert not (folds.parent / MARKER).exists()

    monkeypatch.setattr(execute, "run_fold", real)
    calls.clear()
    assert main(args) == 0
    assert all((folds / n).stat().st_mtime_ns == t for n, t in done.items())   # not retrained
    assert (folds / "002.csv").exists() and (folds.parent / MARKER).exists()


def test_dask_backend_gives_the_folds_of_local_workers(home, tmp_path):
    """The same LOPO folds on a dask.distributed LocalCluster (127.0.0.1) and on local workers."""
    import pandas as pd
    distributed = pytest.importorskip("distributed")

    extra = ["stage=", "target=fgnet", "stages.fgnet.protocol=lopo", "data.max_images=40", "jobs=2",
             "train.mode=full"]
    other = tmp_path / "dask"
    other.mkdir()
    (other / "demo").symlink_to((home / "demo").resolve())
    key = P.build(_cfg(home, *extra)).targets[0].key
    assert main(["run", *FAST, f"home={home}", f"run.results_dir={home}/results", "--quiet", *extra]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None, processes=True) as cluster:
        assert main(["protocol", "lopo", *FAST, f"home={other}", f"run.results_dir={other}/results",
                     "--quiet", *extra, "--backend", "dask", "--scheduler", cluster.scheduler_address]) == 0
    local, dask = (pd.read_csv(h / "stages" / key / "predictions.csv") for h in (home, other))
    pd.testing.assert_frame_equal(local, dask)


def test_report_rebuilds_tables_and_figures_of_a_finished_run(home, capsys):
    """`cascade report RUN` rewrites the Markdown / CSV / LaTeX tables (with the literature's
    reported rows) and the PNG + PDF figures from the store, training nothing."""
    args = FAST + [f"home={home}", f"run.results_dir={home}/results", "stage=imdb", "target=fgnet",
                   "stages.fgnet.protocol=hard-subjects"]
    assert main(["run", *args, "--quiet"]) == 0
    run = next((home / "results").iterdir())
    md = (run / "table.md").read_text()
    assert "| measured |" in md and "| reported |" in md and "<NA>" not in md
    for name in ("table.tex", "table.csv", "figures/fold_mae.png", "figures/fold_mae.pdf",
                 "figures/cumulative_score.png", "figures/error_vs_age.pdf", "figures/age_distributions.png"):
        assert (run / name).stat().st_size > 0, name
        (run / name).unlink()
    stamps = {p: p.stat().st_mtime_ns for p in (home / "stages").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    assert (run / "table.tex").read_text().count(r"\begin{tabular}") == 1
    assert (run / "figures" / "fold_mae.pdf").read_bytes().startswith(b"%PDF")
    assert (run / "table.md").read_text() == md
    assert stamps == {p: p.stat().st_mtime_ns for p in (home / "stages").rglob("*") if p.is_file()}

    assert main(["report", str(home / "nowhere")]) == 2
    assert "not a results folder" in capsys.readouterr().err


def test_tune_runs_the_grid_once_and_resumes(home, capsys):
    """`cascade tune`: every lr × batch trial (one epoch) is stored as it ends, the table marks the
    lowest validation loss, and a rerun trains nothing."""
    args = ["tune", *FAST, f"home={home}", f"run.results_dir={home}/results", "stage=imdb",
            "target=fgnet", "tune.stage=agedb", "tune.lr=0.01,0.001", "tune.batch_size=16,32", "--quiet"]
    assert main(args) == 2                                            # agedb is not in stage=imdb
    assert "tune.stage=agedb is not in this run's stages" in capsys.readouterr().err
    args = ["stage=imdb,agedb" if a == "stage=imdb" else a for a in args]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "synthetic data" in out and out.count("← lowest validation loss") == 1
    trials = sorted((home / "tune").rglob("*.json"))
    assert len(trials) == 4
    stamps = [p.stat().st_mtime_ns for p in trials]
    assert main(args) == 0
    assert stamps == [p.stat().st_mtime_ns for p in trials]

    target = [a for a in args if not a.startswith("tune.")] + ["tune.folds=2", "tune.lr=0.01", "tune.batch_size=16"]
    before = set((home / "tune").iterdir())
    assert main(target) == 0                                          # the target: first 2 LOPO folds
    [new] = set((home / "tune").iterdir()) - before
    assert json.loads((new / "lr0.01_bs16.json").read_text())["splits"] == 2


def test_a_configured_label_space_is_used_and_keyed(home):
    """labels.<stage>=A-B fixes the stage's classes (one per year of the span); the default keys
    do not change, a span outside the data is a clear error."""
    base = {n.label: n.key for n in P.build(_cfg(home, "stage=imdb")).nodes}
    spanned = P.build(_cfg(home, "stage=imdb", "labels.imdb=0-100"))
    assert spanned.nodes[1].params["classes"] == "0-100"
    assert spanned.nodes[1].key != base["pretrained → imdb"]
    assert P.build(_cfg(home, "stage=imdb")).nodes[1].key == base["pretrained → imdb"]
    args = FAST + [f"home={home}", f"run.results_dir={home}/results", "stage=imdb", "target=fgnet",
                   "stages.fgnet.protocol=hard-subjects", "run.prefixes=false", "--quiet"]
    assert main(["run", *args, "labels.imdb=0-100"]) == 0
    labels = json.loads((home / "stages" / spanned.nodes[1].key / "labels.json").read_text())
    assert labels["lo"] == list(range(101))
    assert main(["run", *args, "labels.fgnet=10-20"]) == 2          # FG-NET has ages 0-69
    with pytest.raises(C.ConfigError, match="not an age range A-B"):
        _cfg(home, "labels.imdb=100-0")


def test_each_cleaning_rule_keys_only_the_stages_that_read_its_dataset(home):
    """data.adience_policy retrains the Adience target and leaves IMDB and AgeDB cached;
    data.imdb_clean.* moves the IMDB stage (and so everything after it), not an AgeDB-only run."""
    def keys(*extra):
        return {n.label: n.key for n in P.build(_cfg(home, "stage=imdb,agedb", "target=adience", *extra)).nodes}

    lenient, strict, aligned = keys(), keys("data.adience_policy=strict"), keys("data.adience_variant=aligned")
    for stage in ("pretrained → imdb", "pretrained → imdb → agedb"):
        assert strict[stage] == lenient[stage] == aligned[stage]
    targets = [label for label in lenient if "⇒" in label]
    assert all(strict[t] != lenient[t] and aligned[t] != lenient[t] for t in targets)

    stricter = keys("data.imdb_clean.min_face_score=2.5")
    assert stricter["pretrained → imdb"] != lenient["pretrained → imdb"]
    agedb_only = {n.label: n.key for n in P.build(_cfg(home, "stage=agedb", "target=fgnet")).nodes}
    moved = {n.label: n.key for n in P.build(_cfg(home, "stage=agedb", "target=fgnet",
                                                  "data.imdb_clean.age_range=5,90")).nodes}
    assert moved == agedb_only


def test_the_aligned_adience_release_is_a_setting(home):
    """data.adience_variant=aligned reads aligned/landmark_aligned_face.* (the thesis's in-plane
    aligned faces; the demo suite writes both releases), the same rows as `faces`, and says so in
    the table header."""
    from cascade.data.datasets import open_dataset
    from cascade.report.header import cleaning_line

    faces = open_dataset(_cfg(home), "adience", home)
    aligned = open_dataset(_cfg(home, "data.adience_variant=aligned"), "adience", home)
    assert aligned.frame["path"].str.startswith("aligned/").all() and faces.frame["path"].str.startswith("faces/").all()
    assert len(aligned) == len(faces) and (aligned.frame["subject"].to_numpy() == faces.frame["subject"].to_numpy()).all()
    assert all((aligned.root / p).is_file() for p in aligned.frame["path"])
    node = next(n for n in P.build(_cfg(home, "stage=", "target=adience", "data.adience_variant=aligned")).nodes
                if n.stage == "adience")
    assert "[policy lenient, variant aligned]" in cleaning_line("adience", aligned, node.info["manifest"],
                                                                node.info["cleaning"])
