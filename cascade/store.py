"""The artifact store: atomic writes, content-keyed stage folders, completion markers, locks.

Layout under `$CASCADE_HOME` (default ~/.cache/cascade):
    stages/<key>/   config.json  log.txt  ckpt/  weights.safetensors  metrics.json  COMPLETE.json
    cache/<key>/    decoded image arrays
    demo/<key>/     the synthetic suite

Why a completion marker written last, listing every file with its sha256: a folder without a
valid marker is, by definition, unfinished — a process killed at any instant (kill -9) can leave
temporary files or a stale checkpoint, but never a stage that looks complete.
"""
from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import hashlib
import io
import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

MARKER = "COMPLETE.json"


def stable_hash(obj: Any, n: int = 16) -> str:
    """sha256 of the canonical JSON of `obj` (sorted keys): the basis of every key."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Permissions a plain `open(path, "w")` would give; mkstemp's private 0600 would hide shared
#: results from the rest of a research group.
_FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _write_error(exc, path) from exc
        raise


#: errnos that mean "no room": the message says so and that the old file is untouched.
NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _write_error(exc: OSError, path: Path) -> OSError:
    """The same OSError (same errno, so callers can still test it) naming the file written;
    out of space it says that the previous version, if any, is intact."""
    what = exc.strerror or str(exc)
    hint = (" (out of space: the previous version of the file, if any, is intact and no temporary "
            "file is left; free space and rerun to continue where this run stopped)"
            if exc.errno in NO_SPACE else "")
    text = f"{what} while writing {path}{hint}"
    return OSError(exc.errno, text) if exc.errno is not None else OSError(text)


def reserve(path: Path) -> None:
    """Allocate the blocks of a just-created (sparse) memory-mapped array file.  Without it a full
    disk shows up as SIGBUS on the first page written through the map, killing the process with
    no message; with it, as a clear out-of-space error naming the file, before any work."""
    path = Path(path)
    size = path.stat().st_size
    try:
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
            return                      # a file system without fallocate: nothing to reserve
        raise _write_error(exc, path) from exc


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")


def atomic_torch_save(obj: Any, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _snapshot(obj: Any) -> Any:
    """`obj` with every tensor copied to host memory now (training goes on changing the live
    ones), the rest deep-copied."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_snapshot(v) for v in obj)
    return copy.deepcopy(obj)


class BackgroundSaver:
    """Checkpoints written by a background thread while training goes on.

    Why: serialising and writing a checkpoint stalled every epoch (0.5-0.6 s of a ResNet-50
    epoch on an H200: results/benchmarks/train_overhead_h200.txt).  `save` copies the state to
    host memory at once (the numbers of that moment), then writes it atomically in a thread; it
    first waits for the previous write, so at most one is in flight and checkpoints land in
    order.  A crash mid-write leaves the previous complete checkpoint, from which resume is as
    exact as ever (one epoch more to redo).  `wait` (called before the caller uses or removes
    the file) joins the last write and raises its error, if any.  `background=False` writes in
    line: on the CPU the writer competes with training for the same cores (one-epoch fits of
    ResNet-50 at 32 px on 2 cores, benchmarks/train_overhead.py: harness/bare 1.17 in line, 1.36
    in the background), so only GPU runs, whose host thread mostly waits on the device, write in
    the background."""

    def __init__(self, background: bool = True):
        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _write(self, obj: Any, path: Path) -> None:
        try:
            atomic_torch_save(obj, path)
        except BaseException as exc:          # surfaced by the next save or wait, in the caller
            self._error = exc

    def save(self, obj: Any, path: Path) -> None:
        self.wait()
        if not self.background:
            atomic_torch_save(obj, path)
            return
        self._thread = threading.Thread(target=self._write, args=(_snapshot(obj), Path(path)), daemon=True)
        self._thread.start()

    def wait(self, raise_error: bool = True) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None and raise_error:
            raise error


def safe_torch_load(path: Path) -> Any:
    """Checkpoints are loaded with weights_only=True: a file that would run code is refused."""
    return torch.load(path, map_location="cpu", weights_only=True)


