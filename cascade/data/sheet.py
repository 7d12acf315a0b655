"""`cascade data sheet DATASET`: a contact sheet of the crops a stage trains on, before it trains.

Why: the crop rule (`data.crop`: a box from the metadata, MTCNN, alignment onto the backbone's
template, or the centred square) decides whether a network sees a face, a piece of one or the
background, and a wrong one costs a two-day run before a number looks odd.  The sheet draws a
random sample of the cleaned dataset through the very functions the image cache uses
(`cache.decode_file`, `cache._locate`, `cache.place`) at the backbone's input size, each beside
one random training augmentation (`train.augment.random_affine` with the `augment.*` settings),
with its age label and subject; below them, rows the loader or the face finder quarantined,
each with its reason.  Nothing is cached or trained: the sample alone is decoded.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cascade.data.cache import _locate, decode_file, place
from cascade.data.records import DatasetTable


def sample_crops(table: DatasetTable, crop: dict, size: int, n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(crops, quarantined) of `n` rows drawn with `seed`: each crop {"pixels", "age", "subject",
    "path"}; each quarantined row of the sample {"path", "reason", "pixels"} (file missing,
    undecodable: no pixels; no face found: the photograph, squared)."""
    frame = table.frame
    rows = np.sort(np.random.default_rng(seed).choice(len(frame), min(n, len(frame)), replace=False))
    crops, bad = [], []
    for i in rows:
        r = frame.iloc[i]
        im, reason, _ = decode_file(table.root / r["path"])
        if im is not None:
            box = None if np.isnan(r["box_x1"]) else (r["box_x1"], r["box_y1"], r["box_x2"], r["box_y2"])
            where, reason = _locate(crop, [im], [box])[0]
        if reason:
            bad.append({"path": r["path"], "reason": reason, "pixels": None if im is None else _whole(im)})
            continue
        age = f"{int(r['age_lo'])}" if r["age_lo"] == r["age_hi"] else f"{int(r['age_lo'])}-{int(r['age_hi'])}"
        crops.append({"pixels": place(im, where, size, crop), "age": age, "subject": str(r["subject"]),
                      "path": r["path"]})
    return crops, bad


def augmented(pixels: list[np.ndarray], aug: dict, seed: int) -> list[np.ndarray]:
    """One random training augmentation of each crop, drawn as the trainer draws it."""
    import torch

    from cascade.train.augment import random_affine

    if not pixels:
        return []
    x = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 255.0
    gen = torch.Generator().manual_seed(seed)
    y = random_affine(x, gen, aug["rotation"], aug["shift"], aug["crop"], aug["flip"])
    return list((y.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy())


def loader_quarantine(table: DatasetTable, k: int) -> list[dict]:
    """Up to `k` rows the loader quarantined whose file exists (a name it could not parse, an
    age out of range), each {"path", "reason", "pixels"}: the original photograph, squared."""
    out = []
    for q in table.report.quarantine:
        if len(out) == k:
            break
        path = q.get("path")
        if not path or not (table.root / path).is_file():
            continue
        im, _, _ = decode_file(table.root / path)
        if im is not None:
            out.append({"path": path, "reason": q["reason"], "pixels": _whole(im)})
    return out


def _whole(im) -> np.ndarray:
    """A quarantined photograph as shown: its centred square at 96 px."""
    return place(im, None, 96, {"margin": 0.0})


def write_sheet(table: DatasetTable, crop: dict, size: int, aug: dict | None, out: Path, n: int = 32,
                seed: int = 0) -> tuple[Path, dict]:
    """Draw the sheet to `out` (PNG, written atomically); returns it and the counts shown."""
    from cascade.report.figures import _new_figure, _save, _title

    crops, bad = sample_crops(table, crop, size, n, seed)
    views = augmented([c["pixels"] for c in crops], aug, seed) if aug else []
    quarantined = loader_quarantine(table, 8)
    cols = 8
    pairs = len(crops)
    tiles_per_row = cols // 2 if views else cols
    crop_rows = -(-pairs // tiles_per_row) if pairs else 0
    q_tiles = quarantined + bad
    q_rows = -(-len(q_tiles) // cols) if q_tiles else 0
    fig = _new_figure(cols * 1.3, 1.0 + 1.45 * (crop_rows + q_rows))
    grid = fig.add_gridspec(max(crop_rows + q_rows, 1), cols)
    for i, c in enumerate(crops):
        r, col = divmod(i, tiles_per_row)
        shown = [(c["pixels"], f"age {c['age']}\n{c['subject'][:12]}")]
        if views:
            shown.append((views[i], "augmented"))
        for j, (px, text) in enumerate(shown):
            ax = fig.add_subplot(grid[r, col * len(shown) + j])
            ax.imshow(px, interpolation="nearest")
            ax.set_title(text, fontsize=6)
            ax.axis("off")
    for i, q in enumerate(q_tiles):
        r, col = divmod(i, cols)
        ax = fig.add_subplot(grid[crop_rows + r, col])
        if q["pixels"] is not None:
            ax.imshow(q["pixels"], interpolation="nearest")
        ax.set_title(f"QUARANTINED\n{q['reason'][:28]}\n{Path(q['path']).name[:20]}", fontsize=5, color="crimson")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color("crimson")
    how = f"crop {crop['mode']}" + (f", margin {crop['margin']}" if crop.get("margin") is not None else "")
    title = _title(f"{table.name}: {len(crops)} random crops at {size} px as the stage sees them ({how}"
                   + ("; each beside one training augmentation" if views else "") + ")", table.synthetic)
    fig.suptitle(title, fontsize=8)
    png = _save(fig, Path(out).with_suffix(""), title, formats=("png",))[0]
    return png, {"crops": len(crops), "sample quarantined": len(bad), "loader quarantine shown": len(quarantined)}
