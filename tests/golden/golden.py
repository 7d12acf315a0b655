"""Golden runs: a short demo-size stage and a target with a few folds, their numbers kept in
`cascade-small.json` beside this file.

Why: a stage key names the settings and `TRAINER_VERSION`, not the code.  A change to the
training code that moves numbers without bumping `TRAINER_VERSION` would let a store made by
the old code be reused under the same keys, and nothing would say so.  `tests/test_golden.py`
reruns these two stages and compares with the kept numbers to `GOLDEN_ATOL`, a tolerance that
survives another CPU's kernels yet catches a real change.  `--calibrate` measures both sides;
on this machine (2 cores, AVX-512) it printed the largest change of any kept number:

    2 torch threads instead of 1 (other reduction order) 2e-06
    stages.imdb.lr x 1.1                                  0.039
    stages.fgnet.lr x 1.1                                 0.028
    augment.rotation 10 -> 9 degrees                      0.065

Regenerate after bumping `TRAINER_VERSION` (cascade/stages/plan.py):

    .venv/bin/python tests/golden/golden.py
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

FILE = Path(__file__).with_name("cascade-small.json")
#: Years (expected ages), validation loss and MAE: see the module docstring.
GOLDEN_ATOL = 0.005
#: What `--calibrate` changes: one environment difference, then real changes of the numbers.
CALIBRATION = (["train.threads=2"], ["backbones.demo.stages.imdb.lr=0.0022"],
               ["backbones.demo.stages.fgnet.lr=0.0022"], ["augment.rotation=9"])
SETTINGS = ["data.synth.scale=0.05", "data.max_images=24", "backbones.demo.input_size=16",
            "backbones.demo.stages.imdb.epochs=2", "backbones.demo.stages.fgnet.epochs=2",
            "head.hidden=16", "stage=imdb", "target=fgnet", "run.prefixes=false", "jobs=1",
            "train.threads=1", "devices=cpu"]


def measure(home: Path, extra: list[str] = ()) -> dict:
    """Run the golden cascade in `home`; its numbers: the stage's per-epoch validation losses
    and MAEs, and the target's expected age per test image."""
    import pandas as pd

    from cascade import config as C
    from cascade.stages import plan as P
    from cascade.stages.execute import Runner

    cfg = C.load([*SETTINGS, f"home={home}", *extra])
    plan = P.build(cfg)
    Runner(plan, progress=False).run()
    stage, target = plan.nodes[1], plan.targets[0]
    history = json.loads((home / "stages" / stage.key / "metrics.json").read_text())["history"]
    pred = pd.read_csv(home / "stages" / target.key / "predictions.csv")
    return {"trainer_version": P.TRAINER_VERSION, "settings": SETTINGS,
            "stage": {"val_loss": [h["val_loss"] for h in history], "val_mae": [h["val_mae"] for h in history]},
            "target": {"folds": int(pred["fold"].nunique()), "row": pred["row"].tolist(),
                       "pred_expected": [round(v, 6) for v in pred["pred_expected"]]}}


def differences(a: dict, b: dict) -> dict[str, float]:
    """The largest absolute difference of each kept series (inf where their shapes differ)."""
    import numpy as np

    out = {}
    for part, key in (("stage", "val_loss"), ("stage", "val_mae"), ("target", "pred_expected")):
        x, y = np.asarray(a[part][key], float), np.asarray(b[part][key], float)
        out[f"{part}.{key}"] = float(np.abs(x - y).max()) if x.shape == y.shape else float("inf")
    if a["target"]["row"] != b["target"]["row"]:
        out["target.row"] = float("inf")
    return out


def calibrate() -> None:
    kept = json.loads(FILE.read_text())
    for extra in CALIBRATION:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"{' '.join(extra):45s} {max(differences(kept, measure(Path(tmp), extra)).values()):.2g}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--calibrate"]:
        calibrate()
        sys.exit(0)
    with tempfile.TemporaryDirectory() as tmp:
        numbers = measure(Path(tmp))
    FILE.write_text(json.dumps(numbers, indent=1) + "\n")
    print(f"wrote {FILE} (TRAINER_VERSION {numbers['trainer_version']}, {numbers['target']['folds']} folds)")
