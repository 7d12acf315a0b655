"""`cascade predict --annotate DIR`: each photograph with its faces boxed and their ages written.

Why: a table of boxes is hard to check; the picture shows at once whether the detector found the
right face and whether the age and its interval are plausible.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

BOX_COLOUR, TEXT_COLOUR, PROBLEM_COLOUR = (255, 200, 0), (0, 0, 0), (220, 40, 40)


def caption(row: dict) -> str:
    """`34 (27-41)`: the expected age and the 80 % interval, in whole years."""
    return f"{row['expected_age']:.0f} ({row['age_p10']:.0f}-{row['age_p90']:.0f})"


def draw(image: Image.Image, rows: list[dict]) -> Image.Image:
    """A copy of `image` with every row's box and caption (a row without a box, a given crop or
    a face-less file, is captioned at the top left)."""
    out = image.copy()
    pen = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(12, min(out.size) // 24))
    width = max(2, min(out.size) // 150)
    for row in rows:
        text, box = row["reason"] or caption(row), row.get("box")
        if box:
            pen.rectangle(box, outline=BOX_COLOUR, width=width)
        x, y = (box[0], box[1]) if box else (0, 0)
        _, _, w, h = pen.textbbox((0, 0), text, font=font, anchor="lt")
        if box and y - h - 2 * width >= 0:
            y -= h + 2 * width                    # above the box where the photograph has room
        pen.rectangle((x, y, x + w + 2 * width, y + h + 2 * width),
                      fill=PROBLEM_COLOUR if row["reason"] else BOX_COLOUR)
        pen.text((x + width, y + width), text, fill=TEXT_COLOUR, font=font, anchor="lt")
    return out


def save(image: Image.Image, rows: list[dict], path: Path) -> None:
    """`draw` written to `path` (its suffix picks the format; JPEG at quality 90)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draw(image, rows).save(path, quality=90)
