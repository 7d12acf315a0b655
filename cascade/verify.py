"""`cascade verify RUN`: rebuild a results folder's numbers from scratch and compare them with it.

Why: "the same settings, seed and threads give the same bytes" is the first thing a reader of a
published table checks, and it needs more than a promise.  A folder made by `cascade run` records
its settings (run.json), its stage keys and the environment it was made in; verify runs those
settings again in a temporary store (the demo suite generated anew there, every stage trained
anew), then compares:

* the stage keys: they hash the data, the settings and the code, so a difference means the
  rebuild did not see the same inputs (another demo suite, another dataset copy, other code);
* the numbers of ``table.csv``, ``seeds.csv`` and ``comparisons.csv``, cell by cell.

Where the number-moving part of the environment (runtime.NUMERIC_FIELDS) is the one the folder
recorded, every field of it, the numbers must be identical.  Elsewhere floating-point kernels
(another CPU's instruction set, another BLAS or library version) legitimately move the last bits
of training, so each configuration's first metric must only stay within the folder's own 95%
interval for it (the subject-bootstrap CI where the table has one, else ``tolerance`` in the
metric's unit); every cell that moved is printed either way.
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cascade import runtime
from cascade.report import run_record

TABLES = ("table.csv", "seeds.csv", "comparisons.csv")
#: The interval a configuration's MAE may move within on another environment.
CI = ("CI low (subject bootstrap)", "CI high (subject bootstrap)")


@dataclass
class Verdict:
    """What a verification found; ``ok`` is its exit status."""
    folder: Path
    rebuilt: Path
    exact: bool
    environment: list[str]
    keys: list[str] = field(default_factory=list)
    cells: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    compared: int = 0

    @property
    def ok(self) -> bool:
        return not self.keys and not self.outside and (not self.exact or not self.cells)

    def text(self) -> str:
        lines = [f"verify {self.folder} (rebuilt in {self.rebuilt})"]
        lines.append("environment: the one the folder recorded: numbers must be identical" if self.exact else
                     "environment differs from the folder's record (" + "; ".join(self.environment) +
                     "): each configuration's first metric must stay within the folder's 95% interval")
        lines.append(f"stage keys: {'identical' if not self.keys else 'DIFFER'}")
        lines += [f"  {k}" for k in self.keys]
        lines.append(f"numbers: {self.compared} cells compared, {len(self.cells)} differ")
        lines += [f"  {c}" for c in self.cells[:40]]
        if len(self.cells) > 40:
            lines.append(f"  ... and {len(self.cells) - 40} more")
        if not self.exact:
            lines.append(f"outside the interval: {len(self.outside)}")
            lines += [f"  {c}" for c in self.outside]
        lines.append("verified" if self.ok else "NOT verified")
        return "\n".join(lines)


def recorded(folder: Path) -> dict:
    """A `cascade run` folder's run.json; an error names what kind of folder it is otherwise."""
    meta = run_record(folder)
    if "settings" not in meta or "stages" not in meta:
        made_by = meta.get("command") or ("an analysis" if "title" in meta else "another command")
        raise ValueError(f"{folder}: verify rebuilds the folders of `cascade run` (run.json with settings and "
                         f"stage keys); this one was made by {made_by}: rebuild its runs and remake it instead")
    return meta


def rebuild(meta: dict, scratch: Path, progress: bool) -> Path:
    """Run the recorded settings in a store under `scratch`; returns the new results folder."""
    from cascade import config as C
    from cascade.report.tables import run_and_write
    from cascade.stages import plan as P

    settings = list(meta["settings"])
    cfg = C.load(settings + [f"home={scratch / 'store'}", f"run.results_dir={scratch / 'results'}"])
    runtime.numerics(cfg["train"]["numerics"])
    _, folder = run_and_write([P.build(c) for c in C.per_seed(cfg)], scratch / "results", settings, progress)
    return folder


