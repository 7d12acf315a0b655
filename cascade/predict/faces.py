"""Faces of new photographs, cut out as the stage's training images were.

Three ways (`--faces`): MTCNN's every face (`all`), the one face the harness's own rule picks
(`central`: `data.face_select`, the rule the dataset caches use), or the files taken as face crops
already (`given`: the centred square resized, as `data.crop=none` does; no detector runs).

Why the crop follows the stage (`face_crop`): a model sees faces at the scale and position its
training crops had; a tighter or rotated crop changes its ages for no reason of the face.  The
pixels are made by the image cache's own `place`, so they are the same as a cached image's.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from cascade.data.cache import place
from cascade.data.face_detect import NO_FACE_REASON, Detection, choose, detect_all

FACES = ("central", "all", "given")


def face_crop(training_crop: dict, margin: float) -> dict:
    """How a detected face is cut out for a stage whose training images had `training_crop`:
    landmarks onto the same template (`align`), or a square box grown by the same margin.  A stage
    trained on ready-made crops (`none`) never saw a detector's box; MTCNN's box grown by
    `margin` (`data.margin`) stands in, and the sidecar says so."""
    if training_crop["mode"] == "align":
        return {"mode": "align", "template": training_crop["template"]}
    if training_crop["mode"] in ("box", "mtcnn"):
        return {"mode": "box", "margin": training_crop["margin"]}
    return {"mode": "box", "margin": margin}


#: The crop of `--faces given`: the centred square of the file, resized (`data.crop=none`).
GIVEN = {"mode": "none", "margin": None}


@dataclasses.dataclass
class Face:
    """One face of a photograph: its box in the photograph's pixels (None: the file is the
    crop), MTCNN's probability (None without detection) and the model's input pixels."""

    box: tuple[float, float, float, float] | None
    prob: float | None
    pixels: np.ndarray


def find_faces(images: list[Image.Image], faces: str, crop: dict, size: int, min_prob: float,
               select: str, device: str = "cpu") -> list[list[Face] | str]:
    """Per image, its faces in the order MTCNN gives them, or the reason it has none."""
    if faces == "given":
        return [[Face(None, None, place(im, None, size, GIVEN))] for im in images]
    return cut_faces(images, detect_all(images, min_prob, device), faces, crop, size, select)


def cut_faces(images: list[Image.Image], detections: list[list[Detection]], faces: str, crop: dict, size: int,
              select: str) -> list[list[Face] | str]:
    """Per image, the detected faces `faces` keeps (`all`, or the `central` one by `select`) cut out
    by `crop`, or the reason it has none.  Apart from `find_faces` so that the crop can be timed
    without the detector (benchmarks/predict_throughput.py)."""
    out: list[list[Face] | str] = []
    for im, found in zip(images, detections):
        if faces == "central":
            found = [d for d in [choose(found, im.size, select)] if d is not None]
        where = (lambda d: d.landmarks) if crop["mode"] == "align" else (lambda d: d.box)
        out.append([Face(d.box, d.prob, place(im, where(d), size, crop)) for d in found] or NO_FACE_REASON)
    return out
