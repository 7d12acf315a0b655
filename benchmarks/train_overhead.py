"""Harness overhead per training epoch: `cascade.train.trainer.fit` (memory-mapped cache reads,
augmentation, validation, logging, atomic checkpoint) against a bare PyTorch loop doing the
same arithmetic (same model, data, batches, augmentation, validation pass) on in-memory tensors.

    python benchmarks/train_overhead.py [--backbone demo] [--size 40] [--n 2048] [--repeats 3]

Both run in this process, alternately, `--repeats` times; prints each time and the median
ratio harness / bare (the harness must stay within 1.10).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cascade.models import AgeModel, build_backbone
from cascade.train.augment import random_affine
from cascade.train.trainer import Split, epoch_seed, fit

AUG = {"rotation": 10.0, "shift": 0.1, "crop": 0.1, "flip": True}


def _model(backbone: str, classes: int) -> AgeModel:
    torch.manual_seed(0)
    return AgeModel(build_backbone(backbone), classes, [512, 256])


def bare_epoch(model: AgeModel, split: Split, params: dict, values: torch.Tensor) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=params["lr"])
    images = torch.from_numpy(split.images)                          # fully in memory
    targets = torch.from_numpy(split.targets)
    gen = torch.Generator().manual_seed(epoch_seed(0, 0))
    model.train()
    order = torch.randperm(len(split.train), generator=gen).numpy()
    for i in range(0, len(order), params["batch_size"]):
        rows = torch.from_numpy(split.train[order[i:i + params["batch_size"]]])
        x = random_affine(model.preprocessing.apply(images[rows]), gen, **AUG)
        loss = F.cross_entropy(model(x), targets[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        for i in range(0, len(split.val), 256):
            rows = torch.from_numpy(split.val[i:i + 256])
            logits = model(model.preprocessing.apply(images[rows]))
            F.cross_entropy(logits, targets[rows], reduction="sum")
            (F.softmax(logits, 1) @ values - values[targets[rows]]).abs().sum()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="demo")
    ap.add_argument("--size", type=int, default=40)
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    classes = 80
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images.npy"                              # the harness reads a memmap, as in a run
        np.save(path, rng.integers(0, 256, (args.n, args.size, args.size, 3), dtype=np.uint8))
        images = np.load(path, mmap_mode="r")
        targets = rng.integers(0, classes, args.n)
        idx = np.arange(args.n)
        split = Split(images, targets, idx[: args.n * 4 // 5], idx[args.n * 4 // 5:])
        params = {"lr": 1e-3, "batch_size": 32, "epochs": 1, "patience": 3, "lr_factor": 0.5,
                  "mode": "full", "augment": True, "select": "last"}
        values = torch.arange(classes, dtype=torch.float32)
        memory = np.array(images)                                    # the bare loop's in-memory copy
        bare_epoch(_model(args.backbone, classes), Split(memory, targets, split.train, split.val),
                   params, values)                                   # warm-up, not timed
        harness, bare = [], []
        for r in range(args.repeats):
            model = _model(args.backbone, classes)
            t = time.perf_counter()
            bare_epoch(model, Split(memory, targets, split.train, split.val), params, values)
            bare.append(time.perf_counter() - t)
            model = _model(args.backbone, classes)
            ckpt = Path(tmp) / f"ckpt{r}.pt"
            t = time.perf_counter()
            fit(model, split, params, AUG, values.numpy(), ckpt, seed=0, log=lambda m: None)
            harness.append(time.perf_counter() - t)
    print(f"{args.backbone} at {args.size} px, {args.n} images, batch 32, {args.threads} threads")
    print("  bare PyTorch epoch  " + "  ".join(f"{t:6.2f}s" for t in bare))
    print("  harness epoch       " + "  ".join(f"{t:6.2f}s" for t in harness))
    print(f"harness / bare (median of {args.repeats}): {statistics.median(harness) / statistics.median(bare):.3f}")


if __name__ == "__main__":
    main()
