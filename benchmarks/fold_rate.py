"""Folds per hour of a LOPO target on this CPU, per way of training: the head on shared features
(mode a), the top K layers above a cached cut (`train.cut_cache`), the same K layers through the
whole body, and the whole network (mode b).

Why: a researcher with a CPU chooses a recipe by what it costs per fold; on real FG-NET with
MobileFaceNet the uncached partial and the full fine-tuning run the body forward for every image of
every epoch of every fold, while the cut cache runs it once per image for all 82 folds.

    python benchmarks/fold_rate.py [--epochs 2] [--folds 1] [--trainable 7] [key=value ...]

The settings name the target (default: the real FG-NET track, `backbone=mobilefacenet
data.root.fgnet=../shared/reference/fgnet data.crop=align`).  Each way trains the same first
`--folds` LOPO folds for `--epochs` epochs with one torch thread (a fold worker's share of 2
cores, `jobs=2`), timed side by side in this process; folds/hour is per worker, scaled to the
stage's configured epochs, and for the whole machine times the workers.  One-off costs (the
shared features, the cut activations) are printed apart: they are paid once per target.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from cascade import config as C
from cascade.data.datasets import LabelSpace
from cascade.protocols import folds as protocol_folds
from cascade.stages import plan as P
from cascade.stages.execute import fold_split, model_source
from cascade.train.trainer import Split, fit, shared_features, shares_features

REAL = ["stage=", "target=fgnet", "backbone=mobilefacenet", "data.root.fgnet=../shared/reference/fgnet",
        "data.crop=align"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2, help="epochs timed per fold (scaled to the stage's)")
    ap.add_argument("--folds", type=int, default=1, help="LOPO folds timed per way")
    ap.add_argument("--trainable", type=int, default=7, help="K of the partial ways (train.trainable_layers)")
    ap.add_argument("settings", nargs="*", metavar="key=value")
    args = ap.parse_args()
    cfg = C.load(args.settings or REAL)
    plan = P.build(cfg)
    node = plan.targets[0]
    cache = plan.cache(node.stage, progress=False)
    labels = LabelSpace.of(cache.table, node.params.get("classes"))
    targets = labels.encode(cache.table.frame["age_lo"], cache.table.frame["age_hi"])
    subjects = cache.table.frame["subject"].to_numpy()
    folds = protocol_folds(cache.table.frame.assign(label=targets), node.info["protocol"], cfg["split_seed"])
    source = model_source(plan, node.parent)
    torch.set_num_threads(1)
    full = C.stage_params(cfg, node.stage, "full")
    ways = {
        "mode a: head on shared features": C.stage_params(cfg, node.stage, "head"),
        f"top {args.trainable} layers above a cached cut": {**full, "trainable_layers": args.trainable,
                                                             "cut_cache": True},
        f"top {args.trainable} layers through the whole body": {**full, "trainable_layers": args.trainable},
        "whole network (mode b)": full,
    }
    print(f"{cfg['backbone']} on {node.stage} ({len(cache.images)} images, {len(folds)} folds), 1 torch thread per "
          f"fold worker, {os.cpu_count()} cores; {args.folds} fold(s) x {args.epochs} epoch(s) timed per way")
    scratch = Path(tempfile.mkdtemp(prefix="cascade-foldrate-"))
    for way, (name, params) in enumerate(ways.items()):
        model = source.build(labels, cfg["seed"])
        if way == 0:                      # torch's first-call costs, paid by no way
            fname, train, _ = folds[0]
            tr, va = fold_split(subjects, train, params, cfg["seed"], fname, targets)
            fit(source.build(labels, cfg["seed"]), Split(cache.images, targets, tr, va), {**params, "epochs": 1},
                cfg["augment"], labels.values, scratch / "warm-up.pt", cfg["seed"], "cpu", log=lambda m: None)
        start = time.perf_counter()
        shared = shared_features(model, cache.images, params, "cpu") if shares_features(params) else None
        once = time.perf_counter() - start
        timed = 0.0
        for fold, (fname, train, _test) in enumerate(folds[:args.folds]):
            model = source.build(labels, cfg["seed"])
            tr, va = fold_split(subjects, train, params, cfg["seed"], fname, targets)
            start = time.perf_counter()
            fit(model, Split(cache.images, targets, tr, va), {**params, "epochs": args.epochs}, cfg["augment"],
                labels.values, scratch / f"{way}-{fold}.pt", cfg["seed"], "cpu", log=lambda m: None,
                features=shared)
            timed += time.perf_counter() - start
        per_fold = timed / args.folds / args.epochs * params["epochs"]
        workers = max(1, os.cpu_count() or 1)
        print(f"  {name:48s} {per_fold:8.1f} s per fold ({params['epochs']} epochs)   "
              f"{3600 / per_fold:8.1f} folds/h per worker, {workers * 3600 / per_fold:8.1f} on {workers} workers; "
              f"once per target: {once:.1f} s")


if __name__ == "__main__":
    main()
