"""Decoded-image cache: every image is decoded, cropped and resized once into a uint8 array.

Why: JPEG decoding dominates a small model's step time, and 82 LOPO folds (run in parallel)
must share one copy of the pixels.  The array is a `.npy` file opened with mmap, so worker
processes map the same pages instead of receiving a pickled copy.  The cache key covers the
manifest (files, sizes, labels), the crop rule and the size, so any change rebuilds it.
Files that cannot be decoded are quarantined with their reason and counted in the dataset's
cleaning report; the run goes on with the rest.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from PIL import Image, ImageOps

from cascade.data.records import DatasetTable
from cascade.progress import bar as progress_bar
from cascade.store import StageDir, atomic_write_json, atomic_write_text, reserve, stable_hash

#: In every cache's key: bump when the cache's layout or decoding changes (CHANGELOG.md).
CACHE_VERSION = 2


def decode_rgb(path) -> Image.Image:
    """Open any image the datasets contain as 8-bit RGB: EXIF orientation applied, grayscale
    scans, CMYK, palette and alpha images converted, 16-bit rescaled."""
    with Image.open(path) as im:
        im.load()
        im = ImageOps.exif_transpose(im)
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im, dtype=np.float64)
            top = arr.max() or 1.0
            im = Image.fromarray((arr * (255.0 / top)).astype(np.uint8), "L")
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
            im = Image.alpha_composite(bg, im)
        return im.convert("RGB")


def square_box(box: tuple[float, float, float, float] | None, width: int, height: int,
               margin: float) -> tuple[int, int, int, int]:
    """A square crop box: the face box grown by `margin` of its size on every side (thesis: 40%),
    or the centred square of the whole image when the dataset gives no box."""
    if box is None:
        side = min(width, height)
        x0, y0 = (width - side) // 2, (height - side) // 2
        return x0, y0, x0 + side, y0 + side
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = max(w, h) * (1 + 2 * margin)
    return (int(round(cx - side / 2)), int(round(cy - side / 2)),
            int(round(cx + side / 2)), int(round(cy + side / 2)))


def box_inside(box, width: int, height: int) -> float:
    """The share of a face box that lies inside a width x height image: a box mostly outside
    describes another picture (the `_crop` releases of IMDB-WIKI keep the original photograph's
    `face_location`), and cropping around it would cut black padding or a piece of the face."""
    x1, y1, x2, y2 = box
    area = max(x2 - x1, 0) * max(y2 - y1, 0)
    if area <= 0:
        return 0.0
    inside = max(min(x2, width) - max(x1, 0), 0) * max(min(y2, height) - max(y1, 0), 0)
    return inside / area


def decode_file(path: Path):
    """(RGB image or None, quarantine reason or None, sha256 of the file's bytes or "").  The one
    decoder of dataset images and of the photos `cascade predict` reads, so both see the same
    pixels and a bad file gets the same reason."""
    if not path.exists():
        return None, "listed file missing", ""
    data = path.read_bytes()                     # read once: hashed and decoded from memory
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        return None, "zero-byte file", digest
    try:
        return decode_rgb(io.BytesIO(data)), None, digest
    except Exception as exc:  # PIL raises many types for damaged files; the reason is recorded
        return None, f"undecodable: {type(exc).__name__}: {exc}"[:200], digest


def _crop(im: Image.Image, box, size: int, margin: float) -> np.ndarray:
    crop = im.crop(square_box(box, im.width, im.height, margin))   # outside pixels are black
    return np.asarray(crop.resize((size, size), Image.BILINEAR), dtype=np.uint8)


class ImageCache:
    """Images of a dataset table as an (N, size, size, 3) uint8 memory map, row-aligned with
    `table.frame` after decode failures were removed."""

    def __init__(self, path: Path, table: DatasetTable):
        self.path = path
        self.table = table
        self.images = np.load(path / "images.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.images)


def cache_key(table: DatasetTable, size: int, crop: dict) -> str:
    return stable_hash({"v": CACHE_VERSION, "manifest": stable_hash(table.manifest_records()),
                        "size": size, "crop": crop})


def prepare(table: DatasetTable, size: int, crop: dict, home: Path, jobs: int = 2,
            progress: bool = True) -> ImageCache:
    """Build (once) and open the cache of `table`; returns it with the table's frame reduced
    to the usable rows and the failures added to the table's cleaning report.

    `crop`: the resolved crop settings (`cascade.data.datasets.crop_settings`): mode box | mtcnn
    | align | none, margin, no_face policy, min_prob, alignment template.
    The cached files are checked against the sha256 sums of the completion marker each time
    and a damaged cache is rebuilt (a flipped byte in a multi-GB array would otherwise silently
    change every number computed from it)."""
    folder = StageDir(Path(home) / "cache", cache_key(table, size, crop))
    folder.fill("image cache", lambda: _build(table, size, crop, folder, jobs, progress),
                info={"dataset": table.name, "size": size, "crop": crop})
    rows = json.loads(folder.file("rows.json").read_text())
    for reason, n in pd.Series([q["reason"].split(":")[0] for q in rows["quarantine"]],
                               dtype=object).value_counts(sort=False).items():
        table.report.drop(f"image quarantined: {reason}", int(n))
    table.report.quarantine.extend(rows["quarantine"])
    table.frame = table.frame.iloc[rows["keep"]].reset_index(drop=True)
    return ImageCache(folder.path, table)


#: Images decoded (and, for mtcnn, detected) per step: bounds memory for full-size photographs.
CHUNK = 256


def _build(table: DatasetTable, size: int, crop: dict, folder: StageDir, jobs: int, progress: bool) -> list[str]:
    """Decode every listed file once, locate the face per `crop`, write the pixel array, the row
    map and the manifest table (path, sha256, bytes, label, subject, fold, cached row or
    quarantine reason); the names of the files written."""

    frame = table.frame
    boxes = [None if np.isnan(r.box_x1) else (r.box_x1, r.box_y1, r.box_x2, r.box_y2)
             for r in frame.itertuples()]
    paths = [table.root / p for p in frame["path"]]
    pixels, reasons, digests = [None] * len(paths), [None] * len(paths), [""] * len(paths)
    bar = progress_bar(total=len(paths), desc=f"decode {table.name}" + (" + MTCNN" if crop["mode"] in ("mtcnn", "align") else ""),
                       enabled=progress)
    with Parallel(n_jobs=jobs, prefer="threads") as pool:
        for start in range(0, len(paths), CHUNK):
            idx = range(start, min(start + CHUNK, len(paths)))
            decoded = pool(delayed(decode_file)(paths[i]) for i in idx)
            ok = [(i, im) for i, (im, _, _) in zip(idx, decoded) if im is not None]
            found = _locate(crop, [im for _, im in ok], [boxes[i] for i, _ in ok])
            for i, (im, reason, digest) in zip(idx, decoded):
                reasons[i], digests[i] = reason, digest
            for (i, im), (where, reason) in zip(ok, found):
                if reason:
                    reasons[i] = reason
                else:
                    pixels[i] = place(im, where, size, crop)
            bar.update(len(idx))
    bar.close()
    keep = [i for i, px in enumerate(pixels) if px is not None]
    bad = [{"path": frame["path"].iat[i], "reason": reasons[i]} for i in range(len(paths)) if pixels[i] is None]
    tmp = folder.file("images.npy.partial")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(keep), size, size, 3))
    try:
        reserve(tmp)                        # out of space: a clear error now, not SIGBUS later
    except OSError:
        del arr
        tmp.unlink(missing_ok=True)
        raise
    for j, i in enumerate(keep):
        arr[j] = pixels[i]
    arr.flush()
    del arr
    shutil.move(tmp, folder.file("images.npy"))
    cached_row = np.full(len(frame), -1)
    cached_row[keep] = np.arange(len(keep))
    manifest = pd.DataFrame({
        "path": frame["path"], "sha256": digests,
        "bytes": [p.stat().st_size if p.exists() else -1 for p in paths],
        "age_lo": frame["age_lo"], "age_hi": frame["age_hi"], "subject": frame["subject"],
        "fold": frame["fold"], "cached_row": cached_row, "quarantine": [r or "" for r in reasons]})
    atomic_write_text(folder.file("manifest.csv"), manifest.to_csv(index=False))
    atomic_write_json(folder.file("rows.json"), {"keep": keep, "quarantine": bad})
    return ["images.npy", "rows.json", "manifest.csv"]


def _locate(crop: dict, images: list[Image.Image], boxes: list) -> list[tuple]:
    """(where, quarantine reason or None) per image; where is a face box, None for the centred
    square, or (`align`) the face's five landmarks as a (5, 2) array."""
    if crop["mode"] == "box":
        return [(b, None) if b is None or box_inside(b, im.width, im.height) >= 0.5
                else (None, "face box outside the image (the box refers to another picture)")
                for b, im in zip(boxes, images)]
    if crop["mode"] == "none":
        return [(None, None)] * len(images)
    from cascade.data.face_detect import detect, resolve_box

    found = detect(images, min_prob=crop["min_prob"], select=crop.get("select", "central"))
    if crop["mode"] == "align":
        return [(d.landmarks, None) if d is not None else resolve_box(None, crop["no_face"]) for d in found]
    return [resolve_box(d.box if d is not None else None, crop["no_face"]) for d in found]


def place(im: Image.Image, where, size: int, crop: dict) -> np.ndarray:
    """The cached pixels of one image: warped onto the alignment template when `where` holds
    landmarks, else the square crop around a box (or the centred square).  `cascade predict`
    cuts its faces with it too, so a model sees the crop its training data had."""
    if isinstance(where, np.ndarray):
        from cascade.data.align import align
        return align(im, where, size, crop["template"])
    return _crop(im, where, size, crop["margin"])
