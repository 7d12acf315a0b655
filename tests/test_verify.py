"""`cascade verify` rebuilds a run folder from scratch and compares it; a table header says when
numbers were made under another environment than the one a folder or a stage recorded."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cascade import runtime
from cascade.cli import main
from cascade.verify import Verdict, compare_tables, verify
from conftest import FAST

SETTINGS = ["stage=imdb", "target=fgnet", *FAST]


@pytest.fixture(scope="module")
def made(suite_home, tmp_path_factory) -> tuple[Path, Path, Verdict]:
    """A tiny run's results folder, and its verification with the rebuilt folder kept."""
    root = tmp_path_factory.mktemp("verify")
    home = root / "home"
    home.mkdir()
    (home / "demo").symlink_to(suite_home / "demo")
    assert main(["run", *SETTINGS, f"home={home}", f"run.results_dir={root / 'results'}", "--quiet"]) == 0
    folder = next((root / "results").iterdir())
    verdict = verify(folder, home=root / "rebuild")
    return home, folder, verdict


def _copy(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / folder.name
    shutil.copytree(folder, out)
    return out


def test_a_rebuild_from_scratch_gives_the_same_keys_and_every_number(made, capsys):
    _, folder, verdict = made
    assert verdict.exact and not verdict.environment
    assert not verdict.keys and not verdict.cells and verdict.compared > 100
    assert verdict.ok and verdict.text().endswith("verified")
    assert verdict.rebuilt.name == folder.name          # the run id hashes the same keys
    assert not (verdict.rebuilt.parent.parent / "store" / "demo").is_symlink()   # the suite was made anew


def test_a_number_that_moved_is_named(made, tmp_path):
    _, folder, verdict = made
    tampered = _copy(folder, tmp_path)
    table = pd.read_csv(tampered / "table.csv", dtype=str, keep_default_na=False)
    table.loc[1, "MAE"] = str(float(table.loc[1, "MAE"]) + 1e-9)
    table.to_csv(tampered / "table.csv", index=False)
    found = Verdict(tampered, verdict.rebuilt, exact=True, environment=[])
    compare_tables(tampered, verdict.rebuilt, found, tolerance=1.0)
    assert not found.ok
    assert [c for c in found.cells if c.startswith(f"table.csv [{table.loc[1, 'configuration']}] MAE:")]
    assert "NOT verified" in found.text()


def test_another_environment_allows_moves_within_the_folders_interval(made, tmp_path):
    """Elsewhere the numbers may move (listed), but not outside the row's own 95% CI."""
    _, folder, verdict = made
    tampered = _copy(folder, tmp_path)
    table = pd.read_csv(tampered / "table.csv")
    lo, hi = table.loc[1, "CI low (subject bootstrap)"], table.loc[1, "CI high (subject bootstrap)"]
    table.loc[1, "MAE"] = (table.loc[1, "MAE"] + lo) / 2            # moved, inside its interval
    table.to_csv(tampered / "table.csv", index=False)
    inside = Verdict(tampered, verdict.rebuilt, exact=False, environment=["numpy 1 → 2"])
    compare_tables(tampered, verdict.rebuilt, inside, tolerance=1.0)
    assert inside.cells and not inside.outside and inside.ok

    table.loc[1, "CI low (subject bootstrap)"] = hi - 1e-6          # the rebuilt MAE now lies below
    table.loc[1, "MAE"] = hi
    table.to_csv(tampered / "table.csv", index=False)
    outside = Verdict(tampered, verdict.rebuilt, exact=False, environment=["numpy 1 → 2"])
    compare_tables(tampered, verdict.rebuilt, outside, tolerance=1.0)
    assert not outside.ok and outside.outside[0].startswith(table.loc[1, "configuration"])


def test_only_run_folders_are_rebuilt(tmp_path, capsys):
    folder = tmp_path / "compare-x"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"command": "compare", "runs": []}))
    assert main(["verify", str(folder)]) == 2
    assert "made by compare" in capsys.readouterr().err


def test_stages_record_their_environment_and_the_header_names_a_different_one(made, tmp_path, capsys):
    """A stage made elsewhere and a folder made elsewhere are each a header line."""
    home, folder, _ = made
    run = json.loads((folder / "run.json").read_text())
    imdb = home / "stages" / run["stages"]["pretrained → imdb"] / "metrics.json"
    metrics = json.loads(imdb.read_text())
    assert set(metrics["environment"]) == set(runtime.NUMERIC_FIELDS)
    copy = _copy(folder, tmp_path)
    moved = {**run, "environment": {**run["environment"], "pillow": "1.0"}}
    (copy / "run.json").write_text(json.dumps(moved))
    original = imdb.read_text()
    imdb.write_text(json.dumps({**metrics, "environment": {**metrics["environment"], "blas": "another BLAS"}}))
    try:
        from cascade.report.tables import environment_notes, finished_plans
        notes = environment_notes(finished_plans(folder), copy, runtime.fingerprint(finished_plans(folder)[0].cfg))
    finally:
        imdb.write_text(original)
    assert any(n.startswith("Stage pretrained → imdb was made under another environment") and "another BLAS" in n
               for n in notes), notes
    assert any(n.startswith("This folder held numbers made under another environment") and "pillow 1.0 →" in n
               for n in notes), notes


def test_the_fingerprint_records_what_moves_bytes():
    from cascade import config as C
    fp = runtime.fingerprint(C.load([]))
    for name in ("pillow", "opencv", "libjpeg", "blas", "facenet-pytorch", "timm", "numpy", "torch",
                 "scikit-learn", "cuda", "cudnn"):
        assert name in fp
    assert fp["pillow"] != "not installed" and fp["opencv"] != "not installed"
    assert fp["blas"] and fp["libjpeg"]
