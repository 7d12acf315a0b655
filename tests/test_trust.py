"""Numbers a reader can trust: several seeds (mean ± sd, every seed kept), paired tests in every
comparison table (Wilcoxon / McNemar, Holm), Friedman + critical-difference figure across runs,
the environment fingerprint, and deterministic mode."""
import json

import pandas as pd
import pytest
import torch

from cascade import config as C
from cascade import runtime
from cascade.cli import main
from cascade.stages import plan as P

from conftest import FAST


def _run(home, *extra):
    assert main(["run", *FAST, f"home={home}", f"run.results_dir={home}/results", "--quiet", *extra]) == 0
    return max((home / "results").iterdir(), key=lambda p: p.stat().st_mtime_ns)


def test_seeds_are_distinct_and_each_gets_its_own_keys(tmp_path):
    with pytest.raises(C.ConfigError, match="distinct seeds"):
        C.load(["seeds=0,0"])
    cfg = C.load(["seeds=0,1,2", f"home={tmp_path}", "data.synth.scale=0.05"])
    assert [c["seed"] for c in C.per_seed(cfg)] == [0, 1, 2] and C.per_seed(C.load([])) == [C.load([])]
    keys = [{n.label: n.key for n in P.build(c).nodes if n.kind != "root"} for c in C.per_seed(cfg)]
    assert set(keys[0].values()).isdisjoint(keys[1].values())
    # the test split and the data subsample do not move with the training seed
    one = C.load(["seed=1", f"home={tmp_path}", "data.synth.scale=0.05", "data.max_images=30"])
    zero = C.load(["seed=0", f"home={tmp_path}", "data.synth.scale=0.05", "data.max_images=30"])
    f0, f1 = (P.build(c).tables["fgnet"].frame["path"].tolist() for c in (zero, one))
    assert f0 == f1


@pytest.mark.slow
def test_several_seeds_give_mean_sd_every_seed_and_paired_tests(home, capsys):
    folder = _run(home, "stage=imdb", "target=fgnet", "data.max_images=40", "seeds=0,1")
    out = capsys.readouterr().out
    table = pd.read_csv(folder / "table.csv")
    measured = table[table["status"] == "measured"]
    assert (measured["seeds"] == 2).all() and "MAE sd (seeds)" in table
    assert {"CI low (subject bootstrap)", "CI high (subject bootstrap)", "t-CI low (folds)", "t-CI high (folds)"} <= \
        set(table.columns) and pd.api.types.is_float_dtype(table["CI low (subject bootstrap)"])
    seeds = pd.read_csv(folder / "seeds.csv")
    assert sorted(seeds["seed"].unique()) == [0, 1] and len(seeds) == 2 * len(measured)
    row = measured[measured["configuration"] == "pretrained → imdb"].iloc[0]
    per_seed = seeds[seeds["configuration"] == "pretrained → imdb"]["MAE"]
    assert row["MAE"] == pytest.approx(per_seed.mean()) and row["MAE sd (seeds)"] == pytest.approx(per_seed.std())
    pairs = pd.read_csv(folder / "comparisons.csv")
    assert pairs[["configuration", "vs"]].values.tolist() == [["pretrained → imdb", "pretrained"]]
    assert pairs["test"].iloc[0].startswith("Wilcoxon") and 0 <= pairs["p (Holm)"].iloc[0] <= 1
    assert pairs["Δ CI low"].iloc[0] <= pairs["Δ MAE"].iloc[0] <= pairs["Δ CI high"].iloc[0]
    assert "Seeds: 0, 1" in out and "Each configuration against the one it extends" in out and " ± " in out
    meta = json.loads((folder / "run.json").read_text())
    assert meta["seeds"] == [0, 1] and {"commit", "dirty", "torch", "cpu_capability", "threads_per_fold",
                                         "deterministic", "gpu"} <= set(meta["environment"])
    assert any(h.startswith("Environment: cascade") for h in meta["header"])


@pytest.mark.slow
def test_adience_table_shows_exact_mcnemar(home, capsys):
    folder = _run(home, "stage=imdb", "target=adience")
    pairs = pd.read_csv(folder / "comparisons.csv")
    assert pairs["test"].str.startswith("exact McNemar").all() and len(pairs) == 1
    assert "exact McNemar" in (folder / "table.md").read_text()
    table = pd.read_csv(folder / "table.csv")
    assert pd.api.types.is_float_dtype(table["Accuracy"]) and "Accuracy sd (folds)" in table


@pytest.mark.slow
def test_three_backbones_compared_with_paired_tests_and_a_critical_difference_figure(home, capsys):
    runs = [_run(home, "stage=", "target=fgnet", "data.max_images=30", f"backbone={b}", "weights=none",
                 "backbones.timm.input_size=32", *(["seeds=0,1"] if b == "demo" else []))
            for b in ("demo", "timm:resnet10t", "timm:mobilenetv3_small_050")]
    assert main(["compare", *map(str, runs), "--out", str(home / "compared")]) == 0
    folder = next((home / "compared").iterdir())
    pairs = pd.read_csv(folder / "comparisons.csv")
    assert len(pairs) == 2 and pairs["vs"].str.startswith("demo:").all() and "p (Holm)" in pairs
    assert pairs["seeds"].astype(str).tolist() == ["1 vs 2", "1 vs 2"]       # a run's seeds averaged
    assert (folder / "figures" / "critical_difference.png").stat().st_size > 0
    md = (folder / "table.md").read_text()
    assert "Friedman test over" in md and "synthetic data" in md
    # a run on other test images is refused, not aligned
    other = _run(home, "stage=", "target=fgnet", "data.max_images=30", "backbone=demo", "weights=none",
                 "stages.fgnet.protocol=holdout")
    capsys.readouterr()
    assert main(["compare", str(runs[0]), str(other), "--out", str(home / "compared")]) == 2
    assert "not evaluated on the same test images" in capsys.readouterr().err


def test_deterministic_mode_is_keyed_and_applied(tmp_path):
    base = [f"home={tmp_path}", "data.synth.scale=0.05", "stage=imdb"]
    off = {n.label: n.key for n in P.build(C.load(base)).nodes}
    on_plan = P.build(C.load(base + ["train.deterministic=true"]))
    on = {n.label: n.key for n in on_plan.nodes}
    assert on["pretrained"] == off["pretrained"]
    assert all(on[k] != off[k] for k in on if k != "pretrained")
    try:
        runtime.configure(on_plan.cfg, 1)
        assert torch.are_deterministic_algorithms_enabled()
        assert runtime.fingerprint(on_plan.cfg)["deterministic"] is True
        assert "deterministic mode on" in runtime.fingerprint_line(runtime.fingerprint(on_plan.cfg))
    finally:
        runtime.deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()
