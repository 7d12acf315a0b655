"""Progress for a person at a terminal and for a batch job's log, from one call.

Why not tqdm alone: on a terminal a bar redraws itself in place, but in a file (a SLURM log,
`nohup`, CI) every redraw is appended, and a two-day run writes thousands of carriage-return
updates a reader cannot search.  Where the output is not a terminal, :func:`bar` writes one whole
line instead, at most every :data:`LINE_SECONDS` (and a last one when the work ends): the
description, count, elapsed time, rate and, where the total is known, the time left.
`--quiet` (:func:`silence`) turns both off for the whole command.
"""
from __future__ import annotations

import os
import sys

from tqdm import tqdm

#: Seconds between progress lines when the output is not a terminal (CASCADE_PROGRESS_SECONDS).
LINE_SECONDS = float(os.environ.get("CASCADE_PROGRESS_SECONDS", "60"))

_silenced = False


def silence(on: bool = True) -> None:
    """`--quiet`: no progress from any part of this process (the demo suite's generation too)."""
    global _silenced
    _silenced = on


class _Lines(tqdm):
    """A tqdm that appends a full line per refresh instead of redrawing one in place."""

    def display(self, msg=None, pos=None):
        if msg != "":            # "": tqdm clearing its bar, nothing to clear in a log
            self.fp.write((msg if msg is not None else self.__str__()) + "\n")
            self.fp.flush()
        return True


class _LogFile:
    """The stream a :class:`_Lines` writes to: whole lines pass, the bare carriage returns and
    newlines tqdm adds to move its cursor do not."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        if text.strip():
            self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def bar(iterable=None, *, desc: str, total: int | None = None, unit: str = "it", initial: int = 0,
        enabled: bool = True, stream=None) -> tqdm:
    """A tqdm over `iterable` (or updated by hand up to `total`): a redrawn bar on a terminal,
    a line every :data:`LINE_SECONDS` elsewhere, nothing when disabled or silenced."""
    stream = stream or sys.stderr
    common = {"total": total, "desc": desc, "unit": unit, "initial": initial, "file": stream}
    if not enabled or _silenced:
        return tqdm(iterable, disable=True, **common)
    if stream.isatty():
        return tqdm(iterable, leave=False, **common)
    known = total is not None or (iterable is not None and hasattr(iterable, "__len__"))
    line = ("{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]" if known
            else "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]")
    return _Lines(iterable, leave=True, bar_format=line, mininterval=LINE_SECONDS, maxinterval=LINE_SECONDS,
                  **{**common, "file": _LogFile(stream)})
