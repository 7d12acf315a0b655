"""How much a run's numbers depend on `--jobs`: the same targets trained with `--jobs 1` (one
fold at a time, all cores as torch threads) and `--jobs 2` (two folds at once, one thread each).

Why it matters: a stage key names the settings, not the thread count (keying on it would stop a
run resumed with another `jobs` from reusing its finished folds), and on this CPU 1 and 2 torch
threads give different weights, each bit-reproducible for its thread count (cascade/runtime.py).
This prints the size of that difference on the demo, so the README can state it.

    python benchmarks/jobs_effect.py --home STORE [key=value ...]

STORE holds a finished default run (`cascade run` with `jobs=2`, the default on 2 cores); its
intermediate stages and image caches are linked into a scratch store, where the targets are
trained again with `jobs=1`: only the folds' thread count differs.  Prints per configuration
the MAE of each, the difference, and the largest per-image change of the expected age.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from cascade import config as C
from cascade.stages import plan as P
from cascade.stages.execute import Runner


def predictions(home: Path, node) -> pd.DataFrame:
    return pd.read_csv(home / "stages" / node.key / "predictions.csv").sort_values("row")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True, help="store with the finished jobs=2 run")
    ap.add_argument("settings", nargs="*", metavar="key=value")
    args = ap.parse_args()
    two = P.build(C.load([f"home={args.home}", "jobs=2", *args.settings]))
    missing = [n.label for n in two.nodes if n.kind != "root" and P.status(two, n) != "cached"]
    if missing:
        raise SystemExit(f"{args.home}: run `cascade run {' '.join(args.settings)}` there first ({', '.join(missing)})")
    scratch = Path(tempfile.mkdtemp(prefix="cascade-jobs1-"))
    for name in ("demo", "cache"):
        if (args.home / name).exists():
            (scratch / name).symlink_to((args.home / name).resolve())
    (scratch / "stages").mkdir()
    for node in two.nodes:
        if node.kind == "train":
            (scratch / "stages" / node.key).symlink_to((args.home / "stages" / node.key).resolve())
    one = P.build(C.load([f"home={scratch}", "jobs=1", *args.settings]))
    assert [n.key for n in one.nodes] == [n.key for n in two.nodes]       # jobs is not in the keys
    Runner(one, progress=False).run()
    print(f"{os.cpu_count()} cores; --jobs 2: 1 torch thread per fold, --jobs 1: {os.cpu_count()} threads")
    print(f"  {'configuration':40s} {'MAE jobs 2':>10s} {'MAE jobs 1':>10s} {'Δ':>7s} {'max |Δ age|':>11s}")
    for a, b in zip(two.targets, one.targets):
        pa, pb = predictions(args.home, a), predictions(scratch, b)
        mae_a = float(np.mean(np.abs(pa["pred_expected"] - pa["true_value"])))
        mae_b = float(np.mean(np.abs(pb["pred_expected"] - pb["true_value"])))
        print(f"  {a.label:40s} {mae_a:10.3f} {mae_b:10.3f} {mae_b - mae_a:+7.3f} "
              f"{float(np.abs(pa['pred_expected'].to_numpy() - pb['pred_expected'].to_numpy()).max()):11.3f}")


if __name__ == "__main__":
    main()