def sweep_temporaries(folder: Path) -> int:
    """Remove the temporary files that `atomic_write_bytes` (`.<name>.<random>.tmp`) and the
    figure writer (`.<stem>.<random>.tmp.<ext>`) leave when killed mid-write, anywhere under
    `folder`; how many there were."""
    stale = [p for p in Path(folder).rglob(".*.tmp*") if p.is_file()]      # none under a missing folder
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


class StageDir:
    """One stage's folder.  Complete iff its marker exists and every listed file matches."""

    def __init__(self, root: Path, key: str):
        self.key = key
        self.path = Path(root) / key

    def file(self, name: str) -> Path:
        return self.path / name

    def is_complete(self) -> bool:
        marker = self.path / MARKER
        if not marker.exists():
            return False
        try:
            listed = json.loads(marker.read_text())["files"]
        except (ValueError, KeyError):
            return False
        return all((self.path / n).exists() and (self.path / n).stat().st_size == meta["size"]
                   for n, meta in listed.items())

    def verify(self) -> list[str]:
        """Names of listed files whose sha256 no longer matches (empty = intact)."""
        listed = json.loads((self.path / MARKER).read_text())["files"]
        return [n for n, meta in listed.items()
                if not (self.path / n).exists() or file_sha256(self.path / n) != meta["sha256"]]

    def repair(self, what: str = "stage") -> list[str]:
        """For a complete folder: check every listed file against its recorded sha256; damaged
        or missing ones are deleted with the marker, so the caller recomputes exactly those
        (a fold's predictions, a stage's weights, a table built from intact parts).  Returns
        their names (empty = intact and complete)."""
        damaged = self.verify()
        if damaged:
            print(f"cascade: {what} {self.path} is damaged ({', '.join(damaged)} missing or failing "
                  f"their sha256); recomputing them", file=sys.stderr)
            for name in damaged:
                (self.path / name).unlink(missing_ok=True)
            (self.path / MARKER).unlink(missing_ok=True)
        return damaged

    def usable(self, what: str = "stage") -> bool:
        """Complete and every listed file intact (a damaged one is removed, see `repair`)."""
        marker = self.path / MARKER
        if not marker.exists():
            return False
        try:
            json.loads(marker.read_text())["files"]
        except (ValueError, KeyError):               # a torn marker: the folder is unfinished
            return False
        return not self.repair(what)

    def fill(self, what: str, write: Callable[[], list[str]], scratch: tuple[str, ...] = (),
             info: dict | None = None) -> bool:
        """The one routine by which every keyed folder is filled (a stage, a regression, a feature
        array, an image cache), so that each is either complete or resumable whenever its writer
        is killed: under `lock()`, nothing to do when the folder is complete and intact
        (`usable`, which removes damaged files); else the temporaries of a writer killed
        mid-write are swept, `write()` writes the files, resuming from whatever finished pieces an
        interrupted run left (fold files, a checkpoint, rows counted done), and returns the names
        the marker lists; the marker is written last, and only then the `scratch` files that
        made resuming possible (a checkpoint, a progress count) are removed.  Returns whether it
        wrote."""
        with self.lock():
            if self.usable(what):
                return False
            self.sweep()
            self.mark_complete(write(), info)
            for name in scratch:
                self.file(name).unlink(missing_ok=True)
            return True

    def sweep(self) -> int:
        """Remove the temporary files of writers killed mid-write, in every subfolder (a fold's
        validation predictions live two levels down).  Call only under `lock()`: no other
        writer is active then."""
        return sweep_temporaries(self.path)

    def mark_complete(self, files: list[str], info: dict | None = None) -> None:
        meta = {n: {"size": (self.path / n).stat().st_size, "sha256": file_sha256(self.path / n)}
                for n in files}
        atomic_write_json(self.path / MARKER, {"key": self.key, "files": meta, **(info or {})})

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock held while computing: a second run of the same stage waits, then
        finds it complete.  flock is released by the kernel when a process dies, so a killed
        run never leaves a stale lock behind."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
