"""Can the data feed keep a GPU busy?  Images per second one feeding thread delivers from the
memory-mapped image cache to the device boundary (cascade.train.feed.delivery_rate: random
batches as in training, gathered; on a GPU also pinned and copied without blocking), at 224 px,
with the cache warm (in the page cache) and cold (its pages dropped first with
posix_fadvise(DONTNEED)), side by side with the training rates that feed must keep up with.

    python benchmarks/feed_rate.py [--size 224] [--n 3000] [--batch 64] [--seconds 5]

The reference training rates are published numbers, not measured here: ResNet-50 with AMP on
one A100 trains at about 2,500 img/s (NVIDIA DeepLearningExamples, PyTorch ResNet-50 v1.5,
mixed precision, batch 256), VGG-16 at about 800 img/s.  The target is >= 3,000 img/s per
feeding thread; the threads each GPU needs are printed.
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from cascade.train.feed import delivery_rate

PUBLISHED = {"ResNet-50, AMP, A100": 2500.0, "VGG-16, AMP, A100": 800.0}
TARGET = 3000.0


def _cache(folder: Path, n: int, size: int) -> np.ndarray:
    """A memory-mapped (n, size, size, 3) uint8 array like the image cache, filled with noise."""
    path = folder / "images.npy"
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    rng = np.random.default_rng(0)
    for i in range(0, n, 256):
        array[i:i + 256] = rng.integers(0, 256, array[i:i + 256].shape, dtype=np.uint8)
    array.flush()
    del array
    return np.load(path, mmap_mode="r")


def _drop_pages(path: Path) -> None:
    """Evict the file's pages from the page cache, so the next read comes from the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    boundary = "pinned and copied to the GPU" if device == "cuda" else "a contiguous host tensor (no GPU here)"
    with tempfile.TemporaryDirectory() as tmp:
        images = _cache(Path(tmp), args.n, args.size)
        mb = images.nbytes / 2**20
        np.asarray(images).sum(dtype=np.uint64)                       # warm: every page read once
        warm = delivery_rate(images, args.batch, args.seconds, device)
        del images                     # pages mapped by this process are not dropped: unmap first
        _drop_pages(Path(tmp) / "images.npy")
        images = np.load(Path(tmp) / "images.npy", mmap_mode="r")
        cold = delivery_rate(images, args.batch, args.seconds, device, seed=1, once=True)   # one pass: stays cold
    print(f"feed: one thread, {args.size} px crops, batches of {args.batch} in random order, "
          f"{args.n} images ({mb:.0f} MB) memory-mapped; delivered as {boundary}")
    print(f"  warm cache  {warm:9,.0f} img/s per thread")
    print(f"  cold cache  {cold:9,.0f} img/s per thread (pages dropped with posix_fadvise first)")
    print(f"  target      {TARGET:9,.0f} img/s per thread: {'met' if warm >= TARGET else 'NOT met'} (warm)")
    for name, rate in PUBLISHED.items():
        print(f"  published training rate {name}: {rate:,.0f} img/s -> {math.ceil(rate / warm)} feeding "
              f"thread(s) per GPU warm, {math.ceil(rate / cold)} cold")


if __name__ == "__main__":
    main()
