"""The image files of `cascade predict PATH [PATH ...]`: files as given, folders searched
recursively for the formats the dataset decoder reads.

Why a PATH that holds nothing is a row, not an error: a batch over many folders should say which
of them gave no image and go on with the others, as an unreadable file does.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

#: What a folder is searched for (any case); a file named on the command line is read whatever
#: its suffix, and one that does not decode gets a row with the decoder's reason.
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclasses.dataclass(frozen=True)
class Source:
    """One input: `path` to read, `name` where it goes under `--annotate` (relative to the folder
    it was found in, under that folder's name), `problem` when there is nothing to read."""

    path: Path
    name: Path
    problem: str | None = None


def image_files(paths: list[Path]) -> list[Source]:
    """Every input of `paths`, folders expanded in sorted order."""
    out: list[Source] = []
    for given in map(Path, paths):
        if given.is_dir():
            found = sorted(p for p in given.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
            out += [Source(p, Path(given.resolve().name) / p.relative_to(given)) for p in found]
            if not found:
                out.append(Source(given, Path(given.name), f"folder holds no {'/'.join(s[1:] for s in SUFFIXES)} "
                                                             f"image (searched recursively)"))
        elif given.exists():
            out.append(Source(given, Path(given.name)))
        else:
            out.append(Source(given, Path(given.name), "no such file or folder"))
    return out