def key_differences(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """'label: old key → new key' for each stage label whose key differs (or exists on one side)."""
    return [f"{label}: {old.get(label, '(absent)')} → {new.get(label, '(absent)')}"
            for label in sorted(set(old) | set(new)) if old.get(label) != new.get(label)]


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def compare_tables(old: Path, new: Path, verdict: Verdict, tolerance: float) -> None:
    """Every cell of the folder's tables against the rebuild's (as written: a cell compares
    equal only when its text does, which for floats means to the last bit)."""
    for name in TABLES:
        if not (old / name).exists():
            continue
        if not (new / name).exists():
            verdict.cells.append(f"{name}: missing in the rebuild")
            continue
        a = pd.read_csv(old / name, dtype=str, keep_default_na=False)
        b = pd.read_csv(new / name, dtype=str, keep_default_na=False)
        if list(a.columns) != list(b.columns) or len(a) != len(b):
            verdict.cells.append(f"{name}: shape {a.shape} → {b.shape} (columns {list(a.columns)} → {list(b.columns)})")
            continue
        label = [c for c in ("seed", "configuration", "vs") if c in a.columns]
        for i in range(len(a)):
            row = " / ".join(a.loc[i, c] for c in label)
            for col in a.columns:
                verdict.compared += 1
                if a.loc[i, col] != b.loc[i, col]:
                    x, y = _number(a.loc[i, col]), _number(b.loc[i, col])
                    delta = f" (Δ {y - x:+.3g})" if x is not None and y is not None else ""
                    verdict.cells.append(f"{name} [{row}] {col}: {a.loc[i, col]} → {b.loc[i, col]}{delta}")
        if name == "table.csv":
            _within_interval(a, b, verdict, tolerance)


def _within_interval(a: pd.DataFrame, b: pd.DataFrame, verdict: Verdict, tolerance: float) -> None:
    """The tolerance of another environment: each measured configuration's first metric stays
    inside the folder's 95% interval for it (else within `tolerance` of it)."""
    metric = a.columns[2]                     # configuration, mode, then the first metric
    for i in range(len(a)):
        if a.loc[i, "status"] != "measured":
            continue
        x, y = _number(a.loc[i, metric]), _number(b.loc[i, metric])
        if x is None or y is None:
            continue
        if all(c in a.columns for c in CI) and _number(a.loc[i, CI[0]]) is not None:
            lo, hi, how = _number(a.loc[i, CI[0]]), _number(a.loc[i, CI[1]]), "its 95% CI"
        else:
            lo, hi, how = x - tolerance, x + tolerance, f"± {tolerance:g}"
        if not lo <= y <= hi:
            verdict.outside.append(f"{a.loc[i, 'configuration']}: {metric} {x:.4g} → {y:.4g}, outside {how} "
                                   f"[{lo:.4g}, {hi:.4g}]")


def verify(folder: Path, home: Path | None = None, keep: bool = False, tolerance: float = 1.0,
           progress: bool = False) -> Verdict:
    """Rebuild `folder` (a `cascade run` results folder) in a temporary store (or `home`, kept)
    and compare; the temporary store is removed afterwards unless `keep`."""
    folder = Path(folder)
    meta = recorded(folder)
    scratch = Path(home) if home else Path(tempfile.mkdtemp(prefix="cascade-verify-"))
    try:
        new = rebuild(meta, scratch, progress)
        now = json.loads((new / "run.json").read_text())
        env = runtime.numeric_differences(meta.get("environment") or {}, now["environment"], unrecorded=True)
        verdict = Verdict(folder, new, exact=not env, environment=env)
        verdict.keys = key_differences(meta["stages"], now["stages"])
        compare_tables(folder, new, verdict, tolerance)
        if not keep and home is None:
            verdict.rebuilt = Path("(temporary store, removed)")
        return verdict
    finally:
        if not keep and home is None:
            shutil.rmtree(scratch, ignore_errors=True)
