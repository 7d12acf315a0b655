"""From a config to a cleaned dataset table: user roots or the embedded synthetic suite, and
the ordered label space a stage classifies over."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np

from cascade.data.records import DatasetTable
from cascade.store import StageDir, atomic_write_json, stable_hash

#: stage dataset name -> (loader name, loader options)
DATASETS = {
    "imdb": ("imdb", {}),
    "wiki": ("wiki", {}),
    "agedb": ("agedb", {}),
    "fgnet": ("fgnet", {}),
    "adience": ("adience", {"groups": 8}),
    "adience3": ("adience", {"groups": 3}),
    "utkface": ("utkface", {}),
}

SYNTH_VERSION = 1


def demo_suite(home: Path, scale: float, seed: int, progress: bool = True) -> Path:
    """The synthetic suite under `$CASCADE_HOME/demo/<key>`, generated once (a killed
    generation leaves no marker and is regenerated from scratch)."""
    from cascade.data.synth.suite import write_suite

    folder = StageDir(Path(home) / "demo", "synth-" + stable_hash([SYNTH_VERSION, scale, seed], 10))
    with folder.lock():
        marker = folder.file("GENERATED.json")
        if not marker.exists():
            for child in folder.path.iterdir():
                if child.name != ".lock":
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            counts = write_suite(folder.path, scale=scale, seed=seed, progress=progress)
            atomic_write_json(marker, {"scale": scale, "seed": seed, "counts": counts})
    return folder.path


def dataset_root(cfg: dict, name: str, home: Path) -> Path:
    base = DATASETS[name][0]
    base = "imdb" if base == "wiki" and not cfg["data"]["root"]["wiki"] else base
    given = cfg["data"]["root"][base]
    if given:
        root = Path(given).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"data.root.{base}={given}: folder does not exist")
        return root
    return demo_suite(home, cfg["data"]["synth"]["scale"], cfg["data"]["synth"]["seed"]) / base


def open_dataset(cfg: dict, name: str, home: Path, require_files: bool = True) -> DatasetTable:
    """Parse and clean one dataset with its registered loader; optionally subsample it.
    `require_files=False` reads the metadata alone (inspecting a listing without the images)."""
    from cascade.data.formats import load, options_of

    loader, options = DATASETS[name]
    options = dict(options)
    if not require_files and "require_files" in options_of(loader):
        options["require_files"] = False
    if loader == "adience":
        options["policy"] = cfg["data"]["adience_policy"]
    table = load(loader, dataset_root(cfg, name, home), **options)
    table.name = name
    cap = cfg["data"]["max_images"]
    if cap and len(table) > cap:
        rng = np.random.default_rng(cfg["seed"])
        keep = np.sort(rng.choice(len(table), cap, replace=False))
        table.report.drop(f"data.max_images={cap} subsample", len(table) - cap)
        table.frame = table.frame.iloc[keep].reset_index(drop=True)
    return table


#: What `data.crop=auto` means for each loader on real data (see defaults.yaml).
AUTO_CROP = {"imdb": "box", "wiki": "box", "agedb": "mtcnn", "fgnet": "mtcnn", "adience": "none",
             "utkface": "none"}


def crop_settings(cfg: dict, table: DatasetTable) -> dict:
    """The resolved crop of one dataset: what its image cache (and every stage key) depends on."""
    mode = cfg["data"]["crop"]
    if mode == "auto":
        mode = AUTO_CROP[DATASETS[table.name][0]]
        mode = "none" if mode == "mtcnn" and table.synthetic else mode
    out = {"mode": mode, "margin": None if mode == "none" else cfg["data"]["margin"]}
    if mode == "mtcnn":
        out.update(no_face=cfg["data"]["no_face"], min_prob=cfg["data"]["min_face_prob"],
                   select=cfg["data"]["face_select"])
    return out


@dataclasses.dataclass(frozen=True)
class LabelSpace:
    """Ordered classes (youngest first), each standing for an age range [lo, hi]; `values` are
    what the expected-value rule averages (the age, or the range's midpoint)."""

    lo: tuple[int, ...]
    hi: tuple[int, ...]

    @property
    def values(self) -> np.ndarray:
        return (np.asarray(self.lo, float) + np.asarray(self.hi, float)) / 2

    @property
    def exact_ages(self) -> bool:
        return self.lo == self.hi

    def __len__(self) -> int:
        return len(self.lo)

    def encode(self, age_lo: np.ndarray, age_hi: np.ndarray) -> np.ndarray:
        index = {(lo, hi): i for i, (lo, hi) in enumerate(zip(self.lo, self.hi))}
        return np.array([index[(int(a), int(b))] for a, b in zip(age_lo, age_hi)], dtype=np.int64)

    def to_json(self) -> str:
        return json.dumps({"lo": self.lo, "hi": self.hi})

    @classmethod
    def from_json(cls, text: str) -> "LabelSpace":
        d = json.loads(text)
        return cls(tuple(d["lo"]), tuple(d["hi"]))

    @classmethod
    def of(cls, table: DatasetTable, classes: str | None = None) -> "LabelSpace":
        """Integer ages min..max of the dataset when ages are exact (thesis: one class per year
        of the stage dataset's range), or the span `classes` ("A-B", `labels.<stage>`) when
        given; else the dataset's ordered age groups."""
        f = table.frame
        if f["age"].notna().all():
            lo, hi = int(f["age_lo"].min()), int(f["age_hi"].max())
            if classes:
                a, b = (int(x) for x in classes.split("-"))
                if lo < a or hi > b:
                    outside = int(((f["age_lo"] < a) | (f["age_hi"] > b)).sum())
                    raise ValueError(f"{table.name}: labels={classes} but {outside} images have ages "
                                     f"outside it (the data spans {lo}-{hi})")
                lo, hi = a, b
            ages = list(range(lo, hi + 1))
            return cls(tuple(ages), tuple(ages))
        if classes:
            raise ValueError(f"{table.name}: labels={classes} is for exact ages; this dataset has age groups")
        pairs = sorted({(int(a), int(b)) for a, b in zip(f["age_lo"], f["age_hi"])})
        return cls(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))
