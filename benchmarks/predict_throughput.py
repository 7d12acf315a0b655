"""Where `cascade predict` spends its time on a CPU: faces per second for the whole path
(decode + MTCNN + crop + model, `cascade.predict.run.predict`) side by side with the model alone
on crops already in memory, and each part's share of the time per face.

Photographs: the real AgeDB ones in ../shared/reference/faces/agedb when present (41 portraits of
123 to 405 px), else the demo suite's FG-NET-style photographs.  Models: each backbone of
`--backbones` at its own input size and crop (`box` with the 40 % margin; MobileFaceNet `align`),
with random weights (what the time depends on is the architecture, not the weights).

    python benchmarks/predict_throughput.py [--backbones demo,mobilefacenet,resnet50] [--repeats 3] [--threads N]

Each rate is the median of `--repeats` passes after a warm-up pass (MTCNN's weights load once).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cascade import config as C
from cascade.data.cache import decode_file
from cascade.data.datasets import LabelSpace
from cascade.data.face_detect import detect_all
from cascade.models import AgeModel, build_backbone
from cascade.predict.faces import cut_faces
from cascade.predict.run import predict
from cascade.predict.sources import image_files
from cascade.runtime import fingerprint
from cascade.stages.trained import TrainedStage
from cascade.train.trainer import predict_proba

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "faces" / "agedb"
#: The crop each backbone's training images have on real data (`data.crop=auto`).
CROPS = {"mobilefacenet": {"mode": "align", "margin": None, "template": "arcface112"}}
BOX = {"mode": "mtcnn", "margin": 0.4}


def photographs() -> tuple[str, list[Path]]:
    if REFERENCE.is_dir():
        return "real AgeDB photographs", sorted(REFERENCE.glob("*.jpg"))
    from cascade.data.synth.suite import write_suite
    out = Path(tempfile.mkdtemp(prefix="cascade-predict-"))
    write_suite(out, scale=0.05, progress=False)
    return "synthetic FG-NET-style photographs", sorted((out / "fgnet" / "images").iterdir())[:40]


def stage(backbone: str, cfg: dict) -> TrainedStage:
    """A stand-in for a trained stage of `backbone`: its real architecture and input size, random
    weights, 101 age classes (0-100), the crop its training data would have."""
    size = cfg["backbones"][backbone]["input_size"]
    model = AgeModel(build_backbone(backbone), 101, cfg["head"]["hidden"]).eval()
    info = {"input_size": size, "crop": CROPS.get(backbone, BOX), "backbone": backbone}
    return TrainedStage(model, LabelSpace(tuple(range(101)), tuple(range(101))), "untrained", backbone, info)


def median_seconds(run, repeats: int) -> float:
    run()                                                     # warm-up: weights load, allocators settle
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", default="demo,mobilefacenet,resnet50")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = C.load([f"train.threads={args.threads}", "devices=cpu"])
    env = fingerprint(cfg)
    print(f"# python benchmarks/predict_throughput.py {' '.join(sys.argv[1:])}".rstrip()
          + f" on {env['cpu']} ({env['cores']} cores, {args.threads} torch threads; load average "
            f"{os.getloadavg()[0]:.1f} at the start), torch {env['torch']}")
    what, files = photographs()
    sources = image_files(files)
    images = [decode_file(f)[0] for f in files]
    sizes = sorted(min(im.size) for im in images)
    detections = detect_all(images)
    decode = median_seconds(lambda: [decode_file(f) for f in files], args.repeats)
    detection = median_seconds(lambda: detect_all(images), args.repeats)
    print(f"{len(files)} {what}, shorter side {sizes[0]} to {sizes[-1]} px; faces: MTCNN's central face "
          f"(cascade predict's default)")
    print(f"  decode {1e3 * decode / len(files):.1f} ms per photograph, MTCNN {1e3 * detection / len(files):.1f} ms "
          f"per photograph ({len(files) / detection:.1f} photographs/s)")
    for name in args.backbones.split(","):
        s = stage(name, cfg)
        found = cut_faces(images, detections, "central", s.crop, s.size, "central")
        crops = np.stack([f.pixels for fs in found if not isinstance(fs, str) for f in fs])
        n = len(crops)
        cut = median_seconds(lambda: cut_faces(images, detections, "central", s.crop, s.size, "central"),
                             args.repeats)
        model = median_seconds(lambda: predict_proba(s.model, crops, np.arange(n), "cpu", 64), args.repeats)
        whole = median_seconds(lambda: predict(s, sources, "central", cfg, progress=False), args.repeats)
        parts = {"decode": decode, "MTCNN": detection, "crop": cut, "model": model}
        total = sum(parts.values())
        print(f"{name} at {s.size} px ({s.crop['mode']} crop), {n} faces:")
        print(f"  detection + crop + model (cascade predict)  {n / whole:8.1f} faces/s")
        print(f"  model alone (crops in memory)               {n / model:8.1f} faces/s")
        print("  share of the time per face: " + ", ".join(f"{k} {100 * v / total:.0f} % ({1e3 * v / n:.1f} ms)"
                                                          for k, v in parts.items()))
    print(f"# load average {os.getloadavg()[0]:.1f} at the end, this benchmark's own threads included (with other "
          f"processes busy on the same cores every rate above falls, MTCNN's most)")

if __name__ == "__main__":
    main()
