"""`cascade predict STAGE PATH [PATH ...]`: ages of the faces in new photographs.

The photographs are read in chunks (decoded by the dataset decoder: EXIF rotation, grayscale,
CMYK, 16-bit), their faces found and cut out as the stage's training images were
(`faces.find_faces`), and the crops of a chunk go through the model in batches
(`trainer.predict_proba`, the harness's own inference).  A file that cannot be read, or in which
no face is found, becomes a row with its reason: one bad photograph never stops a batch.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cascade.data.cache import decode_file
from cascade.predict import annotate as A
from cascade.predict.ages import INTERVAL, ages
from cascade.predict.faces import GIVEN, Face, face_crop, find_faces
from cascade.predict.sources import Source
from cascade.progress import bar as progress_bar
from cascade.runtime import configure, device, fingerprint, package_version
from cascade.stages.trained import TrainedStage
from cascade.train.trainer import predict_proba

#: Photographs decoded and detected at once: bounds memory for full-size photographs.
CHUNK = 32


def crop_of(stage: TrainedStage, faces: str, cfg: dict) -> dict:
    """The crop `--faces` cuts for `stage` (see faces.face_crop)."""
    return GIVEN if faces == "given" else face_crop(stage.crop, cfg["data"]["margin"])


def predict(stage: TrainedStage, sources: list[Source], faces: str, cfg: dict,
            annotate: Path | None = None, progress: bool = True) -> list[dict]:
    """One row per face (per file where there is none), in input order."""

    configure(cfg, 1)
    dev = device(cfg)
    stage.model.to(dev)
    rows: list[dict] = []
    bar = progress_bar(total=len(sources), desc=f"predict {stage.label}", unit="file", enabled=progress)
    for start in range(0, len(sources), CHUNK):
        chunk = sources[start:start + CHUNK]
        rows += _chunk(stage, chunk, faces, crop_of(stage, faces, cfg), cfg, dev, annotate)
        bar.update(len(chunk))
    bar.close()
    return rows


def _chunk(stage: TrainedStage, chunk: list[Source], faces: str, crop: dict, cfg: dict, dev: str,
           annotate: Path | None) -> list[dict]:
    """The rows of one chunk of inputs: decoded, faces found and cut, all its crops predicted at once."""
    decoded = [(None, s.problem) if s.problem else decode_file(s.path)[:2] for s in chunk]
    readable = [i for i, (im, _) in enumerate(decoded) if im is not None]
    found = dict(zip(readable, find_faces([decoded[i][0] for i in readable], faces, crop, stage.size,
                                          cfg["data"]["min_face_prob"], cfg["data"]["face_select"], dev)))
    crops = [f.pixels for fs in found.values() if not isinstance(fs, str) for f in fs]
    probs = predict_proba(stage.model, np.stack(crops), np.arange(len(crops)), dev,
                          cfg["predict"]["batch_size"]) if crops else np.zeros((0, len(stage.labels)))
    predicted = iter(ages(probs, stage.labels, cfg["predict"]["top"]))
    rows: list[dict] = []
    for i, source in enumerate(chunk):
        image, reason = decoded[i]
        reason = reason or (found[i] if isinstance(found[i], str) else None)
        mine = [_problem_row(source, reason)] if reason else \
            [_face_row(source, k, face, next(predicted)) for k, face in enumerate(found[i])]
        if annotate is not None and image is not None:
            A.save(image, mine, annotate / source.name)
        rows += mine
    return rows


def _problem_row(source: Source, reason: str) -> dict:
    return {"file": str(source.path), "face": None, "box": None, "face_prob": None, "reason": reason}


def _face_row(source: Source, k: int, face: Face, predicted: dict) -> dict:
    return {"file": str(source.path), "face": k, "reason": None,
            "box": None if face.box is None else [round(v, 1) for v in face.box],
            "face_prob": None if face.prob is None else round(face.prob, 4), **predicted}


def row_text(row: dict) -> str:
    """One row as `cascade predict` prints it: file, face, ages, interval and top classes."""
    if row["reason"] is not None:
        return f"{row['file']}  {row['reason']}"
    return (f"{row['file']}  face {row['face']}: {row['expected_age']:.1f} y (median {row['median_age']:g}, "
            f"80 % {row['age_p10']:g}-{row['age_p90']:g}; top " + ", ".join(f"{n} {p:.2f}" for n, p in row["top"]) + ")")


def header(stage: TrainedStage, faces: str, cfg: dict, settings: list[str], rows: list[dict]) -> dict:
    """What traces the rows to the model and the settings that made them (writers.write)."""
    detector = None if faces == "given" else {
        "name": f"MTCNN (facenet-pytorch {package_version('facenet-pytorch')})",
        "min_prob": cfg["data"]["min_face_prob"], "select": cfg["data"]["face_select"] if faces == "central" else "all"}
    return {"command": "cascade predict", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "settings": settings, **stage.describe(), "faces": faces, "detector": detector,
            "face_crop": crop_of(stage, faces, cfg),
            "decision": {"expected_age": "Σ value·p", "argmax_age": "value of the most probable class",
                         "median_age": "posterior median", "age_p10/age_p90": f"posterior quantiles {INTERVAL}"},
            "counts": {"files": len({r["file"] for r in rows}), "faces": sum(r["reason"] is None for r in rows),
                       "rows with a reason": sum(r["reason"] is not None for r in rows)},
            "environment": fingerprint(cfg)}
