"""The Python API (cascade/api.py) is the command line's own code path: the same graph as
`cascade run --dry-run`, the same results folder as `cascade run`, the same rows as `cascade
predict`'s CSV, the same errors word for word; and docs/api.md is what its docstrings generate."""
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import cascade
from cascade import config as C
from cascade.cli import main

from conftest import FAST, snapshot

ROOT = Path(__file__).resolve().parents[1]


def _printed_lines(frame: pd.DataFrame) -> list[str]:
    """The lines `cascade run --dry-run` prints for a plan frame's rows (one seed)."""
    return [f"  {r.key}  {r.label:<45} {r.status}" for r in frame.itertuples()]


def test_plan_is_the_graph_a_dry_run_prints_and_writes_nothing(home, capsys):
    before = snapshot(home)
    assert main(["run", *FAST, f"home={home}", "stage=imdb,agedb", "target=fgnet", "--dry-run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    frame = cascade.plan(*FAST, home=home, stage="imdb,agedb", target="fgnet")
    assert list(frame.columns) == ["seed", "key", "label", "status"] and len(frame) == 6
    lines = _printed_lines(frame)
    assert printed[1:1 + len(lines)] == lines
    assert frame["key"].str.fullmatch(r"[0-9a-f]{16}").all()
    same = cascade.plan(*FAST[:-1], stage=["imdb", "agedb"], target="fgnet", home=str(home), head={"hidden": 16})
    pd.testing.assert_frame_equal(same, frame)                 # keyword forms are the same words
    assert capsys.readouterr().out == "" and snapshot(home) == before


def test_plan_before_the_demo_suite_exists_lists_the_nodes_without_keys(tmp_path, capsys):
    fresh = tmp_path / "fresh"
    assert main(["run", f"home={fresh}", "stage=imdb", "target=fgnet", "--dry-run"]) == 0
    waiting = [line.split("  ")[-1] for line in capsys.readouterr().out.splitlines() if "(no key yet)" in line]
    frame = cascade.plan(home=fresh, stage="imdb", target="fgnet")
    assert frame["key"].isna().all() and list(frame["label"]) == waiting and (frame["status"] == "will run").all()
    assert not fresh.exists()


@pytest.mark.parametrize("words, settings", [
    (["trian.epochs=2"], {}), ([], {"trian.epochs": 2}), ([], {"train": {"epoch": 2}}), ([], {"target": "fgnte"}),
    ([], {"train.lr": "fast"}),
])
def test_a_bad_setting_raises_the_error_the_command_prints(words, settings, capsys):
    cli_words = words + C.mapping_words(settings)
    assert main(["run", *cli_words, "--dry-run"]) == 2
    printed = capsys.readouterr().err.strip()
    with pytest.raises(C.ConfigError) as raised:
        cascade.plan(*words, **settings)
    assert printed == f"cascade: error: {raised.value}"


def test_predict_without_paths_is_the_command_error(capsys):
    assert main(["predict", "imdb,agedb"]) == 2
    printed = capsys.readouterr().err.strip()
    with pytest.raises(C.ConfigError) as raised:
        cascade.predict("imdb,agedb", [])
    assert printed == f"cascade: error: {raised.value}"


def test_portable_numerics_after_computing_natively_is_refused_as_by_the_command():
    script = ("import torch, cascade; torch.randn(8, 8) @ torch.randn(8, 8); torch.nn.functional.relu(torch.randn(8)); "
              "cascade.plan(**{'train.numerics': 'portable'})")
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert out.returncode != 0
    assert "RuntimeError: train.numerics=portable must be set before this process computes anything" in out.stderr


def test_load_results_reads_a_committed_folder():
    folder = ROOT / "results" / "fgnet-demo-fb06e05d"
    got = cascade.load_results(folder)
    pd.testing.assert_frame_equal(got.table, pd.read_csv(folder / "table.csv", dtype={"stage key": str}))
    record = json.loads((folder / "run.json").read_text())
    assert got.header == record["header"] and got.settings == record["settings"] and got.stages == record["stages"]
    assert len(got.comparisons) == 2 and set(got.seeds["stage key"]) <= set(got.table["stage key"])
    with pytest.raises(FileNotFoundError, match="not a results folder"):
        cascade.load_results(folder / "figures")


def test_run_returns_the_frames_of_the_folder_the_command_writes(home, capsys):
    results = home / "results"
    got = cascade.run(*FAST, home=home, run={"results_dir": results}, stage="", target="utkface", progress=False)
    assert capsys.readouterr().out == ""
    assert got.folder.parent == results and got.table["status"].eq("measured").all()
    pd.testing.assert_frame_equal(got.table, pd.read_csv(got.folder / "table.csv", dtype={"stage key": str}))
    written = (got.folder / "table.csv").read_text()
    assert main(["run", *FAST, f"home={home}", f"run.results_dir={results}", "stage=", "target=utkface",
                 "--quiet"]) == 0                               # everything cached: the same folder, rewritten
    assert f"written to {got.folder}/" in capsys.readouterr().out
    assert (got.folder / "table.csv").read_text() == written


@pytest.mark.slow
def test_predict_gives_the_rows_of_the_commands_csv(home, tmp_path, capsys):
    images = sorted(home.glob("demo/*/agedb/*.jpg"))[:2]            # face crops already
    out = tmp_path / "cli.csv"
    assert main(["predict", "imdb,agedb", *map(str, images), *FAST, f"home={home}", "--faces", "given",
                 "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    frame = cascade.predict("imdb,agedb", images, *FAST, home=home, faces="given", progress=False)
    assert frame.to_csv(index=False) == out.read_text()
    assert len(frame) == 2 and frame["reason"].isna().all()
    assert cascade.predict.writers.frame is not None                # still the package of its modules


def test_docs_api_md_is_what_its_generator_writes():
    generated = runpy.run_path(str(ROOT / "docs" / "gen_api.py"))["page"]()
    assert (ROOT / "docs" / "api.md").read_text() == generated, "run: python docs/gen_api.py"
