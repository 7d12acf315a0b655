"""Real-format metadata parsers, one per public dataset, behind one registry.

Every loader returns a ``DatasetTable`` whose ``report`` counts the rows each named cleaning
rule removed, in the order the rules ran, and lists bad rows in its quarantine; nothing is
dropped silently.  ``load`` checks names and options first, so a typo in a config fails with
the valid choices instead of a bare ``TypeError`` from deep inside a loader.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

from cascade.data.formats import agedb, appareal, fgnet, utkface
from cascade.data.formats.adience import fold_listings, load_adience
from cascade.data.formats.agedb import load_agedb
from cascade.data.formats.appareal import load_appareal
from cascade.data.formats.fgnet import load_fgnet
from cascade.data.formats.imdb import load_imdb, load_wiki, metadata_file
from cascade.data.formats.utkface import load_utkface
from cascade.data.records import DatasetTable

LOADERS: dict[str, Callable[..., DatasetTable]] = {
    "imdb": load_imdb,
    "wiki": load_wiki,
    "agedb": load_agedb,
    "fgnet": load_fgnet,
    "adience": load_adience,
    "utkface": load_utkface,
    "appareal": load_appareal,
}

#: What each loader must find under its root before it can read a row: a check that raises
#: FileNotFoundError naming the missing file and what the loader expects there.
REQUIRED_FILES: dict[str, Callable[[Path], object]] = {
    "imdb": lambda root: metadata_file(root, "imdb"),
    "wiki": lambda root: metadata_file(root, "wiki"),
    "agedb": agedb.required_files,
    "fgnet": fgnet.required_files,
    "adience": fold_listings,
    "utkface": utkface.required_files,
    "appareal": appareal.required_files,
}


def missing_files(name: str, root: str | Path) -> str | None:
    """What loader `name` needs in the existing folder `root` and does not find (None: all
    there), checked before a run decodes anything: a wrong folder is named at once, with the
    file it lacks, instead of after the other datasets were read."""
    try:
        REQUIRED_FILES[name](Path(root))
    except FileNotFoundError as exc:
        return str(exc)
    return None


def options_of(name: str) -> list[str]:
    """The keyword options a registered loader accepts."""
    params = inspect.signature(LOADERS[name]).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def load(name: str, root: str | Path, **options) -> DatasetTable:
    """Parse and clean the dataset at ``root`` with the loader registered as ``name``."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset format {name!r}; valid names: {', '.join(sorted(LOADERS))}")
    valid = options_of(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(f"{name}: unknown option(s) {unknown}; valid options: {valid}")
    return LOADERS[name](Path(root), **options)
