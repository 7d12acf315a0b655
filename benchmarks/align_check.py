"""What `data.crop=align` does to the faces, and whether the demo suite can show it.

1. The demo suite: MTCNN's detection rate on the synthetic FG-NET and AgeDB photographs.  Its faces
   are drawn by a procedural renderer, not photographed, and MTCNN finds only part of them, so an
   align-against-margin MAE on the demo would compare different image sets; this says how many.
2. The real reference photographs (../shared/reference/faces, when present): where the five
   landmarks land in a 112 px crop with the thesis's 40 % margin box and with `align`, as their
   spread across faces (px, the mean distance of each landmark from its mean position) and their
   distance from the template.  Alignment is what removes that spread.

    .venv/bin/python benchmarks/align_check.py [--home DIR] [--reference DIR]

Prints one line per measurement (kept in results/benchmarks/align.txt).
"""
from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np

from cascade.data.align import similarity, template_points
from cascade.data.cache import decode_rgb, square_box
from cascade.data.datasets import demo_suite
from cascade.data.face_detect import detect

SIZE = 112


def detection_rate(root: Path, pattern: str) -> tuple[int, int]:
    paths = sorted(glob.glob(str(root / pattern), recursive=True))
    found = detect([decode_rgb(p) for p in paths])
    return sum(d is not None for d in found), len(paths)


def landmark_spread(points: np.ndarray) -> float:
    """Mean distance (px) of each face's landmarks from the landmarks' mean positions."""
    return float(np.linalg.norm(points - points.mean(0), axis=2).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", type=Path, default=Path("/tmp/cascade-align-check"))
    ap.add_argument("--reference", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared" / "reference" / "faces")
    args = ap.parse_args()

    suite = demo_suite(args.home, 1.0, 0, progress=False)
    for name, pattern in (("FG-NET", "fgnet/**/*.JPG"), ("AgeDB", "agedb/**/*.jpg")):
        hit, n = detection_rate(suite, pattern)
        print(f"demo suite {name}: MTCNN finds a face in {hit} of {n} synthetic photographs ({100 * hit / n:.0f} %)")

    paths = sorted(p for p in args.reference.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        print(f"real reference faces: none at {args.reference}")
        return
    images = [decode_rgb(p) for p in paths]
    found = [(im, d) for im, d in zip(images, detect(images)) if d is not None]
    target = template_points("arcface112", SIZE)
    margin, aligned = [], []
    for im, d in found:
        x0, y0, x1, y1 = square_box(d.box, im.width, im.height, 0.4)
        margin.append((d.landmarks - [x0, y0]) * (SIZE / (x1 - x0)))
        m = similarity(d.landmarks, target)
        aligned.append(d.landmarks @ m[:, :2].T + m[:, 2])
    margin, aligned = np.array(margin), np.array(aligned)
    print(f"real reference faces: MTCNN finds {len(found)} of {len(paths)}")
    for name, pts in (("40 % margin box", margin), ("align (arcface112)", aligned)):
        off = np.linalg.norm(pts - target, axis=2)
        print(f"  {name:<20} landmark spread across faces {landmark_spread(pts):5.2f} px at {SIZE} px; "
              f"distance from the template: median {np.median(off):5.2f} px, 90th percentile {np.percentile(off, 90):5.2f} px")


if __name__ == "__main__":
    main()
