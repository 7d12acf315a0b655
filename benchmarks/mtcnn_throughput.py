"""MTCNN face-cropping throughput (facenet-pytorch, as `data.crop=mtcnn` runs it in the cache
build), in images/s per core, on real AgeDB photographs where ../shared/reference/faces/agedb
exists, else on the demo suite's FG-NET-style photographs.

    python benchmarks/mtcnn_throughput.py [--repeats 3] [--threads 1]

Prints the images, their sizes, the faces found and the median rate of `--repeats` passes (the
first pass, which loads the weights, is not counted).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from cascade.data.face_detect import detect

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "faces" / "agedb"


def images() -> tuple[str, list[Image.Image]]:
    if REFERENCE.is_dir():
        files = sorted(REFERENCE.glob("*.jpg"))
        return f"{len(files)} real AgeDB photographs", [Image.open(f).convert("RGB") for f in files]
    from cascade.data.synth.suite import write_suite
    out = Path(tempfile.mkdtemp(prefix="cascade-mtcnn-"))
    write_suite(out, scale=0.05, progress=False)
    files = sorted((out / "fgnet" / "images").iterdir())[:40]
    return f"{len(files)} synthetic FG-NET-style photographs", [Image.open(f).convert("RGB") for f in files]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    what, ims = images()
    found = sum(d is not None for d in detect(ims))          # warm-up: loads MTCNN's weights
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        detect(ims)
        rates.append(len(ims) / (time.perf_counter() - start))
    sizes = sorted({im.size for im in ims})
    print(f"{what} ({len(sizes)} sizes, {min(sizes)} to {max(sizes)} px): faces found in {found}")
    print(f"MTCNN detection, {args.threads} thread(s): {statistics.median(rates):.1f} img/s "
          f"({statistics.median(rates) / args.threads:.1f} per core; passes {', '.join(f'{r:.1f}' for r in rates)})")


if __name__ == "__main__":
    main()
