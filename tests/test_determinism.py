"""Same key ⇒ same bytes: one small cascade run in two `$CASCADE_HOME`s (each generating its own
demo suite, folds in forked workers) gives byte-identical artifacts — demo images, decoded
caches, weights, predictions, metrics, tables, figures — and the same run.json but for the paths
that name the home."""
import hashlib
import json
from pathlib import Path

import pytest

from cascade.cli import main

from conftest import FAST

SETTINGS = [*FAST, "stage=imdb", "target=fgnet", "data.max_images=30", "jobs=2", "seeds=0,1"]

#: Files whose bytes legitimately differ between two homes: time-stamped logs and the lock
#: files of the store; run.json is compared without its home-dependent entries below.
SKIP = {"log.txt", "run.json"}


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in SKIP and not p.name.endswith(".lock")
            and not p.name.startswith(".lock")}


def _run(home: Path) -> Path:
    assert main(["run", *SETTINGS, f"home={home}", f"run.results_dir={home}/results", "--quiet"]) == 0
    return next((home / "results").iterdir())


@pytest.mark.slow
def test_the_same_cascade_in_two_homes_gives_byte_identical_artifacts(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run_a, run_b = _run(a), _run(b)
    da, db = _digests(a), _digests(b)
    assert da.keys() == db.keys()
    kinds = {Path(k).suffix for k in da}
    assert {".safetensors", ".csv", ".npy", ".png", ".pdf", ".md", ".tex", ".json", ".jpg"} <= kinds
    assert any(k.startswith("stages/") and k.endswith("weights.safetensors") for k in da)
    different = sorted(k for k in da if da[k] != db[k])
    assert different == [], different

    ja, jb = (json.loads((r / "run.json").read_text()) for r in (run_a, run_b))
    for j, home in ((ja, a), (jb, b)):
        j["settings"] = [w for w in j["settings"] if not w.startswith(("home=", "run.results_dir="))]
        j["config"].pop("home")
        j["config"]["run"].pop("results_dir")
    assert ja == jb
    assert ja["environment"]["threads_per_fold"] == 1 and ja["seeds"] == [0, 1]


def test_store_paths_are_written_relative_to_the_home():
    from cascade.stages.execute import portable
    home = Path("/data/store")
    got = portable({"source": "/data/store/demo/x", "other": "/data/store2/demo", "home": "/data/store",
                    "list": ["/data/store/q"]}, home)
    assert got == {"source": "$CASCADE_HOME/demo/x", "other": "/data/store2/demo", "home": "$CASCADE_HOME",
                   "list": ["$CASCADE_HOME/q"]}
