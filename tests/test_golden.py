"""Golden runs guard the trainer: a change that moves numbers fails here until TRAINER_VERSION
(cascade/stages/plan.py) moves with it and the golden file is regenerated (tests/golden/golden.py)."""
import json
import sys
from pathlib import Path

from cascade.stages import plan as P

sys.path.insert(0, str(Path(__file__).with_name("golden")))
import golden as G  # noqa: E402


def test_golden_cascade_reproduces_its_kept_numbers(suite_home, tmp_path):
    kept = json.loads(G.FILE.read_text())
    home = tmp_path / "home"
    home.mkdir()
    (home / "demo").symlink_to(suite_home / "demo")          # the same 0.05-scale suite
    assert kept["settings"] == G.SETTINGS, "golden settings changed: regenerate with tests/golden/golden.py"
    now = G.measure(home)
    off = {k: v for k, v in G.differences(kept, now).items() if v > G.GOLDEN_ATOL}
    if kept["trainer_version"] != P.TRAINER_VERSION:
        raise AssertionError(f"TRAINER_VERSION is {P.TRAINER_VERSION} but the golden numbers were made under "
                             f"{kept['trainer_version']}: regenerate them (.venv/bin/python tests/golden/golden.py)")
    assert not off, (f"the golden cascade's numbers moved ({off}, tolerance {G.GOLDEN_ATOL}) while TRAINER_VERSION "
                     f"stayed {P.TRAINER_VERSION}: a change that moves numbers must bump TRAINER_VERSION in "
                     f"cascade/stages/plan.py (so old stores are not reused) and regenerate tests/golden/")
