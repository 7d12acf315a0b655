"""Is the data path ever the bottleneck?  Decoded-cache reads + normalisation + augmentation,
in images/s per core, against the training step rate of VGG-16 and ResNet-50 at 224 px per core
(the bound: the loader must deliver at least 3x what a step consumes).

    python benchmarks/data_path.py [--size 224] [--n 512] [--batch 32]

Both are measured in this process on one thread (per core): the loader reads random rows of a
memory-mapped uint8 cache written to a temporary folder (as `cascade data prepare` writes it),
applies the backbone's preprocessing and the thesis's augmentation; the models run Adam steps.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cascade.models import AgeModel, build_backbone
from cascade.train.augment import random_affine


def loader_rate(size: int, n: int, batch: int, seconds: float = 5.0) -> float:
    folder = Path(tempfile.mkdtemp(prefix="cascade-data-path-"))
    rng = np.random.default_rng(0)
    np.save(folder / "images.npy", rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8))
    images = np.load(folder / "images.npy", mmap_mode="r")
    pre = build_backbone("vgg16").preprocessing
    gen = torch.Generator().manual_seed(0)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        rows = np.sort(rng.choice(n, batch, replace=False))
        x = pre.apply(torch.from_numpy(np.ascontiguousarray(images[rows])))
        random_affine(x, gen, 10.0, 0.1, 0.1, True)
        done += batch
    return done / (time.perf_counter() - start)


def step_rate(backbone: str, size: int, batch: int = 4, steps: int = 2) -> float:
    torch.manual_seed(0)
    model = AgeModel(build_backbone(backbone), 91, [512, 256])
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 91, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)
    loader = loader_rate(args.size, args.n, args.batch)
    print(f"data path (memory-mapped cache read + normalise + augment) at {args.size} px: {loader:8.1f} img/s per core")
    for backbone in ("vgg16", "resnet50"):
        rate = step_rate(backbone, args.size)
        ratio = loader / rate
        print(f"{backbone:9s} training step at {args.size} px: {rate:8.2f} img/s per core   loader / step {ratio:8.1f}x "
              f"(target >= 3: {'met' if ratio >= 3 else 'NOT met'})")


if __name__ == "__main__":
    main()
